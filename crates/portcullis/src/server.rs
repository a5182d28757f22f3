//! Serving an app: peer addresses for every request, connection limits,
//! timeouts and graceful shutdown.
//!
//! The pipeline needs the TCP peer (trusted proxies, per-ip limits), so apps
//! are served through [`serve`], which puts axum's `ConnectInfo` on every
//! request. On SIGTERM or Ctrl-C it stops accepting and lets in-flight
//! requests finish.
//!
//! # Connection-level abuse
//! `axum::serve` has no header-read timeout, no idle timeout and no
//! connection cap: thousands of half-sent headers stay open indefinitely.
//! So the accept loop is our own, over hyper's HTTP/1 connection builder
//! (hyper-util's Tokio I/O and timer), with [`ServeConfig`]:
//!
//! * **header-read timeout** (default 10 s): a request's headers must
//!   arrive within it, counted from when the connection is ready for them
//!   (hyper's `header_read_timeout`); a slow-headers client is cut off.
//! * **keep-alive idle timeout** (default 5 s, as Node's): a connection
//!   with no request in flight for this long is closed. (hyper's header
//!   timer also starts as soon as a kept-alive connection waits for its next
//!   request, so an idle connection never outlives the header timeout.)
//! * **max connections** (default 10,000): past it the loop stops accepting
//!   until one closes (the kernel's backlog holds the rest).
//! * **stalled responses** (default 30 s): a connection with a request in
//!   flight that made no progress for this long (no frame of its body read,
//!   no frame of its response taken to be sent) is dropped; each request
//!   has its own clock, so new requests do not keep a stuck one alive.
//!   Such a connection is closed with a reset, so the kernel discards the
//!   response it still buffered (MBs) instead of holding it for the peer. A client that stops
//!   reading, or an HTTP/2 client that opens its flow-control window at
//!   zero and never widens it, would otherwise keep its requests "in
//!   flight", and its connection out of the idle timeout, forever (found
//!   by the outside review: ~40 addresses held every connection slot).
//! * **closing**: a connection asked to close (idle, or at shutdown) that
//!   still has nothing in flight a second later is dropped, whatever the
//!   peer does (an HTTP/2 peer that never acknowledges the closing PING).
//! * **max connections per IP** (default 256): the next connection from an
//!   address that holds this many is closed at once, so one address cannot
//!   take every slot. Peers inside the trusted-proxy CIDRs are exempt (all
//!   traffic of a reverse proxy comes from its address); `0` turns the cap
//!   off.
//!
//! # HTTP/2
//! Every connection speaks HTTP/1.1 or, when its first bytes are the
//! HTTP/2 preface, HTTP/2 over cleartext ("prior knowledge" h2c: what a
//! TLS-terminating proxy or load balancer speaks to its backends, and
//! `curl --http2-prior-knowledge`). hyper-util's auto builder tells the two
//! apart; `PORTCULLIS_HTTP2=off` (or [`ServeConfig::http2`]) serves HTTP/1
//! only. The upgrade dance (`Upgrade: h2c`) is not supported: no browser
//! uses it. Per HTTP/2 connection:
//!
//! * **streams** at once: at most [`ServeConfig::http2_max_streams`]
//!   (default 100, advertised in SETTINGS); each stream is one request and
//!   counts as in flight, so the idle timeout never cuts a working
//!   connection. Rapid-reset floods (CVE-2023-44487) end the connection
//!   (hyper/h2's pending-reset cap, 20 by default) as do streams the server
//!   had to reset (1,024).
//! * **headers** of a stream: at most 16 KiB (hyper's default
//!   `SETTINGS_MAX_HEADER_LIST_SIZE`); a stream whose headers never
//!   complete is not a request, so a connection holding only such streams
//!   is idle and closed after the keep-alive idle timeout (HTTP/2 has no
//!   header-read timer in hyper; this is what bounds slow headers).
//! * **memory**: 1 MiB of unread request body per connection (hyper's
//!   connection window), whatever the number of streams.
//!
//! The pipeline reads `Host` and `Cookie` as HTTP/1 sends them, so an
//! HTTP/2 request is made to look like one before routing: its
//! `:authority` becomes `Host` (RFC 9113 §8.3.1; a `host` field the client
//! also sent is replaced, so the origin check always compares against the
//! authority the request was routed by), and its cookie fields, which
//! HTTP/2 clients may send one per cookie (§8.2.3), are joined into one.
//! The cost on the HTTP/1 path is one comparison of the request's version.
//!
//! State: the per-IP counts (a map with one entry per address that has a
//! live connection, so at most max-connections entries; an entry goes when
//! its last connection closes) and a semaphore. Written only by the accept
//! loop; one abusive address can hold at most its per-IP share.

