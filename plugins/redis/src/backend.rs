//! The cache capability on a Redis server.
//!
//! # Keys
//!
//! Every key lives under the store's prefix `P` (`bp:<store>:` unless
//! configured):
//!
//! - `P kv:<key>`: a string, one per cache key; TTLs are Redis's own
//!   (`SET … PX`, `PEXPIRE`).
//! - `P chan:{<channel>}:list`: a list of the channel's messages as JSON
//!   objects (`id`, `role`, `content`, `timestamp_ms`, `metadata`), oldest
//!   first.
//! - `P chan:{<channel>}:ids`: a set of the ids in the list, for the
//!   duplicate check.
//!
//! The braces are a Redis Cluster hash tag: both keys of a channel hash to
//! the same slot, so the scripts that update them together stay valid in a
//! cluster. The channel name is escaped inside the tag (`%` → `%25`, `{` →
//! `%7B`, `}` → `%7D`) so the tag always ends where the plugin put its `}`
//! and is never empty; the prefix may not contain braces (the config
//! refuses them).
//!
//! # Atomicity
//!
//! `add_message` and `add_messages` are one Lua script (EVALSHA, the script
//! loaded on every master when the server does not know it): the duplicate
//! checks, the pushes, the trim to `max_messages` (with the trimmed ids
//! removed from the set) and the `PEXPIRE` of both keys when a channel TTL
//! is configured all happen at once, and the script checks everything it
//! can fail on before it writes. `remove_message` finds the stored JSON of
//! the id and removes it with a script (`LREM` + `SREM`); `clear` is a
//! script too (`LLEN`, `DEL`). `set_many` is one `MULTI` of `SET`s on a
//! single server; on a cluster its keys live in different slots, so it is
//! a pipeline per node, each `SET` atomic on its own.
//!
//! # Connections
//!
//! A pool of up to `pool_size` connections (each a
//! [`ClusterConnection`] in cluster mode, which holds one connection per
//! node and follows `MOVED`/`ASK` redirections), opened on demand with the
//! configured connect timeout and read/write timeouts; a call waits for a
//! free connection at most `timeout_ms`. After an I/O error (refused,
//! reset, timed out) the connection is dropped along with every idle one
//! opened before the error (they are to the same server, likely broken
//! too), and the next call connects again; the failing call returns
//! `Unavailable`, which callers may retry. Opening a store never connects,
//! so a host starts while Redis is down.
//!
//! # Async calls
//!
//! On a single server, `get` and `set` also have a non-blocking form
//! ([`AsyncCache`]): each is a task on the store's own tokio runtime (one
//! worker, started on first use) over one multiplexed connection
//! (`AsyncConn`), answering through the host's callback. A cluster store
//! has none (redis-rs's async cluster client is not compiled in).

use crate::config::RedisConfig;
use backplane_core::kit::id::new_id;
use backplane_core::kit::pool::{Connect, OnBreak, Pool, PoolOptions};
use backplane_core::kit::redact::redact_url;
use backplane_core::kit::time::now_ms;
use backplane_core::{
    check_batch_ids, validate_key, validate_ttl, AsyncCache, Cache, CacheStats, ChannelLimits,
    Done, Error, Health, Message, Result,
};
use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Connection, ConnectionInfo, ConnectionLike, IntoConnectionInfo, RedisError, Script};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Keys asked for per `SCAN` call, and commands per pipeline in `stats`.
const SCAN_COUNT: usize = 1000;

/// The longest TTL sent to Redis, in milliseconds (about 285,000 years): a
/// larger one is clamped so `now + ttl` cannot overflow on the server.
const MAX_TTL_MS: u64 = 1 << 53;

/// Tries at a fresh id when a generated one is taken (which takes two
/// processes drawing the same random salt in the same microsecond, or a
/// caller that chose an id shaped like a generated one).
const ID_ATTEMPTS: usize = 3;

/// `add_messages`. KEYS: list, ids. ARGV: max_messages, channel TTL in ms
/// (0: none), then an id and a message JSON per message. Returns 0 when
/// all were added, else the (1-based) position of the first message whose
/// id is taken, and adds nothing. Everything that can fail is checked
/// before the first write.
const ADD_SCRIPT: &str = r#"
local n = (#ARGV - 2) / 2
for i = 1, n do
  if redis.call('SISMEMBER', KEYS[2], ARGV[1 + 2 * i]) == 1 then
    return i
  end
end
local max = tonumber(ARGV[1])
local drop = redis.call('LLEN', KEYS[1]) + n - max
local gone = {}
if drop > 0 then
  local old = redis.call('LRANGE', KEYS[1], 0, drop - 1)
  for i, raw in ipairs(old) do
    local ok, m = pcall(cjson.decode, raw)
    if not ok or type(m) ~= 'table' or type(m.id) ~= 'string' then
      return redis.error_reply('BACKPLANE ' .. KEYS[1] .. ' holds an element that is not a Backplane message; delete the key')
    end
    gone[i] = m.id
  end
end
for i = 1, n do
  redis.call('RPUSH', KEYS[1], ARGV[2 + 2 * i])
  redis.call('SADD', KEYS[2], ARGV[1 + 2 * i])
end
if drop > 0 then
  redis.call('LTRIM', KEYS[1], drop, -1)
  for _, id in ipairs(gone) do
    redis.call('SREM', KEYS[2], id)
  end
  -- Messages of this batch trimmed at once never were in the list.
  for i = 1, n do
    if i <= drop - #gone then
      redis.call('SREM', KEYS[2], ARGV[1 + 2 * i])
    end
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 0
"#;

/// `remove_message`. KEYS: list, ids. ARGV: id, the message's stored JSON.
/// Returns how many elements were removed (0 or 1).
const REMOVE_SCRIPT: &str = r#"
local n = redis.call('LREM', KEYS[1], 1, ARGV[2])
if n > 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return n
"#;

/// `clear`. KEYS: list, ids. Returns the list's length before.
const CLEAR_SCRIPT: &str = r#"
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return n
"#;

/// How a store reaches its data.
enum Server {
    /// One server.
    Single(redis::Client),
    /// A Redis Cluster, found from its seed nodes.
    Cluster(ClusterClient),
}

/// One connection of the pool.
enum Conn {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }
}

