//! The no-JavaScript half of the action-state contract: a sealed, single-use
//! flash cookie.
//!
//! Why: without the client runtime a form post is a navigation. On a 422 the
//! browser would otherwise land on a bare error page and the user would lose
//! what they typed. Instead the pipeline answers `303` back to the form's
//! (validated, same-origin) return path and sets a short-lived cookie
//! carrying the field errors, form errors and submitted values; the next
//! render of that page ([`crate::Page`]) opens it and [`crate::render::Form`]
//! / [`crate::field`] put the errors into the same slots the client runtime
//! fills and the values back into the inputs. So both paths show the same
//! thing in the same place.
//!
//! Why sealed: the cookie holds what the user typed and what the server said.
//! It is encrypted and authenticated with the key ring's [`Purpose::Flash`]
//! subkey (the seal format of [`crate::seal`], under its own key, so a flash
//! never opens as a bound argument and vice versa), bound to the session and
//! to an expiry of [`FLASH_TTL`]. A flash from another session, a tampered
//! one or an old one is ignored.
//!
//! Why single use: the page that consumes it deletes the cookie in the same
//! response (the [`scope`] layer around page handlers does it), and its
//! random nonce is spent in the counter store (memory or Redis, like a
//! proof-of-work challenge), so a copy of the cookie replayed later renders
//! nothing.
//!
//! Never secrets: values of fields whose name contains `password`, `secret`,
//! `token` or `key` are not carried (the user retypes them); bot-check and
//! other reserved `_` fields neither. Only urlencoded bodies carry values
//! (a multipart form with files gets its errors back, not its values).
//!
//! Where: back to the page the form is on, which the form names in its action
//! URL (`_back`, when its success return path is elsewhere; else `_return`),
//! validated by [`crate::respond::safe_return_path`]. Never a `Referer`.
//!
//! Which form: a page may render several forms for one action (a rename form
//! per project). Each [`crate::Page::form`] call for an action gets an
//! ordinal; forms after the first carry it in their action URL as `_form`,
//! and the flash remembers it, so only the form that was submitted shows the
//! errors.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};

use crate::body::BodyKind;
use crate::error::{ErrorCode, FieldErrors, Rejection};
use crate::keys::{KeyRing, Purpose};
use crate::respond::{self, ClientKind};
use crate::seal::{self, Binding, OpenError, Sealer};
use crate::store::CounterStore;

/// How long a flash lives: the 303 is followed at once, so a minute is ample.
pub const FLASH_TTL: Duration = Duration::from_secs(60);

/// The AAD "action" of every flash seal.
const FLASH_CONTEXT: &str = "portcullis/flash";

/// Browsers cap a cookie at about 4 KB; the sealed text stays under this.
pub const MAX_COOKIE_VALUE: usize = 3800;
/// A carried value is cut to this many characters.
pub const MAX_VALUE_CHARS: usize = 2000;

/// Name fragments of fields whose values are never carried.
const SECRET_NAMES: [&str; 4] = ["password", "secret", "token", "key"];

/// The sealer flash cookies are made and opened with: the seal format under
/// the key ring's [`Purpose::Flash`] subkey.
pub fn sealer(keys: &KeyRing) -> Sealer {
    Sealer::for_purpose(keys, Purpose::Flash)
}

/// The flash cookie's name (with `__Host-` when cookies are `Secure`).
pub fn cookie_name(config: &crate::Config) -> &'static str {
    crate::wire::cookie::flash(config.secure_cookies)
}

/// What a failed no-JS submission hands to the next render of its page.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flash {
    /// The page (return path) it is for.
    #[serde(rename = "p")]
    pub path: String,
    /// The action name (sealed, so it never reaches the wire in clear).
    #[serde(rename = "a")]
    pub action: String,
    /// Which form of that action on the page.
    #[serde(rename = "o")]
    pub ordinal: usize,
    /// The refusal's per-field messages, shown next to their inputs.
    #[serde(rename = "f")]
    pub field_errors: FieldErrors,
    /// The refusal's messages for the form as a whole.
    #[serde(rename = "e")]
    pub form_errors: Vec<String>,
    /// Submitted values, secrets removed.
    #[serde(rename = "v")]
    pub values: BTreeMap<String, String>,
    /// Random; spent on first use.
    #[serde(rename = "n")]
    nonce: String,
}

/// Whether a field's value may ride in the flash.
pub fn carries_value(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.starts_with('_') && !SECRET_NAMES.iter().any(|s| lower.contains(s))
}

