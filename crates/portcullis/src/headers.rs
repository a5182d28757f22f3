//! Security headers on every response, by default.
//!
//! Why a framework layer and not advice: the origin check cannot see
//! clickjacking (a framed form posts same-origin), one escaping mistake
//! becomes script execution without a Content-Security-Policy, and a
//! signed-in page without `Cache-Control` is shown by a shared cache or the
//! back button after sign-out. So [`crate::Portcullis`] installs one layer
//! around the whole router — actions, pages, error pages, the client script,
//! webhooks and the token API — that sets, on every response:
//!
//! * `Content-Security-Policy`: `default-src 'self'; script-src 'self'
//!   'nonce-…'; style-src 'self' 'nonce-…'; object-src 'none'; base-uri
//!   'none'; form-action 'self'; frame-ancestors 'none'` plus the report
//!   directives. The nonce is fresh for every response (128 random bits) and
//!   page code reads it from [`crate::Page::csp_nonce`], so an app can add an
//!   inline `<script nonce=…>` legitimately; an injected one has no nonce and
//!   does not run. There is no `'unsafe-inline'`, for scripts or styles: the
//!   framework's own markup has no `style=` attribute and no inline script
//!   or style (its error pages and the honeypot use the framework's stylesheet,
//!   [`crate::client::style_path`], which the app's layout links).
//! * `X-Frame-Options: DENY` (for browsers without `frame-ancestors`),
//!   `X-Content-Type-Options: nosniff`, `Referrer-Policy:
//!   strict-origin-when-cross-origin`, `Cross-Origin-Opener-Policy:
//!   same-origin`, `Cross-Origin-Resource-Policy: same-origin`, a
//!   `Permissions-Policy` that turns off powerful features, and
//!   `Strict-Transport-Security` in production when cookies are `Secure`.
//! * `Cache-Control: no-store` and `Vary: Cookie` on every action response,
//!   every page a `Page` rendered for a signed-in viewer, every response that
//!   sets a cookie, and every response whose handler did not choose a
//!   `Cache-Control` itself: a public page is cacheable only if the app says
//!   so (sets `Cache-Control` in its handler), and never when it was rendered
//!   for a signed-in viewer.
//!
//! The framework's values replace any the handler set (except
//! `Cache-Control`, as above): a weaker policy for one route is declared with
//! [`SecurityHeaders::route`], where the manifest lists it
//! (`securityHeaders`) and `portcullis audit` flags it unless it carries a
//! reason ([`RouteHeaders::because`]).
//!
//! Violations: the policy names [`CSP_REPORT_PATH`] in `report-uri` and (through
//! `Reporting-Endpoints`) `report-to`; [`report`] logs each report as one
//! bounded warning line. [`SecurityHeaders::report_only`] sends the policy as
//! `Content-Security-Policy-Report-Only` (to try a policy before enforcing
//! it); the audit flags that too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::Serialize;

use crate::wire::CSP_REPORT_PATH;

/// The `Reporting-Endpoints` group name the policy's `report-to` names.
const REPORT_GROUP: &str = "portcullis-csp";
/// Stands for the per-response nonce in a compiled policy.
const NONCE_SLOT: &str = "{nonce}";
/// Features a server-action app has no use for; an app that needs one
/// replaces the whole value with [`SecurityHeaders::permissions_policy`].
const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()";

/// `Strict-Transport-Security` choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hsts {
    /// One year, in production when cookies are `Secure` (the default).
    Auto,
    /// Never sent (e.g. TLS terminates at a proxy that sets it).
    Off,
    /// Always sent with this `max-age`, optionally `includeSubDomains`.
    MaxAge {
        /// How long browsers insist on HTTPS, in seconds.
        seconds: u64,
        /// Whether every subdomain is covered too.
        include_subdomains: bool,
    },
}

