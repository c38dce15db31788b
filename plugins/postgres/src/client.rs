//! Talking to the server: a store's pool of `postgres::Client`s (each
//! drives tokio-postgres on its own small runtime), the statements kept on
//! each connection, opening a store, transactions and `health`.
//!
//! The pool opens connections on demand up to `pool_size` and keeps them.
//! A call takes one (waiting at most `timeout` for a free one), and gives
//! it back when done. A connection that failed with a connection-level
//! error (server gone, restarted, a primary turned read-only after a
//! failover) is dropped instead of returned, and every connection opened
//! before the failure is dropped as it comes back or is taken (they point
//! at the same server), so the next calls connect afresh: to the restarted
//! server, or with `target_session_attrs=read-write` to the new primary.
//! No TLS connector is linked: `config` refuses the `sslmode`s that need
//! one.

use crate::config::{PgConfig, Settings};
use crate::error::{breaks_connection, connect_error, map_error};
use crate::statement::Prepared;
use backplane_core::kit::pool::{self as kit, Connect, OnBreak, PoolOptions};
use backplane_core::kit::sql::quote_ident;
use backplane_core::{Error, Health, Result, StoreConfig};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Statements kept per connection; past that the cache starts afresh.
const MAX_STATEMENTS: usize = 512;

/// One connection and its statements.
pub(crate) struct Conn {
    /// The driver's client.
    pub(crate) client: Client,
    /// Prepared statements by the caller's SQL text.
    pub(crate) stmts: HashMap<String, Arc<Prepared>>,
    /// The plugin's own statements (graph, vector, catalog queries).
    internal: HashMap<String, Statement>,
    /// The schema epoch the kept statements were prepared in.
    epoch: u64,
    /// A transaction is open: a connection given back so (after a panic)
    /// is closed, not reused.
    in_tx: bool,
}

impl Conn {
    /// Forget every kept statement (after the schema changed).
    pub(crate) fn forget_statements(&mut self) {
        self.stmts.clear();
        self.internal.clear();
    }

    /// Keep `p` for `sql`.
    pub(crate) fn keep(&mut self, sql: &str, p: Arc<Prepared>) {
        if self.stmts.len() >= MAX_STATEMENTS {
            self.stmts.clear();
        }
        self.stmts.insert(sql.to_string(), p);
    }
}

/// Before connecting: check, within `connect_timeout`, that some host of
/// the url answers as PostgreSQL does. The driver's own timeout covers
/// only the TCP connection, so a listener that accepts and then says
/// nothing (or speaks another protocol and waits) would hold the
/// connection, and `Storage::open`, for ever. A PostgreSQL server answers
/// an SSL request with one byte, `S` or `N`.
pub(crate) fn probe(s: &Settings) -> Result<()> {
    use postgres::config::Host;
    let ports = s.pg.get_ports();
    let mut why = None;
    for (i, host) in s.pg.get_hosts().iter().enumerate() {
        let Host::Tcp(name) = host else {
            // A Unix socket is a local PostgreSQL's own.
            return Ok(());
        };
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        match probe_one(name, port, s.connect_timeout) {
            Ok(()) => return Ok(()),
            Err(e) => why = Some(e),
        }
    }
    match why {
        Some((wrong_protocol, text)) if wrong_protocol => Err(Error::config(format!(
            "{text}: `url` must name a PostgreSQL server and its port"
        ))),
        Some((_, text)) => Err(Error::unavailable(format!(
            "{text}: check that `url` names a PostgreSQL server that is up, or raise `connect_timeout`"
        ))),
        None => Ok(()),
    }
}

/// Probe one host: `Err((wrong protocol, why))`.
fn probe_one(
    host: &str,
    port: u16,
    timeout: std::time::Duration,
) -> std::result::Result<(), (bool, String)> {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let shown = format!("{host}:{port}");
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| (false, format!("cannot resolve {shown} ({e})")))?;
    let mut last = (false, format!("{shown} resolves to no address"));
    for addr in addrs {
        let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => s,
            Err(e) => {
                // The driver reports a refused or unreachable host itself.
                last = (false, format!("cannot connect to {shown} ({e})"));
                return if e.kind() == std::io::ErrorKind::TimedOut {
                    Err(last)
                } else {
                    Ok(())
                };
            }
        };
        let _ = stream.set_read_timeout(Some(timeout));
        let _ = stream.set_write_timeout(Some(timeout));
        // SSLRequest: length 8, code 80877103.
        let mut byte = [0u8; 1];
        let answer = stream
            .write_all(&[0, 0, 0, 8, 4, 210, 22, 47])
            .and_then(|()| stream.read(&mut byte));
        match answer {
            Ok(1) if byte[0] == b'S' || byte[0] == b'N' => return Ok(()),
            Ok(1) => {
                last = (
                    true,
                    format!(
                        "the server at {shown} answered, but not as PostgreSQL does (its first byte was {:?})",
                        byte[0] as char
                    ),
                )
            }
            Ok(_) => {
                last = (
                    true,
                    format!("the server at {shown} closed the connection without answering as PostgreSQL does"),
                )
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                last = (
                    false,
                    format!(
                        "the server at {shown} accepted the connection but did not answer within {} ms (connect_timeout)",
                        timeout.as_millis()
                    ),
                )
            }
            Err(e) => last = (false, format!("the server at {shown} broke the connection ({e})")),
        }
    }
    Err(last)
}

