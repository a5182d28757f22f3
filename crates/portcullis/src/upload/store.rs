//! Where accepted files are kept, and how they are served back.
//!
//! A [`FileStore`] keeps files under [`FileKey`]s the server draws (128
//! random bits, hex): a client's file name never becomes a path, so there
//! is nothing to traverse. [`LocalDisk`] is the built-in store; `S3Store`
//! (feature `s3`) keeps files in an S3-compatible bucket. Another store (a
//! database, a provider's own API) implements the same three methods and
//! can be checked with the `conformance` function in `tests/uploads.rs`,
//! which both built-in stores pass.

use std::path::PathBuf;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rand::RngCore;

use super::StagedFile;
use crate::error::{ErrorCode, Rejection};

/// A stored file's key: 32 lowercase hex digits drawn by the server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileKey(String);

impl FileKey {
    /// A fresh random key.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        FileKey(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// A key read back from the app's database; `None` unless it is 32
    /// lowercase hex digits (so a tampered row cannot name a path).
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| FileKey(text.to_owned()))
    }

    /// The key's text, for the app's database.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored file, opened for reading.
pub struct StoredFile {
    /// Size in bytes.
    pub len: u64,
    /// The bytes, streamed.
    pub body: Body,
}

/// Why a store operation failed. No variant carries a credential or a
/// signed URL: the text is safe to log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store's backend failed (disk, network).
    #[error("file store: {0}")]
    Io(#[from] std::io::Error),
    /// A remote backend answered with a failure status (a refused
    /// signature, a missing bucket, a full quota…).
    #[error("file store: the backend answered {operation} with {status}{}", code_suffix(.code))]
    Backend {
        /// What was asked (`put`, `get`, `delete`, `create bucket`).
        operation: &'static str,
        /// The status it answered.
        status: StatusCode,
        /// Its error code, if it sent one (S3: `SignatureDoesNotMatch`,
        /// `NoSuchBucket`, `AccessDenied`…).
        code: Option<String>,
    },
    /// A remote backend could not be reached (refused, reset, TLS).
    #[error("file store: {operation} could not reach the backend: {reason}")]
    Unreachable {
        /// What was asked.
        operation: &'static str,
        /// Why, without the request's URL.
        reason: String,
    },
    /// A remote backend did not answer in time.
    #[error("file store: {operation} got no answer from the backend within {after:?}")]
    TimedOut {
        /// What was asked.
        operation: &'static str,
        /// The timeout that ran out.
        after: std::time::Duration,
    },
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_deref()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default()
}

/// Somewhere to keep accepted files. Implementations must store under the
/// given key only, overwrite nothing silently (keys are random), and make
/// `get` after `delete` return `None`.
pub trait FileStore: Send + Sync + 'static {
    /// Keeps `file` under `key` (moving it out of its temp file).
    fn put<'a>(
        &'a self,
        key: &'a FileKey,
        file: StagedFile,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Opens the file under `key`; `None` if there is none.
    fn get<'a>(&'a self, key: &'a FileKey)
    -> BoxFuture<'a, Result<Option<StoredFile>, StoreError>>;
    /// Removes the file under `key` (no error if there is none).
    fn delete<'a>(&'a self, key: &'a FileKey) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Files in a directory on local disk, one file per key.
#[derive(Clone, Debug)]
pub struct LocalDisk {
    root: PathBuf,
}

