//! Talking to the server: the client built from the URL (or the cluster's
//! nodes) with its TLS certificates, the pool of blocking connections, the
//! multiplexed async connection on the store's own tokio runtime, and the
//! mapping from redis-rs's errors to Backplane's kinds.
//!
//! # Blocking calls
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
//! On a single server, calls can also run on the store's own tokio
//! runtime (one worker, started on first use) over one multiplexed
//! connection ([`AsyncConn`]), answering through the host's callback.
//! Commands started while a batch is on its way are sent together as one
//! pipeline once it has answered, or after 2 ms at most
//! ([`AsyncConn::query`]). A cluster store has none (redis-rs's async
//! cluster client is not compiled in).

use crate::cluster;
use crate::config::{RedisConfig, TlsFiles};
use backplane_core::kit::pool::{Connect, OnBreak, Pool, PoolOptions};
use backplane_core::kit::redact::redact_url;
use backplane_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Connection, ConnectionInfo, ConnectionLike, IntoConnectionInfo, RedisError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How a store reaches its data.
enum Server {
    /// One server.
    Single(redis::Client),
    /// A Redis Cluster, found from its seed nodes.
    Cluster(ClusterClient),
}

/// One connection of the pool.
pub(crate) enum Conn {
    Single(Connection),
    Cluster(Box<ClusterConnection>),
}

