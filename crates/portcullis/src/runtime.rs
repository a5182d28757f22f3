//! The framework state one app's requests share (the pipeline, page
//! extractors, the webhook and API routes), built once by [`crate::app`].

use std::sync::Arc;

use serde::Serialize;

use crate::config::Config;
use crate::directory::{ActionMeta, Directory};
use crate::form::FormContext;
use crate::observe::{AuditSink, Metrics};
use crate::origin::CrossOriginRoute;
use crate::ratelimit::Limiter;
use crate::seal::Sealer;

/// Framework state shared by the pipeline and page extractors.
pub(crate) struct Runtime {
    pub(crate) config: Config,
    /// What forms need: the action directory (names → metadata and
    /// current ids), the sealing keys, the sign-in paths. The fragment
    /// engine holds the same `Arc`.
    pub(crate) forms: Arc<FormContext>,
    pub(crate) limiter: Limiter,
    /// Routes that accept cross-origin requests, with their authenticator.
    pub(crate) cross_origin_routes: Vec<CrossOriginRoute>,
    /// Idempotency keys (memory, or Redis when configured).
    pub(crate) idempotency: crate::idempotency::Store,
    /// Webhook deliveries already applied: a store that client-chosen
    /// idempotency keys cannot evict from, because an evicted delivery could
    /// be replayed inside its signature window. Written only after a valid
    /// signature (so only by whoever holds a webhook secret). In memory a
    /// store of its own, bounded like the idempotency store (bytes, 24 h
    /// TTL); on Redis the idempotency store itself (its entries are removed
    /// by TTL only, never by other callers' keys). See [`crate::store::Stores`].
    pub(crate) webhook_seen: crate::idempotency::Store,
    /// Fragments, render cache and tag versions.
    pub(crate) fragments: Arc<crate::fragment::Engine>,
    /// The in-process session cache in front of the session store (its
    /// state is documented on [`crate::store::SessionCache`]).
    pub(crate) session_cache: Arc<crate::store::SessionCache>,
    /// The same seal format under the `Flash` subkey (no-JS flash cookie).
    pub(crate) flash_sealer: Sealer,
    /// The largest body any action accepts: the stage-1 early refusal bound.
    pub(crate) body_ceiling: usize,
    /// Uploads being received now, per caller and in all (its state is
    /// documented on [`crate::upload::UploadSlots`]).
    pub(crate) upload_slots: Arc<crate::upload::UploadSlots>,
    /// Per-action counters and latency ([`crate::observe`]).
    pub(crate) metrics: Metrics,
    /// Called after each successful mutation, if the app installed one.
    pub(crate) audit: Option<Arc<dyn AuditSink>>,
    /// Current security stamps ([`crate::session`]), if the app installed one.
    pub(crate) accounts: Option<Arc<dyn crate::session::AccountDirectory>>,
    /// The security-header policy ([`crate::headers`]).
    pub(crate) headers: Arc<crate::headers::Compiled>,
    /// The app's error classifier ([`crate::Portcullis::error_classifier`]):
    /// set once by the builder, a function pointer, read by every place
    /// that turns one of this app's errors into a response.
    pub(crate) classifier: crate::error::Classifier,
}

impl Runtime {
    /// Action names → metadata and current ids.
    pub(crate) fn directory(&self) -> &Directory {
        &self.forms.directory
    }

    /// The action endpoint path for `name`.
    pub fn action_path(&self, name: &str) -> Option<String> {
        self.directory().action_path(name)
    }

    /// The sealing keys, for minting seals outside a page or action
    /// (see [`crate::seal::SealFor`]).
    pub fn sealer(&self) -> &Arc<Sealer> {
        &self.forms.sealer
    }

    /// Every registered action, as data.
    pub fn manifest(&self) -> Manifest {
        let directory = self.directory();
        Manifest {
            epoch: directory.ids.epoch(),
            actions: directory
                .metas
                .iter()
                .enumerate()
                .map(|(i, meta)| ManifestEntry {
                    id: directory.ids.current(i).to_string(),
                    body_limit: meta
                        .body_limit
                        .unwrap_or(self.config.body_limits.body_bytes),
                    meta: meta.clone(),
                })
                .collect(),
            cross_origin_routes: self.cross_origin_routes.clone(),
            security_headers: self.headers.manifest(),
        }
    }
}

/// The registered actions as data: what `manifest --json` prints and
/// `portcullis audit` reads.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The action-id epoch the ids below belong to (`unix time / rotation`);
    /// ids change when it does.
    pub epoch: u64,
    /// Every registered action, in registration order.
    pub actions: Vec<ManifestEntry>,
    /// Routes that accept cross-origin requests, and why that is safe.
    #[serde(rename = "crossOriginRoutes")]
    pub cross_origin_routes: Vec<CrossOriginRoute>,
    /// The response-header policy and its per-route overrides.
    #[serde(rename = "securityHeaders")]
    pub security_headers: crate::headers::HeadersManifest,
}

/// One action in the [`Manifest`]: its current id and what it declares.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    /// The action's opaque id in this epoch (its endpoint is
    /// `/_action/<id>`).
    pub id: String,
    /// What the action declares.
    #[serde(flatten)]
    pub meta: ActionMeta,
    /// Effective body cap in bytes (override or default).
    #[serde(rename = "effectiveBodyLimit")]
    pub body_limit: usize,
}
