//! The wire contract: every name a request, a response, a rendered page or
//! the client runtime (`client/portcullis.js`) carries, and the two JSON
//! envelopes an action answers with.
//!
//! Why one module: these names are a protocol between four parties — the
//! pipeline that reads them, the renderer that writes them into forms, the
//! client runtime that reads and sends them, and every test (the
//! framework's, the demo's, an adopter's) that speaks HTTP to an app. When
//! each party spelled them itself, renaming one meant finding six modules,
//! the script and a dozen tests, and a miss was a silent break (a header
//! nobody reads). Now the Rust side names them only here (adopters' tests
//! should use these constants too), and two tests pin the other sides: the
//! script uses exactly these names (this module's tests) and [`crate::render`]
//! renders exactly the attributes listed here.
//!
//! Header names are lower case, as `http::HeaderName` keeps them (HTTP
//! header names are case-insensitive; the client runtime writes them in
//! their conventional capitalisation).
//!
//! This module imports nothing from the crate: it is the bottom layer, so
//! anything may name the wire without pulling in what implements it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use serde_json::value::RawValue;

/// Path prefix of every action endpoint: `POST /_action/{opaque-id}`.
pub const ACTION_PREFIX: &str = "/_action/";

/// Path prefix of the framework's own routes: the content-hashed client
/// runtime and stylesheet, and the CSP report sink.
pub const ASSET_PREFIX: &str = "/_portcullis/";

/// The Content-Security-Policy of a served file (`action::upload::download`):
/// nothing may load and the document is sandboxed. Stricter than any page
/// policy, so the security-header layer keeps it where a response carries
/// it (and replaces any other CSP a handler set).
pub const DOWNLOAD_CSP: &str = "default-src 'none'; sandbox";

/// Where browsers send Content-Security-Policy violation reports
/// (`report-uri` and the `Reporting-Endpoints` group).
pub const CSP_REPORT_PATH: &str = "/_portcullis/csp-report";

/// The query parameter a sign-in (or re-authentication) link carries the
/// page to come back to in: `/login?return=%2Fprojects`. Read by the app's
/// sign-in page; written by error pages, [`crate::Page::require_viewer`] and
/// the client runtime on a 401.
pub const LOGIN_RETURN_PARAM: &str = "return";

/// The id of the JSON data block (`<script type="application/json">`) in
/// which a page hands its script the actions it may call by client key
/// ([`ClientActions`], rendered by [`crate::Page::client_actions`], read by
/// the client runtime's `call` and `actionState`).
pub const CLIENT_ACTIONS_ID: &str = "portcullis-actions";

/// HTTP header names (lower case).
pub mod header {
    /// Request: the idempotency key of a mutation (client runtime, API
    /// callers); a retry with the same key replays the first answer. The
    /// no-JS form sends [`super::field::IDEMPOTENCY_KEY`] instead.
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    /// Response: `true` on an answer replayed from the idempotency store.
    pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
    /// Request: the fragment keys the caller's page shows (space
    /// separated), so an action that updates a tag can send them back
    /// re-rendered.
    pub const FRAGMENTS: &str = "portcullis-fragments";
    /// Request: a proof-of-work solution, `challenge:counter` (the client
    /// runtime's way; a form may send [`super::field::POW`]).
    pub const POW: &str = "x-portcullis-pow";
    /// Request: a bot-verifier token (or [`super::field::BOT_TOKEN`]).
    pub const BOT_TOKEN: &str = "x-portcullis-bot";
    /// Response: the request id of an action call, the same as in its log
    /// span and audit event.
    pub const REQUEST_ID: &str = "x-request-id";

    /// Every header above.
    pub const ALL: [&str; 6] = [
        IDEMPOTENCY_KEY,
        IDEMPOTENT_REPLAYED,
        FRAGMENTS,
        POW,
        BOT_TOKEN,
        REQUEST_ID,
    ];
    /// The ones the client runtime sends.
    pub const CLIENT: [&str; 3] = [IDEMPOTENCY_KEY, FRAGMENTS, POW];
}

