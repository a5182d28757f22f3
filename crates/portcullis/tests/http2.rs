//! HTTP/2 (prior-knowledge h2c) on `portcullis::serve`: the pipeline works
//! the same over it (sign-in, sessions, the origin check against
//! `:authority`, cookies split one per field), and the connection-level
//! abuse HTTP/2 adds is bounded: streams beyond the cap are refused while
//! the cap runs, a rapid-reset flood ends the connection, headers that never
//! finish do not hold one, and shutdown lets an in-flight stream finish.
//!
//! The abuse tests speak raw frames (RFC 9113 §4: a 9-byte header, then the
//! payload) because a well-behaved client library cannot misbehave.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{LOGIN, NOTES_ADD, NOTES_PUBLIC, WHOAMI, login, start};
use portcullis::app::ServeConfig;
use portcullis::testing::TestResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// The pipeline over HTTP/2

#[tokio::test]
async fn sign_in_and_a_signed_in_action_work_over_http2() {
    let fx = start().await;
    let c = fx.client.http2();
    login(&c, 7, false).await;
    let r = c.call(NOTES_ADD, &[("text", "over h2")]).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fx.state.notes(), vec!["over h2".to_owned()]);
    let r = c.call(WHOAMI, &[]).await;
    assert_eq!(r.result()["user_id"], 7);
}

#[tokio::test]
async fn http2_cross_origin_post_is_refused_and_changes_nothing() {
    let fx = start().await;
    let c = fx.client.http2();
    let post = |origin: String| {
        c.post(&c.path(NOTES_PUBLIC))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .header("origin", origin)
            .body("text=hello")
    };
    // No Fetch Metadata: stage 2 compares Origin with the request's own
    // authority, which HTTP/2 sends as `:authority`, not `Host`.
    let r = TestResponse::read(post("https://evil.example".into()).send().await.unwrap()).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("cross_origin_request"));
    assert_eq!(fx.state.runs(), 0, "the refused call ran nothing");
    // The same request from the app's own origin is accepted: the
    // authority was read (a request without `Host` would be refused too).
    let r = TestResponse::read(post(c.origin()).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fx.state.runs(), 1);
}

#[tokio::test]
async fn cookies_sent_one_field_each_over_http2_still_carry_the_session() {
    let fx = start().await;
    login(&fx.client, 7, false).await;
    let jar = fx.client.cookies().expect("signed in: a session cookie");
    // A client with no jar, sending each cookie as its own `cookie` field
    // (RFC 9113 §8.2.3), an unrelated one first.
    let raw = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut req = raw
        .post(fx.client.url(&fx.client.path(WHOAMI)))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("origin", fx.client.origin())
        .header("cookie", "theme=dark");
    for cookie in jar.split("; ") {
        req = req.header("cookie", cookie);
    }
    let r = TestResponse::read(req.send().await.unwrap()).await;
    assert_eq!(r.version, http::Version::HTTP_2);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.result()["user_id"], 7, "the session was read");
}

#[tokio::test]
async fn http2_off_serves_http1_only() {
    let fx = start().await;
    let config = ServeConfig {
        http2: false,
        ..ServeConfig::default()
    };
    let c = portcullis::testing::TestClient::start_with(fx.client.app(), config).await;
    let over_h2 = c
        .http2()
        .post(&c.path(LOGIN))
        .header("origin", c.origin())
        .header("content-type", "application/x-www-form-urlencoded")
        .body("userId=1")
        .send()
        .await;
    assert!(
        over_h2.is_err(),
        "an HTTP/2 preface is not answered as HTTP/2: {over_h2:?}"
    );
    login(&c, 7, false).await;
    let r = c.call(WHOAMI, &[]).await;
    assert_eq!(r.version, http::Version::HTTP_11);
    assert_eq!(r.result()["user_id"], 7);
}

#[test]
fn http2_settings_from_the_environment() {
    let config = portcullis::Config::new(
        portcullis::MasterSecret::from_bytes(common::SECRET.to_vec()).unwrap(),
    );
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let d = ServeConfig::from_lookup(env(&[]), &config).unwrap();
    assert!(d.http2);
    assert_eq!(d.http2_max_streams, 100);
    let off = ServeConfig::from_lookup(
        env(&[
            ("PORTCULLIS_HTTP2", "off"),
            ("PORTCULLIS_HTTP2_MAX_STREAMS", "8"),
        ]),
        &config,
    )
    .unwrap();
    assert!(!off.http2);
    assert_eq!(off.http2_max_streams, 8);
    let err = ServeConfig::from_lookup(env(&[("PORTCULLIS_HTTP2", "maybe")]), &config)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PORTCULLIS_HTTP2") && err.contains("`on` or `off`"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------
// Connection-level abuse, in raw frames

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `GET /` for `authority` as an HPACK block with no dynamic-table state:
/// indexed `:method GET` (2), `:scheme http` (6), `:path /` (4), then
/// `:authority` as a literal without indexing (name index 1).
fn get_block(authority: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x86, 0x84, 0x01, authority.len() as u8];
    block.extend_from_slice(authority.as_bytes());
    block
}

