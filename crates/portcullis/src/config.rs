//! Configuration, from the environment or built in code.
//!
//! | variable                       | meaning                                                   |
//! |--------------------------------|-----------------------------------------------------------|
//! | `PORTCULLIS_ENV`               | `production` or `development` (default)                   |
//! | `PORTCULLIS_SECRET`            | master secret, base64, ≥ 32 bytes (required in production) |
//! | `PORTCULLIS_SECRET_PREVIOUS`   | the previous master secret during a rotation              |
//! | `PORTCULLIS_ALLOWED_ORIGINS`   | comma list of extra origins (`https://*.example.com`)     |
//! | `PORTCULLIS_TRUSTED_PROXIES`   | comma list of CIDRs whose forwarding headers are believed  |
//! | `PORTCULLIS_CLIENT_IP_HEADER`  | the one header those proxies write: `x-forwarded-for` (default), `forwarded`, `x-real-ip`, `none` |
//! | `PORTCULLIS_PROXY_HOPS`        | client = n-th address from the right of that header (default: right-most not in the CIDRs) |
//! | `PORTCULLIS_STRICT_ORIGIN`     | `1`: refuse unsafe requests with neither Sec-Fetch-Site nor Origin |
//! | `PORTCULLIS_ID_ROTATION_DAYS`  | action id epoch length (default 14)                        |
//! | `PORTCULLIS_SECURE_COOKIES`    | `1`/`0`; default: on in production                        |
//! | `PORTCULLIS_LOGIN_PATH`        | the app's sign-in page (default `/login`; [`Config::login_path`]) |
//! | `PORTCULLIS_REAUTH_PATH`       | the app's password-confirmation page (default `/reauth`; [`Config::reauth_path`]) |
//! | `REDIS_URL`                    | Redis for rate limits, quotas and spent challenges (else in memory) |
//! | `PORTCULLIS_REDIS_PREFIX`      | key prefix in Redis (default `portcullis:`)               |
//! | `PORTCULLIS_LIMITER_TIMEOUT_MS`| limiter backend timeout (default 50); slower = 503 / fail-open |
//! | `PORTCULLIS_REDIS_TIMEOUT_MS`  | deadline of one Redis command: sessions on Redis, idempotency, tag bus (default 50) |
//! | `PORTCULLIS_SESSION_TIMEOUT_MS`| deadline of one session-store operation, any store (default 500) |
//! | `PORTCULLIS_HANDLER_TIMEOUT_MS`| deadline of a whole action handler or page (default 10000) |
//! | `PORTCULLIS_UPLOAD_DIR`        | temp dir for files being uploaded (default `portcullis-uploads` in the OS temp dir) |
//! | `PORTCULLIS_UPLOAD_DEADLINE_SECS` | deadline of a whole upload request (default 120)      |
//!
//! Without `REDIS_URL` limits are kept in this process only — right for one
//! instance, wrong behind a load balancer — and the start-up notes say so.
//!
//! In development without a secret, one is generated and stored (mode 0600)
//! under the app's data dir, and the app says so; production refuses to start
//! without one. `Debug` output never contains key material.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::body::BodyLimits;
use crate::keys::{KeyRing, MasterSecret, SecretError};
use crate::origin::{AllowlistError, OriginPolicy};
use crate::proxy::{ProxyConfigError, TrustedProxies};

/// Which safety net applies (`PORTCULLIS_ENV`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The default: a missing secret is generated and stored, cookies are
    /// not `Secure` unless asked for, missing pieces are warnings.
    Development,
    /// Refuses to start without a secret, an account directory or with any
    /// development setting ([`crate::security::check_deployment`]);
    /// `Secure` cookies and HSTS.
    Production,
}

