//! The demo's happy paths: sign up, sign in, act, sign out; the public
//! contact form; pages render and require sign-in where they should.

mod common;

use common::{PASSWORD, project, snapshot, start, team_of, user};
use demo::actions::{auth, comments, contact, projects, teams};
use portcullis::wire;

#[tokio::test]
async fn sign_up_sign_in_act_sign_out() {
    let demo = start().await;
    let (c, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let p = project(&c, team, "Apollo").await;
    let r = c
        .call(
            projects::RENAME,
            &[("projectId", &p.to_string()), ("name", "Artemis")],
        )
        .await;
    assert_eq!(
        r.json(),
        serde_json::json!({"ok": true, "result": {"id": p, "name": "Artemis", "archived": false}, "revalidated": true})
    );
    assert!(c.get("/projects").await.text().contains("Artemis"));
    let r = c.call(auth::SIGN_OUT, &[]).await;
    assert_eq!(r.json()["redirect"], "/");
    assert_eq!(c.get("/projects").await.status, 303);
    // Sign back in: redirect to the return path.
    let path = format!(
        "{}?{}=%2Fprojects%2F{p}",
        c.path(auth::SIGN_IN),
        wire::field::RETURN
    );
    let r = c
        .post(&path)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "email=alice%40example.com&password={}&{}=",
            PASSWORD.replace(' ', "+"),
            wire::field::HONEYPOT
        ))
        .send()
        .await
        .unwrap();
    let r = portcullis::testing::TestResponse::read(r).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["redirect"], format!("/projects/{p}"));
    assert_eq!(c.get(&format!("/projects/{p}")).await.status, 200);
}

