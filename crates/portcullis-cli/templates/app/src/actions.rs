//! Every action of the app. Each is a public POST endpoint; the builder
//! makes each one say who may call it (`.public()` needs a rate limit and a
//! bot check to pass `portcullis audit`), what it changes, and its input
//! rules (garde), before it accepts a handler.

use portcullis::prelude::*;
use portcullis::session::password;
use serde::{Deserialize, Serialize};

use crate::AppState;

pub const SIGN_UP: ActionRef<SignUp, Done> = ActionRef::new("auth.sign_up");
pub const SIGN_IN: ActionRef<SignIn, Done> = ActionRef::new("auth.sign_in");
pub const SIGN_OUT: ActionRef<NoInput, Done> = ActionRef::new("auth.sign_out");
pub const ADD_NOTE: ActionRef<NewNote, NoteDto> = ActionRef::new("notes.add");
pub const FEEDBACK: ActionRef<Feedback, Done> = ActionRef::new("feedback.send");

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
                // Per account from this address: a guesser elsewhere cannot
                // lock the owner out.
                .limit_input(
                    per_input("account", 10, |i: &SignIn| {
                        Some(i.email.trim().to_lowercase())
                    })
                    .per_client_address()
                    .per(std::time::Duration::from_secs(15 * 60)),
                )
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
            action(ADD_NOTE)
                .authenticated()
                .limit(per_user(60).per_minute())
                .mutates(&["redirect"])
                .not_idempotent()
                .handler(add_note),
        )
        .add(
            action(FEEDBACK)
                .public()
                .limit(per_ip(10).per_minute())
                .limit(global(100).per_minute())
                .bot_check(BotCheck::Honeypot)
                .body_limit(8 * 1024)
                .mutates(&["redirect"])
                .not_idempotent()
                .handler(send_feedback),
        );
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignUp {
    #[garde(email, length(max = 200))]
    pub email: String,
    #[garde(length(chars, min = 1, max = 60))]
    pub display_name: String,
    /// `Secret`: it cannot end up in a response or a log line by accident.
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
pub struct NoInput {}

/// Only the text: the owner is the session's viewer, never a field.
#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    #[garde(length(chars, min = 1, max = 500))]
    pub body: String,
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    #[garde(length(chars, min = 10, max = 2000))]
    pub message: String,
}

/// Responses are purpose-built DTOs; DAL rows cannot be returned.
#[derive(Serialize, Dto)]
pub struct Done {
    pub ok: bool,
}

#[derive(Serialize, Dto)]
pub struct NoteDto {
    pub id: i64,
    pub body: String,
}

/// The same answer for a new and a registered address (no enumeration):
/// sign-up signs nobody in; the new user signs in next.
async fn sign_up(cx: Cx<AppState>, _: MaybeViewer, input: Valid<SignUp>) -> Outcome<Done> {
    let input = input.into_inner();
    // argon2id; hashed for a registered address too (the same work).
    let hash = password::hash(input.password.expose()).await?;
    let email = input.email.trim().to_lowercase();
    cx.state()
        .dal
        .sign_up(&email, input.display_name.trim(), &hash)
        .await?;
    cx.redirect("/?signed_up=1")?;
    Ok(Done { ok: true })
}

async fn sign_in(cx: Cx<AppState>, _: MaybeViewer, input: Valid<SignIn>) -> Outcome<Done> {
    let input = input.into_inner();
    let user = cx
        .state()
        .dal
        .by_email(&input.email.trim().to_lowercase())
        .await?;
    let stored = user.as_ref().map(|u| u.password_hash.expose().as_str());
    // Verified either way (against a dummy hash for an unknown address):
    // it costs and answers the same.
    let ok = password::verify_or_dummy(input.password.expose(), stored).await?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(ActionError::form("Invalid email or password."));
    };
    // Cycles the session id and records the user's security stamp.
    cx.auth().login(user.id, Vec::new()).await?;
    cx.redirect("/")?;
    Ok(Done { ok: true })
}

async fn sign_out(cx: Cx<AppState>, _: Viewer, _: Valid<NoInput>) -> Outcome<Done> {
    cx.auth().logout().await?;
    cx.redirect("/")?;
    Ok(Done { ok: true })
}

async fn add_note(cx: Cx<AppState>, viewer: Viewer, input: Valid<NewNote>) -> Outcome<NoteDto> {
    let note = cx.state().dal.add_note(&viewer, input.body.trim()).await?;
    cx.redirect("/")?;
    Ok(NoteDto {
        id: note.id,
        body: note.body,
    })
}

async fn send_feedback(cx: Cx<AppState>, _: MaybeViewer, input: Valid<Feedback>) -> Outcome<Done> {
    cx.state().dal.add_feedback(input.message.trim()).await?;
    cx.redirect("/?thanks=1")?;
    Ok(Done { ok: true })
}
