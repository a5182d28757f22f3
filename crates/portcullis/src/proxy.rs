//! Trusted proxies: what a request says about where it came from is believed
//! only when the TCP peer is inside a configured CIDR.
//!
//! `X-Forwarded-For`, `X-Forwarded-Host`, `X-Forwarded-Proto` and `Forwarded`
//! are plain request headers that any client can send. From an untrusted peer
//! they are ignored entirely, so a spoofed header changes neither the origin
//! comparison (stage 2) nor the rate-limit key (stage 4).
//!
//! # Which header, how many hops: explicit
//! A deployment's proxy writes *one* of these headers; the others are
//! whatever the client sent, passed through. So the source is configured,
//! never guessed ([`ClientIpHeader`]: `X-Forwarded-For` by default,
//! `Forwarded` (RFC 7239), `X-Real-IP`, or none), as axum-client-ip's
//! `ClientIpSource` and actix-web's `ConnectionInfo` docs insist: reading
//! `X-Forwarded-For` when the proxy writes `Forwarded` lets a client choose
//! its own address. Forwarded host and scheme come from the same family
//! (`Forwarded: host=/proto=`, else `X-Forwarded-Host`/`-Proto`).
//!
//! The client is found by walking the chosen header's list from the right
//! (the hop our proxy appended): either skipping hops inside the trusted
//! CIDRs (the default), or taking exactly the `hops`-th entry from the right
//! ([`TrustedProxies::with_hops`], for proxies whose addresses are not
//! known in advance). An entry that does not parse as an address
//! (`unknown`, an obfuscated `_id`, garbage) ends the walk and the *peer*
//! address is used: an unreadable hop is never skipped, because what lies
//! left of it is the client's own writing.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// Errors in the trusted-proxy list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyConfigError {
    /// An entry that is neither an address nor a CIDR (the entry as given).
    #[error("`{0}` is not an IP address or CIDR (e.g. 10.0.0.0/8, 127.0.0.1)")]
    NotCidr(String),
}

/// The header a trusted proxy writes the client address into.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientIpHeader {
    /// Only the TCP peer: forwarding headers are ignored entirely.
    None,
    /// RFC 7239 `Forwarded: for=…` (and `host=`, `proto=`).
    Forwarded,
    /// `X-Forwarded-For` (and `X-Forwarded-Host`, `X-Forwarded-Proto`).
    #[default]
    XForwardedFor,
    /// `X-Real-IP`, a single address (host and scheme from
    /// `X-Forwarded-Host`/`-Proto`).
    XRealIp,
}

impl ClientIpHeader {
    /// `forwarded`, `x-forwarded-for`, `x-real-ip` or `none`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "peer" => Some(ClientIpHeader::None),
            "forwarded" => Some(ClientIpHeader::Forwarded),
            "x-forwarded-for" => Some(ClientIpHeader::XForwardedFor),
            "x-real-ip" => Some(ClientIpHeader::XRealIp),
            _ => None,
        }
    }
}

/// The CIDRs whose forwarding headers are believed, which header they
/// write, and how many hops to walk.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ClientIpHeader,
    /// `Some(n)`: the client is the n-th entry from the right.
    hops: Option<usize>,
}

impl TrustedProxies {
    /// Trusts nobody: the TCP peer is the client, forwarding headers are
    /// ignored (the default).
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
        Ok(TrustedProxies {
            nets,
            ..TrustedProxies::default()
        })
    }

    /// Reads the client address (and forwarded host/scheme) from `header`.
    pub fn with_header(mut self, header: ClientIpHeader) -> Self {
        self.header = header;
        self
    }

    /// Takes the client as the `hops`-th address from the right of the
    /// header's list (1: the right-most, appended by the one proxy in front
    /// of us) instead of skipping trusted CIDRs. `0` means the default walk.
    pub fn with_hops(mut self, hops: usize) -> Self {
        self.hops = (hops > 0).then_some(hops);
        self
    }

    /// The configured header.
    pub fn header(&self) -> ClientIpHeader {
        self.header
    }

    /// No proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` (IPv4-mapped IPv6 as IPv4) is in a trusted CIDR.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the TCP peer, unless the peer is a trusted proxy,
    /// in which case the address the configured header names (see the module
    /// docs: right-most untrusted hop, or the configured hop count; an
    /// unreadable hop falls back to the peer).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        // `None` marks an entry that is present but unreadable.
        let hops: Vec<Option<IpAddr>> = match self.header {
            ClientIpHeader::None => return peer,
            ClientIpHeader::XRealIp => {
                let mut values = headers.get_all("x-real-ip").iter();
                match (values.next(), values.next()) {
                    (Some(v), None) => vec![v.to_str().ok().and_then(|t| parse_addr(t.trim()))],
                    // Absent, or sent twice (which one did our proxy write?).
                    _ => return peer,
                }
            }
            ClientIpHeader::XForwardedFor => headers
                .get_all("x-forwarded-for")
                .iter()
                .flat_map(|v| match v.to_str() {
                    Ok(text) => text.split(',').map(|h| parse_addr(h.trim())).collect(),
                    Err(_) => vec![None],
                })
                .collect(),
            ClientIpHeader::Forwarded => forwarded_elements(headers)
                .map(|element| {
                    element
                        .split(';')
                        .filter_map(|pair| pair.split_once('='))
                        .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                        .and_then(|(_, v)| parse_addr(v.trim()))
                })
                .collect(),
        };
        let from_right = hops.iter().rev().map(|h| h.map(canonical));
        match self.hops {
            Some(n) => {
                // Every entry up to the n-th from the right must be readable.
                let mut found = None;
                for (i, hop) in from_right.enumerate().take(n) {
                    match hop {
                        None => return peer,
                        Some(ip) if i + 1 == n => found = Some(ip),
                        Some(_) => {}
                    }
                }
                found.unwrap_or(peer)
            }
            None => {
                for hop in from_right {
                    match hop {
                        None => return peer,
                        Some(ip) if self.contains(ip) => continue,
                        Some(ip) => return ip,
                    }
                }
                peer
            }
        }
    }

    /// The host the client asked for, as told by a trusted proxy.
    pub fn forwarded_host<'h>(&self, peer: IpAddr, headers: &'h HeaderMap) -> Option<&'h str> {
        if !self.contains(peer) {
            return None;
        }
        match self.header {
            ClientIpHeader::None => None,
            ClientIpHeader::Forwarded => last_forwarded(headers, "host"),
            ClientIpHeader::XForwardedFor | ClientIpHeader::XRealIp => {
                last_list_value(headers, "x-forwarded-host")
            }
        }
    }

    /// The scheme the client used, as told by a trusted proxy.
    pub fn forwarded_proto<'h>(&self, peer: IpAddr, headers: &'h HeaderMap) -> Option<&'h str> {
        if !self.contains(peer) {
            return None;
        }
        match self.header {
            ClientIpHeader::None => None,
            ClientIpHeader::Forwarded => last_forwarded(headers, "proto"),
            ClientIpHeader::XForwardedFor | ClientIpHeader::XRealIp => {
                last_list_value(headers, "x-forwarded-proto")
            }
        }
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

