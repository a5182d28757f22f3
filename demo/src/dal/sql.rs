//! One statement, two databases: the DAL's SQL runs on SQLite through
//! rusqlite (on the calling task; see [`SqlitePool`]) and on Postgres
//! through sqlx.
//!
//! Why this exists, by hand: sqlx's `Any` driver costs ≈ 26k instructions
//! per statement and ≈ 12k per result row over rusqlite on SQLite (a worker
//! thread per connection, a channel hop per statement, every value copied
//! and converted twice; BENCHMARKS.md, "#19, direction 2"). No crate offers
//! one query API over rusqlite and sqlx, so this module is the seam, and the
//! only one: [`query`] builds a statement with the DAL's `$n` parameters and
//! typed [`Arg`]s, [`Record`] maps a row from either driver, and [`Tx`] is a
//! transaction on either. The SQL text is shared by both databases, so the
//! two paths cannot drift apart inside the DAL; the DAL's tests run on both
//! (`TEST_DATABASE=postgres`).
//!
//! SQLite numbers `$n` parameters in order of first appearance (the rename's
//! `$3` is its parameter 1), so arguments are bound by name, never by
//! position.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deadpool::unmanaged::{Object, Pool as Slots, PoolConfig, PoolError};
use rusqlite::{CachedStatement, Connection, OpenFlags};
use sqlx::AnyPool;

/// A database failure from either driver, or from the SQLite pool.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("no SQLite connection was free within {0:?}")]
    PoolTimedOut(Duration),
    #[error("the SQLite connection pool is closed")]
    PoolClosed,
    #[error("a SQLite statement's task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the statement's parameter {0} has no argument")]
    Unbound(String),
    #[error("{given} arguments for a statement whose highest parameter is ${used}")]
    ExtraArguments { given: usize, used: usize },
}

impl DbError {
    /// SQLite's lock was held by a connection outside this pool's writer
    /// (see [`SqlitePool`]) and the statement did not wait.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
        )
    }

    /// The database cannot serve right now (no connection in time, closed,
    /// locked past the busy timeout, gone): 503 `database_unavailable`, not
    /// a 500.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            DbError::Sqlx(e) => sqlx_is_unavailable(e),
            DbError::PoolTimedOut(_) | DbError::PoolClosed => true,
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure | DiskFull
            ),
            _ => false,
        }
    }
}

/// sqlx's side of [`DbError::is_unavailable`] (the session store's errors
/// come as bare sqlx errors): no connection within the pool's acquire
/// deadline, a broken connection, and on Postgres the connection-exception
/// class (`08…`), a statement cancelled by `statement_timeout` (`57014`,
/// rolled back by the server), an operator or crash shutdown (`57P0…`) and
/// too many connections (`53300`).
pub fn sqlx_is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || c.starts_with("57P") || c == "57014" || c == "53300"
        }),
        _ => false,
    }
}

/// One statement argument. Nulls keep their type: Postgres refuses a
/// `bigint` null where a `text` column is set.
#[derive(Debug, Clone)]
pub enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}

/// A value one column can hold on both drivers.
pub trait Column:
    rusqlite::types::FromSql
    + for<'r> sqlx::Decode<'r, sqlx::Any>
    + sqlx::Type<sqlx::Any>
    + Send
    + 'static
{
}
impl<T> Column for T where
    T: rusqlite::types::FromSql
        + for<'r> sqlx::Decode<'r, sqlx::Any>
        + sqlx::Type<sqlx::Any>
        + Send
        + 'static
{
}

/// A result row, read from either driver: tuples by position, the DAL's row
/// structs (declared with the `record!` macro of this module) by column
/// name.
pub trait Record: Sized + Send + 'static {
    fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
    fn from_any(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error>;
}

macro_rules! tuple_record {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Column),+> Record for ($($t,)+) {
            fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(row.get::<usize, $t>($i)?,)+))
            }
            fn from_any(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok(($(row.try_get::<$t, usize>($i)?,)+))
            }
        }
    };
}
tuple_record!(A 0);
tuple_record!(A 0, B 1);
tuple_record!(A 0, B 1, C 2);
tuple_record!(A 0, B 1, C 2, D 3);

/// Declares a row struct and its [`Record`] impl: each field is read from
/// the column of the same name (so `SELECT … AS team_name` fills
/// `team_name`). Column names must be unique in the statement: a field is
/// first looked for at its own position (see `column`).
macro_rules! record {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$fmeta])* $fvis $field: $ty),*
        }
        impl $crate::dal::sql::Record for $name {
            fn from_sqlite(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                // Fields are read in declaration order, each first tried at
                // the next position (see `column`).
                let mut _at = 0usize;
                Ok($name {
                    $($field: {
                        let value = $crate::dal::sql::column(row, _at, stringify!($field))?;
                        _at += 1;
                        value
                    }),*
                })
            }
            fn from_any(row: &sqlx::any::AnyRow) -> Result<Self, sqlx::Error> {
                use sqlx::Row as _;
                Ok($name { $($field: row.try_get(stringify!($field))?),* })
            }
        }
    };
}
pub(crate) use record;