/// Everything the pipeline needs to know. Build with [`Config::new`] (code,
/// tests) or [`Config::from_env`].
#[derive(Clone, Debug)]
pub struct Config {
    /// Development or production (default development).
    pub mode: Mode,
    /// Every subkey, derived from the master secret (and the previous one
    /// during a rotation).
    pub keys: KeyRing,
    /// Which origins may send unsafe requests (default: same origin only).
    pub origin: OriginPolicy,
    /// Whose forwarding headers name the client IP (default: nobody's).
    pub proxies: TrustedProxies,
    /// App-wide body caps; actions may lower or raise `body_bytes`.
    pub body_limits: BodyLimits,
    /// Action id epoch length (default 14 days).
    pub id_rotation: Duration,
    /// `Secure` on the session cookie.
    pub secure_cookies: bool,
    /// Session idle timeout (default 12 h).
    pub session_idle: Duration,
    /// Session absolute lifetime (default 7 days).
    pub session_absolute: Duration,
    /// The app's sign-in page, a same-origin path. Default `/login`
    /// (`PORTCULLIS_LOGIN_PATH`). The framework sends the browser there with
    /// `?return=<where it was>` ([`crate::wire::LOGIN_RETURN_PARAM`]):
    /// [`crate::Page::require_viewer`] redirects there, a 401
    /// `unauthenticated` error page links there, and the client runtime
    /// goes there when a form's action answers 401 (the form's
    /// `data-login`). The app serves the page (a form for its sign-in
    /// action) and its sign-in action sends the user back; `docs/guide.md`,
    /// "A sign-in page", shows the pieces.
    pub login_path: String,
    /// The app's password-confirmation page for actions with a
    /// `.recent(..)` policy, a same-origin path. Default `/reauth`
    /// (`PORTCULLIS_REAUTH_PATH`). Used like [`Config::login_path`] for 401
    /// `reauthentication_required`: the error page links there, and forms
    /// of such actions carry it (`data-reauth`) for the client runtime. An
    /// app without `.recent(..)` actions needs no such page.
    pub reauth_path: String,
    /// Redis for limits, quotas and spent challenges; `None` = in memory.
    pub redis_url: Option<RedisUrl>,
    /// Prefix of every key the limiter writes to Redis.
    pub redis_prefix: String,
    /// How long a limiter check may take before the action fails closed
    /// (503) or, if it opted in, open (default 50 ms).
    pub limiter_timeout: Duration,
    /// Deadlines of external calls (see [`crate::store`]).
    pub deadlines: Deadlines,
    /// Temp dir, deadline and concurrency of file uploads
    /// ([`crate::action::upload`]).
    pub uploads: crate::upload::UploadConfig,
}

/// How long each kind of external call may take. Configured with
/// `PORTCULLIS_REDIS_TIMEOUT_MS`, `PORTCULLIS_SESSION_TIMEOUT_MS` and
/// `PORTCULLIS_HANDLER_TIMEOUT_MS` (see this module).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// One Redis command (idempotency claim/complete, tag-bus publish,
    /// session commands on Redis). Default 50 ms: a healthy Redis answers
    /// in well under a millisecond.
    pub redis: Duration,
    /// One session-store operation (load, create, save, delete), whatever
    /// the store. Default 500 ms: generous for a SQL store under write
    /// contention, short enough that a hung store answers 503 at once.
    pub session: Duration,
    /// A whole handler (or page) run: the bound on dependencies the
    /// framework cannot see, such as the app's database. Default 10 s.
    pub handler: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            redis: Duration::from_millis(50),
            session: Duration::from_millis(500),
            handler: Duration::from_secs(10),
        }
    }
}

