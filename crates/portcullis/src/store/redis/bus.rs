//! [`RedisTagBus`]: tag bumps over Redis pub/sub.

use futures::StreamExt;
use futures::future::BoxFuture;

use super::CONNECT_TIMEOUT;
use crate::store::bus::{TagBus, TagStream};
use crate::store::{Redis, StoreError, StoreFuture};

/// The name this store gives its errors and the outage log.
const STORE: &str = "tag bus";

/// The Redis [`TagBus`]: publishes on the app's shared connection (under
/// its deadline) to the channel `{prefix}tags`; each subscription is a
/// connection of its own (a subscribed RESP2 connection can do nothing
/// else), opened within [`CONNECT_TIMEOUT`].
///
/// State: none in Redis (pub/sub keeps nothing); what is in flight is
/// bounded by the engine's publish queue ([`crate::fragment::BUS_QUEUE`]).
/// A subscription ends when its connection drops; [`TagBus::recovered`]
/// resolves when the shared connection comes back from an outage (bumps
/// published meanwhile were dropped).
pub struct RedisTagBus {
    redis: Redis,
    channel: String,
}

impl RedisTagBus {
    /// A bus on `redis`, channel `{prefix}tags`.
    pub fn on(redis: Redis) -> Self {
        let channel = format!("{}tags", redis.prefix());
        RedisTagBus { redis, channel }
    }

    /// The connection this bus publishes on.
    pub fn connection(&self) -> &Redis {
        &self.redis
    }

    async fn subscribe_now(&self) -> Result<TagStream, StoreError> {
        let timeout = |what: &str| StoreError::Unavailable {
            store: STORE,
            detail: format!("{what} took longer than {CONNECT_TIMEOUT:?}"),
        };
        let mut pubsub =
            tokio::time::timeout(CONNECT_TIMEOUT, self.redis.client().get_async_pubsub())
                .await
                .map_err(|_| timeout("connecting"))?
                .map_err(|e| StoreError::Unavailable {
                    store: STORE,
                    detail: e.to_string(),
                })?;
        tokio::time::timeout(CONNECT_TIMEOUT, pubsub.subscribe(&self.channel))
            .await
            .map_err(|_| timeout("SUBSCRIBE"))?
            .map_err(|e| StoreError::Unavailable {
                store: STORE,
                detail: format!("SUBSCRIBE failed: {e}"),
            })?;
        let stream = pubsub
            .into_on_message()
            .filter_map(|msg| std::future::ready(msg.get_payload::<String>().ok()));
        Ok(Box::pin(stream))
    }
}

impl TagBus for RedisTagBus {
    fn publish<'a>(&'a self, message: &'a str) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            self.redis
                .query::<i64>(
                    STORE,
                    ::redis::cmd("PUBLISH").arg(&self.channel).arg(message),
                )
                .await
                .map(|_| ())
        })
    }

    fn publish_counted<'a>(&'a self, message: &'a str) -> StoreFuture<'a, Option<usize>> {
        StoreFuture::new(async move {
            self.redis
                .query::<i64>(
                    STORE,
                    ::redis::cmd("PUBLISH").arg(&self.channel).arg(message),
                )
                .await
                .map(|n| Some(usize::try_from(n).unwrap_or(0)))
        })
    }

    fn counts_receivers(&self) -> bool {
        true
    }

    fn healthy(&self) -> bool {
        !self.redis.outage().is_down()
    }

    fn subscribe(&self) -> StoreFuture<'_, TagStream> {
        StoreFuture::new(self.subscribe_now())
    }

    fn recovered(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.redis.outage().recovered())
    }

    fn describe(&self) -> &'static str {
        "redis tag bus"
    }
}