/// Extra sources for the policy's fetch directives (all empty by default).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sources {
    /// Extra `script-src` sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub script_src: Vec<String>,
    /// Extra `style-src` sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub style_src: Vec<String>,
    /// Extra `img-src` sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub img_src: Vec<String>,
    /// Extra `connect-src` sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_src: Vec<String>,
    /// Extra `font-src` sources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub font_src: Vec<String>,
    /// Extra `form-action` origins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub form_action: Vec<String>,
}

impl Sources {
    fn merged(&self, more: &Sources) -> Sources {
        let join = |a: &Vec<String>, b: &Vec<String>| {
            let mut v = a.clone();
            v.extend(b.iter().filter(|s| !a.contains(s)).cloned());
            v
        };
        Sources {
            script_src: join(&self.script_src, &more.script_src),
            style_src: join(&self.style_src, &more.style_src),
            img_src: join(&self.img_src, &more.img_src),
            connect_src: join(&self.connect_src, &more.connect_src),
            font_src: join(&self.font_src, &more.font_src),
            form_action: join(&self.form_action, &more.form_action),
        }
    }

    /// Every (directive, source) pair.
    fn all(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("script-src", &self.script_src),
            ("style-src", &self.style_src),
            ("img-src", &self.img_src),
            ("connect-src", &self.connect_src),
            ("font-src", &self.font_src),
            ("form-action", &self.form_action),
        ]
        .into_iter()
        .flat_map(|(n, v)| v.iter().map(move |s| (n, s)))
    }
}

/// The app-wide header policy: [`crate::Portcullis::security_headers`].
/// `SecurityHeaders::default()` is the strict policy described in the
/// module docs; every method extends or relaxes it, visibly.
#[derive(Clone, Debug)]
pub struct SecurityHeaders {
    report_only: bool,
    reports: bool,
    sources: Sources,
    frame_ancestors: Vec<String>,
    hsts: Hsts,
    permissions_policy: String,
    report_budget: u32,
    routes: Vec<(String, RouteHeaders)>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        SecurityHeaders {
            report_only: false,
            reports: true,
            sources: Sources::default(),
            frame_ancestors: Vec::new(),
            hsts: Hsts::Auto,
            permissions_policy: PERMISSIONS_POLICY.to_owned(),
            report_budget: 60,
            routes: Vec::new(),
        }
    }
}

impl SecurityHeaders {
    /// Send the policy as `Content-Security-Policy-Report-Only`: violations
    /// are reported, nothing is blocked. For trying a policy; flagged by
    /// the audit.
    pub fn report_only(mut self, on: bool) -> Self {
        self.report_only = on;
        self
    }
    /// Turn the `report-uri`/`report-to` directives (and the report
    /// endpoint's logging) off.
    pub fn reports(mut self, on: bool) -> Self {
        self.reports = on;
        self
    }
    /// At most `per_minute` violation reports are logged per minute across
    /// all clients (default 60); the rest are counted, not logged.
    pub fn report_budget(mut self, per_minute: u32) -> Self {
        self.report_budget = per_minute.max(1);
        self
    }
    /// An extra `script-src` source (e.g. `https://cdn.example.com`).
    pub fn script_src(mut self, source: &str) -> Self {
        self.sources.script_src.push(source.to_owned());
        self
    }
    /// An extra `style-src` source.
    pub fn style_src(mut self, source: &str) -> Self {
        self.sources.style_src.push(source.to_owned());
        self
    }
    /// An extra `img-src` source.
    pub fn img_src(mut self, source: &str) -> Self {
        self.sources.img_src.push(source.to_owned());
        self
    }
    /// An extra `connect-src` source.
    pub fn connect_src(mut self, source: &str) -> Self {
        self.sources.connect_src.push(source.to_owned());
        self
    }
    /// An extra `font-src` source.
    pub fn font_src(mut self, source: &str) -> Self {
        self.sources.font_src.push(source.to_owned());
        self
    }
    /// An origin forms may post to besides this one (`form-action`).
    pub fn form_action(mut self, origin: &str) -> Self {
        self.sources.form_action.push(origin.to_owned());
        self
    }
    /// Origins allowed to frame every page (default: none). Prefer a
    /// per-route override ([`RouteHeaders::frame_ancestors`]).
    pub fn frame_ancestors(mut self, origins: &[&str]) -> Self {
        self.frame_ancestors = origins.iter().map(|s| (*s).to_owned()).collect();
        self
    }
    /// When to send `Strict-Transport-Security` (default [`Hsts::Auto`]).
    pub fn hsts(mut self, hsts: Hsts) -> Self {
        self.hsts = hsts;
        self
    }
    /// Replaces the whole `Permissions-Policy` value.
    pub fn permissions_policy(mut self, value: &str) -> Self {
        self.permissions_policy = value.to_owned();
        self
    }
    /// A different policy for the routes matching `path` (axum syntax:
    /// `/embed/{id}`, `/docs/{*rest}`), on top of the app-wide one.
    pub fn route(mut self, path: &str, headers: RouteHeaders) -> Self {
        self.routes.push((path.to_owned(), headers));
        self
    }
}

