//! The portcullis demo: a small multi-user workspace (teams, projects,
//! comments, invites) and a public contact form, built to show every rule of
//! the server-action security checklist in real code. See the README's tour.
#![forbid(unsafe_code)]

pub mod actions;
pub mod api;
pub mod audit;
pub mod billing;
pub mod dal;
pub mod db;
pub mod pages;
pub mod seed;

use std::str::FromStr;

use portcullis::store::RedisSessionStore;
use portcullis::{App, Config, Portcullis};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use dal::Dal;
use db::{Db, Dialect};

/// The demo's own secrets (beyond the framework's), for the deploy check.
/// The typed TypeScript client's module (`portcullis ts`), served at
/// `/assets/actions.js`; its types are `client/actions.d.ts` beside it.
pub const TYPED_CLIENT: &str = include_str!("../client/actions.js");

pub const DEPLOY_SECRETS: &[portcullis::security::EnvSecret] = &[billing::SECRET];

/// `demo check --deploy`: every insecure setting of this environment, as
/// production would see it, one line each. Empty = ready for production.
pub fn deploy_check(
    get: &impl Fn(&str) -> Option<String>,
    data_dir: &std::path::Path,
) -> Vec<portcullis::security::Finding> {
    portcullis::security::check_deployment(get, data_dir, DEPLOY_SECRETS)
}

/// What every action handler and page gets.
#[derive(Clone)]
pub struct AppState {
    pub dal: Dal,
    /// Where attachment bytes live ([`Db::files_dir`]); rows in the
    /// `attachments` table name them by random key.
    pub files: std::sync::Arc<dyn portcullis::action::upload::FileStore>,
}

/// Errors starting the demo. Each is one line for the person at the
/// terminal (`main` prints it and exits 1): the setting, what is wrong with
/// its value, and the fix. Causes are included by their `Display` (never a
/// `Debug` dump), and a URL's password is shown as `***`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "DATABASE_URL={url} is not a database URL ({reason}). Fix: set it to sqlite://FILE (e.g. sqlite://./data/demo.db) or postgres://USER@HOST:PORT/DATABASE, or unset it to use the embedded SQLite file in PORTCULLIS_DATA_DIR"
    )]
    DatabaseUrl { url: String, reason: String },
    #[error(
        "cannot use {dir} for attachment files ({reason}). Fix: make it writable by this user, or set DEMO_FILES_DIR to a writable directory"
    )]
    FilesDir { dir: String, reason: String },
    #[error(
        "DATABASE_URL={url}: cannot reach the database ({reason}). Fix: start PostgreSQL or correct the host and port in DATABASE_URL, or unset it to use the embedded SQLite file"
    )]
    DatabaseUnreachable { url: String, reason: String },
    #[error(
        "DATABASE_URL={url}: the database refused the connection ({reason}). Fix: check the user, password and database name in DATABASE_URL"
    )]
    DatabaseRefused { url: String, reason: String },
    #[error(
        "DATABASE_URL={url}: cannot open the SQLite database ({reason}). Fix: make the file's directory exist and be writable by this user, or point DATABASE_URL (or PORTCULLIS_DATA_DIR) elsewhere"
    )]
    SqliteFile { url: String, reason: String },
    #[error(
        "DATABASE_URL={url}: preparing the schema failed ({reason}). Fix: use a database the demo created (or an empty one); it does not share a database with other apps"
    )]
    Schema { url: String, reason: String },
    #[error(
        "REDIS_URL={url} is not a Redis URL ({reason}). Fix: set it to redis://HOST:PORT (rediss:// for TLS), or unset it to keep sessions and limits in this instance"
    )]
    RedisUrl { url: String, reason: String },
    #[error(
        "REDIS_URL={url}: cannot reach Redis ({reason}). Fix: start Redis or correct the host and port in REDIS_URL, or unset it to run one instance without Redis"
    )]
    RedisUnreachable { url: String, reason: String },
    #[error(
        "{var}={addr}: cannot listen there ({reason}). Fix: set {var} to a free local address, e.g. 127.0.0.1:3001"
    )]
    Listen {
        var: &'static str,
        addr: String,
        reason: String,
    },
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("session store: {0}")]
    Sessions(String),
    #[error(transparent)]
    Build(#[from] portcullis::BuildError),
}

impl StartError {
    /// What went wrong connecting to `url` (`Db::connect`), by cause.
    pub fn database(url: &str, e: sqlx::Error) -> Self {
        let sqlite = !(url.starts_with("postgres:") || url.starts_with("postgresql:"));
        let (url, reason) = (redact(url), error_chain(&e));
        match e {
            sqlx::Error::Configuration(_) => StartError::DatabaseUrl { url, reason },
            sqlx::Error::Migrate(_) => StartError::Schema { url, reason },
            _ if sqlite => StartError::SqliteFile { url, reason },
            sqlx::Error::Database(_) => StartError::DatabaseRefused { url, reason },
            _ => StartError::DatabaseUnreachable { url, reason },
        }
    }
}

