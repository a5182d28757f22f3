//! The [`Portcullis`] builder and its `build`: where start-up checks happen
//! (duplicate action names, input types whose fields cannot be learned) and
//! the router is assembled.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request};
use axum::routing::post;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer, SessionStore};

use crate::action::{ActionMeta, Actions};
use crate::botcheck::Challenges;
use crate::config::Config;
use crate::directory::Directory;
use crate::form::FormContext;
use crate::ids::Ids;
use crate::observe::{AuditSink, Metrics};
use crate::ratelimit::Limiter;
use crate::seal::Sealer;

use super::App;
use crate::runtime::Runtime;

/// How often an app with Redis pings it when idle (see [`crate::store`]).
pub const WATCHDOG_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Why an app refused to start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Two actions share a name; names key ids, limits and the manifest.
    #[error("action `{0}` is registered twice; action names must be unique")]
    DuplicateAction(&'static str),
    /// Two fragments share a name; names key the fragment cache and tags.
    #[error("fragment `{0}` is registered twice; fragment names must be unique")]
    DuplicateFragment(&'static str),
    #[error(
        "action `{action}`: an input limit keys on `{got}`, which is not the handler's input type"
    )]
    /// An input limit ([`crate::per_input`]) has a key function for a type
    /// other than the handler's input, so it could never be applied.
    InputLimitType {
        /// The action's name.
        action: &'static str,
        /// The type the limit was declared for.
        got: &'static str,
    },
    /// The Redis connection the default stores share could not be made
    /// (`REDIS_URL` does not parse). Stores handed to
    /// [`Portcullis::stores`] were made by the app, which saw their errors.
    #[error("redis: {0}")]
    Redis(#[source] crate::store::StoreError),
    #[error(
        "production mode needs `Portcullis::accounts(..)`: without an account directory a deleted user's or a changed password's sessions stay valid (install `portcullis::session::NoAccounts` if the app signs nobody in)"
    )]
    /// Production mode without [`Portcullis::accounts`]: sessions would
    /// outlive password changes and account deletion.
    NoAccountDirectory,
    /// The security-header policy is contradictory or malformed.
    #[error(transparent)]
    Headers(#[from] crate::headers::HeadersError),
    /// Production mode with a webhook whose secret is a development
    /// default or too weak.
    #[error("webhook {path}: {finding}")]
    WebhookSecret {
        /// The webhook's mount path.
        path: String,
        /// What is wrong with its secret.
        finding: crate::deploy::Finding,
    },
    /// The action's input type is not a struct with named fields deriving
    /// `Deserialize`, so the decoder could not refuse undeclared fields.
    #[error("action `{action}`: {source}")]
    InputShape {
        /// The action's name.
        action: &'static str,
        /// Why the input's fields could not be learned.
        source: crate::input::ShapeError,
    },
    /// An upload field declares a type that cannot be accepted (one a
    /// browser would run, or one its bytes cannot be recognised by).
    #[error("action `{action}`, upload field `{field}`: {source}")]
    UploadType {
        /// The action's name.
        action: &'static str,
        /// The upload field.
        field: &'static str,
        /// What is wrong with its types.
        source: crate::upload::TypeError,
    },
}

/// The app builder.
pub struct Portcullis<S> {
    config: Config,
    state: S,
    actions: Actions<S>,
    fragments: crate::fragment::Fragments<S>,
    cache: crate::fragment::CacheConfig,
    pages: Router,
    webhooks: Vec<(
        String,
        crate::routes::webhook::Webhook,
        crate::routes::webhook::Handler<S>,
    )>,
    api: Option<(Router, crate::routes::api::ApiConfig, Vec<String>)>,
    audit: Option<Arc<dyn AuditSink>>,
    /// The shared Redis connection, if the app made one (for its sessions).
    redis: Option<crate::store::Redis>,
    /// The stores, if the app chose them ([`Portcullis::stores`]).
    stores: Option<crate::store::Stores>,
    idempotency: crate::idempotency::StoreConfig,
    session_cache: crate::store::SessionCacheConfig,
    accounts: Option<Arc<dyn crate::session::AccountDirectory>>,
    headers: crate::headers::SecurityHeaders,
    classifier: Option<crate::error::ErrorClassifier>,
    taint: Option<Arc<crate::taint::Registry>>,
}

