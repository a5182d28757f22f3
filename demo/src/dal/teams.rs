//! Teams, memberships and invites. Only a team's admins may invite, change
//! roles or remove members, and that check is part of each statement's WHERE
//! clause, not a separate read that could race.
//!
//! Two rules hold in every path that changes a membership (set role, remove,
//! leave), again inside the statement itself:
//!
//! * the team's **owner** is always an admin and always a member: nobody
//!   (not another admin, not the owner) can demote or remove them;
//! * every team keeps **at least one admin**: an admin can be demoted,
//!   removed or leave only while another admin remains (with the owner
//!   protected this always holds; the check keeps it true by itself).
//!
//! Invites are bound to the invited address: only a signed-in user whose
//! email is the invite's can accept it.
//!
//! A role change also replaces the member's security stamp, so their open
//! sessions end and they sign in again under the new role; the caller
//! expires the `member:<id>` tag, which every per-viewer fragment of that
//! member reads.

use portcullis::ActionError;

use super::{Dal, DalResult, Viewer, not_found, now, sql};

sql::record! {
    #[derive(Clone)]
    pub struct TeamRow {
        pub id: i64,
        pub name: String,
        pub plan: String,
        /// The viewer's role in this team.
        pub role: String,
    }
}

sql::record! {
    #[derive(Clone)]
    pub struct MemberRow {
        pub user_id: i64,
        pub display_name: String,
        pub role: String,
    }
}

sql::record! {
    /// An invite as its team's admins see it (no token: only its hash is stored).
    #[derive(Clone)]
    pub struct InviteRow {
        pub id: i64,
        pub email: String,
        pub expires_at: i64,
        pub accepted_at: Option<i64>,
        /// 0 pending, 1 accepted by the invited address, 2 used by another
        /// account (only invites accepted before invites were bound to their
        /// address can be in this state).
        pub state: i64,
    }
}

impl InviteRow {
    pub const PENDING: i64 = 0;
    pub const ACCEPTED: i64 = 1;
    pub const USED_BY_OTHER: i64 = 2;
}

/// The owner's membership is untouchable, and an admin may go only while
/// another admin stays. `$2` is the team, `$3` the member being changed.
const PROTECTED: &str = "user_id <> (SELECT owner_id FROM teams WHERE id = $2) \
     AND (role <> 'admin' OR EXISTS (SELECT 1 FROM memberships o WHERE o.team_id = $2 \
     AND o.role = 'admin' AND o.user_id <> $3))";

pub struct Teams<'a>(pub(super) &'a Dal);

const IS_ADMIN: &str = "EXISTS (SELECT 1 FROM memberships a WHERE a.team_id = $2 AND a.user_id = $1 AND a.role = 'admin')";

