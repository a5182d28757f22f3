//! Issue #16, item 2: a structure every principal's responses share (the
//! taint registry) cannot be poisoned by one user of the demo.

mod common;

use common::{project, start, team_of, user};
use demo::actions::{account, projects};
use portcullis::wire;

/// Mallory saves, as her "third-party API key", a high-entropy string that
/// every page contains (the client runtime's content-hashed URL). Before,
/// the demo registered it with the process-wide taint scanner and every
/// page and action answered 500 for everyone until a restart.
#[tokio::test]
async fn one_users_api_key_cannot_make_every_page_fail() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (mallory, _) = user(&demo, "Mallory").await;
    let team = team_of(&demo, alice_id).await;
    let p = project(&alice, team, "Unaffected").await;
    let everywhere = portcullis::render::script_path();
    let before = alice.get("/projects").await;
    assert_eq!(before.status, 200);
    assert!(
        before.text().contains(everywhere),
        "the value is on every page"
    );
    let registered = portcullis::security::registered();

    for poison in [
        everywhere,
        everywhere.trim_start_matches(wire::ASSET_PREFIX),
        wire::attr::PORTCULLIS,
    ] {
        let r = mallory
            .call(account::SET_API_KEY, &[("apiKey", poison)])
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        portcullis::security::registered(),
        registered,
        "nothing a user typed was registered"
    );

    // Everyone's pages and actions still work, Mallory's included.
    for client in [&alice, &mallory] {
        for page in ["/projects", "/settings"] {
            let r = client.get(page).await;
            assert_eq!(r.status, 200, "{page}: {}", r.text());
        }
    }
    let r = alice.get(&format!("/projects/{p}")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let anonymous = alice.new_session();
    let r = anonymous.get("/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = alice
        .call(
            projects::RENAME,
            &[("projectId", &p.to_string()), ("name", "Still fine")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
