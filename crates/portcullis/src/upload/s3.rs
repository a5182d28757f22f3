//! [`S3Store`]: accepted files in an S3-compatible bucket (feature `s3`),
//! so that files live apart from the app servers' disks and any instance
//! can serve any file. Why, the bucket's state (who writes it, what bounds
//! and removes it, what one user can do to others) and what never to do
//! with the bucket are on [`S3Store`], where the API docs show them.

use std::fmt;
use std::time::Duration;

use axum::body::Body;
use futures::TryStreamExt;
use futures::future::BoxFuture;
use http::{StatusCode, header};
use reqwest::Url;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{FileKey, FileStore, StagedFile, StoreError, StoredFile};

/// Default time to open a connection to the endpoint.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time for a whole `put` or `delete`, and for a `get` until the
/// object's headers arrive.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a `get`'s body may send nothing before it is cut.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach a bucket. Build one with [`S3Config::new`] or
/// [`S3Config::from_env`], adjust the public fields, then
/// [`S3Store::new`]. Its `Debug` hides the secret.
#[derive(Clone)]
pub struct S3Config {
    /// The endpoint, e.g. `https://s3.eu-west-1.amazonaws.com` or
    /// `http://127.0.0.1:9000` (`PORTCULLIS_S3_ENDPOINT`).
    pub endpoint: String,
    /// The region the requests are signed for (`PORTCULLIS_S3_REGION`,
    /// default `us-east-1`; local servers accept any).
    pub region: String,
    /// The bucket's name (`PORTCULLIS_S3_BUCKET`).
    pub bucket: String,
    /// The access key id (`PORTCULLIS_S3_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// The secret access key (`PORTCULLIS_S3_SECRET_ACCESS_KEY`). Only
    /// used to sign; never logged, never in an error.
    pub secret_access_key: String,
    /// Put before every key (`PORTCULLIS_S3_PREFIX`, default empty), e.g.
    /// `uploads/`: letters, digits and `/ _ - . ! * ' ( )`, no leading `/`
    /// and no `.` or `..` segment.
    pub prefix: String,
    /// `false` (the default): path-style URLs, `{endpoint}/{bucket}/{key}`,
    /// which every S3-compatible server and AWS accept. `true`:
    /// virtual-hosted style, `{bucket}.{endpoint host}/{key}`
    /// (`PORTCULLIS_S3_VIRTUAL_HOST=1`).
    pub virtual_host: bool,
    /// Time to connect ([`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// Time for a whole `put` or `delete`, and for a `get` until the
    /// object's headers arrive ([`DEFAULT_TIMEOUT`]). A `put` sends the
    /// whole file within it: raise it with the largest upload cap.
    pub timeout: Duration,
    /// Time a `get`'s body may send nothing ([`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .field("prefix", &self.prefix)
            .field("virtual_host", &self.virtual_host)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// Why an [`S3Store`] could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    /// A required environment variable is not set (or empty).
    #[error("{0} is not set; the S3 file store needs it")]
    Missing(&'static str),
    /// A setting is not usable.
    #[error("S3 file store: {what} {reason}")]
    Invalid {
        /// The setting (an environment variable's name for
        /// [`S3Config::from_env`]).
        what: &'static str,
        /// What is wrong with it (never the secret).
        reason: String,
    },
    /// The HTTP client could not be built (TLS roots).
    #[error("S3 file store: the HTTP client could not be built: {0}")]
    Client(String),
}

impl S3Config {
    /// A config with the default prefix (none), path-style URLs and the
    /// default timeouts.
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        bucket: impl Into<String>,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        S3Config {
            endpoint: endpoint.into(),
            region: region.into(),
            bucket: bucket.into(),
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            prefix: String::new(),
            virtual_host: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// From the environment: `PORTCULLIS_S3_ENDPOINT`,
    /// `PORTCULLIS_S3_BUCKET`, `PORTCULLIS_S3_ACCESS_KEY_ID` and
    /// `PORTCULLIS_S3_SECRET_ACCESS_KEY` are required (the error names the
    /// first one missing); `PORTCULLIS_S3_REGION` (default `us-east-1`),
    /// `PORTCULLIS_S3_PREFIX` and `PORTCULLIS_S3_VIRTUAL_HOST` are optional.
    pub fn from_env() -> Result<Self, S3ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`S3Config::from_env`], with the variables looked up by `var`
    /// (a secrets manager, a config file, a test).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, S3ConfigError> {
        let get = |name: &'static str| var(name).filter(|v| !v.trim().is_empty());
        let need = |name: &'static str| get(name).ok_or(S3ConfigError::Missing(name));
        let mut config = S3Config::new(
            need("PORTCULLIS_S3_ENDPOINT")?,
            get("PORTCULLIS_S3_REGION").unwrap_or_else(|| "us-east-1".to_owned()),
            need("PORTCULLIS_S3_BUCKET")?,
            need("PORTCULLIS_S3_ACCESS_KEY_ID")?,
            need("PORTCULLIS_S3_SECRET_ACCESS_KEY")?,
        );
        config.prefix = get("PORTCULLIS_S3_PREFIX").unwrap_or_default();
        config.virtual_host = match get("PORTCULLIS_S3_VIRTUAL_HOST").as_deref() {
            None | Some("0" | "false") => false,
            Some("1" | "true") => true,
            Some(_) => {
                return Err(S3ConfigError::Invalid {
                    what: "PORTCULLIS_S3_VIRTUAL_HOST",
                    reason: "must be 1, true, 0 or false".to_owned(),
                });
            }
        };
        Ok(config)
    }
}

