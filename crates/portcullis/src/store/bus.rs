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
