//! Identity lifecycle at the framework's depth: the security stamp that an
//! app's `AccountDirectory` reports is checked on every request that loads a
//! viewer (action pipeline, `Page` extractor, API bearer tokens). Each test
//! sends the request a stale session would send and asserts it is served as
//! anonymous — never as the user, never as anyone else — and that nothing
//! ran. The directory here is an in-memory map (the demo's is SQL; see
//! `demo/tests/identity.rs`).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use common::{State, config, register};
use futures::future::BoxFuture;
use portcullis::routes::api::{Scope, TokenGrant, TokenStore};
use portcullis::testing::{TestClient, TestResponse};
use portcullis::wire;
use portcullis::{AccountDirectory, ActionError, BuildError, NoAccounts, Page, Portcullis, Stamp};

/// Users and their current stamps.
#[derive(Clone, Default)]
struct Directory(Arc<Mutex<HashMap<i64, Stamp>>>);

impl Directory {
    fn set(&self, user: i64, stamp: &str) {
        self.0.lock().unwrap().insert(user, Stamp::new(stamp));
    }
    fn remove(&self, user: i64) {
        self.0.lock().unwrap().remove(&user);
    }
}

impl AccountDirectory for Directory {
    fn security_stamp(&self, user: i64) -> BoxFuture<'static, Result<Option<Stamp>, ActionError>> {
        let stamp = self.0.lock().unwrap().get(&user).cloned();
        Box::pin(async move { Ok(stamp) })
    }
}

/// One token, `tok`, for user 1.
struct Tokens;

impl TokenStore for Tokens {
    fn lookup(&self, hash: String) -> BoxFuture<'static, Result<Option<TokenGrant>, ActionError>> {
        let known = hash == portcullis::routes::api::hash_token("tok");
        Box::pin(async move {
            Ok(known.then_some(TokenGrant {
                user_id: 1,
                scope: Scope::Read,
                expires_at: i64::MAX,
                revoked: false,
            }))
        })
    }
}

struct Fx {
    client: TestClient,
    state: State,
    directory: Directory,
    store: tower_sessions::MemoryStore,
}

async fn start() -> Fx {
    let state = State::default();
    let directory = Directory::default();
    let store = tower_sessions::MemoryStore::default();
    // A page that says who it thinks the viewer is.
    let pages = axum::Router::new().route(
        "/me",
        get(|page: Page| async move { format!("{:?}", page.viewer().map(|v| v.id())) }),
    );
    let api = axum::Router::new().route(
        "/api/me",
        get(|b: portcullis::routes::api::Bearer| async move { b.viewer().id().to_string() }),
    );
    let app = Portcullis::new(config(), state.clone())
        .actions(register)
        .pages(pages)
        .api(api, Tokens, portcullis::per_user(1000).per_minute(), &[])
        .accounts(directory.clone())
        .build(store.clone())
        .expect("identity fixture builds");
    Fx {
        client: TestClient::start(&app).await,
        state,
        directory,
        store,
    }
}

async fn login(c: &TestClient, user: i64) -> TestResponse {
    c.call(common::LOGIN, &[("userId", &user.to_string())])
        .await
}

async fn who(c: &TestClient) -> serde_json::Value {
    c.call(common::WHOAMI, &[]).await.result()["user_id"].clone()
}

#[tokio::test]
async fn changed_stamp_makes_every_existing_session_anonymous() {
    let fx = start().await;
    fx.directory.set(1, "a");
    let (c1, c2) = (fx.client.new_session(), fx.client.new_session());
    assert_eq!(login(&c1, 1).await.status, 200);
    assert_eq!(login(&c2, 1).await.status, 200);
    assert_eq!(who(&c1).await, 1);
    assert_eq!(c1.get("/me").await.text(), "Some(1)");
    // Password changed elsewhere: the stamp moves on.
    fx.directory.set(1, "b");
    let r = c2
        .call(common::NOTES_ADD, &[("text", "as the old session")])
        .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("unauthenticated"));
    assert_eq!(who(&c1).await, serde_json::Value::Null);
    assert_eq!(c1.get("/me").await.text(), "None");
    // Nothing ran, and the flushed sessions stay anonymous.
    assert_eq!(fx.state.runs(), 0);
    assert_eq!(who(&c2).await, serde_json::Value::Null);
    // Signing in again records the new stamp.
    assert_eq!(login(&c1, 1).await.status, 200);
    assert_eq!(who(&c1).await, 1);
    assert_eq!(who(&c2).await, serde_json::Value::Null);
}

