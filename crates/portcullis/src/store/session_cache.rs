//! The in-process session cache: a signed-in request reads its session
//! record from memory, not from the session store, and every write or
//! deletion of a record is confirmed by every instance before the request
//! that made it answers.
//!
//! # Why a cache and not a signed cookie
//! Reading the record from SQLite was ≈ 21k instructions of a ≈ 375k
//! rename (see BENCHMARKS.md, "#19"). A sealed cookie carrying the identity
//! would also avoid the read, but sign-out must still end *one* session
//! everywhere at once, and a cookie cannot be taken back: the server would
//! need a list of revoked cookies checked on every request — a store read
//! again, or a local copy kept fresh over the bus, which is this cache with
//! a second format and a second key to rotate. Session data an app keeps
//! with `Auth::set`, the session id that seals, flash cookies and rate-limit
//! keys are bound to, and the store's idle expiry all stay as they are.
//!
//! # How it stays exact across instances
//! * **Only records the store vouched for enter**: a record the inner store
//!   returned, or one this instance just created or saved. A cookie the
//!   store does not know is a store read (as before) and leaves nothing
//!   behind, so random cookie values cannot grow the cache.
//! * **Every change is confirmed** ([`SessionCache::changed`]): a deletion
//!   (sign-out, the flush after a security-stamp mismatch, the old id of a
//!   login or re-authentication) or a save is applied to the store, evicted
//!   here, then published on the app's [`TagBus`] as `"<instance> r <seq>
//!   <key>"`; every instance (this one included) evicts the key and answers
//!   `"<instance> a <origin> <seq>"`. The change returns only when as many
//!   answers arrived as the bus counted receivers
//!   ([`TagBus::publish_counted`]), within the session deadline; otherwise
//!   it fails with `503 session_store_unavailable` (the record is deleted
//!   or saved in the store, but not every instance is known to have
//!   dropped its copy, so the client is not told it is done and retries).
//!   A request that starts after a sign-out answered therefore finds no
//!   copy on any instance.
//! * **No bus, no copy**: while an instance's bus subscription is down (or
//!   not yet up), or the bus reports itself unhealthy ([`TagBus::healthy`]:
//!   for Redis, once any call on the shared connection failed), it neither
//!   reads nor fills the cache — every request goes
//!   to the store, which fails closed when it is Redis and Redis is down —
//!   and it starts from an empty cache whenever the subscription comes
//!   back or the bus recovers (messages may have been lost meanwhile).
//! * **A fill cannot resurrect an evicted record**: an eviction bumps an
//!   epoch first; a fill that loaded the record before the eviction sees the
//!   epoch moved and removes what it inserted.
//! * **A bound on anything undetected**: entries live at most
//!   [`SessionCacheConfig::ttl`] (60 s) after they were filled, so even an
//!   instance alive on the bus that stopped processing its messages for
//!   longer than the deadline (the change then failed with a 503 on the
//!   instance that made it) serves a removed record for at most that long.
//! * The security stamp is still compared on every request
//!   ([`crate::session`]): password changes, role changes and deleted
//!   accounts end sessions through the app's directory, not through this
//!   cache.
//!
//! A bus that cannot count its receivers ([`TagBus::counts_receivers`] is
//! `false`) cannot confirm a change, so with one the cache is off. Without
//! any bus (one instance; memory stores) changes are local and immediate.
//! Several instances sharing one session store must share a bus, as they
//! must for the render cache.
//!
//! The framework must be the session store's only writer: a record
//! deleted or edited behind its back (an admin's `DELETE` on the sessions
//! table) is seen by an instance holding a copy after at most the TTL. To
//! end a user's sessions from outside, change their security stamp
//! (instant), or turn the cache off (`max_bytes` 0).
//!
//! Rolling deploys: an instance of a version without this cache is counted
//! by the bus but never confirms, so while one runs beside new ones their
//! sign-ins and sign-outs answer 503 after the deadline until the old ones
//! are gone. A channel of its own for session messages (counting only
//! instances that answer) would lift this; not done yet.
//!
//! Message keys are a hash of the session id (SHA-256, 128 bits), so no
//! session id is ever published.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use super::TagBus;

