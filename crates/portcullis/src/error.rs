//! Safe errors (pipeline stage 8, failure half).
//!
//! Every failure anywhere in the pipeline becomes a [`Rejection`]: a stable
//! [`ErrorCode`], a message that is safe to show to anyone, optional field
//! errors, and a random *digest*. The digest is the only link between what the
//! client sees and the private log line that carries the detail, so internal
//! errors never leak stack traces, SQL or file paths to the wire.

use std::collections::BTreeMap;
use std::fmt;

use http::StatusCode;
use serde::Serialize;

/// The stable, documented error codes. The wire form is the snake_case name.
///
/// Clients may match on these strings; they never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 403: a cross-origin state-changing request (stage 2).
    CrossOriginRequest,
    /// 413: body, field count or part count over its cap (stage 1/6).
    PayloadTooLarge,
    /// 408: the body did not arrive within the read timeout (stage 1/6).
    RequestTimeout,
    /// 415: a content type other than urlencoded, multipart or JSON.
    UnsupportedMediaType,
    /// 400: the body is not valid for its declared content type.
    MalformedBody,
    /// 400: the action id is not a well-formed id.
    MalformedActionId,
    /// 409: a well-formed id that no current action has (old deploy, rotated epoch).
    StaleAction,
    /// 429: a rate limit refused the request (stage 4).
    RateLimited,
    /// 401: the action needs a signed-in viewer (stage 5).
    Unauthenticated,
    /// 403: the viewer lacks the role the action needs (stage 5).
    Forbidden,
    /// 401: the action needs a recent re-authentication (stage 5).
    ReauthenticationRequired,
    /// 422: decoding or validation failed; see `fieldErrors`/`formErrors` (stage 6).
    InvalidInput,
    /// 400: a sealed bound argument failed to open (stage 6).
    InvalidBoundArgument,
    /// 403: a public action's bot check failed.
    BotCheckFailed,
    /// 404: the record does not exist *for this viewer* (never a 403 that confirms existence).
    NotFound,
    /// 405: the method is not one the route accepts.
    MethodNotAllowed,
    /// 503: the rate limiter backend is unreachable and the action fails closed.
    LimiterUnavailable,
    /// 503: the database is unreachable; nothing was applied, retry later.
    DatabaseUnavailable,
    /// 503: the session store is unreachable or missed its deadline; the
    /// request was not run (or its session write did not persist).
    SessionStoreUnavailable,
    /// 503: the idempotency store is unreachable; the handler did not run.
    IdempotencyUnavailable,
    /// 503: the handler or page did not finish within its deadline (a
    /// dependency the framework cannot see, e.g. the app's database, hung).
    DeadlineExceeded,
    /// 409: a request with this idempotency key is still running.
    RequestInProgress,
    /// 422: this idempotency key was used before with a different body.
    IdempotencyKeyReused,
    /// 409: the request with this idempotency key was applied, but its
    /// result was too large to keep for replay.
    IdempotencyResultUnavailable,
    /// 401: a webhook or token credential did not verify.
    InvalidSignature,
    /// 500: anything else; the detail is only in the server log under the digest.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            CrossOriginRequest | Forbidden | BotCheckFailed => StatusCode::FORBIDDEN,
            PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MalformedBody | MalformedActionId | InvalidBoundArgument => StatusCode::BAD_REQUEST,
            StaleAction | RequestInProgress | IdempotencyResultUnavailable => StatusCode::CONFLICT,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Unauthenticated | ReauthenticationRequired | InvalidSignature => {
                StatusCode::UNAUTHORIZED
            }
            InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            LimiterUnavailable
            | DatabaseUnavailable
            | SessionStoreUnavailable
            | IdempotencyUnavailable
            | DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The wire name, e.g. `"stale_action"`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            CrossOriginRequest => "cross_origin_request",
            PayloadTooLarge => "payload_too_large",
            RequestTimeout => "request_timeout",
            UnsupportedMediaType => "unsupported_media_type",
            MalformedBody => "malformed_body",
            MalformedActionId => "malformed_action_id",
            StaleAction => "stale_action",
            RateLimited => "rate_limited",
            Unauthenticated => "unauthenticated",
            Forbidden => "forbidden",
            ReauthenticationRequired => "reauthentication_required",
            InvalidInput => "invalid_input",
            InvalidBoundArgument => "invalid_bound_argument",
            BotCheckFailed => "bot_check_failed",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            LimiterUnavailable => "limiter_unavailable",
            DatabaseUnavailable => "database_unavailable",
            SessionStoreUnavailable => "session_store_unavailable",
            IdempotencyUnavailable => "idempotency_unavailable",
            DeadlineExceeded => "deadline_exceeded",
            RequestInProgress => "request_in_progress",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdempotencyResultUnavailable => "idempotency_result_unavailable",
            InvalidSignature => "invalid_signature",
            Internal => "internal",
        }
    }

    /// The generic message used when the stage has nothing more specific to say.
    pub fn default_message(self) -> &'static str {
        use ErrorCode::*;
        match self {
            CrossOriginRequest => "Cross-origin requests are not allowed for this endpoint.",
            PayloadTooLarge => "The request is too large.",
            RequestTimeout => "The request body did not arrive in time.",
            UnsupportedMediaType => {
                "Send application/x-www-form-urlencoded, multipart/form-data or application/json."
            }
            MalformedBody => "The request body could not be read.",
            MalformedActionId => "The action id is malformed.",
            StaleAction => "This page is out of date. Reload it and try again.",
            RateLimited => "Too many requests. Try again later.",
            Unauthenticated => "Sign in to continue.",
            Forbidden => "You do not have access to this.",
            ReauthenticationRequired => "Confirm your password to continue.",
            InvalidInput => "Some fields need attention.",
            InvalidBoundArgument => "This form has expired or was altered. Reload the page.",
            BotCheckFailed => "The request looked automated and was refused.",
            NotFound => "Not found.",
            MethodNotAllowed => "Method not allowed.",
            LimiterUnavailable => "The service is busy. Try again shortly.",
            DatabaseUnavailable => {
                "The database is unavailable; nothing was changed. Try again shortly."
            }
            SessionStoreUnavailable => {
                "Sessions are temporarily unavailable; nothing was changed. Try again shortly."
            }
            IdempotencyUnavailable => {
                "The service is temporarily unavailable; nothing was changed. Try again shortly."
            }
            DeadlineExceeded => {
                "The server did not finish in time. Reload to see whether the change was saved before trying again."
            }
            RequestInProgress => "This request is already being processed.",
            IdempotencyKeyReused => {
                "This idempotency key was already used for a different request. Use a new key."
            }
            IdempotencyResultUnavailable => {
                "This request was already applied; its result cannot be replayed."
            }
            InvalidSignature => "The request's signature did not verify.",
            Internal => "Something went wrong on our side.",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Field name → messages, in a stable order.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// A refusal produced by any pipeline stage, ready to be rendered as JSON or HTML.
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The public code; it also decides the HTTP status.
    pub code: ErrorCode,
    /// Text for the user; sent to the client, so never put internals in it.
    pub message: String,
    /// The reference the client sees and the log line carries.
    pub digest: Digest,
    /// Per-field messages (422 `invalid_input`), sent to the client.
    pub field_errors: FieldErrors,
    /// Messages about the form as a whole, sent to the client.
    pub form_errors: Vec<String>,
    /// Extra response headers (e.g. `Retry-After`).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl Rejection {
    /// A refusal with `code`'s default user-facing message and a fresh
    /// digest.
    pub fn new(code: ErrorCode) -> Self {
        Self::with_message(code, code.default_message())
    }

    /// A refusal with a custom user-facing `message` (sent to the client).
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection {
            code,
            message: message.into(),
            digest: Digest::random(),
            field_errors: FieldErrors::new(),
            form_errors: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A 422 carrying field errors.
    pub fn invalid(field_errors: FieldErrors, form_errors: Vec<String>) -> Self {
        let mut r = Self::new(ErrorCode::InvalidInput);
        r.field_errors = field_errors;
        r.form_errors = form_errors;
        r
    }

    /// A 500 whose `detail` goes to the log under the digest and never to the client.
    pub fn internal(detail: &dyn fmt::Display) -> Self {
        let r = Self::new(ErrorCode::Internal);
        tracing::error!(digest = %r.digest, detail = %detail, "internal error");
        r
    }

    /// Adds a response header (e.g. `Retry-After`) to the refusal.
    pub fn header(mut self, name: http::HeaderName, value: http::HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The HTTP status the refusal is sent with (its code's status).
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The JSON error envelope ([`crate::wire::FailureEnvelope`]):
    /// `{"error":{"code","message","digest"},"fieldErrors":{..},"formErrors":[..]}`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&crate::wire::FailureEnvelope {
            error: crate::wire::ErrorBody {
                code: self.code.as_str(),
                message: &self.message,
                digest: &self.digest,
            },
            field_errors: &self.field_errors,
            form_errors: &self.form_errors,
        })
        .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"error"}}"#.to_vec())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.digest, self.message)
    }
}