use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use dashmap::DashMap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::proxy::TrustedProxies;

/// Connection limits and timeouts of [`serve_with`].
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Time allowed for a request's headers (default 10 s).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed
    /// (default 5 s).
    pub keep_alive_idle: Duration,
    /// Most connections open at once (default 10,000).
    pub max_connections: usize,
    /// Most connections open at once from one address (default 256; `0`:
    /// no per-address cap).
    pub max_connections_per_ip: usize,
    /// Peers exempt from the per-address cap (your reverse proxies).
    pub exempt: TrustedProxies,
    /// Serve HTTP/2 (prior knowledge) beside HTTP/1.1 (default true).
    pub http2: bool,
    /// Most requests (streams) at once on one HTTP/2 connection (default
    /// 100).
    pub http2_max_streams: u32,
    /// A connection with a request in flight that made no progress (no
    /// frame of its body read, none of its response taken to be sent) for
    /// this long is dropped (default 30 s). Keep it above the handler deadline and the
    /// upload idle cut, which bound a request that is working or uploading.
    pub stall_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_idle: Duration::from_secs(5),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            exempt: TrustedProxies::none(),
            http2: true,
            http2_max_streams: 100,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a serve setting from the environment was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: expected {expected}, got `{value}`")]
pub struct ServeConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// What it was set to.
    pub value: String,
    /// What it should have been.
    pub expected: &'static str,
}

impl ServeConfig {
    /// The defaults, overridden by `PORTCULLIS_HEADER_READ_TIMEOUT_MS`,
    /// `PORTCULLIS_KEEP_ALIVE_IDLE_MS`, `PORTCULLIS_MAX_CONNECTIONS`,
    /// `PORTCULLIS_MAX_CONNECTIONS_PER_IP`, `PORTCULLIS_STALL_TIMEOUT_MS`,
    /// `PORTCULLIS_HTTP2` (`on` or `off`) and `PORTCULLIS_HTTP2_MAX_STREAMS`;
    /// `exempt` is the app's trusted proxies.
    pub fn from_env(config: &crate::Config) -> Result<Self, ServeConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok(), config)
    }

    /// [`ServeConfig::from_env`] over any lookup function (for tests).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
        config: &crate::Config,
    ) -> Result<Self, ServeConfigError> {
        let text = |var: &str| {
            get(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |var: &'static str| -> Result<Option<u64>, ServeConfigError> {
            match text(var) {
                None => Ok(None),
                Some(v) => v.parse().map(Some).map_err(|_| ServeConfigError {
                    var,
                    value: v,
                    expected: "a whole number",
                }),
            }
        };
        let mut out = ServeConfig {
            exempt: config.proxies.clone(),
            ..ServeConfig::default()
        };
        if let Some(ms) = number("PORTCULLIS_HEADER_READ_TIMEOUT_MS")? {
            out.header_read_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = number("PORTCULLIS_KEEP_ALIVE_IDLE_MS")? {
            out.keep_alive_idle = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = number("PORTCULLIS_MAX_CONNECTIONS")? {
            out.max_connections = (n as usize).max(1);
        }
        if let Some(n) = number("PORTCULLIS_MAX_CONNECTIONS_PER_IP")? {
            out.max_connections_per_ip = n as usize;
        }
        const HTTP2: &str = "PORTCULLIS_HTTP2";
        if let Some(value) = text(HTTP2) {
            match value.to_ascii_lowercase().as_str() {
                "on" | "true" | "1" => {}
                "off" | "false" | "0" => out.http2 = false,
                _ => {
                    return Err(ServeConfigError {
                        var: HTTP2,
                        value,
                        expected: "`on` or `off`",
                    });
                }
            }
        }
        if let Some(ms) = number("PORTCULLIS_STALL_TIMEOUT_MS")? {
            out.stall_timeout = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = number("PORTCULLIS_HTTP2_MAX_STREAMS")? {
            out.http2_max_streams = n.clamp(1, u64::from(u32::MAX)) as u32;
        }
        Ok(out)
    }
}

/// Serves `router` until SIGTERM or Ctrl-C, then drains in-flight requests,
/// with the default [`ServeConfig`].
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    serve_with(listener, router, ServeConfig::default(), shutdown_signal()).await
}

/// Serves `router` until `signal` completes, with the default [`ServeConfig`].
pub async fn serve_until(
    listener: TcpListener,
    router: Router,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router, ServeConfig::default(), signal).await
}

/// Why [`drive`]'s watch woke up.
enum Wake {
    /// Nothing in flight for the keep-alive idle time (or the close grace).
    Idle,
    /// A request in flight made no progress for the stall timeout.
    Stalled,
}

/// How long a connection asked to close (idle, or shutting down) may take
/// to do so once it has no request in flight (see [`serve_with`]).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Per-address connection counts (see the module docs).
struct PerIp {
    counts: DashMap<IpAddr, usize>,
    max: usize,
}

impl PerIp {
    /// Takes a slot for `ip`, or `None` if it holds `max` already.
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut n = self.counts.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            per_ip: self.clone(),
            ip,
        })
    }
}

struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        self.per_ip.counts.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// The requests in flight on one connection (one progress clock each) and
/// when the last one ended.
struct Activity {
    idle_since: Mutex<Instant>,
    /// When the connection was accepted; the clocks count from here.
    opened: Instant,
    /// One clock per request in flight (at most the HTTP/2 stream cap, one
    /// on HTTP/1): milliseconds after `opened` of that request's last sign
    /// of life (it started, a frame of its body was read, a frame of its
    /// response was taken to be sent). Per request, so that a new request
    /// does not vouch for an old one that is stuck (outside review: a
    /// stream opened every 25 s kept a zero-window stream alive for ever).
    clocks: Mutex<Vec<Arc<AtomicU64>>>,
    /// Set when the connection is dropped for a stall: its socket then
    /// closes with a reset, so the kernel discards the unsent response
    /// instead of holding it (MBs per socket) for a peer that never reads.
    abort: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Activity {
            idle_since: Mutex::new(now),
            opened: now,
            clocks: Mutex::new(Vec::new()),
            abort: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The last progress of the request in flight that made progress least
    /// recently (`None`: nothing in flight, the connection is idle).
    fn stalest(&self) -> Option<Instant> {
        let clocks = self.clocks.lock().unwrap_or_else(|e| e.into_inner());
        let ms = clocks.iter().map(|c| c.load(Ordering::Relaxed)).min()?;
        Some(self.opened + Duration::from_millis(ms))
    }
}

/// A request in flight: counted, with its progress clock.
struct InFlight {
    activity: Arc<Activity>,
    clock: Arc<AtomicU64>,
}

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        let clock = Arc::new(AtomicU64::new(activity.now_ms()));
        activity
            .clocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(clock.clone());
        InFlight {
            activity: activity.clone(),
            clock,
        }
    }
}

/// A connection's socket; closed with a reset (`SO_LINGER` 0) when its
/// connection was dropped for a stall (see [`Activity::abort`]), else with
/// the usual FIN.
struct Socket {
    stream: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.activity.abort.load(Ordering::Relaxed) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl tokio::io::AsyncRead for Socket {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Socket {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.activity;
        activity
            .clocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| !Arc::ptr_eq(c, &self.clock));
        *activity
            .idle_since
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

/// A request's body or its response's, whose frames are the request's
/// progress (see [`ServeConfig::stall_timeout`]). The response's also holds
/// the request's [`InFlight`], so the request counts as in flight until its
/// response has been sent (or dropped).
struct Tracked<B> {
    body: B,
    activity: Arc<Activity>,
    clock: Arc<AtomicU64>,
    _in_flight: Option<InFlight>,
}

impl<B> http_body::Body for Tracked<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(_))) = &polled {
            self.clock.store(self.activity.now_ms(), Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Serves `router` with `config` until `signal` completes, then stops
/// accepting and waits for open connections to finish their requests.
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    config: ServeConfig,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = config.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let per_ip = Arc::new(PerIp {
        counts: DashMap::new(),
        max: config.max_connections_per_ip,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut signal = std::pin::pin!(signal);
    loop {
        let permit = tokio::select! {
            _ = &mut signal => break,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, as
                    // axum::serve does, rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip();
        let ip_slot = if config.max_connections_per_ip == 0 || config.exempt.contains(ip) {
            None
        } else {
            match per_ip.acquire(ip) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%ip, "connection refused: per-address cap reached");
                    drop(stream);
                    continue;
                }
            }
        };
        let router = router.clone();
        let config = config.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ip_slot = ip_slot;
            let activity = Arc::new(Activity::new());
            let counting = activity.clone();
            let service = hyper::service::service_fn(
                move |mut request: http::Request<hyper::body::Incoming>| {
                    if request.version() == http::Version::HTTP_2 {
                        as_http1_head(&mut request);
                    }
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let in_flight = InFlight::start(&counting);
                    let (reading, clock) = (counting.clone(), in_flight.clock.clone());
                    let router = router.clone();
                    async move {
                        let response = router
                            .oneshot(request.map(|body| {
                                axum::body::Body::new(Tracked {
                                    body,
                                    activity: reading.clone(),
                                    clock: clock.clone(),
                                    _in_flight: None,
                                })
                            }))
                            .await
                            .unwrap_or_else(|never| match never {});
                        Ok::<_, std::convert::Infallible>(response.map(|body| {
                            axum::body::Body::new(Tracked {
                                body,
                                activity: in_flight.activity.clone(),
                                clock: in_flight.clock.clone(),
                                _in_flight: Some(in_flight),
                            })
                        }))
                    }
                },
            );
            let io = TokioIo::new(Socket {
                stream,
                activity: activity.clone(),
            });
            if config.http2 {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(config.header_read_timeout);
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(config.http2_max_streams);
                let conn = std::pin::pin!(builder.serve_connection_with_upgrades(io, service));
                drive(
                    conn,
                    |c| c.graceful_shutdown(),
                    &activity,
                    &config,
                    stop,
                    peer,
                )
                .await;
            } else {
                // hyper's own HTTP/1 builder: hyper-util's auto builder
                // ignores `http1_only` when upgrades are on.
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(config.header_read_timeout);
                let conn = std::pin::pin!(builder.serve_connection(io, service).with_upgrades());
                drive(
                    conn,
                    |c| c.graceful_shutdown(),
                    &activity,
                    &config,
                    stop,
                    peer,
                )
                .await;
            }
        });
    }
    // Stop accepting; let every open connection finish what it is doing.
    drop(listener);
    let _ = stop_tx.send(true);
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}

