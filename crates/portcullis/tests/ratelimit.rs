//! Rate limits, input limits and quotas on both backends: the in-memory one
//! and a real Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`). Every
//! refusal test asserts the status and code and that the handler did not run.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{State, redis_config, redis_config_at, redis_url, unique_prefix};
use portcullis::prelude::*;
use portcullis::ratelimit::InputLimit;
use portcullis::store::{Bucket, CounterStore, MemoryCounters, Quota, RedisCounters, conformance};
use portcullis::testing::{TestClient, TestResponse};
use portcullis::{Config, Portcullis};
use serde::{Deserialize, Serialize};

fn assert_refused(r: &TestResponse, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
    assert_eq!(r.error_code().as_deref(), Some(code), "body: {}", r.text());
}

#[derive(Deserialize, garde::Validate)]
pub struct Empty {}

#[derive(Deserialize, garde::Validate)]
pub struct SignIn {
    #[garde(email)]
    pub email: String,
    #[garde(length(min = 1))]
    pub password: String,
}

#[derive(Deserialize, garde::Validate)]
pub struct Text {
    #[garde(length(max = 100))]
    pub text: String,
}

#[derive(Deserialize, garde::Validate)]
pub struct Attempt {
    #[garde(skip)]
    pub fail: bool,
}

#[derive(Serialize, Dto)]
pub struct Left {
    pub remaining: Option<u32>,
}

fn ran(cx: &Cx<State>) {
    cx.state().runs.fetch_add(1, Ordering::SeqCst);
}

fn account_limit() -> InputLimit<SignIn> {
    per_input("account", 3, |i: &SignIn| Some(i.email.to_lowercase())).per_minute()
}

const RL_TEN: ActionRef<Empty, ()> = ActionRef::new("rl.ten");
const RL_TWO: ActionRef<Text, ()> = ActionRef::new("rl.two");
const RL_OPEN: ActionRef<Empty, ()> = ActionRef::new("rl.open");
const SIGN_IN: ActionRef<SignIn, ()> = ActionRef::new("auth.sign_in");
const CONTACT_SEND: ActionRef<Text, ()> = ActionRef::new("contact.send");
const API_PING: ActionRef<Empty, ()> = ActionRef::new("api.ping");
const INVITES_SEND: ActionRef<Empty, Left> = ActionRef::new("invites.send");
const INVITES_MAYBE: ActionRef<Attempt, Left> = ActionRef::new("invites.maybe");
const AUTH_AS: ActionRef<Empty, ()> = ActionRef::new("auth.as");