/// The column `name` of `row`, looked for first at `at`: a row struct's
/// fields usually come in the order of the statement's columns, and
/// rusqlite's lookup by name compares every column's name (O(n²) per row:
/// a tenth of a rename's DAL time went there).
pub(crate) fn column<T: rusqlite::types::FromSql>(
    row: &rusqlite::Row<'_>,
    at: usize,
    name: &str,
) -> rusqlite::Result<T> {
    let statement: &rusqlite::Statement<'_> = row.as_ref();
    match statement.column_name(at) {
        Ok(found) if found.eq_ignore_ascii_case(name) => row.get(at),
        _ => row.get(name),
    }
}

/// What an `execute` changed.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    rows_affected: u64,
}

impl Done {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// The SQLite connections of the data path: `readers` connections for
/// statements that read, and one writer connection for transactions and
/// statements that write.
///
/// Why one writer: SQLite lets one connection write at a time. With several
/// connections writing, a write that finds the lock taken sleeps in SQLite's
/// busy handler (1, 2, 5, 10 … ms) and polls again, so a burst of writes
/// queued by sleeping (rename p99 at 64 connections: 47 ms for a 0.1 ms
/// statement), and every write by one connection emptied the page cache of
/// the next one to write. Here the pool's writes queue in order for its one
/// writer connection, whose cache stays valid as long as no connection
/// outside the pool writes. Which connection a statement gets is decided
/// from its first keyword ([`Role::of`]); a write sent to a reader would
/// still be correct, only slower.
///
/// Where SQLite's lock can still be taken: by connections to the same file
/// outside this pool (the session store's, the migrations', a TRUNCATE
/// checkpoint). Every connection here has `busy_timeout` 0, so a statement
/// that meets such a lock on the calling task fails at once, with nothing
/// applied, and runs again on a blocking thread with the pragmas' busy
/// timeout (`SqlitePool::busy_wait`) set for that run only.
///
/// State: `readers + 1` open connections to the database file. Written
/// (checked out) by every DAL call, for the length of one statement or one
/// transaction; bounded by those counts, with a caller waiting at most
/// `acquire` for one (then 503 `database_unavailable`, nothing applied);
/// removed when the pool is closed and the last checked-out connection
/// comes back. A user who floods the DAL makes other users wait for a
/// connection, for at most `acquire`, like any other load; the per-user rate
/// limits in front of every action bound how much one user can send. A
/// connection that comes back inside a transaction (its caller was
/// cancelled) is rolled back before anyone else uses it. Statements run on
/// the calling task ([`Query`]'s `run_inline`), so a slow one holds a
/// runtime thread for its length and delays the other requests queued on
/// that thread: the DAL's statements are single-row lookups and per-viewer
/// lists (whose growth the create rate limits pace), an account deletion's
/// cascade being the longest; what may wait long, a lock held outside the
/// pool, moves to a blocking thread. A long transaction holds the writer:
/// other users' writes wait for it at most `acquire`, then answer 503 with
/// nothing applied.
#[derive(Clone)]
pub struct SqlitePool {
    readers: Slots<Connection>,
    writer: Slots<Connection>,
    path: Arc<Path>,
    pragmas: &'static [(&'static str, &'static str)],
    acquire: Duration,
}

/// Which of the pool's connections a statement runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Read,
    Write,
}

impl Role {
    /// `Write` for a statement that starts with `INSERT`, `UPDATE`,
    /// `DELETE` or `REPLACE`; `Read` otherwise (the DAL writes no other
    /// way outside transactions).
    pub fn of(sql: &str) -> Role {
        let word = sql
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or_default();
        if ["INSERT", "UPDATE", "DELETE", "REPLACE"]
            .iter()
            .any(|w| word.eq_ignore_ascii_case(w))
        {
            Role::Write
        } else {
            Role::Read
        }
    }
}

/// Prepared statements kept per connection: every statement text the DAL
/// uses (about 60) stays prepared.
const STATEMENT_CACHE: usize = 128;

impl SqlitePool {
    /// Opens `readers` reading connections and the writer to the file at
    /// `path`, each set up with `pragmas` (`PRAGMA name = value`).
    pub async fn open(
        path: &Path,
        readers: usize,
        acquire: Duration,
        pragmas: &'static [(&'static str, &'static str)],
    ) -> Result<SqlitePool, DbError> {
        let slots = |max_size| {
            Slots::from_config(&PoolConfig {
                max_size,
                timeout: Some(acquire),
                runtime: Some(deadpool::Runtime::Tokio1),
            })
        };
        let pool = SqlitePool {
            readers: slots(readers),
            writer: slots(1),
            path: path.into(),
            pragmas,
            acquire,
        };
        for role in std::iter::repeat_n(Role::Read, readers).chain([Role::Write]) {
            let opener = pool.clone();
            let conn = tokio::task::spawn_blocking(move || opener.connect()).await??;
            if pool.slots(role).try_add(conn).is_err() {
                return Err(DbError::PoolClosed);
            }
        }
        Ok(pool)
    }