/// A short random reference that ties a client-visible error to its log line.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest([u8; 8]);

impl Digest {
    /// A fresh random digest (64 bits, shown as 16 hex digits).
    pub fn random() -> Self {
        Digest(rand::random())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What an action handler returns on failure.
///
/// `?` converts any `std::error::Error` into [`ActionError::Internal`], whose
/// detail is logged under a digest and never sent. Use the other variants for
/// outcomes the client is meant to see.
#[derive(Debug)]
pub enum ActionError {
    /// 404 `not_found`: also what an id from another team must produce.
    NotFound,
    /// 403 `forbidden`.
    Forbidden,
    /// 422 `invalid_input` with field/form errors (e.g. "name already taken").
    Invalid {
        /// Per-field messages, keyed by the input's wire field name.
        field_errors: FieldErrors,
        /// Messages about the form as a whole.
        form_errors: Vec<String>,
    },
    /// 500 `internal`: the detail goes to the log only.
    Internal(Box<dyn std::error::Error + Send + Sync>),
    /// A framework refusal raised inside the handler (e.g. by `cx.auth()`).
    Rejected(Rejection),
}

impl ActionError {
    /// One field error, e.g. `ActionError::field("email", "is already registered")`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut field_errors = FieldErrors::new();
        field_errors.insert(field.to_owned(), vec![message.into()]);
        ActionError::Invalid {
            field_errors,
            form_errors: Vec::new(),
        }
    }

    /// One form-level error, e.g. `ActionError::form("Invalid credentials.")`.
    pub fn form(message: impl Into<String>) -> Self {
        ActionError::Invalid {
            field_errors: FieldErrors::new(),
            form_errors: vec![message.into()],
        }
    }

    /// An internal error from a plain message (logged, never sent).
    pub fn internal(message: impl Into<String>) -> Self {
        ActionError::Internal(message.into().into())
    }

    /// The refusal this error answers with, *without* any app's classifier
    /// (an `Internal` error is 500 `internal`). The framework applies the
    /// app's classifier ([`crate::Portcullis::error_classifier`]) wherever it
    /// turns an app's error into a response — actions, webhooks,
    /// [`crate::Page::failed`], [`crate::routes::api::Bearer::failed`], the account
    /// directory and the token store — so app code answering with an error
    /// should go through one of those.
    pub fn into_rejection(self) -> Rejection {
        self.classified(Classifier::NONE)
    }

    /// The refusal this error answers with, an `Internal` error mapped by
    /// `classifier` (the app's).
    pub(crate) fn classified(self, classifier: Classifier) -> Rejection {
        match self {
            ActionError::NotFound => Rejection::new(ErrorCode::NotFound),
            ActionError::Forbidden => Rejection::new(ErrorCode::Forbidden),
            ActionError::Invalid {
                field_errors,
                form_errors,
            } => Rejection::invalid(field_errors, form_errors),
            ActionError::Internal(e) => match classifier.classify(e.as_ref()) {
                Some(code) if code.status() == StatusCode::SERVICE_UNAVAILABLE => {
                    // A dependency outage: logged once down / a minute / up.
                    let r = Rejection::new(code).header(
                        http::header::RETRY_AFTER,
                        http::HeaderValue::from_static("1"),
                    );
                    crate::observe::app_dependencies()
                        .failed(&format_args!("{code}: {e}"), Some(&r.digest));
                    r
                }
                Some(code) => {
                    let r = Rejection::new(code);
                    tracing::error!(digest = %r.digest, code = %code, detail = %e, "action failed");
                    r
                }
                None => Rejection::internal(&e),
            },
            ActionError::Rejected(r) => r,
        }
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ActionError {
    fn from(e: E) -> Self {
        ActionError::Internal(Box::new(e))
    }
}

/// Maps an app error to a public code other than `internal` (e.g. a pool
/// time-out to `database_unavailable`). One per app, installed with
/// [`crate::Portcullis::error_classifier`]; the demo turns sqlx connection
/// errors into 503 `database_unavailable` with it.
pub type ErrorClassifier = fn(&(dyn std::error::Error + 'static)) -> Option<ErrorCode>;

/// The classifier one app installed, if any.
///
/// Per app, not per process: two apps in one process (tests, an admin app
/// beside the public one) each answer with their own mapping. Written only
/// by the app's builder ([`crate::Portcullis::error_classifier`]); a plain
/// function pointer, so nothing to bound; it lives as long as the app. A
/// caller cannot influence it: it only reads the app's own errors.
#[derive(Clone, Copy, Default)]
pub(crate) struct Classifier(Option<ErrorClassifier>);

impl Classifier {
    /// No classifier: every `Internal` error is 500 `internal`.
    pub(crate) const NONE: Classifier = Classifier(None);

    pub(crate) fn new(f: Option<ErrorClassifier>) -> Self {
        Classifier(f)
    }

    fn classify(self, e: &(dyn std::error::Error + 'static)) -> Option<ErrorCode> {
        self.0.and_then(|f| f(e))
    }
}

impl From<Rejection> for ActionError {
    fn from(r: Rejection) -> Self {
        ActionError::Rejected(r)
    }
}

/// The result type of an action handler.
pub type Outcome<T> = Result<T, ActionError>;

#[cfg(test)]
mod tests {
    use super::ErrorCode::*;

    /// The envelope writes `as_str()`; serde (the manifest, logs) writes the
    /// derived name. They are one wire name.
    #[test]
    fn the_wire_name_is_the_serde_name() {
        let all = [
            CrossOriginRequest,
            PayloadTooLarge,
            RequestTimeout,
            UnsupportedMediaType,
            MalformedBody,
            MalformedActionId,
            StaleAction,
            RateLimited,
            Unauthenticated,
            Forbidden,
            ReauthenticationRequired,
            InvalidInput,
            InvalidBoundArgument,
            BotCheckFailed,
            NotFound,
            MethodNotAllowed,
            LimiterUnavailable,
            DatabaseUnavailable,
            SessionStoreUnavailable,
            IdempotencyUnavailable,
            DeadlineExceeded,
            RequestInProgress,
            IdempotencyKeyReused,
            IdempotencyResultUnavailable,
            InvalidSignature,
            Internal,
        ];
        for code in all {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }
}
