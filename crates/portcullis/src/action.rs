//! Action registration: a typestate builder in which the secure path is the
//! only one that compiles, started from a typed handle.
//!
//! ```text
//! action(RENAME) ─┬─ .public() ──── .limit(l) ─┬─ .handler(f)   f: (Cx, MaybeViewer, Valid<In>) -> Outcome<Out>
//!                 ├─ .authenticated() ─────────┤
//!                 ├─ .role("admin") ───────────┼─ .handler(f)   f: (Cx, Viewer, Valid<In>) -> Outcome<Out>
//!                 └─ .recent(15 min) ──────────┘
//! ```
//!
//! * An action is named by an [`ActionRef<In, Out>`]: a `const` that carries
//!   its name and its input and output types
//!   (`pub const RENAME: ActionRef<Rename, ProjectDto> = ActionRef::new("projects.rename");`).
//!   Registration, forms, seals and tests all take the handle, so a misspelt
//!   name is a compile error ("cannot find value"), and a handler whose input
//!   or output type is not the handle's does not compile.
//! * `handler` requires a state with a policy ([`state::PolicyChosen`]), so
//!   an action without a policy does not compile; the policy methods require
//!   the state before any policy ([`state::NoPolicyYet`]), so an action
//!   cannot have two; a finished [`Action`] refuses them too. Each mistake is
//!   a one-line error naming the fix (`#[diagnostic::on_unimplemented]` on
//!   those traits; pinned by `tests/ui/`).
//! * `public()` leads to a state that cannot take a handler until
//!   `.limit(..)` ([`state::NoLimitOwed`]): a public action without a rate
//!   limit does not compile.
//!   Only public actions (after their limit) offer `.bot_check(..)`.
//! * Any action may add `.limit(..)` (stage 4, keys from the request),
//!   `.limit_input(..)` (stage 6, keys from the decoded input, e.g. the
//!   account a login names), `.quota(name, ..)` (long-window counter charged
//!   just before the handler, readable via [`Cx::quota`]) and `.fail_open()`
//!   (serve instead of 503 when the limiter backend is down).
//! * An input limit must read the action's own input type; a mismatch is
//!   refused when the app is built.
//! * `In` must be `Deserialize + garde::Validate` and the handler receives
//!   `Valid<In>`; `Out` must implement [`Dto`].
//! * Names must be unique; a duplicate is refused when the app is built.
//!
//! Every option the builder collects is one field of `ActionSpec`; the
//! typestate is only a marker beside it, so a state change is one line
//! (`ActionBuilder::to`) and a new option is one field and one method.

/// File uploads as action input: [`Upload<R>`](upload::Upload) fields with
/// byte caps and magic-byte type checks, streamed to temp files, kept in a
/// [`FileStore`](upload::FileStore) and served back only as attachments.
pub mod upload {
    pub use crate::upload::*;
}

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;

use crate::body::{BodyKind, BodyLimits};
use crate::botcheck::BotCheck;
use crate::cx::Cx;
use crate::error::{ActionError, Outcome, Rejection};
use crate::input::{self, InputShape, Lang, Opening, Payload, Reserved, ShapeError, Valid};
use crate::policy::Policy;
use crate::ratelimit::{InputLimit, Limit, NamedQuota};
use crate::respond::{self, Dto};
use crate::viewer::Viewer;

pub use crate::directory::{
    ActionKind, ActionMeta, ActionRef, AnyActionRef, AuditAllow, ClientTypes, TsDeclaration,
    client_key,
};

#[cfg(feature = "ts")]
#[cfg_attr(docsrs, doc(cfg(feature = "ts")))]
pub mod typescript;

/// Builder states. Only [`state::Public`] and [`state::Gated`] can take a handler.
///
/// The traits here exist for the compiler's error messages: the methods
/// that only some states allow are written once for every state, bounded by
/// one of these traits, so calling one in the wrong state is an error that
/// names the fix (`#[diagnostic::on_unimplemented]`) rather than "no method
/// named `handler`" or a suggestion of an unrelated method. Each condition
/// is a trait of its own, so the error names the one that is missing, and
/// the impls are `#[diagnostic::do_not_recommend]`, so it does not list the
/// states that would have worked. They are sealed: only this module
/// implements them, so the states stay the only way in.
pub mod state {
    use crate::viewer::{MaybeViewer, Viewer};

