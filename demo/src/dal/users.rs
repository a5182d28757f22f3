//! Accounts. Sign-up and sign-in are the only queries that run without a
//! viewer (there is none yet); everything else is the viewer's own row.

use portcullis::{ActionError, Secret};

use super::{Dal, DalResult, Viewer, not_found, now, sql, touched_one};

/// A user row. Not a DTO, and its secrets are `Secret`s: if one were ever put
/// into a response it would refuse to serialize and fail the response closed.
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub password_hash: Secret<String>,
    pub api_key: Option<Secret<String>>,
}

sql::record! {
    struct RawUser {
        id: i64,
        email: String,
        display_name: String,
        password_hash: String,
        api_key: Option<String>,
    }
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

/// What an account deletion took with it (see [`Users::delete`]).
pub struct Deleted {
    /// Store keys of the attachment files whose rows went with the account.
    pub attachment_files: Vec<String>,
    pub teams: Vec<i64>,
    pub projects: Vec<i64>,
    pub commented_projects: Vec<i64>,
}

/// The framework's view of accounts: the current security stamp of a user,
/// `None` once the account is deleted. Installed with
/// `Portcullis::accounts`; see `portcullis::session`.
pub struct Accounts(pub Dal);

impl portcullis::AccountDirectory for Accounts {
    fn security_stamp(
        &self,
        user: i64,
    ) -> portcullis::BoxFuture<'static, Result<Option<portcullis::Stamp>, ActionError>> {
        let dal = self.0.clone();
        Box::pin(async move {
            Ok(dal
                .users()
                .security_stamp(user)
                .await?
                .map(portcullis::Stamp::new))
        })
    }
}

