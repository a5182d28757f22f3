//! A small fixture app for the framework's own attack tests: one action per
//! policy, a counter of handler runs and a list of stored notes, so every
//! test can assert that a refused request changed nothing. Actions taking
//! sealed arguments, returning a `Secret` or embedding a registered unique
//! value, and two pages (a form with a sealed field, an HTML page embedding
//! a unique value) serve the sealing and taint tests.
#![allow(dead_code)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::Query;
use axum::response::{Html, IntoResponse, Response};
use portcullis::prelude::*;
use portcullis::security;
use portcullis::testing::TestClient;
use portcullis::{Config, MasterSecret, Page, Portcullis};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default)]
pub struct State {
    pub runs: Arc<AtomicUsize>,
    pub notes: Arc<Mutex<Vec<String>>>,
}

impl State {
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().unwrap().clone()
    }
}

#[derive(Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct Login {
    #[garde(range(min = 1))]
    pub user_id: i64,
    #[garde(skip)]
    pub admin: Option<bool>,
}

#[derive(Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    #[garde(length(chars, min = 2, max = 80))]
    pub text: String,
}

#[derive(Deserialize, garde::Validate)]
pub struct Nothing {}

#[derive(Serialize, Dto)]
pub struct Saved {
    pub count: usize,
}

#[derive(Serialize, Dto)]
pub struct Who {
    pub user_id: Option<i64>,
}

/// A sealed record id, as a form carries it.
#[derive(Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
pub struct Pick {
    #[garde(skip)]
    pub project_id: Sealed<i64>,
}

#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct Picked {
    pub project_id: i64,
}

#[derive(Serialize, Dto)]
pub struct Leaky {
    pub name: String,
    pub api: ApiCredentials,
}

#[derive(Serialize)]
pub struct ApiCredentials {
    pub label: String,
    pub token: Secret<String>,
}

#[derive(Serialize, Dto)]
pub struct Echo {
    pub text: String,
}

#[derive(Serialize, Dto)]
pub struct Minted {
    pub sealed: String,
}

/// The fixture's actions, by handle (see [`register`], [`register_sealed`]).
pub const LOGIN: ActionRef<Login, Who> = ActionRef::new("auth.login");
pub const LOGOUT: ActionRef<Nothing, ()> = ActionRef::new("auth.logout");
pub const NOTES_ADD: ActionRef<Note, Saved> = ActionRef::new("notes.add");
pub const NOTES_PUBLIC: ActionRef<Note, Saved> = ActionRef::new("notes.public");
pub const NOTES_LIMITED: ActionRef<Note, Saved> = ActionRef::new("notes.limited");
pub const NOTES_BIG: ActionRef<Note, Saved> = ActionRef::new("notes.big");
pub const ADMIN_PURGE: ActionRef<Nothing, ()> = ActionRef::new("admin.purge");
pub const ACCOUNT_DELETE: ActionRef<Nothing, ()> = ActionRef::new("account.delete");
pub const WHOAMI: ActionRef<Nothing, Who> = ActionRef::new("whoami");
pub const BOOM: ActionRef<Nothing, ()> = ActionRef::new("boom");
pub const SEALED_PICK: ActionRef<Pick, Picked> = ActionRef::new("sealed.pick");
pub const SEALED_OTHER: ActionRef<Pick, Picked> = ActionRef::new("sealed.other");
pub const SEALED_MINE: ActionRef<Pick, Picked> = ActionRef::new("sealed.mine");
pub const SEALED_MINT: ActionRef<Nothing, Minted> = ActionRef::new("sealed.mint");
pub const TAINT_SECRET: ActionRef<Nothing, Leaky> = ActionRef::new("taint.secret");
pub const TAINT_UNIQUE: ActionRef<Nothing, Echo> = ActionRef::new("taint.unique");
pub const TAINT_FORM_ERROR: ActionRef<Nothing, ()> = ActionRef::new("taint.form_error");

/// Returned inside a `Secret` by `taint.secret`; must never be sent.
pub const SECRET_TOKEN: &str = "tok_secret_wrapped_5d1c0a";
/// Registered with `portcullis::unique_value` at fixture start.
pub const UNIQUE: &str = "sk_live_fixture_9f8e7d6c5b4a";
pub const UNIQUE_REASON: &str = "fixture payment api key";

pub const SECRET: [u8; 32] = [42; 32];

pub fn config() -> Config {
    let mut c = Config::new(MasterSecret::from_bytes(SECRET.to_vec()).unwrap());
    c.body_limits.body_timeout = Duration::from_millis(800);
    c
}

fn save(state: &State, text: &str) -> usize {
    state.runs.fetch_add(1, Ordering::SeqCst);
    let mut notes = state.notes.lock().unwrap();
    notes.push(text.to_owned());
    notes.len()
}

