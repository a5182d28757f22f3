//! Route handlers: the same protections for every non-action endpoint.
//!
//! * **App-wide origin protection.** Every route added with
//!   [`crate::Portcullis::pages`] sits behind `guard`, which applies the
//!   stage-2 cross-origin check to every unsafe method (POST, PUT, PATCH,
//!   DELETE) — not only to actions. There is no switch to turn it off for a
//!   route. A route that must accept cross-origin calls is registered with a
//!   builder that names another authenticator instead
//!   ([`crate::Portcullis::webhook`]: HMAC signature); such routes are mounted
//!   outside the guard and listed in the manifest (`crossOriginRoutes`), so
//!   `audit` and reviewers see every exception.
//! * **Method discipline.** axum routes declare their methods; any other
//!   method gets 405 with `Allow`. GET handlers receive the read-only
//!   [`crate::Page`] (no cookie writes, no cache effects), like page renders.
//! * **Failures outside a handler become responses here**, since only this
//!   layer may make a response out of what a lower module reports: a page
//!   past its deadline (`page_deadline`), a session write that failed
//!   after the handler (`session_guard`, over [`crate::store`]'s fault
//!   flag), a page body holding a registered secret ([`scan_response`], over
//!   [`crate::taint::scan`]).

pub mod api;
pub mod webhook;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::header;

use crate::error::Rejection;
use crate::respond::{self, ClientKind};
use crate::runtime::Runtime;

pub use crate::origin::CrossOriginRoute;

/// The app-wide origin guard (a `from_fn` middleware).
pub(crate) async fn guard(request: Request, next: Next) -> Response {
    let shared = request.extensions().get::<Arc<Runtime>>().cloned();
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let (Some(shared), Some(peer)) = (shared, peer) {
        let config = &shared.config;
        if let Err(rejection) =
            config
                .origin
                .check(request.method(), request.headers(), peer, &config.proxies)
        {
            let client = ClientKind::from_headers(request.headers());
            return respond::failure(client, &rejection, config, None);
        }
    } else if !request.method().is_safe() {
        // Without the framework state or the peer the check cannot run:
        // refuse unsafe methods rather than let them through unchecked.
        let r = crate::Rejection::internal(
            &"origin guard without ConnectInfo/Runtime: serve with portcullis::serve",
        );
        return respond::failure_with_paths(ClientKind::Json, &r, "/login", "/reauth", None);
    }
    next.run(request).await
}

/// Runs a page (any route the app added with `pages`) under `after`: a page
/// waiting on a hung dependency answers `503 deadline_exceeded` (an HTML
/// page for browsers) instead of hanging. Pages only read, so abandoning
/// one half-way changes nothing.
pub(crate) async fn page_deadline(
    after: std::time::Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let client = crate::respond::ClientKind::from_headers(request.headers());
    match tokio::time::timeout(after, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let r = crate::store::deadline_exceeded();
            tracing::warn!(digest = %r.digest, after_ms = after.as_millis() as u64, "page did not finish within its deadline; 503");
            crate::respond::failure_with_paths(client, &r, "/", "/", None)
        }
    }
}

/// Outside the session layer: gives the request (`run`) a fault flag and turns
/// the bare, empty `500` that tower-sessions sends when saving the session
/// after the handler fails into `503 session_store_unavailable` (JSON or an
/// HTML page, by `client`), with `Retry-After` and a digest. tower-sessions
/// does not set the session cookie in that case, so a sign-in whose session
/// did not persist is never reported as a success.
pub(crate) async fn session_guard(
    login_path: &str,
    reauth_path: &str,
    client: ClientKind,
    run: impl std::future::Future<Output = Response>,
) -> Response {
    let (response, faulted) = crate::store::watch_session_faults(run).await;
    if faulted
        && response.status() == http::StatusCode::INTERNAL_SERVER_ERROR
        && !response.headers().contains_key(http::header::CONTENT_TYPE)
    {
        let r = crate::store::session_unavailable();
        tracing::debug!(digest = %r.digest, "session not saved after the handler; 503");
        return respond::failure_with_paths(client, &r, login_path, reauth_path, None);
    }
    response
}

/// The largest page body [`scan_response`] buffers to scan; larger bodies of
/// a scanned type fail closed.
pub const MAX_SCANNED_BODY: usize = 16 * 1024 * 1024;

/// Whether `scan_response` looks at a body of this content type: text and
/// JSON, not streams or binary assets.
fn scanned_type(response: &Response) -> bool {
    let Some(ct) = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ct = ct.trim_start().to_ascii_lowercase();
    (ct.starts_with("text/") && !ct.starts_with("text/event-stream"))
        || ct.starts_with("application/json")
        || ct.starts_with("application/javascript")
        || ct.contains("+json")
        || ct.contains("+xml")
}

/// Scans a page response (middleware for `axum::middleware::map_response`).
/// Installed on the app's page routes by [`crate::Portcullis::build`]; use it
/// on any other router that renders HTML or JSON:
///
/// ```rust,ignore
/// let router = router.layer(axum::middleware::map_response(portcullis::routes::scan_response));
/// ```
///
/// Text and JSON bodies are buffered (up to [`MAX_SCANNED_BODY`]) only while
/// the registry holds a value; streams (`text/event-stream`) and binary
/// types pass untouched.
pub async fn scan_response(response: Response) -> Response {
    use http_body_util::BodyExt;
    if crate::taint::nothing_to_scan() || !scanned_type(&response) {
        return response;
    }
    let client = match response.headers().get(header::CONTENT_TYPE) {
        Some(v) if v.as_bytes().starts_with(b"application/json") => ClientKind::Json,
        _ => ClientKind::Html,
    };
    let (parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_SCANNED_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let r = Rejection::internal(&format_args!(
                "page body could not be scanned for secrets: {e}"
            ));
            return respond::failure_with_paths(client, &r, "/", "/", None);
        }
    };
    match respond::scan(&bytes) {
        Ok(()) => Response::from_parts(parts, Body::from(bytes)),
        Err(rejection) => respond::failure_with_paths(client, &rejection, "/", "/", None),
    }
}