/// The actions the limiter tests drive, shaped like the demo's needs: login
/// per ip and per account, contact per ip and global, invites under a daily
/// quota per user.
fn register(actions: &mut portcullis::Actions<State>) {
    actions
        .add(
            action(RL_TEN)
                .public()
                .limit(per_ip(10).per_hour())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, _: Valid<Empty>| async move {
                        ran(&cx);
                        Ok(())
                    },
                ),
        )
        .add(action(RL_TWO).public().limit(per_ip(2).per_hour()).handler(
            |cx: Cx<State>, _: MaybeViewer, _: Valid<Text>| async move {
                ran(&cx);
                Ok(())
            },
        ))
        .add(
            action(RL_OPEN)
                .public()
                .limit(per_ip(100).per_hour())
                .fail_open()
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, _: Valid<Empty>| async move {
                        ran(&cx);
                        Ok(())
                    },
                ),
        )
        .add(
            action(SIGN_IN)
                .public()
                .limit(per_ip(100).per_minute())
                .limit_input(account_limit())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, input: Valid<SignIn>| async move {
                        ran(&cx);
                        cx.state().notes.lock().unwrap().push(input.email.clone());
                        Ok(())
                    },
                ),
        )
        .add(
            action(CONTACT_SEND)
                .public()
                .limit(per_ip(5).per_hour())
                .limit(global(3).per_hour())
                .handler(|cx: Cx<State>, _: MaybeViewer, _: Valid<Text>| async move {
                    ran(&cx);
                    Ok(())
                }),
        )
        .add(
            action(API_PING)
                .public()
                .limit(
                    per_key("api_key", 2, |r| r.header("x-api-key").map(str::to_owned)).per_hour(),
                )
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, _: Valid<Empty>| async move {
                        ran(&cx);
                        Ok(())
                    },
                ),
        )
        .add(
            action(INVITES_SEND)
                .authenticated()
                .quota("invites", per_user(3).per_day())
                .handler(|cx: Cx<State>, _: Viewer, _: Valid<Empty>| async move {
                    ran(&cx);
                    Ok(Left {
                        remaining: cx.quota("invites").map(|q| q.remaining),
                    })
                }),
        )
        .add(
            action(INVITES_MAYBE)
                .authenticated()
                .quota("invites", per_user(2).per_day())
                .handler(
                    |cx: Cx<State>, _: Viewer, input: Valid<Attempt>| async move {
                        ran(&cx);
                        if input.fail {
                            return Err(ActionError::form("That address was already invited."));
                        }
                        Ok(Left {
                            remaining: cx.quota("invites").map(|q| q.remaining),
                        })
                    },
                ),
        )
        .add(
            action(AUTH_AS)
                .public()
                .limit(per_ip(1000).per_minute())
                .handler(
                    |cx: Cx<State>, _: MaybeViewer, _: Valid<Empty>| async move {
                        let n = cx.state().runs.load(Ordering::SeqCst) as i64;
                        cx.auth().login(1000 + n, vec![]).await?;
                        Ok(())
                    },
                ),
        );
}

struct Fx {
    client: TestClient,
    state: State,
}

async fn start(config: Config) -> Fx {
    let state = State::default();
    let app = Portcullis::new(config, state.clone())
        .actions(register)
        .build(tower_sessions::MemoryStore::default())
        .expect("limiter fixture builds");
    Fx {
        client: TestClient::start(&app).await,
        state,
    }
}

fn memory() -> Config {
    common::config()
}

// ---------------------------------------------------------------------------
// The counter-store contract (`portcullis::store::conformance`): one table,
// both backends, a controlled clock.

fn redis_counters(test: &str) -> RedisCounters {
    RedisCounters::new(&redis_url(), &unique_prefix(test), Duration::from_secs(2)).unwrap()
}

#[tokio::test]
async fn gcra_conformance_table_on_both_backends() {
    conformance::gcra_table(&MemoryCounters::new(), "table").await;
    conformance::gcra_table(&redis_counters("table"), "table").await;
}

/// Both backends equal the Rust function step by step on random inputs, so
/// the Redis script and the memory maps agree exactly.
#[tokio::test]
async fn redis_script_equals_the_rust_function_on_random_inputs() {
    conformance::gcra_matches_reference(&MemoryCounters::new()).await;
    conformance::gcra_matches_reference(&redis_counters("random")).await;
}

#[tokio::test]
async fn a_refusal_charges_no_other_limit_on_both_backends() {
    conformance::all_or_nothing(&MemoryCounters::new()).await;
    conformance::all_or_nothing(&redis_counters("aon")).await;
}

