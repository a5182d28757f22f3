//! The backend key of each limit: `{action}:{slot}{index}:{label}:{who}`.
//!
//! Keys are persistent state (Redis keeps them across deploys), so their text
//! is pinned by a test: a change would silently reset every window. Values a
//! client chooses (a session id, a submitted e-mail, an API key) are hashed
//! (SHA-256, 18 bytes, base64url) so they are short and never stored in
//! clear; addresses are kept as text, IPv6 by its /64.

use std::any::{Any, TypeId};
use std::fmt;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use sha2::{Digest as _, Sha256};

use super::{KeyKind, Limit};
use crate::error::Rejection;
use crate::viewer::Viewer;

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

pub(crate) type RequestKeyFn = dyn Fn(&KeyRequest<'_>) -> Option<String> + Send + Sync;
pub(crate) type InputKeyFn = dyn Fn(&(dyn Any + Send)) -> Option<String> + Send + Sync;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    use crate::ratelimit::{global, per_ip, per_key, per_session, per_user};

    fn addr(ip: std::net::IpAddr) -> String {
        let mut out = String::new();
        push_addr(&mut out, ip);
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
}
