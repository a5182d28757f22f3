//! Taint: secret values never reach a response (stage 8, and every page).
//!
//! Two nets, because each catches what the other cannot:
//!
//! * **Type level — [`Secret<T>`].** A field typed `Secret<String>` (an API
//!   key, a token, a password hash) refuses to serialize and prints as
//!   `Secret(<redacted>)`. A DTO that embeds one fails the whole response
//!   closed with 500 `internal`; the log line names the field path (via
//!   `serde_path_to_error` in [`crate::respond`]). This catches the mistake
//!   at its source, with a precise location, but only where the author
//!   remembered the wrapper.
//! * **Value level — [`unique_value`].** Code that loads a secret registers
//!   its bytes with a reason. Every serialized response body — the action
//!   JSON envelope, error envelopes, the HTML error pages, and app pages (the
//!   layer [`scan_response`] that [`crate::Portcullis::build`] installs) — is
//!   scanned with Aho-Corasick; a hit fails closed the same way: 500, nothing
//!   of the value sent, a log line with the reason and never the value. This
//!   catches the secret after it was copied into a plain `String`, formatted
//!   into a message or an HTML attribute.
//!
//! Each value is also registered in its JSON-escaped and HTML-escaped forms
//! when they differ, since that is how it would appear in those bodies.
//! Other transformations (base64, percent-encoding, substrings) are not
//! caught; the type-level net is the primary one.
//!
//! # Registry
//! Process-wide, bounded to [`MAX_ENTRIES`] values (re-registering refreshes
//! a value; past the cap the oldest is evicted, with a warning) of
//! [`MIN_LEN`]..=[`MAX_LEN`] bytes — a short value would match innocent
//! responses and turn the net into a denial of service. Writers take a mutex
//! and rebuild the automaton once per change ([`unique_values`] batches);
//! the result is published through `arc-swap`, so a scan is one lock-free
//! load and a linear pass, and costs nothing while the registry is empty.
//! Stored copies are zeroed on eviction.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};

use aho_corasick::AhoCorasick;
use arc_swap::ArcSwapOption;
use axum::body::Body;
use axum::response::Response;
use http::header;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::error::{ErrorCode, Rejection};
use crate::respond::{self, ClientKind};

/// The most values the registry holds at once.
pub const MAX_ENTRIES: usize = 4096;
/// Shortest value accepted: shorter ones would match innocent text.
pub const MIN_LEN: usize = 8;
/// Longest value accepted.
pub const MAX_LEN: usize = 4096;
/// The largest page body [`scan_response`] buffers to scan; larger bodies of
/// a scanned type fail closed.
pub const MAX_SCANNED_BODY: usize = 16 * 1024 * 1024;

/// A value that must never be sent: `Serialize` fails, `Debug` redacts.
///
/// It deserializes transparently, so input fields such as passwords can be
/// `Secret<String>` too — then they cannot be echoed back or logged by
/// accident.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value, for the code that legitimately uses it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The message a [`Secret`] fails serialization with.
pub const SECRET_REFUSED: &str = "a portcullis::Secret refused to serialize";

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(SECRET_REFUSED))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

/// Why a value was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TaintError {
    #[error("a unique value must be at least {MIN_LEN} bytes (got {0})")]
    TooShort(usize),
    #[error("a unique value must be at most {MAX_LEN} bytes (got {0})")]
    TooLong(usize),
}

struct Entry {
    value: Zeroizing<Vec<u8>>,
    reason: Arc<str>,
}

struct Snapshot {
    automaton: AhoCorasick,
    /// Reason per pattern index.
    reasons: Vec<Arc<str>>,
}

/// A bounded set of unique values and the automaton that finds them. The
/// framework uses one process-wide instance through the free functions.
pub struct Registry {
    max_entries: usize,
    entries: Mutex<VecDeque<Entry>>,
    snapshot: ArcSwapOption<Snapshot>,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::new(MAX_ENTRIES));

fn check(value: &[u8]) -> Result<(), TaintError> {
    match value.len() {
        n if n < MIN_LEN => Err(TaintError::TooShort(n)),
        n if n > MAX_LEN => Err(TaintError::TooLong(n)),
        _ => Ok(()),
    }
}

/// Registers a secret value in the process-wide registry: any response
/// containing it fails closed. `reason` (e.g. `"stripe api key"`) is what the
/// log line says on a hit.
pub fn unique_value(
    value: impl AsRef<[u8]>,
    reason: impl Into<Cow<'static, str>>,
) -> Result<(), TaintError> {
    REGISTRY.add([value], reason).map(|_| ())
}

/// Registers several values under one reason with a single rebuild. All are
/// checked first; nothing is registered if one is refused.
pub fn unique_values<V: AsRef<[u8]>>(
    values: impl IntoIterator<Item = V>,
    reason: impl Into<Cow<'static, str>>,
) -> Result<usize, TaintError> {
    REGISTRY.add(values, reason)
}

/// Unregisters a value (e.g. a token that was revoked). Returns whether it
/// was registered.
pub fn forget(value: impl AsRef<[u8]>) -> bool {
    REGISTRY.forget(value)
}