impl Conn {
    /// The connection, for commands that go to one key's server.
    pub(crate) fn like(&mut self) -> &mut dyn ConnectionLike {
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

/// A store's way to its server: the blocking pool and, on a single
/// server, the async connection with the runtime that drives it.
pub(crate) struct Client {
    /// What errors say, and the counters; shared with async calls.
    shared: Arc<Shared>,
    /// `host:port` of the server (or its socket path), or the seed nodes.
    addr: String,
    /// Up to `pool_size` connections for the blocking calls.
    pool: Pool<Connector>,
    /// The non-blocking side (single server only): a multiplexed
    /// connection on the store's own runtime, both made on first use.
    aio: Option<Arc<AsyncConn>>,
    runtime: OnceLock<Result<tokio::runtime::Runtime>>,
}

impl Client {
    /// A client for the server (or cluster) in `config`, whose log lines
    /// name the store's key `prefix`. Parses the URLs and reads the TLS
    /// files but does not connect: the first call does. A URL that does
    /// not parse is a `Config` error.
    pub(crate) fn new(config: &RedisConfig, prefix: &str) -> Result<Client> {
        let tls = config.tls();
        let certs = tls.map(tls_certificates).transpose()?;
        let parse = |url: &str| parse_url(url, tls.is_some(), config);
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
                let (client, addr) = cluster::client(config, nodes, parse, certs)?;
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
                queue: Mutex::new((Vec::new(), false)),
            })),
            Server::Cluster(_) => None,
        };
        let pool = Pool::new(
            Connector {
                server,
                shared: shared.clone(),
                prefix: prefix.to_string(),
            },
            PoolOptions::new(config.pool_size, config.timeout(), shared.at.clone())
                .busy_hint("raise pool_size or timeout_ms; the call can be retried")
                .on_break(OnBreak::CloseIdle),
        );
        Ok(Client {
            shared,
            addr,
            pool,
            aio,
            runtime: OnceLock::new(),
        })
    }

    /// `host:port` of the server (or its socket path), or the seed nodes.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// What errors say about the server, and the hit counters.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Whether calls can also run without blocking (single server only).
    pub(crate) fn has_async(&self) -> bool {
        self.aio.is_some()
    }

    /// Run `f` on a connection of the pool. An error that leaves the
    /// connection unusable drops it and every idle connection opened
    /// before it, so the next call reconnects.
    pub(crate) fn run<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut Conn) -> redis::RedisResult<T>,
    ) -> Result<T> {
        let mut conn = self.pool.get().map_err(|e| e.context(what))?;
        f(&mut conn).map_err(|e| {
            if self.shared.breaks(what, &e) {
                conn.mark_broken();
            }
            self.shared.error(what, &e)
        })
    }

    /// The store's runtime for async calls, started on first use: one
    /// worker thread drives every task and the multiplexed connection (two
    /// workers measured no faster at 64 concurrent tasks on two cores,
    /// BENCHMARKS.md).
    fn runtime(&self) -> Result<&tokio::runtime::Runtime> {
        self.runtime
            .get_or_init(|| backplane_core::kit::runtime::runtime("redis"))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Run `cmd` without blocking, answering `done` with its reply as a
    /// `T` ([`AsyncConn::query`]), or with why it cannot.
    pub(crate) fn query<T: redis::FromRedisValue + Send + 'static>(
        &self,
        what: &'static str,
        cmd: redis::Cmd,
        done: impl FnOnce(Result<T>) + Send + 'static,
    ) {
        let Some(aio) = &self.aio else {
            return done(Err(Error::unsupported(
                "async calls are served on a single server only; a cluster store runs them blocking",
            )));
        };
        match self.runtime() {
            Ok(rt) => aio.query(rt, what, cmd, done),
            Err(e) => done(Err(e)),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Tasks still running are dropped; each answers its caller with an
        // error through the plugin boundary.
        if let Some(Ok(rt)) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// `url` as redis-rs's connection settings: over TLS when `tls` (a
/// `redis://` URL then means the same server, over TLS), with the
/// configured `password` in place of the URL's.
pub(crate) fn parse_url(url: &str, tls: bool, config: &RedisConfig) -> Result<ConnectionInfo> {
    let url = match url.split_once("://") {
        Some((scheme, rest)) if tls && scheme.eq_ignore_ascii_case("redis") => {
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
}

/// Read the certificate files of `tls` for redis-rs (an empty set: the
/// system's trusted roots, no client certificate).
fn tls_certificates(tls: &TlsFiles) -> Result<redis::TlsCertificates> {
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

/// What a store's errors say about its server, and its hit counters:
/// shared by the blocking calls and the async calls' tasks.
pub(crate) struct Shared {
    /// `the redis server at host:port` or `the redis cluster at host:port,
    /// …`: for messages, never the URL.
    at: String,
    /// The database number (0 on a cluster).
    pub(crate) db: i64,
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
    pub(crate) fn error(&self, what: &str, e: &RedisError) -> Error {
        self.describe(e).context(what)
    }

    /// [`error`](Self::error) without the call's name.
    fn describe(&self, e: &RedisError) -> Error {
        use redis::{ErrorKind as K, ServerErrorKind as S};
        // One line: some of the client's errors span several.
        let text = e
            .to_string()
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
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
        } else if e.kind() == K::Parse {
            // What answered is not a Redis server.
            Error::config(format!(
                "{at} answered, but not as Redis does ({text}): `url` must name a Redis server and its port"
            ))
        } else {
            Error::backend(format!("{at}: {text}"))
        }
    }

    /// Whether the connection that met `e` in call `what` must be replaced
    /// (and logs so): anything but an error reply from the server leaves
    /// the stream in an unknown state.
    fn breaks(&self, what: &str, e: &RedisError) -> bool {
        let broken = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
            || e.kind() == redis::ErrorKind::Parse;
        if broken {
            log::warn!(
                "redis: {what} on {} failed ({e}); reconnecting on the next call",
                self.at
            );
        }
        broken
    }

    /// Count `hits` and `misses` of `get` calls.
    pub(crate) fn count(&self, hits: u64, misses: u64) {
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(misses, Ordering::Relaxed);
    }

    /// The `get` hits and misses counted so far.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

/// A single server's multiplexed async connection, made on first use and
/// again after an error broke it, and the commands waiting to be sent on
/// it.
pub(crate) struct AsyncConn {
    client: redis::Client,
    config: redis::AsyncConnectionConfig,
    current: Mutex<Option<MultiplexedConnection>>,
    /// Held while connecting, so concurrent calls make one connection.
    connecting: tokio::sync::Mutex<()>,
    shared: Arc<Shared>,
    /// Commands started while a batch is on its way, and whether a task is
    /// sending batches (see [`AsyncConn::query`]).
    queue: Mutex<(Vec<Queued>, bool)>,
}

/// How long the batch task looks for more commands after a batch has
/// answered before it ends: the callers whose replies it just handed out
/// start their next commands within microseconds, and catching them here
/// saves waking the runtime for a new task.
const LINGER: std::time::Duration = std::time::Duration::from_micros(50);

/// How long the batch task waits for a batch's replies before it sends
/// the commands queued meanwhile anyway. Longer than a round trip to a
/// server that answers (so batches stay whole), short beside any timeout.
const BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

/// A command waiting for the next batch, and what to do with its reply.
struct Queued {
    cmd: redis::Cmd,
    reply: Box<dyn FnOnce(redis::RedisResult<redis::Value>) + Send>,
}

/// The task sending batches. When it ends without finishing (a panic, or
/// its runtime shut down), its drop lets the next call start a new one
/// and drops the commands still queued: their callers get an error (the
/// host's side of a dropped call answers it), none waits forever.
struct BatchTask(Arc<AsyncConn>, bool);

impl BatchTask {
    async fn run(mut self) {
        self.0.send_batches().await;
        self.1 = false;
    }
}

impl Drop for BatchTask {
    fn drop(&mut self) {
        if self.1 {
            let queued = {
                let mut q = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
                q.1 = false;
                std::mem::take(&mut q.0)
            };
            // Answered outside the lock.
            drop(queued);
        }
    }
}

impl AsyncConn {
    fn current(&self) -> Option<MultiplexedConnection> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
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
            .await?;
        log::debug!("redis: async connection to {}", self.shared.at);
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// `e` as the error of `what`; an error that breaks the connection
    /// drops it, so the next call connects again.
    fn failed(&self, what: &str, e: &redis::RedisError) -> Error {
        if self.shared.breaks(what, e) {
            *self.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.shared.error(what, e)
    }

    /// Run `cmd` on `rt`, answering `done` with its reply as a `T`.
    ///
    /// Commands go in batches: a command started while a batch is on its
    /// way waits for that batch's replies (at most `BATCH_WAIT`), then
    /// goes with every other command started meanwhile, as one pipeline in
    /// one write. One task alone sends its commands one by one, as
    /// before; many tasks at once share writes and round trips (one write
    /// per command was most of the plugin's cost with 64 tasks:
    /// BENCHMARKS.md). Each command keeps its own reply, its own error and
    /// its own timeout.
    pub(crate) fn query<T: redis::FromRedisValue + Send + 'static>(
        self: &Arc<Self>,
        rt: &tokio::runtime::Runtime,
        what: &'static str,
        cmd: redis::Cmd,
        done: impl FnOnce(Result<T>) + Send + 'static,
    ) {
        let conn = self.clone();
        let reply = Box::new(move |r: redis::RedisResult<redis::Value>| {
            let r = r.and_then(|v| Ok(redis::from_redis_value::<T>(v.extract_error()?)?));
            done(r.map_err(|e| conn.failed(what, &e)))
        });
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.0.push(Queued { cmd, reply });
            !std::mem::replace(&mut q.1, true)
        };
        if start {
            rt.spawn(BatchTask(self.clone(), true).run());
        }
    }

    /// Send batches until the queue has stayed empty for `LINGER`. Each
    /// batch is a task of its own; the next one waits for its replies, but
    /// at most `BATCH_WAIT`, so no command waits long behind a batch that
    /// a stalled server does not answer: each still ends within its own
    /// timeout.
    async fn send_batches(self: &Arc<Self>) {
        let mut idle = std::time::Instant::now();
        loop {
            let batch = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.0.is_empty() {
                    if idle.elapsed() >= LINGER {
                        q.1 = false;
                        return;
                    }
                    None
                } else {
                    Some(std::mem::take(&mut q.0))
                }
            };
            match batch {
                Some(batch) => {
                    let sent = tokio::spawn(self.clone().send(batch));
                    // Past the wait the batch goes on answering by itself.
                    let _ = tokio::time::timeout(BATCH_WAIT, sent).await;
                    idle = std::time::Instant::now();
                }
                None => tokio::task::yield_now().await,
            }
        }
    }

    /// Send `batch` as one pipeline and hand each command its reply; an
    /// error of the whole pipeline (no connection, a lost one) is every
    /// command's.
    async fn send(self: Arc<Self>, batch: Vec<Queued>) {
        let mut pipe = redis::pipe();
        let mut replies = Vec::with_capacity(batch.len());
        for q in batch {
            pipe.add_command(q.cmd);
            replies.push(q.reply);
        }
        let n = replies.len();
        let sent = async {
            let values = self
                .connection()
                .await?
                .send_packed_commands(&pipe, 0, n)
                .await?;
            if values.len() != n {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Parse,
                    "the server answered a pipeline with the wrong number of replies",
                    format!("{} for {n} commands", values.len()),
                )));
            }
            Ok(values)
        };
        match sent.await {
            Ok(values) => {
                for (reply, v) in replies.into_iter().zip(values) {
                    reply(Ok(v))
                }
            }
            Err(e) => {
                for reply in replies {
                    reply(Err(e.clone()))
                }
            }
        }
    }
}
