//! [`Stores`]: the app's stores, chosen once and handed to the builder
//! ([`crate::Portcullis::stores`]) like the session store is handed to
//! `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::StoreError;
use super::bus::TagBus;
use super::counter::CounterStore;
use super::idempotency::IdempotencyStore;
use super::memory::{IdempotencyConfig, MemoryCounters, MemoryIdempotency};
use super::redis::{Redis, RedisCounters, RedisIdempotency, RedisTagBus};

/// Where an app counts (limits, quotas, spent tokens), keeps idempotency
/// keys and webhook deliveries, and broadcasts tag bumps.
///
/// * [`Stores::memory`]: one instance, no dependency (the default without
///   `REDIS_URL`);
/// * [`Stores::redis`]: every store on one shared Redis connection, so many
///   instances share limits, keys and invalidations (the default with
///   `REDIS_URL`, or with [`crate::Portcullis::redis`]);
/// * either, with any store replaced by the app's own (`with_*`): a backend
///   that passes `portcullis::store::conformance` can be written outside the
///   crate.
///
/// State: handles only (cheap to clone); each store's type documents its
/// bounds. The webhook seen-store is kept apart from the idempotency store
/// wherever the latter can evict: webhook deliveries are written only after
/// a valid signature, and a flood of client-chosen idempotency keys must not
/// evict one (it could then be replayed inside its signature window). So in
/// memory it is a store of its own (bounded like the idempotency store,
/// 64 MiB by default, 24 h TTL), and on Redis the idempotency store itself
/// (its keys are removed by TTL only, never by other callers' keys).
#[derive(Clone)]
pub struct Stores {
    counters: Arc<dyn CounterStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    webhook_seen: Arc<dyn IdempotencyStore>,
    bus: Option<Arc<dyn TagBus>>,
    redis: Option<Redis>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores")
            .field("counters", &self.counters.describe())
            .field("idempotency", &self.idempotency.describe())
            .field("webhook_seen", &self.webhook_seen.describe())
            .field("bus", &self.bus.as_ref().map(|b| b.describe()))
            .field("redis", &self.redis)
            .finish()
    }
}

impl Default for Stores {
    fn default() -> Self {
        Self::memory()
    }
}

impl Stores {
    /// Everything in this process, idempotency stores at the default bound
    /// (64 MiB each); no tag bus (one instance has nobody to tell).
    pub fn memory() -> Self {
        Self::memory_with(&IdempotencyConfig::default())
    }

    /// Everything in this process, the idempotency store and the webhook
    /// seen-store each bounded by `idempotency`.
    pub fn memory_with(idempotency: &IdempotencyConfig) -> Self {
        Stores {
            counters: Arc::new(MemoryCounters::new()),
            idempotency: Arc::new(MemoryIdempotency::new(idempotency)),
            webhook_seen: Arc::new(MemoryIdempotency::new(idempotency)),
            bus: None,
            redis: None,
        }
    }

    /// Every store on `redis`, one connection: counters (each call under
    /// `limiter_timeout`), idempotency keys and webhook deliveries, and the
    /// tag bus (`{prefix}tags`). The app pings the connection while idle
    /// (see [`crate::store`]).
    pub fn redis(redis: Redis, limiter_timeout: Duration) -> Self {
        let idempotency: Arc<dyn IdempotencyStore> = Arc::new(RedisIdempotency::on(redis.clone()));
        Stores {
            counters: Arc::new(RedisCounters::on(redis.clone(), limiter_timeout)),
            webhook_seen: idempotency.clone(),
            idempotency,
            bus: Some(Arc::new(RedisTagBus::on(redis.clone()))),
            redis: Some(redis),
        }
    }

    /// What the configuration asks for: [`Stores::redis`] on a new
    /// connection when it has `REDIS_URL` (`PORTCULLIS_REDIS_PREFIX`,
    /// `PORTCULLIS_REDIS_TIMEOUT_MS`, `PORTCULLIS_LIMITER_TIMEOUT_MS`), else
    /// [`Stores::memory_with`] `idempotency`. Fails only on a `REDIS_URL`
    /// that does not parse (nothing connects yet).
    pub fn from_config(
        config: &crate::Config,
        idempotency: &IdempotencyConfig,
    ) -> Result<Self, StoreError> {
        Ok(match Redis::from_config(config)? {
            Some(redis) => Self::redis(redis, config.limiter_timeout),
            None => Self::memory_with(idempotency),
        })
    }

    /// Counts limits, quotas and spent tokens in `counters`.
    pub fn with_counters(mut self, counters: Arc<dyn CounterStore>) -> Self {
        self.counters = counters;
        self
    }

    /// Keeps idempotency keys in `idempotency`. Webhook deliveries stay in
    /// the webhook seen-store this value has (see the type's doc); pass the
    /// same store to [`Stores::with_webhook_seen`] when yours is shared by
    /// every instance and never evicts a key before its TTL.
    pub fn with_idempotency(mut self, idempotency: Arc<dyn IdempotencyStore>) -> Self {
        self.idempotency = idempotency;
        self
    }

    /// Keeps applied webhook deliveries in `seen`: a store that client-chosen
    /// keys cannot evict from (see the type's doc).
    pub fn with_webhook_seen(mut self, seen: Arc<dyn IdempotencyStore>) -> Self {
        self.webhook_seen = seen;
        self
    }

    /// Broadcasts tag bumps on `bus` (or on nothing: `None`).
    pub fn with_bus(mut self, bus: Option<Arc<dyn TagBus>>) -> Self {
        self.bus = bus;
        self
    }

    /// The counter store.
    pub fn counters(&self) -> &Arc<dyn CounterStore> {
        &self.counters
    }

    /// The idempotency store.
    pub fn idempotency(&self) -> &Arc<dyn IdempotencyStore> {
        &self.idempotency
    }

    /// The webhook seen-store.
    pub fn webhook_seen(&self) -> &Arc<dyn IdempotencyStore> {
        &self.webhook_seen
    }

    /// The tag bus, if any.
    pub fn bus(&self) -> Option<&Arc<dyn TagBus>> {
        self.bus.as_ref()
    }

    /// The Redis connection [`Stores::redis`] put the stores on, if any.
    pub fn redis_connection(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }
}
