//! The idempotency store: claimed and finished idempotency keys, behind one
//! trait so a backend can be written outside the crate.
//!
//! The store keeps, per key, either a *claim* (a request with this body
//! fingerprint is running) or the finished request's [`Record`]. What a
//! claim or record means for the client (replay, 409 in progress, 422 key
//! reused with another body, 409 result too large to replay, 503 when the
//! store is down) is decided in the pipeline's idempotency stage; a backend
//! only keeps and hands back.
//!
//! A new backend implements [`IdempotencyStore`] and passes
//! `portcullis::store::conformance::idempotency_store` (feature `testing`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::counter::StoreFuture;

/// The largest response body that is stored for replay; larger results are
/// remembered by hash only.
pub const MAX_STORED_BODY: usize = 64 * 1024;

/// How long a finished request's record is kept.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long a running request holds its key (a crashed instance's claim
/// lapses after this).
pub const CLAIM: Duration = Duration::from_secs(60);

/// SHA-256 of a request body (see [`crate::idempotency::fingerprint`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Lower-case hex, as records carry it.
    pub fn hex(&self) -> String {
        crate::hex(&self.0)
    }
}

/// A finished request, as stored for replay. Serializable, so a backend can
/// keep it as JSON (the Redis store does).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Hex SHA-256 of the request body that produced it (empty in records
    /// written before fingerprints existed: those replay to any body).
    #[serde(default)]
    pub request: String,
    /// The response's HTTP status.
    pub status: u16,
    /// The response's `Content-Type`.
    pub content_type: Option<String>,
    /// The response's `Location` (a redirect).
    pub location: Option<String>,
    /// `None` when the body was over [`MAX_STORED_BODY`].
    pub body: Option<String>,
    /// Hex SHA-256 of the response body when it was not stored.
    #[serde(default)]
    pub body_sha256: Option<String>,
}

impl Record {
    /// The bytes it holds (body, content type, location), for a backend's
    /// size bound.
    pub fn held_bytes(&self) -> usize {
        self.body.as_ref().map_or(0, String::len)
            + self.content_type.as_ref().map_or(0, String::len)
            + self.location.as_ref().map_or(0, String::len)
    }
}

/// What [`IdempotencyStore::begin`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key was free (or its claim had lapsed after [`CLAIM`]): it is now
    /// claimed for this request, which runs.
    Claimed,
    /// Another request holds the key and is still running.
    /// `same_request`: it carries the same body fingerprint (a duplicate in
    /// flight, 409) rather than another (the key reused, 422). A backend
    /// that cannot tell what holds the key (it vanished between the claim
    /// and the read, or holds something unreadable) answers `true`: the
    /// client retries.
    Running {
        /// The holder carries this request's body fingerprint.
        same_request: bool,
    },
    /// The key's request finished with this record.
    Done(Record),
}

/// Where idempotency keys live: in memory ([`super::MemoryIdempotency`],
/// one instance) or Redis ([`super::RedisIdempotency`], every instance), or
/// a backend of the app's.
///
/// Keys are scoped by the framework (`{action}:{caller}:{client key}`, or
/// `webhook:{path}:{event}`), but the client chooses its part, so a backend
/// **must be bounded**, and state how: what a flood of one-off keys does to
/// other callers' records (the memory store may evict them; Redis keeps
/// each until its TTL). Records are at most
/// [`MAX_STORED_BODY`] of body each.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for a request with body fingerprint `request`, for at
    /// most [`CLAIM`], atomically: of two concurrent `begin`s with one key,
    /// exactly one gets [`Claim::Claimed`]. Otherwise reports what holds it.
    fn begin<'a>(&'a self, key: &'a str, request: Fingerprint) -> StoreFuture<'a, Claim>;

    /// Replaces the claim on `key` with the finished `record`, kept for
    /// [`KEEP`].
    fn complete<'a>(&'a self, key: &'a str, record: Record) -> StoreFuture<'a, ()>;

    /// Forgets `key` (its attempt failed), so a retry runs.
    fn abandon<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;

    /// Entries and weighed bytes held in this process (after pending
    /// maintenance), for flood tests; `None` for a store that holds nothing
    /// here (Redis).
    fn memory_usage(&self) -> Option<(u64, u64)> {
        None
    }

    /// A short name for logs and test messages.
    fn describe(&self) -> &'static str;
}
