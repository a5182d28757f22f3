//! The in-memory stores: one instance, no dependency.
//!
//! [`MemoryCounters`] (limits, quotas, spent tokens), [`MemoryIdempotency`]
//! (claimed and finished idempotency keys) and [`MemoryTagBus`] (tag bumps
//! between engines in one process). Each type's doc says who writes it, what
//! bounds it, what removes it and what one abuser can do to other users.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::bus::{TagBus, TagStream};
use super::counter::{Bucket, CounterStore, Decision, QuotaDecision, StoreFuture};
use super::idempotency::{CLAIM, Claim, Fingerprint, IdempotencyStore, KEEP, Record};
use super::{gcra, window};

const SHARDS: usize = 32;

/// The hasher of counter keys and of the shards' maps: aHash, seeded at
/// random per map (the keys come from client input, so a client must not
/// be able to precompute collisions, std's reason for SipHash), and about
/// a fifth of SipHash's cost: the key is hashed once to a `u64`, and that
/// `u64` again by its shard's map, on every rate-limited request.
type Fast = ahash::RandomState;
/// One shard: key hash → state.
type Shard<V> = HashMap<u64, V, Fast>;
/// Most entries one shard of one map keeps (so about a million keys per
/// map). The keys are client-chosen (addresses, sessions, submitted emails).
pub const MAX_PER_SHARD: usize = 32_768;
/// Past this many spent tokens in one shard, the expired ones are swept
/// (live ones never are).
pub const MAX_SPENT_PER_SHARD: usize = 100_000;

/// Keeps a shard under [`MAX_PER_SHARD`]: first drops entries that no
/// longer matter (`live` false: their window has passed, equivalent to
/// absent), then, if a flood of live keys remains, the entries with the
/// least `debt` down to 7/8 of the cap. For GCRA the debt is the TAT: the
/// lowest TATs are the keys closest to a full budget, so forgetting them
/// gives back at most a sliver of budget — a flood of fresh keys cannot
/// reset the key it targets (which carries the most debt). Runs at most
/// once per cap/8 inserts, so the cost is amortised (the old sweep ran on
/// every insert once 100 k live keys were held).
fn shed<V>(map: &mut Shard<V>, live: impl Fn(&V) -> bool, debt: impl Fn(&V) -> u64) {
    if map.len() <= MAX_PER_SHARD {
        return;
    }
    let target = MAX_PER_SHARD / 8 * 7;
    map.retain(|_, v| live(v));
    if map.len() <= target {
        return;
    }
    let mut debts: Vec<u64> = map.values().map(&debt).collect();
    let cut = map.len() - target;
    let (_, threshold, _) = debts.select_nth_unstable(cut - 1);
    let threshold = *threshold;
    let mut over = cut;
    map.retain(|_, v| {
        if over > 0 && debt(v) <= threshold {
            over -= 1;
            false
        } else {
            true
        }
    });
}

/// The in-memory [`CounterStore`]: sharded maps of key hash → state. No
/// global lock: a check locks only the shards of its own keys, in index
/// order.
///
/// State: three maps (bucket TATs, quota windows, spent tokens), each 32
/// shards of `key hash → numbers`.
/// * **Who writes it:** the pipeline (stage 4 limits, stage 6 input limits
///   and quotas), the token API's limit, the proof-of-work check and the
///   no-JS flash; every key is derived from client input (address, session,
///   user, a submitted value hashed, a challenge nonce).
/// * **What bounds it:** buckets and quotas at [`MAX_PER_SHARD`] (32,768)
///   keys per shard, so about a million per map; spent tokens are swept of
///   expired entries past [`MAX_SPENT_PER_SHARD`] per shard, and live ones
///   are never dropped (that would allow a replay): their number is bounded
///   by the challenge lifetime times the rate at which valid proofs of work
///   (or flash cookies, one per refused no-JS form) can be produced.
/// * **What removes it:** expiry (an entry whose TAT or window has passed is
///   equivalent to absent and is dropped first when a shard is full); past
///   the cap, the entries with the least debt (`shed`).
/// * **One abuser:** a flood of distinct keys (say, e-mails on a login form
///   limited per account) fills shards and makes them forget the keys
///   closest to a full budget; the key the flood targets carries the most
///   debt and keeps it, so the flood cannot reset a victim's limit. Other
///   users' own buckets may be forgotten only when they were nearly full
///   (they get back at most a sliver of budget). The stage-4 per-address
///   limit caps how fast one address can add keys.
pub struct MemoryCounters {
    tats: Vec<Mutex<Shard<u64>>>,
    quotas: Vec<Mutex<Shard<(u64, u64)>>>,
    spent: Vec<Mutex<Shard<u64>>>,
    hasher: Fast,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        fn shards<V>() -> Vec<Mutex<Shard<V>>> {
            (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect()
        }
        MemoryCounters {
            tats: shards(),
            quotas: shards(),
            spent: shards(),
            hasher: Fast::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned shard holds plain numbers; they are still valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks the distinct shards of `hashes` in ascending order (no deadlock).
fn lock_shards<'a, V>(
    shards: &'a [Mutex<Shard<V>>],
    hashes: &[u64],
) -> Vec<(usize, MutexGuard<'a, Shard<V>>)> {
    let mut idx: Vec<usize> = hashes
        .iter()
        .map(|h| (*h as usize) % shards.len())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter().map(|i| (i, lock(&shards[i]))).collect()
}

fn shard_of<'g, V>(
    guards: &'g mut [(usize, MutexGuard<'_, Shard<V>>)],
    hash: u64,
    n: usize,
) -> &'g mut Shard<V> {
    let want = (hash as usize) % n;
    let pos = guards
        .iter()
        .position(|(i, _)| *i == want)
        .unwrap_or_default();
    &mut guards[pos].1
}

