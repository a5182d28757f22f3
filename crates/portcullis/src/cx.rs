//! The handler context and the effects it may request (stage 9's input).
//!
//! [`Cx`] is only ever made by the pipeline and only handed to action
//! handlers. Page render code receives [`crate::render::Page`] instead, which
//! has no way to set cookies, redirect, or sign anyone in: mutating effects are
//! impossible from render code because the type that offers them is not there.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::error::ActionError;
use crate::ratelimit::QuotaState;
use crate::respond::safe_return_path;
use crate::seal::{SealFor, Sealer};
use crate::session::Auth;

/// Effects requested by a handler, applied to this one response.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub redirect: Option<String>,
    /// Tags expired now (read-your-own-writes).
    pub updated: Vec<String>,
    /// Tags marked stale (stale-while-revalidate).
    pub revalidated: Vec<String>,
    /// Pages whose fragments are marked stale.
    pub paths: Vec<String>,
    /// Re-render every fragment the client's page shows.
    pub refresh: bool,
    /// `Set-Cookie` values for this response.
    pub cookies: Vec<String>,
}

impl Effects {
    pub(crate) fn revalidates(&self) -> bool {
        self.refresh
            || !self.updated.is_empty()
            || !self.revalidated.is_empty()
            || !self.paths.is_empty()
    }
}

/// What an action handler gets besides its viewer and input.
pub struct Cx<S> {
    state: S,
    auth: Auth,
    client_ip: IpAddr,
    return_path: Option<String>,
    effects: Arc<Mutex<Effects>>,
    sealer: Arc<Sealer>,
    secure_cookies: bool,
    quotas: Vec<(&'static str, QuotaState)>,
    /// The record this call changed, for the audit log ([`Cx::audit_record`]).
    audit_record: Arc<Mutex<Option<String>>>,
    /// Who wrote it: the anonymous-scope layer (from a signed cookie); one
    /// per request, dropped with it.
    anon: Option<crate::anon::AnonScope>,
}

impl<S> Cx<S> {
    pub(crate) fn new(
        state: S,
        auth: Auth,
        client_ip: IpAddr,
        return_path: Option<String>,
        effects: Arc<Mutex<Effects>>,
        sealer: Arc<Sealer>,
    ) -> Self {
        Cx {
            state,
            auth,
            client_ip,
            return_path: return_path.filter(|p| safe_return_path(p).is_some()),
            effects,
            sealer,
            secure_cookies: false,
            quotas: Vec::new(),
            audit_record: Arc::default(),
            anon: None,
        }
    }

    /// The caller's browser scope ([`crate::anon`]), for seals minted while
    /// there is no session.
    pub(crate) fn with_anon(mut self, anon: Option<crate::anon::AnonScope>) -> Self {
        self.anon = anon;
        self
    }

    /// Names the record this call changed (e.g. `project:42`) for the
    /// app's audit log ([`crate::observe::AuditSink`]). Never put input
    /// values or secrets here: it is logged as is.
    pub fn audit_record(&self, record: impl std::fmt::Display) {
        *self.audit_record.lock().unwrap_or_else(|e| e.into_inner()) = Some(record.to_string());
    }

    pub(crate) fn audit_slot(&self) -> Arc<Mutex<Option<String>>> {
        self.audit_record.clone()
    }

    /// The form's return path (`_return`, set with
    /// [`crate::render::Form::return_to`], else the form's page), if it is
    /// a safe same-origin path. A sign-in action uses it to send the user
    /// back where they came from: `Page::require_viewer` sent them to the
    /// sign-in page with `?return=<their page>`, the page passed that to
    /// `return_to`, and `cx.redirect(path)` makes the choice explicit (e.g.
    /// a default instead of the sign-in page itself).
    pub fn return_path(&self) -> Option<&str> {
        self.return_path.as_deref()
    }

    /// A target for [`crate::seal::seal`]: values for `action`, in this
    /// session. For values a result hands to the page's script, e.g. the
    /// next step of a wizard. A handler that signs in or out changes the
    /// session id only when the response is sent, so seals it mints after
    /// that will not open; mint them on the page that follows instead.
    pub fn seal_for<In, Out>(&self, action: crate::ActionRef<In, Out>) -> SealFor {
        SealFor::new(
            self.sealer.clone(),
            action.name(),
            crate::anon::seal_binding(self.auth.session(), self.anon.as_ref()),
        )
    }

