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

/// Creates a signed-in session directly in `store` and returns the cookie
/// value. For server-side tooling only (seeding a load test, admin scripts):
/// it never runs on a request path and takes no request input.
pub async fn issue<Store: tower_sessions::SessionStore>(
    store: &Store,
    user_id: UserId,
    roles: Vec<String>,
    ttl: Duration,
) -> Result<String, tower_sessions::session_store::Error> {
    issue_with(store, user_id, roles, ttl, Duration::ZERO).await
}

/// Like [`issue`], with the last password confirmation `reauthenticated_ago`
/// in the past (tests of `recent(..)` policies use this to make a session
/// whose step-up has expired).
pub async fn issue_with<Store: tower_sessions::SessionStore>(
    store: &Store,
    user_id: UserId,
    roles: Vec<String>,
    ttl: Duration,
    reauthenticated_ago: Duration,
) -> Result<String, tower_sessions::session_store::Error> {
    let now = unix_now();
    let identity = Identity {
        user_id,
        roles,
        authenticated_at: now.saturating_sub(reauthenticated_ago.as_secs()),
        reauthenticated_at: now.saturating_sub(reauthenticated_ago.as_secs()),
    };
    let mut data = std::collections::HashMap::new();
    data.insert(
        IDENTITY_KEY.to_owned(),
        serde_json::to_value(identity)
            .map_err(|e| tower_sessions::session_store::Error::Encode(e.to_string()))?,
    );
    let mut record = tower_sessions::session::Record {
        id: tower_sessions::session::Id::default(),
        data,
        expiry_date: time::OffsetDateTime::now_utc()
            + time::Duration::seconds(ttl.as_secs() as i64),
    };
    store.create(&mut record).await?;
    Ok(record.id.to_string())
}

/// The session cookie's name for a configuration.
pub fn cookie_name(config: &crate::Config) -> &'static str {
    // `__Host-` pins the cookie to this host, path `/`, and https.
    if config.secure_cookies {
        "__Host-portcullis"
    } else {
        "portcullis"
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
