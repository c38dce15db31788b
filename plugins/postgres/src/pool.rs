//! Connections: a small pool of `postgres::Client`s, each with the
//! statements prepared on it, and the mapping from the driver's errors to
//! Backplane's kinds.
//!
//! The pool opens connections on demand up to `pool_size` and keeps them.
//! A call takes one (waiting at most `timeout` for a free one), and gives
//! it back when done. A connection that failed with a connection-level
//! error (server gone, restarted, a primary turned read-only after a
//! failover) is dropped instead of returned, and every connection opened
//! before the failure is dropped as it comes back or is taken (they point
//! at the same server), so the next calls connect afresh: to the restarted
//! server, or with `target_session_attrs=read-write` to the new primary.

use crate::config::Settings;
use backplane_core::kit::pool::{self as kit, Connect, OnBreak, PoolOptions, Usage};
use backplane_core::kit::text::snippet;
use backplane_core::{Error, Result};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Statements kept per connection; past that the cache starts afresh.
const MAX_STATEMENTS: usize = 512;

/// A prepared statement and what the plugin learned about it.
pub struct Prepared {
    /// The server's statement.
    pub stmt: Statement,
    /// Column names, shared by every result of this statement.
    pub names: Arc<[String]>,
    /// For `:name` placeholders: the name of `$1`, `$2`, ….
    pub param_names: Vec<String>,
    /// Whether the SQL used `?` placeholders (or none).
    pub positional: bool,
    /// For an INSERT into a table with a generated integer key: the
    /// statement got `RETURNING <key>` appended, so `last_insert_id` is
    /// known.
    pub returning_id: bool,
    /// Whether the statement may change the schema.
    pub ddl: bool,
    /// Whether it is a `SELECT` (whose row count is not "rows affected").
    pub select: bool,
}

/// One connection and its statements.
pub struct Conn {
    /// The driver's client.
    pub client: Client,
    /// Prepared statements by the caller's SQL text.
    pub stmts: HashMap<String, Arc<Prepared>>,
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
    pub fn forget_statements(&mut self) {
        self.stmts.clear();
        self.internal.clear();
    }

    /// Keep `p` for `sql`.
    pub fn keep(&mut self, sql: &str, p: Arc<Prepared>) {
        if self.stmts.len() >= MAX_STATEMENTS {
            self.stmts.clear();
        }
        self.stmts.insert(sql.to_string(), p);
    }
}

/// How the pool opens and checks connections.
pub struct Connector {
    settings: Settings,
    /// Bumped when this store changes the schema: kept statements and
    /// table facts are then re-read.
    epoch: AtomicU64,
}

impl Connect for Connector {
    type Conn = Conn;

    fn connect(&self) -> Result<Conn> {
        let client = self
            .settings
            .pg
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
pub struct Pool {
    conns: kit::Pool<Connector>,
}

/// A connection taken from the pool; given back (or closed, if broken)
/// when it goes out of scope.
pub struct PooledConn<'p> {
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
    pub fn error(&mut self, e: &postgres::Error, sql: &str) -> Error {
        let mapped = map_error(e, sql, &self.conn.pool().connector().settings);
        if breaks_connection(e) || self.client.is_closed() {
            self.conn.mark_broken();
        }
        mapped
    }

    /// Run a query of the plugin's own (graph, vector, catalog), through
    /// a statement prepared once per connection.
    pub fn query(
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
    pub fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        match self.client.execute(&stmt, params) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.error(&e, sql)),
        }
    }

    /// Run statements without parameters (simple protocol; several may be
    /// separated by `;`).
    pub fn batch(&mut self, sql: &str) -> Result<()> {
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
    pub fn set_in_transaction(&mut self, open: bool) {
        self.conn.in_tx = open;
    }
}

impl Pool {
    /// A pool for `settings`; connects nothing yet. A call waits for a free
    /// connection at most `timeout`; after a connection-level failure the
    /// older connections are closed as they are taken or given back.
    pub fn new(settings: Settings) -> Pool {
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
    pub fn settings(&self) -> &Settings {
        &self.conns.connector().settings
    }

    /// `host:port/db` of the server, for messages.
    pub fn shown(&self) -> &str {
        &self.settings().shown
    }

    /// The store's schema.
    pub fn schema(&self) -> &str {
        &self.settings().schema
    }

    /// Connections open and idle.
    pub fn usage(&self) -> Usage {
        self.conns.usage()
    }

    /// Note that the schema changed: every connection forgets its kept
    /// statements before its next use.
    pub fn schema_changed(&self) {
        self.conns.connector().epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Take a connection: an idle one, a new one while fewer than
    /// `pool_size` are open, or the first one given back within `timeout`.
    pub fn get(&self) -> Result<PooledConn<'_>> {
        let mut conn = self.conns.get()?;
        let epoch = self.conns.connector().epoch.load(Ordering::SeqCst);
        if conn.epoch != epoch {
            conn.forget_statements();
            conn.epoch = epoch;
        }
        Ok(PooledConn { conn })
    }
}

/// Whether the error leaves the connection unusable, or points at a server
/// that should no longer be used (a standby after a failover).
fn breaks_connection(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("57P")
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        }
        // No SQLSTATE: an I/O or protocol failure, unless it is a value
        // conversion on our side.
        None => !is_conversion(e),
    }
}

