//! A small fixture app for the framework's own attack tests: one action per
//! policy, a counter of handler runs and a list of stored notes, so every
//! test can assert that a refused request changed nothing.
#![allow(dead_code)]

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use portcullis::prelude::*;
use portcullis::testing::TestClient;
use portcullis::{Config, MasterSecret, Portcullis};
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

pub const SECRET: [u8; 32] = [42; 32];

pub fn config() -> Config {
    let mut c = Config::new(MasterSecret::from_bytes(SECRET.to_vec()).unwrap());
    c.limits.body_timeout = Duration::from_millis(800);
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
            action("auth.login")
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
        .add(action("auth.logout").authenticated().handler(
            |cx: Cx<State>, _: Viewer, _: Valid<Nothing>| async move {
                cx.auth().logout().await?;
                Ok(())
            },
        ))
        .add(action("notes.add").authenticated().handler(
            |cx: Cx<State>, _: Viewer, input: Valid<Note>| async move {
                Ok(Saved {
                    count: save(cx.state(), &input.text),
                })
            },
        ))
        .add(
            action("notes.public")
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
            action("notes.limited")
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
            action("notes.big")
                .authenticated()
                .body_limit(4 * 1024 * 1024)
                .handler(|cx: Cx<State>, _: Viewer, input: Valid<Note>| async move {
                    Ok(Saved {
                        count: save(cx.state(), &input.text),
                    })
                }),
        )
        .add(action("admin.purge").role("admin").handler(
            |cx: Cx<State>, _: Viewer, _: Valid<Nothing>| async move {
                cx.state().runs.fetch_add(1, Ordering::SeqCst);
                cx.state().notes.lock().unwrap().clear();
                Ok(())
            },
        ))
        .add(
            action("account.delete")
                .recent(Duration::from_secs(900))
                .handler(|cx: Cx<State>, _: Viewer, _: Valid<Nothing>| async move {
                    cx.state().runs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }),
        )
        .add(
            action("whoami")
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
            action("boom")
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

pub struct Fixture {
    pub client: TestClient,
    pub state: State,
}

pub async fn start_with(config: Config) -> Fixture {
    init_log_capture();
    let state = State::default();
    let app = Portcullis::new(config, state.clone())
        .actions(register)
        .build(tower_sessions::MemoryStore::default())
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
    let r = client.call("auth.login", &form).await;
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

fn init_log_capture() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
    });
}
