//! Project attachments in the demo (issue #21): upload, list, download and
//! delete, team-scoped like everything else, with and without JavaScript.
//! Each attack asserts the refusal and that nothing changed: the tables
//! (snapshot), the file store and the upload temp dir.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Demo, accept_invite, config, project, snapshot, start_with, team_of, user};
use demo::actions::{account, attachments, projects, teams};
use demo::dal::attachments::TEAM_QUOTA_BYTES;
use portcullis::testing::TestClient;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

struct Setup {
    demo: Demo,
    temp: PathBuf,
    files: PathBuf,
}

async fn setup() -> Setup {
    let temp = std::env::temp_dir().join(format!(
        "portcullis-demo-upload-temp-{}",
        rand::random::<u64>()
    ));
    let mut config = config();
    config.uploads.dir = temp.clone();
    let demo = start_with(config).await;
    let files = demo.db.files_dir();
    Setup { demo, temp, files }
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Setup {
    async fn temp_is_empty(&self) {
        for _ in 0..50 {
            if files_in(&self.temp).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("upload temp files left behind: {:?}", files_in(&self.temp));
    }
}

async fn upload(
    c: &TestClient,
    project: i64,
    name: &str,
    bytes: &[u8],
) -> portcullis::testing::TestResponse {
    c.upload(
        attachments::UPLOAD,
        &[("projectId", &project.to_string())],
        &[("file", name, bytes.to_vec())],
    )
    .await
}

#[tokio::test]
async fn a_member_uploads_lists_downloads_and_deletes() {
    let s = setup().await;
    let (c, id) = user(&s.demo, "Alice").await;
    let p = project(&c, team_of(&s.demo, id).await, "Apollo").await;

    let page = c.get(&format!("/projects/{p}")).await.text();
    assert!(
        page.contains("enctype=\"multipart/form-data\""),
        "the upload form is multipart"
    );
    assert!(page.contains("type=\"file\""));

    let r = upload(&c, p, "../../diagram.png", PNG).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let dto = r.result();
    assert_eq!(dto["fileName"], "diagram.png");
    assert_eq!(dto["contentType"], "image/png");
    assert_eq!(dto["uploader"], "Alice");
    assert!(
        dto.get("fileKey").is_none(),
        "the store key stays on the server"
    );
    let aid = dto["id"].as_i64().unwrap();
    // The fresh list comes back in the same round trip when asked for.
    assert_eq!(files_in(&s.files).len(), 1);
    s.temp_is_empty().await;

    let page = c.get(&format!("/projects/{p}")).await.text();
    assert!(page.contains("diagram.png"), "listed on the project page");

    let file = c.get(&format!("/attachments/{aid}")).await;
    assert_eq!(file.status, 200);
    assert_eq!(&file.body[..], PNG);
    assert!(
        file.header("content-disposition")
            .unwrap()
            .starts_with("attachment;")
    );
    assert_eq!(file.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(file.header("content-type"), Some("image/png"));

    let r = c
        .call(attachments::DELETE, &[("attachmentId", &aid.to_string())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(files_in(&s.files).is_empty(), "the file went with its row");
    assert_eq!(c.get(&format!("/attachments/{aid}")).await.status, 404);
}

#[tokio::test]
async fn another_team_cannot_upload_see_download_or_delete() {
    let s = setup().await;
    let (alice, a) = user(&s.demo, "Alice").await;
    let p = project(&alice, team_of(&s.demo, a).await, "Apollo").await;
    let r = upload(&alice, p, "plan.txt", b"the plan").await;
    let aid = r.result()["id"].as_i64().unwrap();
    let (mallory, _) = user(&s.demo, "Mallory").await;
    let before = snapshot(&s.demo).await;
    let stored = files_in(&s.files);

    // Upload into Alice's project: 404, as for a project that does not exist.
    let r = upload(&mallory, p, "x.png", PNG).await;
    common::assert_refused(&r, 404, "not_found");
    // Download and delete Alice's attachment: 404.
    assert_eq!(
        mallory.get(&format!("/attachments/{aid}")).await.status,
        404
    );
    let r = mallory
        .call(attachments::DELETE, &[("attachmentId", &aid.to_string())])
        .await;
    common::assert_refused(&r, 404, "not_found");
    // Signed out: sent to sign in, never the file.
    let anon = s.demo.client.new_session();
    let r = anon.get(&format!("/attachments/{aid}")).await;
    assert_eq!(r.status, 303);
    assert_ne!(&r.body[..], b"the plan");

    assert_eq!(snapshot(&s.demo).await, before);
    assert_eq!(files_in(&s.files), stored, "nothing stored or removed");
    s.temp_is_empty().await;
}

#[tokio::test]
async fn a_download_asked_for_by_another_site_is_refused() {
    let s = setup().await;
    let (c, id) = user(&s.demo, "Alice").await;
    let p = project(&c, team_of(&s.demo, id).await, "Apollo").await;
    let aid = upload(&c, p, "a.png", PNG).await.result()["id"]
        .as_i64()
        .unwrap();
    let url = c.url(&format!("/attachments/{aid}"));
    // With Alice's cookies, as a browser would send them on a cross-site
    // navigation or embed.
    let r = reqwest::Client::new()
        .get(&url)
        .header("cookie", c.cookies().unwrap())
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(!r.bytes().await.unwrap().starts_with(b"\x89PNG"));
}

#[tokio::test]
async fn disguised_and_active_files_are_refused_and_nothing_is_kept() {
    let s = setup().await;
    let (c, id) = user(&s.demo, "Alice").await;
    let p = project(&c, team_of(&s.demo, id).await, "Apollo").await;
    let before = snapshot(&s.demo).await;
    for (name, bytes) in [
        (
            "cat.png",
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"[..],
        ),
        (
            "notes.txt",
            &b"<!doctype html><script>alert(1)</script>"[..],
        ),
        (
            "invoice.pdf",
            &b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0PE\0\0"[..],
        ),
    ] {
        let r = upload(&c, p, name, bytes).await;
        assert_eq!(r.status, 422, "{name}: {}", r.text());
        assert!(r.json()["fieldErrors"]["file"].is_array(), "{}", r.text());
    }
    // Over the 5 MiB cap.
    let mut big = PNG.to_vec();
    big.resize(5 * 1024 * 1024 + 1, 0);
    let r = upload(&c, p, "big.png", &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(snapshot(&s.demo).await, before);
    assert!(files_in(&s.files).is_empty());
    s.temp_is_empty().await;
}

#[tokio::test]
async fn the_team_quota_holds_and_a_refused_upload_keeps_no_file() {
    let s = setup().await;
    let (c, id) = user(&s.demo, "Alice").await;
    let p = project(&c, team_of(&s.demo, id).await, "Apollo").await;
    // The team has used all but 10 bytes of its quota.
    sqlx::query(
        "INSERT INTO attachments (project_id, uploader_id, file_key, file_name, content_type, size, sha256, created_at) \
         VALUES ($1, $2, 'ffffffffffffffffffffffffffffffff', 'old.pdf', 'application/pdf', $3, '', 0)",
    )
    .bind(p)
    .bind(id)
    .bind(TEAM_QUOTA_BYTES - 10)
    .execute(&s.demo.db.pool)
    .await
    .unwrap();
    let before = snapshot(&s.demo).await;
    let r = upload(&c, p, "a.png", PNG).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.json()["fieldErrors"]["file"][0]
            .as_str()
            .unwrap()
            .contains("20 MiB"),
        "{}",
        r.text()
    );
    assert_eq!(snapshot(&s.demo).await, before);
    assert!(
        files_in(&s.files).is_empty(),
        "the stored file was removed again"
    );
    s.temp_is_empty().await;
}

#[tokio::test]
async fn without_javascript_an_upload_redirects_back_to_the_project() {
    let s = setup().await;
    let (c, id) = user(&s.demo, "Alice").await;
    let p = project(&c, team_of(&s.demo, id).await, "Apollo").await;
    let back = format!("/projects/{p}");
    let form = reqwest::multipart::Form::new()
        .text("projectId", p.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"meeting notes".to_vec()).file_name("notes.txt"),
        );
    let r = c
        .post(&format!(
            "{}?_return={}",
            c.path(attachments::UPLOAD),
            urlencode(&back)
        ))
        .header("origin", c.origin())
        .header("sec-fetch-site", "same-origin")
        .header("accept", "text/html")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], back.as_str());
    assert!(c.get(&back).await.text().contains("notes.txt"));
    // A refused one comes back with its error shown on the page.
    let form = reqwest::multipart::Form::new()
        .text("projectId", p.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"<svg/>".to_vec()).file_name("x.svg"),
        );
    let r = c
        .post(&format!(
            "{}?_return={}",
            c.path(attachments::UPLOAD),
            urlencode(&back)
        ))
        .header("origin", c.origin())
        .header("sec-fetch-site", "same-origin")
        .header("accept", "text/html")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let page = c.get(&back).await.text();
    assert!(
        page.contains("judged by the file"),
        "the field error is shown"
    );
    s.temp_is_empty().await;
}

/// Enough for the demo's paths (`/projects/7`).
fn urlencode(s: &str) -> String {
    s.replace('/', "%2F")
}

/// Found by the outside review: moving a project into another team took
/// that team over its attachment quota (and emptied the source's).
#[tokio::test]
async fn moving_a_project_cannot_take_a_team_over_its_quota() {
    let s = setup().await;
    let (alice, alice_id) = user(&s.demo, "Alice").await;
    let (bob, bob_id) = user(&s.demo, "Bob").await;
    let (alice_team, bob_team) = (
        team_of(&s.demo, alice_id).await,
        team_of(&s.demo, bob_id).await,
    );
    let r = bob
        .call(
            teams::INVITE,
            &[
                ("teamId", &bob_team.to_string()),
                ("email", "alice@example.com"),
            ],
        )
        .await;
    let link = r.result()["link"].as_str().unwrap().to_owned();
    assert_eq!(accept_invite(&alice, &link).await.status, 200);
    // Bob's team has 10 bytes left; Alice's project holds a 70-byte PNG.
    let bobs = project(&bob, bob_team, "Full").await;
    sqlx::query(
        "INSERT INTO attachments (project_id, uploader_id, file_key, file_name, content_type, size, sha256, created_at) \
         VALUES ($1, $2, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'big.pdf', 'application/pdf', $3, '', 0)",
    )
    .bind(bobs)
    .bind(bob_id)
    .bind(TEAM_QUOTA_BYTES - 10)
    .execute(&s.demo.db.pool)
    .await
    .unwrap();
    let mine = project(&alice, alice_team, "Heavy").await;
    assert_eq!(upload(&alice, mine, "a.png", PNG).await.status, 200);
    let sealed =
        common::hidden_field(&alice, &format!("/projects/{mine}/transfer"), "projectId").await;
    let before = snapshot(&s.demo).await;
    let r = alice
        .call(
            projects::TRANSFER,
            &[("projectId", &sealed), ("toTeam", &bob_team.to_string())],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.json()["fieldErrors"]["toTeam"][0]
            .as_str()
            .unwrap()
            .contains("no room"),
        "{}",
        r.text()
    );
    assert_eq!(
        snapshot(&s.demo).await,
        before,
        "the project stayed where it was"
    );
    // An empty project still moves.
    let light = project(&alice, alice_team, "Light").await;
    let sealed =
        common::hidden_field(&alice, &format!("/projects/{light}/transfer"), "projectId").await;
    let r = alice
        .call(
            projects::TRANSFER,
            &[("projectId", &sealed), ("toTeam", &bob_team.to_string())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Found by the outside review: deleting a project or an account freed the
/// quota but left the files on disk (unbounded growth).
#[tokio::test]
async fn deleting_a_project_or_an_account_removes_its_files() {
    let s = setup().await;
    let (_, id) = user(&s.demo, "Alice").await;
    // Project deletion and account deletion need a recent password.
    let c = common::session_reauthed_ago(&s.demo, id, Duration::ZERO).await;
    let team = team_of(&s.demo, id).await;
    let p = project(&c, team, "Doomed").await;
    for i in 0..3 {
        assert_eq!(
            upload(&c, p, &format!("f{i}.txt"), format!("file {i}").as_bytes())
                .await
                .status,
            200
        );
    }
    assert_eq!(files_in(&s.files).len(), 3);
    let r = c
        .call(projects::DELETE, &[("projectId", &p.to_string())])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(files_in(&s.files).is_empty(), "{:?}", files_in(&s.files));

    let p = project(&c, team, "Second").await;
    assert_eq!(
        upload(&c, p, "g.txt", b"kept until the account goes")
            .await
            .status,
        200
    );
    assert_eq!(files_in(&s.files).len(), 1);
    let r = c
        .call(account::DELETE, &[("password", common::PASSWORD)])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(files_in(&s.files).is_empty(), "{:?}", files_in(&s.files));
}
