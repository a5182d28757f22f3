//! The demo's actions, one module per area. Each `register` adds its actions
//! with their policy, limits and handler; see the README's tour for how each
//! checklist item shows up here.

pub mod account;
pub mod attachments;
pub mod auth;
pub mod comments;
pub mod contact;
pub mod projects;
pub mod teams;
pub mod tokens;

use portcullis::Actions;

use crate::AppState;

/// Every action of the demo.
pub fn register(actions: &mut Actions<AppState>) {
    auth::register(actions);
    projects::register(actions);
    comments::register(actions);
    attachments::register(actions);
    teams::register(actions);
    account::register(actions);
    contact::register(actions);
    tokens::register(actions);
}

/// Re-authentication window for destructive operations.
pub const RECENT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Empty input for actions that take none.
#[derive(serde::Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}
