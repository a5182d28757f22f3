//! The audit log off the request path (`src/audit.rs`): rows are queued
//! before the response and written in batches, and still never lost — not
//! at shutdown, not when the queue is full, not when a write fails.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use demo::audit::AuditQueue;
use demo::db::Db;
use portcullis::AuditEvent;
use portcullis::wire;

/// Rows per request id in `table`.
async fn rows_by_request(db: &Db, table: &str) -> HashMap<String, i64> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(&format!(
        "SELECT request_id, COUNT(*) FROM {table} GROUP BY request_id"
    ))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, n)| (id.unwrap_or_default(), n))
        .collect()
}

fn event(request_id: String, user: i64) -> AuditEvent {
    AuditEvent {
        action: "projects.rename",
        viewer: Some(user),
        record: Some(format!("project:{user}")),
        request_id,
        at: SystemTime::now(),
    }
}

/// The real binary, SIGTERM right after the last acknowledgement: every
/// rename the server acknowledged has its audit row, exactly once, when the
/// database is opened again — including those still queued (or still in
/// flight) when the signal came. To make sure rows *are* still queued when
/// the server has drained its requests, the audit table is renamed away
/// with the signal and back 300 ms later: the writer's inserts fail and are
/// retried meanwhile (renames are unaffected), so the rows land only if
/// shutdown waits for the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_mutations_keep_their_audit_rows_across_sigterm() {
    let bin = env!("CARGO_BIN_EXE_demo");
    let dir = std::env::temp_dir().join(format!("portcullis-audit-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.join("demo.db").display());
    let env = |c: &mut Command| {
        c.env("PORTCULLIS_DATA_DIR", &dir)
            .env(
                "PORTCULLIS_SECRET",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            )
            .env("DATABASE_URL", &url)
            .env("DEMO_RENAME_LIMIT", "1000000000")
            .env("RUST_LOG", "info,sqlx=warn")
            .env_remove("REDIS_URL");
    };
    let mut seed = Command::new(bin);
    env(&mut seed);
    let seeded = seed.args(["seed", "--bench"]).output().unwrap();
    assert!(seeded.status.success(), "{seeded:?}");
    let sessions: Vec<(String, i64)> = String::from_utf8(seeded.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[2].parse().unwrap())
        })
        .collect();
    let mut manifest = Command::new(bin);
    env(&mut manifest);
    let manifest = manifest.args(["manifest", "--json"]).output().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    let rename = manifest["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "projects.rename")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut serve = Command::new(bin);
    env(&mut serve);
    let mut server = serve
        .env("PORTCULLIS_ADDR", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log: wait for the address, then keep draining it (a full pipe
    // would stall the server).
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    let stderr = server.stderr.take().unwrap();
    let drain = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let addr = loop {
        let line = lines_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("demo starts");
        if let Some(rest) = line.split("demo listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let origin = format!("http://{addr}");
    let endpoint = format!("{origin}{}{rename}", wire::ACTION_PREFIX);

    // 8 workers rename their own projects; the worker whose answer is the
    // 300th acknowledgement sends SIGTERM at once, while the others still
    // have requests in flight.
    const SIGNAL_AT: usize = 300;
    let acked = Arc::new(AtomicUsize::new(0));
    let locker = {
        use sqlx::Connection;
        Arc::new(tokio::sync::Mutex::new(
            sqlx::SqliteConnection::connect(&url).await.unwrap(),
        ))
    };
    let pid = server.id();
    let http = reqwest::Client::new();
    let mut workers = Vec::new();
    for (w, (cookie, project)) in sessions.iter().take(8).cloned().enumerate() {
        let (http, endpoint, origin, acked, locker) = (
            http.clone(),
            endpoint.clone(),
            origin.clone(),
            acked.clone(),
            locker.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..200usize {
                let sent = http
                    .post(&endpoint)
                    .header("Origin", &origin)
                    .header("Accept", "application/json")
                    .header("Cookie", &cookie)
                    .form(&[
                        ("projectId", project.to_string()),
                        ("name", format!("Renamed {w}-{i}")),
                    ])
                    .send()
                    .await;
                // Refused or reset once the server stops accepting.
                let Ok(r) = sent else { break };
                if r.status() != 200 {
                    break;
                }
                let id = r.headers()[wire::header::REQUEST_ID]
                    .to_str()
                    .unwrap()
                    .to_owned();
                // The body too: the acknowledgement is the whole answer.
                if r.bytes().await.is_err() {
                    break;
                }
                ids.push(id);
                if acked.fetch_add(1, Ordering::AcqRel) + 1 == SIGNAL_AT {
                    let mut admin = locker.lock().await;
                    sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_away")
                        .execute(&mut *admin)
                        .await
                        .unwrap();
                    let killed = Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status()
                        .unwrap();
                    assert!(killed.success());
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    sqlx::query("ALTER TABLE audit_log_away RENAME TO audit_log")
                        .execute(&mut *admin)
                        .await
                        .unwrap();
                }
            }
            ids
        }));
    }
    let mut acknowledged = Vec::new();
    for w in workers {
        acknowledged.extend(w.await.unwrap());
    }
    let status = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "demo exited with {status}");
    let log = drain.join().unwrap();
    assert!(
        acknowledged.len() >= SIGNAL_AT,
        "{} acknowledged",
        acknowledged.len()
    );
    assert!(
        log.iter().any(|l| l.contains("audit log flushed")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("audit row not")),
        "a row bypassed the table: {log:#?}"
    );

    // A fresh process on the same file.
    let db = Db::connect(&url).await.unwrap();
    let stored = rows_by_request(&db, "audit_log").await;
    for id in &acknowledged {
        assert_eq!(
            stored.get(id),
            Some(&1),
            "acknowledged rename {id} has no audit row (of {} acknowledged)",
            acknowledged.len()
        );
    }
    assert!(stored.values().all(|&n| n == 1));
    db.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The flood test of the queue's bound: many writers against a queue of 8.
/// Everyone waits for room in turn (the queue never holds more than its
/// capacity), and every event — the abuser's and the bystander's — is
/// written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_queue_flood_delays_but_never_drops() {
    let db = common::fresh_db().await;
    let queue = AuditQueue::start(db.dal(), 8);
    let mut tasks = Vec::new();
    for t in 0..32 {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                queue.record(event(format!("flood-{t}-{i}"), 1)).await;
            }
        }));
    }
    // A bystander's mutations in the middle of the flood: acknowledged after
    // a wait, never dropped.
    let bystander = {
        let queue = queue.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                queue.record(event(format!("bystander-{i}"), 2)).await;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    bystander.await.unwrap();
    queue.flush().await;
    assert!(queue.high_water() <= queue.capacity());
    assert_eq!(queue.high_water(), 8, "the flood filled the queue");
    let stored = rows_by_request(&db, "audit_log").await;
    assert_eq!(stored.len(), 32 * 100 + 20);
    assert!(stored.values().all(|&n| n == 1));
    for i in 0..20 {
        assert_eq!(stored.get(&format!("bystander-{i}")), Some(&1));
    }
}

/// A write that fails (here: the table is gone for a while) is retried until
/// it lands, once; meanwhile the rows wait in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_write_failure_is_retried_until_the_row_lands() {
    let db = common::fresh_db().await;
    let queue = AuditQueue::start(db.dal(), 64);
    sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_away")
        .execute(&db.pool)
        .await
        .unwrap();
    for i in 0..10 {
        queue.record(event(format!("during-outage-{i}"), 1)).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(rows_by_request(&db, "audit_log_away").await.is_empty());
    sqlx::query("ALTER TABLE audit_log_away RENAME TO audit_log")
        .execute(&db.pool)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), queue.flush())
        .await
        .expect("the retry lands once the table is back");
    let stored = rows_by_request(&db, "audit_log").await;
    assert_eq!(stored.len(), 10);
    assert!(stored.values().all(|&n| n == 1));
}
