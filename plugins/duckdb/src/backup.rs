//! Backup and restore of a whole DuckDB database.
//!
//! A backup is a DuckDB file: the store's database is copied into a fresh
//! file (`ATTACH` + `COPY FROM DATABASE`, which reads one consistent
//! snapshot), written beside the target and renamed over it, so a failed
//! backup never leaves half a file under the final name. The `duckdb` CLI
//! opens it like any database.
//!
//! A restore checks the file opens as a DuckDB database, then, in one
//! transaction, drops every table and sequence of the store and copies the
//! backup's in: a restore that fails leaves the store as it was.

use crate::error::sql_error;
use crate::relational::DuckRelational;
use backplane_core::kit::sql::{quote_ident, quote_literal};
use backplane_core::{Error, Result};
use std::path::Path;

/// The name the file being written or read is attached under.
const ATTACHED: &str = "bp_backup_file";

pub(crate) fn backup(store: &DuckRelational, path: &str) -> Result<()> {
    backplane_core::kit::fs::replace_file(path, "backup", |tmp| {
        let mut inner = store.lock();
        let db = current_database(&mut inner)?;
        let sql = format!(
            "ATTACH {} AS {ATTACHED}; COPY FROM DATABASE {} TO {ATTACHED}; DETACH {ATTACHED}",
            quote_literal(&tmp.display().to_string()),
            quote_ident(&db)
        );
        let r = inner.conn.execute_batch(&sql);
        if r.is_err() {
            let _ = inner
                .conn
                .execute_batch(&format!("DETACH DATABASE IF EXISTS {ATTACHED}"));
        }
        r.map_err(|e| sql_error(e, &sql).context(format!("backup of {} to {path}", store.shown())))
    })
}

fn current_database(inner: &mut crate::relational::Inner) -> Result<String> {
    inner.rows("SELECT current_database()", &[])?[0][0]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::backend("DuckDB did not name its current database"))
}

pub(crate) fn restore(store: &DuckRelational, path: &str) -> Result<()> {
    if !Path::new(path).is_file() {
        return Err(Error::not_found(format!(
            "backup file '{path}' does not exist: give the path of a file that backup() wrote"
        )));
    }
    let mut inner = store.lock();
    let attach = format!("ATTACH {} AS {ATTACHED} (READ_ONLY)", quote_literal(path));
    inner.conn.execute_batch(&attach).map_err(|e| {
        Error::invalid(format!(
            "'{path}' is not a DuckDB database this version can open ({}): give a file that backup() wrote",
            sql_error(e, &attach).message()
        ))
    })?;
    let db = current_database(&mut inner)?;
    let result = inner.in_transaction(|tx| {
        // Tables that others reference go last.
        const TABLES: &str = "SELECT t.table_name FROM duckdb_tables() t \
             WHERE t.database_name = current_database() AND t.schema_name = current_schema() AND NOT t.internal \
             ORDER BY (SELECT count(*) FROM duckdb_constraints() c WHERE c.database_name = current_database() \
                 AND c.constraint_type = 'FOREIGN KEY' AND c.referenced_table = t.table_name), t.table_name";
        let mut drops: Vec<String> = tx
            .rows(TABLES, &[])?
            .into_iter()
            .filter_map(|r| r[0].as_str().map(|t| format!("DROP TABLE {}", quote_ident(t))))
            .collect();
        const SEQUENCES: &str = "SELECT sequence_name FROM duckdb_sequences() \
             WHERE database_name = current_database() AND schema_name = current_schema() AND NOT temporary";
        drops.extend(
            tx.rows(SEQUENCES, &[])?
                .into_iter()
                .filter_map(|r| r[0].as_str().map(|s| format!("DROP SEQUENCE {}", quote_ident(s)))),
        );
        for d in &drops {
            tx.batch(d)?;
        }
        tx.batch(&format!("COPY FROM DATABASE {ATTACHED} TO {}", quote_ident(&db)))
    });
    let _ = inner
        .conn
        .execute_batch(&format!("DETACH DATABASE IF EXISTS {ATTACHED}"));
    inner.forget();
    result.map_err(|e| e.context(format!("restore of {} from {path}", store.shown())))?;
    log::info!("duckdb: restored {} from {path}", store.shown());
    Ok(())
}
