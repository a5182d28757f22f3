//! One app, several instances, one Redis: sessions, rate limits, quotas,
//! idempotency keys and cache invalidations are shared, so a client may
//! land on any instance. Each instance makes its own Redis connection from
//! `REDIS_URL` (`Config::redis_url`); all of them must also share the
//! master secret (action ids, cookies and seals are derived from it).

use std::error::Error;

use futures::future::BoxFuture;
use maud::{Markup, html};
use portcullis::axum::{Router, routing::get};
use portcullis::prelude::*;
use portcullis::store::Redis;
use portcullis::{AccountDirectory, App, Config, Page, Portcullis, Stamp, UserId, submit};
use serde::{Deserialize, Serialize};

/// Which instance answered (for the page and the responses).
#[derive(Clone)]
pub struct Instance(pub &'static str);

#[derive(Deserialize, garde::Validate)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

#[derive(Serialize, Dto)]
pub struct Guest {
    pub id: UserId,
    pub instance: &'static str,
}

/// Signs in as a new guest: public, so rate-limited and bot-checked.
pub const SIGN_IN: ActionRef<NoInput, Guest> = ActionRef::new("guest.sign_in");
/// Who the session belongs to, on whichever instance asks.
pub const WHO_AM_I: ActionRef<NoInput, Guest> = ActionRef::new("guest.who_am_i");
/// Ends the session on every instance at once.
pub const SIGN_OUT: ActionRef<NoInput, ()> = ActionRef::new("guest.sign_out");
/// Five calls per client address per hour, counted across all instances.
pub const PING: ActionRef<NoInput, Guest> = ActionRef::new("ping");

async fn sign_in(cx: Cx<Instance>, _: MaybeViewer, _: Valid<NoInput>) -> Outcome<Guest> {
    let id = UserId::from(rand::random::<u32>());
    cx.auth().login(id, Vec::new()).await?;
    let instance = cx.state().0;
    Ok(Guest { id, instance })
}

async fn who_am_i(cx: Cx<Instance>, viewer: Viewer, _: Valid<NoInput>) -> Outcome<Guest> {
    let (id, instance) = (viewer.id(), cx.state().0);
    Ok(Guest { id, instance })
}

async fn sign_out(cx: Cx<Instance>, _: Viewer, _: Valid<NoInput>) -> Outcome<()> {
    cx.auth().logout().await?;
    Ok(())
}

async fn ping(cx: Cx<Instance>, viewer: MaybeViewer, _: Valid<NoInput>) -> Outcome<Guest> {
    let id = viewer.get().map_or(0, Viewer::id);
    Ok(Guest {
        id,
        instance: cx.state().0,
    })
}

fn register(actions: &mut portcullis::Actions<Instance>) {
    actions
        .add(
            action(SIGN_IN)
                .public()
                .limit(per_ip(20).per_hour())
                .bot_check(BotCheck::Honeypot)
                .mutates(&["session"])
                .not_idempotent()
                .handler(sign_in),
        )
        .add(
            action(WHO_AM_I)
                .authenticated()
                .read_only()
                .handler(who_am_i),
        )
        .add(
            action(SIGN_OUT)
                .authenticated()
                .mutates(&["session"])
                .idempotent()
                .handler(sign_out),
        )
        .add(
            action(PING)
                .public()
                .limit(per_ip(5).per_hour())
                .bot_check(BotCheck::Honeypot)
                .read_only()
                .handler(ping),
        );
}

/// Guests exist as long as their session: every user id is known, with one
/// stamp. A real app reads the stamp from its database, which the
/// instances share like they share Redis (see the demo's `dal/users.rs`).
struct Guests;

impl AccountDirectory for Guests {
    fn security_stamp(&self, _: UserId) -> BoxFuture<'static, Result<Option<Stamp>, ActionError>> {
        Box::pin(async { Ok(Some(Stamp::new("guest"))) })
    }
}

async fn home(page: Page) -> Markup {
    let who = page.viewer().map(|v| format!("guest {}", v.id()));
    html! {
        script type="module" src=(page.script_src()) {}
        link rel="stylesheet" href=(page.style_href());
        p { "Signed in as " (who.as_deref().unwrap_or("nobody")) }
        (page.form(SIGN_IN).body(html! { (submit("Sign in as a new guest")) }))
        (page.form(PING).body(html! { (submit("Ping")) }))
        (page.form(SIGN_OUT).body(html! { (submit("Sign out")) }))
    }
}

/// One instance, named `name`. Sessions and everything else the framework
/// keeps between requests go to the Redis of `config.redis_url`, on one
/// connection.
pub fn instance(name: &'static str, config: Config) -> Result<App, Box<dyn Error>> {
    let redis = Redis::from_config(&config)?.ok_or("set REDIS_URL: instances share Redis")?;
    let app = Portcullis::new(config, Instance(name))
        .actions(register)
        .pages(Router::new().route("/", get(home)))
        .accounts(Guests)
        .redis(redis.clone())
        .build(redis.sessions())?;
    Ok(app)
}
