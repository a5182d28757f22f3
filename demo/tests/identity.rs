//! Issue #16: the identity lifecycle and the team rules, as attacks against
//! the running demo (SQLite by default, Postgres with TEST_DATABASE=postgres;
//! the Redis-session case of the lifecycle is in `cluster.rs`). Each test
//! sends what the attacker (or the stale session) would send, asserts the
//! refusal, and asserts the database did not change.

mod common;

use common::{
    Demo, PASSWORD, accept_invite, assert_refused, project, sign_in, signed_in, snapshot, start,
    team_of, user,
};
use demo::actions::{account, auth, comments, contact, projects, teams, tokens};
use portcullis::AnyActionRef;
use portcullis::testing::{TestClient, TestResponse};

/// A second signed-in session of an existing user.
async fn another_session(demo: &Demo, name: &str) -> TestClient {
    let c = demo.client.new_session();
    sign_in(
        &c,
        &format!("{}@example.com", name.to_lowercase()),
        PASSWORD,
    )
    .await;
    c
}

async fn new_token(c: &TestClient) -> String {
    let r = c
        .call(
            tokens::CREATE,
            &[("name", "script"), ("scope", "write"), ("days", "30")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.result()["token"].as_str().unwrap().to_owned()
}

async fn api(demo: &Demo, token: &str) -> TestResponse {
    let r = reqwest::Client::new()
        .get(demo.client.url("/api/projects"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    TestResponse::read(r).await
}

/// `owner` invites `name` to `team`, and `name`'s client accepts.
async fn join(owner: &TestClient, member: &TestClient, name: &str, team: i64) {
    let r = owner
        .call(
            teams::INVITE,
            &[
                ("teamId", &team.to_string()),
                ("email", &format!("{}@example.com", name.to_lowercase())),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let link = r.result()["link"].as_str().unwrap().to_owned();
    let r = accept_invite(member, &link).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn set_role(c: &TestClient, team: i64, member: i64, role: &str) -> TestResponse {
    c.call(
        teams::SET_ROLE,
        &[
            ("teamId", &team.to_string()),
            ("memberId", &member.to_string()),
            ("role", role),
        ],
    )
    .await
}

async fn role_of(demo: &Demo, team: i64, user: i64) -> Option<String> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT role FROM memberships WHERE team_id = $1 AND user_id = $2")
            .bind(team)
            .bind(user)
            .fetch_optional(&demo.db.pool)
            .await
            .unwrap();
    row.map(|(r,)| r)
}

// ---------------------------------------------------------------------------
// Identity lifecycle

#[tokio::test]
async fn deleted_account_sessions_never_become_the_next_signup() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let other_session = another_session(&demo, "Alice").await;
    let token = new_token(&alice).await;
    assert_eq!(api(&demo, &token).await.status, 200);
    let team = team_of(&demo, alice_id).await;
    project(&alice, team, "Alice's diary").await;
    // Alice deletes her account from one browser.
    let r = alice.call(account::DELETE, &[("password", PASSWORD)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The next person signs up. Alice had the largest id: a database that
    // reuses ids would hand it to them, and her other session with it.
    let (eve, eve_id) = user(&demo, "Eve").await;
    assert!(eve_id > alice_id, "id {alice_id} was reused");
    let eve_team = team_of(&demo, eve_id).await;
    project(&eve, eve_team, "Eve's plans").await;
    let before = snapshot(&demo).await;
    // Alice's other session is nobody: no pages, no actions, no tokens.
    assert!(!signed_in(&other_session).await);
    let page = other_session.get("/projects").await;
    assert_eq!(page.status, 303, "{}", page.text());
    assert!(!page.text().contains("Eve's plans"));
    let r = other_session
        .call(
            projects::CREATE,
            &[("teamId", &eve_team.to_string()), ("name", "Planted")],
        )
        .await;
    assert_refused(&r, 401, "unauthenticated");
    let r = other_session
        .call(
            tokens::CREATE,
            &[("name", "x"), ("scope", "write"), ("days", "30")],
        )
        .await;
    assert_refused(&r, 401, "unauthenticated");
    // Her API token died with the account.
    let r = api(&demo, &token).await;
    assert_refused(&r, 401, "unauthenticated");
    assert_eq!(snapshot(&demo).await, before);
    // Eve is unaffected.
    assert!(eve.get("/projects").await.text().contains("Eve's plans"));
}

#[tokio::test]
async fn password_change_ends_every_other_session_and_token() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let laptop = another_session(&demo, "Alice").await;
    let phone = another_session(&demo, "Alice").await;
    let token = new_token(&alice).await;
    let team = team_of(&demo, alice_id).await.to_string();
    // First change, keeping tokens: other sessions end, the token lives.
    let r = alice
        .call(
            account::CHANGE_PASSWORD,
            &[
                ("currentPassword", PASSWORD),
                ("newPassword", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(signed_in(&alice).await, "the session that changed it stays");
    let before = snapshot(&demo).await;
    for stale in [&laptop, &phone] {
        assert!(!signed_in(stale).await);
        let r = stale
            .call(projects::CREATE, &[("teamId", &team), ("name", "Stale")])
            .await;
        assert_refused(&r, 401, "unauthenticated");
    }
    assert_eq!(snapshot(&demo).await, before);
    assert_eq!(api(&demo, &token).await.status, 200, "not asked to revoke");
    // Second change, with the checkbox: the token ends too.
    let r = alice
        .call(
            account::CHANGE_PASSWORD,
            &[
                ("currentPassword", "a brand new password"),
                ("newPassword", "the third password"),
                ("revokeTokens", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = api(&demo, &token).await;
    assert_refused(&r, 401, "unauthenticated");
    assert!(signed_in(&alice).await);
    // The old passwords are dead, the new one works.
    let anon = demo.client.new_session();
    for old in [PASSWORD, "a brand new password"] {
        let r = anon
            .call(
                auth::SIGN_IN,
                &[("email", "alice@example.com"), ("password", old)],
            )
            .await;
        assert_refused(&r, 422, "invalid_input");
    }
    sign_in(&anon, "alice@example.com", "the third password").await;
}

#[tokio::test]
async fn sign_out_everywhere_ends_other_sessions() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let laptop = another_session(&demo, "Alice").await;
    let phone = another_session(&demo, "Alice").await;
    let token = new_token(&alice).await;
    let team = team_of(&demo, alice_id).await.to_string();
    let r = alice.call(account::SIGN_OUT_EVERYWHERE, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let before = snapshot(&demo).await;
    for stale in [&laptop, &phone] {
        assert!(!signed_in(stale).await);
        let r = stale
            .call(projects::CREATE, &[("teamId", &team), ("name", "Stale")])
            .await;
        assert_refused(&r, 401, "unauthenticated");
        let r = stale.call(account::SIGN_OUT_EVERYWHERE, &[]).await;
        assert_refused(&r, 401, "unauthenticated");
    }
    assert_eq!(snapshot(&demo).await, before);
    // This session and the API token (not a session) continue.
    assert!(signed_in(&alice).await);
    assert_eq!(api(&demo, &token).await.status, 200);
    // The ended sessions can sign in again.
    sign_in(&laptop, "alice@example.com", PASSWORD).await;
    assert!(signed_in(&laptop).await);
}

#[tokio::test]
async fn role_change_takes_effect_on_existing_sessions() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, bob_id) = user(&demo, "Bob").await;
    let team = team_of(&demo, alice_id).await;
    join(&alice, &bob, "Bob", team).await;
    let r = set_role(&alice, team, bob_id, "admin").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The promotion ended Bob's sessions; he signs in again as an admin,
    // on two devices.
    assert!(!signed_in(&bob).await);
    let bob = another_session(&demo, "Bob").await;
    let bob_phone = another_session(&demo, "Bob").await;
    let invite = |c: TestClient| async move {
        c.call(
            teams::INVITE,
            &[("teamId", &team.to_string()), ("email", "x@example.com")],
        )
        .await
    };
    assert_eq!(invite(bob_phone.clone()).await.status, 200);
    // Alice demotes him. His open sessions lose the admin rights at once.
    let r = set_role(&alice, team, bob_id, "member").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let before = snapshot(&demo).await;
    for stale in [&bob, &bob_phone] {
        let r = invite(stale.clone()).await;
        assert_refused(&r, 401, "unauthenticated");
        let r = set_role(stale, team, alice_id, "member").await;
        assert_refused(&r, 401, "unauthenticated");
    }
    // Signed in again, he is a member: admin actions are refused.
    let bob = another_session(&demo, "Bob").await;
    let r = invite(bob.clone()).await;
    assert_refused(&r, 404, "not_found");
    assert_eq!(snapshot(&demo).await, before);
    assert_eq!(
        role_of(&demo, team, bob_id).await.as_deref(),
        Some("member")
    );
}

// ---------------------------------------------------------------------------
// Team rules

#[tokio::test]
async fn admin_cannot_demote_or_remove_the_owner() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, bob_id) = user(&demo, "Bob").await;
    let (carol, carol_id) = user(&demo, "Carol").await;
    let team = team_of(&demo, alice_id).await;
    join(&alice, &bob, "Bob", team).await;
    join(&alice, &carol, "Carol", team).await;
    assert_eq!(set_role(&alice, team, bob_id, "admin").await.status, 200);
    let bob = another_session(&demo, "Bob").await; // fresh: recent re-auth too
    let before = snapshot(&demo).await;
    let r = set_role(&bob, team, alice_id, "member").await;
    assert_refused(&r, 422, "invalid_input");
    assert!(r.text().contains("owner"), "{}", r.text());
    let r = bob
        .call(
            teams::REMOVE,
            &[
                ("teamId", &team.to_string()),
                ("memberId", &alice_id.to_string()),
            ],
        )
        .await;
    assert_refused(&r, 422, "invalid_input");
    // Nor can the owner demote herself.
    let r = set_role(&alice, team, alice_id, "member").await;
    assert_refused(&r, 422, "invalid_input");
    assert_eq!(snapshot(&demo).await, before);
    assert_eq!(
        role_of(&demo, team, alice_id).await.as_deref(),
        Some("admin")
    );
    // The owner still manages her team.
    assert_eq!(set_role(&alice, team, carol_id, "admin").await.status, 200);
    assert_eq!(set_role(&alice, team, bob_id, "member").await.status, 200);
    let _ = carol;
}

#[tokio::test]
async fn last_admin_cannot_leave_team_without_admin() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, bob_id) = user(&demo, "Bob").await;
    let team = team_of(&demo, alice_id).await;
    let team_s = team.to_string();
    join(&alice, &bob, "Bob", team).await;
    let before = snapshot(&demo).await;
    // The owner, the only admin, cannot leave.
    let r = alice.call(teams::LEAVE, &[("teamId", &team_s)]).await;
    assert_refused(&r, 422, "invalid_input");
    assert_eq!(snapshot(&demo).await, before);
    // A team whose owner lost admin rights (data from before the rule) and
    // whose only admin is Bob: Bob cannot leave, be demoted or removed.
    sqlx::query("UPDATE memberships SET role = 'member' WHERE team_id = $1 AND user_id = $2")
        .bind(team)
        .bind(alice_id)
        .execute(&demo.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE memberships SET role = 'admin' WHERE team_id = $1 AND user_id = $2")
        .bind(team)
        .bind(bob_id)
        .execute(&demo.db.pool)
        .await
        .unwrap();
    let bob = another_session(&demo, "Bob").await;
    let before = snapshot(&demo).await;
    let r = bob.call(teams::LEAVE, &[("teamId", &team_s)]).await;
    assert_refused(&r, 422, "invalid_input");
    assert_eq!(snapshot(&demo).await, before);
    let admins: (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM memberships WHERE team_id = $1 AND role = 'admin'")
            .bind(team)
            .fetch_one(&demo.db.pool)
            .await
            .unwrap();
    assert_eq!(admins.0, 1);
    // A plain member may leave (Bob, admin now, invites Carol).
    let (carol, _) = user(&demo, "Carol").await;
    join(&bob, &carol, "Carol", team).await;
    let r = carol.call(teams::LEAVE, &[("teamId", &team_s)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn invite_link_cannot_be_used_by_another_account() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, bob_id) = user(&demo, "Bob").await;
    let (mallory, mallory_id) = user(&demo, "Mallory").await;
    let team = team_of(&demo, alice_id).await;
    let r = alice
        .call(
            teams::INVITE,
            &[("teamId", &team.to_string()), ("email", "bob@example.com")],
        )
        .await;
    let link = r.result()["link"].as_str().unwrap().to_owned();
    // Mallory got hold of Bob's link.
    let before = snapshot(&demo).await;
    let r = accept_invite(&mallory, &link).await;
    assert_refused(&r, 422, "invalid_input");
    assert!(
        r.json()["formErrors"][0]
            .as_str()
            .unwrap()
            .contains("another email address")
    );
    assert_eq!(snapshot(&demo).await, before);
    assert_eq!(role_of(&demo, team, mallory_id).await, None);
    // The admin's list still shows the invite as pending.
    let page = alice.get(&format!("/teams/{team}")).await.text();
    assert!(
        page.contains("pending") && !page.contains("accepted"),
        "{page}"
    );
    // Bob accepts; the list says so.
    let r = accept_invite(&bob, &link).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        role_of(&demo, team, bob_id).await.as_deref(),
        Some("member")
    );
    let page = alice.get(&format!("/teams/{team}")).await.text();
    assert!(page.contains("accepted"), "{page}");
}

#[tokio::test]
async fn removed_member_sees_no_cached_project_list() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, bob_id) = user(&demo, "Bob").await;
    let team = team_of(&demo, alice_id).await;
    join(&alice, &bob, "Bob", team).await;
    let p = project(&alice, team, "Zeppelin").await;
    let r = alice
        .call(
            comments::POST,
            &[("projectId", &p.to_string()), ("body", "Top secret route")],
        )
        .await;
    assert_eq!(r.status, 200);
    // Bob's list and the thread are rendered, and cached for him.
    for _ in 0..2 {
        assert!(bob.get("/projects").await.text().contains("Zeppelin"));
        assert!(
            bob.get(&format!("/projects/{p}"))
                .await
                .text()
                .contains("Top secret route")
        );
    }
    let renders = demo.app.fragments().renders();
    let r = alice
        .call(
            teams::REMOVE,
            &[
                ("teamId", &team.to_string()),
                ("memberId", &bob_id.to_string()),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let before = snapshot(&demo).await;
    let list = bob.get("/projects").await.text();
    assert!(!list.contains("Zeppelin"), "{list}");
    assert!(
        demo.app.fragments().renders() > renders,
        "re-rendered, not served from cache"
    );
    let r = bob.get(&format!("/projects/{p}")).await;
    assert_eq!(r.status, 404);
    assert!(!r.text().contains("Top secret route"));
    assert_eq!(snapshot(&demo).await, before);
}

// ---------------------------------------------------------------------------
// Guessing and enumeration

#[tokio::test]
async fn guessing_from_one_address_does_not_lock_out_the_owner_elsewhere() {
    let demo = start().await;
    let (_, _) = user(&demo, "Alice").await;
    let attacker = demo
        .client
        .new_session()
        .from_address("127.0.0.2".parse().unwrap());
    let before = snapshot(&demo).await;
    for i in 0..10 {
        let r = attacker
            .call(
                auth::SIGN_IN,
                &[
                    ("email", "alice@example.com"),
                    ("password", &format!("guess number {i}")),
                ],
            )
            .await;
        assert_refused(&r, 422, "invalid_input");
    }
    // The attacker's address is done with this account, even with the
    // right password …
    let r = attacker
        .call(
            auth::SIGN_IN,
            &[("email", "ALICE@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_refused(&r, 429, "rate_limited");
    assert!(!signed_in(&attacker).await);
    // … while Alice, elsewhere, signs in.
    let alice = demo
        .client
        .new_session()
        .from_address("127.0.0.3".parse().unwrap());
    sign_in(&alice, "alice@example.com", PASSWORD).await;
    assert!(signed_in(&alice).await);
    assert_eq!(snapshot(&demo).await, before);
}

#[tokio::test]
async fn missing_honeypot_field_is_refused() {
    let demo = start().await;
    let anon = demo.client.new_session();
    let before = snapshot(&demo).await;
    for (action, body) in [
        (
            AnyActionRef::from(auth::SIGN_UP),
            "email=bot%40example.com&displayName=Bot&password=a+long+enough+password",
        ),
        (
            contact::SEND.into(),
            "name=Bot&email=bot%40example.com&message=Buy+cheap+pills+now",
        ),
    ] {
        let r = anon
            .post(&anon.path(action))
            .header("sec-fetch-site", "same-origin")
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let r = TestResponse::read(r).await;
        assert_refused(&r, 403, "bot_check_failed");
    }
    assert_eq!(snapshot(&demo).await, before);
}

#[tokio::test]
async fn signup_does_not_reveal_registered_emails() {
    let demo = start().await;
    let (_, alice_id) = user(&demo, "Alice").await;
    let before = snapshot(&demo).await;
    let attempt = |email: &'static str| {
        let c = demo.client.new_session();
        async move {
            let r = c
                .call(
                    auth::SIGN_UP,
                    &[
                        ("email", email),
                        ("displayName", "Mallory"),
                        ("password", "mallory's own password"),
                    ],
                )
                .await;
            (r, c)
        }
    };
    let (taken, taken_client) = attempt("alice@example.com").await;
    // Nothing changed for Alice: no row, no stamp, no password.
    assert_eq!(snapshot(&demo).await, before);
    let (fresh, fresh_client) = attempt("newcomer@example.com").await;
    assert_eq!(taken.status, fresh.status);
    assert_eq!(taken.json(), fresh.json());
    assert_eq!(taken.header("set-cookie"), fresh.header("set-cookie"));
    assert_eq!(taken.json()["redirect"], "/login?signed_up=1");
    // Neither signed anyone in.
    assert!(!signed_in(&taken_client).await);
    assert!(!signed_in(&fresh_client).await);
    // The no-JS answer is the same 303 too.
    let no_js = |email: &'static str| {
        let c = demo.client.new_session();
        async move {
            c.submit(
                auth::SIGN_UP,
                &[
                    ("email", email),
                    ("displayName", "Mallory"),
                    ("password", "mallory's own password"),
                ],
            )
            .await
        }
    };
    let (a, b) = (
        no_js("alice@example.com").await,
        no_js("another@example.com").await,
    );
    assert_eq!(
        (a.status, a.header("location")),
        (b.status, b.header("location"))
    );
    // Alice's account is hers: her password works, Mallory's does not.
    let c = demo.client.new_session();
    let r = c
        .call(
            auth::SIGN_IN,
            &[
                ("email", "alice@example.com"),
                ("password", "mallory's own password"),
            ],
        )
        .await;
    assert_refused(&r, 422, "invalid_input");
    sign_in(&c, "alice@example.com", PASSWORD).await;
    let _ = alice_id;
}

// ---------------------------------------------------------------------------
// The SQLite upgrade path

/// A database made by the previous schema keeps every row through the
/// identity migration (which rebuilds `users` with foreign keys off), its
/// foreign keys still cascade, and from then on no id is handed out twice.
#[tokio::test]
async fn sqlite_upgrade_keeps_every_row_and_stops_id_reuse() {
    if std::env::var("TEST_DATABASE").as_deref() == Ok("postgres") {
        return; // Postgres identity columns never reused ids.
    }
    let path =
        std::env::temp_dir().join(format!("portcullis-upgrade-{}.db", rand::random::<u32>()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let all = sqlx::migrate!("migrations/sqlite");
    let before_identity = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(
            all.iter()
                .filter(|m| m.version < 20261201000001)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    {
        let old = demo::db::Db::connect_raw(&url).await.unwrap();
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&old)
            .await
            .unwrap();
        before_identity.run(&old).await.unwrap();
        for (id, email) in [(1, "a@example.com"), (2, "b@example.com")] {
            sqlx::query(
                "INSERT INTO users (id, email, display_name, password_hash, created_at) VALUES ($1, $2, 'x', 'h', 0)",
            )
            .bind(id)
            .bind(email)
            .execute(&old)
            .await
            .unwrap();
        }
        for sql in [
            "INSERT INTO teams (id, name, owner_id, created_at) VALUES (1, 't', 1, 0)",
            "INSERT INTO memberships (team_id, user_id, role) VALUES (1, 1, 'admin'), (1, 2, 'member')",
            "INSERT INTO projects (id, team_id, name, created_by, created_at, updated_at) VALUES (1, 1, 'p', 2, 0, 0)",
            "INSERT INTO comments (project_id, author_id, body, created_at, updated_at) VALUES (1, 2, 'c', 0, 0)",
            "INSERT INTO api_tokens (user_id, name, token_hash, scope, created_at, expires_at) VALUES (2, 'n', 'h', 'read', 0, 9)",
        ] {
            sqlx::query(sql).execute(&old).await.unwrap();
        }
        old.close().await;
    }
    let db = demo::db::Db::connect(&url).await.expect("upgrade runs");
    let count = |sql: &'static str| {
        let pool = db.pool.clone();
        async move {
            let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&pool).await.unwrap();
            n
        }
    };
    assert_eq!(count("SELECT COUNT(*) FROM users").await, 2);
    assert_eq!(count("SELECT COUNT(*) FROM teams").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM memberships").await, 2);
    assert_eq!(count("SELECT COUNT(*) FROM projects").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM comments").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM api_tokens").await, 1);
    assert_eq!(
        count("SELECT COUNT(DISTINCT security_stamp) FROM users").await,
        2,
        "every user has a stamp of their own"
    );
    // Foreign keys point at the new table and still cascade.
    sqlx::query("DELETE FROM users WHERE id = 2")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(count("SELECT COUNT(*) FROM memberships").await, 1);
    assert_eq!(count("SELECT COUNT(*) FROM comments").await, 0);
    assert_eq!(count("SELECT COUNT(*) FROM api_tokens").await, 0);
    // Id 2 was the largest; it is not handed out again.
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO users (email, display_name, password_hash, created_at) VALUES ('n@example.com', 'n', 'h', 0) RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(id, 3);
    // Running the migrations again is a no-op.
    drop(db);
    demo::db::Db::connect(&url).await.expect("second start");
    let _ = std::fs::remove_file(&path);
}
