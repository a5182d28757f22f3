//! Issue #7: fragments, the render cache and revalidation, against real
//! servers (and a real Redis for the two-instance case).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use maud::html;
use portcullis::prelude::*;
use portcullis::testing::{TestClient, TestResponse};
use portcullis::wire;
use portcullis::{CacheConfig, Config, MasterSecret, Page, Portcullis, RenderCx, fragment};
use serde::{Deserialize, Serialize};

#[derive(Clone, Default)]
struct State {
    /// What the shared "counter" fragment shows; bumped by `counter.bump`.
    value: Arc<AtomicU64>,
    /// Per-user notes: user id → text.
    notes: Arc<std::sync::Mutex<std::collections::HashMap<i64, String>>>,
}

#[derive(Deserialize, garde::Validate)]
struct Nothing {}

#[derive(Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
struct Login {
    #[garde(range(min = 1))]
    user_id: i64,
}

#[derive(Deserialize, garde::Validate)]
struct Note {
    #[garde(length(min = 1, max = 100))]
    text: String,
}

#[derive(Deserialize, garde::Validate)]
struct Target {
    #[garde(length(min = 1, max = 100))]
    to: String,
}

#[derive(Serialize, Dto)]
struct Done {
    done: bool,
}

fn config() -> Config {
    Config::new(MasterSecret::from_bytes(vec![3; 32]).unwrap())
}

const LOGIN: ActionRef<Login, Done> = ActionRef::new("login");
const COUNTER_BUMP: ActionRef<Nothing, Done> = ActionRef::new("counter.bump");
const COUNTER_SET_NOW: ActionRef<Nothing, Done> = ActionRef::new("counter.set_now");
const NOTE_SAVE: ActionRef<Note, Done> = ActionRef::new("note.save");
const GO: ActionRef<Target, Done> = ActionRef::new("go");
const REFRESH: ActionRef<Nothing, Done> = ActionRef::new("refresh");
/// Bumps the tag `to` (hard).
const TAG_UPDATE: ActionRef<Target, Done> = ActionRef::new("tag.update");
/// `revalidate_path(to)`.
const PATH_REVALIDATE: ActionRef<Target, Done> = ActionRef::new("path.revalidate");

/// A public action with a rate limit no test reaches.
fn open<In, Out>(
    a: ActionRef<In, Out>,
) -> portcullis::ActionBuilder<portcullis::action::state::Public, In, Out> {
    action(a).public().limit(per_ip(10_000).per_minute())
}

fn build(config: Config, state: State, cache: CacheConfig) -> portcullis::App {
    build_on(config, state, cache, None)
}