async fn redis_keys(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn quota_fixed_windows_agree_on_both_backends() {
    conformance::quota_windows(&MemoryCounters::new()).await;
    conformance::quota_windows(&redis_counters("qwin")).await;
}

#[tokio::test]
async fn spent_tokens_and_counter_namespaces_on_both_backends() {
    for store in [
        Box::new(MemoryCounters::new()) as Box<dyn CounterStore>,
        Box::new(redis_counters("spent")),
    ] {
        conformance::spend_once(&*store).await;
        conformance::namespaces_are_disjoint(&*store).await;
    }
}

/// The memory store's own flood test (past its cap) is in `store/memory.rs`;
/// here both backends meet the contract's abuse check at a size Redis runs
/// quickly.
#[tokio::test]
async fn a_key_flood_neither_resets_a_victim_nor_unspends_a_token_on_both_backends() {
    conformance::counter_flood(&MemoryCounters::new(), 20_000).await;
    conformance::counter_flood(&redis_counters("flood"), 2_000).await;
}

#[tokio::test]
async fn redis_keys_expire_at_their_tat() {
    let prefix = unique_prefix("ttl");
    let redis = RedisCounters::new(&redis_url(), &prefix, Duration::from_secs(2)).unwrap();
    let bucket = [Bucket {
        key: "k".into(),
        quota: Quota {
            count: 10,
            period: Duration::from_secs(10),
        },
    }];
    redis.check(&bucket, None).await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    // One request = one interval (1 s) past now.
    assert!((900..=1000).contains(&ttl), "{ttl}");
}

// ---------------------------------------------------------------------------
// Concurrency: exactly the budget, on each backend and across instances.

async fn burst(clients: &[TestClient], n: usize) -> (usize, usize) {
    let calls = (0..n).map(|i| {
        let c = clients[i % clients.len()].clone();
        async move { c.call(RL_TEN, &[]).await }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    let limited = results
        .iter()
        .filter(|r| r.status == 429 && r.error_code().as_deref() == Some("rate_limited"))
        .count();
    (ok, limited)
}

#[tokio::test]
async fn sixty_four_concurrent_requests_ten_succeed_in_memory() {
    let fx = start(memory()).await;
    assert_eq!(burst(std::slice::from_ref(&fx.client), 64).await, (10, 54));
    assert_eq!(fx.state.runs(), 10);
}

#[tokio::test]
async fn sixty_four_concurrent_requests_ten_succeed_on_redis() {
    let fx = start(redis_config("burst")).await;
    assert_eq!(burst(std::slice::from_ref(&fx.client), 64).await, (10, 54));
    assert_eq!(fx.state.runs(), 10);
}

#[tokio::test]
async fn sixty_four_concurrent_requests_across_two_instances_sharing_redis() {
    let config = redis_config("two");
    let a = start(config.clone()).await;
    let b = start(config).await;
    assert_ne!(a.client.addr(), b.client.addr());
    let (ok, limited) = burst(&[a.client.clone(), b.client.clone()], 64).await;
    assert_eq!((ok, limited), (10, 54));
    assert_eq!(a.state.runs() + b.state.runs(), 10);
    // Whichever instance served them, both now see the budget spent.
    for fx in [&a, &b] {
        assert_refused(&fx.client.call(RL_TEN, &[]).await, 429, "rate_limited");
    }
    assert_eq!(a.state.runs() + b.state.runs(), 10);
    eprintln!(
        "instance a served {}, b served {}",
        a.state.runs(),
        b.state.runs()
    );
}

// ---------------------------------------------------------------------------
// Client identity

#[tokio::test]
async fn spoofed_forwarding_headers_from_an_untrusted_peer_do_not_change_the_key() {
    let fx = start(redis_config("xff")).await;
    let path = fx.client.path(RL_TWO);
    let send = |headers: Vec<(&'static str, String)>| {
        let mut req = fx
            .client
            .post(&path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body("text=hi");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { TestResponse::read(req.send().await.unwrap()).await }
    };
    for i in 0..2 {
        let r = send(vec![("x-forwarded-for", format!("198.51.100.{i}"))]).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for spoof in [
        vec![("x-forwarded-for", "203.0.113.50".to_owned())],
        vec![("x-forwarded-for", "203.0.113.51, 10.0.0.1".to_owned())],
        vec![("forwarded", "for=203.0.113.52".to_owned())],
        vec![("x-real-ip", "203.0.113.53".to_owned())],
    ] {
        let r = send(spoof.clone()).await;
        assert_refused(&r, 429, "rate_limited");
        assert_eq!(
            r.header("ratelimit-policy"),
            Some("\"ip\";q=2;w=3600"),
            "{spoof:?}"
        );
    }
    assert_eq!(fx.state.runs(), 2);

    // Control: when the peer *is* a trusted proxy, its XFF names the client.
    let mut config = redis_config("xff-trusted");
    config.proxies = portcullis::security::TrustedProxies::parse(["127.0.0.1"]).unwrap();
    let trusted = start(config).await;
    let path = trusted.client.path(RL_TWO);
    for client_ip in ["198.51.100.1", "198.51.100.1", "198.51.100.2"] {
        let r = trusted
            .client
            .post(&path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-forwarded-for", client_ip)
            .body("text=hi")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(trusted.state.runs(), 3);
}

#[tokio::test]
async fn custom_key_function_keys_on_a_header() {
    let fx = start(redis_config("custom")).await;
    let path = fx.client.path(API_PING);
    let ping = |key: &'static str| {
        let req = fx
            .client
            .post(&path)
            .header("content-type", "application/json")
            .header("x-api-key", key)
            .body("{}");
        async move { TestResponse::read(req.send().await.unwrap()).await }
    };
    assert_eq!(ping("alpha").await.status, 200);
    assert_eq!(ping("alpha").await.status, 200);
    let r = ping("alpha").await;
    assert_refused(&r, 429, "rate_limited");
    assert_eq!(r.header("ratelimit-policy"), Some("\"api_key\";q=2;w=3600"));
    assert_eq!(ping("beta").await.status, 200);
    assert_eq!(fx.state.runs(), 3);
}

// ---------------------------------------------------------------------------
// Responses

#[tokio::test]
async fn every_limited_response_carries_ratelimit_headers_on_both_backends() {
    for config in [memory(), redis_config("headers")] {
        let fx = start(config).await;
        let r = fx.client.call(RL_TWO, &[("text", "a")]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-policy"), Some("\"ip\";q=2;w=3600"));
        assert_eq!(r.header("ratelimit"), Some("\"ip\";r=1;t=1800"));
        fx.client.call(RL_TWO, &[("text", "a")]).await;
        let r = fx.client.call(RL_TWO, &[("text", "a")]).await;
        assert_refused(&r, 429, "rate_limited");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1790..=1800).contains(&retry), "{retry}");
        assert!(r.header("ratelimit").unwrap().starts_with("\"ip\";r=0;t="));
        assert_eq!(fx.state.runs(), 2);
    }
}

#[tokio::test]
async fn per_ip_and_global_limits_both_apply_and_the_tightest_is_reported() {
    let fx = start(redis_config("contact")).await;
    for i in 0..3 {
        let r = fx.client.call(CONTACT_SEND, &[("text", "hello")]).await;
        assert_eq!(r.status, 200, "{i}: {}", r.text());
    }
    let r = fx.client.call(CONTACT_SEND, &[("text", "hello")]).await;
    assert_refused(&r, 429, "rate_limited");
    assert_eq!(r.header("ratelimit-policy"), Some("\"global\";q=3;w=3600"));
    assert_eq!(fx.state.runs(), 3);
}

#[tokio::test]
async fn rate_limited_request_is_refused_before_the_body_is_read_on_redis() {
    let fx = start(redis_config("body")).await;
    for _ in 0..2 {
        assert_eq!(fx.client.call(RL_TWO, &[("text", "ok")]).await.status, 200);
    }
    // 2 MiB chunked, no Content-Length: 429, not 413 — the body was never read.
    let stream =
        futures::stream::iter((0..32).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 64 * 1024])));
    let r = fx
        .client
        .post(&fx.client.path(RL_TWO))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    assert_refused(&r, 429, "rate_limited");
    assert!(r.header("retry-after").is_some());
    assert_eq!(fx.state.runs(), 2);
}