/// Files as objects in an S3-compatible bucket, one object per key, under
/// a prefix. Cloning shares the connection pool; `Debug` hides the secret.
///
/// Why: files on the app server's own disk ([`LocalDisk`](super::LocalDisk))
/// tie the app to one machine, fill its disk and go with it. A bucket
/// (AWS S3, MinIO, Garage, Ceph, R2…) keeps them apart from the app
/// servers, so any instance can serve any file and a redeploy loses none.
///
/// The bucket is storage, not a web server. Files still go out through the
/// app's own route and [`download`](super::download), so they are always an
/// attachment with `nosniff` and a sandboxing CSP, and the app checks who
/// may read each one before it is fetched. Never give the bucket a
/// public-read policy or hand browsers presigned URLs to it: the app's
/// access checks and download headers would be bypassed, and a file's
/// type would be whatever the bucket says.
///
/// How: every request is signed as a presigned SigV4 URL (`rusty-s3`, which
/// only signs) and sent with reqwest. A `put` streams the temp file with its
/// `Content-Length` (never read into memory), a `get` streams the object
/// back, a `delete` of a missing object succeeds. Each request has a connect
/// timeout and a total timeout; a `get`'s body, streamed to a download of
/// unknown speed, has an idle timeout instead. A failure status becomes
/// [`StoreError::Backend`] with the status and the S3 error code; no error
/// carries a signed URL, its query or the secret.
///
/// State (the bucket's objects):
/// * **Who writes it**: the app's handler, by [`FileStore::put`] after the
///   upload passed its field's cap and type check; object keys are the
///   configured prefix and a random [`FileKey`], never a client's name.
/// * **What bounds it**: each object is at most its upload field's
///   `MAX_BYTES`; how many objects and bytes one user or team may keep is
///   the app's quota (as in the demo: a per-team total checked before the
///   `put`). The store itself enforces no total; a bucket quota or alert
///   at the provider is a second line.
/// * **What removes it**: the app's [`FileStore::delete`] when the record
///   that names the key goes (the demo also sweeps orphans). Nothing
///   expires by itself; a lifecycle rule on the prefix can, if the app
///   wants that.
/// * **Abuse by one user**: bounded by the app's quota; without one, a user
///   can fill the bucket (and the bill) but not read, overwrite or delete
///   another's objects, whose keys are random and never shown.
///
/// In the process the store keeps only reqwest's connection pool (idle
/// connections close after reqwest's 90 s default).///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use portcullis::action::upload::{FileStore, S3Store};
/// // PORTCULLIS_S3_ENDPOINT, _BUCKET, _ACCESS_KEY_ID, _SECRET_ACCESS_KEY…
/// let store = std::sync::Arc::new(S3Store::from_env()?);
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct S3Store {
    bucket: Bucket,
    credentials: Credentials,
    prefix: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket_url", &self.bucket.base_url().as_str())
            .field("region", &self.bucket.region())
            .field("access_key_id", &self.credentials.key())
            .field("secret_access_key", &"<hidden>")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl S3Store {
    /// A store for `config`'s bucket. Checks the settings; makes no
    /// request (the bucket must exist: [`S3Store::create_bucket`] makes it
    /// where the operator has not).
    pub fn new(config: S3Config) -> Result<Self, S3ConfigError> {
        let invalid = |what, reason: &str| S3ConfigError::Invalid {
            what,
            reason: reason.to_owned(),
        };
        let endpoint: Url = config
            .endpoint
            .parse()
            .map_err(|_| invalid("endpoint", "is not a URL"))?;
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            // They would be ignored, and they look like a secret in a log.
            return Err(invalid(
                "endpoint",
                "must not carry credentials (use the access key settings)",
            ));
        }
        if config.bucket.is_empty() {
            return Err(invalid("bucket", "is empty"));
        }
        if config.region.is_empty() {
            return Err(invalid("region", "is empty"));
        }
        check_prefix(&config.prefix).map_err(|reason| invalid("prefix", reason))?;
        let style = if config.virtual_host {
            UrlStyle::VirtualHost
        } else {
            UrlStyle::Path
        };
        let bucket = Bucket::new(endpoint, style, config.bucket, config.region).map_err(|e| {
            invalid(
                "endpoint",
                match e {
                    rusty_s3::BucketError::UnsupportedScheme => "must be http or https",
                    rusty_s3::BucketError::MissingHost => "has no host",
                    rusty_s3::BucketError::ParseError(_) => {
                        "and bucket do not make a URL (a virtual-hosted bucket needs a DNS name)"
                    }
                },
            )
        })?;
        if config.timeout.is_zero()
            || config.connect_timeout.is_zero()
            || config.idle_timeout.is_zero()
        {
            return Err(invalid("timeout", "must be more than zero"));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.idle_timeout)
            // A redirect would be another host or region: an error, not a
            // second signed request somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| S3ConfigError::Client(e.without_url().to_string()))?;
        Ok(S3Store {
            bucket,
            credentials: Credentials::new(config.access_key_id, config.secret_access_key),
            prefix: config.prefix,
            client,
            timeout: config.timeout,
        })
    }

    /// [`S3Config::from_env`], then [`S3Store::new`].
    pub fn from_env() -> Result<Self, S3ConfigError> {
        Self::new(S3Config::from_env()?)
    }

    /// Sends `request` under the store's total timeout; a transport
    /// failure becomes [`StoreError::Unreachable`] or
    /// [`StoreError::TimedOut`] for `operation`.
    async fn send(
        &self,
        operation: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, StoreError> {
        request
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport(operation, self.timeout, e))
    }

    /// The object key for `key`: the prefix, then the key's 32 hex digits.
    pub fn object_key(&self, key: &FileKey) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    /// Creates the bucket (no error if this account already has it), for
    /// setup scripts and tests. It sends no location constraint, so outside
    /// AWS's `us-east-1` create production buckets with the provider's
    /// tools, where their policy (private, no public read) is set too.
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        const OP: &str = "create bucket";
        // A bucket these credentials can already reach is done (some
        // servers answer a second create with `BucketAlreadyExists` even
        // to its owner).
        let url = self
            .bucket
            .head_bucket(Some(&self.credentials))
            .sign(self.ttl());
        let response = self.send(OP, self.client.head(url)).await?;
        if response.status().is_success() {
            return Ok(());
        }
        let url = self
            .bucket
            .create_bucket(&self.credentials)
            .sign(self.ttl());
        let response = self
            .send(OP, self.client.put(url).header(header::CONTENT_LENGTH, 0))
            .await?;
        match response.status() {
            s if s.is_success() => Ok(()),
            StatusCode::CONFLICT => match backend(OP, response).await {
                StoreError::Backend { code: Some(c), .. } if c == "BucketAlreadyOwnedByYou" => {
                    Ok(())
                }
                other => Err(other),
            },
            _ => Err(backend(OP, response).await),
        }
    }

    /// How long a presigned URL is valid: the request's timeout and a
    /// minute for clock skew. The URL never leaves the process.
    fn ttl(&self) -> Duration {
        self.timeout + Duration::from_secs(60)
    }
}

