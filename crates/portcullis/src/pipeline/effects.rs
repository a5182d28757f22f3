//! Stages 8–9 after the serialization of the result: the handler's effects
//! applied to this one response — tags and paths expired, the session write
//! persisted, the fragments the caller's page shows re-rendered
//! (read-your-own-writes), the envelope or 303 built and taint-scanned
//! ([`crate::respond::success`]), the mutation recorded for the audit sink,
//! cookies set. Effects apply only when the action succeeded: a refusal
//! never reaches this stage.

use axum::response::Response;
use http::HeaderValue;

use crate::action::ActionMeta;
use crate::error::Rejection;
use crate::observe::AuditEvent;
use crate::respond::{self, ClientKind, Success};
use crate::runtime::Runtime;

use super::attempt::Attempt;
use super::handler::Handled;
use super::resolve::Resolved;

pub(super) async fn apply<S>(
    resolved: &Resolved<'_, S>,
    handled: Handled,
    result_json: Box<serde_json::value::RawValue>,
    attempt: &Attempt,
) -> Result<Response, Rejection> {
    let shared = resolved.shared();
    let (head, meta) = (resolved.head, resolved.meta);
    let client = attempt.client;
    let effects = std::mem::take(&mut *handled.effects.lock().unwrap_or_else(|e| e.into_inner()));
    check_declared_tags(shared, meta, &effects.updated);
    let engine = &shared.fragments;
    for tag in &effects.updated {
        engine.update_tag(tag);
    }
    for tag in &effects.revalidated {
        engine.revalidate_tag(tag);
    }
    for path in &effects.paths {
        engine.revalidate_path(path);
    }
    // The session write (sign-in, step-up, session data) must persist before
    // success is reported or stored for replay: a store that is down makes
    // this 503 `session_store_unavailable`, and tower-sessions sets no cookie.
    crate::store::persist_session(&handled.session).await?;
    // Read-your-own-writes: the fragments the caller's page shows that read
    // an updated tag come back in this response (JSON clients only; a no-JS
    // browser is redirected and re-renders the page anyway).
    let fragments =
        if client == ClientKind::Json && (effects.refresh || !effects.updated.is_empty()) {
            let requested: Vec<&str> = head
                .headers
                .get(crate::wire::header::FRAGMENTS)
                .and_then(|v| v.to_str().ok())
                .map(crate::fragment::requested_keys)
                .unwrap_or_default();
            engine
                .affected(
                    &requested,
                    &effects.updated,
                    effects.refresh,
                    handled.viewer.as_ref(),
                )
                .await
        } else {
            Vec::new()
        };
    let revalidated = effects.revalidates();
    // The envelope (or 303), taint-scanned over its final bytes (stage 8's
    // second half) before anything is sent.
    let mut response = respond::success(
        client,
        Success {
            result_json,
            redirect: effects.redirect,
            return_to: attempt.return_to.clone(),
            fragments,
            revalidated,
        },
    )?;
    // A success the client will see: record the mutation before sending.
    if let (Some(sink), true) = (&shared.audit, meta.is_mutation()) {
        let record = handled
            .audit_record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let request_id = attempt.request_id.as_str();
        let recorded = tokio::time::timeout(
            shared.config.deadlines.handler,
            sink.record(AuditEvent {
                action: meta.name,
                viewer: handled.viewer.as_ref().map(|v| v.id()),
                record,
                request_id: request_id.to_owned(),
                at: std::time::SystemTime::now(),
            }),
        )
        .await;
        if recorded.is_err() {
            tracing::error!(
                action = meta.name,
                request_id,
                "audit sink did not finish within the handler deadline"
            );
        }
    }
    for cookie in effects.cookies {
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(http::header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

/// A declaration `update_tag:x` promises that every successful call expires
/// tag `x` or a tag of the family `x:…` (`update_tag:comments` is kept by
/// `comments:42`). A call that succeeds without keeping the promise is a
/// bug in the app — its declaration (what reviewers, the audit and the
/// manifest read) no longer matches what it does, typically a cache entry
/// left stale — so it is logged at error level and counted
/// (`portcullis_declared_tag_not_updated`). It is not turned into a failure:
/// the handler's writes are already committed, and a 500 would invite a
/// retry of a mutation that succeeded. Declare only the tags *every*
/// successful call updates; one updated only on some paths (say, the list
/// when a rename changes the order) is named in a comment, not declared.
fn check_declared_tags(shared: &Runtime, meta: &ActionMeta, updated: &[String]) {
    for declared in &meta.effects {
        let Some(family) = declared.strip_prefix("update_tag:") else {
            continue;
        };
        let kept = updated.iter().any(|tag| {
            tag == family
                || tag
                    .strip_prefix(family)
                    .is_some_and(|rest| rest.starts_with(':'))
        });
        if !kept {
            shared.metrics.declared_tag_not_updated(meta.name);
            tracing::error!(
                action = meta.name,
                declared = *declared,
                "action declares `{declared}` but returned successfully without updating that tag; fix the handler or the declaration"
            );
        }
    }
}