/// How the pool opens a connection.
struct Connector {
    server: Server,
    shared: Arc<Shared>,
    prefix: String,
}

impl Connector {
    fn open(&self) -> redis::RedisResult<Conn> {
        Ok(match &self.server {
            Server::Single(client) => {
                let conn = client.get_connection_with_timeout(self.shared.connect_timeout)?;
                conn.set_read_timeout(Some(self.shared.timeout))?;
                conn.set_write_timeout(Some(self.shared.timeout))?;
                Conn::Single(conn)
            }
            Server::Cluster(client) => {
                let conn = client.get_connection()?;
                conn.set_read_timeout(Some(self.shared.timeout))?;
                conn.set_write_timeout(Some(self.shared.timeout))?;
                Conn::Cluster(Box::new(conn))
            }
        })
    }
}

impl Connect for Connector {
    type Conn = Conn;

    fn connect(&self) -> Result<Conn> {
        let conn = self.open().map_err(|e| self.shared.describe(&e))?;
        log::debug!(
            "redis: connected to {} (prefix {})",
            self.shared.at,
            self.prefix
        );
        Ok(conn)
    }
}

/// A cache store on a Redis (or Valkey) server, or a Redis Cluster.
pub struct RedisCache {
    /// What errors say, and the counters; shared with async calls.
    shared: Arc<Shared>,
    /// `host:port` of the server (or its socket path), or the seed nodes.
    addr: String,
    keys: Keys,
    limits: ChannelLimits,
    max_value_bytes: usize,
    /// Up to `pool_size` connections for the blocking calls.
    pool: Pool<Connector>,
    /// The non-blocking side (single server only): a multiplexed
    /// connection on the store's own runtime, both made on first use.
    aio: Option<Arc<AsyncConn>>,
    runtime: OnceLock<std::result::Result<tokio::runtime::Runtime, String>>,
    add: Script,
    remove: Script,
    clear: Script,
}

