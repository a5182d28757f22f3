//! The receiver against a real server: forged, tampered, stale and unsigned
//! deliveries are refused and change nothing; a good one is applied exactly
//! once, however often it arrives.

use std::time::{SystemTime, UNIX_EPOCH};

use example_webhook_receiver::{HEADER, Ledger, PATH, app};
use portcullis::routes::webhook::{Scheme, Webhook};
use portcullis::testing::{TestClient, TestResponse};
use portcullis::{Config, MasterSecret};

const PROVIDER_SECRET: &str = "whsec-test-0123456789abcdef0123456789abcdef";

fn provider() -> Webhook {
    Webhook::new(PROVIDER_SECRET, Scheme::Timestamped, HEADER)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn paid(id: &str, cents: i64) -> String {
    format!(r#"{{"id":"{id}","type":"invoice.paid","customer":"cus_1","amountCents":{cents}}}"#)
}

async fn start() -> (TestClient, Ledger) {
    let ledger = Ledger::default();
    let app = app(
        Config::new(MasterSecret::generate()),
        ledger.clone(),
        provider(),
    )
    .unwrap();
    (TestClient::start(&app).await, ledger)
}

/// Delivers `body` with `signature` (none: no header), from the provider's
/// own origin, as deliveries are.
async fn deliver(client: &TestClient, body: &str, signature: Option<&str>) -> TestResponse {
    let mut request = client
        .post(PATH)
        .header("origin", "https://payments.example")
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header(HEADER, signature);
    }
    TestResponse::read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_signed_delivery_is_applied_exactly_once() {
    let (client, ledger) = start().await;
    let body = paid("evt_1", 500);
    let signature = provider().sign(body.as_bytes(), now());
    let first = deliver(&client, &body, Some(&signature)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(ledger.balance("cus_1"), 500);
    // A replay of the captured delivery gets the first answer, and the
    // handler does not run again.
    let replay = deliver(&client, &body, Some(&signature)).await;
    assert_eq!((replay.status, replay.text()), (first.status, first.text()));
    // The provider's retry, signed afresh: the same event id, still once.
    let retry = provider().sign(body.as_bytes(), now() + 1);
    assert_eq!(deliver(&client, &body, Some(&retry)).await.status, 200);
    assert_eq!(ledger.balance("cus_1"), 500);
    // Eight copies of a new event at once: one applies.
    let body = paid("evt_2", 70);
    let signature = provider().sign(body.as_bytes(), now());
    let copies = (0..8).map(|_| deliver(&client, &body, Some(&signature)));
    for r in futures::future::join_all(copies).await {
        assert!(matches!(r.status.as_u16(), 200 | 409), "{}", r.text());
    }
    assert_eq!(ledger.balance("cus_1"), 570);
}

#[tokio::test]
async fn unsigned_forged_tampered_and_stale_deliveries_change_nothing() {
    let (client, ledger) = start().await;
    let body = paid("evt_9", 1_000_000);
    let forger = Webhook::new(
        "not-the-providers-secret-0123456789",
        Scheme::Timestamped,
        HEADER,
    );
    let signed = provider().sign(paid("evt_9", 1).as_bytes(), now());
    let attempts = [
        ("unsigned", None),
        (
            "signed with another secret",
            Some(forger.sign(body.as_bytes(), now())),
        ),
        ("another body's signature", Some(signed)),
        (
            "signed ten minutes ago",
            Some(provider().sign(body.as_bytes(), now() - 600)),
        ),
        ("not a signature", Some("t=1,v1=zz".to_owned())),
    ];
    for (what, signature) in attempts {
        let r = deliver(&client, &body, signature.as_deref()).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        assert_eq!(
            r.error_code().as_deref(),
            Some("invalid_signature"),
            "{what}"
        );
    }
    assert_eq!(ledger.balance("cus_1"), 0);
    // The refusals did not spend the event id: the genuine delivery applies.
    let genuine = provider().sign(body.as_bytes(), now());
    assert_eq!(deliver(&client, &body, Some(&genuine)).await.status, 200);
    assert_eq!(ledger.balance("cus_1"), 1_000_000);
}

#[tokio::test]
async fn a_signed_but_invalid_event_is_refused_and_can_be_resent() {
    let (client, ledger) = start().await;
    let body = paid("evt_3", -5);
    let r = deliver(
        &client,
        &body,
        Some(&provider().sign(body.as_bytes(), now())),
    )
    .await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("invalid_input"),
        "{}",
        r.text()
    );
    assert_eq!(ledger.balance("cus_1"), 0);
    let body = "not json";
    let r = deliver(
        &client,
        body,
        Some(&provider().sign(body.as_bytes(), now())),
    )
    .await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("malformed_body"),
        "{}",
        r.text()
    );
    // The refused event was not marked as seen: corrected, it applies.
    let body = paid("evt_3", 5);
    let r = deliver(
        &client,
        &body,
        Some(&provider().sign(body.as_bytes(), now())),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(ledger.balance("cus_1"), 5);
}
