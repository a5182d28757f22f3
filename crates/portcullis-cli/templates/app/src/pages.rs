//! The one page. Page handlers read who is viewing and render action forms
//! (the framework fills in each action's current id, the honeypot and the
//! error slots); they cannot sign anyone in or write data: actions do that.
//! maud escapes every interpolation.

use maud::{DOCTYPE, Markup, html};
use portcullis::axum::extract::{Query, State};
use portcullis::axum::response::Response;
use portcullis::axum::{Router, routing::get};
use portcullis::{Page, field, submit};
use serde::Deserialize;

use crate::AppState;
use crate::actions::{ADD_NOTE, FEEDBACK, SIGN_IN, SIGN_OUT, SIGN_UP};

pub fn router(state: AppState) -> Router {
    Router::new().route("/", get(home)).with_state(state)
}

#[derive(Deserialize)]
struct Notice {
    signed_up: Option<String>,
    thanks: Option<String>,
}

async fn home(
    State(state): State<AppState>,
    page: Page,
    Query(q): Query<Notice>,
) -> Result<Markup, Response> {
    let body = match page.viewer() {
        Some(viewer) => {
            let name = state
                .dal
                .display_name(viewer)
                .await
                .map_err(|e| page.failed(e))?;
            let notes = state.dal.notes(viewer).await.map_err(|e| page.failed(e))?;
            html! {
                p { "Signed in as " strong { (name) } }
                (page.form(SIGN_OUT).body(html! { (submit("Sign out")) }))
                h2 { "Your notes" }
                (page.form(ADD_NOTE).reset_on_success().body(html! {
                    (field("body").label("New note").kind("textarea").required())
                    (submit("Add"))
                }))
                ul { @for note in &notes { li { (note.body) } } }
            }
        }
        None => html! {
            @if q.signed_up.is_some() {
                p role="status" { "If this address was new, your account is ready: sign in." }
            }
            h2 { "Sign in" }
            (page.form(SIGN_IN).body(html! {
                (field("email").label("Email").kind("email").autocomplete("username").required())
                (field("password").label("Password").kind("password").autocomplete("current-password").required())
                (submit("Sign in"))
            }))
            h2 { "Sign up" }
            (page.form(SIGN_UP).body(html! {
                (field("email").label("Email").kind("email").autocomplete("username").required())
                (field("displayName").label("Name").required())
                (field("password").label("Password (10+ characters)").kind("password").autocomplete("new-password").required())
                (submit("Sign up"))
            }))
        },
    };
    Ok(html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "{{name}}" }
                link rel="stylesheet" href=(portcullis::render::style_path());
                script type="module" src=(portcullis::render::script_path()) {}
            }
            body {
                h1 { "{{name}}" }
                (body)
                h2 { "Feedback" }
                @if q.thanks.is_some() { p role="status" { "Thank you!" } }
                (page.form(FEEDBACK).reset_on_success().body(html! {
                    (field("message").label("Message").kind("textarea").required())
                    (submit("Send"))
                }))
            }
        }
    })
}