    fn slots(&self, role: Role) -> &Slots<Connection> {
        match role {
            Role::Read => &self.readers,
            Role::Write => &self.writer,
        }
    }

    fn connect(&self) -> Result<Connection, DbError> {
        let conn = Connection::open_with_flags(
            &*self.path,
            // No CREATE: the migrations made the file; a path that does
            // not name it is an error here, not a second, empty database.
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        for (name, value) in self.pragmas {
            // Some pragmas answer with a row (journal_mode), some do not.
            let mut st = conn.prepare(&format!("PRAGMA {name} = {value}"))?;
            let mut rows = st.query([])?;
            while rows.next()?.is_some() {}
        }
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Statements run on the calling task first (see `run_inline`): one
        // that would wait for SQLite's lock fails at once instead, and is
        // run again on a blocking thread, where waiting is allowed.
        conn.busy_timeout(Duration::ZERO)?;
        Ok(conn)
    }

    /// How long a statement may wait for SQLite's lock on a blocking thread:
    /// the `busy_timeout` of the pool's pragmas (5 s for the demo).
    fn busy_wait(&self) -> Duration {
        self.pragmas
            .iter()
            .find(|(name, _)| *name == "busy_timeout")
            .and_then(|(_, ms)| ms.parse().ok())
            .map_or(Duration::from_secs(5), Duration::from_millis)
    }

    /// Runs `f` on `conn` on a blocking thread, through
    /// [`SqlitePool::run_waiting`].
    async fn run_blocking<T: Send + 'static>(
        &self,
        role: Role,
        conn: Object<Connection>,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || pool.run_waiting(role, conn, f).1).await?
    }

    /// Runs `f` on `conn` allowed to wait for SQLite's lock for
    /// [`SqlitePool::busy_wait`] (call it on a blocking thread), then sets
    /// the connection back to not waiting ([`SqlitePool::stop_waiting`]):
    /// the connection, unless it had to be replaced, and `f`'s result.
    fn run_waiting<T>(
        &self,
        role: Role,
        conn: Object<Connection>,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> (Option<Object<Connection>>, Result<T, DbError>) {
        let result = conn
            .busy_timeout(self.busy_wait())
            .map_err(DbError::from)
            .and_then(|()| f(&conn));
        (self.stop_waiting(role, conn), result)
    }

    /// Sets `conn` back to not waiting for SQLite's lock and lets it return
    /// to the pool. One that cannot be reset (it would stall a runtime
    /// thread in its next inline statement) is replaced instead; the
    /// statement's own result stands either way.
    fn stop_waiting(&self, role: Role, conn: Object<Connection>) -> Option<Object<Connection>> {
        match conn.busy_timeout(Duration::ZERO) {
            Ok(()) => Some(conn),
            Err(e) => {
                tracing::warn!(error = %e, "a SQLite connection kept its busy timeout; replacing it");
                self.replace(role, conn);
                None
            }
        }
    }

    async fn get(&self, role: Role) -> Result<Object<Connection>, DbError> {
        self.slots(role).get().await.map_err(|e| match e {
            PoolError::Timeout => DbError::PoolTimedOut(self.acquire),
            PoolError::Closed | PoolError::NoRuntimeSpecified => DbError::PoolClosed,
        })
    }

    /// Runs `f` on a reading connection, on a blocking thread.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        self.with_role(Role::Read, f).await
    }

    /// Runs `f` on a connection of `role`, on a blocking thread.
    pub async fn with_role<T: Send + 'static>(
        &self,
        role: Role,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let conn = self.get(role).await?;
        let conn = self.end_abandoned_transaction(role, conn)?;
        self.run_blocking(role, conn, f).await
    }

    /// A connection left inside a transaction (its caller was cancelled
    /// between BEGIN and the guard taking it, or its guard dropped before
    /// COMMIT) is rolled back; one that cannot be is replaced by a fresh
    /// connection.
    fn end_abandoned_transaction(
        &self,
        role: Role,
        conn: Object<Connection>,
    ) -> Result<Object<Connection>, DbError> {
        if conn.is_autocommit() {
            return Ok(conn);
        }
        match conn.execute_batch("ROLLBACK") {
            Ok(()) => Ok(conn),
            Err(e) => {
                self.replace(role, conn);
                Err(e.into())
            }
        }
    }

    /// Closes `conn` and opens a fresh connection in its place, off the
    /// caller's thread, retrying (with backoff up to 5 s) until it opens or
    /// the pool is closed: the pool never stays a connection short.
    fn replace(&self, role: Role, conn: Object<Connection>) {
        drop(Object::take(conn));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return; // shutting down
        };
        let pool = self.clone();
        runtime.spawn(async move {
            let mut delay = Duration::from_millis(50);
            while !pool.is_closed() {
                let opener = pool.clone();
                let opened = tokio::task::spawn_blocking(move || opener.connect())
                    .await
                    .map_err(DbError::from)
                    .and_then(|opened| opened);
                match opened {
                    Ok(fresh) => {
                        let _ = pool.slots(role).try_add(fresh);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not reopen a SQLite connection; retrying")
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }

    pub fn close(&self) {
        self.readers.close();
        self.writer.close();
    }

    pub fn is_closed(&self) -> bool {
        self.readers.is_closed()
    }
}

/// Where the DAL's statements run.
#[derive(Clone)]
pub enum Pool {
    Sqlite(SqlitePool),
    /// Postgres (sqlx `Any`).
    Any(AnyPool),
}

impl Pool {
    /// Starts a transaction. On SQLite it is `BEGIN IMMEDIATE`: it takes
    /// the write lock at once (waiting up to the busy timeout), so two
    /// transactions that read then write cannot deadlock on the upgrade.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        match self {
            Pool::Sqlite(pool) => {
                let conn = pool.get(Role::Write).await?;
                let conn = pool.end_abandoned_transaction(Role::Write, conn)?;
                // A cached statement: `execute_batch` parses the text on
                // every call.
                let begin = |conn: &Connection| -> Result<(), DbError> {
                    conn.prepare_cached("BEGIN IMMEDIATE")?.raw_execute()?;
                    Ok(())
                };
                let begun = begin(&conn);
                let mut tx = TxConn {
                    pool: pool.clone(),
                    conn: Some(conn),
                };
                match begun {
                    Ok(()) => Ok(Tx(TxInner::Sqlite(tx))),
                    // A connection outside the pool holds the lock: wait for
                    // it on a blocking thread. The guard goes along, so a
                    // caller cancelled meanwhile leaves no open transaction
                    // (and no held lock) behind: dropping it rolls back.
                    Err(e) if e.is_busy() => {
                        tokio::task::spawn_blocking(move || {
                            let conn = tx.conn.take().ok_or(DbError::PoolClosed)?;
                            let (conn, begun) = tx.pool.run_waiting(Role::Write, conn, begin);
                            tx.conn = conn;
                            begun?;
                            match tx.conn {
                                Some(_) => Ok(Tx(TxInner::Sqlite(tx))),
                                // Replaced (closing it rolled back).
                                None => Err(DbError::PoolClosed),
                            }
                        })
                        .await?
                    }
                    Err(e) => Err(e),
                }
            }
            Pool::Any(pool) => Ok(Tx(TxInner::Any(pool.begin().await?))),
        }
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(pool) => pool.close(),
            Pool::Any(pool) => pool.close().await,
        }
    }
}

