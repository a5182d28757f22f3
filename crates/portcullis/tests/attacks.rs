//! Issue #3's attack list against a real server: each test sends the hostile
//! request, asserts the status and error code, and asserts nothing changed.

mod common;

use std::time::{Duration, Instant};

use common::{login, start};
use portcullis::testing::TestResponse;
use portcullis::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn assert_refused(r: &TestResponse, status: u16, code: &str) {
    assert_eq!(r.status.as_u16(), status, "body: {}", r.text());
    assert_eq!(r.error_code().as_deref(), Some(code), "body: {}", r.text());
    let v = r.json();
    assert!(
        v["error"]["digest"].as_str().is_some_and(|d| d.len() == 16),
        "{v}"
    );
}

async fn post_note(fx: &common::Fixture, headers: &[(&str, String)]) -> TestResponse {
    let mut req = fx
        .client
        .post(&fx.client.path(common::NOTES_PUBLIC))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .body("text=hello");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    TestResponse::read(req.send().await.unwrap()).await
}

#[tokio::test]
async fn cross_origin_post_every_sec_fetch_site_and_origin_combination() {
    let fx = start().await;
    let own = fx.client.origin();
    let evil = "https://evil.example".to_owned();
    let h = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    };
    let cases: Vec<(Vec<(&str, String)>, bool)> = vec![
        (h(&[("sec-fetch-site", "cross-site")]), false),
        (
            h(&[("sec-fetch-site", "cross-site"), ("origin", &evil)]),
            false,
        ),
        (
            h(&[("sec-fetch-site", "cross-site"), ("origin", &own)]),
            false,
        ),
        (
            h(&[("sec-fetch-site", "same-site"), ("origin", &evil)]),
            false,
        ),
        (h(&[("sec-fetch-site", "same-site")]), false),
        (h(&[("origin", &evil)]), false),
        (h(&[("origin", "null")]), false),
        // Forged forwarding headers from an untrusted peer change nothing.
        (
            h(&[
                ("origin", &evil),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-proto", "https"),
            ]),
            false,
        ),
        (
            h(&[
                ("origin", &evil),
                ("forwarded", "host=evil.example;proto=https"),
            ]),
            false,
        ),
        // Allowed: same origin by either header, or a non-browser client.
        (h(&[("sec-fetch-site", "same-origin")]), true),
        (
            h(&[("sec-fetch-site", "same-origin"), ("origin", &own)]),
            true,
        ),
        (h(&[("sec-fetch-site", "none")]), true),
        (h(&[("origin", &own)]), true),
        (h(&[]), true),
    ];
    let mut expected_runs = 0;
    for (headers, allowed) in cases {
        let r = post_note(&fx, &headers).await;
        if allowed {
            expected_runs += 1;
            assert_eq!(r.status, 200, "{headers:?}: {}", r.text());
        } else {
            assert_refused(&r, 403, "cross_origin_request");
        }
        assert_eq!(fx.state.runs(), expected_runs, "{headers:?}");
    }
}

#[tokio::test]
async fn get_head_and_options_never_run_actions() {
    let fx = start().await;
    let path = fx.client.path(common::NOTES_PUBLIC);
    let r = fx.client.get(&format!("{path}?text=hello")).await;
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("POST")));
    for method in [
        reqwest::Method::HEAD,
        reqwest::Method::OPTIONS,
        reqwest::Method::PUT,
    ] {
        let url = fx.client.url(&path);
        let r = reqwest::Client::new()
            .request(method.clone(), url)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
    }
    assert_eq!(fx.state.runs(), 0);
}

/// The app's stack dispatches `POST /_action/<id>` itself and leaves every
/// other shape of that path to the router. Both must behave alike: an id
/// with a percent-escape runs the same action with the same headers, and
/// paths that are not one id segment run nothing.
#[tokio::test]
async fn escaped_or_extra_segment_action_paths_behave_as_the_router_says() {
    let fx = start().await;
    let path = fx.client.path(common::NOTES_PUBLIC);
    let post = |p: String| {
        fx.client
            .post(&p)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body("text=hello")
    };
    let direct = TestResponse::read(post(path.clone()).send().await.unwrap()).await;
    assert_eq!(direct.status, 200, "{}", direct.text());
    assert_eq!(fx.state.runs(), 1);
    // The same id with its first character percent-escaped: the router's
    // action route decodes it to the same id.
    let (prefix, id) = path.rsplit_once('/').unwrap();
    let escaped = format!("{prefix}/%{:02X}{}", id.as_bytes()[0], &id[1..]);
    let routed = TestResponse::read(post(escaped).send().await.unwrap()).await;
    assert_eq!(routed.status, 200, "{}", routed.text());
    assert_eq!(fx.state.runs(), 2);
    for name in [
        "cache-control",
        "x-content-type-options",
        "referrer-policy",
        "cross-origin-opener-policy",
    ] {
        assert!(direct.header(name).is_some(), "{name} on the direct path");
        assert_eq!(direct.header(name), routed.header(name), "{name}");
    }
    // Not one id segment: nothing runs.
    for bad in [
        format!("{path}/extra"),
        format!("{prefix}/"),
        format!("{path}/"),
    ] {
        let r = TestResponse::read(post(bad.clone()).send().await.unwrap()).await;
        assert_eq!(r.status, 404, "{bad}: {}", r.text());
    }
    assert_eq!(fx.state.runs(), 2);
}

