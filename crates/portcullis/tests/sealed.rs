//! Issue #5's attack list against a real server: sealed bound arguments
//! (tampered, truncated, garbled, replayed to another action, session or
//! time, across a key rotation) and taint (a `Secret` in a result, a
//! registered unique value in JSON, HTML pages and error pages). Each test
//! asserts the refusal and that the handler did not run or nothing was sent.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Fixture, SECRET_TOKEN, UNIQUE, UNIQUE_REASON, login, start};
use portcullis::__private::seal::{self, Binding};
use portcullis::security::{KeyRing, Purpose};
use portcullis::testing::{TestClient, TestResponse};
use portcullis::{Config, MasterSecret};

fn assert_refused(r: &TestResponse, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
    assert_eq!(r.error_code().as_deref(), Some(code), "body: {}", r.text());
    let v = r.json();
    assert!(
        v["error"]["digest"].as_str().is_some_and(|d| d.len() == 16),
        "{v}"
    );
}

fn assert_bad_seal(r: &TestResponse) {
    assert_refused(r, 400, "invalid_bound_argument");
}

/// The value of the `name` attribute's input in `html`.
fn hidden_value(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&needle)
        .unwrap_or_else(|| panic!("no hidden `{name}` in {html}"))
        + needle.len();
    let end = start + html[start..].find('"').expect("closing quote");
    html[start..end].to_owned()
}

/// The `action` attribute of the first form in `html`.
fn form_action(html: &str) -> String {
    let start = html.find("action=\"").expect("a form action") + "action=\"".len();
    let end = start + html[start..].find('"').expect("closing quote");
    html[start..end].replace("&amp;", "&")
}

/// Renders the fixture page for `action` and returns the sealed `projectId`.
async fn sealed_from_page(client: &TestClient, action: PickAction, value: i64) -> String {
    let page = client
        .get(&format!("/seal?action={}&value={value}", action.name()))
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    hidden_value(&page.text(), "projectId")
}

/// The fixture's actions that take a sealed `projectId`.
type PickAction = portcullis::ActionRef<common::Pick, common::Picked>;

async fn pick(client: &TestClient, action: PickAction, sealed: &str) -> TestResponse {
    client.call(action, &[("projectId", sealed)]).await
}

fn config_with(current: u8, previous: Option<u8>) -> Config {
    let secret = |b: u8| MasterSecret::from_bytes(vec![b; 32]).unwrap();
    let mut c = common::config();
    c.keys = KeyRing::new(&secret(current), previous.map(secret).as_ref());
    c
}

