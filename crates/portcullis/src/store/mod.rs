//! External stores: three traits, one Redis connection, one deadline
//! policy, one way to fail.
//!
//! Every call the framework makes to something outside the process — the
//! session store, the Redis behind limits, quotas, spent challenges,
//! idempotency keys and the tag bus — goes through this module, so there is
//! one place that decides how long a call may take, how a lost connection is
//! re-established, and what the client sees when the dependency is down.
//!
//! # Stores as traits
//! What the framework keeps outside a request is behind three traits, each
//! with an in-memory and a Redis implementation, chosen once per app as a
//! [`Stores`] value and handed to the builder
//! ([`crate::Portcullis::stores`]) the way the session store is handed to
//! `build`:
//!
//! | trait | what | memory | Redis |
//! |---|---|---|---|
//! | [`CounterStore`] ([`counter`]) | rate-limit buckets (GCRA, [`gcra`]), quota windows ([`window`]), spent one-time tokens | [`MemoryCounters`] | [`RedisCounters`] (`lua/*.lua`) |
//! | [`IdempotencyStore`] ([`idempotency`]) | claimed and finished idempotency keys, webhook deliveries | [`MemoryIdempotency`] | [`RedisIdempotency`] |
//! | [`TagBus`] ([`bus`]) | tag bumps between instances | [`MemoryTagBus`] (one process) | [`RedisTagBus`] |
//!
//! The logic over them stays where it was ([`crate::ratelimit`],
//! the idempotency stage, [`mod@crate::fragment`]); a store only keeps and
//! compares. Every Redis implementation runs on the app's one [`Redis`]
//! connection. A backend written outside the crate implements a trait and
//! passes the same checks as these ([`conformance`], feature `testing`).
//! Each implementation's type doc states its bounds: who writes it, what
//! bounds it, what removes it, what one abuser does to the others.
//!
//! # Why a deadline on every call
//! A dependency that *hangs* (a stopped process with its connections still
//! open, a saturated network) is worse than one that is gone: without a
//! deadline each request waits until the client gives up, and the waiting
//! requests pile up. So every call here runs under a deadline
//! ([`Deadlines`]); a missed deadline is a [`StoreError::Timeout`] that the
//! request turns into a `503` with a stable code and `Retry-After: 1` within
//! the deadline, never a hang.
//!
//! # Fail mode, per store (why)
//!
//! | store | on outage | why |
//! |---|---|---|
//! | sessions ([`Deadline`] around any `SessionStore`, [`RedisSessionStore`]) | fail closed: `503 session_store_unavailable` for every request that carries a session cookie; anonymous pages keep working | identity cannot be guessed; serving a signed-in page as anonymous would sign users out and lose their work |
//! | the session cache ([`SessionCache`], in front of the session store) | not trusted while the bus subscription is down or Redis has failed: reads go to the session store (which fails closed) and the cache starts again empty; a change not confirmed by every instance is a 503 | a copy that may have missed a sign-out must not answer for the store |
//! | limits, quotas, spent challenges ([`crate::ratelimit`]) | fail closed: `503 limiter_unavailable`, unless the action declared `.fail_open()` (`portcullis audit` lists those) | a limit that is skipped when Redis is down is a limit an attacker can switch off by overloading Redis |
//! | idempotency keys ([`IdempotencyStore`]) | fail closed: `503 idempotency_unavailable` before the handler runs | without the claim a retried mutation could apply twice |
//! | tag bus ([`mod@crate::fragment`]) | degrades: invalidation stays local; other instances' cached fragments may be stale until their TTL or until the bus reconnects (which clears the render cache) | a stale fragment is a display problem bounded by the TTL; refusing every page because the bus is down would be an outage of its own |
//! | the app's database (the demo) | fail closed: `503 database_unavailable` (pool acquire deadline, Postgres statement timeout, the error classifier) | nothing was applied; the client may retry |
//! | a handler that outlives [`Deadlines::handler`] | `503 deadline_exceeded` | a hung dependency the framework cannot see (the app's own database or HTTP calls) must not hang the request |
//!
//! # Recovery
//! Nothing is cached across a failure. The shared Redis connection
//! ([`Redis`]) is a `redis::aio::ConnectionManager`: a dropped connection is
//! re-established in the background with exponential backoff and jitter
//! (50 ms doubling, capped at 2 s); a stalled one recovers when the server
//! answers again. A watchdog pings Redis every few seconds even without
//! traffic, so an idle instance notices an outage and its end too. When
//! Redis comes back (same address, fresh process, empty data) the next calls
//! succeed; sessions that lived only in the lost data are simply gone (their
//! users sign in again).
//!
//! # Logs
//! An outage is logged as one line on the way down (with the first failed
//! request's digest), one summary line a minute while it lasts (how many
//! calls failed, the last error), and one line on the way up; each failed
//! request's own digest line is at `debug` ([`Outage`]).

