//! Token-authenticated JSON APIs for scripts and mobile clients.
//!
//! A personal access token is a bearer credential the client must attach on
//! purpose (`Authorization: Bearer …`); browsers never attach it by
//! themselves, so API routes are not exposed to cross-site request forgery
//! and are mounted outside the origin guard — that is why they, like
//! webhooks, are listed in the manifest's `crossOriginRoutes`. The
//! [`Bearer`] extractor never reads cookies.
//!
//! * The app stores tokens *hashed* ([`hash_token`]) and implements
//!   [`TokenStore`]; a token is shown once, at creation.
//! * [`Bearer`] yields the same [`Viewer`] the session layer would, so the
//!   same viewer-scoped DAL serves both; it also enforces the API's rate
//!   limit (per user, same limiter and backends as actions).
//! * A token dies with its user: when the app has an account directory
//!   (`Portcullis::accounts`), [`Bearer`] also asks it whether the token's
//!   user still exists (one primary-key lookup per API request) and refuses
//!   a token whose user is gone, even if the app forgot to delete it. Tokens
//!   are *not* bound to the security stamp: a password change ends them only
//!   if the app revokes them (the demo offers that as a checkbox).
//! * Scopes: `read` tokens are refused (403) by handlers that call
//!   [`Bearer::require_write`].
//! * CORS is configured through tower-http for the API router only, and only
//!   for the origins the app lists.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::request::Parts;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ActionError, Classifier, ErrorCode, Rejection};
use crate::ratelimit::{KeyRequest, Limit};
use crate::runtime::Runtime;
use crate::viewer::{UserId, Viewer};

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read-only: refused (403) by handlers that call
    /// [`Bearer::require_write`].
    Read,
    /// Read and write.
    Write,
}

/// A stored token, as the app's store returns it.
#[derive(Clone, Debug)]
pub struct TokenGrant {
    /// The user the token acts as.
    pub user_id: UserId,
    /// What the token allows.
    pub scope: Scope,
    /// Unix seconds.
    pub expires_at: i64,
    /// Revoked tokens are refused like unknown ones (401).
    pub revoked: bool,
}

/// Looks tokens up by hash.
pub trait TokenStore: Send + Sync + 'static {
    /// The grant stored under `token_hash` ([`hash_token`] of the presented
    /// token), or `None`. An error is answered like an action's failure
    /// (the app's classifier applies), never as a valid token.
    fn lookup(
        &self,
        token_hash: String,
    ) -> BoxFuture<'static, Result<Option<TokenGrant>, ActionError>>;
}

/// A new random token (`pcat_` + 256 bits, base64url).
pub fn new_token() -> String {
    use base64::Engine;
    format!(
        "pcat_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

/// The hash under which a token is stored and looked up.
pub fn hash_token(token: &str) -> String {
    crate::hex(&Sha256::digest(token.as_bytes()))
}

/// The API's settings: a request extension of the API router only
/// ([`crate::Portcullis::api`]), so a `Bearer` outside it fails closed.
pub(crate) struct ApiConfig {
    pub store: Arc<dyn TokenStore>,
    pub limit: Limit,
}

/// An authenticated API caller.
pub struct Bearer {
    viewer: Viewer,
    scope: Scope,
    /// The app's error classifier, for [`Bearer::failed`].
    classifier: Classifier,
}

impl Bearer {
    /// The token's user, as the session layer would yield them (the same
    /// viewer-scoped data access serves both).
    pub fn viewer(&self) -> &Viewer {
        &self.viewer
    }

    /// What the presented token allows.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The JSON error for a failed data call: what an action would answer
    /// (the app's classifier applies, e.g. a database outage is 503
    /// `database_unavailable`; anything else is 500 with a logged digest).
    pub fn failed(&self, error: impl Into<ActionError>) -> Response {
        self::error(error.into().classified(self.classifier))
    }

    /// 403 `forbidden` for a read-only token.
    pub fn require_write(&self) -> Result<(), Response> {
        match self.scope {
            Scope::Write => Ok(()),
            Scope::Read => Err(error(Rejection::with_message(
                ErrorCode::Forbidden,
                "This token is read-only.",
            ))),
        }
    }
}

/// A JSON error response in the standard envelope.
pub fn error(rejection: Rejection) -> Response {
    (
        rejection.status(),
        [(http::header::CONTENT_TYPE, "application/json")],
        rejection.to_json(),
    )
        .into_response()
}

fn unauthenticated(why: &str) -> Response {
    let mut r = error(Rejection::with_message(ErrorCode::Unauthenticated, why));
    r.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        http::HeaderValue::from_static("Bearer"),
    );
    r
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let shared = parts
            .extensions
            .get::<Arc<Runtime>>()
            .cloned()
            .ok_or_else(|| error(Rejection::internal(&"Bearer used outside a portcullis app")))?;
        let api = parts
            .extensions
            .get::<Arc<ApiConfig>>()
            .cloned()
            .ok_or_else(|| error(Rejection::internal(&"Bearer used without Portcullis::api")))?;
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 200)
            .ok_or_else(|| {
                unauthenticated("Send a personal access token as `Authorization: Bearer <token>`.")
            })?;
        let grant = api
            .store
            .lookup(hash_token(token))
            .await
            .map_err(|e| error(e.classified(shared.classifier)))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        let grant = match grant {
            Some(g) if !g.revoked && g.expires_at > now => g,
            // Unknown, revoked and expired look the same.
            _ => return Err(unauthenticated("The token is invalid, expired or revoked.")),
        };
        if let Some(accounts) = &shared.accounts {
            let exists = accounts
                .security_stamp(grant.user_id)
                .await
                .map_err(|e| error(e.into_rejection()))?
                .is_some();
            if !exists {
                // Same answer as a revoked token.
                return Err(unauthenticated("The token is invalid, expired or revoked."));
            }
        }
        let viewer = Viewer::new(
            grant.user_id,
            Arc::from(Vec::<String>::new()),
            UNIX_EPOCH,
            UNIX_EPOCH,
        );
        // The API's rate limit, per user, on the actions' limiter.
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        let limits = std::slice::from_ref(&api.limit);
        let req = KeyRequest {
            ip: shared.config.proxies.client_ip(peer, &parts.headers),
            session: None,
            viewer: Some(&viewer),
            headers: &parts.headers,
        };
        let keys = crate::ratelimit::request_keys("api", "r", limits, &req).map_err(error)?;
        shared
            .limiter
            .enforce(limits, keys, false)
            .await
            .map_err(|r| {
                let mut resp = error(r.clone());
                for (k, v) in r.headers {
                    resp.headers_mut().append(k, v);
                }
                resp
            })?;
        Ok(Bearer {
            viewer,
            scope: grant.scope,
            classifier: shared.classifier,
        })
    }
}