    /// No policy chosen yet.
    pub struct NoPolicy;
    /// `public()` chosen; a rate limit is still owed.
    pub struct PublicUnlimited;
    /// Public with at least one rate limit.
    pub struct Public;
    /// `authenticated`, `role` or `recent`.
    pub struct Gated;

    mod sealed {
        pub trait Sealed {}
        impl Sealed for super::NoPolicy {}
        impl Sealed for super::PublicUnlimited {}
        impl Sealed for super::Public {}
        impl Sealed for super::Gated {}
    }

    /// A state in which a policy has been chosen; says what the handler
    /// learns about the caller.
    #[diagnostic::on_unimplemented(
        message = "choose `.public()`, `.authenticated()`, `.role(..)` or `.recent(..)` before `.handler(..)`",
        label = "this action has no access policy yet",
        note = "every action has exactly one policy, chosen right after `action(..)`"
    )]
    pub trait PolicyChosen: sealed::Sealed {
        /// The handler's second argument: [`MaybeViewer`] for public
        /// actions, [`Viewer`] for gated ones.
        type Viewer;
        /// Made from the viewer the policy stage found.
        #[doc(hidden)]
        fn viewer(viewer: Option<Viewer>) -> Self::Viewer;
    }

    #[diagnostic::do_not_recommend]
    impl PolicyChosen for PublicUnlimited {
        type Viewer = MaybeViewer;
        fn viewer(viewer: Option<Viewer>) -> MaybeViewer {
            MaybeViewer(viewer)
        }
    }
    #[diagnostic::do_not_recommend]
    impl PolicyChosen for Public {
        type Viewer = MaybeViewer;
        fn viewer(viewer: Option<Viewer>) -> MaybeViewer {
            MaybeViewer(viewer)
        }
    }
    #[diagnostic::do_not_recommend]
    impl PolicyChosen for Gated {
        type Viewer = Viewer;
        fn viewer(viewer: Option<Viewer>) -> Viewer {
            // The policy stage ran before the handler and refuses anonymous
            // callers for every gated policy, so this is always `Some`.
            viewer.expect("gated policy guarantees a viewer")
        }
    }

    /// A state that owes no rate limit: not `public()` without `.limit(..)`
    /// (`NoPolicy` owes none; it fails [`PolicyChosen`] instead, so an
    /// action without a policy gets one error, not two).
    #[diagnostic::on_unimplemented(
        message = "a public action needs `.limit(..)` before `.handler(..)`",
        label = "public action without a rate limit",
        note = "e.g. `.public().limit(per_ip(10).per_minute()).handler(..)`"
    )]
    pub trait NoLimitOwed: sealed::Sealed {}
    #[diagnostic::do_not_recommend]
    impl NoLimitOwed for NoPolicy {}
    #[diagnostic::do_not_recommend]
    impl NoLimitOwed for Public {}
    #[diagnostic::do_not_recommend]
    impl NoLimitOwed for Gated {}

    /// The state before any policy.
    #[diagnostic::on_unimplemented(
        message = "this action already has a policy; an action has exactly one",
        label = "second policy",
        note = "keep one of `.public()`, `.authenticated()`, `.role(..)` or `.recent(..)`"
    )]
    pub trait NoPolicyYet: sealed::Sealed {}
    #[diagnostic::do_not_recommend]
    impl NoPolicyYet for NoPolicy {}

    /// A public action that has its rate limit.
    #[diagnostic::on_unimplemented(
        message = "`.bot_check(..)` is for public actions, after `.limit(..)`",
        label = "not a public action with a rate limit",
        note = "e.g. `.public().limit(per_ip(10).per_minute()).bot_check(..)`"
    )]
    pub trait PublicLimited: sealed::Sealed {}
    #[diagnostic::do_not_recommend]
    impl PublicLimited for Public {}

    /// Implemented by nothing: a finished [`crate::action::Action`] takes no
    /// more builder methods, and this says where they go.
    #[diagnostic::on_unimplemented(
        message = "policy and limits go before `.handler(..)`, which finishes the action",
        label = "called after `.handler(..)`",
        note = "e.g. `action(X).authenticated().limit(..).handler(f)`"
    )]
    pub trait BeforeHandler: sealed::Sealed {}
}

