//! Stage 4: rate limiting, before the policy check and before the body is
//! read, so a flood costs a hash and a compare per request (in memory) or one
//! Redis round trip (multi-instance).
//!
//! An action carries zero or more [`Limit`]s (a public action at least one —
//! its builder has no `handler` method until one is given). Each limit is a
//! key kind × quota and is enforced with GCRA (the generic cell rate
//! algorithm): per key, one number — the theoretical arrival time (TAT).
//!
//! # Keys
//! `ip` (trusted-proxy aware, see [`crate::proxy`]), `session`, `user`,
//! `global`, or [`per_key`]: a function of the [`KeyRequest`] (address,
//! session, viewer, headers). The body is not read at stage 4, so a limit on
//! something the client *submits* — "5 login attempts per account per
//! minute" — cannot be a stage-4 limit. It is a second kind, [`per_input`],
//! given with `.limit_input(..)` and checked in stage 6 right after the input
//! is decoded and validated, before the bot check and the handler. Its cost
//! is that a refused request has had its (capped) body read; its gain is that
//! it keys on the typed, validated value, not on a guess at the raw body.
//! Custom and input key values are hashed (SHA-256) before they become
//! backend keys, so an e-mail address never sits in Redis in clear.
//!
//! # Per-account limits without a lock-out
//! A limit keyed on the account alone ("10 sign-in attempts per account")
//! slows guessing, but it is also a weapon: anyone who knows an address can
//! spend the budget from anywhere, and the real user is then refused the
//! right password — ten wrong guesses from one laptop lock the owner out
//! everywhere. So a sign-in form takes two input limits:
//!
//! * a tight one keyed on **account + client address**
//!   ([`InputRate::per_client_address`]), e.g. 10 per 15 minutes: this is
//!   what an attacker at one address meets, and it touches nobody else's
//!   budget — the owner at another address has a bucket of their own;
//! * a much higher one keyed on **the account alone**, e.g. 100 per 15
//!   minutes: the ceiling on a guess distributed over many addresses.
//!
//! All of an action's input limits are charged all-or-nothing, so attempts
//! refused by the pair limit do not drain the account ceiling: one address
//! can spend at most its pair budget of the ceiling, and locking the owner
//! out takes the ceiling divided by the pair budget in *distinct addresses at
//! once* (10 with the numbers above) — a botnet, not a laptop — while a
//! guess at one password gets at most the ceiling's rate (400 an hour)
//! however many addresses it uses. The per-address stage-4 limit caps what
//! one address can spread over many accounts. A deployment that must also
//! survive a botnet's lock-out adds what only the app can know (a device
//! cookie from a past sign-in that skips the ceiling, or a second factor).
//!
//! # Algorithm
//! The arithmetic lives in [`gcra`], in integer *microseconds*, so the
//! in-memory backend here and the Redis script (same formula, Lua numbers are
//! doubles: integers are exact below 2^53 µs ≈ 285 years) agree exactly. It is
//! written by hand rather than taken from `governor` because governor keeps its
//! state private and cannot share one definition with a Lua script; the
//! algorithm itself is ten lines.
//!
//! All limits of an action are checked together and *all or nothing*: if one
//! refuses, none is charged (a client that exhausts its per-ip budget does
//! not also drain the global one). Redis does this in one `EVALSHA` of one
//! script over all the action's keys (one round trip; `EVAL` once when the
//! server answers `NOSCRIPT`, e.g. after a restart), using the server's `TIME`
//! so instances with skewed clocks share one timeline, and keys expire on
//! their own at their TAT (`PX`).
//!
//! # Failure
//! When the backend is unreachable or slower than `limiter_timeout` (50 ms by
//! default) the action fails closed with 503 `limiter_unavailable`, unless it
//! opted into `.fail_open()` (`portcullis audit` lists those). Nothing is
//! cached across a failure, so service resumes by itself when Redis is back.
//! The Redis backend runs on the app's one shared connection
//! ([`crate::store::Redis`]), which owns reconnection and the outage log.
//!
//! # Quotas
//! Long-window counters ("20 invites per user per day") use a fixed window
//! aligned to the epoch ([`window`]), on the same backends, charged in stage 6
//! just before the handler, which reads what is left with
//! [`crate::Cx::quota`]. A quota counts calls that *succeed*: when the
//! handler returns an error or panics, the unit is given back (if the window
//! has not rolled over meanwhile).
//!
//! # Example: the login and contact forms
//! ```text
//! // Login: per address (stage 4, before the body) and per submitted
//! // account (stage 6, keyed on the validated input, hashed).
//! action(LOGIN)
//!     .public()
//!     .limit(per_ip(20).per_minute())
//!     .limit_input(per_input("account", 5, |i: &Login| Some(i.email.to_lowercase())).per_minute())
//!     .handler(login);
//! // Contact form: per address and one global budget, plus a bot check.
//! action(CONTACT)
//!     .public()
//!     .limit(per_ip(5).per_hour())
//!     .limit(global(200).per_hour())
//!     .bot_check(BotCheck::Honeypot)
//!     .handler(send);
//! // Invites: 20 per user per day; the handler reads `cx.quota("invites")`.
//! action(INVITE)
//!     .authenticated()
//!     .quota("invites", per_user(20).per_day())
//!     .handler(invite);
//! ```
//!
//! The Redis backend needs Redis ≥ 6.2 (`PXAT`, `KEEPTTL`; effect-replicated
//! scripts so `TIME` may precede writes) and a single shard (no cluster: one
//! script touches all of an action's keys).
//!
//! Every response to a limited action carries IETF `RateLimit-Policy` and
//! `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers, structured-field
//! form); a refusal is 429 `rate_limited` with `Retry-After` in seconds.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{ErrorCode, Rejection};
use crate::validate::Valid;
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
    /// A named function of the request ([`per_key`]); address when it says `None`.
    Custom(&'static str),
    /// A named function of the decoded input ([`per_input`]), checked in stage 6.
    Input(&'static str),
}

impl KeyKind {
    fn label(self) -> &'static str {
        match self {
            KeyKind::Ip => "ip",
            KeyKind::Session => "session",
            KeyKind::User => "user",
            KeyKind::Global => "global",
            KeyKind::Custom(name) | KeyKind::Input(name) => name,
        }
    }

    /// Whether computing the key needs the signed-in viewer.
    pub(crate) fn needs_viewer(self) -> bool {
        matches!(self, KeyKind::User | KeyKind::Custom(_))
    }
}