    pub(crate) fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// Attaches the quotas the pipeline charged for this call.
    pub(crate) fn with_quotas(mut self, quotas: Vec<(&'static str, QuotaState)>) -> Self {
        self.quotas = quotas;
        self
    }

    /// What is left of the action's quota `name` after this call was charged
    /// (`None` if the action declares no such quota, or the backend was down
    /// and the action is fail-open).
    pub fn quota(&self, name: &str) -> Option<QuotaState> {
        self.quotas
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, q)| *q)
    }

    /// The app state (database pool, DAL, …).
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Sign-in, sign-out and re-authentication for this session.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The client address (trusted-proxy aware).
    pub fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    /// Sends the client to a same-origin path after this action: `303` for a
    /// no-JS form post, a `redirect` instruction in the JSON envelope for the
    /// client runtime. Absolute and protocol-relative URLs are refused.
    pub fn redirect(&self, path: &str) -> Result<(), ActionError> {
        let Some(path) = safe_return_path(path) else {
            return Err(ActionError::internal(format!(
                "redirect to `{path}` refused: only same-origin paths starting with one `/` are allowed"
            )));
        };
        self.effects_mut().redirect = Some(path.to_owned());
        Ok(())
    }

    /// Expires `tag` now: cached fragments that read it are re-rendered
    /// before anyone sees them again, and the ones the caller's page shows
    /// come back in this response. Applied only if the action succeeds.
    pub fn update_tag(&self, tag: impl Into<String>) {
        self.effects_mut().updated.push(tag.into());
    }

    /// Marks `tag` stale: the next reader gets the stale copy once while one
    /// background render refreshes it. Applied only if the action succeeds.
    pub fn revalidate_tag(&self, tag: impl Into<String>) {
        self.effects_mut().revalidated.push(tag.into());
    }

    /// Marks every fragment rendered as part of page `path` stale.
    pub fn revalidate_path(&self, path: impl Into<String>) {
        self.effects_mut().paths.push(path.into());
    }

    /// Re-renders every fragment the caller's page shows into this response.
    pub fn refresh(&self) {
        self.effects_mut().refresh = true;
    }

    /// Sets a cookie on this response: `HttpOnly`, `SameSite=Lax`, `Path=/`,
    /// and `Secure` when the app's cookies are. The session cookie's name is
    /// refused (only the session layer writes it).
    pub fn set_cookie(
        &self,
        name: &str,
        value: &str,
        max_age: Option<std::time::Duration>,
    ) -> Result<(), ActionError> {
        let cookie = self.cookie(name, value, max_age)?;
        self.effects_mut().cookies.push(cookie);
        Ok(())
    }

    /// Deletes a cookie set with [`Cx::set_cookie`].
    pub fn remove_cookie(&self, name: &str) -> Result<(), ActionError> {
        let cookie = self.cookie(name, "", Some(std::time::Duration::ZERO))?;
        self.effects_mut().cookies.push(cookie);
        Ok(())
    }

    fn cookie(
        &self,
        name: &str,
        value: &str,
        max_age: Option<std::time::Duration>,
    ) -> Result<String, ActionError> {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid_name || name.contains("portcullis") {
            return Err(ActionError::internal(format!(
                "cookie name `{name}` refused"
            )));
        }
        let mut c = tower_sessions::cookie::Cookie::build((name.to_owned(), value.to_owned()))
            .http_only(true)
            .same_site(tower_sessions::cookie::SameSite::Lax)
            .path("/")
            .secure(self.secure_cookies);
        if let Some(age) = max_age {
            c = c.max_age(tower_sessions::cookie::time::Duration::seconds(
                age.as_secs() as i64,
            ));
        }
        Ok(c.build().encoded().to_string())
    }

    fn effects_mut(&self) -> std::sync::MutexGuard<'_, Effects> {
        // A poisoned lock only means another clone of this Cx panicked
        // mid-update; the effects it holds are still plain data.
        self.effects.lock().unwrap_or_else(|e| e.into_inner())
    }
}