impl Users<'_> {
    /// Creates a user and their personal team (they are its admin),
    /// atomically. `None` when the address is already registered: the caller
    /// must answer exactly as for a new account (no enumeration), so this is
    /// not an error. Ids are never reused (SQLite `AUTOINCREMENT`, Postgres
    /// identity), so a new account never inherits a deleted one's sessions.
    pub async fn sign_up(
        &self,
        email: &str,
        display_name: &str,
        password_hash: &str,
    ) -> DalResult<Option<i64>> {
        let mut tx = self.0.pool.begin().await?;
        let t = now();
        // One statement decides: a concurrent sign-up of the same address
        // inserts nothing here instead of failing on the UNIQUE constraint.
        let created: Option<(i64,)> = sql::query(
            "INSERT INTO users (email, display_name, password_hash, created_at, security_stamp) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING RETURNING id",
        )
        .bind(email)
        .bind(display_name)
        .bind(password_hash)
        .bind(t)
        .bind(portcullis::Stamp::random().as_str())
        .fetch_optional(&mut tx)
        .await?;
        let Some((user_id,)) = created else {
            return Ok(None);
        };
        let (team_id,): (i64,) = sql::query(
            "INSERT INTO teams (name, owner_id, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(format!("{display_name}'s team"))
        .bind(user_id)
        .bind(t)
        .fetch_one(&mut tx)
        .await?;
        sql::query("INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, 'admin')")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(Some(user_id))
    }

    /// The user's current security stamp, `None` if the user is gone. The
    /// framework calls this (through [`Accounts`]) on every request of a
    /// signed-in viewer: one primary-key lookup.
    pub async fn security_stamp(&self, user_id: i64) -> DalResult<Option<String>> {
        let row: Option<(String,)> = sql::query("SELECT security_stamp FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&self.0.pool)
            .await?;
        Ok(row.map(|(s,)| s))
    }

    /// Ends every session of the viewer (a fresh stamp). The caller keeps its
    /// own session with `cx.auth().login(..)` afterwards, if it wants to.
    pub async fn sign_out_everywhere(&self, viewer: &Viewer) -> DalResult<()> {
        let done = sql::query("UPDATE users SET security_stamp = $2 WHERE id = $1")
            .bind(viewer.id())
            .bind(portcullis::Stamp::random().as_str())
            .execute(&self.0.pool)
            .await?;
        touched_one(done)
    }
    /// The row for a sign-in attempt (no viewer yet).
    pub async fn by_email(&self, email: &str) -> DalResult<Option<UserRow>> {
        let row: Option<RawUser> = sql::query(
            "SELECT id, email, display_name, password_hash, api_key FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.0.pool)
        .await?;
        Ok(row.map(UserRow::from))
    }

    /// The viewer's own row.
    pub async fn me(&self, viewer: &Viewer) -> DalResult<UserRow> {
        let row: Option<RawUser> = sql::query(
            "SELECT id, email, display_name, password_hash, api_key FROM users WHERE id = $1",
        )
        .bind(viewer.id())
        .fetch_optional(&self.0.pool)
        .await?;
        not_found(row.map(UserRow::from))
    }

    pub async fn update_profile(&self, viewer: &Viewer, display_name: &str) -> DalResult<()> {
        sql::query("UPDATE users SET display_name = $2 WHERE id = $1")
            .bind(viewer.id())
            .bind(display_name)
            .execute(&self.0.pool)
            .await?;
        Ok(())
    }

    pub async fn set_api_key(&self, viewer: &Viewer, key: Option<&str>) -> DalResult<()> {
        sql::query("UPDATE users SET api_key = $2 WHERE id = $1")
            .bind(viewer.id())
            .bind(key)
            .execute(&self.0.pool)
            .await?;
        Ok(())
    }

    /// Sets a new password hash and a fresh security stamp in one statement
    /// (every existing session ends), and with `revoke_tokens` revokes every
    /// live API token of the viewer in the same transaction.
    pub async fn set_password_hash(
        &self,
        viewer: &Viewer,
        hash: &str,
        revoke_tokens: bool,
    ) -> DalResult<()> {
        let mut tx = self.0.pool.begin().await?;
        let done =
            sql::query("UPDATE users SET password_hash = $2, security_stamp = $3 WHERE id = $1")
                .bind(viewer.id())
                .bind(hash)
                .bind(portcullis::Stamp::random().as_str())
                .execute(&mut tx)
                .await?;
        touched_one(done)?;
        if revoke_tokens {
            sql::query(
                "UPDATE api_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind(viewer.id())
            .bind(now())
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the viewer's account: the teams they own (and those teams'
    /// projects, memberships, invites) go with it, and so do their
    /// memberships, comments and API tokens (ON DELETE CASCADE). Their
    /// sessions end because the framework finds no stamp for the id, and the
    /// id is never handed out again.
    ///
    /// Returns what other viewers may have cached, for the caller to expire:
    /// the teams that disappeared (their project lists and rows) and the
    /// projects whose comment threads lose the user's comments.
    pub async fn delete(&self, viewer: &Viewer) -> DalResult<Deleted> {
        let mut tx = self.0.pool.begin().await?;
        let owned_teams: Vec<(i64,)> = sql::query("SELECT id FROM teams WHERE owner_id = $1")
            .bind(viewer.id())
            .fetch_all(&mut tx)
            .await?;
        let projects: Vec<(i64,)> = sql::query(
            "SELECT id FROM projects WHERE team_id IN (SELECT id FROM teams WHERE owner_id = $1)",
        )
        .bind(viewer.id())
        .fetch_all(&mut tx)
        .await?;
        // Attachment rows that go with the account (its own uploads, and
        // every attachment on its teams' projects): their files are the
        // caller's to remove once this commits.
        let files: Vec<(String,)> = sql::query(
            "SELECT file_key FROM attachments WHERE uploader_id = $1 OR project_id IN \
             (SELECT id FROM projects WHERE team_id IN (SELECT id FROM teams WHERE owner_id = $1))",
        )
        .bind(viewer.id())
        .fetch_all(&mut tx)
        .await?;
        let commented: Vec<(i64,)> =
            sql::query("SELECT DISTINCT project_id FROM comments WHERE author_id = $1")
                .bind(viewer.id())
                .fetch_all(&mut tx)
                .await?;
        sql::query("DELETE FROM teams WHERE owner_id = $1")
            .bind(viewer.id())
            .execute(&mut tx)
            .await?;
        let done = sql::query("DELETE FROM users WHERE id = $1")
            .bind(viewer.id())
            .execute(&mut tx)
            .await?;
        touched_one(done)?;
        tx.commit().await?;
        Ok(Deleted {
            teams: owned_teams.into_iter().map(|(t,)| t).collect(),
            projects: projects.into_iter().map(|(p,)| p).collect(),
            commented_projects: commented.into_iter().map(|(p,)| p).collect(),
            attachment_files: files.into_iter().map(|(k,)| k).collect(),
        })
    }
}
