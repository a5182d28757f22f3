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

use std::future::Future;
use std::time::{Duration, SystemTime};

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
    pub at: SystemTime,
}

/// Receives every successful mutation. Install with
/// [`crate::Portcullis::audit_sink`]; a closure
/// `|event: AuditEvent| async move { … }` is one.
pub trait AuditSink: Send + Sync + 'static {
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
