//! Idempotency keys: a retried mutation applies once.
//!
//! The client runtime sends `Idempotency-Key: <uuid>` with every submission
//! (reused on a network retry); a no-JS form carries the same in the hidden
//! field `_idem`. The key is scoped by action and caller (viewer id, else
//! session, else the browser's anonymous scope cookie — see
//! [`crate::anon`]), so one caller can never replay or block another's
//! request. The first request with a key runs; its successful response is
//! stored for 24 h and every later request with the same key *and the same
//! body* gets that response back without running the handler — on this
//! instance or, with Redis, on any other. A duplicate that arrives while the
//! first is still running gets 409 `request_in_progress`. A failed first
//! attempt is forgotten, so its retry runs.
//!
//! # The request fingerprint
//! Every claim remembers a SHA-256 of the request body (multipart boundary
//! removed, since a browser draws a new one per submission). A key replayed
//! with a *different* body is refused with 422 `idempotency_key_reused`
//! (Stripe's semantics): answering it with the first result would tell the
//! client its second, different request succeeded when it never ran.
//!
//! # Bounds (the keys are client-chosen)
//! * A stored response body is at most [`MAX_STORED_BODY`] bytes. A larger
//!   result is not kept: only its SHA-256 is, and a replay is refused with
//!   409 `idempotency_result_unavailable` ("already applied; result too
//!   large to replay") — the mutation still applies once.
//! * In memory: a `moka` cache weighed in bytes (key + body + 256 bytes per
//!   entry), [`StoreConfig::max_bytes`] in total (default 64 MiB, so at most
//!   ~260 k entries), entries expire after [`KEEP`]. When full, moka's
//!   TinyLFU policy decides which entries go: a flood of one-off keys evicts
//!   (or is refused admission against) other callers' stored results, whose
//!   retries would then run again — the bound is chosen so that the rate
//!   limits in front of every action make that take far longer than a retry
//!   window.
//! * On Redis: one key per claim with a TTL ([`CLAIM`] while running,
//!   [`KEEP`] once done) and the same per-entry cap; the total is bounded
//!   by entries × ([`MAX_STORED_BODY`] + overhead) and by the server's
//!   `maxmemory` policy.
//!
//! Checked after stage 6 (the key may be in the body) and before the handler.
//!
//! With Redis, keys live on the app's shared connection
//! ([`crate::store::Redis`]) under its deadline. An outage fails closed:
//! when the claim cannot be made the handler does not run and the client
//! gets `503 idempotency_unavailable` (a claim that reaches Redis late is
//! released again). When storing the finished response fails, the success
//! is still sent (the change was applied and the client gets its answer);
//! the claim then lapses after [`CLAIM`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ErrorCode, Rejection};

/// How long a completed response is kept.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long a running request holds its key (a crashed instance's claim
/// lapses after this).
pub const CLAIM: Duration = Duration::from_secs(60);
/// The largest response body that is stored for replay; larger results are
/// remembered by hash only.
pub const MAX_STORED_BODY: usize = 64 * 1024;
/// Fixed weight charged per entry on top of its key and body.
const ENTRY_OVERHEAD: usize = 256;

/// Bounds of the in-memory store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Upper bound of the in-memory store in bytes (default 64 MiB).
    pub max_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// SHA-256 of a request body, as [`fingerprint`] computes it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    fn hex(&self) -> String {
        crate::hex(&self.0)
    }
}

/// The fingerprint of a request body. For multipart bodies every occurrence
/// of the boundary is left out, so the same fields sent twice by a browser
/// (which draws a new boundary per submission) match.
pub fn fingerprint(body: &[u8], multipart_boundary: Option<&str>) -> Fingerprint {
    let mut hasher = Sha256::new();
    match multipart_boundary
        .map(str::as_bytes)
        .filter(|b| !b.is_empty())
    {
        None => hasher.update(body),
        Some(boundary) => {
            let mut rest = body;
            while let Some(i) = find(rest, boundary) {
                hasher.update(&rest[..i]);
                rest = &rest[i + boundary.len()..];
            }
            hasher.update(rest);
        }
    }
    Fingerprint(hasher.finalize().into())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A stored response.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    /// Hex SHA-256 of the request body that produced it.
    #[serde(default)]
    request: String,
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    /// `None` when the body was over [`MAX_STORED_BODY`].
    body: Option<String>,
    /// Hex SHA-256 of the response body when it was not stored.
    #[serde(default)]
    body_sha256: Option<String>,
}

enum Slot {
    Running { at: Instant, request: Fingerprint },
    Done(Stored),
}

/// Where keys live: memory (one instance) or Redis (all instances).
pub struct Store(Backend);

enum Backend {
    Memory(moka::sync::Cache<Arc<str>, Arc<Slot>>),
    Redis {
        redis: crate::store::Redis,
        prefix: String,
    },
}