pub fn register(actions: &mut portcullis::Actions<State>) {
    actions
        .add(
            action(LOGIN)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, input: Valid<Login>| async move {
                        let roles = if input.admin == Some(true) {
                            vec!["admin".to_owned()]
                        } else {
                            vec![]
                        };
                        cx.auth().login(input.user_id, roles).await?;
                        Ok(Who {
                            user_id: Some(input.user_id),
                        })
                    },
                ),
        )
        .add(action(LOGOUT).authenticated().handler(
            |cx: Cx<State>, _: Viewer, _: Valid<Nothing>| async move {
                cx.auth().logout().await?;
                Ok(())
            },
        ))
        .add(action(NOTES_ADD).authenticated().handler(
            |cx: Cx<State>, _: Viewer, input: Valid<Note>| async move {
                Ok(Saved {
                    count: save(cx.state(), &input.text),
                })
            },
        ))
        .add(
            action(NOTES_PUBLIC)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, input: Valid<Note>| async move {
                        Ok(Saved {
                            count: save(cx.state(), &input.text),
                        })
                    },
                ),
        )
        .add(
            action(NOTES_LIMITED)
                .public()
                .limit(per_ip(2).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, input: Valid<Note>| async move {
                        Ok(Saved {
                            count: save(cx.state(), &input.text),
                        })
                    },
                ),
        )
        .add(
            action(NOTES_BIG)
                .authenticated()
                .body_limit(4 * 1024 * 1024)
                .handler(|cx: Cx<State>, _: Viewer, input: Valid<Note>| async move {
                    Ok(Saved {
                        count: save(cx.state(), &input.text),
                    })
                }),
        )
        .add(action(ADMIN_PURGE).role("admin").handler(
            |cx: Cx<State>, _: Viewer, _: Valid<Nothing>| async move {
                cx.state().runs.fetch_add(1, Ordering::SeqCst);
                cx.state().notes.lock().unwrap().clear();
                Ok(())
            },
        ))
        .add(
            action(ACCOUNT_DELETE)
                .recent(Duration::from_secs(900))
                .handler(|cx: Cx<State>, _: Viewer, _: Valid<Nothing>| async move {
                    cx.state().runs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }),
        )
        .add(
            action(WHOAMI)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |_: Cx<State>, v: MaybeViewer, _: Valid<Nothing>| async move {
                        Ok(Who {
                            user_id: v.get().map(|v| v.id()),
                        })
                    },
                ),
        )
        .add(
            action(BOOM)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move {
                        cx.state().runs.fetch_add(1, Ordering::SeqCst);
                        let secret_detail = "db password is hunter2";
                        if cx.state().runs() > 0 {
                            panic!("kaboom: {secret_detail}");
                        }
                        Ok(())
                    },
                ),
        );
}

fn pick(state: &State, input: &Pick) -> Picked {
    state.runs.fetch_add(1, Ordering::SeqCst);
    state
        .notes
        .lock()
        .unwrap()
        .push(format!("pick:{}", *input.project_id));
    Picked {
        project_id: *input.project_id,
    }
}

/// The sealing and taint fixtures.
pub fn register_sealed(actions: &mut portcullis::Actions<State>) {
    actions
        .add(
            action(SEALED_PICK)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, input: Valid<Pick>| async move {
                        Ok(pick(cx.state(), &input))
                    },
                ),
        )
        .add(
            action(SEALED_OTHER)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, input: Valid<Pick>| async move {
                        Ok(pick(cx.state(), &input))
                    },
                ),
        )
        .add(
            action(SEALED_MINE).authenticated().handler(
                |cx: Cx<State>, _: Viewer, input: Valid<Pick>| async move {
                    Ok(pick(cx.state(), &input))
                },
            ),
        )
        .add(
            // Seals a value for the page's script (the next wizard step).
            action(SEALED_MINT)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move {
                        let target = cx.seal_for(SEALED_PICK).field("projectId");
                        let sealed = security::seal(&77i64, &target, security::DEFAULT_TTL)
                            .map_err(|e| ActionError::internal(e.to_string()))?;
                        Ok(Minted { sealed })
                    },
                ),
        )
        .add(
            action(TAINT_SECRET)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move {
                        cx.state().runs.fetch_add(1, Ordering::SeqCst);
                        Ok(Leaky {
                            name: "payments".into(),
                            api: ApiCredentials {
                                label: "live".into(),
                                token: Secret::new(SECRET_TOKEN.into()),
                            },
                        })
                    },
                ),
        )
        .add(
            action(TAINT_UNIQUE)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move {
                        cx.state().runs.fetch_add(1, Ordering::SeqCst);
                        // A copy in a plain String, inside a larger string.
                        let key = String::from(UNIQUE);
                        Ok(Echo {
                            text: format!("config dump: key={key};region=eu"),
                        })
                    },
                ),
        )
        .add(
            action(TAINT_FORM_ERROR)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move {
                        cx.state().runs.fetch_add(1, Ordering::SeqCst);
                        Err::<(), _>(ActionError::form(format!("the key {UNIQUE} was refused")))
                    },
                ),
        );
}

