//! The store contract as executable checks, for any backend (feature
//! `testing`).
//!
//! The framework's own backends (memory, Redis) run these in
//! `crates/portcullis/tests/` (`ratelimit.rs`, `stores.rs`); a backend
//! written elsewhere runs the same functions in its own tests (see
//! `crates/store-conformance-example`). Each check panics with the store's
//! `describe()` and the step that failed.
//!
//! * [`CounterStore`]: [`counter_store`] (all of the below but the flood),
//!   [`gcra_table`], [`gcra_matches_reference`], [`all_or_nothing`],
//!   [`quota_windows`], [`spend_once`], [`namespaces_are_disjoint`], and the
//!   abuse check [`counter_flood`];
//! * [`IdempotencyStore`]: [`idempotency_store`] and the abuse check
//!   [`idempotency_flood`];
//! * [`TagBus`]: [`tag_bus`], given two handles on one bus.
//!
//! Every check uses fixed key names, so give each run an **empty** store (a
//! fresh instance, or a Redis prefix no other run uses). Clocks are explicit
//! (`now_us`), so a check never waits on wall time except where the contract
//! is about real expiry ([`spend_once`]).

use std::time::Duration;

use super::bus::{TagBus, TagStream};
use super::counter::{Bucket, CounterStore, Quota};
use super::gcra;
use super::idempotency::{Claim, Fingerprint, IdempotencyStore, Record};

const S: u64 = 1_000_000;

/// Every counter-store check except the flood ([`counter_flood`], whose size
/// the caller chooses).
pub async fn counter_store(store: &dyn CounterStore) {
    gcra_table(store, "table").await;
    gcra_matches_reference(store).await;
    all_or_nothing(store).await;
    quota_windows(store).await;
    spend_once(store).await;
    namespaces_are_disjoint(store).await;
}

/// 5 per 5 s: burst 5, one more every second. (offset µs, allowed,
/// remaining, retry-after in whole seconds rounded up).
const TABLE: &[(u64, bool, u32, u64)] = &[
    (0, true, 4, 0),
    (0, true, 3, 0),
    (100_000, true, 2, 0),
    (200_000, true, 1, 0),
    (300_000, true, 0, 0),
    (300_000, false, 0, 1),
    (999_999, false, 0, 1),
    (1_000_000, true, 0, 0),
    (1_500_000, false, 0, 1),
    (2_000_000, true, 0, 0),
    (4_000_000, true, 1, 0),
    (4_000_001, true, 0, 0),
    (4_000_002, false, 0, 1),
    (20_000_000, true, 4, 0),
];

/// One bucket through a fixed table under a controlled clock: every answer
/// equals [`gcra::check`] on the TAT the store kept, and the table's
/// allowed / remaining / retry-after.
pub async fn gcra_table(store: &dyn CounterStore, key: &str) {
    let name = store.describe();
    let t0 = 1_700_000_000 * S;
    let bucket = [Bucket {
        key: key.to_owned(),
        quota: Quota {
            count: 5,
            period: Duration::from_secs(5),
        },
    }];
    let mut tat = 0;
    for (i, (off, allowed, remaining, retry)) in TABLE.iter().enumerate() {
        let now = t0 + off;
        let d = store.check(&bucket, Some(now)).await.expect("check")[0];
        let want = gcra::check(tat, now, 5, 5 * S);
        assert_eq!(d, want, "{name}: step {i} differs from the Rust function");
        assert_eq!(d.allowed, *allowed, "{name}: step {i}");
        assert_eq!(d.remaining, *remaining, "{name}: step {i}");
        assert_eq!(d.retry_after_us.div_ceil(S), *retry, "{name}: step {i}");
        tat = d.new_tat;
    }
}

/// Random counts, periods and arrival times (a fixed xorshift sequence): the
/// store's decisions equal [`gcra::check`] step by step. Two backends that
/// pass this agree with each other exactly (the Redis script and the memory
/// maps were compared this way).
pub async fn gcra_matches_reference(store: &dyn CounterStore) {
    let name = store.describe();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20 {
        let count = (next() % 20 + 1) as u32;
        let period = Duration::from_millis(next() % 10_000 + 1);
        let bucket = [Bucket {
            key: format!("r{round}"),
            quota: Quota { count, period },
        }];
        let period_us = bucket[0].quota.period_us();
        let mut now = 1_750_000_000 * S + next() % S;
        let mut tat = 0;
        for step in 0..40 {
            now += next() % (period.as_micros() as u64 / count as u64 * 2 + 1);
            let d = store.check(&bucket, Some(now)).await.expect("check")[0];
            let want = gcra::check(tat, now, count, period_us);
            assert_eq!(
                d, want,
                "{name}: round {round} step {step}: count {count} period {period:?}"
            );
            tat = d.new_tat;
        }
    }
}