/// `count` requests per `period`, with bursts up to `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Quota {
    pub count: u32,
    #[serde(rename = "periodSecs", serialize_with = "secs")]
    pub period: Duration,
}

impl Quota {
    fn period_us(&self) -> u64 {
        (self.period.as_micros() as u64).max(1)
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

/// What a custom key function sees at stage 4: headers and identity, no body.
pub struct KeyRequest<'a> {
    pub(crate) ip: IpAddr,
    pub(crate) session: Option<&'a str>,
    pub(crate) viewer: Option<&'a Viewer>,
    pub(crate) headers: &'a HeaderMap,
}

impl<'a> KeyRequest<'a> {
    /// The client address (trusted-proxy aware).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
    /// The signed-in viewer, if any.
    pub fn viewer(&self) -> Option<&'a Viewer> {
        self.viewer
    }
    /// Whether the request came with a session.
    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }
    /// A request header, if present and text.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type RequestKeyFn = dyn Fn(&KeyRequest<'_>) -> Option<String> + Send + Sync;
type InputKeyFn = dyn Fn(&(dyn Any + Send)) -> Option<String> + Send + Sync;

/// A key function, compared by identity.
#[derive(Clone)]
pub(crate) enum KeyFn {
    Request(Arc<RequestKeyFn>),
    Input {
        type_id: TypeId,
        type_name: &'static str,
        f: Arc<InputKeyFn>,
        /// The key is the input's value *and* the client address
        /// ([`InputRate::per_client_address`]).
        with_address: bool,
    },
}

impl PartialEq for KeyFn {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (KeyFn::Request(a), KeyFn::Request(b)) => Arc::ptr_eq(a, b),
            (KeyFn::Input { f: a, .. }, KeyFn::Input { f: b, .. }) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}
impl Eq for KeyFn {}

impl fmt::Debug for KeyFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFn::Request(_) => f.write_str("KeyFn::Request(..)"),
            KeyFn::Input { type_name, .. } => write!(f, "KeyFn::Input({type_name})"),
        }
    }
}

/// One limit on an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    pub key: KeyKind,
    pub quota: Quota,
    #[serde(skip)]
    pub(crate) key_fn: Option<KeyFn>,
    /// The `RateLimit-Policy` value. It depends only on the limit, so it is
    /// built once here instead of formatted into every response (a profile
    /// showed the per-request `format!` at ~4 % of an echo request).
    #[serde(skip)]
    policy: Option<HeaderValue>,
}

/// Half-built limit: `per_ip(5).per(Duration::from_secs(60))`.
#[derive(Clone, Debug)]
pub struct Rate {
    key: KeyKind,
    count: u32,
    key_fn: Option<KeyFn>,
}

