//! The example against a real server: what the page and the action promise,
//! and the standard attacks refused.

use example_minimal_action::{GREET, app};
use portcullis::testing::TestClient;
use portcullis::testing::attacks::Harness;
use portcullis::{App, Config, MasterSecret};

fn example() -> App {
    app(Config::new(MasterSecret::generate())).expect("the example builds")
}

#[tokio::test]
async fn the_page_renders_the_form_and_the_action_greets() {
    let client = TestClient::start(&example()).await;
    let page = client.get("/").await;
    assert_eq!(page.status, 200);
    let html = page.text();
    // The form posts to the action's current opaque id, with the empty honeypot.
    assert!(html.contains(&client.path(GREET)), "{html}");
    assert!(html.contains(r#"name="_hp""#), "{html}");

    let r = client.call(GREET, &[("name", "  Ada ")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["text"], "Hello, Ada!");
    // Without JavaScript the same action answers with a redirect.
    let r = client.submit(GREET, &[("name", "Ada")]).await;
    assert_eq!(r.status, 303, "{}", r.text());
}

#[tokio::test]
async fn bad_input_bots_and_floods_are_refused() {
    let client = TestClient::start(&example()).await;
    let r = client.call(GREET, &[("name", "")]).await;
    assert_eq!(r.error_code().as_deref(), Some("invalid_input"));
    assert!(r.json()["fieldErrors"]["name"].is_array(), "{}", r.text());
    // A filled-in honeypot: a bot.
    let r = client.call(GREET, &[("name", "Ada"), ("_hp", "x")]).await;
    assert_eq!(r.error_code().as_deref(), Some("bot_check_failed"));
    // 30 calls per address per minute; the 31st is refused with Retry-After.
    let flood = client.from_address("127.0.0.9".parse().unwrap());
    for i in 0..30 {
        let r = flood.call(GREET, &[("name", "Ada")]).await;
        assert_eq!(r.status, 200, "call {i}: {}", r.text());
    }
    let r = flood.call(GREET, &[("name", "Ada")]).await;
    assert_eq!(r.error_code().as_deref(), Some("rate_limited"));
    assert!(r.header("retry-after").is_some());
    // Another address is not affected.
    let r = client.call(GREET, &[("name", "Ada")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn every_action_refuses_the_standard_attacks() {
    let report = Harness::new(&example()).run().await;
    report.assert_conclusive_and_clean();
}
