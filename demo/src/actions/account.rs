//! The viewer's own account: profile, password, third-party API key, signing
//! out everywhere, and deletion. Changing the password and deleting the
//! account need a recent re-authentication *and* the current password in the
//! same form.
//!
//! Every change that must end the user's other sessions replaces their
//! security stamp (`dal/users.rs`); the framework compares it on every
//! request, so those sessions are anonymous from their next request on:
//!
//! | action | stamp | this session | API tokens |
//! |---|---|---|---|
//! | change password | replaced | kept, re-signed-in (new id, new stamp) | revoked if `revokeTokens` is ticked |
//! | sign out everywhere | replaced | kept, re-signed-in | kept (revoke them one by one) |
//! | delete | user gone: no stamp | ended | deleted with the account |

use portcullis::prelude::*;
use portcullis::session::password;
use serde::{Deserialize, Serialize};

use super::RECENT;
use crate::AppState;

pub const UPDATE_PROFILE: ActionRef<Profile, ProfileDto> = ActionRef::new("account.update_profile");
pub const CHANGE_PASSWORD: ActionRef<ChangePassword, ()> =
    ActionRef::new("account.change_password");
pub const SET_API_KEY: ActionRef<ApiKey, ApiKeyState> = ActionRef::new("account.set_api_key");
pub const DELETE: ActionRef<DeleteAccount, ()> = ActionRef::new("account.delete");
pub const SIGN_OUT_EVERYWHERE: ActionRef<super::NoInput, ()> =
    ActionRef::new("account.sign_out_everywhere");

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(UPDATE_PROFILE)
                .authenticated()
                // `user:<id>` is read by every fragment that shows the
                // user's display name (comment threads).
                .mutates(&["update_tag:user"])
                .idempotent()
                .handler(update_profile),
        )
        .add(
            action(CHANGE_PASSWORD)
                .recent(RECENT)
                .limit(per_user(5).per_minute())
                .mutates(&["session"])
                .idempotent()
                .handler(change_password),
        )
        .add(
            action(SIGN_OUT_EVERYWHERE)
                .authenticated()
                .limit(per_user(10).per_hour())
                .mutates(&["session"])
                .idempotent()
                .handler(sign_out_everywhere),
        )
        .add(
            action(SET_API_KEY)
                .authenticated()
                .mutates(&["none"])
                .idempotent()
                .handler(set_api_key),
        )
        .add(
            action(DELETE)
                .recent(RECENT)
                .limit(per_user(5).per_minute())
                // The teams that go with the account: their project lists.
                .mutates(&["session", "redirect", "update_tag:team-projects"])
                .not_idempotent()
                .handler(delete),
        );
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Profile {
    #[garde(length(chars, min = 1, max = 60))]
    pub display_name: String,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangePassword {
    #[garde(length(min = 1, max = 200))]
    pub current_password: Secret<String>,
    #[garde(length(chars, min = 10, max = 200))]
    pub new_password: Secret<String>,
    /// The form's checkbox: also revoke every API token.
    #[garde(skip)]
    #[serde(default)]
    pub revoke_tokens: bool,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiKey {
    #[garde(length(max = 200))]
    pub api_key: String,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    #[garde(length(min = 1, max = 200))]
    pub password: Secret<String>,
}

#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct ProfileDto {
    pub display_name: String,
}

/// Whether a key is stored; the key itself never leaves the server.
#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyState {
    pub configured: bool,
}

async fn update_profile(
    cx: Cx<AppState>,
    viewer: Viewer,
    input: Valid<Profile>,
) -> Outcome<ProfileDto> {
    let name = input.display_name.trim().to_owned();
    cx.state()
        .dal
        .users()
        .update_profile(&viewer, &name)
        .await?;
    cx.update_tag(format!("user:{}", viewer.id()));
    Ok(ProfileDto { display_name: name })
}

async fn change_password(
    cx: Cx<AppState>,
    viewer: Viewer,
    input: Valid<ChangePassword>,
) -> Outcome<()> {
    let input = input.into_inner();
    let me = cx.state().dal.users().me(&viewer).await?;
    if !password::verify(input.current_password.expose(), me.password_hash.expose()).await? {
        return Err(ActionError::field("currentPassword", "is not correct"));
    }
    let hash = password::hash(input.new_password.expose()).await?;
    // New hash and new stamp in one statement: every other session of the
    // user is anonymous from its next request on.
    cx.state()
        .dal
        .users()
        .set_password_hash(&viewer, &hash, input.revoke_tokens)
        .await?;
    // This session stays: new id, the new stamp.
    cx.auth()
        .login(viewer.id(), viewer.roles().to_vec())
        .await?;
    Ok(())
}

async fn sign_out_everywhere(
    cx: Cx<AppState>,
    viewer: Viewer,
    _: Valid<super::NoInput>,
) -> Outcome<()> {
    cx.state().dal.users().sign_out_everywhere(&viewer).await?;
    cx.auth()
        .login(viewer.id(), viewer.roles().to_vec())
        .await?;
    Ok(())
}

async fn set_api_key(
    cx: Cx<AppState>,
    viewer: Viewer,
    input: Valid<ApiKey>,
) -> Outcome<ApiKeyState> {
    let key = input.api_key.trim();
    let key = (!key.is_empty()).then_some(key);
    cx.state().dal.users().set_api_key(&viewer, key).await?;
    Ok(ApiKeyState {
        configured: key.is_some(),
    })
}

async fn delete(cx: Cx<AppState>, viewer: Viewer, input: Valid<DeleteAccount>) -> Outcome<()> {
    let me = cx.state().dal.users().me(&viewer).await?;
    if !password::verify(input.password.expose(), me.password_hash.expose()).await? {
        return Err(ActionError::field("password", "is not correct"));
    }
    let gone = cx.state().dal.users().delete(&viewer).await?;
    crate::attachments_gone(&cx.state().files, &gone.attachment_files).await;
    // What other members may have cached from the deleted teams, and the
    // threads that lost this user's comments.
    for t in gone.teams {
        cx.update_tag(format!("team-projects:{t}"));
    }
    for p in gone.projects {
        cx.update_tag(format!("project:{p}"));
    }
    for p in gone.commented_projects {
        cx.update_tag(format!("comments:{p}"));
    }
    cx.auth().logout().await?;
    cx.redirect("/")?;
    Ok(())
}