impl MemoryCounters {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn check_at(&self, buckets: &[Bucket], now: u64) -> Vec<Decision> {
        let hashes: Vec<u64> = buckets.iter().map(|b| self.hash(&b.key)).collect();
        let mut guards = lock_shards(&self.tats, &hashes);
        let decisions: Vec<Decision> = buckets
            .iter()
            .zip(&hashes)
            .map(|(b, h)| {
                let tat = shard_of(&mut guards, *h, SHARDS)
                    .get(h)
                    .copied()
                    .unwrap_or(0);
                gcra::check(tat, now, b.quota.count, b.quota.period_us())
            })
            .collect();
        if decisions.iter().all(|d| d.allowed) {
            for (d, h) in decisions.iter().zip(&hashes) {
                let map = shard_of(&mut guards, *h, SHARDS);
                map.insert(*h, d.new_tat);
                // Entries whose TAT has passed are equivalent to absent.
                shed(map, |t| *t > now, |t| *t);
            }
        }
        decisions
    }

    fn take_quotas_at(&self, buckets: &[Bucket], now: u64) -> Vec<QuotaDecision> {
        let hashes: Vec<u64> = buckets.iter().map(|b| self.hash(&b.key)).collect();
        let mut guards = lock_shards(&self.quotas, &hashes);
        let mut out: Vec<QuotaDecision> = buckets
            .iter()
            .zip(&hashes)
            .map(|(b, h)| {
                let (index, end) = window::bounds(now, b.quota.period_us());
                let used = match shard_of(&mut guards, *h, SHARDS).get(h) {
                    Some((w, n)) if *w == index => *n,
                    _ => 0,
                };
                QuotaDecision {
                    allowed: used < b.quota.count as u64,
                    used,
                    window_end_us: end,
                    now_us: now,
                }
            })
            .collect();
        if out.iter().all(|d| d.allowed) {
            for ((d, h), b) in out.iter_mut().zip(&hashes).zip(buckets) {
                let (index, _) = window::bounds(now, b.quota.period_us());
                d.used += 1;
                let map = shard_of(&mut guards, *h, SHARDS);
                map.insert(*h, (index, d.used));
                shed(map, |(w, _)| *w >= index, |(_, n)| *n);
            }
        }
        out
    }