/// A transaction on either database: committed by [`Tx::commit`], rolled
/// back when dropped without it (also when its caller is cancelled
/// mid-statement).
pub struct Tx(TxInner);

enum TxInner {
    Sqlite(TxConn),
    Any(sqlx::Transaction<'static, sqlx::Any>),
}

/// A SQLite connection inside a transaction. Dropped before COMMIT (an
/// error, a cancelled caller), it rolls back, on whichever thread drops it:
/// a WAL rollback discards pages in memory and waits for nothing.
/// (`conn` is `None` only once the drop has taken it.)
struct TxConn {
    pool: SqlitePool,
    conn: Option<Object<Connection>>,
}

impl Drop for TxConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Back to the pool rolled back, or replaced.
            let _ = self.pool.end_abandoned_transaction(Role::Write, conn);
        }
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), DbError> {
        match self.0 {
            TxInner::Sqlite(guard) => {
                // In WAL mode a commit appends to the log and waits for no
                // lock: it runs on the calling task.
                let conn = guard.conn.as_ref().ok_or(DbError::PoolClosed)?;
                conn.prepare_cached("COMMIT")?.raw_execute()?;
                Ok(())
            }
            TxInner::Any(tx) => Ok(tx.commit().await?),
        }
    }
}

/// What a statement runs on: a pool (one connection for this statement) or
/// an open transaction.
pub enum On<'a> {
    Pool(&'a Pool),
    Tx(&'a mut Tx),
}

impl<'a> From<&'a Pool> for On<'a> {
    fn from(p: &'a Pool) -> Self {
        On::Pool(p)
    }
}
impl<'a> From<&'a mut Tx> for On<'a> {
    fn from(t: &'a mut Tx) -> Self {
        On::Tx(t)
    }
}

/// A statement with its arguments; see [`query`].
#[must_use = "a query does nothing until it is fetched or executed"]
pub struct Query {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
}