// ---------------------------------------------------------------------------
// Input limits (per account) and quotas

#[tokio::test]
async fn login_is_limited_per_submitted_account_on_both_backends() {
    for config in [memory(), redis_config("account")] {
        let prefix = config
            .redis_url
            .as_ref()
            .map(|_| config.redis_prefix.clone());
        let fx = start(config).await;
        let sign_in = |email: &'static str| {
            let c = fx.client.clone();
            async move {
                c.call(SIGN_IN, &[("email", email), ("password", "pw")])
                    .await
            }
        };
        for _ in 0..3 {
            assert_eq!(sign_in("alice@example.com").await.status, 200);
        }
        // Same account, any spelling of its case: refused, handler not run.
        let r = sign_in("ALICE@example.com").await;
        assert_refused(&r, 429, "rate_limited");
        assert_eq!(r.header("ratelimit-policy"), Some("\"account\";q=3;w=60"));
        assert_eq!(fx.state.runs(), 3);
        // Another account from the same address is unaffected.
        assert_eq!(sign_in("bob@example.com").await.status, 200);
        // Invalid input is refused by validation first and charges nothing.
        let r = fx
            .client
            .call(SIGN_IN, &[("email", "not-an-email"), ("password", "pw")])
            .await;
        assert_refused(&r, 422, "invalid_input");
        assert_eq!(fx.state.runs(), 4);
        // The account never sits in Redis in clear.
        if let Some(prefix) = prefix {
            let keys = redis_keys(&prefix).await;
            assert!(keys.iter().any(|k| k.contains(":account:k:")), "{keys:?}");
            assert!(
                keys.iter()
                    .all(|k| !k.contains("alice") && !k.contains("bob")),
                "{keys:?}"
            );
        }
    }
}

