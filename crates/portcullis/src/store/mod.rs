//! External stores: one Redis connection, one deadline policy, one way to
//! fail.
//!
//! Every call the framework makes to something outside the process — the
//! session store, the Redis behind limits, quotas, spent challenges,
//! idempotency keys and the tag bus — goes through this module, so there is
//! one place that decides how long a call may take, how a lost connection is
//! re-established, and what the client sees when the dependency is down.
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
//! | limits, quotas, spent challenges ([`crate::ratelimit`]) | fail closed: `503 limiter_unavailable`, unless the action declared `.fail_open()` (`portcullis audit` lists those) | a limit that is skipped when Redis is down is a limit an attacker can switch off by overloading Redis |
//! | idempotency keys ([`crate::idempotency`]) | fail closed: `503 idempotency_unavailable` before the handler runs | without the claim a retried mutation could apply twice |
//! | tag bus ([`crate::fragment`]) | degrades: invalidation stays local; other instances' cached fragments may be stale until their TTL or until the bus reconnects (which clears the render cache) | a stale fragment is a display problem bounded by the TTL; refusing every page because the bus is down would be an outage of its own |
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
pub mod conformance;
pub mod counter;
pub mod gcra;
pub mod idempotency;
pub mod memory;
pub mod redis;
mod stores;
pub mod window;

use std::cell::Cell;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderValue;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use crate::error::{Digest, ErrorCode, Rejection};

pub use self::bus::{TagBus, TagStream};
pub use self::counter::{Bucket, CounterStore, Decision, Quota, QuotaDecision, StoreFuture};
pub use self::idempotency::{Claim, Fingerprint, IdempotencyStore};
pub use self::memory::{IdempotencyConfig, MemoryCounters, MemoryIdempotency, MemoryTagBus};
pub use self::redis::{Redis, RedisCounters, RedisIdempotency, RedisSessionStore, RedisTagBus};
pub use self::stores::Stores;

/// How long each kind of external call may take. Configured with
/// `PORTCULLIS_REDIS_TIMEOUT_MS`, `PORTCULLIS_SESSION_TIMEOUT_MS` and
/// `PORTCULLIS_HANDLER_TIMEOUT_MS` (see [`crate::config`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// One Redis command (idempotency claim/complete, tag-bus publish,
    /// session commands on Redis). Default 50 ms: a healthy Redis answers
    /// in well under a millisecond.
    pub redis: Duration,
    /// One session-store operation (load, create, save, delete), whatever
    /// the store. Default 500 ms: generous for a SQL store under write
    /// contention, short enough that a hung store answers 503 at once.
    pub session: Duration,
    /// A whole handler (or page) run: the bound on dependencies the
    /// framework cannot see, such as the app's database. Default 10 s.
    pub handler: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            redis: Duration::from_millis(50),
            session: Duration::from_millis(500),
            handler: Duration::from_secs(10),
        }
    }
}

/// Why an external call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The call did not finish within its deadline (a hung or slow store).
    #[error("{store} did not answer within {after:?}")]
    Timeout {
        store: &'static str,
        after: Duration,
    },
    /// The store answered with an error or the connection failed.
    #[error("{store}: {detail}")]
    Unavailable { store: &'static str, detail: String },
    /// The Redis URL could not be parsed.
    #[error("redis url: {0}")]
    BadUrl(String),
}

// ---------------------------------------------------------------------------
// Outage logging

/// The log state of one dependency: one line down, a summary a minute, one
/// line up. Written only by the calls to that dependency; bounded (a few
/// counters and the last error's text, capped at 200 bytes); nothing removes
/// it (it lives as long as the app). One user's flood of failing requests
/// adds to the counters only, never to the log volume.
pub struct Outage {
    name: &'static str,
    /// Fast path: a healthy dependency costs one relaxed load per call.
    down: AtomicBool,
    state: Mutex<OutageState>,
    recoveries: AtomicU64,
    recovered: tokio::sync::Notify,
    summary_every: Duration,
}

struct OutageState {
    since: Option<Instant>,
    failed: u64,
    failed_since_summary: u64,
    last_summary: Option<Instant>,
    last_error: String,
}

/// How often an ongoing outage is summarised in the log.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

impl Outage {
    pub fn new(name: &'static str) -> Self {
        Outage {
            name,
            down: AtomicBool::new(false),
            state: Mutex::new(OutageState {
                since: None,
                failed: 0,
                failed_since_summary: 0,
                last_summary: None,
                last_error: String::new(),
            }),
            recoveries: AtomicU64::new(0),
            recovered: tokio::sync::Notify::new(),
            summary_every: SUMMARY_EVERY,
        }
    }

