//! The attack harness (`portcullis::testing::attacks`): clean on the
//! framework's fixture app, and it catches deliberately broken setups — a
//! raw axum POST route that bypasses the pipeline (no origin check, no
//! policy), and an origin allowlist that trusts the attacker's origin.

mod common;

use axum::Router;
use axum::routing::post;
use common::{State, config, login, pages, register, register_sealed};
use portcullis::security::OriginPolicy;
use portcullis::testing::attacks::{ATTACKER_ORIGIN, Harness, Verdict};
use portcullis::{App, Config, Portcullis};

fn app(config: Config, extra: Router) -> App {
    Portcullis::new(config, State::default())
        .actions(register)
        .actions(register_sealed)
        .pages(pages())
        .pages(extra)
        .build(tower_sessions::MemoryStore::default())
        .expect("fixture app builds")
}

fn harness(app: &App) -> Harness {
    Harness::new(app).sign_in(|client| async move { login(&client, 1, true).await })
}

#[tokio::test]
async fn harness_passes_on_the_fixture_app() {
    let app = app(config(), Router::new());
    let report = harness(&app).run().await;
    println!("{report}");
    report.assert_clean();
    // The sealed actions got the replay attack, and it was refused.
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.attack == "sealed_replay" && c.verdict == Verdict::Pass),
        "{report}"
    );
    for attack in [
        "cross_origin",
        "cross_origin_legacy",
        "missing_session",
        "unknown_field",
        "oversize_body",
        "malformed_json",
        "malformed_multipart",
        "stale_id",
        "malformed_id",
    ] {
        assert!(
            report
                .checks
                .iter()
                .any(|c| c.attack == attack && c.verdict == Verdict::Pass),
            "{attack} never passed:\n{report}"
        );
    }
}

#[tokio::test]
async fn harness_catches_a_raw_route_posing_as_an_action() {
    // A "quick" legacy endpoint merged into the page router: it never runs
    // through the pipeline, so it has no policy. (The app-wide origin guard
    // still covers it: cross-origin calls are refused even here.)
    let legacy = Router::new().route("/legacy/notes/purge", post(|| async { "purged" }));
    let app = app(config(), legacy);
    let report = harness(&app)
        .raw_route("/legacy/notes/purge", true)
        .run()
        .await;
    println!("{report}");
    assert!(
        !report.failed("/legacy/notes/purge", "cross_origin"),
        "the app-wide origin guard covers raw routes:\n{report}"
    );
    assert!(
        !report.failed("/legacy/notes/purge", "cross_origin_legacy"),
        "{report}"
    );
    assert!(
        report.failed("/legacy/notes/purge", "missing_session"),
        "{report}"
    );
    // The real actions are still fine.
    assert!(
        report
            .failures()
            .iter()
            .all(|c| c.target == "/legacy/notes/purge"),
        "{report}"
    );
    let panic = std::panic::catch_unwind(|| report.assert_clean());
    assert!(panic.is_err(), "assert_clean must fail on a broken app");
}

#[tokio::test]
async fn harness_catches_an_allowlist_that_trusts_the_attacker() {
    let mut c = config();
    c.origin = OriginPolicy::new([ATTACKER_ORIGIN], false).unwrap();
    let app = app(c, Router::new());
    let report = harness(&app).run().await;
    for action in app.manifest().actions {
        assert!(
            report.failed(action.meta.name, "cross_origin"),
            "{}: {report}",
            action.meta.name
        );
    }
}

/// Issue #16: the classes every app has — client-named fragment lists,
/// idempotency keys reused with another body, slow headers — are attacked
/// too, so adopters get them without writing the tests.
#[tokio::test]
async fn harness_attacks_fragment_lists_reused_idempotency_keys_and_slow_headers() {
    let app = app(config(), Router::new());
    let report = harness(&app)
        .idempotency_sample(
            common::NOTES_ADD,
            &[("text", "first")],
            &[("text", "second")],
        )
        .run()
        .await;
    println!("{report}");
    report.assert_clean();
    let passed = |target: &str, attack: &str| {
        report
            .checks
            .iter()
            .any(|c| c.target == target && c.attack == attack && c.verdict == Verdict::Pass)
    };
    assert!(passed("(server)", "slow_headers"), "{report}");
    assert!(
        passed(common::NOTES_ADD.name(), "idempotency_key_reused"),
        "{report}"
    );
    assert!(
        passed(common::NOTES_ADD.name(), "fragment_list_flood"),
        "{report}"
    );
    assert!(
        passed(common::NOTES_PUBLIC.name(), "fragment_list_flood"),
        "{report}"
    );
}

/// What `Harness::sign_in` and `Harness::idempotency_sample` document: the
/// closure runs once per run, every gated action is attacked with that one
/// client, and a sample input reaches the handler as that client (here an
/// authenticated action that stores the text): the first input three times
/// (twice in the fragment-list flood, once with the key), the second never
/// (the reused key is refused before the handler).
#[tokio::test]
async fn sign_in_runs_once_and_samples_run_as_that_client() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let state = State::default();
    let app = Portcullis::new(config(), state.clone())
        .actions(register)
        .actions(register_sealed)
        .pages(pages())
        .build(tower_sessions::MemoryStore::default())
        .expect("fixture app builds");
    let sign_ins = Arc::new(AtomicUsize::new(0));
    let counted = sign_ins.clone();
    let report = Harness::new(&app)
        .sign_in(move |client| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move { login(&client, 1, true).await }
        })
        .idempotency_sample(
            common::NOTES_ADD,
            &[("text", "first")],
            &[("text", "second")],
        )
        .run()
        .await;
    report.assert_clean();
    assert_eq!(sign_ins.load(Ordering::SeqCst), 1);
    assert_eq!(state.notes(), ["first", "first", "first"], "{report}");
}

/// `TestResponse::result` is the handler's DTO, not the envelope; a refusal
/// is a panic that shows the body, not a `null` a test could compare equal.
#[tokio::test]
async fn test_response_result_is_the_dto_and_a_refusal_panics() {
    let state = State::default();
    let app = Portcullis::new(config(), state.clone())
        .actions(register)
        .build(tower_sessions::MemoryStore::default())
        .expect("fixture app builds");
    let client = portcullis::testing::TestClient::start(&app).await;
    login(&client, 1, false).await;
    let r = client.call(common::NOTES_ADD, &[("text", "hello")]).await;
    assert_eq!(r.json()["ok"], true, "the body is the envelope");
    assert_eq!(r.result(), serde_json::json!({ "count": 1 }));
    #[derive(serde::Deserialize)]
    struct Saved {
        count: usize,
    }
    assert_eq!(r.result_as::<Saved>().count, 1);
    assert_eq!(r.redirect(), None);

    let refused = client.call(common::NOTES_ADD, &[("nope", "x")]).await;
    assert_eq!(refused.error_code().as_deref(), Some("invalid_input"));
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| refused.result()))
        .expect_err("a refusal panics");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("not a success envelope") && message.contains("invalid_input"),
        "{message}"
    );
    assert_eq!(state.notes(), ["hello"]);
}
