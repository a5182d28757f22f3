//! The action directory: what the rest of the framework may know about an
//! action without its handler — its typed handle ([`ActionRef`]), its
//! declared facts ([`ActionMeta`]) and, per app, the table from names to
//! metadata and current opaque ids ([`Directory`]).
//!
//! Why a module of its own: forms, fragments, the manifest and the pipeline
//! all need "the current path of action X" and "is X idempotent", but none
//! of them needs the handler closures that [`crate::action`] builds (which
//! in turn need [`crate::Cx`]). Keeping the facts here, below `cx` and
//! `action`, is what lets rendering and the runtime sit below the handlers
//! without an import cycle (ARCHITECTURE.md, "Layering").

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;

use crate::botcheck::{BotCheck, CHALLENGE_TTL, Challenges};
use crate::ids::Ids;
use crate::policy::Policy;
use crate::ratelimit::{Limit, NamedQuota};
use crate::wire::ACTION_PREFIX;

/// A typed handle on one action: its internal name (never on the wire)
/// and the types its handler takes and returns.
///
/// Declare one `const` per action next to its handler and use it
/// everywhere the action is named — [`crate::action::action`], [`crate::Page::form`],
/// [`crate::Page::seal_for`], [`crate::RenderCx::form`], [`crate::Cx::seal_for`],
/// `TestClient::call` — so the compiler checks the name (a misspelt const
/// is "cannot find value") and the handler's types (registering a handler
/// of other types under the handle does not compile).
///
/// ```
/// # use portcullis::prelude::*;
/// # #[derive(serde::Deserialize, garde::Validate)] pub struct Rename { #[garde(skip)] name: String }
/// # #[derive(serde::Serialize, Dto)] pub struct ProjectDto { name: String }
/// pub const RENAME: ActionRef<Rename, ProjectDto> = ActionRef::new("projects.rename");
/// ```
pub struct ActionRef<In, Out> {
    name: &'static str,
    _types: PhantomData<fn(In) -> Out>,
}

impl<In, Out> ActionRef<In, Out> {
    /// The handle of the action registered as `name`.
    pub const fn new(name: &'static str) -> Self {
        ActionRef {
            name,
            _types: PhantomData,
        }
    }

    /// The action's internal name (manifest, logs, metrics).
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The action's stable client key ([`client_key`]).
    pub fn client_key(&self) -> String {
        client_key(self.name)
    }
}

/// The stable key a typed client names an action by: the first 12 hex
/// digits (48 bits) of SHA-256(`"portcullis client key\0"` ‖ name).
///
/// Why not the opaque id: ids rotate (every epoch, every secret change),
/// and generated TypeScript is checked in, so it must name something that
/// does not. Why not the name: invariant 10 keeps names off the wire; a
/// digest is as stable and says nothing a page's own forms do not (it
/// identifies the action, not what it is called). The page maps keys to
/// current ids ([`crate::Page::client_actions`]), so a call still goes to
/// `/_action/<current id>` and rotation works as for forms.
pub fn client_key(name: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"portcullis client key\0");
    h.update(name.as_bytes());
    crate::hex(&h.finalize()[..6])
}

// Manual impls: a handle is a name, whatever its types implement.
impl<In, Out> Clone for ActionRef<In, Out> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<In, Out> Copy for ActionRef<In, Out> {}

impl<In, Out> fmt::Debug for ActionRef<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActionRef({})", self.name)
    }
}

/// An [`ActionRef`] with its types forgotten, for a table of different
/// actions (a test looping over every mutation, say). Made only from an
/// `ActionRef` (`RENAME.into()`), so its name was still checked by the
/// compiler; `TestClient` accepts either.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AnyActionRef {
    name: &'static str,
}

impl AnyActionRef {
    /// The action's internal name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<In, Out> From<ActionRef<In, Out>> for AnyActionRef {
    fn from(action: ActionRef<In, Out>) -> Self {
        AnyActionRef { name: action.name }
    }
}

impl fmt::Display for AnyActionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// What the registry and the manifest know about an action.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionMeta {
    /// The unique name the action was registered under.
    pub name: &'static str,
    /// Who may call it.
    pub policy: Policy,
    /// Limits keyed on the request (address, session, viewer, …), checked
    /// in stage 4 before the body is read.
    pub limits: Vec<Limit>,
    /// Limits keyed on the decoded input (stage 6).
    pub input_limits: Vec<Limit>,
    /// Named long-window quotas, charged just before the handler.
    pub quotas: Vec<NamedQuota>,
    /// Bot checks a call must pass (stage 6, after validation).
    pub bot_checks: Vec<BotCheck>,
    /// Serve unlimited when the limiter backend is down (default: 503).
    pub fail_open: bool,
    /// Body size cap in bytes overriding [`crate::BodyLimits::body_bytes`].
    pub body_limit: Option<usize>,
    /// Repeating it is safe: the client runtime may run calls in parallel
    /// instead of queueing them.
    pub idempotent: bool,
    /// The Rust type name of the handler's input.
    pub input_type: &'static str,
    /// The input's top-level wire field names; the decoder refuses others.
    pub input_fields: &'static [&'static str],
    /// Input fields of type `Sealed<T>` (or `Option<Sealed<T>>`).
    pub sealed_fields: Vec<&'static str>,
    /// Input fields of type `Upload<R>` (or `Option<Upload<R>>`), with
    /// their byte caps and accepted types.
    pub upload_fields: Vec<crate::upload::UploadField>,
    /// The input went through `garde::Validate` (always true for actions
    /// built here; the field exists so hand-written manifests can say no).
    pub input_validated: bool,
    /// The DTO type the handler returns.
    pub output_type: &'static str,
    /// `mutates` / `read_only`, or `None` when undeclared.
    pub kind: Option<ActionKind>,
    /// Declared effects (see [`crate::ActionBuilder::mutates`]).
    pub effects: Vec<&'static str>,
    /// Whether `.idempotent()`, `.not_idempotent()` or `.read_only()` was said.
    pub idempotency_declared: bool,
    /// Reviewed exceptions to audit rules.
    pub allow_audit: Vec<AuditAllow>,
    /// The input, output and field-error types as TypeScript, when the
    /// action was registered with `.typescript()` (feature `ts`); read by
    /// `portcullis ts`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typescript: Option<ClientTypes>,
}