#[tokio::test]
async fn deleted_user_session_is_anonymous_never_the_next_owner_of_the_id() {
    let fx = start().await;
    fx.directory.set(1, "victim");
    let c = fx.client.new_session();
    assert_eq!(login(&c, 1).await.status, 200);
    let cookie = c.cookies().unwrap();
    fx.directory.remove(1);
    let r = c.call(common::NOTES_ADD, &[("text", "ghost")]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    // A store that reuses ids hands 1 to a new user, with their own stamp:
    // a copy of the victim's cookie is still nobody.
    fx.directory.set(1, "newcomer");
    let replay = fx.client.new_session();
    replay.set_cookie(&cookie);
    assert_eq!(who(&replay).await, serde_json::Value::Null);
    assert_eq!(replay.get("/me").await.text(), "None");
    let r = replay.call(common::NOTES_ADD, &[("text", "ghost")]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(fx.state.runs(), 0);
    assert!(fx.state.notes().is_empty());
}

#[tokio::test]
async fn api_token_of_a_deleted_user_is_refused() {
    let fx = start().await;
    fx.directory.set(1, "a");
    let bearer = |c: &TestClient| {
        let req = reqwest::Client::new()
            .get(c.url("/api/me"))
            .header("authorization", "Bearer tok");
        async move { TestResponse::read(req.send().await.unwrap()).await }
    };
    let r = bearer(&fx.client).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "1".to_owned()));
    // A stamp change (password) does not end tokens; the app revokes them
    // if the user asks.
    fx.directory.set(1, "b");
    assert_eq!(bearer(&fx.client).await.status, 200);
    // The user is gone: the token is dead even though the store still has it.
    fx.directory.remove(1);
    let r = bearer(&fx.client).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("unauthenticated"));
}

#[tokio::test]
async fn login_of_a_user_the_directory_does_not_know_is_refused() {
    let fx = start().await;
    let c = fx.client.new_session();
    let r = login(&c, 99).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(who(&c).await, serde_json::Value::Null);
}

#[tokio::test]
async fn session_without_a_stamp_is_anonymous_under_a_directory() {
    // E.g. a session written before the app installed its directory.
    let fx = start().await;
    fx.directory.set(1, "a");
    let id = portcullis::session::issue(&fx.store, 1, vec![], None, Duration::from_secs(600))
        .await
        .unwrap();
    let c = fx.client.new_session();
    c.set_cookie(&format!("{}={id}", wire::cookie::SESSION));
    assert_eq!(who(&c).await, serde_json::Value::Null);
    // With the current stamp it is the user.
    let id = portcullis::session::issue(
        &fx.store,
        1,
        vec![],
        Some(Stamp::new("a")),
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    c.set_cookie(&format!("{}={id}", wire::cookie::SESSION));
    assert_eq!(who(&c).await, 1);
}

#[tokio::test]
async fn production_build_without_an_account_directory_is_refused() {
    let mut production = config();
    production.mode = portcullis::Mode::Production;
    let built = Portcullis::new(production.clone(), State::default())
        .actions(register)
        .build(tower_sessions::MemoryStore::default());
    assert!(matches!(built, Err(BuildError::NoAccountDirectory)));
    // An app that signs nobody in says so, and then nobody can sign in.
    let app = Portcullis::new(production, State::default())
        .actions(register)
        .accounts(NoAccounts)
        .build(tower_sessions::MemoryStore::default())
        .expect("builds with NoAccounts");
    let client = TestClient::start(&app).await;
    assert_eq!(login(&client, 1).await.status, 500);
    assert_eq!(who(&client).await, serde_json::Value::Null);
}

/// `Config::login_path` and `reauth_path` reach every place that sends the
/// browser to sign in: `Page::require_viewer` (with `?return=`), and the
/// forms the client runtime reads on a 401. Only the form of an action whose
/// policy can answer `reauthentication_required` (`.recent(..)`) carries the
/// re-authentication path; a form group carries both for its rows.
#[tokio::test]
async fn sign_in_paths_reach_pages_and_only_recent_forms_carry_the_reauth_path() {
    let mut config = config();
    config.login_path = "/signin".into();
    config.reauth_path = "/confirm".into();
    let pages = axum::Router::new().route(
        "/forms",
        get(|page: Page| async move {
            if let Err(to_sign_in) = page.require_viewer() {
                return to_sign_in;
            }
            let body = maud::html! {
                (page.form(common::NOTES_ADD).id("add").body(maud::html! {}))
                (page.form(common::ACCOUNT_DELETE).id("delete").body(maud::html! {}))
                (page.form_group(maud::html! {
                    (page.form(common::NOTES_ADD).id("row").in_group().body(maud::html! {}))
                }))
            };
            axum::response::IntoResponse::into_response(body)
        }),
    );
    let app = Portcullis::new(config, State::default())
        .actions(register)
        .pages(pages)
        .build(tower_sessions::MemoryStore::default())
        .expect("fixture builds");
    let client = TestClient::start(&app).await;

    let r = client.get("/forms?tab=2").await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("/signin?return=%2Fforms%3Ftab%3D2")
    );

    common::login(&client, 1, false).await;
    let html = client.get("/forms").await.text();
    let form = |id: &str| {
        let start = html.find(&format!("id=\"{id}\"")).expect("the form");
        let open = html[..start].rfind("<form").expect("its tag");
        html[open..open + html[open..].find('>').unwrap()].to_owned()
    };
    let add = form("add");
    assert!(add.contains("data-login=\"/signin\""), "{add}");
    assert!(!add.contains("data-reauth"), "{add}");
    let delete = form("delete");
    assert!(delete.contains("data-login=\"/signin\""), "{delete}");
    assert!(delete.contains("data-reauth=\"/confirm\""), "{delete}");
    let row = form("row");
    assert!(
        !row.contains("data-login") && !row.contains("data-reauth"),
        "{row}"
    );
    assert!(
        html.contains("data-login=\"/signin\" data-reauth=\"/confirm\""),
        "the group: {html}"
    );
}
