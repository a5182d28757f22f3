//! Stage 7: the app's handler, with its [`Cx`], viewer and validated input;
//! panics caught (500 with a digest), under the handler deadline — the
//! bound on dependencies the framework cannot see, e.g. the app's database:
//! a hung one answers 503 `deadline_exceeded` instead of hanging the
//! request. A quota charged in stage 6f is refunded unless the call
//! succeeded in time.

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use tower_sessions::Session;

use crate::action::AnyDto;
use crate::cx::{Cx, Effects};
use crate::error::Rejection;
use crate::session::Auth;
use crate::viewer::Viewer;

use super::attempt::Attempt;
use super::guard::Guarded;
use super::resolve::Resolved;

/// What a successful handler leaves for stages 8–9.
pub(super) struct Handled {
    /// The handler's DTO, not yet serialized (stage 8).
    pub result: Box<dyn AnyDto>,
    /// The effects it requested through its [`Cx`].
    pub effects: Arc<Mutex<Effects>>,
    /// The record it named for the audit log ([`Cx::audit_record`]).
    pub audit_record: Arc<Mutex<Option<String>>>,
    /// The viewer it ran as (fragments re-rendered for this response).
    pub viewer: Option<Viewer>,
    /// The session, to persist its writes before success is reported.
    pub session: Session,
}

pub(super) async fn call<S: Clone + Send + Sync + 'static>(
    resolved: &Resolved<'_, S>,
    guarded: Guarded,
    attempt: &Attempt,
) -> Result<Handled, Rejection> {
    let Guarded {
        caller,
        viewer,
        input,
        quotas,
        quota_keys,
    } = guarded;
    let shared = resolved.shared();
    let config = &shared.config;
    let meta = resolved.meta;
    let charged = !quotas.is_empty();
    let effects = Arc::new(Mutex::new(Effects::default()));
    let session_after = caller.session.clone();
    let cx = Cx::new(
        resolved.app.state.clone(),
        Auth::new(caller.session, shared.accounts.clone()),
        caller.ip,
        attempt.return_to.clone(),
        effects.clone(),
        shared.sealer().clone(),
    )
    .with_quotas(quotas)
    .with_anon(caller.anon)
    .with_secure_cookies(config.secure_cookies);
    let audit_record = cx.audit_slot();
    let viewer_for_fragments = viewer.clone();
    let handler_deadline = config.deadlines.handler;
    let outcome = tokio::time::timeout(
        handler_deadline,
        std::panic::AssertUnwindSafe(resolved.action.exec.call(cx, viewer, input)).catch_unwind(),
    )
    .await;
    if charged && !matches!(outcome, Ok(Ok(Ok(_)))) {
        // A quota counts calls that succeeded (in time).
        shared.limiter.refund(&meta.quotas, quota_keys).await;
    }
    let Ok(outcome) = outcome else {
        let r = crate::store::deadline_exceeded();
        tracing::warn!(digest = %r.digest, after_ms = handler_deadline.as_millis() as u64, "handler did not finish within its deadline; 503");
        return Err(r);
    };
    let result = match outcome {
        Ok(Ok(result)) => {
            crate::store::app_dependencies().ok();
            result
        }
        Ok(Err(error)) => return Err(error.classified(shared.classifier)),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            return Err(Rejection::internal(&format_args!(
                "action `{}` panicked: {detail}",
                meta.name
            )));
        }
    };
    Ok(Handled {
        result,
        effects,
        audit_record,
        viewer: viewer_for_fragments,
        session: session_after,
    })
}