#[tokio::test]
async fn sealed_value_from_a_page_form_opens_in_its_action() {
    let fx = start().await;
    let page = fx.client.get("/seal?action=sealed.pick&value=41").await;
    let html = page.text();
    let sealed = hidden_value(&html, "projectId");
    // Post where the form says, the way a browser without JS would.
    let action = form_action(&html);
    assert!(
        action.starts_with(&fx.client.path(common::SEALED_PICK)),
        "{action}"
    );
    let body = format!("projectId={sealed}");
    let r = TestResponse::read(
        fx.client
            .post(&action)
            .header("sec-fetch-site", "same-origin")
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    // And by the client runtime, JSON body.
    let r = fx
        .client
        .call_json(
            common::SEALED_PICK,
            &serde_json::json!({ "projectId": sealed }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.result()["projectId"], 41);
    assert_eq!(fx.state.notes(), vec!["pick:41", "pick:41"]);
}

#[tokio::test]
async fn tampered_ciphertext_every_byte_position_is_refused() {
    let fx = start().await;
    let sealed = sealed_from_page(&fx.client, common::SEALED_PICK, 7).await;
    let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
    for i in 0..raw.len() {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        let r = pick(
            &fx.client,
            common::SEALED_PICK,
            &URL_SAFE_NO_PAD.encode(&bad),
        )
        .await;
        assert_bad_seal(&r);
    }
    // Changing the value itself (the plaintext is not there to change) and
    // forging a longer expiry (the header is authenticated) are both refused.
    let mut later = raw.clone();
    later[5..13].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_bad_seal(
        &pick(
            &fx.client,
            common::SEALED_PICK,
            &URL_SAFE_NO_PAD.encode(&later),
        )
        .await,
    );
    assert_eq!(fx.state.runs(), 0, "the handler never ran");
    // The untouched seal still opens: the refusals were the tampering.
    assert_eq!(
        pick(&fx.client, common::SEALED_PICK, &sealed).await.status,
        200
    );
}

#[tokio::test]
async fn truncated_garbled_and_non_string_seals_are_refused() {
    let fx = start().await;
    let sealed = sealed_from_page(&fx.client, common::SEALED_PICK, 7).await;
    let mut cases: Vec<String> = [0, 1, 10, sealed.len() / 2, sealed.len() - 1]
        .iter()
        .map(|&n| sealed[..n].to_owned())
        .collect();
    cases.extend([
        format!("{sealed}A"),
        format!("{sealed}=="),
        sealed.replace('-', "+").replace('_', "/") + "!",
        "%%%not base64%%%".to_owned(),
        "7".to_owned(),
        "A".repeat(20_000),
    ]);
    for bad in &cases {
        let r = pick(&fx.client, common::SEALED_PICK, bad).await;
        assert_bad_seal(&r);
    }
    // JSON: a number, an object, null where the seal should be.
    for v in [
        serde_json::json!(7),
        serde_json::json!({"id": 7}),
        serde_json::json!(null),
    ] {
        let r = fx
            .client
            .call_json(common::SEALED_PICK, &serde_json::json!({ "projectId": v }))
            .await;
        assert_bad_seal(&r);
    }
    // A plain id where a seal is expected, no-JS client: an HTML 400 page.
    let r = fx
        .client
        .submit(common::SEALED_PICK, &[("projectId", "7")])
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("expired or was altered"), "{}", r.text());
    assert_eq!(fx.state.runs(), 0);
}

#[tokio::test]
async fn sealed_value_replayed_to_another_action_is_refused() {
    let fx = start().await;
    let sealed = sealed_from_page(&fx.client, common::SEALED_PICK, 7).await;
    let r = pick(&fx.client, common::SEALED_OTHER, &sealed).await;
    assert_bad_seal(&r);
    assert_eq!(fx.state.runs(), 0);
    // Same input type, same session, same time: only the action differs.
    let theirs = sealed_from_page(&fx.client, common::SEALED_OTHER, 7).await;
    assert_eq!(
        pick(&fx.client, common::SEALED_OTHER, &theirs).await.status,
        200
    );
}

#[tokio::test]
async fn sealed_value_replayed_in_another_session_is_refused() {
    let fx = start().await;
    let alice = fx.client.clone();
    let bob = fx.client.new_session();
    login(&alice, 1, false).await;
    login(&bob, 2, false).await;
    let runs = fx.state.runs();
    let alices = sealed_from_page(&alice, common::SEALED_MINE, 7).await;
    // Bob replays Alice's seal: refused.
    assert_bad_seal(&pick(&bob, common::SEALED_MINE, &alices).await);
    // An anonymous page's seal is refused in a signed-in session, and a
    // signed-in page's seal in an anonymous one (public action).
    let anon = fx.client.new_session();
    let anons = sealed_from_page(&anon, common::SEALED_PICK, 7).await;
    assert_bad_seal(&pick(&bob, common::SEALED_PICK, &anons).await);
    let bobs_public = sealed_from_page(&bob, common::SEALED_PICK, 7).await;
    assert_bad_seal(&pick(&anon, common::SEALED_PICK, &bobs_public).await);
    assert_eq!(fx.state.runs(), runs, "no handler ran");
    // Alice's own seal works, in her session only...
    assert_eq!(pick(&alice, common::SEALED_MINE, &alices).await.status, 200);
    // ...until the session is replaced: sign out and in again (new id).
    let r = alice.call(common::LOGOUT, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    login(&alice, 1, false).await;
    let runs = fx.state.runs();
    assert_bad_seal(&pick(&alice, common::SEALED_MINE, &alices).await);
    assert_eq!(fx.state.runs(), runs);
}

#[tokio::test]
async fn expired_sealed_value_is_refused() {
    let fx = start().await;
    let sealer = fx.client.app().sealer().clone();
    let now = seal::unix_now();
    // Anonymous client with its browser scope (from a first page), so the
    // binding is known; only the expiry differs.
    fx.client.get("/seal?action=sealed.pick&value=1").await;
    let binding = fx.client.seal_binding();
    assert!(matches!(binding, Binding::Browser(_)), "{binding:?}");
    let expired = sealer
        .seal_field_at(
            &7i64,
            common::SEALED_PICK.name(),
            "projectId",
            &binding,
            now - 1,
        )
        .unwrap();
    assert_bad_seal(&pick(&fx.client, common::SEALED_PICK, &expired).await);
    assert_eq!(fx.state.runs(), 0);
    let fresh = sealer
        .seal_field_at(
            &7i64,
            common::SEALED_PICK.name(),
            "projectId",
            &binding,
            now + 60,
        )
        .unwrap();
    assert_eq!(
        pick(&fx.client, common::SEALED_PICK, &fresh).await.status,
        200
    );
    // A page form with a zero lifetime expires as the next second starts.
    let page = fx
        .client
        .get("/seal?action=sealed.pick&value=7&ttl=0")
        .await;
    let short = hidden_value(&page.text(), "projectId");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_bad_seal(&pick(&fx.client, common::SEALED_PICK, &short).await);
    assert_eq!(fx.state.runs(), 1);
}

#[tokio::test]
async fn key_rotation_previous_key_accepted_rotated_out_refused() {
    // Three deployments of one app over one session store: before, during
    // and after a rotation (A → B, then B → C).
    let store = tower_sessions::MemoryStore::default();
    let before = common::start_with_store(config_with(1, None), store.clone()).await;
    let during = common::start_with_store(config_with(2, Some(1)), store.clone()).await;
    let after = common::start_with_store(config_with(3, Some(2)), store).await;
    login(&before.client, 5, false).await;
    let cookie = before.client.cookies().expect("a session cookie");
    let join = |fx: &Fixture| {
        let c = fx.client.new_session();
        c.set_cookie(&cookie);
        c
    };
    let (during_client, after_client) = (join(&during), join(&after));

    let old = sealed_from_page(&before.client, common::SEALED_MINE, 7).await;
    // During the rotation the old seal still opens (same session, new key).
    let r = pick(&during_client, common::SEALED_MINE, &old).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(during.state.runs(), 1);
    // New seals use the current key: B's id, and A alone cannot open them.
    let new = sealed_from_page(&during_client, common::SEALED_MINE, 8).await;
    let key_id = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap()[1..5].to_vec();
    assert_eq!(key_id(&new), during.client.app().sealer().current_key_id());
    assert_ne!(key_id(&new), key_id(&old));
    let runs = before.state.runs();
    assert_bad_seal(&pick(&before.client, common::SEALED_MINE, &new).await);
    assert_eq!(before.state.runs(), runs);
    // After A is rotated out: A's seal is refused, B's still opens.
    assert_bad_seal(&pick(&after_client, common::SEALED_MINE, &old).await);
    assert_eq!(after.state.runs(), 0);
    assert_eq!(
        pick(&after_client, common::SEALED_MINE, &new).await.status,
        200
    );
}

#[tokio::test]
async fn action_can_seal_for_the_pages_script() {
    let fx = start().await;
    let r = fx.client.call(common::SEALED_MINT, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sealed = r.result()["sealed"].as_str().unwrap().to_owned();
    let r = pick(&fx.client, common::SEALED_PICK, &sealed).await;
    assert_eq!(r.result()["projectId"], 77);
    assert_bad_seal(&pick(&fx.client, common::SEALED_OTHER, &sealed).await);
}

#[tokio::test]
async fn handler_returning_a_secret_is_500_and_nothing_is_sent() {
    let fx = start().await;
    let r = fx.client.call(common::TAINT_SECRET, &[]).await;
    assert_refused(&r, 500, "internal");
    let body = r.text();
    for leaked in [SECRET_TOKEN, "payments", "live"] {
        assert!(!body.contains(leaked), "{leaked} in {body}");
    }
    assert_eq!(
        fx.state.runs(),
        1,
        "the handler ran; its result was not sent"
    );
    // The log names the field path and the digest, never the value.
    let digest = r.json()["error"]["digest"].as_str().unwrap().to_owned();
    let log = common::log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&digest))
        .unwrap_or_else(|| panic!("no log line for {digest}"));
    assert!(line.contains("`api.token`"), "{line}");
    assert!(line.contains("refused to serialize"), "{line}");
    assert!(!log.contains(SECRET_TOKEN));
    // No-JS caller: the same 500, as a page.
    let r = fx.client.submit(common::TAINT_SECRET, &[]).await;
    assert_eq!(r.status, 500);
    assert!(!r.text().contains(SECRET_TOKEN));
}

/// Asserts a blocked response and its log line.
fn assert_blocked(r: &TestResponse) {
    assert_eq!(r.status, 500, "{}", r.text());
    let body = r.text();
    assert!(!body.contains(UNIQUE), "{body}");
    assert!(
        !body.contains(&UNIQUE[8..]),
        "no piece of the value either: {body}"
    );
    let log = common::log_text();
    assert!(!log.contains(UNIQUE), "the value is never logged");
    let line = log
        .lines()
        .filter(|l| l.contains("registered secret value"))
        .find(|l| {
            body.contains(
                l.split("digest=")
                    .nth(1)
                    .unwrap_or("-")
                    .get(..16)
                    .unwrap_or("-"),
            )
        })
        .unwrap_or_else(|| panic!("no log line matching the digest in {body}"));
    assert!(line.contains(UNIQUE_REASON), "{line}");
}

#[tokio::test]
async fn unique_value_inside_an_html_page_is_blocked() {
    let fx = start().await;
    let r = fx.client.get("/taint/page").await;
    assert_blocked(&r);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html"))
    );
    // Pages without it are untouched by the scan.
    let r = fx.client.get("/plain/page").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<p>nothing to see</p>");
}

