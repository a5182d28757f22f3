//! The data-access layer: the only code that issues SQL. Notes are read and
//! written through the [`Viewer`], in the SQL itself (`owner_id = viewer`),
//! so a handler cannot reach another user's rows. Row types are not `Dto`s:
//! no handler can return one.

use portcullis::{AccountDirectory, ActionError, BoxFuture, Secret, Stamp, UserId, Viewer};
use sqlx::SqlitePool;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: old sessions never match a new user
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    security_stamp TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message TEXT NOT NULL
);
";

type DalResult<T> = Result<T, ActionError>;

/// The DAL handle, cheap to clone.
#[derive(Clone)]
pub struct Dal(pub SqlitePool);

pub struct UserRow {
    pub id: UserId,
    pub display_name: String,
    pub password_hash: Secret<String>,
}

pub struct NoteRow {
    pub id: i64,
    pub body: String,
}

impl Dal {
    /// A new account; `None` if the address is taken (the caller answers the
    /// same either way, so sign-up does not reveal who is registered).
    pub async fn sign_up(&self, email: &str, name: &str, hash: &str) -> DalResult<Option<UserId>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO users (email, display_name, password_hash, security_stamp) \
             VALUES (?, ?, ?, ?) ON CONFLICT (email) DO NOTHING RETURNING id",
        )
        .bind(email)
        .bind(name)
        .bind(hash)
        .bind(Stamp::random().as_str())
        .fetch_optional(&self.0)
        .await?;
        Ok(row.map(|(id,)| id))
    }

    /// The account for a sign-in attempt (there is no viewer yet).
    pub async fn by_email(&self, email: &str) -> DalResult<Option<UserRow>> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT id, display_name, password_hash FROM users WHERE email = ?")
                .bind(email)
                .fetch_optional(&self.0)
                .await?;
        Ok(row.map(|(id, display_name, hash)| UserRow {
            id,
            display_name,
            password_hash: Secret::new(hash),
        }))
    }

    pub async fn display_name(&self, viewer: &Viewer) -> DalResult<String> {
        let (name,): (String,) = sqlx::query_as("SELECT display_name FROM users WHERE id = ?")
            .bind(viewer.id())
            .fetch_optional(&self.0)
            .await?
            .ok_or(ActionError::NotFound)?;
        Ok(name)
    }

    pub async fn add_note(&self, viewer: &Viewer, body: &str) -> DalResult<NoteRow> {
        let (id,): (i64,) =
            sqlx::query_as("INSERT INTO notes (owner_id, body) VALUES (?, ?) RETURNING id")
                .bind(viewer.id())
                .bind(body)
                .fetch_one(&self.0)
                .await?;
        Ok(NoteRow {
            id,
            body: body.to_owned(),
        })
    }

    /// The viewer's notes, newest first.
    pub async fn notes(&self, viewer: &Viewer) -> DalResult<Vec<NoteRow>> {
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, body FROM notes WHERE owner_id = ? ORDER BY id DESC LIMIT 100",
        )
        .bind(viewer.id())
        .fetch_all(&self.0)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, body)| NoteRow { id, body })
            .collect())
    }

    /// Feedback from anyone; bounded by the action's rate limits.
    pub async fn add_feedback(&self, message: &str) -> DalResult<()> {
        sqlx::query("INSERT INTO feedback (message) VALUES (?)")
            .bind(message)
            .execute(&self.0)
            .await?;
        Ok(())
    }
}

/// The framework asks this on every signed-in request: a deleted user or a
/// replaced stamp ends every session of that user.
pub struct Accounts(pub Dal);

impl AccountDirectory for Accounts {
    fn security_stamp(
        &self,
        user: UserId,
    ) -> BoxFuture<'static, DalResult<Option<Stamp>>> {
        let pool = self.0.0.clone();
        Box::pin(async move {
            let row: Option<(String,)> =
                sqlx::query_as("SELECT security_stamp FROM users WHERE id = ?")
                    .bind(user)
                    .fetch_optional(&pool)
                    .await?;
            Ok(row.map(|(s,)| Stamp::new(s)))
        })
    }
}
