//! Assembling an app: actions, pages, sessions → one axum `Router`.
//!
//! [`Portcullis::build`] is where start-up checks happen: duplicate action
//! names, input types whose fields cannot be learned. It then mounts the
//! action endpoint (`POST /_action/{id}` only; any other method is 405), the
//! app's page routes (behind the taint scan, [`crate::routes::scan_response`]),
//! and the session layer, and shares the framework state with page
//! extractors through a request extension.

mod builder;
pub(crate) mod stack;

use std::sync::Arc;

use axum::Router;

use crate::runtime::Runtime;

pub use crate::body::BodyLimits;
pub use crate::config::{Config, ConfigError, Deadlines, Mode, RedisUrl};
pub use crate::observe::{AuditEvent, AuditSink, Metrics};
pub use crate::runtime::{Manifest, ManifestEntry};
pub use crate::server::{
    ServeConfig, ServeConfigError, serve, serve_until, serve_with, shutdown_signal,
};
pub use builder::{BuildError, Portcullis, WATCHDOG_EVERY};

/// A built app: its router and the framework state.
#[derive(Clone)]
pub struct App {
    router: Router,
    runtime: Arc<Runtime>,
}

impl App {
    /// The app's full router (actions, pages, webhooks, API, with every
    /// framework layer applied), to serve or nest; clones share one runtime.
    ///
    /// The app is this router's *fallback* (one service that runs the
    /// framework's steps once per request instead of once per route, see
    /// `app/stack.rs`), so: do not set a fallback on it, which would
    /// replace the app, and do not merge a router that has a fallback of
    /// its own (axum refuses two). A custom 404 page belongs on the router
    /// given to [`crate::Portcullis::pages`], where it gets the security
    /// headers and the taint scan like every page. Routes added to this
    /// router directly run outside the framework's steps, and take
    /// precedence over the app's.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Every registered action, as data (what `manifest --json` prints and
    /// `portcullis audit` reads).
    pub fn manifest(&self) -> Manifest {
        self.runtime.manifest()
    }

    /// The current endpoint path of `action` (`/_action/<opaque id>`), if
    /// the app registered it. Ids rotate; ask again rather than keep one.
    pub fn action_path<In, Out>(&self, action: crate::ActionRef<In, Out>) -> Option<String> {
        self.runtime.action_path(action.name())
    }

    /// The configuration the app was built with.
    pub fn config(&self) -> &Config {
        &self.runtime.config
    }

    /// The fragment engine: render cache, tag versions. Routes outside the
    /// action pipeline (an API handler, a job) call
    /// [`Engine::update_tag`](crate::fragment::Engine::update_tag) on it;
    /// the same handle is a request extension
    /// (`Extension<Arc<portcullis::fragment::Engine>>`) of every route.
    pub fn fragments(&self) -> &Arc<crate::fragment::Engine> {
        &self.runtime.fragments
    }

    /// The in-process session cache: its counters and bounds
    /// ([`crate::store::SessionCache`]).
    pub fn session_cache(&self) -> &Arc<crate::store::SessionCache> {
        &self.runtime.session_cache
    }

    /// The action metrics (Prometheus text via [`Metrics::encode`]).
    pub fn metrics(&self) -> &Metrics {
        &self.runtime.metrics
    }

    /// The security-header policy in force (its report counters).
    pub fn security_headers(&self) -> &crate::headers::Compiled {
        &self.runtime.headers
    }

    #[cfg(feature = "testing")]
    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The admin router: `GET /metrics` (Prometheus text). Serve it on a
    /// separate, private listener (the demo uses `PORTCULLIS_ADMIN_ADDR`),
    /// never merged into the public router: metrics name every action and
    /// show traffic patterns.
    pub fn admin_router(&self) -> Router {
        let shared = self.runtime.clone();
        Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let shared = shared.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        shared.metrics.encode(),
                    )
                }
            }),
        )
    }
}
