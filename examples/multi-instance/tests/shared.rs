//! Two instances on one Redis behave as one app: a rate limit counts calls
//! on both, and a session signed in on one and ended on the other is ended
//! everywhere. Needs Redis (`REDIS_URL`, default redis://127.0.0.1:6379).

use example_multi_instance::{PING, SIGN_IN, SIGN_OUT, WHO_AM_I, instance};
use portcullis::app::RedisUrl;
use portcullis::testing::TestClient;
use portcullis::{Config, MasterSecret};

/// Two instances ("a", "b") on the same Redis, under a prefix of their own
/// so that test runs do not share counters.
async fn two_instances() -> (TestClient, TestClient) {
    let mut config = Config::new(MasterSecret::generate());
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    config.redis_url = Some(RedisUrl(url));
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    config.redis_prefix = format!("example-multi-instance-test:{}:", run.as_nanos());
    let a = instance("a", config.clone()).expect("instance a");
    let b = instance("b", config).expect("instance b");
    (TestClient::start(&a).await, TestClient::start(&b).await)
}

#[tokio::test]
async fn a_rate_limit_counts_the_calls_on_both_instances() {
    let (a, b) = two_instances().await;
    // Five pings an hour per address: three here, two there.
    for (client, instance) in [(&a, "a"), (&a, "a"), (&b, "b"), (&a, "a"), (&b, "b")] {
        let r = client.call(PING, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["result"]["instance"], instance);
    }
    // The sixth is refused by either instance.
    for client in [&a, &b] {
        let r = client.call(PING, &[]).await;
        assert_eq!(
            r.error_code().as_deref(),
            Some("rate_limited"),
            "{}",
            r.text()
        );
    }
}

#[tokio::test]
async fn a_session_is_shared_and_signing_out_ends_it_everywhere() {
    let (a, b) = two_instances().await;
    let r = a.call(SIGN_IN, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let guest = r.json()["result"]["id"].clone();
    // The same browser (its cookies) on the other instance.
    for cookie in a.cookies().unwrap().split("; ") {
        b.set_cookie(cookie);
    }
    let r = b.call(WHO_AM_I, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["result"],
        serde_json::json!({ "id": guest, "instance": "b" })
    );
    // Signing out on b ends the session on a too, from its next request on.
    assert_eq!(b.call(SIGN_OUT, &[]).await.status, 200);
    for client in [&a, &b] {
        let r = client.call(WHO_AM_I, &[]).await;
        assert_eq!(
            r.error_code().as_deref(),
            Some("unauthenticated"),
            "{}",
            r.text()
        );
    }
}
