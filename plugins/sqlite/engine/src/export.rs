//! Exporting tables for `backplane migrate` and `backup`: pages of rows in
//! key order (the primary key's, else the rowid's), read in a snapshot.
//!
//! A snapshot is a read transaction on a read-only connection of its own
//! to the same file: in WAL mode it sees the database as it was when it
//! began, whatever the store's own connection writes meanwhile, for as
//! long as it is held. An in-memory database has no second connection to
//! give, so it has no snapshots (each page sees the data as it is).

use crate::columns::{kind_of, put_value};
use crate::db::sql_error;
use crate::schema::describe_table;
use backplane_core::kit::id::new_id;
use backplane_core::kit::page::check_limit;
use backplane_core::{Error, Result, RowSink, Value};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Open export snapshots, by id.
#[derive(Default)]
pub(crate) struct Snapshots {
    held: Mutex<HashMap<String, Connection>>,
}

impl Snapshots {
    /// Begin a snapshot of the database file at `path`; `None` for an
    /// in-memory database.
    pub(crate) fn open(&self, path: &str, busy_timeout_ms: u64) -> Result<Option<String>> {
        if path == ":memory:" {
            return Ok(None);
        }
        let failed = |e: rusqlite::Error| {
            Error::unavailable(format!("cannot open an export snapshot of {path}: {e}"))
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        conn.busy_timeout(std::time::Duration::from_millis(busy_timeout_ms))
            .map_err(failed)?;
        // The first read in the transaction fixes what it sees.
        conn.execute_batch("BEGIN")
            .and_then(|()| conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())))
            .map_err(failed)?;
        let id = new_id("snapshot-");
        self.lock().insert(id.clone(), conn);
        Ok(Some(id))
    }

    /// End the snapshot `id` (an unknown id is no error: it ended already).
    pub(crate) fn release(&self, id: &str) {
        if let Some(conn) = self.lock().remove(id) {
            let _ = conn.execute_batch("COMMIT");
        }
    }

    /// Run `f` on the snapshot `id`'s connection.
    pub(crate) fn with<T>(&self, id: &str, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let held = self.lock();
        let conn = held.get(id).ok_or_else(|| {
            Error::invalid(format!(
                "export snapshot '{id}' is not open: open one with export_snapshot, or read without one"
            ))
        })?;
        f(conn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Connection>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn cursor_error(cursor: &str) -> Error {
    Error::invalid(format!(
        "'{cursor}' is not a cursor this store gave: pass the next_cursor of the previous page, or none for the first"
    ))
}

/// The table's name as stored (case-insensitively matched), or NotFound.
pub(crate) fn find_table(conn: &Connection, table: &str, path: &str) -> Result<String> {
    const FIND: &str = "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE";
    match conn.query_row(FIND, [table], |r| r.get(0)) {
        Ok(n) => Ok(n),
        Err(rusqlite::Error::QueryReturnedNoRows) => Err(Error::not_found(format!(
            "table '{table}' does not exist in {path}: see tables() for the ones that do"
        ))),
        Err(e) => Err(sql_error(e, FIND)),
    }
}

/// One page of `table`'s rows on `conn`, written into `sink`: keyset
/// pages on the primary key, or on the rowid for a table without one.
/// Returns the next page's cursor.
pub(crate) fn export_rows_into(
    conn: &Connection,
    path: &str,
    table: &str,
    cursor: Option<&str>,
    limit: usize,
    sink: &mut dyn RowSink,
) -> Result<Option<String>> {
    check_limit(limit, "export_rows", "row")?;
    let name = find_table(conn, table, path)?;
    let schema = describe_table(conn, name)?;
    let quote = backplane_core::port::quote;
    let t = quote(&schema.name);
    let cols: Vec<String> = schema.columns.iter().map(|c| quote(&c.name)).collect();
    let by_rowid = schema.primary_key.is_empty();
    let (sql, params) = if by_rowid {
        let after: i64 = match cursor {
            None => i64::MIN,
            Some(c) => c.parse().map_err(|_| cursor_error(c))?,
        };
        (
            format!(
                "SELECT {}, rowid FROM {t} WHERE rowid > ?1 ORDER BY rowid LIMIT {limit}",
                cols.join(", ")
            ),
            vec![Value::Integer(after)],
        )
    } else {
        let key: Vec<String> = schema.primary_key.iter().map(|c| quote(c)).collect();
        match cursor {
            None => (
                format!(
                    "SELECT {} FROM {t} ORDER BY {} LIMIT {limit}",
                    cols.join(", "),
                    key.join(", ")
                ),
                Vec::new(),
            ),
            Some(c) => {
                let last: Vec<Value> = serde_json::from_str(c).map_err(|_| cursor_error(c))?;
                if last.len() != key.len() {
                    return Err(cursor_error(c));
                }
                let marks: Vec<String> = (1..=key.len()).map(|i| format!("?{i}")).collect();
                (
                    format!(
                        "SELECT {} FROM {t} WHERE ({}) > ({}) ORDER BY {} LIMIT {limit}",
                        cols.join(", "),
                        key.join(", "),
                        marks.join(", "),
                        key.join(", ")
                    ),
                    last,
                )
            }
        }
    };
    let mut keyed = backplane_core::port::KeyedSink::new(sink, &schema, by_rowid);
    read_rows(conn, &sql, &params, &mut keyed)?;
    keyed.cursor(limit)
}

/// Write the rows of `sql` into `sink`, each value read by its column's
/// declared type.
fn read_rows(conn: &Connection, sql: &str, params: &[Value], sink: &mut dyn RowSink) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| sql_error(e, sql))?;
    let kinds: Vec<_> = stmt
        .columns()
        .iter()
        .map(|c| kind_of(c.decl_type()))
        .collect();
    let names: Arc<[String]> = stmt.column_names().into_iter().map(String::from).collect();
    let values: Vec<rusqlite::types::Value> = params
        .iter()
        .map(|v| match v {
            Value::Integer(i) | Value::Timestamp(i) => rusqlite::types::Value::Integer(*i),
            Value::Real(f) => rusqlite::types::Value::Real(*f),
            Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
            Value::Blob(b) => rusqlite::types::Value::Blob(b.clone()),
            Value::Bool(b) => rusqlite::types::Value::Integer(*b as i64),
            Value::Json(j) => rusqlite::types::Value::Text(j.to_string()),
            Value::Null => rusqlite::types::Value::Null,
        })
        .collect();
    sink.columns(&names);
    let mut rows = stmt
        .query(rusqlite::params_from_iter(values.iter()))
        .map_err(|e| sql_error(e, sql))?;
    while let Some(r) = rows.next().map_err(|e| sql_error(e, sql))? {
        sink.begin_row();
        for (i, kind) in kinds.iter().enumerate() {
            put_value(sink, r.get_ref(i).map_err(|e| sql_error(e, sql))?, *kind);
        }
    }
    Ok(())
}
