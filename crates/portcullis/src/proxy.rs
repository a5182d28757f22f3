//! Trusted proxies: what a request says about where it came from is believed
//! only when the TCP peer is inside a configured CIDR.
//!
//! `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto` and `Forwarded`
//! are plain request headers that any client can send. From an untrusted peer
//! they are ignored entirely, so a spoofed header changes neither the origin
//! comparison (stage 2) nor the rate-limit key (stage 4).

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// Errors in the trusted-proxy list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyConfigError {
    #[error("`{0}` is not an IP address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1)")]
    NotCidr(String),
}

/// The CIDRs whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses entries such as `10.0.0.0/8` or a bare address `127.0.0.1`.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, ProxyConfigError> {
        let mut nets = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ProxyConfigError::NotCidr(entry.to_owned()))?;
            nets.push(net);
        }
        Ok(TrustedProxies { nets })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the TCP peer, unless the peer is a trusted proxy, in
    /// which case the right-most address in `X-Forwarded-For` (or `Forwarded:
    /// for=`) that is *not* itself a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            if let Ok(text) = value.to_str() {
                hops.extend(text.split(',').filter_map(|h| parse_addr(h.trim())));
            }
        }
        if hops.is_empty() {
            for (key, val) in forwarded_pairs(headers) {
                if key.eq_ignore_ascii_case("for")
                    && let Some(ip) = parse_addr(val)
                {
                    hops.push(ip);
                }
            }
        }
        hops.iter()
            .rev()
            .copied()
            .map(canonical)
            .find(|ip| !self.contains(*ip))
            .unwrap_or(peer)
    }

    /// The host the client asked for, as told by a trusted proxy.
    pub fn forwarded_host<'h>(&self, peer: IpAddr, headers: &'h HeaderMap) -> Option<&'h str> {
        if !self.contains(peer) {
            return None;
        }
        last_list_value(headers, "x-forwarded-host").or_else(|| last_forwarded(headers, "host"))
    }

    /// The scheme the client used, as told by a trusted proxy.
    pub fn forwarded_proto<'h>(&self, peer: IpAddr, headers: &'h HeaderMap) -> Option<&'h str> {
        if !self.contains(peer) {
            return None;
        }
        last_list_value(headers, "x-forwarded-proto").or_else(|| last_forwarded(headers, "proto"))
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) compares as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[::1]`, `[::1]:443`, `"[::1]:443"`.
fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    text.rsplit_once(':')?.0.parse().ok()
}

/// The right-most element of a comma-separated header (the value added by the
/// proxy nearest to us).
fn last_list_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty())
}

fn forwarded_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .flat_map(|element| element.split(';'))
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim(), v.trim().trim_matches('"')))
        })
}

fn last_forwarded<'h>(headers: &'h HeaderMap, key: &str) -> Option<&'h str> {
    forwarded_pairs(headers)
        .filter(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
        .last()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn spoofed_xff_from_untrusted_peer_is_ignored() {
        let tp = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-host", "evil.example"),
        ]);
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(tp.client_ip(peer, &h), peer);
        assert_eq!(tp.forwarded_host(peer, &h), None);
    }

    #[test]
    fn right_most_untrusted_hop_is_the_client() {
        let tp = TrustedProxies::parse(["10.0.0.0/8", "127.0.0.1"]).unwrap();
        // The client prepended a fake hop; our proxies appended the real one.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")]);
        let got = tp.client_ip("127.0.0.1".parse().unwrap(), &h);
        assert_eq!(got, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_header_is_understood() {
        let tp = TrustedProxies::parse(["127.0.0.1"]).unwrap();
        let h = headers(&[(
            "forwarded",
            "for=\"[2001:db8::1]:4711\";proto=https;host=app.example.com",
        )]);
        let peer = "127.0.0.1".parse().unwrap();
        assert_eq!(
            tp.client_ip(peer, &h),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(tp.forwarded_host(peer, &h), Some("app.example.com"));
        assert_eq!(tp.forwarded_proto(peer, &h), Some("https"));
    }

    #[test]
    fn bad_cidr_is_refused() {
        assert_eq!(
            TrustedProxies::parse(["10.0.0.0/33"]).unwrap_err(),
            ProxyConfigError::NotCidr("10.0.0.0/33".into())
        );
    }
}