    fn refund_quotas_at(&self, buckets: &[Bucket], now: u64) {
        for b in buckets {
            let h = self.hash(&b.key);
            let (index, _) = window::bounds(now, b.quota.period_us());
            let mut map = lock(&self.quotas[(h as usize) % SHARDS]);
            if let Some((w, n)) = map.get_mut(&h)
                && *w == index
            {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn spend_once_at(&self, key: &str, expires_at: u64, now: u64) -> bool {
        let h = self.hash(key);
        let mut map = lock(&self.spent[(h as usize) % SHARDS]);
        if map.get(&h).is_some_and(|exp| *exp > now) {
            return false;
        }
        map.insert(h, expires_at);
        // Spent tokens are never shed while live (that would allow a
        // replay); their number is bounded by the challenge lifetime times
        // the rate at which valid proofs of work can be produced.
        if map.len() > MAX_SPENT_PER_SHARD {
            map.retain(|_, exp| *exp > now);
        }
        true
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

impl CounterStore for MemoryCounters {
    fn check<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<Decision>> {
        let d = self.check_at(buckets, now_us.unwrap_or_else(self::now_us));
        StoreFuture::ready(Ok(d))
    }

    fn take_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<QuotaDecision>> {
        let d = self.take_quotas_at(buckets, now_us.unwrap_or_else(self::now_us));
        StoreFuture::ready(Ok(d))
    }

    fn refund_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, ()> {
        self.refund_quotas_at(buckets, now_us.unwrap_or_else(self::now_us));
        StoreFuture::ready(Ok(()))
    }

    fn spend_once<'a>(&'a self, key: &'a str, expires_at_us: u64) -> StoreFuture<'a, bool> {
        let fresh = self.spend_once_at(key, expires_at_us, now_us());
        StoreFuture::ready(Ok(fresh))
    }

    fn describe(&self) -> &'static str {
        "in-memory limiter"
    }
}

// ---------------------------------------------------------------------------
// Idempotency keys

/// Fixed weight charged per idempotency entry on top of its key and body.
pub const ENTRY_OVERHEAD: usize = 256;

/// Bounds of an in-memory idempotency store.
#[derive(Clone, Debug)]
pub struct IdempotencyConfig {
    /// Upper bound of the store in bytes (default 64 MiB).
    pub max_bytes: u64,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

enum Slot {
    Running { at: Instant, request: Fingerprint },
    Done(Record),
}

fn weigh(key: &str, slot: &Slot) -> u32 {
    let body = match slot {
        Slot::Running { .. } => 0,
        Slot::Done(r) => r.held_bytes(),
    };
    (key.len() + body + ENTRY_OVERHEAD).min(u32::MAX as usize) as u32
}

/// The in-memory [`IdempotencyStore`]: a `moka` cache weighed in bytes.
///
/// * **Who writes it:** the pipeline, for every action request that carries
///   an `Idempotency-Key` (or `_idem`) — scoped by action and caller, the
///   key part client-chosen — and, as the webhook seen-store, the webhook
///   receiver after a valid signature.
/// * **What bounds it:** [`IdempotencyConfig::max_bytes`] in total (default 64
///   MiB); each entry weighs its key + body + [`ENTRY_OVERHEAD`] (256 bytes),
///   so at most ~260 k entries; bodies over
///   [`crate::store::MAX_STORED_BODY`] are kept as a hash only.
/// * **What removes it:** the TTL ([`KEEP`], 24 h), a failed attempt
///   (`abandon`), and moka's eviction when full.
/// * **One abuser:** a flood of one-off keys evicts (or is refused admission
///   against, by moka's TinyLFU policy) other callers' stored results, whose
///   retries would then run again; the bound is chosen so that the rate
///   limits in front of every action make that take far longer than a retry
///   window. That is why webhook deliveries get a store of their own in
///   memory mode ([`super::Stores`]): an evicted delivery could be replayed
///   inside its signature window.
pub struct MemoryIdempotency {
    cache: moka::sync::Cache<Arc<str>, Arc<Slot>>,
}

impl Default for MemoryIdempotency {
    fn default() -> Self {
        Self::new(&IdempotencyConfig::default())
    }
}

impl MemoryIdempotency {
    /// A store bounded by `config`.
    pub fn new(config: &IdempotencyConfig) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &Arc<str>, v: &Arc<Slot>| weigh(k, v))
            .time_to_live(KEEP)
            .build();
        MemoryIdempotency { cache }
    }

    fn begin_now(&self, key: &str, request: Fingerprint) -> Claim {
        let now = Instant::now();
        let mut found: Option<Claim> = None;
        let running = || moka::ops::compute::Op::Put(Arc::new(Slot::Running { at: now, request }));
        self.cache
            .entry(Arc::from(key))
            .and_compute_with(|current| match current.map(|e| e.into_value()) {
                None => {
                    found = Some(Claim::Claimed);
                    running()
                }
                Some(slot) => match &*slot {
                    // A crashed or stuck attempt's claim lapses.
                    Slot::Running { at, .. } if now.duration_since(*at) >= CLAIM => {
                        found = Some(Claim::Claimed);
                        running()
                    }
                    Slot::Running { request: r, .. } => {
                        found = Some(Claim::Running {
                            same_request: *r == request,
                        });
                        moka::ops::compute::Op::Nop
                    }
                    Slot::Done(record) => {
                        found = Some(Claim::Done(record.clone()));
                        moka::ops::compute::Op::Nop
                    }
                },
            });
        found.unwrap_or(Claim::Running { same_request: true })
    }
}

impl IdempotencyStore for MemoryIdempotency {
    fn begin<'a>(&'a self, key: &'a str, request: Fingerprint) -> StoreFuture<'a, Claim> {
        let claim = self.begin_now(key, request);
        StoreFuture::ready(Ok(claim))
    }

    fn complete<'a>(&'a self, key: &'a str, record: Record) -> StoreFuture<'a, ()> {
        self.cache
            .insert(Arc::from(key), Arc::new(Slot::Done(record)));
        StoreFuture::ready(Ok(()))
    }

    fn abandon<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.cache.invalidate(key);
        StoreFuture::ready(Ok(()))
    }

    fn memory_usage(&self) -> Option<(u64, u64)> {
        self.cache.run_pending_tasks();
        Some((self.cache.entry_count(), self.cache.weighted_size()))
    }

    fn describe(&self) -> &'static str {
        "in-memory idempotency store"
    }
}

// ---------------------------------------------------------------------------
// Tag bus

/// Messages a subscription may fall behind by before it is ended (and the
/// engine clears its cache and resubscribes).
pub const BUS_BACKLOG: usize = 1024;

/// An in-process [`TagBus`]: a broadcast channel. Hand clones of one bus to
/// several apps in one process (tests of multi-instance invalidation); a
/// single instance needs no bus.
///
/// State: one `tokio::sync::broadcast` ring of [`BUS_BACKLOG`] messages.
/// * **Who writes it:** the fragment engines it connects (one message per
///   tag bump, i.e. per `update_tag` / `revalidate_tag` of an action).
/// * **What bounds it:** the ring; a subscription that falls more than
///   [`BUS_BACKLOG`] messages behind is ended (its engine clears its render
///   cache), never grows a queue.
/// * **What removes it:** newer messages overwrite the oldest.
/// * **One abuser:** a user who makes many bumps (many actions) can make a
///   slow engine miss messages; the engine then clears its cache, which
///   costs re-renders, never a stale page.
#[derive(Clone)]
pub struct MemoryTagBus {
    tx: tokio::sync::broadcast::Sender<String>,
}

impl Default for MemoryTagBus {
    fn default() -> Self {
        MemoryTagBus {
            tx: tokio::sync::broadcast::channel(BUS_BACKLOG).0,
        }
    }
}

impl MemoryTagBus {
    /// A bus with no subscriber yet.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TagBus for MemoryTagBus {
    fn publish<'a>(&'a self, message: &'a str) -> StoreFuture<'a, ()> {
        // No subscriber is not an error: nobody needed the message.
        let _ = self.tx.send(message.to_owned());
        StoreFuture::ready(Ok(()))
    }

