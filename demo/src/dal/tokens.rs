//! Personal access tokens: the viewer's own, by hash. Looking a token up is
//! the one query without a viewer — it is how the API finds one.

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;
use portcullis::ActionError;
use portcullis::routes::api::{Scope, TokenGrant, TokenStore};

use super::{Dal, DalResult, Viewer, now, sql, touched_one};

sql::record! {
    #[derive(Clone)]
    pub struct TokenRow {
        pub id: i64,
        pub name: String,
        pub scope: String,
        pub expires_at: i64,
        pub revoked_at: Option<i64>,
    }
}

pub struct Tokens<'a>(pub(super) &'a Dal);

impl Tokens<'_> {
    pub async fn create(
        &self,
        viewer: &Viewer,
        name: &str,
        hash: &str,
        scope: Scope,
        days: i64,
    ) -> DalResult<(i64, i64)> {
        let t = now();
        let expires = t + days * 86_400;
        let scope = match scope {
            Scope::Read => "read",
            Scope::Write => "write",
        };
        let (id,): (i64,) = sql::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, scope, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(viewer.id())
        .bind(name)
        .bind(hash)
        .bind(scope)
        .bind(t)
        .bind(expires)
        .fetch_one(&self.0.pool)
        .await?;
        Ok((id, expires))
    }

    pub async fn mine(&self, viewer: &Viewer) -> DalResult<Vec<TokenRow>> {
        Ok(sql::query(
            "SELECT id, name, scope, expires_at, revoked_at FROM api_tokens WHERE user_id = $1 ORDER BY id DESC",
        )
        .bind(viewer.id())
        .fetch_all(&self.0.pool)
        .await?)
    }

    /// Revokes one of the viewer's tokens; another user's id is a 404.
    pub async fn revoke(&self, viewer: &Viewer, id: i64) -> DalResult<()> {
        let done = sql::query(
            "UPDATE api_tokens SET revoked_at = $3 WHERE id = $2 AND user_id = $1 AND revoked_at IS NULL",
        )
        .bind(viewer.id())
        .bind(id)
        .bind(now())
        .execute(&self.0.pool)
        .await?;
        touched_one(done)?;
        Ok(())
    }
}

/// The API's token lookup over the DAL.
pub struct DalTokens(pub Dal);

impl TokenStore for DalTokens {
    fn lookup(&self, token_hash: String) -> BoxFuture<Result<Option<TokenGrant>, ActionError>> {
        let pool = self.0.pool.clone();
        Box::pin(async move {
            let row: Option<(i64, String, i64, Option<i64>)> = sql::query(
                "SELECT user_id, scope, expires_at, revoked_at FROM api_tokens WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(&pool)
            .await?;
            Ok(
                row.map(|(user_id, scope, expires_at, revoked_at)| TokenGrant {
                    user_id,
                    scope: if scope == "write" {
                        Scope::Write
                    } else {
                        Scope::Read
                    },
                    expires_at,
                    revoked: revoked_at.is_some(),
                }),
            )
        })
    }
}