impl RedisCache {
    /// A store for the settings in `config`, its keys under the prefix for
    /// store `store`. Parses the URL but does not connect: the first call
    /// does. A URL that does not parse is a `Config` error.
    pub fn new(config: &RedisConfig, store: &str) -> Result<RedisCache> {
        let tls = config.tls();
        let certs = tls.map(tls_certificates).transpose()?;
        let parse = |url: &str| -> Result<ConnectionInfo> {
            // `tls` on a redis:// URL: the same server, over TLS.
            let url = match (tls, url.split_once("://")) {
                (Some(_), Some((scheme, rest))) if scheme.eq_ignore_ascii_case("redis") => {
                    format!("rediss://{rest}")
                }
                _ => url.to_string(),
            };
            let url = url.as_str();
            let mut info = url.into_connection_info().map_err(|e| {
                Error::config(format!(
                    "url '{}' is not a usable Redis URL ({e}): write redis://[user:password@]host[:port][/db] or redis+unix:///path/to/socket",
                    redact_url(url)
                ))
            })?;
            if let Some(pw) = &config.password {
                let settings = info
                    .redis_settings()
                    .clone()
                    .set_password(pw.expose().clone());
                info = info.set_redis_settings(settings);
            }
            Ok(info)
        };
        let (server, at, addr, db) = match &config.nodes {
            None => {
                let info = parse(config.url())?;
                let addr = info.addr().to_string();
                let db = info.redis_settings().db();
                let client = match &certs {
                    Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
                    None => redis::Client::open(info),
                }
                .map_err(|e| {
                    Error::config(format!(
                        "url '{}' cannot be used ({e})",
                        redact_url(config.url())
                    ))
                })?;
                let at = format!("the redis server at {addr}");
                (Server::Single(client), at, addr, db)
            }
            Some(nodes) => {
                let infos = nodes
                    .iter()
                    .map(|u| parse(u))
                    .collect::<Result<Vec<ConnectionInfo>>>()?;
                for (url, info) in nodes.iter().zip(&infos) {
                    if info.redis_settings().db() != 0 {
                        return Err(Error::config(format!(
                            "node '{}' names database {}: Redis Cluster has database 0 only; remove the /{} at the end",
                            redact_url(url),
                            info.redis_settings().db(),
                            info.redis_settings().db()
                        )));
                    }
                }
                let addr = infos
                    .iter()
                    .map(|i| i.addr().to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                let mut builder = ClusterClient::builder(infos);
                if let Some(certs) = certs {
                    builder = builder.tls(redis::TlsMode::Secure).certs(certs);
                }
                let client = builder
                    .connection_timeout(config.connect_timeout())
                    .response_timeout(config.timeout())
                    .retries(CLUSTER_RETRIES)
                    .build()
                    .map_err(|e| {
                        Error::config(format!("nodes cannot be used as a Redis Cluster ({e})"))
                    })?;
                let at = format!("the redis cluster at {addr}");
                (Server::Cluster(client), at, addr, 0)
            }
        };
        let shared = Arc::new(Shared {
            at,
            db,
            tls: tls.is_some(),
            connect_timeout: config.connect_timeout(),
            timeout: config.timeout(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        });
        let aio = match &server {
            Server::Single(client) => Some(Arc::new(AsyncConn {
                client: client.clone(),
                config: redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(shared.connect_timeout))
                    .set_response_timeout(Some(shared.timeout)),
                current: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                shared: shared.clone(),
            })),
            Server::Cluster(_) => None,
        };
        let keys = Keys::new(config.prefix(store));
        let pool = Pool::new(
            Connector {
                server,
                shared: shared.clone(),
                prefix: keys.prefix.clone(),
            },
            PoolOptions::new(config.pool_size, config.timeout(), shared.at.clone())
                .busy_hint("raise pool_size or timeout_ms; the call can be retried")
                .on_break(OnBreak::CloseIdle),
        );
        Ok(RedisCache {
            shared,
            addr,
            keys,
            limits: config.channel_limits()?,
            max_value_bytes: config.max_value_bytes,
            pool,
            aio,
            runtime: OnceLock::new(),
            add: Script::new(ADD_SCRIPT),
            remove: Script::new(REMOVE_SCRIPT),
            clear: Script::new(CLEAR_SCRIPT),
        })
    }

    /// The key prefix of this store.
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// `host:port` of the server (or its socket path).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.pool.connector().server, Server::Cluster(_))
    }

    /// Run `f` on a connection of the pool. An error that leaves the
    /// connection unusable drops it and every idle connection opened
    /// before it, so the next call reconnects.
    fn run<T>(&self, what: &str, f: impl FnOnce(&mut Conn) -> redis::RedisResult<T>) -> Result<T> {
        let mut conn = self.pool.get().map_err(|e| e.context(what))?;
        f(&mut conn).map_err(|e| {
            if breaks_connection(&e) {
                log::warn!(
                    "redis: {what} on {} failed ({e}); reconnecting on the next call",
                    self.shared.at
                );
                conn.mark_broken();
            }
            self.error(what, &e)
        })
    }

    /// Translate a client or server error into Backplane's kinds.
    fn error(&self, what: &str, e: &RedisError) -> Error {
        self.shared.error(what, e)
    }

    fn check_value(&self, what: &str, name: &str, len: usize) -> Result<()> {
        if len > self.max_value_bytes {
            return Err(Error::invalid(format!(
                "the {what} for '{name}' is {len} bytes; this store accepts at most {} (max_value_bytes): store it elsewhere or raise max_value_bytes",
                self.max_value_bytes
            )));
        }
        Ok(())
    }

    fn count(&self, hits: u64, misses: u64) {
        self.shared.count(hits, misses)
    }

    /// `SET key value [PX ttl]` for one entry.
    fn set_cmd(pipe: &mut redis::Pipeline, key: String, value: &[u8], ttl: Option<Duration>) {
        let c = pipe.cmd("SET").arg(key).arg(value);
        if let Some(t) = ttl {
            c.arg("PX").arg(ttl_ms(t));
        }
    }
}

