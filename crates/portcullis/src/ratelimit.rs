//! Stage 4: rate limiting, before the policy check and before the body is
//! read, so a flood costs a hash and a compare per request.
//!
//! An action carries zero or more [`Limit`]s (a public action at least one —
//! its builder has no `handler` method until one is given). Each limit is a
//! key kind × quota and is enforced with GCRA (the generic cell rate
//! algorithm): per key, one number — the theoretical arrival time (TAT).
//!
//! The arithmetic lives in [`gcra`], in integer nanoseconds, so the in-memory
//! backend here and the Redis script (same formula) agree exactly. It is
//! written by hand rather than taken from `governor` because governor keeps its
//! state private and cannot share one definition with a Lua script; the
//! algorithm itself is ten lines.
//!
//! Every response to a limited action carries IETF `RateLimit-Policy` and
//! `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers, structured-field
//! form); a refusal is 429 `rate_limited` with `Retry-After` in seconds.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use serde::Serialize;

use crate::error::{ErrorCode, Rejection};
use crate::viewer::Viewer;

/// What a limit counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// The client address (trusted-proxy aware).
    Ip,
    /// The session (falls back to the address before a session exists).
    Session,
    /// The signed-in user (falls back to the address when anonymous).
    User,
    /// One bucket for everybody.
    Global,
}

impl KeyKind {
    fn label(self) -> &'static str {
        match self {
            KeyKind::Ip => "ip",
            KeyKind::Session => "session",
            KeyKind::User => "user",
            KeyKind::Global => "global",
        }
    }
}

/// `count` requests per `period`, with bursts up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub count: u32,
    #[serde(rename = "periodSecs", serialize_with = "secs")]
    pub period: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// One limit on an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub key: KeyKind,
    pub quota: Quota,
}

/// Half-built limit: `per_ip(5).per(Duration::from_secs(60))`.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    key: KeyKind,
    count: u32,
}

impl Rate {
    pub fn per(self, period: Duration) -> Limit {
        Limit {
            key: self.key,
            quota: Quota {
                count: self.count.max(1),
                period: period.max(Duration::from_millis(1)),
            },
        }
    }
    pub fn per_second(self) -> Limit {
        self.per(Duration::from_secs(1))
    }
    pub fn per_minute(self) -> Limit {
        self.per(Duration::from_secs(60))
    }
    pub fn per_hour(self) -> Limit {
        self.per(Duration::from_secs(3600))
    }
}

pub fn per_ip(count: u32) -> Rate {
    Rate {
        key: KeyKind::Ip,
        count,
    }
}
pub fn per_session(count: u32) -> Rate {
    Rate {
        key: KeyKind::Session,
        count,
    }
}
pub fn per_user(count: u32) -> Rate {
    Rate {
        key: KeyKind::User,
        count,
    }
}
pub fn global(count: u32) -> Rate {
    Rate {
        key: KeyKind::Global,
        count,
    }
}

/// The GCRA decision, shared by every backend.
pub mod gcra {
    /// Result of one check.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Decision {
        pub allowed: bool,
        /// Requests still allowed right now after this one.
        pub remaining: u32,
        /// Nanoseconds until the caller may retry (0 when allowed).
        pub retry_after_ns: u64,
        /// Nanoseconds until the bucket is full again.
        pub reset_ns: u64,
        /// The TAT to store (unchanged when refused).
        pub new_tat: u64,
    }

    /// `tat` is the stored theoretical arrival time (0 = none), `now` the
    /// clock, both in ns; `count` per `period_ns`.
    pub fn check(tat: u64, now: u64, count: u32, period_ns: u64) -> Decision {
        let interval = (period_ns / count as u64).max(1);
        let tolerance = interval * count as u64; // the whole burst
        let tat = tat.max(now);
        let new_tat = tat + interval;
        let allow_at = new_tat.saturating_sub(tolerance);
        if now < allow_at {
            return Decision {
                allowed: false,
                remaining: 0,
                retry_after_ns: allow_at - now,
                reset_ns: tat - now,
                new_tat: tat,
            };
        }
        let used = new_tat - now;
        Decision {
            allowed: true,
            remaining: ((tolerance - used) / interval) as u32,
            retry_after_ns: 0,
            reset_ns: used,
            new_tat,
        }
    }
}

