//! What every capability shares: opening a database the way the stores want
//! it, the mutex around the connection, write transactions, and the mapping
//! from SQLite's errors to Backplane's.

use backplane_core::kit::text::snippet;
use backplane_core::{Error, Health, Result, StoreConfig};
use rusqlite::{ffi, Connection, OpenFlags, Transaction, TransactionBehavior};
use std::sync::{Mutex, MutexGuard};

use std::path::Path;

/// Prepared statements kept per connection. The relational hot path relies
/// on a statement being prepared once and reused.
const STATEMENT_CACHE: usize = 256;

/// One connection, serialised by a mutex. SQLite connections are not
/// shareable between threads; one per store, locked per call, is simple and
/// correct, and WAL mode lets other stores' connections to the same file
/// read while this one writes.
pub struct Db {
    // Boxed: the relational store's own statement cache borrows the
    // connection, so its address must not change when the `Db` moves.
    conn: Box<Mutex<Connection>>,
    /// The file (or `:memory:`), for health and messages.
    pub path: String,
}

impl Db {
    /// Open the store's database: create parent folders, then WAL journal,
    /// `synchronous=NORMAL`, foreign keys on, and the busy timeout.
    /// `path` is the database file, or `None` for a private in-memory
    /// database.
    pub fn open(store: &StoreConfig, path: Option<&Path>, busy_timeout_ms: u64) -> Result<Db> {
        let shown = path.map_or(":memory:".to_string(), |p| p.display().to_string());
        let conn = if let Some(path) = path {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    store.error(format!(
                        "cannot create the folder {} for the database: {e}; check `path` and the folder's permissions",
                        parent.display()
                    ))
                })?;
            }
            Connection::open_with_flags(path, OpenFlags::default())
                .map_err(|e| open_error(store, &shown, e))?
        } else {
            Connection::open_in_memory().map_err(|e| open_error(store, &shown, e))?
        };
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.busy_timeout(std::time::Duration::from_millis(busy_timeout_ms))
            .map_err(|e| open_error(store, &shown, e))?;
        // Reading the schema is the first thing that touches the file: a file
        // that is not a database fails here with a clear message.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
            .map_err(|e| open_error(store, &shown, e))?;
        if path.is_some() {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(|e| open_error(store, &shown, e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                log::warn!("sqlite: {shown} stays in journal mode '{mode}' (WAL was asked for)");
            }
        }
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| open_error(store, &shown, e))?;
        log::debug!(
            "sqlite: opened {shown} for [{}.{}]",
            store.capability,
            store.store
        );
        Ok(Db {
            conn: Box::new(Mutex::new(conn)),
            path: shown,
        })
    }

    /// The connection. A panic while it was held (caught by the export layer)
    /// poisons the mutex; the connection itself is fine once any transaction
    /// the panic left open is rolled back.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        match self.conn.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let g = poisoned.into_inner();
                if !g.is_autocommit() {
                    let _ = g.execute_batch("ROLLBACK");
                }
                self.conn.clear_poison();
                g
            }
        }
    }

    /// Run `schema` (`CREATE … IF NOT EXISTS` statements) in one write
    /// transaction: a store's tables, made when it opens.
    pub fn create_tables(&self, schema: &str) -> Result<()> {
        let conn = self.lock();
        write_tx(&conn, |tx| {
            tx.execute_batch(schema).map_err(|e| sql_error(e, schema))
        })
    }

    /// `sqlite <version>, <path>, journal=<mode>`.
    pub fn health(&self) -> Result<Health> {
        let conn = self.lock();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| sql_error(e, "PRAGMA journal_mode"))?;
        if !conn.is_autocommit() {
            return Ok(Health {
                healthy: false,
                detail: format!(
                    "sqlite {}, {}: a transaction is open on the store's connection, so what it writes is not committed and other processes are locked out",
                    rusqlite::version(),
                    self.path
                ),
            });
        }
        Ok(Health::ok(format!(
            "sqlite {}, {}, journal={}",
            rusqlite::version(),
            self.path,
            mode.to_ascii_lowercase()
        )))
    }
}