/// What a store's errors say about its server, and its hit counters:
/// shared by the blocking calls and the async calls' tasks.
struct Shared {
    /// `the redis server at host:port` or `the redis cluster at host:port,
    /// …`: for messages, never the URL.
    at: String,
    db: i64,
    /// Whether the store talks TLS (TLS failures are then `Config`).
    tls: bool,
    connect_timeout: Duration,
    timeout: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Shared {
    /// Translate a client or server error met by call `what` into
    /// Backplane's kinds.
    fn error(&self, what: &str, e: &RedisError) -> Error {
        self.describe(e).context(what)
    }

    /// [`error`](Self::error) without the call's name.
    fn describe(&self, e: &RedisError) -> Error {
        use redis::{ErrorKind as K, ServerErrorKind as S};
        let text = e.to_string();
        let at = &self.at;
        let lower = text.to_lowercase();
        if self.tls
            && [
                "certificate",
                "handshake",
                "unknownissuer",
                "corrupt message",
                "tls",
            ]
            .iter()
            .any(|w| lower.contains(w))
        {
            return Error::config(format!(
                "the TLS connection to {at} failed ({text}): check that the server speaks TLS on that port, and tls.ca_file (the CA that signed its certificate) or, for a server that asks for one, tls.cert_file and tls.key_file"
            ));
        }
        if e.is_timeout() {
            Error::unavailable(format!(
                "{at} did not answer within {} ms (connect timeout {} ms): it is unreachable or overloaded; the call can be retried",
                self.timeout.as_millis(),
                self.connect_timeout.as_millis()
            ))
        } else if e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped() {
            Error::unavailable(format!(
                "{at} is unreachable ({text}): start it or check `url` (or `nodes`); the call can be retried"
            ))
        } else if e.kind() == K::AuthenticationFailed
            || text.contains("WRONGPASS")
            || text.contains("NOAUTH")
        {
            Error::config(format!(
                "{at} refused the credentials ({text}): check `password` (or the password in `url`)"
            ))
        } else if text.contains("switch database") {
            Error::config(format!(
                "{at} refused database {} ({text}): fix the database number at the end of `url`",
                self.db
            ))
        } else if text.contains("NOPERM") {
            Error::config(format!(
                "the redis user lacks a permission ({text}): grant it in the server's ACL, or use another user"
            ))
        } else if matches!(
            e.kind(),
            K::Server(S::BusyLoading | S::TryAgain | S::MasterDown | S::ClusterDown)
                | K::ClusterConnectionNotFound
        ) {
            Error::unavailable(format!(
                "{at} is busy or not serving every slot ({text}): the call can be retried"
            ))
        } else if e.kind() == K::InvalidClientConfig {
            Error::config(text)
        } else {
            Error::backend(format!("{at}: {text}"))
        }
    }

    fn count(&self, hits: u64, misses: u64) {
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(misses, Ordering::Relaxed);
    }
}

/// A single server's multiplexed async connection, made on first use and
/// again after an error broke it.
struct AsyncConn {
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
    current: Mutex<Option<MultiplexedConnection>>,
    /// Held while connecting, so concurrent calls make one connection.
    connecting: tokio::sync::Mutex<()>,
    shared: Arc<Shared>,
}

impl AsyncConn {
    fn current(&self) -> Option<MultiplexedConnection> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn connection(&self, what: &str) -> Result<MultiplexedConnection> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let _one = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| self.shared.error(what, &e))?;
        log::debug!("redis: async connection to {}", self.shared.at);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Run `cmd`; an error that breaks the connection drops it, so the
    /// next call connects again.
    async fn query<T: redis::FromRedisValue>(&self, what: &str, cmd: redis::Cmd) -> Result<T> {
        let mut c = self.connection(what).await?;
        cmd.query_async(&mut c).await.map_err(|e| {
            if breaks_connection(&e) {
                log::warn!(
                    "redis: {what} on {} failed ({e}); reconnecting on the next call",
                    self.shared.at
                );
                *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
            }
            self.shared.error(what, &e)
        })
    }
}

impl RedisCache {
    /// The store's runtime for async calls, started on first use: one
    /// worker thread drives every task and the multiplexed connection.
    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        self.runtime
            .get_or_init(|| {
                tokio::runtime::Builder::new_multi_thread()
                    // Two workers measured no faster than one at 64
                    // concurrent tasks on two cores (BENCHMARKS.md).
                    .worker_threads(1)
                    .thread_name("backplane-redis")
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| {
                Error::backend(format!(
                    "the redis plugin cannot start its async runtime: {e}"
                ))
            })
    }

    /// Spawn `task` on the runtime, or answer `done` with why not.
    fn spawn<T: Send + 'static>(
        &self,
        done: Done<T>,
        task: impl FnOnce(Arc<AsyncConn>) -> BoxFuture<Result<T>>,
    ) {
        let Some(aio) = self.aio.clone() else {
            return done(Err(Error::unsupported(
                "async calls are served on a single server only; a cluster store runs them blocking",
            )));
        };
        let rt = match self.runtime() {
            Ok(rt) => rt,
            Err(e) => return done(Err(e)),
        };
        let fut = task(aio);
        rt.spawn(async move { done(fut.await) });
    }
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

impl AsyncCache for RedisCache {
    fn get(&self, key: &str, done: Done<Option<Vec<u8>>>) {
        if let Err(e) = validate_key(key, "key") {
            return done(Err(e));
        }
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.kv(key));
        self.spawn(done, move |aio| {
            Box::pin(async move {
                let v: Option<Vec<u8>> = aio.query("get", cmd).await?;
                aio.shared.count(v.is_some() as u64, v.is_none() as u64);
                Ok(v)
            })
        })
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>, done: Done<()>) {
        if let Err(e) = validate_key(key, "key")
            .and_then(|_| validate_ttl(ttl))
            .and_then(|_| self.check_value("value", key, value.len()))
        {
            return done(Err(e));
        }
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.kv(key)).arg(value);
        if let Some(t) = ttl {
            cmd.arg("PX").arg(ttl_ms(t));
        }
        self.spawn(done, move |aio| {
            Box::pin(async move { aio.query("set", cmd).await })
        })
    }
}

