//! The relational capability: SQL straight through to SQLite.
//!
//! The hot path (`execute_ref` / `execute_many_ref` / `query_into`, which
//! the plugin boundary calls with borrowed parameters) takes the
//! connection's lock, fetches the prepared statement from rusqlite's
//! statement cache, binds each value in place through [`Bind`], steps, and
//! hands column values to a [`RowSink`] as borrowed views. Nothing is
//! rewritten: SQLite itself understands `?`, `?N`, `:name`, `@name` and
//! `$name`.

use backplane_core::relational::{
    migration_failed, migration_still_pending, plan_migrations, validate_migrations,
    MIGRATIONS_TABLE,
};
use backplane_core::{
    ColumnInfo, ColumnType, Error, ExecResult, ForeignKey, Health, IndexInfo, JsonRef, Migration,
    MigrationReport, Params, ParamsRef, Relational, Result, RowSink, Rows, RowsBuilder, Statement,
    TableSchema, ValueRef,
};
use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::types::{ToSqlOutput, ValueRef as SqlRef};
use rusqlite::StatementStatus;
use rusqlite::{Connection, OpenFlags, ToSql};
use std::cell::UnsafeCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::db::{sql_error, write_tx, Db};
use backplane_core::kit::text::snippet;
use backplane_core::kit::time::now_ms;

/// A relational store on one SQLite database.
///
/// Besides rusqlite's own statement cache, it keeps the statements of the
/// hot calls (`execute`, `execute_many`, `query`) itself, each with its
/// column names and kinds, so a repeated query neither looks up an LRU nor
/// reads its column metadata again. SQLite re-prepares a statement when the
/// schema changes; the metadata is re-read when its re-prepare count moves.
pub struct SqliteRelational {
    // Declared before `db`, so dropped first: the statements borrow the
    // connection.
    stmts: UnsafeCell<HashMap<Box<str>, Cached>>,
    db: Db,
}

// SAFETY: `stmts` is only touched while the `Db` mutex is held (see
// `with_stmt` and `restore`), which serialises the statements with their
// connection; SQLite connections and statements may move between threads
// when used by one at a time (rusqlite opens them in multi-thread mode).
unsafe impl Send for SqliteRelational {}
unsafe impl Sync for SqliteRelational {}

/// A statement kept by the store, and its column metadata.
struct Cached {
    stmt: rusqlite::Statement<'static>,
    names: Arc<[String]>,
    kinds: Vec<Kind>,
    /// The statement's re-prepare count when `names`/`kinds` were read.
    reprepares: i32,
}

/// Statements kept at most; past that the cache starts afresh.
const MAX_CACHED: usize = 256;

impl SqliteRelational {
    pub fn new(db: Db) -> Self {
        SqliteRelational {
            stmts: UnsafeCell::new(HashMap::new()),
            db,
        }
    }

    /// Run `f` on the kept statement for `sql`, holding the connection.
    fn with_stmt<T>(
        &self,
        sql: &str,
        f: impl FnOnce(&Connection, &mut Cached) -> Result<T>,
    ) -> Result<T> {
        let conn = self.db.lock();
        // SAFETY: the cache is only touched while the `Db` lock is held.
        let stmts = unsafe { &mut *self.stmts.get() };
        if stmts.len() >= MAX_CACHED && !stmts.contains_key(sql) {
            stmts.clear();
        }
        let cached = match stmts.entry_ref(sql) {
            EntryRef::Occupied(o) => o.into_mut(),
            EntryRef::Vacant(v) => {
                let stmt = conn.prepare(sql).map_err(|e| sql_error(e, sql))?;
                // SAFETY: the connection is boxed inside `Db` and outlives
                // the cache (dropped first, cleared before `restore` takes
                // `&mut Connection`); the 'static only hides that borrow.
                let stmt: rusqlite::Statement<'static> = unsafe { std::mem::transmute(stmt) };
                v.insert(Cached {
                    stmt,
                    names: Arc::from([]),
                    kinds: Vec::new(),
                    reprepares: -1,
                })
            }
        };
        let reprepares = cached.stmt.get_status(StatementStatus::RePrepare);
        if reprepares != cached.reprepares {
            let cols = cached.stmt.columns();
            cached.names = cols.iter().map(|c| c.name().to_string()).collect();
            cached.kinds = cols.iter().map(|c| kind_of(c.decl_type())).collect();
            drop(cols);
            cached.reprepares = reprepares;
        }
        f(&conn, cached)
    }