#[tokio::test]
async fn id_from_a_different_secret_is_stale() {
    let fx = start().await;
    let mut other = common::config();
    other.keys = portcullis::security::KeyRing::new(
        &portcullis::MasterSecret::from_bytes(vec![9; 32]).unwrap(),
        None,
    );
    let theirs = portcullis::Portcullis::new(other, common::State::default())
        .actions(common::register)
        .build(tower_sessions::MemoryStore::default())
        .unwrap();
    let foreign = theirs.action_path(common::NOTES_PUBLIC).unwrap();
    let r = fx
        .client
        .post(&foreign)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=hello")
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    assert_refused(&r, 409, "stale_action");
    assert_eq!(fx.state.runs(), 0);
}

#[tokio::test]
async fn id_from_two_epochs_ago_is_stale_previous_epoch_still_works() {
    let fx = start().await;
    let app = fx.client.app().clone();
    let epoch = app.epoch();
    let post = |id: String| {
        fx.client
            .post(&format!("{}{id}", wire::ACTION_PREFIX))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("text=hello")
            .send()
    };
    let old = TestResponse::read(
        post(app.action_id_in_epoch(common::NOTES_PUBLIC, epoch - 2))
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&old, 409, "stale_action");
    assert_eq!(fx.state.runs(), 0);
    let prev = TestResponse::read(
        post(app.action_id_in_epoch(common::NOTES_PUBLIC, epoch - 1))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(prev.status, 200, "{}", prev.text());
    assert_eq!(fx.state.runs(), 1);
}

#[tokio::test]
async fn malformed_ids_are_400_and_names_never_resolve() {
    let fx = start().await;
    for id in [
        "notes.public",
        "0",
        "1",
        "AAAA",
        "..%2f..%2fetc%2fpasswd",
        &"A".repeat(40),
    ] {
        let r = fx
            .client
            .post(&format!("{}{id}", wire::ACTION_PREFIX))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("text=hello")
            .send()
            .await
            .unwrap();
        let r = TestResponse::read(r).await;
        assert!(matches!(r.status.as_u16(), 400 | 404), "{id}: {}", r.status);
        if r.status == 400 {
            assert_eq!(r.error_code().as_deref(), Some("malformed_action_id"));
        }
    }
    assert_eq!(fx.state.runs(), 0);
    // The manifest's ids reveal nothing: not the name, not an index.
    let manifest = serde_json::to_string(&fx.client.app().manifest()).unwrap();
    let id = fx.client.app().action_id(common::NOTES_PUBLIC).unwrap();
    assert!(!id.contains("notes") && id.len() == 22, "{id} / {manifest}");
}

#[tokio::test]
async fn oversize_body_is_413_declared_or_chunked() {
    let fx = start().await;
    login(&fx.client, 1, false).await;
    let big = format!("text={}", "a".repeat(1024 * 1024 + 10));
    // Declared length.
    let r = fx
        .client
        .post(&fx.client.path(common::NOTES_ADD))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_refused(&TestResponse::read(r).await, 413, "payload_too_large");
    // Chunked: no Content-Length, the cap trips while reading.
    let stream = futures::stream::iter(
        big.into_bytes()
            .chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let r = fx
        .client
        .post(&fx.client.path(common::NOTES_ADD))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_refused(&TestResponse::read(r).await, 413, "payload_too_large");
    assert_eq!(fx.state.runs(), 0);
    // The per-action override admits what the default refuses.
    let two_mib = format!("text={}", "a".repeat(2 * 1024 * 1024));
    let r = fx
        .client
        .post(&fx.client.path(common::NOTES_BIG))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(two_mib)
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    // Validation (max 80 chars) refuses it, which proves the body was read.
    assert_refused(&r, 422, "invalid_input");
    assert_eq!(fx.state.runs(), 0);
}

#[tokio::test]
async fn body_trickled_slower_than_the_timeout_is_408() {
    let fx = start().await;
    let path = fx.client.path(common::NOTES_PUBLIC);
    let mut tcp = tokio::net::TcpStream::connect(fx.client.addr())
        .await
        .unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nAccept: application/json\r\nContent-Length: 100\r\n\r\ntext=",
        fx.client.addr()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut response = Vec::new();
    // One byte every 200 ms: 100 bytes would take 20 s; the deadline is 0.8 s.
    let trickle = async {
        for _ in 0..95 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tcp.write_all(b"a").await.is_err() {
                break;
            }
            let mut buf = [0u8; 4096];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), tcp.read(&mut buf)).await
            {
                response.extend_from_slice(&buf[..n]);
                if n == 0 || response.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(fx.state.runs(), 0);
}

#[tokio::test]
async fn hundred_thousand_urlencoded_fields_are_refused() {
    let fx = start().await;
    let body: String = (0..100_000).map(|i| format!("f{i}=1&")).collect();
    assert!(body.len() < 1024 * 1024 + 200_000);
    let r = fx
        .client
        .post(&fx.client.path(common::NOTES_PUBLIC))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    assert_refused(&r, 413, "payload_too_large");
    assert_eq!(fx.state.runs(), 0);
}

#[tokio::test]
async fn hundred_thousand_short_fields_under_the_byte_cap_are_still_refused() {
    let fx = start().await;
    // 100k fields in well under 1 MiB: the field cap, not the byte cap, trips.
    let body = "a&".repeat(100_000);
    let r = fx
        .client
        .post(&fx.client.path(common::NOTES_PUBLIC))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    assert_refused(&r, 413, "payload_too_large");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fields")
    );
    assert_eq!(fx.state.runs(), 0);
}

#[tokio::test]
async fn malformed_multipart_boundary_is_400() {
    let fx = start().await;
    let path = fx.client.path(common::NOTES_PUBLIC);
    let body =
        "--RIGHT\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhello\r\n--RIGHT--\r\n";
    for ct in ["multipart/form-data; boundary=WRONG", "multipart/form-data"] {
        let r = fx
            .client
            .post(&path)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_refused(&TestResponse::read(r).await, 400, "malformed_body");
    }
    // Too many parts.
    let many: String = (0..200)
        .map(|i| format!("--B\r\nContent-Disposition: form-data; name=\"p{i}\"\r\n\r\nx\r\n"))
        .collect::<String>()
        + "--B--\r\n";
    let r = fx
        .client
        .post(&path)
        .header("content-type", "multipart/form-data; boundary=B")
        .body(many)
        .send()
        .await
        .unwrap();
    assert_refused(&TestResponse::read(r).await, 413, "payload_too_large");
    assert_eq!(fx.state.runs(), 0);
    // And the well-formed one works.
    let r = fx
        .client
        .post(&path)
        .header("content-type", "multipart/form-data; boundary=RIGHT")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(fx.state.notes(), vec!["hello"]);
}

#[tokio::test]
async fn json_nested_ten_thousand_deep_is_400() {
    let fx = start().await;
    let deep = format!("{{\"text\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let r = fx
        .client
        .post(&fx.client.path(common::NOTES_PUBLIC))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    assert_refused(&r, 400, "malformed_body");
    assert!(r.text().contains("nested"));
    assert_eq!(fx.state.runs(), 0);
}

#[tokio::test]
async fn unsupported_content_types_are_415() {
    let fx = start().await;
    for ct in ["text/plain", "application/xml", "text/html"] {
        let r = fx
            .client
            .post(&fx.client.path(common::NOTES_PUBLIC))
            .header("content-type", ct)
            .body("text=hello")
            .send()
            .await
            .unwrap();
        assert_refused(&TestResponse::read(r).await, 415, "unsupported_media_type");
    }
    assert_eq!(fx.state.runs(), 0);
}

#[tokio::test]
async fn mass_assignment_of_privileged_fields_is_422_naming_the_field() {
    let fx = start().await;
    login(&fx.client, 5, false).await;
    for field in ["isAdmin", "ownerId", "role", "plan", "published", "userId"] {
        let r = fx
            .client
            .call(common::NOTES_ADD, &[("text", "hello"), (field, "1")])
            .await;
        assert_refused(&r, 422, "invalid_input");
        assert!(
            r.json()["fieldErrors"][field].is_array(),
            "{field}: {}",
            r.text()
        );
        let r = fx
            .client
            .call_json(
                common::NOTES_ADD,
                &serde_json::json!({"text": "hello", field: true}),
            )
            .await;
        assert_refused(&r, 422, "invalid_input");
        assert!(r.json()["fieldErrors"][field].is_array(), "{}", r.text());
    }
    assert_eq!(fx.state.runs(), 0);
    assert!(fx.state.notes().is_empty());
}

#[tokio::test]
async fn validation_failure_never_reaches_the_handler() {
    let fx = start().await;
    login(&fx.client, 5, false).await;
    let r = fx.client.call(common::NOTES_ADD, &[("text", "x")]).await;
    assert_refused(&r, 422, "invalid_input");
    assert!(r.json()["fieldErrors"]["text"][0].is_string());
    let r = fx.client.call(common::NOTES_ADD, &[]).await;
    assert_eq!(r.json()["fieldErrors"]["text"][0], "is required");
    assert_eq!(fx.state.runs(), 0);
    let ok = fx.client.call(common::NOTES_ADD, &[("text", "fine")]).await;
    assert_eq!(
        ok.json(),
        serde_json::json!({"ok": true, "result": {"count": 1}})
    );
}

#[tokio::test]
async fn handler_panic_is_500_with_digest_detail_only_in_the_log() {
    let fx = start().await;
    let r = fx.client.call(common::BOOM, &[]).await;
    assert_refused(&r, 500, "internal");
    let body = r.text();
    assert!(
        !body.contains("kaboom") && !body.contains("hunter2"),
        "{body}"
    );
    let digest = r.json()["error"]["digest"].as_str().unwrap().to_owned();
    let log = common::log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&digest))
        .unwrap_or_else(|| panic!("digest {digest} not in log:\n{log}"));
    assert!(line.contains("kaboom"), "{line}");
    // Still serving.
    let r = fx.client.call(common::WHOAMI, &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn unauthenticated_call_of_an_authenticated_action_is_401() {
    let fx = start().await;
    let r = fx
        .client
        .call(common::NOTES_ADD, &[("text", "hello")])
        .await;
    assert_refused(&r, 401, "unauthenticated");
    // A browser without JS gets an HTML sign-in page with the same status.
    let path = format!(
        "{}?{}=%2Fnotes",
        fx.client.path(common::NOTES_ADD),
        wire::field::RETURN
    );
    let r = fx
        .client
        .post(&path)
        .header("accept", "text/html")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=hello")
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    assert_eq!(r.status, 401);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text().contains("/login?return=%2Fnotes"), "{}", r.text());
    assert_eq!(fx.state.runs(), 0);
}

#[tokio::test]
async fn role_and_recent_policies() {
    let fx = start().await;
    login(&fx.client, 3, false).await;
    let r = fx.client.call(common::ADMIN_PURGE, &[]).await;
    assert_refused(&r, 403, "forbidden");
    let admin = fx.client.new_session();
    login(&admin, 4, true).await;
    assert_eq!(admin.call(common::ADMIN_PURGE, &[]).await.status, 200);
    // Just logged in counts as a fresh re-authentication.
    assert_eq!(
        fx.client.call(common::ACCOUNT_DELETE, &[]).await.status,
        200
    );
    let anon = fx.client.new_session();
    assert_refused(
        &anon.call(common::ACCOUNT_DELETE, &[]).await,
        401,
        "unauthenticated",
    );
    assert_eq!(fx.state.runs(), 2);
}

fn session_cookie(client: &portcullis::testing::TestClient) -> Option<String> {
    client
        .cookies()?
        .split("; ")
        .find(|c| c.starts_with(&format!("{}=", wire::cookie::SESSION)))
        .map(str::to_owned)
}

#[tokio::test]
async fn session_fixation_planted_id_never_becomes_authenticated() {
    let fx = start().await;
    let victim = fx.client.new_session();
    let planted = format!("{}=attackerchosenid123456789", wire::cookie::SESSION);
    victim.set_cookie(&planted);
    login(&victim, 7, false).await;
    let after = session_cookie(&victim).expect("a session cookie");
    assert_ne!(after, planted);
    // The attacker, holding the planted id, is not signed in.
    let attacker = fx.client.new_session();
    attacker.set_cookie(&planted);
    assert_refused(
        &attacker.call(common::NOTES_ADD, &[("text", "pwned")]).await,
        401,
        "unauthenticated",
    );
    assert!(fx.state.notes().is_empty());
}

#[tokio::test]
async fn session_id_is_cycled_at_login_and_old_id_is_dead() {
    let fx = start().await;
    let c = fx.client.new_session();
    login(&c, 7, false).await;
    let first = session_cookie(&c).unwrap();
    login(&c, 7, false).await;
    let second = session_cookie(&c).unwrap();
    assert_ne!(first, second);
    let replay = fx.client.new_session();
    replay.set_cookie(&first);
    assert_refused(
        &replay.call(common::NOTES_ADD, &[("text", "old id")]).await,
        401,
        "unauthenticated",
    );
    // Log-out kills the session server-side: replaying the cookie fails.
    assert_eq!(
        c.call(common::NOTES_ADD, &[("text", "mine")]).await.status,
        200
    );
    assert_eq!(c.call(common::LOGOUT, &[]).await.status, 200);
    let replay = fx.client.new_session();
    replay.set_cookie(&second);
    assert_refused(
        &replay
            .call(common::NOTES_ADD, &[("text", "after logout")])
            .await,
        401,
        "unauthenticated",
    );
    assert_eq!(fx.state.notes(), vec!["mine"]);
}

#[tokio::test]
async fn session_cookie_flags() {
    let fx = start().await;
    let r = fx.client.call(common::LOGIN, &[("userId", "1")]).await;
    let cookie = r.header("set-cookie").unwrap().to_ascii_lowercase();
    assert!(cookie.contains("httponly"), "{cookie}");
    assert!(cookie.contains("samesite=lax"), "{cookie}");
    assert!(cookie.contains("path=/"), "{cookie}");
}

#[tokio::test]
async fn identity_never_comes_from_the_payload() {
    let fx = start().await;
    let r = fx.client.call(common::WHOAMI, &[("userId", "1")]).await;
    assert_refused(&r, 422, "invalid_input");
    let r = fx.client.call(common::WHOAMI, &[]).await;
    assert_eq!(r.result()["user_id"], serde_json::Value::Null);
}

#[tokio::test]
async fn rate_limited_request_is_refused_before_the_body_is_read() {
    let fx = start().await;
    for _ in 0..2 {
        assert_eq!(
            fx.client
                .call(common::NOTES_LIMITED, &[("text", "ok")])
                .await
                .status,
            200
        );
    }
    // Third: 2 MiB chunked (no Content-Length) — 429, not 413: the body was never read.
    let stream =
        futures::stream::iter((0..32).map(|_| Ok::<_, std::io::Error>(vec![b'a'; 64 * 1024])));
    let r = fx
        .client
        .post(&fx.client.path(common::NOTES_LIMITED))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let r = TestResponse::read(r).await;
    assert_refused(&r, 429, "rate_limited");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"ip\";q=2;w=60"));
    assert!(r.header("ratelimit").unwrap().starts_with("\"ip\";r=0;t="));
    assert_eq!(fx.state.runs(), 2);
}