impl Rate {
    pub fn per(self, period: Duration) -> Limit {
        let quota = Quota {
            count: self.count.max(1),
            period: period.max(Duration::from_millis(1)),
        };
        let policy = HeaderValue::from_str(&format!(
            "\"{}\";q={};w={}",
            self.key.label(),
            quota.count,
            quota.period.as_secs().max(1)
        ))
        .ok();
        Limit {
            key: self.key,
            quota,
            key_fn: self.key_fn,
            policy,
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
    pub fn per_day(self) -> Limit {
        self.per(Duration::from_secs(86_400))
    }
}

fn rate(key: KeyKind, count: u32) -> Rate {
    Rate {
        key,
        count,
        key_fn: None,
    }
}

pub fn per_ip(count: u32) -> Rate {
    rate(KeyKind::Ip, count)
}
pub fn per_session(count: u32) -> Rate {
    rate(KeyKind::Session, count)
}
pub fn per_user(count: u32) -> Rate {
    rate(KeyKind::User, count)
}
pub fn global(count: u32) -> Rate {
    rate(KeyKind::Global, count)
}

/// A limit keyed by a function of the request (stage 4; no body yet), e.g. an
/// API-key header. `None` falls back to the client address. `name` shows in
/// the `RateLimit` headers and the manifest.
pub fn per_key<F>(name: &'static str, count: u32, key: F) -> Rate
where
    F: Fn(&KeyRequest<'_>) -> Option<String> + Send + Sync + 'static,
{
    Rate {
        key: KeyKind::Custom(name),
        count,
        key_fn: Some(KeyFn::Request(Arc::new(key))),
    }
}

/// A limit keyed by a function of the decoded, validated input `I`, e.g. the
/// account a login form names: `per_input("account", 5, |i: &Login| Some(i.email.to_lowercase()))`.
/// Given with `.limit_input(..)`; checked in stage 6 (see the module docs).
/// `None` falls back to the client address.
pub fn per_input<I, F>(name: &'static str, count: u32, key: F) -> InputRate<I>
where
    I: Send + 'static,
    F: Fn(&I) -> Option<String> + Send + Sync + 'static,
{
    let f = move |any: &(dyn Any + Send)| any.downcast_ref::<Valid<I>>().and_then(|v| key(v));
    InputRate {
        rate: Rate {
            key: KeyKind::Input(name),
            count,
            key_fn: Some(KeyFn::Input {
                type_id: TypeId::of::<I>(),
                type_name: std::any::type_name::<I>(),
                f: Arc::new(f),
                with_address: false,
            }),
        },
        _input: std::marker::PhantomData,
    }
}

/// Half-built input limit: `per_input(..).per_minute()`.
pub struct InputRate<I> {
    rate: Rate,
    _input: std::marker::PhantomData<fn(&I)>,
}

/// A limit over an action's decoded input `I` (stage 6).
pub struct InputLimit<I> {
    pub(crate) limit: Limit,
    _input: std::marker::PhantomData<fn(&I)>,
}

impl<I> InputRate<I> {
    /// Counts per (input value, client address) pair instead of per value:
    /// one address's attempts at an account use up only that pair's budget.
    /// Pair it with a much higher value-only limit (see the module docs'
    /// lock-out section): `per_input("account+address", 10, ..).per_client_address()`.
    ///
    /// State: one limiter entry per (value, address) pair, written only by a
    /// request from that address that reached stage 6 (so at the rate the
    /// action's stage-4 per-address limit allows), removed when its window
    /// has passed like every limiter entry (memory: swept; Redis: `PX`
    /// expiry). One address flooding many accounts fills only its own pairs
    /// and is held back by its per-address limit; other clients' pairs and
    /// the value-only ceiling are not touched by refused requests.
    pub fn per_client_address(mut self) -> Self {
        if let Some(KeyFn::Input { with_address, .. }) = &mut self.rate.key_fn {
            *with_address = true;
        }
        self
    }

    pub fn per(self, period: Duration) -> InputLimit<I> {
        InputLimit {
            limit: self.rate.per(period),
            _input: std::marker::PhantomData,
        }
    }
    pub fn per_second(self) -> InputLimit<I> {
        self.per(Duration::from_secs(1))
    }
    pub fn per_minute(self) -> InputLimit<I> {
        self.per(Duration::from_secs(60))
    }
    pub fn per_hour(self) -> InputLimit<I> {
        self.per(Duration::from_secs(3600))
    }
    pub fn per_day(self) -> InputLimit<I> {
        self.per(Duration::from_secs(86_400))
    }
}

impl Limit {
    /// The type an input limit reads (for the start-up check).
    pub(crate) fn input_type(&self) -> Option<(TypeId, &'static str)> {
        match &self.key_fn {
            Some(KeyFn::Input {
                type_id, type_name, ..
            }) => Some((*type_id, type_name)),
            _ => None,
        }
    }
}

/// A named long-window quota on an action (`.quota("invites", per_user(20).per_day())`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NamedQuota {
    pub name: &'static str,
    #[serde(flatten)]
    pub limit: Limit,
}

/// What is left of a quota after this request was charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaState {
    pub limit: u32,
    pub remaining: u32,
    #[serde(serialize_with = "secs")]
    pub resets_in: Duration,
}

/// The GCRA decision, shared by every backend.
pub mod gcra {
    /// Result of one check.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Decision {
        pub allowed: bool,
        /// Requests still allowed right now after this one.
        pub remaining: u32,
        /// Microseconds until the caller may retry (0 when allowed).
        pub retry_after_us: u64,
        /// Microseconds until the bucket is full again.
        pub reset_us: u64,
        /// The TAT to store (unchanged when refused).
        pub new_tat: u64,
    }

    /// `tat` is the stored theoretical arrival time (0 = none), `now` the
    /// clock, both in µs; `count` per `period_us`. The Redis script in
    /// [`super`] is this function line by line.
    pub fn check(tat: u64, now: u64, count: u32, period_us: u64) -> Decision {
        let count = count.max(1) as u64;
        let interval = (period_us / count).max(1);
        let tolerance = interval * count; // the whole burst
        let tat = tat.max(now);
        let new_tat = tat + interval;
        let allow_at = new_tat.saturating_sub(tolerance);
        if now < allow_at {
            return Decision {
                allowed: false,
                remaining: 0,
                retry_after_us: allow_at - now,
                reset_us: tat - now,
                new_tat: tat,
            };
        }
        let used = new_tat - now;
        Decision {
            allowed: true,
            remaining: ((tolerance - used) / interval) as u32,
            retry_after_us: 0,
            reset_us: used,
            new_tat,
        }
    }
}

/// Fixed-window counting for quotas, shared by every backend.
pub mod window {
    /// The window `now` (µs) falls in and when it ends.
    pub fn bounds(now: u64, period_us: u64) -> (u64, u64) {
        let period = period_us.max(1);
        let index = now / period;
        (index, (index + 1) * period)
    }
}

/// Why the backend could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("limiter backend did not answer within {0:?}")]
    Timeout(Duration),
    #[error("limiter backend: {0}")]
    Backend(String),
}

/// A backend bucket: its key and quota.
#[derive(Clone, Debug)]
pub struct Bucket {
    pub key: String,
    pub quota: Quota,
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// The backend for limits, quotas and spent one-time tokens: in memory (one
/// instance) or Redis (many instances).
pub enum Limiter {
    Memory(MemoryLimiter),
    Redis(Box<RedisLimiter>),
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

impl Limiter {
    pub fn memory() -> Self {
        Limiter::Memory(MemoryLimiter::default())
    }

    /// A Redis backend with a connection of its own. Connects lazily (a
    /// Redis that is down at start-up only makes limited actions answer 503
    /// until it is up).
    pub fn redis(url: &str, prefix: &str, timeout: Duration) -> Result<Self, LimiterError> {
        Ok(Limiter::Redis(Box::new(RedisLimiter::new(
            url, prefix, timeout,
        )?)))
    }

    /// A Redis backend on the app's shared connection.
    pub fn on_redis(redis: crate::store::Redis, timeout: Duration) -> Self {
        Limiter::Redis(Box::new(RedisLimiter::on(redis, timeout)))
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Limiter::Memory(_) => "in-memory limiter",
            Limiter::Redis(_) => "redis limiter",
        }
    }

    /// Checks buckets together, all or nothing, at `now_us` (µs since the
    /// epoch; `None` = the backend's clock — Redis `TIME` for Redis). Public
    /// so the conformance tests can drive both backends with one clock.
    pub async fn check_buckets(
        &self,
        buckets: &[Bucket],
        now_us: Option<u64>,
    ) -> Result<Vec<gcra::Decision>, LimiterError> {
        match self {
            Limiter::Memory(m) => Ok(m.check(buckets, now_us.unwrap_or_else(self::now_us))),
            Limiter::Redis(r) => r.check(buckets, now_us).await,
        }
    }