    /// Whether the last call failed.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// How many times the dependency came back.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Ordering::Relaxed)
    }

    /// Resolves the next time the dependency comes back.
    pub async fn recovered(&self) {
        self.recovered.notified().await
    }

    /// Records a failed call (`digest`: the request's, if it has one).
    pub fn failed(&self, error: &dyn fmt::Display, digest: Option<Digest>) {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.failed += 1;
        s.failed_since_summary += 1;
        s.last_error.clear();
        let text = error.to_string();
        let mut cut = text.len().min(200);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        s.last_error.push_str(&text[..cut]);
        match s.since {
            None => {
                s.since = Some(now);
                s.last_summary = Some(now);
                s.failed_since_summary = 0;
                self.down.store(true, Ordering::Relaxed);
                let digest = digest.map(|d| d.to_string()).unwrap_or_default();
                tracing::warn!(dependency = self.name, %digest, error = %s.last_error, "{} unavailable", self.name);
            }
            Some(since) => {
                if s.last_summary
                    .is_none_or(|t| now.duration_since(t) >= self.summary_every)
                {
                    tracing::warn!(
                        dependency = self.name,
                        down_for_s = since.elapsed().as_secs(),
                        failed_calls = s.failed_since_summary,
                        error = %s.last_error,
                        "{} still unavailable",
                        self.name
                    );
                    s.last_summary = Some(now);
                    s.failed_since_summary = 0;
                }
            }
        }
        if let Some(d) = digest {
            tracing::debug!(dependency = self.name, digest = %d, error = %s.last_error, "call failed");
        }
    }

    /// Records a successful call.
    pub fn ok(&self) {
        if !self.down.load(Ordering::Relaxed) {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(since) = s.since.take() {
            self.down.store(false, Ordering::Relaxed);
            tracing::info!(
                dependency = self.name,
                down_for_ms = since.elapsed().as_millis() as u64,
                failed_calls = s.failed,
                "{} reachable again",
                self.name
            );
            s.failed = 0;
            s.failed_since_summary = 0;
            self.recoveries.fetch_add(1, Ordering::Relaxed);
            self.recovered.notify_waiters();
        }
    }
}

impl fmt::Debug for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outage")
            .field("name", &self.name)
            .field("down", &self.is_down())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Sessions: a deadline around any store, and the 503 it maps to

tokio::task_local! {
    /// Set when a session-store call failed during this request, so
    /// [`session_guard`] can tell tower-sessions' bare 500 (a failed save
    /// after the handler) from any other 500.
    static SESSION_FAULT: Cell<bool>;
}

/// Marks the text of store errors that mean "unavailable" (a deadline or a
/// backend failure), as opposed to a record that does not decode.
const UNAVAILABLE: &str = "session store unavailable";

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
    pub fn new(inner: S, after: Duration) -> Self {
        Deadline {
            inner,
            after,
            outage: std::sync::Arc::new(Outage::new("session store")),
        }
    }

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
        let _ = SESSION_FAULT.try_with(|f| f.set(true));
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

/// The app's [`crate::session::AccountDirectory`] with a deadline on each
/// lookup (one per signed-in request, usually a database query): a miss is
/// `503 session_store_unavailable` (the identity could not be checked; the
/// request is neither trusted nor signed out). Errors of the directory
/// itself pass through (the app's classifier maps them).
pub(crate) struct DirectoryDeadline {
    pub(crate) inner: std::sync::Arc<dyn crate::session::AccountDirectory>,
    pub(crate) after: Duration,
}

