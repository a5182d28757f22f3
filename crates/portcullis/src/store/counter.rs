//! The counter store: rate-limit buckets, quota windows and spent one-time
//! tokens, behind one trait so a backend can be written outside the crate.
//!
//! Three kinds of counter share a store because they share a failure mode
//! (see the fail-mode table in [`crate::store`]: closed, `503
//! limiter_unavailable`, unless the action is `.fail_open()`) and, on Redis,
//! one connection and one deadline:
//!
//! * **buckets** ([`CounterStore::check`]): GCRA, one theoretical arrival
//!   time per key, every bucket of a call charged all or nothing
//!   ([`super::gcra`] is the reference arithmetic);
//! * **quotas** ([`CounterStore::take_quotas`], [`CounterStore::refund_quotas`]):
//!   a count per epoch-aligned fixed window ([`super::window`]), all or
//!   nothing, given back after a failed handler;
//! * **spent tokens** ([`CounterStore::spend_once`]): a one-time value
//!   (a solved proof-of-work challenge, a no-JS flash cookie's nonce) is
//!   marked spent until it expires, so a replay is seen on every instance.
//!
//! The logic that *uses* counters (which keys, which limit is the tightest,
//! the 429 and its headers) is in [`crate::ratelimit`], the bot checks
//! ([`crate::BotCheck`]) and the no-JavaScript flash; a backend only stores
//! and compares numbers. The three namespaces are disjoint: a bucket, a
//! quota and a spent token with the same key text are three different
//! counters.
//!
//! A new backend implements [`CounterStore`] and passes
//! `portcullis::store::conformance::counter_store` (feature `testing`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;

use super::StoreError;
pub use super::gcra::Decision;

/// What every store method returns: an answer the store already has (an
/// in-memory store; no allocation) or a boxed future (a network round
/// trip). The traits are used as `dyn`, so their methods cannot be `async
/// fn`; build one with [`StoreFuture::ready`] or [`StoreFuture::new`].
#[must_use = "a store call does nothing unless awaited"]
pub struct StoreFuture<'a, T>(Inner<'a, T>);

enum Inner<'a, T> {
    Ready(Option<Result<T, StoreError>>),
    Pending(BoxFuture<'a, Result<T, StoreError>>),
}

impl<'a, T> StoreFuture<'a, T> {
    /// An answer known now.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        StoreFuture(Inner::Ready(Some(result)))
    }

    /// An answer `future` will give.
    pub fn new(future: impl Future<Output = Result<T, StoreError>> + Send + 'a) -> Self {
        StoreFuture(Inner::Pending(Box::pin(future)))
    }
}

impl<T: Unpin> Future for StoreFuture<'_, T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            Inner::Ready(answer) => {
                Poll::Ready(answer.take().unwrap_or(Err(StoreError::Unavailable {
                    store: "store",
                    detail: "polled after it answered".into(),
                })))
            }
            Inner::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

/// `count` requests per `period`, with bursts up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// Calls allowed per period (and the largest burst).
    pub count: u32,
    /// The period (serialized as `periodSecs`, whole seconds).
    #[serde(rename = "periodSecs", serialize_with = "secs")]
    pub period: Duration,
}

impl Quota {
    /// The period in microseconds (at least 1), as the backends count.
    pub fn period_us(&self) -> u64 {
        (self.period.as_micros() as u64).max(1)
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// A backend bucket: its key and quota.
#[derive(Clone, Debug)]
pub struct Bucket {
    /// The backend key, chosen by the framework (request- or input-derived
    /// values hashed); one bucket per key.
    pub key: String,
    /// The rate this bucket enforces.
    pub quota: Quota,
}

/// One quota bucket's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaDecision {
    /// Whether the unit was charged (all buckets had room).
    pub allowed: bool,
    /// Units used in this window after this request (unchanged when refused).
    pub used: u64,
    /// When the current window ends, in µs since the epoch.
    pub window_end_us: u64,
    /// The clock the decision was made at, in µs since the epoch (the
    /// backend's own when the caller passed `None`).
    pub now_us: u64,
}

/// Where limits, quotas and spent one-time tokens are counted: in memory
/// ([`super::MemoryCounters`], one instance) or Redis
/// ([`super::RedisCounters`], many instances), or a backend of the app's.
///
/// Every key is chosen by the framework from client input (an address, a
/// session, a submitted e-mail hashed), so a backend **must be bounded**: a
/// flood of distinct keys may make it forget entries, but only those whose
/// forgetting gives back the least budget (for buckets, the lowest TAT; for
/// quotas, the lowest count) — never the key the flood targets — and it must
/// never forget a *live* spent token (that would allow a replay). Each
/// implementation's doc states its bounds.
///
/// `now_us` is the clock in µs since the epoch, or `None` for the backend's
/// own (Redis uses the server's `TIME`, so instances with skewed clocks
/// share one timeline); the conformance suite drives it explicitly.
pub trait CounterStore: Send + Sync + 'static {
    /// Checks `buckets` together with [`super::gcra::check`], all or nothing:
    /// when any refuses, none is charged. One [`Decision`] per bucket, in
    /// order; each equal to what `gcra::check` returns for the stored TAT.
    fn check<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<Decision>>;

    /// Charges one unit of each quota bucket (`quota.count` per fixed window
    /// of `quota.period`, [`super::window::bounds`]) if every one has room,
    /// all or nothing. One [`QuotaDecision`] per bucket.
    fn take_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<QuotaDecision>>;

    /// Gives back one unit of each quota bucket, if it is still in the window
    /// `now_us` falls in (a call whose handler failed). Never below zero.
    fn refund_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, ()>;

    /// Marks the one-time token `key` as spent until `expires_at_us` (µs
    /// since the epoch). `Ok(false)`: it was already spent and has not
    /// expired (a replay).
    fn spend_once<'a>(&'a self, key: &'a str, expires_at_us: u64) -> StoreFuture<'a, bool>;

    /// A short name for logs and test messages (`"in-memory limiter"`).
    fn describe(&self) -> &'static str;
}
