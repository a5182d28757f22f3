//! Issue #12: every non-action route gets the same origin protection, and
//! webhooks are the only (authenticated) exception.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::post;
use portcullis::routes::webhook::{Scheme, Webhook};
use portcullis::testing::{TestClient, TestResponse};
use portcullis::wire;
use portcullis::{ActionError, Config, MasterSecret, Portcullis};

#[derive(Clone, Default)]
struct State {
    plain: Arc<AtomicUsize>,
    applied: Arc<std::sync::Mutex<Vec<String>>>,
}

fn hook() -> Webhook {
    Webhook::new(b"whsec_test".to_vec(), Scheme::Timestamped, "x-signature")
}

async fn start() -> (TestClient, State) {
    start_with(portcullis::store::IdempotencyConfig::default()).await
}

async fn start_with(store: portcullis::store::IdempotencyConfig) -> (TestClient, State) {
    let state = State::default();
    let s2 = state.clone();
    let counter = state.plain.clone();
    let app = Portcullis::new(
        Config::new(MasterSecret::from_bytes(vec![5; 32]).unwrap()),
        state.clone(),
    )
    .pages(
        Router::new().route(
            "/plain",
            post({
                let c = counter.clone();
                move || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            })
            .put({
                let c = counter.clone();
                move || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            })
            .delete({
                let c = counter.clone();
                move || async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }
            }),
        ),
    )
    .webhook(
        "/hooks/billing",
        hook(),
        |s: State, e: portcullis::routes::webhook::Event| async move {
            #[derive(serde::Deserialize)]
            struct Ev {
                id: String,
            }
            let ev: Ev = e.json()?;
            if ev.id == "evt_fail" {
                return Err(ActionError::internal("downstream failed"));
            }
            s.applied.lock().unwrap().push(ev.id);
            Ok(())
        },
    )
    .idempotency_store(store)
    .build(tower_sessions::MemoryStore::default())
    .unwrap();
    let _ = s2;
    (TestClient::start(&app).await, state)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn cross_origin_unsafe_methods_on_a_plain_route_are_refused() {
    let (c, state) = start().await;
    let http = reqwest::Client::new();
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        for (k, v) in [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ] {
            let r = http
                .request(method.clone(), c.url("/plain"))
                .header(k, v)
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            let r = TestResponse::read(r).await;
            assert_eq!(r.status, 403, "{method} {k}");
            assert_eq!(r.error_code().as_deref(), Some("cross_origin_request"));
        }
    }
    assert_eq!(state.plain.load(Ordering::SeqCst), 0);
    let r = http
        .post(c.url("/plain"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(state.plain.load(Ordering::SeqCst), 1);
    // Undeclared methods: 405 with Allow.
    let r = http.patch(c.url("/plain")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.headers()["allow"].to_str().unwrap().contains("POST"));
}

async fn deliver(c: &TestClient, body: &str, signature: &str) -> TestResponse {
    let r = reqwest::Client::new()
        .post(c.url("/hooks/billing"))
        .header("origin", "https://billing.example")
        .header("sec-fetch-site", "cross-site")
        .header("x-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    TestResponse::read(r).await
}

#[tokio::test]
async fn webhook_attacks_are_rejected_and_change_nothing() {
    let (c, state) = start().await;
    let body = r#"{"id":"evt_1","type":"plan.changed"}"#;
    let good = hook().sign(body.as_bytes(), now());
    // Bad signature (another secret).
    let other = Webhook::new(
        b"not-the-secret".to_vec(),
        Scheme::Timestamped,
        "x-signature",
    );
    let r = deliver(&c, body, &other.sign(body.as_bytes(), now())).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_deref()),
        (401, Some("invalid_signature"))
    );
    // Old timestamp, correctly signed.
    let r = deliver(&c, body, &hook().sign(body.as_bytes(), now() - 3600)).await;
    assert_eq!(
        (r.status.as_u16(), r.error_code().as_deref()),
        (401, Some("invalid_signature"))
    );
    // Body altered by one byte.
    let altered = body.replace("evt_1", "evt_2");
    let r = deliver(&c, &altered, &good).await;
    assert_eq!(r.status, 401);
    // Missing header.
    let r = deliver(&c, body, "").await;
    assert_eq!(r.status, 401);
    assert!(state.applied.lock().unwrap().is_empty());
    // A valid delivery applies once even if delivered twice (replay).
    assert_eq!(deliver(&c, body, &good).await.status, 200);
    let again = deliver(&c, body, &good).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.header(wire::header::IDEMPOTENT_REPLAYED),
        Some("true")
    );
    // Same event id re-signed later: still applied once.
    assert_eq!(
        deliver(&c, body, &hook().sign(body.as_bytes(), now() + 1))
            .await
            .status,
        200
    );
    assert_eq!(*state.applied.lock().unwrap(), vec!["evt_1".to_owned()]);
    // A failed handling is not remembered: the provider's retry runs again.
    let fail = r#"{"id":"evt_fail"}"#;
    let r = deliver(&c, fail, &hook().sign(fail.as_bytes(), now())).await;
    assert_eq!(r.status, 500);
}

/// The shared idempotency store evicts under a flood of client-chosen keys
/// (that bounds it). A webhook's seen-event record must not be evictable by
/// that flood: a captured delivery replayed inside its signature window would
/// be applied twice.
#[tokio::test]
async fn idempotency_key_flood_cannot_evict_a_webhook_delivery_for_replay() {
    let (c, state) = start_with(portcullis::store::IdempotencyConfig {
        max_bytes: 64 * 1024,
    })
    .await;
    let body = r#"{"id":"evt_flood","type":"plan.changed"}"#;
    let signature = hook().sign(body.as_bytes(), now());
    assert_eq!(deliver(&c, body, &signature).await.status, 200);
    // Anyone can fill the idempotency store with keys of their own choosing.
    let store = c.app().idempotency();
    for i in 0..2_000 {
        let key = format!("flood-{i}");
        let fp = portcullis::__private::idempotency::fingerprint(key.as_bytes(), None);
        if let Ok(portcullis::__private::idempotency::Begin::Run) = store.begin(&key, fp).await {
            let response = axum::response::IntoResponse::into_response("x".repeat(4096));
            store.complete(&key, fp, response).await;
        }
    }
    let (_, bytes) = store.memory_usage().unwrap();
    assert!(bytes <= 64 * 1024, "the flood is bounded: {bytes} B");
    // The captured delivery, replayed inside its window, is not applied again.
    let again = deliver(&c, body, &signature).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.header(wire::header::IDEMPOTENT_REPLAYED),
        Some("true")
    );
    assert_eq!(*state.applied.lock().unwrap(), vec!["evt_flood".to_owned()]);
}

#[tokio::test]
async fn oversized_webhook_body_is_413_before_verification() {
    let (c, state) = start().await;
    let big = format!(r#"{{"id":"evt_big","pad":"{}"}}"#, "x".repeat(100 * 1024));
    let r = deliver(&c, &big, &hook().sign(big.as_bytes(), now())).await;
    assert_eq!(r.status, 413);
    assert!(state.applied.lock().unwrap().is_empty());
}

#[tokio::test]
async fn manifest_lists_routes_that_accept_cross_origin_calls() {
    let (c, _) = start().await;
    let m = serde_json::to_value(c.app().manifest()).unwrap();
    assert_eq!(m["crossOriginRoutes"][0]["path"], "/hooks/billing");
    assert_eq!(
        m["crossOriginRoutes"][0]["authenticator"],
        "webhook-hmac-sha256-timestamped"
    );
}
