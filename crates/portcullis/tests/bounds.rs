//! Issue #16, items 3, 4, 7 and 9: state keyed by client input stays bounded
//! and canonical, connections cannot be hoarded, anonymous callers are
//! scoped per browser, and sealed values are bound to their field. Each test
//! sends the hostile traffic and asserts the refusal *and* the bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use maud::html;
use portcullis::app::ServeConfig;
use portcullis::prelude::*;
use portcullis::store::IdempotencyConfig as StoreConfig;
use portcullis::testing::{TestClient, TestResponse};
use portcullis::wire;
use portcullis::{CacheConfig, Config, MasterSecret, Page, Portcullis, RenderCx, fragment};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Default)]
struct State {
    runs: Arc<AtomicU64>,
}

impl State {
    fn runs(&self) -> u64 {
        self.runs.load(Ordering::SeqCst)
    }
}

#[derive(Deserialize, garde::Validate)]
struct Note {
    #[garde(length(min = 1, max = 200))]
    text: String,
}

#[derive(Deserialize, garde::Validate)]
struct Size {
    #[garde(range(min = 1, max = 1_000_000))]
    bytes: usize,
}

#[derive(Deserialize, garde::Validate)]
struct Pair {
    #[garde(skip)]
    a: Sealed<i64>,
    #[garde(skip)]
    b: Sealed<i64>,
}

#[derive(Deserialize, garde::Validate)]
struct Nothing {}

#[derive(Deserialize, garde::Validate)]
struct Target {
    #[garde(length(min = 1, max = 100))]
    to: String,
}

#[derive(Serialize, Dto)]
struct Noted {
    n: u64,
    text: String,
}

#[derive(Serialize, Dto)]
struct Blob {
    data: String,
}

#[derive(Serialize, Dto)]
struct Pairs {
    a: i64,
    b: i64,
}

fn config() -> Config {
    Config::new(MasterSecret::from_bytes(vec![16; 32]).unwrap())
}

fn redis_config(test: &str) -> Config {
    let mut c = config();
    let url = std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    c.redis_url = Some(portcullis::app::RedisUrl(url));
    c.redis_prefix = format!(
        "portcullis-test:bounds:{test}:{}:{:016x}:",
        std::process::id(),
        rand::random::<u64>()
    );
    c
}

const NOTE_ADD: ActionRef<Note, Noted> = ActionRef::new("note.add");
const BLOB_MAKE: ActionRef<Size, Blob> = ActionRef::new("blob.make");
const PAIR_PICK: ActionRef<Pair, Pairs> = ActionRef::new("pair.pick");
const PATHS_REVALIDATE: ActionRef<Target, ()> = ActionRef::new("paths.revalidate");
const NOOP: ActionRef<Nothing, ()> = ActionRef::new("noop");

