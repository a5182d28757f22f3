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
//!   idle timeout is the store expiry);
//! * a per-user **security stamp** ends sessions the user or an admin wants
//!   ended (see below);
//! * [`password`] hashes and verifies the passwords the app's sign-up,
//!   sign-in and re-authentication actions take (argon2id, the same work
//!   for an unknown account as for a wrong password).
//!
//! # Security stamps: sessions die with the account, the password, the role
//!
//! A session outlives whatever was true when it signed in: the password may
//! have changed, the user may have pressed "sign out everywhere", an admin
//! may have changed their role, or the account may be gone (and, where a
//! database reuses ids, its id may belong to the *next* person who signs
//! up). The framework cannot know any of that from the session alone, so the
//! app tells it through an [`AccountDirectory`] installed with
//! `Portcullis::accounts`:
//!
//! * [`Auth::login`] asks the directory for the user's current [`Stamp`] and
//!   stores it in the identity record (a user the directory does not know
//!   cannot be signed in);
//! * `load_viewer` — the only way the pipeline, the `Page` extractor and
//!   every other identity reader get a [`Viewer`] — asks again on **every
//!   request that loads a viewer** and compares. A different stamp, or no
//!   user at all, flushes the session (record deleted, cookie expired) and
//!   the request continues as anonymous: never as someone else;
//! * the app changes the stored stamp (any fresh value, [`Stamp::random`])
//!   whenever every existing session must end: password change, account
//!   deletion, "sign out everywhere", role changes. To keep the session that
//!   made the change, call [`Auth::login`] again after the change: it cycles
//!   the session id and records the new stamp.
//!
//! Cost: one primary-key lookup per request of a signed-in viewer (nothing
//! for anonymous requests, which never reach the directory). The session
//! record itself comes from the in-process session cache
//! ([`crate::store::SessionCache`]), not from the session store. The stamp
//! is deliberately not cached: apps change it with their own SQL (and
//! admins by hand), so only reading it keeps a password change or a
//! deleted account effective on the next request of every instance.
//!
//! A directory that fails (database down) fails the request with its error
//! (the app's classifier decides, e.g. 503): the session is neither trusted
//! nor destroyed on a failed check.
//!
//! Without a directory, development builds start with a warning and sessions
//! are only ended by sign-out, expiry and the absolute timeout; production
//! builds refuse to start (`BuildError::NoAccountDirectory`). An app that
//! signs nobody in installs [`NoAccounts`]. Why required: "a deleted user's
//! session is anonymous" is a security property the framework claims for
//! every app; an opt-in would make it true only for the apps that remembered.

pub use crate::viewer::{MaybeViewer, UserId, Viewer};

pub mod password;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::error::{ActionError, Rejection};

const IDENTITY_KEY: &str = "portcullis.identity";

/// The longest stamp accepted (it is stored in every session record).
pub const MAX_STAMP_LEN: usize = 128;

/// A user's security stamp: an opaque value the app stores per user and
/// replaces whenever all of that user's sessions must end. Only equality
/// matters; a random value ([`Stamp::random`]) is better than a counter
/// because restoring a database backup cannot make an old value current
/// again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp(String);

impl Stamp {
    /// Wraps a stored value. Values longer than [`MAX_STAMP_LEN`] bytes are
    /// refused by [`Auth::login`] (a stamp is copied into every session).
    pub fn new(value: impl Into<String>) -> Self {
        Stamp(value.into())
    }

    /// A fresh random stamp: 128 bits, hex.
    pub fn random() -> Self {
        Stamp(crate::hex(&rand::random::<[u8; 16]>()))
    }

