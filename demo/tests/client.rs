//! The client contract without a browser: the script is served under its
//! hashed URL and linked from every page; a no-JS 422 comes back as a sealed,
//! single-use flash that the page renders into the same slots the runtime
//! fills; rendered forms are accessible (labels, error slots, live regions).

mod common;

use common::{project, start, team_of, user};
use demo::actions::projects;
use portcullis::testing::{TestClient, TestResponse};
use portcullis::wire;

async fn no_js_post<In, Out>(
    c: &TestClient,
    action: portcullis::ActionRef<In, Out>,
    query: &str,
    body: &str,
) -> TestResponse {
    let r = c
        .post(&format!("{}?{query}", c.path(action)))
        .header("accept", "text/html,application/xhtml+xml")
        .header("origin", c.origin())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    TestResponse::read(r).await
}

#[tokio::test]
async fn pages_link_the_hashed_script_which_is_cached_immutably() {
    let demo = start().await;
    let html = demo.client.get("/login").await.text();
    let src = portcullis::render::script_path();
    assert!(
        html.contains(&format!("<script type=\"module\" src=\"{src}\">")),
        "{html}"
    );
    let r = demo.client.get(src).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert!(r.text().contains(wire::attr::PORTCULLIS));
    assert_eq!(
        demo.client
            .get(&format!("{}portcullis.js", wire::ASSET_PREFIX))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn no_js_validation_failure_comes_back_as_a_single_use_flash() {
    let demo = start().await;
    let (c, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let p = project(&c, team, "Apollo").await;
    let page = format!("/projects/{p}");
    let back = page.replace('/', "%2F");
    let r = no_js_post(
        &c,
        projects::RENAME,
        &format!("{}={back}", wire::field::RETURN),
        &format!("projectId={p}&name=x"),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some(page.as_str()));
    let cookie = r.header("set-cookie").unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("{}=", wire::cookie::FLASH)),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("Max-Age=60"));
    assert!(!cookie.contains("length is lower"), "sealed, not readable");

    let html = c.get(&page).await;
    let cleared = html.headers.get_all("set-cookie").iter().any(|v| {
        v.to_str()
            .unwrap()
            .starts_with(&format!("{}=;", wire::cookie::FLASH))
    });
    assert!(cleared, "the page that shows the flash deletes it");
    let html = html.text();
    assert!(html.contains("aria-invalid=\"true\""), "{html}");
    assert!(html.contains("length is lower than 2"), "{html}");
    assert!(html.contains("value=\"x\""), "typed value comes back");
    assert!(html.contains("autofocus"), "first invalid field is focused");
    // Single use: the next render is clean (cookie deleted)…
    let again = c.get(&page).await.text();
    assert!(!again.contains("aria-invalid"), "{again}");
    // …and a replayed copy of the cookie renders nothing either.
    let value = cookie.split(';').next().unwrap().to_owned();
    c.set_cookie(&value);
    let replay = c.get(&page).await.text();
    assert!(!replay.contains("aria-invalid"), "replayed flash shown");
}

#[tokio::test]
async fn flash_goes_to_the_form_that_was_posted_and_never_carries_secrets() {
    let demo = start().await;
    let (c, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let a = project(&c, team, "Apollo").await;
    let _b = project(&c, team, "Borealis").await;
    // The list renders one rename form per project, each in a cached row
    // fragment: a cached form does not know its page or its position among
    // the page's forms, so it carries neither `_back` nor `_form` (a no-JS
    // failure comes back to its return path, /projects).
    let html = c.get("/projects").await.text();
    let list = html.split("data-fragment=\"projects\"").nth(1).unwrap();
    assert_eq!(list.matches("<form ").count(), 2, "{html}");
    assert!(!list.contains(&format!("{}=", wire::field::FORM)), "{html}");
    assert!(!list.contains(&format!("{}=", wire::field::BACK)), "{html}");
    // Sign-in: the form returns to /projects on success, but a failure comes
    // back to the sign-in page, with the email and without the password.
    let anon = demo.client.new_session();
    let login = anon.get("/login").await.text();
    let action = login
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    assert!(
        action.contains(&format!("{}=%2Flogin", wire::field::BACK)),
        "{action}"
    );
    let r = anon
        .post(&action)
        .header("accept", "text/html")
        .header("origin", anon.origin())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "email=alice%40example.com&password=wrong-password-here&{}=",
            wire::field::HONEYPOT
        ))
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    let page = anon.get("/login").await.text();
    assert!(page.contains("Invalid email or password."), "{page}");
    assert!(page.contains("value=\"alice@example.com\""), "{page}");
    assert!(!page.contains("wrong-password-here"));
    let _ = a;
}