/// Starts the action `handle` names; its handler must take `Valid<In>` and
/// return `Outcome<Out>`.
pub fn action<In, Out>(handle: ActionRef<In, Out>) -> ActionBuilder<state::NoPolicy, In, Out> {
    ActionBuilder {
        spec: ActionSpec::new(handle.name()),
        _state: PhantomData,
        _types: PhantomData,
    }
}

/// Everything the builder methods set, one field per option; the pipeline
/// and the manifest read it as [`ActionMeta`] once a handler is attached.
///
/// Fields marked "declared" change nothing the pipeline enforces: they make
/// the author's intent data that a reviewer or `portcullis audit` checks
/// (whether the action changes state, its effects, whether repeating it is
/// safe, the reviewed exceptions to audit rules).
#[derive(Clone, Debug)]
pub(crate) struct ActionSpec {
    name: &'static str,
    policy: Policy,
    /// Stage 4 limits (keys from the request).
    limits: Vec<Limit>,
    /// Stage 6e limits (keys from the decoded input).
    input_limits: Vec<Limit>,
    quotas: Vec<NamedQuota>,
    bot_checks: Vec<BotCheck>,
    fail_open: bool,
    body_limit: Option<usize>,
    /// The client runtime may run it in parallel.
    idempotent: bool,
    /// Declared: `mutates` / `read_only`.
    kind: Option<ActionKind>,
    /// Declared effects.
    effects: Vec<&'static str>,
    /// Declared: `idempotent` / `not_idempotent` / `read_only` was said.
    idempotency: Option<bool>,
    /// Declared: reviewed exceptions to audit rules.
    allow_audit: Vec<AuditAllow>,
    /// `.typescript()`: the types for the typed client.
    typescript: Option<ClientTypes>,
}

impl ActionSpec {
    fn new(name: &'static str) -> Self {
        ActionSpec {
            name,
            policy: Policy::Public,
            limits: Vec::new(),
            input_limits: Vec::new(),
            quotas: Vec::new(),
            bot_checks: Vec::new(),
            fail_open: false,
            body_limit: None,
            idempotent: false,
            kind: None,
            effects: Vec::new(),
            idempotency: None,
            allow_audit: Vec::new(),
            typescript: None,
        }
    }
}

/// See the module docs for the states. `In` and `Out` are the handle's
/// types, which the handler must take and return.
#[must_use = "an action does nothing until `.handler(..)` is called and it is added"]
pub struct ActionBuilder<P, In, Out> {
    spec: ActionSpec,
    _state: PhantomData<P>,
    _types: PhantomData<fn(In) -> Out>,
}

impl<P, In, Out> ActionBuilder<P, In, Out> {
    /// The same options in state `Q`.
    fn to<Q>(self) -> ActionBuilder<Q, In, Out> {
        ActionBuilder {
            spec: self.spec,
            _state: PhantomData,
            _types: PhantomData,
        }
    }