fn build(config: Config, state: State, cache: CacheConfig, idem: StoreConfig) -> portcullis::App {
    let pages = Router::new()
        .route(
            "/p/{id}",
            get(|page: Page, Path(id): Path<String>| async move {
                // The app's id parser: `0042` is 42.
                let id: i64 = id.parse().unwrap_or(0);
                html! { (page.fragment(&format!("row:{id}")).await) }
            }),
        )
        .route(
            "/pair",
            get(|page: Page| async move {
                html! { (page.form(PAIR_PICK).bind_sealed("a", 1).bind_sealed("b", 2).body(html! {})) }
            }),
        )
        .route("/", get(|| async { "home" }));
    Portcullis::new(config, state.clone())
        .actions(|a| {
            a.add(
                action(NOTE_ADD)
                    .public()
                    .limit(per_ip(1_000_000).per_minute())
                    .mutates(&["update_tag:rows"])
                    .idempotent()
                    .handler(
                        |cx: Cx<State>, _: MaybeViewer, input: Valid<Note>| async move {
                            let n = cx.state().runs.fetch_add(1, Ordering::SeqCst) + 1;
                            cx.update_tag("rows");
                            Ok(Noted {
                                n,
                                text: input.text.clone(),
                            })
                        },
                    ),
            )
            .add(
                action(BLOB_MAKE)
                    .public()
                    .limit(per_ip(1_000_000).per_minute())
                    .mutates(&["none"])
                    .idempotent()
                    .handler(
                        |cx: Cx<State>, _: MaybeViewer, input: Valid<Size>| async move {
                            cx.state().runs.fetch_add(1, Ordering::SeqCst);
                            Ok(Blob {
                                data: "x".repeat(input.bytes),
                            })
                        },
                    ),
            )
            .add(
                action(PAIR_PICK)
                    .public()
                    .limit(per_ip(1_000_000).per_minute())
                    .mutates(&["none"])
                    .idempotent()
                    .handler(
                        |cx: Cx<State>, _: MaybeViewer, input: Valid<Pair>| async move {
                            cx.state().runs.fetch_add(1, Ordering::SeqCst);
                            Ok(Pairs {
                                a: *input.a,
                                b: *input.b,
                            })
                        },
                    ),
            )
            .add(
                action(PATHS_REVALIDATE)
                    .public()
                    .limit(per_ip(1_000_000).per_minute())
                    .mutates(&["revalidate_path"])
                    .idempotent()
                    .handler(
                        |cx: Cx<State>, _: MaybeViewer, input: Valid<Target>| async move {
                            cx.revalidate_path(input.to.clone());
                            Ok(())
                        },
                    ),
            )
            .add(
                action(NOOP)
                    .public()
                    .limit(per_ip(1_000_000).per_minute())
                    .mutates(&["none"])
                    .idempotent()
                    .handler(
                        |_: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move { Ok(()) },
                    ),
            );
        })
        .fragments(|f| {
            f.add(fragment("row").tags(|_, _| vec!["rows".into()]).shared(
                |_: RenderCx<State>, param: String| async move {
                    Ok(html! { p { "row " (param) " " (".".repeat(600)) } })
                },
            ));
        })
        .render_cache(cache)
        .idempotency_store(idem)
        .pages(pages)
        .build(tower_sessions::MemoryStore::default())
        .expect("app builds")
}

async fn start() -> (TestClient, State) {
    start_with(config(), StoreConfig::default()).await
}

async fn start_with(config: Config, idem: StoreConfig) -> (TestClient, State) {
    let state = State::default();
    let app = build(config, state.clone(), CacheConfig::default(), idem);
    (TestClient::start(&app).await, state)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A JSON-client call with extra headers.
async fn call_with<In, Out>(
    c: &TestClient,
    action: ActionRef<In, Out>,
    body: &str,
    headers: &[(&str, &str)],
) -> TestResponse {
    let mut req = c
        .post(&c.path(action))
        .header("sec-fetch-site", "same-origin")
        .header("origin", c.origin())
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    TestResponse::read(req.send().await.expect("reached the server")).await
}

fn assert_refused(r: &TestResponse, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some(code), "{}", r.text());
}

// ---------------------------------------------------------------------------
// 3a. The client-named fragment list