/// How the pool opens and checks connections.
struct Connector {
    settings: Settings,
    /// Bumped when this store changes the schema: kept statements and
    /// table facts are then re-read.
    epoch: AtomicU64,
}

impl Connect for Connector {
    type Conn = Conn;

    fn connect(&self) -> Result<Conn> {
        probe(&self.settings)?;
        let client = postgres::Config::from(self.settings.pg.clone())
            .connect(NoTls)
            .map_err(|e| connect_error(&e, &self.settings))?;
        log::debug!(
            "postgres: connected to {} (schema {})",
            self.settings.shown,
            self.settings.schema
        );
        Ok(Conn {
            client,
            stmts: HashMap::new(),
            internal: HashMap::new(),
            epoch: self.epoch.load(Ordering::SeqCst),
            in_tx: false,
        })
    }

    fn is_usable(&self, conn: &Conn) -> bool {
        !conn.in_tx && !conn.client.is_closed()
    }
}

/// The pool of one store.
pub(crate) struct Pool {
    conns: kit::Pool<Connector>,
}

/// A connection taken from the pool; given back (or closed, if broken)
/// when it goes out of scope.
pub(crate) struct PooledConn<'p> {
    conn: kit::Pooled<'p, Connector>,
}

impl std::ops::Deref for PooledConn<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl std::ops::DerefMut for PooledConn<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl PooledConn<'_> {
    /// Map a driver error met while running `sql`, dropping the connection
    /// when the error leaves it unusable.
    pub(crate) fn error(&mut self, e: &postgres::Error, sql: &str) -> Error {
        let mapped = map_error(e, sql, &self.conn.pool().connector().settings);
        if breaks_connection(e) || self.client.is_closed() {
            self.conn.mark_broken();
        }
        mapped
    }

    /// Run a query of the plugin's own (graph, vector, catalog), through
    /// a statement prepared once per connection.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        let stmt = self.statement(sql)?;
        match self.client.query(&stmt, params) {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.error(&e, sql)),
        }
    }

    /// [`query`](Self::query) for statements that return no rows: the
    /// number of rows changed.
    pub(crate) fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        match self.client.execute(&stmt, params) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.error(&e, sql)),
        }
    }

    /// Run a query without keeping its statement (catalog queries, and
    /// statements built for one use).
    pub(crate) fn query_once(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        match self.client.query(sql, params) {
            Ok(rows) => Ok(rows),
            Err(e) => Err(self.error(&e, sql)),
        }
    }

    /// Run statements without parameters (simple protocol; several may be
    /// separated by `;`).
    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        match self.client.batch_execute(sql) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.error(&e, sql)),
        }
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.internal.get(sql) {
            return Ok(s.clone());
        }
        let stmt = match self.client.prepare(sql) {
            Ok(s) => s,
            Err(e) => return Err(self.error(&e, sql)),
        };
        if self.internal.len() >= MAX_STATEMENTS {
            self.internal.clear();
        }
        self.internal.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    /// Say whether a transaction is open on the connection: one given
    /// back with a transaction open (after a panic) is closed, not reused.
    pub(crate) fn set_in_transaction(&mut self, open: bool) {
        self.conn.in_tx = open;
    }
}