impl LocalDisk {
    /// A store in `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalDisk { root })
    }

    fn path(&self, key: &FileKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

impl FileStore for LocalDisk {
    fn put<'a>(
        &'a self,
        key: &'a FileKey,
        file: StagedFile,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let target = self.path(key);
            // A rename when the temp dir is on the same file system; else a
            // copy (the temp file is still deleted when `file` drops).
            match file.path.persist(&target) {
                Ok(()) => Ok(()),
                Err(e) => {
                    let temp = e.path;
                    tokio::fs::copy(&*temp, &target).await?;
                    Ok(())
                }
            }
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a FileKey,
    ) -> BoxFuture<'a, Result<Option<StoredFile>, StoreError>> {
        Box::pin(async move {
            match tokio::fs::File::open(self.path(key)).await {
                Ok(file) => {
                    let len = file.metadata().await?.len();
                    let stream = tokio_util::io::ReaderStream::new(file);
                    Ok(Some(StoredFile {
                        len,
                        body: Body::from_stream(stream),
                    }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn delete<'a>(&'a self, key: &'a FileKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match tokio::fs::remove_file(self.path(key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        })
    }
}

/// Types a browser shows without running anything; everything else is
/// sent as `application/octet-stream`.
const PASSIVE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
];

/// A stored file as a download: always `Content-Disposition: attachment`
/// (with the sanitised name), `X-Content-Type-Options: nosniff`, a CSP that
/// sandboxes the document and allows nothing, `Cross-Origin-Resource-Policy:
/// same-origin`, and `Cache-Control: private, no-store`. The content type is
/// the one recognised from the bytes if it is passive, else
/// `application/octet-stream`.
pub fn download(file: StoredFile, file_name: &str, content_type: &str) -> Response {
    let content_type: &'static str = PASSIVE_TYPES
        .iter()
        .copied()
        .find(|t| *t == content_type)
        .unwrap_or("application/octet-stream");
    let name = matching_extension(super::sanitize_file_name(file_name), content_type);
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // RFC 8187 `attr-char`: letters, digits and `!#$&+-.^_`|~` stay.
    const NOT_ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'!')
        .remove(b'#')
        .remove(b'$')
        .remove(b'&')
        .remove(b'+')
        .remove(b'-')
        .remove(b'.')
        .remove(b'^')
        .remove(b'_')
        .remove(b'`')
        .remove(b'|')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(&name, NOT_ATTR_CHAR);
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let mut response = Response::new(file.body);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(file.len));
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition)
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(crate::wire::DOWNLOAD_CSP),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    response
}

/// The name with an extension that matches the type it is served as, so a
/// browser saving it does not give a text file an `.html` name (which
/// would open as a page from the disk): a passive type's own extension is
/// appended unless the name has one of them; an `octet-stream` download
/// named like a page or script gets `.bin`.
fn matching_extension(name: String, content_type: &str) -> String {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let allowed: &[&str] = match content_type {
        "image/png" => &["png"],
        "image/jpeg" => &["jpg", "jpeg"],
        "image/gif" => &["gif"],
        "image/webp" => &["webp"],
        "application/pdf" => &["pdf"],
        "text/plain" => &["txt", "text", "log", "md", "csv"],
        _ => {
            const ACTIVE: &[&str] = &[
                "html", "htm", "xhtml", "shtml", "svg", "svgz", "xml", "xsl", "js", "mjs",
            ];
            return if ACTIVE.contains(&ext.as_str()) {
                format!("{name}.bin")
            } else {
                name
            };
        }
    };
    if allowed.contains(&ext.as_str()) {
        name
    } else {
        format!("{name}.{}", allowed[0])
    }
}

/// Refuses (403) a download another site asked for: `Sec-Fetch-Site:
/// cross-site` (a browser embedding or fetching the file from another
/// origin) or an `Origin` header that is not this request's host. A
/// download link clicked on this site, a typed URL and a client without
/// those headers pass.
pub fn refuse_cross_site(headers: &HeaderMap) -> Result<(), Response> {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    let origin_mismatch = match (
        headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
        headers.get(header::HOST).and_then(|v| v.to_str().ok()),
    ) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_none_or(|(_, authority)| authority != host),
        _ => false,
    };
    if site == "cross-site" || site == "same-site" || origin_mismatch {
        let rejection = Rejection::with_message(
            ErrorCode::CrossOriginRequest,
            "Files can only be downloaded from this site's own pages.",
        );
        return Err((StatusCode::FORBIDDEN, rejection.message).into_response());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hex_and_nothing_else() {
        let key = FileKey::random();
        assert_eq!(FileKey::parse(key.as_str()), Some(key));
        for bad in [
            "../../etc/passwd",
            "",
            "ABCDEF0123456789ABCDEF0123456789",
            "0".repeat(31).as_str(),
        ] {
            assert_eq!(FileKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn served_names_end_in_an_extension_of_their_type() {
        let t = |n: &str, ty: &str| matching_extension(n.to_owned(), ty);
        assert_eq!(t("x.html", "text/plain"), "x.html.txt");
        assert_eq!(t("notes.TXT", "text/plain"), "notes.TXT");
        assert_eq!(t("photo", "image/jpeg"), "photo.jpg");
        assert_eq!(t("a.svg", "image/png"), "a.svg.png");
        assert_eq!(t("page.htm", "application/octet-stream"), "page.htm.bin");
        assert_eq!(t("data.zip", "application/zip"), "data.zip");
    }

    #[test]
    fn cross_site_downloads_are_refused() {
        let mut h = HeaderMap::new();
        assert!(refuse_cross_site(&h).is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(refuse_cross_site(&h).is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert_eq!(
            refuse_cross_site(&h).unwrap_err().status(),
            StatusCode::FORBIDDEN
        );
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app.example"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(refuse_cross_site(&h).is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        assert!(refuse_cross_site(&h).is_ok());
    }
}