/// Bounds of the session cache ([`crate::Portcullis::session_cache`]).
#[derive(Clone, Debug)]
pub struct SessionCacheConfig {
    /// Bytes of cached records, weighed (96 + id + JSON size of the data
    /// per entry). Default 16 MiB (≈ 50,000 signed-in sessions of the
    /// demo). `0` turns the cache off.
    pub max_bytes: u64,
    /// How long a cached record may be served before it is read from the
    /// store again, whatever happened. Default 60 s.
    pub ttl: Duration,
    /// How long a change waits for every instance to confirm it dropped
    /// its copy before failing with a 503. Default 500 ms.
    pub confirm_within: Duration,
}

impl Default for SessionCacheConfig {
    fn default() -> Self {
        SessionCacheConfig {
            max_bytes: 16 * 1024 * 1024,
            ttl: Duration::from_secs(60),
            confirm_within: Duration::from_millis(500),
        }
    }
}

/// A record larger than this is never cached (read from the store each
/// time): one session cannot take a large share of the bound.
pub const MAX_CACHED_RECORD: usize = 16 * 1024;

type Key = [u8; 16];

fn key(id: &Id) -> Key {
    let digest = Sha256::new()
        .chain_update(b"portcullis.session-cache\0")
        .chain_update(id.0.to_le_bytes())
        .finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&digest[..16]);
    k
}

fn parse_key(hex: &str) -> Option<Key> {
    if hex.len() != 32 {
        return None;
    }
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(k)
}

