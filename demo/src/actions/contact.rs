//! The public contact form: the one action anyone may call without signing
//! in, so it carries two limits — per address and global.

use portcullis::prelude::*;
use serde::{Deserialize, Serialize};

use crate::AppState;

pub const SEND: ActionRef<Message, Received> = ActionRef::new("contact.send");

pub fn register(actions: &mut portcullis::Actions<AppState>) {
    actions.add(
        action(SEND)
            .public()
            .limit(per_ip(5).per_minute())
            .limit(global(100).per_minute())
            // Works without JavaScript: a field humans never see must stay empty.
            .bot_check(BotCheck::Honeypot)
            .body_limit(16 * 1024)
            .mutates(&["redirect"])
            .not_idempotent()
            .handler(send),
    );
}

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Message {
    #[garde(length(chars, min = 1, max = 100))]
    pub name: String,
    #[garde(email, length(max = 200))]
    pub email: String,
    #[garde(length(chars, min = 10, max = 5000))]
    pub message: String,
}

#[derive(Serialize, Dto)]
pub struct Received {
    pub received: bool,
}

async fn send(cx: Cx<AppState>, _: MaybeViewer, input: Valid<Message>) -> Outcome<Received> {
    cx.state()
        .dal
        .contact()
        .store(input.name.trim(), input.email.trim(), input.message.trim())
        .await?;
    cx.redirect("/contact?sent=1")?;
    Ok(Received { received: true })
}
