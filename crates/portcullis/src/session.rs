//! Sessions and identity (feeds stage 5).
//!
//! Sessions are `tower-sessions` sessions: an opaque random id in an
//! `HttpOnly`, `SameSite=Lax` cookie (`Secure` when the app is served over
//! https), data in a server-side store (SQLite by default, Redis in
//! multi-instance mode). This module owns the one key in that data that
//! carries identity, and it is the only writer of it:
//!
//! * [`Auth::login`] cycles the session id *before* writing the identity, so a
//!   session id planted by an attacker (fixation) never becomes authenticated;
//! * [`Auth::logout`] deletes the session record and expires the cookie;
//! * [`Auth::confirm_reauthentication`] stamps a step-up re-authentication,
//!   which `recent(..)` policies read; it lives in this session only, so a
//!   re-authentication in another session does not count here;
//! * an absolute timeout caps a session's life regardless of activity (the
//!   idle timeout is the store expiry).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::error::Rejection;
use crate::viewer::{UserId, Viewer};

const IDENTITY_KEY: &str = "portcullis.identity";

/// The identity record, private to this module.
#[derive(Serialize, Deserialize)]
struct Identity {
    user_id: UserId,
    roles: Vec<String>,
    authenticated_at: u64,
    reauthenticated_at: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn store_error(e: tower_sessions::session::Error) -> Rejection {
    Rejection::internal(&format_args!("session store: {e}"))
}

/// Reads the viewer from a session, enforcing the absolute timeout.
pub(crate) async fn load_viewer(
    session: &Session,
    absolute_timeout: Duration,
) -> Result<Option<Viewer>, Rejection> {
    let Some(identity) = session
        .get::<Identity>(IDENTITY_KEY)
        .await
        .map_err(store_error)?
    else {
        return Ok(None);
    };
    if unix_now().saturating_sub(identity.authenticated_at) > absolute_timeout.as_secs() {
        session.flush().await.map_err(store_error)?;
        return Ok(None);
    }
    Ok(Some(Viewer::new(
        identity.user_id,
        Arc::from(identity.roles),
        at(identity.authenticated_at),
        at(identity.reauthenticated_at),
    )))
}

/// What sealed values made or opened in this request are bound to: the
/// session id, or `anonymous` when there is no session record. Call it after
/// the session was loaded (any read, e.g. [`load_viewer`]): before that,
/// `Session::id` is whatever the cookie claimed, even for a record that does
/// not exist.
pub(crate) fn seal_binding(session: &Session) -> crate::seal::Binding {
    match session.id() {
        Some(id) => crate::seal::Binding::session(id),
        None => crate::seal::Binding::Anonymous,
    }
}

/// Signs viewers in and out. Handed to handlers through [`crate::Cx::auth`];
/// verifying the password is the app's job, recording the result is ours.
#[derive(Clone)]
pub struct Auth {
    session: Session,
}

impl Auth {
    pub(crate) fn new(session: Session) -> Self {
        Auth { session }
    }

    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// Records a successful sign-in: new session id, then the identity.
    pub async fn login(&self, user_id: UserId, roles: Vec<String>) -> Result<(), Rejection> {
        self.session.cycle_id().await.map_err(store_error)?;
        let now = unix_now();
        self.session
            .insert(
                IDENTITY_KEY,
                Identity {
                    user_id,
                    roles,
                    authenticated_at: now,
                    reauthenticated_at: now,
                },
            )
            .await
            .map_err(store_error)
    }

    /// Ends the session everywhere: the record is deleted from the store.
    pub async fn logout(&self) -> Result<(), Rejection> {
        self.session.flush().await.map_err(store_error)
    }

    /// Records that the signed-in viewer just re-entered their password.
    /// Cycles the session id as well (privilege change).
    pub async fn confirm_reauthentication(&self) -> Result<(), Rejection> {
        let Some(mut identity) = self
            .session
            .get::<Identity>(IDENTITY_KEY)
            .await
            .map_err(store_error)?
        else {
            return Err(Rejection::new(crate::ErrorCode::Unauthenticated));
        };
        identity.reauthenticated_at = unix_now();
        self.session.cycle_id().await.map_err(store_error)?;
        self.session
            .insert(IDENTITY_KEY, identity)
            .await
            .map_err(store_error)
    }

    /// Stores app data (not identity) in the session, e.g. a return path.
    /// Keys under `portcullis.` are reserved and refused.
    pub async fn set<T: Serialize>(&self, key: &str, value: T) -> Result<(), Rejection> {
        reserved(key)?;
        self.session.insert(key, value).await.map_err(store_error)
    }

    /// Reads app data stored with [`Auth::set`].
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, Rejection> {
        reserved(key)?;
        self.session.get(key).await.map_err(store_error)
    }
}

fn reserved(key: &str) -> Result<(), Rejection> {
    if key.starts_with("portcullis.") {
        return Err(Rejection::internal(&format_args!(
            "session key `{key}` is reserved for the framework"
        )));
    }
    Ok(())
}