#[tokio::test]
async fn fragment_header_flood_is_capped() {
    let (c, state) = start().await;
    // One key, named a thousand times in a ~6 KB header: one fragment back.
    let dup = "row:1 ".repeat(1000);
    let r = call_with(&c, NOTE_ADD, "text=a", &[(wire::header::FRAGMENTS, &dup)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let fragments = r.json()["fragments"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert_eq!(fragments.len(), 1, "duplicates are rendered once");
    assert!(r.body.len() < 4 * 1024, "{} bytes", r.body.len());

    // Thousands of distinct keys in a 60 KB header: at most MAX_REQUESTED
    // fragments, under the byte cap.
    let many: String = (0..8_000).map(|i| format!("row:{i} ")).collect();
    let r = call_with(&c, NOTE_ADD, "text=b", &[(wire::header::FRAGMENTS, &many)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let fragments = r.json()["fragments"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(fragments.len() <= portcullis::fragment::MAX_REQUESTED);
    assert!(
        r.body.len() <= portcullis::fragment::MAX_AFFECTED_BYTES + 64 * 1024,
        "{} bytes",
        r.body.len()
    );
    eprintln!(
        "fragment flood: {} distinct keys requested → {} fragments, {} bytes",
        8_000,
        fragments.len(),
        r.body.len()
    );
    assert_eq!(state.runs(), 2);
}

#[test]
fn requested_keys_are_deduplicated_validated_and_capped() {
    use portcullis::fragment::{MAX_REQUESTED, MAX_REQUESTED_BYTES, requested_keys};
    assert_eq!(requested_keys("a:1 a:1  b:2 <x> a:1"), vec!["a:1", "b:2"]);
    let long: String = (0..10_000).map(|i| format!("k:{i} ")).collect();
    let keys = requested_keys(&long);
    assert_eq!(keys.len(), MAX_REQUESTED);
    let huge = format!("{} tail:1", "k:1 ".repeat(MAX_REQUESTED_BYTES));
    assert!(
        !requested_keys(&huge).contains(&"tail:1"),
        "past the byte cap"
    );
}

// ---------------------------------------------------------------------------
// 3c. The page-path map behind revalidate_path

#[test]
fn paths_are_canonical() {
    use portcullis::fragment::canonical_path;
    for (raw, want) in [
        ("/p/0042", "/p/42"),
        ("/p/42/", "/p/42"),
        ("//p//42?x=1", "/p/42"),
        ("/p/%34%32", "/p/42"),
        ("/p/./0", "/p/0"),
        ("/p/000", "/p/0"),
        ("/", "/"),
        ("", "/"),
        ("/p/abc007", "/p/abc007"),
    ] {
        assert_eq!(canonical_path(raw), want, "{raw}");
    }
}

#[tokio::test]
async fn padded_path_ids_do_not_grow_the_path_map() {
    let (c, _) = start().await;
    let engine = c.app().fragments().clone();
    for zeros in 0..300 {
        let path = format!("/p/{}42", "0".repeat(zeros));
        assert_eq!(c.get(&path).await.status, 200, "{path}");
    }
    let (paths, _) = engine.path_map_usage();
    assert_eq!(paths, 1, "300 spellings of one page are one entry");
    // revalidate_path("/p/42") finds what "/p/0000042" rendered.
    let before = engine.background_renders();
    let r = c.call(PATHS_REVALIDATE, &[("to", "/p/42")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.get("/p/0000042").await.status, 200);
    assert_eq!(engine.background_renders(), before + 1, "marked stale");
}

#[tokio::test]
async fn distinct_path_flood_stays_within_the_path_map_bound() {
    let state = State::default();
    let bound = 256 * 1024;
    let app = build(
        config(),
        state,
        CacheConfig {
            max_path_bytes: bound,
            ..CacheConfig::default()
        },
        StoreConfig::default(),
    );
    let c = TestClient::start(&app).await;
    let engine = c.app().fragments().clone();
    let rss_before = rss_kib();
    let n = 5_000;
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let futures = chunk.iter().map(|i| {
            let c = c.clone();
            async move { c.get(&format!("/p/{}", i + 1)).await.status }
        });
        for status in futures::future::join_all(futures).await {
            assert_eq!(status, 200);
        }
    }
    let (paths, bytes) = engine.path_map_usage();
    eprintln!(
        "path flood: {n} distinct paths → {paths} remembered, {bytes} bytes (bound {bound}); RSS {} → {} KiB",
        rss_before,
        rss_kib()
    );
    assert!(bytes <= bound, "{bytes} > {bound}");
    assert!(paths < n as u64);
    // A page the map forgot is still revalidated (everything goes soft).
    let first = "/p/1";
    let before = engine.background_renders();
    let r = c.call(PATHS_REVALIDATE, &[("to", first)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.get(first).await.status, 200);
    assert!(engine.background_renders() > before, "stale after eviction");
}

// ---------------------------------------------------------------------------
// 3b. The idempotency store

async fn idempotency_key_reused_with_another_body_is_refused_on(config: Config) {
    let (c, state) = start_with(config, StoreConfig::default()).await;
    let key = [(wire::header::IDEMPOTENCY_KEY, "reuse-1")];
    let first = call_with(&c, NOTE_ADD, "text=pay%2010", &key).await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(state.runs(), 1);
    // The same request again: the stored result, nothing runs.
    let again = call_with(&c, NOTE_ADD, "text=pay%2010", &key).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.header(wire::header::IDEMPOTENT_REPLAYED),
        Some("true")
    );
    assert_eq!(again.result(), first.result());
    // Another body under the same key: refused, not answered with the first.
    let other = call_with(&c, NOTE_ADD, "text=pay%201000", &key).await;
    assert_refused(&other, 422, "idempotency_key_reused");
    assert!(!other.text().contains("pay 10"), "{}", other.text());
    assert_eq!(state.runs(), 1, "nothing ran for the reused key");
    // A multipart retry of the first request (new boundary) still replays.
    let mp = |boundary: &str, text: &str| {
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"text\"\r\n\r\n{text}\r\n--{boundary}--\r\n"
        )
    };
    let send_mp = |boundary: &'static str, text: &'static str| {
        let c = c.clone();
        let body = mp(boundary, text);
        async move {
            let req = c
                .post(&c.path(NOTE_ADD))
                .header("sec-fetch-site", "same-origin")
                .header("origin", c.origin())
                .header("accept", "application/json")
                .header(wire::header::IDEMPOTENCY_KEY, "reuse-mp")
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body);
            TestResponse::read(req.send().await.unwrap()).await
        }
    };
    assert_eq!(send_mp("AAAA", "hello").await.status, 200);
    let retry = send_mp("BBBBBB", "hello").await;
    assert_eq!(
        retry.header(wire::header::IDEMPOTENT_REPLAYED),
        Some("true"),
        "{}",
        retry.text()
    );
    assert_refused(
        &send_mp("CCCC", "changed").await,
        422,
        "idempotency_key_reused",
    );
    assert_eq!(state.runs(), 2);
}

#[tokio::test]
async fn idempotency_key_reused_with_another_body_is_refused() {
    idempotency_key_reused_with_another_body_is_refused_on(config()).await;
}

#[tokio::test]
async fn idempotency_key_reused_with_another_body_is_refused_on_redis() {
    idempotency_key_reused_with_another_body_is_refused_on(redis_config("reuse")).await;
}

async fn large_results_are_not_stored_on(config: Config) {
    let (c, state) = start_with(config, StoreConfig::default()).await;
    let key = [(wire::header::IDEMPOTENCY_KEY, "big-1")];
    let size = (portcullis::store::MAX_STORED_BODY * 2).to_string();
    let body = form(&[("bytes", &size)]);
    let first = call_with(&c, BLOB_MAKE, &body, &key).await;
    assert_eq!(first.status, 200);
    let replay = call_with(&c, BLOB_MAKE, &body, &key).await;
    assert_eq!(replay.status.as_u16(), 409, "{} bytes", replay.body.len());
    assert_refused(&replay, 409, "idempotency_result_unavailable");
    assert!(replay.body.len() < 2048, "the large result is not replayed");
    assert_eq!(state.runs(), 1, "applied once");
    if let Some((_, bytes)) = c.app().idempotency().memory_usage() {
        assert!(bytes < 4096, "only the hash was stored: {bytes} bytes");
    }
}

#[tokio::test]
async fn large_idempotent_results_are_not_stored() {
    large_results_are_not_stored_on(config()).await;
}

#[tokio::test]
async fn large_idempotent_results_are_not_stored_on_redis() {
    large_results_are_not_stored_on(redis_config("big")).await;
}

#[tokio::test]
async fn idempotency_store_flood_stays_bounded() {
    let bound: u64 = 512 * 1024;
    let (c, state) = start_with(config(), StoreConfig { max_bytes: bound }).await;
    let rss_before = rss_kib();
    let n = 4_000usize;
    // Each result is ~4 KB: unbounded, the store would hold ~16 MB.
    let body = form(&[("bytes", "4000")]);
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let futures = chunk.iter().map(|i| {
            let c = c.clone();
            let body = body.clone();
            async move {
                let key = format!("flood-{i}");
                call_with(
                    &c,
                    BLOB_MAKE,
                    &body,
                    &[(wire::header::IDEMPOTENCY_KEY, &key)],
                )
                .await
                .status
            }
        });
        for status in futures::future::join_all(futures).await {
            assert_eq!(status, 200);
        }
    }
    let (entries, bytes) = c.app().idempotency().memory_usage().unwrap();
    eprintln!(
        "idempotency flood: {n} keys × 4 KB → {entries} entries, {bytes} bytes (bound {bound}); RSS {rss_before} → {} KiB",
        rss_kib()
    );
    assert!(bytes <= bound, "{bytes} > {bound}");
    assert!(entries < n as u64);
    assert_eq!(state.runs(), n as u64);
}

#[tokio::test]
async fn idempotency_store_flood_on_redis_caps_each_entry() {
    // On Redis the per-entry cap and the TTL are the bound: a flood of large
    // results stores hashes only, never the bodies.
    let config = redis_config("flood");
    let prefix = config.redis_prefix.clone();
    let url = config.redis_url.clone().unwrap().0;
    let (c, state) = start_with(config, StoreConfig::default()).await;
    let size = (portcullis::store::MAX_STORED_BODY + 1).to_string();
    let body = form(&[("bytes", &size)]);
    let n = 200;
    for i in 0..n {
        let key = format!("rflood-{i}");
        let r = call_with(
            &c,
            BLOB_MAKE,
            &body,
            &[(wire::header::IDEMPOTENCY_KEY, &key)],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(state.runs(), n);
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}idem:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), n as usize);
    let mut total = 0usize;
    for k in &keys {
        let len: usize = redis::cmd("STRLEN")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(len < 1024, "{k}: {len} bytes stored");
        assert!(ttl > 0, "{k} has a TTL");
        total += len;
    }
    eprintln!("redis idempotency flood: {n} large results → {total} bytes stored");
}

// ---------------------------------------------------------------------------
// 7. Anonymous scoping and sealed fields

#[tokio::test]
async fn two_browsers_behind_one_nat_do_not_share_idempotent_results() {
    let (a, state) = start().await;
    let b = a.new_session();
    // Both browsers load a page first (as they would), getting their scope.
    for browser in [&a, &b] {
        assert_eq!(browser.get("/").await.status, 200);
        assert!(
            browser
                .cookies()
                .unwrap_or_default()
                .contains(&format!("{}=", wire::cookie::ANON))
        );
    }
    let key = [(wire::header::IDEMPOTENCY_KEY, "same-key")];
    let first = call_with(&a, NOTE_ADD, "text=mine", &key).await;
    assert_eq!(first.status, 200);
    // Same address, same key, same body: B's request runs for B.
    let second = call_with(&b, NOTE_ADD, "text=mine", &key).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.header(wire::header::IDEMPOTENT_REPLAYED), None);
    assert_eq!(second.result()["n"], 2);
    assert_eq!(state.runs(), 2);
    // Each browser's own retry is still replayed.
    let retry = call_with(&b, NOTE_ADD, "text=mine", &key).await;
    assert_eq!(
        retry.header(wire::header::IDEMPOTENT_REPLAYED),
        Some("true")
    );
    assert_eq!(state.runs(), 2);
    // A forged scope cookie is no scope: it replays nobody's result, and
    // the next page replaces it.
    let forger = a.new_session();
    forger.set_cookie(&format!(
        "{}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        wire::cookie::ANON
    ));
    let r = call_with(&forger, NOTE_ADD, "text=mine", &key).await;
    assert_eq!(r.header(wire::header::IDEMPOTENT_REPLAYED), None);
    assert_eq!(state.runs(), 3);
    let page = forger.get("/").await;
    assert!(
        page.header("set-cookie")
            .unwrap_or_default()
            .contains(&format!("{}=", wire::cookie::ANON))
    );
}

#[tokio::test]
async fn swapped_sealed_fields_are_refused() {
    let (c, state) = start().await;
    let page = c.get("/pair").await.text();
    let value = |name: &str| -> String {
        let at = page
            .find(&format!("name=\"{name}\""))
            .expect("field on page");
        let rest = &page[at..];
        let v = rest.find("value=\"").unwrap() + 7;
        rest[v..v + rest[v..].find('"').unwrap()].to_owned()
    };
    let (a, b) = (value("a"), value("b"));
    let ok = c.call(PAIR_PICK, &[("a", &a), ("b", &b)]).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.result(), serde_json::json!({"a": 1, "b": 2}));
    for swapped in [
        vec![("a", b.as_str()), ("b", a.as_str())],
        vec![("a", a.as_str()), ("b", a.as_str())],
    ] {
        let r = c.call(PAIR_PICK, &swapped).await;
        assert_refused(&r, 400, "invalid_bound_argument");
        let r = c
            .call_json(
                PAIR_PICK,
                &serde_json::json!({"a": swapped[0].1, "b": swapped[1].1}),
            )
            .await;
        assert_refused(&r, 400, "invalid_bound_argument");
    }
    assert_eq!(state.runs(), 1);
    // Another browser (same address, no session either) cannot use them.
    let other = c.new_session();
    assert_eq!(other.get("/").await.status, 200);
    let r = other.call(PAIR_PICK, &[("a", &a), ("b", &b)]).await;
    assert_refused(&r, 400, "invalid_bound_argument");
    assert_eq!(state.runs(), 1);
}

