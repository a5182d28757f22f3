//! The smallest complete portcullis app: one public action and the page
//! with its form (`main.rs` serves it; `tests/` drives it over HTTP).
//!
//! A public action must carry a rate limit (or it does not compile) and a
//! bot check (or `portcullis audit` flags it); the form the page renders
//! carries the action's current id and the empty honeypot, and works with
//! and without JavaScript. For a full starting point (accounts, a DAL,
//! tests) use `portcullis new`.

use maud::{Markup, html};
use portcullis::axum::{Router, routing::get};
use portcullis::prelude::*;
use portcullis::{App, BuildError, Config, Page, Portcullis, field, submit};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct Greet {
    #[garde(length(chars, min = 1, max = 40))]
    pub name: String,
}

#[derive(Serialize, Dto)]
pub struct Greeting {
    pub text: String,
}

/// The action's handle: forms and tests name it by this, so a typo does not
/// compile.
pub const GREET: ActionRef<Greet, Greeting> = ActionRef::new("greet");

async fn greet(_: Cx<()>, _: MaybeViewer, input: Valid<Greet>) -> Outcome<Greeting> {
    Ok(Greeting {
        text: format!("Hello, {}!", input.name.trim()),
    })
}

async fn home(page: Page) -> Markup {
    html! {
        script type="module" src=(page.script_src()) {}
        link rel="stylesheet" href=(page.style_href());
        (page.form(GREET).body(html! { (field("name").label("Your name")) (submit("Greet")) }))
    }
}

/// The app: the action, the page, sessions in memory.
pub fn app(config: Config) -> Result<App, BuildError> {
    Portcullis::new(config, ())
        .actions(|actions| {
            actions.add(
                action(GREET)
                    .public()
                    .limit(per_ip(30).per_minute())
                    .bot_check(BotCheck::Honeypot)
                    .read_only()
                    .handler(greet),
            );
        })
        .pages(Router::new().route("/", get(home)))
        // Signs nobody in: production requires an account directory, and
        // this one says so.
        .accounts(portcullis::NoAccounts)
        .build(portcullis::tower_sessions::MemoryStore::default())
}
