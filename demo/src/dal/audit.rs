//! The audit log: one row per successful mutation (who, which action, which
//! record, when, request id), queued by the framework's audit hook
//! ([`portcullis::AuditSink`]) after the handler succeeded and before the
//! response is sent, and written in batches by [`crate::audit::AuditQueue`].
//! Never input values: the record is the id a handler named with
//! `cx.audit_record(..)`. At most one row per request id (unique index).

use portcullis::AuditEvent;

use std::sync::OnceLock;

use super::{Dal, DalResult, sql};

/// The row counts of the statements a batch is written in, largest first
/// (so at most four statement texts are prepared per connection).
const CHUNKS: [usize; 4] = [64, 16, 4, 1];

/// `INSERT … VALUES (…), … ON CONFLICT (request_id) DO NOTHING` for `rows`
/// rows (one of [`CHUNKS`]), built once each.
fn insert_sql(rows: usize) -> &'static str {
    static SQL: [OnceLock<String>; CHUNKS.len()] = [const { OnceLock::new() }; CHUNKS.len()];
    let slot = CHUNKS
        .iter()
        .position(|&n| n == rows)
        .unwrap_or(CHUNKS.len() - 1);
    SQL[slot].get_or_init(|| {
        let mut sql = String::from(
            "INSERT INTO audit_log (user_id, action, record, request_id, created_at) VALUES ",
        );
        for r in 0..CHUNKS[slot] {
            let p = r * 5;
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5
            ));
        }
        sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
        sql
    })
}

pub struct AuditLog<'a>(pub(super) &'a Dal);

sql::record! {
    /// One audit row, as read back (tests, an admin page).
    #[derive(Debug, Clone)]
    pub struct AuditRow {
        pub user_id: Option<i64>,
        pub action: String,
        pub record: Option<String>,
        pub request_id: Option<String>,
        pub created_at: i64,
    }
}

impl AuditLog<'_> {
    /// Inserts `events` in one transaction (in statements of 64, 16, 4 and
    /// 1 rows, so at most four statement texts are prepared per
    /// connection). A row whose request id is already stored is skipped, so
    /// retrying a batch whose commit was reported failed cannot duplicate it.
    /// A batch that is one statement runs without `BEGIN`/`COMMIT` (a
    /// statement is atomic on its own): at low load most batches are one
    /// row, and the transaction was two of its three statements.
    pub async fn write_batch(&self, events: &[AuditEvent]) -> Result<(), sql::DbError> {
        if CHUNKS.contains(&events.len()) {
            return Self::insert(events).execute(&self.0.pool).await.map(drop);
        }
        let mut tx = self.0.pool.begin().await?;
        let mut rest = events;
        while !rest.is_empty() {
            let n = CHUNKS.into_iter().find(|&n| n <= rest.len()).unwrap_or(1);
            let (chunk, tail) = rest.split_at(n);
            Self::insert(chunk).execute(&mut tx).await?;
            rest = tail;
        }
        tx.commit().await
    }

    /// One `INSERT` of `chunk` (1, 4, 16 or 64 events).
    fn insert(chunk: &[AuditEvent]) -> sql::Query {
        let mut query = sql::query(insert_sql(chunk.len()));
        for event in chunk {
            let at = event
                .at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            query = query
                .bind(event.viewer)
                .bind(event.action)
                .bind(event.record.clone())
                .bind(event.request_id.clone())
                .bind(at);
        }
        query
    }

    /// The newest `limit` rows, newest first.
    pub async fn recent(&self, limit: i64) -> DalResult<Vec<AuditRow>> {
        Ok(sql::query(
            "SELECT user_id, action, record, request_id, created_at FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.0.pool)
        .await?)
    }
}
