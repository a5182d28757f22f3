//! A store backend written outside portcullis, with nothing but its public
//! API: the proof that "add a store backend" needs no change to the
//! framework.
//!
//! The backend is deliberately simple — maps behind one `Mutex`, one
//! process — so what it shows is the contract, not a database: which
//! arithmetic a counter store must match ([`portcullis::store::gcra`],
//! [`portcullis::store::window`]), what an idempotency claim must answer,
//! what a tag bus must deliver, and that each must be bounded. It passes
//! `portcullis::store::conformance` (see `tests/conformance.rs`) and runs a
//! real app (`tests/app.rs`). A Postgres or DynamoDB backend has the same
//! shape with its own transaction where this one takes the lock.
//!
//! Why not a Postgres example: it would need a running database for
//! `cargo test --workspace` (or skip without one and prove nothing), and the
//! point here is the trait surface, which the maps show completely.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use portcullis::store::idempotency::{CLAIM, KEEP, Record};
use portcullis::store::{
    Bucket, Claim, CounterStore, Decision, Fingerprint, IdempotencyStore, QuotaDecision,
    StoreFuture, TagBus, TagStream, gcra, window,
};

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn ready<'a, T>(value: T) -> StoreFuture<'a, T> {
    StoreFuture::ready(Ok(value))
}

/// Drops the entries of `map` that matter least, down to 7/8 of `max`:
/// first those `live` says are over, then the lowest `debt`.
fn shed<V>(
    map: &mut HashMap<String, V>,
    max: usize,
    live: impl Fn(&V) -> bool,
    debt: impl Fn(&V) -> u64,
) {
    if map.len() <= max {
        return;
    }
    map.retain(|_, v| live(v));
    let target = max / 8 * 7;
    if map.len() <= target {
        return;
    }
    let mut debts: Vec<u64> = map.values().map(&debt).collect();
    debts.sort_unstable();
    let threshold = debts[map.len() - target - 1];
    let mut over = map.len() - target;
    map.retain(|_, v| {
        if over > 0 && debt(v) <= threshold {
            over -= 1;
            false
        } else {
            true
        }
    });
}

#[derive(Default)]
struct Counters {
    tats: HashMap<String, u64>,
    /// Key → (window index, used, window end µs).
    quotas: HashMap<String, (u64, u64, u64)>,
    spent: HashMap<String, u64>,
}

/// A [`CounterStore`] in three maps behind one lock.
///
/// * **Who writes it:** the framework (limits, quotas, proof-of-work and
///   flash tokens); every key comes from client input.
/// * **What bounds it:** `max_keys` per map for buckets and quotas; spent
///   tokens are swept of expired ones past `max_keys` (live ones are never
///   dropped: that would allow a replay).
/// * **What removes it:** expiry, then, past the bound, the entries with the
///   least debt (lowest TAT or count).
/// * **One abuser:** a flood of fresh keys makes the map forget the keys
///   closest to a full budget, never the one it targets (which carries the
///   most debt); one lock means a flood also slows every other check.
pub struct MapCounters {
    maps: Mutex<Counters>,
    max_keys: usize,
}

impl MapCounters {
    /// An empty store holding at most `max_keys` buckets and quotas.
    pub fn new(max_keys: usize) -> Self {
        MapCounters {
            maps: Mutex::new(Counters::default()),
            max_keys: max_keys.max(8),
        }
    }

    /// Buckets held now (for tests of the bound).
    pub fn buckets_held(&self) -> usize {
        lock(&self.maps).tats.len()
    }
}

impl CounterStore for MapCounters {
    fn check<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<Decision>> {
        let now = now_us.unwrap_or_else(self::now_us);
        let mut maps = lock(&self.maps);
        let decisions: Vec<Decision> = buckets
            .iter()
            .map(|b| {
                let tat = maps.tats.get(&b.key).copied().unwrap_or(0);
                gcra::check(tat, now, b.quota.count, b.quota.period_us())
            })
            .collect();
        if decisions.iter().all(|d| d.allowed) {
            for (b, d) in buckets.iter().zip(&decisions) {
                maps.tats.insert(b.key.clone(), d.new_tat);
            }
            shed(&mut maps.tats, self.max_keys, |tat| *tat > now, |tat| *tat);
        }
        ready(decisions)
    }

