//! The in-memory stores: one instance, no dependency.
//!
//! [`MemoryCounters`]: limits, quotas, spent tokens. Each type's doc says who
//! writes it, what bounds it, what removes it and what one abuser can do to
//! other users.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use super::counter::{Bucket, CounterStore, Decision, QuotaDecision, StoreFuture};
use super::{gcra, window};

const SHARDS: usize = 32;
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
fn shed<V>(map: &mut HashMap<u64, V>, live: impl Fn(&V) -> bool, debt: impl Fn(&V) -> u64) {
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
///   the cap, the entries with the least debt ([`shed`]).
/// * **One abuser:** a flood of distinct keys (say, e-mails on a login form
///   limited per account) fills shards and makes them forget the keys
///   closest to a full budget; the key the flood targets carries the most
///   debt and keeps it, so the flood cannot reset a victim's limit. Other
///   users' own buckets may be forgotten only when they were nearly full
///   (they get back at most a sliver of budget). The stage-4 per-address
///   limit caps how fast one address can add keys.
pub struct MemoryCounters {
    tats: Vec<Mutex<HashMap<u64, u64>>>,
    quotas: Vec<Mutex<HashMap<u64, (u64, u64)>>>,
    spent: Vec<Mutex<HashMap<u64, u64>>>,
    hasher: RandomState,
}

impl Default for MemoryCounters {
    fn default() -> Self {
        fn shards<V>() -> Vec<Mutex<HashMap<u64, V>>> {
            (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect()
        }
        MemoryCounters {
            tats: shards(),
            quotas: shards(),
            spent: shards(),
            hasher: RandomState::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned shard holds plain numbers; they are still valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks the distinct shards of `hashes` in ascending order (no deadlock).
fn lock_shards<'a, V>(
    shards: &'a [Mutex<HashMap<u64, V>>],
    hashes: &[u64],
) -> Vec<(usize, MutexGuard<'a, HashMap<u64, V>>)> {
    let mut idx: Vec<usize> = hashes
        .iter()
        .map(|h| (*h as usize) % shards.len())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter().map(|i| (i, lock(&shards[i]))).collect()
}

fn shard_of<'g, V>(
    guards: &'g mut [(usize, MutexGuard<'_, HashMap<u64, V>>)],
    hash: u64,
    n: usize,
) -> &'g mut HashMap<u64, V> {
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
        Box::pin(std::future::ready(Ok(d)))
    }

    fn take_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<QuotaDecision>> {
        let d = self.take_quotas_at(buckets, now_us.unwrap_or_else(self::now_us));
        Box::pin(std::future::ready(Ok(d)))
    }

    fn refund_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, ()> {
        self.refund_quotas_at(buckets, now_us.unwrap_or_else(self::now_us));
        Box::pin(std::future::ready(Ok(())))
    }

    fn spend_once<'a>(&'a self, key: &'a str, expires_at_us: u64) -> StoreFuture<'a, bool> {
        let fresh = self.spend_once_at(key, expires_at_us, now_us());
        Box::pin(std::future::ready(Ok(fresh)))
    }

    fn describe(&self) -> &'static str {
        "in-memory limiter"
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
