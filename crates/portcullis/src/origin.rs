//! Stage 2: cross-origin rejection, decided from headers alone, before any
//! byte of the body is read.
//!
//! Semantics follow Go 1.25 `net/http.CrossOriginProtection`:
//!
//! 1. `GET`, `HEAD`, `OPTIONS` are never checked (and never run actions).
//! 2. `Sec-Fetch-Site: same-origin` or `none` → allowed.
//!    Any other value (`cross-site`, `same-site`) → refused unless `Origin` is
//!    in the allowlist.
//! 3. Without `Sec-Fetch-Site`: no `Origin` either → allowed (a non-browser
//!    client; no ambient credentials are at risk) unless *strict* mode is on.
//!    An `Origin` equal to the request's own origin → allowed; one in the
//!    allowlist → allowed; anything else → refused.
//!
//! Two deliberate differences from Go, both stricter or more precise:
//! * the allowlist takes host wildcards (`https://*.example.com` = exactly one
//!   label, `https://**.example.com` = any depth), validated at start-up;
//! * the request's own origin is the `Host` header, or `X-Forwarded-Host` /
//!   `Forwarded: host=` when — and only when — the TCP peer is a trusted proxy;
//!   when a trusted proxy also tells the scheme, the scheme is compared too.
//!   Without a trusted scheme, only host:port is compared (as Go does; HSTS
//!   covers the http→https downgrade case).

use std::net::IpAddr;

use http::{HeaderMap, Method};
use serde::Serialize;

use crate::error::{ErrorCode, Rejection};
use crate::proxy::TrustedProxies;

/// A route that accepts cross-origin requests, and the authenticator that
/// makes that safe (listed in the manifest; `portcullis audit` reviews it).
#[derive(Clone, Debug, Serialize)]
pub struct CrossOriginRoute {
    /// The route's path (or a description, such as the API router's).
    pub path: String,
    /// The HTTP method, or `*` for all.
    pub method: &'static str,
    /// What authenticates a request instead of its origin, e.g.
    /// `bearer-token` or `webhook-hmac-sha256`.
    pub authenticator: &'static str,
}

/// Errors in the origin allowlist, reported at start-up.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllowlistError {
    /// The entry `null`: sandboxed frames and `file:` pages all send it, so
    /// trusting it trusts anyone.
    #[error("allowed origin `null` can never be trusted")]
    Null,
    /// Not a bare origin (the entry as given).
    #[error("allowed origin `{0}`: expected scheme://host[:port] with no path, query or user info")]
    Malformed(String),
    /// A `*` anywhere but a whole left-most label, or a wildcard over
    /// fewer than two labels (`*.com`); the entry as given.
    #[error(
        "allowed origin `{0}`: a wildcard must be the whole left-most label (`*.` or `**.`) of a host with at least two more labels"
    )]
    BadWildcard(String),
}

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OriginPattern {
    /// `https://app.example.com[:port]`
    Exact {
        /// Lower-case scheme, e.g. `https`.
        scheme: String,
        /// Lower-case host and port, the scheme's default port removed.
        host: String,
    },
    /// `https://*.example.com` (`any_depth == false`) or `https://**.example.com`.
    Wildcard {
        /// Lower-case scheme, e.g. `https`.
        scheme: String,
        /// `.example.com[:port]`, lower-case, including the leading dot.
        suffix: String,
        /// `**.`: any number of labels may precede the suffix; `*.`: one.
        any_depth: bool,
    },
}

impl OriginPattern {
    /// Parses one entry: `scheme://host[:port]`, optionally with a `*.` or
    /// `**.` left-most label; `null`, paths and partial wildcards are
    /// refused.
    pub fn parse(entry: &str) -> Result<Self, AllowlistError> {
        let entry = entry.trim();
        if entry.eq_ignore_ascii_case("null") {
            return Err(AllowlistError::Null);
        }
        let malformed = || AllowlistError::Malformed(entry.to_owned());
        let parts = split_origin(entry).ok_or_else(malformed)?;
        let scheme = parts.scheme.to_ascii_lowercase();
        let host = parts.host.to_ascii_lowercase();
        if let Some(rest) = host.strip_prefix("**.").or_else(|| host.strip_prefix("*.")) {
            let any_depth = host.starts_with("**.");
            let hostname = rest.split(':').next().unwrap_or_default();
            if rest.contains('*') || hostname.split('.').count() < 2 {
                return Err(AllowlistError::BadWildcard(entry.to_owned()));
            }
            return Ok(OriginPattern::Wildcard {
                scheme,
                suffix: format!(".{rest}"),
                any_depth,
            });
        }
        if host.contains('*') {
            return Err(AllowlistError::BadWildcard(entry.to_owned()));
        }
        Ok(OriginPattern::Exact { scheme, host })
    }

