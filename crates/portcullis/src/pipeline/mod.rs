//! The spine: every action request passes these stages, in this order, in
//! [`stages`]. No application code runs before stage 7, with two narrow
//! exceptions an action opts into: rate-limit key functions (`per_key` in
//! stage 4, `per_input` in stage 6e) — pure functions that name a bucket,
//! whose panics become 500 — and a configured bot verifier (stage 6c).
//!
//! | # | stage    | file            | module                    | refuses with                              |
//! |---|----------|-----------------|---------------------------|-------------------------------------------|
//! | 1 | limits   | [`admit`]       | [`crate::limits`]         | 415, 413 (declared length)                |
//! | 2 | origin   | [`admit`]       | [`crate::origin`]         | 403 `cross_origin_request`                |
//! | 3 | resolve  | [`resolve`]     | [`crate::ids`]            | 400 `malformed_action_id`, 409 `stale_action` |
//! | 4 | limit    | [`limit`]       | [`crate::ratelimit`]      | 429 `rate_limited`, 503 `limiter_unavailable` |
//! | 5 | policy   | [`policy`]      | [`crate::policy`]         | 401 / 403                                 |
//! | 6a–b | decode | [`input`]      | [`crate::limits`], [`crate::input`], [`crate::seal`] | 413, 408, 400, 422; 400 `invalid_bound_argument` |
//! | 6c–f | guard  | [`guard`]      | [`crate::botcheck`], [`crate::idempotency`], input limits and quotas ([`crate::ratelimit`]) | 403 `bot_check_failed`; 409 / 422 (idempotency key); 429, 503 |
//! | 7 | handler  | [`handler`]     | the app                   | 404 / 422 / 500 (panics caught); 503 `deadline_exceeded` past the handler deadline |
//! | 8 | respond  | [`effects`]     | [`crate::respond`], [`crate::taint`] | 500 `internal` when a value refuses to serialize ([`crate::Secret`]) or the body holds a registered unique value |
//! | 9 | effects  | [`effects`]     | [`crate::cx`], [`crate::fragment`] | 503 `session_store_unavailable` when the handler's session write does not persist |
//!
//! Each stage is one file and one call in [`stages`]; it consumes the
//! previous stage's product and returns its own ([`admit::Admitted`] →
//! [`resolve::Resolved`] → [`limit::Limited`] → [`policy::Authorized`] →
//! [`input::Decoded`] → [`guard::Guarded`] → [`handler::Handled`] → the
//! response), so a stage cannot read what an earlier one has not produced
//! yet. What [`run`] needs even when a stage refuses (the client kind, the
//! return path, the claimed idempotency key, the no-JS flash source, headers
//! to add, the action name for the metrics) lives in the request-scoped
//! [`attempt::Attempt`], the one thing every stage may write.
//!
//! Stages 1–5 look at headers only; the body is first read in stage 6. So a
//! rate-limited flood is refused (429) before a byte of its body is read.
//! What needs the body — bot checks (honeypot and PoW fields), limits keyed
//! on the submitted input (e.g. per account on a login form) and quotas —
//! runs in stage 6 after validation and before the handler, in that order:
//! bot checks first, so an automated client that fails them cannot burn a
//! real user's per-account budget (a lock-out attack); a quota last, so only
//! a call that reaches the handler is charged (and a failed handler is
//! refunded).
//!
//! Sealed fields are opened in stage 6 against the action resolved in
//! stage 3 and the session loaded in stage 5, so a seal cannot be moved to
//! another action or session. The taint scan of stage 8 runs over the final
//! response bytes (and the redirect target), so it sees exactly what would
//! be sent; refusals are scanned too ([`crate::respond::failure`]).
//!
//! Adding a stage: a file here with its product type, one numbered call in
//! [`stages`], a row in the table above (and in ARCHITECTURE.md); a field on
//! [`attempt::Attempt`] only if [`run`] needs it after a refusal.

mod admit;
mod attempt;
mod effects;
mod guard;
mod handler;
mod input;
mod limit;
mod policy;
mod resolve;

use axum::extract::Request;
use axum::response::Response;
use tracing::Instrument;

use crate::action::Action;
use crate::error::Rejection;
use crate::input::InputShape;
use crate::runtime::Runtime;

use attempt::Attempt;

/// What the pipeline runs on for one app: the runtime, the app's state and
/// its actions (handler and learned input shape, indexed like the
/// directory's ids). Built once by [`crate::app`]; read-only.
pub(crate) struct Inner<S> {
    pub shared: std::sync::Arc<Runtime>,
    pub state: S,
    pub actions: Vec<(Action<S>, InputShape)>,
}

/// Runs one action request through every stage, inside an `action` span,
/// and reports the outcome to the metrics ([`crate::observe`]). `id` is the
/// action id the router decoded from the path; `None` when the app's stack
/// dispatched the request itself, and the id is the path's last segment as
/// it stands ([`crate::app::stack::direct_action_id`]).
pub(crate) async fn run<S: Clone + Send + Sync + 'static>(
    app: &Inner<S>,
    id: Option<&str>,
    request: Request,
) -> Response {
    let started = std::time::Instant::now();
    let mut attempt = Attempt::new(request.headers());
    let span = attempt.span();
    let outcome = stages(app, id, request, &mut attempt)
        .instrument(span.clone())
        .await;
    attempt.finish(&app.shared, outcome, &span, started).await
}

/// The stage order, one call per stage. A refusal (`Err`) ends the attempt;
/// [`Attempt::finish`] turns it into the response.
async fn stages<S: Clone + Send + Sync + 'static>(
    app: &Inner<S>,
    id: Option<&str>,
    request: Request,
    attempt: &mut Attempt,
) -> Result<Response, Rejection> {
    let (head, body) = request.into_parts();
    let id = match id {
        Some(id) => id,
        None => head
            .uri
            .path()
            .strip_prefix(crate::wire::ACTION_PREFIX)
            .unwrap_or_default(),
    };

    // 1–2. Admit: content type and declared length, then origin: cross-origin
    // state changes are refused from the headers alone.
    let admitted = admit::admit(&app.shared, &head, attempt)?;

    // 3. Resolve: opaque id → action.
    let resolved = resolve::resolve(app, &head, id, attempt)?;

    // 4. Rate limit (identity is read from the session only if a key needs it).
    let limited = limit::limit(&resolved, admitted, attempt).await?;

    // 5. Policy: identity from the session, never from the payload.
    let authorized = policy::authorize(&resolved, limited).await?;

    // 6a–b. Decode + validate: the body is read only now, under the action's
    // cap; sealed fields open only for this action and session.
    let decoded = input::decode(&resolved, body, authorized, attempt).await?;

    // 6c–f. Guard: bot checks, idempotency key (a replay answers here),
    // limits keyed on the input, quotas (charged last).
    let guarded = match guard::guard(&resolved, decoded, attempt).await? {
        guard::Guard::Run(guarded) => guarded,
        guard::Guard::Replay(stored) => return Ok(stored),
    };

    // 7. Handler: app code, with panics caught, under the handler deadline.
    let handled = handler::call(&resolved, guarded, attempt).await?;

    // 8. Respond: only the DTO, serialized here (a Secret fails it closed).
    let result_json = handled.result.to_json()?;

    // 9. Effects: tags, paths, the session write, fragments, the envelope
    // (taint-scanned), the audit record and cookies — this response only.
    effects::apply(&resolved, handled, result_json, attempt).await
}