impl crate::session::AccountDirectory for DirectoryDeadline {
    fn security_stamp(
        &self,
        user: crate::viewer::UserId,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Option<crate::session::Stamp>, crate::error::ActionError>,
    > {
        let (call, after) = (self.inner.security_stamp(user), self.after);
        Box::pin(async move {
            match tokio::time::timeout(after, call).await {
                Ok(r) => r,
                Err(_) => {
                    let r = session_unavailable();
                    tracing::debug!(digest = %r.digest, ?after, "account directory missed its deadline; 503");
                    Err(crate::error::ActionError::Rejected(r))
                }
            }
        })
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
/// fails, [`session_guard`] turns its bare 500 into the same 503.
pub(crate) async fn persist_session(session: &tower_sessions::Session) -> Result<(), Rejection> {
    if session.is_modified() && !session.is_empty().await {
        session.save().await.map_err(session_rejection)?;
    }
    Ok(())
}

/// Outside the session layer: gives each request a fault flag and turns the
/// bare, empty `500` that tower-sessions sends when saving the session after
/// the handler fails into `503 session_store_unavailable` (JSON or an HTML
/// page, by `Accept`), with `Retry-After` and a digest. tower-sessions does
/// not set the session cookie in that case, so a sign-in whose session did
/// not persist is never reported as a success.
pub(crate) async fn session_guard(
    login_path: std::sync::Arc<str>,
    reauth_path: std::sync::Arc<str>,
    request: Request,
    next: Next,
) -> Response {
    let client = crate::respond::ClientKind::from_headers(request.headers());
    SESSION_FAULT
        .scope(Cell::new(false), async move {
            let response = next.run(request).await;
            let faulted = SESSION_FAULT.try_with(|f| f.get()).unwrap_or(false);
            if faulted
                && response.status() == http::StatusCode::INTERNAL_SERVER_ERROR
                && !response.headers().contains_key(http::header::CONTENT_TYPE)
            {
                let r = session_unavailable();
                tracing::debug!(digest = %r.digest, "session not saved after the handler; 503");
                return crate::respond::failure_with_paths(
                    client,
                    &r,
                    &login_path,
                    &reauth_path,
                    None,
                );
            }
            response
        })
        .await
}

/// The 503 a handler or page that outlived [`Deadlines::handler`] becomes.
pub fn deadline_exceeded() -> Rejection {
    Rejection::new(ErrorCode::DeadlineExceeded)
        .header(http::header::RETRY_AFTER, HeaderValue::from_static("1"))
}

/// Runs a page (any route the app added with `pages`) under `after`: a page
/// waiting on a hung dependency answers `503 deadline_exceeded` (an HTML
/// page for browsers) instead of hanging. Pages only read, so abandoning
/// one half-way changes nothing.
pub(crate) async fn page_deadline(after: Duration, request: Request, next: Next) -> Response {
    let client = crate::respond::ClientKind::from_headers(request.headers());
    match tokio::time::timeout(after, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let r = deadline_exceeded();
            tracing::warn!(digest = %r.digest, after_ms = after.as_millis() as u64, "page did not finish within its deadline; 503");
            crate::respond::failure_with_paths(client, &r, "/", "/", None)
        }
    }
}

/// The outage log of the app's own dependencies (its database, …), as seen
/// through errors the app's classifier maps to a 503
/// ([`crate::error::set_error_classifier`]): one line when the first such
/// error happens, a summary a minute, one line when an action succeeds
/// again. Process-wide, like the classifier.
pub fn app_dependencies() -> &'static Outage {
    static OUTAGE: std::sync::OnceLock<Outage> = std::sync::OnceLock::new();
    OUTAGE.get_or_init(|| Outage::new("app dependency"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn logged(f: impl FnOnce()) -> Vec<String> {
        let out = Lines::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// A flood of failing calls (one abusive client, or every request during
    /// an outage) is one line down, one line up: the log volume does not
    /// grow with the number of failures, and the state stays a few counters.
    #[test]
    fn ten_thousand_failed_calls_log_one_line_down_and_one_up() {
        let outage = Outage::new("redis");
        let lines = logged(|| {
            for i in 0..10_000 {
                outage.failed(
                    &format_args!("refused {i} {}", "x".repeat(500)),
                    Some(Digest::random()),
                );
            }
            assert!(outage.is_down());
            outage.ok();
            outage.ok();
        });
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(lines[0].contains("redis unavailable"), "{}", lines[0]);
        assert!(lines[1].contains("redis reachable again"), "{}", lines[1]);
        assert!(lines[1].contains("failed_calls=10000"), "{}", lines[1]);
        assert!(!outage.is_down());
        assert_eq!(outage.recoveries(), 1);
        let s = outage.state.lock().unwrap();
        assert!(s.last_error.len() <= 200, "last error is capped");
    }

    #[test]
    fn a_long_outage_is_summarised_once_per_period() {
        let mut outage = Outage::new("redis");
        outage.summary_every = Duration::from_millis(30);
        let lines = logged(|| {
            let started = Instant::now();
            while started.elapsed() < Duration::from_millis(100) {
                outage.failed(&"timed out", None);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let summaries = lines
            .iter()
            .filter(|l| l.contains("still unavailable"))
            .count();
        assert!(lines[0].contains("redis unavailable"), "{lines:#?}");
        assert!((2..=4).contains(&summaries), "{lines:#?}");
    }
}
