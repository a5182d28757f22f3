//! Issue #22 at the framework level: the session store on the framework's
//! own Redis connection, under real faults of a private `redis-server`
//! (never the shared one): a Redis that refuses writes (`CLIENT PAUSE …
//! WRITE`) must not let a sign-in or a session write report success; a
//! flood of anonymous requests writes no session records; a record that
//! does not decode signs nobody in.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis::prelude::*;
use portcullis::testing::TestClient;
use portcullis::wire;
use portcullis::{Config, MasterSecret, Page, Portcullis};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default)]
struct State {
    runs: Arc<AtomicUsize>,
}

#[derive(Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
struct Login {
    #[garde(range(min = 1))]
    user_id: i64,
}

#[derive(Deserialize, garde::Validate)]
struct Note {
    #[garde(length(chars, min = 1, max = 80))]
    text: String,
}

#[derive(Deserialize, garde::Validate)]
struct Nothing {}

#[derive(Serialize, Dto)]
struct Done {
    ok: bool,
}

#[derive(Serialize, Dto)]
struct Who {
    user_id: i64,
}

const LOGIN: ActionRef<Login, Done> = ActionRef::new("auth.login");
const SESSION_NOTE: ActionRef<Note, Done> = ActionRef::new("session.note");
const NOTHING: ActionRef<Nothing, Done> = ActionRef::new("nothing");
const LOGOUT: ActionRef<Nothing, Done> = ActionRef::new("auth.logout");
const WHOAMI: ActionRef<Nothing, Who> = ActionRef::new("whoami");

