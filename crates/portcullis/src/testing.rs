//! `TestClient`: drive a real server on an ephemeral port over real HTTP.
//!
//! Like axum's own test helper, but aimed at actions: [`TestClient::call`]
//! resolves an action's *current* opaque id from its handle
//! ([`crate::ActionRef`] or [`crate::AnyActionRef`], so a misspelt name
//! does not compile) and posts to
//! it the way the client runtime would (same-origin headers, `Accept: application/json`);
//! [`TestClient::submit`] posts the way a browser without JavaScript would.
//! Like the form `Page` renders, both send an empty honeypot field (`_hp`)
//! for an action with `BotCheck::Honeypot` when the test does not give one.
//! Raw [`TestClient::post`] adds nothing, for hostile requests.
//!
//! [`attacks::Harness`] runs the standard attacks against every registered
//! action of an app: the first test an adopter should add.

pub mod attacks;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use reqwest::cookie::{CookieStore, Jar};

use crate::action::AnyActionRef;
use crate::app::App;

struct Server(tokio::task::JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A client bound to a running test server, with its own cookie jar.
#[derive(Clone)]
pub struct TestClient {
    addr: SocketAddr,
    http: reqwest::Client,
    jar: Arc<Jar>,
    /// The source address requests leave from (`None`: the OS's choice).
    local: Option<std::net::IpAddr>,
    /// Whether requests go over HTTP/2 (prior knowledge) instead of HTTP/1.1.
    http2: bool,
    app: App,
    _server: Arc<Server>,
}

impl TestClient {
    /// Starts `app` on `127.0.0.1:0` and returns a client for it.
    pub async fn start(app: &App) -> Self {
        Self::start_with(app, crate::server::ServeConfig::default()).await
    }

    /// [`TestClient::start`] with connection limits and timeouts of your
    /// choosing.
    pub async fn start_with(app: &App, serve: crate::server::ServeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let addr = listener.local_addr().expect("local addr");
        let router = app.router();
        let task = tokio::spawn(async move {
            let _ =
                crate::server::serve_with(listener, router, serve, std::future::pending()).await;
        });
        let jar = Arc::new(Jar::default());
        TestClient {
            addr,
            http: client(jar.clone(), None, false),
            jar,
            local: None,
            http2: false,
            app: app.clone(),
            _server: Arc::new(Server(task)),
        }
    }

    /// Another client on the same server with an empty cookie jar (a second
    /// browser, another user).
    pub fn new_session(&self) -> Self {
        let jar = Arc::new(Jar::default());
        TestClient {
            http: client(jar.clone(), self.local, self.http2),
            jar,
            ..self.clone()
        }
    }

    /// This client (same cookies) sending from another loopback address,
    /// e.g. `127.0.0.2`: the server sees another client address without any
    /// proxy configuration (all of 127.0.0.0/8 is loopback on Linux).
    pub fn from_address(&self, ip: std::net::IpAddr) -> Self {
        TestClient {
            http: client(self.jar.clone(), Some(ip), self.http2),
            local: Some(ip),
            ..self.clone()
        }
    }

    /// This client (same cookies) speaking HTTP/2 over cleartext (prior
    /// knowledge, as a TLS-terminating proxy speaks to its backend), one
    /// connection carrying every request; [`TestResponse::version`] shows
    /// what was spoken.
    pub fn http2(&self) -> Self {
        TestClient {
            http: client(self.jar.clone(), self.local, true),
            http2: true,
            ..self.clone()
        }
    }

    /// The address the test server listens on (`127.0.0.1:<ephemeral>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's own origin, `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The absolute URL of `path` (which starts with `/`) on the test
    /// server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// The app this client talks to (its manifest, metrics, fragments and,
    /// with the `testing` feature, the internals tests inspect).
    pub fn app(&self) -> &App {
        &self.app
    }

    /// The current endpoint path of `action`; panics if the app did not
    /// register it.
    pub fn path(&self, action: impl Into<AnyActionRef>) -> String {
        self.action_path(action.into().name())
    }

    /// The current endpoint path of the action named `name`; panics on an
    /// unknown name. **Unchecked**: the name is a plain string the compiler
    /// cannot check, for tests that probe names on purpose (or iterate the
    /// manifest); everywhere else use [`TestClient::path`] with a handle.
    pub fn action_path(&self, name: &str) -> String {
        self.app
            .runtime()
            .action_path(name)
            .unwrap_or_else(|| panic!("no action named `{name}`"))
    }

    /// The `Cookie` header this client would send.
    pub fn cookies(&self) -> Option<String> {
        let url = self.url("/").parse().expect("valid url");
        self.jar
            .cookies(&url)
            .and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    /// The seal binding this client's requests get: its session, else its
    /// browser's anonymous scope (its anonymous cookie), else the shared
    /// anonymous binding.
    pub fn seal_binding(&self) -> crate::seal::Binding {
        let cookies = self.cookies().unwrap_or_default();
        let session = crate::session::cookie_name(self.app.config());
        if let Some(id) = cookies
            .split("; ")
            .find_map(|c| c.strip_prefix(session)?.strip_prefix('='))
        {
            return crate::seal::Binding::session(id);
        }
        let mut headers = HeaderMap::new();
        if let Ok(v) = cookies.parse() {
            headers.insert(http::header::COOKIE, v);
        }
        let config = self.app.config();
        match crate::anon::from_headers(&config.keys, config.secure_cookies, &headers) {
            Some(scope) => crate::seal::Binding::Browser(std::sync::Arc::from(scope.id())),
            None => crate::seal::Binding::Anonymous,
        }
    }

    /// Replaces this client's cookies with `cookie` (`name=value`).
    pub fn set_cookie(&self, cookie: &str) {
        let url = self.url("/").parse().expect("valid url");
        self.jar.add_cookie_str(&format!("{cookie}; Path=/"), &url);
    }

    /// A GET with the cookie jar.
    pub async fn get(&self, path: &str) -> TestResponse {
        send(self.http.get(self.url(path))).await
    }

    /// A raw POST builder: no headers added beyond cookies.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    fn same_origin(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        builder
            .header("sec-fetch-site", "same-origin")
            .header("origin", self.origin())
    }

    /// Whether a rendered form of `name` would carry an empty honeypot the
    /// test did not give (see the module docs).
    fn needs_honeypot(&self, name: &str, given: bool) -> bool {
        !given
            && self
                .app
                .runtime()
                .directory()
                .bot_checks(name)
                .contains(&crate::BotCheck::Honeypot)
    }

    fn form_body(&self, name: &str, form: &[(&str, &str)]) -> String {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.extend_pairs(form);
        let given = form.iter().any(|(k, _)| *k == crate::wire::field::HONEYPOT);
        if self.needs_honeypot(name, given) {
            body.append_pair(crate::wire::field::HONEYPOT, "");
        }
        body.finish()
    }

    /// Calls `action` like the client runtime: urlencoded body,
    /// `Accept: application/json`, same-origin headers (an empty honeypot
    /// if the action has one).
    ///
    /// The response body is the wire envelope, not the DTO: on success
    /// `{"ok":true,"result":<the handler's DTO>}` plus `fragments`,
    /// `redirect` (from `cx.redirect`) and `revalidated` when there are any
    /// ([`crate::wire::SuccessEnvelope`]); on a refusal
    /// `{"error":{"code","message","digest"},"fieldErrors":{..},"formErrors":[..]}`
    /// ([`crate::wire::FailureEnvelope`]). Read the DTO with
    /// [`TestResponse::result`] or [`TestResponse::result_as`], the refusal
    /// with [`TestResponse::error_code`] and [`TestResponse::json`].
    ///
    /// ```no_run
    /// # async fn t(client: portcullis::testing::TestClient) {
    /// # const RENAME: portcullis::ActionRef<(), ()> = portcullis::ActionRef::new("projects.rename");
    /// let r = client.call(RENAME, &[("projectId", "7"), ("name", "Apollo")]).await;
    /// assert_eq!(r.status, 200, "{}", r.text());
    /// assert_eq!(r.result()["name"], "Apollo");
    /// let r = client.call(RENAME, &[("projectId", "7"), ("name", "")]).await;
    /// assert_eq!(r.error_code().as_deref(), Some("invalid_input"));
    /// assert!(r.json()["fieldErrors"]["name"].is_array());
    /// # }
    /// ```
    pub async fn call(
        &self,
        action: impl Into<AnyActionRef>,
        form: &[(&str, &str)],
    ) -> TestResponse {
        let name = action.into().name();
        let body = self.form_body(name, form);
        let req = self
            .same_origin(self.post(&self.action_path(name)))
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        send(req).await
    }

    /// Calls `action` like the client runtime: JSON body. The response is
    /// the same envelope as [`TestClient::call`]'s.
    pub async fn call_json(
        &self,
        action: impl Into<AnyActionRef>,
        json: &serde_json::Value,
    ) -> TestResponse {
        let name = action.into().name();
        let mut json = json.clone();
        if let Some(object) = json.as_object_mut()
            && self.needs_honeypot(name, object.contains_key(crate::wire::field::HONEYPOT))
        {
            object.insert(crate::wire::field::HONEYPOT.into(), "".into());
        }
        let req = self
            .same_origin(self.post(&self.action_path(name)))
            .header("accept", "application/json")
            .json(&json);
        send(req).await
    }

    /// Calls an action with upload fields like the client runtime: a
    /// `multipart/form-data` body with the text `form` pairs and one file
    /// part per `(field, file name, bytes)` (sent as
    /// `application/octet-stream`: the server judges files by their bytes).
    /// The response is the same envelope as [`TestClient::call`]'s.
    ///
    /// ```no_run
    /// # async fn t(client: portcullis::testing::TestClient) {
    /// # const ATTACH: portcullis::ActionRef<(), ()> = portcullis::ActionRef::new("files.attach");
    /// let png = std::fs::read("tests/fixtures/pixel.png").unwrap();
    /// let r = client.upload(ATTACH, &[("projectId", "7")], &[("file", "pixel.png", png)]).await;
    /// assert_eq!(r.status, 200, "{}", r.text());
    /// # }
    /// ```
    pub async fn upload(
        &self,
        action: impl Into<AnyActionRef>,
        form: &[(&str, &str)],
        files: &[(&str, &str, Vec<u8>)],
    ) -> TestResponse {
        let name = action.into().name();
        let mut multipart = reqwest::multipart::Form::new();
        for (k, v) in form {
            multipart = multipart.text(k.to_string(), v.to_string());
        }
        if self.needs_honeypot(
            name,
            form.iter().any(|(k, _)| *k == crate::wire::field::HONEYPOT),
        ) {
            multipart = multipart.text(crate::wire::field::HONEYPOT, "");
        }
        for (field, file_name, bytes) in files {
            let part = reqwest::multipart::Part::bytes(bytes.clone())
                .file_name(file_name.to_string())
                .mime_str("application/octet-stream")
                .expect("a valid MIME type");
            multipart = multipart.part(field.to_string(), part);
        }
        let req = self
            .same_origin(self.post(&self.action_path(name)))
            .header("accept", "application/json")
            .multipart(multipart);
        send(req).await
    }

    /// Submits `action` like a browser without JavaScript (no redirect
    /// following, so the 303 is visible). There is no envelope: success is
    /// a `303` to the redirect or the form's return path (`location`
    /// header), a validation failure a `303` back with the flash cookie,
    /// other refusals an HTML error page.
    pub async fn submit(
        &self,
        action: impl Into<AnyActionRef>,
        form: &[(&str, &str)],
    ) -> TestResponse {
        let name = action.into().name();
        let body = self.form_body(name, form);
        let req = self
            .same_origin(self.post(&self.action_path(name)))
            .header("accept", "text/html,application/xhtml+xml")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        send(req).await
    }
}

async fn send(req: reqwest::RequestBuilder) -> TestResponse {
    TestResponse::read(req.send().await.expect("request reached the test server")).await
}

fn client(jar: Arc<Jar>, local: Option<std::net::IpAddr>, http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder();
    let builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder
    };
    builder
        .local_address(local)
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// A fully read response.
#[derive(Debug)]
pub struct TestResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The protocol version the response came over.
    pub version: http::Version,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body (empty if reading it failed).
    pub body: Bytes,
}

