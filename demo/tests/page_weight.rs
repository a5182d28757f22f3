//! Issue #19: the project list of 100 rows weighs less than the Next.js
//! peer's page (36,193 bytes, BENCHMARKS.md) — one error region and one
//! copy of the sign-in paths for all rows, no per-row error slots — and
//! each lean row still renames its project, with and without JavaScript.

mod common;

use common::*;
use demo::actions::projects;
use portcullis::wire;

/// The Next.js peer's `/projects` (100 rows), from BENCHMARKS.md.
const NEXT_PAGE_BYTES: usize = 36_193;

#[tokio::test]
async fn a_100_row_project_list_weighs_less_than_the_next_peer_page() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let team = team_of(&demo, alice_id).await;
    // Straight into the table: 100 creates would meet the action's limit.
    for i in 0..100 {
        sqlx::query(
            "INSERT INTO projects (team_id, name, created_by, created_at, updated_at) VALUES ($1, $2, $3, 0, 0)",
        )
        .bind(team)
        .bind(format!("Project {i}"))
        .bind(alice_id)
        .execute(&demo.db.pool)
        .await
        .unwrap();
    }
    let html = alice.get("/projects").await.text();
    let row_start = format!("<li {}=\"project:", wire::attr::FRAGMENT);
    assert_eq!(html.matches(&row_start).count(), 100, "{}", html.len());
    assert!(
        html.len() < NEXT_PAGE_BYTES,
        "{} bytes for 100 rows (Next.js: {NEXT_PAGE_BYTES})",
        html.len()
    );
    // The list's forms share one error region: the page has the create
    // form's, the sign-out form's and the group's.
    let forms = html.matches("<form ").count();
    let regions = html.matches(wire::attr::FORM_ERRORS).count();
    assert!(
        forms >= 100 && regions <= 4,
        "{forms} forms, {regions} regions"
    );

    // A row's form as a browser submits it without JavaScript: its action
    // URL, the text field and the clicked button's name and value.
    let (id,): (i64,) = sqlx::query_as("SELECT MAX(id) FROM projects")
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    let row = html
        .split(&row_start)
        .find(|r| r.contains(&format!("value=\"{id}\"")))
        .expect("the row of the newest project");
    let action = row
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(!action.contains(wire::field::BACK), "{action}");
    assert!(row.contains(&format!("button name=\"projectId\" value=\"{id}\"")));
    let r = alice
        .post(&action)
        .header("sec-fetch-site", "same-origin")
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("name=Renamed+row&projectId={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "a no-JS success is a redirect");
    let after = alice.get("/projects").await.text();
    assert!(after.contains(">Renamed row</a>"), "{after}");
    // And the same form through the client runtime's JSON path.
    let r = alice
        .call(
            projects::RENAME,
            &[("name", "Renamed again"), ("projectId", &id.to_string())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}
