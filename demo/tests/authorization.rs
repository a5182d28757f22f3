//! Issue #4's attacks against the running demo. Each sends the hostile
//! request, asserts the refusal, and asserts the database did not change.

mod common;

use demo::actions::{account, auth, comments, projects, teams};
use portcullis::AnyActionRef;
use portcullis::wire;
use std::time::Duration;

use common::{
    PASSWORD, accept_invite, assert_refused, project, session_reauthed_ago, snapshot, start,
    team_of, user,
};

#[tokio::test]
async fn idor_on_every_action_that_takes_an_id_is_a_plain_404() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (mallory, mallory_id) = user(&demo, "Mallory").await;
    let team = team_of(&demo, alice_id).await;
    let p = project(&alice, team, "Secret plans").await;
    let r = alice
        .call(
            comments::POST,
            &[("projectId", &p.to_string()), ("body", "hi")],
        )
        .await;
    let comment = r.result()["id"].as_i64().unwrap();
    let (_, other_id) = user(&demo, "Other").await;
    let before = snapshot(&demo).await;
    let p = p.to_string();
    let comment = comment.to_string();
    let team = team.to_string();
    let other = other_id.to_string();
    let alice_s = alice_id.to_string();
    let attacks: Vec<(AnyActionRef, Vec<(&str, &str)>)> = vec![
        (
            projects::RENAME.into(),
            vec![("projectId", &p), ("name", "pwned")],
        ),
        (projects::ARCHIVE.into(), vec![("projectId", &p)]),
        (projects::RESTORE.into(), vec![("projectId", &p)]),
        (projects::DELETE.into(), vec![("projectId", &p)]),
        (
            projects::CREATE.into(),
            vec![("teamId", &team), ("name", "planted")],
        ),
        (
            comments::POST.into(),
            vec![("projectId", &p), ("body", "spam")],
        ),
        (
            comments::EDIT.into(),
            vec![("commentId", &comment), ("body", "edited")],
        ),
        (comments::DELETE.into(), vec![("commentId", &comment)]),
        (
            teams::INVITE.into(),
            vec![("teamId", &team), ("email", "m@evil.example")],
        ),
        (
            teams::SET_ROLE.into(),
            vec![("teamId", &team), ("memberId", &other), ("role", "admin")],
        ),
        (
            teams::REMOVE.into(),
            vec![("teamId", &team), ("memberId", &alice_s)],
        ),
    ];
    for (action, form) in &attacks {
        let r = mallory.call(*action, form).await;
        assert_refused(&r, 404, "not_found");
        // Same answer as for an id that does not exist at all.
        let missing: Vec<(&str, &str)> = form
            .iter()
            .map(|(k, v)| {
                if k.ends_with("Id") && *k != "memberId" {
                    (*k, "999999")
                } else {
                    (*k, *v)
                }
            })
            .collect();
        let r2 = mallory.call(*action, &missing).await;
        assert_eq!(r2.status, 404, "{action} on a missing id: {}", r2.text());
        assert_eq!(r.json()["error"]["message"], r2.json()["error"]["message"]);
    }
    assert_eq!(snapshot(&demo).await, before);
    // Pages behave the same way.
    assert_eq!(mallory.get(&format!("/projects/{p}")).await.status, 404);
    assert_eq!(mallory.get(&format!("/teams/{team}")).await.status, 404);
    let _ = mallory_id;
}

#[tokio::test]
async fn mass_assignment_of_each_forbidden_field_is_refused() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let team = team_of(&demo, alice_id).await;
    let p = project(&alice, team, "Mine").await.to_string();
    let before = snapshot(&demo).await;
    let forbidden = [
        "ownerId",
        "teamId",
        "role",
        "isAdmin",
        "plan",
        "published",
        "userId",
        "authorId",
    ];
    let cases: Vec<(AnyActionRef, Vec<(&str, &str)>)> = vec![
        (
            projects::RENAME.into(),
            vec![("projectId", &p), ("name", "New name")],
        ),
        (
            account::UPDATE_PROFILE.into(),
            vec![("displayName", "Alice 2")],
        ),
        (
            comments::POST.into(),
            vec![("projectId", &p), ("body", "hello")],
        ),
    ];
    for (action, base) in &cases {
        for field in forbidden {
            if base.iter().any(|(k, _)| *k == field) {
                continue;
            }
            let mut form = base.clone();
            form.push((field, "1"));
            let r = alice.call(*action, &form).await;
            assert_refused(&r, 422, "invalid_input");
            assert!(
                r.json()["fieldErrors"][field].is_array(),
                "{action} + {field}: {}",
                r.text()
            );
        }
    }
    // Sign-up cannot choose a role or a plan either.
    let anon = demo.client.new_session();
    let r = anon
        .call(
            auth::SIGN_UP,
            &[
                ("email", "x@example.com"),
                ("displayName", "X"),
                ("password", PASSWORD),
                ("role", "admin"),
            ],
        )
        .await;
    assert_refused(&r, 422, "invalid_input");
    assert_eq!(snapshot(&demo).await, before);
}

