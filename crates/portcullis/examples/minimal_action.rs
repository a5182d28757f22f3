//! The smallest complete portcullis app: one public action and the page
//! with its form. Run, then open http://127.0.0.1:3000:
//!
//! ```text
//! cargo run -p portcullis --example minimal_action
//! ```
//!
//! A public action must carry a rate limit and a bot check to pass
//! `portcullis audit`; the form the page renders carries the action's
//! current id and the empty honeypot, and works with and without JavaScript.
//! For a full starting point (accounts, a DAL, tests) use `portcullis new`.

use axum::{Router, routing::get};
use maud::{Markup, html};
use portcullis::prelude::*;
use portcullis::{Config, MasterSecret, Page, Portcullis, field, submit};
use serde::{Deserialize, Serialize};

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
struct Greet {
    #[garde(length(chars, min = 1, max = 40))]
    name: String,
}

#[derive(Serialize, Dto)]
struct Greeting {
    text: String,
}

const GREET: ActionRef<Greet, Greeting> = ActionRef::new("greet");

async fn greet(_: Cx<()>, _: MaybeViewer, input: Valid<Greet>) -> Outcome<Greeting> {
    Ok(Greeting {
        text: format!("Hello, {}!", input.name.trim()),
    })
}

async fn home(page: Page) -> Markup {
    html! {
        script type="module" src=(portcullis::render::script_path()) {}
        link rel="stylesheet" href=(portcullis::render::style_path());
        (page.form(GREET).body(html! { (field("name").label("Your name")) (submit("Greet")) }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fresh secret each start: fine for an example, not for an app
    // (`Config::from_env` keeps a development secret under the data dir).
    let app = Portcullis::new(Config::new(MasterSecret::generate()), ())
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
        .build(portcullis::tower_sessions::MemoryStore::default())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("http://{}", listener.local_addr()?);
    portcullis::serve(listener, app.router()).await?;
    Ok(())
}