/// A Redis URL whose `Debug` hides any password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(pub String);

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// The URL with any password hidden (for messages a person reads).
impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.0.split_once("://"), self.0.rsplit_once('@')) {
            (Some((scheme, _)), Some((_, host))) => write!(f, "{scheme}://<redacted>@{host}"),
            _ => f.write_str(&self.0),
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Production without `PORTCULLIS_SECRET`.
    #[error(
        "PORTCULLIS_SECRET is not set; production mode refuses to start without it (generate one with `openssl rand -base64 32`)"
    )]
    MissingSecret,
    /// A secret variable that is not valid base64 of at least 32 bytes.
    #[error("{var}: {source}")]
    Secret {
        /// `PORTCULLIS_SECRET` or `PORTCULLIS_SECRET_PREVIOUS`.
        var: &'static str,
        /// What is wrong with it (never its value).
        source: SecretError,
    },
    /// An unparsable or too broad origin allowlist entry.
    #[error("PORTCULLIS_ALLOWED_ORIGINS: {0}")]
    Origins(#[from] AllowlistError),
    /// An unparsable trusted-proxy CIDR.
    #[error("PORTCULLIS_TRUSTED_PROXIES: {0}")]
    Proxies(#[from] ProxyConfigError),
    /// Any other variable with a value outside its domain.
    #[error("{var}: expected {expected}, got `{value}`")]
    BadValue {
        /// The variable's name.
        var: &'static str,
        /// What it accepts.
        expected: &'static str,
        /// What it was set to (a Redis URL with its password redacted).
        value: String,
    },
    /// Production with development settings
    /// ([`crate::security::check_deployment`]).
    #[error("{0}")]
    Deploy(crate::deploy::Findings),
    /// The development secret file could not be read, parsed or created.
    #[error("dev secret file {path}: {source}")]
    DevSecret {
        /// `dev-secret` under the app's data dir.
        path: PathBuf,
        /// The I/O (or, as `InvalidData`, parse) error.
        source: std::io::Error,
    },
}

impl Config {
    /// Development defaults around a given secret.
    pub fn new(secret: MasterSecret) -> Self {
        Config {
            mode: Mode::Development,
            keys: KeyRing::new(&secret, None),
            origin: OriginPolicy::default(),
            proxies: TrustedProxies::none(),
            body_limits: BodyLimits::default(),
            id_rotation: Duration::from_secs(14 * 86_400),
            secure_cookies: false,
            session_idle: Duration::from_secs(12 * 3600),
            session_absolute: Duration::from_secs(7 * 86_400),
            login_path: "/login".into(),
            reauth_path: "/reauth".into(),
            redis_url: None,
            redis_prefix: "portcullis:".into(),
            limiter_timeout: Duration::from_millis(50),
            deadlines: Deadlines::default(),
            uploads: crate::upload::UploadConfig::default(),
        }
    }

    /// Reads the process environment. Returns the config and notes worth
    /// printing at start-up (e.g. where a dev secret was stored).
    pub fn from_env(data_dir: &Path) -> Result<(Self, Vec<String>), ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok(), data_dir)
    }

    /// Like [`Config::from_env`] over any lookup function (for tests).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        data_dir: &Path,
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let mut notes = Vec::new();
        let mode = match get("PORTCULLIS_ENV").as_deref().map(str::trim) {
            None | Some("") | Some("development") | Some("dev") => Mode::Development,
            Some("production") | Some("prod") => Mode::Production,
            Some(other) => {
                return Err(ConfigError::BadValue {
                    var: "PORTCULLIS_ENV",
                    expected: "`production` or `development`",
                    value: other.into(),
                });
            }
        };
        if mode == Mode::Production {
            refuse_development_defaults(&get, data_dir)?;
        }
        let secret_var = |var: &'static str| -> Result<Option<MasterSecret>, ConfigError> {
            match get(var).filter(|s| !s.trim().is_empty()) {
                None => Ok(None),
                Some(text) => MasterSecret::from_base64(&text)
                    .map(Some)
                    .map_err(|source| ConfigError::Secret { var, source }),
            }
        };
        let secret = match (secret_var("PORTCULLIS_SECRET")?, mode) {
            (Some(s), _) => s,
            (None, Mode::Production) => return Err(ConfigError::MissingSecret),
            (None, Mode::Development) => {
                let (secret, note) = dev_secret(data_dir)?;
                notes.push(note);
                secret
            }
        };
        let previous = secret_var("PORTCULLIS_SECRET_PREVIOUS")?;
        let list = |var: &str| get(var).unwrap_or_default();
        let strict = flag(&get, "PORTCULLIS_STRICT_ORIGIN")?.unwrap_or(false);
        let origins = list("PORTCULLIS_ALLOWED_ORIGINS");
        let proxies = list("PORTCULLIS_TRUSTED_PROXIES");
        let mut config = Config::new(secret.clone());
        config.mode = mode;
        config.keys = KeyRing::new(&secret, previous.as_ref());
        config.origin = OriginPolicy::new(origins.split(','), strict)?;
        config.proxies = proxy_source(&get, TrustedProxies::parse(proxies.split(','))?)?;
        config.secure_cookies =
            flag(&get, "PORTCULLIS_SECURE_COOKIES")?.unwrap_or(mode == Mode::Production);
        if let Some(path) = page_path(&get, "PORTCULLIS_LOGIN_PATH")? {
            config.login_path = path;
        }
        if let Some(path) = page_path(&get, "PORTCULLIS_REAUTH_PATH")? {
            config.reauth_path = path;
        }
        if let Some(days) = get("PORTCULLIS_ID_ROTATION_DAYS") {
            let n: u64 = days.trim().parse().ok().filter(|d| *d > 0).ok_or_else(|| {
                ConfigError::BadValue {
                    var: "PORTCULLIS_ID_ROTATION_DAYS",
                    expected: "a whole number of days > 0",
                    value: days.clone(),
                }
            })?;
            config.id_rotation = Duration::from_secs(n * 86_400);
        }
        match get("REDIS_URL").map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()) {
            Some(url) => {
                redis::Client::open(url.as_str()).map_err(|e| ConfigError::BadValue {
                    var: "REDIS_URL",
                    expected: "a redis:// or rediss:// URL",
                    value: format!("{} ({e})", RedisUrl(url.clone())),
                })?;
                config.redis_url = Some(RedisUrl(url));
            }
            None => notes.push(
                "rate limits, quotas and spent challenges are kept in memory (set REDIS_URL when running more than one instance)"
                    .into(),
            ),
        }
        if let Some(prefix) = get("PORTCULLIS_REDIS_PREFIX").filter(|p| !p.trim().is_empty()) {
            config.redis_prefix = prefix.trim().to_owned();
        }
        if let Some(timeout) = millis(&get, "PORTCULLIS_LIMITER_TIMEOUT_MS")? {
            config.limiter_timeout = timeout;
        }
        config.deadlines = deadlines(&get)?;
        if let Some(dir) = get("PORTCULLIS_UPLOAD_DIR").filter(|d| !d.trim().is_empty()) {
            config.uploads.dir = dir.trim().into();
        }
        if let Some(text) = get("PORTCULLIS_UPLOAD_DEADLINE_SECS") {
            config.uploads.deadline = match text.trim().parse::<u64>() {
                Ok(secs @ 1..=3600) => Duration::from_secs(secs),
                _ => {
                    return Err(ConfigError::BadValue {
                        var: "PORTCULLIS_UPLOAD_DEADLINE_SECS",
                        expected: "whole seconds from 1 to 3600",
                        value: text,
                    });
                }
            };
        }
        Ok((config, notes))
    }
}