pub mod bus;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod conformance;
pub mod counter;
pub mod gcra;
pub mod idempotency;
pub mod memory;
pub mod redis;
mod session_cache;
mod stores;
pub mod window;

use std::cell::Cell;
use std::fmt;
use std::time::Duration;

use http::HeaderValue;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use crate::error::{ErrorCode, Rejection};

pub use self::bus::{TagBus, TagStream};
pub use self::counter::{Bucket, CounterStore, Decision, Quota, QuotaDecision, StoreFuture};
pub use self::idempotency::{Claim, Fingerprint, IdempotencyStore, MAX_STORED_BODY};
pub use self::memory::{IdempotencyConfig, MemoryCounters, MemoryIdempotency, MemoryTagBus};
pub use self::redis::{Redis, RedisCounters, RedisIdempotency, RedisSessionStore, RedisTagBus};
pub use self::session_cache::{
    CachedSessions, MAX_CACHED_RECORD, SessionCache, SessionCacheConfig,
};
pub use self::stores::Stores;
pub use crate::config::Deadlines;
pub use crate::observe::{Outage, SUMMARY_EVERY, app_dependencies};

/// Why an external call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The call did not finish within its deadline (a hung or slow store).
    #[error("{store} did not answer within {after:?}")]
    Timeout {
        /// Which store (for logs: `"session store"`, `"redis"`, …).
        store: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The store answered with an error or the connection failed.
    #[error("{store}: {detail}")]
    Unavailable {
        /// Which store (for logs).
        store: &'static str,
        /// The store's or the connection's error text (logged, never sent
        /// to the client).
        detail: String,
    },
    /// The Redis URL could not be parsed.
    #[error("redis url: {0}")]
    BadUrl(String),
}

// ---------------------------------------------------------------------------
// Sessions: a deadline around any store, and the 503 it maps to

tokio::task_local! {
    /// Set when a session-store call failed during this request, so
    /// [`crate::session::session_guard`] can tell tower-sessions' bare 500 (a failed save
    /// after the handler) from any other 500.
    static SESSION_FAULT: Cell<bool>;
}

/// Runs `f` with a fresh session-fault flag; returns its output and whether
/// a session-store call failed meanwhile (see [`crate::session::session_guard`]).
pub(crate) async fn watch_session_faults<F: Future>(f: F) -> (F::Output, bool) {
    SESSION_FAULT
        .scope(Cell::new(false), async move {
            let out = f.await;
            let faulted = SESSION_FAULT.try_with(|f| f.get()).unwrap_or(false);
            (out, faulted)
        })
        .await
}

/// Records that a session-store call failed during this request (see
/// [`watch_session_faults`]).
fn mark_session_fault() {
    let _ = SESSION_FAULT.try_with(|f| f.set(true));
}

/// Marks the text of store errors that mean "unavailable" (a deadline or a
/// backend failure), as opposed to a record that does not decode.
pub(crate) const UNAVAILABLE: &str = "session store unavailable";