    fn take_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<QuotaDecision>> {
        let now = now_us.unwrap_or_else(self::now_us);
        let mut maps = lock(&self.maps);
        let mut out: Vec<QuotaDecision> = buckets
            .iter()
            .map(|b| {
                let (index, end) = window::bounds(now, b.quota.period_us());
                let used = match maps.quotas.get(&b.key) {
                    Some((w, n, _)) if *w == index => *n,
                    _ => 0,
                };
                QuotaDecision {
                    allowed: used < u64::from(b.quota.count),
                    used,
                    window_end_us: end,
                    now_us: now,
                }
            })
            .collect();
        if out.iter().all(|d| d.allowed) {
            for (b, d) in buckets.iter().zip(out.iter_mut()) {
                let (index, end) = window::bounds(now, b.quota.period_us());
                d.used += 1;
                maps.quotas.insert(b.key.clone(), (index, d.used, end));
            }
            // A quota whose window has ended is equivalent to absent.
            shed(
                &mut maps.quotas,
                self.max_keys,
                |(_, _, end)| *end > now,
                |(_, n, _)| *n,
            );
        }
        ready(out)
    }

    fn refund_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, ()> {
        let now = now_us.unwrap_or_else(self::now_us);
        let mut maps = lock(&self.maps);
        for b in buckets {
            let (index, _) = window::bounds(now, b.quota.period_us());
            if let Some((w, n, _)) = maps.quotas.get_mut(&b.key)
                && *w == index
            {
                *n = n.saturating_sub(1);
            }
        }
        ready(())
    }

    fn spend_once<'a>(&'a self, key: &'a str, expires_at_us: u64) -> StoreFuture<'a, bool> {
        let now = now_us();
        let mut maps = lock(&self.maps);
        if maps.spent.get(key).is_some_and(|exp| *exp > now) {
            return ready(false);
        }
        maps.spent.insert(key.to_owned(), expires_at_us);
        if maps.spent.len() > self.max_keys {
            maps.spent.retain(|_, exp| *exp > now);
        }
        ready(true)
    }

    fn describe(&self) -> &'static str {
        "example map counters"
    }
}

enum Slot {
    Running {
        since: Instant,
        request: Fingerprint,
    },
    Done {
        since: Instant,
        record: Record,
    },
}

/// Fixed weight per entry on top of its key and record, for
/// [`IdempotencyStore::memory_usage`].
const OVERHEAD: u64 = 256;

/// An [`IdempotencyStore`] in one map behind a lock.
///
/// * **Who writes it:** the framework, for requests with an idempotency key
///   (client-chosen, scoped by action and caller) and webhook deliveries.
/// * **What bounds it:** `max_entries`; each record's body is at most
///   `portcullis::store::MAX_STORED_BODY` (the framework keeps larger
///   ones as a hash).
/// * **What removes it:** [`CLAIM`] after a claim, [`KEEP`] after a record,
///   `abandon`; when full, expired entries, then the oldest records.
/// * **One abuser:** a flood of one-off keys evicts other callers' oldest
///   records (their retries would run again), so, like the framework's own
///   memory store, it must not hold webhook deliveries: leave
///   `Stores::with_webhook_seen` alone.
pub struct MapIdempotency {
    slots: Mutex<HashMap<String, Slot>>,
    max_entries: usize,
}

impl MapIdempotency {
    /// An empty store holding at most `max_entries` keys.
    pub fn new(max_entries: usize) -> Self {
        MapIdempotency {
            slots: Mutex::new(HashMap::new()),
            max_entries: max_entries.max(1),
        }
    }

