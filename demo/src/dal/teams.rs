//! Teams, memberships and invites. Only a team's admins may invite, change
//! roles or remove members, and that check is part of each statement's WHERE
//! clause, not a separate read that could race.

use portcullis::ActionError;

use super::{Dal, DalResult, Viewer, not_found, now, touched_one};

#[derive(sqlx::FromRow, Clone)]
pub struct TeamRow {
    pub id: i64,
    pub name: String,
    pub plan: String,
    /// The viewer's role in this team.
    pub role: String,
}

#[derive(sqlx::FromRow, Clone)]
pub struct MemberRow {
    pub user_id: i64,
    pub display_name: String,
    pub role: String,
}

/// An invite as its team's admins see it (no token: only its hash is stored).
#[derive(sqlx::FromRow, Clone)]
pub struct InviteRow {
    pub id: i64,
    pub email: String,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
}

pub struct Teams<'a>(pub(super) &'a Dal);

const IS_ADMIN: &str = "EXISTS (SELECT 1 FROM memberships a WHERE a.team_id = $2 AND a.user_id = $1 AND a.role = 'admin')";

impl Teams<'_> {
    /// The viewer's teams with their role in each.
    pub async fn mine(&self, viewer: &Viewer) -> DalResult<Vec<TeamRow>> {
        Ok(sqlx::query_as(
            "SELECT t.id, t.name, t.plan, m.role FROM teams t JOIN memberships m ON m.team_id = t.id \
             WHERE m.user_id = $1 ORDER BY t.id",
        )
        .bind(viewer.id())
        .fetch_all(&self.0.pool)
        .await?)
    }

    /// One of the viewer's teams.
    pub async fn get(&self, viewer: &Viewer, team_id: i64) -> DalResult<TeamRow> {
        not_found(
            sqlx::query_as(
                "SELECT t.id, t.name, t.plan, m.role FROM teams t JOIN memberships m ON m.team_id = t.id \
                 WHERE m.user_id = $1 AND t.id = $2",
            )
            .bind(viewer.id())
            .bind(team_id)
            .fetch_optional(&self.0.pool)
            .await?,
        )
    }

    /// Members of a team the viewer belongs to.
    pub async fn members(&self, viewer: &Viewer, team_id: i64) -> DalResult<Vec<MemberRow>> {
        self.get(viewer, team_id).await?;
        Ok(sqlx::query_as(
            "SELECT m.user_id, u.display_name, m.role FROM memberships m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 ORDER BY u.display_name",
        )
        .bind(team_id)
        .fetch_all(&self.0.pool)
        .await?)
    }

    /// Creates an invite if the viewer is an admin of the team. Stores only
    /// the token's hash.
    pub async fn invite(
        &self,
        viewer: &Viewer,
        team_id: i64,
        email: &str,
        token_hash: &str,
        ttl_secs: i64,
    ) -> DalResult<i64> {
        let row: Option<(i64,)> = sqlx::query_as(&format!(
            "INSERT INTO invites (team_id, email, token_hash, invited_by, expires_at) \
             SELECT $2, $3, $4, $1, $5 WHERE {IS_ADMIN} RETURNING id"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .bind(email)
        .bind(token_hash)
        .bind(now() + ttl_secs)
        .fetch_optional(&self.0.pool)
        .await?;
        not_found(row).map(|(id,)| id)
    }

    /// Pending and past invites of a team the viewer administers.
    pub async fn invites(&self, viewer: &Viewer, team_id: i64) -> DalResult<Vec<InviteRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT id, email, expires_at, accepted_at FROM invites WHERE team_id = $2 AND {IS_ADMIN} \
             ORDER BY id DESC LIMIT 20"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .fetch_all(&self.0.pool)
        .await?)
    }

    /// Accepts an invite by token hash: single use, unexpired; the viewer
    /// joins as `member`. Unknown, used and expired tokens all look the same.
    pub async fn accept(&self, viewer: &Viewer, token_hash: &str) -> DalResult<i64> {
        let mut tx = self.0.pool.begin().await?;
        let claimed: Option<(i64,)> = sqlx::query_as(
            "UPDATE invites SET accepted_at = $3, accepted_by = $1 \
             WHERE token_hash = $2 AND accepted_at IS NULL AND expires_at > $3 RETURNING team_id",
        )
        .bind(viewer.id())
        .bind(token_hash)
        .bind(now())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((team_id,)) = claimed else {
            return Err(ActionError::form("This invite is invalid or has expired."));
        };
        sqlx::query(
            "INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, 'member') \
             ON CONFLICT (team_id, user_id) DO NOTHING",
        )
        .bind(team_id)
        .bind(viewer.id())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(team_id)
    }

    /// Sets another member's role. Admin only; never one's own role (that
    /// would let the last admin demote themselves or a member promote
    /// themselves through a forged request).
    pub async fn set_role(
        &self,
        viewer: &Viewer,
        team_id: i64,
        user_id: i64,
        role: &str,
    ) -> DalResult<()> {
        if user_id == viewer.id() {
            return Err(ActionError::form("You cannot change your own role."));
        }
        let done = sqlx::query(&format!(
            "UPDATE memberships SET role = $4 WHERE team_id = $2 AND user_id = $3 AND {IS_ADMIN}"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .bind(user_id)
        .bind(role)
        .execute(&self.0.pool)
        .await?;
        touched_one(done)?;
        Ok(())
    }

    /// Removes another member. Admin only; the owner cannot be removed.
    pub async fn remove_member(
        &self,
        viewer: &Viewer,
        team_id: i64,
        user_id: i64,
    ) -> DalResult<()> {
        if user_id == viewer.id() {
            return Err(ActionError::form("You cannot remove yourself."));
        }
        let done = sqlx::query(&format!(
            "DELETE FROM memberships WHERE team_id = $2 AND user_id = $3 AND {IS_ADMIN} \
             AND user_id <> (SELECT owner_id FROM teams WHERE id = $2)"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .bind(user_id)
        .execute(&self.0.pool)
        .await?;
        touched_one(done)?;
        Ok(())
    }

    /// Sets a team's plan. Called only from the signed billing webhook, never
    /// from an action: there is no viewer here on purpose.
    pub async fn set_plan_from_billing(&self, team_id: i64, plan: &str) -> DalResult<bool> {
        let done = sqlx::query("UPDATE teams SET plan = $2 WHERE id = $1")
            .bind(team_id)
            .bind(plan)
            .execute(&self.0.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