#[tokio::test]
async fn invite_tokens_are_single_use_expire_and_cannot_be_guessed() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, bob_id) = user(&demo, "Bob").await;
    let (carol, _) = user(&demo, "Carol").await;
    let team = team_of(&demo, alice_id).await.to_string();
    let r = alice
        .call(
            teams::INVITE,
            &[("teamId", &team), ("email", "bob@example.com")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let link = r.result()["link"].as_str().unwrap().to_owned();
    let token = link.trim_start_matches("/invites/").to_owned();
    // The token is not stored, only its hash.
    let stored: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM invites")
        .fetch_all(&demo.db.pool)
        .await
        .unwrap();
    assert!(stored.iter().all(|(h,)| !h.contains(&token)));
    // Guessing: a well-formed random token.
    let before = snapshot(&demo).await;
    let guess = format!("/invites/{}", "A".repeat(43));
    let r = accept_invite(&carol, &guess).await;
    assert_refused(&r, 422, "invalid_input");
    // A token posted without the page's seal does not even reach the lookup.
    let r = carol.call(teams::ACCEPT, &[("token", &token)]).await;
    assert_refused(&r, 400, "invalid_bound_argument");
    assert_eq!(snapshot(&demo).await, before);
    // A sealed token is bound to the session it was sealed for.
    let sealed_for_carol = common::hidden_field(&carol, &link, "token").await;
    let r = bob
        .call(teams::ACCEPT, &[("token", &sealed_for_carol)])
        .await;
    assert_refused(&r, 400, "invalid_bound_argument");
    assert_eq!(snapshot(&demo).await, before);
    // First use works.
    let r = accept_invite(&bob, &link).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let members: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM memberships WHERE team_id = $1")
        .bind(team.parse::<i64>().unwrap())
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    assert_eq!(members.0, 2);
    // Reuse by anyone is refused.
    let before = snapshot(&demo).await;
    let r = accept_invite(&carol, &link).await;
    assert_refused(&r, 422, "invalid_input");
    assert_eq!(snapshot(&demo).await, before);
    // Expiry.
    let r = alice
        .call(
            teams::INVITE,
            &[("teamId", &team), ("email", "carol@example.com")],
        )
        .await;
    let link2 = r.result()["link"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE invites SET expires_at = $1 WHERE accepted_at IS NULL")
        .bind(demo::dal::now() - 1)
        .execute(&demo.db.pool)
        .await
        .unwrap();
    let before = snapshot(&demo).await;
    let r = accept_invite(&carol, &link2).await;
    assert_refused(&r, 422, "invalid_input");
    assert_eq!(
        r.json()["formErrors"][0],
        "This invite is invalid or has expired."
    );
    assert_eq!(snapshot(&demo).await, before);
    let _ = bob_id;
}

#[tokio::test]
async fn a_member_cannot_escalate_their_role() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, bob_id) = user(&demo, "Bob").await;
    let (carol, carol_id) = user(&demo, "Carol").await;
    let team = team_of(&demo, alice_id).await.to_string();
    for (c, email) in [(&bob, "bob@example.com"), (&carol, "carol@example.com")] {
        let r = alice
            .call(teams::INVITE, &[("teamId", &team), ("email", email)])
            .await;
        let link = r.result()["link"].as_str().unwrap().to_owned();
        assert_eq!(accept_invite(c, &link).await.status, 200);
    }
    let before = snapshot(&demo).await;
    // On himself: refused outright.
    let r = bob
        .call(
            teams::SET_ROLE,
            &[
                ("teamId", &team),
                ("memberId", &bob_id.to_string()),
                ("role", "admin"),
            ],
        )
        .await;
    assert_refused(&r, 422, "invalid_input");
    // On a peer: he is not an admin, so the row is "not found".
    let r = bob
        .call(
            teams::SET_ROLE,
            &[
                ("teamId", &team),
                ("memberId", &carol_id.to_string()),
                ("role", "admin"),
            ],
        )
        .await;
    assert_refused(&r, 404, "not_found");
    // Demoting the admin: same.
    let r = bob
        .call(
            teams::SET_ROLE,
            &[
                ("teamId", &team),
                ("memberId", &alice_id.to_string()),
                ("role", "member"),
            ],
        )
        .await;
    assert_refused(&r, 404, "not_found");
    // A role outside the enum is a validation error.
    let r = alice
        .call(
            teams::SET_ROLE,
            &[
                ("teamId", &team),
                ("memberId", &bob_id.to_string()),
                ("role", "owner"),
            ],
        )
        .await;
    assert_refused(&r, 422, "invalid_input");
    assert_eq!(snapshot(&demo).await, before);
    // The admin can promote.
    let r = alice
        .call(
            teams::SET_ROLE,
            &[
                ("teamId", &team),
                ("memberId", &bob_id.to_string()),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn deleting_or_editing_another_users_comment_is_404_even_in_the_same_team() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, _) = user(&demo, "Bob").await;
    let team = team_of(&demo, alice_id).await.to_string();
    let r = alice
        .call(
            teams::INVITE,
            &[("teamId", &team), ("email", "bob@example.com")],
        )
        .await;
    let link = r.result()["link"].as_str().unwrap().to_owned();
    assert_eq!(accept_invite(&bob, &link).await.status, 200);
    let p = project(&alice, team.parse().unwrap(), "Shared")
        .await
        .to_string();
    let r = alice
        .call(
            comments::POST,
            &[("projectId", &p), ("body", "alice's words")],
        )
        .await;
    let c = r.result()["id"].as_i64().unwrap().to_string();
    let before = snapshot(&demo).await;
    assert_refused(
        &bob.call(comments::DELETE, &[("commentId", &c)]).await,
        404,
        "not_found",
    );
    assert_refused(
        &bob.call(
            comments::EDIT,
            &[("commentId", &c), ("body", "bob's words")],
        )
        .await,
        404,
        "not_found",
    );
    assert_eq!(snapshot(&demo).await, before);
    // Bob can comment (same team) and delete his own.
    let r = bob
        .call(comments::POST, &[("projectId", &p), ("body", "bob here")])
        .await;
    let mine = r.result()["id"].as_i64().unwrap().to_string();
    assert_eq!(
        bob.call(comments::DELETE, &[("commentId", &mine)])
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn destructive_actions_need_a_recent_reauthentication_in_this_session() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let team = team_of(&demo, alice_id).await;
    let p = project(&alice, team, "Doomed").await.to_string();
    let before = snapshot(&demo).await;
    let destructive: Vec<(AnyActionRef, Vec<(&str, &str)>)> = vec![
        (projects::DELETE.into(), vec![("projectId", &p)]),
        (account::DELETE.into(), vec![("password", PASSWORD)]),
        (
            account::CHANGE_PASSWORD.into(),
            vec![
                ("currentPassword", PASSWORD),
                ("newPassword", "another long password"),
            ],
        ),
        (
            teams::REMOVE.into(),
            vec![("teamId", "1"), ("memberId", "2")],
        ),
    ];
    // Expired re-auth (16 minutes ago) and a session that never re-authenticated recently.
    for ago in [
        Duration::from_secs(16 * 60),
        Duration::from_secs(6 * 86_400),
    ] {
        let stale = session_reauthed_ago(&demo, alice_id, ago).await;
        for (action, form) in &destructive {
            let r = stale.call(*action, form).await;
            assert_refused(&r, 401, "reauthentication_required");
        }
    }
    // A re-authentication in *another* session does not count here.
    let stale = session_reauthed_ago(&demo, alice_id, Duration::from_secs(3600)).await;
    let other = session_reauthed_ago(&demo, alice_id, Duration::from_secs(3600)).await;
    let r = other.call(auth::REAUTH, &[("password", PASSWORD)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_refused(
        &stale.call(projects::DELETE, &[("projectId", &p)]).await,
        401,
        "reauthentication_required",
    );
    assert_eq!(snapshot(&demo).await, before);
    // A browser without JS is sent to the password step, with a way back.
    let path = format!(
        "{}?{}=%2Fprojects%2F{p}",
        stale.path(projects::DELETE),
        wire::field::RETURN
    );
    let r = stale
        .post(&path)
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("projectId={p}"))
        .send()
        .await
        .unwrap();
    let r = portcullis::testing::TestResponse::read(r).await;
    assert_eq!(r.status, 401);
    assert!(
        r.text()
            .contains(&format!("/reauth?return=%2Fprojects%2F{p}")),
        "{}",
        r.text()
    );
    // Wrong password at the step-up: refused, still not recent.
    let r = stale
        .call(auth::REAUTH, &[("password", "wrong password!")])
        .await;
    assert_refused(&r, 422, "invalid_input");
    assert_refused(
        &stale.call(projects::DELETE, &[("projectId", &p)]).await,
        401,
        "reauthentication_required",
    );
    // After re-authenticating in this session it works.
    assert_eq!(
        stale
            .call(auth::REAUTH, &[("password", PASSWORD)])
            .await
            .status,
        200
    );
    assert_eq!(
        stale
            .call(projects::DELETE, &[("projectId", &p)])
            .await
            .status,
        200
    );
    assert_eq!(demo.client.get("/").await.status, 200);
}

#[tokio::test]
async fn password_change_needs_the_current_password() {
    let demo = start().await;
    let (alice, _) = user(&demo, "Alice").await;
    let before = snapshot(&demo).await;
    let r = alice
        .call(
            account::CHANGE_PASSWORD,
            &[("newPassword", "another long password")],
        )
        .await;
    assert_refused(&r, 422, "invalid_input");
    assert_eq!(r.json()["fieldErrors"]["currentPassword"][0], "is required");
    let r = alice
        .call(
            account::CHANGE_PASSWORD,
            &[
                ("currentPassword", "not my password"),
                ("newPassword", "another long password"),
            ],
        )
        .await;
    assert_refused(&r, 422, "invalid_input");
    assert!(r.json()["fieldErrors"]["currentPassword"].is_array());
    assert_eq!(snapshot(&demo).await, before);
    let r = alice
        .call(
            account::CHANGE_PASSWORD,
            &[
                ("currentPassword", PASSWORD),
                ("newPassword", "another long password"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(snapshot(&demo).await, before);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let demo = start().await;
    let _ = user(&demo, "Alice").await;
    let anon = demo.client.new_session();
    let wrong = anon
        .call(
            auth::SIGN_IN,
            &[
                ("email", "alice@example.com"),
                ("password", "wrong password"),
            ],
        )
        .await;
    let unknown = anon
        .call(
            auth::SIGN_IN,
            &[
                ("email", "nobody@example.com"),
                ("password", "wrong password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, unknown.status);
    let strip = |r: &portcullis::testing::TestResponse| {
        let mut v = r.json();
        v["error"]["digest"] = serde_json::Value::Null;
        v
    };
    assert_eq!(strip(&wrong), strip(&unknown));
    assert_eq!(wrong.json()["formErrors"][0], "Invalid email or password.");
    // Neither signed anyone in.
    assert_refused(
        &anon
            .call(projects::CREATE, &[("teamId", "1"), ("name", "x1")])
            .await,
        401,
        "unauthenticated",
    );
}

#[tokio::test]
async fn html_and_script_in_every_text_field_is_rendered_inert() {
    let demo = start().await;
    let evil = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let anon = demo.client.new_session();
    let r = anon
        .call(
            auth::SIGN_UP,
            &[
                ("email", "eve@example.com"),
                ("displayName", evil),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    common::sign_in(&anon, "eve@example.com", PASSWORD).await;
    let (eve_id,): (i64,) = sqlx::query_as("SELECT id FROM users WHERE email = 'eve@example.com'")
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    let team = team_of(&demo, eve_id).await;
    let p = project(&anon, team, evil).await;
    let r = anon
        .call(
            comments::POST,
            &[("projectId", &p.to_string()), ("body", evil)],
        )
        .await;
    assert_eq!(r.status, 200);
    for page in [
        "/projects",
        &format!("/projects/{p}"),
        &format!("/teams/{team}"),
        "/settings",
    ] {
        let html = anon.get(page).await.text();
        assert!(!html.contains("<script>alert"), "{page} renders raw script");
        assert!(!html.contains("<img src=x"), "{page} renders raw img");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}: {html}"
        );
    }
}

#[tokio::test]
async fn responses_never_carry_hashes_tokens_or_other_users_emails() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let team = team_of(&demo, alice_id).await;
    let p = project(&alice, team, "Visible").await;
    let (hash,): (String,) = sqlx::query_as("SELECT password_hash FROM users WHERE id = $1")
        .bind(alice_id)
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    let r = alice
        .call(
            account::SET_API_KEY,
            &[("apiKey", "sk_live_supersecretvalue")],
        )
        .await;
    assert_eq!(
        r.json(),
        serde_json::json!({"ok": true, "result": {"configured": true}})
    );
    let r = alice
        .call(
            comments::POST,
            &[("projectId", &p.to_string()), ("body", "x")],
        )
        .await;
    let body = r.text();
    assert!(!body.contains("@example.com") && !body.contains(&hash));
    for page in [
        "/projects",
        &format!("/projects/{p}"),
        &format!("/teams/{team}"),
        "/settings",
    ] {
        let html = alice.get(page).await.text();
        assert!(!html.contains(&hash), "{page}");
        assert!(!html.contains("sk_live_supersecretvalue"), "{page}");
        assert!(!html.contains("$argon2"), "{page}");
    }
}

/// The transfer flow carries the project id sealed: it cannot be edited to
/// another project, replayed into another action, or reused in another
/// session; the destination is re-checked in SQL.
#[tokio::test]
async fn transfer_uses_a_sealed_project_id_that_cannot_be_moved() {
    let demo = start().await;
    let (alice, alice_id) = user(&demo, "Alice").await;
    let (bob, bob_id) = user(&demo, "Bob").await;
    let alice_team = team_of(&demo, alice_id).await;
    let bob_team = team_of(&demo, bob_id).await;
    // Alice joins Bob's team, so she may move her project there.
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
    let mine = project(&alice, alice_team, "Movable").await;
    let other = project(&alice, alice_team, "Stays").await;
    let page = format!("/projects/{mine}/transfer");
    let sealed = common::hidden_field(&alice, &page, "projectId").await;
    let before = snapshot(&demo).await;
    // An unsealed (edited) id is refused before the handler.
    let r = alice
        .call(
            projects::TRANSFER,
            &[
                ("projectId", &other.to_string()),
                ("toTeam", &bob_team.to_string()),
            ],
        )
        .await;
    assert_refused(&r, 400, "invalid_bound_argument");
    // The sealed value replayed into another action that takes a sealed field.
    let r = alice.call(teams::ACCEPT, &[("token", &sealed)]).await;
    assert_refused(&r, 400, "invalid_bound_argument");
    // The same sealed value in Bob's session.
    let r = bob
        .call(
            projects::TRANSFER,
            &[("projectId", &sealed), ("toTeam", &bob_team.to_string())],
        )
        .await;
    assert_refused(&r, 400, "invalid_bound_argument");
    // A destination Alice is not a member of.
    let (_, carol_id) = user(&demo, "Carol").await;
    let carol_team = team_of(&demo, carol_id).await;
    let before_carol = snapshot(&demo).await;
    let r = alice
        .call(
            projects::TRANSFER,
            &[("projectId", &sealed), ("toTeam", &carol_team.to_string())],
        )
        .await;
    assert_refused(&r, 404, "not_found");
    assert_eq!(snapshot(&demo).await, before_carol);
    let _ = before;
    // The real thing.
    let r = alice
        .call(
            projects::TRANSFER,
            &[("projectId", &sealed), ("toTeam", &bob_team.to_string())],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (team,): (i64,) = sqlx::query_as("SELECT team_id FROM projects WHERE id = $1")
        .bind(mine)
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    assert_eq!(team, bob_team);
    let (stays,): (i64,) = sqlx::query_as("SELECT team_id FROM projects WHERE id = $1")
        .bind(other)
        .fetch_one(&demo.db.pool)
        .await
        .unwrap();
    assert_eq!(stays, alice_team);
}
