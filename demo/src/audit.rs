//! The audit log's write path: off the request path, batched, flushed on
//! shutdown.
//!
//! Why: the row used to be inserted while the request waited — one more
//! write transaction per mutation, queued behind every other writer on
//! SQLite's single write lock. Now the framework's audit hook
//! ([`portcullis::AuditSink`]) only puts the event into a bounded queue,
//! and one writer task inserts what has accumulated in one transaction
//! (group commit): after the first row of a batch it lingers up to
//! [`LINGER`] for more (or until [`BATCH`] rows, or a flush), so under load
//! one transaction carries many rows instead of one each. No request waits
//! for that: the linger only delays when the row reaches the table.
//!
//! What is kept: **an acknowledged mutation's row is never dropped.**
//!
//! * The hook returns only once the event is in the queue, and the
//!   framework awaits it before the response is sent: every acknowledged
//!   mutation is queued (or written) first.
//! * **Queue full** (the writer is behind): the request waits for room
//!   (back-pressure, first come first served) — never a dropped row. The
//!   framework bounds that wait by the handler deadline
//!   (`Deadlines::handler`, 10 s); a request still waiting then gets its
//!   success anyway (its write is committed; a failure would invite a retry
//!   of a mutation that succeeded), and the event is written to the log at
//!   error level, in full, as `audit row not queued` — the log line is then
//!   the audit record, and the only way a row bypasses the table.
//! * **Write fails** (database down, locked, full): the batch is kept and
//!   retried with backoff (100 ms doubling to 5 s), for as long as it takes;
//!   the outage is logged once down, once a minute, once up
//!   ([`portcullis::store::Outage`]). Meanwhile the queue fills and
//!   mutations wait as above — they would mostly fail on the same database
//!   anyway. Rows are inserted with `ON CONFLICT (request_id) DO NOTHING`
//!   (unique index), so a retry after an ambiguous failure (the commit
//!   landed, its answer did not) cannot write a row twice.
//! * **Shutdown** (SIGTERM, Ctrl-C): `demo` stops accepting, lets in-flight
//!   requests finish (each queues its row before it is acknowledged), then
//!   [`AuditQueue::shutdown`] writes everything queued before exiting. If
//!   the database stays unreachable past the shutdown grace period, the
//!   remaining rows go to the log at error level (as above) rather than
//!   holding the process forever.
//!
//! What is given up: a *crash* (SIGKILL, OOM, power) loses the rows still
//! queued — at most one batch being written plus [`QUEUE`] waiting, in
//! practice the mutations of the last [`LINGER`] plus one write. Before,
//! the same crash could already lose a row (the mutation and its audit row
//! were never one transaction); the window is now a batch instead of one
//! insert.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use portcullis::AuditEvent;
use tokio::sync::{mpsc, oneshot};

use crate::dal::Dal;

/// Events waiting to be written, at most.
pub const QUEUE: usize = 1024;
/// Rows per write transaction, at most.
pub const BATCH: usize = 256;
/// How long a batch waits for more rows after its first.
pub const LINGER: Duration = Duration::from_millis(5);
/// Retry delays after a failed write: first, cap.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

enum Msg {
    Row(AuditEvent),
    /// Answered once every row queued before it is written (or logged).
    Flush(oneshot::Sender<()>),
}

/// The queue between the audit hook and the writer task; cheap to clone.
///
/// * **Who writes it:** the framework's audit hook, one event per
///   *successful* mutation (after the handler committed; refused and failed
///   calls write nothing), so only callers the action's policy and rate
///   limits let through. An event holds the action name, the viewer id, the
///   record id the handler named (never input values) and the request id.
/// * **What bounds it:** [`QUEUE`] events (plus one batch of at most
///   [`BATCH`] being written), a few hundred bytes each: well under 1 MiB.
///   Requests that find it full wait for room; the waiting events are held
///   by the waiting requests themselves, so they are bounded by the
///   connection cap and the handler deadline, not by this queue.
/// * **What removes it:** the writer task, after the batch's transaction
///   commits; a failed write keeps the batch and retries it. At shutdown,
///   [`AuditQueue::shutdown`] drains it.
/// * **What one abusive user does to others:** a flood of mutations is
///   first cut by each action's rate limits (renames: 60 per minute per
///   user). Past them, a flood that outruns the writer fills the queue, and
///   then *every* mutating request waits its turn for room, in arrival
///   order — the abuser's too: others' mutations are delayed by at most the
///   time to write the rows ahead of them, never lost and never reordered
///   behind the abuser's later ones. Reads (pages) never touch the queue.
///   `audit_queue_flood_delays_but_never_drops` pins it.
#[derive(Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<Msg>,
    /// Set when shutdown gave up waiting: the writer logs what it holds.
    give_up: Arc<AtomicBool>,
    /// Highest number of events seen waiting (for the flood test and logs).
    high_water: Arc<AtomicUsize>,
}

