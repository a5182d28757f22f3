//! Stages 6c–f: what needs the decoded body but must pass before the
//! handler, in this order —
//!
//! * 6c bot checks (public actions: honeypot, proof of work, verifier;
//!   [`crate::botcheck`]) first, so an automated client that fails them
//!   cannot burn a real user's per-account budget (a lock-out attack);
//! * 6d the idempotency key ([`crate::idempotency`]): a key seen before
//!   replays its stored response, one still running is 409. The claim made
//!   here is settled by [`Claim::complete`] / [`Claim::abandon`] when the
//!   attempt finishes, so a failed attempt releases its key and the retry
//!   runs;
//! * 6e limits keyed on the submitted input (e.g. per account);
//! * 6f quotas, charged last so only a call that reaches the handler pays
//!   (stage 7 refunds a call that then fails).

use axum::response::Response;

use crate::action::AnyInput;
use crate::body::BodyKind;
use crate::botcheck::{self, BotEvidence};
use crate::error::Rejection;
use crate::idempotency::{self, Begin, Fingerprint};
use crate::ratelimit::{self, QuotaState};
use crate::viewer::Viewer;
use crate::wire;

use super::attempt::Attempt;
use super::input::Decoded;
use super::limit::Caller;
use super::resolve::Resolved;

/// Whether the handler runs, or a stored response is sent again.
pub(super) enum Guard {
    Run(Guarded),
    /// The idempotency key was seen and its call finished: its response.
    Replay(Response),
}

/// What stages 6c–f pass on: everything the handler's call needs.
pub(super) struct Guarded {
    pub caller: Caller,
    pub viewer: Option<Viewer>,
    pub input: AnyInput,
    /// What is left of each quota after this call was charged (empty when
    /// the action has none, or the backend is down and it fails open).
    pub quotas: Vec<(&'static str, QuotaState)>,
    /// The quotas' bucket keys, for a refund if the handler fails.
    pub quota_keys: Vec<String>,
}

/// An idempotency key this attempt holds: scoped by action and caller,
/// with the fingerprint of the body that claimed it.
pub(crate) struct Claim {
    key: String,
    request: Fingerprint,
}

impl Claim {
    /// Stores the response for replay (and returns it to be sent).
    pub(super) async fn complete(self, store: &idempotency::Store, response: Response) -> Response {
        store.complete(&self.key, self.request, response).await
    }

    /// Releases the key, so a retry of the refused call runs.
    pub(super) async fn abandon(&self, store: &idempotency::Store) {
        store.abandon(&self.key).await;
    }
}

pub(super) async fn guard<S>(
    resolved: &Resolved<'_, S>,
    decoded: Decoded,
    attempt: &mut Attempt,
) -> Result<Guard, Rejection> {
    let Decoded {
        kind,
        caller,
        viewer,
        quota_keys,
        input,
        reserved,
        body,
    } = decoded;
    let shared = resolved.shared();
    let (head, meta) = (resolved.head, resolved.meta);
    // 6c. Bot checks (public actions): honeypot, proof of work, verifier.
    if !meta.bot_checks.is_empty() {
        let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
        let evidence = BotEvidence {
            honeypot: reserved.honeypot.as_deref(),
            pow: header(wire::header::POW).or(reserved.pow.as_deref()),
            token: header(wire::header::BOT_TOKEN).or(reserved.bot_token.as_deref()),
        };
        botcheck::run(
            &meta.bot_checks,
            meta.name,
            evidence,
            caller.ip,
            &shared.directory().challenges,
            shared.limiter.store(),
            meta.fail_open,
        )
        .await?;
    }
    // 6d. Idempotency: a key seen before replays its stored response; one
    // still running is 409. Scoped by action and caller.
    let idem_key = head
        .headers
        .get(crate::wire::header::IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| reserved.idempotency_key.clone());
    if let Some(key) = idem_key {
        if !idempotency::valid(&key) {
            return Err(Rejection::with_message(
                crate::ErrorCode::MalformedBody,
                "Idempotency-Key must be 1-128 letters, digits, '-' or '_'.",
            ));
        }
        // Whose key it is: the viewer, else the session, else the browser
        // (anonymous-scope cookie, `crate::anon`); only a client that keeps
        // no cookies at all is scoped by its address.
        let caller_scope = match (&viewer, caller.session.id(), &caller.anon) {
            (Some(v), _, _) => format!("u{}", v.id()),
            (None, Some(id), _) => format!("s{id}"),
            (None, None, Some(scope)) => format!("a{}", scope.id()),
            (None, None, _) => format!("ip{}", caller.ip),
        };
        let scoped = format!("{}:{caller_scope}:{key}", meta.name);
        let boundary = match &kind {
            BodyKind::Multipart { boundary } => Some(boundary.as_str()),
            _ => None,
        };
        let request = idempotency::fingerprint(&body, boundary);
        match shared.idempotency.begin(&scoped, request).await? {
            Begin::Replay(response) => return Ok(Guard::Replay(response)),
            Begin::Run => {
                attempt.claimed = Some(Claim {
                    key: scoped,
                    request,
                })
            }
        }
    }
    // 6e. Limits keyed on the submitted input (e.g. per account).
    if !meta.input_limits.is_empty() {
        let keys = ratelimit::input_keys(meta.name, &meta.input_limits, input.as_ref(), caller.ip)?;
        let headers = shared
            .limiter
            .enforce(&meta.input_limits, keys, meta.fail_open)
            .await?;
        attempt.headers.extend(headers);
    }
    // 6f. Quotas: charged last, so only a call that reaches the handler pays.
    let quotas = shared
        .limiter
        .charge_quotas(&meta.quotas, quota_keys.clone(), meta.fail_open)
        .await?;
    Ok(Guard::Run(Guarded {
        caller,
        viewer,
        input,
        quotas,
        quota_keys,
    }))
}
