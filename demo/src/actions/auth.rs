//! Sign-up, sign-in, sign-out and step-up re-authentication.
//!
//! Identity is written only through `cx.auth()`, which cycles the session id;
//! the password check is ours, its result is the framework's to record.

use std::time::Duration;

use portcullis::prelude::*;
use serde::{Deserialize, Serialize};

use super::NoInput;
use crate::{AppState, passwords};

pub const SIGN_UP: &str = "auth.sign_up";
pub const SIGN_IN: &str = "auth.sign_in";
pub const SIGN_OUT: &str = "auth.sign_out";
pub const REAUTH: &str = "auth.reauthenticate";

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(SIGN_UP)
                .public()
                .limit(per_ip(20).per_hour())
                .bot_check(BotCheck::Honeypot)
                .mutates(&["session", "redirect"])
                .not_idempotent()
                .handler(sign_up),
        )
        .add(
            action(SIGN_IN)
                .public()
                .limit(per_ip(30).per_minute())
                // Per account, whoever is asking: slows a distributed guess
                // at one password without reading the body before stage 6.
                .limit_input(
                    per_input("account", 10, |i: &SignIn| {
                        Some(i.email.trim().to_lowercase())
                    })
                    .per(Duration::from_secs(600)),
                )
                // Absent or empty passes, so password managers and the
                // no-JS form are unaffected; naive form-filling bots fail.
                .bot_check(BotCheck::Honeypot)
                .mutates(&["session", "redirect"])
                .idempotent()
                .handler(sign_in),
        )
        .add(
            action(SIGN_OUT)
                .authenticated()
                .mutates(&["session", "redirect"])
                .idempotent()
                .handler(sign_out),
        )
        .add(
            action(REAUTH)
                .authenticated()
                .limit(per_user(10).per(Duration::from_secs(600)))
                .mutates(&["session", "redirect"])
                .idempotent()
                .handler(reauthenticate),
        );
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignUp {
    #[garde(email, length(max = 200))]
    pub email: String,
    #[garde(length(chars, min = 1, max = 60))]
    pub display_name: String,
    #[garde(length(chars, min = 10, max = 200))]
    pub password: String,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    #[garde(length(min = 1, max = 200))]
    pub email: String,
    #[garde(length(min = 1, max = 200))]
    pub password: String,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Password {
    #[garde(length(min = 1, max = 200))]
    pub password: String,
}

/// What sign-up and sign-in return: the display name, nothing else.
#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    pub display_name: String,
}

async fn sign_up(cx: Cx<AppState>, _: MaybeViewer, input: Valid<SignUp>) -> Outcome<SignedIn> {
    let input = input.into_inner();
    let email = input.email.trim().to_lowercase();
    let hash = passwords::hash(input.password).await?;
    let user_id = cx
        .state()
        .dal
        .users()
        .sign_up(&email, input.display_name.trim(), &hash)
        .await?;
    cx.auth().login(user_id, Vec::new()).await?;
    cx.redirect("/projects")?;
    Ok(SignedIn {
        display_name: input.display_name,
    })
}

async fn sign_in(cx: Cx<AppState>, _: MaybeViewer, input: Valid<SignIn>) -> Outcome<SignedIn> {
    let input = input.into_inner();
    let email = input.email.trim().to_lowercase();
    let user = cx.state().dal.users().by_email(&email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.expose().clone());
    // Same work, same answer for "unknown email" and "wrong password".
    if !passwords::verify(input.password, stored).await? {
        return Err(ActionError::form("Invalid email or password."));
    }
    let user = user.ok_or_else(|| ActionError::form("Invalid email or password."))?;
    cx.auth().login(user.id, Vec::new()).await?;
    let to = cx
        .return_path()
        .filter(|p| !p.starts_with("/login"))
        .unwrap_or("/projects")
        .to_owned();
    cx.redirect(&to)?;
    Ok(SignedIn {
        display_name: user.display_name,
    })
}

async fn sign_out(cx: Cx<AppState>, _: Viewer, _: Valid<NoInput>) -> Outcome<()> {
    cx.auth().logout().await?;
    cx.redirect("/")?;
    Ok(())
}

async fn reauthenticate(cx: Cx<AppState>, viewer: Viewer, input: Valid<Password>) -> Outcome<()> {
    let me = cx.state().dal.users().me(&viewer).await?;
    if !passwords::verify(
        input.into_inner().password,
        Some(me.password_hash.into_inner()),
    )
    .await?
    {
        return Err(ActionError::field("password", "is not correct"));
    }
    cx.auth().confirm_reauthentication().await?;
    let to = cx
        .return_path()
        .filter(|p| !p.starts_with("/reauth"))
        .unwrap_or("/settings")
        .to_owned();
    cx.redirect(&to)?;
    Ok(())
}