impl AuditQueue {
    /// Starts the writer task on the current tokio runtime, with room for
    /// `capacity` waiting events ([`QUEUE`] in the demo; tests use less).
    pub fn start(dal: Dal, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let give_up = Arc::new(AtomicBool::new(false));
        tokio::spawn(writer(dal, rx, give_up.clone()));
        AuditQueue {
            tx,
            give_up,
            high_water: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Queues `event`, waiting for room while the queue is full. Returns
    /// once the event is queued; if this future is dropped before that (the
    /// framework's deadline), the event is logged in full at error level.
    pub async fn record(&self, event: AuditEvent) {
        let mut pending = Unqueued(Some(event));
        // An error means the writer is gone (after shutdown): `pending`
        // logs the event when it drops.
        if let Ok(permit) = self.tx.reserve().await {
            if let Some(event) = pending.0.take() {
                permit.send(Msg::Row(event));
            }
            let waiting = self.tx.max_capacity() - self.tx.capacity();
            self.high_water.fetch_max(waiting, Ordering::Relaxed);
        }
    }

    /// Waits until every event queued before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Writes everything queued, waiting at most `grace` for the database;
    /// past it, the rows still held are logged at error level instead. Call
    /// it after the server has drained its in-flight requests.
    pub async fn shutdown(&self, grace: Duration) {
        if tokio::time::timeout(grace, self.flush()).await.is_err() {
            tracing::error!(
                "audit log: database unreachable at shutdown; logging the remaining rows instead"
            );
            self.give_up.store(true, Ordering::Release);
            self.flush().await;
        }
    }

    /// The most events that were ever waiting at once (≤ the capacity).
    pub fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    /// The capacity this queue was started with.
    pub fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }
}

/// An event on its way into the queue; logged in full if dropped unqueued.
struct Unqueued(Option<AuditEvent>);

impl Drop for Unqueued {
    fn drop(&mut self) {
        if let Some(e) = self.0.take() {
            dead_letter(&e, "audit row not queued (deadline or shutdown)");
        }
    }
}

/// The audit row as a log line: the record of last resort.
fn dead_letter(e: &AuditEvent, why: &str) {
    tracing::error!(
        action = e.action,
        user_id = ?e.viewer,
        record = ?e.record,
        request_id = %e.request_id,
        at = ?e.at,
        "{why}"
    );
}

fn sort(msgs: &mut Vec<Msg>, rows: &mut Vec<AuditEvent>, flushes: &mut Vec<oneshot::Sender<()>>) {
    for m in msgs.drain(..) {
        match m {
            Msg::Row(e) => rows.push(e),
            Msg::Flush(done) => flushes.push(done),
        }
    }
}

async fn writer(dal: Dal, mut rx: mpsc::Receiver<Msg>, give_up: Arc<AtomicBool>) {
    let outage = portcullis::store::Outage::new("audit log");
    let mut msgs = Vec::with_capacity(BATCH);
    let mut rows: Vec<AuditEvent> = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    // Ends when every sender is gone (the app and the queue handles dropped).
    while rx.recv_many(&mut msgs, BATCH).await > 0 {
        sort(&mut msgs, &mut rows, &mut flushes);
        // Linger for more rows, unless someone waits for a flush.
        let until = tokio::time::Instant::now() + LINGER;
        while rows.len() < BATCH && flushes.is_empty() {
            match tokio::time::timeout_at(until, rx.recv_many(&mut msgs, BATCH - rows.len())).await
            {
                Ok(n) if n > 0 => sort(&mut msgs, &mut rows, &mut flushes),
                _ => break,
            }
        }
        let mut delay = RETRY_MIN;
        while !rows.is_empty() {
            if give_up.load(Ordering::Acquire) {
                for e in rows.drain(..) {
                    dead_letter(&e, "audit row not written (shutdown, database unreachable)");
                }
                break;
            }
            match dal.audit_log().write_batch(&rows).await {
                Ok(()) => {
                    outage.ok();
                    rows.clear();
                }
                Err(e) => {
                    outage.failed(&e, None);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
        // Every row queued before these flush requests is written now.
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}