fn is_conversion(e: &postgres::Error) -> bool {
    let t = e.to_string();
    t.starts_with("error serializing") || t.starts_with("error deserializing")
}

/// The error for a failed connection attempt: a refused login is `Config`
/// (check url and password), an unreachable or starting server
/// `Unavailable`.
pub fn connect_error(e: &postgres::Error, s: &Settings) -> Error {
    let text = error_text(e);
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return Error::config(format!(
                "the PostgreSQL server at {} refused the login ({text}): check the user in `url` and `password`",
                s.shown
            ));
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return Error::config(format!(
                "the PostgreSQL server at {} has no such database ({text}): fix the database name at the end of `url`, or create it",
                s.shown
            ));
        }
        if code.code().starts_with("57P")
            || code.code().starts_with("53")
            || code.code().starts_with("08")
        {
            return Error::unavailable(format!(
                "the PostgreSQL server at {} cannot take connections now ({text}); the call can be retried",
                s.shown
            ));
        }
        return Error::config(format!(
            "the PostgreSQL server at {} refused the connection ({text}): check `url`",
            s.shown
        ));
    }
    if text.contains("password missing") {
        return Error::config(format!(
            "the PostgreSQL server at {} asks for a password and none was given: set `password` (e.g. password = \"${{POSTGRES_PASSWORD}}\")",
            s.shown
        ));
    }
    Error::unavailable(format!(
        "cannot reach the PostgreSQL server at {} ({text}; connect timeout {} ms): start it or check `url`; the call can be retried",
        s.shown,
        s.connect_timeout.as_millis()
    ))
}

/// The driver's message with its causes.
pub fn error_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut t = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(d) = db.detail() {
            t.push_str(&format!("; {d}"));
        }
        if let Some(h) = db.hint() {
            t.push_str(&format!("; hint: {h}"));
        }
        return t;
    }
    let mut t = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let st = s.to_string();
        if !t.contains(&st) {
            t.push_str(&format!(": {st}"));
        }
        src = s.source();
    }
    t
}

/// Map a driver error met while running `sql` to Backplane's kinds.
pub fn map_error(e: &postgres::Error, sql: &str, s: &Settings) -> Error {
    let text = error_text(e);
    let at = snippet(sql);
    let Some(code) = e.code() else {
        if is_conversion(e) {
            return Error::invalid(format!(
                "{text} (in `{at}`): fix the value or cast the placeholder"
            ));
        }
        if text.contains("timeout") || text.contains("timed out") {
            return Error::unavailable(format!(
                "the PostgreSQL server at {} did not answer in time ({text}); the call can be retried",
                s.shown
            ));
        }
        return Error::unavailable(format!(
            "lost the connection to the PostgreSQL server at {} ({text}) while running `{at}`; \
             the call can be retried (a write may or may not have been applied)",
            s.shown
        ));
    };
    let c = code.code();
    if *code == SqlState::QUERY_CANCELED {
        return Error::unavailable(format!(
            "`{at}` ran longer than `timeout` ({} ms) and was cancelled by the server ({text}): \
             raise `timeout`, or make the statement cheaper",
            s.timeout.as_millis()
        ));
    }
    if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") {
        return Error::unavailable(format!(
            "the PostgreSQL server at {} is unavailable ({text}) while running `{at}`; the call can be retried",
            s.shown
        ));
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return Error::unavailable(format!(
            "the server at {} is read-only ({text}): it is a standby, likely after a failover; \
             the call can be retried (add target_session_attrs=read-write to `url` so new connections go to the primary)",
            s.shown
        ));
    }
    if *code == SqlState::LOCK_NOT_AVAILABLE {
        return Error::unavailable(format!(
            "{text} (in `{at}`): a lock is held elsewhere; retry"
        ));
    }
    if c.starts_with("23") {
        return Error::conflict(format!(
            "{text} (in `{at}`): the change breaks a constraint of the table; this statement wrote nothing"
        ));
    }
    if c.starts_with("40") {
        return Error::conflict(format!(
            "{text} (in `{at}`): a concurrent transaction got in the way; retry"
        ));
    }
    if matches!(c, "42P07" | "42710" | "42P06" | "42701" | "42723" | "42P04") {
        return Error::already_exists(format!("{text} (in `{at}`)"));
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return Error::config(format!(
            "{text} (in `{at}`): the user in `url` lacks a privilege; grant it, or use another user"
        ));
    }
    if *code == SqlState::SYNTAX_ERROR && text.contains("multiple commands") {
        return Error::invalid(format!(
            "`{at}` holds more than one statement: run one at a time, or use transaction() / migrate() for several"
        ));
    }
    if c.starts_with("42")
        || c.starts_with("22")
        || c.starts_with("2B")
        || c.starts_with("0A")
        || c == "3F000"
    {
        return Error::invalid(format!(
            "{text} (in `{at}`): fix the statement or its values"
        ));
    }
    if c.starts_with("25") {
        return Error::invalid(format!(
            "{text} (in `{at}`): transaction control belongs to transaction()"
        ));
    }
    Error::backend(format!("postgres: {text} (in `{at}`)"))
}