impl Drop for RedisCache {
    fn drop(&mut self) {
        // Tasks still running are dropped; each answers its caller with an
        // error through the plugin boundary.
        if let Some(Ok(rt)) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Read the certificate files of `tls` for redis-rs (an empty set: the
/// system's trusted roots, no client certificate).
fn tls_certificates(tls: &crate::config::TlsFiles) -> Result<redis::TlsCertificates> {
    let read = |what: &str, p: &std::path::Path| {
        std::fs::read(p).map_err(|e| {
            Error::config(format!(
                "tls.{what} '{}' cannot be read ({e}): give the path of a PEM file (relative paths start at plugins.toml's folder)",
                p.display()
            ))
        })
    };
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read("cert_file", c)?,
            client_key: read("key_file", k)?,
        }),
        _ => None,
    };
    let root_cert = tls
        .ca_file
        .as_deref()
        .map(|p| read("ca_file", p))
        .transpose()?;
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// Retries of a cluster command after `MOVED`, `TRYAGAIN` or a lost node
/// before the error is returned (redis-rs waits a little between them).
const CLUSTER_RETRIES: u32 = 2;

/// Whether the connection must be replaced after `e`: anything but an
/// error reply from the server leaves the stream in an unknown state.
fn breaks_connection(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.kind() == redis::ErrorKind::Parse
}

impl Cache for RedisCache {
    fn as_async(&self) -> Option<&dyn AsyncCache> {
        self.aio.is_some().then_some(self as &dyn AsyncCache)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key(key, "key")?;
        let k = self.keys.kv(key);
        let v: Option<Vec<u8>> = self.run("get", |c| redis::cmd("GET").arg(k).query(c.like()))?;
        self.count(v.is_some() as u64, v.is_none() as u64);
        Ok(v)
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        validate_key(key, "key")?;
        validate_ttl(ttl)?;
        self.check_value("value", key, value.len())?;
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.kv(key)).arg(value);
        if let Some(t) = ttl {
            cmd.arg("PX").arg(ttl_ms(t));
        }
        self.run("set", |c| cmd.query(c.like()))
    }

