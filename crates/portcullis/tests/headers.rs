//! Security headers as attacks: every kind of response the framework or an
//! app's pages produce — anonymous page, signed-in page, action JSON, no-JS
//! action 303, error pages 401/403/404/500, the client script and
//! stylesheet — carries each header; a cached copy of a signed-in page or an
//! action answer is impossible; a framed page is refused; an inline script
//! without the response's nonce has no policy that lets it run; the report
//! endpoint stays bounded under a flood.

mod common;

use axum::response::{Html, IntoResponse, Response};
use portcullis::testing::{TestClient, TestResponse};
use portcullis::{Config, ErrorCode, Page, Portcullis, RouteHeaders, SecurityHeaders};

/// An anonymous-or-not page with an inline script carrying the nonce.
async fn anon_page(page: Page) -> Html<String> {
    let nonce = page.csp_nonce().to_owned();
    Html(
        maud::html! {
            (maud::DOCTYPE)
            html { head { link rel="stylesheet" href=(page.style_href()); }
            body {
                p #nonce { (nonce) }
                script nonce=(nonce) { "document.body.dataset.ok = '1';" }
            } }
        }
        .into_string(),
    )
}

/// A page that needs a signed-in viewer.
async fn me_page(page: Page) -> Response {
    match page.require_viewer() {
        Ok(v) => Html(format!("<p>user {}</p>", v.id())).into_response(),
        Err(r) => r,
    }
}

/// A page whose author chose public caching (the only way a page is cached).
async fn cached_page(page: Page) -> Response {
    let who = page
        .viewer()
        .map(|v| v.id().to_string())
        .unwrap_or_default();
    (
        [("cache-control", "public, max-age=600")],
        Html(format!("<p>hello {who}</p>")),
    )
        .into_response()
}

/// A handler that tries to send its own, weaker policy and framing header.
async fn weak_page(_page: Page) -> Response {
    (
        [
            ("content-security-policy", "script-src * 'unsafe-inline'"),
            ("x-frame-options", "ALLOWALL"),
        ],
        Html("<p>weak</p>"),
    )
        .into_response()
}

async fn forbidden_page(page: Page) -> Response {
    page.error(ErrorCode::Forbidden)
}

async fn missing_page(page: Page) -> Response {
    page.error(ErrorCode::NotFound)
}

async fn broken_page(page: Page) -> Response {
    page.error(ErrorCode::Internal)
}

fn pages() -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/anon", get(anon_page))
        .route("/me", get(me_page))
        .route("/cached", get(cached_page))
        .route("/weak", get(weak_page))
        .route("/forbidden", get(forbidden_page))
        .route("/missing", get(missing_page))
        .route("/broken", get(broken_page))
        .route("/embed/{id}", get(anon_page))
}

fn policy() -> SecurityHeaders {
    SecurityHeaders::default().report_budget(5).route(
        "/embed/{id}",
        RouteHeaders::new()
            .frame_ancestors(&["https://partner.example"])
            .because("the partner dashboard embeds this widget"),
    )
}

async fn start_with(config: Config, headers: SecurityHeaders) -> (TestClient, common::State) {
    let state = common::State::default();
    let production = config.mode == portcullis::Mode::Production;
    let mut builder = Portcullis::new(config, state.clone())
        .actions(common::register)
        .pages(pages())
        .security_headers(headers);
    if production {
        // Production requires a directory; these tests sign nobody in there.
        builder = builder.accounts(portcullis::session::NoAccounts);
    }
    let app = builder
        .build(tower_sessions::MemoryStore::default())
        .expect("app builds");
    (TestClient::start(&app).await, state)
}

async fn start() -> (TestClient, common::State) {
    start_with(common::config(), policy()).await
}