/// `url` with its password (if any) replaced by `***`; a value that is not
/// a URL is shown as given (at most 200 characters).
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => url.chars().take(200).collect(),
    }
}

/// `e` and its sources, each once, on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The Redis connection `config` asks for (`None` without `REDIS_URL`),
/// checked once at start-up: the URL parses, its host accepts a connection
/// and answers `PING` within 2 s. (At run time the framework rides out a
/// Redis outage with 503s and reconnects by itself; a wrong or missing Redis
/// at start is a configuration mistake, so the demo refuses to start.)
pub async fn redis_at_start(
    config: &Config,
) -> Result<Option<portcullis::store::Redis>, StartError> {
    let Some(raw) = config.redis_url.as_ref().map(|u| u.0.clone()) else {
        return Ok(None);
    };
    let url = redact(&raw);
    let redis = portcullis::store::Redis::from_config(config)
        .map_err(|e| StartError::RedisUrl {
            url: url.clone(),
            reason: error_chain(&e),
        })?
        .expect("REDIS_URL is set");
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(2);
    let unreachable = |reason: String| StartError::RedisUnreachable {
        url: url.clone(),
        reason,
    };
    // The TCP connection first, for a plain reason ("Connection refused")
    // rather than the Redis client's retry and timeout wording.
    if let Ok(parsed) = url::Url::parse(&raw)
        && matches!(parsed.scheme(), "redis" | "rediss" | "valkey" | "valkeys")
        && let Some(host) = parsed.host_str()
    {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed.port().unwrap_or(6379);
        match tokio::time::timeout(
            WITHIN,
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unreachable(format!("{host}:{port}: {e}"))),
            Err(_) => {
                return Err(unreachable(format!(
                    "{host}:{port}: no connection within {WITHIN:?}"
                )));
            }
        }
    }
    let probe = portcullis::store::Redis::new(&raw, &config.redis_prefix, WITHIN)
        .map_err(|e| unreachable(error_chain(&e)))?;
    probe
        .ping()
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    Ok(Some(redis))
}
/// The session store that goes with the database.
#[derive(Clone, Debug)]
pub enum Sessions {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
    /// Multi-instance mode: a session made on one instance is valid on all,
    /// and signing out on one signs out everywhere. The framework's own
    /// store on the app's one Redis connection (same deadlines, reconnection
    /// and outage handling as limits, idempotency and the tag bus).
    Redis(RedisSessionStore),
}

impl Sessions {
    /// Redis when the configuration has `REDIS_URL`, else the database's
    /// own store.
    pub async fn choose(db: &Db, config: &Config) -> Result<Self, StartError> {
        match redis_at_start(config).await? {
            Some(redis) => Ok(Sessions::Redis(redis.sessions())),
            None => Self::for_db(db).await,
        }
    }

    pub async fn for_db(db: &Db) -> Result<Self, StartError> {
        let err = |e: sqlx::Error| StartError::Sessions(e.to_string());
        match db.dialect {
            Dialect::Sqlite => {
                let mut options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                    .map_err(err)?
                    .create_if_missing(true);
                // The data pool's settings (db.rs): a session write waits
                // for neither an fsync nor a WAL checkpoint.
                for (name, value) in crate::db::SQLITE_PRAGMAS {
                    options = options.pragma(name, value);
                }
                let pool = sqlx::SqlitePool::connect_with(options).await.map_err(err)?;
                let store = SqliteStore::new(pool);
                store.migrate().await.map_err(err)?;
                Ok(Sessions::Sqlite(store))
            }
            Dialect::Postgres => {
                let pool = sqlx::PgPool::connect(&db.url).await.map_err(err)?;
                let store = PostgresStore::new(pool);
                store.migrate().await.map_err(err)?;
                Ok(Sessions::Postgres(store))
            }
        }
    }
}

/// Builds the demo app on an open database.
pub async fn build(config: Config, db: &Db) -> Result<App, StartError> {
    Ok(build_serving(config, db).await?.0)
}

/// [`build`], plus the audit queue to drain at shutdown
/// ([`audit::AuditQueue::shutdown`], after the server stopped).
pub async fn build_serving(
    config: Config,
    db: &Db,
) -> Result<(App, audit::AuditQueue), StartError> {
    let sessions = Sessions::choose(db, &config).await?;
    build_parts(config, db, sessions)
}

/// Removes the files of attachment rows that were just deleted (a
/// project's or an account's). A failure is logged; the sweep removes the
/// file later.
pub async fn attachments_gone(
    files: &std::sync::Arc<dyn portcullis::action::upload::FileStore>,
    keys: &[String],
) {
    for key in keys
        .iter()
        .filter_map(|k| portcullis::action::upload::FileKey::parse(k))
    {
        if let Err(e) = files.delete(&key).await {
            tracing::warn!(error = %e, "attachment file not removed; the sweep will");
        }
    }
}

