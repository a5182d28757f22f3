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
pub mod passwords;
pub mod seed;

use std::str::FromStr;

use portcullis::store::RedisSessionStore;
use portcullis::{App, Config, Portcullis};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use dal::Dal;
use db::{Db, Dialect};

/// The demo's own secrets (beyond the framework's), for the deploy check.
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
}

/// Errors starting the demo.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("session store: {0}")]
    Sessions(String),
    #[error(transparent)]
    Build(#[from] portcullis::BuildError),
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
        match portcullis::store::Redis::from_config(config)
            .map_err(|e| StartError::Sessions(e.to_string()))?
        {
            Some(redis) => Ok(Sessions::Redis(redis.sessions())),
            None => Self::for_db(db).await,
        }
    }

    pub async fn for_db(db: &Db) -> Result<Self, StartError> {
        let err = |e: sqlx::Error| StartError::Sessions(e.to_string());
        match db.dialect {
            Dialect::Sqlite => {
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                    .map_err(err)?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .busy_timeout(std::time::Duration::from_secs(5));
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

/// Database connection failures become 503 `database_unavailable` (nothing
/// was applied; the client may retry) instead of a generic 500: no
/// connection within the pool's acquire deadline, a broken connection, and
/// on Postgres the connection-exception class (`08…`), a statement cancelled
/// by `statement_timeout` (`57014`, rolled back by the server), an operator
/// or crash shutdown (`57P0…`) and too many connections (`53300`).
pub fn classify(e: &(dyn std::error::Error + 'static)) -> Option<portcullis::ErrorCode> {
    let e = e.downcast_ref::<sqlx::Error>()?;
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => Some(portcullis::ErrorCode::DatabaseUnavailable),
        sqlx::Error::Database(d)
            if d.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("57P") || c == "57014" || c == "53300"
            }) =>
        {
            Some(portcullis::ErrorCode::DatabaseUnavailable)
        }
        _ => None,
    }
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
    let state = AppState {
        dal: Dal::new(db.pool.clone()),
    };
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
