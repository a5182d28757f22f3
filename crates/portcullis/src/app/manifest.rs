//! The registered actions as data: what `manifest --json` prints and
//! `portcullis audit` reads.

use serde::Serialize;

use crate::action::ActionMeta;

/// The registered actions as data (`manifest --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub epoch: u64,
    pub actions: Vec<ManifestEntry>,
    /// Routes that accept cross-origin requests, and why that is safe.
    #[serde(rename = "crossOriginRoutes")]
    pub cross_origin_routes: Vec<crate::routes::CrossOriginRoute>,
    /// The response-header policy and its per-route overrides.
    #[serde(rename = "securityHeaders")]
    pub security_headers: crate::headers::HeadersManifest,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    pub id: String,
    #[serde(flatten)]
    pub meta: ActionMeta,
    /// Effective body cap in bytes (override or default).
    #[serde(rename = "effectiveBodyLimit")]
    pub body_limit: usize,
}
