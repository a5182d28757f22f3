//! Stages 6a–b: the body is read only now, under the action's own cap and
//! a whole-body deadline ([`crate::body`]), decoded into the handler's
//! input type with sealed fields opened ([`crate::input`],
//! [`crate::seal`]), and validated ([`crate::input::validate`]). Seals open only
//! for the action stage 3 resolved, in the session stage 5 saw, before
//! their expiry.

use axum::body::Body;
use bytes::Bytes;

use crate::action::AnyInput;
use crate::body::{self, BodyKind};
use crate::error::Rejection;
use crate::input::{Lang, Opening, Payload, Reserved};
use crate::respond::ClientKind;
use crate::seal;
use crate::upload;
use crate::viewer::Viewer;

use super::attempt::Attempt;
use super::limit::Caller;
use super::policy::Authorized;
use super::resolve::Resolved;

/// What stages 6a–b pass on: the validated input (a `Valid<I>` of the
/// action's input type), the reserved fields, and the body bytes (a
/// refcount, not a copy) for the idempotency fingerprint.
pub(super) struct Decoded {
    pub kind: BodyKind,
    pub caller: Caller,
    pub viewer: Option<Viewer>,
    pub quota_keys: Vec<String>,
    pub input: AnyInput,
    pub reserved: Reserved,
    pub body: Bytes,
}

pub(super) async fn decode<S>(
    resolved: &Resolved<'_, S>,
    body: Body,
    authorized: Authorized,
    attempt: &mut Attempt,
) -> Result<Decoded, Rejection> {
    let Authorized {
        kind,
        caller,
        viewer,
        quota_keys,
    } = authorized;
    let shared = resolved.shared();
    let config = &shared.config;
    let (head, meta) = (resolved.head, resolved.meta);
    let cap = meta.body_limit.unwrap_or(config.body_limits.body_bytes);
    let uploads = &resolved.shape.uploads;
    // After the policy: the session id is final for this request.
    let binding = crate::anon::seal_binding(&caller.session, caller.anon.as_ref());
    let (payload, bytes) = match &kind {
        // An action with upload fields streams a multipart body: files to
        // temp files, never the whole body in memory ([`crate::upload`]).
        BodyKind::Multipart { boundary } if !uploads.is_empty() => {
            body::check_declared_length(&head.headers, upload::request_cap(cap, uploads))?;
            // Whose slot: the viewer's and the address's (before any byte).
            attempt.upload_slot = Some(shared.upload_slots.acquire(
                viewer.as_ref().map(|v| format!("u{}", v.id())),
                format!("ip{}", caller.ip),
            )?);
            if attempt.client == ClientKind::Html {
                // A refused file (type, name) flashes its errors back to
                // the form; a multipart flash keeps no values.
                attempt.flash = Some(crate::flash::Source::new(
                    meta.name,
                    binding.clone(),
                    head.uri.query(),
                    &kind,
                    &Bytes::new(),
                ));
            }
            let received = upload::receive(
                body,
                boundary,
                upload::InputFields {
                    fields: resolved.shape.fields,
                    uploads,
                },
                &config.body_limits,
                cap,
                &config.uploads,
            )
            .await?;
            let fingerprint = received.fingerprint_body();
            (Payload::Received(received), fingerprint)
        }
        _ => {
            body::check_declared_length(&head.headers, cap)?;
            let bytes = body::read_body(body, cap, config.body_limits.body_timeout).await?;
            (Payload::Bytes(bytes.clone()), bytes)
        }
    };
    if attempt.client == ClientKind::Html && attempt.flash.is_none() {
        // Kept (a refcount, not a copy) for the no-JS flash should stage 6 refuse.
        attempt.flash = Some(crate::flash::Source::new(
            meta.name,
            binding.clone(),
            head.uri.query(),
            &kind,
            &bytes,
        ));
    }
    // Seals open only for this action, in this session, before their expiry.
    let opening = Opening::new(
        shared.sealer().clone(),
        meta.name,
        binding,
        seal::unix_now(),
    );
    // Kept (a refcount) for the idempotency fingerprint, should a key come.
    let body_for_fingerprint = bytes.clone();
    let (input, reserved) = resolved
        .action
        .exec
        .decode(
            &kind,
            payload,
            resolved.shape,
            &config.body_limits,
            &opening,
            // Validation messages in the caller's language; with and
            // without JavaScript alike (the no-JS flash carries them).
            Lang::of_headers(&head.headers),
        )
        .await?;
    if reserved.return_to.is_some() {
        attempt.return_to = reserved.return_to.clone();
    }
    Ok(Decoded {
        kind,
        caller,
        viewer,
        quota_keys,
        input,
        reserved,
        body: body_for_fingerprint,
    })
}