impl Flash {
    /// A flash for `action` (its `ordinal`-th form on `path`) from a refusal
    /// and the submitted urlencoded body, if any.
    pub fn from_rejection(
        path: &str,
        action: &str,
        ordinal: usize,
        rejection: &Rejection,
        urlencoded: Option<&[u8]>,
    ) -> Self {
        let mut values = BTreeMap::new();
        if let Some(body) = urlencoded {
            for (k, v) in form_urlencoded::parse(body) {
                if carries_value(&k) && !values.contains_key(k.as_ref()) {
                    values.insert(
                        k.into_owned(),
                        v.chars().take(MAX_VALUE_CHARS).collect::<String>(),
                    );
                }
            }
        }
        let nonce: [u8; 16] = rand::random();
        Flash {
            path: path.to_owned(),
            action: action.to_owned(),
            ordinal,
            field_errors: rejection.field_errors.clone(),
            form_errors: rejection.form_errors.clone(),
            values,
            nonce: crate::hex(&nonce),
        }
    }

    /// Seals the flash, dropping values (then errors) until it fits a cookie.
    pub fn seal(mut self, sealer: &Sealer, binding: &Binding, expires: u64) -> Option<String> {
        for _ in 0..3 {
            match sealer.seal_at(&self, FLASH_CONTEXT, binding, expires) {
                Ok(text) if text.len() <= MAX_COOKIE_VALUE => return Some(text),
                // Too long for a cookie, or for a seal at all (JSON escapes
                // can make a 2,000-character value 12 KB): shed and retry.
                Ok(_) | Err(seal::SealError::TooLong(_)) => {}
                Err(_) => return None,
            }
            if !self.values.is_empty() {
                self.values.clear();
            } else {
                self.field_errors.clear();
                self.form_errors = vec![ErrorCode::InvalidInput.default_message().into()];
            }
        }
        None
    }

    /// Opens a sealed flash made for `binding`, if unexpired at `now`.
    pub fn open(
        sealer: &Sealer,
        text: &str,
        binding: &Binding,
        now: u64,
    ) -> Result<Self, OpenError> {
        sealer.open_at(text, FLASH_CONTEXT, binding, now)
    }

    /// The key its single use is recorded under.
    fn spend_key(&self) -> String {
        format!("flash:{}", self.nonce)
    }
}

/// What the pipeline remembers about a no-JS request, in case it fails.
pub(crate) struct Source {
    action: &'static str,
    binding: Binding,
    ordinal: usize,
    back: Option<String>,
    urlencoded: Option<Bytes>,
}

impl Source {
    pub(crate) fn new(
        action: &'static str,
        binding: Binding,
        query: Option<&str>,
        kind: &BodyKind,
        body: &Bytes,
    ) -> Self {
        let param = |name: &str| {
            query.and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            })
        };
        Source {
            action,
            binding,
            ordinal: param(crate::wire::field::FORM)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            back: param(crate::wire::field::BACK),
            urlencoded: matches!(kind, BodyKind::UrlEncoded).then(|| body.clone()),
        }
    }
}

/// For a browser without the client runtime whose submission failed
/// validation: `303` back to the form's page with the flash cookie. `None`
/// (render the error page) for any other client, code or a missing/unsafe
/// return path.
pub(crate) fn redirect_back(
    sealer: &Sealer,
    config: &crate::Config,
    client: ClientKind,
    rejection: &Rejection,
    return_to: Option<&str>,
    source: Option<Source>,
) -> Option<Response> {
    if client != ClientKind::Html || rejection.code != ErrorCode::InvalidInput {
        return None;
    }
    let source = source?;
    // Back to the form's page (never a Referer): `_back` when the form's
    // success path is elsewhere, else its return path.
    let to = respond::safe_return_path(source.back.as_deref().or(return_to)?)?;
    let flash = Flash::from_rejection(
        to,
        source.action,
        source.ordinal,
        rejection,
        source.urlencoded.as_deref(),
    );
    let sealed = flash.seal(
        sealer,
        &source.binding,
        seal::unix_now() + FLASH_TTL.as_secs(),
    )?;
    // The values are the user's own, but a registered secret must not leave.
    respond::scan(to.as_bytes()).ok()?;
    let mut response = respond::see_other(to);
    let cookie = format!(
        "{}={sealed}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        cookie_name(config),
        FLASH_TTL.as_secs(),
        if config.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    );
    response
        .headers_mut()
        .append(header::SET_COOKIE, HeaderValue::from_str(&cookie).ok()?);
    Some(response)
}

// ---- page side ------------------------------------------------------------

