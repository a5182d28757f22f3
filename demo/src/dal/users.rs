//! Accounts. Sign-up and sign-in are the only queries that run without a
//! viewer (there is none yet); everything else is the viewer's own row.

use portcullis::{ActionError, Secret};

use super::{Dal, DalResult, Viewer, not_found, now};

/// A user row. Not a DTO, and its secrets are `Secret`s: if one were ever put
/// into a response it would refuse to serialize and fail the response closed.
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub password_hash: Secret<String>,
    pub api_key: Option<Secret<String>>,
}

#[derive(sqlx::FromRow)]
struct RawUser {
    id: i64,
    email: String,
    display_name: String,
    password_hash: String,
    api_key: Option<String>,
}

impl From<RawUser> for UserRow {
    fn from(r: RawUser) -> Self {
        UserRow {
            id: r.id,
            email: r.email,
            display_name: r.display_name,
            password_hash: Secret::new(r.password_hash),
            api_key: r.api_key.map(Secret::new),
        }
    }
}

// A stored third-party key is a value the *user* chose, so it is not
// registered with the process-wide taint scanner: a user could save a string
// every page contains and make every response fail for everyone. It is a
// `Secret<String>` from the row on (refuses to serialize), never shown again
// after saving, and the DTO only says whether one is configured.

pub struct Users<'a>(pub(super) &'a Dal);

impl Users<'_> {
    /// Creates a user and their personal team (they are its admin), atomically.
    pub async fn sign_up(
        &self,
        email: &str,
        display_name: &str,
        password_hash: &str,
    ) -> DalResult<i64> {
        let mut tx = self.0.pool.begin().await?;
        let taken: Option<(i64,)> = sqlx::query_as("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(ActionError::field("email", "is already registered"));
        }
        let t = now();
        let (user_id,): (i64,) = sqlx::query_as(
            "INSERT INTO users (email, display_name, password_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(email)
        .bind(display_name)
        .bind(password_hash)
        .bind(t)
        .fetch_one(&mut *tx)
        .await?;
        let (team_id,): (i64,) = sqlx::query_as(
            "INSERT INTO teams (name, owner_id, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(format!("{display_name}'s team"))
        .bind(user_id)
        .bind(t)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, 'admin')")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(user_id)
    }

    /// The row for a sign-in attempt (no viewer yet).
    pub async fn by_email(&self, email: &str) -> DalResult<Option<UserRow>> {
        let row: Option<RawUser> = sqlx::query_as(
            "SELECT id, email, display_name, password_hash, api_key FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.0.pool)
        .await?;
        Ok(row.map(UserRow::from))
    }

    /// The viewer's own row.
    pub async fn me(&self, viewer: &Viewer) -> DalResult<UserRow> {
        let row: Option<RawUser> = sqlx::query_as(
            "SELECT id, email, display_name, password_hash, api_key FROM users WHERE id = $1",
        )
        .bind(viewer.id())
        .fetch_optional(&self.0.pool)
        .await?;
        not_found(row.map(UserRow::from))
    }

    pub async fn update_profile(&self, viewer: &Viewer, display_name: &str) -> DalResult<()> {
        sqlx::query("UPDATE users SET display_name = $2 WHERE id = $1")
            .bind(viewer.id())
            .bind(display_name)
            .execute(&self.0.pool)
            .await?;
        Ok(())
    }

    pub async fn set_api_key(&self, viewer: &Viewer, key: Option<&str>) -> DalResult<()> {
        sqlx::query("UPDATE users SET api_key = $2 WHERE id = $1")
            .bind(viewer.id())
            .bind(key)
            .execute(&self.0.pool)
            .await?;
        Ok(())
    }

    pub async fn set_password_hash(&self, viewer: &Viewer, hash: &str) -> DalResult<()> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(viewer.id())
            .bind(hash)
            .execute(&self.0.pool)
            .await?;
        Ok(())
    }

    /// Deletes the viewer's account; teams they own go with it (cascade).
    pub async fn delete(&self, viewer: &Viewer) -> DalResult<()> {
        let mut tx = self.0.pool.begin().await?;
        sqlx::query("DELETE FROM teams WHERE owner_id = $1")
            .bind(viewer.id())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(viewer.id())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
