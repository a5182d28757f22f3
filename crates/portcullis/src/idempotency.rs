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
//! * Each store bounds itself and says how in its type's doc: in memory
//!   ([`crate::store::MemoryIdempotency`]) a `moka` cache weighed in bytes,
//!   [`StoreConfig::max_bytes`] in total (default 64 MiB, so at most ~260 k
//!   entries), entries expire after [`KEEP`]; when full, a flood of one-off
//!   keys evicts other callers' stored results (whose retries would then run
//!   again) — the bound is chosen so that the rate limits in front of every
//!   action make that take far longer than a retry window. On Redis
//!   ([`crate::store::RedisIdempotency`]) one key per claim with a TTL
//!   ([`CLAIM`] while running, [`KEEP`] once done); the total is bounded by
//!   entries × ([`MAX_STORED_BODY`] + overhead) and by the server's
//!   `maxmemory` policy.
//!
//! This module is the logic (what a claim means for the client, the
//! fingerprint, what is stored of a response); where keys live is an
//! [`IdempotencyStore`] ([`crate::store::idempotency`]), injected with
//! [`crate::store::Stores`].
//!
//! Checked after stage 6 (the key may be in the body) and before the handler.
//!
//! With Redis, keys live on the app's shared connection
//! ([`crate::store::Redis`]) under its deadline. An outage (of any store)
//! fails closed:
//! when the claim cannot be made the handler does not run and the client
//! gets `503 idempotency_unavailable` (a claim that reaches Redis late is
//! released again). When storing the finished response fails, the success
//! is still sent (the change was applied and the client gets its answer);
//! the claim then lapses after [`CLAIM`].

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};

use crate::error::{ErrorCode, Rejection};
pub use crate::store::idempotency::{CLAIM, Claim, Fingerprint, IdempotencyStore, KEEP, Record};
/// Bounds of the in-memory store.
pub use crate::store::memory::IdempotencyConfig as StoreConfig;

pub use crate::store::MAX_STORED_BODY;

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

/// Idempotency keys over an [`IdempotencyStore`]: claims, replays,
/// refusals. Cheap to clone (an `Arc`).
///
/// State: none of its own; the store's type documents its bounds.
#[derive(Clone)]
pub struct Store(Arc<dyn IdempotencyStore>);

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
fn answer(stored: &Record, request: &Fingerprint) -> Result<Begin, Rejection> {
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

impl Store {
    /// Keys in `store`.
    pub fn new(store: Arc<dyn IdempotencyStore>) -> Self {
        Store(store)
    }

    /// An in-memory store with the default bounds.
    pub fn memory() -> Self {
        Self::memory_with(&StoreConfig::default())
    }

    /// An in-memory store bounded by `config`.
    pub fn memory_with(config: &StoreConfig) -> Self {
        Self::new(Arc::new(crate::store::MemoryIdempotency::new(config)))
    }

    /// The store the keys live in.
    pub fn store(&self) -> &dyn IdempotencyStore {
        &*self.0
    }

    /// Entries and weighted bytes held in memory (after pending maintenance);
    /// `None` for a store that holds nothing in this process (Redis).
    pub fn memory_usage(&self) -> Option<(u64, u64)> {
        self.0.memory_usage()
    }

    /// Claims `key` for a request whose body has fingerprint `request`, or
    /// reports what happened to it: replay, 409 in progress, 422 reused with
    /// another body, 409 result not kept, 503 when the store is down.
    pub async fn begin(&self, key: &str, request: Fingerprint) -> Result<Begin, Rejection> {
        match self.0.begin(key, request).await {
            Ok(Claim::Claimed) => Ok(Begin::Run),
            Ok(Claim::Running { same_request: true }) => Err(in_progress()),
            Ok(Claim::Running {
                same_request: false,
            }) => Err(reused()),
            Ok(Claim::Done(stored)) => answer(&stored, &request),
            Err(e) => Err(unavailable(&e)),
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
        let stored = Record {
            request: request.hex(),
            status: parts.status.as_u16(),
            content_type: header_text(&parts.headers, header::CONTENT_TYPE),
            location: header_text(&parts.headers, header::LOCATION),
            body,
            body_sha256,
        };
        if let Err(e) = self.0.complete(key, stored).await {
            tracing::debug!(error = %e, "idempotency result not stored");
        }
        Response::from_parts(parts, Body::from(bytes))
    }

    /// Forgets `key` after a failed attempt, so a retry runs.
    pub async fn abandon(&self, key: &str) {
        let _ = self.0.abandon(key).await;
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

fn rebuild(s: &Record) -> Response {
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
