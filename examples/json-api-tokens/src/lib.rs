//! A JSON API for scripts and mobile apps, authenticated by personal access
//! tokens (`portcullis::routes::api`): `GET /api/notes` and `POST /api/notes`.
//!
//! The app stores only each token's hash and answers every request as the
//! token's user, through the same `Viewer` a signed-in page gets. A missing,
//! unknown, expired or revoked token, or one whose user is gone, is 401; a
//! read-only token cannot write (403); each user has a rate limit. The API
//! router sits outside the origin guard (a browser never attaches a bearer
//! token on its own) and allows no cross-origin browser calls unless it
//! lists origins.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use portcullis::axum::extract::{State, rejection::JsonRejection};
use portcullis::axum::http::StatusCode;
use portcullis::axum::response::{IntoResponse, Response};
use portcullis::axum::{Json, Router, routing::get};
use portcullis::routes::api::{
    Bearer, Scope, TokenGrant, TokenStore, error, hash_token, new_token,
};
use portcullis::{
    AccountDirectory, ActionError, App, BuildError, Config, ErrorCode, Portcullis, Rejection,
    Stamp, UserId, Viewer, per_user,
};
use serde::Deserialize;

/// Notes one user may keep: the bound on what one token holder can store.
pub const MAX_NOTES: usize = 100;

/// The app's data, in memory for the example (a real app keeps it in its
/// database; the demo's `dal/tokens.rs` does). Written only by this file's
/// methods: users and tokens by the operator (`main.rs`), notes by token
/// holders, at most [`MAX_NOTES`] each.
#[derive(Clone, Default)]
pub struct Db(Arc<Mutex<Data>>);

#[derive(Default)]
struct Data {
    users: HashSet<UserId>,
    /// Token hash → grant: the token itself is shown once and never stored.
    tokens: HashMap<String, TokenGrant>,
    notes: HashMap<UserId, Vec<String>>,
}

impl Db {
    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a user.
    pub fn add_user(&self, user: UserId) {
        self.data().users.insert(user);
    }

    /// Deletes a user and their notes. Their tokens stay behind on purpose
    /// here: the framework refuses them anyway, because the account
    /// directory no longer knows the user.
    pub fn delete_user(&self, user: UserId) {
        let mut data = self.data();
        data.users.remove(&user);
        data.notes.remove(&user);
    }

    /// A new token for `user`, valid until `expires_at` (Unix seconds).
    /// Returns the token: show it once; only its hash is kept.
    pub fn issue_token(&self, user: UserId, scope: Scope, expires_at: i64) -> String {
        let token = new_token();
        let grant = TokenGrant {
            user_id: user,
            scope,
            expires_at,
            revoked: false,
        };
        self.data().tokens.insert(hash_token(&token), grant);
        token
    }

    /// Revokes `token`: from now on it is refused like an unknown one.
    pub fn revoke_token(&self, token: &str) {
        if let Some(grant) = self.data().tokens.get_mut(&hash_token(token)) {
            grant.revoked = true;
        }
    }

    /// `viewer`'s notes.
    pub fn notes(&self, viewer: &Viewer) -> Vec<String> {
        self.data()
            .notes
            .get(&viewer.id())
            .cloned()
            .unwrap_or_default()
    }
}

impl TokenStore for Db {
    fn lookup(
        &self,
        token_hash: String,
    ) -> BoxFuture<'static, Result<Option<TokenGrant>, ActionError>> {
        let grant = self.data().tokens.get(&token_hash).cloned();
        Box::pin(async move { Ok(grant) })
    }
}

/// The account directory: whether a user exists (and their security stamp,
/// which only session sign-ins use; this app has none).
impl AccountDirectory for Db {
    fn security_stamp(
        &self,
        user: UserId,
    ) -> BoxFuture<'static, Result<Option<Stamp>, ActionError>> {
        let exists = self.data().users.contains(&user);
        Box::pin(async move { Ok(exists.then(|| Stamp::new("no-sessions"))) })
    }
}

async fn list(State(db): State<Db>, bearer: Bearer) -> Json<Vec<String>> {
    Json(db.notes(bearer.viewer()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNote {
    text: String,
}

async fn add(
    State(db): State<Db>,
    bearer: Bearer,
    body: Result<Json<NewNote>, JsonRejection>,
) -> Response {
    if let Err(refusal) = bearer.require_write() {
        return refusal;
    }
    let Ok(Json(note)) = body else {
        let why = "Send {\"text\": \"…\"} and nothing else.";
        return error(Rejection::with_message(ErrorCode::InvalidInput, why));
    };
    let text = note.text.trim();
    if !(1..=500).contains(&text.chars().count()) {
        return error(ActionError::field("text", "must be 1 to 500 characters").into_rejection());
    }
    let mut data = db.data();
    let notes = data.notes.entry(bearer.viewer().id()).or_default();
    if notes.len() >= MAX_NOTES {
        return error(ActionError::form("You have too many notes.").into_rejection());
    }
    notes.push(text.to_owned());
    (StatusCode::CREATED, Json(notes.clone())).into_response()
}

/// The app: the API router, its token store and per-user limit, and the
/// account directory that makes a deleted user's tokens worthless.
pub fn app(config: Config, db: Db) -> Result<App, BuildError> {
    let api = Router::new()
        .route("/api/notes", get(list).post(add))
        .with_state(db.clone());
    Portcullis::new(config, ())
        // 60 requests per user per minute; no browser origin may call it.
        .api(api, db.clone(), per_user(60).per_minute(), &[])
        .accounts(db)
        .build(portcullis::tower_sessions::MemoryStore::default())
}