/// Reserved field names: a leading `_` is the framework's. An input type
/// cannot declare them; any other `_` name in a body is an unknown field.
pub mod field {
    /// Body field and action-URL query parameter: where a no-JS form lands
    /// after success (validated as a same-origin path when used).
    pub const RETURN: &str = "_return";
    /// Action-URL query parameter: the page a form is on, when its success
    /// return path is elsewhere (where a no-JS 422 comes back to).
    pub const BACK: &str = "_back";
    /// Action-URL query parameter: which form of an action on a page was
    /// posted (the no-JS flash's target), when there are several.
    pub const FORM: &str = "_form";
    /// Body field: the honeypot, present and empty in every real form.
    pub const HONEYPOT: &str = "_hp";
    /// Body field: a proof-of-work solution (`challenge:counter`).
    pub const POW: &str = "_pow";
    /// Body field: a bot-verifier token.
    pub const BOT_TOKEN: &str = "_bot";
    /// Body field: the idempotency key of a no-JS form.
    pub const IDEMPOTENCY_KEY: &str = "_idem";

    /// The fields split off a body (any encoding) before the input type
    /// sees it.
    pub const BODY: [&str; 5] = [RETURN, HONEYPOT, POW, BOT_TOKEN, IDEMPOTENCY_KEY];
    /// The query parameters of a rendered form's action URL.
    pub const QUERY: [&str; 3] = [RETURN, BACK, FORM];
    /// The ones the client runtime reads or sends.
    pub const CLIENT: [&str; 1] = [RETURN];
}

/// `data-*` attributes shared by the renderer and the client runtime (the
/// header of `client/portcullis.js` says what each does there).
pub mod attr {
    /// On a form: the client runtime enhances it. On `<html>`: set to
    /// [`READY`] once the runtime has loaded.
    pub const PORTCULLIS: &str = "data-portcullis";
    /// The value of [`PORTCULLIS`] on `<html>` once the runtime runs.
    pub const READY: &str = "ready";
    /// On a form: calls may run in parallel (else one queue per page).
    pub const IDEMPOTENT: &str = "data-idempotent";
    /// On a form, or on the form group around grouped forms
    /// (`Form::in_group`): where a 401 sends the browser.
    pub const LOGIN: &str = "data-login";
    /// On the form of an action with a `.recent(..)` policy, and on every
    /// form group: where a 401 `reauthentication_required` sends the
    /// browser. (Without it the client runtime shows the refusal's message
    /// in the form instead.)
    pub const REAUTH: &str = "data-reauth";
    /// On a form: CSS selector an optimistic template is appended to.
    pub const OPTIMISTIC_TARGET: &str = "data-optimistic-target";
    /// On a form: id of the `<template>` appended optimistically.
    pub const OPTIMISTIC_TEMPLATE: &str = "data-optimistic-template";
    /// On a form: CSS selector whose text becomes a field's value at once.
    pub const OPTIMISTIC_TEXT: &str = "data-optimistic-text";
    /// On a form: the field [`OPTIMISTIC_TEXT`] takes its value from.
    pub const OPTIMISTIC_FIELD: &str = "data-optimistic-field";
    /// On a form: clear it after success.
    pub const RESET: &str = "data-reset";
    /// On a form: a proof-of-work challenge to solve before sending.
    pub const POW: &str = "data-pow";
    /// On a form: the challenge's difficulty in bits.
    pub const POW_BITS: &str = "data-pow-bits";
    /// On a form: CSS selector of the element that shows one result field.
    pub const RESULT_INTO: &str = "data-result-into";
    /// On a form: the result field shown in [`RESULT_INTO`].
    pub const RESULT_FIELD: &str = "data-result-field";
    /// The form-level error region (`role=alert`): in a form, or one
    /// directly inside a form group for all its grouped forms.
    pub const FORM_ERRORS: &str = "data-form-errors";
    /// A field's error slot; the value is the field's wire name.
    pub const ERROR_FOR: &str = "data-error-for";
    /// A fragment root; the value is the fragment key.
    pub const FRAGMENT: &str = "data-fragment";
    /// Inside an optimistic `<template>` (written by the app): filled with
    /// the value of the field it names.
    pub const SLOT: &str = "data-slot";
    /// Set by the client runtime on a form while its call is in flight.
    pub const PENDING: &str = "data-pending";
    /// Set by the client runtime on nodes added optimistically, until the
    /// call succeeds.
    pub const OPTIMISTIC: &str = "data-optimistic";
    /// Set by the client runtime on the submit buttons it disabled.
    pub const PC_DISABLED: &str = "data-pc-disabled";
    /// Set by the client runtime on the notice it shows after reloading a
    /// stale page.
    pub const NOTICE: &str = "data-portcullis-notice";
    /// Set by the client runtime on the `<progress>` it shows in a form
    /// while its files upload.
    pub const PROGRESS: &str = "data-portcullis-progress";