/// A statement in the DAL's dialect: `$1`, `$2`, … parameters, SQL that
/// both SQLite and Postgres accept.
pub fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// One way to read a statement's result on SQLite.
type Reader<T> = fn(&mut CachedStatement<'_>) -> Result<T, DbError>;

fn read_optional<R: Record>(st: &mut CachedStatement<'_>) -> Result<Option<R>, DbError> {
    // A write with RETURNING makes its change on the first step, but
    // commits (outside a transaction) only when it runs to the end: a
    // commit that fails there (a deferred constraint, a full disk) must be
    // this call's error, not a row for a change that was rolled back.
    let writes = !st.readonly();
    let mut rows = st.raw_query();
    let first = match rows.next()? {
        Some(row) => Some(R::from_sqlite(row)?),
        None => None,
    };
    if writes {
        while rows.next()?.is_some() {}
    }
    Ok(first)
}

fn read_all<R: Record>(st: &mut CachedStatement<'_>) -> Result<Vec<R>, DbError> {
    let mut rows = st.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(R::from_sqlite(row)?);
    }
    Ok(out)
}

fn read_done(st: &mut CachedStatement<'_>) -> Result<Done, DbError> {
    Ok(Done {
        rows_affected: st.raw_execute()? as u64,
    })
}

impl Query {
    /// Binds the next parameter (`$1`, then `$2`, …).
    pub fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub async fn fetch_optional<'a, R: Record>(
        self,
        on: impl Into<On<'a>>,
    ) -> Result<Option<R>, DbError> {
        let on = on.into();
        match on {
            On::Pool(Pool::Any(pool)) => self.any().fetch_optional(pool).await?,
            On::Tx(Tx(TxInner::Any(tx))) => self.any().fetch_optional(&mut **tx).await?,
            sqlite => return self.sqlite(sqlite, read_optional::<R>).await,
        }
        .map(|row| R::from_any(&row))
        .transpose()
        .map_err(DbError::from)
    }

    pub async fn fetch_one<'a, R: Record>(self, on: impl Into<On<'a>>) -> Result<R, DbError> {
        let on = on.into();
        let sqlite = matches!(
            on,
            On::Pool(Pool::Sqlite(_)) | On::Tx(Tx(TxInner::Sqlite(_)))
        );
        match self.fetch_optional(on).await? {
            Some(row) => Ok(row),
            None if sqlite => Err(rusqlite::Error::QueryReturnedNoRows.into()),
            None => Err(sqlx::Error::RowNotFound.into()),
        }
    }

    pub async fn fetch_all<'a, R: Record>(self, on: impl Into<On<'a>>) -> Result<Vec<R>, DbError> {
        let on = on.into();
        let rows = match on {
            On::Pool(Pool::Any(pool)) => self.any().fetch_all(pool).await?,
            On::Tx(Tx(TxInner::Any(tx))) => self.any().fetch_all(&mut **tx).await?,
            sqlite => return self.sqlite(sqlite, read_all::<R>).await,
        };
        rows.iter()
            .map(R::from_any)
            .collect::<Result<_, _>>()
            .map_err(DbError::from)
    }

    pub async fn execute<'a>(self, on: impl Into<On<'a>>) -> Result<Done, DbError> {
        let on = on.into();
        let done = match on {
            On::Pool(Pool::Any(pool)) => self.any().execute(pool).await?,
            On::Tx(Tx(TxInner::Any(tx))) => self.any().execute(&mut **tx).await?,
            sqlite => return self.sqlite(sqlite, read_done).await,
        };
        Ok(Done {
            rows_affected: done.rows_affected(),
        })
    }

    fn any(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for arg in &self.args {
            q = match arg {
                Arg::Int(v) => q.bind(*v),
                Arg::Text(v) => q.bind(v.as_deref()),
            };
        }
        q
    }

    /// Runs on SQLite: on the calling task (a blocking thread only when a
    /// lock held outside the pool makes it wait), the statement from the
    /// connection's cache, the arguments bound by name.
    async fn sqlite<T: Send + 'static>(self, on: On<'_>, read: Reader<T>) -> Result<T, DbError> {
        match on {
            On::Pool(Pool::Sqlite(pool)) => {
                let role = Role::of(&self.sql);
                let conn = pool.get(role).await?;
                let conn = pool.end_abandoned_transaction(role, conn)?;
                match self.run_inline(&conn, read) {
                    // The lock is held outside the pool (this pool's writes
                    // queue for its one writer): nothing was applied (a
                    // statement that meets a busy lock is rolled back, and
                    // an open transaction is rolled back here), so it runs
                    // again where it may wait.
                    Err(e) if e.is_busy() => {
                        let conn = pool.end_abandoned_transaction(role, conn)?;
                        pool.run_blocking(role, conn, move |conn| self.run_inline(conn, read))
                            .await
                    }
                    done => done,
                }
            }
            On::Tx(Tx(TxInner::Sqlite(guard))) => {
                let conn = guard.conn.as_ref().ok_or(DbError::PoolClosed)?;
                self.run_inline(conn, read)
            }
            On::Pool(Pool::Any(_)) | On::Tx(Tx(TxInner::Any(_))) => {
                unreachable!("sqlx statements are run by the caller")
            }
        }
    }

    /// Runs the statement on the calling task. Why not a blocking thread:
    /// a DAL statement takes tens of microseconds, and handing each one to
    /// tokio's blocking pool and back cost more than the statement (under
    /// load, a third of a rename's CPU time went to thread wake-ups and
    /// context switches: `perf`, BENCHMARKS.md). What could make a
    /// statement wait, SQLite's lock, does not wait here (`busy_timeout` 0
    /// on every connection): the caller retries such a statement on a
    /// blocking thread.
    fn run_inline<T>(&self, conn: &Connection, read: Reader<T>) -> Result<T, DbError> {
        read(&mut self.prepare(conn)?)
    }

    fn prepare<'c>(&self, conn: &'c Connection) -> Result<CachedStatement<'c>, DbError> {
        let mut st = conn.prepare_cached(&self.sql)?;
        let mut highest = 0;
        for i in 1..=st.parameter_count() {
            let n = st
                .parameter_name(i)
                .and_then(|name| name.strip_prefix('$'))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|n| *n >= 1);
            highest = highest.max(n.unwrap_or(0));
            let arg = n.and_then(|n| self.args.get(n - 1));
            match arg {
                Some(Arg::Int(v)) => st.raw_bind_parameter(i, v)?,
                Some(Arg::Text(v)) => st.raw_bind_parameter(i, v.as_deref())?,
                None => {
                    let name = st.parameter_name(i).unwrap_or("?").to_owned();
                    return Err(DbError::Unbound(name));
                }
            }
        }
        // Postgres refuses arguments the statement does not use; so does
        // this, or a renumbering mistake would pass on SQLite alone.
        if self.args.len() > highest {
            return Err(DbError::ExtraArguments {
                given: self.args.len(),
                used: highest,
            });
        }
        Ok(st)
    }
}