/// The `PORTCULLIS_*_TIMEOUT_MS` deadlines of external calls.
fn deadlines(get: &impl Fn(&str) -> Option<String>) -> Result<Deadlines, ConfigError> {
    let mut d = Deadlines::default();
    for (var, slot) in [
        ("PORTCULLIS_REDIS_TIMEOUT_MS", &mut d.redis),
        ("PORTCULLIS_SESSION_TIMEOUT_MS", &mut d.session),
        ("PORTCULLIS_HANDLER_TIMEOUT_MS", &mut d.handler),
    ] {
        if let Some(timeout) = millis(get, var)? {
            *slot = timeout;
        }
    }
    Ok(d)
}

/// A page path variable (`PORTCULLIS_LOGIN_PATH`, `PORTCULLIS_REAUTH_PATH`),
/// if set: a same-origin path without query or fragment, since the
/// framework appends `?return=…` to it. (`respond::safe_return_path` is the
/// same rule for return paths; it sits below this module.)
fn page_path(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<String>, ConfigError> {
    let Some(text) = get(var).filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let path = text.trim();
    let ok = path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= 256
        && !path
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '\\' | '?' | '#'));
    if !ok {
        return Err(ConfigError::BadValue {
            var,
            expected: "a path of this site such as `/login` (one leading `/`, no query, no `#`)",
            value: text,
        });
    }
    Ok(Some(path.to_owned()))
}

/// A `*_MS` variable: a whole number of milliseconds > 0, if set.
fn millis(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<Duration>, ConfigError> {
    let Some(ms) = get(var) else {
        return Ok(None);
    };
    let n: u64 =
        ms.trim()
            .parse()
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| ConfigError::BadValue {
                var,
                expected: "a whole number of milliseconds > 0",
                value: ms.clone(),
            })?;
    Ok(Some(Duration::from_millis(n)))
}

/// Production mode does not start with a development setting; every one
/// found is in the error ([`crate::deploy::framework_findings`]).
fn refuse_development_defaults(
    get: &impl Fn(&str) -> Option<String>,
    data_dir: &Path,
) -> Result<(), ConfigError> {
    let findings = crate::deploy::framework_findings(get, data_dir);
    if findings.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Deploy(crate::deploy::Findings(findings)))
    }
}

fn flag(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<Option<bool>, ConfigError> {
    match get(var).as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some("0" | "false" | "no" | "off") => Ok(Some(false)),
        Some(other) => Err(ConfigError::BadValue {
            var,
            expected: "1 or 0",
            value: other.into(),
        }),
    }
}

