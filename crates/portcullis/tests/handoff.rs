//! Issue #19: a list fragment hands its rows to the row fragments
//! (`RenderCx::slot_with` / `RenderCx::handed`), so an uncached list is one
//! read, not one per row — without changing what the cache and the tags
//! guarantee: a write still re-renders one row, a row is never cached with
//! data older than its tags, and handed data never crosses viewers or scopes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use maud::html;
use portcullis::prelude::*;
use portcullis::testing::{TestClient, TestResponse};
use portcullis::wire;
use portcullis::{CacheConfig, Config, MasterSecret, Page, Portcullis, RenderCx, fragment};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// One row: (owner, name).
type Rows = BTreeMap<i64, (i64, String)>;

#[derive(Clone, Default)]
struct State {
    rows: Arc<Mutex<Rows>>,
    list_reads: Arc<AtomicU64>,
    row_reads: Arc<AtomicU64>,
    /// Test hook: the next list render, after reading, says so and waits.
    pause: Arc<Mutex<Option<Pause>>>,
}

/// Says "reached" and waits for "release".
type Pause = (oneshot::Sender<()>, oneshot::Receiver<()>);

#[derive(Clone, Debug)]
struct Row {
    id: i64,
    name: String,
}

#[derive(Deserialize, garde::Validate)]
#[serde(rename_all = "camelCase")]
struct Login {
    #[garde(range(min = 1))]
    user_id: i64,
}

#[derive(Deserialize, garde::Validate)]
struct Rename {
    #[garde(range(min = 1))]
    id: i64,
    #[garde(length(min = 1, max = 100))]
    name: String,
}

#[derive(Serialize, Dto)]
struct Done {
    done: bool,
}

const LOGIN: ActionRef<Login, Done> = ActionRef::new("login");
const RENAME: ActionRef<Rename, Done> = ActionRef::new("rename");

fn build(state: State, cache: CacheConfig) -> portcullis::App {
    Portcullis::new(
        Config::new(MasterSecret::from_bytes(vec![5; 32]).unwrap()),
        state.clone(),
    )
    .actions(|a| {
        a.add(
            action(LOGIN)
                .public()
                .limit(per_ip(10_000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, i: Valid<Login>| async move {
                        cx.auth().login(i.user_id, vec![]).await?;
                        Ok(Done { done: true })
                    },
                ),
        )
        .add(action(RENAME).authenticated().handler(
            |cx: Cx<State>, v: Viewer, i: Valid<Rename>| async move {
                let i = i.into_inner();
                let mut rows = cx.state().rows.lock().unwrap();
                match rows.get_mut(&i.id) {
                    Some((owner, name)) if *owner == v.id() => *name = i.name,
                    _ => return Err(ActionError::NotFound),
                }
                drop(rows);
                cx.update_tag(format!("row:{}", i.id));
                Ok(Done { done: true })
            },
        ));
    })
    .fragments(|f| {
        // The viewer's rows, read once, each handed to its row fragment.
        f.add(fragment("list").per_viewer(
            |rcx: RenderCx<State>, v: Viewer, _: String| async move {
                rcx.tag(format!("list:{}", v.id()));
                rcx.state().list_reads.fetch_add(1, Ordering::SeqCst);
                let rows: Vec<Row> = rcx
                    .state()
                    .rows
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, (owner, _))| *owner == v.id())
                    .map(|(id, (_, name))| Row {
                        id: *id,
                        name: name.clone(),
                    })
                    .collect();
                let pause = rcx.state().pause.lock().unwrap().take();
                if let Some((reached, release)) = pause {
                    let _ = reached.send(());
                    let _ = release.await;
                }
                Ok(html! { ul { @for r in rows { (rcx.slot_with(&format!("row:{}", r.id), r)) } } })
            },
        ))
        .add(
            fragment("row").per_viewer(|rcx: RenderCx<State>, v: Viewer, p: String| async move {
                let id: i64 = p.parse().map_err(|_| ActionError::NotFound)?;
                rcx.tag(format!("row:{id}"));
                let row = match rcx.handed::<Row>() {
                    Some(r) => r,
                    None => {
                        rcx.state().row_reads.fetch_add(1, Ordering::SeqCst);
                        match rcx.state().rows.lock().unwrap().get(&id) {
                            Some((owner, name)) if *owner == v.id() => Row {
                                id,
                                name: name.clone(),
                            },
                            _ => return Err(ActionError::NotFound),
                        }
                    }
                };
                Ok(html! { li { "row " (row.id) "=" (row.name) } })
            }),
        )
        // A per-viewer parent handing to a shared child: must not arrive.
        .add(
            fragment("mine").per_viewer(|rcx: RenderCx<State>, v: Viewer, _: String| async move {
                Ok(html! { (rcx.slot_with("public", format!("secret of {}", v.id()))) })
            }),
        )
        .add(
            fragment("public").shared(|rcx: RenderCx<State>, _: String| async move {
                let got = rcx.handed::<String>();
                Ok(html! { p { "public handed=" (got.unwrap_or_default()) } })
            }),
        );
    })
    .render_cache(cache)
    .pages(
        Router::new()
            .route(
                "/list",
                get(|page: Page| async move {
                    html! { (page.fragment("list").await) }
                }),
            )
            .route(
                "/mine",
                get(|page: Page| async move {
                    html! { (page.fragment("mine").await) }
                }),
            ),
    )
    .build(tower_sessions::MemoryStore::default())
    .unwrap()
}