    /// The stored value, to persist with the user.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where the framework reads a user's current [`Stamp`] (see the module
/// docs). Installed with `Portcullis::accounts`.
///
/// `Ok(None)` means the user does not exist (deleted): their sessions become
/// anonymous and their API tokens stop working. An error fails the request
/// (it is neither trusted nor signed out).
///
/// Called once per request of a signed-in viewer: make it a primary-key
/// lookup.
///
/// An app on SQLite with sqlx (the same on Postgres with `$1`):
///
/// ```
/// use portcullis::session::{AccountDirectory, Stamp, UserId};
/// use portcullis::{ActionError, BoxFuture};
///
/// /// The app's accounts, in its own database.
/// pub struct Accounts(pub sqlx::SqlitePool);
///
/// impl AccountDirectory for Accounts {
///     fn security_stamp(
///         &self,
///         user: UserId,
///     ) -> BoxFuture<'static, Result<Option<Stamp>, ActionError>> {
///         let pool = self.0.clone(); // a handle: the future must own what it uses
///         Box::pin(async move {
///             // One primary-key lookup; no row (a deleted user) is `None`.
///             let stamp: Option<String> =
///                 sqlx::query_scalar("SELECT security_stamp FROM users WHERE id = ?")
///                     .bind(user)
///                     .fetch_optional(&pool)
///                     .await?; // fails the request: neither trusted nor signed out
///             Ok(stamp.map(Stamp::new))
///         })
///     }
/// }
///
/// // The column it reads: set at sign-up, replaced with a fresh
/// // `Stamp::random()` whenever every session of the user must end
/// // (password change, "sign out everywhere", a role change). User ids are
/// // never reused (AUTOINCREMENT), so a deleted user's sessions never
/// // become the next user's.
/// const SCHEMA: &str = "CREATE TABLE users (
///     id INTEGER PRIMARY KEY AUTOINCREMENT,
///     email TEXT NOT NULL UNIQUE,
///     password_hash TEXT NOT NULL,
///     security_stamp TEXT NOT NULL
/// )";
///
/// async fn sign_up(pool: &sqlx::SqlitePool, email: &str, hash: &str) -> Result<(), sqlx::Error> {
///     sqlx::query("INSERT INTO users (email, password_hash, security_stamp) VALUES (?, ?, ?)")
///         .bind(email)
///         .bind(hash)
///         .bind(Stamp::random().as_str())
///         .execute(pool)
///         .await?;
///     Ok(())
/// }
///
/// // Installed on the app builder:
/// // Portcullis::new(config, state).accounts(Accounts(pool.clone()))
/// # let _ = (SCHEMA, sign_up);
/// ```
pub trait AccountDirectory: Send + Sync + 'static {
    /// The current stamp of `user`, `None` if there is no such user.
    fn security_stamp(
        &self,
        user: UserId,
    ) -> BoxFuture<'static, Result<Option<Stamp>, ActionError>>;
}

/// The directory of an app that signs nobody in: every user is unknown, so
/// [`Auth::login`] fails and any identity found in a session is anonymous.
pub struct NoAccounts;

impl AccountDirectory for NoAccounts {
    fn security_stamp(&self, _: UserId) -> BoxFuture<'static, Result<Option<Stamp>, ActionError>> {
        Box::pin(async { Ok(None) })
    }
}

