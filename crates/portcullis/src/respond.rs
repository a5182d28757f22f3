//! Stage 8: respond. Only [`Dto`] types serialize into a response; a value
//! that refuses to serialize (a [`crate::Secret`], say) fails the whole
//! response closed with 500 and a log line naming the field path. The final
//! bytes — success envelope, redirect target, error envelope or error page —
//! then pass the taint scan ([`scan`], over [`crate::taint::scan`]): a registered secret
//! value anywhere in them replaces the response with a bare 500.
//!
//! Two clients, one contract:
//! * the client runtime (`Accept` without `text/html`) gets a JSON envelope:
//!   [`crate::wire::SuccessEnvelope`] (`{"ok":true,"result":…,"redirect":…}`)
//!   or [`crate::wire::FailureEnvelope`];
//! * a plain browser form post (`Accept: text/html`) gets `303 See Other` to a
//!   same-origin path on success; on a validation failure (422) `303` back to
//!   the form's page with a sealed one-time flash ([`crate::flash`]); on any
//!   other failure an HTML page.
//!
//! Redirect targets are never taken from `Referer` and never absolute: only a
//! path that starts with a single `/` passes [`safe_return_path`].
//!
//! # Keeping database rows out of responses
//! A row type (`struct UserRow { password_hash, email, … }`) simply does not
//! derive [`Dto`]; returning it from a handler is a compile error. Each action
//! returns a purpose-built DTO with exactly the fields the client needs.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use maud::{DOCTYPE, Markup, html};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::{ErrorCode, Rejection};
use crate::wire::{self, SuccessEnvelope};

/// Marker for types that may leave the server as an action result.
///
/// Derive it (`#[derive(Serialize, Dto)]`) on purpose-built response types
/// only. See the module docs for why row types must not implement it.
pub trait Dto: Serialize + Send + 'static {}

impl Dto for () {}
impl<T: Dto> Dto for Vec<T> {}
impl<T: Dto> Dto for Option<T> {}

/// Serializes a DTO, naming the field path if serialization fails.
///
/// One pass on success (serde_json's own `to_raw_value`, which trusts its
/// own output rather than re-parsing it); only a value that refused is
/// serialized a second time, through `serde_path_to_error`, for the path.
pub(crate) fn to_json<T: Dto>(value: &T) -> Result<Box<RawValue>, Rejection> {
    let first = match serde_json::value::to_raw_value(value) {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    let mut sink = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut sink);
    let (path, inner) = match serde_path_to_error::serialize(value, &mut ser) {
        Err(e) => (e.path().to_string(), e.into_inner()),
        // Refused once, not twice: a value whose Serialize is not a function
        // of the value. Still refused, with the first error.
        Ok(()) => (".".to_owned(), first),
    };
    Err(Rejection::internal(&format_args!(
        "response of type {} refused to serialize at `{path}`: {inner}",
        std::any::type_name::<T>(),
    )))
}

/// The taint scan of bytes about to be sent ([`crate::taint::scan`]): on a
/// hit, the 500 to send instead, its digest logged with the registration's
/// reason (never the value).
pub(crate) fn scan(body: &[u8]) -> Result<(), Rejection> {
    crate::taint::scan(body).map_err(|hit| {
        let rejection = Rejection::new(ErrorCode::Internal);
        tracing::error!(
            digest = %rejection.digest,
            reason = hit.reason(),
            "response blocked: it contains a registered secret value"
        );
        rejection
    })
}

/// Which of the two response shapes the caller wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKind {
    /// The client runtime or any API caller: JSON envelopes.
    Json,
    /// A browser navigating (no-JS form post): redirects and HTML pages.
    Html,
}

impl ClientKind {
    /// `Html` when any `Accept` header mentions `text/html` (browsers
    /// navigating do; `fetch` does not), else `Json`.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let html = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"));
        if html {
            ClientKind::Html
        } else {
            ClientKind::Json
        }
    }
}

/// `Some(path)` only for a same-origin relative path: starts with one `/`,
/// no `//` or `/\` prefix (protocol-relative), no control characters.
pub fn safe_return_path(candidate: &str) -> Option<&str> {
    let ok = candidate.starts_with('/')
        && !candidate.starts_with("//")
        && !candidate.starts_with("/\\")
        && candidate.len() <= 2048
        && !candidate.chars().any(|c| c.is_control() || c == '\\');
    ok.then_some(candidate)
}

/// What a successful action sends.
pub(crate) struct Success {
    pub result_json: Box<RawValue>,
    pub redirect: Option<String>,
    pub return_to: Option<String>,
    /// Re-rendered fragments: (key, html).
    pub fragments: Vec<(String, String)>,
    /// Whether this action expired or revalidated anything.
    pub revalidated: bool,
}