    fn matches(&self, origin: Parts<'_>) -> bool {
        match self {
            OriginPattern::Exact { scheme, host } => {
                origin.scheme.eq_ignore_ascii_case(scheme) && origin.host.eq_ignore_ascii_case(host)
            }
            OriginPattern::Wildcard {
                scheme,
                suffix,
                any_depth,
            } => {
                if !origin.scheme.eq_ignore_ascii_case(scheme) {
                    return false;
                }
                // `split_origin` admits ASCII only, so byte offsets are
                // character boundaries.
                let Some(split) = origin.host.len().checked_sub(suffix.len()) else {
                    return false;
                };
                let (label, tail) = origin.host.split_at(split);
                tail.eq_ignore_ascii_case(suffix)
                    && !label.is_empty()
                    && (*any_depth || !label.contains('.'))
            }
        }
    }
}

/// A validated `scheme://host[:port]`, borrowed from the header it came
/// from: the check runs on every unsafe request, so it compares in place
/// (ASCII case-insensitively) instead of lower-casing into new strings.
#[derive(Clone, Copy, Debug)]
struct Parts<'a> {
    scheme: &'a str,
    /// Host and port, the scheme's default port removed.
    host: &'a str,
}

impl Parts<'_> {
    fn same_host(&self, other: &Parts<'_>) -> bool {
        self.host.eq_ignore_ascii_case(other.host)
    }
}

/// Splits and validates `scheme://host[:port]`; `None` if anything else is there.
fn split_origin(text: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return None;
    }
    with_scheme(scheme, rest)
}

/// Validates `host[:port]` as it would appear after `scheme://`.
fn with_scheme<'a>(scheme: &'a str, rest: &'a str) -> Option<Parts<'a>> {
    let host_ok = !rest.is_empty()
        && !rest.starts_with(':')
        && rest.bytes().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b':' | b'[' | b']' | b'*')
        });
    if !host_ok {
        return None;
    }
    if let Some((_, port)) = rest.rsplit_once(':')
        && !rest.ends_with(']')
        && (port.is_empty() || !port.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let mut host = rest;
    // Origins never carry the default port; normalise entries the same way.
    for (s, default) in [("http", ":80"), ("https", ":443")] {
        if scheme.eq_ignore_ascii_case(s) && host.ends_with(default) {
            host = &host[..host.len() - default.len()];
        }
    }
    Some(Parts { scheme, host })
}

/// The configured origin policy.
#[derive(Clone, Debug, Default)]
pub struct OriginPolicy {
    allowlist: Vec<OriginPattern>,
    /// Refuse requests carrying neither `Sec-Fetch-Site` nor `Origin`.
    strict: bool,
}