/// A per-route relaxation of the app-wide policy, e.g. a page a partner may
/// frame: `RouteHeaders::new().frame_ancestors(&["https://partner.example"])
/// .because("the partner dashboard embeds the status widget")`.
#[derive(Clone, Debug, Default)]
pub struct RouteHeaders {
    sources: Sources,
    frame_ancestors: Option<Vec<String>>,
    report_only: bool,
    reason: Option<String>,
}

impl RouteHeaders {
    /// No relaxation yet: the app-wide policy as is.
    pub fn new() -> Self {
        RouteHeaders::default()
    }
    /// Origins that may frame this route (replaces `'none'`; also drops
    /// `X-Frame-Options`, which cannot name an origin).
    pub fn frame_ancestors(mut self, origins: &[&str]) -> Self {
        self.frame_ancestors = Some(origins.iter().map(|s| (*s).to_owned()).collect());
        self
    }
    /// An extra `script-src` source.
    pub fn script_src(mut self, source: &str) -> Self {
        self.sources.script_src.push(source.to_owned());
        self
    }
    /// An extra `style-src` source.
    pub fn style_src(mut self, source: &str) -> Self {
        self.sources.style_src.push(source.to_owned());
        self
    }
    /// An extra `img-src` source.
    pub fn img_src(mut self, source: &str) -> Self {
        self.sources.img_src.push(source.to_owned());
        self
    }
    /// An extra `connect-src` source.
    pub fn connect_src(mut self, source: &str) -> Self {
        self.sources.connect_src.push(source.to_owned());
        self
    }
    /// An origin this route's forms may post to besides this one.
    pub fn form_action(mut self, origin: &str) -> Self {
        self.sources.form_action.push(origin.to_owned());
        self
    }
    /// Send this route's policy report-only: nothing is blocked there
    /// (flagged by the audit).
    pub fn report_only(mut self) -> Self {
        self.report_only = true;
        self
    }
    /// Why this relaxation is safe: shown in the manifest and the audit
    /// report, which then lists the finding as reviewed.
    pub fn because(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }
}

/// Why a header policy was refused at build time.
#[derive(Debug, thiserror::Error)]
pub enum HeadersError {
    /// A source that could smuggle in another source or directive.
    #[error(
        "security headers: source `{value}` in {directive} is not a single CSP source (no spaces, `;` or `,`)"
    )]
    BadSource {
        /// The directive it was given for, e.g. `script-src`.
        directive: &'static str,
        /// The source as given.
        value: String,
    },
    /// A route pattern the router refuses (bad syntax, or a duplicate).
    #[error("security headers: route pattern `{path}`: {detail}")]
    BadRoute {
        /// The pattern as given.
        path: String,
        /// The router's complaint.
        detail: String,
    },
    /// A `Permissions-Policy` value that is not a valid header value.
    #[error("security headers: Permissions-Policy `{0}` is not a valid header value")]
    BadPermissions(String),
    /// A Content-Security-Policy that is not a valid header value (a source
    /// with a character headers cannot carry).
    #[error("security headers: Content-Security-Policy `{0}` is not a valid header value")]
    BadPolicy(String),
}