#[tokio::test]
async fn no_js_form_post_redirects_back() {
    let demo = start().await;
    let (c, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let p = project(&c, team, "Apollo").await;
    let path = format!(
        "{}?{}=%2Fprojects",
        c.path(projects::RENAME),
        wire::field::RETURN
    );
    let r = c
        .post(&path)
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("projectId={p}&name=Gemini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/projects");
    assert!(c.get("/projects").await.text().contains("Gemini"));
}

#[tokio::test]
async fn public_contact_form_works_anonymously_and_is_rate_limited() {
    let demo = start().await;
    let anon = demo.client.new_session();
    let form = [
        ("name", "Visitor"),
        ("email", "v@example.com"),
        ("message", "Hello there, a question."),
    ];
    for _ in 0..5 {
        let r = anon.call(contact::SEND, &form).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("ratelimit-policy").is_some());
    }
    let before = snapshot(&demo).await;
    let r = anon.call(contact::SEND, &form).await;
    common::assert_refused(&r, 429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    assert_eq!(snapshot(&demo).await, before);
}

#[tokio::test]
async fn pages_require_sign_in_and_keep_the_return_path() {
    let demo = start().await;
    let anon = demo.client.new_session();
    for page in ["/projects", "/settings", "/teams/1", "/projects/1"] {
        let r = anon.get(page).await;
        assert_eq!(r.status, 303, "{page}");
        let loc = r.header("location").unwrap();
        assert!(loc.starts_with("/login?return=%2F"), "{loc}");
    }
    for page in ["/", "/login", "/signup", "/contact", "/assets/app.css"] {
        assert_eq!(anon.get(page).await.status, 200, "{page}");
    }
}

#[tokio::test]
async fn forms_render_current_ids_and_accessible_fields() {
    let demo = start().await;
    let html = demo.client.get("/login").await.text();
    let id = demo.client.app().action_id(auth::SIGN_IN).unwrap();
    assert!(
        html.contains(&format!(
            "action=\"{}{id}?{}=",
            wire::ACTION_PREFIX,
            wire::field::RETURN
        )),
        "{html}"
    );
    assert!(
        !html.contains(auth::SIGN_IN.name()),
        "action names never reach the page"
    );
    // Every input has a label and an error slot it is described by.
    for name in ["email", "password"] {
        assert!(
            html.contains(&format!("<label for=\"f-{name}\">")),
            "{name}"
        );
        assert!(
            html.contains(&format!("aria-describedby=\"f-{name}-error\"")),
            "{name}"
        );
        assert!(
            html.contains(&format!(
                "id=\"f-{name}-error\" {}=\"{name}\" aria-live=\"polite\"",
                wire::attr::ERROR_FOR
            )),
            "{name}"
        );
    }
    assert!(html.contains(&format!(
        "role=\"alert\" aria-live=\"assertive\" {}",
        wire::attr::FORM_ERRORS
    )));
}

#[tokio::test]
async fn honeypot_filled_contact_form_is_refused_and_nothing_stored() {
    let demo = start().await;
    let anon = demo.client.new_session();
    let html = anon.get("/contact").await.text();
    assert!(
        html.contains(&format!("name=\"{}\"", wire::field::HONEYPOT)),
        "the form carries the honeypot"
    );
    let before = snapshot(&demo).await;
    let r = anon
        .call(
            contact::SEND,
            &[
                ("name", "Bot"),
                ("email", "bot@example.com"),
                ("message", "Buy cheap watches now!"),
                (wire::field::HONEYPOT, "http://spam.example"),
            ],
        )
        .await;
    common::assert_refused(&r, 403, "bot_check_failed");
    assert_eq!(snapshot(&demo).await, before);
}

/// Sign-in limits (see `portcullis::ratelimit`, "Per-account limits without
/// a lock-out"): 10 guesses per account per address, then a ceiling of 100
/// per account from everywhere. The lock-out side is in `identity.rs`.
#[tokio::test]
async fn sign_in_guesses_meet_the_address_limit_then_the_account_ceiling() {
    let demo = start().await;
    // Sign up without signing in: the account's budget starts untouched.
    let r = demo
        .client
        .new_session()
        .call(
            auth::SIGN_UP,
            &[
                ("email", "alice@example.com"),
                ("displayName", "Alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let wrong = [
        ("email", "alice@example.com"),
        ("password", "wrong password"),
    ];
    let right = [("email", "ALICE@example.com"), ("password", PASSWORD)];
    let from = |n: u8| {
        demo.client
            .new_session()
            .from_address(std::net::IpAddr::from([127, 0, 1, n]))
    };
    // Which limit refused: the `RateLimit` header names the policy at 0.
    let exhausted = |r: &portcullis::testing::TestResponse, policy: &str| {
        r.header("ratelimit")
            .is_some_and(|h| h.contains(&format!("\"{policy}\";r=0")))
    };
    // Ten addresses, ten wrong guesses each (100, the account ceiling's
    // burst): each address then meets its own limit, even with the right
    // password.
    for n in 1..=10 {
        let guesser = from(n);
        for _ in 0..10 {
            let r = guesser.call(auth::SIGN_IN, &wrong).await;
            assert_eq!(r.status, 422, "{}", r.text());
        }
        let r = guesser.call(auth::SIGN_IN, &right).await;
        common::assert_refused(&r, 429, "rate_limited");
        assert!(
            exhausted(&r, "account+address"),
            "{:?}",
            r.header("ratelimit")
        );
    }
    // The ceiling refills one guess every 9 s, so on a slow run a guess or
    // two may still pass; within three more it holds, for every address.
    let mut held = false;
    for n in 11..=13 {
        let r = from(n).call(auth::SIGN_IN, &wrong).await;
        if r.status == 429 {
            assert!(exhausted(&r, "account"), "{:?}", r.header("ratelimit"));
            held = true;
            break;
        }
        assert_eq!(r.status, 422, "{}", r.text());
    }
    assert!(held, "the account ceiling never refused");
    // Now even the right password from a fresh address is refused: that is
    // what it takes ten addresses at once to cause.
    let r = from(14).call(auth::SIGN_IN, &right).await;
    common::assert_refused(&r, 429, "rate_limited");
    assert!(exhausted(&r, "account"), "{:?}", r.header("ratelimit"));
    // Another account is unaffected.
    let r = from(14)
        .call(
            auth::SIGN_IN,
            &[("email", "bob@example.com"), ("password", "wrong password")],
        )
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn invite_quota_is_shown_to_the_handler() {
    let demo = start().await;
    let (alice, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await.to_string();
    let r = alice
        .call(
            teams::INVITE,
            &[("teamId", &team), ("email", "x@example.com")],
        )
        .await;
    assert_eq!(r.result()["invitesLeftToday"], 19);
}

#[tokio::test]
async fn bench_seed_creates_the_workload_and_its_sessions_work() {
    let demo = start().await;
    let sessions = demo::seed::bench(&demo.db, &demo.sessions, "portcullis")
        .await
        .unwrap();
    assert_eq!(sessions.len(), 100);
    let (projects,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM projects")
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    assert_eq!(projects, 1000);
    // Session 3 is user u4, who owns projects i % 10 == 3.
    let s = &sessions[3];
    let c = demo.client.new_session();
    c.set_cookie(&s.cookie);
    let r = c
        .call(
            projects::RENAME,
            &[
                ("projectId", &s.project_id.to_string()),
                ("name", "Renamed"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // And cannot touch u1's project.
    let other = sessions[0].project_id.to_string();
    let r = c
        .call(projects::RENAME, &[("projectId", &other), ("name", "Nope")])
        .await;
    common::assert_refused(&r, 404, "not_found");
}

#[tokio::test]
async fn rename_returns_the_fresh_row_fragment_in_under_a_kilobyte() {
    let demo = start().await;
    let (c, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(project(&c, team, &format!("Project {i}")).await);
    }
    // The list page is composed of one fragment per row.
    let html = c.get("/projects").await.text();
    let keys: Vec<String> = std::iter::once("projects".to_owned())
        .chain(ids.iter().map(|i| format!("project:{i}")))
        .collect();
    for k in &keys {
        assert!(
            html.contains(&format!("{}=\"{k}\"", wire::attr::FRAGMENT)),
            "{k}"
        );
    }
    let target = ids[2];
    let r = c
        .post(&c.path(projects::RENAME))
        .header("sec-fetch-site", "same-origin")
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(wire::header::FRAGMENTS, keys.join(" "))
        .body(format!("projectId={target}&name=Renamed+project"))
        .send()
        .await
        .unwrap();
    let r = portcullis::testing::TestResponse::read(r).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let frags = v["fragments"].as_object().unwrap();
    assert_eq!(frags.len(), 1, "only the renamed row: {v}");
    assert!(
        frags[&format!("project:{target}")]
            .as_str()
            .unwrap()
            .contains("Renamed project")
    );
    assert!(r.body.len() < 1024, "{} bytes", r.body.len());
    // Another member's next load sees it (update_tag, not SWR).
    assert!(c.get("/projects").await.text().contains("Renamed project"));
}

#[tokio::test]
async fn a_comment_by_one_member_appears_for_another_on_their_next_load() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, _) = user(&demo, "Bob").await;
    let team = team_of(&demo, alice_id).await;
    let r = alice
        .call(
            teams::INVITE,
            &[("teamId", &team.to_string()), ("email", "bob@example.com")],
        )
        .await;
    let link = r.result()["link"].as_str().unwrap().to_owned();
    assert_eq!(common::accept_invite(&bob, &link).await.status, 200);
    let p = project(&alice, team, "Shared").await;
    let page = format!("/projects/{p}");
    assert!(bob.get(&page).await.text().contains("No comments yet"));
    let r = alice
        .call(
            comments::POST,
            &[("projectId", &p.to_string()), ("body", "Hello Bob")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(bob.get(&page).await.text().contains("Hello Bob"));
}

#[tokio::test]
async fn no_js_double_submit_of_one_rendered_form_applies_once() {
    let demo = start().await;
    let (c, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let key = common::hidden_field(&c, "/projects", wire::field::IDEMPOTENCY_KEY).await;
    let submit = || {
        c.post(&c.path(projects::CREATE))
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "teamId={team}&name=Once&{}={key}",
                wire::field::IDEMPOTENCY_KEY
            ))
            .send()
    };
    let first = submit().await.unwrap();
    let second = submit().await.unwrap();
    assert_eq!(first.status(), 303);
    assert_eq!(second.status(), 303);
    assert_eq!(second.headers()[wire::header::IDEMPOTENT_REPLAYED], "true");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM projects WHERE name = 'Once'")
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // A fresh render carries a fresh key.
    assert_ne!(
        common::hidden_field(&c, "/projects", wire::field::IDEMPOTENCY_KEY).await,
        key
    );
}

#[tokio::test]
async fn the_billing_webhook_is_the_only_way_a_plan_changes() {
    let demo = start().await;
    let (_, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let body = format!(r#"{{"id":"evt_42","type":"plan.changed","teamId":{team},"plan":"pro"}}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sig = demo::billing::webhook().sign(body.as_bytes(), now);
    let send = |sig: String, body: String| {
        reqwest::Client::new()
            .post(demo.client.url(demo::billing::PATH))
            .header(demo::billing::HEADER, sig)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let forged = body.replace("pro", "enterprise");
    assert_eq!(send(sig.clone(), forged).await.unwrap().status(), 401);
    assert_eq!(send(sig.clone(), body.clone()).await.unwrap().status(), 200);
    let (plan,): (String,) = sqlx::query_as("SELECT plan FROM teams WHERE id = $1")
        .bind(team)
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    assert_eq!(plan, "pro");
}

/// Regression: deleting a project or a comment must expire the cached
/// fragments that showed it (found by the browser test after fragments landed).
#[tokio::test]
async fn deleted_project_and_comment_vanish_from_cached_fragments() {
    let demo = start().await;
    let (c, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let p = project(&c, team, "Doomed project").await;
    let r = c
        .call(
            comments::POST,
            &[("projectId", &p.to_string()), ("body", "Doomed comment")],
        )
        .await;
    let comment = r.result()["id"].as_i64().unwrap().to_string();
    assert!(
        c.get(&format!("/projects/{p}"))
            .await
            .text()
            .contains("Doomed comment")
    );
    assert_eq!(
        c.call(comments::DELETE, &[("commentId", &comment)])
            .await
            .status,
        200
    );
    assert!(
        !c.get(&format!("/projects/{p}"))
            .await
            .text()
            .contains("Doomed comment")
    );
    assert!(c.get("/projects").await.text().contains("Doomed project"));
    assert_eq!(
        c.call(projects::DELETE, &[("projectId", &p.to_string())])
            .await
            .status,
        200
    );
    assert!(!c.get("/projects").await.text().contains("Doomed project"));
}