    /// Charges one unit of each quota bucket if every one has room (all or
    /// nothing), in the fixed window `now_us` falls in (`None` = the
    /// backend's clock). One [`QuotaDecision`] per bucket.
    pub async fn take_quotas(
        &self,
        buckets: &[Bucket],
        now_us: Option<u64>,
    ) -> Result<Vec<QuotaDecision>, LimiterError> {
        match self {
            Limiter::Memory(m) => Ok(m.take_quotas(buckets, now_us.unwrap_or_else(self::now_us))),
            Limiter::Redis(r) => r.take_quotas(buckets, now_us).await,
        }
    }

    /// Gives back one unit of each quota bucket, if it is still in the window
    /// it was charged in (a call whose handler failed).
    pub async fn refund_quotas(
        &self,
        buckets: &[Bucket],
        now_us: Option<u64>,
    ) -> Result<(), LimiterError> {
        match self {
            Limiter::Memory(m) => {
                m.refund_quotas(buckets, now_us.unwrap_or_else(self::now_us));
                Ok(())
            }
            Limiter::Redis(r) => r.refund_quotas(buckets, now_us).await,
        }
    }

    /// Marks a one-time token as spent until `expires_at_us`. `Ok(false)`
    /// means it was already spent (a replay).
    pub async fn spend_once(&self, key: &str, expires_at_us: u64) -> Result<bool, LimiterError> {
        match self {
            Limiter::Memory(m) => Ok(m.spend_once(key, expires_at_us, now_us())),
            Limiter::Redis(r) => r.spend_once(key, expires_at_us).await,
        }
    }

    /// Stage 4 / stage 6 entry point: checks `limits` (with their computed
    /// keys) and returns the headers to attach, or the refusal.
    pub(crate) async fn enforce(
        &self,
        limits: &[Limit],
        keys: Vec<String>,
        fail_open: bool,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, Rejection> {
        if limits.is_empty() {
            return Ok(Vec::new());
        }
        let buckets: Vec<Bucket> = keys
            .into_iter()
            .zip(limits)
            .map(|(key, l)| Bucket {
                key,
                quota: l.quota,
            })
            .collect();
        let decisions = match self.check_buckets(&buckets, None).await {
            Ok(d) => d,
            Err(e) => return unavailable(e, fail_open).map(|()| Vec::new()),
        };
        let mut tightest: Option<(usize, gcra::Decision)> = None;
        for (i, d) in decisions.into_iter().enumerate() {
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
        let Some((i, d)) = tightest else {
            return Ok(Vec::new());
        };
        let headers = headers(&limits[i], &d);
        if d.allowed {
            return Ok(headers);
        }
        Err(too_many(d.retry_after_us, headers))
    }

    /// After a failed handler: gives the quota units back (best effort).
    pub(crate) async fn refund(&self, quotas: &[NamedQuota], keys: Vec<String>) {
        if quotas.is_empty() {
            return;
        }
        let buckets: Vec<Bucket> = keys
            .into_iter()
            .zip(quotas)
            .map(|(key, q)| Bucket {
                key,
                quota: q.limit.quota,
            })
            .collect();
        if let Err(e) = self.refund_quotas(&buckets, None).await {
            tracing::warn!(error = %e, "could not refund quota after a failed handler");
        }
    }

    /// Stage 6: charges the action's quotas; returns what is left of each.
    pub(crate) async fn charge_quotas(
        &self,
        quotas: &[NamedQuota],
        keys: Vec<String>,
        fail_open: bool,
    ) -> Result<Vec<(&'static str, QuotaState)>, Rejection> {
        if quotas.is_empty() {
            return Ok(Vec::new());
        }
        let buckets: Vec<Bucket> = keys
            .into_iter()
            .zip(quotas)
            .map(|(key, q)| Bucket {
                key,
                quota: q.limit.quota,
            })
            .collect();
        let decisions = match self.take_quotas(&buckets, None).await {
            Ok(d) => d,
            Err(e) => return unavailable(e, fail_open).map(|()| Vec::new()),
        };
        let mut out = Vec::with_capacity(quotas.len());
        for (q, d) in quotas.iter().zip(&decisions) {
            let state = QuotaState {
                limit: q.limit.quota.count,
                remaining: q.limit.quota.count.saturating_sub(d.used as u32),
                resets_in: Duration::from_micros(d.window_end_us.saturating_sub(d.now_us)),
            };
            if !d.allowed {
                let mut r = too_many(d.window_end_us.saturating_sub(d.now_us), Vec::new());
                r.message = format!(
                    "The limit for {} has been reached. Try again in {}.",
                    q.name.replace(['_', '.'], " "),
                    human(state.resets_in)
                );
                return Err(r);
            }
            out.push((q.name, state));
        }
        Ok(out)
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs().max(1);
    match s {
        0..=119 => format!("{s} seconds"),
        120..=7199 => format!("{} minutes", s.div_ceil(60)),
        _ => format!("{} hours", s.div_ceil(3600)),
    }
}

fn unavailable(e: LimiterError, fail_open: bool) -> Result<(), Rejection> {
    if fail_open {
        tracing::debug!(error = %e, "limiter unavailable; action is fail-open, allowing");
        return Ok(());
    }
    let r = Rejection::new(ErrorCode::LimiterUnavailable);
    // The outage itself is logged once (down/summary/up) by the connection.
    tracing::debug!(digest = %r.digest, error = %e, "limiter unavailable; failing closed");
    Err(r.header(http::header::RETRY_AFTER, HeaderValue::from_static("1")))
}

fn too_many(retry_after_us: u64, headers: Vec<(HeaderName, HeaderValue)>) -> Rejection {
    let retry = retry_after_us.div_ceil(1_000_000).max(1);
    let mut r = Rejection::with_message(
        ErrorCode::RateLimited,
        format!("Too many requests. Try again in {retry} seconds."),
    );
    r.headers = headers;
    r.headers
        .push((http::header::RETRY_AFTER, HeaderValue::from(retry)));
    r
}

/// One quota bucket's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaDecision {
    pub allowed: bool,
    /// Units used in this window after this request (unchanged when refused).
    pub used: u64,
    pub window_end_us: u64,
    pub now_us: u64,
}

/// Hashes a caller-chosen key value so it is short and not stored in clear.
fn hashed(value: &str) -> String {
    use base64::Engine;
    let digest = Sha256::digest(value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..18])
}

/// Appends the address part of a key. IPv6 clients are keyed by their /64:
/// one subscriber usually holds a whole /64, so per-address keys would give
/// a single client 2^64 buckets. Written into the caller's buffer because it
/// runs on every limited request.
fn push_addr(out: &mut String, ip: IpAddr) {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None => {
                let s = v6.segments();
                let _ = write!(out, "{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]);
                return;
            }
        },
    };
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(digits.format(octet));
    }
}

/// Runs an app-supplied key function; a panic in it becomes a 500, not a
/// dropped connection (these are the only app code that runs before stage 6).
fn run_key_fn(
    action: &str,
    f: impl FnOnce() -> Option<String>,
) -> Result<Option<String>, Rejection> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
        Rejection::internal(&format_args!(
            "action `{action}`: a rate-limit key function panicked"
        ))
    })
}