fn open_error(store: &StoreConfig, path: &str, e: rusqlite::Error) -> Error {
    let code = e.sqlite_error_code();
    let what = format!(
        "[{}.{}]: cannot open the sqlite database {path}: {e}",
        store.capability, store.store
    );
    match code {
        Some(rusqlite::ErrorCode::NotADatabase) => Error::config(format!(
            "{what}; the file is not a SQLite database: point `path` at another file"
        )),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Error::unavailable(format!(
                "{what}; another process holds a lock on it: retry, or raise busy_timeout_ms"
            ))
        }
        _ => Error::config(format!(
            "{what}; check `path` and that the file and its folder are readable and writable"
        )),
    }
}

/// Run `f` in a `BEGIN IMMEDIATE` transaction: committed when it returns
/// `Ok`, rolled back (nothing written) when it returns `Err`.
pub fn write_tx<T>(conn: &Connection, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
    // `new_unchecked` takes `&Connection`: the connection is already
    // serialised by the `Db` mutex, and no `&mut` is made while the
    // relational store's cached statements borrow it.
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
        .map_err(|e| sql_error(e, "BEGIN IMMEDIATE"))?;
    let out = f(&tx)?;
    tx.commit().map_err(|e| sql_error(e, "COMMIT"))?;
    Ok(out)
}

/// Map a rusqlite error met while running `sql` to Backplane's kinds:
/// SQL mistakes are `InvalidInput`, constraint violations `Conflict`, locks
/// `Unavailable`, anything else `Backend`. The message names the SQL.
pub fn sql_error(e: rusqlite::Error, sql: &str) -> Error {
    use rusqlite::Error as E;
    let (code, msg) = match &e {
        E::SqlInputError {
            error, msg, offset, ..
        } => (
            Some(*error),
            if *offset >= 0 {
                format!("{msg} (at offset {offset})")
            } else {
                msg.clone()
            },
        ),
        E::SqliteFailure(err, msg) => (
            Some(*err),
            msg.clone().unwrap_or_else(|| err.to_string()),
        ),
        E::InvalidParameterCount(given, expected) => {
            return Error::invalid(format!(
                "`{}` has {expected} parameter(s) but {given} value(s) were given: pass one value per placeholder",
                snippet(sql)
            ))
        }
        E::InvalidParameterName(name) => {
            return Error::invalid(format!(
                "`{}` has no parameter named {name}: check the name (without its ':' it must match a :name in the SQL)",
                snippet(sql)
            ))
        }
        E::MultipleStatement => {
            return Error::invalid(format!(
                "`{}` holds more than one statement: run one at a time, or use transaction() / migrate() for several",
                snippet(sql)
            ))
        }
        E::NulError(_) => {
            return Error::invalid(format!(
                "`{}` contains a NUL character: remove it",
                snippet(sql)
            ))
        }
        E::ExecuteReturnedResults => {
            return Error::invalid(format!(
                "`{}` returns rows: use query() for it",
                snippet(sql)
            ))
        }
        other => {
            return Error::backend(format!("sqlite: {other} (in `{}`)", snippet(sql)));
        }
    };
    let at = snippet(sql);
    let Some(code) = code else {
        return Error::backend(format!("sqlite: {msg} (in `{at}`)"));
    };
    let primary = code.extended_code & 0xff;
    use rusqlite::ErrorCode as C;
    match code.code {
        C::ConstraintViolation => Error::conflict(format!(
            "{msg} (in `{at}`): the change breaks a constraint of the table; this statement wrote nothing"
        )),
        C::DatabaseBusy | C::DatabaseLocked => Error::unavailable(format!(
            "{msg} (in `{at}`): another connection holds the database lock; retry, or raise busy_timeout_ms"
        )),
        C::CannotOpen => Error::unavailable(format!(
            "{msg} (in `{at}`): the database file cannot be opened; check that it and its folder exist and are writable"
        )),
        C::TooBig | C::TypeMismatch | C::ParameterOutOfRange => {
            Error::invalid(format!("{msg} (in `{at}`): fix the statement or its values"))
        }
        C::ReadOnly => Error::backend(format!(
            "{msg} (in `{at}`): the database is read-only; check the file's permissions"
        )),
        C::DiskFull => Error::unavailable(format!(
            "{msg} (in `{at}`): the disk is full; free space and retry"
        )),
        _ if primary == ffi::SQLITE_ERROR => {
            if msg.contains("already exists") {
                Error::already_exists(format!("{msg} (in `{at}`)"))
            } else {
                Error::invalid(format!("{msg} (in `{at}`): fix the statement"))
            }
        }
        _ => Error::backend(format!("sqlite: {msg} (in `{at}`)")),
    }
}
