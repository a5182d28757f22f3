//! Bot checks for public actions (stage 6, after decode and validation,
//! before input limits, quotas and the handler). Any failure is 403
//! `bot_check_failed` with a generic message; the reason goes to the debug log.
//!
//! * [`BotCheck::Honeypot`]: the reserved form field [`wire::field::HONEYPOT`] (`_hp`)
//!   must be *present* and empty. [`crate::render::Form`] renders it, hidden
//!   from people and assistive technology, for every action with a bot
//!   check, so every real form sends it (browsers submit empty text inputs;
//!   the client runtime sends the form's fields). A request without it was
//!   not made from the form — a script posting only the fields it cares
//!   about — and is refused like a filled one: "absent passes" would make
//!   the check trivially skippable. Works without JavaScript.
//! * [`BotCheck::ProofOfWork`]: the page carries a challenge minted by
//!   [`Challenges::mint`] (see [`crate::render::Page::pow_challenge`]; `Form`
//!   renders it as `data-pow`). The client finds a `counter` such that
//!   `SHA-256(challenge ‖ counter_be64)` starts with `bits` zero bits and sends
//!   `challenge:counter` in the `X-Portcullis-Pow` header or the `_pow` field.
//!   A challenge is `base64url(nonce16 ‖ bits ‖ expiry_be64 ‖ mac16)`, where
//!   the MAC is HMAC-SHA256 under the `Challenges` subkey over the action name
//!   and the rest, so it cannot be forged, re-targeted to another action,
//!   made easier or extended. Verifying costs one HMAC and one SHA-256. A
//!   solved challenge is spent in the counter store (memory or Redis) until
//!   it expires, so it is single use across instances. PoW needs the client
//!   runtime: forms that must work without JavaScript use the honeypot.
//! * [`BotCheck::Verifier`]: a [`BotVerifier`] (Turnstile, hCaptcha, … — see
//!   [`HttpVerifier`] behind the `bot-http` feature: HTTPS only, certificates
//!   always checked) checks the token sent in `X-Portcullis-Bot` or the
//!   `_bot` field. An error talking to it fails closed.
//!
//! Several checks may be given; all must pass. A *filled* honeypot is also
//! refused whenever any other bot check is configured (it costs nothing);
//! its absence is refused only when `BotCheck::Honeypot` itself is declared
//! (a JSON client of a proof-of-work action need not send it).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{ErrorCode, Rejection};
use crate::keys::{KeyRing, Purpose};
use crate::store::CounterStore;

/// How long a minted challenge stays valid.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(30 * 60);

/// The largest difficulty accepted (2^32 hashes is already far beyond a browser).
pub const MAX_BITS: u8 = 32;

/// A check a public action may require.
#[derive(Clone)]
pub enum BotCheck {
    /// The hidden `_hp` field must be sent and empty; works without
    /// JavaScript.
    Honeypot,
    /// A signed, single-use proof-of-work challenge; needs the client
    /// runtime.
    ProofOfWork {
        /// Required leading zero bits of the hash (capped at [`MAX_BITS`]);
        /// each extra bit doubles the client's expected work.
        bits: u8,
    },
    /// An external service (Turnstile, hCaptcha, …) vouches for a token;
    /// fails closed when it cannot be reached.
    Verifier(Arc<dyn BotVerifier>),
}

impl BotCheck {
    /// `BotCheck::Verifier(Arc::new(v))`.
    pub fn verifier(v: impl BotVerifier) -> Self {
        BotCheck::Verifier(Arc::new(v))
    }
}

impl fmt::Debug for BotCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BotCheck::Honeypot => f.write_str("Honeypot"),
            BotCheck::ProofOfWork { bits } => write!(f, "ProofOfWork {{ bits: {bits} }}"),
            BotCheck::Verifier(v) => write!(f, "Verifier({})", v.name()),
        }
    }
}

