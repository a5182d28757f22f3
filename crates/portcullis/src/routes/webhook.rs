//! Webhook receivers: the one kind of route that must accept cross-origin
//! POSTs — and may, only because it authenticates every request another way.
//!
//! A [`Webhook`] verifies an HMAC-SHA256 signature over the *raw* body with a
//! shared secret, in constant time, before anything parses the body:
//!
//! * [`Scheme::Timestamped`] — header `t=<unix>,v1=<hex>` over `"<t>.<body>"`
//!   (the common provider scheme); `t` must be within the tolerance window
//!   (default 5 minutes) of now, so a captured delivery cannot be replayed
//!   later;
//! * [`Scheme::HexDigest`] — header `<hex>` or `sha256=<hex>` over the body.
//!
//! Replays inside the window are stopped by a seen-event store (the
//! idempotency store: memory, or Redis when configured), keyed by the JSON
//! body's `"id"` when present, else by the signature: a second delivery of an
//! applied event gets the first answer and does not run the handler again.
//! The body is capped (default 64 KiB). Failures use the standard error
//! envelope: 400 `malformed_body`, 401 `invalid_signature`, 413.
//!
//! Webhook routes are mounted outside the app-wide origin guard (see
//! [`crate::routes`]) and listed in the manifest with their authenticator.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::StatusCode;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::{ActionError, ErrorCode, Rejection};
use crate::hex;
use crate::idempotency::Begin;
use crate::respond::{self, ClientKind};
use crate::runtime::Runtime;
use crate::taint::Secret;

/// How the signature header is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// `t=<unix seconds>,v1=<hex hmac of "t.body">`.
    Timestamped,
    /// `<hex hmac of body>`, optionally prefixed `sha256=`.
    HexDigest,
}

/// A webhook verifier's settings.
#[derive(Clone)]
pub struct Webhook {
    secret: Secret<Vec<u8>>,
    /// Where the secret came from, so production can refuse a development
    /// fallback ([`crate::deploy`]).
    source: SecretSource,
    scheme: Scheme,
    header: &'static str,
    tolerance: Duration,
    max_body: usize,
}

impl Webhook {
    /// `header` carries the signature, e.g. `"x-billing-signature"`. Prefer
    /// [`Webhook::from_env`], which production can check.
    pub fn new(secret: impl Into<Vec<u8>>, scheme: Scheme, header: &'static str) -> Self {
        Webhook {
            secret: Secret::new(secret.into()),
            source: SecretSource::Code,
            scheme,
            header,
            tolerance: Duration::from_secs(300),
            max_body: 64 * 1024,
        }
    }

    /// The secret from environment variable `secret.var`; when it is unset,
    /// `secret.dev_default` (and a log line saying so). In production
    /// [`crate::Portcullis::build`] refuses the result unless the variable
    /// holds a real secret: set, ≥ 32 bytes, not the development default,
    /// not a placeholder (the rules of [`crate::security::check_deployment`]).
    pub fn from_env(
        secret: crate::deploy::EnvSecret,
        scheme: Scheme,
        header: &'static str,
    ) -> Self {
        Self::from_lookup(|k| std::env::var(k).ok(), secret, scheme, header)
    }

