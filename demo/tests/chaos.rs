//! Issue #22: dependency outages. Real demo processes on a Redis of the
//! test's own (a private `redis-server` on a free port, never the shared
//! one) and on the shared Postgres behind a TCP proxy the test controls.
//!
//! Faults: *hang* (the Redis process is SIGSTOPped with its connections
//! open; the proxy stops forwarding), *refuse* (the process is killed),
//! *restart with empty data* (a fresh process on the same port), *slow* (a
//! proxy adding latency above the deadline). Under each, for a signed-in
//! page, a signed-in action, an anonymous page and a public action, the
//! test asserts the status, that the answer came within 2 s, that nothing
//! acknowledged was lost (and, where the handler could not have run,
//! nothing applied), and that service returns within 15 s without a
//! restart. Two instances share the private Redis: both see the outage and
//! both recover. Measured times and log volume are printed (run with
//! `--nocapture`).

use demo::actions::{auth, contact, projects};
use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use demo::db::Db;
use portcullis::wire;
use reqwest::cookie::Jar;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "Y2hhb3MtdGVzdC1zZWNyZXQtdGhpcnR5LXR3by1ieXRlcyE=";
const PASSWORD: &str = "a long enough password";
/// The bound on every answer under a fault.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// The bound on recovery once the dependency is back.
const RECOVER_WITHIN: Duration = Duration::from_secs(15);

fn pg_base() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn pg_addr() -> String {
    let rest = pg_base();
    let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(&rest);
    host.split('/')
        .next()
        .unwrap_or("127.0.0.1:5432")
        .to_owned()
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn fresh_database() -> String {
    let name = format!("portcullis_chaos_{}", rand::random::<u32>());
    let admin = Db::connect_raw(&pg_base())
        .await
        .expect("postgres reachable");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    format!("{}/{name}", pg_base().rsplit_once('/').unwrap().0)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(sig).arg(pid.to_string()).status();
}

// ---------------------------------------------------------------------------
// A private redis-server, killed on drop (even when the test fails).

struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = free_port();
        let mut r = PrivateRedis { port, child: None };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new(std::env::var("REDIS_SERVER").unwrap_or("redis-server".into()))
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (or REDIS_SERVER)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Hang: the process stops; its sockets stay open.
    fn stop(&self) {
        signal(self.pid(), "-STOP");
    }

    fn resume(&self) {
        signal(self.pid(), "-CONT");
    }

    /// Refuse: the process is gone; connecting is refused.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Same address, fresh process, empty data.
    fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c.id(), "-CONT");
        }
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// A TCP proxy the test can make hang, refuse, or slow down.

const FORWARD: u8 = 0;
const HANG: u8 = 1;
const REFUSE: u8 = 2;
const SLOW: u8 = 3;

#[derive(Clone)]
struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy {
            port,
            mode: Arc::new(AtomicU8::new(FORWARD)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            conns: Arc::default(),
        };
        let q = p.clone();
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if q.mode.load(Ordering::SeqCst) == REFUSE {
                    drop(inbound);
                    continue;
                }
                let (q2, upstream) = (q.clone(), upstream.clone());
                let h = tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    // Not spawned: aborting this task closes both sockets.
                    tokio::join!(pipe(ri, wo, q2.clone()), pipe(ro, wi, q2));
                });
                q.conns.lock().unwrap().push(h);
            }
        });
        p
    }

    fn set(&self, mode: u8, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        self.mode.store(mode, Ordering::SeqCst);
        if mode == REFUSE {
            for h in self.conns.lock().unwrap().drain(..) {
                h.abort();
            }
        }
    }
}

/// Copies one direction, obeying the proxy's mode per chunk: HANG holds
/// the data (the connection stays open), SLOW delays each chunk.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    p: Proxy,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        loop {
            match p.mode.load(Ordering::SeqCst) {
                HANG => tokio::time::sleep(Duration::from_millis(20)).await,
                SLOW => {
                    let d = p.delay_ms.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(d)).await;
                    break;
                }
                _ => break,
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// Demo instances (real processes), their logs kept in a file.