impl<S: Clone + Send + Sync + 'static> Portcullis<S> {
    /// Starts an app from its configuration and the state every handler
    /// receives (cloned per request, so share it behind `Arc`s).
    pub fn new(config: Config, state: S) -> Self {
        Portcullis {
            config,
            state,
            actions: Actions::default(),
            fragments: crate::fragment::Fragments::default(),
            cache: crate::fragment::CacheConfig::default(),
            pages: Router::new(),
            webhooks: Vec::new(),
            api: None,
            audit: None,
            redis: None,
            stores: None,
            idempotency: crate::idempotency::StoreConfig::default(),
            session_cache: crate::store::SessionCacheConfig::default(),
            accounts: None,
            headers: crate::headers::SecurityHeaders::default(),
            classifier: None,
            taint: None,
        }
    }

    /// Uses `redis` as the app's one Redis connection (limits, quotas, spent
    /// challenges, idempotency, tag bus), e.g. the one behind a
    /// [`crate::store::RedisSessionStore`], so sessions share it too.
    /// Without it, `build` makes one from `REDIS_URL` if set.
    pub fn redis(mut self, redis: crate::store::Redis) -> Self {
        self.redis = Some(redis);
        self
    }

    /// The stores limits, idempotency keys, webhook deliveries and tag bumps
    /// live in ([`crate::store::Stores`]: memory, Redis, or the app's own
    /// backends). Without it, `build` uses [`Portcullis::redis`]'s connection
    /// if given, else [`crate::store::Stores::from_config`] (Redis when
    /// `REDIS_URL` is set, else memory bounded by
    /// [`Portcullis::idempotency_store`]).
    pub fn stores(mut self, stores: crate::store::Stores) -> Self {
        self.stores = Some(stores);
        self
    }

    /// The response-header policy (default: the strict one, see
    /// [`crate::security::SecurityHeaders`]); per-route overrides with
    /// [`crate::security::SecurityHeaders::route`].
    pub fn security_headers(mut self, headers: crate::headers::SecurityHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// Bounds of the in-memory idempotency store (default 64 MiB; see
    /// [`crate::store::IdempotencyConfig`]) when `build` chooses the stores
    /// (ignored with [`Portcullis::stores`]).
    pub fn idempotency_store(mut self, config: crate::idempotency::StoreConfig) -> Self {
        self.idempotency = config;
        self
    }

    /// Bounds of the in-process session cache (default 16 MiB, 60 s; `max_bytes`
    /// 0 turns it off). See [`crate::store::SessionCache`]: instances that
    /// share a session store must share a tag bus (Redis).
    pub fn session_cache(mut self, config: crate::store::SessionCacheConfig) -> Self {
        self.session_cache = config;
        self
    }

    /// Installs the account directory: every request of a signed-in viewer
    /// checks the user's security stamp against it (see [`crate::session`]).
    /// Required in production.
    pub fn accounts(mut self, directory: impl crate::session::AccountDirectory) -> Self {
        self.accounts = Some(Arc::new(directory));
        self
    }

    /// Maps this app's errors to public codes other than `internal` (e.g. a
    /// database pool time-out to 503 `database_unavailable`), wherever the
    /// framework turns an app error into a response: actions, webhooks,
    /// [`crate::Page::failed`], [`crate::routes::api::Bearer::failed`], the account
    /// directory and the token store. Per app: another app in the same
    /// process keeps its own (or none).
    pub fn error_classifier(mut self, classifier: crate::error::ErrorClassifier) -> Self {
        self.classifier = Some(classifier);
        self
    }

    /// Scans this app's responses against `registry` instead of the
    /// process-wide default one (which the free functions
    /// [`crate::taint::unique_value`], [`crate::taint::mint`], … fill).
    /// Keep a clone of the `Arc` to register values into it.
    pub fn taint_registry(mut self, registry: Arc<crate::taint::Registry>) -> Self {
        self.taint = Some(registry);
        self
    }

    /// A token-authenticated JSON API: `router`'s handlers extract
    /// [`crate::routes::api::Bearer`]; `limit` applies per user; CORS allows exactly
    /// `cors_origins` (none by default). Mounted outside the origin guard
    /// because bearer tokens are never sent by a browser on its own.
    pub fn api(
        mut self,
        router: Router,
        store: impl crate::routes::api::TokenStore,
        limit: crate::ratelimit::Limit,
        cors_origins: &[&str],
    ) -> Self {
        self.api = Some((
            router,
            crate::routes::api::ApiConfig {
                store: Arc::new(store),
                limit,
            },
            cors_origins.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }

    /// A signed webhook receiver at `path` (POST only). It accepts
    /// cross-origin deliveries because every one must carry a valid HMAC
    /// signature; see [`crate::routes::webhook`].
    pub fn webhook<F, Fut>(
        mut self,
        path: &str,
        hook: crate::routes::webhook::Webhook,
        handler: F,
    ) -> Self
    where
        F: Fn(S, crate::routes::webhook::Event) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), crate::ActionError>> + Send + 'static,
    {
        self.webhooks.push((
            path.to_owned(),
            hook,
            crate::routes::webhook::handler(handler),
        ));
        self
    }

    /// Registers fragments, e.g. `.fragments(pages::fragments)`.
    pub fn fragments(mut self, register: impl FnOnce(&mut crate::fragment::Fragments<S>)) -> Self {
        register(&mut self.fragments);
        self
    }

    /// Render cache bounds (default 32 MiB, 10 minute TTL).
    pub fn render_cache(mut self, cache: crate::fragment::CacheConfig) -> Self {
        self.cache = cache;
        self
    }

    /// Installs the audit hook: called, and awaited, after every successful
    /// mutation (see [`AuditSink`]).
    pub fn audit_sink(mut self, sink: impl AuditSink) -> Self {
        self.audit = Some(Arc::new(sink));
        self
    }

    /// Registers actions, e.g. `.actions(projects::register)`.
    pub fn actions(mut self, register: impl FnOnce(&mut Actions<S>)) -> Self {
        register(&mut self.actions);
        self
    }

    /// Adds page and route handlers (GET pages, assets, …).
    pub fn pages(mut self, router: Router) -> Self {
        self.pages = self.pages.merge(router);
        self
    }

    /// Checks the registry and assembles the router around a session store.
    pub fn build<Store>(self, store: Store) -> Result<App, BuildError>
    where
        Store: SessionStore + Clone,
    {
        if self.accounts.is_none() {
            if self.config.mode == crate::config::Mode::Production {
                return Err(BuildError::NoAccountDirectory);
            }
            tracing::warn!(
                "no account directory (`Portcullis::accounts`): sessions survive password changes and account deletion; production refuses to start like this"
            );
        }
        if self.config.mode == crate::Mode::Production {
            // Production refuses development secrets ([`crate::deploy`]).
            for (path, hook, _) in &self.webhooks {
                if let Some(finding) = hook.production_finding() {
                    let path = path.clone();
                    return Err(BuildError::WebhookSecret { path, finding });
                }
            }
        }
        let mut by_name = HashMap::new();
        let mut actions = Vec::with_capacity(self.actions.list.len());
        for (index, mut action) in self.actions.list.into_iter().enumerate() {
            let name = action.meta.name;
            if by_name.insert(name, index).is_some() {
                return Err(BuildError::DuplicateAction(name));
            }
            if let Some(got) = action.input_limit_mismatch {
                return Err(BuildError::InputLimitType { action: name, got });
            }
            let shape = std::mem::replace(&mut action.shape, Err(crate::input::ShapeError("")))
                .map_err(|source| BuildError::InputShape {
                    action: name,
                    source,
                })?;
            for field in &shape.uploads {
                crate::upload::check_types(field).map_err(|source| BuildError::UploadType {
                    action: name,
                    field: field.name,
                    source,
                })?;
            }
            actions.push((action, shape));
        }
        let metas: Vec<ActionMeta> = actions.iter().map(|(a, _)| a.meta.clone()).collect();
        // An upload action may be sent its text cap plus its files' caps.
        let body_ceiling = actions
            .iter()
            .map(|(a, shape)| {
                let cap = a
                    .meta
                    .body_limit
                    .unwrap_or(self.config.body_limits.body_bytes);
                crate::upload::request_cap(cap, &shape.uploads)
            })
            .fold(self.config.body_limits.body_bytes, usize::max);
        let upload_slots = crate::upload::UploadSlots::new(
            self.config.uploads.slots,
            self.config.uploads.slots_per_caller,
            self.config.uploads.slots_per_address,
        );
        let ids = Ids::new(
            metas.iter().map(|m| m.name).collect(),
            self.config.keys.clone(),
            self.config.id_rotation,
        );
        // One Redis connection for everything that uses Redis.
        let stores = match (self.stores, self.redis) {
            (Some(stores), _) => stores,
            (None, Some(r)) => crate::store::Stores::redis(r, self.config.limiter_timeout),
            (None, None) => crate::store::Stores::from_config(&self.config, &self.idempotency)
                .map_err(BuildError::Redis)?,
        };
        // Every session-store call, whatever the store, runs under a
        // deadline; in front of it the session cache, kept exact across
        // instances over the tag bus.
        let session_cache = Arc::new(crate::store::SessionCache::new(
            &self.session_cache,
            stores.bus(),
        ));
        let sessions = session_layer(
            crate::store::CachedSessions::new(
                crate::store::Deadline::new(store, self.config.deadlines.session),
                session_cache.clone(),
            ),
            &self.config,
        );
        let limiter = Limiter::new(stores.counters().clone());
        let forms = Arc::new(FormContext {
            directory: Arc::new(Directory {
                ids,
                metas,
                by_name,
                challenges: Challenges::new(self.config.keys.clone()),
            }),
            sealer: Arc::new(Sealer::new(&self.config.keys)),
            login_path: self.config.login_path.clone(),
            reauth_path: self.config.reauth_path.clone(),
        });
        let engine =
            crate::fragment::Engine::new(self.fragments, &self.state, &self.cache, forms.clone())
                .map(Arc::new)
                .map_err(BuildError::DuplicateFragment)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            if let Some(bus) = stores.bus() {
                engine.connect_bus(bus.clone(), Some(session_cache.clone()));
            }
            if let Some(r) = stores.redis_connection() {
                r.watch(WATCHDOG_EVERY);
            }
        } else if stores.bus().is_some() {
            tracing::warn!("no tokio runtime at build time: tag invalidations stay local");
        }
        let idempotency = crate::idempotency::Store::new(stores.idempotency().clone());
        let webhook_seen = crate::idempotency::Store::new(stores.webhook_seen().clone());
        let mut cross_origin_routes: Vec<crate::origin::CrossOriginRoute> = self
            .webhooks
            .iter()
            .map(|(path, hook, _)| crate::origin::CrossOriginRoute {
                path: path.clone(),
                method: "POST",
                authenticator: match hook.scheme() {
                    crate::routes::webhook::Scheme::Timestamped => {
                        "webhook-hmac-sha256-timestamped"
                    }
                    crate::routes::webhook::Scheme::HexDigest => "webhook-hmac-sha256",
                },
            })
            .collect();
        let headers =
            Arc::new(self.headers.compile(
                self.config.mode == crate::Mode::Production && self.config.secure_cookies,
            )?);
        if headers.manifest().report_path.is_some() {
            cross_origin_routes.push(crate::headers::report_route());
        }
        let flash_sealer = crate::flash::sealer(&self.config.keys);
        let api_router = match self.api {
            Some((router, config, origins)) => {
                cross_origin_routes.push(crate::origin::CrossOriginRoute {
                    path: "(api router)".into(),
                    method: "*",
                    authenticator: "bearer-token",
                });
                let allowed: Vec<http::HeaderValue> =
                    origins.iter().filter_map(|o| o.parse().ok()).collect();
                let cors = tower_http::cors::CorsLayer::new()
                    .allow_origin(tower_http::cors::AllowOrigin::list(allowed))
                    .allow_methods([http::Method::GET, http::Method::POST])
                    .allow_headers([http::header::AUTHORIZATION, http::header::CONTENT_TYPE]);
                router.layer(axum::Extension(Arc::new(config))).layer(cors)
            }
            None => Router::new(),
        };
        let session_deadline = self.config.deadlines.session;
        let classifier = crate::error::Classifier::new(self.classifier);
        let shared = Arc::new(Runtime {
            cross_origin_routes,
            idempotency,
            webhook_seen,
            fragments: engine,
            session_cache,
            config: self.config,
            forms,
            limiter,
            flash_sealer,
            body_ceiling,
            upload_slots,
            metrics: Metrics::default(),
            audit: self.audit,
            // Every security-stamp lookup (a database call per signed-in
            // request) runs under the session deadline.
            accounts: self.accounts.map(|inner| {
                Arc::new(crate::session::DirectoryDeadline {
                    inner,
                    after: session_deadline,
                    classifier,
                }) as Arc<dyn crate::session::AccountDirectory>
            }),
            classifier,
            headers: headers.clone(),
        });
        let inner = Arc::new(crate::pipeline::Inner {
            shared: shared.clone(),
            state: self.state,
            actions,
        });
        let app_state = inner.state.clone();
        let route_inner = inner.clone();
        let endpoint = post(move |Path(id): Path<String>, request: Request| {
            let inner = route_inner.clone();
            async move { crate::pipeline::run(&inner, Some(&id), request).await }
        });
        // Action responses are scanned for tainted values in the pipeline
        // (stage 8); pages are scanned by this layer.
        // The flash scope gives `Page` a place to hand back the no-JS flash
        // it consumed, and deletes that cookie on the response.
        let page_deadline = shared.config.deadlines.handler;
        let anon_keys = Arc::new(crate::anon::CookieKeys {
            keys: shared.config.keys.clone(),
            secure: shared.config.secure_cookies,
        });
        let pages = self
            .pages
            .layer(axum::middleware::from_fn(move |req, next| {
                crate::routes::page_deadline(page_deadline, req, next)
            }))
            .layer(axum::middleware::from_fn(crate::routes::guard))
            .layer(axum::middleware::map_response(crate::routes::scan_response))
            .layer(axum::middleware::from_fn(crate::flash::scope))
            .layer(axum::middleware::from_fn_with_state(
                anon_keys.clone(),
                crate::anon::layer,
            ));
        let mut hooks = Router::new();
        for (path, hook, handler) in self.webhooks {
            let shared = shared.clone();
            let state = app_state.clone();
            let route_path = path.clone();
            hooks = hooks.route(
                &path,
                post(move |request: Request| {
                    let (shared, state, hook, handler, route_path) = (
                        shared.clone(),
                        state.clone(),
                        hook.clone(),
                        handler.clone(),
                        route_path.clone(),
                    );
                    async move {
                        crate::routes::webhook::receive(
                            &shared,
                            &route_path,
                            &hook,
                            &handler,
                            state,
                            request,
                        )
                        .await
                    }
                }),
            );
        }
        // Pages mint the browser's anonymous scope; actions read it (`anon`).
        // The stack dispatches most action requests itself; this route takes
        // the rest (percent-escaped ids) and answers other methods with 405.
        let actions = Router::new()
            .route(&format!("{}{{id}}", crate::wire::ACTION_PREFIX), endpoint)
            .layer(axum::middleware::from_fn_with_state(
                anon_keys.clone(),
                crate::anon::read,
            ));
        let routes = Router::new()
            .merge(actions)
            .merge(crate::client::router())
            .merge(
                // Routes outside the pipeline may update tags: they get
                // the fragment engine as an extension (the action
                // endpoint does not pay for the insert).
                Router::new()
                    .merge(pages)
                    .merge(hooks)
                    .merge(api_router)
                    .layer(axum::Extension(shared.fragments.clone())),
            )
            .merge(crate::headers::report_router(
                headers.clone(),
                shared.config.body_limits.body_timeout,
            ));
        // The app-wide steps once around everything, not once per route
        // (see `stack`): every response of this app, refusals made by the
        // steps themselves included, gets the security headers and is
        // scanned against the app's own registry.
        let dispatch = super::stack::Dispatch {
            router: routes,
            actions: inner,
            anon: anon_keys,
            runtime: shared.clone(),
        };
        let stack = super::stack::Stack {
            inner: tower::Layer::layer(&sessions, dispatch),
            outer: Arc::new(super::stack::Outer {
                headers,
                taint: self.taint,
                login_path: shared.config.login_path.as_str().into(),
                reauth_path: shared.config.reauth_path.as_str().into(),
            }),
        };
        let router = Router::new().fallback_service(stack);
        Ok(App {
            router,
            runtime: shared,
        })
    }
}

fn session_layer<Store: SessionStore + Clone>(
    store: Store,
    config: &Config,
) -> SessionManagerLayer<Store> {
    let name = crate::session::cookie_name(config);
    let idle = time::Duration::seconds(config.session_idle.as_secs() as i64);
    SessionManagerLayer::new(store)
        .with_name(name)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.secure_cookies)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(idle))
}
