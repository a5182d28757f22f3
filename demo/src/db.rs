//! Database connection: SQLite by default (embedded, file under `./data`),
//! Postgres when `DATABASE_URL` says so. The DAL's statements run through
//! [`crate::dal::sql`]: rusqlite on SQLite, sqlx on Postgres, with the same
//! SQL (`$1` placeholders, `RETURNING`, `ON CONFLICT` work in both). The
//! migrations, the seed and the tests' own queries go through one sqlx
//! `Any` pool on either database ([`Db::pool`]). The differences between
//! the two dialects live here, in `dal::sql` and in the two migration
//! folders, nowhere else.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::dal::sql::{self, DbError, SqlitePool};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The database's deadlines. A request never waits longer than `acquire`
/// for a connection (an unreachable or saturated database answers 503
/// `database_unavailable` at once, nothing applied); on Postgres a statement
/// never runs longer than `statement` (the server cancels it). A database
/// that *hangs* mid-query (the network stalls) is bounded by the framework's
/// handler deadline (`PORTCULLIS_HANDLER_TIMEOUT_MS`, 503 `deadline_exceeded`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// `DEMO_DB_ACQUIRE_TIMEOUT_MS`, default 2000 (Postgres; SQLite waits
    /// at least 3 s: an embedded file has no outage to detect).
    pub acquire: Duration,
    /// `DEMO_DB_STATEMENT_TIMEOUT_MS`, default 5000 (Postgres only).
    pub statement: Duration,
}

impl Timeouts {
    pub fn from_env() -> Self {
        let ms = |var: &str, default: u64| {
            Duration::from_millis(
                std::env::var(var)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or(default),
            )
        };
        Timeouts {
            acquire: ms("DEMO_DB_ACQUIRE_TIMEOUT_MS", 2000),
            statement: ms("DEMO_DB_STATEMENT_TIMEOUT_MS", 5000),
        }
    }
}

#[derive(Clone)]
pub struct Db {
    /// sqlx's pool: migrations, the seed, administrative and test queries.
    /// On Postgres it is also the DAL's; on SQLite it keeps at most two
    /// connections, closed after 30 s unused.
    pub pool: AnyPool,
    /// Where the DAL's statements run (see [`crate::dal::sql`]).
    pub data: sql::Pool,
    pub dialect: Dialect,
    pub url: String,
}

impl Db {
    /// Connects and runs the migrations for the URL's dialect.
    pub async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        let (pool, dialect, acquire) = Self::connect_admin(url).await?;
        migrate(&pool, dialect).await?;
        let data = match dialect {
            Dialect::Postgres => sql::Pool::Any(pool.clone()),
            Dialect::Sqlite => {
                let file = sql::sqlite_file(url).ok_or_else(|| {
                    sqlx::Error::Configuration(
                        "the demo needs a SQLite file (sqlite://path/to/file.db), not an in-memory database"
                            .into(),
                    )
                })?;
                let data =
                    SqlitePool::open(&file, SQLITE_DATA_CONNECTIONS, acquire, &SQLITE_PRAGMAS)
                        .await
                        .map_err(|e| match e {
                            DbError::Sqlx(e) => e,
                            other => sqlx::Error::Io(std::io::Error::other(other.to_string())),
                        })?;
                tokio::spawn(checkpoint_wal(data.clone()));
                sql::Pool::Sqlite(data)
            }
        };
        Ok(Db {
            pool,
            data,
            dialect,
            url: url.to_owned(),
        })
    }

    /// The DAL over this database.
    pub fn dal(&self) -> crate::dal::Dal {
        crate::dal::Dal::new(self.data.clone())
    }

    /// Closes both pools: every later statement fails (503
    /// `database_unavailable`).
    pub async fn close(&self) {
        self.data.close().await;
        self.pool.close().await;
    }

    /// sqlx's pool for `url`, its dialect, and the acquire deadline both
    /// pools use.
    async fn connect_admin(url: &str) -> Result<(AnyPool, Dialect, Duration), sqlx::Error> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        };
        let options: AnyConnectOptions = url.parse()?;
        let timeouts = Timeouts::from_env();
        let acquire = match dialect {
            // An embedded file cannot be "down"; a short wait would only turn
            // load into spurious 503s.
            Dialect::Sqlite => timeouts.acquire.max(Duration::from_secs(3)),
            Dialect::Postgres => timeouts.acquire,
        };
        let mut pool = AnyPoolOptions::new().acquire_timeout(acquire);
        pool = match dialect {
            // One writer at a time is SQLite's model; WAL lets readers run beside it.
            Dialect::Sqlite => {
                let pragmas: String = SQLITE_PRAGMAS
                    .iter()
                    .map(|(name, value)| format!("PRAGMA {name} = {value}; "))
                    .collect();
                pool.max_connections(2)
                    .idle_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _| {
                        let pragmas = pragmas.clone();
                        Box::pin(async move {
                            conn.execute(&*pragmas).await?;
                            Ok(())
                        })
                    })
            }
            // The server cancels (and rolls back) a statement that runs past
            // the statement timeout: error 57014, 503 `database_unavailable`.
            Dialect::Postgres => {
                let statement_ms = timeouts.statement.as_millis() as u64;
                pool.max_connections(16).after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute(&*format!("SET statement_timeout = {statement_ms}"))
                            .await?;
                        Ok(())
                    })
                })
            }
        };
        Ok((pool.connect_with(options).await?, dialect, acquire))
    }

    /// Where attachment files go: `DEMO_FILES_DIR` if set; else, for a
    /// SQLite file, a `<name>-attachments` directory beside it (so
    /// `data/demo.db` keeps its files in `data/demo-attachments`); else a
    /// directory per database under the OS temp dir.
    pub fn files_dir(&self) -> std::path::PathBuf {
        if let Some(dir) = std::env::var_os("DEMO_FILES_DIR").filter(|d| !d.is_empty()) {
            return dir.into();
        }
        match sql::sqlite_file(&self.url) {
            Some(file) => {
                let stem = file.file_stem().unwrap_or_default().to_string_lossy();
                file.with_file_name(format!("{stem}-attachments"))
            }
            _ => {
                let name: String = self
                    .url
                    .rsplit('/')
                    .next()
                    .unwrap_or("db")
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                std::env::temp_dir()
                    .join("portcullis-demo-files")
                    .join(name)
            }
        }
    }

    /// Connects without migrating (administrative connections in tests).
    pub async fn connect_raw(url: &str) -> Result<AnyPool, sqlx::Error> {
        sqlx::any::install_default_drivers();
        AnyPoolOptions::new().max_connections(2).connect(url).await
    }
}