impl FileStore for S3Store {
    fn put<'a>(
        &'a self,
        key: &'a FileKey,
        file: StagedFile,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            const OP: &str = "put";
            let object = self.object_key(key);
            let url = self
                .bucket
                .put_object(Some(&self.credentials), &object)
                .sign(self.ttl());
            let temp = tokio::fs::File::open(file.path()).await?;
            let len = temp.metadata().await?.len();
            // Streamed from the temp file in chunks; the explicit length
            // makes hyper send `Content-Length` (S3 refuses chunked bodies
            // on a plain PUT) and fail if the file turns out shorter.
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(temp));
            let response = self
                .send(
                    OP,
                    self.client
                        .put(url)
                        .header(header::CONTENT_LENGTH, len)
                        .header(header::CONTENT_TYPE, "application/octet-stream")
                        .body(body),
                )
                .await?;
            if !response.status().is_success() {
                return Err(backend(OP, response).await);
            }
            // `file` drops here: the temp file is deleted.
            drop(file);
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a FileKey,
    ) -> BoxFuture<'a, Result<Option<StoredFile>, StoreError>> {
        Box::pin(async move {
            const OP: &str = "get";
            let object = self.object_key(key);
            let url = self
                .bucket
                .get_object(Some(&self.credentials), &object)
                .sign(self.ttl());
            // The total timeout covers the answer's head only: the body is
            // streamed to a download of unknown speed, under the client's
            // idle (read) timeout.
            let response = tokio::time::timeout(self.timeout, self.client.get(url).send())
                .await
                .map_err(|_| StoreError::TimedOut {
                    operation: OP,
                    after: self.timeout,
                })?
                .map_err(|e| transport(OP, self.timeout, e))?;
            match response.status() {
                s if s.is_success() => {}
                StatusCode::NOT_FOUND => {
                    return match backend(OP, response).await {
                        e if missing_bucket(&e) => Err(e),
                        _ => Ok(None),
                    };
                }
                _ => return Err(backend(OP, response).await),
            }
            let len = response.content_length().ok_or_else(|| {
                StoreError::Io(std::io::Error::other(
                    "the S3 backend sent an object without Content-Length",
                ))
            })?;
            let stream = response
                .bytes_stream()
                .map_err(|e| std::io::Error::other(describe(e)));
            Ok(Some(StoredFile {
                len,
                body: Body::from_stream(stream),
            }))
        })
    }

    fn delete<'a>(&'a self, key: &'a FileKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            const OP: &str = "delete";
            let object = self.object_key(key);
            let url = self
                .bucket
                .delete_object(Some(&self.credentials), &object)
                .sign(self.ttl());
            let response = self.send(OP, self.client.delete(url)).await?;
            match response.status() {
                s if s.is_success() => Ok(()),
                // Already gone is fine; a missing bucket is a misconfigured
                // store, not a deleted file.
                _ => match backend(OP, response).await {
                    e if missing_bucket(&e) => Err(e),
                    StoreError::Backend {
                        status: StatusCode::NOT_FOUND,
                        ..
                    } => Ok(()),
                    e => Err(e),
                },
            }
        })
    }
}

