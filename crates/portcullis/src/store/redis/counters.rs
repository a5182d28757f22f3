//! [`RedisCounters`]: limits, quotas and spent tokens in Redis, on the app's
//! one connection.

use std::time::Duration;

use crate::store::counter::{Bucket, CounterStore, Decision, QuotaDecision, StoreFuture};
use crate::store::{Redis, StoreError};

/// The name this store gives its errors and the outage log.
const STORE: &str = "limiter";

/// A Lua script run with `EVALSHA` (and `EVAL` once on `NOSCRIPT`).
pub(crate) struct Script {
    src: &'static str,
    sha: String,
}

impl Script {
    pub(crate) fn new(src: &'static str) -> Self {
        Script {
            src,
            sha: ::redis::Script::new(src).get_hash().to_owned(),
        }
    }

    /// `EVALSHA` on `redis` under `after`, and `EVAL` once on `NOSCRIPT`
    /// (which also caches it, e.g. after a restart). `keys` are prefixed
    /// with the connection's prefix.
    pub(crate) async fn eval<T: ::redis::FromRedisValue>(
        &self,
        redis: &Redis,
        store: &'static str,
        after: Duration,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StoreError> {
        let prefix = redis.prefix();
        let build = |verb: &str, body: &str| {
            let mut cmd = ::redis::cmd(verb);
            cmd.arg(body).arg(keys.len());
            for k in keys {
                cmd.arg(format!("{prefix}{k}"));
            }
            for a in args {
                cmd.arg(a);
            }
            cmd
        };
        redis
            .run(store, after, |mut conn| async move {
                match build("EVALSHA", &self.sha)
                    .query_async::<T>(&mut conn)
                    .await
                {
                    Err(e)
                        if e.kind()
                            == ::redis::ErrorKind::Server(::redis::ServerErrorKind::NoScript) =>
                    {
                        build("EVAL", self.src).query_async::<T>(&mut conn).await
                    }
                    other => other,
                }
            })
            .await
    }
}

/// The Redis [`CounterStore`], on the app's shared connection ([`Redis`]:
/// one multiplexed, self-reconnecting `ConnectionManager` with backoff and
/// jitter). Every call runs under the limiter's own deadline
/// (`PORTCULLIS_LIMITER_TIMEOUT_MS`, default 50 ms).
///
/// All buckets of a call are one `EVALSHA` of `lua/gcra.lua` (one round
/// trip), all quotas one of `lua/quota.lua`, a refund one of
/// `lua/refund.lua`; the scripts use the server's `TIME` unless the caller
/// gives a clock. Needs Redis ≥ 6.2 (`PXAT`, `KEEPTTL`; effect-replicated
/// scripts so `TIME` may precede writes) and a single shard (one script
/// touches all of an action's keys).
///
/// State: keys under the connection's prefix — `{prefix}{bucket}` (a TAT),
/// `{prefix}q:{bucket}` (`window:count`), `{prefix}spent:{token}`.
/// * **Who writes it:** the same callers as [`super::super::MemoryCounters`];
///   every key is derived from client input.
/// * **What bounds it:** every key expires on its own — a bucket at its TAT
///   (`PX`), a quota at its window's end, a spent token at its expiry
///   (`PXAT`) — so the number held is at most what the limits let through in
///   one period; beyond that, the server's `maxmemory` policy.
/// * **What removes it:** Redis expiry only; no caller's key removes
///   another's.
/// * **One abuser:** a flood of distinct keys costs Redis memory until the
///   keys expire (each one bucket period at most), never another key's
///   state; the stage-4 per-address limit caps how fast one address adds
///   keys.
pub struct RedisCounters {
    redis: Redis,
    timeout: Duration,
    gcra: Script,
    quota: Script,
    refund: Script,
}

impl RedisCounters {
    /// A store with a connection of its own (tests, tools). An app uses
    /// [`RedisCounters::on`] with its shared connection.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self::on(Redis::new(url, prefix, timeout)?, timeout))
    }

    /// A store on a shared connection (keys under its prefix), each call
    /// under `timeout`.
    pub fn on(redis: Redis, timeout: Duration) -> Self {
        RedisCounters {
            redis,
            timeout,
            gcra: Script::new(include_str!("../lua/gcra.lua")),
            quota: Script::new(include_str!("../lua/quota.lua")),
            refund: Script::new(include_str!("../lua/refund.lua")),
        }
    }