/// The number of registered values.
pub fn registered() -> usize {
    REGISTRY.len()
}

/// Scans a response body against the process-wide registry. On a hit: logs
/// the reason (never the value) under a digest and returns the 500 to send
/// instead.
pub fn scan(body: &[u8]) -> Result<(), Rejection> {
    REGISTRY.scan(body)
}

impl Registry {
    pub fn new(max_entries: usize) -> Self {
        Registry {
            max_entries,
            entries: Mutex::new(VecDeque::new()),
            snapshot: ArcSwapOption::empty(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        // A panic mid-update leaves plain data; the snapshot is rebuilt below.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`unique_values`].
    pub fn add<V: AsRef<[u8]>>(
        &self,
        values: impl IntoIterator<Item = V>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Result<usize, TaintError> {
        let values: Vec<Zeroizing<Vec<u8>>> = values
            .into_iter()
            .map(|v| Zeroizing::new(v.as_ref().to_vec()))
            .collect();
        for v in &values {
            check(v)?;
        }
        let reason: Arc<str> = Arc::from(reason.into().into_owned());
        let fresh: HashSet<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let mut entries = self.lock();
        // Refresh: a re-registered value moves to the young end. One pass,
        // so a bulk registration stays linear.
        entries.retain(|e| !fresh.contains(e.value.as_slice()));
        let mut evicted = 0usize;
        let mut seen = HashSet::with_capacity(values.len());
        for value in &values {
            if !seen.insert(value.as_slice()) {
                continue;
            }
            entries.push_back(Entry {
                value: value.clone(),
                reason: reason.clone(),
            });
        }
        while entries.len() > self.max_entries {
            entries.pop_front();
            evicted += 1;
        }
        if evicted > 0 {
            tracing::warn!(
                evicted,
                max = self.max_entries,
                "taint registry full: the oldest unique values are no longer scanned for"
            );
        }
        self.rebuild(&entries);
        Ok(values.len())
    }

    /// See [`forget`].
    pub fn forget(&self, value: impl AsRef<[u8]>) -> bool {
        let value = value.as_ref();
        let mut entries = self.lock();
        let Some(i) = entries.iter().position(|e| e.value.as_slice() == value) else {
            return false;
        };
        entries.remove(i);
        self.rebuild(&entries);
        true
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.snapshot.load().is_none()
    }

    fn rebuild(&self, entries: &VecDeque<Entry>) {
        if entries.is_empty() {
            self.snapshot.store(None);
            return;
        }
        let mut patterns = Vec::with_capacity(entries.len() * 2);
        let mut reasons = Vec::with_capacity(entries.len() * 2);
        for e in entries {
            for v in variants(&e.value) {
                patterns.push(Zeroizing::new(v));
                reasons.push(e.reason.clone());
            }
        }
        match AhoCorasick::new(patterns.iter().map(|p| p.as_slice())) {
            Ok(automaton) => self
                .snapshot
                .store(Some(Arc::new(Snapshot { automaton, reasons }))),
            // Only on absurd sizes, which the caps rule out; keep the old net.
            Err(e) => tracing::error!(error = %e, "taint automaton could not be rebuilt"),
        }
    }

    /// See [`scan`]. One lock-free load, then a linear pass.
    pub fn scan(&self, body: &[u8]) -> Result<(), Rejection> {
        let snapshot = self.snapshot.load();
        let Some(snapshot) = snapshot.as_ref() else {
            return Ok(());
        };
        match snapshot.automaton.find(body) {
            None => Ok(()),
            Some(m) => {
                let rejection = Rejection::new(ErrorCode::Internal);
                let reason = snapshot
                    .reasons
                    .get(m.pattern().as_usize())
                    .map(|r| &**r)
                    .unwrap_or("?");
                tracing::error!(
                    digest = %rejection.digest,
                    reason,
                    "response blocked: it contains a registered secret value"
                );
                Err(rejection)
            }
        }
    }
}

/// The forms a value takes in the bodies we send: raw, JSON-escaped,
/// HTML-escaped (as maud escapes).
fn variants(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![value.to_vec()];
    if let Ok(text) = std::str::from_utf8(value) {
        if let Ok(json) = serde_json::to_string(text) {
            let inner = json.as_bytes()[1..json.len() - 1].to_vec();
            if !out.contains(&inner) {
                out.push(inner);
            }
        }
        let html = maud::html! { (text) }.into_string().into_bytes();
        if !out.contains(&html) {
            out.push(html);
        }
    }
    out
}

/// Whether `scan_response` looks at a body of this content type: text and
/// JSON, not streams or binary assets.
fn scanned_type(response: &Response) -> bool {
    let Some(ct) = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let ct = ct.trim_start().to_ascii_lowercase();
    (ct.starts_with("text/") && !ct.starts_with("text/event-stream"))
        || ct.starts_with("application/json")
        || ct.starts_with("application/javascript")
        || ct.contains("+json")
        || ct.contains("+xml")
}

/// Scans a page response (middleware for `axum::middleware::map_response`).
/// Installed on the app's page routes by [`crate::Portcullis::build`]; use it
/// on any other router that renders HTML or JSON:
///
/// ```rust,ignore
/// let router = router.layer(axum::middleware::map_response(portcullis::taint::scan_response));
/// ```
///
/// Text and JSON bodies are buffered (up to [`MAX_SCANNED_BODY`]) only while
/// the registry holds a value; streams (`text/event-stream`) and binary
/// types pass untouched.
pub async fn scan_response(response: Response) -> Response {
    use http_body_util::BodyExt;
    if REGISTRY.is_empty() || !scanned_type(&response) {
        return response;
    }
    let client = match response.headers().get(header::CONTENT_TYPE) {
        Some(v) if v.as_bytes().starts_with(b"application/json") => ClientKind::Json,
        _ => ClientKind::Html,
    };
    let (parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_SCANNED_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let r = Rejection::internal(&format_args!(
                "page body could not be scanned for secrets: {e}"
            ));
            return respond::failure_with_paths(client, &r, "/", "/", None);
        }
    };
    match scan(&bytes) {
        Ok(()) => Response::from_parts(parts, Body::from(bytes)),
        Err(rejection) => respond::failure_with_paths(client, &rejection, "/", "/", None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The registry is process-wide: each test uses values no other test uses.

    #[test]
    fn secret_refuses_to_serialize_and_redacts() {
        #[derive(Serialize)]
        struct Out {
            name: &'static str,
            inner: Inner,
        }
        #[derive(Serialize)]
        struct Inner {
            token: Secret<String>,
        }
        let out = Out {
            name: "x",
            inner: Inner {
                token: Secret::new("tok_live_abcdef".into()),
            },
        };
        let mut buf = Vec::new();
        let mut ser = serde_json::Serializer::new(&mut buf);
        let err = serde_path_to_error::serialize(&out, &mut ser).unwrap_err();
        assert_eq!(err.path().to_string(), "inner.token");
        assert!(err.to_string().contains(SECRET_REFUSED));
        assert_eq!(format!("{:?}", out.inner.token), "Secret(<redacted>)");
        let s: Secret<String> = serde_json::from_str("\"pw\"").unwrap();
        assert_eq!(s.expose(), "pw");
    }

    #[test]
    fn registered_values_are_found_in_every_form() {
        let r = Registry::new(16);
        assert!(r.is_empty() && r.scan(b"anything").is_ok());
        r.add(["unit<&>\"tok-7Hq2"], "unit test token").unwrap();
        assert!(r.scan(b"prefix unit<&>\"tok-7Hq2 suffix").is_err());
        assert!(r.scan(br#"{"a":"x unit<&>\"tok-7Hq2"}"#).is_err());
        assert!(r.scan(b"<p>unit&lt;&amp;&gt;&quot;tok-7Hq2</p>").is_err());
        assert!(r.scan(b"unit<&>tok-7Hq2").is_ok());
        assert!(r.forget("unit<&>\"tok-7Hq2"));
        assert!(r.scan(b"unit<&>\"tok-7Hq2").is_ok());
        assert!(r.is_empty());
    }

    #[test]
    fn short_and_huge_values_are_refused() {
        assert_eq!(
            unique_value("1234567", "short"),
            Err(TaintError::TooShort(7))
        );
        assert_eq!(
            unique_value(vec![b'x'; MAX_LEN + 1], "huge"),
            Err(TaintError::TooLong(MAX_LEN + 1))
        );
        let r = Registry::new(4);
        assert!(r.add(["long enough", "short"], "mixed").is_err());
        assert_eq!(r.len(), 0, "all or nothing");
    }

    #[test]
    fn registry_is_bounded_oldest_evicted_and_refreshed() {
        let r = Registry::new(3);
        r.add(["value-aaaa", "value-bbbb", "value-cccc"], "t")
            .unwrap();
        r.add(["value-aaaa"], "t").unwrap(); // refresh: b is now the oldest
        r.add(["value-dddd"], "t").unwrap();
        assert_eq!(r.len(), 3);
        assert!(r.scan(b"value-bbbb").is_ok(), "oldest evicted");
        for v in ["value-aaaa", "value-cccc", "value-dddd"] {
            assert!(r.scan(v.as_bytes()).is_err(), "{v}");
        }
    }

    #[test]
    fn full_registry_rebuild_and_scan_cost() {
        let r = Registry::new(MAX_ENTRIES);
        let values: Vec<String> = (0..MAX_ENTRIES)
            .map(|i| format!("bounded-{i:08}"))
            .collect();
        let t = std::time::Instant::now();
        r.add(&values, "bulk").unwrap();
        let rebuild = t.elapsed();
        // Text full of near misses: every "bounded-" prefix starts a match attempt.
        let body: Vec<u8> = b"{\"name\":\"bounded-x\",\"n\":12345678} "
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
        let t = std::time::Instant::now();
        assert!(r.scan(&body).is_ok());
        let scan = t.elapsed();
        eprintln!("{MAX_ENTRIES} values: rebuild {rebuild:?}, scan of 1 MiB {scan:?}");
        assert!(r.scan(values[17].as_bytes()).is_err());
    }
}