/// What [`Store::begin`] decided.
pub enum Begin {
    /// First time: run the handler, then call [`Store::complete`] or [`Store::abandon`].
    Run,
    /// Seen and finished: send this response again.
    Replay(Response),
}

/// Checks a client-supplied key: 1–128 of `[A-Za-z0-9_-]`.
pub fn valid(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn in_progress() -> Rejection {
    Rejection::new(ErrorCode::RequestInProgress)
}

fn reused() -> Rejection {
    Rejection::new(ErrorCode::IdempotencyKeyReused)
}

/// What a finished slot answers to a request with fingerprint `request`.
fn answer(stored: &Stored, request: &Fingerprint) -> Result<Begin, Rejection> {
    // Entries written before fingerprints existed carry none: replay them.
    if !stored.request.is_empty() && stored.request != request.hex() {
        return Err(reused());
    }
    match &stored.body {
        Some(_) => Ok(Begin::Replay(rebuild(stored))),
        None => Err(Rejection::with_message(
            ErrorCode::IdempotencyResultUnavailable,
            format!(
                "This request was already applied. Its result was too large to keep for replay (sha256 {}).",
                stored.body_sha256.as_deref().unwrap_or("?")
            ),
        )),
    }
}

fn weigh(key: &str, slot: &Slot) -> u32 {
    let body = match slot {
        Slot::Running { .. } => 0,
        Slot::Done(s) => {
            s.body.as_ref().map_or(0, String::len)
                + s.content_type.as_ref().map_or(0, String::len)
                + s.location.as_ref().map_or(0, String::len)
        }
    };
    (key.len() + body + ENTRY_OVERHEAD).min(u32::MAX as usize) as u32
}

impl Store {
    /// An in-memory store with the default bounds.
    pub fn memory() -> Self {
        Self::memory_with(&StoreConfig::default())
    }

    /// An in-memory store bounded by `config`.
    pub fn memory_with(config: &StoreConfig) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|k: &Arc<str>, v: &Arc<Slot>| weigh(k, v))
            .time_to_live(KEEP)
            .build();
        Store(Backend::Memory(cache))
    }

    /// Keys in Redis, on the app's shared connection (`{prefix}idem:…`).
    pub fn on_redis(redis: crate::store::Redis) -> Self {
        let prefix = format!("{}idem:", redis.prefix());
        Store(Backend::Redis { redis, prefix })
    }

    /// Entries and weighted bytes held in memory (after pending maintenance);
    /// `None` for the Redis backend.
    pub fn memory_usage(&self) -> Option<(u64, u64)> {
        match &self.0 {
            Backend::Memory(cache) => {
                cache.run_pending_tasks();
                Some((cache.entry_count(), cache.weighted_size()))
            }
            Backend::Redis { .. } => None,
        }
    }

    /// Claims `key` for a request whose body has fingerprint `request`, or
    /// reports what happened to it: replay, 409 in progress, 422 reused with
    /// another body, 409 result not kept.
    pub async fn begin(&self, key: &str, request: Fingerprint) -> Result<Begin, Rejection> {
        match &self.0 {
            Backend::Memory(cache) => {
                let now = Instant::now();
                let mut decision: Option<Result<Begin, Rejection>> = None;
                let running =
                    || moka::ops::compute::Op::Put(Arc::new(Slot::Running { at: now, request }));
                cache.entry(Arc::from(key)).and_compute_with(|current| {
                    match current.map(|e| e.into_value()) {
                        None => {
                            decision = Some(Ok(Begin::Run));
                            running()
                        }
                        Some(slot) => match &*slot {
                            // A crashed or stuck attempt's claim lapses.
                            Slot::Running { at, .. } if now.duration_since(*at) >= CLAIM => {
                                decision = Some(Ok(Begin::Run));
                                running()
                            }
                            Slot::Running { request: r, .. } => {
                                decision = Some(Err(if *r == request {
                                    in_progress()
                                } else {
                                    reused()
                                }));
                                moka::ops::compute::Op::Nop
                            }
                            Slot::Done(stored) => {
                                decision = Some(answer(stored, &request));
                                moka::ops::compute::Op::Nop
                            }
                        },
                    }
                });
                decision.unwrap_or_else(|| Err(in_progress()))
            }
            Backend::Redis { redis, prefix } => {
                let k = format!("{prefix}{key}");
                let running = format!("running:{}", request.hex());
                let claimed: Option<String> = match redis
                    .query(
                        "idempotency store",
                        redis::cmd("SET")
                            .arg(&k)
                            .arg(&running)
                            .arg("NX")
                            .arg("PX")
                            .arg(CLAIM.as_millis() as u64),
                    )
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        // The claim may still reach Redis after the deadline
                        // (a stalled server); release it behind it on the same
                        // connection (only if it is still this claim), so the
                        // client's retry is not refused for CLAIM.
                        let (redis, k) = (redis.clone(), k.clone());
                        tokio::spawn(async move {
                            let _ = redis
                                .query::<i64>(
                                    "idempotency store",
                                    redis::cmd("EVAL")
                                        .arg(RELEASE_LUA)
                                        .arg(1)
                                        .arg(&k)
                                        .arg(&running),
                                )
                                .await;
                        });
                        return Err(unavailable(&e));
                    }
                };
                if claimed.is_some() {
                    return Ok(Begin::Run);
                }
                let value: Option<String> = redis
                    .query("idempotency store", redis::cmd("GET").arg(&k))
                    .await
                    .map_err(|e| unavailable(&e))?;
                match value.as_deref() {
                    Some(v) if v == running => Err(in_progress()),
                    // A claim written before fingerprints existed.
                    Some("running") => Err(in_progress()),
                    Some(v) if v.starts_with("running:") => Err(reused()),
                    Some(json) => match serde_json::from_str::<Stored>(json) {
                        Ok(s) => answer(&s, &request),
                        Err(_) => Err(in_progress()),
                    },
                    // Expired between SET and GET: treat as in progress; the retry will run.
                    None => Err(in_progress()),
                }
            }
        }
    }

    /// Stores a successful response for `key` (claimed by a request with
    /// fingerprint `request`) and hands it back. A body over
    /// [`MAX_STORED_BODY`] is remembered by hash only.
    pub async fn complete(&self, key: &str, request: Fingerprint, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => {
                self.abandon(key).await;
                return Response::from_parts(parts, Body::empty());
            }
        };
        let (body, body_sha256) = if bytes.len() <= MAX_STORED_BODY {
            (Some(String::from_utf8_lossy(&bytes).into_owned()), None)
        } else {
            (None, Some(crate::hex(&Sha256::digest(&bytes))))
        };
        let stored = Stored {
            request: request.hex(),
            status: parts.status.as_u16(),
            content_type: header_text(&parts.headers, header::CONTENT_TYPE),
            location: header_text(&parts.headers, header::LOCATION),
            body,
            body_sha256,
        };
        match &self.0 {
            Backend::Memory(cache) => {
                cache.insert(Arc::from(key), Arc::new(Slot::Done(stored)));
            }
            Backend::Redis { redis, prefix } => {
                if let Ok(json) = serde_json::to_string(&stored) {
                    let r: Result<(), _> = redis
                        .query(
                            "idempotency store",
                            redis::cmd("SET")
                                .arg(format!("{prefix}{key}"))
                                .arg(json)
                                .arg("PX")
                                .arg(KEEP.as_millis() as u64),
                        )
                        .await;
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "idempotency result not stored");
                    }
                }
            }
        }
        Response::from_parts(parts, Body::from(bytes))
    }

    /// Forgets `key` after a failed attempt, so a retry runs.
    pub async fn abandon(&self, key: &str) {
        match &self.0 {
            Backend::Memory(cache) => {
                cache.invalidate(key);
            }
            Backend::Redis { redis, prefix } => {
                let _ = redis
                    .query::<i64>(
                        "idempotency store",
                        redis::cmd("DEL").arg(format!("{prefix}{key}")),
                    )
                    .await;
            }
        }
    }
}