impl OriginPolicy {
    /// Same-origin requests plus `allowlist` (blank entries ignored);
    /// `strict` refuses unsafe requests carrying neither `Sec-Fetch-Site`
    /// nor `Origin`.
    pub fn new<'a>(
        allowlist: impl IntoIterator<Item = &'a str>,
        strict: bool,
    ) -> Result<Self, AllowlistError> {
        let allowlist = allowlist
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .map(OriginPattern::parse)
            .collect::<Result<_, _>>()?;
        Ok(OriginPolicy { allowlist, strict })
    }

    fn allowlisted(&self, origin: Option<&str>) -> bool {
        let Some(parts) = origin.and_then(split_origin) else {
            return false;
        };
        self.allowlist.iter().any(|p| p.matches(parts))
    }

    /// Decides from method and headers alone.
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        peer: IpAddr,
        proxies: &TrustedProxies,
    ) -> Result<(), Rejection> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return Ok(());
        }
        let origin = headers
            .get(http::header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("\u{0}invalid"));
        match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
            Some(b"same-origin" | b"none") => return Ok(()),
            Some(_) => {
                return if self.allowlisted(origin) {
                    Ok(())
                } else {
                    Err(refuse())
                };
            }
            None => {}
        }
        let Some(origin) = origin else {
            return if self.strict { Err(refuse()) } else { Ok(()) };
        };
        if self.is_own_origin(origin, headers, peer, proxies) || self.allowlisted(Some(origin)) {
            Ok(())
        } else {
            Err(refuse())
        }
    }

    fn is_own_origin(
        &self,
        origin: &str,
        headers: &HeaderMap,
        peer: IpAddr,
        proxies: &TrustedProxies,
    ) -> bool {
        let Some(origin) = split_origin(origin) else {
            return false;
        };
        // The app is served over HTTP or HTTPS, whatever host it has: an
        // `ftp://` or `javascript://` origin naming our host is not us.
        if !origin.scheme.eq_ignore_ascii_case("http")
            && !origin.scheme.eq_ignore_ascii_case("https")
        {
            return false;
        }
        let own_host = proxies.forwarded_host(peer, headers).or_else(|| {
            headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let Some(own_host) = own_host else {
            return false;
        };
        let own_scheme = proxies.forwarded_proto(peer, headers);
        // The default port is dropped by the scheme the request was made
        // with: the trusted one, else the one the Origin claims.
        let Some(own) = with_scheme(own_scheme.unwrap_or(origin.scheme), own_host) else {
            return false;
        };
        own.same_host(&origin) && own_scheme.is_none_or(|s| s.eq_ignore_ascii_case(origin.scheme))
    }
}

fn refuse() -> Rejection {
    Rejection::new(ErrorCode::CrossOriginRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, v.parse().unwrap());
        }
        m
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));

    fn check(policy: &OriginPolicy, pairs: &[(&'static str, &'static str)]) -> bool {
        policy
            .check(&Method::POST, &h(pairs), PEER, &TrustedProxies::none())
            .is_ok()
    }

    /// Outside review: `Origin: ftp://<our host>` passed as our own origin
    /// when no trusted proxy named the scheme.
    #[test]
    fn own_host_under_another_scheme_than_http_is_not_own_origin() {
        let p = OriginPolicy::new([], false).unwrap();
        let host = ("host", "app.example:3000");
        for foreign in ["ftp://app.example:3000", "javascript://app.example:3000"] {
            assert!(!check(&p, &[host, ("origin", foreign)]), "{foreign}");
        }
        for own in ["http://app.example:3000", "https://app.example:3000"] {
            assert!(check(&p, &[host, ("origin", own)]), "{own}");
        }
    }

    #[test]
    fn go_semantics_table() {
        let p = OriginPolicy::new(["https://partner.example"], false).unwrap();
        let host = ("host", "app.example:3000");
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[host, ("sec-fetch-site", "same-origin")], true),
            (&[host, ("sec-fetch-site", "none")], true),
            (&[host, ("sec-fetch-site", "cross-site")], false),
            (&[host, ("sec-fetch-site", "same-site")], false),
            (
                &[
                    host,
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://partner.example"),
                ],
                true,
            ),
            (
                &[
                    host,
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://evil.example"),
                ],
                false,
            ),
            // Sec-Fetch-Site wins over a matching Origin.
            (
                &[
                    host,
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "http://app.example:3000"),
                ],
                false,
            ),
            (&[host], true),
            (&[host, ("origin", "http://app.example:3000")], true),
            (&[host, ("origin", "http://evil.example")], false),
            (&[host, ("origin", "null")], false),
            (&[host, ("origin", "https://partner.example")], true),
            (&[host, ("sec-fetch-site", "garbage")], false),
        ];
        for (headers, want) in cases {
            let mut m = HeaderMap::new();
            for (k, v) in *headers {
                m.append(*k, v.parse().unwrap());
            }
            let got = p
                .check(&Method::POST, &m, PEER, &TrustedProxies::none())
                .is_ok();
            assert_eq!(got, *want, "{headers:?}");
        }
    }

    #[test]
    fn safe_methods_are_never_checked() {
        let p = OriginPolicy::default();
        let m = h(&[("sec-fetch-site", "cross-site")]);
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(p.check(&method, &m, PEER, &TrustedProxies::none()).is_ok());
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(p.check(&method, &m, PEER, &TrustedProxies::none()).is_err());
        }
    }

    #[test]
    fn strict_mode_refuses_headerless_requests() {
        let p = OriginPolicy::new([], true).unwrap();
        assert!(!check(&p, &[("host", "a.example")]));
    }

    #[test]
    fn forged_forwarded_host_from_untrusted_peer_is_ignored() {
        let p = OriginPolicy::default();
        let headers = h(&[
            ("host", "app.example"),
            ("origin", "https://evil.example"),
            ("x-forwarded-host", "evil.example"),
        ]);
        let trusted_elsewhere = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        assert!(
            p.check(&Method::POST, &headers, PEER, &trusted_elsewhere)
                .is_err()
        );
        // The same header from a trusted proxy is believed.
        let trusted = TrustedProxies::parse(["127.0.0.1/32"]).unwrap();
        assert!(p.check(&Method::POST, &headers, PEER, &trusted).is_ok());
    }

    #[test]
    fn trusted_proto_is_compared() {
        let p = OriginPolicy::default();
        let trusted = TrustedProxies::parse(["127.0.0.1"]).unwrap();
        let https = h(&[
            ("host", "internal:8080"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-proto", "https"),
            ("origin", "http://app.example"),
        ]);
        assert!(p.check(&Method::POST, &https, PEER, &trusted).is_err());
        let ok = h(&[
            ("host", "internal:8080"),
            ("x-forwarded-host", "app.example"),
            ("x-forwarded-proto", "https"),
            ("origin", "https://app.example"),
        ]);
        assert!(p.check(&Method::POST, &ok, PEER, &trusted).is_ok());
    }

    #[test]
    fn wildcards() {
        let one = OriginPattern::parse("https://*.example.com").unwrap();
        let any = OriginPattern::parse("https://**.example.com").unwrap();
        let matches = |p: &OriginPattern, scheme, host| p.matches(Parts { scheme, host });
        for (pattern, scheme, host, expected) in [
            (&one, "https", "a.example.com", true),
            (&one, "https", "a.b.example.com", false),
            (&one, "https", "example.com", false),
            (&one, "http", "a.example.com", false),
            (&one, "https", "evilexample.com", false),
            (&any, "https", "a.b.c.example.com", true),
            (&any, "https", "example.com", false),
            (&any, "https", "a.example.com.evil.net", false),
            // Compared in place, ASCII case-insensitively (origins are lower
            // case from browsers, but Host headers and allowlists need not be).
            (&one, "HTTPS", "A.Example.COM", true),
        ] {
            assert_eq!(
                matches(pattern, scheme, host),
                expected,
                "{scheme}://{host}"
            );
        }
        let exact = OriginPattern::parse("https://App.Example").unwrap();
        assert!(matches(&exact, "https", "app.example"));
    }

    #[test]
    fn own_origin_compares_case_insensitively_and_without_default_port() {
        let p = OriginPolicy::default();
        for (host, origin, same) in [
            ("App.Example", "https://app.example", true),
            ("app.example:443", "https://app.example", true),
            ("app.example:80", "http://app.example", true),
            ("app.example:8443", "https://app.example", false),
            ("app.example", "https://app.example.evil", false),
            ("app.example", "HTTPS://APP.EXAMPLE", true),
        ] {
            let headers = h(&[("host", host), ("origin", origin)]);
            assert_eq!(
                p.check(&Method::POST, &headers, PEER, &TrustedProxies::none())
                    .is_ok(),
                same,
                "{host} vs {origin}"
            );
        }
    }

    #[test]
    fn bad_allowlist_entries_fail_at_start_up() {
        for bad in [
            "null",
            "https://example.com/path",
            "https://example.com/",
            "example.com",
            "https://user@example.com",
            "https://example.com?x",
            "https://a.*.example.com",
            "https://*.com",
            "https://*",
            "*",
            "https://example.com:port",
        ] {
            assert!(
                OriginPattern::parse(bad).is_err(),
                "{bad} should be refused"
            );
        }
        assert_eq!(
            OriginPattern::parse("HTTPS://App.Example.com:443").unwrap(),
            OriginPattern::Exact {
                scheme: "https".into(),
                host: "app.example.com".into()
            }
        );
    }
}
