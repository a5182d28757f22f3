#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// docs.rs (which sets `--cfg docsrs`, on nightly) labels the items behind a
// feature ("Available on crate feature `testing` only"); stable builds never
// see the nightly feature.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The public modules: what an app names (ARCHITECTURE.md, "Public API").
pub mod action;
pub mod app;
pub mod fragment;
pub mod ratelimit;
pub mod render;
pub mod routes;
pub mod security;
pub mod session;
pub mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
pub mod wire;

// Internals: reachable only through the re-exports below and `__private`.
mod anon;
mod body;
mod botcheck;
mod client;
mod config;
mod cx;
mod deploy;
mod directory;
mod error;
mod flash;
mod form;
mod headers;
mod idempotency;
mod ids;
mod input;
mod keys;
mod observe;
mod origin;
mod pipeline;
mod policy;
mod proxy;
mod respond;
mod runtime;
mod seal;
mod server;
mod taint;
mod upload;
mod viewer;

pub use action::{Action, ActionBuilder, Actions, action};
pub use app::{App, BuildError, Manifest, Portcullis};
pub use body::BodyLimits;
pub use botcheck::{BotCheck, BotVerifier};
pub use config::{Config, ConfigError, Mode};
pub use cx::Cx;
pub use directory::{ActionRef, AnyActionRef};
pub use error::{ActionError, ErrorClassifier, ErrorCode, FieldErrors, Outcome, Rejection};
pub use fragment::{CacheConfig, Fragments, RenderCx, fragment};
pub use headers::{Hsts, RouteHeaders, SecurityHeaders};
pub use input::{Sealed, Valid};
pub use keys::MasterSecret;
pub use observe::{AuditEvent, AuditSink, Metrics};
pub use policy::Policy;
pub use portcullis_macros::Dto;
pub use ratelimit::{Limiter, global, per_input, per_ip, per_key, per_session, per_user};
pub use render::{Page, field, submit};
pub use respond::Dto;
pub use server::{serve, serve_until};
pub use session::{AccountDirectory, NoAccounts, Stamp};
pub use taint::{Secret, unique_value};
pub use viewer::{MaybeViewer, UserId, Viewer};

/// The crates whose types and traits an app names alongside the framework's
/// (the page router and its extractors, validation rules, session stores,
/// markup), re-exported so the app uses exactly the versions portcullis was
/// built with; a separately added, newer one does not implement
/// portcullis's traits ([`Portcullis::pages`] takes a
/// `portcullis::axum::Router`). (Two macros still need a direct dependency
/// of the same version: `#[derive(garde::Validate)]` expands to
/// `::garde::…` and `maud::html!` to `extern crate maud`.)
pub use {axum, garde, maud, tower_sessions};

/// The boxed future that the traits an app implements return
/// ([`session::AccountDirectory`], [`routes::api::TokenStore`],
/// [`BotVerifier`], [`AuditSink`]): write `Box::pin(async move { … })`.
/// It is `futures::future::BoxFuture`, re-exported so the app needs no
/// `futures` dependency to name it.
pub use futures::future::BoxFuture;

/// Re-exports for app code and derive output.
pub mod prelude {
    pub use crate::{
        ActionError, ActionRef, BotCheck, Cx, Dto, MaybeViewer, Outcome, Sealed, Secret, Valid,
        Viewer, action, global, per_input, per_ip, per_key, per_session, per_user,
    };
}

/// Internals the fuzz targets, benchmarks and the framework's own
/// integration tests drive directly. Not API: no stability promise, hidden
/// from the docs (axum's `__private` pattern).
#[doc(hidden)]
pub mod __private {
    pub mod body {
        pub use crate::body::*;
    }
    pub mod botcheck {
        pub use crate::botcheck::*;
    }
    pub mod error {
        pub use crate::error::*;
    }
    pub mod flash {
        pub use crate::flash::*;
    }
    pub mod idempotency {
        pub use crate::idempotency::*;
    }
    pub mod ids {
        pub use crate::ids::*;
    }
    pub mod input {
        pub use crate::input::*;
    }
    pub mod keys {
        pub use crate::keys::*;
    }
    pub mod respond {
        pub use crate::respond::*;
    }
    pub mod seal {
        pub use crate::seal::*;
    }
    pub mod taint {
        pub use crate::taint::*;
    }
}

/// Lower-case hex of `bytes` (digests, key ids, nonces, content hashes).
pub(crate) fn hex(bytes: &[u8]) -> String {
    // A `format!` per byte cost ~300 instructions a byte (3.5 % of a
    // cached page, for one idempotency key).
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}