impl PartialEq for BotCheck {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BotCheck::Honeypot, BotCheck::Honeypot) => true,
            (BotCheck::ProofOfWork { bits: a }, BotCheck::ProofOfWork { bits: b }) => a == b,
            (BotCheck::Verifier(a), BotCheck::Verifier(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Serialize for BotCheck {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(tag = "kind", rename_all = "snake_case")]
        enum Wire {
            Honeypot,
            ProofOfWork { bits: u8 },
            Verifier { name: &'static str },
        }
        match self {
            BotCheck::Honeypot => Wire::Honeypot,
            BotCheck::ProofOfWork { bits } => Wire::ProofOfWork { bits: *bits },
            BotCheck::Verifier(v) => Wire::Verifier { name: v.name() },
        }
        .serialize(s)
    }
}

/// Why a verifier could not decide.
#[derive(Debug, thiserror::Error)]
#[error("bot verifier: {0}")]
pub struct BotVerifyError(pub String);

/// A Turnstile / hCaptcha-style service: is this token from a human?
pub trait BotVerifier: Send + Sync + 'static {
    /// A short name for logs and the manifest.
    fn name(&self) -> &'static str;
    /// `Ok(true)` only for a token the service vouches for.
    fn verify<'a>(
        &'a self,
        token: &'a str,
        client_ip: IpAddr,
    ) -> BoxFuture<'a, Result<bool, BotVerifyError>>;
}

/// Mints and verifies proof-of-work challenges.
pub struct Challenges {
    keys: KeyRing,
}

const NONCE: usize = 16;
const PAYLOAD: usize = NONCE + 1 + 8;
const TAG: usize = 16;

/// Why a solution was refused (logged, never sent).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PowError {
    /// Neither the `X-Portcullis-Pow` header nor the `_pow` field was sent.
    #[error("missing proof of work")]
    Missing,
    /// Not `challenge:counter`, or the challenge is not a decodable token.
    #[error("malformed proof of work")]
    Malformed,
    /// The MAC matches no verifying key for this action: forged, edited or
    /// minted for another action.
    #[error("challenge signature invalid (forged or for another action)")]
    BadSignature,
    /// Past the expiry signed into the challenge.
    #[error("challenge expired")]
    Expired,
    /// Signed with fewer bits than the action now requires.
    #[error("challenge easier than required")]
    TooEasy,
    /// The hash has fewer leading zero bits than the challenge asks for.
    #[error("counter does not solve the challenge")]
    Unsolved,
    /// Already spent in the counter store.
    #[error("challenge already used")]
    Replayed,
}

/// A verified, not yet spent, challenge.
#[derive(Debug)]
pub struct Solved {
    /// The challenge's random nonce (base64url), the key it is spent under.
    pub nonce: String,
    /// When the challenge expires (unix seconds); it need stay spent only
    /// until then.
    pub expires_at: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Challenges {
    /// Mints under the current keys' challenge subkey and accepts any
    /// verifying key, so challenges survive a key rotation.
    pub fn new(keys: KeyRing) -> Self {
        Challenges { keys }
    }

    fn tag(key: &[u8], action: &str, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(b"portcullis/pow/v1\0");
        mac.update(action.as_bytes());
        mac.update(b"\0");
        mac.update(payload);
        mac
    }

    /// A fresh challenge for `action` at `bits`, valid for `ttl`.
    pub fn mint(&self, action: &str, bits: u8, ttl: Duration) -> String {
        self.mint_at(action, bits, unix_now() + ttl.as_secs())
    }

    /// A challenge that expires at `expires_at` (unix seconds); for tests.
    pub fn mint_at(&self, action: &str, bits: u8, expires_at: u64) -> String {
        let mut buf = [0u8; PAYLOAD + TAG];
        buf[..NONCE].copy_from_slice(&rand::random::<[u8; NONCE]>());
        buf[NONCE] = bits.min(MAX_BITS);
        buf[NONCE + 1..PAYLOAD].copy_from_slice(&expires_at.to_be_bytes());
        let key = self.keys.current.get(Purpose::Challenges);
        let tag = Self::tag(key.bytes(), action, &buf[..PAYLOAD])
            .finalize()
            .into_bytes();
        buf[PAYLOAD..].copy_from_slice(&tag[..TAG]);
        URL_SAFE_NO_PAD.encode(buf)
    }

    /// Checks `challenge:counter` for `action` needing at least `min_bits`:
    /// signature, expiry, difficulty, one SHA-256. Does not spend it.
    pub fn verify(&self, action: &str, solution: &str, min_bits: u8) -> Result<Solved, PowError> {
        let (challenge, counter) = solution
            .trim()
            .rsplit_once(':')
            .ok_or(PowError::Malformed)?;
        let counter: u64 = counter.parse().map_err(|_| PowError::Malformed)?;
        if challenge.len() != (PAYLOAD + TAG).div_ceil(3) * 4 - 1 {
            return Err(PowError::Malformed);
        }
        let mut buf = [0u8; PAYLOAD + TAG];
        match URL_SAFE_NO_PAD.decode_slice(challenge, &mut buf) {
            Ok(n) if n == PAYLOAD + TAG => {}
            _ => return Err(PowError::Malformed),
        }
        let (payload, tag) = buf.split_at(PAYLOAD);
        let signed = self.keys.verifying().any(|ks| {
            Self::tag(ks.get(Purpose::Challenges).bytes(), action, payload)
                .verify_truncated_left(tag)
                .is_ok()
        });
        if !signed {
            return Err(PowError::BadSignature);
        }
        let bits = payload[NONCE];
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&payload[NONCE + 1..]);
        let expires_at = u64::from_be_bytes(exp);
        if unix_now() > expires_at {
            return Err(PowError::Expired);
        }
        if bits < min_bits.min(MAX_BITS) {
            return Err(PowError::TooEasy);
        }
        if leading_zero_bits(challenge, counter) < bits as u32 {
            return Err(PowError::Unsolved);
        }
        Ok(Solved {
            nonce: URL_SAFE_NO_PAD.encode(&payload[..NONCE]),
            expires_at,
        })
    }
}

