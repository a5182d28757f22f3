//! Issue #19, direction 2: what the demo's SQLite driver costs per statement.
//!
//! The demo talks to SQLite through `sqlx::AnyPool`; sqlx runs every SQLite
//! connection on its own worker thread and hands each statement over a
//! channel. This bench runs the demo's three hot statements, with the
//! demo's exact SQL, on a real SQLite file (WAL, `synchronous = NORMAL`,
//! `foreign_keys`, `busy_timeout = 5000`, as `demo/src/db.rs` sets them)
//! seeded like `demo seed --bench` (10 users, each with a team, 1,000
//! projects, user k's team owning projects i with i % 10 == k):
//!
//! * `rename`: `demo/src/dal/projects.rs` `rename` (one `UPDATE … RETURNING`),
//! * `stamp`: `demo/src/dal/users.rs` `security_stamp` (every signed-in request),
//! * `list`: `demo/src/dal/projects.rs` `list` (`/projects`, 100 rows).
//!
//! through these drivers, all on the same SQLite build (sqlx 0.8 and
//! rusqlite 0.32 link the same bundled `libsqlite3-sys` 0.30):
//!
//! * `any`: `sqlx::AnyPool`, max 8 connections (the demo today),
//! * `sqlite`: the typed `sqlx::SqlitePool`, same options,
//! * `deadpool_sqlite`: rusqlite through `deadpool-sqlite` (8 connections,
//!   `interact` = `spawn_blocking`), `prepare_cached`. As shipped, its pool
//!   runs a `SELECT $1` recycle check through `interact` on every checkout;
//! * `blocking`: rusqlite connections in a `deadpool::unmanaged` pool (async
//!   checkout, no recycle query), one `spawn_blocking` per statement,
//!   `prepare_cached`;
//! * `inline`: rusqlite called directly on one connection, no runtime, no
//!   pool: the floor (what SQLite itself costs). c=1 only.
//!
//! Two modes:
//!
//! ```text
//! cargo bench -p portcullis-bench --bench sqlite_driver      # criterion, c=1 and c=16
//! scripts/profile-sqlite-driver                              # Ir/op under callgrind
//! <bench binary> --ir <driver> <stmt> <ops> [concurrency]    # what the script runs
//! ```
//!
//! Criterion times a batch of `iters` operations spread over `c` tasks on a
//! multi-thread tokio runtime (wall time / iters): at c=1 that is the latency
//! of one operation, at c=16 the inverse of throughput with 16 in flight.

use std::cell::Cell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use rusqlite::{Connection, OptionalExtension, named_params};
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{AnyPool, Executor, SqlitePool};

/// `demo/src/db.rs`, `Dialect::Sqlite`'s `after_connect`.
const PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                       PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;";

