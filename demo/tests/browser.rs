//! End-to-end flows in a real browser (Chromium through chromedriver), each
//! run twice: with the client runtime and with JavaScript disabled. Why both:
//! the framework promises that every form works without JavaScript and that
//! the script only adds feedback, so each flow must reach the same end state
//! either way.
//!
//! One chromedriver serves the whole binary; flows run one after another in
//! one test (Chromium on a 2-core machine does not like company). Each flow
//! gets a fresh demo server whose action requests pass a test-only layer
//! that can delay them (pending state) or fail the next one (rollback); that
//! layer lives here, not in the demo. Screenshots of key states go to
//! `screenshots/` at the workspace root.
//!
//! Every page is served with the framework's Content-Security-Policy
//! enforced. After every flow the browser's console log is read (chromedriver
//! `goog:loggingPrefs`) and any CSP violation fails the test; with
//! JavaScript, a `securitypolicyviolation` listener (installed through
//! WebDriver, which the CSP does not govern — an inline script could not be)
//! is read too. `csp_on_every_page` visits every demo page; `nonce_*` shows
//! that an inline script runs only with the response's nonce (and that both
//! detectors see the one without); `framing_*` frames a demo page from
//! another origin and shows it does not render.

mod common;

use demo::actions::teams;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fantoccini::{Client, ClientBuilder, Locator};
use portcullis::wire;
use portcullis::{Config, MasterSecret};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Js,
    NoJs,
}

impl Mode {
    fn tag(self) -> &'static str {
        match self {
            Mode::Js => "js",
            Mode::NoJs => "nojs",
        }
    }
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (apt-get install chromium-driver; scripts/test does it)");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { child, url }
}

struct Browser {
    client: Client,
    mode: Mode,
    _profile: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn browser(driver: &Driver, mode: Mode) -> Browser {
    let profile = std::env::temp_dir().join(format!("pc-chrome-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&profile).unwrap();
    let mut args = vec![
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-quic".into(),
        "--no-first-run".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--disable-dev-shm-usage".into(),
        // A phone-sized window: the screenshots show the mobile layout.
        "--window-size=390,844".into(),
        format!("--user-data-dir={}", profile.display()),
    ];
    if mode == Mode::NoJs {
        args.push("--blink-settings=scriptEnabled=false".into());
    }
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "binary": CHROMIUM, "args": args }),
    );
    // The console log, where Chromium reports every CSP violation.
    caps.insert(
        "goog:loggingPrefs".into(),
        serde_json::json!({ "browser": "ALL" }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session");
    Browser {
        client,
        mode,
        _profile: TempDir(profile),
    }
}

/// What the test layer does to action requests.
#[derive(Default)]
struct Hooks {
    delay_ms: AtomicU64,
    fail_next: AtomicBool,
    /// Drop every action request while set (Chrome silently retries a POST
    /// once when a reused connection closes, so one drop is not enough).
    offline: AtomicBool,
}

async fn hook_layer(hooks: Arc<Hooks>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with(wire::ACTION_PREFIX) {
        let delay = hooks.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if hooks.offline.load(Ordering::SeqCst) {
            // Panicking in the connection task closes the connection with no
            // response at all: what the browser sees when the network drops.
            panic!("browser test hook: dropping this connection on purpose");
        }
        if hooks.fail_next.swap(false, Ordering::SeqCst) {
            let html = request
                .headers()
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
            let mut r = if html {
                axum::response::Html(
                    "<!doctype html><title>Error</title><h1>Something went wrong</h1>",
                )
                .into_response()
            } else {
                axum::Json(serde_json::json!({"error": {"code": "internal",
                    "message": "Something went wrong on our side.", "digest": "test0000"}}))
                .into_response()
            };
            *r.status_mut() = http_status(500);
            return r;
        }
    }
    next.run(request).await
}

fn http_status(code: u16) -> axum::http::StatusCode {
    axum::http::StatusCode::from_u16(code).unwrap()
}

/// A demo server for the browser: the app behind a swappable router (a
/// "deploy" with a new secret swaps it) and the test hooks.
struct Site {
    demo: common::Demo,
    base: String,
    hooks: Arc<Hooks>,
    current: Arc<RwLock<Router>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Site {
    async fn start() -> Site {
        let demo = common::start().await;
        let app = demo::build_with(common::config(), &demo.db, demo.sessions.clone()).unwrap();
        let current = Arc::new(RwLock::new(app.router()));
        let hooks = Arc::new(Hooks::default());
        let inner = current.clone();
        let svc = tower::service_fn(move |req: Request| {
            let router = inner.read().unwrap().clone();
            async move {
                use tower::ServiceExt;
                router.oneshot(req).await
            }
        });
        let h = hooks.clone();
        let router = Router::new()
            .fallback_service(svc)
            .layer(axum::middleware::from_fn(move |req, next| {
                hook_layer(h.clone(), req, next)
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = portcullis::serve_until(listener, router, std::future::pending()).await;
        });
        Site {
            demo,
            base: format!("http://{addr}"),
            hooks,
            current,
            task,
        }
    }

    /// A new deploy: another secret, so every action id on open pages is stale.
    fn redeploy_with_new_secret(&self) {
        let config = Config::new(MasterSecret::from_bytes(vec![9; 32]).unwrap());
        let app = demo::build_with(config, &self.demo.db, self.demo.sessions.clone()).unwrap();
        *self.current.write().unwrap() = app.router();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A signed-up user (through the action) and a session id for them whose
    /// password confirmation was `reauthed_ago` ago.
    async fn user(&self, name: &str, reauthed_ago: Duration) -> (i64, String) {
        let (_, id) = common::user(&self.demo, name).await;
        let ttl = Duration::from_secs(86_400);
        let st = common::stamp(&self.demo, id).await;
        let session = match &self.demo.sessions {
            demo::Sessions::Sqlite(s) => {
                portcullis::session::issue_with(s, id, vec![], st, ttl, reauthed_ago).await
            }
            demo::Sessions::Postgres(s) => {
                portcullis::session::issue_with(s, id, vec![], st, ttl, reauthed_ago).await
            }
            demo::Sessions::Redis(s) => {
                portcullis::session::issue_with(s, id, vec![], st, ttl, reauthed_ago).await
            }
        }
        .unwrap();
        (id, session)
    }
}

/// chromedriver's `POST /session/{id}/se/log {"type":"browser"}`: the
/// console log entries since the last read.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/se/log", session_id.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_owned()),
        )
    }
}

/// Installs a `securitypolicyviolation` listener in the current document.
const LISTEN_CSP: &str = "window.__pcCsp = window.__pcCsp || []; \
    if (!window.__pcCspOn) { window.__pcCspOn = true; \
    document.addEventListener('securitypolicyviolation', \
    (e) => window.__pcCsp.push(e.violatedDirective + ' ' + e.blockedURI)); }";

impl Browser {
    /// CSP violations in the console log since the last call (reading
    /// clears the log).
    async fn csp_console_errors(&self) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("chromedriver returns the browser log");
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str())
            .filter(|m| m.contains("Content Security Policy") || m.contains("Refused to"))
            .map(str::to_owned)
            .collect()
    }

