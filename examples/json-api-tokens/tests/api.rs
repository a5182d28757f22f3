//! The API against a real server: every kind of bad token refused with
//! nothing changed, a good one accepted, scopes and the per-user limit held.

use std::time::{SystemTime, UNIX_EPOCH};

use example_json_api_tokens::{Db, app};
use portcullis::routes::api::{Scope, new_token};
use portcullis::testing::{TestClient, TestResponse};
use portcullis::{Config, MasterSecret};
use serde_json::json;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn start() -> (TestClient, Db) {
    let db = Db::default();
    db.add_user(1);
    db.add_user(2);
    let app = app(Config::new(MasterSecret::generate()), db.clone()).unwrap();
    (TestClient::start(&app).await, db)
}

/// `GET /api/notes` with `token` (none: no `Authorization` header).
async fn list(client: &TestClient, token: Option<&str>) -> TestResponse {
    let mut request = reqwest::Client::new().get(client.url("/api/notes"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    TestResponse::read(request.send().await.unwrap()).await
}

/// `POST /api/notes` with `token`.
async fn add(client: &TestClient, token: &str, text: &str) -> TestResponse {
    let request = client.post("/api/notes").bearer_auth(token);
    TestResponse::read(request.json(&json!({ "text": text })).send().await.unwrap()).await
}

#[tokio::test]
async fn a_valid_token_reads_and_writes_its_own_users_notes() {
    let (client, db) = start().await;
    let token = db.issue_token(1, Scope::Write, now() + 3600);
    let r = add(&client, &token, "buy milk").await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = list(&client, Some(&token)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!(["buy milk"]));
    // Another user's token sees only their own notes.
    let other = db.issue_token(2, Scope::Write, now() + 3600);
    assert_eq!(list(&client, Some(&other)).await.json(), json!([]));
}

#[tokio::test]
async fn missing_forged_expired_revoked_and_orphaned_tokens_are_refused() {
    let (client, db) = start().await;
    let expired = db.issue_token(1, Scope::Write, now() - 1);
    let revoked = db.issue_token(1, Scope::Write, now() + 3600);
    db.revoke_token(&revoked);
    db.add_user(3);
    let orphaned = db.issue_token(3, Scope::Write, now() + 3600);
    db.delete_user(3);
    let forged = new_token(); // well-formed, never issued
    let r = list(&client, None).await;
    assert_eq!(r.error_code().as_deref(), Some("unauthenticated"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    for (what, token) in [
        ("forged", &forged),
        ("expired", &expired),
        ("revoked", &revoked),
        ("of a deleted user", &orphaned),
    ] {
        let r = list(&client, Some(token.as_str())).await;
        assert_eq!(r.status, 401, "{what} token: {}", r.text());
        let r = add(&client, token, "written by an attacker").await;
        assert_eq!(r.error_code().as_deref(), Some("unauthenticated"), "{what}");
    }
    // Nothing was written for anyone.
    let good = db.issue_token(1, Scope::Write, now() + 3600);
    assert_eq!(list(&client, Some(&good)).await.json(), json!([]));
}

#[tokio::test]
async fn a_read_only_token_cannot_write_and_bad_bodies_are_refused() {
    let (client, db) = start().await;
    let read = db.issue_token(1, Scope::Read, now() + 3600);
    let r = add(&client, &read, "sneaky").await;
    assert_eq!(r.error_code().as_deref(), Some("forbidden"), "{}", r.text());
    assert_eq!(list(&client, Some(&read)).await.json(), json!([]));

    let write = db.issue_token(1, Scope::Write, now() + 3600);
    let r = add(&client, &write, "   ").await;
    assert_eq!(r.error_code().as_deref(), Some("invalid_input"));
    assert!(r.json()["fieldErrors"]["text"].is_array(), "{}", r.text());
    // A field the API does not declare.
    let r = client
        .post("/api/notes")
        .bearer_auth(&write)
        .json(&json!({ "text": "x", "userId": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(list(&client, Some(&write)).await.json(), json!([]));
}

#[tokio::test]
async fn each_user_has_a_rate_limit() {
    let (client, db) = start().await;
    let token = db.issue_token(1, Scope::Read, now() + 3600);
    for i in 0..60 {
        let r = list(&client, Some(&token)).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let r = list(&client, Some(&token)).await;
    assert_eq!(r.error_code().as_deref(), Some("rate_limited"));
    // Another token of the same user shares the limit; another user does not.
    let second = db.issue_token(1, Scope::Read, now() + 3600);
    assert_eq!(list(&client, Some(&second)).await.status, 429);
    let other = db.issue_token(2, Scope::Read, now() + 3600);
    assert_eq!(list(&client, Some(&other)).await.status, 200);
}
