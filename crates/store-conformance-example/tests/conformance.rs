//! The backend in `src/lib.rs`, written against portcullis's public API
//! only, passes the same store conformance suite as portcullis's own
//! memory and Redis backends.

use portcullis::store::conformance;
use store_conformance_example::{ChannelBus, MapCounters, MapIdempotency};

#[tokio::test]
async fn map_counters_pass_the_counter_store_contract() {
    conformance::counter_store(&MapCounters::new(10_000)).await;
}

/// Five times its bound in fresh keys: the victim keeps its debt, the live
/// token stays spent, and the map stays within its bound.
#[tokio::test]
async fn map_counters_survive_a_key_flood_within_their_bound() {
    let store = MapCounters::new(1_000);
    conformance::counter_flood(&store, 5_000).await;
    assert!(store.buckets_held() <= 1_000, "{}", store.buckets_held());
}

#[tokio::test]
async fn map_idempotency_passes_the_idempotency_store_contract() {
    conformance::idempotency_store(&MapIdempotency::new(1_000)).await;
}

/// 2,000 one-off keys into a store of 100 entries of ~1.3 KB each.
#[tokio::test]
async fn map_idempotency_stays_bounded_under_a_key_flood() {
    let store = MapIdempotency::new(100);
    conformance::idempotency_flood(&store, 2_000, 1_000, 100 * 1_400).await;
}

#[tokio::test]
async fn channel_bus_passes_the_tag_bus_contract() {
    let bus = ChannelBus::new(64);
    conformance::tag_bus(&bus, &bus.clone()).await;
}