/// The in-memory backend: sharded maps of key hash → TAT.
pub struct MemoryLimiter {
    shards: Vec<Mutex<HashMap<u64, u64>>>,
    hasher: RandomState,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        MemoryLimiter {
            shards: (0..32).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

/// What the limiter needs to know about the request.
pub(crate) struct Subject<'a> {
    pub action: &'a str,
    pub ip: IpAddr,
    pub session: Option<String>,
    pub viewer: Option<&'a Viewer>,
}

impl MemoryLimiter {
    fn check_one(
        &self,
        limit_index: usize,
        limit: &Limit,
        subject: &Subject<'_>,
        now: u64,
    ) -> gcra::Decision {
        let mut h = self.hasher.build_hasher();
        subject.action.hash(&mut h);
        limit_index.hash(&mut h);
        match limit.key {
            KeyKind::Global => 0u8.hash(&mut h),
            KeyKind::Ip => subject.ip.hash(&mut h),
            KeyKind::Session => match &subject.session {
                Some(s) => s.hash(&mut h),
                None => subject.ip.hash(&mut h),
            },
            KeyKind::User => match subject.viewer {
                Some(v) => v.id().hash(&mut h),
                None => subject.ip.hash(&mut h),
            },
        }
        let key = h.finish();
        let shard = &self.shards[(key as usize) % self.shards.len()];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        let tat = map.get(&key).copied().unwrap_or(0);
        let d = gcra::check(
            tat,
            now,
            limit.quota.count,
            limit.quota.period.as_nanos() as u64,
        );
        if d.allowed {
            map.insert(key, d.new_tat);
            // Bound memory: entries whose TAT has passed are equivalent to absent.
            if map.len() > 100_000 {
                map.retain(|_, t| *t > now);
            }
        }
        d
    }

    /// Checks every limit of an action; all must allow. Returns the headers to
    /// attach (for the tightest limit) or the 429.
    pub(crate) fn check(
        &self,
        limits: &[Limit],
        subject: &Subject<'_>,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, Rejection> {
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let mut tightest: Option<(usize, gcra::Decision)> = None;
        for (i, limit) in limits.iter().enumerate() {
            let d = self.check_one(i, limit, subject, now);
            let tighter = match &tightest {
                None => true,
                Some((_, t)) => {
                    (!d.allowed && t.allowed)
                        || (d.allowed == t.allowed && d.remaining < t.remaining)
                }
            };
            if tighter {
                tightest = Some((i, d));
            }
        }
        let (i, d) = tightest.expect("limits is not empty");
        let headers = headers(&limits[i], &d);
        if d.allowed {
            return Ok(headers);
        }
        let retry = d.retry_after_ns.div_ceil(1_000_000_000).max(1);
        let mut r = Rejection::with_message(
            ErrorCode::RateLimited,
            format!("Too many requests. Try again in {retry} seconds."),
        );
        r.headers = headers;
        r.headers
            .push((http::header::RETRY_AFTER, HeaderValue::from(retry)));
        Err(r)
    }
}

fn headers(limit: &Limit, d: &gcra::Decision) -> Vec<(HeaderName, HeaderValue)> {
    let name = limit.key.label();
    let policy = format!(
        "\"{name}\";q={};w={}",
        limit.quota.count,
        limit.quota.period.as_secs().max(1)
    );
    let t = if d.allowed {
        d.reset_ns
    } else {
        d.retry_after_ns
    }
    .div_ceil(1_000_000_000);
    let state = format!("\"{name}\";r={};t={t}", d.remaining);
    [("ratelimit-policy", policy), ("ratelimit", state)]
        .into_iter()
        .filter_map(|(k, v)| Some((HeaderName::from_static(k), HeaderValue::from_str(&v).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::gcra::check;

    const S: u64 = 1_000_000_000;

    /// Conformance table: 5 per 5 s (burst 5, one token per second).
    #[test]
    fn gcra_conformance() {
        let (count, period) = (5, 5 * S);
        let mut tat = 0;
        let t0 = 1_000 * S;
        // (offset ns, allowed, remaining, retry_after_s ceil)
        let table: &[(u64, bool, u32, u64)] = &[
            (0, true, 4, 0),
            (0, true, 3, 0),
            (0, true, 2, 0),
            (0, true, 1, 0),
            (0, true, 0, 0),
            (0, false, 0, 1),
            (S / 2, false, 0, 1),
            (S, true, 0, 0),
            (S, false, 0, 1),
            (3 * S, true, 1, 0),
            (10 * S, true, 4, 0),
        ];
        for (i, (off, allowed, remaining, retry)) in table.iter().enumerate() {
            let d = check(tat, t0 + off, count, period);
            assert_eq!(d.allowed, *allowed, "step {i}");
            assert_eq!(d.remaining, *remaining, "step {i}");
            assert_eq!(d.retry_after_ns.div_ceil(S), *retry, "step {i}");
            tat = d.new_tat;
        }
    }
}
