//! The relational capability: SQL straight through to SQLite.
//!
//! The hot path (`execute_ref` / `execute_many_ref` / `query_into`, which
//! the plugin boundary calls with borrowed parameters) takes the
//! connection's lock, fetches the prepared statement from rusqlite's
//! statement cache, binds each value in place (`bind`), steps, and hands
//! column values to a [`RowSink`] as borrowed views (`columns`). Nothing is
//! rewritten: SQLite itself understands `?`, `?N`, `:name`, `@name` and
//! `$name`.

use crate::bind::bind_params;
use crate::columns::{kind_of, put_value, Kind};
use crate::db::{sql_error, write_tx, Db};
use crate::schema::describe_table;
use backplane_core::kit::time::now_ms;
use backplane_core::relational::{
    apply_migrations, each_set, migration_still_pending, refuse_transaction_control,
    validate_migrations, MIGRATIONS_TABLE,
};
use backplane_core::{
    Error, ExecResult, Health, Migration, MigrationReport, Params, ParamsRef, Relational, Result,
    RowSink, Rows, RowsBuilder, Statement, TableSchema,
};
use hashbrown::hash_map::EntryRef;
use hashbrown::HashMap;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::StatementStatus;
use rusqlite::{Connection, OpenFlags};
use std::cell::UnsafeCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

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
    snapshots: crate::export::Snapshots,
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
    /// The relational store on `db`.
    pub fn new(db: Db) -> Self {
        SqliteRelational {
            stmts: UnsafeCell::new(HashMap::new()),
            db,
            snapshots: Default::default(),
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
                refuse_transaction_control(sql)?;
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

/// Whether the statement starts with INSERT or REPLACE (for last_insert_id).
#[inline]
fn is_insert(sql: &str) -> bool {
    let s = sql.trim_start().as_bytes();
    let starts = |w: &[u8]| s.len() >= w.len() && s[..w.len()].eq_ignore_ascii_case(w);
    starts(b"INSERT") || starts(b"REPLACE")
}

/// Run one statement on `conn`. A statement that returns rows is stepped to
/// its end and its rows discarded.
pub(crate) fn exec_one(conn: &Connection, sql: &str, params: ParamsRef<'_>) -> Result<ExecResult> {
    refuse_transaction_control(sql)?;
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
        self.with_stmt(sql, |conn, c| {
            write_tx(conn, |tx| {
                let stmt = &mut c.stmt;
                each_set(params, |p| {
                    bind_params(stmt, p, sql)?;
                    exec_bound(tx, stmt, sql)
                })
            })
        })
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
                    exec_one(tx, &s.sql, (&s.params).into())
                        .map_err(|e| e.context(backplane_core::relational::statement_failed(i, n)))
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
        // Refuses before applying anything if an applied script was edited.
        apply_migrations(migrations, &applied, |m, checksum| {
            write_tx(&conn, |tx| {
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
        })
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
        let conn = self.db.lock();
        let name = crate::export::find_table(&conn, table, &self.db.path)?;
        describe_table(&conn, name)
    }

    fn export_snapshot(&self) -> Result<Option<String>> {
        self.snapshots.open(&self.db.path, 5_000)
    }

    fn release_snapshot(&self, snapshot: &str) -> Result<()> {
        self.snapshots.release(snapshot);
        Ok(())
    }

    fn export_rows_into(
        &self,
        snapshot: Option<&str>,
        table: &str,
        cursor: Option<&str>,
        limit: usize,
        sink: &mut dyn RowSink,
    ) -> Result<Option<String>> {
        match snapshot {
            Some(id) => self.snapshots.with(id, |conn| {
                crate::export::export_rows_into(conn, &self.db.path, table, cursor, limit, sink)
            }),
            None => {
                let conn = self.db.lock();
                crate::export::export_rows_into(&conn, &self.db.path, table, cursor, limit, sink)
            }
        }
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
