//! Issue #12: the token-authenticated JSON API — same viewer, same DAL, same
//! limits — and its attacks: revoked, expired, read-only, another user's
//! token, CORS from an unlisted origin, tokens never shown twice.

mod common;

use common::{assert_refused, project, snapshot, start, team_of, user};
use demo::actions::tokens;
use portcullis::testing::{TestClient, TestResponse};

async fn token(c: &TestClient, scope: &str) -> (i64, String) {
    let r = c
        .call(
            tokens::CREATE,
            &[("name", "script"), ("scope", scope), ("days", "30")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    (
        v["result"]["id"].as_i64().unwrap(),
        v["result"]["token"].as_str().unwrap().to_owned(),
    )
}

async fn api(
    c: &TestClient,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> TestResponse {
    let mut req = reqwest::Client::new().request(method, c.url(path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    TestResponse::read(req.send().await.unwrap()).await
}

#[tokio::test]
async fn tokens_read_write_revoke_expire_and_idor() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (mallory, _) = user(&demo, "Mallory").await;
    let team = team_of(&demo, alice_id).await;
    let p = project(&alice, team, "Via API").await;
    let (_, read) = token(&alice, "read").await;
    let (write_id, write) = token(&alice, "write").await;
    let (_, mallory_write) = token(&mallory, "write").await;
    let rename_path = format!("/api/projects/{p}/rename");
    // Read works with either scope.
    let r = api(
        &demo.client,
        reqwest::Method::GET,
        "/api/projects",
        Some(&read),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()[0]["name"], "Via API");
    let before = snapshot(&demo).await;
    // A read-only token cannot write.
    let r = api(
        &demo.client,
        reqwest::Method::POST,
        &rename_path,
        Some(&read),
        Some(r#"{"name":"nope"}"#),
    )
    .await;
    assert_refused(&r, 403, "forbidden");
    // Another user's token: the project does not exist for them (same as actions).
    let r = api(
        &demo.client,
        reqwest::Method::POST,
        &rename_path,
        Some(&mallory_write),
        Some(r#"{"name":"pwned"}"#),
    )
    .await;
    assert_refused(&r, 404, "not_found");
    let r = api(
        &demo.client,
        reqwest::Method::GET,
        "/api/projects",
        Some(&mallory_write),
        None,
    )
    .await;
    assert_eq!(r.json(), serde_json::json!([]));
    // Mass assignment through the API is refused too.
    let r = api(
        &demo.client,
        reqwest::Method::POST,
        &rename_path,
        Some(&write),
        Some(r#"{"name":"x2","teamId":1}"#),
    )
    .await;
    assert_refused(&r, 422, "invalid_input");
    // No token, garbage token.
    let r = api(
        &demo.client,
        reqwest::Method::GET,
        "/api/projects",
        None,
        None,
    )
    .await;
    assert_refused(&r, 401, "unauthenticated");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = api(
        &demo.client,
        reqwest::Method::GET,
        "/api/projects",
        Some("pcat_guess"),
        None,
    )
    .await;
    assert_refused(&r, 401, "unauthenticated");
    assert_eq!(snapshot(&demo).await, before);
    // The write token writes, and the UI sees it.
    let r = api(
        &demo.client,
        reqwest::Method::POST,
        &rename_path,
        Some(&write),
        Some(r#"{"name":"Renamed by API"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        alice
            .get("/projects")
            .await
            .text()
            .contains("Renamed by API")
    );
    // Revoked: refused, and nothing changes.
    assert_eq!(
        alice
            .call(tokens::REVOKE, &[("tokenId", &write_id.to_string())])
            .await
            .status,
        200
    );
    let before = snapshot(&demo).await;
    let r = api(
        &demo.client,
        reqwest::Method::POST,
        &rename_path,
        Some(&write),
        Some(r#"{"name":"after revoke"}"#),
    )
    .await;
    assert_refused(&r, 401, "unauthenticated");
    assert_eq!(snapshot(&demo).await, before);
    // Mallory cannot revoke Alice's token.
    let (read_id, _) = token(&alice, "read").await;
    let before = snapshot(&demo).await;
    let r = mallory
        .call(tokens::REVOKE, &[("tokenId", &read_id.to_string())])
        .await;
    assert_refused(&r, 404, "not_found");
    // Expired.
    sqlx::query("UPDATE api_tokens SET expires_at = 1")
        .execute(&demo.db.pool)
        .await
        .unwrap();
    let r = api(
        &demo.client,
        reqwest::Method::GET,
        "/api/projects",
        Some(&read),
        None,
    )
    .await;
    assert_refused(&r, 401, "unauthenticated");
    assert_eq!(snapshot(&demo).await, before);
}

#[tokio::test]
async fn tokens_are_shown_once_and_stored_hashed() {
    let demo = start().await;
    let (alice, _) = user(&demo, "Alice").await;
    let (_, t) = token(&alice, "read").await;
    let settings = alice.get("/settings").await.text();
    assert!(
        !settings.contains(&t),
        "the settings page never shows a token again"
    );
    let stored: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM api_tokens")
        .fetch_all(&demo.db.pool)
        .await
        .unwrap();
    assert!(stored.iter().all(|(h,)| !h.contains(&t)));
    assert_eq!(stored[0].0, portcullis::routes::api::hash_token(&t));
}

#[tokio::test]
async fn cors_preflight_from_an_unlisted_origin_gets_no_allow_headers() {
    let demo = start().await;
    let r = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, demo.client.url("/api/projects"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers()
    );
    // Pages are not CORS-enabled at all.
    let r = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, demo.client.url("/projects"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn manifest_lists_the_api_as_a_bearer_authenticated_cross_origin_route() {
    let demo = start().await;
    let m = serde_json::to_value(demo.client.app().manifest()).unwrap();
    let routes = m["crossOriginRoutes"].as_array().unwrap();
    assert!(
        routes.iter().any(|r| r["authenticator"] == "bearer-token"),
        "{routes:?}"
    );
    assert!(
        routes.iter().any(|r| r["path"] == "/webhooks/billing"),
        "{routes:?}"
    );
}