#[tokio::test]
async fn json_clients_still_get_422_and_unsafe_return_paths_get_the_error_page() {
    let demo = start().await;
    let (c, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let p = project(&c, team, "Apollo").await;
    let r = c
        .call(
            projects::RENAME,
            &[("projectId", &p.to_string()), ("name", "x")],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.json()["fieldErrors"]["name"].is_array());
    let r = no_js_post(
        &c,
        projects::RENAME,
        &format!("{}=https%3A%2F%2Fevil.example%2F", wire::field::RETURN),
        &format!("projectId={p}&name=x"),
    )
    .await;
    assert_eq!(r.status, 422, "no redirect to an absolute URL");
    assert!(r.header("set-cookie").is_none());
}

/// Every visible control has a label; every field has an error slot it is
/// described by, which is a polite live region; every form has an
/// assertive alert region for form errors.
#[tokio::test]
async fn rendered_forms_are_accessible() {
    let demo = start().await;
    let (c, id) = user(&demo, "Alice").await;
    let team = team_of(&demo, id).await;
    let p = project(&c, team, "Apollo").await;
    let anon = demo.client.new_session();
    let pages = [
        (&anon, "/login".to_string()),
        (&anon, "/signup".to_string()),
        (&anon, "/contact".to_string()),
        (&c, "/projects".to_string()),
        (&c, format!("/projects/{p}")),
        (&c, format!("/teams/{team}")),
        (&c, "/settings".to_string()),
        (&c, "/reauth".to_string()),
    ];
    for (client, path) in pages {
        let html = client.get(&path).await.text();
        let forms = html.matches("<form ").count();
        assert!(forms > 0, "{path}");
        let region = format!(
            "role=\"alert\" aria-live=\"assertive\" {}",
            wire::attr::FORM_ERRORS
        );
        // Each form has its own error region, or is one of a group (the
        // rows of a list: no sign-in paths of its own) that has one.
        let group = format!("<div {}=", wire::attr::LOGIN);
        let mut grouped = 0;
        for form in html.split("<form ").skip(1) {
            let form = form.split("</form>").next().unwrap();
            if !form.contains(&region) {
                assert!(
                    !form.split('>').next().unwrap().contains(wire::attr::LOGIN),
                    "{path}: a form without an error region that is not grouped"
                );
                grouped += 1;
            }
        }
        let groups = html.matches(&group).count();
        assert!(
            grouped == 0 || groups > 0,
            "{path}: grouped forms need a group"
        );
        assert_eq!(
            html.matches(&region).count(),
            forms - grouped + groups,
            "{path}: one region per ungrouped form and per group"
        );
        for tag in ["<input ", "<textarea ", "<select "] {
            for piece in html.split(tag).skip(1) {
                let attrs = format!(" {}", piece.split('>').next().unwrap());
                let attr = |name: &str| {
                    attrs
                        .split(&format!(" {name}=\""))
                        .nth(1)
                        .map(|v| v.split('"').next().unwrap().to_owned())
                };
                if attr("type").as_deref() == Some("hidden")
                    || attr("name").as_deref() == Some(wire::field::HONEYPOT)
                {
                    continue;
                }
                // A grouped row's input is named by `aria-label`; its errors
                // go to the group's live region.
                if attr("aria-label").is_some_and(|l| !l.trim().is_empty()) && attr("id").is_none()
                {
                    assert!(
                        html.contains(&group),
                        "{path}: aria-labelled input outside a group"
                    );
                    continue;
                }
                let id =
                    attr("id").unwrap_or_else(|| panic!("{path}: control without id: {attrs}"));
                assert!(
                    html.contains(&format!("<label for=\"{id}\">")),
                    "{path}: no label for #{id}"
                );
                if tag != "<select " {
                    let described = attr("aria-describedby")
                        .unwrap_or_else(|| panic!("{path}: #{id} has no aria-describedby"));
                    assert!(
                        html.contains(&format!("id=\"{described}\" {}=", wire::attr::ERROR_FOR)),
                        "{path}: #{id}'s error slot is missing"
                    );
                    let slot = html.split(&format!("id=\"{described}\"")).nth(1).unwrap();
                    assert!(
                        slot.split('>')
                            .next()
                            .unwrap()
                            .contains("aria-live=\"polite\""),
                        "{path}: #{id}'s slot is not a live region"
                    );
                }
            }
        }
        // Submit buttons say what they do.
        for piece in html.split("<button").skip(1) {
            let text = piece.split('>').nth(1).unwrap().split('<').next().unwrap();
            assert!(!text.trim().is_empty(), "{path}: empty button");
        }
    }
}