    fn delete(&self, key: &str) -> Result<bool> {
        validate_key(key, "key")?;
        let k = self.keys.kv(key);
        let n: u64 = self.run("delete", |c| redis::cmd("DEL").arg(k).query(c.like()))?;
        Ok(n > 0)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        validate_key(key, "key")?;
        let k = self.keys.kv(key);
        let n: u64 = self.run("exists", |c| redis::cmd("EXISTS").arg(k).query(c.like()))?;
        Ok(n > 0)
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        validate_key(key, "key")?;
        validate_ttl(Some(ttl))?;
        let k = self.keys.kv(key);
        let n: u64 = self.run("expire", |c| {
            redis::cmd("PEXPIRE")
                .arg(k)
                .arg(ttl_ms(ttl))
                .query(c.like())
        })?;
        Ok(n > 0)
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        for k in keys {
            validate_key(k, "key")?;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(self.keys.kv(k));
        }
        let values: Vec<Option<Vec<u8>>> = self.run("get_many", |c| cmd.query(c.like()))?;
        if values.len() != keys.len() {
            return Err(Error::backend(format!(
                "get_many: redis at {} answered {} values for {} keys",
                self.addr,
                values.len(),
                keys.len()
            )));
        }
        let hits = values.iter().filter(|v| v.is_some()).count() as u64;
        self.count(hits, values.len() as u64 - hits);
        Ok(values)
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        validate_ttl(ttl)?;
        for (k, v) in entries {
            validate_key(k, "key")?;
            self.check_value("value", k, v.len())?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (k, v) in entries {
            RedisCache::set_cmd(&mut pipe, self.keys.kv(k), v, ttl);
            pipe.ignore();
        }
        self.run("set_many", |c| match c {
            Conn::Single(c) => pipe.query(c),
            // The keys hash to different slots: one pipeline per node.
            Conn::Cluster(c) => {
                let mut cpipe = redis::cluster::cluster_pipe();
                for cmd in pipe.cmd_iter() {
                    cpipe.add_command(cmd.clone()).ignore();
                }
                cpipe.query(c)
            }
        })
    }

    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        let mut stored = self.add_messages(channel, std::slice::from_ref(message))?;
        Ok(stored.remove(0))
    }

    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        validate_key(channel, "channel")?;
        check_batch_ids(messages)?;
        for m in messages {
            self.check_value("message", channel, m.content.len())?;
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (list, ids) = self.keys.channel(channel);
        let ttl = self.limits.ttl.map_or(0, ttl_ms);
        let now = now_ms();
        let mut stored: Vec<Message> = messages
            .iter()
            .map(|m| {
                let mut s = m.clone();
                if s.id.is_empty() {
                    s.id = new_id("m");
                }
                if s.timestamp_ms == 0 {
                    s.timestamp_ms = now;
                }
                s
            })
            .collect();
        for _ in 0..ID_ATTEMPTS {
            let mut call = self.add.key(&list);
            call.key(&ids).arg(self.limits.max_messages).arg(ttl);
            for m in &stored {
                call.arg(&m.id).arg(encode(m)?);
            }
            let taken: usize = self.run("add_message", |c| call.invoke(c.like()))?;
            if taken == 0 {
                return Ok(stored);
            }
            let i = taken - 1;
            if i >= stored.len() || !messages[i].id.is_empty() {
                return Err(backplane_core::cache::message_taken(
                    channel,
                    stored.get(i).map_or("", |m| m.id.as_str()),
                ));
            }
            // A generated id was taken: draw fresh ones and try again.
            for (s, m) in stored.iter_mut().zip(messages) {
                if m.id.is_empty() {
                    s.id = new_id("m");
                }
            }
        }
        Err(Error::backend(format!(
            "add_message: {ID_ATTEMPTS} generated ids for channel '{channel}' were all taken: retry"
        )))
    }

    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        validate_key(channel, "channel")?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (list, _) = self.keys.channel(channel);
        // Ids are unique, so one extra element covers the excluded one.
        let want = if exclude_id.is_some() {
            limit.saturating_add(1)
        } else {
            limit
        };
        let start = -(want.min(i64::MAX as usize) as i64);
        let raw: Vec<Vec<u8>> = self.run("recent", |c| {
            redis::cmd("LRANGE")
                .arg(&list)
                .arg(start)
                .arg(-1)
                .query(c.like())
        })?;
        let mut out = raw
            .iter()
            .map(|r| decode(r, &list))
            .collect::<Result<Vec<Message>>>()?;
        if let Some(x) = exclude_id {
            out.retain(|m| m.id != x);
        }
        let extra = out.len().saturating_sub(limit);
        out.drain(..extra);
        Ok(out)
    }

    fn remove_message(&self, channel: &str, id: &str) -> Result<bool> {
        validate_key(channel, "channel")?;
        let (list, ids) = self.keys.channel(channel);
        self.run("remove_message", |c| {
            let known: bool = redis::cmd("SISMEMBER").arg(&ids).arg(id).query(c.like())?;
            if !known {
                return Ok(false);
            }
            let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(&list)
                .arg(0)
                .arg(-1)
                .query(c.like())?;
            let found = raw
                .into_iter()
                .find(|r| serde_json::from_slice::<IdOnly>(r).is_ok_and(|m| m.id == id));
            let Some(json) = found else {
                // The set knew an id the list does not hold: repair it.
                redis::cmd("SREM").arg(&ids).arg(id).exec(c.like())?;
                return Ok(false);
            };
            let n: i64 = self
                .remove
                .key(&list)
                .key(&ids)
                .arg(id)
                .arg(json)
                .invoke(c.like())?;
            Ok(n > 0)
        })
    }

    fn clear(&self, channel: &str) -> Result<u64> {
        validate_key(channel, "channel")?;
        let (list, ids) = self.keys.channel(channel);
        self.run("clear", |c| {
            self.clear.key(&list).key(&ids).invoke(c.like())
        })
    }

    fn stats(&self) -> Result<CacheStats> {
        let pattern = self.keys.scan_pattern();
        let (keys, channels, messages, memory) = self.run("stats", |c| {
            let mut kv: HashSet<Vec<u8>> = HashSet::new();
            let mut lists: HashSet<Vec<u8>> = HashSet::new();
            let mut memory: Option<u64> = None;
            // SCAN and INFO on the one server, or on every master.
            for node in c.nodes()? {
                let mut cursor: u64 = 0;
                loop {
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT);
                    let (next, batch): (u64, Vec<Vec<u8>>) = c.query_on(node.as_ref(), &scan)?;
                    for key in batch {
                        match self.keys.classify(&key) {
                            KeyKind::Value => {
                                kv.insert(key);
                            }
                            KeyKind::ChannelList => {
                                lists.insert(key);
                            }
                            KeyKind::Other => {}
                        }
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                let mut info = redis::cmd("INFO");
                info.arg("memory");
                let info: String = c.query_on(node.as_ref(), &info)?;
                if let Some(m) =
                    info_field(&info, "used_memory").and_then(|v| v.parse::<u64>().ok())
                {
                    *memory.get_or_insert(0) += m;
                }
            }
            let lists: Vec<Vec<u8>> = lists.into_iter().collect();
            let (mut channels, mut messages) = (0u64, 0u64);
            for chunk in lists.chunks(SCAN_COUNT) {
                let lens: Vec<u64> = match c {
                    Conn::Single(c) => {
                        let mut pipe = redis::pipe();
                        for key in chunk {
                            pipe.cmd("LLEN").arg(key);
                        }
                        pipe.query(c)?
                    }
                    Conn::Cluster(c) => {
                        let mut pipe = redis::cluster::cluster_pipe();
                        for key in chunk {
                            pipe.cmd("LLEN").arg(key);
                        }
                        pipe.query(c)?
                    }
                };
                for n in lens.into_iter().filter(|&n| n > 0) {
                    channels += 1;
                    messages += n;
                }
            }
            Ok((kv.len() as u64, channels, messages, memory))
        })?;
        Ok(CacheStats {
            hits: self.shared.hits.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
            keys,
            channels,
            messages,
            memory_bytes: memory,
        })
    }

    fn health(&self) -> Result<Health> {
        let (info, cluster) = self.run("health", |c| {
            redis::cmd("PING").exec(c.like())?;
            // INFO of one server; on a cluster, of its first master (a
            // plain INFO would answer one reply per node).
            let nodes = c.nodes()?;
            let mut cmd = redis::cmd("INFO");
            cmd.arg("server");
            let info: String = c.query_on(nodes[0].as_ref(), &cmd)?;
            let cluster = match c {
                Conn::Single(_) => None,
                Conn::Cluster(_) => {
                    let mut cmd = redis::cmd("CLUSTER");
                    cmd.arg("INFO");
                    let state: String = c.query_on(nodes[0].as_ref(), &cmd)?;
                    let state = info_field(&state, "cluster_state")
                        .unwrap_or("unknown")
                        .to_string();
                    Some((nodes.len(), state))
                }
            };
            Ok((info, cluster))
        })?;
        let name = info_field(&info, "server_name").unwrap_or("redis");
        let version = info_field(&info, &format!("{name}_version"))
            .or_else(|| info_field(&info, "redis_version"))
            .unwrap_or("(unknown version)");
        let db = if self.shared.db == 0 {
            String::new()
        } else {
            format!("db {}, ", self.shared.db)
        };
        Ok(match cluster {
            None => Health::ok(format!(
                "{name} {version} at {} ({db}prefix {})",
                self.addr, self.keys.prefix
            )),
            // A cluster answers PING while some slots have no master:
            // healthy only when it says it serves them all.
            Some((masters, state)) => Health {
                healthy: state == "ok",
                detail: format!(
                    "{name} {version} cluster of {masters} masters, state {state}, via {} (prefix {})",
                    self.addr, self.keys.prefix
                ),
            },
        })
    }
}