    /// A limit keyed on the decoded input (`per_input(..)`), checked in stage
    /// 6 after validation. `I` must be the handler's input type.
    pub fn limit_input<I: 'static>(mut self, limit: InputLimit<I>) -> Self {
        // The pipeline hands input limits the decoded input as `Valid<I>`;
        // the downcast lives here, where both types are known, so
        // `ratelimit` need not know about validation.
        self.spec.input_limits.push(limit.erase(valid_input::<I>));
        self
    }

    /// A named long-window quota (`.quota("invites", per_user(20).per_day())`),
    /// charged once per call just before the handler (and given back if the
    /// handler fails); the handler reads what is left with
    /// `cx.quota("invites")`. Exhausted → 429 until the window ends.
    pub fn quota(mut self, name: &'static str, limit: Limit) -> Self {
        self.spec.quotas.push(NamedQuota { name, limit });
        self
    }

    /// When the limiter backend (Redis) is unreachable or slow, serve the
    /// request unlimited instead of refusing it with 503.
    pub fn fail_open(mut self) -> Self {
        self.spec.fail_open = true;
        self
    }

    /// Overrides the body size cap (default from [`BodyLimits::body_bytes`]).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.spec.body_limit = Some(bytes);
        self
    }

    /// Declares the action idempotent / read-only: the client runtime may run
    /// it in parallel instead of queueing it.
    pub fn idempotent(mut self) -> Self {
        self.spec.idempotent = true;
        self.spec.idempotency = Some(true);
        self
    }

    /// Declares that repeating the action is *not* safe (creating a record,
    /// sending a mail): the client runtime queues it. `portcullis audit`
    /// wants every mutation to say one or the other.
    pub fn not_idempotent(mut self) -> Self {
        self.spec.idempotent = false;
        self.spec.idempotency = Some(false);
        self
    }

    /// Declares that the action changes state, and which effects it applies
    /// to the response, e.g. `.mutates(&["update_tag:projects", "redirect"])`.
    /// Effects are free-form strings by convention `kind[:target]`
    /// (`update_tag:…`, `revalidate_tag:…`, `revalidate_path:…`, `refresh`,
    /// `redirect`, `session`, `cookie`, `none`). A successful call of a
    /// mutation is reported to the app's [`crate::app::AuditSink`].
    ///
    /// `update_tag:x` is checked at run time: a successful call that updated
    /// neither `x` nor a tag `x:…` is logged at error level and counted in
    /// the `portcullis_declared_tag_not_updated` metric, so a declaration
    /// cannot silently drift from what the handler does.
    pub fn mutates(mut self, effects: &[&'static str]) -> Self {
        self.spec.kind = Some(ActionKind::Mutates);
        self.spec.effects.extend_from_slice(effects);
        self
    }

    /// Declares that the action changes nothing (a search, a preview); a
    /// read-only action is idempotent by definition.
    pub fn read_only(mut self) -> Self {
        self.spec.kind = Some(ActionKind::ReadOnly);
        self.spec.idempotency = Some(true);
        self.spec.idempotent = true;
        self
    }

    /// A reviewed exception to audit rule `rule` (e.g. `"privileged-field"`)
    /// with the reason, kept next to the action in code. The audit reports
    /// an allow without a reason as a finding of its own.
    pub fn allow_audit(mut self, rule: &'static str, reason: &'static str) -> Self {
        self.spec.allow_audit.push(AuditAllow { rule, reason });
        self
    }
}

