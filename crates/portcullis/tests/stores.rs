//! The store contract (`portcullis::store::conformance`) on the framework's
//! own backends: in memory and on a real Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`). The counter store's checks run in
//! `ratelimit.rs`; a backend written outside the crate runs the same suite
//! (`crates/store-conformance-example`).

mod common;

use std::time::Duration;

use common::{redis_url, unique_prefix};
use portcullis::store::{
    IdempotencyConfig, MemoryIdempotency, MemoryTagBus, Redis, RedisIdempotency, RedisTagBus,
    conformance,
};

fn redis(test: &str) -> Redis {
    Redis::new(&redis_url(), &unique_prefix(test), Duration::from_secs(2)).unwrap()
}

#[tokio::test]
async fn idempotency_contract_on_both_backends() {
    conformance::idempotency_store(&MemoryIdempotency::default()).await;
    conformance::idempotency_store(&RedisIdempotency::on(redis("idem"))).await;
}

/// A flood of one-off keys with 4 KB results: the memory store stays under
/// its byte bound (it evicts); Redis keeps each key until its TTL.
#[tokio::test]
async fn idempotency_flood_stays_bounded_on_both_backends() {
    let bound = 512 * 1024;
    let memory = MemoryIdempotency::new(&IdempotencyConfig { max_bytes: bound });
    conformance::idempotency_flood(&memory, 4_000, 4_000, bound).await;
    conformance::idempotency_flood(&RedisIdempotency::on(redis("idem-flood")), 200, 4_000, 0).await;
}

#[tokio::test]
async fn tag_bus_contract_on_both_backends() {
    let bus = MemoryTagBus::new();
    conformance::tag_bus(&bus, &bus.clone()).await;
    // Two instances: two connections, one prefix (one channel).
    let prefix = unique_prefix("bus");
    let on = || Redis::new(&redis_url(), &prefix, Duration::from_secs(2)).unwrap();
    conformance::tag_bus(&RedisTagBus::on(on()), &RedisTagBus::on(on())).await;
}