// ---------------------------------------------------------------------------
// 4. Connection-level abuse

async fn serve(config: ServeConfig) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/", get(|| async { "hello" }));
    tokio::spawn(async move {
        let _ = portcullis::app::serve_with(listener, router, config, std::future::pending()).await;
    });
    addr
}

/// Waits until the server closes `stream` (EOF or reset); returns how long
/// that took, or `None` if it stayed open for `max`.
async fn closed_within(stream: &mut tokio::net::TcpStream, max: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = max.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn get_from(source: &str, addr: SocketAddr) -> std::io::Result<String> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    let mut stream = socket.connect(addr).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    Ok(out)
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let addr = serve(ServeConfig {
        header_read_timeout: Duration::from_millis(400),
        keep_alive_idle: Duration::from_secs(60),
        ..ServeConfig::default()
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: a")
            .await
            .unwrap();
        slow.push(s);
    }
    // Keep trickling bytes: the deadline is for the whole header, not per byte.
    for s in &mut slow {
        s.write_all(b"b").await.unwrap();
    }
    for s in &mut slow {
        let took = closed_within(s, Duration::from_secs(3))
            .await
            .expect("half-sent headers are closed");
        assert!(took < Duration::from_secs(3));
    }
    // Whole requests are still served.
    assert!(get_from("127.0.0.1", addr).await.unwrap().contains("hello"));
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let addr = serve(ServeConfig {
        header_read_timeout: Duration::from_secs(30),
        keep_alive_idle: Duration::from_millis(300),
        ..ServeConfig::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
    // Kept alive, then idle: closed after the idle timeout.
    let took = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(took >= Duration::from_millis(200), "{took:?}");
    // A connection that never sends anything is closed too.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5))
            .await
            .is_some()
    );
}

/// A client that asks for a large streamed response and never reads it:
/// hyper stops taking the body once the socket buffers are full, and the
/// request stayed in flight (so the connection was never idle) forever. A
/// stalled response ends the connection and frees its slot. (A response
/// handed over whole ends its request at once; the idle timeout and the
/// close grace then drop the connection.)
#[tokio::test]
async fn a_response_the_client_never_reads_frees_its_connection_slot() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/", get(|| async { "hello" })).route(
        "/big",
        get(|| async {
            // Streamed in 64 KiB chunks, as a file download is.
            let chunks = (0..1024).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 << 10]));
            axum::body::Body::from_stream(futures::stream::iter(chunks))
        }),
    );
    let config = ServeConfig {
        keep_alive_idle: Duration::from_secs(60),
        stall_timeout: Duration::from_millis(500),
        max_connections_per_ip: 1,
        ..ServeConfig::default()
    };
    tokio::spawn(async move {
        let _ = portcullis::app::serve_with(listener, router, config, std::future::pending()).await;
    });
    let mut reader = tokio::net::TcpStream::connect(addr).await.unwrap();
    reader
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // Never read. While it holds the address's one slot, another
    // connection from it is closed at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = get_from("127.0.0.1", addr).await;
    assert!(
        refused
            .as_ref()
            .map_or(true, |page| !page.contains("hello")),
        "the slot is held: {refused:?}"
    );
    let started = Instant::now();
    loop {
        if let Ok(page) = get_from("127.0.0.1", addr).await
            && page.contains("hello")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the stalled download still holds the slot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Closed with a reset, so the kernel dropped the MBs it still held for
    // a reader that never reads (a FIN would have queued behind them).
    let mut sink = vec![0u8; 1 << 20];
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match reader.read(&mut sink).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(e.kind()),
            }
        }
    })
    .await
    .expect("the connection ended");
    assert_eq!(ended, Err(std::io::ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn one_ip_cannot_take_every_connection() {
    let per_ip = 8;
    let addr = serve(ServeConfig {
        header_read_timeout: Duration::from_secs(30),
        keep_alive_idle: Duration::from_secs(30),
        max_connections_per_ip: per_ip,
        ..ServeConfig::default()
    })
    .await;
    // The attacker at 127.0.0.1 opens its share and holds it...
    let mut held = Vec::new();
    for _ in 0..per_ip {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...the next one from the same address is closed at once...
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(2))
            .await
            .is_some(),
        "the N+1th connection from one address is refused"
    );
    // ...while another address is still served.
    let other = get_from("127.0.0.2", addr)
        .await
        .expect("another address is served");
    assert!(other.contains("hello"), "{other}");
    // Once the attacker lets go, its address is served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(get_from("127.0.0.1", addr).await.unwrap().contains("hello"));
}

#[tokio::test]
async fn connection_cap_holds_under_a_flood_of_silent_connections() {
    let max = 64;
    let addr = serve(ServeConfig {
        header_read_timeout: Duration::from_secs(2),
        keep_alive_idle: Duration::from_secs(2),
        max_connections: max,
        max_connections_per_ip: 0,
        ..ServeConfig::default()
    })
    .await;
    let rss_before = rss_kib();
    let mut flood = Vec::new();
    for _ in 0..500 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            flood.push(s);
        }
    }
    eprintln!(
        "500 silent connections (cap {max}): RSS {rss_before} → {} KiB",
        rss_kib()
    );
    // All of them are closed by the timeouts; afterwards the server serves.
    let started = Instant::now();
    for s in &mut flood {
        assert!(closed_within(s, Duration::from_secs(30)).await.is_some());
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(flood);
    assert!(get_from("127.0.0.1", addr).await.unwrap().contains("hello"));
}