#[tokio::test]
async fn input_limit_on_the_wrong_input_type_is_refused_at_start_up() {
    let err = Portcullis::new(memory(), State::default())
        .actions(|a| {
            a.add(
                action(ActionRef::<Text, ()>::new("wrong"))
                    .public()
                    .limit(per_ip(1).per_minute())
                    .limit_input(account_limit())
                    .handler(|_: Cx<State>, _: MaybeViewer, _: Valid<Text>| async { Ok(()) }),
            );
        })
        .build(tower_sessions::MemoryStore::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("input limit"), "{err}");
}

#[tokio::test]
async fn quota_remaining_is_readable_by_the_handler_and_exhausts_on_both_backends() {
    for config in [memory(), redis_config("quota")] {
        let fx = start(config).await;
        assert_eq!(fx.client.call(AUTH_AS, &[]).await.status, 200);
        for left in [2, 1, 0] {
            let r = fx.client.call(INVITES_SEND, &[]).await;
            assert_eq!(r.result()["remaining"], left, "{}", r.text());
        }
        let r = fx.client.call(INVITES_SEND, &[]).await;
        assert_refused(&r, 429, "rate_limited");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=86_400).contains(&retry), "{retry}");
        assert_eq!(fx.state.runs(), 3);
        // Another user has their own quota.
        let other = fx.client.new_session();
        fx.state.runs.fetch_add(1, Ordering::SeqCst);
        assert_eq!(other.call(AUTH_AS, &[]).await.status, 200);
        let r = other.call(INVITES_SEND, &[]).await;
        assert_eq!(r.result()["remaining"], 2, "{}", r.text());
    }
}

#[tokio::test]
async fn a_failed_handler_gives_its_quota_unit_back_on_both_backends() {
    for config in [memory(), redis_config("refund")] {
        let fx = start(config).await;
        assert_eq!(fx.client.call(AUTH_AS, &[]).await.status, 200);
        for _ in 0..3 {
            let r = fx.client.call(INVITES_MAYBE, &[("fail", "true")]).await;
            assert_refused(&r, 422, "invalid_input");
        }
        for left in [1, 0] {
            let r = fx.client.call(INVITES_MAYBE, &[("fail", "false")]).await;
            assert_eq!(r.result()["remaining"], left, "{}", r.text());
        }
        let r = fx.client.call(INVITES_MAYBE, &[("fail", "false")]).await;
        assert_refused(&r, 429, "rate_limited");
        assert_eq!(
            fx.state.runs(),
            5,
            "3 failures + 2 successes; the refused call never ran"
        );
    }
}

// ---------------------------------------------------------------------------
// Backend failure