/// Deletes KEYS[1] only if it still holds ARGV[1] (this request's claim),
/// so releasing a late claim never removes another request's.
const RELEASE_LUA: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// The store is down or slow: 503, the handler did not run.
fn unavailable(e: &crate::store::StoreError) -> Rejection {
    let r = Rejection::new(ErrorCode::IdempotencyUnavailable)
        .header(header::RETRY_AFTER, HeaderValue::from_static("1"));
    tracing::debug!(digest = %r.digest, error = %e, "idempotency store unavailable; 503");
    r
}

fn header_text(headers: &http::HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn rebuild(s: &Stored) -> Response {
    let mut r = Response::new(Body::from(s.body.clone().unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK);
    for (name, value) in [
        (header::CONTENT_TYPE, &s.content_type),
        (header::LOCATION, &s.location),
    ] {
        if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            r.headers_mut().insert(name, v);
        }
    }
    r.headers_mut().insert(
        crate::wire::header::IDEMPOTENT_REPLAYED,
        HeaderValue::from_static("true"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_fingerprints_ignore_the_boundary() {
        let a = b"--AAA\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--AAA--\r\n";
        let b = b"--BBBB\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--BBBB--\r\n";
        let c = b"--BBBB\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n2\r\n--BBBB--\r\n";
        assert_eq!(fingerprint(a, Some("AAA")), fingerprint(b, Some("BBBB")));
        assert_ne!(fingerprint(b, Some("BBBB")), fingerprint(c, Some("BBBB")));
        assert_ne!(fingerprint(b"name=a", None), fingerprint(b"name=b", None));
    }
}
