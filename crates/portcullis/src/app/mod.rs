//! Assembling an app: actions, pages, sessions → one axum `Router`.
//!
//! [`Portcullis::build`] is where start-up checks happen: duplicate action
//! names, input types whose fields cannot be learned. It then mounts the
//! action endpoint (`POST /_action/{id}` only; any other method is 405), the
//! app's page routes (behind the taint scan, [`crate::routes::scan_response`]),
//! and the session layer, and shares the framework state with page
//! extractors through a request extension.

mod builder;

use std::sync::Arc;

use axum::Router;

pub use crate::runtime::Shared;
pub use crate::runtime::{Manifest, ManifestEntry};
pub use builder::{BuildError, Portcullis, WATCHDOG_EVERY};

/// A built app: its router and the framework state.
#[derive(Clone)]
pub struct App {
    router: Router,
    shared: Arc<Shared>,
}

impl App {
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn manifest(&self) -> Manifest {
        self.shared.manifest()
    }

    /// The admin router: `GET /metrics` (Prometheus text). Serve it on a
    /// separate, private listener (the demo uses `PORTCULLIS_ADMIN_ADDR`),
    /// never merged into the public router: metrics name every action and
    /// show traffic patterns.
    pub fn admin_router(&self) -> Router {
        let shared = self.shared.clone();
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
