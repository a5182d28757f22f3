//! The anonymous scope: one random, signed id per browser, for callers
//! without a session.
//!
//! Why: some things are scoped "per caller" — idempotency keys, sealed bound
//! arguments, the no-JS flash. A signed-in caller is scoped by user, a
//! caller with a session by the session id; before this module, everyone
//! else fell back to the client IP (or, for seals and flashes, to one
//! literal `anonymous` binding shared by every visitor), so two browsers
//! behind one NAT shared results, and a seal minted for one anonymous
//! visitor opened for any other.
//!
//! Now the framework's layer gives every browser that loads a page a cookie
//! `pc_anon` (`__Host-pc_anon` with secure cookies) holding 128 random bits
//! and an HMAC-SHA256 tag (subkey [`Purpose::Cookies`], label
//! `portcullis/anon/v1`) — `HttpOnly`, `SameSite=Lax`, one year. A page
//! request without a valid one (none, or forged) gets a fresh id, used for
//! the seals on that page and set on its response. Action requests only
//! *read* the cookie: minting one there would scope a cookie-less client's
//! first attempt by address and its retry (now with a cookie) by browser,
//! and the retry would run again. So:
//!
//! * **idempotency** for an anonymous caller is scoped by the session id if
//!   there is one, else by this cookie; only a client that never loaded a
//!   page or keeps no cookies (curl, a script) falls back to its IP address,
//!   and its stored results are still only replayed for the same key *and*
//!   body ([`crate::idempotency`]);
//! * **seals and flashes** minted for a visitor without a session are bound
//!   to `browser:<id>` ([`crate::seal::Binding::Browser`]), the id minted
//!   with the page if the browser had none yet: they open only in the
//!   browser they were made for. A client that keeps no cookies cannot open
//!   a page's anonymous seals (before, they opened for *any* anonymous
//!   client); what an action seals or flashes for a caller without a
//!   cookie is bound to the shared `anonymous` binding.
//!
//! State: none on the server. The cookie is the whole record; nothing grows
//! with the number of visitors, and a client that forges or floods cookies
//! only ever gets fresh ids for itself.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::{HeaderValue, header};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::keys::{KeyRing, Purpose};

const LABEL: &[u8] = b"portcullis/anon/v1";
const ID_LEN: usize = 16;
const TAG_LEN: usize = 16;
const MAX_AGE_SECS: u64 = 365 * 86_400;

/// One browser's anonymous scope (request extension set by the layer).
#[derive(Clone, PartialEq, Eq)]
pub struct AnonScope {
    id: Arc<str>,
}

impl AnonScope {
    /// The id (hex), as scopes and seal bindings use it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for AnonScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnonScope(<redacted>)")
    }
}

fn tag(keys: &KeyRing, id: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(keys.current.get(Purpose::Cookies).bytes())
        .expect("HMAC takes any key length");
    mac.update(LABEL);
    mac.update(id);
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

/// The cookie value for `id`.
fn encode(keys: &KeyRing, id: &[u8; ID_LEN]) -> String {
    let mut raw = Vec::with_capacity(ID_LEN + TAG_LEN);
    raw.extend_from_slice(id);
    raw.extend_from_slice(&tag(keys, id));
    URL_SAFE_NO_PAD.encode(raw)
}

/// The id in a cookie value, if its tag verifies.
fn decode(keys: &KeyRing, value: &str) -> Option<AnonScope> {
    if value.len() > 64 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(value.as_bytes()).ok()?;
    if raw.len() != ID_LEN + TAG_LEN {
        return None;
    }
    let (id, got) = raw.split_at(ID_LEN);
    let want = tag(keys, id);
    if !bool::from(want.ct_eq(got)) {
        return None;
    }
    Some(AnonScope {
        id: Arc::from(crate::hex(id)),
    })
}

/// The anonymous scope a request's cookies carry, if valid.
pub fn from_headers(keys: &KeyRing, secure: bool, headers: &http::HeaderMap) -> Option<AnonScope> {
    let name = crate::wire::cookie::anon(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .find_map(|(_, v)| decode(keys, v.trim()))
}

/// What the anonymous-scope middleware needs: the keys its cookie is
/// MACed with and whether cookies are `Secure` (which also picks the
/// cookie's name). Built once; the layers share it through an `Arc`
/// (axum clones a layer's state per request, and cloning a `KeyRing`
/// copies and then zeroizes every subkey: 2.3k instructions a request).
#[derive(Clone)]
pub(crate) struct CookieKeys {
    pub(crate) keys: KeyRing,
    pub(crate) secure: bool,
}

/// For actions: puts the browser's [`AnonScope`] into the request's
/// extensions when the request carries a valid one; mints none.
pub(crate) fn read_into(keys: &CookieKeys, request: &mut Request) {
    if let Some(scope) = from_headers(&keys.keys, keys.secure, request.headers()) {
        request.extensions_mut().insert(scope);
    }
}

/// [`read_into`] as middleware, for the action route of the app's router
/// (the requests the app's stack does not dispatch itself).
pub(crate) async fn read(
    State(keys): State<Arc<CookieKeys>>,
    mut request: Request,
    next: Next,
) -> Response {
    read_into(&keys, &mut request);
    next.run(request).await
}

/// Middleware for pages (installed by [`crate::Portcullis::build`]): puts
/// the browser's [`AnonScope`] into the request's extensions, minting one
/// (and setting its cookie on the response) when the request carries no
/// valid one.
pub(crate) async fn layer(
    State(keys): State<Arc<CookieKeys>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(scope) = from_headers(&keys.keys, keys.secure, request.headers()) {
        request.extensions_mut().insert(scope);
        return next.run(request).await;
    }
    let id: [u8; ID_LEN] = rand::random();
    request.extensions_mut().insert(AnonScope {
        id: Arc::from(crate::hex(&id)),
    });
    let mut response = next.run(request).await;
    let secure = if keys.secure { "; Secure" } else { "" };
    let cookie = format!(
        "{}={}; Path=/; Max-Age={MAX_AGE_SECS}; HttpOnly; SameSite=Lax{secure}",
        crate::wire::cookie::anon(keys.secure),
        encode(&keys.keys, &id)
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The seal binding of a request: its session if it has one, else its
/// browser's anonymous scope, else the shared anonymous binding. Call it
/// after the session was loaded (any read, e.g. `session::load_viewer`):
/// before that, `Session::id` is whatever the cookie claimed, even for a
/// record that does not exist.
pub(crate) fn seal_binding(
    session: &tower_sessions::Session,
    scope: Option<&AnonScope>,
) -> crate::seal::Binding {
    match (session.id(), scope) {
        (Some(id), _) => crate::seal::Binding::session(id),
        (None, Some(scope)) => crate::seal::Binding::Browser(Arc::from(scope.id())),
        (None, None) => crate::seal::Binding::Anonymous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterSecret;

    fn ring(b: u8) -> KeyRing {
        KeyRing::new(&MasterSecret::from_bytes(vec![b; 32]).unwrap(), None)
    }

    #[test]
    fn cookie_round_trips_and_forgeries_are_refused() {
        let keys = ring(1);
        let id = [7u8; ID_LEN];
        let value = encode(&keys, &id);
        assert_eq!(decode(&keys, &value).unwrap().id(), crate::hex(&id));
        assert!(decode(&ring(2), &value).is_none(), "another secret");
        let mut raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        raw[0] ^= 1;
        assert!(decode(&keys, &URL_SAFE_NO_PAD.encode(&raw)).is_none());
        assert!(decode(&keys, "").is_none());
        assert!(decode(&keys, &"A".repeat(500)).is_none());
    }
}