/// The comma-separated elements of every `Forwarded` header, in order (one
/// per hop).
fn forwarded_elements(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all("forwarded")
        .iter()
        .map(|v| v.to_str().unwrap_or("for=unreadable"))
        .flat_map(|v| v.split(','))
}

fn forwarded_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    forwarded_elements(headers)
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
        let tp = TrustedProxies::parse(["127.0.0.1"])
            .unwrap()
            .with_header(ClientIpHeader::Forwarded);
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
    fn x_forwarded_for_does_not_override_configured_forwarded() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        // The proxy writes Forwarded; the client sent its own XFF along.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil.example"),
            (
                "forwarded",
                "for=198.51.100.7;host=app.example.com;proto=https",
            ),
        ]);
        let forwarded = TrustedProxies::parse(["127.0.0.1"])
            .unwrap()
            .with_header(ClientIpHeader::Forwarded);
        assert_eq!(
            forwarded.client_ip(peer, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(forwarded.forwarded_host(peer, &h), Some("app.example.com"));
        // And the other way round: XFF configured, a client's Forwarded is ignored.
        let h = headers(&[
            ("forwarded", "for=6.6.6.6;host=evil.example"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        let xff = TrustedProxies::parse(["127.0.0.1"]).unwrap();
        assert_eq!(
            xff.client_ip(peer, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(xff.forwarded_host(peer, &h), None);
        // None: the peer, whatever is sent.
        let none = TrustedProxies::parse(["127.0.0.1"])
            .unwrap()
            .with_header(ClientIpHeader::None);
        assert_eq!(none.client_ip(peer, &h), peer);
    }

    #[test]
    fn unreadable_hops_fall_back_to_the_peer() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let tp = TrustedProxies::parse(["127.0.0.1", "10.0.0.0/8"]).unwrap();
        // "garbage" sits between the client's writing and our proxy's.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, garbage, 10.0.0.2")]);
        assert_eq!(tp.client_ip(peer, &h), peer);
        let fwd = tp.clone().with_header(ClientIpHeader::Forwarded);
        let h = headers(&[("forwarded", "for=6.6.6.6, for=unknown, for=10.0.0.2")]);
        assert_eq!(fwd.client_ip(peer, &h), peer);
        let h = headers(&[("forwarded", "for=6.6.6.6, proto=https")]);
        assert_eq!(fwd.client_ip(peer, &h), peer, "an element without for=");
        // X-Real-IP: one value, or the peer.
        let real = tp.clone().with_header(ClientIpHeader::XRealIp);
        let h = headers(&[("x-real-ip", "198.51.100.7")]);
        assert_eq!(
            real.client_ip(peer, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("x-real-ip", "198.51.100.7"), ("x-real-ip", "6.6.6.6")]);
        assert_eq!(real.client_ip(peer, &h), peer);
        let h = headers(&[("x-real-ip", "nonsense")]);
        assert_eq!(real.client_ip(peer, &h), peer);
    }

    #[test]
    fn hop_count_takes_the_nth_from_the_right() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let tp = TrustedProxies::parse(["127.0.0.1"]).unwrap().with_hops(2);
        // client spoof, real client, first proxy (address unknown to us).
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 203.0.113.5")]);
        assert_eq!(
            tp.client_ip(peer, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let one = TrustedProxies::parse(["127.0.0.1"]).unwrap().with_hops(1);
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(
            one.client_ip(peer, &h),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Shorter than the hop count: the peer.
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(tp.client_ip(peer, &h), peer);
        assert_eq!(
            ClientIpHeader::parse("Forwarded"),
            Some(ClientIpHeader::Forwarded)
        );
        assert_eq!(ClientIpHeader::parse("x-forwarded"), None);
    }

    #[test]
    fn bad_cidr_is_refused() {
        assert_eq!(
            TrustedProxies::parse(["10.0.0.0/33"]).unwrap_err(),
            ProxyConfigError::NotCidr("10.0.0.0/33".into())
        );
    }
}