/// How often the orphan sweep runs after the one at start-up.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Removes, now and every [`SWEEP_EVERY`], attachment files that no row
/// names and that are older than an hour (younger ones may belong to an
/// upload whose row is being written). So a file whose row went some way
/// the handlers did not clean up after (a crash between the file and the
/// row, a cascade from elsewhere) is gone within about 75 minutes.
async fn sweep_orphan_files(dal: Dal, dir: std::path::PathBuf) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        every.tick().await;
        sweep_once(&dal, &dir).await;
    }
}

async fn sweep_once(dal: &Dal, dir: &std::path::Path) {
    let Ok(keys) = dal.attachments().all_keys().await else {
        return;
    };
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let mut removed = 0usize;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .await
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < hour_ago);
        if old && !keys.contains(&name) && tokio::fs::remove_file(entry.path()).await.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(removed, "removed attachment files no row names");
    }
}

/// Database connection failures become 503 `database_unavailable` (nothing
/// was applied; the client may retry) instead of a generic 500; which ones,
/// on either database, [`dal::sql::DbError::is_unavailable`] says.
pub fn classify(e: &(dyn std::error::Error + 'static)) -> Option<portcullis::ErrorCode> {
    let unavailable = match e.downcast_ref::<dal::sql::DbError>() {
        Some(e) => e.is_unavailable(),
        None => dal::sql::sqlx_is_unavailable(e.downcast_ref::<sqlx::Error>()?),
    };
    unavailable.then_some(portcullis::ErrorCode::DatabaseUnavailable)
}

/// The render cache: on (the framework's default), or off with
/// `DEMO_RENDER_CACHE=off` (`scripts/bench` measures the page both ways).
fn render_cache() -> portcullis::CacheConfig {
    match std::env::var("DEMO_RENDER_CACHE").as_deref() {
        Ok("off") => portcullis::CacheConfig::disabled(),
        _ => portcullis::CacheConfig::default(),
    }
}

/// Builds the demo app with the given session store (tests). Must run on a
/// tokio runtime (it starts the audit writer).
pub fn build_with(config: Config, db: &Db, sessions: Sessions) -> Result<App, StartError> {
    Ok(build_parts(config, db, sessions)?.0)
}

/// [`build_with`], plus the app's audit queue (to flush or drain it).
pub fn build_parts(
    config: Config,
    db: &Db,
    sessions: Sessions,
) -> Result<(App, audit::AuditQueue), StartError> {
    let cors_origins: Vec<String> = std::env::var("PORTCULLIS_API_CORS_ORIGINS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let files_dir = db.files_dir();
    let files = portcullis::action::upload::LocalDisk::new(&files_dir).map_err(|e| {
        StartError::FilesDir {
            dir: files_dir.display().to_string(),
            reason: e.to_string(),
        }
    })?;
    let state = AppState {
        dal: db.dal(),
        files: std::sync::Arc::new(files),
    };
    // Files no row names (a crash between storing a file and recording
    // it, or a project deleted with its rows): removed in the background.
    tokio::spawn(sweep_orphan_files(state.dal.clone(), files_dir));
    let dal = state.dal.clone();
    let audit = audit::AuditQueue::start(dal.clone(), audit::QUEUE);
    let app = Portcullis::new(config, state.clone())
        .actions(actions::register)
        // Database connection failures answer 503 `database_unavailable`.
        .error_classifier(classify)
        .fragments(pages::fragments::register)
        .render_cache(render_cache())
        .webhook(billing::PATH, billing::webhook(), billing::receive)
        // Scripts and mobile clients: bearer tokens, same viewer-scoped DAL,
        // 120 requests per user per minute; CORS only for listed origins.
        .api(
            api::router(state.clone()),
            dal::tokens::DalTokens(state.dal.clone()),
            portcullis::per_user(120).per_minute(),
            &cors_origins.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .pages(pages::router(state))
        // Every signed-in request checks the user's security stamp: deleted
        // accounts and changed passwords end sessions (dal/users.rs).
        .accounts(dal::users::Accounts(dal.clone()))
        // Every successful mutation gets an audit row: queued before the
        // response is sent, written in batches off the request path, never
        // dropped (src/audit.rs says what happens when the queue is full or
        // the database fails).
        .audit_sink({
            let queue = audit.clone();
            move |event: portcullis::AuditEvent| {
                let queue = queue.clone();
                async move { queue.record(event).await }
            }
        });
    let app = match sessions {
        Sessions::Sqlite(s) => app.build(s)?,
        Sessions::Postgres(s) => app.build(s)?,
        Sessions::Redis(s) => app.redis(s.connection().clone()).build(s)?,
    };
    Ok((app, audit))
}
