//! Declarations cannot drift from behaviour: an action that declares
//! `update_tag:x` and returns successfully without updating `x` (or a tag
//! `x:…`) is caught — logged at error level and counted in the
//! `portcullis_declared_tag_not_updated` metric — while one that keeps its
//! promise, and a failed call (whose effects are never applied), are not.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use portcullis::prelude::*;
use portcullis::testing::TestClient;
use portcullis::{Config, MasterSecret, Portcullis};
use serde::Deserialize;

#[derive(Deserialize, garde::Validate)]
struct Nothing {}

const DRIFTED: ActionRef<Nothing, ()> = ActionRef::new("drifted");
const KEPT: ActionRef<Nothing, ()> = ActionRef::new("kept");
const LOOKALIKE: ActionRef<Nothing, ()> = ActionRef::new("lookalike");
const FAILED: ActionRef<Nothing, ()> = ActionRef::new("failed");

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

fn log_text() -> String {
    String::from_utf8_lossy(&LOG.get_or_init(Default::default).lock().unwrap()).into_owned()
}

fn count(metrics: &str, action: &str) -> Option<String> {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("portcullis_declared_tag_not_updated_total{")
                && l.contains(&format!("action=\"{action}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().to_owned())
}

#[tokio::test]
async fn declared_tag_not_bumped_is_caught() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| LogWriter)
        .with_ansi(false)
        .with_env_filter("portcullis=error")
        .try_init();
    let app = Portcullis::new(
        Config::new(MasterSecret::from_bytes(vec![5; 32]).unwrap()),
        (),
    )
    .actions(|a| {
        a.add(
            action(DRIFTED)
                .public()
                .limit(per_ip(100).per_minute())
                .mutates(&["update_tag:things"])
                .handler(|_: Cx<()>, _: MaybeViewer, _: Valid<Nothing>| async move { Ok(()) }),
        )
        .add(
            action(KEPT)
                .public()
                .limit(per_ip(100).per_minute())
                .mutates(&["update_tag:things"])
                .handler(|cx: Cx<()>, _: MaybeViewer, _: Valid<Nothing>| async move {
                    cx.update_tag("things:7");
                    Ok(())
                }),
        )
        .add(
            // `things-archive:1` is another family, not `things`.
            action(LOOKALIKE)
                .public()
                .limit(per_ip(100).per_minute())
                .mutates(&["update_tag:things"])
                .handler(|cx: Cx<()>, _: MaybeViewer, _: Valid<Nothing>| async move {
                    cx.update_tag("things-archive:1");
                    Ok(())
                }),
        )
        .add(
            action(FAILED)
                .public()
                .limit(per_ip(100).per_minute())
                .mutates(&["update_tag:things"])
                .handler(|_: Cx<()>, _: MaybeViewer, _: Valid<Nothing>| async move {
                    Err::<(), _>(ActionError::form("no"))
                }),
        );
    })
    .build(tower_sessions::MemoryStore::default())
    .unwrap();
    let client = TestClient::start(&app).await;
    for action in [DRIFTED, DRIFTED, KEPT, LOOKALIKE, FAILED] {
        client.call(action, &[]).await;
    }
    let metrics = app.metrics().encode();
    assert_eq!(
        count(&metrics, "drifted").as_deref(),
        Some("2"),
        "{metrics}"
    );
    assert_eq!(
        count(&metrics, "lookalike").as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(count(&metrics, "kept"), None, "{metrics}");
    assert_eq!(count(&metrics, "failed"), None, "{metrics}");
    let log = log_text();
    assert!(
        log.contains("ERROR") && log.contains("drifted") && log.contains("update_tag:things"),
        "{log}"
    );
    assert!(
        !log.contains("action=\"kept\"") && !log.contains("action=kept"),
        "{log}"
    );
}
