//! What a limited response says: the IETF `RateLimit-Policy` / `RateLimit`
//! headers of the tightest limit (draft-ietf-httpapi-ratelimit-headers,
//! structured-field form), the 429 `rate_limited` with `Retry-After` in
//! seconds, and the 503 `limiter_unavailable` of a store that did not
//! answer. Pure: numbers in, headers and rejections out.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::Limit;
use crate::error::{ErrorCode, Rejection};
use crate::store::{Decision, StoreError};

/// The `RateLimit-Policy` and `RateLimit` headers for the tightest limit.
pub(super) fn headers(limit: &Limit, d: &Decision) -> Vec<(HeaderName, HeaderValue)> {
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

pub(super) fn human(d: Duration) -> String {
    let s = d.as_secs().max(1);
    match s {
        0..=119 => format!("{s} seconds"),
        120..=7199 => format!("{} minutes", s.div_ceil(60)),
        _ => format!("{} hours", s.div_ceil(3600)),
    }
}

pub(super) fn unavailable(e: StoreError, fail_open: bool) -> Result<(), Rejection> {
    if fail_open {
        tracing::debug!(error = %e, "limiter unavailable; action is fail-open, allowing");
        return Ok(());
    }
    let r = Rejection::new(ErrorCode::LimiterUnavailable);
    // The outage itself is logged once (down/summary/up) by the connection.
    tracing::debug!(digest = %r.digest, error = %e, "limiter unavailable; failing closed");
    Err(r.header(http::header::RETRY_AFTER, HeaderValue::from_static("1")))
}

pub(super) fn too_many(retry_after_us: u64, headers: Vec<(HeaderName, HeaderValue)>) -> Rejection {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::per_ip;

    #[test]
    fn policy_header_is_built_once_per_limit() {
        let limit = per_ip(5).per_minute();
        let d = Decision {
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
}