/// A master of a cluster, as `host`, `port`.
type Node = (String, u16);

impl Conn {
    /// The nodes to run a whole-database command on (`SCAN`, `INFO`):
    /// `[None]` for one server, every master of a cluster.
    fn nodes(&mut self) -> redis::RedisResult<Vec<Option<Node>>> {
        let Conn::Cluster(c) = self else {
            return Ok(vec![None]);
        };
        // CLUSTER SLOTS: [[start, end, [host, port, id, …], replicas…], …]
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(c)?;
        let mut masters: Vec<Node> = Vec::new();
        for range in slots {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let Some(redis::Value::Array(master)) = parts.get(2) else {
                continue;
            };
            let host: Option<String> = master
                .first()
                .and_then(|v| redis::from_redis_value(v.clone()).ok());
            let port: Option<u16> = master
                .get(1)
                .and_then(|v| redis::from_redis_value(v.clone()).ok());
            if let (Some(h), Some(p)) = (host, port) {
                if !masters.contains(&(h.clone(), p)) {
                    masters.push((h, p));
                }
            }
        }
        if masters.is_empty() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::ClusterConnectionNotFound,
                "CLUSTER SLOTS lists no master: the cluster serves no slot yet",
            )));
        }
        Ok(masters.into_iter().map(Some).collect())
    }

    /// Run `cmd` on `node` (a cluster master), or on the one server.
    fn query_on<T: redis::FromRedisValue>(
        &mut self,
        node: Option<&Node>,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        match (self, node) {
            (Conn::Cluster(c), Some((host, port))) => {
                let v = c.route_command(
                    cmd,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    }),
                )?;
                Ok(redis::from_redis_value(v)?)
            }
            (c, _) => cmd.query(c.like()),
        }
    }
}

/// The names of a store's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
}

/// What a key under the prefix holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// A cache value.
    Value,
    /// A channel's message list.
    ChannelList,
    /// A channel's id set, or a key the plugin did not write.
    Other,
}

impl Keys {
    pub(crate) fn new(prefix: String) -> Keys {
        Keys { prefix }
    }

    /// The Redis key of cache key `key`.
    pub(crate) fn kv(&self, key: &str) -> String {
        format!("{}kv:{key}", self.prefix)
    }

    /// The Redis keys of a channel's message list and id set; they share
    /// a hash tag, the escaped channel name.
    pub(crate) fn channel(&self, channel: &str) -> (String, String) {
        let base = format!("{}chan:{{{}}}", self.prefix, escape_tag(channel));
        (format!("{base}:list"), format!("{base}:ids"))
    }

    /// A `SCAN MATCH` pattern for every key under the prefix.
    pub(crate) fn scan_pattern(&self) -> String {
        let mut p = String::with_capacity(self.prefix.len() + 1);
        for ch in self.prefix.chars() {
            if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(ch);
        }
        p.push('*');
        p
    }

    pub(crate) fn classify(&self, key: &[u8]) -> KeyKind {
        let Some(rest) = key.strip_prefix(self.prefix.as_bytes()) else {
            return KeyKind::Other;
        };
        if rest.starts_with(b"kv:") {
            KeyKind::Value
        } else if rest.starts_with(b"chan:{") && rest.ends_with(b"}:list") {
            KeyKind::ChannelList
        } else {
            KeyKind::Other
        }
    }
}