/// [`build`] on the given stores (default: from the config).
fn build_on(
    config: Config,
    state: State,
    cache: CacheConfig,
    stores: Option<portcullis::store::Stores>,
) -> portcullis::App {
    let app = Portcullis::new(config, state.clone());
    let app = match stores {
        Some(stores) => app.stores(stores),
        None => app,
    };
    app.actions(|a| {
        a.add(open(LOGIN).handler(
            |cx: Cx<State>, _: MaybeViewer, i: Valid<Login>| async move {
                cx.auth().login(i.user_id, vec![]).await?;
                Ok(Done { done: true })
            },
        ))
        .add(open(COUNTER_BUMP).handler(
            |cx: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move {
                cx.state().value.fetch_add(1, Ordering::SeqCst);
                cx.revalidate_tag("counter");
                Ok(Done { done: true })
            },
        ))
        .add(open(COUNTER_SET_NOW).handler(
            |cx: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move {
                cx.state().value.fetch_add(1, Ordering::SeqCst);
                cx.update_tag("counter");
                Ok(Done { done: true })
            },
        ))
        .add(action(NOTE_SAVE).authenticated().handler(
            |cx: Cx<State>, v: Viewer, i: Valid<Note>| async move {
                cx.state()
                    .notes
                    .lock()
                    .unwrap()
                    .insert(v.id(), i.into_inner().text);
                cx.update_tag(format!("note:{}", v.id()));
                Ok(Done { done: true })
            },
        ))
        .add(open(GO).handler(
            |cx: Cx<State>, _: MaybeViewer, i: Valid<Target>| async move {
                cx.redirect(&i.to)?;
                cx.set_cookie("theme", "dark", Some(Duration::from_secs(3600)))?;
                Ok(Done { done: true })
            },
        ))
        .add(open(TAG_UPDATE).handler(
            |cx: Cx<State>, _: MaybeViewer, i: Valid<Target>| async move {
                cx.update_tag(i.into_inner().to);
                Ok(Done { done: true })
            },
        ))
        .add(open(PATH_REVALIDATE).handler(
            |cx: Cx<State>, _: MaybeViewer, i: Valid<Target>| async move {
                cx.revalidate_path(i.into_inner().to);
                Ok(Done { done: true })
            },
        ))
        .add(open(REFRESH).handler(
            |cx: Cx<State>, _: MaybeViewer, _: Valid<Nothing>| async move {
                cx.refresh();
                Ok(Done { done: true })
            },
        ));
    })
    .fragments(|f| {
        f.add(
            fragment("counter").shared(|rcx: RenderCx<State>, _: String| async move {
                rcx.tag("counter");
                let v = rcx.state().value.load(Ordering::SeqCst);
                Ok(html! { span.counter { "value=" (v) } })
            }),
        )
        .add(
            fragment("note").per_viewer(|rcx: RenderCx<State>, v: Viewer, _: String| async move {
                rcx.tag(format!("note:{}", v.id()));
                let text = rcx
                    .state()
                    .notes
                    .lock()
                    .unwrap()
                    .get(&v.id())
                    .cloned()
                    .unwrap_or_default();
                Ok(html! { p.note { "user=" (v.id()) " note=" (text) } })
            }),
        )
        .add(
            fragment("page").per_viewer(|rcx: RenderCx<State>, _: Viewer, _: String| async move {
                Ok(html! { (rcx.slot("note")) (rcx.slot("counter")) })
            }),
        )
        .add(
            fragment("many").shared(|_: RenderCx<State>, p: String| async move {
                Ok(html! { p { (p) (" ".repeat(200)) } })
            }),
        )
        // A parent that reads a tag of its own, over a per-viewer and a
        // shared child.
        .add(
            fragment("pair").per_viewer(|rcx: RenderCx<State>, _: Viewer, _: String| async move {
                rcx.tag("pair");
                Ok(html! { section { (rcx.slot("note")) (rcx.slot("counter")) } })
            }),
        )
        // A shared parent over a per-viewer child.
        .add(
            fragment("mixed").shared(|rcx: RenderCx<State>, _: String| async move {
                Ok(html! { (rcx.slot("note")) })
            }),
        )
        // chain:n holds chain:n+1, down to chain:9.
        .add(
            fragment("chain").shared(|rcx: RenderCx<State>, p: String| async move {
                let n: u32 = p.parse().unwrap_or(9);
                Ok(html! {
                    i { "link-" (n) }
                    @if n < 9 { (rcx.slot(&format!("chain:{}", n + 1))) }
                })
            }),
        )
        // A shared parent per parameter over a shared child.
        .add(
            fragment("wrap").shared(|rcx: RenderCx<State>, p: String| async move {
                Ok(html! { (rcx.slot(&format!("many:{p}"))) })
            }),
        );
    })
    .render_cache(cache)
    .pages(
        Router::new()
            .route(
                "/",
                get(|page: Page| async move {
                    html! { (page.fragment("counter").await) (page.fragment("note").await) }
                }),
            )
            // `/{name}` shows fragment `name`, `/{name}/{param}` fragment
            // `name:param`.
            .route(
                "/{name}",
                get(
                    |page: Page, axum::extract::Path(name): axum::extract::Path<String>| async move {
                        html! { (page.fragment(&name).await) }
                    },
                ),
            )
            .route(
                "/{name}/{param}",
                get(
                    |page: Page,
                     axum::extract::Path((name, param)): axum::extract::Path<(String, String)>| async move {
                        html! { (page.fragment(&format!("{name}:{param}")).await) }
                    },
                ),
            ),
    )
    .build(tower_sessions::MemoryStore::default())
    .unwrap()
}