/// Serves one connection until it ends: closes it gracefully when it has
/// been idle for the keep-alive timeout or the server stops, and drops it
/// when a graceful close does not finish (see [`CLOSE_GRACE`]).
async fn drive<C, E>(
    mut conn: std::pin::Pin<&mut C>,
    graceful: impl Fn(std::pin::Pin<&mut C>),
    activity: &Activity,
    config: &ServeConfig,
    mut stop: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
) where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    // When a graceful close began (`None`: serving). A connection
    // asked to close that still has no request in flight after
    // CLOSE_GRACE is dropped: an HTTP/2 peer that never acknowledges
    // the closing PING (or keeps sending a header block that never
    // ends) would otherwise hold its slot, and shutdown, forever.
    let mut closing: Option<Instant> = None;
    loop {
        let idle_check = async {
            loop {
                let now = Instant::now();
                let wait = if let Some(stalest) = activity.stalest() {
                    let stalled_at = stalest + config.stall_timeout;
                    if now >= stalled_at {
                        return Wake::Stalled;
                    }
                    // Wake again by the stall deadline, or sooner to see
                    // whether the requests have ended and the idle clock runs.
                    (stalled_at - now).min(config.keep_alive_idle)
                } else {
                    let since = *activity
                        .idle_since
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    let mut deadline = since + config.keep_alive_idle;
                    if let Some(began) = closing {
                        deadline = deadline.max(began + CLOSE_GRACE);
                    }
                    if now >= deadline {
                        return Wake::Idle;
                    }
                    // A request that starts meanwhile does not wake this
                    // watch: look again within the stall timeout.
                    (deadline - now).min(config.stall_timeout)
                };
                tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
            }
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                break;
            }
            _ = stop.changed(), if closing.is_none() => {
                closing = Some(Instant::now());
                graceful(conn.as_mut());
            }
            wake = idle_check => match wake {
                Wake::Stalled => {
                    activity.abort.store(true, Ordering::Relaxed);
                    tracing::debug!(%peer, "a request on the connection made no progress; dropped");
                    break;
                }
                Wake::Idle if closing.is_some() => {
                    tracing::debug!(%peer, "connection did not close gracefully; dropped");
                    break;
                }
                Wake::Idle => {
                    closing = Some(Instant::now());
                    graceful(conn.as_mut());
                }
            }
        }
    }
}

/// Makes an HTTP/2 request's head read as HTTP/1's (see the module docs):
/// `:authority` as `Host`, the cookie fields joined into one.
fn as_http1_head<B>(request: &mut http::Request<B>) {
    let authority = request
        .uri()
        .authority()
        .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = authority {
        request.headers_mut().insert(http::header::HOST, host);
    }
    let headers = request.headers_mut();
    let mut cookies = headers.get_all(http::header::COOKIE).iter();
    if let (Some(_), Some(_)) = (cookies.next(), cookies.next()) {
        let mut joined = Vec::new();
        for value in headers.get_all(http::header::COOKIE) {
            if !joined.is_empty() {
                joined.extend_from_slice(b"; ");
            }
            joined.extend_from_slice(value.as_bytes());
        }
        // Made of valid header values and "; ", so valid itself.
        if let Ok(one) = http::HeaderValue::from_bytes(&joined) {
            headers.insert(http::header::COOKIE, one);
        }
    }
}

/// Completes on SIGTERM (unix) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