/// The identity record, private to this module.
#[derive(Serialize, Deserialize)]
struct Identity {
    user_id: UserId,
    roles: Vec<String>,
    authenticated_at: u64,
    reauthenticated_at: u64,
    /// The user's stamp at sign-in; `None` when the app has no directory
    /// (records written before stamps existed deserialize as `None` too,
    /// and are ended by any directory). Written only by [`Auth::login`] (and
    /// the server-side [`issue`]); at most [`MAX_STAMP_LEN`] bytes per
    /// session record; removed with the record (sign-out, expiry, flush on
    /// mismatch). It describes its own user only: no request can change
    /// another user's stamp or another session's copy.
    #[serde(default)]
    stamp: Option<Stamp>,
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

/// A store that is down or missed its deadline is `503
/// session_store_unavailable`; a record that does not decode is a 500
/// ([`crate::store::session_rejection`]).
fn store_error(e: tower_sessions::session::Error) -> Rejection {
    crate::store::session_rejection(e)
}

/// Reads the viewer from a session, enforcing the absolute timeout and, when
/// the app has an [`AccountDirectory`], the security stamp (one lookup).
pub(crate) async fn load_viewer(
    session: &Session,
    absolute_timeout: Duration,
    accounts: Option<&dyn AccountDirectory>,
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
    if let Some(accounts) = accounts {
        let current = accounts
            .security_stamp(identity.user_id)
            .await
            .map_err(ActionError::into_rejection)?;
        let valid = matches!((&current, &identity.stamp), (Some(now), Some(then)) if now == then);
        if !valid {
            tracing::debug!(
                user = identity.user_id,
                gone = current.is_none(),
                "session ended: security stamp changed or user gone"
            );
            session.flush().await.map_err(store_error)?;
            return Ok(None);
        }
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
///
/// `stamp` is the user's current [`Stamp`] as the app's directory returns it
/// (`None` for an app without a directory); a session issued with another
/// stamp is anonymous on its first request.
pub async fn issue<Store: tower_sessions::SessionStore>(
    store: &Store,
    user_id: UserId,
    roles: Vec<String>,
    stamp: Option<Stamp>,
    ttl: Duration,
) -> Result<String, tower_sessions::session_store::Error> {
    issue_with(store, user_id, roles, stamp, ttl, Duration::ZERO).await
}

/// Like [`issue`], with the last password confirmation `reauthenticated_ago`
/// in the past (tests of `recent(..)` policies use this to make a session
/// whose step-up has expired).
pub async fn issue_with<Store: tower_sessions::SessionStore>(
    store: &Store,
    user_id: UserId,
    roles: Vec<String>,
    stamp: Option<Stamp>,
    ttl: Duration,
    reauthenticated_ago: Duration,
) -> Result<String, tower_sessions::session_store::Error> {
    if stamp.as_ref().is_some_and(|s| s.0.len() > MAX_STAMP_LEN) {
        return Err(tower_sessions::session_store::Error::Encode(format!(
            "security stamp longer than {MAX_STAMP_LEN} bytes"
        )));
    }
    let now = unix_now();
    let identity = Identity {
        user_id,
        roles,
        authenticated_at: now.saturating_sub(reauthenticated_ago.as_secs()),
        reauthenticated_at: now.saturating_sub(reauthenticated_ago.as_secs()),
        stamp,
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
    crate::wire::cookie::session(config.secure_cookies)
}

/// Signs viewers in and out. Handed to handlers through [`crate::Cx::auth`];
/// verifying the password is the app's job, recording the result is ours.
#[derive(Clone)]
pub struct Auth {
    session: Session,
    accounts: Option<Arc<dyn AccountDirectory>>,
}

impl Auth {
    pub(crate) fn new(session: Session, accounts: Option<Arc<dyn AccountDirectory>>) -> Self {
        Auth { session, accounts }
    }

    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// Records a successful sign-in: new session id, then the identity with
    /// the user's current security stamp (read from the app's
    /// [`AccountDirectory`]; a user it does not know is refused).
    ///
    /// Also the way to keep *this* session after changing the user's stamp
    /// (password change, "sign out everywhere"): change the stamp, then call
    /// `login` again; every other session of the user is then anonymous.
    pub async fn login(&self, user_id: UserId, roles: Vec<String>) -> Result<(), Rejection> {
        let stamp = match &self.accounts {
            None => None,
            Some(accounts) => match accounts
                .security_stamp(user_id)
                .await
                .map_err(ActionError::into_rejection)?
            {
                Some(stamp) if stamp.0.len() <= MAX_STAMP_LEN => Some(stamp),
                Some(_) => {
                    return Err(Rejection::internal(&format_args!(
                        "security stamp of user {user_id} is longer than {MAX_STAMP_LEN} bytes"
                    )));
                }
                None => {
                    return Err(Rejection::internal(&format_args!(
                        "cannot sign in user {user_id}: the account directory does not know them"
                    )));
                }
            },
        };
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
                    stamp,
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

/// The app's [`crate::session::AccountDirectory`] with a deadline on each
/// lookup (one per signed-in request, usually a database query): a miss is
/// `503 session_store_unavailable` (the identity could not be checked; the
/// request is neither trusted nor signed out). Errors of the directory
/// itself come back already mapped by the app's classifier (so every
/// caller — the pipeline, `Page`, the token API, `Auth::login` — answers
/// a database outage the same way).
pub(crate) struct DirectoryDeadline {
    pub(crate) inner: std::sync::Arc<dyn crate::session::AccountDirectory>,
    pub(crate) after: Duration,
    pub(crate) classifier: crate::error::Classifier,
}

impl crate::session::AccountDirectory for DirectoryDeadline {
    fn security_stamp(
        &self,
        user: crate::viewer::UserId,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Option<crate::session::Stamp>, crate::error::ActionError>,
    > {
        let (call, after) = (self.inner.security_stamp(user), self.after);
        let classifier = self.classifier;
        Box::pin(async move {
            match tokio::time::timeout(after, call).await {
                Ok(r) => {
                    r.map_err(|e| crate::error::ActionError::Rejected(e.classified(classifier)))
                }
                Err(_) => {
                    let r = crate::store::session_unavailable();
                    tracing::debug!(digest = %r.digest, ?after, "account directory missed its deadline; 503");
                    Err(crate::error::ActionError::Rejected(r))
                }
            }
        })
    }
}
