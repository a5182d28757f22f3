//! Observability: what happened to each action call, without what was in it.
//!
//! Why here and not in a tower layer: only the pipeline knows the action a
//! request resolved to, the viewer stage 5 found and the refusal code of
//! whichever stage said no. So the pipeline reports each call once, at the
//! end, to three places:
//!
//! * a `tracing` span `action` with the action name, viewer id, request id,
//!   outcome code and duration — never input values, cookies or tokens (the
//!   body is not a span field, and refusals log only code and digest);
//! * Prometheus metrics ([`Metrics`]): `portcullis_action_requests_total`
//!   by action and outcome code, `portcullis_action_duration_seconds` by
//!   action. Labels are the registered action *name* (a bounded set); an id
//!   that resolves to nothing counts as `_unresolved`, so a flood of random
//!   ids cannot blow up the label set. The text exposition is served by the
//!   app on a separate admin listener ([`crate::App::admin_router`]), never
//!   on the public one;
//! * an [`AuditSink`] the app installs, called after every *successful
//!   mutation* (an action not declared `.read_only()`) with who, which
//!   action, which record (set by the handler with
//!   [`crate::Cx::audit_record`]), when and the request id. The call is
//!   awaited before the response is sent, so an audit row exists for every
//!   success a client saw.
//!
//! And the outage log of each external dependency ([`Outage`]: one line
//! down, a summary a minute, one line up), used by the stores
//! ([`crate::store`]) and, through the app's error classifier, for the app's
//! own dependencies ([`app_dependencies`]). It is here, below the stores and
//! the error type, so both can log an outage without importing each other.

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::viewer::UserId;

/// The action label of a request whose id resolved to no action.
pub const UNRESOLVED: &str = "_unresolved";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

type HistogramFamily = Family<ActionLabels, Histogram, fn() -> Histogram>;

/// Per-app action metrics (one registry per built app, so tests and
/// several apps in one process do not share counters).
pub struct Metrics {
    registry: Registry,
    requests: Family<OutcomeLabels, Counter>,
    latency: HistogramFamily,
    /// Successful calls that did not bump a tag their action declares
    /// (`update_tag:x`): declarations drifting from behaviour. Bounded by
    /// the number of registered actions (the label is the action name).
    undeclared: Family<ActionLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~8 s in 16 doubling buckets.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<OutcomeLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "portcullis_action_requests",
            "Action requests by action name and outcome code (ok or the refusal code)",
            requests.clone(),
        );
        registry.register(
            "portcullis_action_duration_seconds",
            "Time from request to response per action",
            latency.clone(),
        );
        let undeclared = Family::<ActionLabels, Counter>::default();
        registry.register(
            "portcullis_declared_tag_not_updated",
            "Successful action calls that did not update a tag the action declares with `update_tag:…`",
            undeclared.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            undeclared,
        }
    }
}

impl Metrics {
    pub(crate) fn observe(&self, action: &'static str, outcome: &'static str, took: Duration) {
        self.requests
            .get_or_create(&OutcomeLabels { action, outcome })
            .inc();
        self.latency
            .get_or_create(&ActionLabels { action })
            .observe(took.as_secs_f64());
    }

    pub(crate) fn declared_tag_not_updated(&self, action: &'static str) {
        self.undeclared
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One successful mutation, for the app's audit log.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    /// The action name.
    pub action: &'static str,
    /// The signed-in viewer, if any (public actions may have none).
    pub viewer: Option<UserId>,
    /// The record the handler named with [`crate::Cx::audit_record`].
    pub record: Option<String>,
    /// The request id (also in the `action` span and `x-request-id`).
    pub request_id: String,
    /// When the handler succeeded (just before the response is sent).
    pub at: SystemTime,
}

/// Receives every successful mutation. Install with
/// [`crate::Portcullis::audit_sink`]; a closure
/// `|event: AuditEvent| async move { … }` is one.
pub trait AuditSink: Send + Sync + 'static {
    /// Stores one event. Awaited before the response is sent, bounded by
    /// the handler deadline; one that does not finish in time is logged
    /// and the response goes out anyway.
    fn record(&self, event: AuditEvent) -> BoxFuture<'static, ()>;
}

impl<F, Fut> AuditSink for F
where
    F: Fn(AuditEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    fn record(&self, event: AuditEvent) -> BoxFuture<'static, ()> {
        Box::pin(self(event))
    }
}

/// A fresh request id: 16 hex digits, random (not derived from anything the
/// client sent, so it can be trusted in logs).
pub(crate) fn request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
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

/// The log target of every outage line: `portcullis::store`, where these
/// lines were logged before the log moved here, so log filters
/// (`RUST_LOG=portcullis::store=info`) keep selecting them.
const OUTAGE_TARGET: &str = "portcullis::store";

/// How often an ongoing outage is summarised in the log.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(60);

impl Outage {
    /// The state of the dependency called `name` in the log lines, up.
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
    pub fn failed(&self, error: &dyn fmt::Display, digest: Option<&dyn fmt::Display>) {
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
                tracing::warn!(target: OUTAGE_TARGET, dependency = self.name, %digest, error = %s.last_error, "{} unavailable", self.name);
            }
            Some(since) => {
                if s.last_summary
                    .is_none_or(|t| now.duration_since(t) >= self.summary_every)
                {
                    tracing::warn!(target: OUTAGE_TARGET,
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
            tracing::debug!(target: OUTAGE_TARGET, dependency = self.name, digest = %d, error = %s.last_error, "call failed");
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
            tracing::info!(target: OUTAGE_TARGET,
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

/// The outage log of the app's own dependencies (its database, …), as seen
/// through errors the app's classifier maps to a 503
/// ([`crate::Portcullis::error_classifier`]): one line when the first such
/// error happens, a summary a minute, one line when an action succeeds
/// again. Process-wide (one log for every app in the process; the
/// classifier is per app).
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
                    Some(&crate::error::Digest::random()),
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