    /// The connection this store uses.
    pub fn connection(&self) -> &Redis {
        &self.redis
    }

    async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, StoreError> {
        script
            .eval(&self.redis, STORE, self.timeout, keys, args)
            .await
    }

    fn args(
        buckets: &[Bucket],
        now_us: Option<u64>,
        count: impl Fn(&Bucket) -> u64,
    ) -> (Vec<String>, Vec<String>) {
        let keys = buckets.iter().map(|b| b.key.clone()).collect();
        let mut args = Vec::with_capacity(1 + 2 * buckets.len());
        args.push(now_us.map(|n| n.to_string()).unwrap_or_default());
        for b in buckets {
            args.push(count(b).to_string());
            args.push(b.quota.period_us().to_string());
        }
        (keys, args)
    }

    fn malformed(script: &str, got: usize) -> StoreError {
        StoreError::Unavailable {
            store: STORE,
            detail: format!("{script} script returned {got} values"),
        }
    }

    async fn check_at(
        &self,
        buckets: &[Bucket],
        now_us: Option<u64>,
    ) -> Result<Vec<Decision>, StoreError> {
        let (keys, args) = Self::args(buckets, now_us, |b| b.quota.count.max(1) as u64);
        let v = self.eval(&self.gcra, &keys, &args).await?;
        if v.len() != 1 + 5 * buckets.len() {
            return Err(Self::malformed("gcra", v.len()));
        }
        let n = |x: i64| x.max(0) as u64;
        Ok(v[1..]
            .chunks_exact(5)
            .map(|c| Decision {
                allowed: c[0] == 1,
                remaining: n(c[1]) as u32,
                retry_after_us: n(c[2]),
                reset_us: n(c[3]),
                new_tat: n(c[4]),
            })
            .collect())
    }

    fn quota_keys(keys: Vec<String>) -> Vec<String> {
        keys.into_iter().map(|k| format!("q:{k}")).collect()
    }

    async fn take_quotas_at(
        &self,
        buckets: &[Bucket],
        now_us: Option<u64>,
    ) -> Result<Vec<QuotaDecision>, StoreError> {
        let (keys, args) = Self::args(buckets, now_us, |b| b.quota.count as u64);
        let v = self
            .eval(&self.quota, &Self::quota_keys(keys), &args)
            .await?;
        if v.len() != 1 + 3 * buckets.len() {
            return Err(Self::malformed("quota", v.len()));
        }
        let now = v[0].max(0) as u64;
        Ok(v[1..]
            .chunks_exact(3)
            .map(|c| QuotaDecision {
                allowed: c[0] == 1,
                used: c[1].max(0) as u64,
                window_end_us: c[2].max(0) as u64,
                now_us: now,
            })
            .collect())
    }

    async fn refund_quotas_at(
        &self,
        buckets: &[Bucket],
        now_us: Option<u64>,
    ) -> Result<(), StoreError> {
        let (keys, args) = Self::args(buckets, now_us, |b| b.quota.count as u64);
        self.eval(&self.refund, &Self::quota_keys(keys), &args)
            .await
            .map(|_| ())
    }

    async fn spend_once_at(&self, key: &str, expires_at_us: u64) -> Result<bool, StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(format!("{}spent:{key}", self.redis.prefix()))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(expires_at_us.div_ceil(1000).max(1));
        let cmd = &cmd;
        self.redis
            .run(STORE, self.timeout, |mut conn| async move {
                cmd.query_async::<Option<String>>(&mut conn).await
            })
            .await
            .map(|set| set.is_some())
    }
}

impl CounterStore for RedisCounters {
    fn check<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<Decision>> {
        StoreFuture::new(self.check_at(buckets, now_us))
    }

    fn take_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<QuotaDecision>> {
        StoreFuture::new(self.take_quotas_at(buckets, now_us))
    }

    fn refund_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, ()> {
        StoreFuture::new(self.refund_quotas_at(buckets, now_us))
    }

    fn spend_once<'a>(&'a self, key: &'a str, expires_at_us: u64) -> StoreFuture<'a, bool> {
        StoreFuture::new(self.spend_once_at(key, expires_at_us))
    }

    fn describe(&self) -> &'static str {
        "redis limiter"
    }
}