/// Any `SessionStore` with a deadline on each operation (load, create, save,
/// delete). [`crate::Portcullis::build`] wraps the app's store in it, so the
/// SQLite and Postgres stores are bounded as much as Redis. A missed
/// deadline or a backend error becomes `session_store::Error::Backend`,
/// which the session layer maps to `503 session_store_unavailable`.
///
/// State: none of its own besides the shared [`Outage`] log counters.
#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    after: Duration,
    outage: std::sync::Arc<Outage>,
}

impl<S> Deadline<S> {
    /// Wraps `inner` so each of its operations fails after `after` (the app
    /// builder uses [`Deadlines::session`], 500 ms by default).
    pub fn new(inner: S, after: Duration) -> Self {
        Deadline {
            inner,
            after,
            outage: std::sync::Arc::new(Outage::new("session store")),
        }
    }

    /// The wrapped store, for what the deadline does not cover (e.g. its
    /// own migrations or clean-up task).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn run<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = session_store::Result<T>>,
    ) -> session_store::Result<T> {
        let result = match tokio::time::timeout(self.after, call).await {
            Ok(Ok(v)) => {
                self.outage.ok();
                return Ok(v);
            }
            Ok(Err(session_store::Error::Backend(e))) => {
                format!("{UNAVAILABLE}: {op}: {e}")
            }
            // A record that does not encode or decode is a bug, not an outage.
            Ok(Err(other)) => return Err(other),
            Err(_) => format!("{UNAVAILABLE}: {op} took longer than {:?}", self.after),
        };
        mark_session_fault();
        self.outage.failed(&result, None);
        Err(session_store::Error::Backend(result))
    }
}

impl<S: fmt::Debug> fmt::Debug for Deadline<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline")
            .field("inner", &self.inner)
            .field("after", &self.after)
            .finish()
    }
}

#[async_trait::async_trait]
impl<S: tower_sessions::SessionStore + Clone> tower_sessions::SessionStore for Deadline<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let result = self.run("create", self.inner.create(record)).await;
        if result.is_err() {
            // A stalled store may still apply the write after we gave up;
            // nobody was given this id (no cookie on a 5xx), so remove it
            // behind the write (same connection, same order, best effort)
            // rather than leave an orphan until its expiry.
            let (inner, id) = (self.inner.clone(), record.id);
            tokio::spawn(async move {
                let _ = inner.delete(&id).await;
            });
        }
        result
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.run("save", self.inner.save(record)).await
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.run("load", self.inner.load(id)).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.run("delete", self.inner.delete(id)).await
    }
}

/// The 503 a session-store failure becomes.
pub fn session_unavailable() -> Rejection {
    Rejection::new(ErrorCode::SessionStoreUnavailable)
        .header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
}

/// Maps a tower-sessions error: a backend failure or missed deadline is a
/// 503 (the store is down; nothing was applied); a record that does not
/// encode or decode is a 500 (a bug).
pub(crate) fn session_rejection(e: tower_sessions::session::Error) -> Rejection {
    match e {
        tower_sessions::session::Error::Store(session_store::Error::Backend(detail)) => {
            let r = session_unavailable();
            tracing::debug!(digest = %r.digest, %detail, "session store unavailable; 503");
            r
        }
        other => Rejection::internal(&format_args!("session store: {other}")),
    }
}

/// Writes the session now if the handler changed it, so a write that does
/// not persist (the store is down) fails the action with 503 *before* its
/// success is sent or stored for idempotent replay. tower-sessions saves
/// again after the response (a second, identical write); if only that one
/// fails, [`crate::session::session_guard`] turns its bare 500 into the same 503.
pub(crate) async fn persist_session(session: &tower_sessions::Session) -> Result<(), Rejection> {
    if session.is_modified() && !session.is_empty().await {
        session.save().await.map_err(session_rejection)?;
    }
    Ok(())
}

/// The 503 a handler or page that outlived [`Deadlines::handler`] becomes.
pub fn deadline_exceeded() -> Rejection {
    Rejection::new(ErrorCode::DeadlineExceeded)
        .header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
}
