//! Issue #9: two real demo processes on one Postgres and one Redis behave
//! as one. Each test starts its own pair (fresh database, own Redis prefix).

use demo::actions::{account, auth, contact, projects};
use std::net::TcpListener as StdListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use demo::db::Db;
use portcullis::wire;
use reqwest::cookie::Jar;

const SECRET: &str = "Y2x1c3Rlci10ZXN0LXNlY3JldC0zMi1ieXRlcy1sb25nIQ==";

fn pg_base() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh Postgres database; returns its URL.
async fn fresh_database() -> String {
    let name = format!("portcullis_t_{}", rand::random::<u32>());
    let admin = Db::connect_raw(&pg_base())
        .await
        .expect("postgres reachable");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    format!("{}/{name}", pg_base().rsplit_once('/').unwrap().0)
}

struct Instance {
    child: Child,
    base: String,
}

impl Instance {
    async fn start(database_url: &str, prefix: &str) -> Instance {
        let port = free_port();
        let data = std::env::temp_dir().join(format!("portcullis-cluster-{port}"));
        let child = Command::new(env!("CARGO_BIN_EXE_demo"))
            .env("PORTCULLIS_ADDR", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS_SECRET", SECRET)
            .env("PORTCULLIS_DATA_DIR", &data)
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", redis_url())
            .env("PORTCULLIS_REDIS_PREFIX", prefix)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn demo");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{base}/login")).await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "instance on {port} did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Instance { child, base }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Action paths, computed in-process from the shared secret.
struct Ids(portcullis::App);

impl Ids {
    async fn new(database_url: &str) -> Ids {
        let db = Db::connect(database_url).await.unwrap();
        let mut config =
            portcullis::Config::new(portcullis::MasterSecret::from_base64(SECRET).unwrap());
        config.redis_url = None;
        let sessions = demo::Sessions::for_db(&db).await.unwrap();
        let app = demo::build_with(config, &db, sessions).unwrap();
        Ids(app.clone())
    }
    fn path<In, Out>(&self, action: portcullis::ActionRef<In, Out>) -> String {
        self.0.action_path(action).unwrap()
    }
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_provider(Arc::new(Jar::default()))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn call(
    c: &reqwest::Client,
    base: &str,
    path: &str,
    form: &[(&str, &str)],
    key: Option<&str>,
) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
    let body: String = form_urlencoded_pairs(form);
    let mut req = c
        .post(format!("{base}{path}"))
        .header("origin", base)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(k) = key {
        req = req.header(wire::header::IDEMPOTENCY_KEY, k);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let v = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, v, headers)
}

fn form_urlencoded_pairs(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace('&', "%26")
                    .replace('+', "%2B")
                    .replace(' ', "+")
                    .replace('@', "%40")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

const PASSWORD: &str = "a long enough password";

/// Signs `name` up and signs `c` in (sign-up itself signs nobody in).
async fn sign_up(c: &reqwest::Client, base: &str, ids: &Ids, name: &str) {
    let email = format!("{name}@example.com");
    let (s, v, _) = call(
        c,
        base,
        &ids.path(auth::SIGN_UP),
        &[
            ("email", &email),
            ("displayName", name),
            ("password", PASSWORD),
            (wire::field::HONEYPOT, ""),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    sign_in(c, base, ids, &email).await;
}

async fn sign_in(c: &reqwest::Client, base: &str, ids: &Ids, email: &str) {
    let (s, v, _) = call(
        c,
        base,
        &ids.path(auth::SIGN_IN),
        &[
            ("email", email),
            ("password", PASSWORD),
            (wire::field::HONEYPOT, ""),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

async fn team_id(db: &str, name: &str) -> i64 {
    let db = Db::connect(db).await.unwrap();
    let (t,): (i64,) = sqlx::query_as(
        "SELECT t.id FROM teams t JOIN users u ON u.id = t.owner_id WHERE u.email = $1",
    )
    .bind(format!("{name}@example.com"))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    t
}

async fn count(db: &str, sql: &str) -> i64 {
    let db = Db::connect(db).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&db.pool).await.unwrap();
    n
}

struct Pair {
    db: String,
    ids: Ids,
    a: Instance,
    b: Instance,
}

async fn pair() -> Pair {
    let db = fresh_database().await;
    let prefix = format!("pc-cluster-{}:", rand::random::<u64>());
    let ids = Ids::new(&db).await;
    let a = Instance::start(&db, &prefix).await;
    let b = Instance::start(&db, &prefix).await;
    Pair { db, ids, a, b }
}

#[tokio::test]
async fn log_in_on_a_act_on_b_and_log_out_on_a_ends_the_session_on_b() {
    let p = pair().await;
    let c = browser();
    sign_up(&c, &p.a.base, &p.ids, "alice").await;
    let team = team_id(&p.db, "alice").await.to_string();
    let (s, v, _) = call(
        &c,
        &p.b.base,
        &p.ids.path(projects::CREATE),
        &[("teamId", &team), ("name", "On B")],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _, _) = call(&c, &p.a.base, &p.ids.path(auth::SIGN_OUT), &[], None).await;
    assert_eq!(s, 200);
    // Sign in again on A and keep a copy of the session cookie; sign out on
    // A; replaying the copy on B must fail (the record is gone from Redis).
    let jar = Arc::new(Jar::default());
    let c = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    let (s, v, _) = call(
        &c,
        &p.a.base,
        &p.ids.path(auth::SIGN_IN),
        &[
            ("email", "alice@example.com"),
            ("password", PASSWORD),
            (wire::field::HONEYPOT, ""),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let url: reqwest::Url = p.a.base.parse().unwrap();
    let copied = {
        use reqwest::cookie::CookieStore;
        jar.cookies(&url).unwrap().to_str().unwrap().to_owned()
    };
    let (s, _, _) = call(&c, &p.a.base, &p.ids.path(auth::SIGN_OUT), &[], None).await;
    assert_eq!(s, 200);
    let replay = reqwest::Client::new();
    let r = replay
        .post(format!("{}{}", p.b.base, p.ids.path(projects::CREATE)))
        .header("origin", &p.b.base)
        .header("accept", "application/json")
        .header("cookie", &copied)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("teamId={team}&name=After"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(count(&p.db, "SELECT COUNT(*) FROM projects").await, 1);
}

/// Issue #19: B serves a signed-in session from its in-process cache, so a
/// sign-out on A must reach B's cache before A answers. Each round warms B's
/// cache with the session, signs out on A, and replays the cookie on B at
/// once (no sleep): refused every time, nothing created. (Before the cache,
/// B read Redis on every request; this pins that the cache changed nothing.)
#[tokio::test]
async fn sign_out_on_a_is_refused_on_b_at_once_though_b_had_the_session_in_memory() {
    let p = pair().await;
    sign_up(&browser(), &p.a.base, &p.ids, "alice").await;
    let team = team_id(&p.db, "alice").await.to_string();
    // 8 rounds: the sign-in limit is 10 per address and account.
    for round in 0..8 {
        let jar = Arc::new(Jar::default());
        let c = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .build()
            .unwrap();
        sign_in(&c, &p.a.base, &p.ids, "alice@example.com").await;
        let url: reqwest::Url = p.a.base.parse().unwrap();
        let copied = {
            use reqwest::cookie::CookieStore;
            jar.cookies(&url).unwrap().to_str().unwrap().to_owned()
        };
        // B reads the session (from Redis once, then from memory).
        for _ in 0..3 {
            assert!(
                signed_in_on(&c, &p.b.base).await,
                "round {round}: signed in on B"
            );
        }
        let (s, _, _) = call(&c, &p.a.base, &p.ids.path(auth::SIGN_OUT), &[], None).await;
        assert_eq!(s, 200, "round {round}");
        let replay = reqwest::Client::new();
        let r = replay
            .post(format!("{}{}", p.b.base, p.ids.path(projects::CREATE)))
            .header("origin", &p.b.base)
            .header("accept", "application/json")
            .header("cookie", &copied)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("teamId={team}&name=After{round}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "round {round}: the copied cookie on B");
        let no_redirect = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let page = no_redirect
            .get(format!("{}/settings", p.b.base))
            .header("cookie", &copied)
            .send()
            .await
            .unwrap();
        assert_ne!(page.status(), 200, "round {round}: no signed-in page on B");
    }
    assert_eq!(count(&p.db, "SELECT COUNT(*) FROM projects").await, 0);
}

#[tokio::test]
async fn idempotent_retry_on_the_other_instance_applies_once() {
    let p = pair().await;
    let c = browser();
    sign_up(&c, &p.a.base, &p.ids, "alice").await;
    let team = team_id(&p.db, "alice").await.to_string();
    let form = [("teamId", team.as_str()), ("name", "Exactly once")];
    let path = p.ids.path(projects::CREATE);
    let (s1, v1, _) = call(&c, &p.a.base, &path, &form, Some("key-123")).await;
    assert_eq!(s1, 200, "{v1}");
    // A network retry lands on the other instance.
    let (s2, v2, h2) = call(&c, &p.b.base, &path, &form, Some("key-123")).await;
    assert_eq!(s2, 200);
    assert_eq!(v1, v2, "the first result is returned");
    assert_eq!(h2.get(wire::header::IDEMPOTENT_REPLAYED).unwrap(), "true");
    assert_eq!(count(&p.db, "SELECT COUNT(*) FROM projects").await, 1);
    // Concurrent duplicates: one runs, the other waits its turn (409) or replays.
    let form2 = [("teamId", team.as_str()), ("name", "Raced")];
    let (r1, r2) = tokio::join!(
        call(&c, &p.a.base, &path, &form2, Some("key-456")),
        call(&c, &p.b.base, &path, &form2, Some("key-456"))
    );
    let statuses = [r1.0, r2.0];
    assert!(statuses.contains(&200), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    if statuses.contains(&409) {
        let refused = if r1.0 == 409 { &r1.1 } else { &r2.1 };
        assert_eq!(refused["error"]["code"], "request_in_progress");
    }
    assert_eq!(
        count(&p.db, "SELECT COUNT(*) FROM projects WHERE name = 'Raced'").await,
        1
    );
}

#[tokio::test]
async fn tag_invalidation_on_a_is_visible_on_b() {
    let p = pair().await;
    let c = browser();
    sign_up(&c, &p.a.base, &p.ids, "alice").await;
    let team = team_id(&p.db, "alice").await.to_string();
    let (_, v, _) = call(
        &c,
        &p.a.base,
        &p.ids.path(projects::CREATE),
        &[("teamId", &team), ("name", "Before")],
        None,
    )
    .await;
    let id = v["result"]["id"].as_i64().unwrap().to_string();
    let page = |base: &str| c.get(format!("{base}/projects")).send();
    assert!(
        page(&p.b.base)
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("Before")
    );
    let (s, _, _) = call(
        &c,
        &p.a.base,
        &p.ids.path(projects::RENAME),
        &[("projectId", &id), ("name", "After")],
        None,
    )
    .await;
    assert_eq!(s, 200);
    let started = Instant::now();
    loop {
        let html = page(&p.b.base).await.unwrap().text().await.unwrap();
        if html.contains("After") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "B still serves the old name"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("rename on A visible on B after {:?}", started.elapsed());
}

#[tokio::test]
async fn rate_limit_is_exact_across_both_instances() {
    let p = pair().await;
    let path = p.ids.path(contact::SEND);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let base = if i % 2 == 0 {
            p.a.base.clone()
        } else {
            p.b.base.clone()
        };
        let path = path.clone();
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            call(
                &c,
                &base,
                &path,
                &[
                    ("name", "V"),
                    ("email", "v@example.com"),
                    ("message", "Hello there, friends."),
                    (wire::field::HONEYPOT, ""),
                ],
                None,
            )
            .await
            .0
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        ok, 5,
        "the per-address budget is 5 per minute across the cluster"
    );
    assert_eq!(
        count(&p.db, "SELECT COUNT(*) FROM contact_messages").await,
        5
    );
}

#[tokio::test]
async fn sigterm_during_load_lets_in_flight_requests_finish() {
    let p = pair().await;
    let c = browser();
    sign_up(&c, &p.a.base, &p.ids, "alice").await;
    let team = team_id(&p.db, "alice").await.to_string();
    let path = p.ids.path(projects::CREATE);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (c, base, path, team) = (c.clone(), p.a.base.clone(), path.clone(), team.clone());
        tasks.push(tokio::spawn(async move {
            let name = format!("load {i}");
            let body = format!("teamId={team}&name={}", name.replace(' ', "+"));
            let r = c
                .post(format!("{base}{path}"))
                .header("origin", &base)
                .header("accept", "application/json")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await;
            (name, r.map(|r| r.status().as_u16()).ok())
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    p.a.signal("-TERM");
    let mut acknowledged = Vec::new();
    for t in tasks {
        let (name, status) = t.await.unwrap();
        if let Some(s) = status {
            assert!(s < 500, "in-flight request got {s}");
            if s == 200 {
                acknowledged.push(name);
            }
        }
    }
    for name in &acknowledged {
        let n = count(
            &p.db,
            &format!("SELECT COUNT(*) FROM projects WHERE name = '{name}'"),
        )
        .await;
        assert_eq!(n, 1, "{name}");
    }
    eprintln!("{} of 40 acknowledged before shutdown", acknowledged.len());
}

#[tokio::test]
async fn kill_dash_nine_mid_load_every_acknowledged_write_is_stored_exactly_once() {
    let p = pair().await;
    let c = browser();
    sign_up(&c, &p.a.base, &p.ids, "alice").await;
    let team = team_id(&p.db, "alice").await.to_string();
    let path = p.ids.path(projects::CREATE);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (c, base, path, team) = (c.clone(), p.a.base.clone(), path.clone(), team.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(i * 2)).await;
            let name = format!("k9-{i}");
            let r = c
                .post(format!("{base}{path}"))
                .header("origin", &base)
                .header("accept", "application/json")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("teamId={team}&name={name}"))
                .send()
                .await;
            (name, r.map(|r| r.status().as_u16()).ok())
        }));
    }
    tokio::time::sleep(Duration::from_millis(40)).await;
    p.a.signal("-KILL");
    let mut acknowledged = 0;
    for t in tasks {
        let (name, status) = t.await.unwrap();
        if status == Some(200) {
            acknowledged += 1;
            let n = count(
                &p.db,
                &format!("SELECT COUNT(*) FROM projects WHERE name = '{name}'"),
            )
            .await;
            assert_eq!(n, 1, "{name}");
        }
    }
    let dupes = count(
        &p.db,
        "SELECT COUNT(*) FROM (SELECT name FROM projects GROUP BY name HAVING COUNT(*) > 1) d",
    )
    .await;
    assert_eq!(dupes, 0);
    eprintln!("{acknowledged} of 60 acknowledged before kill -9");
    // The other instance still serves.
    assert_eq!(
        reqwest::get(format!("{}/login", p.b.base))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A TCP proxy to Postgres that the test can cut and restore.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                conns2.lock().unwrap().push(h);
            }
        });
        Proxy { port, up, conns }
    }
    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }
    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn database_unreachable_is_a_clear_503_then_recovers_without_restart() {
    let db = fresh_database().await;
    let proxy = Proxy::start().await;
    let via_proxy = db.replace(":5432/", &format!(":{}/", proxy.port));
    let ids = Ids::new(&db).await;
    let prefix = format!("pc-cluster-{}:", rand::random::<u64>());
    let a = Instance::start(&via_proxy, &prefix).await;
    let c = browser();
    sign_up(&c, &a.base, &ids, "alice").await;
    let team = team_id(&db, "alice").await.to_string();
    proxy.cut();
    let (s, v, _) = call(
        &c,
        &a.base,
        &ids.path(projects::CREATE),
        &[("teamId", &team), ("name", "While down")],
        None,
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "database_unavailable");
    proxy.restore();
    let started = Instant::now();
    loop {
        let (s, v, _) = call(
            &c,
            &a.base,
            &ids.path(projects::CREATE),
            &[("teamId", &team), ("name", "After")],
            None,
        )
        .await;
        if s == 200 {
            break;
        }
        assert_eq!(v["error"]["code"], "database_unavailable", "{v}");
        assert!(started.elapsed() < Duration::from_secs(20), "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM projects").await,
        1,
        "nothing half-applied"
    );
}

/// Whether `c` is signed in on `base` (the settings page renders).
async fn signed_in_on(c: &reqwest::Client, base: &str) -> bool {
    c.get(format!("{base}/settings"))
        .send()
        .await
        .unwrap()
        .status()
        == 200
}

/// Issue #16 on Redis sessions: a password change made on instance A ends
/// the user's session on instance B (the stamp lives in the database, the
/// session in Redis; B compares them on its next request).
#[tokio::test]
async fn password_change_on_one_instance_ends_sessions_on_the_other() {
    let p = pair().await;
    let on_a = browser();
    sign_up(&on_a, &p.a.base, &p.ids, "alice").await;
    let on_b = browser();
    sign_in(&on_b, &p.b.base, &p.ids, "alice@example.com").await;
    assert!(signed_in_on(&on_b, &p.b.base).await);
    let (s, v, _) = call(
        &on_a,
        &p.a.base,
        &p.ids.path(account::CHANGE_PASSWORD),
        &[
            ("currentPassword", PASSWORD),
            ("newPassword", "a brand new password"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let team = team_id(&p.db, "alice").await.to_string();
    let projects = "SELECT COUNT(*) FROM projects";
    let before = count(&p.db, projects).await;
    // On either instance the other session is nobody now.
    for base in [&p.b.base, &p.a.base] {
        assert!(!signed_in_on(&on_b, base).await);
        let (s, v, _) = call(
            &on_b,
            base,
            &p.ids.path(projects::CREATE),
            &[("teamId", &team), ("name", "Stale")],
            None,
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("unauthenticated")),
            "{v}"
        );
    }
    assert_eq!(count(&p.db, projects).await, before);
    // The session that changed it continues, on both instances.
    assert!(signed_in_on(&on_a, &p.a.base).await);
    assert!(signed_in_on(&on_a, &p.b.base).await);
}

/// Issue #16 on Redis sessions: deleting the account on A leaves no session
/// alive on B, and the next sign-up never inherits it.
#[tokio::test]
async fn deleted_account_sessions_on_redis_never_become_the_next_signup() {
    let p = pair().await;
    let on_a = browser();
    sign_up(&on_a, &p.a.base, &p.ids, "alice").await;
    let on_b = browser();
    sign_in(&on_b, &p.b.base, &p.ids, "alice@example.com").await;
    let alice_id = count(&p.db, "SELECT MAX(id) FROM users").await;
    let (s, v, _) = call(
        &on_a,
        &p.a.base,
        &p.ids.path(account::DELETE),
        &[("password", PASSWORD)],
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let eve = browser();
    sign_up(&eve, &p.b.base, &p.ids, "eve").await;
    let eve_id = count(&p.db, "SELECT MAX(id) FROM users").await;
    assert!(eve_id > alice_id);
    let eve_team = team_id(&p.db, "eve").await.to_string();
    let before = count(&p.db, "SELECT COUNT(*) FROM projects").await;
    for base in [&p.b.base, &p.a.base] {
        assert!(!signed_in_on(&on_b, base).await);
        let (s, v, _) = call(
            &on_b,
            base,
            &p.ids.path(projects::CREATE),
            &[("teamId", &eve_team), ("name", "Planted")],
            None,
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (401, Some("unauthenticated")),
            "{v}"
        );
    }
    assert_eq!(count(&p.db, "SELECT COUNT(*) FROM projects").await, before);
    assert!(signed_in_on(&eve, &p.a.base).await);
}