/// The channel name as it appears inside the hash tag: `%`, `{` and `}`
/// percent-encoded, so the tag has no brace of its own.
fn escape_tag(channel: &str) -> String {
    let mut s = String::with_capacity(channel.len());
    for ch in channel.chars() {
        match ch {
            '%' => s.push_str("%25"),
            '{' => s.push_str("%7B"),
            '}' => s.push_str("%7D"),
            c => s.push(c),
        }
    }
    s
}

/// A TTL in whole milliseconds for `PX` / `PEXPIRE`: rounded up (so a
/// sub-millisecond TTL is 1 ms, never 0) and clamped to [`MAX_TTL_MS`].
fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_nanos().div_ceil(1_000_000).min(MAX_TTL_MS as u128) as u64
}

/// The value of `field` in an `INFO` reply (`field:value` lines).
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// A message as stored in a channel list.
#[derive(Serialize)]
struct StoredRef<'a> {
    id: &'a str,
    role: &'a str,
    content: &'a str,
    timestamp_ms: i64,
    metadata: &'a serde_json::Value,
}

/// A stored message read back.
#[derive(Deserialize)]
struct Stored {
    id: String,
    role: String,
    content: String,
    timestamp_ms: i64,
    #[serde(default)]
    metadata: serde_json::Value,
}

/// Just the id of a stored message.
#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

fn encode(m: &Message) -> Result<Vec<u8>> {
    serde_json::to_vec(&StoredRef {
        id: &m.id,
        role: &m.role,
        content: &m.content,
        timestamp_ms: m.timestamp_ms,
        metadata: &m.metadata,
    })
    .map_err(|e| Error::invalid(format!("the message cannot be encoded as JSON: {e}")))
}

fn decode(raw: &[u8], list: &str) -> Result<Message> {
    let s: Stored = serde_json::from_slice(raw).map_err(|e| {
        Error::backend(format!(
            "{list} holds an element that is not a Backplane message ({e}): delete the key"
        ))
    })?;
    Ok(Message {
        id: s.id,
        role: s.role,
        content: s.content,
        timestamp_ms: s.timestamp_ms,
        metadata: s.metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;

    /// The hash tag Redis Cluster hashes for `key`: the text between the
    /// first `{` and the next `}`, when not empty; else the whole key.
    fn hash_tag(key: &str) -> &str {
        if let Some(open) = key.find('{') {
            if let Some(len) = key[open + 1..].find('}') {
                if len > 0 {
                    return &key[open + 1..open + 1 + len];
                }
            }
        }
        key
    }

    #[test]
    fn key_names() {
        let k = Keys::new("bp:conv:".into());
        assert_eq!(k.kv("a"), "bp:conv:kv:a");
        let (list, ids) = k.channel("session-1");
        assert_eq!(list, "bp:conv:chan:{session-1}:list");
        assert_eq!(ids, "bp:conv:chan:{session-1}:ids");
        assert_eq!(k.classify(list.as_bytes()), KeyKind::ChannelList);
        assert_eq!(k.classify(ids.as_bytes()), KeyKind::Other);
        assert_eq!(k.classify(b"bp:conv:kv:chan:{x}:list"), KeyKind::Value);
        assert_eq!(k.classify(b"bp:other:kv:a"), KeyKind::Other);
    }

    #[test]
    fn a_channels_keys_share_one_nonempty_hash_tag() {
        let k = Keys::new("bp:conv:".into());
        for channel in ["plain", "a}b", "}", "{", "{x}", "%7D", "a{b}c", "ünï"] {
            let (list, ids) = k.channel(channel);
            let tag = hash_tag(&list);
            assert_eq!(tag, hash_tag(&ids), "{channel}");
            assert_ne!(tag, list, "{channel}: no tag");
            assert!(!tag.is_empty());
        }
        // Escaping is injective: different channels, different keys.
        assert_ne!(k.channel("}").0, k.channel("%7D").0);
        assert_ne!(k.channel("%").0, k.channel("%25").0);
    }

    #[test]
    fn scan_pattern_escapes_glob_characters() {
        assert_eq!(Keys::new("bp:c:".into()).scan_pattern(), "bp:c:*");
        assert_eq!(
            Keys::new("a*b?[c]\\:".into()).scan_pattern(),
            "a\\*b\\?\\[c\\]\\\\:*"
        );
    }

    #[test]
    fn ttl_in_milliseconds() {
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::from_millis(150)), 150);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn messages_round_trip() {
        let m = Message::new("assistant", "hi \"there\"")
            .with_id("x1")
            .with_metadata(serde_json::json!({"model": "m", "n": [1, 2]}));
        let raw = encode(&m).unwrap();
        assert!(raw.starts_with(br#"{"id":"x1","#));
        assert_eq!(decode(&raw, "l").unwrap(), m);
        let e = decode(b"not json", "l").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Backend);
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "redis"), None);
        assert_eq!(info_field(info, "used_memory"), None);
    }
}
