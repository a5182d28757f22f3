//! Stage 4: the action's per-request rate limits ([`crate::ratelimit`]),
//! keyed on what the request carries — client address, session, user,
//! header, or nothing (global) — before its body is read. The viewer is
//! loaded here only if a key needs it (`per_user`), and then handed to
//! stage 5 instead of being loaded twice. Quota keys are computed here too
//! (from the same request) and charged in stage 6f.

use std::net::IpAddr;

use tower_sessions::Session;

use crate::anon::AnonScope;
use crate::body::BodyKind;
use crate::error::Rejection;
use crate::ratelimit::{self, KeyRequest};
use crate::session;
use crate::viewer::Viewer;

use super::admit::Admitted;
use super::attempt::Attempt;
use super::resolve::Resolved;

/// Who is calling, as far as the framework can tell without the body: what
/// limits, idempotency scopes, seals and the handler's context key on.
pub(super) struct Caller {
    /// The client address, trusted-proxy aware ([`crate::proxy`]).
    pub ip: IpAddr,
    pub session: Session,
    /// The browser's anonymous scope ([`crate::anon`]), if it sent one.
    pub anon: Option<AnonScope>,
}

/// What stage 4 passes on.
pub(super) struct Limited {
    pub kind: BodyKind,
    pub caller: Caller,
    /// `Some` when a key needed the viewer and stage 4 loaded it (the inner
    /// `None` is an anonymous caller); `None` when stage 5 must load it.
    pub viewer: Option<Option<Viewer>>,
    /// The quotas' bucket keys, in the action's quota order.
    pub quota_keys: Vec<String>,
}

pub(super) async fn limit<S>(
    resolved: &Resolved<'_, S>,
    admitted: Admitted,
    attempt: &mut Attempt,
) -> Result<Limited, Rejection> {
    let shared = resolved.shared();
    let config = &shared.config;
    let (head, meta) = (resolved.head, resolved.meta);
    let session = head
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| Rejection::internal(&"session layer missing"))?;
    let client_ip = config.proxies.client_ip(admitted.peer, &head.headers);
    let mut viewer = None;
    let needs_viewer = |l: &ratelimit::Limit| l.key.needs_viewer();
    if meta.limits.iter().any(needs_viewer) || meta.quotas.iter().any(|q| needs_viewer(&q.limit)) {
        viewer = Some(
            session::load_viewer(
                &session,
                config.session_absolute,
                shared.accounts.as_deref(),
            )
            .await?,
        );
    }
    let session_id = session.id().map(|id| id.to_string());
    let anon = head.extensions.get::<AnonScope>().cloned();
    let key_request = KeyRequest {
        ip: client_ip,
        session: session_id.as_deref(),
        viewer: viewer.as_ref().and_then(Option::as_ref),
        headers: &head.headers,
    };
    let keys = ratelimit::request_keys(meta.name, "r", &meta.limits, &key_request)?;
    // Quota keys come from the request too; computed now, charged in stage 6f.
    let quota_limits: Vec<ratelimit::Limit> = meta.quotas.iter().map(|q| q.limit.clone()).collect();
    let quota_keys: Vec<String> =
        ratelimit::request_keys(meta.name, "q", &quota_limits, &key_request)?
            .into_iter()
            .zip(&meta.quotas)
            .map(|(k, q)| format!("{k}:{}", q.name))
            .collect();
    let headers = shared
        .limiter
        .enforce(&meta.limits, keys, meta.fail_open)
        .await?;
    attempt.headers.extend(headers);
    Ok(Limited {
        kind: admitted.kind,
        caller: Caller {
            ip: client_ip,
            session,
            anon,
        },
        viewer,
        quota_keys,
    })
}