    /// Every attribute above (not [`READY`], a value): first the ones the
    /// framework renders ([`RENDERED`]), then [`SLOT`] (the app writes it)
    /// and the five the client runtime sets.
    pub const ALL: [&str; 22] = [
        PORTCULLIS,
        IDEMPOTENT,
        LOGIN,
        REAUTH,
        OPTIMISTIC_TARGET,
        OPTIMISTIC_TEMPLATE,
        OPTIMISTIC_TEXT,
        OPTIMISTIC_FIELD,
        RESET,
        POW,
        POW_BITS,
        RESULT_INTO,
        RESULT_FIELD,
        FORM_ERRORS,
        ERROR_FOR,
        FRAGMENT,
        SLOT,
        PENDING,
        OPTIMISTIC,
        PC_DISABLED,
        NOTICE,
        PROGRESS,
    ];
    /// The ones the framework renders (`Form`, `field`, fragments).
    pub const RENDERED: &[&str] = ALL.split_at(16).0;
}

/// Cookie names. Each has a `__Host-` form, used when cookies are
/// `Secure` (`Config::secure_cookies`): it pins the cookie to this host,
/// path `/` and https.
pub mod cookie {
    /// The session id (tower-sessions).
    pub const SESSION: &str = "portcullis";
    /// [`SESSION`] with secure cookies.
    pub const SESSION_SECURE: &str = "__Host-portcullis";
    /// The anonymous per-browser scope: a random, signed id that binds the
    /// seals, flashes and idempotency keys of a visitor without a session.
    pub const ANON: &str = "pc_anon";
    /// [`ANON`] with secure cookies.
    pub const ANON_SECURE: &str = "__Host-pc_anon";
    /// The sealed, single-use no-JS flash: a failed form post's errors and
    /// values, for the next render of its page.
    pub const FLASH: &str = "portcullis_flash";
    /// [`FLASH`] with secure cookies.
    pub const FLASH_SECURE: &str = "__Host-portcullis_flash";

    /// The session cookie's name.
    pub const fn session(secure: bool) -> &'static str {
        if secure { SESSION_SECURE } else { SESSION }
    }

    /// The anonymous-scope cookie's name.
    pub const fn anon(secure: bool) -> &'static str {
        if secure { ANON_SECURE } else { ANON }
    }

    /// The flash cookie's name.
    pub const fn flash(secure: bool) -> &'static str {
        if secure { FLASH_SECURE } else { FLASH }
    }
}

/// The success envelope of an action called with JSON `Accept`:
/// `{"ok":true,"result":…,"fragments":{key:html,…},"redirect":"/…","revalidated":true}`,
/// the last three only when there is something to say.
///
/// Borrowed throughout: the result is already serialized (stage 8 runs
/// before the effects of stage 9, so a result that refuses to serialize
/// fails before anything is applied) and is copied into the body once.
#[derive(Debug, Serialize)]
pub struct SuccessEnvelope<'a> {
    /// Always `true` (the client runtime checks it with the status).
    pub ok: bool,
    /// The handler's DTO.
    pub result: &'a RawValue,
    /// Re-rendered fragments, `key → html`, in the order rendered.
    #[serde(
        skip_serializing_if = "<[_]>::is_empty",
        serialize_with = "pairs_as_map"
    )]
    pub fragments: &'a [(String, String)],
    /// Where the client should go next (same-origin path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<&'a str>,
    /// Whether the action expired or revalidated anything (the page may
    /// need a reload if no fragment came back).
    #[serde(skip_serializing_if = "is_false")]
    pub revalidated: bool,
}

