//! Sealed bound arguments (opened in stage 6).
//!
//! This module will carry `seal`/`open` (AES-256-GCM-SIV, AAD binding action,
//! session and expiry). Today it only defines how a failure to open is told
//! apart from an ordinary type error while deserializing, so the decoder can
//! answer 400 `invalid_bound_argument` instead of 422.

use crate::error::{ErrorCode, Rejection};

/// Prefix of the serde error message a sealed field raises when it fails to open.
pub(crate) const FAILURE_MARKER: &str = "portcullis:invalid_bound_argument";

/// If a deserialization message came from a sealed field, the rejection to send.
pub(crate) fn failure_marker(message: &str) -> Option<Rejection> {
    message
        .contains(FAILURE_MARKER)
        .then(|| Rejection::new(ErrorCode::InvalidBoundArgument))
}