async fn eventually_ok(fx: &Fx, action: ActionRef<Empty, ()>, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let r = fx.client.call(action, &[]).await;
        if r.status == 200 {
            return started.elapsed();
        }
        assert_refused(&r, 503, "limiter_unavailable");
        assert!(started.elapsed() < within, "no recovery within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_down_fails_closed_fail_open_serves_and_recovery_is_automatic() {
    let mut redis = common::RedisProcess::start();
    let fx = start(redis_config_at(&redis.url(), "outage")).await;
    assert_eq!(fx.client.call(RL_TEN, &[]).await.status, 200);
    assert_eq!(fx.state.runs(), 1);

    redis.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let r = fx.client.call(RL_TEN, &[]).await;
        assert_refused(&r, 503, "limiter_unavailable");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        fx.state.runs(),
        1,
        "no handler ran while the limiter was down"
    );
    // The opted-in action keeps serving; other routes still answer.
    assert_eq!(fx.client.call(RL_OPEN, &[]).await.status, 200);
    assert_eq!(fx.state.runs(), 2);

    redis.restart();
    let took = eventually_ok(&fx, RL_TEN, Duration::from_secs(10)).await;
    eprintln!("recovered {took:?} after redis came back");
    assert_eq!(fx.state.runs(), 3);
}

#[tokio::test]
async fn slow_redis_fails_closed_within_the_timeout() {
    let redis = common::RedisProcess::start();
    let fx = start(redis_config_at(&redis.url(), "slow")).await;
    assert_eq!(fx.client.call(RL_TEN, &[]).await.status, 200);
    redis.signal("STOP");
    let started = Instant::now();
    let r = fx.client.call(RL_TEN, &[]).await;
    let took = started.elapsed();
    redis.signal("CONT");
    assert_refused(&r, 503, "limiter_unavailable");
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(fx.state.runs(), 1);
    eventually_ok(&fx, RL_TEN, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn redis_down_at_start_up_only_refuses_until_it_is_up() {
    let mut redis = common::RedisProcess::start();
    redis.stop();
    let fx = start(redis_config_at(&redis.url(), "late")).await;
    assert_refused(
        &fx.client.call(RL_TEN, &[]).await,
        503,
        "limiter_unavailable",
    );
    assert_eq!(fx.state.runs(), 0);
    redis.restart();
    eventually_ok(&fx, RL_TEN, Duration::from_secs(10)).await;
    assert_eq!(fx.state.runs(), 1);
}

async fn command_calls(url: &str) -> std::collections::HashMap<String, u64> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

async fn redis_cmd(url: &str, args: &[&str]) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
}

#[tokio::test]
async fn all_limits_of_an_action_cost_one_round_trip_and_noscript_falls_back_to_eval() {
    let redis = common::RedisProcess::start();
    let url = redis.url();
    let fx = start(redis_config_at(&url, "roundtrip")).await;
    assert_eq!(
        fx.client
            .call(CONTACT_SEND, &[("text", "warm")])
            .await
            .status,
        200
    );
    redis_cmd(&url, &["CONFIG", "RESETSTAT"]).await;
    // contact.send has two limits (per ip and global): one EVALSHA per call.
    for _ in 0..2 {
        assert_eq!(
            fx.client.call(CONTACT_SEND, &[("text", "hi")]).await.status,
            200
        );
    }
    let calls = command_calls(&url).await;
    assert_eq!(calls.get("evalsha"), Some(&2), "{calls:?}");
    assert_eq!(calls.get("eval"), None, "{calls:?}");
    // GET/SET/TIME inside the script count as calls too; nothing else was sent.
    assert!(
        calls.keys().all(|k| k.starts_with("config")
            || matches!(k.as_str(), "evalsha" | "info" | "get" | "set" | "time")),
        "{calls:?}"
    );
    // After SCRIPT FLUSH (or a restart) the script is re-sent once with EVAL.
    redis_cmd(&url, &["SCRIPT", "FLUSH"]).await;
    let r = fx.client.call(CONTACT_SEND, &[("text", "again")]).await;
    assert_refused(&r, 429, "rate_limited"); // the global budget of 3 is spent
    let calls = command_calls(&url).await;
    assert_eq!(calls.get("eval"), Some(&1), "{calls:?}");
    assert_eq!(fx.state.runs(), 3);
}