#[tokio::test]
async fn unique_value_in_an_action_result_is_blocked() {
    let fx = start().await;
    let r = fx.client.call(common::TAINT_UNIQUE, &[]).await;
    assert_blocked(&r);
    assert_eq!(r.error_code().as_deref(), Some("internal"));
    assert_eq!(
        fx.state.runs(),
        1,
        "the handler ran; its result was not sent"
    );
}

#[tokio::test]
async fn unique_value_in_an_error_message_is_blocked_json_and_html() {
    let fx = start().await;
    let r = fx.client.call(common::TAINT_FORM_ERROR, &[]).await;
    assert_blocked(&r);
    assert_eq!(r.error_code().as_deref(), Some("internal"));
    let r = fx.client.submit(common::TAINT_FORM_ERROR, &[]).await;
    assert_blocked(&r);
    assert!(r.text().contains("<html"), "still a page: {}", r.text());
}

#[tokio::test]
async fn debug_and_log_output_contain_no_key_bytes() {
    let fx = start().await;
    // Exercise sealing and opening so that anything logged is logged.
    let sealed = sealed_from_page(&fx.client, common::SEALED_PICK, 7).await;
    pick(&fx.client, common::SEALED_PICK, &sealed).await;
    pick(&fx.client, common::SEALED_PICK, "garbage").await;
    let config = common::config();
    let shared = fx.client.app();
    let printed = format!(
        "{config:?}\n{:?}\n{:?}\n{:?}",
        shared.config(),
        shared.sealer(),
        config.keys
    );
    let log = common::log_text();
    let mut keys: Vec<Vec<u8>> = vec![common::SECRET.to_vec()];
    for purpose in [
        Purpose::ActionIds,
        Purpose::Sealing,
        Purpose::Cookies,
        Purpose::Flash,
    ] {
        keys.push(config.keys.current.get(purpose).bytes().to_vec());
    }
    for key in keys {
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&key);
        let arr = format!("{:?}", &key[..8]).trim_end_matches(']').to_owned();
        for haystack in [&printed, &log] {
            assert!(
                !haystack.contains(&hex[..16]),
                "hex key bytes in {haystack}"
            );
            assert!(!haystack.contains(&b64[..16]), "base64 key bytes");
            assert!(!haystack.contains(&arr), "array key bytes");
        }
    }
    assert!(printed.contains("redacted"), "{printed}");
}