/// The file a `sqlite://…` URL names, or `None` for an in-memory database
/// (each connection would see its own: the data path needs a file).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    // sqlx's own parser (percent-decoding, `mode=memory`), so this is the
    // file the migrations ran on.
    let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url).ok()?;
    let file = options.get_filename();
    let name = file.to_string_lossy();
    (!name.is_empty() && !name.contains(":memory:") && !url.contains("mode=memory"))
        .then(|| file.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Another process": a connection of its own, outside the pool,
    /// holding SQLite's write lock until it commits.
    fn lock_from_outside(path: &std::path::Path) -> Connection {
        let other = Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        other
    }

    async fn scratch() -> (Pool, PathBuf) {
        let path =
            std::env::temp_dir().join(format!("portcullis-sql-{}.db", rand::random::<u64>()));
        // The pool opens existing files only (the migrations create it).
        std::fs::File::create(&path).unwrap();
        let pool = SqlitePool::open(
            &path,
            2,
            Duration::from_millis(300),
            &crate::db::SQLITE_PRAGMAS,
        )
        .await
        .unwrap();
        let pool = Pool::Sqlite(pool);
        query("CREATE TABLE t (id INTEGER PRIMARY KEY, a TEXT, b INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        (pool, path)
    }

    /// SQLite numbers `$n` in order of first appearance: binding by
    /// position would put `$3`'s value in `$1`'s place.
    #[tokio::test]
    async fn parameters_are_bound_by_name_not_position() {
        let (pool, path) = scratch().await;
        query("INSERT INTO t (b, a) VALUES ($2, $1)")
            .bind("text")
            .bind(7)
            .execute(&pool)
            .await
            .unwrap();
        let row: (String, i64) = query("SELECT a, b FROM t WHERE b = $2 AND a = $1")
            .bind("text")
            .bind(7)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(row, ("text".to_owned(), 7));
        let missing = query("SELECT a FROM t WHERE b = $2")
            .bind(7)
            .fetch_optional::<(String,)>(&pool)
            .await;
        assert!(matches!(missing, Err(DbError::Unbound(ref n)) if n == "$2"));
        let extra = query("SELECT a FROM t WHERE b = $1")
            .bind(7)
            .bind("unused")
            .fetch_optional::<(String,)>(&pool)
            .await;
        assert!(
            matches!(extra, Err(DbError::ExtraArguments { given: 2, used: 1 })),
            "{extra:?}"
        );
        let _ = std::fs::remove_file(path);
    }

    /// A write with RETURNING whose commit fails after the row came back
    /// (here a deferred foreign key, checked at commit; in production a
    /// full disk): the caller gets the error, not the row of a change that
    /// was rolled back.
    #[tokio::test]
    async fn a_returning_write_whose_commit_fails_is_an_error_not_a_row() {
        let (pool, path) = scratch().await;
        query(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER \
             REFERENCES t(id) DEFERRABLE INITIALLY DEFERRED)",
        )
        .execute(&pool)
        .await
        .unwrap();
        let inserted = query("INSERT INTO child (parent) VALUES ($1) RETURNING id")
            .bind(999)
            .fetch_optional::<(i64,)>(&pool)
            .await;
        assert!(
            matches!(&inserted, Err(DbError::Sqlite(e)) if e.to_string().contains("FOREIGN KEY")),
            "{inserted:?}"
        );
        let (n,): (i64,) = query("SELECT COUNT(*) FROM child")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
        let _ = std::fs::remove_file(path);
    }

    /// A transaction dropped without commit leaves nothing behind, and its
    /// connection comes back usable, outside any transaction.
    #[tokio::test]
    async fn a_dropped_transaction_rolls_back_and_frees_its_connection() {
        let (pool, path) = scratch().await;
        for _ in 0..3 {
            let mut tx = pool.begin().await.unwrap();
            query("INSERT INTO t (a) VALUES ($1)")
                .bind("never")
                .execute(&mut tx)
                .await
                .unwrap();
            drop(tx);
        }
        let n: (i64,) = query("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n.0, 0);
        // Both connections take writes again (no lock left held).
        let (mut a, mut b) = (pool.begin().await.unwrap(), None);
        query("INSERT INTO t (a) VALUES ('kept')")
            .execute(&mut a)
            .await
            .unwrap();
        a.commit().await.unwrap();
        b.replace(pool.begin().await.unwrap());
        b.unwrap().commit().await.unwrap();
        let _ = std::fs::remove_file(path);
    }

    /// A caller cancelled between its transaction's statements (a request
    /// deadline fires while the handler awaits something else): the guard
    /// rolls the transaction back, and the writer is free for the next
    /// caller, with nothing of the cancelled work committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_transaction_never_reaches_the_next_caller() {
        let (pool, path) = scratch().await;
        for _ in 0..10 {
            let cancelled = {
                let pool = pool.clone();
                async move {
                    let mut tx = pool.begin().await.unwrap();
                    query("INSERT INTO t (a) VALUES ('cancelled')")
                        .execute(&mut tx)
                        .await
                        .unwrap();
                    // Something slow between statements, cut off by the
                    // timeout below.
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    tx.commit().await.unwrap();
                }
            };
            let timed_out = tokio::time::timeout(Duration::from_millis(5), cancelled).await;
            assert!(timed_out.is_err());
        }
        let mut tx = pool.begin().await.unwrap();
        query("INSERT INTO t (a) VALUES ('after')")
            .execute(&mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let rows: Vec<(String,)> = query("SELECT a FROM t").fetch_all(&pool).await.unwrap();
        assert_eq!(rows, vec![("after".to_owned(),)]);
        let _ = std::fs::remove_file(path);
    }

    /// Another process holds SQLite's write lock: a write on the calling
    /// task does not wait for it there (that would stall a runtime thread);
    /// it waits on a blocking thread and lands once the lock is released,
    /// exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_behind_another_process_lock_waits_off_the_runtime_and_lands_once() {
        let (pool, path) = scratch().await;
        let other = lock_from_outside(&path);
        other
            .execute("INSERT INTO t (a) VALUES ('other')", [])
            .unwrap();
        let write = tokio::spawn({
            let pool = pool.clone();
            async move {
                query("INSERT INTO t (a) VALUES ($1) RETURNING id")
                    .bind("mine")
                    .fetch_optional::<(i64,)>(&pool)
                    .await
            }
        });
        let tx = tokio::spawn({
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin().await?;
                query("INSERT INTO t (a) VALUES ('in a transaction')")
                    .execute(&mut tx)
                    .await?;
                tx.commit().await
            }
        });
        // Meanwhile the runtime is not stalled: a read answers.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (n,): (i64,) = query("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0, "the other process has not committed yet");
        assert!(!write.is_finished() && !tx.is_finished());
        other.execute_batch("COMMIT").unwrap();
        let row = write.await.unwrap().unwrap();
        assert!(row.is_some());
        tx.await.unwrap().unwrap();
        let rows: Vec<(String,)> = query("SELECT a FROM t ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        let mut names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        names.sort();
        assert_eq!(names, ["in a transaction", "mine", "other"]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_statement_s_first_keyword_picks_its_connection() {
        for write in [
            "INSERT INTO t VALUES (1)",
            "  update t SET a = 1",
            "DELETE FROM t",
            "REPLACE INTO t VALUES (1)",
            "\n\tInsert into t values (1)",
        ] {
            assert_eq!(Role::of(write), Role::Write, "{write}");
        }
        for read in [
            "SELECT 1",
            "PRAGMA user_version",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "",
        ] {
            assert_eq!(Role::of(read), Role::Read, "{read}");
        }
    }

    /// A burst of writes queues for the one writer connection: every write
    /// lands once, none fails on SQLite's lock. One caller holding the
    /// writer in a long transaction (a slow or abusive request) makes the
    /// other writes wait at most `acquire`, then answer 503 with nothing
    /// applied; reads go on meanwhile. (With several writing connections a
    /// blocked write slept in SQLite's busy handler for up to 5 s instead.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queue_for_the_writer_and_a_held_writer_costs_others_at_most_acquire() {
        let (pool, path) = scratch().await;
        let mut burst = tokio::task::JoinSet::new();
        for i in 0..64 {
            let pool = pool.clone();
            burst.spawn(async move {
                if i % 4 == 0 {
                    let mut tx = pool.begin().await?;
                    query("INSERT INTO t (b) VALUES ($1)")
                        .bind(i)
                        .execute(&mut tx)
                        .await?;
                    tx.commit().await
                } else {
                    query("INSERT INTO t (b) VALUES ($1)")
                        .bind(i)
                        .execute(&pool)
                        .await
                        .map(drop)
                }
            });
        }
        for done in burst.join_all().await {
            done.unwrap();
        }
        let (n, distinct): (i64, i64) = query("SELECT COUNT(*), COUNT(DISTINCT b) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((n, distinct), (64, 64));

        // One caller holds the writer.
        let mut held = pool.begin().await.unwrap();
        query("UPDATE t SET a = 'held'")
            .execute(&mut held)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let blocked = query("UPDATE t SET a = 'other' WHERE b = 1")
            .execute(&pool)
            .await
            .unwrap_err();
        assert!(matches!(blocked, DbError::PoolTimedOut(_)), "{blocked:?}");
        assert!(blocked.is_unavailable());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // Reads are not held up (and see the last commit, not the open
        // transaction).
        let (unset,): (i64,) = query("SELECT COUNT(*) FROM t WHERE a IS NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(unset, 64);
        drop(held);
        let (still,): (i64,) = query("SELECT COUNT(*) FROM t WHERE a IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            still, 0,
            "neither the dropped nor the refused write applied"
        );
        let _ = std::fs::remove_file(path);
    }

    /// A caller cancelled while its BEGIN waits for a lock held outside
    /// the pool (the session store's, say): the BEGIN that succeeds once
    /// the lock frees is rolled back at once, with nobody left to use it,
    /// so the writer does not sit on SQLite's lock and starve the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_begin_cancelled_while_it_waits_leaves_no_lock_behind() {
        let (pool, path) = scratch().await;
        let other = lock_from_outside(&path);
        let waiting = tokio::time::timeout(Duration::from_millis(100), pool.begin()).await;
        assert!(waiting.is_err(), "BEGIN waited for the lock");
        other.execute_batch("COMMIT").unwrap();
        // The abandoned BEGIN, still polling in SQLite's busy handler on its
        // blocking thread, takes the lock within this sleep; its guard must
        // then roll it back, so a connection outside the pool can write.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let outside = Connection::open(&path).unwrap();
        outside.busy_timeout(Duration::ZERO).unwrap();
        let started = std::time::Instant::now();
        loop {
            match outside.execute("INSERT INTO t (a) VALUES ('outside')", []) {
                Ok(_) => break,
                Err(e) => assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "the lock is still held: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // And the pool's writer is usable, outside any transaction.
        query("INSERT INTO t (a) VALUES ('pool')")
            .execute(&pool)
            .await
            .unwrap();
        let (n,): (i64,) = query("SELECT COUNT(*) FROM t")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 2);
        let _ = std::fs::remove_file(path);
    }

    /// Every connection busy: the next caller waits `acquire`, then gets
    /// the pool time-out (503 `database_unavailable`), not an endless wait.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_saturated_pool_answers_unavailable_within_the_acquire_deadline() {
        let (pool, path) = scratch().await;
        let Pool::Sqlite(sqlite) = &pool else {
            unreachable!()
        };
        // Both connections held by statements that wait for a release.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let release = std::sync::Arc::new(std::sync::Barrier::new(3));
        let held: Vec<_> = (0..2)
            .map(|_| {
                let (sqlite, ready_tx, release) =
                    (sqlite.clone(), ready_tx.clone(), release.clone());
                tokio::spawn(async move {
                    sqlite
                        .with(move |_| {
                            ready_tx.send(()).unwrap();
                            release.wait();
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        tokio::task::spawn_blocking(move || (ready_rx.recv().unwrap(), ready_rx.recv().unwrap()))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let err = query("SELECT 1")
            .fetch_one::<(i64,)>(&pool)
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::PoolTimedOut(_)), "{err:?}");
        assert!(err.is_unavailable());
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::task::spawn_blocking(move || release.wait())
            .await
            .unwrap();
        for h in held {
            h.await.unwrap().unwrap();
        }
        let (one,): (i64,) = query("SELECT 1").fetch_one(&pool).await.unwrap();
        assert_eq!(one, 1);
        let _ = std::fs::remove_file(path);
    }
}