fn seed(state: &State, owner: i64, ids: std::ops::RangeInclusive<i64>) {
    let mut rows = state.rows.lock().unwrap();
    for id in ids {
        rows.insert(id, (owner, format!("name{id}")));
    }
}

async fn login(c: &TestClient, id: i64) {
    let r = c.call(LOGIN, &[("userId", &id.to_string())]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn rename(c: &TestClient, id: i64, name: &str, keys: &str) -> TestResponse {
    let r = c
        .post(&c.path(RENAME))
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(wire::header::FRAGMENTS, keys)
        .body(format!("id={id}&name={name}"))
        .send()
        .await
        .unwrap();
    TestResponse::read(r).await
}

#[tokio::test]
async fn an_uncached_list_of_50_rows_is_one_read_not_51() {
    let state = State::default();
    seed(&state, 1, 1..=50);
    let c = TestClient::start(&build(state.clone(), CacheConfig::disabled())).await;
    login(&c, 1).await;
    for round in 1..=2 {
        let html = c.get("/list").await.text();
        assert_eq!(html.matches("<li>").count(), 50);
        assert!(html.contains("row 17=name17"), "{html}");
        assert_eq!(state.list_reads.load(Ordering::SeqCst), round);
        assert_eq!(
            state.row_reads.load(Ordering::SeqCst),
            0,
            "no row read itself"
        );
    }
}

#[tokio::test]
async fn a_rename_still_re_renders_one_row_with_one_read_of_its_own() {
    let state = State::default();
    seed(&state, 1, 1..=50);
    let c = TestClient::start(&build(state.clone(), CacheConfig::default())).await;
    login(&c, 1).await;
    c.get("/list").await;
    assert_eq!(state.row_reads.load(Ordering::SeqCst), 0);
    let keys: Vec<String> = std::iter::once("list".to_owned())
        .chain((1..=50).map(|i| format!("row:{i}")))
        .collect();
    let r = rename(&c, 7, "seven", &keys.join(" ")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let fragments = v["fragments"].as_object().unwrap();
    assert_eq!(
        fragments.keys().collect::<Vec<_>>(),
        ["row:7"],
        "only the renamed row comes back"
    );
    assert!(fragments["row:7"].as_str().unwrap().contains("row 7=seven"));
    assert_eq!(state.row_reads.load(Ordering::SeqCst), 1);
    assert_eq!(state.list_reads.load(Ordering::SeqCst), 1);
    // The next page: list and every row from the cache.
    assert!(c.get("/list").await.text().contains("row 7=seven"));
    assert_eq!(state.row_reads.load(Ordering::SeqCst), 1);
    assert_eq!(state.list_reads.load(Ordering::SeqCst), 1);
}

/// A rename lands after the list read its rows but before the row rendered:
/// the row refuses the list's (older) copy and reads its own, so the cache
/// never holds the old name under the new tag version.
#[tokio::test]
async fn a_row_refuses_handed_data_older_than_its_tag() {
    let state = State::default();
    seed(&state, 1, 1..=3);
    let c = TestClient::start(&build(state.clone(), CacheConfig::default())).await;
    login(&c, 1).await;
    let (reached_tx, reached) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    *state.pause.lock().unwrap() = Some((reached_tx, release_rx));
    let page = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/list").await.text() })
    };
    reached.await.unwrap();
    let r = rename(&c, 2, "renamed", "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    release.send(()).unwrap();
    let first = page.await.unwrap();
    assert!(first.contains("row 2=renamed"), "{first}");
    assert!(first.contains("row 1=name1"), "{first}");
    assert_eq!(
        state.row_reads.load(Ordering::SeqCst),
        1,
        "row 2 read itself"
    );
    // And what was cached is the new name.
    assert!(c.get("/list").await.text().contains("row 2=renamed"));
}

#[tokio::test]
async fn handed_rows_never_cross_viewers_and_never_reach_a_shared_fragment() {
    let state = State::default();
    seed(&state, 1, 1..=5);
    seed(&state, 2, 6..=10);
    let app = build(state.clone(), CacheConfig::default());
    let alice = TestClient::start(&app).await;
    let bob = alice.new_session();
    login(&alice, 1).await;
    login(&bob, 2).await;
    let a = alice.get("/list").await.text();
    let b = bob.get("/list").await.text();
    assert_eq!(a.matches("<li>").count(), 5);
    assert_eq!(b.matches("<li>").count(), 5);
    assert!(!a.contains("=name6<") && !b.contains("=name1<"), "{a}\n{b}");
    assert_eq!(state.row_reads.load(Ordering::SeqCst), 0);
    // Bob asking for Alice's row by key: rendered for Bob (a read of his
    // own, which finds nothing of his), never from Alice's hand-off.
    let r = rename(&bob, 1, "stolen", "row:1").await;
    assert_eq!(r.status, 404, "{}", r.text());
    // A per-viewer fragment's data never reaches a shared one.
    for c in [&alice, &bob] {
        let html = c.get("/mine").await.text();
        assert!(html.contains("public handed=</p>"), "{html}");
        assert!(!html.contains("secret of"), "{html}");
    }
}
