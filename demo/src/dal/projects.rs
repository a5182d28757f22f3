//! Projects, scoped to the viewer's teams in every statement.

use super::{
    Dal, DalResult, VIEWER_IN_P_TEAM, VIEWER_IN_PROJECTS_TEAM, VIEWER_TEAMS, Viewer, not_found,
    now, sql, touched_one,
};

sql::record! {
    #[derive(Clone)]
    pub struct ProjectRow {
        pub id: i64,
        pub team_id: i64,
        pub team_name: String,
        pub name: String,
        pub archived_at: Option<i64>,
        pub updated_at: i64,
    }
}

pub struct Projects<'a>(pub(super) &'a Dal);

const SELECT: &str = "SELECT p.id, p.team_id, t.name AS team_name, p.name, p.archived_at, p.updated_at \
                      FROM projects p JOIN teams t ON t.id = p.team_id";

/// The same columns as [`SELECT`], from an `UPDATE`: the write and the
/// re-read are one statement (a rename was an UPDATE and then a SELECT).
const RETURNING: &str = "RETURNING id, team_id, \
                         (SELECT name FROM teams WHERE teams.id = projects.team_id) AS team_name, \
                         name, archived_at, updated_at";

impl Projects<'_> {
    /// All projects of the viewer's teams, newest first.
    pub async fn list(&self, viewer: &Viewer) -> DalResult<Vec<ProjectRow>> {
        Ok(sql::query(format!(
            "{SELECT} WHERE p.team_id IN ({VIEWER_TEAMS}) ORDER BY p.archived_at IS NOT NULL, p.id DESC"
        ))
        .bind(viewer.id())
        .fetch_all(&self.0.pool)
        .await?)
    }

    /// One project, if it belongs to one of the viewer's teams.
    pub async fn get(&self, viewer: &Viewer, id: i64) -> DalResult<ProjectRow> {
        not_found(
            sql::query(format!("{SELECT} WHERE p.id = $2 AND {VIEWER_IN_P_TEAM}"))
                .bind(viewer.id())
                .bind(id)
                .fetch_optional(&self.0.pool)
                .await?,
        )
    }

    /// Creates a project in `team_id` if the viewer is a member of it.
    pub async fn create(&self, viewer: &Viewer, team_id: i64, name: &str) -> DalResult<ProjectRow> {
        let t = now();
        let row: Option<(i64,)> = sql::query(format!(
            "INSERT INTO projects (team_id, name, created_by, created_at, updated_at) \
             SELECT $2, $3, $1, $4, $4 WHERE $2 IN ({VIEWER_TEAMS}) RETURNING id"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .bind(name)
        .bind(t)
        .fetch_optional(&self.0.pool)
        .await?;
        let (id,) = not_found(row)?;
        self.get(viewer, id).await
    }

    /// Renames a project of the viewer's teams.
    pub async fn rename(&self, viewer: &Viewer, id: i64, name: &str) -> DalResult<ProjectRow> {
        not_found(
            sql::query(format!(
                "UPDATE projects SET name = $3, updated_at = $4 \
                 WHERE id = $2 AND {VIEWER_IN_PROJECTS_TEAM} {RETURNING}"
            ))
            .bind(viewer.id())
            .bind(id)
            .bind(name)
            .bind(now())
            .fetch_optional(&self.0.pool)
            .await?,
        )
    }

    /// Archives or restores a project of the viewer's teams.
    pub async fn set_archived(
        &self,
        viewer: &Viewer,
        id: i64,
        archived: bool,
    ) -> DalResult<ProjectRow> {
        let t = now();
        not_found(
            sql::query(format!(
                "UPDATE projects SET archived_at = $3, updated_at = $4 \
                 WHERE id = $2 AND {VIEWER_IN_PROJECTS_TEAM} {RETURNING}"
            ))
            .bind(viewer.id())
            .bind(id)
            .bind(archived.then_some(t))
            .bind(t)
            .fetch_optional(&self.0.pool)
            .await?,
        )
    }

    /// Deletes a project; only admins of its team may.
    pub async fn delete(&self, viewer: &Viewer, id: i64) -> DalResult<()> {
        let done = sql::query(
            "DELETE FROM projects WHERE id = $2 AND team_id IN \
             (SELECT team_id FROM memberships WHERE user_id = $1 AND role = 'admin')",
        )
        .bind(viewer.id())
        .bind(id)
        .execute(&self.0.pool)
        .await?;
        touched_one(done)?;
        Ok(())
    }

    /// Moves a project to another team. The viewer must be an admin of the
    /// source team and a member of the destination, and the destination
    /// must have room for the project's attachments under its quota
    /// ([`super::attachments::TEAM_QUOTA_BYTES`]), checked in the update
    /// itself: a move is no way around the quota.
    pub async fn transfer(&self, viewer: &Viewer, id: i64, to_team: i64) -> DalResult<ProjectRow> {
        const MOVABLE: &str = "id = $2 \
             AND team_id IN (SELECT team_id FROM memberships WHERE user_id = $1 AND role = 'admin') \
             AND $3 IN (SELECT team_id FROM memberships WHERE user_id = $1)";
        let done = sql::query(format!(
            "UPDATE projects SET team_id = $3, updated_at = $4 WHERE {MOVABLE} \
             AND (SELECT COALESCE(SUM(a.size), 0) FROM attachments a JOIN projects p2 ON p2.id = a.project_id WHERE p2.team_id = $3) \
               + (SELECT COALESCE(SUM(size), 0) FROM attachments WHERE project_id = $2) <= $5"
        ))
        .bind(viewer.id())
        .bind(id)
        .bind(to_team)
        .bind(now())
        .bind(super::attachments::TEAM_QUOTA_BYTES)
        .execute(&self.0.pool)
        .await?;
        if done.rows_affected() == 0 {
            // Refused by the quota, or not movable by this viewer (404).
            let movable: Option<(i64,)> =
                sql::query(format!("SELECT id FROM projects WHERE {MOVABLE}"))
                    .bind(viewer.id())
                    .bind(id)
                    .bind(to_team)
                    .fetch_optional(&self.0.pool)
                    .await?;
            return Err(match movable {
                Some(_) => portcullis::ActionError::field(
                    "toTeam",
                    "has no room for this project's attachments (20 MiB per team); delete some first",
                ),
                None => portcullis::ActionError::NotFound,
            });
        }
        self.get(viewer, id).await
    }
}