impl TestResponse {
    /// Reads a response from any reqwest call (e.g. a raw [`TestClient::post`]).
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        TestResponse {
            status,
            version,
            headers,
            body,
        }
    }

    /// The body as text (invalid UTF-8 replaced, never a panic).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body text if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The handler's DTO: the `result` member of the success envelope that
    /// [`TestClient::call`] and [`TestClient::call_json`] get back (`null`
    /// for a handler returning `()`).
    ///
    /// Panics, showing the status and the body, when the response is not a
    /// success envelope (a refusal, a no-JS `303`): in a test that is the
    /// failure to see, not a value to compare.
    pub fn result(&self) -> serde_json::Value {
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        match body {
            serde_json::Value::Object(mut envelope) if envelope.get("ok") == Some(&true.into()) => {
                envelope.remove("result").unwrap_or_default()
            }
            _ => panic!(
                "not a success envelope (status {}): {}",
                self.status,
                self.text()
            ),
        }
    }

    /// [`TestResponse::result`] as `T`: a test-side type with the DTO's
    /// wire shape (DTOs are `Serialize` only, so the test declares a
    /// `Deserialize` mirror, or reuses a shared type). Panics like
    /// [`TestResponse::result`], or when the result does not fit `T`.
    pub fn result_as<T: serde::de::DeserializeOwned>(&self) -> T {
        let result = self.result();
        serde_json::from_value(result.clone()).unwrap_or_else(|e| {
            panic!(
                "the result does not fit {}: {e}: {result}",
                std::any::type_name::<T>()
            )
        })
    }

    /// `redirect` of a success envelope: where the client runtime would go
    /// next (set by `cx.redirect`), `None` when the action set none or the
    /// response is not a success envelope.
    pub fn redirect(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["redirect"].as_str().map(str::to_owned)
    }

    /// `error.code` of a JSON error envelope.
    pub fn error_code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["error"]["code"].as_str().map(str::to_owned)
    }

    /// The value of header `name` (case-insensitive), if present and
    /// visible ASCII; the first one when repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Internals tests inspect: only with the `testing` feature.
