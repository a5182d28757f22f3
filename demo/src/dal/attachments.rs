//! Project attachments: rows that name a file in the file store. Every
//! query is scoped to the viewer's teams, like comments; the team's total
//! stays under [`TEAM_QUOTA_BYTES`], checked in the insert itself.

use super::{Dal, DalResult, VIEWER_IN_P_TEAM, VIEWER_TEAMS, Viewer, not_found, now, sql};

/// What one team may keep in attachments, in all.
pub const TEAM_QUOTA_BYTES: i64 = 20 * 1024 * 1024;

sql::record! {
    #[derive(Clone)]
    pub struct AttachmentRow {
        pub id: i64,
        pub project_id: i64,
        pub uploader_id: i64,
        pub uploader_name: String,
        pub file_key: String,
        pub file_name: String,
        pub content_type: String,
        pub size: i64,
        pub created_at: i64,
    }
}

/// What a new attachment row records.
pub struct NewAttachment<'a> {
    pub project_id: i64,
    pub file_key: &'a str,
    pub file_name: &'a str,
    pub content_type: &'a str,
    pub size: i64,
    pub sha256: &'a str,
}

/// Why an attachment could not be recorded.
pub enum AddError {
    /// The project is not one the viewer can see (or does not exist).
    NotFound,
    /// The team's quota would be exceeded; how many bytes are left.
    OverQuota {
        left: i64,
    },
    Other(portcullis::ActionError),
}

pub struct Attachments<'a>(pub(super) &'a Dal);

const SELECT: &str = "SELECT a.id, a.project_id, a.uploader_id, u.display_name AS uploader_name, \
                      a.file_key, a.file_name, a.content_type, a.size, a.created_at \
                      FROM attachments a JOIN users u ON u.id = a.uploader_id JOIN projects p ON p.id = a.project_id";

impl Attachments<'_> {
    pub async fn list(&self, viewer: &Viewer, project_id: i64) -> DalResult<Vec<AttachmentRow>> {
        Ok(sql::query(format!(
            "{SELECT} WHERE a.project_id = $2 AND p.team_id IN ({VIEWER_TEAMS}) ORDER BY a.id"
        ))
        .bind(viewer.id())
        .bind(project_id)
        .fetch_all(&self.0.pool)
        .await?)
    }

    /// One attachment, if it is on a project of one of the viewer's teams.
    pub async fn get(&self, viewer: &Viewer, id: i64) -> DalResult<AttachmentRow> {
        not_found(
            sql::query(format!("{SELECT} WHERE a.id = $2 AND {VIEWER_IN_P_TEAM}"))
                .bind(viewer.id())
                .bind(id)
                .fetch_optional(&self.0.pool)
                .await?,
        )
    }

    /// Records an attachment on a project of the viewer's teams, if the
    /// team's total stays within its quota (one statement: the project
    /// scope and the quota are checked by the insert itself).
    pub async fn add(
        &self,
        viewer: &Viewer,
        new: NewAttachment<'_>,
    ) -> Result<AttachmentRow, AddError> {
        // SUM of a BIGINT is NUMERIC on Postgres: cast back for the bindings.
        let team_used = "SELECT CAST(COALESCE(SUM(a2.size), 0) AS BIGINT) FROM attachments a2 JOIN projects p2 ON p2.id = a2.project_id \
                         WHERE p2.team_id = (SELECT team_id FROM projects WHERE id = $2)";
        let row: Option<(i64,)> = sql::query(format!(
            "INSERT INTO attachments (project_id, uploader_id, file_key, file_name, content_type, size, sha256, created_at) \
             SELECT $2, $1, $3, $4, $5, $6, $7, $8 \
             WHERE $2 IN (SELECT id FROM projects WHERE team_id IN ({VIEWER_TEAMS})) \
               AND ({team_used}) + $6 <= $9 \
             RETURNING id"
        ))
        .bind(viewer.id())
        .bind(new.project_id)
        .bind(new.file_key)
        .bind(new.file_name)
        .bind(new.content_type)
        .bind(new.size)
        .bind(new.sha256)
        .bind(now())
        .bind(TEAM_QUOTA_BYTES)
        .fetch_optional(&self.0.pool)
        .await
        .map_err(|e| AddError::Other(e.into()))?;
        match row {
            Some((id,)) => self.get(viewer, id).await.map_err(AddError::Other),
            None => {
                // Which condition failed: visibility first (never reveal
                // another team's usage).
                let used: Option<(i64,)> = sql::query(format!(
                    "SELECT ({team_used}) WHERE $2 IN (SELECT id FROM projects WHERE team_id IN ({VIEWER_TEAMS}))"
                ))
                .bind(viewer.id())
                .bind(new.project_id)
                .fetch_optional(&self.0.pool)
                .await
                .map_err(|e| AddError::Other(e.into()))?;
                match used {
                    None => Err(AddError::NotFound),
                    Some((used,)) => Err(AddError::OverQuota {
                        left: (TEAM_QUOTA_BYTES - used).max(0),
                    }),
                }
            }
        }
    }

    /// Deletes an attachment the viewer uploaded, on a project they can
    /// still see; returns (project id, file key) so the caller can remove
    /// the file.
    pub async fn delete(&self, viewer: &Viewer, id: i64) -> DalResult<(i64, String)> {
        let row: Option<(i64, String)> = sql::query(format!(
            "DELETE FROM attachments WHERE id = $2 AND uploader_id = $1 \
             AND project_id IN (SELECT id FROM projects WHERE team_id IN ({VIEWER_TEAMS})) \
             RETURNING project_id, file_key"
        ))
        .bind(viewer.id())
        .bind(id)
        .fetch_optional(&self.0.pool)
        .await?;
        not_found(row)
    }

    /// The file keys of a project's attachments, if the viewer can see the
    /// project (for removing the files when the project goes).
    pub async fn keys_of_project(
        &self,
        viewer: &Viewer,
        project_id: i64,
    ) -> DalResult<Vec<String>> {
        let rows: Vec<(String,)> = sql::query(format!(
            "SELECT a.file_key FROM attachments a JOIN projects p ON p.id = a.project_id \
             WHERE a.project_id = $2 AND p.team_id IN ({VIEWER_TEAMS})"
        ))
        .bind(viewer.id())
        .bind(project_id)
        .fetch_all(&self.0.pool)
        .await?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }

    /// Every file key a row names (for the orphan sweep at start-up).
    pub async fn all_keys(&self) -> DalResult<std::collections::HashSet<String>> {
        let rows: Vec<(String,)> = sql::query("SELECT file_key FROM attachments")
            .fetch_all(&self.0.pool)
            .await?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }
}