    fn publish_counted<'a>(&'a self, message: &'a str) -> StoreFuture<'a, Option<usize>> {
        StoreFuture::ready(Ok(Some(self.tx.send(message.to_owned()).unwrap_or(0))))
    }

    fn counts_receivers(&self) -> bool {
        true
    }

    fn subscribe(&self) -> StoreFuture<'_, TagStream> {
        let rx = self.tx.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            // Lagged: messages were lost; end the stream so the engine
            // clears its cache and resubscribes.
            rx.recv().await.ok().map(|m| (m, rx))
        });
        StoreFuture::ready(Ok(Box::pin(stream) as TagStream))
    }

    fn describe(&self) -> &'static str {
        "in-memory tag bus"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Quota;
    use std::time::Duration;

    /// A flood of distinct client-chosen keys (say, emails on a login form
    /// limited per account) within one window: the in-memory limiter stays
    /// under its cap, and the key the flood targets keeps its debt.
    #[test]
    fn rate_limit_key_flood_stays_bounded() {
        let limiter = MemoryCounters::default();
        let quota = Quota {
            count: 5,
            period: Duration::from_secs(3600),
        };
        let bucket = |key: String| Bucket { key, quota };
        let now = 1_000_000_000_000u64;
        // The victim's account is locked out: 5 attempts used.
        let victim = bucket("login:acct:victim@example.com".into());
        for _ in 0..5 {
            assert!(limiter.check_at(std::slice::from_ref(&victim), now)[0].allowed);
        }
        assert!(!limiter.check_at(std::slice::from_ref(&victim), now)[0].allowed);
        let n = SHARDS * MAX_PER_SHARD * 2;
        for i in 0..n {
            limiter.check_at(&[bucket(format!("login:acct:{i}@example.com"))], now + 1);
        }
        let held: usize = limiter.tats.iter().map(|s| lock(s).len()).sum();
        eprintln!(
            "{n} distinct keys → {held} held (cap {})",
            SHARDS * MAX_PER_SHARD
        );
        assert!(held <= SHARDS * MAX_PER_SHARD);
        assert!(
            !limiter.check_at(std::slice::from_ref(&victim), now + 2)[0].allowed,
            "the flood did not reset the victim's limit"
        );
    }
}