/// Leading zero bits of `SHA-256(challenge ‖ counter as 8 big-endian bytes)`.
pub fn leading_zero_bits(challenge: &str, counter: u64) -> u32 {
    let mut h = Sha256::new();
    h.update(challenge.as_bytes());
    h.update(counter.to_be_bytes());
    let digest = h.finalize();
    let mut zeros = 0;
    for byte in digest {
        if byte == 0 {
            zeros += 8;
        } else {
            zeros += byte.leading_zeros();
            break;
        }
    }
    zeros
}

/// The difficulty a challenge asks for (0 for garbage).
pub fn challenge_bits(challenge: &str) -> u8 {
    URL_SAFE_NO_PAD
        .decode(challenge)
        .ok()
        .and_then(|b| b.get(NONCE).copied())
        .unwrap_or(0)
}

/// Finds a counter for `challenge` (what the client runtime does; here for
/// tests and non-browser clients).
pub fn solve(challenge: &str) -> String {
    let bits = challenge_bits(challenge) as u32;
    let counter = (0u64..)
        .find(|c| leading_zero_bits(challenge, *c) >= bits)
        .unwrap_or(0);
    format!("{challenge}:{counter}")
}

fn failed(reason: &dyn fmt::Display) -> Rejection {
    let r = Rejection::new(ErrorCode::BotCheckFailed);
    tracing::debug!(digest = %r.digest, reason = %reason, "bot check failed");
    r
}

/// What a request offers the bot checks. The pipeline assembles it from
/// the reserved fields the decoder split off and the request headers (a
/// header, the client runtime's way, wins over the field); this module
/// needs neither the decoder's types nor the header map.
#[derive(Clone, Copy, Debug, Default)]
pub struct BotEvidence<'a> {
    /// The honeypot field (`_hp`): `Some` when the form sent it, even empty.
    pub honeypot: Option<&'a str>,
    /// A proof-of-work solution, `challenge:counter`
    /// (`X-Portcullis-Pow` or `_pow`).
    pub pow: Option<&'a str>,
    /// A bot-verifier token (`X-Portcullis-Bot` or `_bot`).
    pub token: Option<&'a str>,
}

