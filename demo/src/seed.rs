//! `demo seed`: a usable sample world, or with `--bench` exactly the
//! benchmark workload of the Next.js peer (`shared/peers/nextjs/app/lib/store.js`),
//! adapted: 10 users, 1,000 projects where user k owns projects with
//! `i % 10 == k`, and 100 signed-in sessions (session k → user `k % 10`).

use std::time::Duration;

use portcullis::tower_sessions::SessionStore;

use crate::Sessions;
use crate::dal::now;
use crate::db::Db;
use portcullis::session::password;

/// The sample world's password for every seeded account.
pub const SAMPLE_PASSWORD: &str = "correct-horse-battery";

async fn user(db: &Db, email: &str, name: &str, hash: &str) -> Result<i64, sqlx::Error> {
    let t = now();
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO users (email, display_name, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(email)
    .bind(name)
    .bind(hash)
    .bind(t)
    .fetch_one(&db.pool)
    .await?;
    let (team,): (i64,) = sqlx::query_as(
        "INSERT INTO teams (name, owner_id, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(format!("{name}'s team"))
    .bind(id)
    .bind(t)
    .fetch_one(&db.pool)
    .await?;
    sqlx::query("INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, 'admin')")
        .bind(team)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(id)
}

async fn team_of(db: &Db, user_id: i64) -> Result<i64, sqlx::Error> {
    let (team,): (i64,) =
        sqlx::query_as("SELECT id FROM teams WHERE owner_id = $1 ORDER BY id LIMIT 1")
            .bind(user_id)
            .fetch_one(&db.pool)
            .await?;
    Ok(team)
}

async fn wipe(db: &Db) -> Result<(), sqlx::Error> {
    for table in [
        "comments",
        "projects",
        "invites",
        "memberships",
        "teams",
        "contact_messages",
        "audit_log",
        "users",
    ] {
        sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&db.pool)
            .await?;
    }
    Ok(())
}

/// Alice and Bob with a shared team, projects and comments.
pub async fn sample(db: &Db) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    wipe(db).await?;
    let hash = password::hash(SAMPLE_PASSWORD)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let alice = user(db, "alice@example.com", "Alice", &hash).await?;
    let bob = user(db, "bob@example.com", "Bob", &hash).await?;
    let team = team_of(db, alice).await?;
    sqlx::query("INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, 'member')")
        .bind(team)
        .bind(bob)
        .execute(&db.pool)
        .await?;
    let t = now();
    for name in ["Website relaunch", "Quarterly report", "Onboarding guide"] {
        let (pid,): (i64,) = sqlx::query_as(
            "INSERT INTO projects (team_id, name, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(team)
        .bind(name)
        .bind(alice)
        .bind(t)
        .fetch_one(&db.pool)
        .await?;
        sqlx::query("INSERT INTO comments (project_id, author_id, body, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
            .bind(pid)
            .bind(bob)
            .bind(format!("Kicking off {name}."))
            .bind(t)
            .execute(&db.pool)
            .await?;
    }
    Ok(vec![
        format!("alice@example.com / {SAMPLE_PASSWORD} (team admin)"),
        format!("bob@example.com / {SAMPLE_PASSWORD} (member of Alice's team)"),
    ])
}

/// One line of `seed --bench` output.
pub struct BenchSession {
    pub cookie: String,
    pub user_index: usize,
    /// The first project this session's user owns (for the rename request).
    pub project_id: i64,
}

/// The benchmark workload. Returns the 100 sessions.
pub async fn bench(
    db: &Db,
    sessions: &Sessions,
    cookie_name: &str,
) -> Result<Vec<BenchSession>, Box<dyn std::error::Error>> {
    wipe(db).await?;
    // One hash for all ten bench users: hashing is not what is measured.
    let hash = password::hash(SAMPLE_PASSWORD)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut users = Vec::new();
    let mut teams = Vec::new();
    for k in 0..10 {
        let id = user(
            db,
            &format!("u{}@bench.local", k + 1),
            &format!("u{}", k + 1),
            &hash,
        )
        .await?;
        teams.push(team_of(db, id).await?);
        users.push(id);
    }
    let t = now();
    let mut first = [0i64; 10];
    let mut tx = db.pool.begin().await?;
    for i in 0..1000usize {
        let k = i % 10;
        let (pid,): (i64,) = sqlx::query_as(
            "INSERT INTO projects (team_id, name, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id",
        )
        .bind(teams[k])
        .bind(format!("Project {i}"))
        .bind(users[k])
        .bind(t)
        .fetch_one(&mut *tx)
        .await?;
        if first[k] == 0 {
            first[k] = pid;
        }
    }
    tx.commit().await?;
    let mut out = Vec::new();
    for k in 0..100usize {
        let user_index = k % 10;
        let ttl = Duration::from_secs(7 * 86_400);
        // The session carries the user's current stamp, as a sign-in would.
        let stamp = db
            .dal()
            .users()
            .security_stamp(users[user_index])
            .await
            .map_err(|e| format!("{e:?}"))?
            .map(portcullis::Stamp::new);
        let user = users[user_index];
        let id = match sessions {
            Sessions::Sqlite(s) => issue(s, user, stamp, ttl).await?,
            Sessions::Postgres(s) => issue(s, user, stamp, ttl).await?,
            Sessions::Redis(s) => issue(s, user, stamp, ttl).await?,
        };
        out.push(BenchSession {
            cookie: format!("{cookie_name}={id}"),
            user_index,
            project_id: first[user_index],
        });
    }
    Ok(out)
}

async fn issue<S: SessionStore>(
    store: &S,
    user: i64,
    stamp: Option<portcullis::Stamp>,
    ttl: Duration,
) -> Result<String, Box<dyn std::error::Error>> {
    Ok(portcullis::session::issue(store, user, Vec::new(), stamp, ttl).await?)
}