/// One policy as the manifest shows it (`{nonce}` stands for the nonce).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyManifest {
    /// The route pattern, or `*` for the app-wide policy.
    pub path: String,
    /// The policy's header value.
    pub content_security_policy: String,
    /// Sent as `Content-Security-Policy-Report-Only` (nothing blocked).
    pub report_only: bool,
    /// Origins that may frame it (empty: none).
    pub frame_ancestors: Vec<String>,
    /// How it is weaker than the framework's default (what the audit flags).
    pub weakens: Vec<String>,
    /// The author's reason for a route override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The `securityHeaders` section of the manifest.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeadersManifest {
    /// The app-wide policy.
    pub default: PolicyManifest,
    /// The per-route overrides, in declaration order.
    pub routes: Vec<PolicyManifest>,
    /// The `Strict-Transport-Security` value, when it is sent.
    pub hsts: Option<String>,
    /// Where violation reports go, when reports are on.
    pub report_path: Option<&'static str>,
}

/// One compiled policy.
#[derive(Debug)]
struct Variant {
    /// The CSP with [`NONCE_SLOT`] where the nonce goes.
    template: String,
    /// `template` cut at each [`NONCE_SLOT`]: the nonce goes between the
    /// pieces (no search of the template per response).
    pieces: Vec<String>,
    /// The policy for a response that never asked for its nonce (no page
    /// rendered: action results, JSON, redirects): `template` without its
    /// `'nonce-…'` sources. Nothing in such a response carries a nonce, so
    /// it allows exactly what the nonce policy would; built once, sent as a
    /// shared value.
    without_nonce: HeaderValue,
    report_only: bool,
    framable: bool,
    manifest: PolicyManifest,
}

/// The policy ready to apply: built once, read on every response.
pub struct Compiled {
    default: Variant,
    routes: matchit::Router<usize>,
    variants: Vec<Variant>,
    hsts: Option<HeaderValue>,
    permissions: HeaderValue,
    reporting_endpoints: Option<HeaderValue>,
    reports: ReportLog,
    reports_on: bool,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("default", &self.default.template)
            .field("routes", &self.variants.len())
            .finish()
    }
}

fn check_source(directive: &'static str, source: &str) -> Result<(), HeadersError> {
    let bad = source.is_empty()
        || source
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ';' || c == ',')
        || HeaderValue::from_str(source).is_err();
    if bad {
        return Err(HeadersError::BadSource {
            directive,
            value: source.to_owned(),
        });
    }
    Ok(())
}

/// How a source weakens its directive, if it does.
fn weakness(directive: &str, source: &str) -> Option<String> {
    let s = source.to_ascii_lowercase();
    let unsafe_keyword = s.starts_with("'unsafe-") || s == "'wasm-unsafe-eval'";
    let wildcard = s == "*" || s.ends_with(':') || s.contains("://*");
    if unsafe_keyword || wildcard || directive == "script-src" || directive == "form-action" {
        Some(format!("{directive} {source}"))
    } else {
        None
    }
}