    /// With JavaScript: starts listening for `securitypolicyviolation` in
    /// the current page.
    async fn listen_csp(&self) {
        if self.mode == Mode::Js {
            self.client.execute(LISTEN_CSP, vec![]).await.unwrap();
        }
    }

    /// Violations the listener saw in the current page.
    async fn csp_events(&self) -> Vec<String> {
        if self.mode != Mode::Js {
            return Vec::new();
        }
        let v = self
            .client
            .execute("return window.__pcCsp || [];", vec![])
            .await
            .unwrap();
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect()
    }

    async fn assert_no_csp_violations(&self, during: &str) {
        let console = self.csp_console_errors().await;
        let events = self.csp_events().await;
        assert!(
            console.is_empty() && events.is_empty(),
            "[{:?}] CSP violations during {during}: console {console:#?}, events {events:#?}",
            self.mode
        );
    }

    async fn goto(&self, site: &Site, path: &str) {
        self.client.goto(&site.url(path)).await.unwrap();
    }

    async fn sign_in_as(&self, site: &Site, session: &str) {
        self.goto(site, "/contact").await;
        self.client.delete_all_cookies().await.unwrap();
        // SameSite must be given: the WebDriver default (None) needs Secure.
        let mut cookie = fantoccini::cookies::Cookie::parse(format!(
            "{}={session}; Path=/; HttpOnly; SameSite=Lax",
            wire::cookie::SESSION
        ))
        .unwrap();
        cookie.set_domain("127.0.0.1");
        self.client.add_cookie(cookie).await.unwrap();
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await {
                return e;
            }
            if Instant::now() > deadline {
                let src = self.client.source().await.unwrap_or_default();
                panic!(
                    "[{:?}] no `{css}` within {WAIT:?} on page:\n{src}",
                    self.mode
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while self.client.find(Locator::Css(css)).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "[{:?}] `{css}` still there",
                self.mode
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element's text contains `needle`.
    async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
                && t.contains(needle)
            {
                return t;
            }
            if Instant::now() > deadline {
                let src = self.client.source().await.unwrap_or_default();
                panic!(
                    "[{:?}] `{css}` never contained {needle:?}:\n{src}",
                    self.mode
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_path(&self, path: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.client.current_url().await.unwrap();
            let here = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            if here == path {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "[{:?}] at {here}, expected {path}",
                self.mode
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// After a page load: with JS, wait until the runtime is ready.
    async fn ready(&self) {
        if self.mode == Mode::Js {
            self.wait_for(&format!(
                "html[{}={}]",
                wire::attr::PORTCULLIS,
                wire::attr::READY
            ))
            .await;
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.wait_for(css).await;
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.wait_for(css).await.attr(name).await.unwrap()
    }

    async fn value(&self, css: &str) -> String {
        self.wait_for(css)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    async fn shot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}-{}.png", self.mode.tag())), png).unwrap();
    }
}

// ---- the flows ------------------------------------------------------------

/// Sign up (with a validation error first: the no-JS flash keeps the typed
/// email), which lands on the sign-in page (sign-up signs nobody in: no
/// enumeration), sign in, sign out, sign in with a wrong then the right
/// password.
async fn sign_up_and_sign_in(b: &Browser, site: &Site) {
    let email = format!("ada-{}@example.com", b.mode.tag());
    b.goto(site, "/signup").await;
    b.ready().await;
    b.fill("#f-email", &email).await;
    b.fill("#f-displayName", "Ada").await;
    b.fill("#f-password", "short").await;
    b.click(&format!(
        "form[{}].card button[type=submit]",
        wire::attr::PORTCULLIS
    ))
    .await;
    b.wait_text("#f-password-error", "").await;
    let err = b.wait_for("#f-password-error:not(:empty)").await;
    assert!(!err.text().await.unwrap().is_empty());
    assert_eq!(
        b.attr("#f-password", "aria-invalid").await.as_deref(),
        Some("true")
    );
    assert_eq!(b.value("#f-email").await, email, "typed values are kept");
    if b.mode == Mode::NoJs {
        assert_eq!(b.value("#f-password").await, "", "never sent back");
    }
    b.shot("signup-error").await;
    b.fill("#f-password", common::PASSWORD).await;
    b.fill("#f-displayName", "Ada").await;
    b.click(&format!(
        "form[{}].card button[type=submit]",
        wire::attr::PORTCULLIS
    ))
    .await;
    b.wait_path("/login?signed_up=1").await;
    b.wait_text("main .notice", "sign in").await;
    b.ready().await;
    b.fill("#f-email", &email).await;
    b.fill("#f-password", common::PASSWORD).await;
    b.click("main form button[type=submit]").await;
    b.wait_path("/projects").await;
    b.wait_text("header .who", "Ada").await;
    // Sign out (the nav form), then back in.
    b.ready().await;
    b.click("header form button").await;
    b.wait_path("/").await;
    b.goto(site, "/login").await;
    b.ready().await;
    b.fill("#f-email", &email).await;
    b.fill("#f-password", "wrong password!").await;
    b.click("main form button[type=submit]").await;
    b.wait_text(
        &format!("main [{}]", wire::attr::FORM_ERRORS),
        "Invalid email or password",
    )
    .await;
    b.shot("signin-error").await;
    b.fill("#f-password", common::PASSWORD).await;
    b.click("main form button[type=submit]").await;
    b.wait_path("/projects").await;
    b.wait_text("header .who", "Ada").await;
}

/// Create a project (too short first), rename it (too short, then fine).
async fn create_and_rename_project(b: &Browser, site: &Site) {
    let (_, session) = site
        .user(&format!("Bob{}", b.mode.tag()), Duration::ZERO)
        .await;
    b.sign_in_as(site, &session).await;
    b.goto(site, "/projects").await;
    b.ready().await;
    b.fill("#f-create-name", "A").await;
    b.click("#create-project button[type=submit]").await;
    b.wait_for(&format!(
        "#create-project [{}=name]:not(:empty)",
        wire::attr::ERROR_FOR
    ))
    .await;
    assert_eq!(b.value("#f-create-name").await, "A");
    b.fill("#f-create-name", "Apollo").await;
    b.click("#create-project button[type=submit]").await;
    b.wait_text("#project-list", "Apollo").await;
    b.shot("projects").await;
    b.click("#project-list li a").await;
    b.wait_for("#project-name").await;
    b.ready().await;
    b.fill("#f-name", "x").await;
    b.click("main form.inline button[type=submit]").await;
    b.wait_for("#f-name-error:not(:empty)").await;
    assert_eq!(
        b.attr("#f-name", "aria-invalid").await.as_deref(),
        Some("true")
    );
    assert_eq!(b.value("#f-name").await, "x", "typed value kept");
    b.wait_text("#project-name", "Apollo").await; // rolled back / unchanged
    b.shot("rename-error").await;
    // Pending state: a slow action shows aria-busy and disabled submitters.
    site.hooks.delay_ms.store(1500, Ordering::SeqCst);
    b.fill("#f-name", "Artemis").await;
    b.click("main form.inline button[type=submit]").await;
    if b.mode == Mode::Js {
        b.wait_for("main form.inline[aria-busy=true][data-pending]")
            .await;
        b.wait_for("main form.inline button[type=submit]:disabled")
            .await;
        // Optimistic rename shows at once.
        b.wait_text("#project-name", "Artemis").await;
        b.shot("rename-pending").await;
        b.wait_gone("main form.inline[aria-busy]").await;
    }
    site.hooks.delay_ms.store(0, Ordering::SeqCst);
    b.wait_text("#project-name", "Artemis").await;
    b.wait_gone("#f-name[aria-invalid]").await;
    // It really is saved: a fresh load shows it.
    b.client.refresh().await.unwrap();
    b.wait_text("#project-name", "Artemis").await;
}

/// A file chosen in the project's upload form is uploaded (with a progress
/// bar when JavaScript runs), listed and downloadable; a disguised file is
/// refused with the field's error shown, with and without JavaScript.
async fn upload_attachment(b: &Browser, site: &Site) {
    let (user, session) = site
        .user(&format!("Una{}", b.mode.tag()), Duration::ZERO)
        .await;
    let team = common::team_of(&site.demo, user).await;
    let c = site.demo.client.new_session();
    c.set_cookie(&format!("{}={session}", wire::cookie::SESSION));
    let p = common::project(&c, team, "Atlas").await;
    let dir = std::env::temp_dir().join(format!("portcullis-browser-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("pixel.png");
    std::fs::write(&png, PIXEL_PNG).unwrap();
    let fake = dir.join("fake.png");
    std::fs::write(
        &fake,
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
    )
    .unwrap();

    b.sign_in_as(site, &session).await;
    b.goto(site, &format!("/projects/{p}")).await;
    b.ready().await;
    // A disguised file: refused, the error shown at the field.
    b.wait_for("#upload-attachment input[type=file]")
        .await
        .send_keys(fake.to_str().unwrap())
        .await
        .unwrap();
    b.click("#upload-attachment button[type=submit]").await;
    b.wait_text(
        &format!("#upload-attachment [{}=file]", wire::attr::ERROR_FOR),
        "judged by the file",
    )
    .await;
    b.shot("upload-refused").await;
    // A real PNG: uploaded and listed.
    b.wait_for("#upload-attachment input[type=file]")
        .await
        .send_keys(png.to_str().unwrap())
        .await
        .unwrap();
    b.click("#upload-attachment button[type=submit]").await;
    b.wait_text("#attachments", "pixel.png").await;
    if b.mode == Mode::Js {
        // The runtime showed a progress bar in the form, hidden once done.
        b.wait_for(&format!(
            "#upload-attachment progress[{}][hidden]",
            wire::attr::PROGRESS
        ))
        .await;
    }
    b.shot("upload-listed").await;
    b.client.refresh().await.unwrap();
    b.wait_text("#attachments", "pixel.png").await;
    let href = b.attr("#attachments a[download]", "href").await.unwrap();
    assert!(href.starts_with("/attachments/"), "{href}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A 1×1 PNG.
const PIXEL_PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

/// The typed client (`portcullis ts`): a script imports the generated
/// `/assets/actions.js` and calls `projects.rename` through `call()` — a
/// one-letter name comes back as a typed failure with the field error,
/// then a good name as the DTO — and through `actionState()` with a
/// `FormData`, as React's `useActionState` would. Both go through the
/// runtime's request path, so the rename is really saved, and a stale id
/// reloads the page once as for a form.
async fn typed_client_call(b: &Browser, site: &Site) {
    let (user, session) = site.user("Eve", Duration::ZERO).await;
    let team = common::team_of(&site.demo, user).await;
    let c = site.demo.client.new_session();
    c.set_cookie(&format!("{}={session}", wire::cookie::SESSION));
    let p = common::project(&c, team, "Gemini").await;
    b.sign_in_as(site, &session).await;
    b.goto(site, &format!("/projects/{p}")).await;
    b.ready().await;
    const CALL: &str = "const [projectId, name, done] = arguments; \
        import('/assets/actions.js') \
          .then((m) => m.call(m.projectsRename, { projectId, name })) \
          .then(done, (e) => done({ thrown: String(e) }));";
    let call = |name: &str| {
        b.client
            .execute_async(CALL, vec![serde_json::json!(p), serde_json::json!(name)])
    };
    let failed = call("x").await.unwrap();
    assert_eq!(failed["ok"], false, "{failed}");
    assert_eq!(failed["error"]["status"], 422, "{failed}");
    assert_eq!(failed["error"]["code"], "invalid_input", "{failed}");
    assert!(
        failed["error"]["fieldErrors"]["name"][0].is_string(),
        "a field error for `name`: {failed}"
    );
    let renamed = call("Gemini II").await.unwrap();
    assert_eq!(
        renamed,
        serde_json::json!({ "ok": true, "value": { "id": p, "name": "Gemini II", "archived": false } })
    );
    const STATE: &str = "const [projectId, name, done] = arguments; \
        const data = new FormData(); data.set('projectId', String(projectId)); data.set('name', name); \
        import('/assets/actions.js') \
          .then((m) => m.actionState(m.projectsRename)(null, data)) \
          .then(done, (e) => done({ thrown: String(e) }));";
    let state = |name: &str| {
        b.client
            .execute_async(STATE, vec![serde_json::json!(p), serde_json::json!(name)])
    };
    let failed = state("y").await.unwrap();
    assert!(
        failed["error"]["fieldErrors"]["name"][0].is_string(),
        "{failed}"
    );
    let renamed = state("Gemini III").await.unwrap();
    assert_eq!(renamed["value"]["name"], "Gemini III", "{renamed}");
    b.client.refresh().await.unwrap();
    b.wait_text("#project-name", "Gemini III").await;
    b.ready().await;
    // A deploy with a new secret rotates every id: the call is refused as
    // stale and the page reloads once (not awaited here: the reload ends
    // the script), and the reloaded page's map has the new ids.
    site.redeploy_with_new_secret();
    b.client
        .execute(
            "import('/assets/actions.js').then((m) => m.call(m.projectsRename, \
             { projectId: arguments[0], name: 'Gemini IV' }));",
            vec![serde_json::json!(p)],
        )
        .await
        .unwrap();
    b.wait_text(&format!("[{}]", wire::attr::NOTICE), "out of date")
        .await;
    b.ready().await;
    b.wait_text("#project-name", "Gemini III").await;
    let renamed = call("Gemini IV").await.unwrap();
    assert_eq!(renamed["value"]["name"], "Gemini IV", "{renamed}");
}

/// A comment appears at once (JS), the action fails, it is rolled back and
/// the text is still in the box; the retry succeeds.
async fn optimistic_comment_rollback(b: &Browser, site: &Site) {
    let (user, session) = site
        .user(&format!("Cy{}", b.mode.tag()), Duration::ZERO)
        .await;
    let team = common::team_of(&site.demo, user).await;
    let c = site.demo.client.new_session();
    c.set_cookie(&format!("{}={session}", wire::cookie::SESSION));
    let p = common::project(&c, team, "Comet").await;
    b.sign_in_as(site, &session).await;
    b.goto(site, &format!("/projects/{p}")).await;
    b.ready().await;
    site.hooks.delay_ms.store(1200, Ordering::SeqCst);
    site.hooks.fail_next.store(true, Ordering::SeqCst);
    b.fill("#f-body", "First!").await;
    b.click("#post-comment button[type=submit]").await;
    if b.mode == Mode::Js {
        b.wait_text(
            &format!("#comments .comment[{}]", wire::attr::OPTIMISTIC),
            "First!",
        )
        .await;
        b.shot("comment-optimistic").await;
        b.wait_gone(&format!("#comments .comment[{}]", wire::attr::OPTIMISTIC))
            .await;
        b.wait_text(
            &format!("#post-comment [{}]", wire::attr::FORM_ERRORS),
            "went wrong",
        )
        .await;
        assert_eq!(b.value("#f-body").await, "First!", "nothing lost");
        b.shot("comment-rolled-back").await;
    } else {
        b.wait_text("h1", "Something went wrong").await;
        b.client.back().await.unwrap();
    }
    site.hooks.delay_ms.store(0, Ordering::SeqCst);
    b.fill("#f-body", "First!").await;
    b.click("#post-comment button[type=submit]").await;
    // The server's copy, not the optimistic one: a refresh while the call
    // is in flight would cancel it (a race this flow once lost on Postgres).
    let saved = format!("#comments .comment:not([{}])", wire::attr::OPTIMISTIC);
    b.wait_text(&saved, "First!").await;
    b.client.refresh().await.unwrap();
    b.wait_text("#comments .comment", "First!").await;
    b.shot("comment-posted").await;
    if b.mode == Mode::Js {
        // The network drops: a retry message, nothing lost; Retry sends it.
        b.ready().await;
        site.hooks.offline.store(true, Ordering::SeqCst);
        b.fill("#f-body", "Second").await;
        b.click("#post-comment button[type=submit]").await;
        b.wait_text(
            &format!("#post-comment [{}]", wire::attr::FORM_ERRORS),
            "Network problem",
        )
        .await;
        assert_eq!(b.value("#f-body").await, "Second", "nothing lost");
        b.wait_gone(&format!("#comments .comment[{}]", wire::attr::OPTIMISTIC))
            .await;
        b.shot("comment-network-error").await;
        site.hooks.offline.store(false, Ordering::SeqCst);
        b.click(&format!(
            "#post-comment [{}] button",
            wire::attr::FORM_ERRORS
        ))
        .await;
        b.wait_text("#comments", "Second").await;
        b.client.refresh().await.unwrap();
        b.wait_text("#comments", "Second").await;
    }
}

/// The action ids change under an open page (deploy with a new secret): the
/// runtime reloads once and asks to resubmit; without JS, the error page
/// links back to a fresh page.
async fn stale_ids_reload_once(b: &Browser, site: &Site) {
    let (user, session) = site
        .user(&format!("Dee{}", b.mode.tag()), Duration::ZERO)
        .await;
    let team = common::team_of(&site.demo, user).await;
    let c = site.demo.client.new_session();
    c.set_cookie(&format!("{}={session}", wire::cookie::SESSION));
    let p = common::project(&c, team, "Delta").await;
    b.sign_in_as(site, &session).await;
    b.goto(site, &format!("/projects/{p}")).await;
    b.ready().await;
    site.redeploy_with_new_secret();
    b.fill("#f-name", "Delta Two").await;
    b.click("main form.inline button[type=submit]").await;
    if b.mode == Mode::Js {
        b.wait_text(&format!("[{}]", wire::attr::NOTICE), "out of date")
            .await;
        b.shot("stale-reloaded").await;
        b.ready().await;
    } else {
        b.wait_text("h1", "out of date").await;
        b.click("main a[href^='/projects/']").await;
    }
    b.wait_text("#project-name", "Delta").await;
    b.fill("#f-name", "Delta Two").await;
    b.click("main form.inline button[type=submit]").await;
    b.wait_text("#project-name", "Delta Two").await;
    b.client.refresh().await.unwrap();
    b.wait_text("#project-name", "Delta Two").await;
}

/// The public contact form: sent once, then the per-IP limit refuses with
/// the time to wait.
async fn contact_rate_limited(b: &Browser, site: &Site) {
    b.goto(site, "/contact").await;
    b.ready().await;
    b.fill("#f-name", "Visitor").await;
    b.fill("#f-email", "v@example.com").await;
    b.fill("#f-message", "Hello, a question about plans.").await;
    b.click("main form button[type=submit]").await;
    b.wait_path("/contact?sent=1").await;
    b.wait_text(".notice", "received").await;
    // Use up the rest of the per-IP budget (5 a minute) from the same address.
    let http = reqwest::Client::new();
    let html = http
        .get(site.url("/contact"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let action = html
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    for _ in 0..4 {
        let r = http
            .post(site.url(&action))
            .header("origin", &site.base)
            .header("accept", "application/json")
            .form(&[
                ("name", "V"),
                ("email", "v@example.com"),
                ("message", "Hello again, there."),
                // The form's empty honeypot (a missing one is refused).
                (wire::field::HONEYPOT, ""),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    b.ready().await;
    b.fill("#f-name", "Visitor").await;
    b.fill("#f-email", "v@example.com").await;
    b.fill("#f-message", "One more message, please.").await;
    b.click("main form button[type=submit]").await;
    if b.mode == Mode::Js {
        b.wait_text(
            &format!("main [{}]", wire::attr::FORM_ERRORS),
            "Try again in",
        )
        .await;
        assert_eq!(b.value("#f-message").await, "One more message, please.");
    } else {
        b.wait_text("h1", "Slow down").await;
    }
    b.shot("contact-rate-limited").await;
}

/// Deleting a project needs a password confirmed in the last 15 minutes:
/// the first attempt goes through /reauth and back; the second deletes.
async fn destructive_action_reauth(b: &Browser, site: &Site) {
    let (user, session) = site
        .user(&format!("Eve{}", b.mode.tag()), Duration::from_secs(3600))
        .await;
    let team = common::team_of(&site.demo, user).await;
    let c = site.demo.client.new_session();
    c.set_cookie(&format!("{}={session}", wire::cookie::SESSION));
    let p = common::project(&c, team, "Echo").await;
    b.sign_in_as(site, &session).await;
    let page = format!("/projects/{p}");
    b.goto(site, &page).await;
    b.ready().await;
    b.click("button.danger").await;
    // The no-JS error page links back to the form's return path (/projects);
    // the runtime comes back to this page.
    let back = if b.mode == Mode::NoJs {
        b.wait_text("h1", "Confirm your password").await;
        b.shot("reauth-required").await;
        b.click("main a[href^='/reauth']").await;
        "/projects".to_string()
    } else {
        page.clone()
    };
    b.wait_path(&format!("/reauth?return={}", back.replace('/', "%2F")))
        .await;
    b.ready().await;
    b.shot("reauth").await;
    b.fill("#f-password", common::PASSWORD).await;
    b.click("main form button[type=submit]").await;
    b.wait_path(&back).await;
    if back != page {
        b.goto(site, &page).await;
    }
    b.ready().await;
    b.click("button.danger").await;
    b.wait_path("/projects").await;
    b.wait_for("#project-list").await;
    let list = b.wait_for("#project-list").await.text().await.unwrap();
    assert!(!list.contains("Echo"), "{list}");
}

// ---- proof of work (not in the demo: PoW needs JavaScript) ---------------

#[derive(serde::Deserialize, garde::Validate)]
struct PowInput {
    #[garde(length(chars, min = 1, max = 100))]
    msg: String,
}

const TEST_POW: portcullis::ActionRef<PowInput, ()> = portcullis::ActionRef::new("test.pow");

async fn pow_handler(
    cx: portcullis::Cx<()>,
    _: portcullis::MaybeViewer,
    _: portcullis::Valid<PowInput>,
) -> portcullis::Outcome<()> {
    cx.redirect("/?done=1")?;
    Ok(())
}

async fn pow_page(
    page: portcullis::Page,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> maud::Markup {
    maud::html! {
        (maud::DOCTYPE)
        html { head { script type="module" src=(page.script_src()) {} }
            body { main {
                @if q.is_some() { p #done { "done" } }
                (page.form(TEST_POW).body(maud::html! {
                    (portcullis::field("msg").label("Message"))
                    (portcullis::submit("Send"))
                }))
            } }
        }
    }
}

/// A form whose action needs a proof of work: the runtime solves the
/// challenge with `crypto.subtle` and sends it in `X-Portcullis-Pow`.
async fn proof_of_work_is_solved_before_sending(b: &Browser) {
    async fn serve<St: portcullis::tower_sessions::SessionStore + Clone>(
        store: St,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let app = portcullis::Portcullis::new(common::config(), ())
            .actions(|a| {
                a.add(
                    portcullis::action(TEST_POW)
                        .public()
                        .limit(portcullis::per_ip(10).per_minute())
                        .bot_check(portcullis::BotCheck::ProofOfWork { bits: 10 })
                        .handler(pow_handler),
                );
            })
            .pages(Router::new().route("/", axum::routing::get(pow_page)))
            .build(store)
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router();
        let task = tokio::spawn(async move {
            let _ = portcullis::serve_until(listener, router, std::future::pending()).await;
        });
        (base, task)
    }
    let demo = common::start().await;
    let (base, task) = match demo.sessions.clone() {
        demo::Sessions::Sqlite(s) => serve(s).await,
        demo::Sessions::Postgres(s) => serve(s).await,
        demo::Sessions::Redis(s) => serve(s).await,
    };
    b.client.goto(&format!("{base}/")).await.unwrap();
    b.ready().await;
    assert!(b.attr("form", wire::attr::POW).await.is_some());
    b.fill("#f-msg", "hello").await;
    b.click("form button[type=submit]").await;
    b.wait_for("#done").await;
    task.abort();
}

/// A browser session for user `id` on `site` (as `Site::user` makes).
async fn session_for(site: &Site, id: i64) -> String {
    let ttl = Duration::from_secs(86_400);
    let st = common::stamp(&site.demo, id).await;
    match &site.demo.sessions {
        demo::Sessions::Sqlite(s) => {
            portcullis::session::issue_with(s, id, vec![], st.clone(), ttl, Duration::ZERO).await
        }
        demo::Sessions::Postgres(s) => {
            portcullis::session::issue_with(s, id, vec![], st.clone(), ttl, Duration::ZERO).await
        }
        demo::Sessions::Redis(s) => {
            portcullis::session::issue_with(s, id, vec![], st.clone(), ttl, Duration::ZERO).await
        }
    }
    .unwrap()
}

/// Every demo page, anonymous and signed in (plus an error page), loaded
/// with the CSP enforced: no violation in the console or, with JavaScript,
/// seen by a `securitypolicyviolation` listener while the page runs.
async fn csp_on_every_page(b: &Browser, site: &Site) {
    let visit = |path: String| async move {
        b.goto(site, &path).await;
        b.wait_for("body").await;
        if !b.client.source().await.unwrap().contains("pc-error-page") {
            b.ready().await; // error pages carry no runtime
        }
        b.listen_csp().await;
        // Let the runtime settle (notices, focus) with the listener on.
        tokio::time::sleep(Duration::from_millis(150)).await;
        b.assert_no_csp_violations(&path).await;
    };
    for path in ["/", "/login", "/signup", "/contact"] {
        visit(path.to_owned()).await;
    }
    let (client, id) = common::user(&site.demo, &format!("Csp{}", b.mode.tag())).await;
    let team = common::team_of(&site.demo, id).await;
    let project = common::project(&client, team, "Policy").await;
    let r = client
        .call(
            teams::INVITE,
            &[("teamId", &team.to_string()), ("email", "csp@example.com")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let link = r.result()["link"].as_str().unwrap().to_owned();
    let invite = link[link.find("/invites/").unwrap()..].to_owned();
    let session = session_for(site, id).await;
    b.sign_in_as(site, &session).await;
    for path in [
        "/projects".to_owned(),
        format!("/projects/{project}"),
        format!("/projects/{project}/transfer"),
        format!("/teams/{team}"),
        "/settings".to_owned(),
        "/contact".to_owned(),
        "/reauth".to_owned(),
        invite,
        "/projects/987654".to_owned(), // the framework's 404 page
    ] {
        visit(path).await;
    }
}

async fn nonce_page(page: portcullis::Page) -> maud::Markup {
    maud::html! {
        (maud::DOCTYPE)
        html { head { title { "nonce" } }
            body {
                p #here { "page" }
                script nonce=(page.csp_nonce()) {
                    (maud::PreEscaped("document.body.dataset.nonced = 1;"))
                }
                // What an injection would look like: no nonce.
                script { (maud::PreEscaped("document.body.dataset.injected = 1;")) }
            }
        }
    }
}

/// The page's own inline script (with the response's nonce) runs; one
/// without it does not, and both detectors report it — so the clean runs
/// above are not clean because the detectors are blind.
async fn nonce_lets_only_the_pages_own_inline_script_run(b: &Browser, site: &Site) {
    async fn serve<St: portcullis::tower_sessions::SessionStore + Clone>(
        store: St,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let app = portcullis::Portcullis::new(common::config(), ())
            .pages(Router::new().route("/", axum::routing::get(nonce_page)))
            .build(store)
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router();
        let task = tokio::spawn(async move {
            let _ = portcullis::serve_until(listener, router, std::future::pending()).await;
        });
        (base, task)
    }
    let (base, task) = match site.demo.sessions.clone() {
        demo::Sessions::Sqlite(s) => serve(s).await,
        demo::Sessions::Postgres(s) => serve(s).await,
        demo::Sessions::Redis(s) => serve(s).await,
    };
    b.client.goto(&format!("{base}/")).await.unwrap();
    b.wait_for("#here").await;
    if b.mode == Mode::NoJs {
        // No script runs at all; the log may or may not mention the inline one.
        let _ = b.csp_console_errors().await;
        task.abort();
        return;
    }
    let console = b.csp_console_errors().await;
    assert!(
        console.iter().any(|m| m.contains("script-src")),
        "[{:?}] the un-nonced inline script is reported: {console:#?}",
        b.mode
    );
    assert_eq!(console.len(), 1, "only that one: {console:#?}");
    b.wait_for("body[data-nonced]").await;
    assert!(
        b.client
            .find(Locator::Css("body[data-injected]"))
            .await
            .is_err(),
        "an inline script without the nonce ran"
    );
    // The listener sees a violation too (a script inserted later,
    // without the nonce, as an injected one would be).
    b.listen_csp().await;
    b.client
        .execute(
            "const s = document.createElement('script'); \
                 s.textContent = 'document.body.dataset.late = 1'; document.body.append(s);",
            vec![],
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = b.csp_events().await;
    assert!(
        events.iter().any(|e| e.starts_with("script-src")),
        "{events:?}"
    );
    assert!(
        b.client
            .find(Locator::Css("body[data-late]"))
            .await
            .is_err()
    );
    let _ = b.csp_console_errors().await; // consumed: expected above
    // Leave for a page with no policy of ours and no listener state.
    b.client.goto("about:blank").await.unwrap();
    let _ = b.csp_console_errors().await;
    task.abort();
}

/// Clickjacking: a page on another origin frames the demo's sign-in page
/// (and, as a control, a page of its own). The control renders; the demo
/// page does not, and the browser says `frame-ancestors` refused it.
async fn framing_by_another_origin_does_not_render(b: &Browser, site: &Site) {
    let target = site.url("/login");
    let outer = Router::new()
        .route(
            "/",
            axum::routing::get(move || {
                let target = target.clone();
                async move {
                    axum::response::Html(format!(
                        "<!doctype html><title>evil</title>\
                         <iframe id=victim src=\"{target}\"></iframe>\
                         <iframe id=own src=\"/own\"></iframe>"
                    ))
                }
            }),
        )
        .route(
            "/own",
            axum::routing::get(|| async { axum::response::Html("<p id=own-ok>rendered</p>") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, outer).await;
    });
    b.client.goto(&base).await.unwrap();
    b.wait_for("#own").await;
    // The control frame (index 1) renders.
    let deadline = Instant::now() + WAIT;
    loop {
        b.client.enter_parent_frame().await.unwrap();
        b.client.enter_frame(Some(1)).await.unwrap();
        if b.client.find(Locator::Css("#own-ok")).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the control frame never rendered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.client.enter_parent_frame().await.unwrap();
    // Give the victim frame the same time to load, then look inside.
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.client.enter_frame(Some(0)).await.unwrap();
    let inside = b.client.find(Locator::Css("input[name=email]")).await;
    let html = b.client.source().await.unwrap_or_default();
    b.client.enter_parent_frame().await.unwrap();
    assert!(
        inside.is_err() && !html.contains("Sign in"),
        "[{:?}] the framed demo page rendered:\n{html}",
        b.mode
    );
    let console = b.csp_console_errors().await;
    assert!(
        console.iter().any(|m| m.contains("frame-ancestors")),
        "[{:?}] no frame-ancestors refusal in the log: {console:#?}",
        b.mode
    );
    b.shot("framed-refused").await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_flows_with_and_without_javascript() {
    let started = Instant::now();
    let driver = start_driver().await;
    for mode in [Mode::Js, Mode::NoJs] {
        let b = browser(&driver, mode).await;
        macro_rules! flow {
            ($f:ident) => {{
                let t = Instant::now();
                let site = Site::start().await;
                $f(&b, &site).await;
                b.assert_no_csp_violations(stringify!($f)).await;
                b.client.delete_all_cookies().await.unwrap();
                eprintln!("{:>5} {:<32} {:?}", mode.tag(), stringify!($f), t.elapsed());
            }};
        }
        flow!(sign_up_and_sign_in);
        flow!(create_and_rename_project);
        flow!(optimistic_comment_rollback);
        flow!(upload_attachment);
        flow!(stale_ids_reload_once);
        flow!(contact_rate_limited);
        flow!(destructive_action_reauth);
        flow!(csp_on_every_page);
        flow!(nonce_lets_only_the_pages_own_inline_script_run);
        flow!(framing_by_another_origin_does_not_render);
        if mode == Mode::Js {
            flow!(typed_client_call);
            let t = Instant::now();
            proof_of_work_is_solved_before_sending(&b).await;
            eprintln!(
                "{:>5} {:<32} {:?}",
                mode.tag(),
                "proof_of_work",
                t.elapsed()
            );
        }
        b.client.close().await.unwrap();
    }
    eprintln!("browser flows: {:?}", started.elapsed());
}