/// The failure envelope, for every refusal and error:
/// `{"error":{"code","message","digest"},"fieldErrors":{..},"formErrors":[..]}`,
/// the last two only when not empty. `code` is a stable
/// [`crate::ErrorCode`] wire name.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailureEnvelope<'a> {
    /// What went wrong: code, message and digest.
    pub error: ErrorBody<'a>,
    /// Field wire name → messages.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub field_errors: &'a BTreeMap<String, Vec<String>>,
    /// Messages about the form as a whole.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub form_errors: &'a [String],
}

/// The `error` member of a [`FailureEnvelope`].
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    /// The stable code, e.g. `stale_action`.
    pub code: &'a str,
    /// A message safe to show anyone.
    pub message: &'a str,
    /// The reference that ties the answer to its log line (written as
    /// text; a `Display` so it needs no buffer of its own).
    #[serde(serialize_with = "display")]
    pub digest: &'a dyn fmt::Display,
}

impl fmt::Debug for ErrorBody<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorBody")
            .field("code", &self.code)
            .field("message", &self.message)
            .field("digest", &format_args!("{}", self.digest))
            .finish()
    }
}

/// A page's map for the typed client: client key → where the action is
/// now, plus where a 401 sends the browser (what a form carries as
/// `data-login`/`data-reauth`). Rendered into the page as the JSON of
/// [`CLIENT_ACTIONS_ID`]; generated TypeScript names actions only by key,
/// so it stays valid when ids rotate.
#[derive(Debug, Serialize)]
pub struct ClientActions {
    /// Client key → the action's current endpoint and traits.
    pub actions: BTreeMap<String, ClientAction>,
    /// The sign-in page (`Config::login_path`).
    pub login: String,
    /// The re-authentication page (`Config::reauth_path`).
    pub reauth: String,
}

/// One action in [`ClientActions`].
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientAction {
    /// `/_action/<current opaque id>`.
    pub path: String,
    /// Calls may run in parallel (else the page's queue).
    pub idempotent: bool,
    /// The action has a bot check: the call sends the empty honeypot field.
    pub honeypot: bool,
    /// A fresh proof-of-work challenge, for an action with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pow: Option<String>,
    /// Its difficulty in bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pow_bits: Option<u8>,
}