impl Pool {
    /// Parse the section, connect once (a refused login or an unreachable
    /// server fails here), and create the schema if it is missing.
    pub(crate) fn open(config: &StoreConfig) -> Result<Arc<Pool>> {
        const EXISTS: &str = "SELECT 1 FROM pg_namespace WHERE nspname = $1";
        let settings = PgConfig::settings(config)?;
        let pool = Arc::new(Pool::new(settings));
        {
            let mut conn = pool.get()?;
            let schema = pool.schema().to_string();
            if conn.query_once(EXISTS, &[&schema])?.is_empty() {
                let create = format!("CREATE SCHEMA IF NOT EXISTS {}", quote_ident(&schema));
                conn.batch(&create).map_err(|e| {
                    e.context(format!(
                        "[{}.{}]: cannot create schema '{schema}'",
                        config.capability, config.store
                    ))
                })?;
                log::info!("postgres: created schema '{schema}' on {}", pool.shown());
            }
        }
        log::debug!(
            "postgres: opened [{}.{}] on {} (schema {})",
            config.capability,
            config.store,
            pool.shown(),
            pool.schema()
        );
        Ok(pool)
    }

    /// A pool for `settings`; connects nothing yet. A call waits for a free
    /// connection at most `timeout`; after a connection-level failure the
    /// older connections are closed as they are taken or given back.
    fn new(settings: Settings) -> Pool {
        let options = PoolOptions::new(settings.pool_size, settings.timeout, settings.shown.clone())
            .busy_hint(
                "raise `pool_size` (and the server's max_connections) or `timeout`, or make the calls shorter",
            )
            .on_break(OnBreak::CloseIdleWhenTaken);
        Pool {
            conns: kit::Pool::new(
                Connector {
                    settings,
                    epoch: AtomicU64::new(0),
                },
                options,
            ),
        }
    }

    /// The store's settings.
    pub(crate) fn settings(&self) -> &Settings {
        &self.conns.connector().settings
    }

    /// `host:port/db` of the server, for messages.
    pub(crate) fn shown(&self) -> &str {
        &self.settings().shown
    }

    /// The store's schema.
    pub(crate) fn schema(&self) -> &str {
        &self.settings().schema
    }

    /// Note that the schema changed: every connection forgets its kept
    /// statements before its next use.
    pub(crate) fn schema_changed(&self) {
        self.conns.connector().epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// How many times this store has changed the schema: facts read from
    /// the catalog hold while it stays the same.
    pub(crate) fn epoch(&self) -> u64 {
        self.conns.connector().epoch.load(Ordering::SeqCst)
    }

    /// A connection of its own, outside the pool (an export snapshot holds
    /// one for as long as it is open).
    pub(crate) fn dedicated(&self) -> Result<Conn> {
        self.conns.connector().connect()
    }

    /// Take a connection: an idle one, a new one while fewer than
    /// `pool_size` are open, or the first one given back within `timeout`.
    pub(crate) fn get(&self) -> Result<PooledConn<'_>> {
        let mut conn = self.conns.get()?;
        let epoch = self.conns.connector().epoch.load(Ordering::SeqCst);
        if conn.epoch != epoch {
            conn.forget_statements();
            conn.epoch = epoch;
        }
        Ok(PooledConn { conn })
    }

    /// `postgresql 15.4 at host:5432/db, schema s, primary, pool 1/8 open`,
    /// plus `extra`.
    pub(crate) fn health(&self, extra: &str) -> Result<Health> {
        const SQL: &str = "SELECT current_setting('server_version'), pg_is_in_recovery()";
        let mut conn = self.get()?;
        let (version, standby): (String, bool) = match conn.client.query_one(SQL, &[]) {
            Ok(r) => (r.get(0), r.get(1)),
            Err(e) => return Err(conn.error(&e, SQL)),
        };
        drop(conn);
        let open = self.conns.usage().open;
        Ok(Health::ok(format!(
            "postgresql {version} at {}, schema {}, {}, pool {open}/{} open{extra}",
            self.shown(),
            self.schema(),
            if standby {
                "standby (read-only)"
            } else {
                "primary"
            },
            self.settings().pool_size,
        )))
    }
}

/// Run `f` in a transaction on `conn`: committed when it returns `Ok`,
/// rolled back when it fails.
pub(crate) fn in_transaction<T>(
    conn: &mut PooledConn<'_>,
    what: &str,
    f: impl FnOnce(&mut PooledConn<'_>) -> Result<T>,
) -> Result<T> {
    conn.batch("BEGIN")?;
    // A panic must not give a connection with an open transaction back to
    // the pool.
    conn.set_in_transaction(true);
    let out = f(conn);
    match out {
        Ok(v) => {
            conn.batch("COMMIT").map_err(|e| {
                e.context(format!("{what}: the commit failed; nothing was written"))
            })?;
            conn.set_in_transaction(false);
            Ok(v)
        }
        Err(e) => {
            if conn.client.batch_execute("ROLLBACK").is_ok() {
                conn.set_in_transaction(false);
            }
            Err(e)
        }
    }
}