async fn migrate(pool: &AnyPool, dialect: Dialect) -> Result<(), sqlx::Error> {
    match dialect {
        Dialect::Sqlite => sqlx::migrate!("migrations/sqlite").run(pool).await?,
        Dialect::Postgres => sqlx::migrate!("migrations/postgres").run(pool).await?,
    }
    Ok(())
}

/// The default database: a SQLite file under the data dir.
pub fn default_url(data_dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join("demo.db").display())
}

/// The SQLite data path's reading connections; beside them the pool keeps
/// one writer (one writer at a time is SQLite's model, and WAL lets
/// readers run beside it: `dal::sql::SqlitePool`).
pub const SQLITE_DATA_CONNECTIONS: usize = 8;

/// What every SQLite connection of the demo is set to, the data pool's here
/// and the session store's (`Sessions::for_db`) alike:
///
/// * WAL, so readers run beside the one writer;
/// * `synchronous = NORMAL`: in WAL mode a commit does not wait for an
///   fsync (a checkpoint does). With sqlx's default (FULL) each sign-in
///   waited for one, which on a busy disk took longer than the session
///   deadline (500 ms): the sign-in was a 503 (CI, demo
///   tests/authorization.rs). A commit lost to a power cut means signing in
///   or renaming again; the database itself stays consistent;
/// * `wal_autocheckpoint = 0` and a 16 MiB `journal_size_limit`: no commit
///   runs the checkpoint, [`checkpoint_wal`] does, off the request path;
/// * foreign keys on, and a 5 s busy timeout (the data pool waits that
///   long only on a blocking thread; on the calling task it does not wait:
///   `dal::sql::SqlitePool`).
pub const SQLITE_PRAGMAS: [(&str, &str); 6] = [
    ("journal_mode", "WAL"),
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
    ("busy_timeout", "5000"),
    ("wal_autocheckpoint", "0"),
    ("journal_size_limit", "16777216"),
];

/// How often [`checkpoint_wal`] moves the WAL into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Checkpoints the SQLite WAL off the request path.
///
/// SQLite's default is that the commit which takes the WAL past 1,000
/// pages runs the checkpoint itself, inside that request: copy up to 4 MiB
/// into the database file and fsync it. Whichever request drew that commit
/// (a rename, or a sign-in's session write, which has a 500 ms deadline)
/// waited for the disk, and on a busy disk a sign-in became a 503. So every
/// connection here and in the session store has `wal_autocheckpoint = 0`,
/// and this task runs a PASSIVE checkpoint every [`CHECKPOINT_EVERY`]: it
/// waits for no reader or writer and none waits for it. (A period of a
/// second let the WAL reach 267 MB under the benchmark's ~5,000 renames a
/// second; at 100 ms a checkpoint of an empty WAL costs next to nothing.)
///
/// State: the WAL file. Written by every commit; bounded by what 100 ms of
/// writes append (the next writer restarts the WAL once every frame is in
/// the database file and no reader still needs it), and truncated back to
/// 16 MiB (`journal_size_limit`) when it restarts; removed by SQLite when
/// the last connection closes. A user who writes a lot grows the WAL for a
/// moment, and makes nobody else's request pay for copying it. The task
/// ends when the pool is closed.
pub async fn checkpoint_wal(pool: SqlitePool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        match checkpoint_once(&pool).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("WAL checkpoints work again");
            }
            Ok(()) => {}
            Err(_) if pool.is_closed() => return,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            }
            Err(_) => {}
        }
    }
}

