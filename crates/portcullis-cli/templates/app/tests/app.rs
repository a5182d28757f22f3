//! The attack harness against every action, and the notes flow: what users
//! rely on, each refusal checked to have changed nothing.

use {{crate}}::actions::{ADD_NOTE, SIGN_IN, SIGN_UP};
use portcullis::testing::TestClient;
use portcullis::testing::attacks::Harness;
use portcullis::{App, Config, MasterSecret};

const PASSWORD: &str = "a long enough password";

/// The app on a fresh SQLite file.
async fn app() -> (App, sqlx::SqlitePool) {
    let file = std::env::temp_dir().join(format!("{{name}}-test-{}.db", rand::random::<u64>()));
    let pool = {{crate}}::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let config = Config::new(MasterSecret::from_bytes(vec![7; 32]).unwrap());
    ({{crate}}::build(config, pool.clone()).await.unwrap(), pool)
}

async fn sign_up_and_in(client: &TestClient, email: &str) {
    let r = client
        .call(
            SIGN_UP,
            &[
                ("email", email),
                ("displayName", "Tester"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "sign-up: {}", r.text());
    let r = client
        .call(SIGN_IN, &[("email", email), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status, 200, "sign-in: {}", r.text());
}

async fn notes(pool: &sqlx::SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM notes")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_action_refuses_the_standard_attacks() {
    let (app, _) = app().await;
    let report = Harness::new(&app)
        .sign_in(|client| async move {
            let email = format!("h{}@example.com", rand::random::<u32>());
            sign_up_and_in(&client, &email).await;
        })
        .run()
        .await;
    println!("{report}");
    report.assert_conclusive_and_clean();
}

#[tokio::test]
async fn notes_are_validated_private_and_need_a_session() {
    let (app, pool) = app().await;
    let alice = TestClient::start(&app).await;
    sign_up_and_in(&alice, "alice@example.com").await;
    let r = alice.call(ADD_NOTE, &[("body", "buy milk")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // `call` returns the envelope; `result()` is the handler's DTO.
    assert_eq!(r.result()["body"], "buy milk");
    assert!(alice.get("/").await.text().contains("buy milk"));

    // Invalid input: 422 with the field named, nothing stored.
    let r = alice.call(ADD_NOTE, &[("body", "")]).await;
    assert_eq!(
        r.error_code().as_deref(),
        Some("invalid_input"),
        "{}",
        r.text()
    );
    assert!(r.json()["fieldErrors"]["body"].is_array(), "{}", r.text());
    // A field the input does not declare (an owner of the client's choosing).
    let r = alice
        .call(ADD_NOTE, &[("body", "x"), ("ownerId", "2")])
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    // Without a session: 401, nothing stored.
    let anonymous = alice.new_session();
    let r = anonymous.call(ADD_NOTE, &[("body", "spam")]).await;
    assert_eq!(r.error_code().as_deref(), Some("unauthenticated"));
    assert_eq!(notes(&pool).await, 1);

    // Another user does not see Alice's notes.
    let bob = alice.new_session();
    sign_up_and_in(&bob, "bob@example.com").await;
    assert!(!bob.get("/").await.text().contains("buy milk"));
}
