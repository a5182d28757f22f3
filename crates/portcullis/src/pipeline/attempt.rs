//! The request's running state: what [`super::run`] needs to answer even
//! when a stage refuses.
//!
//! A stage's product ([`super::admit::Admitted`], …) exists only if the
//! stage succeeded; a refusal leaves nothing but a [`Rejection`]. Yet the
//! answer to a refusal still depends on what the stages got to before it:
//! the rate-limit headers already earned, the no-JS return path and flash
//! source, the idempotency key claimed (released so the retry runs), the
//! action name for the metrics. Those are the fields of [`Attempt`], the
//! one value every stage may write; everything else flows forward as typed
//! products.

use std::time::Instant;

use axum::response::Response;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Rejection;
use crate::observe;
use crate::respond::{self, ClientKind};
use crate::runtime::Runtime;

use super::guard::Claim;

/// One action request's running state, owned by [`super::run`] and lent to
/// every stage.
///
/// Written only by the pipeline's stages for this one request, from what
/// the request carried (headers, query, body) and what the stages decided;
/// bounded by that request (a few strings, the limit headers of one
/// action's limits, one reference-counted body for the flash); dropped when
/// the response is made. Nothing in it is shared with another request, so
/// one caller's abuse cannot reach another's attempt.
pub(crate) struct Attempt {
    /// JSON (script) or HTML (no-JS form post), from `Accept`.
    pub client: ClientKind,
    /// A fresh random id, echoed in `X-Request-Id` and the logs.
    pub request_id: String,
    /// The no-JS return path: from the query string before stage 1, from
    /// the `_return` field once stage 6 decoded it (validated when used).
    pub return_to: Option<String>,
    /// The idempotency key this attempt claimed (stage 6d): completed with
    /// the response on success, abandoned on a refusal so the retry runs.
    pub claimed: Option<Claim>,
    /// What the no-JS flash needs to send a 422 back to the form (HTML
    /// clients, from stage 6a on).
    pub flash: Option<crate::flash::Source>,
    /// Headers every answer carries, refusal or not (`RateLimit-*` from
    /// stages 4 and 6e).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The action's name once stage 3 resolved it, for the metrics.
    pub action: Option<&'static str>,
    /// An upload slot ([`crate::upload::UploadSlots`]), held until the
    /// request ends so temp files on disk stay bounded by the slots.
    pub upload_slot: Option<crate::upload::SlotGuard>,
}

impl Attempt {
    pub(super) fn new(headers: &HeaderMap) -> Self {
        Attempt {
            client: ClientKind::from_headers(headers),
            request_id: observe::request_id(),
            return_to: None,
            claimed: None,
            flash: None,
            headers: Vec::new(),
            action: None,
            upload_slot: None,
        }
    }

    /// The `action` span. Only names, ids and codes go into it: never input
    /// or cookies.
    pub(super) fn span(&self) -> tracing::Span {
        tracing::info_span!(
            "action",
            action = tracing::field::Empty,
            viewer = tracing::field::Empty,
            request_id = %self.request_id,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        )
    }

    /// Settles the idempotency claim, turns a refusal into its answer (the
    /// no-JS 422 goes back to the form with a sealed flash), adds the
    /// attempt's headers and reports the outcome.
    pub(super) async fn finish(
        self,
        shared: &Runtime,
        outcome: Result<Response, Rejection>,
        span: &tracing::Span,
        started: Instant,
    ) -> Response {
        let idem = &shared.idempotency;
        let (mut response, code) = match outcome {
            Ok(response) => {
                let response = match self.claimed {
                    Some(claim) => claim.complete(idem, response).await,
                    None => response,
                };
                (response, "ok")
            }
            Err(rejection) => {
                if let Some(claim) = &self.claimed {
                    claim.abandon(idem).await;
                }
                span.in_scope(|| {
                    tracing::debug!(code = %rejection.code, digest = %rejection.digest, "action refused")
                });
                let code = rejection.code.as_str();
                // No-JS 422: 303 back to the form with a sealed flash.
                let response = crate::flash::redirect_back(
                    &shared.flash_sealer,
                    &shared.config,
                    self.client,
                    &rejection,
                    self.return_to.as_deref(),
                    self.flash,
                )
                .unwrap_or_else(|| {
                    respond::failure(
                        self.client,
                        &rejection,
                        &shared.config,
                        self.return_to.as_deref(),
                    )
                });
                (response, code)
            }
        };
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        if let Ok(value) = HeaderValue::from_str(&self.request_id) {
            response
                .headers_mut()
                .insert(crate::wire::header::REQUEST_ID, value);
        }
        let took = started.elapsed();
        let action = self.action.unwrap_or(observe::UNRESOLVED);
        shared.metrics.observe(action, code, took);
        span.record("outcome", code);
        span.record("duration_ms", took.as_secs_f64() * 1000.0);
        span.in_scope(|| tracing::info!("action finished"));
        response
    }
}