/// All buckets of one check are charged together or not at all: when the
/// tight one refuses, the wide one is not charged.
pub async fn all_or_nothing(store: &dyn CounterStore) {
    let name = store.describe();
    let now = 1_800_000_000 * S;
    let q = |count| Quota {
        count,
        period: Duration::from_secs(3600),
    };
    let tight = Bucket {
        key: "tight".into(),
        quota: q(1),
    };
    let wide = Bucket {
        key: "wide".into(),
        quota: q(3),
    };
    let both = [tight.clone(), wide.clone()];
    let d = store.check(&both, Some(now)).await.expect("check");
    assert!(d.iter().all(|d| d.allowed), "{name}");
    // The tight bucket refuses: the wide one must not be charged.
    for _ in 0..5 {
        let d = store.check(&both, Some(now)).await.expect("check");
        assert!(!d[0].allowed && d[1].allowed, "{name}");
    }
    let wide_only = [wide];
    let d = store.check(&wide_only, Some(now)).await.expect("check");
    assert_eq!((d[0].allowed, d[0].remaining), (true, 1), "{name}");
}

/// Quotas count per epoch-aligned fixed window; a refund gives one unit back
/// in the same window and nothing after it; two quotas are charged all or
/// nothing.
pub async fn quota_windows(store: &dyn CounterStore) {
    let name = store.describe();
    let day = Duration::from_secs(86_400);
    let b = [Bucket {
        key: "invites:u:1".into(),
        quota: Quota {
            count: 2,
            period: day,
        },
    }];
    let start = 20_000 * 86_400 * S; // a window boundary
    let seq = [
        (start + 5 * S, true, 1),
        (start + 6 * S, true, 2),
        (start + 7 * S, false, 2),
        (start + 86_400 * S - 1, false, 2),
        (start + 86_400 * S, true, 1), // the next window
    ];
    for (i, (now, allowed, used)) in seq.into_iter().enumerate() {
        let d = store.take_quotas(&b, Some(now)).await.expect("take")[0];
        assert_eq!((d.allowed, d.used), (allowed, used), "{name}: step {i}");
        let window_end = (now / (86_400 * S) + 1) * 86_400 * S;
        assert_eq!(d.window_end_us, window_end, "{name}: step {i}");
    }
    // A refund in the same window gives one back; one after it does nothing.
    store
        .refund_quotas(&b, Some(start + 86_400 * S + 1))
        .await
        .expect("refund");
    let d = store
        .take_quotas(&b, Some(start + 86_400 * S + 2))
        .await
        .expect("take")[0];
    assert_eq!((d.allowed, d.used), (true, 1), "{name}");
    store
        .refund_quotas(&b, Some(start + 2 * 86_400 * S))
        .await
        .expect("refund");
    let d = store
        .take_quotas(&b, Some(start + 86_400 * S + 3))
        .await
        .expect("take")[0];
    assert_eq!(
        (d.allowed, d.used),
        (true, 2),
        "{name}: a refund in a later window gave a unit back to this one"
    );

    // Two quotas, one exhausted: neither is charged.
    let both = [
        Bucket {
            key: "q:full".into(),
            quota: Quota {
                count: 1,
                period: day,
            },
        },
        Bucket {
            key: "q:room".into(),
            quota: Quota {
                count: 5,
                period: day,
            },
        },
    ];
    let now = start + 10 * S;
    let d = store.take_quotas(&both, Some(now)).await.expect("take");
    assert!(d.iter().all(|d| d.allowed), "{name}");
    for _ in 0..3 {
        let d = store.take_quotas(&both, Some(now)).await.expect("take");
        assert!(!d[0].allowed && d[1].allowed, "{name}: {d:?}");
        assert_eq!(
            d[1].used, 1,
            "{name}: the refused call charged the other quota"
        );
    }
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// A spent token refuses a replay until it expires, and is spendable again
/// after (waits ~300 ms of real time: expiry is the backend's own).
pub async fn spend_once(store: &dyn CounterStore) {
    let name = store.describe();
    let later = now_us() + 60 * S;
    assert!(
        store.spend_once("pow:a", later).await.expect("spend"),
        "{name}"
    );
    assert!(
        !store.spend_once("pow:a", later).await.expect("spend"),
        "{name}: a replay was accepted"
    );
    assert!(
        store.spend_once("pow:b", later).await.expect("spend"),
        "{name}: another token was refused"
    );
    let soon = now_us() + 200_000;
    assert!(
        store.spend_once("pow:c", soon).await.expect("spend"),
        "{name}"
    );
    assert!(
        !store.spend_once("pow:c", soon).await.expect("spend"),
        "{name}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        store
            .spend_once("pow:c", now_us() + 60 * S)
            .await
            .expect("spend"),
        "{name}: an expired token stayed spent"
    );
}

/// A bucket, a quota and a spent token with the same key text are three
/// different counters.
pub async fn namespaces_are_disjoint(store: &dyn CounterStore) {
    let name = store.describe();
    let now = 1_900_000_000 * S;
    let one = Quota {
        count: 1,
        period: Duration::from_secs(3600),
    };
    let b = [Bucket {
        key: "shared-name".into(),
        quota: one,
    }];
    assert!(store.check(&b, Some(now)).await.expect("check")[0].allowed);
    assert!(!store.check(&b, Some(now)).await.expect("check")[0].allowed);
    let q = store.take_quotas(&b, Some(now)).await.expect("take")[0];
    assert!(
        q.allowed && q.used == 1,
        "{name}: quota shares the bucket's count"
    );
    assert!(
        store
            .spend_once("shared-name", now_us() + 60 * S)
            .await
            .expect("spend"),
        "{name}: the spent token shares a counter's key"
    );
}

/// Abuse: after one key is driven into debt (its budget spent) and one token
/// is spent, a flood of `keys` distinct fresh buckets and tokens (what a
/// client submitting random e-mails or nonces does) neither resets the
/// victim's debt nor un-spends the live token. Pass at least the store's
/// documented bound per shard or map to exercise its eviction.
pub async fn counter_flood(store: &dyn CounterStore, keys: usize) {
    let name = store.describe();
    let now = 1_950_000_000 * S;
    let quota = Quota {
        count: 5,
        period: Duration::from_secs(3600),
    };
    let victim = [Bucket {
        key: "login:acct:victim".into(),
        quota,
    }];
    for _ in 0..5 {
        assert!(store.check(&victim, Some(now)).await.expect("check")[0].allowed);
    }
    assert!(!store.check(&victim, Some(now)).await.expect("check")[0].allowed);
    let live = now_us() + 3600 * S;
    assert!(store.spend_once("pow:victim", live).await.expect("spend"));
    for i in 0..keys {
        let fresh = [Bucket {
            key: format!("login:acct:{i}"),
            quota,
        }];
        store.check(&fresh, Some(now + 1)).await.expect("check");
        store
            .spend_once(&format!("pow:{i}"), live)
            .await
            .expect("spend");
    }
    assert!(
        !store.check(&victim, Some(now + 2)).await.expect("check")[0].allowed,
        "{name}: a flood of {keys} keys reset the victim's limit"
    );
    assert!(
        !store.spend_once("pow:victim", live).await.expect("spend"),
        "{name}: a flood of {keys} tokens un-spent a live one (replay)"
    );
}

// ---------------------------------------------------------------------------
// Idempotency stores

fn print(n: u8) -> Fingerprint {
    Fingerprint([n; 32])
}

fn record(request: Fingerprint, body: &str) -> Record {
    Record {
        request: request.hex(),
        status: 200,
        content_type: Some("application/json".into()),
        location: None,
        body: Some(body.to_owned()),
        body_sha256: None,
    }
}

/// Every idempotency-store check except the flood
/// ([`idempotency_flood`]). A claim's lapse after [`super::idempotency::CLAIM`]
/// (60 s) is not exercised here.
pub async fn idempotency_store(store: &dyn IdempotencyStore) {
    let name = store.describe();
    let (a, b) = (print(1), print(2));

    // A fresh key is claimed; while it runs, the same body is "in
    // progress" and another body is told apart.
    assert_eq!(
        store.begin("k1", a).await.expect("begin"),
        Claim::Claimed,
        "{name}"
    );
    assert_eq!(
        store.begin("k1", a).await.expect("begin"),
        Claim::Running { same_request: true },
        "{name}: a duplicate in flight"
    );
    assert_eq!(
        store.begin("k1", b).await.expect("begin"),
        Claim::Running {
            same_request: false
        },
        "{name}: the key reused with another body while running"
    );
    // Another key is independent.
    assert_eq!(
        store.begin("k2", b).await.expect("begin"),
        Claim::Claimed,
        "{name}"
    );

    // Completed: the record comes back as stored, to any body (the caller
    // compares fingerprints).
    let done = record(a, r#"{"ok":true,"result":1}"#);
    store.complete("k1", done.clone()).await.expect("complete");
    for fp in [a, b] {
        assert_eq!(
            store.begin("k1", fp).await.expect("begin"),
            Claim::Done(done.clone()),
            "{name}: a finished key hands back its record"
        );
    }

    // A record kept by hash only, and a legacy one without a fingerprint,
    // round-trip unchanged.
    let hashed = Record {
        body: None,
        body_sha256: Some("ab".repeat(32)),
        location: Some("/projects/1".into()),
        status: 303,
        ..record(b, "")
    };
    store
        .complete("k2", hashed.clone())
        .await
        .expect("complete");
    assert_eq!(
        store.begin("k2", b).await.expect("begin"),
        Claim::Done(hashed),
        "{name}"
    );
    let legacy = Record {
        request: String::new(),
        ..record(a, "legacy")
    };
    assert_eq!(
        store.begin("k3", a).await.expect("begin"),
        Claim::Claimed,
        "{name}"
    );
    store
        .complete("k3", legacy.clone())
        .await
        .expect("complete");
    assert_eq!(
        store.begin("k3", b).await.expect("begin"),
        Claim::Done(legacy),
        "{name}"
    );

    // Abandoned (the attempt failed): the retry runs.
    assert_eq!(
        store.begin("k4", a).await.expect("begin"),
        Claim::Claimed,
        "{name}"
    );
    store.abandon("k4").await.expect("abandon");
    assert_eq!(
        store.begin("k4", a).await.expect("begin"),
        Claim::Claimed,
        "{name}: an abandoned key was not freed"
    );
    // Abandoning a key nobody holds is not an error.
    store.abandon("never-claimed").await.expect("abandon");

    // Concurrent claims of one key: exactly one wins.
    let claims = futures::future::join_all((0..16).map(|_| store.begin("race", a))).await;
    let won = claims
        .iter()
        .filter(|c| matches!(c, Ok(Claim::Claimed)))
        .count();
    assert_eq!(won, 1, "{name}: {claims:?}");
    assert!(
        claims.iter().all(|c| matches!(
            c,
            Ok(Claim::Claimed | Claim::Running { same_request: true })
        )),
        "{name}: {claims:?}"
    );
}

/// Abuse: `keys` one-off claims completed with `body_bytes`-byte records
/// (a client flooding fresh `Idempotency-Key`s). A store that holds data in
/// this process ([`IdempotencyStore::memory_usage`]) stays within
/// `max_bytes`; every store keeps answering (eviction of other callers'
/// records is allowed, and documented per store).
pub async fn idempotency_flood(
    store: &dyn IdempotencyStore,
    keys: usize,
    body_bytes: usize,
    max_bytes: u64,
) {
    let name = store.describe();
    let body = "x".repeat(body_bytes);
    for i in 0..keys {
        let key = format!("flood:{i}");
        assert_eq!(
            store.begin(&key, print(9)).await.expect("begin"),
            Claim::Claimed,
            "{name}: fresh key {i}"
        );
        store
            .complete(&key, record(print(9), &body))
            .await
            .expect("complete");
    }
    if let Some((entries, bytes)) = store.memory_usage() {
        assert!(
            bytes <= max_bytes,
            "{name}: {entries} entries weigh {bytes} bytes, over the bound {max_bytes}"
        );
    }
    assert_eq!(
        store.begin("after-flood", print(1)).await.expect("begin"),
        Claim::Claimed,
        "{name}"
    );
}

// ---------------------------------------------------------------------------
// Tag buses

async fn next(stream: &mut TagStream, name: &str) -> String {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .unwrap_or_else(|_| panic!("{name}: no message within 2 s"))
        .unwrap_or_else(|| panic!("{name}: the subscription ended"))
}

/// Two handles on one bus (two instances of an app): a message published on
/// either reaches every subscription, the publisher's own included, in
/// publication order; a subscription sees only what was published after it
/// began.
pub async fn tag_bus(a: &dyn TagBus, b: &dyn TagBus) {
    let name = a.describe();
    a.publish("before anyone listened").await.expect("publish");
    let mut on_a = a.subscribe().await.expect("subscribe");
    let mut on_b = b.subscribe().await.expect("subscribe");
    for i in 0..3 {
        a.publish(&format!("1 h tag:{i}")).await.expect("publish");
    }
    b.publish("2 s other tag").await.expect("publish");
    for stream in [&mut on_a, &mut on_b] {
        for i in 0..3 {
            assert_eq!(next(stream, name).await, format!("1 h tag:{i}"), "{name}");
        }
        assert_eq!(next(stream, name).await, "2 s other tag", "{name}");
    }
}
