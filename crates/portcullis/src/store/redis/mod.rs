//! The framework's one Redis client, and every store on it.
//!
//! [`Redis`] is built once per app from the configuration
//! (`REDIS_URL`, `PORTCULLIS_REDIS_PREFIX`, `PORTCULLIS_REDIS_TIMEOUT_MS`) and
//! shared by the counter store ([`RedisCounters`]), the idempotency store
//! ([`RedisIdempotency`]), the tag bus ([`RedisTagBus`]) and the session
//! store ([`RedisSessionStore`]): one multiplexed `ConnectionManager`, one
//! set of timeouts, one reconnection policy, one outage log. (The tag bus's
//! subscription is the one other connection: a subscribed RESP2 connection
//! can do nothing else.) Before this, each of those had its own client (and
//! the demo's sessions a second Redis library whose pool hung forever once
//! Redis restarted).
//!
//! Connection handling (`redis::aio::ConnectionManagerConfig`):
//! * connecting (TCP + handshake) times out after 1 s, so a stopped server
//!   that still accepts TCP connections is not waited on forever;
//! * a response times out after `max(timeout, 500 ms)` at the connection;
//!   each call additionally runs under its own caller's deadline
//!   (`Redis::run`), which is the one that decides the request's fate;
//! * a dropped connection is re-established in the background, retried up to
//!   6 times per attempt with exponential backoff (50 ms base, factor 2,
//!   capped at 2 s) and full jitter; a later call starts a fresh attempt if
//!   that one failed, so recovery never needs a restart.
//!
//! The connection is created lazily on the first call (creating it needs the
//! Tokio runtime), so an app starts while Redis is down and serves 503 for
//! what needs Redis until it is up.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, FromRedisValue, RedisResult};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store;

use super::{Outage, StoreError};

mod bus;
mod counters;
mod idempotency;

pub use self::bus::RedisTagBus;
pub use self::counters::RedisCounters;
pub use self::idempotency::RedisIdempotency;

/// How long connecting (TCP + handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnection backoff: the first delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest reconnection delay (the backoff doubles up to it).
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The shared Redis connection. Cheap to clone (an `Arc`).
///
/// State: one `ConnectionManager` (its in-flight commands are bounded by
/// the callers' deadlines), the key prefix, and the [`Outage`] log counters.
/// Written only by the framework's stores; the keys each one writes are
/// documented where they are written.
#[derive(Clone)]
pub struct Redis(Arc<Inner>);

struct Inner {
    client: Client,
    config: ConnectionManagerConfig,
    conn: OnceLock<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    outage: Outage,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.0.prefix)
            .field("timeout", &self.0.timeout)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A handle on `url`; nothing connects until the first call.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = Client::open(url).map_err(|e| StoreError::BadUrl(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(timeout.max(Duration::from_millis(500))))
            .set_number_of_retries(6)
            .set_exponent_base(2.0)
            .set_min_delay(BACKOFF_MIN)
            .set_max_delay(BACKOFF_MAX);
        Ok(Redis(Arc::new(Inner {
            client,
            config,
            conn: OnceLock::new(),
            prefix: prefix.to_owned(),
            timeout,
            outage: Outage::new("redis"),
        })))
    }

    /// The handle the configuration asks for (`None` without `REDIS_URL`).
    pub fn from_config(config: &crate::Config) -> Result<Option<Self>, StoreError> {
        config
            .redis_url
            .as_ref()
            .map(|url| Redis::new(&url.0, &config.redis_prefix, config.deadlines.redis))
            .transpose()
    }

    /// The prefix of every key the framework writes.
    pub fn prefix(&self) -> &str {
        &self.0.prefix
    }

    /// The default deadline of one command.
    pub fn timeout(&self) -> Duration {
        self.0.timeout
    }

    /// The outage log (and recovery signal) of this connection.
    pub fn outage(&self) -> &Outage {
        &self.0.outage
    }

    pub(crate) fn client(&self) -> &Client {
        &self.0.client
    }

    /// A session store on this connection (keys `{prefix}session:{id}`).
    pub fn sessions(&self) -> RedisSessionStore {
        RedisSessionStore {
            redis: self.clone(),
        }
    }

    fn connection(&self) -> Result<ConnectionManager, StoreError> {
        if let Some(c) = self.0.conn.get() {
            return Ok(c.clone());
        }
        let c =
            ConnectionManager::new_lazy_with_config(self.0.client.clone(), self.0.config.clone())
                .map_err(|e| StoreError::Unavailable {
                store: "redis",
                detail: e.to_string(),
            })?;
        // Two first calls may race; one manager wins, the other is dropped
        // before it ever connected (it is lazy).
        Ok(self.0.conn.get_or_init(|| c).clone())
    }

    /// Runs `call` on the shared connection under `after`; records the
    /// outcome in the outage log. `store` names the caller in errors.
    pub(crate) async fn run<T, F>(
        &self,
        store: &'static str,
        after: Duration,
        call: impl FnOnce(ConnectionManager) -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = RedisResult<T>>,
    {
        let result = match self.connection() {
            Ok(conn) => match tokio::time::timeout(after, call(conn)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(StoreError::Unavailable {
                    store,
                    detail: e.to_string(),
                }),
                Err(_) => Err(StoreError::Timeout { store, after }),
            },
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.0.outage.ok(),
            Err(e) => self.0.outage.failed(e, None),
        }
        result
    }

    /// One command under the default deadline.
    pub async fn query<T: FromRedisValue>(
        &self,
        store: &'static str,
        cmd: &::redis::Cmd,
    ) -> Result<T, StoreError> {
        self.run(store, self.0.timeout, |mut c| async move {
            cmd.query_async::<T>(&mut c).await
        })
        .await
    }

    /// `PING`: the watchdog's probe (see [`Redis::watch`]).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.query::<String>("redis", &::redis::cmd("PING"))
            .await
            .map(|_| ())
    }

    /// Pings every `every` while the handle lives, so an idle instance sees
    /// an outage (and its end) too, and reconnects before the next request
    /// needs Redis. Needs the Tokio runtime.
    pub fn watch(&self, every: Duration) {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let _ = Redis(inner).ping().await;
            }
        });
    }
}

