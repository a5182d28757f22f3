//! The viewer's own account: profile, password, third-party API key, and
//! deletion. Changing the password and deleting the account need a recent
//! re-authentication *and* the current password in the same form.

use portcullis::prelude::*;
use serde::{Deserialize, Serialize};

use super::RECENT;
use crate::{AppState, passwords};

pub const UPDATE_PROFILE: &str = "account.update_profile";
pub const CHANGE_PASSWORD: &str = "account.change_password";
pub const SET_API_KEY: &str = "account.set_api_key";
pub const DELETE: &str = "account.delete";

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(UPDATE_PROFILE)
                .authenticated()
                .mutates(&["update_tag:account"])
                .idempotent()
                .handler(update_profile),
        )
        .add(
            action(CHANGE_PASSWORD)
                .recent(RECENT)
                .limit(per_user(5).per_minute())
                .mutates(&["none"])
                .idempotent()
                .handler(change_password),
        )
        .add(
            action(SET_API_KEY)
                .authenticated()
                .mutates(&["update_tag:account"])
                .idempotent()
                .handler(set_api_key),
        )
        .add(
            action(DELETE)
                .recent(RECENT)
                .limit(per_user(5).per_minute())
                .mutates(&["session", "redirect"])
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
    pub current_password: String,
    #[garde(length(chars, min = 10, max = 200))]
    pub new_password: String,
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
    pub password: String,
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
    Ok(ProfileDto { display_name: name })
}

async fn change_password(
    cx: Cx<AppState>,
    viewer: Viewer,
    input: Valid<ChangePassword>,
) -> Outcome<()> {
    let input = input.into_inner();
    let me = cx.state().dal.users().me(&viewer).await?;
    if !passwords::verify(input.current_password, Some(me.password_hash.into_inner())).await? {
        return Err(ActionError::field("currentPassword", "is not correct"));
    }
    let hash = passwords::hash(input.new_password).await?;
    cx.state()
        .dal
        .users()
        .set_password_hash(&viewer, &hash)
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
    if !passwords::verify(
        input.into_inner().password,
        Some(me.password_hash.into_inner()),
    )
    .await?
    {
        return Err(ActionError::field("password", "is not correct"));
    }
    cx.state().dal.users().delete(&viewer).await?;
    cx.auth().logout().await?;
    cx.redirect("/")?;
    Ok(())
}