/// Runs an action's bot checks.
pub(crate) async fn run(
    checks: &[BotCheck],
    action: &str,
    evidence: BotEvidence<'_>,
    client_ip: IpAddr,
    challenges: &Challenges,
    spent: &dyn CounterStore,
    fail_open: bool,
) -> Result<(), Rejection> {
    if checks.is_empty() {
        return Ok(());
    }
    if evidence.honeypot.is_some_and(|v| !v.trim().is_empty()) {
        return Err(failed(&"honeypot field filled"));
    }
    if evidence.honeypot.is_none() && checks.contains(&BotCheck::Honeypot) {
        return Err(failed(&"honeypot field missing"));
    }
    for check in checks {
        match check {
            BotCheck::Honeypot => {}
            BotCheck::ProofOfWork { bits } => {
                let solution = evidence.pow.ok_or_else(|| failed(&PowError::Missing))?;
                let solved = challenges
                    .verify(action, solution, *bits)
                    .map_err(|e| failed(&e))?;
                let key = format!("pow:{}", solved.nonce);
                match spent.spend_once(&key, solved.expires_at * 1_000_000).await {
                    Ok(true) => {}
                    Ok(false) => return Err(failed(&PowError::Replayed)),
                    Err(e) if fail_open => {
                        tracing::debug!(error = %e, "spent-challenge store unavailable; fail-open");
                    }
                    Err(e) => {
                        let r = Rejection::new(ErrorCode::LimiterUnavailable).header(
                            http::header::RETRY_AFTER,
                            http::HeaderValue::from_static("1"),
                        );
                        tracing::debug!(digest = %r.digest, error = %e, "spent-challenge store unavailable");
                        return Err(r);
                    }
                }
            }
            BotCheck::Verifier(v) => {
                let token = evidence
                    .token
                    .filter(|t| !t.is_empty() && t.len() <= 4096)
                    .ok_or_else(|| failed(&"missing verifier token"))?;
                match v.verify(token, client_ip).await {
                    Ok(true) => {}
                    Ok(false) => {
                        return Err(failed(&format_args!("{} refused the token", v.name())));
                    }
                    Err(e) => return Err(failed(&e)),
                }
            }
        }
    }
    Ok(())
}

/// A siteverify-style verifier over HTTPS: POSTs `secret`, `response` and
/// `remoteip` as a form and expects JSON `{"success": true}` (the protocol
/// Cloudflare Turnstile, hCaptcha and reCAPTCHA share).
///
/// The request carries the site secret, so it only ever goes over TLS
/// (rustls): an `http://` URL fails every check closed, and the server's
/// certificate must chain to the Mozilla root set compiled into the binary
/// (`webpki-roots`: no dependency on the host's CA bundle, so a minimal
/// container image works) or to a root added with
/// [`HttpVerifier::trust_root_pem`] (a private verification service, or a
/// test server). Certificate checking cannot be switched off. Redirects are
/// not followed; a call times out after 3 s. Every failure to get an answer
/// — refused connection, TLS or certificate error, timeout, non-2xx status,
/// unreadable JSON — is a [`BotVerifyError`], which fails the check closed.
#[cfg(feature = "bot-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "bot-http")))]
pub struct HttpVerifier {
    name: &'static str,
    url: String,
    secret: zeroize::Zeroizing<String>,
    /// Roots trusted besides the compiled-in ones (see `trust_root_pem`).
    extra_roots: Vec<reqwest::Certificate>,
    /// `Err` if the TLS client could not be built: every check then fails
    /// closed with that reason instead of falling back to a weaker client.
    http: Result<reqwest::Client, String>,
}

/// Why an [`HttpVerifier`] could not be configured.
#[cfg(feature = "bot-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "bot-http")))]
#[derive(Debug, thiserror::Error)]
pub enum HttpVerifierError {
    /// The bytes hold no PEM certificate block.
    #[error("no PEM certificate (`-----BEGIN CERTIFICATE-----`) in the root certificate bytes")]
    NoCertificate,
    /// A PEM block that is not a valid certificate (the reason, with its
    /// sources).
    #[error("root certificate: {0}")]
    Certificate(String),
    /// The TLS client could not be built with the added roots (the reason,
    /// with its sources).
    #[error("TLS client: {0}")]
    Client(String),
}

#[cfg(feature = "bot-http")]
impl HttpVerifier {
    /// Any siteverify endpoint (an `https://` URL); times out after 3 s
    /// (then fails closed).
    pub fn new(name: &'static str, url: impl Into<String>, secret: impl Into<String>) -> Self {
        let url = url.into();
        if !url.starts_with("https://") {
            tracing::warn!(
                verifier = name,
                "bot verifier URL is not https://: every check will fail closed"
            );
        }
        HttpVerifier {
            name,
            url,
            secret: zeroize::Zeroizing::new(secret.into()),
            extra_roots: Vec::new(),
            http: Self::client(&[]).map_err(|e| error_chain(&e)),
        }
    }

    /// Cloudflare Turnstile, with the site's secret key.
    pub fn turnstile(secret: impl Into<String>) -> Self {
        Self::new(
            "turnstile",
            "https://challenges.cloudflare.com/turnstile/v0/siteverify",
            secret,
        )
    }

    /// hCaptcha, with the site's secret key.
    pub fn hcaptcha(secret: impl Into<String>) -> Self {
        Self::new("hcaptcha", "https://api.hcaptcha.com/siteverify", secret)
    }

