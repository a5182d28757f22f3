//! Comments on projects. Reading needs membership of the project's team;
//! editing and deleting need authorship as well, in the same statement.

use super::{
    Dal, DalResult, VIEWER_IN_P_TEAM, VIEWER_TEAMS, Viewer, not_found, now, sql, touched_one,
};

sql::record! {
    #[derive(Clone)]
    pub struct CommentRow {
        pub id: i64,
        pub project_id: i64,
        pub author_id: i64,
        pub author_name: String,
        pub body: String,
        pub created_at: i64,
    }
}

pub struct Comments<'a>(pub(super) &'a Dal);

const SELECT: &str = "SELECT c.id, c.project_id, c.author_id, u.display_name AS author_name, c.body, c.created_at \
                      FROM comments c JOIN users u ON u.id = c.author_id JOIN projects p ON p.id = c.project_id";

/// A comment the viewer wrote, on a project they can still see.
const OWN: &str = "author_id = $1 AND project_id IN (SELECT id FROM projects WHERE team_id IN (SELECT team_id FROM memberships WHERE user_id = $1))";

impl Comments<'_> {
    pub async fn list(&self, viewer: &Viewer, project_id: i64) -> DalResult<Vec<CommentRow>> {
        Ok(sql::query(format!(
            "{SELECT} WHERE c.project_id = $2 AND p.team_id IN ({VIEWER_TEAMS}) ORDER BY c.id"
        ))
        .bind(viewer.id())
        .bind(project_id)
        .fetch_all(&self.0.pool)
        .await?)
    }

    pub async fn get(&self, viewer: &Viewer, id: i64) -> DalResult<CommentRow> {
        not_found(
            sql::query(format!("{SELECT} WHERE c.id = $2 AND {VIEWER_IN_P_TEAM}"))
                .bind(viewer.id())
                .bind(id)
                .fetch_optional(&self.0.pool)
                .await?,
        )
    }

    pub async fn post(
        &self,
        viewer: &Viewer,
        project_id: i64,
        body: &str,
    ) -> DalResult<CommentRow> {
        let t = now();
        let row: Option<(i64,)> = sql::query(format!(
            "INSERT INTO comments (project_id, author_id, body, created_at, updated_at) \
             SELECT $2, $1, $3, $4, $4 WHERE $2 IN (SELECT id FROM projects WHERE team_id IN ({VIEWER_TEAMS})) \
             RETURNING id"
        ))
        .bind(viewer.id())
        .bind(project_id)
        .bind(body)
        .bind(t)
        .fetch_optional(&self.0.pool)
        .await?;
        let (id,) = not_found(row)?;
        self.get(viewer, id).await
    }

    pub async fn edit(&self, viewer: &Viewer, id: i64, body: &str) -> DalResult<CommentRow> {
        let done = sql::query(format!(
            "UPDATE comments SET body = $3, updated_at = $4 WHERE id = $2 AND {OWN}"
        ))
        .bind(viewer.id())
        .bind(id)
        .bind(body)
        .bind(now())
        .execute(&self.0.pool)
        .await?;
        touched_one(done)?;
        self.get(viewer, id).await
    }

    /// Deletes the viewer's own comment; returns its project id.
    pub async fn delete(&self, viewer: &Viewer, id: i64) -> DalResult<i64> {
        let row: Option<(i64,)> = sql::query(format!(
            "DELETE FROM comments WHERE id = $2 AND {OWN} RETURNING project_id"
        ))
        .bind(viewer.id())
        .bind(id)
        .fetch_optional(&self.0.pool)
        .await?;
        not_found(row).map(|(p,)| p)
    }
}
