//! The tag bus: tag bumps between instances, behind one trait so a
//! transport can be written outside the crate.
//!
//! The fragment engine ([`mod@crate::fragment`]) publishes every tag bump it
//! applies and applies every bump it receives from another instance. What
//! happens when the transport fails is the engine's decision (it degrades:
//! bumps stay local, and the render cache is cleared whenever messages may
//! have been lost); a transport only carries text.
//!
//! A new transport implements [`TagBus`] and passes
//! `portcullis::store::conformance::tag_bus` (feature `testing`).

use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::counter::StoreFuture;

/// A subscription: messages in the order they were published, until the
/// subscription is lost.
pub type TagStream = BoxStream<'static, String>;

/// Carries tag bumps (short text messages) between the instances of an app:
/// Redis pub/sub ([`super::RedisTagBus`]), in-process
/// ([`super::MemoryTagBus`], for tests of several engines), or a transport
/// of the app's.
///
/// Delivery is at most once; a transport must make loss *visible*: when a
/// subscription may have missed messages it ends the stream (the engine
/// clears its render cache and subscribes again, with backoff), and when the
/// transport recovers from an outage in which published messages were
/// dropped it resolves [`TagBus::recovered`].
pub trait TagBus: Send + Sync + 'static {
    /// Sends `message` to every current subscription (this instance's own
    /// included: the engine skips its own messages).
    fn publish<'a>(&'a self, message: &'a str) -> StoreFuture<'a, ()>;

    /// Like [`TagBus::publish`], answering how many subscriptions received
    /// the message (this instance's own included), if the transport can
    /// tell. The session cache waits for that many confirmations before a
    /// sign-out answers ([`super::SessionCache`]); a transport that cannot
    /// count keeps the default (`None`) and [`TagBus::counts_receivers`]
    /// `false`, and the session cache is then off.
    fn publish_counted<'a>(&'a self, message: &'a str) -> StoreFuture<'a, Option<usize>> {
        StoreFuture::new(async move { self.publish(message).await.map(|()| None) })
    }

    /// Whether [`TagBus::publish_counted`] answers a count.
    fn counts_receivers(&self) -> bool {
        false
    }

    /// Whether the transport currently believes it can deliver (Redis: the
    /// shared connection is not known to be down). While it is `false` the
    /// session cache is not trusted: requests go to the session store,
    /// which fails closed. Default `true`.
    fn healthy(&self) -> bool {
        true
    }

    /// A new subscription to messages published from now on.
    fn subscribe(&self) -> StoreFuture<'_, TagStream>;

    /// Resolves the next time the transport comes back after an outage
    /// during which publishing failed. Default: never (a transport whose
    /// every loss ends the subscription need not implement it).
    fn recovered(&self) -> BoxFuture<'_, ()> {
        Box::pin(futures::future::pending())
    }

    /// A short name for logs and test messages.
    fn describe(&self) -> &'static str;
}