/// WAL frames (4 KiB pages) past which [`checkpoint_wal`] truncates the WAL.
pub const TRUNCATE_AT_FRAMES: i64 = 16_384;

/// One PASSIVE checkpoint; a TRUNCATE one when the WAL has grown past
/// [`TRUNCATE_AT_FRAMES`] (64 MiB).
///
/// A PASSIVE checkpoint copies frames but cannot start the WAL over while
/// some reader still uses it, and under steady load one usually does: the
/// WAL then only grows (230 MB after 20 s of the benchmark with PASSIVE
/// alone; 16–67 MB with this). TRUNCATE waits (up to the busy timeout) for
/// the readers of the old frames to finish, holding new writers meanwhile,
/// then empties the file: writers pause for about the length of one read,
/// once per 64 MiB written. If it cannot finish in time it answers busy
/// and the next period tries again.
async fn checkpoint_once(pool: &SqlitePool) -> Result<(), DbError> {
    pool.with(|conn| {
        let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1))?;
        if frames >= TRUNCATE_AT_FRAMES {
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh SQLite database file with an empty `ballast (b BLOB)` table.
    async fn ballast_db(label: &str) -> (Db, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!(
            "portcullis-demo-{label}-{}.db",
            rand::random::<u64>()
        ));
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE ballast (b BLOB)")
            .execute(&db.pool)
            .await
            .unwrap();
        (db, path)
    }

    /// A sign-in once waited for a WAL checkpoint inside its session write
    /// and missed its deadline (503 in CI): no connection checkpoints on
    /// commit, and the background task does it instead.
    #[tokio::test]
    async fn wal_is_checkpointed_off_the_request_path() {
        let (db, path) = ballast_db("wal").await;
        // Every connection of both pools, not just the first one.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut conn = db.pool.acquire().await.unwrap();
            let (every,): (i64,) = sqlx::query_as("PRAGMA wal_autocheckpoint")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(every, 0, "a commit never runs the checkpoint");
            held.push(conn);
        }
        drop(held);
        let sql::Pool::Sqlite(data) = &db.data else {
            panic!("a SQLite file gets the rusqlite pool")
        };
        // All of them at once, so each answer comes from its own connection.
        let all_in = std::sync::Arc::new(std::sync::Barrier::new(SQLITE_DATA_CONNECTIONS));
        let mut answers = tokio::task::JoinSet::new();
        for _ in 0..SQLITE_DATA_CONNECTIONS {
            let (all_in, data) = (all_in.clone(), data.clone());
            answers.spawn(async move {
                data.with(move |conn| {
                    all_in.wait();
                    Ok(conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0))?)
                })
                .await
            });
        }
        answers.spawn({
            let data = data.clone();
            async move {
                data.with_role(sql::Role::Write, |conn| {
                    Ok(conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0))?)
                })
                .await
            }
        });
        let answers = answers.join_all().await;
        assert_eq!(
            answers.len(),
            SQLITE_DATA_CONNECTIONS + 1,
            "the readers and the writer"
        );
        for every in answers {
            assert_eq!(every.unwrap(), 0, "a commit never runs the checkpoint");
        }
        let file_len = || std::fs::metadata(&path).unwrap().len();
        let before = file_len();
        // 8 MiB in one commit: twice SQLite's default checkpoint threshold.
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 64) \
             INSERT INTO ballast SELECT randomblob(131072) FROM n",
        )
        .execute(&db.pool)
        .await
        .unwrap();
        let started = std::time::Instant::now();
        while file_len() < before + 8 * 1024 * 1024 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the WAL reached the database file"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        db.close().await;
        let _ = std::fs::remove_file(&path);
    }

    /// With no connection checkpointing on commit, only the task bounds
    /// the WAL (a PASSIVE checkpoint alone let it reach 230 MB in the
    /// benchmark): past 64 MiB it is emptied, without any further write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wal_past_64_mib_is_truncated_by_the_task() {
        let (db, path) = ballast_db("walflood").await;
        let wal = path.with_extension("db-wal");
        let wal_len = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        let (mut largest, mut emptied) = (0, false);
        for _ in 0..80 {
            sqlx::query("INSERT INTO ballast VALUES (randomblob(1048576))")
                .execute(&db.pool)
                .await
                .unwrap();
            let now = wal_len();
            emptied |= now + 32 * 1024 * 1024 < largest;
            largest = largest.max(now);
        }
        // No more writes: the task alone must empty it.
        let started = std::time::Instant::now();
        while !emptied {
            let now = wal_len();
            emptied = now + 32 * 1024 * 1024 < largest;
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the WAL stayed at {now} bytes (largest {largest})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(largest > 64 * 1024 * 1024, "{largest}");
        db.close().await;
        let _ = std::fs::remove_file(&path);
    }
}