#[derive(Deserialize)]
pub struct SealQuery {
    pub action: String,
    pub value: i64,
    pub ttl: Option<u64>,
}

/// `GET /seal?action=…&value=…[&ttl=secs]`: a form for `action` carrying
/// `value` sealed as `projectId`.
async fn seal_page(page: Page, Query(q): Query<SealQuery>) -> Response {
    let action = match q.action.as_str() {
        "sealed.pick" => SEALED_PICK,
        "sealed.other" => SEALED_OTHER,
        "sealed.mine" => SEALED_MINE,
        _ => return page.error(portcullis::ErrorCode::NotFound),
    };
    let ttl = Duration::from_secs(q.ttl.unwrap_or(3600));
    let form = page
        .form(action)
        .bind_sealed_for("projectId", q.value, ttl)
        .body(maud::html! { (portcullis::submit("Open")) });
    Html(form.into_string()).into_response()
}

/// `GET /taint/page`: a page that embeds the unique value inside a larger
/// string, the way a template might print a config dump.
async fn taint_page(_page: Page) -> Html<String> {
    let key = String::from(UNIQUE);
    Html(
        maud::html! {
            html { body { p { "Settings" } pre { "region=eu;key=" (key) ";mode=live" } } }
        }
        .into_string(),
    )
}

/// `GET /plain/page`: a page with nothing secret on it.
async fn plain_page(_page: Page) -> Html<&'static str> {
    Html("<p>nothing to see</p>")
}

pub fn pages() -> axum::Router {
    axum::Router::new()
        .route("/seal", axum::routing::get(seal_page))
        .route("/taint/page", axum::routing::get(taint_page))
        .route("/plain/page", axum::routing::get(plain_page))
}

pub struct Fixture {
    pub client: TestClient,
    pub state: State,
}

pub async fn start_with(config: Config) -> Fixture {
    start_with_store(config, tower_sessions::MemoryStore::default()).await
}

/// Several servers over one session store: instances of one deployment.
pub async fn start_with_store(config: Config, store: tower_sessions::MemoryStore) -> Fixture {
    init_log_capture();
    portcullis::unique_value(UNIQUE, UNIQUE_REASON).expect("fixture unique value registers");
    let state = State::default();
    let app = Portcullis::new(config, state.clone())
        .actions(register)
        .actions(register_sealed)
        .pages(pages())
        .build(store)
        .expect("fixture app builds");
    Fixture {
        client: TestClient::start(&app).await,
        state,
    }
}

pub async fn start() -> Fixture {
    start_with(config()).await
}

/// Signs `client` in as `user_id`.
pub async fn login(client: &TestClient, user_id: i64, admin: bool) {
    let id = user_id.to_string();
    let mut form = vec![("userId", id.as_str())];
    if admin {
        form.push(("admin", "true"));
    }
    let r = client.call(LOGIN, &form).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Everything logged by tracing in this test binary.
pub fn log_text() -> String {
    String::from_utf8_lossy(&LOG.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOG: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

struct LogWriter;
impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.get_or_init(Default::default)
            .lock()
            .unwrap()
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn init_log_capture() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
    });
}

// ---------------------------------------------------------------------------
// Redis helpers (rate limiting, bot checks). Added for the limiter tests.

/// The shared test Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test or run shares.
pub fn unique_prefix(test: &str) -> String {
    format!(
        "portcullis-test:{test}:{}:{:016x}:",
        std::process::id(),
        rand_u64()
    )
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    RandomState::new().hash_one(nanos)
}

/// [`config`] on the Redis backend at `url` under a unique prefix.
pub fn redis_config_at(url: &str, test: &str) -> Config {
    let mut c = config();
    c.redis_url = Some(portcullis::app::RedisUrl(url.to_owned()));
    c.redis_prefix = unique_prefix(test);
    c
}

/// [`config`] on the shared test Redis under a unique prefix.
pub fn redis_config(test: &str) -> Config {
    redis_config_at(&redis_url(), test)
}

/// A private `redis-server` on a free port, for outage tests. Killed on drop.
pub struct RedisProcess {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisProcess {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut p = RedisProcess { port, child: None };
        p.restart();
        p
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: a slow Redis.
    pub fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = std::process::Command::new("kill")
                .args([&format!("-{sig}"), &child.id().to_string()])
                .status();
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.signal("CONT");
        self.stop();
    }
}
