//! The spine: every action request passes these stages, in this order, in
//! [`run`]. No application code runs before stage 7, with two narrow
//! exceptions an action opts into: rate-limit key functions (`per_key` in
//! stage 4, `per_input` in stage 6) — pure functions that name a bucket, whose
//! panics become 500 — and a configured bot verifier (stage 6).
//!
//! | # | stage    | module                    | refuses with                              |
//! |---|----------|---------------------------|-------------------------------------------|
//! | 1 | limits   | [`crate::limits`]         | 415, 413 (declared length)                |
//! | 2 | origin   | [`crate::origin`]         | 403 `cross_origin_request`                |
//! | 3 | resolve  | [`crate::ids`]            | 400 `malformed_action_id`, 409 `stale_action` |
//! | 4 | limit    | [`crate::ratelimit`]      | 429 `rate_limited`, 503 `limiter_unavailable` |
//! | 5 | policy   | [`crate::policy`]         | 401 / 403                                 |
//! | 6 | decode   | [`crate::limits`], [`crate::decode`], [`crate::validate`], [`crate::seal`], then [`crate::botcheck`], input limits and quotas ([`crate::ratelimit`]) | 413, 408, 400, 422; 400 `invalid_bound_argument`; 403 `bot_check_failed`, 429, 503 |
//! | 7 | handler  | the app                   | 404 / 422 / 500 (panics caught); 503 `deadline_exceeded` past the handler deadline; 503 `session_store_unavailable` when its session write does not persist |
//! | 8 | respond  | [`crate::respond`], [`crate::taint`] | 500 `internal` when a value refuses to serialize ([`crate::Secret`]) or the body holds a registered unique value |
//! | 9 | effects  | [`crate::cx`]             | –                                         |
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

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use futures::FutureExt;
use http::{HeaderName, HeaderValue};
use tower_sessions::Session;
use tracing::Instrument;

use crate::app::Inner;
use crate::cx::{Cx, Effects};
use crate::decode::RETURN_FIELD;
use crate::error::Rejection;
use crate::limits::{self, BodyKind};
use crate::observe::{self, AuditEvent, Observed};
use crate::ratelimit::{self, KeyRequest};
use crate::respond::{self, ClientKind, Success};
use crate::seal::{self, Opening};
use crate::session::{self, Auth};

/// Request header in which the client runtime lists the fragment keys its
/// page shows (space separated).
pub const FRAGMENTS_HEADER: &str = "portcullis-fragments";