    /// [`Webhook::from_env`] over any lookup function (tests, tooling).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        secret: crate::deploy::EnvSecret,
        scheme: Scheme,
        header: &'static str,
    ) -> Self {
        let value = get(secret.var).filter(|v| !v.trim().is_empty());
        let (bytes, used_default) = match value {
            Some(v) => (v.trim().as_bytes().to_vec(), false),
            None => {
                tracing::info!(
                    "{} is not set: the webhook uses its development secret (refused in production)",
                    secret.var
                );
                (secret.dev_default.as_bytes().to_vec(), true)
            }
        };
        let mut hook = Webhook::new(bytes, scheme, header);
        hook.source = SecretSource::Env {
            secret,
            used_default,
        };
        hook
    }

    /// Why production must refuse this webhook's secret, if it must.
    pub fn production_finding(&self) -> Option<crate::deploy::Finding> {
        let value = String::from_utf8_lossy(self.secret.expose()).into_owned();
        let (var, problem) = match self.source {
            SecretSource::Env {
                secret,
                used_default: true,
            } => (
                secret.var,
                crate::deploy::secret_problem(None, Some(secret.dev_default)),
            ),
            SecretSource::Env { secret, .. } => (
                secret.var,
                crate::deploy::secret_problem(Some(&value), Some(secret.dev_default)),
            ),
            SecretSource::Code => (
                "(webhook secret given in code)",
                crate::deploy::secret_problem(Some(&value), None),
            ),
        };
        problem.map(|problem| crate::deploy::Finding {
            var: var.to_owned(),
            problem,
            fix: format!(
                "set it to the secret your provider gave you, or {}",
                crate::deploy::GENERATE
            ),
        })
    }

    /// How far a [`Scheme::Timestamped`] signature's time may be from now,
    /// either way (default 5 minutes). Longer lets a captured delivery be
    /// presented later; replays of an applied event are still answered
    /// from the seen-event store.
    pub fn tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The body cap in bytes (default 64 KiB); larger deliveries get 413
    /// before any of the body is verified.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How this webhook's signature header is laid out (for the manifest).
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.secret.expose()).expect("any key length");
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().to_vec()
    }

    /// Signs `body` the way a sender would (for tests and tooling).
    pub fn sign(&self, body: &[u8], timestamp: u64) -> String {
        match self.scheme {
            Scheme::Timestamped => {
                let t = timestamp.to_string();
                format!("t={t},v1={}", hex(&self.mac(&[t.as_bytes(), b".", body])))
            }
            Scheme::HexDigest => format!("sha256={}", hex(&self.mac(&[body]))),
        }
    }

    /// Verifies `header_value` over `body` at `now`; returns the signature
    /// bytes (a replay key of last resort).
    pub fn verify(
        &self,
        header_value: Option<&str>,
        body: &[u8],
        now: u64,
    ) -> Result<Vec<u8>, Rejection> {
        let invalid = |why: &str| Rejection::with_message(ErrorCode::InvalidSignature, why);
        let value = header_value.ok_or_else(|| invalid("The signature header is missing."))?;
        match self.scheme {
            Scheme::Timestamped => {
                let mut t = None;
                let mut sigs = Vec::new();
                for part in value.split(',') {
                    match part.trim().split_once('=') {
                        Some(("t", v)) => t = v.parse::<u64>().ok(),
                        Some(("v1", v)) => {
                            sigs.push(unhex(v).ok_or_else(|| invalid("The signature is not hex."))?)
                        }
                        _ => {}
                    }
                }
                let t = t.ok_or_else(|| invalid("The signature has no timestamp."))?;
                if now.abs_diff(t) > self.tolerance.as_secs() {
                    return Err(invalid(
                        "The signature's timestamp is outside the tolerance window.",
                    ));
                }
                let want = self.mac(&[t.to_string().as_bytes(), b".", body]);
                sigs.into_iter()
                    .find(|s| bool::from(s.as_slice().ct_eq(&want)))
                    .ok_or_else(|| invalid("The signature does not match."))
            }
            Scheme::HexDigest => {
                let given = unhex(value.trim().trim_start_matches("sha256="))
                    .ok_or_else(|| invalid("The signature is not hex."))?;
                let want = self.mac(&[body]);
                if bool::from(given.as_slice().ct_eq(&want)) {
                    Ok(given)
                } else {
                    Err(invalid("The signature does not match."))
                }
            }
        }
    }
}

/// Where a webhook's secret came from.
#[derive(Clone, Copy, Debug)]
enum SecretSource {
    /// [`Webhook::new`]: whatever the app passed.
    Code,
    /// [`Webhook::from_env`]: the variable, and whether it was unset (so the
    /// development default is in use).
    Env {
        secret: crate::deploy::EnvSecret,
        used_default: bool,
    },
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 256 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A verified delivery.
#[derive(Clone, Debug)]
pub struct Event {
    /// The raw body, exactly as signed.
    pub body: Bytes,
}

impl Event {
    /// The body as JSON of type `T` (400 `malformed_body` if it is not).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ActionError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ActionError::Rejected(Rejection::with_message(
                ErrorCode::MalformedBody,
                format!("The event body is not the expected JSON: {e}"),
            ))
        })
    }
}

pub(crate) type Handler<S> = Arc<
    dyn Fn(S, Event) -> futures::future::BoxFuture<'static, Result<(), ActionError>> + Send + Sync,
>;