fn compile_variant(
    path: &str,
    sources: &Sources,
    frame_ancestors: &[String],
    report_only: bool,
    reports: bool,
    reason: Option<String>,
) -> Result<Variant, HeadersError> {
    for (directive, source) in sources.all() {
        check_source(directive, source)?;
    }
    for origin in frame_ancestors {
        check_source("frame-ancestors", origin)?;
    }
    let list = |base: &str, extra: &[String]| {
        let mut s = base.to_owned();
        for e in extra {
            s.push(' ');
            s.push_str(e);
        }
        s
    };
    let nonce = format!("'nonce-{NONCE_SLOT}'");
    let mut csp = vec![
        "default-src 'self'".to_owned(),
        list(&format!("script-src 'self' {nonce}"), &sources.script_src),
        list(&format!("style-src 'self' {nonce}"), &sources.style_src),
    ];
    if !sources.img_src.is_empty() {
        csp.push(list("img-src 'self'", &sources.img_src));
    }
    if !sources.connect_src.is_empty() {
        csp.push(list("connect-src 'self'", &sources.connect_src));
    }
    if !sources.font_src.is_empty() {
        csp.push(list("font-src 'self'", &sources.font_src));
    }
    csp.push("object-src 'none'".into());
    csp.push("base-uri 'none'".into());
    csp.push(list("form-action 'self'", &sources.form_action));
    if frame_ancestors.is_empty() {
        csp.push("frame-ancestors 'none'".into());
    } else {
        csp.push(list("frame-ancestors", frame_ancestors));
    }
    if reports {
        csp.push(format!("report-uri {CSP_REPORT_PATH}"));
        csp.push(format!("report-to {REPORT_GROUP}"));
    }
    let template = csp.join("; ");
    let mut weakens: Vec<String> = sources.all().filter_map(|(d, s)| weakness(d, s)).collect();
    for origin in frame_ancestors {
        weakens.push(format!("frame-ancestors {origin}"));
    }
    if report_only {
        weakens.push("report-only (nothing is blocked)".into());
    }
    let pieces = template.split(NONCE_SLOT).map(str::to_owned).collect();
    let without_nonce = template.replace(&format!(" {nonce}"), "");
    let without_nonce = HeaderValue::from_str(&without_nonce)
        .map_err(|_| HeadersError::BadPolicy(template.clone()))?;
    Ok(Variant {
        pieces,
        without_nonce,
        manifest: PolicyManifest {
            path: path.to_owned(),
            content_security_policy: template.clone(),
            report_only,
            frame_ancestors: frame_ancestors.to_vec(),
            weakens,
            reason,
        },
        template,
        report_only,
        framable: !frame_ancestors.is_empty(),
    })
}