/// Per page request: the flash (if one was consumed) and which form is
/// being rendered, for [`crate::field`] to consult.
#[derive(Default)]
struct RenderState {
    flash: Option<Flash>,
    clear_cookie: Option<&'static str>,
    counters: HashMap<&'static str, usize>,
    active: Option<(&'static str, usize)>,
    focused: bool,
}

tokio::task_local! {
    static RENDER: RefCell<RenderState>;
}

/// Layer around page handlers: gives [`crate::Page`] a place to put the
/// flash it consumed, and deletes the cookie on the response when it did.
pub(crate) async fn scope(request: Request, next: Next) -> Response {
    let (mut response, clear) = RENDER
        .scope(RefCell::new(RenderState::default()), async move {
            let response = next.run(request).await;
            let clear = RENDER.with(|s| s.borrow().clear_cookie);
            (response, clear)
        })
        .await;
    if let Some(name) = clear {
        let cookie = format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Called by the `Page` extractor: opens the flash cookie meant for `path`
/// in this session, spends it, and keeps it for this render.
pub(crate) async fn consume(
    sealer: &Sealer,
    config: &crate::Config,
    counters: &dyn CounterStore,
    headers: &HeaderMap,
    binding: &Binding,
    path: &str,
) {
    let name = cookie_name(config);
    let Some(text) = cookie_value(headers, name) else {
        return;
    };
    let flash = match Flash::open(sealer, text, binding, seal::unix_now()) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(error = %e, "flash cookie ignored");
            set_clear(name);
            return;
        }
    };
    if flash.path != path {
        // Meant for another page (a second tab); it expires on its own.
        return;
    }
    set_clear(name);
    let expires_us = (seal::unix_now() + FLASH_TTL.as_secs() + 1) * 1_000_000;
    match counters.spend_once(&flash.spend_key(), expires_us).await {
        Ok(true) => {
            let _ = RENDER.try_with(|s| s.borrow_mut().flash = Some(flash));
        }
        Ok(false) => tracing::debug!("flash cookie replayed; ignored"),
        Err(e) => tracing::debug!(error = %e, "flash not shown: limiter unavailable"),
    }
}

fn set_clear(name: &'static str) {
    let _ = RENDER.try_with(|s| s.borrow_mut().clear_cookie = Some(name));
}

/// Called by `Page::form`: the ordinal of this form among the page's forms
/// for `action`; it becomes the active form for the fields that follow.
pub(crate) fn next_form(action: &'static str) -> usize {
    RENDER
        .try_with(|s| {
            let mut s = s.borrow_mut();
            let counter = s.counters.entry(action).or_insert(0);
            let ordinal = *counter;
            *counter += 1;
            s.active = Some((action, ordinal));
            ordinal
        })
        .unwrap_or(0)
}

/// The flash's form errors, if the flash is for this form.
pub(crate) fn form_errors(action: &str, ordinal: usize) -> Vec<String> {
    RENDER
        .try_with(|s| match &s.borrow().flash {
            Some(f) if f.action == action && f.ordinal == ordinal => {
                let mut out = f.form_errors.clone();
                if out.is_empty() && f.field_errors.is_empty() {
                    out.push(ErrorCode::InvalidInput.default_message().into());
                }
                out
            }
            _ => Vec::new(),
        })
        .unwrap_or_default()
}

/// [`form_errors`] followed by every field error, for a grouped form
/// ([`crate::render::Form::in_group`]) whose fields have no slots.
pub(crate) fn all_errors(action: &str, ordinal: usize) -> Vec<String> {
    let mut out = form_errors(action, ordinal);
    let _ = RENDER.try_with(|s| {
        if let Some(f) = &s.borrow().flash
            && f.action == action
            && f.ordinal == ordinal
        {
            for errors in f.field_errors.values() {
                out.extend(errors.iter().cloned());
            }
        }
    });
    out
}

/// What the flash says about field `name` of the form being rendered.
pub(crate) struct FieldState {
    pub errors: Vec<String>,
    pub value: Option<String>,
    /// The first invalid field of the form gets `autofocus`.
    pub focus: bool,
}

pub(crate) fn field_state(name: &str) -> Option<FieldState> {
    RENDER
        .try_with(|s| {
            let mut s = s.borrow_mut();
            let active = s.active?;
            let flash = s.flash.as_ref()?;
            if flash.action != active.0 || flash.ordinal != active.1 {
                return None;
            }
            let errors = flash.field_errors.get(name).cloned().unwrap_or_default();
            let value = flash.values.get(name).cloned();
            let focus = !errors.is_empty() && !s.focused;
            if focus {
                s.focused = true;
            }
            Some(FieldState {
                errors,
                value,
                focus,
            })
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterSecret;
    use crate::store::{CounterStore, MemoryCounters};

    fn ring(byte: u8) -> KeyRing {
        KeyRing::new(&MasterSecret::from_bytes(vec![byte; 32]).unwrap(), None)
    }

    fn sample() -> Flash {
        let mut r = Rejection::invalid(FieldErrors::new(), vec!["Check the form.".into()]);
        r.field_errors
            .insert("name".into(), vec!["too short".into()]);
        Flash::from_rejection(
            "/projects",
            "projects.rename",
            1,
            &r,
            Some(b"projectId=4&name=x&password=hunter22&apiKey=k&csrfToken=t&_hp=&clientSecret=s"),
        )
    }

    #[test]
    fn carries_errors_and_values_but_never_secrets() {
        let f = sample();
        assert_eq!(f.values.get("name").map(String::as_str), Some("x"));
        assert_eq!(f.values.get("projectId").map(String::as_str), Some("4"));
        for secret in ["password", "apiKey", "csrfToken", "_hp", "clientSecret"] {
            assert!(!f.values.contains_key(secret), "{secret} carried");
        }
        assert_eq!(f.field_errors["name"], vec!["too short".to_string()]);
        assert_eq!(f.ordinal, 1);
    }

    #[test]
    fn round_trip_and_refusals() {
        let sealer = sealer(&ring(1));
        let me = Binding::session("session-a");
        let now = seal::unix_now();
        let f = sample();
        let text = f.clone().seal(&sealer, &me, now + 60).unwrap();
        assert!(!text.contains("hunter22") && !text.contains("too short"));
        assert_eq!(Flash::open(&sealer, &text, &me, now).unwrap(), f);
        // Expired.
        assert_eq!(
            Flash::open(&sealer, &text, &me, now + 61),
            Err(OpenError::Expired)
        );
        // Another session.
        assert_eq!(
            Flash::open(&sealer, &text, &Binding::session("session-b"), now),
            Err(OpenError::Unauthentic)
        );
        assert_eq!(
            Flash::open(&sealer, &text, &Binding::Anonymous, now),
            Err(OpenError::Unauthentic)
        );
        // Tampered: flip one character in the middle.
        let mut bytes = text.clone().into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert!(Flash::open(&sealer, &tampered, &me, now).is_err());
        // Another secret.
        let other = super::sealer(&ring(2));
        assert!(Flash::open(&other, &text, &me, now).is_err());
        // A bound-argument seal (other purpose key) does not open as a flash.
        let sealing = Sealer::for_purpose(&ring(1), Purpose::Sealing);
        assert!(Flash::open(&sealing, &text, &me, now).is_err());
    }

    #[test]
    fn oversized_values_are_dropped_to_fit_a_cookie() {
        let sealer = sealer(&ring(1));
        let body = format!(
            "a={}&b={}&c={}",
            "x".repeat(2000),
            "y".repeat(2000),
            "z".repeat(2000)
        );
        let f = Flash::from_rejection(
            "/",
            "x",
            0,
            &Rejection::new(ErrorCode::InvalidInput),
            Some(body.as_bytes()),
        );
        let text = f
            .seal(&sealer, &Binding::Anonymous, seal::unix_now() + 60)
            .unwrap();
        assert!(text.len() <= MAX_COOKIE_VALUE);
        let back = Flash::open(&sealer, &text, &Binding::Anonymous, seal::unix_now()).unwrap();
        assert!(back.values.is_empty());
    }

    /// Regression (found by the `flash` fuzz target): a value of control
    /// characters, which JSON escapes six-fold, made the flash longer than
    /// a seal may be; `seal` gave up instead of dropping the values, so a
    /// no-JS user got the bare error page and lost the whole form.
    #[test]
    fn regress_escaped_values_longer_than_the_seal_cap_are_dropped_not_fatal() {
        let sealer = sealer(&ring(1));
        let body = format!("name={}&projectId=4", "%01".repeat(MAX_VALUE_CHARS));
        let mut r = Rejection::invalid(FieldErrors::new(), Vec::new());
        r.field_errors.insert("name".into(), vec!["bad".into()]);
        let f = Flash::from_rejection("/projects", "projects.rename", 0, &r, Some(body.as_bytes()));
        let text = f
            .seal(&sealer, &Binding::Anonymous, seal::unix_now() + 60)
            .expect("a flash always seals");
        assert!(text.len() <= MAX_COOKIE_VALUE);
        let back = Flash::open(&sealer, &text, &Binding::Anonymous, seal::unix_now()).unwrap();
        assert!(back.values.is_empty());
        assert_eq!(back.field_errors["name"], vec!["bad".to_string()]);
    }

    #[tokio::test]
    async fn single_use_replay_is_refused() {
        let limiter = MemoryCounters::new();
        let f = sample();
        let exp = (seal::unix_now() + 61) * 1_000_000;
        assert!(limiter.spend_once(&f.spend_key(), exp).await.unwrap());
        assert!(!limiter.spend_once(&f.spend_key(), exp).await.unwrap());
    }

    #[test]
    fn cookie_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; portcullis_flash=abc-_; portcullis=s"),
        );
        assert_eq!(cookie_value(&h, "portcullis_flash"), Some("abc-_"));
        assert_eq!(cookie_value(&h, "portcullis"), Some("s"));
        assert_eq!(cookie_value(&h, "nope"), None);
    }
}