/// A `tower_sessions::SessionStore` on the shared [`Redis`] connection.
///
/// Each record is one key, `{prefix}session:{id}`, holding the record as
/// JSON, expiring at the record's expiry (`PXAT`): written only by the
/// session layer (sign-in, session data), bounded by the session idle
/// timeout (Redis removes it), removed on sign-out. One user's sessions do
/// not touch another's keys; a flood of anonymous requests creates no
/// records (tower-sessions writes only sessions that hold data).
///
/// Every command runs under the connection's deadline; a miss is
/// `session_store::Error::Backend`, i.e. `503 session_store_unavailable`.
/// A record that does not decode (e.g. written by another library) is
/// treated as absent: the user is signed out, never let in as someone.
#[derive(Clone, Debug)]
pub struct RedisSessionStore {
    redis: Redis,
}

impl RedisSessionStore {
    /// The connection this store uses (hand it to
    /// [`crate::Portcullis::redis`] so the whole app shares it).
    pub fn connection(&self) -> &Redis {
        &self.redis
    }

    fn key(&self, id: &Id) -> String {
        format!("{}session:{id}", self.redis.prefix())
    }

    fn expire_at_ms(record: &Record) -> i64 {
        (record.expiry_date.unix_timestamp_nanos() / 1_000_000).max(1) as i64
    }

    async fn set(&self, record: &Record, only_new: bool) -> session_store::Result<bool> {
        let json = serde_json::to_string(record)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.key(&record.id))
            .arg(json)
            .arg("PXAT")
            .arg(Self::expire_at_ms(record));
        if only_new {
            cmd.arg("NX");
        }
        let set: Option<String> = self
            .redis
            .query("session store", &cmd)
            .await
            .map_err(backend)?;
        Ok(set.is_some())
    }
}

fn backend(e: StoreError) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait::async_trait]
impl tower_sessions::SessionStore for RedisSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        // A new id until one is free (a collision of 128 random bits is
        // practically impossible; three tries bound the loop anyway).
        for _ in 0..3 {
            if self.set(record, true).await? {
                return Ok(());
            }
            record.id = Id::default();
        }
        Err(session_store::Error::Backend(
            "could not allocate a fresh session id".into(),
        ))
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.set(record, false).await.map(|_| ())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let json: Option<String> = self
            .redis
            .query("session store", ::redis::cmd("GET").arg(self.key(id)))
            .await
            .map_err(backend)?;
        Ok(json.and_then(|j| match serde_json::from_str::<Record>(&j) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(error = %e, "session record does not decode; treated as absent");
                None
            }
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.redis
            .query::<i64>("session store", ::redis::cmd("DEL").arg(self.key(id)))
            .await
            .map(|_| ())
            .map_err(backend)
    }
}