/// Issue #19: the session cache is keyed by the session id, which is client
/// input. Random cookie values are store misses that leave nothing behind
/// (only records the store vouched for enter), and a flood of sessions an
/// attacker did create (each under the sign-in limit in a real app) keeps
/// the cache within its byte bound without pushing out the sessions in use.
#[tokio::test]
async fn session_cookie_flood_leaves_the_session_cache_bounded_and_real_sessions_cached() {
    use portcullis::store::{CachedSessions, SessionCache, SessionCacheConfig};
    use tower_sessions::SessionStore;
    use tower_sessions::session::{Id, Record};

    let bound = 256 * 1024;
    let cache = Arc::new(SessionCache::new(
        &SessionCacheConfig {
            max_bytes: bound,
            ..SessionCacheConfig::default()
        },
        None,
    ));
    let store = CachedSessions::new(tower_sessions::MemoryStore::default(), cache.clone());
    let new_record = |user: u64| {
        let mut data = std::collections::HashMap::new();
        data.insert(
            "portcullis.identity".to_owned(),
            serde_json::json!({ "user_id": user, "roles": [], "stamp": "0123456789abcdef" }),
        );
        Record {
            id: Id::default(),
            data,
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        }
    };
    // A real user, reading their session on every request.
    let mut real = new_record(1);
    store.create(&mut real).await.unwrap();
    for _ in 0..20 {
        assert!(store.load(&real.id).await.unwrap().is_some());
    }
    let real_hits = cache.hits();

    // 100,000 random cookie values: each a store read, none cached.
    for _ in 0..100_000 {
        assert!(store.load(&Id::default()).await.unwrap().is_none());
    }
    assert_eq!(cache.entries(), 1, "unknown ids leave nothing behind");
    assert!(store.load(&real.id).await.unwrap().is_some());
    assert_eq!(
        cache.hits(),
        real_hits + 1,
        "the real session is still in memory"
    );

    // 100,000 sessions that do exist (an attacker who signs in over and
    // over), the real user active meanwhile.
    for i in 0..100_000u64 {
        let mut r = new_record(1_000 + i);
        store.create(&mut r).await.unwrap();
        if i % 100 == 0 {
            assert!(store.load(&real.id).await.unwrap().is_some());
        }
    }
    assert!(
        cache.bytes() <= bound,
        "{} bytes cached, bound {bound}",
        cache.bytes()
    );
    assert!(
        cache.entries() < 100_000 / 10,
        "{} entries",
        cache.entries()
    );
    let before = cache.hits();
    assert!(store.load(&real.id).await.unwrap().is_some());
    assert_eq!(
        cache.hits(),
        before + 1,
        "the session in use was not pushed out by one-off sessions"
    );
}

