//! Rendering forms for actions, from read-only page context.
//!
//! [`Page`] is what page handlers extract. It can tell who is viewing and
//! render forms that carry the action's *current* opaque id, the no-JS return
//! path, the error slots the client runtime fills and, for actions with a bot
//! check, the honeypot field and a fresh proof-of-work challenge
//! (`data-pow`, `data-pow-bits`) — but it offers no way to
//! set a cookie, redirect or sign anyone in. Those live on [`crate::Cx`],
//! which only action handlers receive.
//!
//! A page also mints *sealed bound arguments* ([`crate::security::seal`]):
//! values the page hands to a later action call and that must come back
//! unchanged. [`Form::bind_sealed`] seals a value for the form's own action
//! and the viewer's session and renders it as a hidden input;
//! [`Page::seal_for`] gives a target for [`crate::security::seal`] (values
//! for the page's script).
//!
//! Forms are marked `data-portcullis` for the client runtime (include
//! [`Page::script_src`] in the layout) and carry what it needs as
//! attributes: `data-idempotent` (parallel dispatch),
//! `data-login`/`data-reauth` (where a 401 goes), optional optimistic-update
//! declarations. Without JavaScript the same form posts normally; a 422 comes
//! back as a sealed flash that the next `Page` consumes, and `Form`/[`field`]
//! render its errors and values into the same slots.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use maud::Markup;
use tower_sessions::Session;

use crate::error::{ErrorCode, Rejection};
use crate::respond::{self, ClientKind};
use crate::runtime::Runtime;
use crate::seal::{Binding, SealFor};
use crate::session;
use crate::viewer::Viewer;
use crate::wire;

pub use crate::client::{script_path, style_path};
pub use crate::form::{Field, Form, field, form_group, submit};

/// Read-only render context for a page request.
pub struct Page {
    shared: Arc<Runtime>,
    /// This response's CSP nonce and caching facts ([`crate::headers`]).
    facts: Option<Arc<crate::headers::ResponseFacts>>,
    viewer: Option<Viewer>,
    path: String,
    /// The session seals minted on this page are bound to.
    binding: Binding,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let fail = |detail: &str| {
            let r = Rejection::internal(&detail);
            (r.status(), r.to_json()).into_response()
        };
        let Some(shared) = parts.extensions.get::<Arc<Runtime>>().cloned() else {
            return Err(fail("Page used outside a portcullis app"));
        };
        let Some(session) = parts.extensions.get::<Session>().cloned() else {
            return Err(fail("session layer missing"));
        };
        let viewer = session::load_viewer(
            &session,
            shared.config.session_absolute,
            shared.accounts.as_deref(),
        )
        .await
        .map_err(|r| {
            respond::failure(
                ClientKind::from_headers(&parts.headers),
                &r,
                &shared.config,
                None,
            )
        })?;
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let facts = parts
            .extensions
            .get::<Arc<crate::headers::ResponseFacts>>()
            .cloned();
        if let (Some(f), Some(_)) = (&facts, &viewer) {
            // Rendered for a signed-in viewer: `Cache-Control: no-store`.
            f.mark_personalized();
        }
        // After load_viewer: the id is now that of a live record, or none.
        let binding =
            crate::anon::seal_binding(&session, parts.extensions.get::<crate::anon::AnonScope>());
        // A no-JS submission that failed validation left a flash for this page.
        crate::flash::consume(
            &shared.flash_sealer,
            &shared.config,
            shared.limiter.store(),
            &parts.headers,
            &binding,
            &path,
        )
        .await;
        Ok(Page {
            shared,
            facts,
            viewer,
            path,
            binding,
        })
    }
}

impl Page {
    /// The signed-in viewer (checked against the account directory), or
    /// `None` for an anonymous request.
    pub fn viewer(&self) -> Option<&Viewer> {
        self.viewer.as_ref()
    }

    /// The viewer, or a response sending the browser to sign in and back:
    /// a `303` to [`crate::Config::login_path`] with
    /// `?return=<this page's path and query>`
    /// ([`crate::wire::LOGIN_RETURN_PARAM`]). The sign-in page hands
    /// `return` to its form with [`Form::return_to`], and the sign-in
    /// action reads it back with [`crate::Cx::return_path`]
    /// (`docs/guide.md`, "A sign-in page").
    // `Response` as the error is the axum idiom: a page handler returning
    // `Result<_, Response>` can use `?`; boxing it would only add noise.
    #[allow(clippy::result_large_err)]
    pub fn require_viewer(&self) -> Result<&Viewer, Response> {
        self.viewer.as_ref().ok_or_else(|| {
            let login = format!(
                "{}?{}={}",
                self.shared.config.login_path,
                wire::LOGIN_RETURN_PARAM,
                form_urlencoded::byte_serialize(self.path.as_bytes()).collect::<String>()
            );
            respond::see_other(&login).into_response()
        })
    }