impl App {
    /// The current opaque id of `action` (the last path segment of its
    /// endpoint).
    pub fn action_id(&self, action: impl Into<AnyActionRef>) -> Option<String> {
        self.runtime().directory().action_id(action.into().name())
    }

    /// The id `action` had in `epoch` (tests of version-skew handling).
    pub fn action_id_in_epoch(&self, action: impl Into<AnyActionRef>, epoch: u64) -> String {
        let ids = &self.runtime().directory().ids;
        ids.id_in_epoch(action.into().name(), epoch).to_string()
    }

    /// The current id-rotation epoch.
    pub fn epoch(&self) -> u64 {
        self.runtime().directory().ids.epoch()
    }

    /// A fresh proof-of-work challenge for `action`, if it has a
    /// `BotCheck::ProofOfWork`.
    pub fn pow_challenge(&self, action: impl Into<AnyActionRef>) -> Option<String> {
        self.runtime()
            .directory()
            .pow_challenge(action.into().name())
    }

    /// The idempotency store (its usage figures in flood tests).
    pub fn idempotency(&self) -> &crate::idempotency::Store {
        &self.runtime().idempotency
    }

    /// The sealing keys, for minting seals outside a page or action.
    pub fn sealer(&self) -> &Arc<crate::seal::Sealer> {
        self.runtime().sealer()
    }
}