fn register(actions: &mut portcullis::Actions<State>) {
    actions
        .add(
            action(LOGIN)
                .public()
                .limit(per_ip(10_000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, input: Valid<Login>| async move {
                        cx.state().runs.fetch_add(1, Ordering::SeqCst);
                        cx.auth().login(input.user_id, vec![]).await?;
                        Ok(Done { ok: true })
                    },
                ),
        )
        .add(
            // Writes app data into the session, without cycling its id: the
            // write happens when the session is saved after the handler.
            action(SESSION_NOTE)
                .public()
                .limit(per_ip(10_000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, input: Valid<Note>| async move {
                        cx.state().runs.fetch_add(1, Ordering::SeqCst);
                        cx.auth().set("note", &input.text).await?;
                        Ok(Done { ok: true })
                    },
                ),
        )
        .add(
            action(NOTHING)
                .public()
                .limit(per_ip(10_000).per_minute())
                .handler(
                    |_: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move {
                        Ok(Done { ok: true })
                    },
                ),
        )
        .add(action(LOGOUT).authenticated().handler(
            |cx: Cx<State>, _: Viewer, _: Valid<Nothing>| async move {
                cx.auth().logout().await?;
                Ok(Done { ok: true })
            },
        ))
        .add(action(WHOAMI).authenticated().handler(
            |_: Cx<State>, v: Viewer, _: Valid<Nothing>| async move { Ok(Who { user_id: v.id() }) },
        ));
}

async fn me(page: Page) -> String {
    match page.viewer() {
        Some(v) => format!("user {}", v.id()),
        None => "anonymous".into(),
    }
}

fn config() -> Config {
    Config::new(MasterSecret::from_bytes(vec![9; 32]).unwrap())
}

/// An app whose sessions (only) live on `redis` (the framework's store);
/// limits and idempotency stay in memory, so the session store's faults
/// are the only ones in play.
async fn app_on(redis: &portcullis::store::Redis) -> (TestClient, State) {
    app_on_with(redis, portcullis::store::SessionCacheConfig::default()).await
}

async fn app_on_with(
    redis: &portcullis::store::Redis,
    cache: portcullis::store::SessionCacheConfig,
) -> (TestClient, State) {
    let state = State::default();
    let app = Portcullis::new(config(), state.clone())
        .session_cache(cache)
        .actions(register)
        .pages(axum::Router::new().route("/me", axum::routing::get(me)))
        .build(redis.sessions())
        .expect("builds");
    (TestClient::start(&app).await, state)
}

struct PrivateRedis {
    port: u16,
    child: Child,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(std::env::var("REDIS_SERVER").unwrap_or("redis-server".into()))
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (or REDIS_SERVER)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn admin(&self, args: &[&str]) {
        let client = redis::Client::open(self.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let _: redis::Value = cmd.query_async(&mut c).await.unwrap();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn shared_redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

async fn session_keys(url: &str, prefix: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}session:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

/// The store refuses writes while reads still work: a sign-in (which
/// deletes the old record and writes the new one) and a session write after
/// the handler both answer 503 `session_store_unavailable` within the
/// deadline, set no cookie, and store nothing; an idempotent retry after
/// the store is back runs (it is not the replay of a success that never
/// happened) and the sign-in then works.
#[tokio::test]
async fn a_sign_in_whose_session_write_does_not_persist_is_a_503_without_a_cookie() {
    let server = PrivateRedis::start();
    let prefix = format!("pc-outage-{}:", rand::random::<u64>());
    let redis =
        portcullis::store::Redis::new(&server.url(), &prefix, Duration::from_millis(50)).unwrap();
    let (client, state) = app_on(&redis).await;
    // Warm the connection.
    assert_eq!(client.call(NOTHING, &[]).await.status, 200);

    server.admin(&["CLIENT", "PAUSE", "4000", "WRITE"]).await;
    let c = client.new_session();
    let started = Instant::now();
    let r = c.call(LOGIN, &[("userId", "7")]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("session_store_unavailable"));
    assert!(r.header("retry-after").is_some());
    assert!(
        r.header("set-cookie").is_none(),
        "no cookie for a sign-in that did not persist"
    );
    let r = c
        .post(&c.path(SESSION_NOTE))
        .header("origin", c.origin())
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .header(wire::header::IDEMPOTENCY_KEY, "note-1")
        .form(&[("text", "hello")])
        .send()
        .await
        .unwrap();
    let r = portcullis::testing::TestResponse::read(r).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("session_store_unavailable"));
    assert!(r.header("set-cookie").is_none());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(c.cookies().is_none(), "the client holds no session");
    assert!(
        session_keys(&server.url(), &prefix).await.is_empty(),
        "nothing stored"
    );

    server.admin(&["CLIENT", "UNPAUSE"]).await;
    let runs = state.runs.load(Ordering::SeqCst);
    let r = c
        .post(&c.path(SESSION_NOTE))
        .header("origin", c.origin())
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .header(wire::header::IDEMPOTENCY_KEY, "note-1")
        .form(&[("text", "hello")])
        .send()
        .await
        .unwrap();
    let r = portcullis::testing::TestResponse::read(r).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header(wire::header::IDEMPOTENT_REPLAYED).is_none(),
        "the retry ran"
    );
    assert_eq!(state.runs.load(Ordering::SeqCst), runs + 1);
    let r = c.call(LOGIN, &[("userId", "7")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.call(WHOAMI, &[]).await;
    assert_eq!(r.result()["user_id"], 7, "{}", r.text());
    assert_eq!(session_keys(&server.url(), &prefix).await.len(), 1);
}

/// State bound of the Redis session store: a flood of anonymous page views
/// and public actions writes no record; a sign-in writes exactly one, with
/// the idle timeout as its expiry; sign-out removes it; a record that does
/// not decode signs nobody in (and is not a 500).
#[tokio::test]
async fn anonymous_floods_write_no_session_records_and_a_garbage_record_signs_nobody_in() {
    let url = shared_redis_url();
    let prefix = format!("pc-outage-{}:", rand::random::<u64>());
    let redis = portcullis::store::Redis::new(&url, &prefix, Duration::from_millis(200)).unwrap();
    // The record is overwritten behind the app's back below. The session
    // cache assumes the framework is the store's only writer (a copy it
    // holds would hide the overwrite for up to its TTL), so it is off here:
    // this test is about the store and the decoder.
    let no_cache = portcullis::store::SessionCacheConfig {
        max_bytes: 0,
        ..Default::default()
    };
    let (client, _) = app_on_with(&redis, no_cache).await;
    for _ in 0..200 {
        let c = client.new_session();
        assert_eq!(c.get("/me").await.text(), "anonymous");
        assert_eq!(c.call(NOTHING, &[]).await.status, 200);
    }
    assert!(
        session_keys(&url, &prefix).await.is_empty(),
        "anonymous requests store nothing"
    );

    let c = client.new_session();
    assert_eq!(c.call(LOGIN, &[("userId", "42")]).await.status, 200);
    let keys = session_keys(&url, &prefix).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let rc = redis::Client::open(url.as_str()).unwrap();
    let mut conn = rc.get_multiplexed_async_connection().await.unwrap();
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        ttl_ms > 0 && ttl_ms <= 12 * 3600 * 1000,
        "expires with the idle timeout: {ttl_ms}"
    );
    assert_eq!(c.get("/me").await.text(), "user 42");

    // Overwrite the record with something that does not decode.
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg("\u{1}not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = c.call(WHOAMI, &[]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(c.get("/me").await.text(), "anonymous");

    let c = client.new_session();
    assert_eq!(c.call(LOGIN, &[("userId", "43")]).await.status, 200);
    assert_eq!(c.call(LOGOUT, &[]).await.status, 200);
    let left = session_keys(&url, &prefix).await;
    assert!(left.len() <= 1, "sign-out removed its record: {left:?}");
    let _: () = redis::cmd("DEL")
        .arg(&left)
        .query_async(&mut conn)
        .await
        .unwrap_or(());
}