/// Which header the trusted proxies write and how many hops to walk
/// (`PORTCULLIS_CLIENT_IP_HEADER`, `PORTCULLIS_PROXY_HOPS`; see
/// [`crate::proxy`]).
fn proxy_source(
    get: &impl Fn(&str) -> Option<String>,
    proxies: TrustedProxies,
) -> Result<TrustedProxies, ConfigError> {
    let mut proxies = proxies;
    if let Some(text) = get("PORTCULLIS_CLIENT_IP_HEADER").filter(|t| !t.trim().is_empty()) {
        let header =
            crate::proxy::ClientIpHeader::parse(&text).ok_or_else(|| ConfigError::BadValue {
                var: "PORTCULLIS_CLIENT_IP_HEADER",
                expected: "`x-forwarded-for`, `forwarded`, `x-real-ip` or `none`",
                value: text.clone(),
            })?;
        proxies = proxies.with_header(header);
    }
    if let Some(text) = get("PORTCULLIS_PROXY_HOPS").filter(|t| !t.trim().is_empty()) {
        let hops: usize = text.trim().parse().map_err(|_| ConfigError::BadValue {
            var: "PORTCULLIS_PROXY_HOPS",
            expected: "a whole number of proxies (0: walk the trusted CIDRs)",
            value: text.clone(),
        })?;
        proxies = proxies.with_hops(hops);
    }
    Ok(proxies)
}