impl Teams<'_> {
    /// The viewer's teams with their role in each.
    pub async fn mine(&self, viewer: &Viewer) -> DalResult<Vec<TeamRow>> {
        Ok(sql::query(
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
            sql::query(
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
        Ok(sql::query(
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
        let row: Option<(i64,)> = sql::query(format!(
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
        Ok(sql::query(format!(
            "SELECT i.id, i.email, i.expires_at, i.accepted_at, \
             CAST(CASE WHEN i.accepted_at IS NULL THEN 0 \
                  WHEN u.email IS NULL OR u.email = i.email THEN 1 ELSE 2 END AS BIGINT) AS state \
             FROM invites i LEFT JOIN users u ON u.id = i.accepted_by \
             WHERE i.team_id = $2 AND {IS_ADMIN} ORDER BY i.id DESC LIMIT 20"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .fetch_all(&self.0.pool)
        .await?)
    }

    /// Accepts an invite by token hash: single use, unexpired, and only by
    /// the invited address (the viewer's email must be the invite's); the
    /// viewer joins as `member`. Unknown, used and expired tokens all look
    /// the same; a live invite for another address says so (without
    /// naming it), since whoever holds the link already knows it exists.
    pub async fn accept(&self, viewer: &Viewer, token_hash: &str) -> DalResult<i64> {
        let mut tx = self.0.pool.begin().await?;
        let t = now();
        let claimed: Option<(i64,)> = sql::query(
            "UPDATE invites SET accepted_at = $3, accepted_by = $1 \
             WHERE token_hash = $2 AND accepted_at IS NULL AND expires_at > $3 \
             AND email = (SELECT email FROM users WHERE id = $1) RETURNING team_id",
        )
        .bind(viewer.id())
        .bind(token_hash)
        .bind(t)
        .fetch_optional(&mut tx)
        .await?;
        let Some((team_id,)) = claimed else {
            let live: Option<(i64,)> = sql::query(
                "SELECT id FROM invites WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(t)
            .fetch_optional(&mut tx)
            .await?;
            return Err(ActionError::form(if live.is_some() {
                "This invite was sent to another email address. Sign in with that account to accept it."
            } else {
                "This invite is invalid or has expired."
            }));
        };
        sql::query(
            "INSERT INTO memberships (team_id, user_id, role) VALUES ($1, $2, 'member') \
             ON CONFLICT (team_id, user_id) DO NOTHING",
        )
        .bind(team_id)
        .bind(viewer.id())
        .execute(&mut tx)
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
        let mut tx = self.0.pool.begin().await?;
        let done = sql::query(format!(
            "UPDATE memberships SET role = $4 WHERE team_id = $2 AND user_id = $3 AND {IS_ADMIN} \
             AND role <> $4 AND {PROTECTED}"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .bind(user_id)
        .bind(role)
        .execute(&mut tx)
        .await?;
        if done.rows_affected() == 0 {
            drop(tx);
            return Err(self.why_not(viewer, team_id, user_id, Some(role)).await);
        }
        // The member's sessions end: they sign in again under the new role.
        sql::query("UPDATE users SET security_stamp = $2 WHERE id = $1")
            .bind(user_id)
            .bind(portcullis::Stamp::random().as_str())
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes another member. Admin only; never the owner, never the last
    /// admin.
    pub async fn remove_member(
        &self,
        viewer: &Viewer,
        team_id: i64,
        user_id: i64,
    ) -> DalResult<()> {
        if user_id == viewer.id() {
            return Err(ActionError::form(
                "You cannot remove yourself; leave the team instead.",
            ));
        }
        let done = sql::query(format!(
            "DELETE FROM memberships WHERE team_id = $2 AND user_id = $3 AND {IS_ADMIN} AND {PROTECTED}"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .bind(user_id)
        .execute(&self.0.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(self.why_not(viewer, team_id, user_id, None).await);
        }
        Ok(())
    }

    /// The viewer leaves a team. Never the owner, never the last admin.
    pub async fn leave(&self, viewer: &Viewer, team_id: i64) -> DalResult<()> {
        let done = sql::query(format!(
            "DELETE FROM memberships WHERE team_id = $2 AND user_id = $1 AND {PROTECTED}"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .bind(viewer.id())
        .execute(&self.0.pool)
        .await?;
        if done.rows_affected() == 0 {
            // Not a member at all: 404, as for any team that is not yours.
            self.get(viewer, team_id).await?;
            return Err(ActionError::form(
                "The owner cannot leave their team, and a team cannot lose its last admin.",
            ));
        }
        Ok(())
    }

    /// Why a role change or removal by `viewer` touched nothing: an admin
    /// aiming at the owner or the last admin gets a clear refusal; anyone
    /// else (not an admin, no such member, no such team) the usual 404.
    async fn why_not(
        &self,
        viewer: &Viewer,
        team_id: i64,
        user_id: i64,
        role: Option<&str>,
    ) -> ActionError {
        let facts: Result<Option<(i64, String)>, sql::DbError> = sql::query(format!(
            "SELECT t.owner_id, m.role FROM teams t JOIN memberships m ON m.team_id = t.id \
             WHERE t.id = $2 AND m.user_id = $3 AND {IS_ADMIN}"
        ))
        .bind(viewer.id())
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(&self.0.pool)
        .await;
        match facts {
            Err(e) => e.into(),
            Ok(None) => ActionError::NotFound,
            Ok(Some((owner, _))) if owner == user_id => {
                ActionError::form("The team's owner is always an admin and cannot be removed.")
            }
            Ok(Some((_, current))) if role == Some(current.as_str()) => {
                ActionError::form("The member already has this role.")
            }
            Ok(Some(_)) => ActionError::form("A team must keep at least one admin."),
        }
    }

    /// Sets a team's plan. Called only from the signed billing webhook, never
    /// from an action: there is no viewer here on purpose.
    pub async fn set_plan_from_billing(&self, team_id: i64, plan: &str) -> DalResult<bool> {
        let done = sql::query("UPDATE teams SET plan = $2 WHERE id = $1")
            .bind(team_id)
            .bind(plan)
            .execute(&self.0.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