impl SecurityHeaders {
    /// Checks every source and route and prepares the header values.
    /// `production_tls`: production mode with `Secure` cookies (HSTS auto).
    pub(crate) fn compile(&self, production_tls: bool) -> Result<Compiled, HeadersError> {
        let default = compile_variant(
            "*",
            &self.sources,
            &self.frame_ancestors,
            self.report_only,
            self.reports,
            None,
        )?;
        let mut routes = matchit::Router::new();
        let mut variants = Vec::with_capacity(self.routes.len());
        for (path, r) in &self.routes {
            let frame = r.frame_ancestors.as_ref().unwrap_or(&self.frame_ancestors);
            let v = compile_variant(
                path,
                &self.sources.merged(&r.sources),
                frame,
                self.report_only || r.report_only,
                self.reports,
                r.reason.clone(),
            )?;
            routes
                .insert(path.as_str(), variants.len())
                .map_err(|e| HeadersError::BadRoute {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            variants.push(v);
        }
        let hsts = match self.hsts {
            Hsts::Off => None,
            Hsts::Auto if !production_tls => None,
            Hsts::Auto => Some(HeaderValue::from_static("max-age=31536000")),
            Hsts::MaxAge {
                seconds,
                include_subdomains,
            } => Some(
                HeaderValue::from_str(&format!(
                    "max-age={seconds}{}",
                    if include_subdomains {
                        "; includeSubDomains"
                    } else {
                        ""
                    }
                ))
                .expect("digits and ASCII"),
            ),
        };
        let permissions = HeaderValue::from_str(&self.permissions_policy)
            .map_err(|_| HeadersError::BadPermissions(self.permissions_policy.clone()))?;
        Ok(Compiled {
            default,
            routes,
            variants,
            hsts,
            permissions,
            reporting_endpoints: self.reports.then(|| {
                HeaderValue::from_str(&format!("{REPORT_GROUP}=\"{CSP_REPORT_PATH}\""))
                    .expect("constant ASCII")
            }),
            reports: ReportLog::new(self.report_budget),
            reports_on: self.reports,
        })
    }
}

impl Compiled {
    fn variant(&self, path: &str) -> &Variant {
        match self.routes.at(path) {
            Ok(m) => &self.variants[*m.value],
            Err(_) => &self.default,
        }
    }

    /// The manifest's `securityHeaders` section.
    pub fn manifest(&self) -> HeadersManifest {
        HeadersManifest {
            default: self.default.manifest.clone(),
            routes: self.variants.iter().map(|v| v.manifest.clone()).collect(),
            hsts: self
                .hsts
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            report_path: self.reports_on.then_some(CSP_REPORT_PATH),
        }
    }

    /// Violation reports logged and dropped (over budget) so far.
    pub fn report_counts(&self) -> (u64, u64) {
        (
            self.reports.logged.load(Ordering::Relaxed),
            self.reports.dropped.load(Ordering::Relaxed),
        )
    }
}

/// What the layer hands to [`crate::Page`] for one request: the response's
/// nonce, and a flag the page sets when it renders for a signed-in viewer.
///
/// One per request, created here and dropped with the request: nothing is
/// shared between requests, so no user can affect another's. The nonce is
/// drawn the first time something asks for it (a page rendering an inline
/// script or style); a response that never asked gets the policy without
/// nonce sources ([`Variant::without_nonce`]).
#[derive(Debug, Default)]
pub(crate) struct ResponseFacts {
    nonce: std::sync::OnceLock<String>,
    personalized: AtomicBool,
}

impl ResponseFacts {
    pub(crate) fn nonce(&self) -> &str {
        self.nonce.get_or_init(fresh_nonce)
    }
    /// The response shows this viewer's data: never cache it.
    pub(crate) fn mark_personalized(&self) {
        self.personalized.store(true, Ordering::Relaxed);
    }
}

fn fresh_nonce() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

/// What the header step learned from a request before it ran: the variant
/// for its path and, for a page, the facts its render reports back.
///
/// The header step is the first of the app's own steps inside the taint
/// scope ([`crate::app`]'s stack): [`prepare`] runs before the session
/// layer and the routes, [`finish`] on every response, refusals made by
/// the steps inside it included.
pub(crate) struct Prepared<'c> {
    variant: &'c Variant,
    action: bool,
    facts: Option<Arc<ResponseFacts>>,
}

/// Before the request runs. An action request renders no page, so it gets no
/// [`ResponseFacts`] (one allocation and one extension map fewer on the
/// hottest path) and is always treated as personal (`no-store`).
pub(crate) fn prepare<'c>(compiled: &'c Compiled, request: &mut Request) -> Prepared<'c> {
    let action = request.uri().path().starts_with(crate::wire::ACTION_PREFIX);
    let variant = compiled.variant(request.uri().path());
    let facts = (!action).then(|| {
        let facts = Arc::new(ResponseFacts::default());
        request.extensions_mut().insert(facts.clone());
        facts
    });
    Prepared {
        variant,
        action,
        facts,
    }
}

/// On the response: every security header, `Cache-Control` by whether the
/// response is personal.
pub(crate) fn finish(compiled: &Compiled, prepared: Prepared<'_>, response: &mut Response) {
    let Prepared {
        variant,
        action,
        facts,
    } = prepared;
    let personal = action
        || facts
            .as_ref()
            .is_some_and(|f| f.personalized.load(Ordering::Relaxed))
        || response.headers().contains_key(header::SET_COOKIE);
    let nonce = facts
        .as_ref()
        .and_then(|f| f.nonce.get())
        .map(String::as_str);
    apply(compiled, variant, nonce, personal, response.headers_mut());
}

/// Header names `http` has no constant for, built at compile time.
const CROSS_ORIGIN_OPENER_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-opener-policy");
const CROSS_ORIGIN_RESOURCE_POLICY: HeaderName =
    HeaderName::from_static("cross-origin-resource-policy");
const PERMISSIONS_POLICY_HEADER: HeaderName = HeaderName::from_static("permissions-policy");
const REPORTING_ENDPOINTS: HeaderName = HeaderName::from_static("reporting-endpoints");

