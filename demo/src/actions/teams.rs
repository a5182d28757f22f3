//! Team actions: invite, accept an invite, change a member's role, remove a
//! member, leave. Admin rights, the owner's protection and "at least one
//! admin" are checked by the DAL in the statement itself; the role a request
//! may set is an enum, and nobody can set their own.
//!
//! Every membership or role change expires `member:<user>` for the user whose
//! access changed: every per-viewer fragment (project list, project rows,
//! comment threads) reads its viewer's `member:` tag, so a removed member's
//! cached copy of the team's projects is never served again.

use base64::Engine;
use portcullis::prelude::*;
use portcullis::routes::api::hash_token;
use serde::{Deserialize, Serialize};

use super::RECENT;
use crate::AppState;

pub const INVITE: ActionRef<Invite, InviteCreated> = ActionRef::new("teams.invite");
pub const ACCEPT: ActionRef<Accept, Joined> = ActionRef::new("teams.accept_invite");
pub const SET_ROLE: ActionRef<SetRole, ()> = ActionRef::new("teams.set_role");
pub const REMOVE: ActionRef<Remove, ()> = ActionRef::new("teams.remove_member");
pub const LEAVE: ActionRef<Leave, ()> = ActionRef::new("teams.leave");

/// Invites are valid for 7 days.
pub const INVITE_TTL_SECS: i64 = 7 * 86_400;

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(INVITE)
                .authenticated()
                .limit(per_user(10).per_minute())
                .quota("invites", per_user(20).per_day())
                // The invite list is on the team page, which is not cached.
                .mutates(&["none"])
                .not_idempotent()
                .handler(invite),
        )
        .add(
            action(ACCEPT)
                .authenticated()
                .limit(per_user(10).per_minute())
                .mutates(&["update_tag:member", "redirect"])
                .idempotent()
                .handler(accept),
        )
        .add(
            action(SET_ROLE)
                .authenticated()
                .mutates(&["update_tag:member", "session"])
                .idempotent()
                .allow_audit(
                    "privileged-field",
                    "changing a member's role is the point of this action: `role` is an enum (member/admin), the DAL checks in the UPDATE that the viewer is an admin of the team, and nobody can set their own role",
                )
                .handler(set_role),
        )
        .add(
            action(REMOVE)
                .recent(RECENT)
                .mutates(&["update_tag:member"])
                .idempotent()
                .handler(remove),
        )
        .add(
            action(LEAVE)
                .recent(RECENT)
                .mutates(&["update_tag:member", "redirect"])
                .idempotent()
                .handler(leave),
        );
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Invite {
    #[garde(range(min = 1))]
    pub team_id: i64,
    #[garde(email, length(max = 200))]
    pub email: String,
}

/// The token arrives sealed: the invite page put it into the form bound to
/// this action and this session, so a form copied elsewhere does not work.
#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    #[garde(skip)]
    pub token: portcullis::Sealed<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetRole {
    #[garde(range(min = 1))]
    pub team_id: i64,
    #[garde(range(min = 1))]
    pub member_id: i64,
    #[garde(skip)]
    pub role: Role,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Leave {
    #[garde(range(min = 1))]
    pub team_id: i64,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Remove {
    #[garde(range(min = 1))]
    pub team_id: i64,
    #[garde(range(min = 1))]
    pub member_id: i64,
}

/// Shown once to the admin who created the invite: the link to send.
/// The token is never stored (only its hash) and never shown again.
#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct InviteCreated {
    pub invite_id: i64,
    pub link: String,
    /// Invites the viewer may still create today.
    pub invites_left_today: Option<u32>,
}

#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    pub team_id: i64,
}

async fn invite(cx: Cx<AppState>, viewer: Viewer, input: Valid<Invite>) -> Outcome<InviteCreated> {
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let id = cx
        .state()
        .dal
        .teams()
        .invite(
            &viewer,
            input.team_id,
            &input.email.trim().to_lowercase(),
            &hash_token(&token),
            INVITE_TTL_SECS,
        )
        .await?;
    Ok(InviteCreated {
        invite_id: id,
        link: format!("/invites/{token}"),
        invites_left_today: cx.quota("invites").map(|q| q.remaining),
    })
}

async fn accept(cx: Cx<AppState>, viewer: Viewer, input: Valid<Accept>) -> Outcome<Joined> {
    let team_id = cx
        .state()
        .dal
        .teams()
        .accept(&viewer, &hash_token(&input.token))
        .await?;
    cx.update_tag(format!("member:{}", viewer.id()));
    cx.redirect(&format!("/teams/{team_id}"))?;
    Ok(Joined { team_id })
}

async fn set_role(cx: Cx<AppState>, viewer: Viewer, input: Valid<SetRole>) -> Outcome<()> {
    cx.state()
        .dal
        .teams()
        .set_role(&viewer, input.team_id, input.member_id, input.role.as_str())
        .await?;
    cx.update_tag(format!("member:{}", input.member_id));
    Ok(())
}

async fn remove(cx: Cx<AppState>, viewer: Viewer, input: Valid<Remove>) -> Outcome<()> {
    cx.state()
        .dal
        .teams()
        .remove_member(&viewer, input.team_id, input.member_id)
        .await?;
    cx.update_tag(format!("member:{}", input.member_id));
    Ok(())
}

async fn leave(cx: Cx<AppState>, viewer: Viewer, input: Valid<Leave>) -> Outcome<()> {
    cx.state().dal.teams().leave(&viewer, input.team_id).await?;
    cx.update_tag(format!("member:{}", viewer.id()));
    cx.redirect("/projects")?;
    Ok(())
}