/// Loads or creates the development secret under `data_dir`.
fn dev_secret(data_dir: &Path) -> Result<(MasterSecret, String), ConfigError> {
    let path = data_dir.join("dev-secret");
    let err = |source| ConfigError::DevSecret {
        path: path.clone(),
        source,
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        let secret = MasterSecret::from_base64(&text).map_err(|e| {
            err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            ))
        })?;
        let note = format!(
            "development mode: using the dev secret stored in {} (set PORTCULLIS_SECRET in production)",
            path.display()
        );
        return Ok((secret, note));
    }
    std::fs::create_dir_all(data_dir).map_err(err)?;
    let secret = MasterSecret::generate();
    write_private(&path, secret.to_base64().as_bytes()).map_err(err)?;
    let note = format!(
        "development mode: generated a secret and stored it in {} (set PORTCULLIS_SECRET in production)",
        path.display()
    );
    Ok((secret, note))
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn tmp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("portcullis-config-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn production_refuses_to_start_without_a_secret() {
        let err =
            Config::from_lookup(lookup(&[("PORTCULLIS_ENV", "production")]), &tmp()).unwrap_err();
        assert!(matches!(err, ConfigError::Deploy(_)), "{err}");
        let text = err.to_string();
        assert!(text.contains("PORTCULLIS_SECRET: is not set"), "{text}");
        assert!(text.contains("openssl rand -base64 32"), "{text}");
    }

    #[test]
    fn development_generates_and_reuses_a_secret() {
        let dir = tmp();
        let (a, notes) = Config::from_lookup(lookup(&[]), &dir).unwrap();
        assert!(notes[0].contains("generated"), "{notes:?}");
        let (b, notes) = Config::from_lookup(lookup(&[]), &dir).unwrap();
        assert!(notes[0].contains("using"), "{notes:?}");
        assert_eq!(a.keys.current.id, b.keys.current.id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("dev-secret"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn sign_in_paths_default_and_come_from_the_environment() {
        let secret = MasterSecret::generate().to_base64();
        let (c, _) =
            Config::from_lookup(lookup(&[("PORTCULLIS_SECRET", secret.as_str())]), &tmp()).unwrap();
        assert_eq!(
            (c.login_path.as_str(), c.reauth_path.as_str()),
            ("/login", "/reauth")
        );
        let (c, _) = Config::from_lookup(
            lookup(&[
                ("PORTCULLIS_SECRET", secret.as_str()),
                ("PORTCULLIS_LOGIN_PATH", " /signin "),
                ("PORTCULLIS_REAUTH_PATH", "/account/confirm"),
            ]),
            &tmp(),
        )
        .unwrap();
        assert_eq!(
            (c.login_path.as_str(), c.reauth_path.as_str()),
            ("/signin", "/account/confirm")
        );
        // An off-site target would make every sign-in redirect an open
        // redirect; a query would break the appended `?return=`.
        for bad in [
            "https://evil.example/login",
            "//evil.example/login",
            "/\\evil.example",
            "login",
            "/login?x=1",
            "/login#top",
            "/log in",
        ] {
            for var in ["PORTCULLIS_LOGIN_PATH", "PORTCULLIS_REAUTH_PATH"] {
                let err = Config::from_lookup(
                    lookup(&[("PORTCULLIS_SECRET", secret.as_str()), (var, bad)]),
                    &tmp(),
                )
                .unwrap_err();
                let text = err.to_string();
                assert!(
                    text.contains(var) && text.contains("path of this site"),
                    "{bad}: {text}"
                );
            }
        }
    }

    #[test]
    fn bad_values_are_named() {
        let secret = MasterSecret::generate().to_base64();
        let cases = [
            (
                "PORTCULLIS_ALLOWED_ORIGINS",
                "null",
                "PORTCULLIS_ALLOWED_ORIGINS",
            ),
            (
                "PORTCULLIS_TRUSTED_PROXIES",
                "not-a-cidr",
                "PORTCULLIS_TRUSTED_PROXIES",
            ),
            ("PORTCULLIS_SECRET", "c2hvcnQ=", "PORTCULLIS_SECRET"),
            (
                "PORTCULLIS_ID_ROTATION_DAYS",
                "0",
                "PORTCULLIS_ID_ROTATION_DAYS",
            ),
        ];
        for (var, value, named) in cases {
            let mut pairs = vec![("PORTCULLIS_SECRET", secret.as_str())];
            pairs.retain(|(k, _)| *k != var);
            pairs.push((var, value));
            let err = Config::from_lookup(lookup(&pairs), &tmp()).unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
        }
    }

    #[test]
    fn redis_url_switches_the_backend_and_hides_its_password() {
        let secret = MasterSecret::generate().to_base64();
        let (c, notes) =
            Config::from_lookup(lookup(&[("PORTCULLIS_SECRET", &secret)]), &tmp()).unwrap();
        assert!(c.redis_url.is_none());
        assert!(notes.iter().any(|n| n.contains("in memory")), "{notes:?}");
        let (c, notes) = Config::from_lookup(
            lookup(&[
                ("PORTCULLIS_SECRET", &secret),
                ("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0"),
                ("PORTCULLIS_LIMITER_TIMEOUT_MS", "20"),
            ]),
            &tmp(),
        )
        .unwrap();
        assert!(c.redis_url.is_some());
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(c.limiter_timeout, Duration::from_millis(20));
        assert!(!format!("{c:?}").contains("hunter2"));
        let err = Config::from_lookup(
            lookup(&[("PORTCULLIS_SECRET", &secret), ("REDIS_URL", "http://nope")]),
            &tmp(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("REDIS_URL"), "{err}");
    }

    #[test]
    fn external_call_deadlines_have_safe_defaults_and_refuse_zero() {
        let secret = MasterSecret::generate().to_base64();
        let (c, _) =
            Config::from_lookup(lookup(&[("PORTCULLIS_SECRET", &secret)]), &tmp()).unwrap();
        assert_eq!(c.deadlines, Deadlines::default());
        assert!(c.deadlines.redis <= Duration::from_millis(100));
        let (c, _) = Config::from_lookup(
            lookup(&[
                ("PORTCULLIS_SECRET", &secret),
                ("PORTCULLIS_REDIS_TIMEOUT_MS", "20"),
                ("PORTCULLIS_SESSION_TIMEOUT_MS", "80"),
                ("PORTCULLIS_HANDLER_TIMEOUT_MS", "1500"),
            ]),
            &tmp(),
        )
        .unwrap();
        assert_eq!(c.deadlines.redis, Duration::from_millis(20));
        assert_eq!(c.deadlines.session, Duration::from_millis(80));
        assert_eq!(c.deadlines.handler, Duration::from_millis(1500));
        for var in [
            "PORTCULLIS_REDIS_TIMEOUT_MS",
            "PORTCULLIS_SESSION_TIMEOUT_MS",
            "PORTCULLIS_HANDLER_TIMEOUT_MS",
        ] {
            for bad in ["0", "soon", "-5"] {
                let err = Config::from_lookup(
                    lookup(&[("PORTCULLIS_SECRET", &secret), (var, bad)]),
                    &tmp(),
                )
                .unwrap_err();
                assert!(err.to_string().contains(var), "{err}");
            }
        }
    }

    #[test]
    fn debug_has_no_secret() {
        let secret = MasterSecret::generate();
        let b64 = secret.to_base64();
        let (config, _) =
            Config::from_lookup(lookup(&[("PORTCULLIS_SECRET", &b64)]), &tmp()).unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains(&b64[..12]), "{printed}");
    }
}