/// One response of every kind, by name. Whether each must be uncacheable
/// (`personal`) is the second field.
async fn every_kind(client: &TestClient) -> Vec<(&'static str, bool, TestResponse)> {
    let mut out = Vec::new();
    let anon = client.new_session();
    let r = anon.get("/anon").await;
    assert_eq!(r.status, 200);
    out.push(("anonymous page", true, r));
    let r = anon.get("/cached").await;
    assert_eq!(r.status, 200);
    out.push(("anonymous page the app made cacheable", false, r));
    let r = anon.submit(common::NOTES_ADD, &[("text", "hello")]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("<html"), "an HTML 401 page");
    out.push(("error page 401", true, r));
    let r = anon.get("/forbidden").await;
    assert_eq!(r.status, 403);
    out.push(("error page 403", true, r));
    // A cross-origin no-JS post: refused by the origin check with a page.
    let r = TestResponse::read(
        anon.post(&anon.path(common::NOTES_PUBLIC))
            .header("sec-fetch-site", "cross-site")
            .header("origin", "https://evil.example")
            .header("accept", "text/html")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("text=hello")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403);
    out.push(("error page 403 (cross-origin)", true, r));
    let r = anon.get("/missing").await;
    assert_eq!(r.status, 404);
    out.push(("error page 404", true, r));
    let r = anon.get("/no/such/route").await;
    assert_eq!(r.status, 404);
    out.push(("unrouted 404", true, r));
    let r = anon.get("/broken").await;
    assert_eq!(r.status, 500);
    out.push(("error page 500", true, r));
    let r = anon.submit(common::BOOM, &[]).await;
    assert_eq!(r.status, 500);
    assert!(r.text().contains("<html"), "an HTML 500 page");
    out.push(("error page 500 (handler panic)", true, r));
    let r = anon.get(portcullis::render::script_path()).await;
    assert_eq!(r.status, 200);
    out.push(("static asset (client script)", false, r));
    let r = anon.get(portcullis::render::style_path()).await;
    assert_eq!(r.status, 200);
    out.push(("static asset (stylesheet)", false, r));

    common::login(client, 7, false).await;
    let r = client.get("/me").await;
    assert_eq!(r.status, 200, "{}", r.text());
    out.push(("signed-in page", true, r));
    let r = client.get("/cached").await;
    assert_eq!(r.status, 200);
    out.push(("signed-in page the app marked cacheable", true, r));
    let r = client.call(common::NOTES_ADD, &[("text", "hello")]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    out.push(("action JSON", true, r));
    let r = client.submit(common::NOTES_ADD, &[("text", "hello")]).await;
    assert_eq!(r.status, 303, "{}", r.text());
    out.push(("action 303 (no-JS)", true, r));
    let r = client.call(common::NOTES_ADD, &[("text", "x")]).await;
    assert_eq!(r.status, 422);
    out.push(("action JSON 422", true, r));
    let r = client.call(common::BOOM, &[]).await;
    assert_eq!(r.status, 500);
    out.push(("action JSON 500", true, r));
    out
}

fn csp(r: &TestResponse) -> String {
    r.header("content-security-policy")
        .unwrap_or_default()
        .to_owned()
}

/// The directives as (name, sources) pairs.
fn directives(policy: &str) -> Vec<(String, Vec<String>)> {
    policy
        .split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| {
            let mut words = d.split_whitespace().map(str::to_owned);
            let name = words.next().unwrap_or_default();
            (name, words.collect())
        })
        .collect()
}

fn directive(policy: &str, name: &str) -> Option<Vec<String>> {
    directives(policy)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
}