/// A prefix that makes only plain keys: URL-safe characters, no leading
/// `/`, no empty, `.` or `..` segment (a URL would resolve those into
/// another key or bucket).
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Ok(());
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_-.!*'()".contains(&b))
    {
        return Err("may hold only letters, digits and / _ - . ! * ' ( )");
    }
    if prefix.len() > 512 {
        return Err("is longer than 512 bytes");
    }
    let mut segments: Vec<&str> = prefix.split('/').collect();
    // `uploads/` ends in an empty segment that the key fills.
    if segments.last() == Some(&"") {
        segments.pop();
    }
    if segments.iter().any(|s| matches!(*s, "" | "." | "..")) {
        return Err("must not start with / nor hold an empty, . or .. segment");
    }
    Ok(())
}

/// A transport failure as an error without the request's URL (the signed
/// query, with the access key id and the signature, stays out of errors
/// and logs).
fn transport(operation: &'static str, timeout: Duration, e: reqwest::Error) -> StoreError {
    if e.is_timeout() {
        return StoreError::TimedOut {
            operation,
            after: timeout,
        };
    }
    StoreError::Unreachable {
        operation,
        reason: describe(e),
    }
}

/// The error and its causes, one line, without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A failure status as [`StoreError::Backend`], with the S3 error code
/// from the first 4 KiB of the body. Only the `<Code>` element is read
/// (by hand: an XML parser for one element of a bounded body is not worth
/// a dependency); the message and the rest, which on some servers echo the
/// string to sign, are dropped.
async fn backend(operation: &'static str, mut response: reqwest::Response) -> StoreError {
    let status = response.status();
    let mut body = Vec::new();
    while body.len() < 4096 {
        match tokio::time::timeout(Duration::from_secs(5), response.chunk()).await {
            Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    StoreError::Backend {
        operation,
        status,
        code: error_code(&body),
    }
}

/// A 404 that is about the bucket, not the object (AWS and MinIO say
/// `NoSuchBucket`; s3s-fs, the test server, answers as for a missing key).
fn missing_bucket(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend { code: Some(c), .. } if c == "NoSuchBucket")
}

/// `<Code>…</Code>` of an S3 error document, if it is a short identifier.
fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    let code = &text[start..end];
    (!code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_that_would_resolve_elsewhere_are_refused() {
        for good in ["", "uploads/", "app/files/", "a-b_c.d/"] {
            assert_eq!(check_prefix(good), Ok(()), "{good}");
        }
        for bad in [
            "/x/",
            "../other/",
            "a/../",
            "a//b/",
            "./",
            "a b/",
            "a?b",
            "%2e%2e/",
        ] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_error_code_is_read_and_nothing_else() {
        let xml = b"<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><StringToSign>AWS4</StringToSign></Error>";
        assert_eq!(error_code(xml).as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!(error_code(b"<Code><script></Code>"), None);
        assert_eq!(error_code(b"not xml"), None);
    }

    #[test]
    fn from_env_names_the_missing_variable() {
        let vars = [
            ("PORTCULLIS_S3_ENDPOINT", "http://127.0.0.1:9000"),
            ("PORTCULLIS_S3_BUCKET", "files"),
            ("PORTCULLIS_S3_ACCESS_KEY_ID", "AKID"),
            ("PORTCULLIS_S3_SECRET_ACCESS_KEY", "very-secret-key"),
        ];
        for (missing, _) in vars {
            let err = S3Config::from_lookup(|name| {
                vars.iter()
                    .find(|(n, _)| *n == name && *n != missing)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap_err();
            assert!(matches!(err, S3ConfigError::Missing(n) if n == missing));
            assert!(err.to_string().contains(missing), "{err}");
        }
        let config = S3Config::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .or_else(|| (name == "PORTCULLIS_S3_PREFIX").then(|| "uploads/".to_owned()))
        })
        .unwrap();
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.prefix, "uploads/");
        assert!(!config.virtual_host);
        let store = S3Store::new(config.clone()).unwrap();
        assert_eq!(
            store.object_key(&FileKey::parse(&"a".repeat(32)).unwrap()),
            format!("uploads/{}", "a".repeat(32))
        );
        for debug in [format!("{config:?}"), format!("{store:?}")] {
            assert!(!debug.contains("very-secret-key"), "{debug}");
            assert!(debug.contains("<hidden>"), "{debug}");
        }
    }

    #[test]
    fn endpoints_with_credentials_or_odd_schemes_are_refused() {
        let cfg = |endpoint: &str| S3Config::new(endpoint, "us-east-1", "b", "k", "s");
        assert!(S3Store::new(cfg("http://user:pw@127.0.0.1:9000")).is_err());
        assert!(S3Store::new(cfg("ftp://127.0.0.1")).is_err());
        assert!(S3Store::new(cfg("not a url")).is_err());
        let mut zero = cfg("http://127.0.0.1:9000");
        zero.timeout = Duration::ZERO;
        assert!(S3Store::new(zero).is_err());
        assert!(S3Store::new(cfg("https://s3.example.com")).is_ok());
    }
}
