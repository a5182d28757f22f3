//! Test harness: a real demo server on an ephemeral port over a fresh
//! database, plus helpers to sign users up and to snapshot every table so a
//! refused attack can be shown to have changed nothing.
#![allow(dead_code)]

use demo::actions::{auth, projects, teams};
use std::time::Duration;

use demo::Sessions;
use demo::db::Db;
use portcullis::testing::{TestClient, TestResponse};
use portcullis::wire;
use portcullis::{Config, MasterSecret};

pub struct Demo {
    pub db: Db,
    pub sessions: Sessions,
    pub client: TestClient,
    /// The built app (manifest, metrics, the attack harness).
    pub app: portcullis::App,
    /// The app's audit queue (`flush` before reading `audit_log`).
    pub audit: demo::audit::AuditQueue,
}

/// The database under test: `TEST_DATABASE` = `sqlite` (default) or `postgres`.
pub async fn fresh_db() -> Db {
    let name = format!("portcullis_t_{}", rand::random::<u32>());
    match std::env::var("TEST_DATABASE").as_deref() {
        Ok("postgres") => {
            let base = std::env::var("TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let admin = Db::connect_raw(&base).await.expect("postgres reachable");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .expect("create test database");
            let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
            Db::connect(&url).await.expect("connect test database")
        }
        _ => {
            let path = std::env::temp_dir().join(format!("portcullis-demo-{name}.db"));
            Db::connect(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .expect("sqlite test database")
        }
    }
}

pub fn config() -> Config {
    Config::new(MasterSecret::from_bytes(vec![7; 32]).unwrap())
}

pub async fn start() -> Demo {
    start_with(config()).await
}

/// [`start`] with a config of the test's own.
pub async fn start_with(config: Config) -> Demo {
    let db = fresh_db().await;
    let sessions = Sessions::for_db(&db).await.expect("session store");
    let (app, audit) = demo::build_parts(config, &db, sessions.clone()).expect("demo builds");
    let client = TestClient::start(&app).await;
    Demo {
        db,
        sessions,
        client,
        app,
        audit,
    }
}

pub const PASSWORD: &str = "a long enough password";

/// Signs up a fresh user on a fresh client and signs that client in (sign-up
/// itself signs nobody in: see `demo/src/actions/auth.rs`); returns the
/// client and user id.
pub async fn user(demo: &Demo, name: &str) -> (TestClient, i64) {
    let c = demo.client.new_session();
    let email = format!("{}@example.com", name.to_lowercase());
    let r = c
        .call(
            auth::SIGN_UP,
            &[
                ("email", &email),
                ("displayName", name),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "sign up {name}: {}", r.text());
    sign_in(&c, &email, PASSWORD).await;
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM users WHERE email = $1")
        .bind(&email)
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    (c, id)
}

/// Signs `c` in; panics unless it worked.
pub async fn sign_in(c: &TestClient, email: &str, password: &str) {
    let r = c
        .call(auth::SIGN_IN, &[("email", email), ("password", password)])
        .await;
    assert_eq!(r.status, 200, "sign in {email}: {}", r.text());
}

/// The user's current security stamp (`None`: no such user).
pub async fn stamp(demo: &Demo, user: i64) -> Option<portcullis::Stamp> {
    let row: Option<(String,)> = sqlx::query_as("SELECT security_stamp FROM users WHERE id = $1")
        .bind(user)
        .fetch_optional(&demo.db.pool)
        .await
        .unwrap();
    row.map(|(s,)| portcullis::Stamp::new(s))
}

/// Whether `c`'s session is signed in (the settings page renders).
pub async fn signed_in(c: &TestClient) -> bool {
    c.get("/settings").await.status == 200
}

pub async fn team_of(demo: &Demo, user: i64) -> i64 {
    let (t,): (i64,) = sqlx::query_as("SELECT id FROM teams WHERE owner_id = $1")
        .bind(user)
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    t
}

/// Creates a project through the action; returns its id.
pub async fn project(c: &TestClient, team: i64, name: &str) -> i64 {
    let r = c
        .call(
            projects::CREATE,
            &[("teamId", &team.to_string()), ("name", name)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.result()["id"].as_i64().unwrap()
}

/// A client whose session last confirmed the password `ago` ago.
pub async fn session_reauthed_ago(demo: &Demo, user: i64, ago: Duration) -> TestClient {
    let ttl = Duration::from_secs(86_400);
    let st = stamp(demo, user).await;
    let id = match &demo.sessions {
        Sessions::Sqlite(s) => portcullis::session::issue_with(s, user, vec![], st, ttl, ago).await,
        Sessions::Postgres(s) => {
            portcullis::session::issue_with(s, user, vec![], st, ttl, ago).await
        }
        Sessions::Redis(s) => portcullis::session::issue_with(s, user, vec![], st, ttl, ago).await,
    }
    .unwrap();
    let c = demo.client.new_session();
    c.set_cookie(&format!("{}={id}", wire::cookie::SESSION));
    c
}

/// Every row of every table, as text: equal snapshots mean nothing changed.
pub async fn snapshot(demo: &Demo) -> String {
    let queries = [
        "SELECT id || '|' || email || '|' || display_name || '|' || password_hash || '|' || COALESCE(api_key, '-') || '|' || security_stamp FROM users ORDER BY id",
        "SELECT id || '|' || user_id || '|' || token_hash || '|' || COALESCE(revoked_at, -1) FROM api_tokens ORDER BY id",
        "SELECT id || '|' || name || '|' || owner_id || '|' || plan FROM teams ORDER BY id",
        "SELECT team_id || '|' || user_id || '|' || role FROM memberships ORDER BY team_id, user_id",
        "SELECT id || '|' || team_id || '|' || email || '|' || COALESCE(accepted_at, -1) || '|' || COALESCE(accepted_by, -1) FROM invites ORDER BY id",
        "SELECT id || '|' || team_id || '|' || name || '|' || COALESCE(archived_at, -1) || '|' || updated_at FROM projects ORDER BY id",
        "SELECT id || '|' || project_id || '|' || author_id || '|' || body FROM comments ORDER BY id",
        "SELECT id || '|' || email || '|' || message FROM contact_messages ORDER BY id",
        "SELECT id || '|' || project_id || '|' || uploader_id || '|' || file_key || '|' || file_name || '|' || size FROM attachments ORDER BY id",
    ];
    let mut out = String::new();
    for q in queries {
        let rows: Vec<(String,)> = sqlx::query_as(q).fetch_all(&demo.db.pool).await.unwrap();
        for (r,) in rows {
            out.push_str(&r);
            out.push('\n');
        }
        out.push_str("--\n");
    }
    out
}

pub fn assert_refused(r: &TestResponse, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some(code), "{}", r.text());
}

/// The value of the hidden input `name` in the page at `path`.
pub async fn hidden_field(c: &TestClient, path: &str, name: &str) -> String {
    let html = c.get(path).await.text();
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden `{name}` on {path}: {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Accepts the invite at `link` the way a browser would: open the invite
/// page (which seals the token into its form), then submit that form.
pub async fn accept_invite(c: &TestClient, link: &str) -> TestResponse {
    let sealed = hidden_field(c, link, "token").await;
    c.call(teams::ACCEPT, &[("token", &sealed)]).await
}
