//! Route handlers: the same protections for every non-action endpoint.
//!
//! * **App-wide origin protection.** Every route added with
//!   [`crate::Portcullis::pages`] sits behind [`guard`], which applies the
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

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use serde::Serialize;

use crate::app::Shared;
use crate::respond::{self, ClientKind};

/// A route that accepts cross-origin requests, and the authenticator that
/// makes that safe.
#[derive(Clone, Debug, Serialize)]
pub struct CrossOriginRoute {
    pub path: String,
    pub method: &'static str,
    pub authenticator: &'static str,
}

/// The app-wide origin guard (a `from_fn` middleware).
pub(crate) async fn guard(request: Request, next: Next) -> Response {
    let shared = request.extensions().get::<Arc<Shared>>().cloned();
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
            &"origin guard without ConnectInfo/Shared: serve with portcullis::serve",
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
