#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod action;
pub mod anon;
pub mod api;
pub mod app;
pub mod botcheck;
pub mod client;
pub mod config;
pub mod cx;
pub mod deploy;
mod directory;
pub mod error;
pub mod flash;
mod form;
pub mod fragment;
pub mod headers;
pub mod idempotency;
pub mod ids;
pub mod input;
pub mod keys;
pub mod limits;
pub mod observe;
pub mod origin;
mod pipeline;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod render;
pub mod respond;
pub mod routes;
mod runtime;
pub mod seal;
pub mod server;
pub mod session;
pub mod store;
pub mod taint;
#[cfg(feature = "testing")]
pub mod testing;
pub mod viewer;
pub mod webhook;
pub mod wire;

pub use action::{Action, ActionBuilder, Actions, action};
pub use app::{App, BuildError, Manifest, Portcullis};
pub use botcheck::{BotCheck, BotVerifier};
pub use config::{Config, ConfigError, Mode};
pub use cx::Cx;
pub use directory::{ActionRef, AnyActionRef};
pub use error::{ActionError, ErrorCode, Outcome, Rejection};
pub use fragment::{CacheConfig, Fragments, RenderCx, fragment};
pub use headers::{Hsts, RouteHeaders, SecurityHeaders};
pub use input::Sealed;
pub use input::Valid;
pub use keys::MasterSecret;
pub use limits::Limits;
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

/// Re-exports for app code and derive output.
pub mod prelude {
    pub use crate::{
        ActionError, ActionRef, BotCheck, Cx, Dto, MaybeViewer, Outcome, Sealed, Secret, Valid,
        Viewer, action, global, per_input, per_ip, per_key, per_session, per_user,
    };
}

/// Lower-case hex of `bytes` (digests, key ids, nonces, content hashes).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
