//! Per app, not per process: the error classifier and the taint registry
//! are options of the app being built, so two apps in one process (tests,
//! an admin app beside the public one) answer by their own rules.

use std::sync::Arc;

use axum::response::Html;
use portcullis::prelude::*;
use portcullis::security::Registry;
use portcullis::testing::TestClient;
use portcullis::{Config, ErrorCode, MasterSecret, Portcullis};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, garde::Validate)]
struct Nothing {}

#[derive(Serialize, Dto)]
struct Text {
    text: String,
}

/// An app's dependency failing (its database, say).
#[derive(Debug)]
struct Down;

impl std::fmt::Display for Down {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the database is down")
    }
}

impl std::error::Error for Down {}

fn classify(e: &(dyn std::error::Error + 'static)) -> Option<ErrorCode> {
    e.downcast_ref::<Down>()
        .map(|_| ErrorCode::DatabaseUnavailable)
}

const FAIL: ActionRef<Nothing, ()> = ActionRef::new("fail");
const SAY: ActionRef<Nothing, Text> = ActionRef::new("say");

/// Registered only in app A's own registry.
const APP_SECRET: &str = "tok_app_a_7Hq2Lm9Xz4Rt8Kw1Pc5";
/// Registered only in the process-wide default registry.
const GLOBAL_SECRET: &str = "tok_global_3Vb6Np0Js5Yd2Fg8Ue";

fn app(
    classifier: Option<portcullis::ErrorClassifier>,
    registry: Option<Arc<Registry>>,
) -> Portcullis<()> {
    let mut app = Portcullis::new(
        Config::new(MasterSecret::from_bytes(vec![11; 32]).unwrap()),
        (),
    )
    .actions(|a| {
        a.add(
            action(FAIL)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(|_: Cx<()>, _: MaybeViewer, _: Valid<Nothing>| async {
                    Err::<(), _>(ActionError::from(Down))
                }),
        )
        .add(
            action(SAY)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(|_: Cx<()>, _: MaybeViewer, _: Valid<Nothing>| async {
                    Ok(Text {
                        text: format!("a={APP_SECRET} g={GLOBAL_SECRET}"),
                    })
                }),
        );
    })
    .pages(axum::Router::new().route(
        "/page",
        axum::routing::get(|| async { Html(format!("<p>{APP_SECRET}</p>")) }),
    ));
    if let Some(c) = classifier {
        app = app.error_classifier(c);
    }
    if let Some(r) = registry {
        app = app.taint_registry(r);
    }
    app
}

async fn start(app: Portcullis<()>) -> TestClient {
    TestClient::start(&app.build(tower_sessions::MemoryStore::default()).unwrap()).await
}

#[tokio::test]
async fn each_app_classifies_its_errors_with_its_own_classifier() {
    let with = start(app(Some(classify), None)).await;
    let without = start(app(None, None)).await;
    let r = with.call(FAIL, &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("database_unavailable"));
    let r = without.call(FAIL, &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("internal"));
    // The first app is unchanged by the second.
    let r = with.call(FAIL, &[]).await;
    assert_eq!(r.error_code().as_deref(), Some("database_unavailable"));
}

#[tokio::test]
async fn each_app_scans_against_its_own_registry() {
    portcullis::unique_value(GLOBAL_SECRET, "a default-registry value").unwrap();
    let own = Arc::new(Registry::new(64));
    own.add([APP_SECRET], "app a's key").unwrap();
    let a = start(app(None, Some(own.clone()))).await;
    let b = start(app(None, None)).await;

    // App A's responses carry a value of its registry: refused, action and page.
    let r = a.call(SAY, &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(!r.text().contains(APP_SECRET), "{}", r.text());
    let r = a.get("/page").await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(!r.text().contains(APP_SECRET), "{}", r.text());

    // App B scans against the default registry, which has the other value.
    let r = b.call(SAY, &[]).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(!r.text().contains(GLOBAL_SECRET), "{}", r.text());
    let r = b.get("/page").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(APP_SECRET), "not in B's registry");

    // Once A forgets its value, A's page passes; B is unaffected throughout.
    assert!(own.forget(APP_SECRET));
    let r = a.get("/page").await;
    assert_eq!(r.status, 200, "{}", r.text());
}