/// The CSP for one response: the nonce policy when something drew the
/// nonce, else the prepared value without nonce sources.
fn csp_value(v: &Variant, nonce: Option<&str>) -> Option<HeaderValue> {
    let Some(nonce) = nonce else {
        return Some(v.without_nonce.clone());
    };
    let len = v.pieces.iter().map(String::len).sum::<usize>() + nonce.len() * v.pieces.len();
    let mut csp = String::with_capacity(len);
    for (i, piece) in v.pieces.iter().enumerate() {
        if i > 0 {
            csp.push_str(nonce);
        }
        csp.push_str(piece);
    }
    HeaderValue::from_str(&csp).ok()
}

fn apply(c: &Compiled, v: &Variant, nonce: Option<&str>, personal: bool, h: &mut HeaderMap) {
    // Up to ten headers are added: one growth of the map, not several.
    h.reserve(10);
    let name = if v.report_only {
        header::CONTENT_SECURITY_POLICY_REPORT_ONLY
    } else {
        header::CONTENT_SECURITY_POLICY
    };
    // A served file's sandbox policy is stricter than any page's: kept.
    let download = h
        .get(header::CONTENT_SECURITY_POLICY)
        .is_some_and(|v| v.as_bytes() == crate::wire::DOWNLOAD_CSP.as_bytes());
    // Only one of the two, whatever the handler set.
    h.remove(header::CONTENT_SECURITY_POLICY_REPORT_ONLY);
    if download {
        // Stays as it is.
    } else if let Some(value) = csp_value(v, nonce) {
        h.remove(header::CONTENT_SECURITY_POLICY);
        h.insert(name, value);
    } else {
        h.remove(header::CONTENT_SECURITY_POLICY);
    }
    if v.framable {
        h.remove(header::X_FRAME_OPTIONS);
    } else {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(
        CROSS_ORIGIN_OPENER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        CROSS_ORIGIN_RESOURCE_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(PERMISSIONS_POLICY_HEADER, c.permissions.clone());
    if let Some(e) = &c.reporting_endpoints {
        h.insert(REPORTING_ENDPOINTS, e.clone());
    }
    match &c.hsts {
        Some(v) => {
            h.insert(header::STRICT_TRANSPORT_SECURITY, v.clone());
        }
        None => {
            h.remove(header::STRICT_TRANSPORT_SECURITY);
        }
    }
    if personal || !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if h.get(header::CACHE_CONTROL)
        .is_some_and(|v| v.as_bytes() == b"no-store")
    {
        let varies_on_cookie = h
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|p| p.trim().eq_ignore_ascii_case("cookie") || p.trim() == "*")
            });
        if !varies_on_cookie {
            h.append(header::VARY, HeaderValue::from_static("Cookie"));
        }
    }
}

/// The violation log's state: one GCRA bucket (the limiter's own decision
/// function, [`crate::store::gcra`]) and two counters.
///
/// * Who writes it: anyone who can send a POST to [`CSP_REPORT_PATH`] — it must
///   accept unauthenticated, cross-site requests, because that is how
///   browsers send reports.
/// * What bounds it: three `u64`s, whatever the traffic; a report body is
///   capped at [`REPORT_BODY_CAP`] bytes and read under the body deadline,
///   at most [`REPORTS_PER_BODY`] reports of one batch are looked at, and
///   each logged field is cut to [`FIELD_CAP`] characters. At most
///   `report_budget` lines per minute are written (burst of the same size).
/// * What removes it: nothing needs to; the bucket refills with time.
/// * What one abuser does to others: a flood uses up the minute's log
///   budget, so other users' genuine reports in that minute are counted in
///   `dropped` (logged as one summary line later) rather than logged one by
///   one. Nobody's requests are slowed or refused; log volume and memory
///   stay bounded (the flood test in `tests/headers.rs`).
#[derive(Debug)]
struct ReportLog {
    tat: AtomicU64,
    logged: AtomicU64,
    dropped: AtomicU64,
    budget: u32,
}

