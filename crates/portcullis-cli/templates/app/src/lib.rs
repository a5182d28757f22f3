//! {{name}}: a portcullis app. Every form posts to an action, and every
//! action passes the framework's pipeline (origin, ids, limits, policy,
//! validation) before its handler runs; see `actions.rs`.
#![forbid(unsafe_code)]

pub mod actions;
pub mod dal;
pub mod pages;

use std::str::FromStr;

use portcullis::{App, Config, Portcullis};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};
use tower_sessions_sqlx_store::SqliteStore;

/// What every action handler and page gets.
#[derive(Clone)]
pub struct AppState {
    pub dal: dal::Dal,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Build(#[from] portcullis::BuildError),
}

/// Opens (creating if needed) the SQLite database at `url` and its schema.
pub async fn connect(url: &str) -> Result<SqlitePool, StartError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true);
    let pool = SqlitePool::connect_with(options).await?;
    sqlx::raw_sql(dal::SCHEMA).execute(&pool).await?;
    Ok(pool)
}

/// The app on an open database; sessions live in the same file.
pub async fn build(config: Config, pool: SqlitePool) -> Result<App, StartError> {
    let sessions = SqliteStore::new(pool.clone());
    sessions.migrate().await?;
    let state = AppState {
        dal: dal::Dal(pool),
    };
    Ok(Portcullis::new(config, state.clone())
        .actions(actions::register)
        .pages(pages::router(state.clone()))
        // Every signed-in request re-checks the user's security stamp.
        .accounts(dal::Accounts(state.dal))
        .build(sessions)?)
}
