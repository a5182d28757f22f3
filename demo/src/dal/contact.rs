//! The public contact form's inbox. No viewer: anyone may write, which is why
//! the action in front of it is rate-limited per address and globally.

use super::{Dal, DalResult, now, sql};

pub struct Contact<'a>(pub(super) &'a Dal);

impl Contact<'_> {
    pub async fn store(&self, name: &str, email: &str, message: &str) -> DalResult<i64> {
        let (id,): (i64,) = sql::query(
            "INSERT INTO contact_messages (name, email, message, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(email)
        .bind(message)
        .bind(now())
        .fetch_one(&self.0.pool)
        .await?;
        Ok(id)
    }
}
