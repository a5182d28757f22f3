//! The app-wide layers as one service, and the dispatch of action requests
//! without the router.
//!
//! Why not `Router::layer`: axum wraps every route in each layer and boxes
//! the result, a `Route` clones its whole boxed chain on every call, and
//! every `from_fn` layer boxes its future and its `Next`. With the app-wide
//! layers stacked that way, an echo action made about 120 allocations, 75 of
//! them in this plumbing (DHAT, BENCHMARKS.md). Here the steps that apply to
//! every request are one async block around the session layer, and the
//! hottest route, the action endpoint, is dispatched by a prefix check.
//!
//! Order, outermost first (the same as the layered router it replaces):
//! taint scope → security headers → session-save guard → sessions
//! (tower-sessions) → [`Dispatch`]: `POST /_action/{id}` to the pipeline,
//! everything else to the app's router, with the runtime as an extension.
//!
//! State: none of its own. [`Outer`] and [`Dispatch`] are built once by
//! [`crate::Portcullis::build`] and read-only; a request can write nothing
//! here, so one client cannot change what another gets.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use axum::routing::future::RouteFuture;
use futures::future::Either;
use tower::Service;

use crate::respond::ClientKind;
use crate::runtime::Runtime;

type BoxedResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// What the outer steps need: built once per app, read-only.
pub(crate) struct Outer {
    pub(crate) headers: Arc<crate::headers::Compiled>,
    pub(crate) taint: Option<Arc<crate::taint::Registry>>,
    pub(crate) login_path: Box<str>,
    pub(crate) reauth_path: Box<str>,
}

/// The outer steps (taint scope, security headers, session-save guard)
/// around `inner` (the session layer over [`Dispatch`]).
#[derive(Clone)]
pub(crate) struct Stack<I> {
    pub(crate) inner: I,
    pub(crate) outer: Arc<Outer>,
}

impl<I> Service<Request> for Stack<I>
where
    I: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    I::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The service that was polled ready serves this request; a clone
        // takes its place (tower's usual hand-over).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let outer = self.outer.clone();
        Box::pin(async move {
            let run = async {
                let prepared = crate::headers::prepare(&outer.headers, &mut request);
                let client = ClientKind::from_headers(request.headers());
                let served = async move {
                    match inner.call(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    }
                };
                let mut response = crate::routes::session_guard(
                    &outer.login_path,
                    &outer.reauth_path,
                    client,
                    served,
                )
                .await;
                crate::headers::finish(&outer.headers, prepared, &mut response);
                response
            };
            Ok(match outer.taint.clone() {
                Some(registry) => crate::taint::scoped(registry, run).await,
                None => run.await,
            })
        })
    }
}

/// Inside the session layer: an action request goes straight to the
/// pipeline, anything else to the app's router.
pub(crate) struct Dispatch<S> {
    pub(crate) router: Router,
    pub(crate) actions: Arc<crate::pipeline::Inner<S>>,
    pub(crate) anon: Arc<crate::anon::CookieKeys>,
    pub(crate) runtime: Arc<Runtime>,
}

impl<S> Clone for Dispatch<S> {
    fn clone(&self) -> Self {
        Self {
            router: self.router.clone(),
            actions: self.actions.clone(),
            anon: self.anon.clone(),
            runtime: self.runtime.clone(),
        }
    }
}

/// The id of a `POST /_action/{id}` request when the router would have
/// extracted exactly that text: one non-empty segment with nothing to
/// percent-decode. Anything else (`%`-escapes, more segments, other
/// methods) takes the router's action route, which decodes and answers
/// 404/405 as before.
pub(crate) fn direct_action_id(request: &Request) -> Option<&str> {
    if request.method() != http::Method::POST {
        return None;
    }
    request
        .uri()
        .path()
        .strip_prefix(crate::wire::ACTION_PREFIX)
        .filter(|id| !id.is_empty() && !id.contains(['/', '%']))
}

impl<S: Clone + Send + Sync + 'static> Service<Request> for Dispatch<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<RouteFuture<Infallible>, BoxedResponse>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        if direct_action_id(&request).is_some() {
            crate::anon::read_into(&self.anon, &mut request);
            let actions = self.actions.clone();
            return Either::Right(Box::pin(async move {
                Ok(crate::pipeline::run(&actions, None, request).await)
            }));
        }
        // Pages, webhooks and the API read the runtime from here.
        request.extensions_mut().insert(self.runtime.clone());
        Either::Left(self.router.call(request))
    }
}