/// Builds the success response, refusing it if the taint scan finds a
/// registered secret value in the bytes about to be sent.
pub(crate) fn success(client: ClientKind, s: Success) -> Result<Response, Rejection> {
    Ok(match client {
        ClientKind::Json => {
            let envelope = SuccessEnvelope {
                ok: true,
                result: &s.result_json,
                fragments: &s.fragments,
                redirect: s.redirect.as_deref(),
                revalidated: s.revalidated,
            };
            // One buffer, sized as the hand-written envelope sized it.
            let fragments: usize = s.fragments.iter().map(|(k, h)| k.len() + h.len() + 6).sum();
            let mut body = Vec::with_capacity(s.result_json.get().len() + fragments + 64);
            // Strings, a raw value and a map of strings always serialize.
            serde_json::to_writer(&mut body, &envelope).map_err(|e| Rejection::internal(&e))?;
            scan(&body)?;
            json_response(StatusCode::OK, body)
        }
        ClientKind::Html => {
            let to = s
                .redirect
                .as_deref()
                .or(s.return_to.as_deref().and_then(safe_return_path))
                .unwrap_or("/");
            scan(to.as_bytes())?;
            see_other(to)
        }
    })
}

pub(crate) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Renders a rejection for the client kind. The rendered bytes are
/// taint-scanned too: an app message (`ActionError::form(..)`) could embed a
/// secret; on a hit, a bare 500 is sent instead.
pub(crate) fn failure(
    client: ClientKind,
    rejection: &Rejection,
    config: &crate::Config,
    return_to: Option<&str>,
) -> Response {
    failure_with_paths(
        client,
        rejection,
        &config.login_path,
        &config.reauth_path,
        return_to,
    )
}

/// [`failure`] without a config: where sign-in and re-auth links point.
pub(crate) fn failure_with_paths(
    client: ClientKind,
    rejection: &Rejection,
    login_path: &str,
    reauth_path: &str,
    return_to: Option<&str>,
) -> Response {
    let render = |rejection: &Rejection, back: Option<&str>| match client {
        ClientKind::Json => rejection.to_json(),
        ClientKind::Html => {
            let sign_in = match rejection.code {
                ErrorCode::ReauthenticationRequired => reauth_path,
                _ => login_path,
            };
            error_page(rejection, sign_in, back.and_then(safe_return_path))
                .into_string()
                .into_bytes()
        }
    };
    let mut body = render(rejection, return_to);
    let mut status = rejection.status();
    let mut headers: &[(http::HeaderName, HeaderValue)] = &rejection.headers;
    if let Err(blocked) = scan(&body) {
        // Only framework text and a random digest: nothing left to scan.
        body = render(&blocked, None);
        status = blocked.status();
        headers = &[];
    }
    let mut response = match client {
        ClientKind::Json => json_response(status, body),
        ClientKind::Html => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
    };
    for (name, value) in headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}

/// The built-in error page for browsers without the client runtime.
pub fn error_page(rejection: &Rejection, login_path: &str, back: Option<&str>) -> Markup {
    let title = match rejection.code {
        ErrorCode::Unauthenticated => "Sign in required",
        ErrorCode::ReauthenticationRequired => "Confirm your password",
        ErrorCode::Forbidden => "Access denied",
        ErrorCode::InvalidInput => "Please correct the form",
        ErrorCode::RateLimited => "Slow down",
        ErrorCode::StaleAction => "This page is out of date",
        _ => "Request refused",
    };
    let sign_in = matches!(
        rejection.code,
        ErrorCode::Unauthenticated | ErrorCode::ReauthenticationRequired
    );
    let login_href = match back {
        Some(b) => format!(
            "{login_path}?{}={}",
            wire::LOGIN_RETURN_PARAM,
            form_urlencoded::byte_serialize(b.as_bytes()).collect::<String>()
        ),
        None => login_path.to_owned(),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                // A file, not an inline <style>: the CSP allows no inline styles.
                link rel="stylesheet" href=(crate::client::style_path());
            }
            body.pc-error-page {
                main role="main" {
                    h1 { (title) }
                    p role="alert" { (rejection.message) }
                    @if !rejection.form_errors.is_empty() || !rejection.field_errors.is_empty() {
                        ul {
                            @for e in &rejection.form_errors { li { (e) } }
                            @for (field, msgs) in &rejection.field_errors {
                                @for m in msgs { li { strong { (field) } " " (m) } }
                            }
                        }
                    }
                    p {
                        @if sign_in {
                            a href=(login_href) {
                                @if rejection.code == ErrorCode::ReauthenticationRequired { "Confirm password" } @else { "Sign in" }
                            } " · "
                        }
                        @if let Some(b) = back { a href=(b) { "Go back" } } @else { a href="/" { "Home" } }
                    }
                    p.digest { "Reference: " code { (rejection.digest) } }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths() {
        for ok in ["/", "/projects", "/projects?x=1#y"] {
            assert_eq!(safe_return_path(ok), Some(ok));
        }
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "evil",
            "",
            "javascript:alert(1)",
            "/\r\nSet-Cookie:x",
            "/a\\b",
        ] {
            assert_eq!(safe_return_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn html_client_detection() {
        let mut h = http::HeaderMap::new();
        assert_eq!(ClientKind::from_headers(&h), ClientKind::Json);
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        assert_eq!(ClientKind::from_headers(&h), ClientKind::Html);
    }
}