/// Starts a backend key: `{action}:{slot}{index}:{label}:`.
fn key_prefix(action: &str, slot: &str, index: usize, label: &str) -> String {
    let mut key = String::with_capacity(action.len() + label.len() + 48);
    key.push_str(action);
    key.push(':');
    key.push_str(slot);
    key.push_str(itoa::Buffer::new().format(index));
    key.push(':');
    key.push_str(label);
    key.push(':');
    key
}

/// Appends `k:{hash}` for a caller-chosen key, or the address without one.
fn push_chosen(key: &mut String, chosen: Option<&str>, ip: IpAddr) {
    match chosen {
        Some(k) => {
            key.push_str("k:");
            key.push_str(&hashed(k));
        }
        None => {
            key.push_str("a:");
            push_addr(key, ip);
        }
    }
}

/// The backend key of each limit, in order. `slot` distinguishes the stage
/// (`r` request limits, `q` quotas; input limits use `i`).
pub(crate) fn request_keys(
    action: &str,
    slot: &str,
    limits: &[Limit],
    req: &KeyRequest<'_>,
) -> Result<Vec<String>, Rejection> {
    let mut out = Vec::with_capacity(limits.len());
    for (i, l) in limits.iter().enumerate() {
        let mut key = key_prefix(action, slot, i, l.key.label());
        match (l.key, &l.key_fn) {
            (KeyKind::Global, _) => key.push('g'),
            (KeyKind::Session, _) => match req.session {
                Some(s) => {
                    key.push_str("s:");
                    key.push_str(&hashed(s));
                }
                None => push_chosen(&mut key, None, req.ip),
            },
            (KeyKind::User, _) => match req.viewer {
                Some(v) => {
                    key.push_str("u:");
                    key.push_str(itoa::Buffer::new().format(v.id()));
                }
                None => push_chosen(&mut key, None, req.ip),
            },
            (KeyKind::Custom(_), Some(KeyFn::Request(f))) => {
                let chosen = run_key_fn(action, || f(req))?;
                push_chosen(&mut key, chosen.as_deref(), req.ip);
            }
            _ => push_chosen(&mut key, None, req.ip),
        }
        out.push(key);
    }
    Ok(out)
}

/// The backend key of each input limit, in order.
pub(crate) fn input_keys(
    action: &str,
    limits: &[Limit],
    input: &(dyn Any + Send),
    ip: IpAddr,
) -> Result<Vec<String>, Rejection> {
    let mut out = Vec::with_capacity(limits.len());
    for (i, l) in limits.iter().enumerate() {
        let (chosen, with_address) = match &l.key_fn {
            Some(KeyFn::Input {
                f, with_address, ..
            }) => (run_key_fn(action, || f(input))?, *with_address),
            _ => (None, false),
        };
        let mut key = key_prefix(action, "i", i, l.key.label());
        push_chosen(&mut key, chosen.as_deref(), ip);
        if with_address && chosen.is_some() {
            key.push_str(":a:");
            push_addr(&mut key, ip);
        }
        out.push(key);
    }
    Ok(out)
}

/// The `RateLimit-Policy` and `RateLimit` headers for the tightest limit.
fn headers(limit: &Limit, d: &gcra::Decision) -> Vec<(HeaderName, HeaderValue)> {
    let t = if d.allowed {
        d.reset_us
    } else {
        d.retry_after_us
    }
    .div_ceil(1_000_000);
    let name = limit.key.label();
    let mut state = String::with_capacity(name.len() + 32);
    state.push('"');
    state.push_str(name);
    state.push_str("\";r=");
    state.push_str(itoa::Buffer::new().format(d.remaining));
    state.push_str(";t=");
    state.push_str(itoa::Buffer::new().format(t));
    let mut out = Vec::with_capacity(2);
    if let Some(policy) = &limit.policy {
        out.push((HeaderName::from_static("ratelimit-policy"), policy.clone()));
    }
    if let Ok(state) = HeaderValue::from_str(&state) {
        out.push((HeaderName::from_static("ratelimit"), state));
    }
    out
}

// ---------------------------------------------------------------------------
// In memory

const SHARDS: usize = 32;
/// Most entries one shard of one map keeps (so about a million keys per
/// map). The keys are client-chosen (addresses, sessions, submitted emails).
pub const MAX_PER_SHARD: usize = 32_768;

/// Keeps a shard under [`MAX_PER_SHARD`]: first drops entries that no
/// longer matter (`live` false: their window has passed, equivalent to
/// absent), then, if a flood of live keys remains, the entries with the
/// least `debt` down to 7/8 of the cap. For GCRA the debt is the TAT: the
/// lowest TATs are the keys closest to a full budget, so forgetting them
/// gives back at most a sliver of budget — a flood of fresh keys cannot
/// reset the key it targets (which carries the most debt). Runs at most
/// once per cap/8 inserts, so the cost is amortised (the old sweep ran on
/// every insert once 100 k live keys were held).
fn shed<V>(map: &mut HashMap<u64, V>, live: impl Fn(&V) -> bool, debt: impl Fn(&V) -> u64) {
    if map.len() <= MAX_PER_SHARD {
        return;
    }
    let target = MAX_PER_SHARD / 8 * 7;
    map.retain(|_, v| live(v));
    if map.len() <= target {
        return;
    }
    let mut debts: Vec<u64> = map.values().map(&debt).collect();
    let cut = map.len() - target;
    let (_, threshold, _) = debts.select_nth_unstable(cut - 1);
    let threshold = *threshold;
    let mut over = cut;
    map.retain(|_, v| {
        if over > 0 && debt(v) <= threshold {
            over -= 1;
            false
        } else {
            true
        }
    });
}