/// A change waiting for confirmations.
struct Waiter {
    /// Confirmations received so far.
    acks: usize,
    /// How many the bus counted (`None` until the publish answered).
    expected: Option<usize>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Waiter {
    fn settle(&mut self) {
        if self.expected.is_some_and(|n| self.acks >= n)
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
    }
}

/// The cache's state, shared by the session layer's store wrapper
/// ([`CachedSessions`]) and the bus subscriber. One per app
/// ([`crate::App::session_cache`] for its counters).
///
/// State:
/// * **records** (hash of session id → record): written only with records
///   the session store returned for a request's cookie or that this
///   instance just created or saved — never for an id the store does not
///   know, so a client sending random cookie values adds nothing (only its
///   store reads, as without a cache). Bounded by
///   [`SessionCacheConfig::max_bytes`] (weighed), at most
///   [`MAX_CACHED_RECORD`] per entry. Removed by every change to the record
///   (here or on any instance, over the bus), by the TTL, by a lost bus
///   subscription (all of it), and by moka's eviction. A user who creates
///   many sessions (each sign-in, under its rate limit) adds entries that
///   moka's TinyLFU admission weighs against the ones in use: one-off
///   sessions do not push out sessions that are read often, and an evicted
///   session costs its owner one store read, never validity.
/// * **waiters** (sequence number → confirmations): one per change in
///   flight on this instance, removed when it is confirmed or its deadline
///   passes; so bounded by the changes (sign-ins, sign-outs, session
///   writes) in flight times the deadline.
pub struct SessionCache {
    records: moka::sync::Cache<Key, Arc<Record>>,
    /// `false`: the cache is off (bound 0, or a bus that cannot count).
    enabled: bool,
    /// `true` while records may be trusted: always without a bus; with one,
    /// only while its subscription is up.
    live: AtomicBool,
    /// Bumped by every eviction, before it is applied (see the module docs).
    epoch: AtomicU64,
    instance: u64,
    seq: AtomicU64,
    waiters: Mutex<HashMap<u64, Waiter>>,
    bus: OnceLock<Arc<dyn TagBus>>,
    confirm_within: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl SessionCache {
    /// A cache for an app with a bus (`has_bus`: it is connected later, and
    /// the cache stays unused until its subscription is up) or without one.
    pub fn new(config: &SessionCacheConfig, bus: Option<&Arc<dyn TagBus>>) -> Self {
        let records = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_: &Key, r: &Arc<Record>| weight(r).min(u32::MAX as usize) as u32)
            .time_to_live(config.ttl)
            .build();
        SessionCache {
            records,
            enabled: config.max_bytes > 0 && bus.is_none_or(|b| b.counts_receivers()),
            live: AtomicBool::new(bus.is_none()),
            epoch: AtomicU64::new(0),
            instance: rand::random(),
            seq: AtomicU64::new(0),
            waiters: Mutex::new(HashMap::new()),
            bus: OnceLock::new(),
            confirm_within: config.confirm_within,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Whether records are cached at all (see [`SessionCache::new`]).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Loads answered from memory so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Loads that went to the store so far (cache off, bus down, unknown
    /// or evicted record).
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Cached records (after pending maintenance).
    pub fn entries(&self) -> u64 {
        self.records.run_pending_tasks();
        self.records.entry_count()
    }

    /// Weighed bytes of cached records (after pending maintenance).
    pub fn bytes(&self) -> u64 {
        self.records.run_pending_tasks();
        self.records.weighted_size()
    }

    /// Whether a load of `id` would be answered from memory now.
    pub fn contains(&self, id: &Id) -> bool {
        self.usable() && self.records.contains_key(&key(id))
    }

    /// Whether the cache may be read and filled now. An unhealthy bus also
    /// drops what is cached: a deletion Redis applies late (after its
    /// caller gave up with a 503) must not find an old copy here once
    /// Redis is back.
    fn usable(&self) -> bool {
        if !self.enabled || !self.live.load(Ordering::Acquire) {
            return false;
        }
        match self.bus.get() {
            Some(bus) if !bus.healthy() => {
                self.evict_all();
                false
            }
            _ => true,
        }
    }

    fn get(&self, id: &Id) -> Option<Record> {
        if !self.usable() {
            return None;
        }
        let k = key(id);
        let record = self.records.get(&k)?;
        if record.id != *id || record.expiry_date <= time::OffsetDateTime::now_utc() {
            self.records.invalidate(&k);
            return None;
        }
        Some(Record::clone(&record))
    }

    /// Inserts a record read or written at `epoch`, unless an eviction
    /// happened since (then removes it again).
    fn fill(&self, record: &Record, epoch: u64) {
        if !self.usable() || weight(record) > MAX_CACHED_RECORD {
            return;
        }
        let k = key(&record.id);
        self.records.insert(k, Arc::new(record.clone()));
        if self.epoch.load(Ordering::SeqCst) != epoch {
            self.records.invalidate(&k);
        }
    }

    fn evict(&self, k: &Key) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.records.invalidate(k);
    }

    fn evict_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.records.invalidate_all();
    }

    /// Removes `id`'s copy here and on every instance; returns when every
    /// instance the bus reached confirmed it, or fails (see the module
    /// docs).
    async fn changed(&self, id: &Id) -> Result<(), session_store::Error> {
        let k = key(id);
        self.evict(&k);
        let Some(bus) = self.bus.get() else {
            return Ok(());
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.lock_waiters().insert(
            seq,
            Waiter {
                acks: 0,
                expected: None,
                done: Some(tx),
            },
        );
        let message = format!("{} r {seq} {}", self.instance, crate::hex(&k));
        let confirmed = tokio::time::timeout(self.confirm_within, async {
            let reached = bus
                .publish_counted(&message)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "the bus cannot count its receivers".to_owned())?;
            if let Some(w) = self.lock_waiters().get_mut(&seq) {
                w.expected = Some(reached);
                w.settle();
            }
            rx.await.map_err(|_| "confirmation dropped".to_owned())
        })
        .await;
        self.lock_waiters().remove(&seq);
        let detail = match confirmed {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(_) => format!(
                "not every instance confirmed within {:?}",
                self.confirm_within
            ),
        };
        let detail = format!("{}: session change: {detail}", super::UNAVAILABLE);
        tracing::warn!(%detail, "session change not confirmed by every instance; 503");
        super::mark_session_fault();
        Err(session_store::Error::Backend(detail))
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bus is connected (by the fragment engine, which owns the one
    /// subscription); the cache is used once the subscription is up.
    pub(crate) fn attach(&self, bus: Arc<dyn TagBus>) {
        let _ = self.bus.set(bus);
    }

    /// The subscription is up (again): start from an empty cache, since
    /// messages may have been missed while it was down.
    pub(crate) fn subscribed(&self) {
        self.evict_all();
        self.live.store(true, Ordering::Release);
    }

    /// The subscription is lost, or the bus recovered from an outage:
    /// nothing cached may be trusted.
    pub(crate) fn lost(&self, still_live: bool) {
        self.live.store(still_live, Ordering::Release);
        self.evict_all();
    }

    /// A session message from the bus (`kind` `r` or `a`); returns the
    /// confirmation to publish, if any.
    pub(crate) fn on_message(&self, from: &str, kind: &str, rest: &str) -> Option<String> {
        let mut parts = rest.splitn(2, ' ');
        let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
            return None;
        };
        let mine = from.parse::<u64>().ok() == Some(self.instance);
        match kind {
            "r" => {
                let k = parse_key(b)?;
                self.evict(&k);
                if mine {
                    self.confirmed(a.parse().ok()?);
                    None
                } else {
                    Some(format!("{} a {from} {a}", self.instance))
                }
            }
            "a" if a.parse::<u64>().ok() == Some(self.instance) => {
                self.confirmed(b.parse().ok()?);
                None
            }
            _ => None,
        }
    }

    fn confirmed(&self, seq: u64) {
        if let Some(w) = self.lock_waiters().get_mut(&seq) {
            w.acks += 1;
            w.settle();
        }
    }
}

fn weight(r: &Record) -> usize {
    let data = serde_json::to_vec(&r.data).map_or(usize::MAX / 2, |v| v.len());
    96 + 16 + data
}

/// A session store with the [`SessionCache`] in front of it. The app
/// builder puts it around the app's store (inside, the store's deadline);
/// it is public so a store's own tests can drive it.
#[derive(Clone)]
pub struct CachedSessions<S> {
    inner: S,
    cache: Arc<SessionCache>,
}

impl<S> CachedSessions<S> {
    /// `inner` behind `cache`.
    pub fn new(inner: S, cache: Arc<SessionCache>) -> Self {
        CachedSessions { inner, cache }
    }

    /// The cache in front.
    pub fn cache(&self) -> &Arc<SessionCache> {
        &self.cache
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for CachedSessions<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedSessions")
            .field("inner", &self.inner)
            .field("enabled", &self.cache.enabled)
            .finish()
    }
}

#[async_trait::async_trait]
impl<S: tower_sessions::SessionStore + Clone> tower_sessions::SessionStore for CachedSessions<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let epoch = self.cache.epoch.load(Ordering::SeqCst);
        self.inner.create(record).await?;
        // A fresh random id: no other instance can hold a copy of it.
        self.cache.fill(record, epoch);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.inner.save(record).await?;
        self.cache.changed(&record.id).await?;
        let epoch = self.cache.epoch.load(Ordering::SeqCst);
        self.cache.fill(record, epoch);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        if let Some(record) = self.cache.get(id) {
            self.cache.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(record));
        }
        self.cache.misses.fetch_add(1, Ordering::Relaxed);
        let epoch = self.cache.epoch.load(Ordering::SeqCst);
        let loaded = self.inner.load(id).await?;
        if let Some(record) = &loaded {
            self.cache.fill(record, epoch);
        }
        Ok(loaded)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.inner.delete(id).await?;
        self.cache.changed(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryTagBus;
    use futures::StreamExt;
    use tower_sessions::{MemoryStore, SessionStore};

    fn record() -> Record {
        let mut data = HashMap::new();
        data.insert(
            "portcullis.identity".to_owned(),
            serde_json::json!({"user_id": 7}),
        );
        Record {
            id: Id::default(),
            data,
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        }
    }

    /// One instance on `bus`: its subscription feeds the cache and
    /// publishes its confirmations, as the fragment engine does.
    async fn instance(bus: &Arc<dyn TagBus>, inner: &MemoryStore) -> CachedSessions<MemoryStore> {
        let cache = Arc::new(SessionCache::new(&SessionCacheConfig::default(), Some(bus)));
        cache.attach(bus.clone());
        let mut stream = bus.subscribe().await.unwrap();
        cache.subscribed();
        let (c, b) = (cache.clone(), bus.clone());
        tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                let mut p = m.splitn(3, ' ');
                let (Some(from), Some(kind), Some(rest)) = (p.next(), p.next(), p.next()) else {
                    continue;
                };
                if let Some(reply) = c.on_message(from, kind, rest) {
                    let _ = b.publish(&reply).await;
                }
            }
            c.lost(false);
        });
        CachedSessions::new(inner.clone(), cache)
    }

    #[tokio::test]
    async fn a_deletion_on_one_instance_is_confirmed_by_the_other_before_it_returns() {
        let bus: Arc<dyn TagBus> = Arc::new(MemoryTagBus::new());
        let store = MemoryStore::default();
        let (a, b) = (instance(&bus, &store).await, instance(&bus, &store).await);
        let mut r = record();
        a.create(&mut r).await.unwrap();
        // B reads it once from the store, then from memory.
        assert!(b.load(&r.id).await.unwrap().is_some());
        assert!(b.load(&r.id).await.unwrap().is_some());
        assert_eq!(b.cache().hits(), 1);
        assert!(b.cache().contains(&r.id));
        for _ in 0..50 {
            let mut r = record();
            a.create(&mut r).await.unwrap();
            assert!(b.load(&r.id).await.unwrap().is_some());
            assert!(b.cache().contains(&r.id));
            a.delete(&r.id).await.unwrap();
            // No wait: when delete returned, B had dropped its copy.
            assert!(!b.cache().contains(&r.id));
            assert!(b.load(&r.id).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn an_instance_that_does_not_confirm_fails_the_change_closed() {
        let bus: Arc<dyn TagBus> = Arc::new(MemoryTagBus::new());
        let store = MemoryStore::default();
        let a = instance(&bus, &store).await;
        // A subscriber that never answers (an instance stuck or cut off
        // from the bus's replies): counted by the bus, never confirming.
        let _silent = bus.subscribe().await.unwrap();
        let mut r = record();
        a.create(&mut r).await.unwrap();
        let started = std::time::Instant::now();
        let err = a.delete(&r.id).await.unwrap_err();
        assert!(
            err.to_string().contains(crate::store::UNAVAILABLE),
            "a 503, not a bare error: {err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // The store applied the deletion; nothing here serves the record.
        assert!(store.load(&r.id).await.unwrap().is_none());
        assert!(a.load(&r.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn without_a_live_subscription_nothing_is_served_from_memory() {
        let bus: Arc<dyn TagBus> = Arc::new(MemoryTagBus::new());
        let store = MemoryStore::default();
        let cache = Arc::new(SessionCache::new(
            &SessionCacheConfig::default(),
            Some(&bus),
        ));
        cache.attach(bus.clone());
        let s = CachedSessions::new(store.clone(), cache.clone());
        let mut r = record();
        s.create(&mut r).await.unwrap();
        // Not subscribed yet: every load goes to the store.
        assert!(s.load(&r.id).await.unwrap().is_some());
        assert!(s.load(&r.id).await.unwrap().is_some());
        assert_eq!((cache.hits(), cache.misses()), (0, 2));
        // Up: cached. Lost: dropped and bypassed, so a deletion another
        // instance made meanwhile (straight in the store) is seen at once.
        cache.subscribed();
        assert!(s.load(&r.id).await.unwrap().is_some());
        assert!(s.load(&r.id).await.unwrap().is_some());
        assert_eq!(cache.hits(), 1);
        cache.lost(false);
        store.delete(&r.id).await.unwrap();
        assert!(s.load(&r.id).await.unwrap().is_none());
        assert_eq!(cache.entries(), 0);
    }

    #[tokio::test]
    async fn a_fill_racing_an_eviction_does_not_resurrect_the_record() {
        let cache = SessionCache::new(&SessionCacheConfig::default(), None);
        let r = record();
        let epoch = cache.epoch.load(Ordering::SeqCst);
        // The record was read from the store, then deleted and evicted
        // before the reader inserted it.
        cache.evict(&key(&r.id));
        cache.fill(&r, epoch);
        assert!(!cache.contains(&r.id));
    }

    #[tokio::test]
    async fn a_bus_that_cannot_count_turns_the_cache_off() {
        struct Uncounted(MemoryTagBus);
        impl TagBus for Uncounted {
            fn publish<'a>(&'a self, m: &'a str) -> crate::store::StoreFuture<'a, ()> {
                self.0.publish(m)
            }
            fn subscribe(&self) -> crate::store::StoreFuture<'_, crate::store::TagStream> {
                self.0.subscribe()
            }
            fn describe(&self) -> &'static str {
                "uncounted"
            }
        }
        let bus: Arc<dyn TagBus> = Arc::new(Uncounted(MemoryTagBus::new()));
        let cache = SessionCache::new(&SessionCacheConfig::default(), Some(&bus));
        assert!(!cache.enabled());
    }
}
