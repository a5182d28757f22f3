//! The suite has teeth: a store that breaks one clause of the contract
//! fails it (each wraps the working store from `src/lib.rs` and breaks one
//! thing).

use portcullis::store::idempotency::Record;
use portcullis::store::{
    Bucket, Claim, CounterStore, Decision, Fingerprint, IdempotencyStore, QuotaDecision,
    StoreFuture, conformance,
};
use store_conformance_example::{MapCounters, MapIdempotency};

/// Charges each bucket on its own: a refusal by one still charges the others.
struct NotAllOrNothing(MapCounters);

impl CounterStore for NotAllOrNothing {
    fn check<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<Decision>> {
        StoreFuture::new(async move {
            let mut out = Vec::new();
            for b in buckets {
                out.extend(self.0.check(std::slice::from_ref(b), now_us).await?);
            }
            Ok(out)
        })
    }
    fn take_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, Vec<QuotaDecision>> {
        self.0.take_quotas(buckets, now_us)
    }
    fn refund_quotas<'a>(
        &'a self,
        buckets: &'a [Bucket],
        now_us: Option<u64>,
    ) -> StoreFuture<'a, ()> {
        self.0.refund_quotas(buckets, now_us)
    }
    fn spend_once<'a>(&'a self, key: &'a str, expires_at_us: u64) -> StoreFuture<'a, bool> {
        self.0.spend_once(key, expires_at_us)
    }
    fn describe(&self) -> &'static str {
        "not all-or-nothing"
    }
}

#[tokio::test]
#[should_panic(expected = "not all-or-nothing")]
async fn a_counter_store_that_charges_partially_fails() {
    conformance::all_or_nothing(&NotAllOrNothing(MapCounters::new(100))).await;
}

/// Forgets which body claimed a key: a reused key looks like a duplicate.
struct NoFingerprint(MapIdempotency);

impl IdempotencyStore for NoFingerprint {
    fn begin<'a>(&'a self, key: &'a str, _: Fingerprint) -> StoreFuture<'a, Claim> {
        self.0.begin(key, Fingerprint([0; 32]))
    }
    fn complete<'a>(&'a self, key: &'a str, record: Record) -> StoreFuture<'a, ()> {
        self.0.complete(key, record)
    }
    fn abandon<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.0.abandon(key)
    }
    fn describe(&self) -> &'static str {
        "no fingerprint"
    }
}

#[tokio::test]
#[should_panic(expected = "the key reused with another body")]
async fn an_idempotency_store_that_ignores_the_body_fails() {
    conformance::idempotency_store(&NoFingerprint(MapIdempotency::new(100))).await;
}

/// Forgets live spent tokens under pressure: a replay gets through.
#[tokio::test]
#[should_panic(expected = "un-spent a live one")]
async fn a_counter_store_that_drops_live_tokens_fails_the_flood() {
    struct Forgetful(MapCounters, std::sync::atomic::AtomicU64);
    impl CounterStore for Forgetful {
        fn check<'a>(&'a self, b: &'a [Bucket], n: Option<u64>) -> StoreFuture<'a, Vec<Decision>> {
            self.0.check(b, n)
        }
        fn take_quotas<'a>(
            &'a self,
            b: &'a [Bucket],
            n: Option<u64>,
        ) -> StoreFuture<'a, Vec<QuotaDecision>> {
            self.0.take_quotas(b, n)
        }
        fn refund_quotas<'a>(&'a self, b: &'a [Bucket], n: Option<u64>) -> StoreFuture<'a, ()> {
            self.0.refund_quotas(b, n)
        }
        fn spend_once<'a>(&'a self, key: &'a str, exp: u64) -> StoreFuture<'a, bool> {
            // Past 100 tokens it "evicts" every one: nothing is spent any more.
            let n = self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n > 100 {
                return StoreFuture::ready(Ok(true));
            }
            self.0.spend_once(key, exp)
        }
        fn describe(&self) -> &'static str {
            "forgetful"
        }
    }
    let store = Forgetful(MapCounters::new(100), Default::default());
    conformance::counter_flood(&store, 500).await;
}