/// The policy methods exist in every state so that choosing a second policy
/// is an error that says so (`state::NoPolicyYet`), not "no method named".
impl<P, In, Out> ActionBuilder<P, In, Out> {
    /// Anyone may call it. A rate limit must follow.
    pub fn public(mut self) -> ActionBuilder<state::PublicUnlimited, In, Out>
    where
        P: state::NoPolicyYet,
    {
        self.spec.policy = Policy::Public;
        self.to()
    }
    /// Any signed-in viewer.
    pub fn authenticated(mut self) -> ActionBuilder<state::Gated, In, Out>
    where
        P: state::NoPolicyYet,
    {
        self.spec.policy = Policy::Authenticated;
        self.to()
    }
    /// A signed-in viewer with `role`.
    pub fn role(mut self, role: &'static str) -> ActionBuilder<state::Gated, In, Out>
    where
        P: state::NoPolicyYet,
    {
        self.spec.policy = Policy::Role { role };
        self.to()
    }
    /// A signed-in viewer who re-entered their password within `within`.
    pub fn recent(mut self, within: Duration) -> ActionBuilder<state::Gated, In, Out>
    where
        P: state::NoPolicyYet,
    {
        self.spec.policy = Policy::Recent { within };
        self.to()
    }

    /// A bot check (all given must pass); see [`BotCheck`]. Public actions
    /// only, after their `.limit(..)`.
    pub fn bot_check(mut self, check: BotCheck) -> Self
    where
        P: state::PublicLimited,
    {
        self.spec.bot_checks.push(check);
        self
    }

    /// Attaches the handler: `async fn(Cx<S>, MaybeViewer, Valid<In>) ->
    /// Outcome<Out>` for a public action, `async fn(Cx<S>, Viewer,
    /// Valid<In>) -> Outcome<Out>` for a gated one. Only after a policy
    /// (and, for a public action, a `.limit(..)`); the compiler says which
    /// is missing.
    pub fn handler<S, F, Fut>(self, f: F) -> Action<S>
    where
        P: state::PolicyChosen + state::NoLimitOwed,
        S: Clone + Send + Sync + 'static,
        In: DeserializeOwned + garde::Validate + Send + 'static,
        In::Context: Default,
        Out: Dto,
        F: Fn(Cx<S>, P::Viewer, Valid<In>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome<Out>> + Send + 'static,
    {
        self.finish(move |cx, viewer: Option<Viewer>, input| {
            f(cx, <P as state::PolicyChosen>::viewer(viewer), input)
        })
    }
}

impl<In, Out> ActionBuilder<state::PublicUnlimited, In, Out> {
    /// The rate limit every public action owes.
    pub fn limit(mut self, limit: Limit) -> ActionBuilder<state::Public, In, Out> {
        self.spec.limits.push(limit);
        self.to()
    }
}

impl<In, Out> ActionBuilder<state::Public, In, Out> {
    /// Another limit (all must allow).
    pub fn limit(mut self, limit: Limit) -> Self {
        self.spec.limits.push(limit);
        self
    }
}

impl<In, Out> ActionBuilder<state::Gated, In, Out> {
    /// A rate limit (optional for gated actions).
    pub fn limit(mut self, limit: Limit) -> Self {
        self.spec.limits.push(limit);
        self
    }
}

/// The `I` inside the pipeline's type-erased input (a `Valid<I>`), for an
/// input limit's key function.
fn valid_input<I: 'static>(input: &(dyn std::any::Any + Send)) -> Option<&I> {
    input.downcast_ref::<Valid<I>>().map(|valid| &**valid)
}

impl<P, In, Out> ActionBuilder<P, In, Out>
where
    In: DeserializeOwned + garde::Validate + Send + 'static,
    In::Context: Default,
    Out: Dto,
{
    fn finish<S, F, Fut>(self, f: F) -> Action<S>
    where
        S: Clone + Send + Sync + 'static,
        F: Fn(Cx<S>, Option<Viewer>, Valid<In>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome<Out>> + Send + 'static,
    {
        let spec = self.spec;
        let shape = InputShape::of::<In>();
        let want = std::any::TypeId::of::<In>();
        let input_limit_mismatch = spec
            .input_limits
            .iter()
            .filter_map(|l| l.input_type())
            .find(|(id, _)| *id != want)
            .map(|(_, got)| got);
        Action {
            input_limit_mismatch,
            meta: ActionMeta {
                name: spec.name,
                policy: spec.policy,
                limits: spec.limits,
                input_limits: spec.input_limits,
                quotas: spec.quotas,
                bot_checks: spec.bot_checks,
                fail_open: spec.fail_open,
                body_limit: spec.body_limit,
                idempotent: spec.idempotent,
                input_type: std::any::type_name::<In>(),
                input_fields: shape.as_ref().map(|s| s.fields).unwrap_or(&[]),
                sealed_fields: shape.as_ref().map(|s| s.sealed.clone()).unwrap_or_default(),
                upload_fields: shape
                    .as_ref()
                    .map(|s| s.uploads.clone())
                    .unwrap_or_default(),
                input_validated: true,
                output_type: std::any::type_name::<Out>(),
                kind: spec.kind,
                effects: spec.effects,
                idempotency_declared: spec.idempotency.is_some(),
                allow_audit: spec.allow_audit,
                typescript: spec.typescript,
            },
            shape,
            exec: Box::new(Typed {
                f,
                _types: PhantomData::<fn(In) -> Out>,
            }),
        }
    }
}

/// A finished action, ready to be added to [`Actions`].
pub struct Action<S> {
    /// An input limit keyed on another type than the input (refused at build).
    pub(crate) input_limit_mismatch: Option<&'static str>,
    pub(crate) meta: ActionMeta,
    pub(crate) shape: Result<InputShape, ShapeError>,
    pub(crate) exec: Box<dyn Exec<S>>,
}

/// Builder methods called on a finished action: they exist only so that the
/// mistake is an error naming the fix ([`state::BeforeHandler`]), never
/// callable.
impl<S> Action<S> {
    #[doc(hidden)]
    pub fn public(self) -> Self
    where
        Self: state::BeforeHandler,
    {
        self
    }
    #[doc(hidden)]
    pub fn authenticated(self) -> Self
    where
        Self: state::BeforeHandler,
    {
        self
    }
    #[doc(hidden)]
    pub fn role(self, _role: &'static str) -> Self
    where
        Self: state::BeforeHandler,
    {
        self
    }
    #[doc(hidden)]
    pub fn recent(self, _within: Duration) -> Self
    where
        Self: state::BeforeHandler,
    {
        self
    }
    #[doc(hidden)]
    pub fn limit(self, _limit: Limit) -> Self
    where
        Self: state::BeforeHandler,
    {
        self
    }
}

impl<S> Action<S> {
    /// What the action declares (name, access, limits, bounds): the entry
    /// it contributes to the manifest.
    pub fn meta(&self) -> &ActionMeta {
        &self.meta
    }
}

/// The app's action registry.
pub struct Actions<S> {
    pub(crate) list: Vec<Action<S>>,
}

impl<S> Default for Actions<S> {
    fn default() -> Self {
        Actions { list: Vec::new() }
    }
}

impl<S> Actions<S> {
    /// Registers `action`; a name registered twice makes `build` fail with
    /// [`crate::BuildError::DuplicateAction`].
    pub fn add(&mut self, action: Action<S>) -> &mut Self {
        self.list.push(action);
        self
    }
}

/// A decoded, validated input of some action's type.
pub(crate) type AnyInput = Box<dyn Any + Send>;

/// A handler's result of some DTO type, not yet serialized.
pub(crate) trait AnyDto: Send {
    fn to_json(&self) -> Result<Box<serde_json::value::RawValue>, Rejection>;
}

impl<T: Dto> AnyDto for T {
    fn to_json(&self) -> Result<Box<serde_json::value::RawValue>, Rejection> {
        respond::to_json(self)
    }
}

/// The type-erased action, as the pipeline drives it: one method per stage.
pub(crate) trait Exec<S>: Send + Sync {
    /// Stage 6: decode (opening sealed fields with `opening`) and validate
    /// (failures worded in `lang`).
    fn decode<'a>(
        &'a self,
        kind: &'a BodyKind,
        body: Payload,
        shape: &'a InputShape,
        limits: &'a BodyLimits,
        opening: &'a Opening,
        lang: Lang,
    ) -> BoxFuture<'a, Result<(AnyInput, Reserved), Rejection>>;

    /// Stage 7: run the handler.
    fn call(
        &self,
        cx: Cx<S>,
        viewer: Option<Viewer>,
        input: AnyInput,
    ) -> BoxFuture<'static, Result<Box<dyn AnyDto>, ActionError>>;
}

struct Typed<F, I, O> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

impl<S, I, O, F, Fut> Exec<S> for Typed<F, I, O>
where
    S: Send + 'static,
    I: DeserializeOwned + garde::Validate + Send + 'static,
    I::Context: Default,
    O: Dto,
    F: Fn(Cx<S>, Option<Viewer>, Valid<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome<O>> + Send + 'static,
{
    fn decode<'a>(
        &'a self,
        kind: &'a BodyKind,
        body: Payload,
        shape: &'a InputShape,
        limits: &'a BodyLimits,
        opening: &'a Opening,
        lang: Lang,
    ) -> BoxFuture<'a, Result<(AnyInput, Reserved), Rejection>> {
        Box::pin(async move {
            let (decoded, reserved) =
                input::decode::<I>(kind, body, shape, limits, opening).await?;
            let valid = input::validate(decoded, shape, lang)?;
            Ok((Box::new(valid) as AnyInput, reserved))
        })
    }

    fn call(
        &self,
        cx: Cx<S>,
        viewer: Option<Viewer>,
        input: AnyInput,
    ) -> BoxFuture<'static, Result<Box<dyn AnyDto>, ActionError>> {
        let input = match input.downcast::<Valid<I>>() {
            Ok(input) => *input,
            Err(_) => {
                return Box::pin(async { Err(ActionError::internal("input type mismatch")) });
            }
        };
        let fut = (self.f)(cx, viewer, input);
        Box::pin(async move { fut.await.map(|o| Box::new(o) as Box<dyn AnyDto>) })
    }
}
