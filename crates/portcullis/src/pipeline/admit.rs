//! Stages 1–2, from the request head alone: the body's content type and
//! declared length against the largest cap of any action (the action is not
//! known yet; its own cap is checked in stage 6a), then the origin check,
//! so a cross-origin state change is refused before anything else is read.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::request::Parts;

use crate::body::{self, BodyKind};
use crate::error::Rejection;
use crate::runtime::Runtime;

use super::attempt::Attempt;

/// What stages 1–2 learned: the body's kind (the decoder stage 6a uses) and
/// the TCP peer (the client address is derived from it in stage 4).
pub(super) struct Admitted {
    pub kind: BodyKind,
    pub peer: IpAddr,
}

pub(super) fn admit(
    shared: &Runtime,
    head: &Parts,
    attempt: &mut Attempt,
) -> Result<Admitted, Rejection> {
    let config = &shared.config;
    let peer = peer_ip(&head.extensions)?;
    // The no-JS return path rides in the query string, so even a refusal
    // before the body is read can link back (it is validated when used).
    if let Some(query) = head.uri.query() {
        attempt.return_to = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == crate::wire::field::RETURN)
            .map(|(_, v)| v.into_owned());
    }

    // 1. Body limits: content type and declared length, from headers alone.
    let kind = BodyKind::from_headers(&head.headers)?;
    body::check_declared_length(&head.headers, shared.body_ceiling)?;

    // 2. Origin: cross-origin state changes are refused before the body is read.
    config
        .origin
        .check(&head.method, &head.headers, peer, &config.proxies)?;
    Ok(Admitted { kind, peer })
}

/// The TCP peer, from `ConnectInfo` (set by [`crate::serve`]).
fn peer_ip(extensions: &http::Extensions) -> Result<IpAddr, Rejection> {
    match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => Ok(addr.ip()),
        None => {
            // Without the peer, neither trusted proxies nor per-ip limits can
            // work; refuse rather than guess.
            Err(Rejection::internal(
                &"no ConnectInfo<SocketAddr>: serve the app with portcullis::serve",
            ))
        }
    }
}
