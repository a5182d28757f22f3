//! The security primitives an app configures or names, in one place: keys
//! and secrets, sealed values, the taint registry, the origin and proxy
//! settings, bot checks, response headers, safe redirects and the
//! deployment check.
//!
//! Why a module of re-exports: each primitive lives in its own internal
//! module so that it can be reviewed and tested alone (ARCHITECTURE.md,
//! "Layering"); an app should not need to learn that map to configure
//! them. What is here is the supported surface; everything else in those
//! modules is the framework's own.

pub use crate::botcheck::{BotCheck, BotVerifier, BotVerifyError, CHALLENGE_TTL, MAX_BITS};
#[cfg(feature = "bot-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "bot-http")))]
pub use crate::botcheck::{HttpVerifier, HttpVerifierError};
pub use crate::deploy::{
    EnvSecret, Finding, Findings, GENERATE, MIN_SECRET_BYTES, check as check_deployment,
};
pub use crate::headers::{
    Compiled as CompiledHeaders, HeadersError, HeadersManifest, Hsts, PolicyManifest, RouteHeaders,
    SecurityHeaders, Sources,
};
pub use crate::keys::{KeyRing, MasterSecret, Purpose, SecretError};
pub use crate::origin::{AllowlistError, OriginPattern, OriginPolicy};
pub use crate::proxy::{ClientIpHeader, ProxyConfigError, TrustedProxies};
pub use crate::respond::safe_return_path;
pub use crate::seal::{Binding, DEFAULT_TTL, OpenError, SealError, SealFor, seal};
pub use crate::taint::{
    Owner, Registry, Secret, TaintError, forget, mint, registered, unique_value,
};
