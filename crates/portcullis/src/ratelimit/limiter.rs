//! [`Limiter`]: an action's limits and quotas against a [`CounterStore`].
//!
//! The store counts; this decides what the counts mean for one request:
//! which limit is the tightest (the one the `RateLimit` headers report),
//! whether to refuse, what a store failure becomes (503, or nothing for a
//! `.fail_open()` action), and which quota units to give back after a failed
//! handler.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::headers::{headers, human, too_many, unavailable};
use super::{Limit, NamedQuota, QuotaState};
use crate::error::Rejection;
use crate::store::{Bucket, CounterStore, Decision};

/// The app's limits, quotas and spent one-time tokens, on one
/// [`CounterStore`] (in memory, Redis, or the app's own; see
/// [`crate::store::Stores`]). Cheap to clone (an `Arc`).
///
/// State: none of its own; everything it counts is in the store, whose
/// type documents its bounds.
#[derive(Clone)]
pub struct Limiter {
    store: Arc<dyn CounterStore>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl Limiter {
    /// A limiter counting in `store`.
    pub fn new(store: Arc<dyn CounterStore>) -> Self {
        Limiter { store }
    }

    /// A limiter counting in memory ([`crate::store::MemoryCounters`]).
    pub fn memory() -> Self {
        Self::new(Arc::new(crate::store::MemoryCounters::default()))
    }

    /// The store it counts in (also where proof-of-work challenges and
    /// flash cookies are spent).
    pub fn store(&self) -> &dyn CounterStore {
        &*self.store
    }

    /// The store's name (`"in-memory limiter"`, `"redis limiter"`).
    pub fn describe(&self) -> &'static str {
        self.store.describe()
    }

    /// Stage 4 / stage 6 entry point: checks `limits` (with their computed
    /// keys) and returns the headers to attach, or the refusal.
    pub(crate) async fn enforce(
        &self,
        limits: &[Limit],
        keys: Vec<String>,
        fail_open: bool,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, Rejection> {
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        let buckets: Vec<Bucket> = keys
            .into_iter()
            .zip(limits)
            .map(|(key, l)| Bucket {
                key,
                quota: l.quota,
            })
            .collect();
        let decisions = match self.store.check(&buckets, None).await {
            Ok(d) => d,
            Err(e) => return unavailable(e, fail_open).map(|()| Vec::new()),
        };
        let mut tightest: Option<(usize, Decision)> = None;
        for (i, d) in decisions.into_iter().enumerate() {
            let tighter = match &tightest {
                None => true,
                Some((_, t)) => {
                    (!d.allowed && t.allowed)
                        || (d.allowed == t.allowed && d.remaining < t.remaining)
                }
            };
            if tighter {
                tightest = Some((i, d));
            }
        }
        let Some((i, d)) = tightest else {
            return Ok(Vec::new());
        };
        let headers = headers(&limits[i], &d);
        if d.allowed {
            return Ok(headers);
        }
        Err(too_many(d.retry_after_us, headers))
    }

    /// After a failed handler: gives the quota units back (best effort).
    pub(crate) async fn refund(&self, quotas: &[NamedQuota], keys: Vec<String>) {
        if quotas.is_empty() {
            return;
        }
        let buckets: Vec<Bucket> = keys
            .into_iter()
            .zip(quotas)
            .map(|(key, q)| Bucket {
                key,
                quota: q.limit.quota,
            })
            .collect();
        if let Err(e) = self.store.refund_quotas(&buckets, None).await {
            tracing::warn!(error = %e, "could not refund quota after a failed handler");
        }
    }

    /// Stage 6: charges the action's quotas; returns what is left of each.
    pub(crate) async fn charge_quotas(
        &self,
        quotas: &[NamedQuota],
        keys: Vec<String>,
        fail_open: bool,
    ) -> Result<Vec<(&'static str, QuotaState)>, Rejection> {
        if quotas.is_empty() {
            return Ok(Vec::new());
        }
        let buckets: Vec<Bucket> = keys
            .into_iter()
            .zip(quotas)
            .map(|(key, q)| Bucket {
                key,
                quota: q.limit.quota,
            })
            .collect();
        let decisions = match self.store.take_quotas(&buckets, None).await {
            Ok(d) => d,
            Err(e) => return unavailable(e, fail_open).map(|()| Vec::new()),
        };
        let mut out = Vec::with_capacity(quotas.len());
        for (q, d) in quotas.iter().zip(&decisions) {
            let state = QuotaState {
                limit: q.limit.quota.count,
                remaining: q.limit.quota.count.saturating_sub(d.used as u32),
                resets_in: Duration::from_micros(d.window_end_us.saturating_sub(d.now_us)),
            };
            if !d.allowed {
                let mut r = too_many(d.window_end_us.saturating_sub(d.now_us), Vec::new());
                r.message = format!(
                    "The limit for {} has been reached. Try again in {}.",
                    q.name.replace(['_', '.'], " "),
                    human(state.resets_in)
                );
                return Err(r);
            }
            out.push((q.name, state));
        }
        Ok(out)
    }
}
