//! The demo's responses carry the security headers, its markup has nothing
//! a strict CSP would block, and production refuses development settings:
//! the binary does not start, and `demo check --deploy` lists each one.

mod common;

use demo::actions::{contact, projects, teams};
use std::process::{Command, Output};

use portcullis::testing::{TestClient, TestResponse};

fn directive(policy: &str, name: &str) -> Option<String> {
    policy
        .split(';')
        .map(str::trim)
        .find(|d| d.split_whitespace().next() == Some(name))
        .map(str::to_owned)
}

/// The headers every response must carry, whatever it is.
fn assert_secure_headers(kind: &str, r: &TestResponse) {
    let csp = r
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{kind}: no CSP"));
    for (name, want) in [
        ("default-src", "default-src 'self'"),
        ("object-src", "object-src 'none'"),
        ("base-uri", "base-uri 'none'"),
        ("form-action", "form-action 'self'"),
        ("frame-ancestors", "frame-ancestors 'none'"),
    ] {
        assert_eq!(directive(csp, name).as_deref(), Some(want), "{kind}: {csp}");
    }
    // 'self', plus the response's nonce only when its body uses one (the
    // demo has no inline code, so its responses never draw a nonce).
    let allowed = |name: &str| match r.text().split("nonce=\"").nth(1) {
        Some(rest) => format!(
            "{name} 'self' 'nonce-{}'",
            rest.split('"').next().unwrap_or("")
        ),
        None => format!("{name} 'self'"),
    };
    for name in ["script-src", "style-src"] {
        assert_eq!(directive(csp, name), Some(allowed(name)), "{kind}: {csp}");
    }
    for (name, want) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        assert_eq!(r.header(name), Some(want), "{kind}: {name}");
    }
    assert!(
        r.header("permissions-policy")
            .is_some_and(|p| p.contains("camera=()")),
        "{kind}"
    );
}

fn assert_uncacheable(kind: &str, r: &TestResponse) {
    assert_eq!(r.header("cache-control"), Some("no-store"), "{kind}");
    assert!(
        r.headers
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap_or("").contains("Cookie")),
        "{kind}: Vary: Cookie"
    );
}

/// Nothing a strict CSP blocks: no `style=` attribute, no `<style>` block,
/// no inline `<script>` (every script has a `src`; the one without is the
/// typed client's JSON data block, `Page::client_actions`, which a browser
/// never executes), no `on*=` handler.
fn assert_no_inline_code(kind: &str, html: &str) {
    assert!(!html.contains(" style="), "{kind}: inline style in {html}");
    assert!(!html.contains("<style"), "{kind}: <style> block in {html}");
    for script in html.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap_or("");
        let data_block = tag.contains("type=\"application/json\"")
            && tag.contains(&format!("id=\"{}\"", portcullis::wire::CLIENT_ACTIONS_ID));
        assert!(
            tag.contains("src=") || data_block,
            "{kind}: inline script `<script{tag}>`"
        );
    }
    for handler in [" onclick=", " onload=", " onsubmit=", " onerror="] {
        assert!(!html.contains(handler), "{kind}: {handler} in {html}");
    }
}