/// The same through the app: 2,000 requests with random session cookies
/// leave the app's session cache empty of them, and a signed-in user's
/// session is read from memory before and after.
#[tokio::test]
async fn random_session_cookies_over_http_do_not_enter_the_session_cache() {
    let store = tower_sessions::MemoryStore::default();
    // No account directory (development): the stamp check is not what is
    // under test here, the session record is.
    let app = Portcullis::new(config(), State::default())
        .pages(Router::new().route(
            "/me",
            get(|page: Page| async move {
                html! { (page.viewer().map(|v| v.id()).unwrap_or(0)) }
            }),
        ))
        .build(store.clone())
        .expect("app builds");
    let client = TestClient::start(&app).await;
    let cookie =
        portcullis::session::issue(&store, 42, Vec::new(), None, Duration::from_secs(3600))
            .await
            .unwrap();
    let name = portcullis::session::cookie_name(app.config());
    let http = reqwest::Client::new();
    let me = |value: String| {
        let req = http
            .get(client.url("/me"))
            .header("cookie", format!("{name}={value}"));
        async move { req.send().await.unwrap().text().await.unwrap() }
    };
    assert_eq!(me(cookie.clone()).await, "42");
    assert_eq!(me(cookie.clone()).await, "42");
    let cache = app.session_cache();
    let hits = cache.hits();
    assert!(hits >= 1, "the second request was served from memory");
    for _ in 0..2_000 {
        let random = tower_sessions::session::Id::default().to_string();
        assert_eq!(me(random).await, "0");
    }
    assert_eq!(cache.entries(), 1, "only the real session is cached");
    assert_eq!(me(cookie).await, "42");
    assert_eq!(cache.hits(), hits + 1);
}