/// Largest report body read (bytes); larger is 413.
pub const REPORT_BODY_CAP: usize = 16 * 1024;
/// Reports looked at in one `application/reports+json` batch.
pub const REPORTS_PER_BODY: usize = 8;
/// Longest logged field (characters).
pub const FIELD_CAP: usize = 256;

impl ReportLog {
    fn new(budget: u32) -> Self {
        ReportLog {
            tat: AtomicU64::new(0),
            logged: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            budget,
        }
    }

    /// Takes one log line from the budget.
    fn admit(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as u64;
        let period = Duration::from_secs(60).as_micros() as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let d = crate::store::gcra::check(tat, now, self.budget, period);
            if !d.allowed {
                return false;
            }
            match self.tat.compare_exchange_weak(
                tat,
                d.new_tat,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
}

fn cut(v: Option<&serde_json::Value>) -> String {
    let s = match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    s.chars()
        .filter(|c| !c.is_control())
        .take(FIELD_CAP)
        .collect()
}

/// `POST /_portcullis/csp-report`: logs each violation (bounded, see
/// [`ReportLog`]) and answers 204. Accepts `application/csp-report`
/// (`report-uri`) and `application/reports+json` (`report-to`) bodies.
pub(crate) async fn report(
    compiled: Arc<Compiled>,
    timeout: Duration,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let reject = |r: crate::Rejection| {
        crate::respond::failure_with_paths(
            crate::respond::ClientKind::Json,
            &r,
            "/login",
            "/reauth",
            None,
        )
    };
    if let Err(r) = crate::body::check_declared_length(&parts.headers, REPORT_BODY_CAP) {
        return reject(r);
    }
    let body = match crate::body::read_body(body, REPORT_BODY_CAP, timeout).await {
        Ok(b) => b,
        Err(r) => return reject(r),
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return reject(crate::Rejection::with_message(
            crate::ErrorCode::MalformedBody,
            "A CSP report is JSON.",
        ));
    };
    // `report-uri`: {"csp-report": {...}}; `report-to`: [{"type", "body"}].
    let reports: Vec<&serde_json::Value> = match &json {
        serde_json::Value::Array(list) => list
            .iter()
            .take(REPORTS_PER_BODY)
            .filter_map(|r| r.get("body"))
            .collect(),
        other => other.get("csp-report").into_iter().collect(),
    };
    let log = &compiled.reports;
    for r in reports {
        let field = |a: &str, b: &str| cut(r.get(a).or_else(|| r.get(b)));
        if !compiled.reports_on || !log.admit() {
            log.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        log.logged.fetch_add(1, Ordering::Relaxed);
        let dropped_so_far = log.dropped.load(Ordering::Relaxed);
        tracing::warn!(
            target: "portcullis::csp",
            document = %field("document-uri", "documentURL"),
            directive = %field("effective-directive", "effectiveDirective"),
            blocked = %field("blocked-uri", "blockedURL"),
            source = %field("source-file", "sourceFile"),
            line = %field("line-number", "lineNumber"),
            sample = %field("script-sample", "sample"),
            dropped_so_far,
            "content security policy violation"
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `POST` [`CSP_REPORT_PATH`], mounted outside the origin guard: browsers send
/// reports without credentials, and the only effect is a bounded log line.
pub(crate) fn report_router(compiled: Arc<Compiled>, timeout: Duration) -> axum::Router {
    axum::Router::new().route(
        CSP_REPORT_PATH,
        axum::routing::post(move |request: Request| report(compiled.clone(), timeout, request)),
    )
}

/// The report endpoint as the manifest lists it among cross-origin routes.
pub(crate) fn report_route() -> crate::origin::CrossOriginRoute {
    crate::origin::CrossOriginRoute {
        path: CSP_REPORT_PATH.into(),
        method: "POST",
        authenticator: "none: log-only, rate-limited CSP report sink",
    }
}