async fn start() -> (TestClient, State) {
    let state = State::default();
    let app = build(config(), state.clone(), CacheConfig::default());
    (TestClient::start(&app).await, state)
}

async fn login(c: &TestClient, id: i64) {
    let r = c.call(LOGIN, &[("userId", &id.to_string())]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn call_with_fragments<In, Out>(
    c: &TestClient,
    action: ActionRef<In, Out>,
    form: &[(&str, &str)],
    keys: &str,
) -> TestResponse {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let r = c
        .post(&c.path(action))
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(wire::header::FRAGMENTS, keys)
        .body(body)
        .send()
        .await
        .unwrap();
    TestResponse::read(r).await
}

#[tokio::test]
async fn read_your_own_writes_the_response_carries_the_fresh_fragment() {
    let (c, _) = start().await;
    login(&c, 7).await;
    assert!(c.get("/").await.text().contains("note=</p>"));
    let r = call_with_fragments(&c, NOTE_SAVE, &[("text", "hello")], "counter note").await;
    let v = r.json();
    assert_eq!(v["revalidated"], true);
    let frag = v["fragments"]["note"].as_str().unwrap();
    assert_eq!(
        frag,
        format!(
            "<div {}=\"note\"><p class=\"note\">user=7 note=hello</p></div>",
            wire::attr::FRAGMENT
        )
    );
    // Only the fragment that read the updated tag comes back.
    assert!(v["fragments"].get("counter").is_none(), "{v}");
    assert!(r.body.len() < 1024, "{} bytes", r.body.len());
    // And the next page load shows it too.
    assert!(c.get("/").await.text().contains("note=hello"));
}

#[tokio::test]
async fn stale_while_revalidate_one_stale_read_then_fresh_one_background_render() {
    let (c, state) = start().await;
    let engine = c.app().fragments().clone();
    assert!(c.get("/").await.text().contains("value=0"));
    let renders = engine.renders();
    assert_eq!(c.call(COUNTER_BUMP, &[]).await.status, 200);
    assert_eq!(state.value.load(Ordering::SeqCst), 1);
    // The first read after revalidate_tag is the stale copy.
    assert!(
        c.get("/").await.text().contains("value=0"),
        "stale copy expected"
    );
    // Concurrent readers meanwhile get stale or fresh, never a second render.
    let reads = futures::future::join_all((0..8).map(|_| c.get("/"))).await;
    for r in &reads {
        let t = r.text();
        assert!(t.contains("value=0") || t.contains("value=1"), "{t}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.renders() < renders + 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(engine.background_renders(), 1);
    assert_eq!(engine.renders(), renders + 1);
    assert!(c.get("/").await.text().contains("value=1"));
    // update_tag, by contrast, is fresh on the very next read.
    assert_eq!(c.call(COUNTER_SET_NOW, &[]).await.status, 200);
    assert!(c.get("/").await.text().contains("value=2"));
}

#[tokio::test]
async fn viewer_scoped_fragments_never_leak_across_viewers_under_concurrent_load() {
    let (c, state) = start().await;
    state.notes.lock().unwrap().insert(1, "alice-secret".into());
    state.notes.lock().unwrap().insert(2, "bob-secret".into());
    let alice = c.new_session();
    let bob = c.new_session();
    login(&alice, 1).await;
    login(&bob, 2).await;
    let anon = c.new_session();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (client, me, other) = match i % 3 {
            0 => (alice.clone(), Some("alice-secret"), "bob-secret"),
            1 => (bob.clone(), Some("bob-secret"), "alice-secret"),
            _ => (anon.clone(), None, "secret"),
        };
        tasks.push(tokio::spawn(async move {
            let path = if i % 2 == 0 { "/" } else { "/page" };
            let html = client.get(path).await.text();
            if let Some(me) = me {
                assert!(html.contains(me), "{html}");
            }
            assert!(!html.contains(other), "leak: {html}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn redirect_to_another_origin_is_refused() {
    let (c, _) = start().await;
    for evil in [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let r = c.call(GO, &[("to", evil)]).await;
        assert_eq!(r.status, 500, "{evil}: {}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("internal"));
        assert!(
            r.header("set-cookie").is_none(),
            "no effect of a failed action is applied"
        );
        let r = c.submit(GO, &[("to", evil)]).await;
        assert_ne!(r.status, 303, "{evil}");
    }
    let r = c.call(GO, &[("to", "/projects")]).await;
    assert_eq!(r.json()["redirect"], "/projects");
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.starts_with("theme=dark")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let r = c.submit(GO, &[("to", "/projects")]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/projects"));
    assert!(
        r.header("set-cookie").is_some(),
        "cookie rides on the 303 as well"
    );
}

#[tokio::test]
async fn refresh_re_renders_every_fragment_the_page_shows() {
    let (c, _) = start().await;
    login(&c, 3).await;
    let r = call_with_fragments(&c, REFRESH, &[], "counter note bogus:1 <script>").await;
    let v = r.json();
    assert!(v["fragments"]["counter"].is_string(), "{v}");
    assert!(v["fragments"]["note"].is_string(), "{v}");
    assert!(v["fragments"].get("bogus:1").is_none());
}

#[tokio::test]
async fn composed_fragments_cache_children_separately() {
    let (c, _) = start().await;
    login(&c, 4).await;
    let engine = c.app().fragments().clone();
    let html = c.get("/page").await.text();
    assert!(
        html.contains(&format!(
            "<div {0}=\"page\"><div {0}=\"note\">",
            wire::attr::FRAGMENT
        )),
        "{html}"
    );
    let before = engine.renders();
    c.get("/page").await;
    assert_eq!(engine.renders(), before, "fully cached");
    let r = call_with_fragments(&c, NOTE_SAVE, &[("text", "x1")], "page note counter").await;
    let v = r.json();
    // The child changed, the parent's template did not: only the child is sent.
    assert!(v["fragments"]["note"].as_str().unwrap().contains("note=x1"));
    assert!(v["fragments"].get("page").is_none(), "{v}");
    assert!(c.get("/page").await.text().contains("note=x1"));
}

/// Reads `path` until it contains `text` (5 s at most); whether it did.
async fn shows_within_5s(c: &TestClient, path: &str, text: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if c.get(path).await.text().contains(text) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

// Expansions: a fragment with children is cached with its children filled
// in. Each test below is a way an expansion could serve a part that the
// part's own cache entry would no longer serve.

#[tokio::test]
async fn a_cached_expansion_serves_a_page_without_rendering_and_a_child_update_shows_at_once() {
    let (c, state) = start().await;
    login(&c, 5).await;
    let engine = c.app().fragments().clone();
    assert!(c.get("/pair").await.text().contains("value=0"));
    // Second view: the expansion is built (the parent learned it has
    // children); third: served from it.
    c.get("/pair").await;
    let (before, hits) = (engine.renders(), engine.expanded_hits());
    let html = c.get("/pair").await.text();
    assert_eq!(engine.renders(), before, "served without rendering");
    assert_eq!(
        engine.expanded_hits(),
        hits + 1,
        "served from the expansion"
    );
    assert!(
        html.contains(&format!("<div {}=\"note\">", wire::attr::FRAGMENT)),
        "children keep their roots: {html}"
    );
    state.value.store(7, Ordering::SeqCst);
    assert_eq!(c.call(COUNTER_SET_NOW, &[]).await.status, 200);
    let html = c.get("/pair").await.text();
    assert!(html.contains("value=8"), "{html}");
    assert_eq!(engine.renders(), before + 1, "only the child re-rendered");
}

#[tokio::test]
async fn a_soft_revalidated_child_under_an_expansion_is_stale_once_then_fresh() {
    let (c, state) = start().await;
    login(&c, 6).await;
    let engine = c.app().fragments().clone();
    for _ in 0..3 {
        assert!(c.get("/pair").await.text().contains("value=0"));
    }
    assert_eq!(c.call(COUNTER_BUMP, &[]).await.status, 200);
    assert_eq!(state.value.load(Ordering::SeqCst), 1);
    assert!(c.get("/pair").await.text().contains("value=0"));
    assert!(shows_within_5s(&c, "/pair", "value=1").await);
    assert_eq!(engine.background_renders(), 1);
}

/// `revalidate_path` marks the fragments a page showed; a part of another
/// page's expansion marked that way must not keep being served from it.
#[tokio::test]
async fn revalidate_path_of_one_page_reaches_the_same_fragment_inside_another_pages_expansion() {
    let (c, state) = start().await;
    login(&c, 7).await;
    let engine = c.app().fragments().clone();
    assert!(c.get("/").await.text().contains("value=0"));
    for _ in 0..3 {
        assert!(c.get("/pair").await.text().contains("value=0"));
    }
    // The data changes without a tag; the app revalidates the page "/".
    state.value.store(1, Ordering::SeqCst);
    let r = c.call(PATH_REVALIDATE, &[("to", "/")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        shows_within_5s(&c, "/pair", "value=1").await,
        "the revalidated counter was served from the expansion, never refreshed"
    );
    assert!(engine.background_renders() >= 1);
}

/// An expansion rebuilt after its parent re-rendered still holds children
/// rendered earlier; it must not outlive their TTL.
#[tokio::test]
async fn an_expansion_never_outlives_the_ttl_of_its_oldest_part() {
    let state = State::default();
    let ttl = Duration::from_millis(1200);
    let app = build(
        config(),
        state.clone(),
        CacheConfig {
            ttl,
            ..CacheConfig::default()
        },
    );
    let c = TestClient::start(&app).await;
    login(&c, 8).await;
    assert!(c.get("/pair").await.text().contains("value=0"));
    // The children were rendered before this instant.
    let rendered = Instant::now();
    assert!(c.get("/pair").await.text().contains("value=0"));
    tokio::time::sleep(ttl / 2).await;
    // The parent re-renders; its children come from the cache (older).
    assert_eq!(c.call(TAG_UPDATE, &[("to", "pair")]).await.status, 200);
    assert!(c.get("/pair").await.text().contains("value=0"));
    // Just before the children expire, another page runs the cache's
    // upkeep (moka runs it at most every 300 ms), so it has not yet
    // dropped them, nor told their expansion, when /pair is read: only
    // the expansion's own TTL check stands between the page and them.
    tokio::time::sleep(
        (rendered + ttl - Duration::from_millis(100)).saturating_duration_since(Instant::now()),
    )
    .await;
    c.get("/many/upkeep").await;
    tokio::time::sleep(
        (rendered + ttl + Duration::from_millis(60)).saturating_duration_since(Instant::now()),
    )
    .await;
    state.value.store(1, Ordering::SeqCst);
    let html = c.get("/pair").await.text();
    assert!(html.contains("value=1"), "expired child served: {html}");
}

/// An expansion holds levels below its root; served deeper in another
/// page it must not take that page past the nesting bound, which
/// expanding it would have refused.
#[tokio::test]
async fn an_expansion_served_deeper_still_keeps_the_nesting_bound() {
    let (c, _) = start().await;
    // chain:1 holds 8 levels (chain:9 at depth 8): within the bound.
    for _ in 0..2 {
        assert!(c.get("/chain/1").await.text().contains("link-9"));
    }
    // chain:0 puts chain:9 at depth 9, past it, cached expansion or not.
    for _ in 0..2 {
        let html = c.get("/chain/0").await.text();
        assert!(!html.contains("link-9"), "nested past the bound: {html}");
    }
}

/// `name:` and `name` are one fragment; an expansion built for a client
/// that spelled it `name:` must not hand that spelling to everyone else.
#[tokio::test]
async fn a_key_spelled_with_a_trailing_colon_never_becomes_everyones_markup() {
    let (c, _) = start().await;
    login(&c, 9).await;
    let r = call_with_fragments(&c, REFRESH, &[], "pair:").await;
    assert!(r.json()["fragments"]["pair:"].is_string(), "{}", r.text());
    for _ in 0..3 {
        let html = c.get("/pair").await.text();
        assert!(
            html.contains(&format!("{}=\"pair\"", wire::attr::FRAGMENT)),
            "{html}"
        );
        assert!(!html.contains("\"pair:\""), "{html}");
    }
}

/// A shared fragment with a per-viewer child is expanded per request and
/// never stored expanded: the expansion would be served to everyone.
#[tokio::test]
async fn a_shared_parent_never_serves_one_viewers_child_to_another() {
    let (c1, _) = start().await;
    let c2 = TestClient::start(c1.app()).await;
    login(&c1, 11).await;
    login(&c2, 12).await;
    let r = call_with_fragments(&c1, NOTE_SAVE, &[("text", "secret11")], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..3 {
        assert!(c1.get("/mixed").await.text().contains("note=secret11"));
    }
    for _ in 0..3 {
        let html = c2.get("/mixed").await.text();
        assert!(
            !html.contains("secret11"),
            "viewer 12 got 11's note: {html}"
        );
        assert!(html.contains("user=12"), "{html}");
    }
}

/// Expansions live in the render cache under its byte bound: a flood of
/// distinct parents (each adding an expansion besides two templates)
/// stays within it.
#[tokio::test]
async fn a_flood_of_distinct_expansions_stays_within_the_cache_bound() {
    let bound = 1024 * 1024;
    let app = build(
        config(),
        State::default(),
        CacheConfig {
            max_bytes: bound,
            ttl: Duration::from_secs(600),
            ..CacheConfig::default()
        },
    );
    let c = TestClient::start(&app).await;
    let engine = c.app().fragments().clone();
    // An expansion weighs at least its html: the child's template is
    // cached first, then its parent adds the parent's small template and
    // the expansion (the child's html again, inside the parent's).
    c.get("/many/w").await;
    let child_only = engine.cached_bytes();
    let page = c.get("/wrap/w").await.text();
    let added = engine.cached_bytes() - child_only;
    let html_len = page.len() as u64;
    assert!(
        added >= html_len,
        "the expansion was not weighed: +{added} bytes for {html_len} bytes of html"
    );
    let keys: Vec<String> = (0..20_000).map(|i| format!("/wrap/k{i}")).collect();
    for chunk in keys.chunks(64) {
        for r in futures::future::join_all(chunk.iter().map(|k| c.get(k))).await {
            assert_eq!(r.status, 200);
        }
    }
    let bytes = engine.cached_bytes();
    eprintln!("cache after 20k expansions: {bytes} bytes (bound {bound})");
    assert!(bytes <= bound, "{bytes} > {bound}");
    // And a parent served from its expansion is still right.
    let html = c.get("/wrap/k19999").await.text();
    assert!(html.contains("k19999"), "{html}");
}

#[tokio::test]
async fn cache_memory_stays_within_its_bound_under_100k_distinct_keys() {
    let state = State::default();
    let bound = 2 * 1024 * 1024;
    let app = build(
        config(),
        state,
        CacheConfig {
            max_bytes: bound,
            ttl: Duration::from_secs(600),
            ..CacheConfig::default()
        },
    );
    let c = TestClient::start(&app).await;
    let engine = c.app().fragments().clone();
    // Render 100k distinct keys through the engine (via pages, 64 at a time).
    let keys: Vec<String> = (0..100_000).map(|i| format!("/many/k{i}")).collect();
    for chunk in keys.chunks(64) {
        futures::future::join_all(chunk.iter().map(|k| c.get(k))).await;
    }
    let bytes = engine.cached_bytes();
    let entries = engine.cached_entries();
    eprintln!("cache after 100k keys: {entries} entries, {bytes} bytes (bound {bound})");
    assert!(bytes <= bound, "{bytes} > {bound}");
    assert!(entries < 100_000);
}

#[tokio::test]
async fn a_disabled_cache_renders_every_request_and_stores_nothing() {
    let app = build(config(), State::default(), CacheConfig::disabled());
    let c = TestClient::start(&app).await;
    let engine = c.app().fragments().clone();
    let before = engine.renders();
    for _ in 0..3 {
        assert_eq!(c.get("/many/x").await.status, 200);
    }
    assert_eq!(engine.renders(), before + 3);
    assert_eq!(engine.cached_entries(), 0);
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn invalidation_on_one_instance_is_visible_on_another_through_redis() {
    let prefix = format!("pc-test-{}:", rand::random::<u64>());
    let mk = |state: State| {
        let mut c = config();
        c.redis_url = Some(portcullis::app::RedisUrl(redis_url()));
        c.redis_prefix = prefix.clone();
        build(c, state, CacheConfig::default())
    };
    // Two instances over one shared data source.
    let state = State::default();
    let a = TestClient::start(&mk(state.clone())).await;
    let b = TestClient::start(&mk(state.clone())).await;
    // Let both subscriptions settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.get("/").await.text().contains("value=0"));
    let started = Instant::now();
    assert_eq!(a.call(COUNTER_SET_NOW, &[]).await.status, 200);
    let mut seen = None;
    while started.elapsed() < Duration::from_secs(2) {
        if b.get("/").await.text().contains("value=1") {
            seen = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let seen = seen.expect("instance B never saw the invalidation");
    eprintln!("invalidation on A visible on B after {seen:?}");
    assert!(seen < Duration::from_millis(100), "{seen:?}");
}

/// The same with stores injected on the builder: two apps in one process
/// sharing an in-memory tag bus (a transport the app chose, not Redis).
#[tokio::test]
async fn invalidation_travels_over_an_injected_tag_bus() {
    let bus: Arc<dyn portcullis::store::TagBus> = Arc::new(portcullis::store::MemoryTagBus::new());
    let state = State::default();
    let mk = || {
        let stores = portcullis::store::Stores::memory().with_bus(Some(bus.clone()));
        build_on(
            config(),
            state.clone(),
            CacheConfig::default(),
            Some(stores),
        )
    };
    let a = TestClient::start(&mk()).await;
    let b = TestClient::start(&mk()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(b.get("/").await.text().contains("value=0"));
    assert_eq!(a.call(COUNTER_SET_NOW, &[]).await.status, 200);
    let started = Instant::now();
    while !b.get("/").await.text().contains("value=1") {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "instance B never saw the invalidation"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Tag versions are bounded: past `max_tags` the least recently bumped are
/// forgotten. A flood of distinct tags (e.g. one user creating many records)
/// must neither grow the map without bound nor make a forgotten bump look
/// fresh: a fragment cached before its tag was bumped must not come back
/// after that bump was evicted.
#[tokio::test]
async fn tag_flood_stays_bounded_and_never_resurrects_a_stale_fragment() {
    let state = State::default();
    let app = build(
        config(),
        state.clone(),
        CacheConfig {
            max_tags: 1_000,
            ..CacheConfig::default()
        },
    );
    let c = TestClient::start(&app).await;
    let engine = c.app().fragments().clone();
    assert!(c.get("/").await.text().contains("value=0"));
    // The data changes and its tag is bumped; the cached copy is now stale.
    state.value.store(1, Ordering::SeqCst);
    engine.update_tag("counter");
    // Then a flood of distinct tags pushes "counter" out of the map.
    for i in 0..5_000 {
        engine.update_tag(&format!("flood:{i}"));
    }
    assert!(
        engine.tag_count() <= 1_000,
        "tag map: {} > 1000",
        engine.tag_count()
    );
    let page = c.get("/").await.text();
    assert!(page.contains("value=1"), "stale fragment served: {page}");
}
