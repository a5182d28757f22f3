//! Personal access tokens for the JSON API: created on the settings page,
//! shown once, stored hashed, scoped read/write, expiring, revocable.

use portcullis::prelude::*;
use portcullis::routes::api::{Scope, hash_token, new_token};
use serde::{Deserialize, Serialize};

use crate::AppState;

pub const CREATE: ActionRef<Create, Created> = ActionRef::new("tokens.create");
pub const REVOKE: ActionRef<Revoke, ()> = ActionRef::new("tokens.revoke");

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(CREATE)
                .authenticated()
                .limit(per_user(10).per_hour())
                .mutates(&["none"])
                .not_idempotent()
                .handler(create),
        )
        .add(
            action(REVOKE)
                .authenticated()
                .mutates(&["none"])
                .idempotent()
                .handler(revoke),
        );
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Create {
    #[garde(length(chars, min = 1, max = 60))]
    pub name: String,
    #[garde(skip)]
    pub scope: Scope,
    #[garde(range(min = 1, max = 365))]
    pub days: i64,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Revoke {
    #[garde(range(min = 1))]
    pub token_id: i64,
}

/// The only response that ever carries the token: copy it now.
#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    pub id: i64,
    pub token: String,
    pub expires_at: i64,
}

async fn create(cx: Cx<AppState>, viewer: Viewer, input: Valid<Create>) -> Outcome<Created> {
    let input = input.into_inner();
    let token = new_token();
    let (id, expires_at) = cx
        .state()
        .dal
        .tokens()
        .create(
            &viewer,
            input.name.trim(),
            &hash_token(&token),
            input.scope,
            input.days,
        )
        .await?;
    cx.audit_record(format_args!("api_token:{id}"));
    Ok(Created {
        id,
        token,
        expires_at,
    })
}

async fn revoke(cx: Cx<AppState>, viewer: Viewer, input: Valid<Revoke>) -> Outcome<()> {
    cx.state()
        .dal
        .tokens()
        .revoke(&viewer, input.token_id)
        .await?;
    cx.audit_record(format_args!("api_token:{}", input.token_id));
    Ok(())
}
