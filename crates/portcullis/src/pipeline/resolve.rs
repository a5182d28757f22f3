//! Stage 3: the opaque id in the path → one registered action
//! ([`crate::ids`]: HMAC per epoch; malformed is 400, unknown or expired 409
//! `stale_action`, which makes the client reload once).

use http::request::Parts;

use super::Inner;
use crate::action::{Action, ActionMeta};
use crate::error::Rejection;
use crate::input::InputShape;
use crate::runtime::Runtime;

use super::attempt::Attempt;

/// The request, resolved to one of the app's actions: what every later
/// stage reads (never writes) — the app, the request head, the action and
/// its input shape.
pub(super) struct Resolved<'a, S> {
    pub app: &'a Inner<S>,
    pub head: &'a Parts,
    pub action: &'a Action<S>,
    pub shape: &'a InputShape,
    pub meta: &'a ActionMeta,
}

impl<S> Resolved<'_, S> {
    /// The framework state shared by every request.
    pub fn shared(&self) -> &Runtime {
        &self.app.shared
    }
}

pub(super) fn resolve<'a, S>(
    app: &'a Inner<S>,
    head: &'a Parts,
    id: &str,
    attempt: &mut Attempt,
) -> Result<Resolved<'a, S>, Rejection> {
    let index = app.shared.directory().ids.resolve(id)?;
    let (action, shape) = &app.actions[index];
    let meta = &action.meta;
    attempt.action = Some(meta.name);
    tracing::Span::current().record("action", meta.name);
    Ok(Resolved {
        app,
        head,
        action,
        shape,
        meta,
    })
}