pub(crate) fn handler<S, F, Fut>(f: F) -> Handler<S>
where
    F: Fn(S, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ActionError>> + Send + 'static,
{
    Arc::new(move |s, e| Box::pin(f(s, e)))
}

/// Runs one delivery: cap, verify, de-duplicate, handle.
pub(crate) async fn receive<S: Clone>(
    shared: &Runtime,
    path: &str,
    hook: &Webhook,
    handler: &Handler<S>,
    state: S,
    request: Request,
) -> Response {
    match receive_inner(shared, path, hook, handler, state, request).await {
        Ok(r) => r,
        Err(rejection) => respond::failure(ClientKind::Json, &rejection, &shared.config, None),
    }
}

async fn receive_inner<S: Clone>(
    shared: &Runtime,
    path: &str,
    hook: &Webhook,
    handler: &Handler<S>,
    state: S,
    request: Request,
) -> Result<Response, Rejection> {
    let (parts, body) = request.into_parts();
    crate::body::check_declared_length(&parts.headers, hook.max_body)?;
    let body =
        crate::body::read_body(body, hook.max_body, shared.config.body_limits.body_timeout).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let header = parts.headers.get(hook.header).and_then(|v| v.to_str().ok());
    let signature = hook.verify(header, &body, now)?;
    // Replay key: the event id if the body names one, else the signature.
    let event_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned));
    let key = format!(
        "webhook:{path}:{}",
        event_id.unwrap_or_else(|| hex(&signature))
    );
    let fingerprint = crate::idempotency::fingerprint(&body, None);
    // A store that client-chosen idempotency keys cannot evict from (see
    // `store::Stores`).
    let seen = &shared.webhook_seen;
    match seen.begin(&key, fingerprint).await? {
        Begin::Replay(r) => return Ok(r),
        Begin::Run => {}
    }
    let outcome = handler(state, Event { body }).await;
    match outcome {
        Ok(()) => {
            let ok = respond::json_response(StatusCode::OK, br#"{"ok":true}"#.to_vec());
            Ok(seen.complete(&key, fingerprint, ok).await)
        }
        Err(e) => {
            seen.abandon(&key).await;
            Err(e.classified(shared.classifier))
        }
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Webhook {{ scheme: {:?}, header: {}, secret: <redacted> }}",
            self.scheme, self.header
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamped_round_trip_and_every_failure() {
        let hook = Webhook::new(b"whsec".to_vec(), Scheme::Timestamped, "x-sig");
        let body = br#"{"id":"evt_1"}"#;
        let sig = hook.sign(body, 1_000_000);
        assert!(hook.verify(Some(&sig), body, 1_000_100).is_ok());
        let code = |r: Result<Vec<u8>, Rejection>| r.unwrap_err().code;
        assert_eq!(
            code(hook.verify(Some(&sig), body, 1_000_400)),
            ErrorCode::InvalidSignature
        );
        assert_eq!(
            code(hook.verify(Some(&sig), br#"{"id":"evt_2"}"#, 1_000_000)),
            ErrorCode::InvalidSignature
        );
        assert_eq!(
            code(hook.verify(None, body, 1_000_000)),
            ErrorCode::InvalidSignature
        );
        assert_eq!(
            code(hook.verify(Some("t=1000000,v1=zz"), body, 1_000_000)),
            ErrorCode::InvalidSignature
        );
        let other = Webhook::new(b"other".to_vec(), Scheme::Timestamped, "x-sig");
        assert_eq!(
            code(hook.verify(Some(&other.sign(body, 1_000_000)), body, 1_000_000)),
            ErrorCode::InvalidSignature
        );
    }

    #[test]
    fn hex_digest_round_trip() {
        let hook = Webhook::new(b"k".to_vec(), Scheme::HexDigest, "x-sig");
        let sig = hook.sign(b"payload", 0);
        assert!(hook.verify(Some(&sig), b"payload", 0).is_ok());
        assert!(
            hook.verify(Some(sig.trim_start_matches("sha256=")), b"payload", 0)
                .is_ok()
        );
        assert!(hook.verify(Some(&sig), b"payloaD", 0).is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let hook = Webhook::new(b"topsecretvalue".to_vec(), Scheme::HexDigest, "x-sig");
        assert!(!format!("{hook:?}").contains("topsecret"));
    }
}