/// An action's types as TypeScript, in the manifest (`"typescript"`), from
/// which `portcullis ts` writes the typed client (`actions.d.ts`,
/// `actions.js`). Plain strings, so the CLI needs neither the app's types
/// nor ts-rs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTypes {
    /// The action's [`client_key`].
    pub key: String,
    /// The TypeScript type of the input (usually the name of a declaration
    /// below, e.g. `Rename`).
    pub input: String,
    /// The TypeScript type of the result (`ProjectDto`; `null` for `()`).
    pub output: String,
    /// Every named type the two reach, dependencies first.
    pub declarations: Vec<TsDeclaration>,
}

/// One named TypeScript type: `name` and its declaration
/// (`type Rename = { projectId: number, name: string, };`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TsDeclaration {
    /// The type's TypeScript name.
    pub name: String,
    /// `type Name = …;` (without `export`).
    pub declaration: String,
}

impl ActionMeta {
    /// A mutation for the audit log: declared `mutates`, or undeclared (the
    /// safe assumption for a POST endpoint).
    pub fn is_mutation(&self) -> bool {
        self.kind != Some(ActionKind::ReadOnly)
    }
}

/// Whether an action changes state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Declared with [`crate::ActionBuilder::mutates`].
    Mutates,
    /// Declared with [`crate::ActionBuilder::read_only`].
    ReadOnly,
}

/// One reviewed exception to an audit rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditAllow {
    /// The audit rule excepted (e.g. `"privileged-field"`).
    pub rule: &'static str,
    /// Why, as the reviewer wrote it; empty is itself a finding.
    pub reason: &'static str,
}

/// One app's actions as data: names → metadata and current opaque ids, and
/// the proof-of-work challenges forms embed.
///
/// State: written once, by the app builder; read by every request. Its size
/// is the number of registered actions (no client input is ever inserted);
/// it lives as long as the app. The challenge minter inside is stateless
/// (challenges are MACs, spent through the counter store), so one user's
/// traffic cannot grow or change it for others.
pub(crate) struct Directory {
    pub(crate) ids: Ids,
    pub(crate) metas: Vec<ActionMeta>,
    pub(crate) by_name: HashMap<&'static str, usize>,
    pub(crate) challenges: Challenges,
}

impl Directory {
    /// The metadata of `name`, if such an action exists.
    pub(crate) fn meta(&self, name: &str) -> Option<&ActionMeta> {
        self.by_name.get(name).map(|&i| &self.metas[i])
    }

    /// The id to render for `name` now, if such an action exists.
    pub(crate) fn action_id(&self, name: &str) -> Option<String> {
        self.by_name
            .get(name)
            .map(|&i| self.ids.current(i).to_string())
    }

    /// The action endpoint path for `name`.
    pub(crate) fn action_path(&self, name: &str) -> Option<String> {
        self.action_id(name)
            .map(|id| format!("{ACTION_PREFIX}{id}"))
    }

    /// A fresh proof-of-work challenge for `name`, if that action has a
    /// `BotCheck::ProofOfWork` (at its difficulty, valid for 30 minutes).
    pub(crate) fn pow_challenge(&self, name: &str) -> Option<String> {
        let meta = self.meta(name)?;
        let bits = meta.bot_checks.iter().find_map(|c| match c {
            BotCheck::ProofOfWork { bits } => Some(*bits),
            _ => None,
        })?;
        Some(self.challenges.mint(meta.name, bits, CHALLENGE_TTL))
    }

    /// Whether `name` was declared idempotent (the client runtime may run
    /// it in parallel rather than in the page's queue).
    pub(crate) fn idempotent(&self, name: &str) -> bool {
        self.meta(name).is_some_and(|m| m.idempotent)
    }

    /// Whether `name`'s policy can answer `reauthentication_required`
    /// (`.recent(..)`): only its forms carry the re-authentication path.
    pub(crate) fn needs_reauthentication(&self, name: &str) -> bool {
        self.meta(name)
            .is_some_and(|m| matches!(m.policy, Policy::Recent { .. }))
    }

    /// The bot checks of `name` (empty for an unknown name).
    pub(crate) fn bot_checks(&self, name: &str) -> &[BotCheck] {
        self.meta(name)
            .map(|m| m.bot_checks.as_slice())
            .unwrap_or(&[])
    }
}