/// The in-memory backend: sharded maps of key hash → state. No global lock:
/// a check locks only the shards of its own keys, in index order.
pub struct MemoryLimiter {
    tats: Vec<Mutex<HashMap<u64, u64>>>,
    quotas: Vec<Mutex<HashMap<u64, (u64, u64)>>>,
    spent: Vec<Mutex<HashMap<u64, u64>>>,
    hasher: RandomState,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        fn shards<V>() -> Vec<Mutex<HashMap<u64, V>>> {
            (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect()
        }
        MemoryLimiter {
            tats: shards(),
            quotas: shards(),
            spent: shards(),
            hasher: RandomState::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned shard holds plain numbers; they are still valid.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks the distinct shards of `hashes` in ascending order (no deadlock).
fn lock_shards<'a, V>(
    shards: &'a [Mutex<HashMap<u64, V>>],
    hashes: &[u64],
) -> Vec<(usize, MutexGuard<'a, HashMap<u64, V>>)> {
    let mut idx: Vec<usize> = hashes
        .iter()
        .map(|h| (*h as usize) % shards.len())
        .collect();
    idx.sort_unstable();
    idx.dedup();
    idx.into_iter().map(|i| (i, lock(&shards[i]))).collect()
}

fn shard_of<'g, V>(
    guards: &'g mut [(usize, MutexGuard<'_, HashMap<u64, V>>)],
    hash: u64,
    n: usize,
) -> &'g mut HashMap<u64, V> {
    let want = (hash as usize) % n;
    let pos = guards
        .iter()
        .position(|(i, _)| *i == want)
        .unwrap_or_default();
    &mut guards[pos].1
}

impl MemoryLimiter {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn check(&self, buckets: &[Bucket], now: u64) -> Vec<gcra::Decision> {
        let hashes: Vec<u64> = buckets.iter().map(|b| self.hash(&b.key)).collect();
        let mut guards = lock_shards(&self.tats, &hashes);
        let decisions: Vec<gcra::Decision> = buckets
            .iter()
            .zip(&hashes)
            .map(|(b, h)| {
                let tat = shard_of(&mut guards, *h, SHARDS)
                    .get(h)
                    .copied()
                    .unwrap_or(0);
                gcra::check(tat, now, b.quota.count, b.quota.period_us())
            })
            .collect();
        if decisions.iter().all(|d| d.allowed) {
            for (d, h) in decisions.iter().zip(&hashes) {
                let map = shard_of(&mut guards, *h, SHARDS);
                map.insert(*h, d.new_tat);
                // Entries whose TAT has passed are equivalent to absent.
                shed(map, |t| *t > now, |t| *t);
            }
        }
        decisions
    }

    fn take_quotas(&self, buckets: &[Bucket], now: u64) -> Vec<QuotaDecision> {
        let hashes: Vec<u64> = buckets.iter().map(|b| self.hash(&b.key)).collect();
        let mut guards = lock_shards(&self.quotas, &hashes);
        let mut out: Vec<QuotaDecision> = buckets
            .iter()
            .zip(&hashes)
            .map(|(b, h)| {
                let (index, end) = window::bounds(now, b.quota.period_us());
                let used = match shard_of(&mut guards, *h, SHARDS).get(h) {
                    Some((w, n)) if *w == index => *n,
                    _ => 0,
                };
                QuotaDecision {
                    allowed: used < b.quota.count as u64,
                    used,
                    window_end_us: end,
                    now_us: now,
                }
            })
            .collect();
        if out.iter().all(|d| d.allowed) {
            for ((d, h), b) in out.iter_mut().zip(&hashes).zip(buckets) {
                let (index, _) = window::bounds(now, b.quota.period_us());
                d.used += 1;
                let map = shard_of(&mut guards, *h, SHARDS);
                map.insert(*h, (index, d.used));
                shed(map, |(w, _)| *w >= index, |(_, n)| *n);
            }
        }
        out
    }

    fn refund_quotas(&self, buckets: &[Bucket], now: u64) {
        for b in buckets {
            let h = self.hash(&b.key);
            let (index, _) = window::bounds(now, b.quota.period_us());
            let mut map = lock(&self.quotas[(h as usize) % SHARDS]);
            if let Some((w, n)) = map.get_mut(&h)
                && *w == index
            {
                *n = n.saturating_sub(1);
            }
        }
    }

    fn spend_once(&self, key: &str, expires_at: u64, now: u64) -> bool {
        let h = self.hash(key);
        let mut map = lock(&self.spent[(h as usize) % SHARDS]);
        if map.get(&h).is_some_and(|exp| *exp > now) {
            return false;
        }
        map.insert(h, expires_at);
        // Spent tokens are never shed while live (that would allow a
        // replay); their number is bounded by the challenge lifetime times
        // the rate at which valid proofs of work can be produced.
        if map.len() > 100_000 {
            map.retain(|_, exp| *exp > now);
        }
        true
    }
}

// ---------------------------------------------------------------------------
// Redis