    /// Forget the kept statements (before the connection is replaced).
    fn clear_statements(&self, _held: &Connection) {
        // SAFETY: the caller holds the `Db` lock (`_held` proves it).
        unsafe { &mut *self.stmts.get() }.clear();
    }
}

/// Binds a borrowed value without copying it: integers, reals, text and
/// blobs go straight to SQLite; `Bool` binds as 0/1, `Timestamp` as its
/// integer microseconds, `Json` as its text.
pub struct Bind<'a>(pub ValueRef<'a>);

impl ToSql for Bind<'_> {
    #[inline]
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            ValueRef::Null => ToSqlOutput::Borrowed(SqlRef::Null),
            ValueRef::Integer(i) | ValueRef::Timestamp(i) => {
                ToSqlOutput::Borrowed(SqlRef::Integer(i))
            }
            ValueRef::Real(f) => ToSqlOutput::Borrowed(SqlRef::Real(f)),
            ValueRef::Text(s) => ToSqlOutput::Borrowed(SqlRef::Text(s.as_bytes())),
            ValueRef::Blob(b) => ToSqlOutput::Borrowed(SqlRef::Blob(b)),
            ValueRef::Bool(b) => ToSqlOutput::Borrowed(SqlRef::Integer(b as i64)),
            ValueRef::Json(JsonRef::Text(t)) => ToSqlOutput::Borrowed(SqlRef::Text(t.as_bytes())),
            ValueRef::Json(JsonRef::Doc(d)) => {
                ToSqlOutput::Owned(rusqlite::types::Value::Text(d.to_string()))
            }
        })
    }
}

/// Bind `params` to `stmt`, checking that every placeholder gets exactly
/// one value.
pub fn bind_params(
    stmt: &mut rusqlite::Statement<'_>,
    params: ParamsRef<'_>,
    sql: &str,
) -> Result<()> {
    let expected = stmt.parameter_count();
    if params.is_empty() {
        if expected != 0 {
            return Err(Error::invalid(format!(
                "`{}` has {expected} parameter(s) but none were given: pass Params::Positional or Params::Named",
                snippet(sql)
            )));
        }
    } else if params.is_named() {
        bind_named(stmt, params, expected, sql)?;
    } else {
        if params.len() != expected {
            return Err(Error::invalid(format!(
                "`{}` has {expected} parameter(s) but {} value(s) were given: pass one value per placeholder",
                snippet(sql),
                params.len()
            )));
        }
        for i in 0..params.len() {
            stmt.raw_bind_parameter(i + 1, Bind(params.value(i)))
                .map_err(|e| sql_error(e, sql))?;
        }
    }
    Ok(())
}