    fn make_room(&self, slots: &mut HashMap<String, Slot>, now: Instant) {
        if slots.len() < self.max_entries {
            return;
        }
        slots.retain(|_, slot| match slot {
            Slot::Running { since, .. } => now.duration_since(*since) < CLAIM,
            Slot::Done { since, .. } => now.duration_since(*since) < KEEP,
        });
        while slots.len() >= self.max_entries {
            let oldest = slots
                .iter()
                .filter_map(|(k, s)| match s {
                    Slot::Done { since, .. } => Some((*since, k.clone())),
                    Slot::Running { .. } => None,
                })
                .min();
            match oldest {
                Some((_, key)) => {
                    slots.remove(&key);
                }
                // Only running claims: they lapse within CLAIM.
                None => break,
            }
        }
    }
}

impl IdempotencyStore for MapIdempotency {
    fn begin<'a>(&'a self, key: &'a str, request: Fingerprint) -> StoreFuture<'a, Claim> {
        let now = Instant::now();
        let mut slots = lock(&self.slots);
        let claim = match slots.get(key) {
            Some(Slot::Running { since, request: r }) if now.duration_since(*since) < CLAIM => {
                Claim::Running {
                    same_request: *r == request,
                }
            }
            Some(Slot::Done { since, record }) if now.duration_since(*since) < KEEP => {
                Claim::Done(record.clone())
            }
            _ => {
                self.make_room(&mut slots, now);
                slots.insert(
                    key.to_owned(),
                    Slot::Running {
                        since: now,
                        request,
                    },
                );
                Claim::Claimed
            }
        };
        ready(claim)
    }

    fn complete<'a>(&'a self, key: &'a str, record: Record) -> StoreFuture<'a, ()> {
        let now = Instant::now();
        let mut slots = lock(&self.slots);
        if !slots.contains_key(key) {
            self.make_room(&mut slots, now);
        }
        slots.insert(key.to_owned(), Slot::Done { since: now, record });
        ready(())
    }

    fn abandon<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        lock(&self.slots).remove(key);
        ready(())
    }

    fn memory_usage(&self) -> Option<(u64, u64)> {
        let slots = lock(&self.slots);
        let bytes = slots
            .iter()
            .map(|(k, s)| {
                let record = match s {
                    Slot::Done { record, .. } => record.held_bytes(),
                    Slot::Running { .. } => 0,
                };
                (k.len() + record) as u64 + OVERHEAD
            })
            .sum();
        Some((slots.len() as u64, bytes))
    }

    fn describe(&self) -> &'static str {
        "example map idempotency store"
    }
}

/// A [`TagBus`] on a `tokio` broadcast channel: clones are handles on one
/// bus (several apps in one process).
///
/// State: a ring of `backlog` messages; a subscription that falls further
/// behind is ended (its engine clears its render cache and resubscribes),
/// so nothing grows with a flood of bumps.
#[derive(Clone)]
pub struct ChannelBus {
    tx: tokio::sync::broadcast::Sender<String>,
}

impl ChannelBus {
    /// A bus keeping at most `backlog` undelivered messages per subscriber.
    pub fn new(backlog: usize) -> Self {
        ChannelBus {
            tx: tokio::sync::broadcast::channel(backlog.max(1)).0,
        }
    }
}

impl TagBus for ChannelBus {
    fn publish<'a>(&'a self, message: &'a str) -> StoreFuture<'a, ()> {
        let _ = self.tx.send(message.to_owned());
        ready(())
    }

    fn subscribe(&self) -> StoreFuture<'_, TagStream> {
        let stream = futures::stream::unfold(self.tx.subscribe(), |mut rx| async move {
            rx.recv().await.ok().map(|m| (m, rx))
        });
        ready(Box::pin(stream) as TagStream)
    }

    fn recovered(&self) -> BoxFuture<'_, ()> {
        // Loss always ends the subscription here; nothing else to signal.
        Box::pin(futures::future::pending())
    }

    fn describe(&self) -> &'static str {
        "example channel bus"
    }
}