#[tokio::test]
async fn content_security_policy_is_strict_on_every_response_kind() {
    let (client, _) = start().await;
    let kinds = every_kind(&client).await;
    assert!(
        kinds.iter().any(|(_, _, r)| r.text().contains("nonce=\"")),
        "at least one response kind renders an inline script with the nonce"
    );
    for (kind, _, r) in kinds {
        let policy = csp(&r);
        assert!(!policy.is_empty(), "{kind}: no Content-Security-Policy");
        assert!(
            r.header("content-security-policy-report-only").is_none(),
            "{kind}"
        );
        let want = |name: &str, sources: &[&str]| {
            let got = directive(&policy, name)
                .unwrap_or_else(|| panic!("{kind}: no `{name}` in `{policy}`"));
            assert_eq!(got, sources, "{kind}: `{name}` in `{policy}`");
        };
        want("default-src", &["'self'"]);
        want("object-src", &["'none'"]);
        want("base-uri", &["'none'"]);
        want("form-action", &["'self'"]);
        want("frame-ancestors", &["'none'"]);
        for name in ["script-src", "style-src"] {
            let sources = directive(&policy, name).unwrap();
            assert_eq!(sources[0], "'self'", "{kind}: {name}");
            // 'self' plus, when the response drew one, its nonce; nothing
            // else. A response that carries nonce attributes (a page with an
            // inline script) has exactly that nonce in its policy; one that
            // never drew a nonce (an action result, an asset) has none.
            match r.text().split("nonce=\"").nth(1) {
                Some(rest) => {
                    let nonce = rest.split('"').next().unwrap_or_default();
                    assert_eq!(
                        sources[1..],
                        [format!("'nonce-{nonce}'")],
                        "{kind}: {name} is 'self' + the page's nonce only"
                    );
                }
                None => assert_eq!(sources.len(), 1, "{kind}: {name} is 'self' only: {policy}"),
            }
            assert!(
                !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
                "{kind}: {policy}"
            );
        }
        assert!(
            directive(&policy, "report-uri").is_some() && directive(&policy, "report-to").is_some(),
            "{kind}: reports"
        );
        assert!(
            r.header("reporting-endpoints")
                .is_some_and(|v| v.contains(portcullis::wire::CSP_REPORT_PATH)),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn framing_is_denied_on_every_response_kind() {
    let (client, _) = start().await;
    for (kind, _, r) in every_kind(&client).await {
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{kind}");
        assert_eq!(
            directive(&csp(&r), "frame-ancestors"),
            Some(vec!["'none'".to_owned()]),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn sniffing_referrer_isolation_and_permissions_headers_on_every_response_kind() {
    let (client, _) = start().await;
    for (kind, _, r) in every_kind(&client).await {
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{kind}"
        );
        assert_eq!(
            r.header("referrer-policy"),
            Some("strict-origin-when-cross-origin"),
            "{kind}"
        );
        assert_eq!(
            r.header("cross-origin-opener-policy"),
            Some("same-origin"),
            "{kind}"
        );
        assert_eq!(
            r.header("cross-origin-resource-policy"),
            Some("same-origin"),
            "{kind}"
        );
        let permissions = r.header("permissions-policy").unwrap_or_default();
        for feature in ["camera=()", "microphone=()", "geolocation=()", "payment=()"] {
            assert!(permissions.contains(feature), "{kind}: {permissions}");
        }
        // Development over plain HTTP: no HSTS (it would pin http://localhost).
        assert!(r.header("strict-transport-security").is_none(), "{kind}");
    }
}

#[tokio::test]
async fn signed_in_pages_and_action_answers_are_never_cacheable() {
    let (client, _) = start().await;
    for (kind, personal, r) in every_kind(&client).await {
        let cache = r.header("cache-control").unwrap_or_default();
        let vary: Vec<&str> = r
            .headers
            .get_all("vary")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if personal {
            assert_eq!(cache, "no-store", "{kind}");
            assert!(
                vary.iter()
                    .any(|v| v.to_ascii_lowercase().contains("cookie")),
                "{kind}: Vary {vary:?}"
            );
        } else {
            assert!(
                cache.starts_with("public"),
                "{kind}: the app's own caching is kept: {cache}"
            );
        }
    }
}

#[tokio::test]
async fn hsts_in_production_with_secure_cookies_only() {
    let mut config = common::config();
    config.mode = portcullis::Mode::Production;
    config.secure_cookies = true;
    let (client, _) = start_with(config, policy()).await;
    for path in ["/anon", "/no/such/route", portcullis::render::script_path()] {
        let r = client.get(path).await;
        assert_eq!(
            r.header("strict-transport-security"),
            Some("max-age=31536000"),
            "{path}"
        );
    }
    let mut config = common::config();
    config.mode = portcullis::Mode::Production;
    config.secure_cookies = false;
    let (client, _) = start_with(config, policy()).await;
    assert!(
        client
            .get("/anon")
            .await
            .header("strict-transport-security")
            .is_none()
    );
}

#[tokio::test]
async fn nonce_is_fresh_per_response_and_only_page_code_knows_it() {
    let (client, _) = start().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let r = client.get("/anon").await;
        let policy = csp(&r);
        let script = directive(&policy, "script-src").unwrap();
        let nonce = script[1]
            .trim_start_matches("'nonce-")
            .trim_end_matches('\'')
            .to_owned();
        assert!(nonce.len() >= 22, "128 bits: {nonce}");
        // The page rendered this response's nonce, and the style nonce is it too.
        assert!(
            r.text().contains(&format!("nonce=\"{nonce}\"")),
            "{}",
            r.text()
        );
        assert_eq!(
            directive(&policy, "style-src").unwrap()[1],
            format!("'nonce-{nonce}'")
        );
        assert!(seen.insert(nonce), "a nonce was reused");
    }
}

#[tokio::test]
async fn a_handlers_weaker_policy_is_replaced_by_the_framework_policy() {
    let (client, _) = start().await;
    let r = client.get("/weak").await;
    let policy = csp(&r);
    assert!(
        !policy.contains('*') && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        r.headers.get_all("content-security-policy").iter().count(),
        1
    );
}

#[tokio::test]
async fn framing_override_is_per_route_and_listed_in_the_manifest() {
    let (client, _) = start().await;
    let r = client.get("/embed/3").await;
    assert_eq!(
        directive(&csp(&r), "frame-ancestors"),
        Some(vec!["https://partner.example".to_owned()])
    );
    assert!(
        r.header("x-frame-options").is_none(),
        "XFO cannot name an origin"
    );
    // Every other route keeps the default.
    assert_eq!(
        client.get("/anon").await.header("x-frame-options"),
        Some("DENY")
    );
    let manifest = serde_json::to_value(client.app().manifest()).unwrap();
    let routes = &manifest["securityHeaders"]["routes"];
    assert_eq!(routes[0]["path"], "/embed/{id}");
    assert_eq!(
        routes[0]["weakens"][0],
        "frame-ancestors https://partner.example"
    );
    assert_eq!(
        routes[0]["reason"],
        "the partner dashboard embeds this widget"
    );
    assert_eq!(
        manifest["securityHeaders"]["default"]["weakens"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn report_only_mode_blocks_nothing_and_says_so() {
    let (client, _) = start_with(
        common::config(),
        SecurityHeaders::default().report_only(true),
    )
    .await;
    let r = client.get("/anon").await;
    assert!(r.header("content-security-policy").is_none());
    let policy = r.header("content-security-policy-report-only").unwrap();
    assert!(policy.contains("default-src 'self'"), "{policy}");
    let manifest = serde_json::to_value(client.app().manifest()).unwrap();
    assert_eq!(manifest["securityHeaders"]["default"]["reportOnly"], true);
    assert!(
        manifest["securityHeaders"]["default"]["weakens"][0]
            .as_str()
            .unwrap()
            .starts_with("report-only")
    );
}

#[test]
fn a_source_that_would_inject_a_directive_refuses_to_build() {
    for bad in ["https://a.example; script-src *", "a b", "", "x,y"] {
        let err = Portcullis::new(common::config(), common::State::default())
            .security_headers(SecurityHeaders::default().script_src(bad))
            .build(tower_sessions::MemoryStore::default())
            .err()
            .unwrap_or_else(|| panic!("`{bad}` was accepted"));
        assert!(err.to_string().contains("script-src"), "{err}");
    }
}

fn report_body(marker: &str) -> String {
    serde_json::json!({"csp-report": {
        "document-uri": format!("http://127.0.0.1/{marker}"),
        "effective-directive": "script-src-elem",
        "blocked-uri": "inline",
        "line-number": 3,
        "script-sample": "x".repeat(10_000),
    }})
    .to_string()
}

#[tokio::test]
async fn csp_report_flood_is_logged_within_its_budget() {
    common::init_log_capture();
    let (client, _) = start().await;
    let marker = format!("flood-{}", rand::random::<u32>());
    // 200 reports from anywhere (no origin, no session) as fast as possible.
    let sends = (0..200).map(|_| {
        let req = client
            .post(portcullis::wire::CSP_REPORT_PATH)
            .header("content-type", "application/csp-report")
            .body(report_body(&marker));
        async move { TestResponse::read(req.send().await.unwrap()).await }
    });
    for r in futures::future::join_all(sends).await {
        assert_eq!(r.status, 204);
    }
    let (logged, dropped) = client.app().security_headers().report_counts();
    assert_eq!(logged, 5, "the budget (5 per minute, burst 5)");
    assert_eq!(dropped, 195);
    let log = common::log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(&marker)).collect();
    assert_eq!(lines.len(), 5, "one line per logged report");
    // Each logged field is cut: the 10,000-character sample is not logged whole.
    assert!(lines.iter().all(|l| l.len() < 2_000), "{}", lines[0]);
}

#[tokio::test]
async fn csp_report_endpoint_refuses_oversize_and_malformed_bodies() {
    let (client, _) = start().await;
    let post = |body: Vec<u8>| {
        let req = client
            .post(portcullis::wire::CSP_REPORT_PATH)
            .header("content-type", "application/csp-report")
            .body(body);
        async move { TestResponse::read(req.send().await.unwrap()).await }
    };
    assert_eq!(post(vec![b'{'; 64 * 1024]).await.status, 413);
    assert_eq!(post(b"not json".to_vec()).await.status, 400);
    let batch = serde_json::json!([{"type": "csp-violation", "body": {
        "documentURL": "http://127.0.0.1/batch", "effectiveDirective": "style-src-attr"}}]);
    assert_eq!(post(batch.to_string().into_bytes()).await.status, 204);
    assert_eq!(client.app().security_headers().report_counts(), (1, 0));
    // The endpoint is listed among the routes that accept cross-origin POSTs.
    let manifest = serde_json::to_value(client.app().manifest()).unwrap();
    assert!(
        manifest["crossOriginRoutes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["path"] == portcullis::wire::CSP_REPORT_PATH)
    );
}

#[tokio::test]
async fn error_pages_carry_no_inline_style() {
    let (client, _) = start().await;
    for path in ["/forbidden", "/missing", "/broken"] {
        let html = client.get(path).await.text();
        assert!(!html.contains("style="), "{path}: {html}");
        assert!(!html.contains("<style"), "{path}: {html}");
        assert!(html.contains(portcullis::render::style_path()), "{path}");
    }
}

/// The app's router has the app as its fallback (`App::router`), so a
/// custom 404 page goes on the pages router: unknown paths get it, through
/// the framework's steps (every security header), and actions still run.
#[tokio::test]
async fn a_custom_not_found_page_on_the_pages_router_gets_every_header() {
    let state = common::State::default();
    let app = Portcullis::new(common::config(), state.clone())
        .actions(common::register)
        .pages(pages().fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                Html("<p>custom not found</p>"),
            )
        }))
        .build(tower_sessions::MemoryStore::default())
        .expect("app builds");
    let client = TestClient::start(&app).await;
    let r = client.get("/no/such/page").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("custom not found"), "{}", r.text());
    for name in [
        "content-security-policy",
        "x-content-type-options",
        "referrer-policy",
        "cross-origin-opener-policy",
    ] {
        assert!(r.header(name).is_some(), "{name} on the custom 404");
    }
    let r = client
        .call(common::NOTES_PUBLIC, &[("text", "hello")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(state.runs(), 1);
}
