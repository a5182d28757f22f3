//! Stage 5: the action's one policy ([`crate::policy`]) against the viewer
//! from the session — never from the payload. The viewer stage 4 loaded (if
//! a key needed it) is reused; otherwise it is loaded here, with the
//! security-stamp check of [`crate::session::load_viewer`].

use crate::body::BodyKind;
use crate::error::Rejection;
use crate::session;
use crate::viewer::Viewer;

use super::limit::{Caller, Limited};
use super::resolve::Resolved;

/// What stage 5 passes on: the caller, now with its viewer (`None` for an
/// anonymous caller of a public action).
pub(super) struct Authorized {
    pub kind: BodyKind,
    pub caller: Caller,
    pub viewer: Option<Viewer>,
    pub quota_keys: Vec<String>,
}

pub(super) async fn authorize<S>(
    resolved: &Resolved<'_, S>,
    limited: Limited,
) -> Result<Authorized, Rejection> {
    let Limited {
        kind,
        caller,
        viewer,
        quota_keys,
    } = limited;
    let shared = resolved.shared();
    let viewer = match viewer {
        Some(loaded) => loaded,
        None => {
            session::load_viewer(
                &caller.session,
                shared.config.session_absolute,
                shared.accounts.as_deref(),
            )
            .await?
        }
    };
    if let Some(v) = &viewer {
        tracing::Span::current().record("viewer", v.id());
    }
    resolved.meta.policy.check(viewer.as_ref())?;
    Ok(Authorized {
        kind,
        caller,
        viewer,
        quota_keys,
    })
}