/// A received frame's type, flags, stream and payload.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// What the server sent next.
enum Next {
    Frame(Frame),
    /// Nothing within the time given.
    Quiet,
    /// EOF or reset.
    Closed,
}

/// The next frame; `None` when the server closed or `max` passed.
async fn next_frame(s: &mut TcpStream, buf: &mut Vec<u8>, max: Duration) -> Option<Frame> {
    match next(s, buf, max).await {
        Next::Frame(f) => Some(f),
        Next::Quiet | Next::Closed => None,
    }
}

async fn next(s: &mut TcpStream, buf: &mut Vec<u8>, max: Duration) -> Next {
    let deadline = Instant::now() + max;
    loop {
        if buf.len() >= 9 {
            let len =
                (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() >= 9 + len {
                let f = Frame {
                    kind: buf[3],
                    flags: buf[4],
                    stream: u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff,
                    payload: buf[9..9 + len].to_vec(),
                };
                buf.drain(..9 + len);
                return Next::Frame(f);
            }
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return Next::Quiet;
        };
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Err(_) => return Next::Quiet,
            Ok(Ok(0)) | Ok(Err(_)) => return Next::Closed,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Connects, sends the preface and empty SETTINGS, reads the server's
/// SETTINGS and acknowledges them; returns the server's settings.
async fn handshake(addr: SocketAddr) -> (TcpStream, Vec<u8>, Vec<(u16, u32)>) {
    handshake_with(addr, &[]).await
}

/// [`handshake`] announcing `settings` (identifier, value) of the client's.
async fn handshake_with(
    addr: SocketAddr,
    settings: &[(u16, u32)],
) -> (TcpStream, Vec<u8>, Vec<(u16, u32)>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut hello = PREFACE.to_vec();
    let mut payload = Vec::new();
    for (id, value) in settings {
        payload.extend_from_slice(&id.to_be_bytes());
        payload.extend_from_slice(&value.to_be_bytes());
    }
    hello.extend(frame(SETTINGS, 0, 0, &payload));
    s.write_all(&hello).await.unwrap();
    let mut buf = Vec::new();
    let settings = loop {
        let f = next_frame(&mut s, &mut buf, Duration::from_secs(5))
            .await
            .expect("the server answers the preface");
        if f.kind == SETTINGS && f.flags & ACK == 0 {
            break f
                .payload
                .chunks(6)
                .map(|c| {
                    (
                        u16::from_be_bytes([c[0], c[1]]),
                        u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                    )
                })
                .collect::<Vec<_>>();
        }
    };
    s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
    (s, buf, settings)
}

/// A server whose `/` counts its runs and answers once `release` has a
/// permit for it.
struct Held {
    addr: SocketAddr,
    runs: Arc<AtomicUsize>,
    release: Arc<tokio::sync::Semaphore>,
}

async fn serve_held(config: ServeConfig) -> Held {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (r, gate) = (runs.clone(), release.clone());
    let router = Router::new().route(
        "/",
        get(move || {
            let (r, gate) = (r.clone(), gate.clone());
            async move {
                r.fetch_add(1, Ordering::SeqCst);
                let _ = gate.acquire().await.map(|p| p.forget());
                "done"
            }
        }),
    );
    tokio::spawn(async move {
        let _ = portcullis::app::serve_with(listener, router, config, std::future::pending()).await;
    });
    Held {
        addr,
        runs,
        release,
    }
}

async fn wait_for(what: &str, max: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < max, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn streams_beyond_the_cap_are_refused_while_the_cap_runs() {
    let held = serve_held(ServeConfig {
        http2_max_streams: 20,
        ..ServeConfig::default()
    })
    .await;
    let (mut s, mut buf, settings) = handshake(held.addr).await;
    assert!(
        settings.contains(&(0x3, 20)),
        "SETTINGS_MAX_CONCURRENT_STREAMS advertised: {settings:?}"
    );
    // One write: 50 requests at once on one connection, where 20 may run.
    let authority = held.addr.to_string();
    let mut flood = Vec::new();
    for i in 0..50u32 {
        flood.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * i + 1,
            &get_block(&authority),
        ));
    }
    s.write_all(&flood).await.unwrap();
    wait_for("20 running handlers", Duration::from_secs(5), || {
        held.runs.load(Ordering::SeqCst) >= 20
    })
    .await;
    let mut refused = 0;
    while refused < 30 {
        let f = next_frame(&mut s, &mut buf, Duration::from_secs(5))
            .await
            .expect("the over-cap streams are reset, the connection stays");
        if f.kind == RST_STREAM {
            assert_eq!(
                u32::from_be_bytes(f.payload[..4].try_into().unwrap()),
                REFUSED_STREAM
            );
            refused += 1;
        }
        assert_ne!(f.kind, GOAWAY, "the connection itself is not ended");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        held.runs.load(Ordering::SeqCst),
        20,
        "never more than the cap at once"
    );
    // Released, the 20 answer on the same connection.
    held.release.add_permits(1000);
    let mut answered = std::collections::HashSet::new();
    while answered.len() < 20 {
        let f = next_frame(&mut s, &mut buf, Duration::from_secs(5))
            .await
            .expect("the running streams are answered");
        if f.kind == DATA && f.flags & END_STREAM != 0 || f.kind == HEADERS {
            answered.insert(f.stream);
        }
    }
}

#[tokio::test]
async fn rapid_reset_flood_ends_the_connection() {
    let held = serve_held(ServeConfig::default()).await;
    let (mut s, mut buf, _) = handshake(held.addr).await;
    let authority = held.addr.to_string();
    // CVE-2023-44487: open a stream and cancel it at once, thousands of
    // times, so the server starts work the client never waits for.
    let mut flood = Vec::new();
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &get_block(&authority),
        ));
        flood.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    // The server may close mid-write; that is the expected outcome.
    let _ = s.write_all(&flood).await;
    let mut goaway = false;
    while let Some(f) = next_frame(&mut s, &mut buf, Duration::from_secs(5)).await {
        goaway |= f.kind == GOAWAY;
    }
    assert!(goaway, "the server says GOAWAY and closes");
    let runs = held.runs.load(Ordering::SeqCst);
    assert!(runs < 5_000, "the flood was cut short: {runs} handler runs");
    // The server still serves everyone else.
    held.release.add_permits(1000);
    let r = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .get(format!("http://{}/", held.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "done");
}

#[tokio::test]
async fn unfinished_http2_headers_do_not_hold_a_connection() {
    let held = serve_held(ServeConfig {
        header_read_timeout: Duration::from_secs(30),
        keep_alive_idle: Duration::from_millis(300),
        ..ServeConfig::default()
    })
    .await;
    let (mut s, mut buf, _) = handshake(held.addr).await;
    // A HEADERS frame without END_HEADERS, then CONTINUATION frames that
    // never end it, trickled: no request ever starts.
    let block = get_block(&held.addr.to_string());
    s.write_all(&frame(HEADERS, END_STREAM, 1, &block[..3]))
        .await
        .unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(4) {
        if s.write_all(&frame(CONTINUATION, 0, 1, &[0x82]))
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        if let Next::Closed = next(&mut s, &mut buf, Duration::from_millis(100)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "the connection was closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(held.runs.load(Ordering::SeqCst), 0);
    // A connection that only sent the preface is idle, and closed too.
    let (mut silent, mut buf, _) = handshake(held.addr).await;
    let started = Instant::now();
    loop {
        match next(&mut silent, &mut buf, Duration::from_secs(4)).await {
            Next::Frame(_) => continue,
            Next::Closed => break,
            Next::Quiet => panic!("an idle HTTP/2 connection stayed open"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_http2_stream_finish() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            "finished"
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(portcullis::app::serve_with(
        listener,
        router,
        ServeConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let request = tokio::spawn(async move {
        let r = client.get(format!("http://{addr}/")).send().await?;
        assert_eq!(r.version(), http::Version::HTTP_2);
        r.text().await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    assert_eq!(request.await.unwrap().unwrap(), "finished");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server returns once the stream is done")
        .unwrap()
        .unwrap();
}

/// The outside review's zero-window hold: a client that announces a
/// receive window of 0 and never widens it keeps its response unsent, and
/// its request in flight, forever; ~40 addresses holding such connections
/// took every slot. A stalled response now ends the connection.
#[tokio::test]
async fn a_response_held_by_a_zero_flow_control_window_does_not_hold_the_connection() {
    let held = serve_held(ServeConfig {
        keep_alive_idle: Duration::from_secs(60),
        stall_timeout: Duration::from_millis(500),
        ..ServeConfig::default()
    })
    .await;
    held.release.add_permits(1000);
    const INITIAL_WINDOW_SIZE: u16 = 0x4;
    let (mut s, mut buf, _) = handshake_with(held.addr, &[(INITIAL_WINDOW_SIZE, 0)]).await;
    s.write_all(&frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &get_block(&held.addr.to_string()),
    ))
    .await
    .unwrap();
    // The second review's bypass: a fresh stream every so often (here
    // opened and cancelled at once) must not vouch for the stuck one.
    let started = Instant::now();
    let mut body = false;
    let mut id = 3;
    loop {
        if started.elapsed() > Duration::from_secs(5) {
            panic!("a response the client never lets through held the connection");
        }
        let mut refresh = frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &get_block(&held.addr.to_string()),
        );
        refresh.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        id += 2;
        if s.write_all(&refresh).await.is_err() {
            break;
        }
        match next(&mut s, &mut buf, Duration::from_millis(150)).await {
            Next::Frame(f) => body |= f.kind == DATA && f.stream == 1 && !f.payload.is_empty(),
            Next::Closed => break,
            Next::Quiet => {}
        }
    }
    assert!(!body, "the window was zero: no body was sent");
    assert!(held.runs.load(Ordering::SeqCst) >= 1);
}