/// The member names of the two envelopes, for clients and their tests.
pub mod envelope {
    /// Members of a success envelope.
    pub const SUCCESS: [&str; 5] = ["ok", "result", "fragments", "redirect", "revalidated"];
    /// Members of a failure envelope.
    pub const FAILURE: [&str; 3] = ["error", "fieldErrors", "formErrors"];
    /// Members of a failure envelope's `error`.
    pub const ERROR: [&str; 3] = ["code", "message", "digest"];
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn pairs_as_map<S: serde::Serializer>(
    pairs: &&[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

fn display<S: serde::Serializer>(value: &&dyn fmt::Display, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(*value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    /// The bytes the hand-written envelope produced, byte for byte.
    #[test]
    fn success_envelope_bytes() {
        let result = raw(r#"{"id":4,"name":"Apollo \"1\""}"#);
        let plain = SuccessEnvelope {
            ok: true,
            result: &result,
            fragments: &[],
            redirect: None,
            revalidated: false,
        };
        assert_eq!(
            serde_json::to_string(&plain).unwrap(),
            r#"{"ok":true,"result":{"id":4,"name":"Apollo \"1\""}}"#
        );
        let fragments = vec![
            ("projects".to_owned(), "<ul data-x=\"1\">\n</ul>".to_owned()),
            ("project:4".to_owned(), "<p>é</p>".to_owned()),
        ];
        let unit = raw("null");
        let full = SuccessEnvelope {
            ok: true,
            result: &unit,
            fragments: &fragments,
            redirect: Some("/projects?x=\"y\""),
            revalidated: true,
        };
        assert_eq!(
            serde_json::to_string(&full).unwrap(),
            concat!(
                r#"{"ok":true,"result":null,"#,
                r#""fragments":{"projects":"<ul data-x=\"1\">\n</ul>","project:4":"<p>é</p>"},"#,
                r#""redirect":"/projects?x=\"y\"","revalidated":true}"#
            )
        );
    }

    #[test]
    fn failure_envelope_bytes() {
        let mut field_errors = BTreeMap::new();
        let none = BTreeMap::new();
        field_errors.insert("name".to_owned(), vec!["is required".to_owned()]);
        let form_errors = vec!["Try again.".to_owned()];
        let envelope = |fe, fo| FailureEnvelope {
            error: ErrorBody {
                code: "invalid_input",
                message: "Some \"fields\" need attention.",
                digest: &"0011aabbccddeeff",
            },
            field_errors: fe,
            form_errors: fo,
        };
        assert_eq!(
            serde_json::to_string(&envelope(&none, &[])).unwrap(),
            r#"{"error":{"code":"invalid_input","message":"Some \"fields\" need attention.","digest":"0011aabbccddeeff"}}"#
        );
        assert_eq!(
            serde_json::to_string(&envelope(&field_errors, &form_errors)).unwrap(),
            concat!(
                r#"{"error":{"code":"invalid_input","message":"Some \"fields\" need attention.","digest":"0011aabbccddeeff"},"#,
                r#""fieldErrors":{"name":["is required"]},"formErrors":["Try again."]}"#
            )
        );
    }

    #[test]
    fn envelope_member_lists_match_the_types() {
        let result = raw("1");
        let fragments = vec![("k".to_owned(), "v".to_owned())];
        let success = serde_json::to_value(SuccessEnvelope {
            ok: true,
            result: &result,
            fragments: &fragments,
            redirect: Some("/"),
            revalidated: true,
        })
        .unwrap();
        let keys = |v: &serde_json::Value| -> BTreeSet<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let set =
            |names: &[&str]| -> BTreeSet<String> { names.iter().map(|s| s.to_string()).collect() };
        assert_eq!(keys(&success), set(&envelope::SUCCESS));
        let mut fe = BTreeMap::new();
        fe.insert("a".to_owned(), vec!["b".to_owned()]);
        let failure = serde_json::to_value(FailureEnvelope {
            error: ErrorBody {
                code: "internal",
                message: "m",
                digest: &"d",
            },
            field_errors: &fe,
            form_errors: &["f".to_owned()],
        })
        .unwrap();
        assert_eq!(keys(&failure), set(&envelope::FAILURE));
        assert_eq!(keys(&failure["error"]), set(&envelope::ERROR));
    }

    #[test]
    fn names_are_well_formed() {
        for h in header::ALL {
            assert!(http::HeaderName::from_static(h).as_str() == h, "{h}");
        }
        for f in field::BODY.iter().chain(&field::QUERY) {
            assert!(f.starts_with('_'), "{f}");
        }
        for a in attr::ALL {
            assert!(a.starts_with("data-"), "{a}");
        }
        assert!(CSP_REPORT_PATH.starts_with(ASSET_PREFIX));
        for (plain, secure) in [
            (cookie::SESSION, cookie::SESSION_SECURE),
            (cookie::ANON, cookie::ANON_SECURE),
            (cookie::FLASH, cookie::FLASH_SECURE),
        ] {
            assert_eq!(format!("__Host-{plain}"), secure);
        }
    }

    // ---- the client runtime speaks exactly this contract -----------------

    /// `fooBar` (a `dataset` property) → `data-foo-bar`.
    fn dataset_to_attr(prop: &str) -> String {
        let mut out = String::from("data-");
        for c in prop.chars() {
            if c.is_ascii_uppercase() {
                out.push('-');
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    fn ident_at(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(s.len());
        &s[..end]
    }

    /// Every string literal ("…", '…' or `…`) in `js`, escapes left as is.
    fn string_literals(js: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let bytes = js.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'/' if bytes.get(i + 1) == Some(&b'/') => {
                    // A line comment (the URLs in this file are in strings).
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                q @ (b'"' | b'\'' | b'`') => {
                    let start = i + 1;
                    i += 1;
                    while i < bytes.len() && bytes[i] != q {
                        if bytes[i] == b'\\' {
                            i += 1;
                        }
                        i += 1;
                    }
                    out.push(&js[start..i.min(js.len())]);
                }
                _ => {}
            }
            i += 1;
        }
        out
    }

    /// What the script names, by kind.
    #[derive(Default, Debug)]
    struct Names {
        attrs: BTreeSet<String>,
        headers: BTreeSet<String>,
        fields: BTreeSet<String>,
        params: BTreeSet<String>,
        members: BTreeSet<String>,
        error_members: BTreeSet<String>,
    }

    fn names_in(js: &str) -> Names {
        let mut n = Names::default();
        // `data-*` anywhere: selectors, setAttribute, the header comment.
        for (i, _) in js.match_indices("data-") {
            let prev = js[..i].chars().last();
            if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-') {
                continue;
            }
            let tail = &js[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
                .unwrap_or(tail.len());
            let name = tail[..end].trim_end_matches('-');
            // `data-*` in prose names no attribute.
            if name != "data" {
                n.attrs.insert(name.to_owned());
            }
        }
        // `x.dataset.fooBar` and `"fooBar" in x.dataset`.
        for (i, _) in js.match_indices("dataset.") {
            let prop = ident_at(&js[i + "dataset.".len()..]);
            n.attrs.insert(dataset_to_attr(prop));
        }
        for (i, _) in js.match_indices("\" in ") {
            let target = js[i + 5..]
                .split([')', ';', ' ', '&', '|'])
                .next()
                .unwrap_or("");
            if target.ends_with(".dataset") {
                let lit = &js[..i];
                let start = lit.rfind('"').map_or(0, |q| q + 1);
                n.attrs.insert(dataset_to_attr(&lit[start..]));
            }
        }
        for lit in string_literals(js) {
            // `Title-Case-Names` are header names ("SHA-256" is not).
            let parts: Vec<&str> = lit.split('-').collect();
            if parts.len() > 1
                && parts.iter().all(|p| {
                    p.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                        && p.chars().all(|c| c.is_ascii_alphabetic())
                })
            {
                n.headers.insert(lit.to_ascii_lowercase());
            }
            // `_name`: a reserved field.
            if lit.starts_with('_')
                && lit.len() > 1
                && lit[1..].chars().all(|c| c.is_ascii_lowercase())
            {
                n.fields.insert(lit.to_owned());
            }
            // `?name=` in a URL the script builds.
            for (i, _) in lit.match_indices('?') {
                let p = ident_at(&lit[i + 1..]);
                if !p.is_empty() && lit[i + 1 + p.len()..].starts_with('=') {
                    n.params.insert(p.to_owned());
                }
            }
        }
        // `Accept:` is an object key without quotes; so is any header
        // written that way.
        for (i, _) in js.match_indices("headers") {
            let tail = &js[i..];
            if let Some(obj) = tail.strip_prefix("headers = {") {
                for entry in obj.split('}').next().unwrap_or("").split(',') {
                    let key = entry.split(':').next().unwrap_or("").trim();
                    if !key.starts_with('"') && !key.is_empty() {
                        n.headers.insert(key.to_ascii_lowercase());
                    }
                }
            }
        }
        // Envelope members: `body.x` and `body.error.x`.
        for (i, _) in js.match_indices("body.") {
            if js[..i]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            {
                continue;
            }
            let rest = &js[i + "body.".len()..];
            let member = ident_at(rest);
            n.members.insert(member.to_owned());
            if member == "error"
                && let Some(inner) = rest[member.len()..].strip_prefix('.')
            {
                n.error_members.insert(ident_at(inner).to_owned());
            }
        }
        n
    }

    fn set<'a>(names: impl IntoIterator<Item = &'a &'a str>) -> BTreeSet<String> {
        names.into_iter().map(|s| s.to_string()).collect()
    }

    /// Headers the script may use that are not ours: standard HTTP.
    const STANDARD_HEADERS: [&str; 3] = ["accept", "retry-after", "content-type"];

    #[test]
    fn the_client_runtime_uses_exactly_these_names() {
        let js = crate::client::SCRIPT;
        let n = names_in(js);

        // Attributes: the same set both ways.
        assert_eq!(
            n.attrs,
            set(&attr::ALL),
            "data-* attributes: script vs wire::attr"
        );
        let ready = format!("dataset.portcullis = \"{}\"", attr::READY);
        assert!(js.contains(&ready), "the script marks <html> {ready}");

        // Headers: every one the client sends, and nothing unknown.
        let known: BTreeSet<String> = set(&header::ALL)
            .into_iter()
            .chain(set(&STANDARD_HEADERS))
            .collect();
        assert!(
            n.headers.is_subset(&known),
            "the script uses headers wire.rs lacks: {:?}",
            n.headers.difference(&known).collect::<Vec<_>>()
        );
        for h in header::CLIENT {
            assert!(n.headers.contains(h), "the script does not send {h}");
        }

        // Reserved fields.
        let all_fields: BTreeSet<String> = set(&field::BODY)
            .into_iter()
            .chain(set(&field::QUERY))
            .collect();
        assert!(
            n.fields.is_subset(&all_fields),
            "the script uses reserved fields wire.rs lacks: {:?}",
            n.fields.difference(&all_fields).collect::<Vec<_>>()
        );
        for f in field::CLIENT {
            assert!(n.fields.contains(f), "the script does not read {f}");
        }

        // Query parameters it builds: only the sign-in return.
        assert_eq!(n.params, set(&[LOGIN_RETURN_PARAM]));

        // Envelope members: every member of both envelopes, nothing else.
        let members: BTreeSet<String> = set(&envelope::SUCCESS)
            .into_iter()
            .chain(set(&envelope::FAILURE))
            .collect();
        assert_eq!(n.members, members, "envelope members: script vs wire");
        assert_eq!(n.error_members, set(&envelope::ERROR));
    }

    /// The typed client (`call`, `actionState`) reads the page's map by
    /// its id and every member [`ClientActions`] and [`ClientAction`]
    /// serialize, as `.member` (`map.actions[key]`, `entry.path`).
    #[test]
    fn the_client_runtime_reads_the_client_action_map() {
        let js = crate::client::SCRIPT;
        assert!(
            js.contains(&format!("getElementById(\"{CLIENT_ACTIONS_ID}\")")),
            "the script reads #{CLIENT_ACTIONS_ID}"
        );
        let entry = ClientAction {
            path: "/_action/x".into(),
            idempotent: true,
            honeypot: true,
            pow: Some("c".into()),
            pow_bits: Some(8),
        };
        let map = ClientActions {
            actions: [("k".to_owned(), entry)].into(),
            login: "/login".into(),
            reauth: "/reauth".into(),
        };
        let v = serde_json::to_value(&map).unwrap();
        let members = v
            .as_object()
            .unwrap()
            .keys()
            .chain(v["actions"]["k"].as_object().unwrap().keys());
        for m in members {
            assert!(
                js.contains(&format!(".{m}")),
                "the script does not read .{m}"
            );
        }
    }

    /// The extraction itself: a planted unknown name in each kind is seen.
    #[test]
    fn the_extraction_sees_a_planted_name_of_each_kind() {
        let js = r#"
            // [data-documented]   in the header; data-* in prose is no name
            el.dataset.resultInto; "pcFlag" in form.dataset;
            headers["X-Portcullis-Other"] = 1; res.headers.get("Retry-After");
            const headers = { Accept: "a", "Idempotency-Key": key };
            url.searchParams.get("_secret"); `${p}?next=${q}`;
            body.ok; body.error.hint; crypto.subtle.digest("SHA-256", buf);
        "#;
        let n = names_in(js);
        assert_eq!(
            n.attrs,
            set(&["data-documented", "data-result-into", "data-pc-flag"])
        );
        assert_eq!(
            n.headers,
            set(&[
                "x-portcullis-other",
                "retry-after",
                "accept",
                "idempotency-key"
            ])
        );
        assert_eq!(n.fields, set(&["_secret"]));
        assert_eq!(n.params, set(&["next"]));
        assert_eq!(n.members, set(&["ok", "error"]));
        assert_eq!(n.error_members, set(&["hint"]));
    }
}
