//! Idempotency keys: a retried mutation applies once.
//!
//! The client runtime sends `Idempotency-Key: <uuid>` with every submission
//! (reused on a network retry); a no-JS form carries the same in the hidden
//! field `_idem`. The key is scoped by action and caller (viewer id, else
//! session, else address), so one caller can never replay or block another's
//! request. The first request with a key runs; its successful response is
//! stored for 24 h and every later request with the same key gets that
//! response back without running the handler — on this instance or, with
//! Redis, on any other. A duplicate that arrives while the first is still
//! running gets 409 `request_in_progress`. A failed first attempt is
//! forgotten, so its retry runs.
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

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use dashmap::DashMap;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The no-JS form field.
pub const FIELD: &str = "_idem";
/// How long a completed response is kept.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long a running request holds its key (a crashed instance's claim
/// lapses after this).
pub const CLAIM: Duration = Duration::from_secs(60);

/// A stored response.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    status: u16,
    content_type: Option<String>,
    location: Option<String>,
    body: String,
}

enum Slot {
    Running(Instant),
    Done(Stored, Instant),
}

/// Where keys live: memory (one instance) or Redis (all instances).
pub struct Store(Backend);

enum Backend {
    Memory(DashMap<String, Slot>),
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

impl Store {
    pub fn memory() -> Self {
        Store(Backend::Memory(DashMap::new()))
    }

    /// Keys in Redis, on the app's shared connection (`{prefix}idem:…`).
    pub fn on_redis(redis: crate::store::Redis) -> Self {
        let prefix = format!("{}idem:", redis.prefix());
        Store(Backend::Redis { redis, prefix })
    }

    /// Claims `key` or reports what happened to it.
    pub async fn begin(&self, key: &str) -> Result<Begin, Rejection> {
        let in_progress = || Rejection::new(ErrorCode::RequestInProgress);
        match &self.0 {
            Backend::Memory(map) => {
                let now = Instant::now();
                if map.len() > 100_000 {
                    map.retain(|_, s| match s {
                        Slot::Running(t) => now.duration_since(*t) < CLAIM,
                        Slot::Done(_, t) => now.duration_since(*t) < KEEP,
                    });
                }
                let mut entry = map.entry(key.to_owned()).or_insert(Slot::Running(now));
                match &*entry {
                    Slot::Running(t) if *t == now => Ok(Begin::Run),
                    Slot::Running(t) if now.duration_since(*t) >= CLAIM => {
                        *entry = Slot::Running(now);
                        Ok(Begin::Run)
                    }
                    Slot::Running(_) => Err(in_progress()),
                    Slot::Done(s, t) if now.duration_since(*t) < KEEP => {
                        Ok(Begin::Replay(rebuild(s)))
                    }
                    Slot::Done(..) => {
                        *entry = Slot::Running(now);
                        Ok(Begin::Run)
                    }
                }
            }
            Backend::Redis { redis, prefix } => {
                let k = format!("{prefix}{key}");
                let claimed: Option<String> = match redis
                    .query(
                        "idempotency store",
                        redis::cmd("SET")
                            .arg(&k)
                            .arg("running")
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
                        // connection, so the client's retry is not refused
                        // for CLAIM.
                        let (redis, k) = (redis.clone(), k.clone());
                        tokio::spawn(async move {
                            let _ = redis
                                .query::<i64>("idempotency store", redis::cmd("DEL").arg(&k))
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
                    Some("running") => Err(in_progress()),
                    Some(json) => match serde_json::from_str::<Stored>(json) {
                        Ok(s) => Ok(Begin::Replay(rebuild(&s))),
                        Err(_) => Err(in_progress()),
                    },
                    // Expired between SET and GET: treat as in progress; the retry will run.
                    None => Err(in_progress()),
                }
            }
        }
    }

    /// Stores a successful response for `key` and hands it back.
    pub async fn complete(&self, key: &str, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => {
                self.abandon(key).await;
                return Response::from_parts(parts, Body::empty());
            }
        };
        let stored = Stored {
            status: parts.status.as_u16(),
            content_type: header_text(&parts.headers, header::CONTENT_TYPE),
            location: header_text(&parts.headers, header::LOCATION),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        match &self.0 {
            Backend::Memory(map) => {
                map.insert(key.to_owned(), Slot::Done(stored, Instant::now()));
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
            Backend::Memory(map) => {
                map.remove(key);
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
    let mut r = Response::new(Body::from(s.body.clone()));
    *r.status_mut() = StatusCode::from_u16(s.status).unwrap_or(StatusCode::OK);
    for (name, value) in [
        (header::CONTENT_TYPE, &s.content_type),
        (header::LOCATION, &s.location),
    ] {
        if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            r.headers_mut().insert(name, v);
        }
    }
    r.headers_mut()
        .insert("idempotent-replayed", HeaderValue::from_static("true"));
    r
}
