//! Sign-up, sign-in, sign-out and step-up re-authentication.
//!
//! Identity is written only through `cx.auth()`, which cycles the session id;
//! the password check is ours, its result is the framework's to record.
//!
//! **No enumeration at sign-up.** Sign-up answers the same whether the
//! address is new or already registered: same status, same body, same
//! redirect (to the sign-in page), no session either way, and the same
//! argon2 work (the password is hashed before the address is looked at).
//! That is why sign-up does not sign the new user in: signing in only new
//! addresses would itself be the answer. A registered address gets no
//! account and no change. The demo has no mail, so its owner is not told;
//! a real app would mail "someone tried to sign up with your address" there,
//! and "confirm your address" for a new one. What remains: someone who signs
//! up an address and then signs in with the password they chose learns
//! whether it was theirs to take — at the price of creating that account,
//! under sign-up's and sign-in's rate limits (README, "Accounts").
//!
//! **No lock-out by guessing.** Sign-in is limited per account *and client
//! address* (10 per 15 minutes), under a much higher per-account ceiling
//! (100 per 15 minutes) — see `portcullis::ratelimit`'s module docs for why
//! one address can then never lock the owner out elsewhere.

use std::time::Duration;

use portcullis::prelude::*;
use portcullis::session::password;
use serde::{Deserialize, Serialize};

use super::NoInput;
use crate::AppState;

pub const SIGN_UP: ActionRef<SignUp, SignedUp> = ActionRef::new("auth.sign_up");
pub const SIGN_IN: ActionRef<SignIn, SignedIn> = ActionRef::new("auth.sign_in");
pub const SIGN_OUT: ActionRef<NoInput, ()> = ActionRef::new("auth.sign_out");
pub const REAUTH: ActionRef<Password, ()> = ActionRef::new("auth.reauthenticate");

/// The window of the sign-in input limits.
const SIGN_IN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Where sign-up sends everyone, new address or not.
pub const AFTER_SIGN_UP: &str = "/login?signed_up=1";

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions
        .add(
            action(SIGN_UP)
                .public()
                .limit(per_ip(20).per_hour())
                .bot_check(BotCheck::Honeypot)
                .mutates(&["redirect"])
                .not_idempotent()
                .handler(sign_up),
        )
        .add(
            action(SIGN_IN)
                .public()
                .limit(per_ip(30).per_minute())
                // Per account from this address: what one guesser meets.
                // The owner at another address has a budget of their own.
                .limit_input(
                    per_input("account+address", 10, |i: &SignIn| {
                        Some(i.email.trim().to_lowercase())
                    })
                    .per_client_address()
                    .per(SIGN_IN_WINDOW),
                )
                // Per account from anywhere: the ceiling on a guess spread
                // over many addresses, 10× the pair budget so a lock-out
                // needs 10 addresses at once, not one.
                .limit_input(
                    per_input("account", 100, |i: &SignIn| {
                        Some(i.email.trim().to_lowercase())
                    })
                    .per(SIGN_IN_WINDOW),
                )
                // The form's empty honeypot must come back empty; a request
                // without it was not made from the form.
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
    /// A `Secret`: it cannot be serialized or logged by accident, and
    /// garde's `length` rule still applies.
    #[garde(length(chars, min = 10, max = 200))]
    pub password: Secret<String>,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    #[garde(length(min = 1, max = 200))]
    pub email: String,
    #[garde(length(min = 1, max = 200))]
    pub password: Secret<String>,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Password {
    #[garde(length(min = 1, max = 200))]
    pub password: Secret<String>,
}

/// What sign-in returns: the display name, nothing else.
#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    pub display_name: String,
}

/// What sign-up returns, new address or not: what to do next.
#[derive(Serialize, Dto)]
#[serde(rename_all = "camelCase")]
pub struct SignedUp {
    pub next: &'static str,
}

async fn sign_up(cx: Cx<AppState>, _: MaybeViewer, input: Valid<SignUp>) -> Outcome<SignedUp> {
    let input = input.into_inner();
    let email = input.email.trim().to_lowercase();
    // Hashed first, for both answers: the same work either way.
    let hash = password::hash(input.password.expose()).await?;
    let created = cx
        .state()
        .dal
        .users()
        .sign_up(&email, input.display_name.trim(), &hash)
        .await?;
    if created.is_none() {
        // Nothing changes for the registered address; with mail, its owner
        // would be told here. The answer below is the same as for a new one.
        tracing::debug!("sign-up for a registered address: nothing created");
    }
    cx.redirect(AFTER_SIGN_UP)?;
    Ok(SignedUp {
        next: "If this address was not registered yet, your account is ready: sign in.",
    })
}

async fn sign_in(cx: Cx<AppState>, _: MaybeViewer, input: Valid<SignIn>) -> Outcome<SignedIn> {
    let input = input.into_inner();
    let email = input.email.trim().to_lowercase();
    let user = cx.state().dal.users().by_email(&email).await?;
    let stored = user.as_ref().map(|u| u.password_hash.expose().as_str());
    // Same work, same answer for "unknown email" and "wrong password".
    if !password::verify_or_dummy(input.password.expose(), stored).await? {
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
    if !password::verify(input.password.expose(), me.password_hash.expose()).await? {
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