/// [`gcra::check`] over all keys of one action, all or nothing.
/// KEYS: one per limit. ARGV[1]: now in µs, or "" for the server's `TIME`;
/// then count, period (µs) per key. Returns now, then per key: allowed,
/// remaining, retry_after, reset, new_tat.
const GCRA_LUA: &str = r#"
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local out = { now }
local all = true
local tats = {}
for i = 1, #KEYS do
  local count = math.max(tonumber(ARGV[2 * i]), 1)
  local period = tonumber(ARGV[2 * i + 1])
  local interval = math.max(math.floor(period / count), 1)
  local tolerance = interval * count
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = math.max(new_tat - tolerance, 0)
  if now < allow_at then
    all = false
    tats[i] = false
    for _, v in ipairs({ 0, 0, allow_at - now, tat - now, tat }) do out[#out + 1] = v end
  else
    local used = new_tat - now
    tats[i] = new_tat
    for _, v in ipairs({ 1, math.floor((tolerance - used) / interval), 0, used, new_tat }) do out[#out + 1] = v end
  end
end
if all then
  for i = 1, #KEYS do
    local ttl = math.max(math.ceil((tats[i] - now) / 1000), 1)
    redis.call('SET', KEYS[i], string.format('%.0f', tats[i]), 'PX', string.format('%.0f', ttl))
  end
end
return out
"#;

/// Fixed-window quotas, all or nothing. KEYS: one per quota. ARGV[1]: now
/// (µs) or ""; then limit, period (µs) per key. The window index is part of
/// the stored value so a key never straddles two windows. Returns now, then
/// per key: allowed, used, window_end.
const QUOTA_LUA: &str = r#"
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local out = { now }
local all = true
local used = {}
local ends = {}
local idx = {}
for i = 1, #KEYS do
  local limit = tonumber(ARGV[2 * i])
  local period = math.max(tonumber(ARGV[2 * i + 1]), 1)
  idx[i] = math.floor(now / period)
  ends[i] = (idx[i] + 1) * period
  local n = 0
  local v = redis.call('GET', KEYS[i])
  if v then
    local w, c = string.match(v, '^(%d+):(%d+)$')
    if w and tonumber(w) == idx[i] then n = tonumber(c) end
  end
  used[i] = n
  if n >= limit then all = false end
end
for i = 1, #KEYS do
  local allowed = 0
  if used[i] < tonumber(ARGV[2 * i]) then allowed = 1 end
  if all then
    used[i] = used[i] + 1
    local ttl = math.max(math.ceil((ends[i] - now) / 1000), 1)
    redis.call('SET', KEYS[i], string.format('%.0f:%d', idx[i], used[i]), 'PX', string.format('%.0f', ttl))
  end
  for _, x in ipairs({ allowed, used[i], ends[i] }) do out[#out + 1] = x end
end
return out
"#;

/// Gives back one unit per quota key if it is still in the same window.
/// KEYS/ARGV as for [`QUOTA_LUA`]. Returns the number of keys refunded.
const REFUND_LUA: &str = r#"
local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local done = 0
for i = 1, #KEYS do
  local period = math.max(tonumber(ARGV[2 * i + 1]), 1)
  local idx = math.floor(now / period)
  local v = redis.call('GET', KEYS[i])
  if v then
    local w, c = string.match(v, '^(%d+):(%d+)$')
    if w and tonumber(w) == idx and tonumber(c) > 0 then
      redis.call('SET', KEYS[i], string.format('%.0f:%d', idx, tonumber(c) - 1), 'KEEPTTL')
      done = done + 1
    end
  end
end
return { done }
"#;

/// The Redis backend, on the app's shared connection ([`crate::store::Redis`]:
/// one multiplexed, self-reconnecting `ConnectionManager` with backoff and
/// jitter). Every call runs under the limiter's own deadline.
pub struct RedisLimiter {
    redis: crate::store::Redis,
    timeout: Duration,
    gcra: Script,
    quota: Script,
    refund: Script,
}

struct Script {
    src: &'static str,
    sha: String,
}

impl Script {
    fn new(src: &'static str) -> Self {
        Script {
            src,
            sha: redis::Script::new(src).get_hash().to_owned(),
        }
    }
}

impl RedisLimiter {
    /// A limiter with a connection of its own (tests, tools). An app uses
    /// [`RedisLimiter::on`] with its shared connection.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, LimiterError> {
        let redis = crate::store::Redis::new(url, prefix, timeout)
            .map_err(|e| LimiterError::Backend(e.to_string()))?;
        Ok(Self::on(redis, timeout))
    }

    /// A limiter on a shared connection (keys under its prefix).
    pub fn on(redis: crate::store::Redis, timeout: Duration) -> Self {
        RedisLimiter {
            redis,
            timeout,
            gcra: Script::new(GCRA_LUA),
            quota: Script::new(QUOTA_LUA),
            refund: Script::new(REFUND_LUA),
        }
    }

    fn error(e: crate::store::StoreError) -> LimiterError {
        match e {
            crate::store::StoreError::Timeout { after, .. } => LimiterError::Timeout(after),
            other => LimiterError::Backend(other.to_string()),
        }
    }

    /// EVALSHA, and EVAL once on NOSCRIPT (which also caches it), under the timeout.
    async fn eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Vec<i64>, LimiterError> {
        let prefix = self.redis.prefix();
        let build = |verb: &str, body: &str| {
            let mut cmd = redis::cmd(verb);
            cmd.arg(body).arg(keys.len());
            for k in keys {
                cmd.arg(format!("{prefix}{k}"));
            }
            for a in args {
                cmd.arg(a);
            }
            cmd
        };
        self.redis
            .run("limiter", self.timeout, |mut conn| async move {
                match build("EVALSHA", &script.sha)
                    .query_async::<Vec<i64>>(&mut conn)
                    .await
                {
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        build("EVAL", script.src)
                            .query_async::<Vec<i64>>(&mut conn)
                            .await
                    }
                    other => other,
                }
            })
            .await
            .map_err(Self::error)
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

    async fn check(
        &self,
        buckets: &[Bucket],
        now_us: Option<u64>,
    ) -> Result<Vec<gcra::Decision>, LimiterError> {
        let (keys, args) = Self::args(buckets, now_us, |b| b.quota.count.max(1) as u64);
        let v = self.eval(&self.gcra, &keys, &args).await?;
        if v.len() != 1 + 5 * buckets.len() {
            return Err(LimiterError::Backend(format!(
                "gcra script returned {} values",
                v.len()
            )));
        }
        let n = |x: i64| x.max(0) as u64;
        Ok(v[1..]
            .chunks_exact(5)
            .map(|c| gcra::Decision {
                allowed: c[0] == 1,
                remaining: n(c[1]) as u32,
                retry_after_us: n(c[2]),
                reset_us: n(c[3]),
                new_tat: n(c[4]),
            })
            .collect())
    }

    async fn take_quotas(
        &self,
        buckets: &[Bucket],
        now_us: Option<u64>,
    ) -> Result<Vec<QuotaDecision>, LimiterError> {
        let (keys, args) = Self::args(buckets, now_us, |b| b.quota.count as u64);
        let keys: Vec<String> = keys.into_iter().map(|k| format!("q:{k}")).collect();
        let v = self.eval(&self.quota, &keys, &args).await?;
        if v.len() != 1 + 3 * buckets.len() {
            return Err(LimiterError::Backend(format!(
                "quota script returned {} values",
                v.len()
            )));
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

    async fn refund_quotas(
        &self,
        buckets: &[Bucket],
        now_us: Option<u64>,
    ) -> Result<(), LimiterError> {
        let (keys, args) = Self::args(buckets, now_us, |b| b.quota.count as u64);
        let keys: Vec<String> = keys.into_iter().map(|k| format!("q:{k}")).collect();
        self.eval(&self.refund, &keys, &args).await.map(|_| ())
    }

    async fn spend_once(&self, key: &str, expires_at_us: u64) -> Result<bool, LimiterError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("{}spent:{key}", self.redis.prefix()))
            .arg(1)
            .arg("NX")
            .arg("PXAT")
            .arg(expires_at_us.div_ceil(1000).max(1));
        let cmd = &cmd;
        self.redis
            .run("limiter", self.timeout, |mut conn| async move {
                cmd.query_async::<Option<String>>(&mut conn).await
            })
            .await
            .map(|set| set.is_some())
            .map_err(Self::error)
    }
}

#[cfg(test)]
mod tests {
    use super::gcra::check;

    /// A flood of distinct client-chosen keys (say, emails on a login form
    /// limited per account) within one window: the in-memory limiter stays
    /// under its cap, and the key the flood targets keeps its debt.
    #[test]
    fn rate_limit_key_flood_stays_bounded() {
        use super::*;
        let limiter = MemoryLimiter::default();
        let quota = Quota {
            count: 5,
            period: Duration::from_secs(3600),
        };
        let bucket = |key: String| Bucket { key, quota };
        let now = 1_000_000_000_000u64;
        // The victim's account is locked out: 5 attempts used.
        let victim = bucket("login:acct:victim@example.com".into());
        for _ in 0..5 {
            assert!(limiter.check(std::slice::from_ref(&victim), now)[0].allowed);
        }
        assert!(!limiter.check(std::slice::from_ref(&victim), now)[0].allowed);
        let n = SHARDS * MAX_PER_SHARD * 2;
        for i in 0..n {
            limiter.check(&[bucket(format!("login:acct:{i}@example.com"))], now + 1);
        }
        let held: usize = limiter.tats.iter().map(|s| lock(s).len()).sum();
        eprintln!(
            "{n} distinct keys → {held} held (cap {})",
            SHARDS * MAX_PER_SHARD
        );
        assert!(held <= SHARDS * MAX_PER_SHARD);
        assert!(
            !limiter.check(std::slice::from_ref(&victim), now + 2)[0].allowed,
            "the flood did not reset the victim's limit"
        );
    }

    fn addr(ip: std::net::IpAddr) -> String {
        let mut out = String::new();
        super::push_addr(&mut out, ip);
        out
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        let a = addr("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = addr("2001:db8:1:2:bbbb::2".parse().unwrap());
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_ne!(a, addr("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(addr("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(addr("192.0.2.1".parse().unwrap()), "192.0.2.1");
    }

    /// Backend keys are persistent state (Redis keeps them across deploys),
    /// so their text is pinned: a change would silently reset every window.
    #[test]
    fn backend_key_format_is_stable() {
        use super::*;
        let viewer = Viewer::new(
            42,
            Arc::from(Vec::new()),
            SystemTime::now(),
            SystemTime::now(),
        );
        let headers = HeaderMap::new();
        let req = |session, viewer| KeyRequest {
            ip: "192.0.2.7".parse().unwrap(),
            session,
            viewer,
            headers: &headers,
        };
        let limits = [
            per_ip(1).per_minute(),
            per_user(1).per_minute(),
            global(1).per_minute(),
            per_session(1).per_minute(),
            per_key("api_key", 1, |_| Some("k1".into())).per_minute(),
        ];
        let keys = request_keys("a.b", "r", &limits, &req(Some("sid"), Some(&viewer))).unwrap();
        assert_eq!(keys[0], "a.b:r0:ip:a:192.0.2.7");
        assert_eq!(keys[1], "a.b:r1:user:u:42");
        assert_eq!(keys[2], "a.b:r2:global:g");
        assert_eq!(keys[3], format!("a.b:r3:session:s:{}", hashed("sid")));
        assert_eq!(keys[4], format!("a.b:r4:api_key:k:{}", hashed("k1")));
        // Without a session or viewer, those fall back to the address.
        let anon = request_keys("a.b", "q", &limits, &req(None, None)).unwrap();
        assert_eq!(anon[1], "a.b:q1:user:a:192.0.2.7");
        assert_eq!(anon[3], "a.b:q3:session:a:192.0.2.7");
    }

    #[test]
    fn policy_header_is_built_once_per_limit() {
        use super::*;
        let limit = per_ip(5).per_minute();
        let d = gcra::Decision {
            allowed: true,
            remaining: 3,
            reset_us: 12_000_001,
            retry_after_us: 0,
            new_tat: 0,
        };
        let h = headers(&limit, &d);
        assert_eq!(h[0].0, "ratelimit-policy");
        assert_eq!(h[0].1, "\"ip\";q=5;w=60");
        assert_eq!(h[1].0, "ratelimit");
        assert_eq!(h[1].1, "\"ip\";r=3;t=13");
    }

    const S: u64 = 1_000_000;

    /// Conformance table: 5 per 5 s (burst 5, one token per second).
    #[test]
    fn gcra_conformance() {
        let (count, period) = (5, 5 * S);
        let mut tat = 0;
        let t0 = 1_000 * S;
        // (offset µs, allowed, remaining, retry_after_s ceil)
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
            assert_eq!(d.retry_after_us.div_ceil(S), *retry, "step {i}");
            tat = d.new_tat;
        }
    }
}
