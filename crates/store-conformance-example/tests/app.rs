//! The external backend behind a real app: injected with
//! `Portcullis::stores`, it is where the app's limits are counted and its
//! idempotency keys kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use portcullis::prelude::*;
use portcullis::store::Stores;
use portcullis::testing::TestClient;
use portcullis::{Config, MasterSecret, Portcullis};
use serde::Deserialize;
use store_conformance_example::{MapCounters, MapIdempotency};

#[derive(Clone, Default)]
struct State {
    runs: Arc<AtomicU64>,
}

#[derive(Deserialize, garde::Validate)]
struct Note {
    #[garde(length(max = 100))]
    text: String,
}

const NOTE_SAVE: ActionRef<Note, ()> = ActionRef::new("note.save");

#[tokio::test]
async fn an_app_counts_and_claims_in_the_external_stores() {
    let counters = Arc::new(MapCounters::new(10_000));
    let stores = Stores::memory()
        .with_counters(counters.clone())
        .with_idempotency(Arc::new(MapIdempotency::new(1_000)));
    let state = State::default();
    let app = Portcullis::new(
        Config::new(MasterSecret::from_bytes(vec![7; 32]).unwrap()),
        state.clone(),
    )
    .stores(stores)
    .actions(|a| {
        a.add(
            action(NOTE_SAVE)
                .public()
                .limit(per_ip(2).per_hour())
                .handler(|cx: Cx<State>, _: MaybeViewer, _: Valid<Note>| async move {
                    cx.state().runs.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }),
        );
    })
    .build(tower_sessions::MemoryStore::default())
    .expect("app builds");
    let client = TestClient::start(&app).await;
    let send = |key: &'static str| {
        let path = client.path(NOTE_SAVE);
        let request = client
            .post(&path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("idempotency-key", key)
            .body("text=hi");
        async move { request.send().await.unwrap() }
    };

    assert_eq!(send("k1").await.status(), 200);
    // The same key again is replayed from the external idempotency store
    // (the handler does not run) — but the limit is checked first (stage
    // 4), so it spends the second unit of the budget.
    let replay = send("k1").await;
    assert_eq!(replay.status(), 200);
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(state.runs.load(Ordering::SeqCst), 1);
    // The budget of 2 per hour, counted in the external store, is spent.
    let refused = send("k2").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(state.runs.load(Ordering::SeqCst), 1);
    assert_eq!(counters.buckets_held(), 1);
}