/// The tables the three statements touch, as `demo/migrations/sqlite`
/// leaves them (users after `20261201000001_identity.sql`).
const SCHEMA: &str = "
CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    email          TEXT    NOT NULL UNIQUE,
    display_name   TEXT    NOT NULL,
    password_hash  TEXT    NOT NULL,
    api_key        TEXT,
    created_at     INTEGER NOT NULL,
    security_stamp TEXT    NOT NULL DEFAULT (lower(hex(randomblob(16))))
);
CREATE TABLE teams (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    owner_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    plan       TEXT    NOT NULL DEFAULT 'free',
    created_at INTEGER NOT NULL
);
CREATE TABLE memberships (
    team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role    TEXT    NOT NULL CHECK (role IN ('member', 'admin')),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX memberships_user ON memberships(user_id);
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    team_id     INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    archived_at INTEGER,
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX projects_team ON projects(team_id);
";

// The demo's SQL, character for character (`demo/src/dal/mod.rs`
// `VIEWER_TEAMS`, `demo/src/dal/projects.rs` `SELECT` / `RETURNING`). The
// demo `format!`s these per call; here they are constants for every driver.
macro_rules! viewer_teams {
    () => {
        "SELECT team_id FROM memberships WHERE user_id = $1"
    };
}
const RENAME: &str = concat!(
    "UPDATE projects SET name = $3, updated_at = $4 WHERE id = $2 AND team_id IN (",
    viewer_teams!(),
    ") RETURNING id, team_id, (SELECT name FROM teams WHERE teams.id = projects.team_id) AS team_name, \
     name, archived_at, updated_at"
);
const STAMP: &str = "SELECT security_stamp FROM users WHERE id = $1";
const LIST: &str = concat!(
    "SELECT p.id, p.team_id, t.name AS team_name, p.name, p.archived_at, p.updated_at \
     FROM projects p JOIN teams t ON t.id = p.team_id WHERE p.team_id IN (",
    viewer_teams!(),
    ") ORDER BY p.archived_at IS NOT NULL, p.id DESC"
);

/// `demo/src/dal/projects.rs` `ProjectRow`.
#[derive(sqlx::FromRow)]
#[allow(dead_code)] // read only through black_box
struct ProjectRow {
    id: i64,
    team_id: i64,
    team_name: String,
    name: String,
    archived_at: Option<i64>,
    updated_at: i64,
}

fn project_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRow> {
    Ok(ProjectRow {
        id: r.get(0)?,
        team_id: r.get(1)?,
        team_name: r.get(2)?,
        name: r.get(3)?,
        archived_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug)]
enum Stmt {
    Rename,
    Stamp,
    List,
}

impl Stmt {
    const ALL: [Stmt; 3] = [Stmt::Rename, Stmt::Stamp, Stmt::List];
    fn name(self) -> &'static str {
        match self {
            Stmt::Rename => "rename",
            Stmt::Stamp => "stamp",
            Stmt::List => "list",
        }
    }
    fn parse(s: &str) -> Stmt {
        *Stmt::ALL
            .iter()
            .find(|k| k.name() == s)
            .unwrap_or_else(|| panic!("statement {s}: rename|stamp|list"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Any,
    Sqlite,
    DeadpoolSqlite,
    Blocking,
    Inline,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Any,
        Kind::Sqlite,
        Kind::DeadpoolSqlite,
        Kind::Blocking,
        Kind::Inline,
    ];
    fn name(self) -> &'static str {
        match self {
            Kind::Any => "any",
            Kind::Sqlite => "sqlite",
            Kind::DeadpoolSqlite => "deadpool_sqlite",
            Kind::Blocking => "blocking",
            Kind::Inline => "inline",
        }
    }
    fn parse(s: &str) -> Kind {
        *Kind::ALL
            .iter()
            .find(|k| k.name() == s)
            .unwrap_or_else(|| panic!("driver {s}: any|sqlite|deadpool_sqlite|blocking|inline"))
    }
}

/// The seeded database file and the ids the operations pick from.
struct World {
    _dir: tempfile::TempDir,
    path: PathBuf,
    /// The 10 users' ids.
    users: Vec<i64>,
    /// `projects[k]`: the 100 projects of user k's team.
    projects: Vec<Vec<i64>>,
}

impl World {
    /// `demo seed --bench`'s rows (the session rows are not needed here).
    fn seed() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("demo.db");
        let mut c = Connection::open(&path).expect("open");
        c.execute_batch(PRAGMAS).expect("pragmas");
        c.execute_batch(SCHEMA).expect("schema");
        let tx = c.transaction().expect("begin");
        let t = now();
        let mut users = Vec::new();
        let mut teams = Vec::new();
        for k in 1..=10 {
            let user: i64 = tx
                .query_row(
                    "INSERT INTO users (email, display_name, password_hash, created_at) \
                     VALUES (?1, ?2, 'x', ?3) RETURNING id",
                    rusqlite::params![format!("u{k}@bench.local"), format!("u{k}"), t],
                    |r| r.get(0),
                )
                .expect("user");
            let team: i64 = tx
                .query_row(
                    "INSERT INTO teams (name, owner_id, created_at) VALUES (?1, ?2, ?3) RETURNING id",
                    rusqlite::params![format!("u{k}'s team"), user, t],
                    |r| r.get(0),
                )
                .expect("team");
            tx.execute(
                "INSERT INTO memberships (team_id, user_id, role) VALUES (?1, ?2, 'admin')",
                rusqlite::params![team, user],
            )
            .expect("membership");
            users.push(user);
            teams.push(team);
        }
        let mut projects = vec![Vec::new(); 10];
        for i in 0..1000usize {
            let k = i % 10;
            let id: i64 = tx
                .query_row(
                    "INSERT INTO projects (team_id, name, created_by, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?4) RETURNING id",
                    rusqlite::params![teams[k], format!("Project {i}"), users[k], t],
                    |r| r.get(0),
                )
                .expect("project");
            projects[k].push(id);
        }
        tx.commit().expect("commit");
        World {
            _dir: dir,
            path,
            users,
            projects,
        }
    }

    /// Operation `i`: user `i % 10`, and for a rename one of that user's
    /// projects, rotating (as `scripts/profile rename` does).
    fn pick(&self, i: u64) -> (i64, i64) {
        let k = (i % 10) as usize;
        let p = &self.projects[k];
        (self.users[k], p[(i / 10) as usize % p.len()])
    }
}

/// rusqlite: the three statements, with the demo's `$n` placeholders bound
/// by name (SQLite numbers `$n` parameters in order of appearance, so the
/// rename's `$3` is parameter 1; binding by name keeps the SQL unchanged).
fn rusqlite_op(c: &Connection, stmt: Stmt, viewer: i64, project: i64, i: u64) -> usize {
    match stmt {
        Stmt::Rename => {
            let mut st = c.prepare_cached(RENAME).expect("prepare");
            let row = st
                .query_row(
                    named_params! {"$1": viewer, "$2": project, "$3": format!("Renamed #{i}"), "$4": now()},
                    project_row,
                )
                .optional()
                .expect("rename");
            usize::from(black_box(row).is_some())
        }
        Stmt::Stamp => {
            let mut st = c.prepare_cached(STAMP).expect("prepare");
            let row: Option<String> = st
                .query_row(named_params! {"$1": viewer}, |r| r.get(0))
                .optional()
                .expect("stamp");
            usize::from(black_box(row).is_some())
        }
        Stmt::List => {
            let mut st = c.prepare_cached(LIST).expect("prepare");
            let rows = st
                .query_map(named_params! {"$1": viewer}, project_row)
                .expect("list")
                .collect::<rusqlite::Result<Vec<_>>>()
                .expect("list rows");
            black_box(rows).len()
        }
    }
}

fn expected(stmt: Stmt) -> usize {
    match stmt {
        Stmt::List => 100,
        _ => 1,
    }
}

#[derive(Clone)]
enum Pool {
    Any(AnyPool),
    Sqlite(SqlitePool),
    DeadpoolSqlite(deadpool_sqlite::Pool),
    Blocking(deadpool::unmanaged::Pool<Connection>),
}

/// The demo's SQLite acquire timeout (`db.rs`: at least 3 s).
const ACQUIRE: Duration = Duration::from_secs(3);
/// The demo's SQLite pool size.
const CONNECTIONS: usize = 8;

fn open_rusqlite(path: &Path) -> Connection {
    let c = Connection::open(path).expect("open");
    c.execute_batch(PRAGMAS).expect("pragmas");
    c
}

impl Pool {
    async fn connect(kind: Kind, path: &Path) -> Pool {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        match kind {
            Kind::Any => {
                sqlx::any::install_default_drivers();
                let pool = AnyPoolOptions::new()
                    .acquire_timeout(ACQUIRE)
                    .max_connections(CONNECTIONS as u32)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(PRAGMAS).await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await
                    .expect("AnyPool");
                Pool::Any(pool)
            }
            Kind::Sqlite => {
                let options: SqliteConnectOptions = url.parse().expect("url");
                let pool = SqlitePoolOptions::new()
                    .acquire_timeout(ACQUIRE)
                    .max_connections(CONNECTIONS as u32)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute(PRAGMAS).await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .expect("SqlitePool");
                Pool::Sqlite(pool)
            }
            Kind::DeadpoolSqlite => {
                use deadpool_sqlite::{Config, Hook, HookError, Runtime};
                let pool = Config::new(path)
                    .builder(Runtime::Tokio1)
                    .expect("config")
                    .max_size(CONNECTIONS)
                    .wait_timeout(Some(ACQUIRE))
                    .post_create(Hook::sync_fn(|conn, _| {
                        let c = conn.lock().map_err(|_| HookError::message("poisoned"))?;
                        c.execute_batch(PRAGMAS).map_err(HookError::Backend)
                    }))
                    .build()
                    .expect("deadpool-sqlite");
                Pool::DeadpoolSqlite(pool)
            }
            Kind::Blocking => {
                let pool =
                    deadpool::unmanaged::Pool::from_config(&deadpool::unmanaged::PoolConfig {
                        max_size: CONNECTIONS,
                        timeout: Some(ACQUIRE),
                        runtime: Some(deadpool::Runtime::Tokio1),
                    });
                for _ in 0..CONNECTIONS {
                    if pool.try_add(open_rusqlite(path)).is_err() {
                        panic!("pool add");
                    }
                }
                Pool::Blocking(pool)
            }
            Kind::Inline => unreachable!("inline runs without a pool"),
        }
    }

    async fn op(&self, world: &World, stmt: Stmt, i: u64) -> usize {
        let (viewer, project) = world.pick(i);
        match self {
            Pool::Any(pool) => sqlx_op(pool, stmt, viewer, project, i).await,
            Pool::Sqlite(pool) => sqlx_op(pool, stmt, viewer, project, i).await,
            Pool::DeadpoolSqlite(pool) => {
                let conn = pool.get().await.expect("checkout");
                conn.interact(move |c| rusqlite_op(c, stmt, viewer, project, i))
                    .await
                    .expect("interact")
            }
            Pool::Blocking(pool) => {
                let conn = pool.get().await.expect("checkout");
                tokio::task::spawn_blocking(move || rusqlite_op(&conn, stmt, viewer, project, i))
                    .await
                    .expect("blocking task")
            }
        }
    }
}

/// One statement through sqlx, generic over the pool like the demo's DAL
/// would be if it were typed.
async fn sqlx_op<'p, DB>(
    pool: &'p sqlx::Pool<DB>,
    stmt: Stmt,
    viewer: i64,
    project: i64,
    i: u64,
) -> usize
where
    DB: sqlx::Database,
    &'p sqlx::Pool<DB>: sqlx::Executor<'p, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> ProjectRow: sqlx::FromRow<'r, DB::Row>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
    i64: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
    String: sqlx::Type<DB> + for<'q> sqlx::Encode<'q, DB>,
{
    match stmt {
        Stmt::Rename => {
            let row: Option<ProjectRow> = sqlx::query_as(RENAME)
                .bind(viewer)
                .bind(project)
                .bind(format!("Renamed #{i}"))
                .bind(now())
                .fetch_optional(pool)
                .await
                .expect("rename");
            usize::from(black_box(row).is_some())
        }
        Stmt::Stamp => {
            let row: Option<(String,)> = sqlx::query_as(STAMP)
                .bind(viewer)
                .fetch_optional(pool)
                .await
                .expect("stamp");
            usize::from(black_box(row).is_some())
        }
        Stmt::List => {
            let rows: Vec<ProjectRow> = sqlx::query_as(LIST)
                .bind(viewer)
                .fetch_all(pool)
                .await
                .expect("list");
            black_box(rows).len()
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    // The demo's runtime: multi-thread, one worker per core.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Operations `start..start + n` spread over `conc` tasks; every result is
/// checked (a rename that matched no row would be a broken bench).
async fn batch(pool: &Pool, world: &Arc<World>, stmt: Stmt, start: u64, n: u64, conc: u64) {
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..conc {
        let (pool, world) = (pool.clone(), world.clone());
        tasks.spawn(async move {
            let mut i = start + t;
            while i < start + n {
                assert_eq!(pool.op(&world, stmt, i).await, expected(stmt));
                i += conc;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
}

fn inline_batch(conn: &Connection, world: &World, stmt: Stmt, start: u64, n: u64) {
    for i in start..start + n {
        let (viewer, project) = world.pick(i);
        assert_eq!(rusqlite_op(conn, stmt, viewer, project, i), expected(stmt));
    }
}

/// `--ir <driver> <stmt> <ops> [conc]`: seed, connect, 200 warm-up
/// operations, then `ops` operations. Run it twice under callgrind with
/// different `ops`; the difference of the totals over the difference of
/// `ops` is the cost of one operation on every thread, setup excluded.
fn ir_mode(args: &[String]) {
    let kind = Kind::parse(&args[0]);
    let stmt = Stmt::parse(&args[1]);
    let n: u64 = args[2].parse().expect("ops");
    let conc: u64 = args.get(3).map_or(1, |c| c.parse().expect("concurrency"));
    let world = Arc::new(World::seed());
    const WARM: u64 = 200;
    if kind == Kind::Inline {
        assert_eq!(conc, 1, "inline runs at c=1 only");
        let conn = open_rusqlite(&world.path);
        inline_batch(&conn, &world, stmt, 0, WARM);
        inline_batch(&conn, &world, stmt, WARM, n);
    } else {
        let rt = runtime();
        rt.block_on(async {
            let pool = Pool::connect(kind, &world.path).await;
            batch(&pool, &world, stmt, 0, WARM, conc).await;
            batch(&pool, &world, stmt, WARM, n, conc).await;
        });
    }
    println!("{} {} c={conc}: {n} ops done", kind.name(), stmt.name());
}

fn criterion_mode() {
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let world = Arc::new(World::seed());
    let rt = runtime();
    let next = Cell::new(0u64);
    for kind in Kind::ALL {
        if kind == Kind::Inline {
            let conn = open_rusqlite(&world.path);
            for stmt in Stmt::ALL {
                let mut g = c.benchmark_group(format!("sqlite_driver/{}", stmt.name()));
                g.bench_function(BenchmarkId::new(kind.name(), "c1"), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        inline_batch(&conn, &world, stmt, next.get(), iters);
                        next.set(next.get() + iters);
                        start.elapsed()
                    })
                });
                g.finish();
            }
            continue;
        }
        let pool = rt.block_on(Pool::connect(kind, &world.path));
        for stmt in Stmt::ALL {
            let mut g = c.benchmark_group(format!("sqlite_driver/{}", stmt.name()));
            for conc in [1u64, 16] {
                g.bench_function(BenchmarkId::new(kind.name(), format!("c{conc}")), |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        rt.block_on(batch(&pool, &world, stmt, next.get(), iters, conc));
                        next.set(next.get() + iters);
                        start.elapsed()
                    })
                });
            }
            g.finish();
        }
        // Inside the runtime: deadpool-sqlite's connections close on a
        // blocking thread when dropped.
        rt.block_on(async move {
            match pool {
                Pool::Any(p) => p.close().await,
                Pool::Sqlite(p) => p.close().await,
                other => drop(other),
            }
        });
    }
    c.final_summary();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().position(|a| a == "--ir") {
        Some(at) => ir_mode(&args[at + 1..]),
        None => criterion_mode(),
    }
}