#[tokio::test]
async fn no_js_success_is_303_to_a_same_origin_path_only() {
    let fx = start().await;
    let r = fx
        .client
        .submit(
            common::NOTES_PUBLIC,
            &[("text", "hello"), (wire::field::RETURN, "/notes?x=1")],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/notes?x=1"));
    for evil in ["https://evil.example/", "//evil.example", "/\\evil.example"] {
        let r = fx
            .client
            .submit(
                common::NOTES_PUBLIC,
                &[("text", "hello"), (wire::field::RETURN, evil)],
            )
            .await;
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/"), "{evil}");
    }
    // Referer is never used.
    let r = fx
        .client
        .post(&fx.client.path(common::NOTES_PUBLIC))
        .header("accept", "text/html")
        .header("referer", "https://evil.example/")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("text=hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/");
}

#[tokio::test]
async fn duplicate_action_names_fail_at_start_up() {
    let err = portcullis::Portcullis::new(common::config(), common::State::default())
        .actions(common::register)
        .actions(|a| {
            // Another handle (other types) under a name the fixture already uses.
            const AGAIN: portcullis::ActionRef<common::Nothing, ()> =
                portcullis::ActionRef::new("notes.add");
            a.add(portcullis::action(AGAIN).authenticated().handler(
                |_: portcullis::Cx<common::State>,
                 _: portcullis::Viewer,
                 _: portcullis::Valid<common::Nothing>| async { Ok(()) },
            ));
        })
        .build(tower_sessions::MemoryStore::default())
        .err()
        .expect("duplicate refused");
    assert_eq!(
        err.to_string(),
        "action `notes.add` is registered twice; action names must be unique"
    );
}
