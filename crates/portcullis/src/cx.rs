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
use crate::session::Auth;

/// Effects requested by a handler, applied to this one response.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    pub redirect: Option<String>,
}

/// What an action handler gets besides its viewer and input.
pub struct Cx<S> {
    state: S,
    auth: Auth,
    client_ip: IpAddr,
    effects: Arc<Mutex<Effects>>,
    quotas: Vec<(&'static str, QuotaState)>,
}

impl<S> Cx<S> {
    pub(crate) fn new(state: S, auth: Auth, client_ip: IpAddr, effects: Arc<Mutex<Effects>>) -> Self {
        Cx {
            state,
            auth,
            client_ip,
            effects,
            quotas: Vec::new(),
        }
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
        self.quotas.iter().find(|(n, _)| *n == name).map(|(_, q)| *q)
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

    fn effects_mut(&self) -> std::sync::MutexGuard<'_, Effects> {
        // A poisoned lock only means another clone of this Cx panicked
        // mid-update; the effects it holds are still plain data.
        self.effects.lock().unwrap_or_else(|e| e.into_inner())
    }
}
