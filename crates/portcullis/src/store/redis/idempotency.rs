//! [`RedisIdempotency`]: idempotency keys in Redis, on the app's one
//! connection.

use crate::store::idempotency::{CLAIM, Claim, Fingerprint, IdempotencyStore, KEEP, Record};
use crate::store::{Redis, StoreError, StoreFuture};

/// The name this store gives its errors and the outage log.
const STORE: &str = "idempotency store";

/// The Redis [`IdempotencyStore`], on the app's shared connection; every
/// command under the connection's deadline (`PORTCULLIS_REDIS_TIMEOUT_MS`).
///
/// State: one key per claim, `{prefix}idem:{key}`, holding
/// `running:{fingerprint}` while the request runs and the [`Record`] as
/// JSON once it finished.
/// * **Who writes it:** the same callers as
///   [`super::super::MemoryIdempotency`] (and, in Redis mode, the webhook
///   receiver too: nothing evicts a key here but its TTL).
/// * **What bounds it:** every key has a TTL ([`CLAIM`], 60 s, while
///   running; [`KEEP`], 24 h, once done) and a record at most
///   [`crate::store::MAX_STORED_BODY`] of body; the total is entries ×
///   (that + overhead), and the server's `maxmemory` policy.
/// * **What removes it:** the TTL, and `abandon` after a failed attempt.
/// * **One abuser:** a flood of one-off keys costs Redis memory for a day,
///   at the rate the action's limits allow; it never removes another
///   caller's record (unless the server's `maxmemory` policy evicts).
pub struct RedisIdempotency {
    redis: Redis,
    prefix: String,
}

impl RedisIdempotency {
    /// Keys in Redis on `redis` (`{prefix}idem:…`).
    pub fn on(redis: Redis) -> Self {
        let prefix = format!("{}idem:", redis.prefix());
        RedisIdempotency { redis, prefix }
    }

    /// The connection this store uses.
    pub fn connection(&self) -> &Redis {
        &self.redis
    }

    async fn begin_at(&self, key: &str, request: Fingerprint) -> Result<Claim, StoreError> {
        let k = format!("{}{key}", self.prefix);
        let running = format!("running:{}", request.hex());
        let claimed: Option<String> = match self
            .redis
            .query(
                STORE,
                ::redis::cmd("SET")
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
                // The claim may still reach Redis after the deadline (a
                // stalled server); release it behind it on the same
                // connection (only if it is still this claim), so the
                // client's retry is not refused for CLAIM.
                let redis = self.redis.clone();
                tokio::spawn(async move {
                    let _ = redis
                        .query::<i64>(
                            STORE,
                            ::redis::cmd("EVAL")
                                .arg(include_str!("../lua/release.lua"))
                                .arg(1)
                                .arg(&k)
                                .arg(&running),
                        )
                        .await;
                });
                return Err(e);
            }
        };
        if claimed.is_some() {
            return Ok(Claim::Claimed);
        }
        let value: Option<String> = self.redis.query(STORE, ::redis::cmd("GET").arg(&k)).await?;
        Ok(match value.as_deref() {
            Some(v) if v == running => Claim::Running { same_request: true },
            // A claim written before fingerprints existed.
            Some("running") => Claim::Running { same_request: true },
            Some(v) if v.starts_with("running:") => Claim::Running {
                same_request: false,
            },
            Some(json) => match serde_json::from_str::<Record>(json) {
                Ok(r) => Claim::Done(r),
                Err(_) => Claim::Running { same_request: true },
            },
            // Expired between SET and GET: treat as in progress; the retry will run.
            None => Claim::Running { same_request: true },
        })
    }

    async fn complete_at(&self, key: &str, record: Record) -> Result<(), StoreError> {
        let json = serde_json::to_string(&record).map_err(|e| StoreError::Unavailable {
            store: STORE,
            detail: e.to_string(),
        })?;
        self.redis
            .query(
                STORE,
                ::redis::cmd("SET")
                    .arg(format!("{}{key}", self.prefix))
                    .arg(json)
                    .arg("PX")
                    .arg(KEEP.as_millis() as u64),
            )
            .await
    }

    async fn abandon_at(&self, key: &str) -> Result<(), StoreError> {
        self.redis
            .query::<i64>(
                STORE,
                ::redis::cmd("DEL").arg(format!("{}{key}", self.prefix)),
            )
            .await
            .map(|_| ())
    }
}

impl IdempotencyStore for RedisIdempotency {
    fn begin<'a>(&'a self, key: &'a str, request: Fingerprint) -> StoreFuture<'a, Claim> {
        StoreFuture::new(self.begin_at(key, request))
    }

    fn complete<'a>(&'a self, key: &'a str, record: Record) -> StoreFuture<'a, ()> {
        StoreFuture::new(self.complete_at(key, record))
    }

    fn abandon<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        StoreFuture::new(self.abandon_at(key))
    }

    fn describe(&self) -> &'static str {
        "redis idempotency store"
    }
}