/// Runs one action request through every stage, inside an `action` span,
/// and reports the outcome to the metrics ([`crate::observe`]).
pub(crate) async fn run<S: Clone + Send + Sync + 'static>(
    inner: &Inner<S>,
    id: &str,
    request: Request,
) -> Response {
    let started = std::time::Instant::now();
    let request_id = observe::request_id();
    // Only names, ids and codes go into the span: never input or cookies.
    let span = tracing::info_span!(
        "action",
        action = tracing::field::Empty,
        viewer = tracing::field::Empty,
        request_id = %request_id,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let client = ClientKind::from_headers(request.headers());
    let mut extra_headers = Vec::new();
    let mut return_to = None;
    let mut claimed = None;
    let mut flash = None;
    let mut observed = Observed::default();
    let outcome = stages(
        inner,
        id,
        request,
        &mut extra_headers,
        &mut return_to,
        &mut claimed,
        &mut flash,
        &mut observed,
        &request_id,
    )
    .instrument(span.clone())
    .await;
    let idem = &inner.shared.idempotency;
    let (mut response, code) = match outcome {
        Ok(response) => {
            let response = match &claimed {
                Some((key, request)) => idem.complete(key, *request, response).await,
                None => response,
            };
            (response, "ok")
        }
        Err(rejection) => {
            if let Some((key, _)) = &claimed {
                idem.abandon(key).await;
            }
            span.in_scope(|| {
                tracing::debug!(code = %rejection.code, digest = %rejection.digest, "action refused")
            });
            let code = rejection.code.as_str();
            // No-JS 422: 303 back to the form with a sealed flash.
            let response = crate::flash::redirect_back(
                &inner.shared,
                client,
                &rejection,
                return_to.as_deref(),
                flash,
            )
            .unwrap_or_else(|| {
                respond::failure(
                    client,
                    &rejection,
                    &inner.shared.config,
                    return_to.as_deref(),
                )
            });
            (response, code)
        }
    };
    for (name, value) in extra_headers {
        response.headers_mut().append(name, value);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let took = started.elapsed();
    let action = observed.action.unwrap_or(observe::UNRESOLVED);
    inner.shared.metrics.observe(action, code, took);
    span.record("outcome", code);
    span.record("duration_ms", took.as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::info!("action finished"));
    response
}

// The out-parameters are the request's running state that `run` needs even
// when a stage refuses (headers to add, return path, claimed idempotency key,
// flash source, what to report to metrics).
#[allow(clippy::too_many_arguments)]
async fn stages<S: Clone + Send + Sync + 'static>(
    inner: &Inner<S>,
    id: &str,
    request: Request,
    extra_headers: &mut Vec<(HeaderName, HeaderValue)>,
    return_to: &mut Option<String>,
    claimed: &mut Option<(String, crate::idempotency::Fingerprint)>,
    flash: &mut Option<crate::flash::Source>,
    observed: &mut Observed,
    request_id: &str,
) -> Result<Response, Rejection> {
    let shared = &inner.shared;
    let config = &shared.config;
    let (parts, body) = request.into_parts();
    let client = ClientKind::from_headers(&parts.headers);
    let peer = peer_ip(&parts.extensions)?;
    // The no-JS return path rides in the query string, so even a refusal
    // before the body is read can link back (it is validated when used).
    if let Some(query) = parts.uri.query() {
        *return_to = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == RETURN_FIELD)
            .map(|(_, v)| v.into_owned());
    }

    // 1. Limits: content type and declared length, from headers alone.
    let kind = BodyKind::from_headers(&parts.headers)?;
    limits::check_declared_length(&parts.headers, shared.body_ceiling)?;

    // 2. Origin: cross-origin state changes are refused before the body is read.
    config
        .origin
        .check(&parts.method, &parts.headers, peer, &config.proxies)?;

    // 3. Resolve: opaque id → action.
    let index = shared.ids.resolve(id)?;
    let (action, shape) = &inner.actions[index];
    let meta = &action.meta;
    observed.action = Some(meta.name);
    tracing::Span::current().record("action", meta.name);

    // 4. Rate limit (identity is read from the session only if a key needs it).
    let session = parts
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| Rejection::internal(&"session layer missing"))?;
    let client_ip = config.proxies.client_ip(peer, &parts.headers);
    let mut viewer = None;
    let mut viewer_loaded = false;
    let needs_viewer = |l: &ratelimit::Limit| l.key.needs_viewer();
    if meta.limits.iter().any(needs_viewer) || meta.quotas.iter().any(|q| needs_viewer(&q.limit)) {
        viewer = session::load_viewer(
            &session,
            config.session_absolute,
            shared.accounts.as_deref(),
        )
        .await?;
        viewer_loaded = true;
    }
    let session_id = session.id().map(|id| id.to_string());
    let anon = parts.extensions.get::<crate::anon::AnonScope>().cloned();
    let key_request = KeyRequest {
        ip: client_ip,
        session: session_id.as_deref(),
        viewer: viewer.as_ref(),
        headers: &parts.headers,
    };
    let keys = ratelimit::request_keys(meta.name, "r", &meta.limits, &key_request)?;
    // Quota keys come from the request too; computed now, charged in stage 6.
    let quota_limits: Vec<ratelimit::Limit> = meta.quotas.iter().map(|q| q.limit.clone()).collect();
    let quota_keys: Vec<String> =
        ratelimit::request_keys(meta.name, "q", &quota_limits, &key_request)?
            .into_iter()
            .zip(&meta.quotas)
            .map(|(k, q)| format!("{k}:{}", q.name))
            .collect();
    let headers = shared
        .limiter
        .enforce(&meta.limits, keys, meta.fail_open)
        .await?;
    extra_headers.extend(headers);

    // 5. Policy: identity from the session, never from the payload.
    if !viewer_loaded {
        viewer = session::load_viewer(
            &session,
            config.session_absolute,
            shared.accounts.as_deref(),
        )
        .await?;
    }
    if let Some(v) = &viewer {
        tracing::Span::current().record("viewer", v.id());
    }
    meta.policy.check(viewer.as_ref())?;

    // 6. Decode + validate: the body is read only now, under the action's cap.
    let cap = meta.body_limit.unwrap_or(config.limits.body_bytes);
    limits::check_declared_length(&parts.headers, cap)?;
    let bytes = limits::read_body(body, cap, config.limits.body_timeout).await?;
    // After the policy: the session id is final for this request.
    let binding = crate::anon::seal_binding(&session, anon.as_ref());
    if client == ClientKind::Html {
        // Kept (a refcount, not a copy) for the no-JS flash should stage 6 refuse.
        *flash = Some(crate::flash::Source::new(
            meta.name,
            binding.clone(),
            parts.uri.query(),
            &kind,
            &bytes,
        ));
    }
    // Seals open only for this action, in this session, before their expiry.
    let opening = Opening::new(shared.sealer.clone(), meta.name, binding, seal::unix_now());
    // Kept (a refcount) for the idempotency fingerprint, should a key come.
    let body_for_fingerprint = bytes.clone();
    let (input, reserved) = action
        .exec
        .decode(&kind, bytes, shape, &config.limits, &opening)
        .await?;
    if reserved.return_to.is_some() {
        *return_to = reserved.return_to.clone();
    }
    // 6c. Bot checks (public actions): honeypot, proof of work, verifier.
    crate::botcheck::run(
        &meta.bot_checks,
        meta.name,
        &reserved,
        &parts.headers,
        client_ip,
        &shared.challenges,
        shared.limiter.store(),
        meta.fail_open,
    )
    .await?;
    // 6d. Idempotency: a key seen before replays its stored response; one
    // still running is 409. Scoped by action and caller.
    let idem_key = parts
        .headers
        .get(crate::idempotency::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| reserved.idempotency_key.clone());
    if let Some(key) = idem_key {
        if !crate::idempotency::valid(&key) {
            return Err(Rejection::with_message(
                crate::ErrorCode::MalformedBody,
                "Idempotency-Key must be 1-128 letters, digits, '-' or '_'.",
            ));
        }
        // Whose key it is: the viewer, else the session, else the browser
        // (anonymous-scope cookie, `crate::anon`); only a client that keeps
        // no cookies at all is scoped by its address.
        let caller = match (&viewer, session.id(), &anon) {
            (Some(v), _, _) => format!("u{}", v.id()),
            (None, Some(id), _) => format!("s{id}"),
            (None, None, Some(scope)) => format!("a{}", scope.id()),
            (None, None, _) => format!("ip{client_ip}"),
        };
        let scoped = format!("{}:{caller}:{key}", meta.name);
        let boundary = match &kind {
            BodyKind::Multipart { boundary } => Some(boundary.as_str()),
            _ => None,
        };
        let request = crate::idempotency::fingerprint(&body_for_fingerprint, boundary);
        match shared.idempotency.begin(&scoped, request).await? {
            crate::idempotency::Begin::Replay(response) => return Ok(response),
            crate::idempotency::Begin::Run => *claimed = Some((scoped, request)),
        }
    }
    // 6e. Limits keyed on the submitted input (e.g. per account).
    if !meta.input_limits.is_empty() {
        let keys = ratelimit::input_keys(meta.name, &meta.input_limits, input.as_ref(), client_ip)?;
        let headers = shared
            .limiter
            .enforce(&meta.input_limits, keys, meta.fail_open)
            .await?;
        extra_headers.extend(headers);
    }
    // 6f. Quotas: charged last, so only a call that reaches the handler pays.
    let quotas = shared
        .limiter
        .charge_quotas(&meta.quotas, quota_keys.clone(), meta.fail_open)
        .await?;
    let charged = !quotas.is_empty();

    // 7. Handler: app code, with panics caught, under the handler deadline
    // (the bound on dependencies the framework cannot see, e.g. the app's
    // database: a hung one answers 503 instead of hanging the request).
    let effects = Arc::new(Mutex::new(Effects::default()));
    let session_after = session.clone();
    let cx = Cx::new(
        inner.state.clone(),
        Auth::new(session, shared.accounts.clone()),
        client_ip,
        return_to.clone(),
        effects.clone(),
        shared.sealer.clone(),
    )
    .with_quotas(quotas)
    .with_anon(anon)
    .with_secure_cookies(config.secure_cookies);
    let audit_record = cx.audit_slot();
    let viewer_id = viewer.as_ref().map(|v| v.id());
    let viewer_for_fragments = viewer.clone();
    let handler_deadline = config.deadlines.handler;
    let outcome = tokio::time::timeout(
        handler_deadline,
        std::panic::AssertUnwindSafe(action.exec.call(cx, viewer, input)).catch_unwind(),
    )
    .await;
    if charged && !matches!(outcome, Ok(Ok(Ok(_)))) {
        // A quota counts calls that succeeded (in time).
        shared.limiter.refund(&meta.quotas, quota_keys).await;
    }
    let Ok(outcome) = outcome else {
        let r = crate::store::deadline_exceeded();
        tracing::warn!(digest = %r.digest, after_ms = handler_deadline.as_millis() as u64, "handler did not finish within its deadline; 503");
        return Err(r);
    };
    let result = match outcome {
        Ok(Ok(result)) => {
            crate::store::app_dependencies().ok();
            result
        }
        Ok(Err(error)) => return Err(error.into_rejection()),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            return Err(Rejection::internal(&format_args!(
                "action `{}` panicked: {detail}",
                meta.name
            )));
        }
    };

    // 8. Respond: only the DTO, serialized here (a Secret fails it closed).
    let result_json = result.to_json()?;

    // 9. Effects: applied to this one response; then the taint scan over the
    // final bytes (stage 8's second half), before anything is sent.
    let effects = std::mem::take(&mut *effects.lock().unwrap_or_else(|e| e.into_inner()));
    check_declared_tags(shared, meta, &effects.updated);
    let engine = &shared.fragments;
    for tag in &effects.updated {
        engine.update_tag(tag);
    }
    for tag in &effects.revalidated {
        engine.revalidate_tag(tag);
    }
    for path in &effects.paths {
        engine.revalidate_path(path);
    }
    // The session write (sign-in, step-up, session data) must persist before
    // success is reported or stored for replay: a store that is down makes
    // this 503 `session_store_unavailable`, and tower-sessions sets no cookie.
    crate::store::persist_session(&session_after).await?;
    // Read-your-own-writes: the fragments the caller's page shows that read
    // an updated tag come back in this response (JSON clients only; a no-JS
    // browser is redirected and re-renders the page anyway).
    let fragments =
        if client == ClientKind::Json && (effects.refresh || !effects.updated.is_empty()) {
            let requested: Vec<&str> = parts
                .headers
                .get(FRAGMENTS_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(crate::fragment::requested_keys)
                .unwrap_or_default();
            engine
                .affected(
                    shared,
                    &requested,
                    &effects.updated,
                    effects.refresh,
                    viewer_for_fragments.as_ref(),
                )
                .await
        } else {
            Vec::new()
        };
    let revalidated = effects.revalidates();
    let mut response = respond::success(
        client,
        Success {
            result_json,
            redirect: effects.redirect,
            return_to: return_to.clone(),
            fragments,
            revalidated,
        },
    )?;
    // A success the client will see: record the mutation before sending.
    if let (Some(sink), true) = (&shared.audit, meta.is_mutation()) {
        let record = audit_record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let recorded = tokio::time::timeout(
            handler_deadline,
            sink.record(AuditEvent {
                action: meta.name,
                viewer: viewer_id,
                record,
                request_id: request_id.to_owned(),
                at: std::time::SystemTime::now(),
            }),
        )
        .await;
        if recorded.is_err() {
            tracing::error!(
                action = meta.name,
                request_id,
                "audit sink did not finish within the handler deadline"
            );
        }
    }
    for cookie in effects.cookies {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(http::header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

/// A declaration `update_tag:x` promises that every successful call expires
/// tag `x` or a tag of the family `x:…` (`update_tag:comments` is kept by
/// `comments:42`). A call that succeeds without keeping the promise is a
/// bug in the app — its declaration (what reviewers, the audit and the
/// manifest read) no longer matches what it does, typically a cache entry
/// left stale — so it is logged at error level and counted
/// (`portcullis_declared_tag_not_updated`). It is not turned into a failure:
/// the handler's writes are already committed, and a 500 would invite a
/// retry of a mutation that succeeded. Declare only the tags *every*
/// successful call updates; one updated only on some paths (say, the list
/// when a rename changes the order) is named in a comment, not declared.
fn check_declared_tags(
    shared: &crate::app::Shared,
    meta: &crate::action::ActionMeta,
    updated: &[String],
) {
    for declared in &meta.effects {
        let Some(family) = declared.strip_prefix("update_tag:") else {
            continue;
        };
        let kept = updated.iter().any(|tag| {
            tag == family
                || tag
                    .strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with(':'))
        });
        if !kept {
            shared.metrics.declared_tag_not_updated(meta.name);
            tracing::error!(
                action = meta.name,
                declared = *declared,
                "action declares `{declared}` but returned successfully without updating that tag; fix the handler or the declaration"
            );
        }
    }
}

/// The TCP peer, from `ConnectInfo` (set by [`crate::serve`]).
fn peer_ip(extensions: &http::Extensions) -> Result<IpAddr, Rejection> {
    match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => Ok(addr.ip()),
        None => {
            // Without the peer, neither trusted proxies nor per-ip limits can
            // work; refuse rather than guess.
            Err(Rejection::internal(
                &"no ConnectInfo<SocketAddr>: serve the app with portcullis::serve",
            ))
        }
    }
}