    /// The path (and query) of this page: the default no-JS return path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The client runtime's URL (content-hashed, cached immutably):
    /// `script type="module" src=(page.script_src()) {}` in the layout.
    pub fn script_src(&self) -> &'static str {
        crate::client::script_path()
    }

    /// The framework stylesheet's URL (honeypot class, error pages):
    /// `link rel="stylesheet" href=(page.style_href());` in the layout.
    pub fn style_href(&self) -> &'static str {
        crate::client::style_path()
    }

    /// This response's Content-Security-Policy nonce (fresh per response):
    /// `script nonce=(page.csp_nonce()) { … }` is the only way an inline
    /// script (or `<style>`) runs under the framework's policy
    /// ([`crate::security::SecurityHeaders`]). Empty outside a portcullis app.
    pub fn csp_nonce(&self) -> &str {
        self.facts.as_deref().map_or("", |f| f.nonce())
    }

    /// Starts a form for `action` (its handle: the name is checked by the
    /// compiler).
    pub fn form<In, Out>(&self, action: crate::ActionRef<In, Out>) -> Form {
        let mut form = Form::for_action(
            &self.shared.forms,
            action.name(),
            self.path.clone(),
            self.binding.clone(),
        );
        let key: [u8; 16] = rand::random();
        form.idempotency_key = Some(crate::hex(&key));
        form
    }

    /// A target for [`crate::seal::seal`]: values that only `action` will
    /// accept, in this viewer's session. For a form, prefer
    /// [`Form::bind_sealed`].
    pub fn seal_for<In, Out>(&self, action: crate::ActionRef<In, Out>) -> SealFor {
        let name = action.name();
        if self.shared.directory().meta(name).is_none() {
            tracing::error!(action = name, "sealing for an unregistered action");
        }
        SealFor::new(self.shared.sealer().clone(), name, self.binding.clone())
    }

    /// A fresh proof-of-work challenge for `action` (if it has a
    /// `BotCheck::ProofOfWork`), for pages that call the action from script
    /// rather than through [`Page::form`]. The client sends the solution in
    /// the `X-Portcullis-Pow` header (see [`crate::BotCheck`]).
    pub fn pow_challenge<In, Out>(&self, action: crate::ActionRef<In, Out>) -> Option<String> {
        self.shared.directory().pow_challenge(action.name())
    }

    /// The map the typed client (`call`, `actionState` of the generated
    /// `actions.js`, see `portcullis ts`) reads: for each of `actions`, its
    /// client key and *current* endpoint, as a JSON data block
    /// (`<script type="application/json" id="portcullis-actions">`, with
    /// this response's nonce) to put anywhere in the page's body. List the
    /// actions the page's script calls, as a form names its own: a page
    /// hands out no other action's id.
    ///
    /// ```
    /// # use portcullis::{ActionRef, Page};
    /// # pub struct Rename; pub struct ProjectDto;
    /// # const RENAME: ActionRef<Rename, ProjectDto> = ActionRef::new("projects.rename");
    /// fn body(page: &Page) -> maud::Markup {
    ///     maud::html! { div #app {} (page.client_actions(&[RENAME.into()])) }
    /// }
    /// ```
    pub fn client_actions(&self, actions: &[crate::AnyActionRef]) -> Markup {
        let directory = self.shared.directory();
        let mut map = wire::ClientActions {
            actions: Default::default(),
            login: self.shared.config.login_path.clone(),
            reauth: self.shared.config.reauth_path.clone(),
        };
        for action in actions {
            let name = action.name();
            let Some(path) = directory.action_path(name) else {
                tracing::error!(action = name, "client_actions: unregistered action");
                continue;
            };
            let pow_bits = directory.bot_checks(name).iter().find_map(|c| match c {
                crate::BotCheck::ProofOfWork { bits } => Some(*bits),
                _ => None,
            });
            map.actions.insert(
                crate::directory::client_key(name),
                wire::ClientAction {
                    path,
                    idempotent: directory.idempotent(name),
                    honeypot: !directory.bot_checks(name).is_empty(),
                    pow: directory.pow_challenge(name),
                    pow_bits,
                },
            );
        }
        // JSON inside <script>: `<` escaped, so no value can close the
        // element (the values are paths and ids, but the rule is cheap).
        let json = serde_json::to_string(&map)
            .unwrap_or_else(|_| "{}".into())
            .replace('<', "\\u003c");
        maud::html! {
            script type="application/json" id=(wire::CLIENT_ACTIONS_ID) nonce=(self.csp_nonce()) {
                (maud::PreEscaped(json))
            }
        }
    }

    /// A group of forms alike around `body` ([`form_group`] with this
    /// app's sign-in paths).
    pub fn form_group(&self, body: Markup) -> Markup {
        let config = &self.shared.config;
        form_group(&config.login_path, &config.reauth_path, body)
    }

    /// Fragment `key` (`name` or `name:param`) for this viewer, from the
    /// render cache when fresh, wrapped in its `data-fragment` root so the
    /// client runtime can swap it. A fragment that fails to render is logged
    /// and rendered empty (the rest of the page still works).
    pub async fn fragment(&self, key: &str) -> Markup {
        let path = self.path.split('?').next().unwrap_or("/");
        match self
            .shared
            .fragments
            .render_key(key, self.viewer.as_ref(), Some(path))
            .await
        {
            Ok(html) => maud::PreEscaped(html),
            Err(e) => {
                tracing::warn!(fragment = key, error = ?e, "fragment failed to render");
                maud::PreEscaped(format!("<div {}=\"{key}\"></div>", wire::attr::FRAGMENT))
            }
        }
    }

    /// The error page for a failed data call: what an action would answer
    /// (the app's classifier applies, e.g. a database outage is 503
    /// `database_unavailable`; anything else is 500 with a logged digest).
    pub fn failed(&self, error: impl Into<crate::ActionError>) -> Response {
        respond::failure(
            ClientKind::Html,
            &error.into().classified(self.shared.classifier),
            &self.shared.config,
            Some(&self.path),
        )
    }

    /// An error page for `code` as a response (e.g. 404 from a page handler).
    pub fn error(&self, code: ErrorCode) -> Response {
        respond::failure(
            ClientKind::Html,
            &Rejection::new(code),
            &self.shared.config,
            Some(&self.path),
        )
    }
}
