//! The framework state one app's requests share (the pipeline, page
//! extractors, the webhook and API routes), built once by [`crate::app`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::action::ActionMeta;
use crate::app::{Manifest, ManifestEntry};
use crate::botcheck::{BotCheck, CHALLENGE_TTL, Challenges};
use crate::config::Config;
use crate::ids::Ids;
use crate::observe::{AuditSink, Metrics};
use crate::ratelimit::Limiter;
use crate::seal::Sealer;
use crate::wire::ACTION_PREFIX;

/// Framework state shared by the pipeline and page extractors.
pub struct Shared {
    pub(crate) config: Config,
    pub(crate) ids: Ids,
    pub(crate) limiter: Limiter,
    /// The token API's store and limit, if the app has one.
    pub(crate) api: Option<crate::api::ApiConfig>,
    /// Routes that accept cross-origin requests, with their authenticator.
    pub(crate) cross_origin_routes: Vec<crate::routes::CrossOriginRoute>,
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
    pub(crate) challenges: Challenges,
    /// Sealing keys (current + previous), key schedules prepared once.
    pub(crate) sealer: Arc<Sealer>,
    /// The same seal format under the `Flash` subkey (no-JS flash cookie).
    pub(crate) flash_sealer: Sealer,
    pub(crate) by_name: HashMap<&'static str, usize>,
    pub(crate) metas: Vec<ActionMeta>,
    /// The largest body any action accepts: the stage-1 early refusal bound.
    pub(crate) body_ceiling: usize,
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

impl Shared {
    /// The id to render for `name` now, if such an action exists.
    pub fn action_id(&self, name: &str) -> Option<String> {
        self.by_name
            .get(name)
            .map(|&i| self.ids.current(i).to_string())
    }

    /// The action endpoint path for `name`.
    pub fn action_path(&self, name: &str) -> Option<String> {
        self.action_id(name)
            .map(|id| format!("{ACTION_PREFIX}{id}"))
    }

    /// The fragment engine (render cache, tags).
    pub fn fragments(&self) -> &Arc<crate::fragment::Engine> {
        &self.fragments
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The sealing keys, for minting seals outside a page or action
    /// (see [`crate::seal::SealFor`]).
    pub fn sealer(&self) -> &Arc<Sealer> {
        &self.sealer
    }

    /// The limiter (counting in memory, in Redis when `REDIS_URL` is set, or
    /// in the store given with `Portcullis::stores`).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The idempotency store (for its usage figures in flood tests).
    pub fn idempotency(&self) -> &crate::idempotency::Store {
        &self.idempotency
    }

    /// A fresh proof-of-work challenge for `name`, if that action has a
    /// `BotCheck::ProofOfWork` (at its difficulty, valid for 30 minutes).
    pub fn pow_challenge(&self, name: &str) -> Option<String> {
        let meta = &self.metas[*self.by_name.get(name)?];
        let bits = meta.bot_checks.iter().find_map(|c| match c {
            BotCheck::ProofOfWork { bits } => Some(*bits),
            _ => None,
        })?;
        Some(self.challenges.mint(meta.name, bits, CHALLENGE_TTL))
    }

    /// Whether `name` was declared idempotent (the client runtime may run
    /// it in parallel rather than in the page's queue).
    pub fn idempotent(&self, name: &str) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|&i| self.metas[i].idempotent)
    }

    /// The bot checks of `name` (empty for an unknown name).
    pub fn bot_checks(&self, name: &str) -> &[BotCheck] {
        self.by_name
            .get(name)
            .map(|&i| self.metas[i].bot_checks.as_slice())
            .unwrap_or(&[])
    }

    /// The id `name` had in `epoch` (tests of skew handling).
    pub fn action_id_in_epoch(&self, name: &str, epoch: u64) -> String {
        self.ids.id_in_epoch(name, epoch).to_string()
    }

    pub fn epoch(&self) -> u64 {
        self.ids.epoch()
    }

    /// The security-header policy in force (manifest, report counters).
    pub fn security_headers(&self) -> &crate::headers::Compiled {
        &self.headers
    }

    /// The action metrics (Prometheus text via [`Metrics::encode`]).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every registered action, as data.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            epoch: self.ids.epoch(),
            actions: self
                .metas
                .iter()
                .enumerate()
                .map(|(i, meta)| ManifestEntry {
                    id: self.ids.current(i).to_string(),
                    body_limit: meta.body_limit.unwrap_or(self.config.limits.body_bytes),
                    meta: meta.clone(),
                })
                .collect(),
            cross_origin_routes: self.cross_origin_routes.clone(),
            security_headers: self.headers.manifest(),
        }
    }
}
