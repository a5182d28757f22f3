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
//! `ip` (trusted-proxy aware, see [`crate::security::TrustedProxies`]),
//! `session`, `user`, `global`, or [`per_key`]: a function of the
//! [`KeyRequest`] (address, session, viewer, headers). The body is not read
//! at stage 4, so a limit on something the client *submits* — "5 login
//! attempts per account per minute" — cannot be a stage-4 limit. It is a
//! second kind, [`per_input`], given with `.limit_input(..)` and checked in
//! stage 6 right after the input is decoded and validated, before the bot
//! check and the handler. Its cost is that a refused request has had its
//! (capped) body read; its gain is that it keys on the typed, validated
//! value, not on a guess at the raw body.
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
//! in-memory backend and the Redis script (same formula, Lua numbers are
//! doubles: integers are exact below 2^53 µs ≈ 285 years) agree exactly. It is
//! written by hand rather than taken from `governor` because governor keeps its
//! state private and cannot share one definition with a Lua script; the
//! algorithm itself is ten lines. It is part of the store contract, so it
//! lives in [`crate::store::gcra`] (re-exported here); the counters
//! themselves are a [`CounterStore`] ([`crate::store::counter`]).
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
//! The Redis backend ([`crate::store::RedisCounters`]) runs on the app's one
//! shared connection ([`crate::store::Redis`]), which owns reconnection and
//! the outage log.
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
//!
//! # Files
//! This module is pure: it decides *what* to count and what to answer, and
//! never talks to a backend itself (the counting is a [`CounterStore`] in
//! [`crate::store`], memory or Redis or the app's own).
//! * `mod.rs`: limits as data ([`Limit`], [`Rate`], `per_*`, quotas);
//! * `keys.rs`: the backend key of each limit (hashing, IPv6 /64);
//! * `headers.rs`: `RateLimit` headers and the 429 / 503 refusals;
//! * `limiter.rs`: [`Limiter`], which asks the store and picks the tightest
//!   limit to report.
//!
//! Input limits read the handler's input type, which this module does not
//! know: [`per_input`] takes a typed key function, and the action builder
//! (which knows the input is a `Valid<I>`) erases it (`InputLimit::erase`),
//! so `ratelimit` does not depend on validation.

mod headers;
mod keys;
mod limiter;

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::Serialize;

pub use self::keys::KeyRequest;
pub(crate) use self::keys::{KeyFn, input_keys, request_keys};
pub use self::limiter::Limiter;
pub use crate::store::counter::{Bucket, CounterStore, Quota, QuotaDecision};
pub use crate::store::{gcra, window};

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
    pub(crate) fn label(self) -> &'static str {
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

/// One limit on an action.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Limit {
    /// What the limit counts by.
    pub key: KeyKind,
    /// How many calls per how long.
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
    /// `count` calls per `period` (at least 1 ms), with bursts up to
    /// `count`; a count of 0 counts as 1.
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
    /// `count` per second ([`Rate::per`]).
    pub fn per_second(self) -> Limit {
        self.per(Duration::from_secs(1))
    }
    /// `count` per minute ([`Rate::per`]).
    pub fn per_minute(self) -> Limit {
        self.per(Duration::from_secs(60))
    }
    /// `count` per hour ([`Rate::per`]).
    pub fn per_hour(self) -> Limit {
        self.per(Duration::from_secs(3600))
    }
    /// `count` per day ([`Rate::per`]).
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

/// A limit per client address (behind trusted proxies, the forwarded one):
/// `per_ip(5).per_minute()`.
pub fn per_ip(count: u32) -> Rate {
    rate(KeyKind::Ip, count)
}
/// A limit per session; before a session exists, per client address.
pub fn per_session(count: u32) -> Rate {
    rate(KeyKind::Session, count)
}
/// A limit per signed-in user, across their sessions and addresses;
/// anonymous calls count per client address.
pub fn per_user(count: u32) -> Rate {
    rate(KeyKind::User, count)
}
/// One budget shared by every caller: a ceiling on the action as a whole,
/// which one client can exhaust for everyone (pair it with a per-client
/// limit).
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
    InputRate {
        rate: rate(KeyKind::Input(name), count),
        key: Arc::new(key),
        with_address: false,
    }
}

/// An input limit's key function, typed on the input.
type TypedKeyFn<I> = Arc<dyn Fn(&I) -> Option<String> + Send + Sync>;

/// Half-built input limit: `per_input(..).per_minute()`.
pub struct InputRate<I> {
    rate: Rate,
    key: TypedKeyFn<I>,
    with_address: bool,
}

/// A limit over an action's decoded input `I` (stage 6).
pub struct InputLimit<I> {
    limit: Limit,
    key: TypedKeyFn<I>,
    with_address: bool,
}

impl<I: 'static> InputLimit<I> {
    /// The limit with its key function over the pipeline's type-erased
    /// input: `read` finds the `I` in it (the action builder passes a
    /// downcast to `Valid<I>`; this module does not know that type).
    pub(crate) fn erase(self, read: fn(&(dyn Any + Send)) -> Option<&I>) -> Limit {
        let key = self.key;
        let f = move |any: &(dyn Any + Send)| read(any).and_then(|input| key(input));
        let mut limit = self.limit;
        limit.key_fn = Some(KeyFn::Input {
            type_id: TypeId::of::<I>(),
            type_name: std::any::type_name::<I>(),
            f: Arc::new(f),
            with_address: self.with_address,
        });
        limit
    }
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
        self.with_address = true;
        self
    }

    /// `count` calls per `period` (at least 1 ms), with bursts up to
    /// `count`; a count of 0 counts as 1.
    pub fn per(self, period: Duration) -> InputLimit<I> {
        InputLimit {
            limit: self.rate.per(period),
            key: self.key,
            with_address: self.with_address,
        }
    }
    /// `count` per second ([`InputRate::per`]).
    pub fn per_second(self) -> InputLimit<I> {
        self.per(Duration::from_secs(1))
    }
    /// `count` per minute ([`InputRate::per`]).
    pub fn per_minute(self) -> InputLimit<I> {
        self.per(Duration::from_secs(60))
    }
    /// `count` per hour ([`InputRate::per`]).
    pub fn per_hour(self) -> InputLimit<I> {
        self.per(Duration::from_secs(3600))
    }
    /// `count` per day ([`InputRate::per`]).
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
    /// The name the handler reads it by (`cx.quota(name)`).
    pub name: &'static str,
    /// The count, window and key; the window is fixed and epoch-aligned.
    #[serde(flatten)]
    pub limit: Limit,
}

/// What is left of a quota after this request was charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaState {
    /// Calls allowed per window.
    pub limit: u32,
    /// Calls still allowed in this window.
    pub remaining: u32,
    /// Time until the window ends and the count starts over (serialized in
    /// whole seconds).
    #[serde(serialize_with = "secs")]
    pub resets_in: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}