struct Instance {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Instance {
    async fn start(
        database_url: &str,
        redis_url: &str,
        prefix: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let data = std::env::temp_dir().join(format!("portcullis-chaos-{port}"));
        let _ = std::fs::create_dir_all(&data);
        let log = data.join("demo.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_demo"));
        cmd.env("PORTCULLIS_ADDR", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS_SECRET", SECRET)
            .env("PORTCULLIS_DATA_DIR", &data)
            .env("DATABASE_URL", database_url)
            .env("REDIS_URL", redis_url)
            .env("PORTCULLIS_REDIS_PREFIX", prefix)
            .env(
                "RUST_LOG",
                "warn,tower_sessions_core=off,portcullis::store=info,portcullis::fragment=info",
            )
            .env("NO_COLOR", "1")
            // The demo logs to stderr (stdout is for command output).
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn demo");
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
        Instance { child, base, log }
    }

    fn log_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// One answer: status, error code (JSON), and how long it took.
#[derive(Debug)]
struct Answer {
    status: u16,
    code: String,
    took: Duration,
}

async fn page(c: &reqwest::Client, base: &str, path: &str) -> Answer {
    let started = Instant::now();
    let r = c
        .get(format!("{base}{path}"))
        .header("accept", "text/html")
        .send()
        .await
        .expect("an answer, not a hang");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let retry = r.headers().contains_key("retry-after");
    let body = r.text().await.unwrap_or_default();
    if status == 503 {
        assert!(ct.starts_with("text/html"), "a 503 page is HTML: {ct}");
        assert!(retry, "a 503 page carries Retry-After");
    }
    let code = if body.contains("unavailable") || body.contains("did not finish") {
        "unavailable".into()
    } else {
        String::new()
    };
    Answer {
        status,
        code,
        took: started.elapsed(),
    }
}

async fn act(c: &reqwest::Client, base: &str, path: &str, form: &[(&str, &str)]) -> Answer {
    let started = Instant::now();
    let r = c
        .post(format!("{base}{path}"))
        .header("origin", base)
        .header("accept", "application/json")
        .form(form)
        .send()
        .await
        .expect("an answer, not a hang");
    let status = r.status().as_u16();
    let retry = r.headers().contains_key("retry-after");
    let v: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
    if status == 503 {
        assert!(retry, "a 503 carries Retry-After: {v}");
        assert!(
            v["error"]["digest"].as_str().is_some_and(|d| d.len() == 16),
            "a 503 carries a digest: {v}"
        );
    }
    Answer {
        status,
        code: v["error"]["code"].as_str().unwrap_or("").to_owned(),
        took: started.elapsed(),
    }
}

async fn sign_up(c: &reqwest::Client, base: &str, ids: &Ids, name: &str) {
    let email = format!("{name}@example.com");
    let a = act(
        c,
        base,
        &ids.path(auth::SIGN_UP),
        &[
            ("email", &email),
            ("displayName", name),
            ("password", PASSWORD),
            (wire::field::HONEYPOT, ""),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "{a:?}");
    // Sign-up does not sign in (it answers the same for a taken address).
    let a = sign_in(c, base, ids, name).await;
    assert_eq!(a.status, 200, "{a:?}");
}

async fn sign_in(c: &reqwest::Client, base: &str, ids: &Ids, name: &str) -> Answer {
    let email = format!("{name}@example.com");
    act(
        c,
        base,
        &ids.path(auth::SIGN_IN),
        &[
            ("email", &email),
            ("password", PASSWORD),
            (wire::field::HONEYPOT, ""),
        ],
    )
    .await
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

async fn project_names(db: &str) -> Vec<String> {
    let db = Db::connect(db).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT name FROM projects ORDER BY name")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    rows.into_iter().map(|(n,)| n).collect()
}

async fn contact_count(db: &str) -> i64 {
    let db = Db::connect(db).await.unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM contact_messages")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    n
}

/// The four request kinds against one instance.
struct World<'a> {
    ids: &'a Ids,
    team: String,
    /// A signed-in client (its cookie works on every instance).
    signed: reqwest::Client,
    /// Projects whose creation was acknowledged (200).
    acked: Vec<String>,
    n: usize,
}

impl World<'_> {
    async fn signed_page(&self, base: &str) -> Answer {
        page(&self.signed, base, "/projects").await
    }

    async fn anonymous_page(&self, base: &str) -> Answer {
        page(&browser(), base, "/login").await
    }

    async fn signed_action(&mut self, base: &str) -> Answer {
        self.n += 1;
        let name = format!("p{:03}", self.n);
        let a = act(
            &self.signed,
            base,
            &self.ids.path(projects::CREATE),
            &[("teamId", &self.team), ("name", &name)],
        )
        .await;
        if a.status == 200 {
            self.acked.push(name);
        }
        a
    }

    async fn public_action(&self, base: &str) -> Answer {
        act(
            &browser(),
            base,
            &self.ids.path(contact::SEND),
            &[
                ("name", "Visitor"),
                ("email", "visitor@example.com"),
                ("message", "Hello there, a message."),
                (wire::field::HONEYPOT, ""),
            ],
        )
        .await
    }

    /// Under a fault: each kind answers within the bound: 503 for the
    /// signed-in page and action and (if `public`) the public action, 200
    /// for the anonymous page. Returns the slowest answer.
    ///
    /// The action goes first: it needs Redis (its rate limit), so the
    /// instance learns of the outage from it. A signed-in page the instance
    /// served before that moment came from its session cache, which is safe
    /// (no session can be revoked while Redis is down: the revocation itself
    /// fails with a 503) but is not what this test pins: from the first
    /// failed Redis call on, the cache is not trusted and the page fails
    /// closed like every session read (`store::SessionCache`).
    async fn under_fault(&mut self, base: &str, label: &str, public: bool) -> Duration {
        let mut slowest = Duration::ZERO;
        let a = self.signed_action(base).await;
        assert_eq!(a.status, 503, "{label}: signed-in action {a:?}");
        let p = self.signed_page(base).await;
        assert_eq!(p.status, 503, "{label}: signed-in page {p:?}");
        assert_eq!(p.code, "unavailable", "{label}: the 503 page says why");
        let anon = self.anonymous_page(base).await;
        assert_eq!(anon.status, 200, "{label}: anonymous page {anon:?}");
        let mut all = vec![p.took, a.took, anon.took];
        if public {
            let pub_ = self.public_action(base).await;
            assert_eq!(pub_.status, 503, "{label}: public action {pub_:?}");
            all.push(pub_.took);
        }
        for t in all {
            assert!(t < ANSWER_WITHIN, "{label}: answered after {t:?}");
            slowest = slowest.max(t);
        }
        eprintln!(
            "[chaos] {label}: signed page {} {:?} ({}), signed action {} {:?} ({}), anonymous page {} {:?}",
            p.status, p.took, p.code, a.status, a.took, a.code, anon.status, anon.took
        );
        slowest
    }

    /// Polls until a signed-in page, a signed-in action and (if `public`) a
    /// public action all succeed; `relogin`: the session may be gone (empty
    /// data), so sign in again first. Returns how long it took.
    async fn recover(
        &mut self,
        base: &str,
        label: &str,
        relogin: Option<&str>,
        public: bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < RECOVER_WITHIN,
                "{label}: no recovery within {RECOVER_WITHIN:?}"
            );
            if let Some(name) = relogin {
                let s = sign_in(&self.signed, base, self.ids, name).await;
                if s.status != 200 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            let p = self.signed_page(base).await;
            if p.status != 200 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let a = self.signed_action(base).await;
            if a.status != 200 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            break;
        }
        if public {
            loop {
                let p = self.public_action(base).await;
                if p.status == 200 {
                    break;
                }
                assert_eq!(p.status, 503, "{label}: public action after recovery {p:?}");
                assert!(
                    started.elapsed() < RECOVER_WITHIN,
                    "{label}: public action did not recover"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let took = started.elapsed();
        eprintln!("[chaos] {label}: recovered in {took:?}");
        took
    }
}

fn outage_lines(inst: &Instance, before: usize) -> usize {
    inst.log_lines().saturating_sub(before)
}

/// Redis hangs, is refused, restarts empty: two instances on it see the
/// outage as fast 503s (never a hang), keep serving anonymous pages, lose
/// nothing acknowledged, and both recover by themselves.
#[tokio::test]
async fn redis_hang_refuse_and_empty_restart_answer_503_fast_and_both_instances_recover() {
    let mut redis = PrivateRedis::start();
    let db = fresh_database().await;
    let ids = Ids::new(&db).await;
    let prefix = format!("pc-chaos-{}:", rand::random::<u64>());
    let url = redis.url();
    let (a, b) = tokio::join!(
        Instance::start(&db, &url, &prefix, &[]),
        Instance::start(&db, &url, &prefix, &[])
    );
    let signed = browser();
    sign_up(&signed, &a.base, &ids, "alice").await;
    let team = team_id(&db, "alice").await.to_string();
    let mut w = World {
        ids: &ids,
        team,
        signed,
        acked: Vec::new(),
        n: 0,
    };
    // Baseline: every kind works on both.
    for inst in [&a, &b] {
        assert_eq!(w.signed_page(&inst.base).await.status, 200);
        assert_eq!(w.signed_action(&inst.base).await.status, 200);
    }
    assert_eq!(w.public_action(&a.base).await.status, 200);
    let contacts_before = contact_count(&db).await;

    // Hang: SIGSTOP, connections stay open.
    let logs = (a.log_lines(), b.log_lines());
    let before = project_names(&db).await;
    redis.stop();
    let t0 = Instant::now();
    let slow_a = w.under_fault(&a.base, "redis hang (A)", true).await;
    let slow_b = w.under_fault(&b.base, "redis hang (B)", false).await;
    // Let an outage last long enough to show the log is not per-request.
    for _ in 0..20 {
        let _ = w.signed_page(&a.base).await;
        let _ = w.signed_page(&b.base).await;
    }
    redis.resume();
    let rec_a = w.recover(&a.base, "redis hang (A)", None, false).await;
    let rec_b = w.recover(&b.base, "redis hang (B)", None, false).await;
    let hang_lines = (outage_lines(&a, logs.0), outage_lines(&b, logs.1));
    eprintln!(
        "[chaos] redis hang: slowest 503 {:?}/{:?}; recovery {rec_a:?}/{rec_b:?}; log lines A {} B {} over {:?}",
        slow_a,
        slow_b,
        hang_lines.0,
        hang_lines.1,
        t0.elapsed()
    );
    let after: Vec<String> = project_names(&db).await;
    assert_eq!(
        after.len(),
        before.len() + 2,
        "nothing applied by the refused actions, the two recovery writes stored"
    );

    // Refuse: the process is gone.
    let logs = (a.log_lines(), b.log_lines());
    redis.kill();
    let t0 = Instant::now();
    let slow_a = w.under_fault(&a.base, "redis refused (A)", true).await;
    let slow_b = w.under_fault(&b.base, "redis refused (B)", false).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = w
        .under_fault(&a.base, "redis refused, 3 s in (A)", false)
        .await;
    // Restart: same address, fresh process, empty data. The session is
    // gone with the data, so the user signs in again.
    redis.restart();
    let rec_a = w
        .recover(&a.base, "redis restarted empty (A)", Some("alice"), true)
        .await;
    let rec_b = w
        .recover(&b.base, "redis restarted empty (B)", None, false)
        .await;
    let refuse_lines = (outage_lines(&a, logs.0), outage_lines(&b, logs.1));
    eprintln!(
        "[chaos] redis refused + empty restart: slowest 503 {:?}/{:?}; recovery {rec_a:?}/{rec_b:?}; log lines A {} B {} over {:?}",
        slow_a,
        slow_b,
        refuse_lines.0,
        refuse_lines.1,
        t0.elapsed()
    );

    // Nothing acknowledged was lost; no refused write applied.
    let stored = project_names(&db).await;
    for name in &w.acked {
        assert!(stored.contains(name), "acknowledged project {name} lost");
    }
    assert_eq!(
        stored.len(),
        w.acked.len(),
        "only acknowledged writes applied"
    );
    assert_eq!(
        contact_count(&db).await,
        contacts_before + 1,
        "refused public actions stored nothing; the recovered one did"
    );
    // The outage log is a few lines, not one per request (dozens were
    // refused): one line down, one line up, per dependency view.
    for (label, n) in [("hang", hang_lines), ("refuse", refuse_lines)] {
        assert!(
            n.0 <= 12 && n.1 <= 12,
            "{label}: log lines {n:?}:\n{}",
            a.log_text()
        );
    }
    for inst in [&a, &b] {
        let text = inst.log_text();
        assert!(text.contains("redis unavailable"), "down line:\n{text}");
        assert!(text.contains("redis reachable again"), "up line:\n{text}");
    }
    assert!(
        !a.log_text().contains("panicked"),
        "no panic: {}",
        a.log_text()
    );
}

/// A Redis slower than its deadline (a proxy adds 300 ms to every packet)
/// is a fast 503, then recovers as soon as it is fast again.
#[tokio::test]
async fn redis_slower_than_its_deadline_answers_503_fast_then_recovers() {
    let redis = PrivateRedis::start();
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis.port)).await;
    let db = fresh_database().await;
    let ids = Ids::new(&db).await;
    let prefix = format!("pc-chaos-{}:", rand::random::<u64>());
    let a = Instance::start(
        &db,
        &format!("redis://127.0.0.1:{}", proxy.port),
        &prefix,
        &[],
    )
    .await;
    let signed = browser();
    sign_up(&signed, &a.base, &ids, "bob").await;
    let team = team_id(&db, "bob").await.to_string();
    let mut w = World {
        ids: &ids,
        team,
        signed,
        acked: Vec::new(),
        n: 0,
    };
    assert_eq!(w.signed_action(&a.base).await.status, 200);
    let before = project_names(&db).await.len();
    proxy.set(SLOW, Duration::from_millis(300));
    let slowest = w.under_fault(&a.base, "redis slow", true).await;
    assert_eq!(project_names(&db).await.len(), before, "nothing applied");
    proxy.set(FORWARD, Duration::ZERO);
    let rec = w.recover(&a.base, "redis slow", None, true).await;
    eprintln!("[chaos] redis slow (+300 ms): slowest 503 {slowest:?}; recovery {rec:?}");
    let stored = project_names(&db).await;
    for name in &w.acked {
        assert!(stored.contains(name), "acknowledged project {name} lost");
    }
}

/// Postgres behind a proxy that hangs (stops forwarding, connections open),
/// slows down past the deadline, and refuses: signed-in pages and actions
/// and the public action answer 503 within 2 s, anonymous pages keep
/// working, nothing acknowledged is lost, and service returns by itself.
#[tokio::test]
async fn postgres_hang_slow_and_refuse_answer_503_fast_then_recover() {
    let redis = PrivateRedis::start();
    let db = fresh_database().await;
    let proxy = Proxy::start(pg_addr()).await;
    let via_proxy = db.replacen(&pg_addr(), &format!("127.0.0.1:{}", proxy.port), 1);
    let ids = Ids::new(&db).await;
    let prefix = format!("pc-chaos-{}:", rand::random::<u64>());
    let a = Instance::start(
        &via_proxy,
        &redis.url(),
        &prefix,
        &[
            ("PORTCULLIS_HANDLER_TIMEOUT_MS", "1200"),
            ("DEMO_DB_ACQUIRE_TIMEOUT_MS", "500"),
        ],
    )
    .await;
    let signed = browser();
    sign_up(&signed, &a.base, &ids, "carol").await;
    let team = team_id(&db, "carol").await.to_string();
    let mut w = World {
        ids: &ids,
        team,
        signed,
        acked: Vec::new(),
        n: 0,
    };
    assert_eq!(w.signed_page(&a.base).await.status, 200);
    assert_eq!(w.signed_action(&a.base).await.status, 200);
    for (label, mode, delay) in [
        ("postgres hang", HANG, Duration::ZERO),
        ("postgres slow (+2.5 s)", SLOW, Duration::from_millis(2500)),
        ("postgres refused", REFUSE, Duration::ZERO),
    ] {
        let logs = a.log_lines();
        proxy.set(mode, delay);
        let slowest = w.under_fault(&a.base, label, true).await;
        proxy.set(FORWARD, Duration::ZERO);
        let rec = w.recover(&a.base, label, None, false).await;
        eprintln!(
            "[chaos] {label}: slowest 503 {slowest:?}; recovery {rec:?}; log lines {}",
            outage_lines(&a, logs)
        );
    }
    // Every acknowledged write is stored (a write cut off by the deadline
    // may or may not have been applied; the 503 says so).
    let stored = project_names(&db).await;
    for name in &w.acked {
        assert!(stored.contains(name), "acknowledged project {name} lost");
    }
}
