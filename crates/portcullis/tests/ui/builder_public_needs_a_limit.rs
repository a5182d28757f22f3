// A public action without a rate limit does not compile, and the error says
// to add `.limit(..)`; a bot check is no substitute, and needs the limit too.
use portcullis::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, garde::Validate)]
pub struct Contact {
    #[garde(length(min = 1))]
    pub message: String,
}

#[derive(Serialize, Dto)]
pub struct Sent {
    pub ok: bool,
}

pub const CONTACT: ActionRef<Contact, Sent> = ActionRef::new("contact.send");

async fn contact(_: Cx<()>, _: MaybeViewer, _: Valid<Contact>) -> Outcome<Sent> {
    Ok(Sent { ok: true })
}

fn main() {
    let _ = action(CONTACT).public().handler(contact);
    let _ = action(CONTACT).public().bot_check(BotCheck::Honeypot).handler(contact);
    let _ = action(CONTACT).authenticated().bot_check(BotCheck::Honeypot);
}