    /// Also trusts the CA certificate(s) in `pem` (one or more PEM blocks)
    /// for the endpoint's certificate, besides the compiled-in roots: a
    /// verification service behind a private CA, or a test server.
    pub fn trust_root_pem(mut self, pem: &[u8]) -> Result<Self, HttpVerifierError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| HttpVerifierError::Certificate(error_chain(&e)))?;
        if certs.is_empty() {
            return Err(HttpVerifierError::NoCertificate);
        }
        self.extra_roots.extend(certs);
        self.http = Ok(Self::client(&self.extra_roots)
            .map_err(|e| HttpVerifierError::Client(error_chain(&e)))?);
        Ok(self)
    }

    fn client(extra_roots: &[reqwest::Certificate]) -> reqwest::Result<reqwest::Client> {
        extra_roots
            .iter()
            .fold(
                reqwest::Client::builder()
                    .use_rustls_tls()
                    .https_only(true)
                    .timeout(Duration::from_secs(3))
                    .redirect(reqwest::redirect::Policy::none()),
                |builder, root| builder.add_root_certificate(root.clone()),
            )
            .build()
    }
}

/// `e` and its sources on one line ("error sending request: …: invalid peer
/// certificate: UnknownIssuer"): reqwest's own message alone hides the cause.
#[cfg(feature = "bot-http")]
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(feature = "bot-http")]
impl BotVerifier for HttpVerifier {
    fn name(&self) -> &'static str {
        self.name
    }

    fn verify<'a>(
        &'a self,
        token: &'a str,
        client_ip: IpAddr,
    ) -> BoxFuture<'a, Result<bool, BotVerifyError>> {
        Box::pin(async move {
            #[derive(serde::Deserialize)]
            struct Answer {
                success: bool,
            }
            let ip = client_ip.to_string();
            let form = [
                ("secret", self.secret.as_str()),
                ("response", token),
                ("remoteip", ip.as_str()),
            ];
            let http = self.http.as_ref().map_err(|e| BotVerifyError(e.clone()))?;
            let response = http
                .post(&self.url)
                .form(&form)
                .send()
                .await
                .map_err(|e| BotVerifyError(error_chain(&e.without_url())))?;
            if !response.status().is_success() {
                return Err(BotVerifyError(format!("status {}", response.status())));
            }
            let answer: Answer = response
                .json()
                .await
                .map_err(|e| BotVerifyError(error_chain(&e.without_url())))?;
            Ok(answer.success)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterSecret;

    fn ch() -> Challenges {
        Challenges::new(KeyRing::new(
            &MasterSecret::from_bytes(vec![3; 32]).unwrap(),
            None,
        ))
    }

    #[test]
    fn solve_verify_and_tamper() {
        let c = ch();
        let token = c.mint("contact.send", 8, CHALLENGE_TTL);
        let solution = solve(&token);
        assert!(c.verify("contact.send", &solution, 8).is_ok());
        assert_eq!(
            c.verify("auth.login", &solution, 8).unwrap_err(),
            PowError::BadSignature
        );
        assert_eq!(
            c.verify("contact.send", &solution, 9).unwrap_err(),
            PowError::TooEasy
        );
        // A counter that does not solve it (find one).
        let (t, n) = solution.rsplit_once(':').unwrap();
        let n: u64 = n.parse().unwrap();
        let bad = (n + 1..).find(|c| leading_zero_bits(t, *c) < 8).unwrap();
        assert_eq!(
            c.verify("contact.send", &format!("{t}:{bad}"), 8)
                .unwrap_err(),
            PowError::Unsolved
        );
        // Difficulty bits cannot be lowered: flipping any byte breaks the MAC.
        let mut raw = URL_SAFE_NO_PAD.decode(t).unwrap();
        raw[NONCE] = 0;
        let easier = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(
            c.verify("contact.send", &format!("{easier}:0"), 0)
                .unwrap_err(),
            PowError::BadSignature
        );
        let old = c.mint_at("contact.send", 4, unix_now() - 1);
        assert_eq!(
            c.verify("contact.send", &solve(&old), 4).unwrap_err(),
            PowError::Expired
        );
        for junk in ["", "abc", "abc:1", &format!("{t}:x"), &format!("{t}x:1")] {
            assert!(c.verify("contact.send", junk, 0).is_err(), "{junk}");
        }
    }
}