fn bind_named(
    stmt: &mut rusqlite::Statement<'_>,
    params: ParamsRef<'_>,
    expected: usize,
    sql: &str,
) -> Result<()> {
    // Which placeholders got a value: a bit mask for the usual few, a
    // vector beyond 64.
    let mut mask: u64 = 0;
    let mut wide: Vec<bool> = if expected > 64 {
        vec![false; expected + 1]
    } else {
        Vec::new()
    };
    let mut prefixed = String::new();
    for i in 0..params.len() {
        let name = params.name(i).unwrap_or("");
        let value = params.value(i);
        let index = named_index(stmt, name, &mut prefixed)?.ok_or_else(|| {
            Error::invalid(format!(
                "`{}` has no parameter :{}; it has {}: check the name",
                snippet(sql),
                name.trim_start_matches([':', '@', '$']),
                placeholder_list(stmt)
            ))
        })?;
        let seen = if expected > 64 {
            std::mem::replace(&mut wide[index], true)
        } else {
            let bit = 1u64 << (index - 1);
            let seen = mask & bit != 0;
            mask |= bit;
            seen
        };
        if seen {
            return Err(Error::invalid(format!(
                "parameter :{} is given twice for `{}`: give each name once",
                name.trim_start_matches([':', '@', '$']),
                snippet(sql)
            )));
        }
        stmt.raw_bind_parameter(index, Bind(value))
            .map_err(|e| sql_error(e, sql))?;
    }
    if params.len() != expected {
        let missing: Vec<String> = (1..=expected)
            .filter(|&i| {
                if expected > 64 {
                    !wide[i]
                } else {
                    mask & (1u64 << (i - 1)) == 0
                }
            })
            .map(|i| {
                stmt.parameter_name(i)
                    .map_or_else(|| format!("?{i}"), str::to_string)
            })
            .collect();
        return Err(Error::invalid(format!(
            "`{}` has {expected} parameter(s) but {} value(s) were given; missing: {}",
            snippet(sql),
            params.len(),
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The index of `:name`, `@name` or `$name` (a name given with its prefix
/// is looked up as is).
#[inline]
fn named_index(
    stmt: &rusqlite::Statement<'_>,
    name: &str,
    buf: &mut String,
) -> Result<Option<usize>> {
    let lookup = |n: &str| {
        stmt.parameter_index(n)
            .map_err(|e| Error::invalid(format!("bad parameter name {n}: {e}")))
    };
    if name.starts_with([':', '@', '$']) {
        return lookup(name);
    }
    for prefix in [':', '@', '$'] {
        buf.clear();
        buf.push(prefix);
        buf.push_str(name);
        if let Some(i) = lookup(buf)? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn placeholder_list(stmt: &rusqlite::Statement<'_>) -> String {
    let n = stmt.parameter_count();
    if n == 0 {
        return "no parameters".to_string();
    }
    (1..=n)
        .map(|i| {
            stmt.parameter_name(i)
                .map_or_else(|| format!("?{i}"), str::to_string)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a column's declared type changes the way its values are read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    /// `BOOLEAN`/`BOOL`: integers read as `Bool`.
    Bool,
    /// `JSON`/`JSONB`: text that parses reads as `Json`.
    Json,
    /// `TIMESTAMP`/`DATETIME`: integers read as `Timestamp`.
    Timestamp,
}

#[inline]
fn kind_of(decl: Option<&str>) -> Kind {
    let Some(decl) = decl else {
        return Kind::Plain;
    };
    let word = decl
        .trim()
        .split(|c: char| c == '(' || c.is_ascii_whitespace())
        .next()
        .unwrap_or("");
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    if is("BOOLEAN") || is("BOOL") {
        Kind::Bool
    } else if is("JSON") || is("JSONB") {
        Kind::Json
    } else if is("TIMESTAMP") || is("DATETIME") || is("TIMESTAMPTZ") {
        Kind::Timestamp
    } else {
        Kind::Plain
    }
}

/// Pass one column value to `sink`, typed by the column's declared kind.
#[inline]
fn put_value(sink: &mut dyn RowSink, v: SqlRef<'_>, kind: Kind) {
    match v {
        SqlRef::Null => sink.value(ValueRef::Null),
        SqlRef::Integer(i) => sink.value(match kind {
            Kind::Bool => ValueRef::Bool(i != 0),
            Kind::Timestamp => ValueRef::Timestamp(i),
            _ => ValueRef::Integer(i),
        }),
        SqlRef::Real(f) => sink.value(ValueRef::Real(f)),
        SqlRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s)
                if kind == Kind::Json
                    && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() =>
            {
                sink.value(ValueRef::Json(JsonRef::Text(s)))
            }
            Ok(s) => sink.value(ValueRef::Text(s)),
            Err(_) => sink.value(ValueRef::Text(&String::from_utf8_lossy(t))),
        },
        SqlRef::Blob(b) => sink.value(ValueRef::Blob(b)),
    }
}

/// Whether the statement starts with INSERT or REPLACE (for last_insert_id).
#[inline]
fn is_insert(sql: &str) -> bool {
    let s = sql.trim_start().as_bytes();
    let starts = |w: &[u8]| s.len() >= w.len() && s[..w.len()].eq_ignore_ascii_case(w);
    starts(b"INSERT") || starts(b"REPLACE")
}

/// Run one statement on `conn`. A statement that returns rows is stepped to
/// its end and its rows discarded.
pub fn exec_one(conn: &Connection, sql: &str, params: ParamsRef<'_>) -> Result<ExecResult> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| sql_error(e, sql))?;
    bind_params(&mut stmt, params, sql)?;
    exec_bound(conn, &mut stmt, sql)
}

#[inline]
fn exec_bound(
    conn: &Connection,
    stmt: &mut rusqlite::Statement<'_>,
    sql: &str,
) -> Result<ExecResult> {
    let rowid_before = conn.last_insert_rowid();
    let total_before = conn.total_changes();
    if stmt.column_count() == 0 {
        stmt.raw_execute().map_err(|e| sql_error(e, sql))?;
    } else {
        let mut rows = stmt.raw_query();
        while rows.next().map_err(|e| sql_error(e, sql))?.is_some() {}
    }
    // `changes()` keeps the count of the last INSERT/UPDATE/DELETE, so a
    // statement that changed no row (DDL, SELECT) must not report it.
    let rows_affected = if conn.total_changes() != total_before {
        conn.changes()
    } else {
        0
    };
    let rowid = conn.last_insert_rowid();
    let last_insert_id =
        (rowid != rowid_before || (rows_affected > 0 && is_insert(sql))).then_some(rowid);
    Ok(ExecResult {
        rows_affected,
        last_insert_id,
    })
}

fn query_cached(
    c: &mut Cached,
    sql: &str,
    params: ParamsRef<'_>,
    sink: &mut dyn RowSink,
) -> Result<()> {
    bind_params(&mut c.stmt, params, sql)?;
    sink.columns(&c.names);
    let kinds = &c.kinds;
    let mut rows = c.stmt.raw_query();
    while let Some(row) = rows.next().map_err(|e| sql_error(e, sql))? {
        sink.begin_row();
        for (i, kind) in kinds.iter().enumerate() {
            let v = row.get_ref(i).map_err(|e| sql_error(e, sql))?;
            put_value(sink, v, *kind);
        }
    }
    Ok(())
}

const CREATE_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS _backplane_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    checksum   TEXT NOT NULL,
    applied_at INTEGER NOT NULL
)";

/// Run a whole backup (all pages in one step, so the copy is one
/// consistent snapshot), waiting out short lock contention.
fn run_backup(backup: &Backup<'_, '_>, what: &str) -> Result<()> {
    let mut waits = 0;
    loop {
        match backup.step(-1).map_err(|e| sql_error(e, what))? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => {
                waits += 1;
                if waits > 50 {
                    return Err(Error::unavailable(format!(
                        "{what}: the database stayed locked by another connection for 5 s; retry later"
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            _ => {}
        }
    }
}

impl Relational for SqliteRelational {
    fn execute(&self, sql: &str, params: &Params) -> Result<ExecResult> {
        self.execute_ref(sql, params.into())
    }

    fn execute_ref(&self, sql: &str, params: ParamsRef<'_>) -> Result<ExecResult> {
        self.with_stmt(sql, |conn, c| {
            bind_params(&mut c.stmt, params, sql)?;
            exec_bound(conn, &mut c.stmt, sql)
        })
    }

    fn execute_many(&self, sql: &str, params: &[Params]) -> Result<ExecResult> {
        let sets: Vec<ParamsRef<'_>> = params.iter().map(ParamsRef::from).collect();
        self.execute_many_ref(sql, &sets)
    }

    fn execute_many_ref(&self, sql: &str, params: &[ParamsRef<'_>]) -> Result<ExecResult> {
        let n = params.len();
        self.with_stmt(sql, |conn, c| write_tx(conn, |tx| {
            let stmt = &mut c.stmt;
            let mut total = ExecResult::default();
            for (i, p) in params.iter().enumerate() {
                let r = bind_params(stmt, *p, sql)
                    .and_then(|()| exec_bound(tx, stmt, sql))
                    .map_err(|e| {
                        e.context(format!(
                            "parameter set {i} of {n} failed; the batch was rolled back, nothing was written"
                        ))
                    })?;
                total.rows_affected += r.rows_affected;
                if r.last_insert_id.is_some() {
                    total.last_insert_id = r.last_insert_id;
                }
            }
            Ok(total)
        }))
    }

    fn query(&self, sql: &str, params: &Params) -> Result<Rows> {
        let mut rows = RowsBuilder::new();
        self.query_into(sql, params.into(), &mut rows)?;
        Ok(rows.finish())
    }

    fn query_into(&self, sql: &str, params: ParamsRef<'_>, sink: &mut dyn RowSink) -> Result<()> {
        self.with_stmt(sql, |_, c| query_cached(c, sql, params, sink))
    }

    fn transaction(&self, statements: &[Statement]) -> Result<Vec<ExecResult>> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.db.lock();
        let n = statements.len();
        write_tx(&conn, |tx| {
            statements
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    exec_one(tx, &s.sql, (&s.params).into()).map_err(|e| {
                        e.context(format!(
                            "statement {i} of {n} failed; the transaction was rolled back, nothing was written"
                        ))
                    })
                })
                .collect()
        })
    }

    fn migrate(&self, migrations: &[Migration]) -> Result<MigrationReport> {
        // A malformed list is refused before the database is touched.
        validate_migrations(migrations)?;
        let conn = self.db.lock();
        conn.execute_batch(CREATE_MIGRATIONS)
            .map_err(|e| sql_error(e, CREATE_MIGRATIONS))?;
        let select = format!("SELECT version, checksum FROM {MIGRATIONS_TABLE}");
        let applied: std::collections::HashMap<i64, String> = {
            let mut stmt = conn.prepare(&select).map_err(|e| sql_error(e, &select))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| sql_error(e, &select))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| sql_error(e, &select))?
        };
        // Refuse before applying anything if an applied script was edited.
        let plan = plan_migrations(migrations, &applied)?;
        let mut report = MigrationReport::default();
        for (m, applied_before) in plan {
            if applied_before {
                report.skipped.push(m.version);
                continue;
            }
            let checksum = m.checksum();
            let done_before = report.applied.clone();
            let ran = write_tx(&conn, |tx| {
                // Another process may have applied it since we looked.
                let recorded: Option<String> = tx
                    .query_row(
                        "SELECT checksum FROM _backplane_migrations WHERE version = ?1",
                        [m.version],
                        |r| r.get(0),
                    )
                    .map(Some)
                    .or_else(|e| match e {
                        rusqlite::Error::QueryReturnedNoRows => Ok(None),
                        e => Err(e),
                    })
                    .map_err(|e| sql_error(e, "SELECT checksum FROM _backplane_migrations"))?;
                if !migration_still_pending(m, recorded)? {
                    return Ok(false);
                }
                tx.execute_batch(&m.sql).map_err(|e| sql_error(e, &m.sql))?;
                tx.execute(
                    "INSERT INTO _backplane_migrations (version, name, checksum, applied_at) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![m.version, m.name, checksum, now_ms()],
                )
                .map_err(|e| sql_error(e, "INSERT INTO _backplane_migrations"))?;
                Ok(true)
            })
            .map_err(|e| e.context(migration_failed(m, &done_before)))?;
            if ran {
                report.applied.push(m.version);
            } else {
                report.skipped.push(m.version);
            }
        }
        Ok(report)
    }

    fn tables(&self) -> Result<Vec<String>> {
        const SQL: &str = "SELECT name FROM sqlite_schema WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_bp\\_%' ESCAPE '\\' \
             ORDER BY name";
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
        let names = stmt
            .query_map([], |r| r.get(0))
            .map_err(|e| sql_error(e, SQL))?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| sql_error(e, SQL))?;
        Ok(names)
    }

    fn describe(&self, table: &str) -> Result<TableSchema> {
        const FIND: &str = "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE";
        let conn = self.db.lock();
        let name: String = match conn.query_row(FIND, [table], |r| r.get(0)) {
            Ok(n) => n,
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                return Err(Error::not_found(format!(
                    "table '{table}' does not exist in {}: see tables() for the ones that do",
                    self.db.path
                )))
            }
            Err(e) => return Err(sql_error(e, FIND)),
        };
        describe_table(&conn, name)
    }

    fn backup(&self, path: &str) -> Result<()> {
        // Written beside the target, then renamed over it: a failed backup
        // never leaves a half-written file under the final name.
        backplane_core::kit::fs::replace_file(path, "backup", |tmp| {
            let mut out = Connection::open(tmp).map_err(|e| {
                Error::invalid(format!(
                    "cannot write the backup to {path}: creating {} failed: {e}",
                    tmp.display()
                ))
            })?;
            {
                let conn = self.db.lock();
                let b = Backup::new(&conn, &mut out).map_err(|e| sql_error(e, "backup"))?;
                run_backup(&b, &format!("backup of {} to {path}", self.db.path))?;
            }
            out.close()
                .map_err(|(_, e)| sql_error(e, "closing the backup file"))
        })
    }

    fn restore(&self, path: &str) -> Result<()> {
        let src_path = Path::new(path);
        if !src_path.is_file() {
            return Err(Error::not_found(format!(
                "backup file '{path}' does not exist: give the path of a file that backup() wrote"
            )));
        }
        let src = Connection::open_with_flags(
            src_path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::invalid(format!("cannot open backup file '{path}': {e}")))?;
        src.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| {
                Error::invalid(format!(
                    "'{path}' is not a readable SQLite database ({e}): give a file that backup() wrote"
                ))
            })?;
        let mut conn = self.db.lock();
        // The kept statements borrow the connection: drop them before it is
        // borrowed mutably and its schema replaced.
        self.clear_statements(&conn);
        if !conn.is_autocommit() {
            return Err(Error::conflict(
                "a transaction is open on this store: commit or roll it back before restoring",
            ));
        }
        {
            let b = Backup::new(&src, &mut conn).map_err(|e| sql_error(e, "restore"))?;
            run_backup(&b, &format!("restore of {} from {path}", self.db.path))?;
        }
        conn.flush_prepared_statement_cache();
        log::info!("sqlite: restored {} from {path}", self.db.path);
        Ok(())
    }

    fn health(&self) -> Result<Health> {
        self.db.health()
    }
}

/// The schema of `table` (which exists), from SQLite's table, index and
/// foreign-key pragmas.
fn describe_table(conn: &rusqlite::Connection, name: String) -> Result<TableSchema> {
    const COLS: &str = "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid";
    const INDEXES: &str =
        "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1) ORDER BY seq";
    const INDEX_COLS: &str = "SELECT name FROM pragma_index_info(?1) ORDER BY seqno";
    const FKS: &str = "SELECT id, \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq";
    let query = |sql: &'static str| conn.prepare_cached(sql).map_err(|e| sql_error(e, sql));
    let mut keyed: Vec<(i64, String)> = Vec::new();
    let mut columns: Vec<ColumnInfo> = query(COLS)?
        .query_map([&name], |r| {
            let name: String = r.get(0)?;
            let data_type: String = r.get(1)?;
            let not_null: bool = r.get(2)?;
            let pk: i64 = r.get(3)?;
            Ok((name, data_type, not_null, pk))
        })
        .map_err(|e| sql_error(e, COLS))?
        .map(|c| {
            let (name, data_type, not_null, pk) = c.map_err(|e| sql_error(e, COLS))?;
            if pk > 0 {
                keyed.push((pk, name.clone()));
            }
            Ok(ColumnInfo {
                column_type: Some(ColumnType::from_sqlite(&data_type)),
                name,
                data_type,
                nullable: !not_null,
                primary_key: pk > 0,
                auto_increment: false,
            })
        })
        .collect::<Result<_>>()?;
    keyed.sort();
    let primary_key: Vec<String> = keyed.into_iter().map(|(_, n)| n).collect();
    if let [key] = primary_key.as_slice() {
        // An INTEGER PRIMARY KEY is the rowid: never NULL, numbered by
        // SQLite past the largest.
        if let Some(c) = columns
            .iter_mut()
            .find(|c| &c.name == key && c.data_type.eq_ignore_ascii_case("INTEGER"))
        {
            c.nullable = false;
            c.auto_increment = true;
        }
    }
    let listed: Vec<(String, bool, String, bool)> = query(INDEXES)?
        .query_map([&name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .map_err(|e| sql_error(e, INDEXES))?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| sql_error(e, INDEXES))?;
    let mut indexes = Vec::new();
    for (index, unique, origin, partial) in listed {
        // The primary key is described already; a partial index's condition
        // does not carry over to another backend.
        if origin == "pk" || partial {
            continue;
        }
        let cols: Vec<Option<String>> = query(INDEX_COLS)?
            .query_map([&index], |r| r.get(0))
            .map_err(|e| sql_error(e, INDEX_COLS))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| sql_error(e, INDEX_COLS))?;
        // An index on expressions has no column names.
        let Some(cols) = cols.into_iter().collect::<Option<Vec<String>>>() else {
            continue;
        };
        let index = if origin == "u" {
            format!("{name}_{}_key", cols.join("_"))
        } else {
            index
        };
        indexes.push(IndexInfo {
            name: index,
            columns: cols,
            unique,
        });
    }
    let mut foreign_keys: Vec<(i64, ForeignKey)> = Vec::new();
    let fk_rows: Vec<(i64, String, String, Option<String>, String)> = query(FKS)?
        .query_map([&name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(|e| sql_error(e, FKS))?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| sql_error(e, FKS))?;
    for (id, ref_table, from, to, on_delete) in fk_rows {
        if foreign_keys.last().is_none_or(|(last, _)| *last != id) {
            foreign_keys.push((
                id,
                ForeignKey {
                    columns: Vec::new(),
                    ref_table: ref_table.clone(),
                    ref_columns: Vec::new(),
                    on_delete: (on_delete != "NO ACTION").then_some(on_delete),
                },
            ));
        }
        let fk = &mut foreign_keys.last_mut().expect("pushed above").1;
        fk.columns.push(from);
        fk.ref_columns.push(to.unwrap_or_default());
    }
    let mut foreign_keys: Vec<ForeignKey> = foreign_keys.into_iter().map(|(_, f)| f).collect();
    // `REFERENCES parent` without columns means the parent's primary key.
    for fk in &mut foreign_keys {
        if fk.ref_columns.iter().any(String::is_empty) {
            let parent = describe_table(conn, fk.ref_table.clone())?;
            fk.ref_columns = parent.primary_key;
        }
    }
    Ok(TableSchema {
        name,
        columns,
        primary_key,
        indexes,
        foreign_keys,
    })
}
