//! The audit log: one row per successful mutation (who, which action, which
//! record, when, request id), written by the framework's audit hook
//! ([`portcullis::AuditSink`]) after the handler succeeded and before the
//! response is sent. Never input values: the record is the id a handler named
//! with `cx.audit_record(..)`.

use portcullis::AuditEvent;

use super::{Dal, DalResult};

pub struct AuditLog<'a>(pub(super) &'a Dal);

/// One audit row, as read back (tests, an admin page).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub user_id: Option<i64>,
    pub action: String,
    pub record: Option<String>,
    pub request_id: Option<String>,
    pub created_at: i64,
}

impl AuditLog<'_> {
    pub async fn write(&self, event: &AuditEvent) -> DalResult<()> {
        let at = event
            .at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        sqlx::query(
            "INSERT INTO audit_log (user_id, action, record, request_id, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(event.viewer)
        .bind(event.action)
        .bind(event.record.as_deref())
        .bind(event.request_id.as_str())
        .bind(at)
        .execute(&self.0.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` rows, newest first.
    pub async fn recent(&self, limit: i64) -> DalResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT user_id, action, record, request_id, created_at FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.0.pool)
        .await?)
    }
}