/// Every demo page, anonymous and signed in, as (label, client, path).
async fn all_pages(demo: &common::Demo) -> Vec<(String, TestClient, String)> {
    let anon = demo.client.new_session();
    let (alice, alice_id) = common::user(demo, "Alice").await;
    let team = common::team_of(demo, alice_id).await;
    let project = common::project(&alice, team, "Roadmap").await;
    let r = alice
        .call(
            teams::INVITE,
            &[("teamId", &team.to_string()), ("email", "bob@example.com")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let invite = r.result()["link"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("invite link in {}", r.text()));
    let invite_path = invite
        .find("/invites/")
        .map(|i| invite[i..].to_owned())
        .unwrap();
    let mut out = Vec::new();
    for path in [
        "/",
        "/login",
        "/signup",
        "/contact",
        "/login?return=%2Fsettings",
    ] {
        out.push((format!("anonymous {path}"), anon.clone(), path.to_owned()));
    }
    for path in [
        "/projects".to_owned(),
        format!("/projects/{project}"),
        format!("/projects/{project}/transfer"),
        format!("/teams/{team}"),
        "/settings".to_owned(),
        "/contact".to_owned(),
        "/reauth".to_owned(),
        invite_path,
    ] {
        out.push((format!("signed-in {path}"), alice.clone(), path));
    }
    out
}

#[tokio::test]
async fn every_demo_page_carries_the_headers_and_no_inline_code() {
    let demo = common::start().await;
    for (label, client, path) in all_pages(&demo).await {
        let r = client.get(&path).await;
        assert_eq!(r.status, 200, "{label}: {}", r.text());
        assert_secure_headers(&label, &r);
        // Anonymous pages are not cached either: the demo never says they may be.
        assert_uncacheable(&label, &r);
        assert_no_inline_code(&label, &r.text());
    }
    // The honeypot is hidden by a class, not an inline style.
    let signup = demo.client.new_session().get("/signup").await.text();
    assert!(signup.contains("class=\"pc-honeypot\""), "{signup}");
}

#[tokio::test]
async fn demo_action_error_and_asset_responses_carry_the_headers() {
    let demo = common::start().await;
    let anon = demo.client.new_session();
    let (alice, alice_id) = common::user(&demo, "Alice").await;
    let team = common::team_of(&demo, alice_id).await;
    let mut uncacheable: Vec<(&str, TestResponse)> = Vec::new();

    let r = alice
        .call(
            projects::CREATE,
            &[("teamId", &team.to_string()), ("name", "Docs")],
        )
        .await;
    assert_eq!(r.status, 200);
    uncacheable.push(("action JSON", r));
    let r = alice
        .submit(
            projects::CREATE,
            &[("teamId", &team.to_string()), ("name", "Docs 2")],
        )
        .await;
    assert_eq!(r.status, 303);
    uncacheable.push(("action 303 (no-JS)", r));
    let r = anon
        .submit(
            projects::CREATE,
            &[("teamId", &team.to_string()), ("name", "Nope")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert!(r.text().contains("<html"));
    uncacheable.push(("error page 401", r));
    let r = TestResponse::read(
        anon.post(&anon.path(contact::SEND))
            .header("sec-fetch-site", "cross-site")
            .header("origin", "https://evil.example")
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("email=a%40b.example&message=hello")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403);
    uncacheable.push(("error page 403", r));
    let r = alice.get("/projects/987654").await;
    assert_eq!(r.status, 404);
    uncacheable.push(("error page 404", r));
    let r = anon.get("/no/such/page").await;
    assert_eq!(r.status, 404);
    uncacheable.push(("unrouted 404", r));
    let r = TestResponse::read(
        anon.post(demo::billing::PATH)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 401, "unsigned webhook");
    uncacheable.push(("webhook refusal", r));
    let r = anon.get("/api/projects").await;
    assert_eq!(r.status, 401, "API without a token");
    uncacheable.push(("API refusal", r));
    // The database goes away under a signed-in page render: a 503 (the
    // framework's 500 pages are covered in crates/portcullis/tests/headers.rs).
    demo.db.close().await;
    let r = alice.get("/projects").await;
    assert!(r.status.is_server_error(), "{}", r.text());
    assert_no_inline_code("error page 5xx", &r.text());
    uncacheable.push(("error 5xx (database down)", r));
    for (kind, r) in &uncacheable {
        assert_secure_headers(kind, r);
        assert_uncacheable(kind, r);
    }
    for path in [
        portcullis::render::script_path(),
        portcullis::render::style_path(),
        "/assets/app.css",
    ] {
        let r = anon.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_secure_headers(path, &r);
        if r.header("set-cookie").is_some() {
            // A response that sets a cookie (the anonymous scope) is never cached.
            assert_uncacheable(path, &r);
        } else {
            assert!(
                r.header("cache-control")
                    .is_some_and(|c| c.starts_with("public")),
                "{path}: assets keep their own caching"
            );
        }
    }
}

// ---- production refuses development settings ------------------------------

fn demo_bin(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = std::env::temp_dir().join(format!("pc-deploy-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.join("demo.db").display());
    Command::new(env!("CARGO_BIN_EXE_demo"))
        .args(args)
        .env_clear()
        .env("PORTCULLIS_DATA_DIR", &dir)
        .env("DATABASE_URL", db)
        .env("PORTCULLIS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("the demo binary runs")
}

fn random_secret() -> String {
    portcullis::MasterSecret::generate().to_base64()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Each development setting, alone in an otherwise correct production
/// environment: the app does not start, and says which variable and how to
/// fix it.
#[test]
fn production_does_not_start_with_any_development_setting() {
    let secret = random_secret();
    let hook = random_secret();
    let placeholder = portcullis::MasterSecret::from_bytes(vec![7; 32])
        .unwrap()
        .to_base64();
    let good = [
        ("PORTCULLIS_ENV", "production"),
        ("PORTCULLIS_SECRET", secret.as_str()),
        ("BILLING_WEBHOOK_SECRET", hook.as_str()),
    ];
    let cases: [(&str, Option<&str>, &str); 7] = [
        ("PORTCULLIS_SECRET", None, "is not set"),
        ("PORTCULLIS_SECRET", Some("c2hvcnQ="), "at least 32"),
        (
            "PORTCULLIS_SECRET",
            Some(placeholder.as_str()),
            "placeholder",
        ),
        ("BILLING_WEBHOOK_SECRET", None, "is not set"),
        (
            "BILLING_WEBHOOK_SECRET",
            Some(demo::billing::DEV_SECRET),
            "public development default",
        ),
        ("PORTCULLIS_SECURE_COOKIES", Some("0"), "plain HTTP"),
        (
            "PORTCULLIS_ALLOWED_ORIGINS",
            Some("http://app.example.com"),
            "plain-HTTP origin",
        ),
    ];
    for (var, value, why) in cases {
        let mut env: Vec<(&str, &str)> = good.iter().copied().filter(|(k, _)| *k != var).collect();
        if let Some(v) = value {
            env.push((var, v));
        }
        let out = demo_bin(&[], &env);
        let said = text(&out);
        assert!(!out.status.success(), "{var}={value:?} started: {said}");
        assert!(said.contains(var) && said.contains(why), "{var}: {said}");
        if var.contains("SECRET") {
            assert!(said.contains("openssl rand -base64 32"), "{var}: {said}");
        }
    }
}

#[test]
fn deploy_check_exits_1_on_a_development_configuration() {
    let out = demo_bin(&["check", "--deploy"], &[]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for var in [
        "PORTCULLIS_ENV",
        "PORTCULLIS_SECRET",
        "BILLING_WEBHOOK_SECRET",
    ] {
        assert!(said.contains(&format!("- {var}: ")), "{var}: {said}");
    }
}

#[test]
fn deploy_check_exits_0_on_a_correct_production_configuration() {
    let (secret, hook) = (random_secret(), random_secret());
    let out = demo_bin(
        &["check", "--deploy"],
        &[
            ("PORTCULLIS_ENV", "production"),
            ("PORTCULLIS_SECRET", &secret),
            ("BILLING_WEBHOOK_SECRET", &hook),
            ("PORTCULLIS_ALLOWED_ORIGINS", "https://app.example.com"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no findings"));
}
