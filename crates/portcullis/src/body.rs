//! Stage 1: limits. Every cost an anonymous caller can impose is capped, and
//! every cap is checked as early as the information to check it exists.
//!
//! Before anything else (headers only):
//! * content type must be urlencoded, multipart or JSON → else 415;
//! * a declared `Content-Length` above the app-wide ceiling → 413 at once.
//!
//! When stage 6 finally reads the body (after origin, id, rate limit and policy
//! have passed), the read is capped at the action's own limit (default 1 MiB;
//! 413 the moment it is exceeded, whatever `Content-Length` claimed) and at a
//! deadline for the whole body (default 10 s; 408), which defeats slow-loris
//! trickling. Field count, multipart part count and JSON nesting depth caps
//! are applied by the decoders in one linear pass each (see [`crate::input`]).
//! Header count and size caps are hyper's (100 headers, 431 beyond).

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;

use crate::error::{ErrorCode, Rejection};

/// The caps. Per-action overrides exist for `body_bytes`.
#[derive(Clone, Debug)]
pub struct BodyLimits {
    /// Max body bytes (default 1 MiB).
    pub body_bytes: usize,
    /// Deadline for receiving the whole body (default 10 s).
    pub body_timeout: Duration,
    /// Max urlencoded fields / JSON top-level keys (default 256).
    pub max_fields: usize,
    /// Max multipart parts (default 64).
    pub max_parts: usize,
    /// Max JSON nesting depth (default 32).
    pub max_depth: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            body_bytes: 1024 * 1024,
            body_timeout: Duration::from_secs(10),
            max_fields: 256,
            max_parts: 64,
            max_depth: 32,
        }
    }
}

/// The three accepted body encodings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/x-www-form-urlencoded`.
    UrlEncoded,
    /// `multipart/form-data`.
    Multipart {
        /// The part delimiter from the `boundary` parameter of `Content-Type`.
        boundary: String,
    },
    /// `application/json`.
    Json,
}

impl BodyKind {
    /// Reads `Content-Type`; anything but the three accepted types is 415.
    /// A multipart type without a usable boundary is 400.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, Rejection> {
        let unsupported = || Rejection::new(ErrorCode::UnsupportedMediaType);
        let text = headers
            .get(http::header::CONTENT_TYPE)
            .ok_or_else(unsupported)?
            .to_str()
            .map_err(|_| unsupported())?;
        let mime: mime::Mime = text.parse().map_err(|_| unsupported())?;
        match (mime.type_(), mime.subtype()) {
            (mime::APPLICATION, mime::WWW_FORM_URLENCODED) => Ok(BodyKind::UrlEncoded),
            (mime::APPLICATION, mime::JSON) => Ok(BodyKind::Json),
            (mime::MULTIPART, mime::FORM_DATA) => {
                let boundary = multer::parse_boundary(text).map_err(|_| {
                    Rejection::with_message(
                        ErrorCode::MalformedBody,
                        "multipart/form-data needs a boundary parameter.",
                    )
                })?;
                Ok(BodyKind::Multipart { boundary })
            }
            _ => Err(unsupported()),
        }
    }
}

/// Refuses a declared `Content-Length` above `cap` without reading anything.
pub fn check_declared_length(headers: &HeaderMap, cap: usize) -> Result<(), Rejection> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > cap as u64 => Err(too_large(cap)),
        _ => Ok(()),
    }
}

pub(crate) fn too_large(cap: usize) -> Rejection {
    Rejection::with_message(
        ErrorCode::PayloadTooLarge,
        format!("The request body is larger than this action accepts ({cap} bytes)."),
    )
}

/// 413 for a multipart body past its part cap (both multipart decoders:
/// the buffered one in `input` and the streaming upload receiver).
pub(crate) fn too_many_parts(max_parts: usize) -> Rejection {
    Rejection::with_message(
        ErrorCode::PayloadTooLarge,
        format!("At most {max_parts} multipart parts are accepted."),
    )
}

/// 400 for a multipart body multer cannot read; the detail is logged only.
pub(crate) fn malformed_multipart(detail: impl std::fmt::Display) -> Rejection {
    tracing::debug!(error = %detail, "malformed multipart body");
    Rejection::with_message(
        ErrorCode::MalformedBody,
        "The multipart body is malformed (check the boundary).",
    )
}

/// Reads the body under a byte cap and a whole-body deadline.
pub async fn read_body(body: Body, cap: usize, deadline: Duration) -> Result<Bytes, Rejection> {
    let limited = http_body_util::Limited::new(body, cap);
    match tokio::time::timeout(deadline, limited.collect()).await {
        Err(_) => Err(Rejection::new(ErrorCode::RequestTimeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(cap)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "body read failed");
            Err(Rejection::new(ErrorCode::MalformedBody))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, v.parse().unwrap());
        h
    }

    #[test]
    fn content_types() {
        assert_eq!(
            BodyKind::from_headers(&ct("application/x-www-form-urlencoded")).unwrap(),
            BodyKind::UrlEncoded
        );
        assert_eq!(
            BodyKind::from_headers(&ct("application/json; charset=utf-8")).unwrap(),
            BodyKind::Json
        );
        assert_eq!(
            BodyKind::from_headers(&ct("multipart/form-data; boundary=xyz")).unwrap(),
            BodyKind::Multipart {
                boundary: "xyz".into()
            }
        );
        for bad in ["text/plain", "application/xml", "text/html", "nonsense"] {
            assert_eq!(
                BodyKind::from_headers(&ct(bad)).unwrap_err().code,
                ErrorCode::UnsupportedMediaType
            );
        }
        assert_eq!(
            BodyKind::from_headers(&HeaderMap::new()).unwrap_err().code,
            ErrorCode::UnsupportedMediaType
        );
        assert_eq!(
            BodyKind::from_headers(&ct("multipart/form-data"))
                .unwrap_err()
                .code,
            ErrorCode::MalformedBody
        );
    }

    #[tokio::test]
    async fn body_over_cap_is_413_even_without_content_length() {
        let body = Body::from(vec![b'a'; 2000]);
        let err = read_body(body, 1000, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::PayloadTooLarge);
    }
}
