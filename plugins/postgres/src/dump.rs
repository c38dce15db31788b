//! `backup` and `restore` without `pg_dump`: a portable file the plugin
//! writes and reads back.
//!
//! # The file
//!
//! UTF-8 text, one record per line:
//!
//! ```text
//! BACKPLANE-POSTGRES-DUMP 1
//! {"header":{"schema":"app","server_version":"15.4","tables":["items"],"not_included":[]}}
//! {"sql":"CREATE TABLE \"items\" (…)"}
//! {"copy":"items","columns":["id","name"]}
//! 1<TAB>apple
//! 2<TAB>pear
//! \.
//! {"sql":"ALTER TABLE \"items\" ADD CONSTRAINT \"items_pkey\" PRIMARY KEY (id)"}
//! {"end":{"tables":1,"rows":2}}
//! ```
//!
//! `sql` lines are run in order; a `copy` line is followed by the table's
//! rows in PostgreSQL's `COPY` text format (tab-separated, shown `<TAB>` above, `\N` for NULL,
//! one row per line; a data line can never be `\.`, which ends the rows).
//! Object names are written unqualified, so a dump restores into the
//! store's schema whatever schema it came from.
//!
//! # What it holds
//!
//! Every table of the schema (the migrations table and the `_bp_*` tables
//! of graph and vector stores sharing the schema included): columns with
//! their types, defaults, identity and generated columns, `NOT NULL`;
//! primary keys, unique, check, exclusion and foreign-key constraints;
//! indexes; views; enum types; sequences and their current values. The data
//! is read in one `REPEATABLE READ` transaction, so the copy is consistent.
//! Objects of other kinds (functions, triggers, materialized views,
//! partitioned tables, policies) are not dumped: the header lists them
//! under `not_included`, and `backup` logs a warning naming them.
//!
//! `restore` runs in one transaction: it drops the schema's tables, views,
//! sequences and enum types (objects belonging to an extension are left
//! alone), then replays the file. Any failure rolls everything back and the
//! schema is as it was.

use crate::pool::PooledConn;
use crate::relational::in_transaction;
use crate::sql::quote_ident;
use backplane_core::kit::text::snippet;
use backplane_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

const MAGIC: &str = "BACKPLANE-POSTGRES-DUMP 1";

#[derive(Serialize, Deserialize)]
struct Header {
    schema: String,
    server_version: String,
    tables: Vec<String>,
    not_included: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Totals {
    tables: u64,
    rows: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Header(Header),
    Sql(String),
    Copy(String),
    End(Totals),
}

/// A `copy` record: the table and its columns.
#[derive(Serialize, Deserialize)]
struct CopyRecord {
    copy: String,
    columns: Vec<String>,
}

/// Not in a transaction and not a mapped error: read or write of the file.
fn io_err(path: &str, e: std::io::Error) -> Error {
    Error::invalid(format!("backup file '{path}': {e}"))
}

/// Run a catalog query, mapping errors with the connection.
fn q(
    conn: &mut PooledConn<'_>,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<postgres::Row>> {
    match conn.client.query(sql, params) {
        Ok(r) => Ok(r),
        Err(e) => Err(conn.error(&e, sql)),
    }
}

struct Table {
    oid: u32,
    name: String,
}

/// Write the schema's objects and data to `path`.
pub fn backup(conn: &mut PooledConn<'_>, schema: &str, path: &str) -> Result<()> {
    // Written beside the target, then renamed over it: a failed backup
    // never leaves a half-written file under the final name.
    backplane_core::kit::fs::write_file(path, "backup", |out| {
        // A read-only snapshot: every table as of one instant.
        let r = (|| -> Result<()> {
            if let Err(e) = conn
                .client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            {
                return Err(conn.error(&e, "BEGIN"));
            }
            conn.set_in_transaction(true);
            write_dump(conn, schema, out, path)?;
            if let Err(e) = conn.client.batch_execute("COMMIT") {
                return Err(conn.error(&e, "COMMIT"));
            }
            conn.set_in_transaction(false);
            Ok(())
        })();
        if r.is_err() && conn.client.batch_execute("ROLLBACK").is_ok() {
            conn.set_in_transaction(false);
        }
        r
    })
}

fn line(out: &mut impl Write, rec: &impl Serialize, path: &str) -> Result<()> {
    serde_json::to_writer(&mut *out, rec)?;
    out.write_all(b"\n").map_err(|e| io_err(path, e))
}

fn sql_line(out: &mut impl Write, sql: String, path: &str) -> Result<()> {
    line(out, &Record::Sql(sql), path)
}

/// The condition "this object is not part of an extension" for `pg_class`
/// or `pg_type` rows aliased `x`.
const NOT_EXTENSION: &str =
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = x.oid AND d.deptype = 'e')";

fn write_dump(
    conn: &mut PooledConn<'_>,
    schema: &str,
    out: &mut impl Write,
    path: &str,
) -> Result<()> {
    let version: String = q(conn, "SELECT current_setting('server_version')", &[])?[0].get(0);
    let tables: Vec<Table> = q(
        conn,
        &format!(
            "SELECT x.oid, x.relname::text FROM pg_class x JOIN pg_namespace n ON n.oid = x.relnamespace \
             WHERE n.nspname = $1 AND x.relkind = 'r' AND NOT x.relispartition AND {NOT_EXTENSION} ORDER BY x.oid"
        ),
        &[&schema],
    )?
    .iter()
    .map(|r| Table {
        oid: r.get(0),
        name: r.get(1),
    })
    .collect();
    let mut not_included: Vec<String> = q(
        conn,
        &format!(
            "SELECT 'function ' || x.proname FROM pg_proc x JOIN pg_namespace n ON n.oid = x.pronamespace \
               WHERE n.nspname = $1 AND {NOT_EXTENSION} \
             UNION ALL SELECT CASE x.relkind WHEN 'm' THEN 'materialized view ' ELSE 'partitioned table ' END || x.relname \
               FROM pg_class x JOIN pg_namespace n ON n.oid = x.relnamespace \
               WHERE n.nspname = $1 AND (x.relkind IN ('m', 'p') OR x.relispartition) AND {NOT_EXTENSION} \
             UNION ALL SELECT 'trigger ' || t.tgname || ' on ' || c.relname FROM pg_trigger t \
               JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = $1 AND NOT t.tgisinternal \
             UNION ALL SELECT 'policy ' || p.polname || ' on ' || c.relname FROM pg_policy p \
               JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = $1"
        ),
        &[&schema],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect();
    not_included.sort();
    if !not_included.is_empty() {
        log::warn!(
            "postgres: the backup of schema '{schema}' leaves out {}: recreate them after a restore",
            not_included.join(", ")
        );
    }
    writeln!(out, "{MAGIC}").map_err(|e| io_err(path, e))?;
    line(
        out,
        &Record::Header(Header {
            schema: schema.to_string(),
            server_version: version,
            tables: tables.iter().map(|t| t.name.clone()).collect(),
            not_included,
        }),
        path,
    )?;

    // Enum types.
    for r in q(
        conn,
        &format!(
            "SELECT x.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) \
             FROM pg_type x JOIN pg_enum e ON e.enumtypid = x.oid JOIN pg_namespace n ON n.oid = x.typnamespace \
             WHERE n.nspname = $1 AND {NOT_EXTENSION} GROUP BY x.oid, x.typname ORDER BY x.oid"
        ),
        &[&schema],
    )? {
        let name: String = r.get(0);
        let labels: Vec<String> = r.get(1);
        let labels: Vec<String> = labels.iter().map(|l| crate::sql::quote_literal(l)).collect();
        sql_line(out, format!("CREATE TYPE {} AS ENUM ({})", quote_ident(&name), labels.join(", ")), path)?;
    }

    // Sequences other than those of identity columns.
    let seqs = q(
        conn,
        &format!(
            "SELECT x.relname::text, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin, s.seqmax, \
                    s.seqcache, s.seqcycle, \
                    (SELECT c.relname::text || '.' || quote_ident(a.attname) FROM pg_depend d \
                       JOIN pg_class c ON c.oid = d.refobjid \
                       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
                      WHERE d.objid = x.oid AND d.deptype = 'a' AND d.refclassid = 'pg_class'::regclass LIMIT 1) \
             FROM pg_sequence s JOIN pg_class x ON x.oid = s.seqrelid JOIN pg_namespace n ON n.oid = x.relnamespace \
             WHERE n.nspname = $1 AND {NOT_EXTENSION} \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = x.oid AND d.deptype = 'i') \
             ORDER BY x.oid"
        ),
        &[&schema],
    )?;
    let mut seq_values: Vec<String> = Vec::new();
    let mut owned_by: Vec<String> = Vec::new();
    for r in &seqs {
        let name: String = r.get(0);
        let ty: String = r.get(1);
        let (start, inc, min, max, cache): (i64, i64, i64, i64, i64) =
            (r.get(2), r.get(3), r.get(4), r.get(5), r.get(6));
        let cycle: bool = r.get(7);
        sql_line(
            out,
            format!(
                "CREATE SEQUENCE {} AS {ty} START {start} INCREMENT {inc} MINVALUE {min} MAXVALUE {max} CACHE {cache}{}",
                quote_ident(&name),
                if cycle { " CYCLE" } else { "" }
            ),
            path,
        )?;
        let v = q(
            conn,
            &format!(
                "SELECT last_value, is_called FROM {}.{}",
                quote_ident(schema),
                quote_ident(&name)
            ),
            &[],
        )?;
        let (last, called): (i64, bool) = (v[0].get(0), v[0].get(1));
        seq_values.push(format!(
            "SELECT setval({}, {last}, {called})",
            crate::sql::quote_literal(&quote_ident(&name))
        ));
        if let Some(owner) = r.get::<_, Option<String>>(8) {
            let (table, column) = owner.split_once('.').unwrap_or((&owner, ""));
            owned_by.push(format!(
                "ALTER SEQUENCE {} OWNED BY {}.{column}",
                quote_ident(&name),
                quote_ident(table)
            ));
        }
    }

    // Tables: columns first; constraints and indexes after the data.
    let mut copies: Vec<(String, Vec<String>)> = Vec::new();
    for t in &tables {
        let cols = q(
            conn,
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text \
             FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            &[&t.oid],
        )?;
        let mut defs = Vec::new();
        let mut copy_cols = Vec::new();
        for c in &cols {
            let name: String = c.get(0);
            let ty: String = c.get(1);
            let not_null: bool = c.get(2);
            let default: Option<String> = c.get(3);
            let identity: String = c.get(4);
            let generated: String = c.get(5);
            let mut d = format!("{} {ty}", quote_ident(&name));
            match (identity.as_str(), generated.as_str(), &default) {
                ("a", _, _) => d.push_str(" GENERATED ALWAYS AS IDENTITY"),
                ("d", _, _) => d.push_str(" GENERATED BY DEFAULT AS IDENTITY"),
                (_, "s", Some(expr)) => {
                    d.push_str(&format!(" GENERATED ALWAYS AS ({expr}) STORED"))
                }
                (_, _, Some(expr)) => d.push_str(&format!(" DEFAULT {expr}")),
                _ => {}
            }
            if not_null {
                d.push_str(" NOT NULL");
            }
            defs.push(d);
            if generated != "s" {
                copy_cols.push(name);
            }
        }
        sql_line(
            out,
            format!(
                "CREATE TABLE {} ({})",
                quote_ident(&t.name),
                defs.join(", ")
            ),
            path,
        )?;
        copies.push((t.name.clone(), copy_cols));
    }
    for o in owned_by {
        sql_line(out, o, path)?;
    }
    // Views, in creation order.
    for r in q(
        conn,
        &format!(
            "SELECT x.relname::text, pg_get_viewdef(x.oid) FROM pg_class x JOIN pg_namespace n ON n.oid = x.relnamespace \
             WHERE n.nspname = $1 AND x.relkind = 'v' AND {NOT_EXTENSION} ORDER BY x.oid"
        ),
        &[&schema],
    )? {
        let name: String = r.get(0);
        let def: String = r.get(1);
        sql_line(
            out,
            format!("CREATE VIEW {} AS {}", quote_ident(&name), def.trim_end().trim_end_matches(';')),
            path,
        )?;
    }

    // Data.
    let mut total_rows = 0u64;
    for (table, cols) in &copies {
        line(
            out,
            &CopyRecord {
                copy: table.clone(),
                columns: cols.clone(),
            },
            path,
        )?;
        let sql = format!(
            "COPY {}.{} ({}) TO STDOUT",
            quote_ident(schema),
            quote_ident(table),
            cols.iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = match copy_out(conn, &sql, out) {
            Ok(n) => n,
            Err(CopyFail::Pg(e)) => return Err(conn.error(&e, &sql)),
            Err(CopyFail::Read(e)) => {
                return Err(Error::unavailable(format!(
                    "backup: reading the rows of '{table}' from the server failed ({e}); retry"
                )));
            }
            Err(CopyFail::Write(e)) => return Err(io_err(path, e)),
        };
        out.write_all(b"\\.\n").map_err(|e| io_err(path, e))?;
        total_rows += rows;
    }
    for s in seq_values {
        sql_line(out, s, path)?;
    }
    // Identity columns' sequences.
    for t in &tables {
        for r in q(
            conn,
            "SELECT a.attname::text, pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.attrelid = $1 AND a.attidentity <> '' AND NOT a.attisdropped",
            &[&t.oid],
        )? {
            let col: String = r.get(0);
            let Some(seq): Option<String> = r.get(1) else {
                continue;
            };
            let v = q(conn, &format!("SELECT last_value, is_called FROM {seq}"), &[])?;
            let (last, called): (i64, bool) = (v[0].get(0), v[0].get(1));
            sql_line(
                out,
                format!(
                    "SELECT setval(pg_get_serial_sequence({}, {}), {last}, {called})",
                    crate::sql::quote_literal(&quote_ident(&t.name)),
                    crate::sql::quote_literal(&col)
                ),
                path,
            )?;
        }
    }
    // Constraints (foreign keys last), then the other indexes.
    let mut fks = Vec::new();
    for t in &tables {
        for r in q(
            conn,
            "SELECT conname::text, pg_get_constraintdef(oid), contype::text FROM pg_constraint \
             WHERE conrelid = $1 AND contype IN ('p', 'u', 'c', 'x', 'f') ORDER BY contype = 'f', oid",
            &[&t.oid],
        )? {
            let name: String = r.get(0);
            let def: String = r.get(1);
            let kind: String = r.get(2);
            let stmt = format!(
                "ALTER TABLE {} ADD CONSTRAINT {} {def}",
                quote_ident(&t.name),
                quote_ident(&name)
            );
            if kind == "f" {
                fks.push(stmt);
            } else {
                sql_line(out, stmt, path)?;
            }
        }
    }
    let qualified = [
        format!(" ON {}.", quote_ident(schema)),
        format!(" ON {schema}."),
    ];
    for t in &tables {
        for r in q(
            conn,
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = $1 \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid) \
             ORDER BY i.indexrelid",
            &[&t.oid],
        )? {
            let mut def: String = r.get(0);
            for qn in &qualified {
                def = def.replacen(qn.as_str(), " ON ", 1);
            }
            sql_line(out, def, path)?;
        }
    }
    for fk in fks {
        sql_line(out, fk, path)?;
    }
    line(
        out,
        &Record::End(Totals {
            tables: tables.len() as u64,
            rows: total_rows,
        }),
        path,
    )
}

enum CopyFail {
    Pg(postgres::Error),
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Stream `COPY … TO STDOUT` into `out`; returns the number of rows.
fn copy_out(
    conn: &mut PooledConn<'_>,
    sql: &str,
    out: &mut impl Write,
) -> std::result::Result<u64, CopyFail> {
    let mut reader = conn.client.copy_out(sql).map_err(CopyFail::Pg)?;
    let mut rows = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(rows),
            Ok(n) => n,
            Err(e) => {
                // The driver reports its own errors inside an io::Error.
                return Err(
                    match e.into_inner().map(|b| b.downcast::<postgres::Error>()) {
                        Some(Ok(pg)) => CopyFail::Pg(*pg),
                        Some(Err(other)) => CopyFail::Read(std::io::Error::other(other)),
                        None => CopyFail::Read(std::io::Error::other("the COPY stream failed")),
                    },
                );
            }
        };
        rows += chunk[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        out.write_all(&chunk[..n]).map_err(CopyFail::Write)?;
    }
}

/// Replace the schema's objects with the ones in the file at `path`.
pub fn restore(conn: &mut PooledConn<'_>, schema: &str, path: &str) -> Result<()> {
    let p = Path::new(path);
    if !p.is_file() {
        return Err(Error::not_found(format!(
            "backup file '{path}' does not exist: give the path of a file that backup() wrote"
        )));
    }
    let file = std::fs::File::open(p).map_err(|e| io_err(path, e))?;
    let mut reader = BufReader::new(file);
    let mut first = String::new();
    reader.read_line(&mut first).map_err(|e| io_err(path, e))?;
    if first.trim_end() != MAGIC {
        return Err(Error::invalid(format!(
            "'{path}' is not a backup written by the postgres backend (it does not start with '{MAGIC}'): \
             give a file that backup() wrote"
        )));
    }
    in_transaction(conn, "restore", |conn| {
        drop_schema_objects(conn, schema)?;
        replay(conn, schema, &mut reader, path)
    })?;
    log::info!("postgres: restored schema '{schema}' from {path}");
    Ok(())
}

fn drop_schema_objects(conn: &mut PooledConn<'_>, schema: &str) -> Result<()> {
    let rows = q(
        conn,
        &format!(
            "SELECT CASE x.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' \
                    WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, x.relname::text \
             FROM pg_class x JOIN pg_namespace n ON n.oid = x.relnamespace \
             WHERE n.nspname = $1 AND x.relkind IN ('r', 'p', 'v', 'm', 'S') AND NOT x.relispartition \
               AND {NOT_EXTENSION} ORDER BY x.relkind IN ('S'), x.oid DESC"
        ),
        &[&schema],
    )?;
    let mut stmts: Vec<String> = rows
        .iter()
        .map(|r| {
            let kind: String = r.get(0);
            let name: String = r.get(1);
            format!(
                "DROP {kind} IF EXISTS {}.{} CASCADE",
                quote_ident(schema),
                quote_ident(&name)
            )
        })
        .collect();
    for r in q(
        conn,
        &format!(
            "SELECT x.typname::text FROM pg_type x JOIN pg_namespace n ON n.oid = x.typnamespace \
             WHERE n.nspname = $1 AND x.typtype = 'e' AND {NOT_EXTENSION}"
        ),
        &[&schema],
    )? {
        let name: String = r.get(0);
        stmts.push(format!(
            "DROP TYPE IF EXISTS {}.{} CASCADE",
            quote_ident(schema),
            quote_ident(&name)
        ));
    }
    for s in stmts {
        if let Err(e) = conn.client.batch_execute(&s) {
            return Err(conn.error(&e, &s));
        }
    }
    Ok(())
}

fn replay(
    conn: &mut PooledConn<'_>,
    schema: &str,
    reader: &mut impl BufRead,
    path: &str,
) -> Result<()> {
    let corrupt = |what: &str| {
        Error::invalid(format!(
            "backup file '{path}' is damaged ({what}): restore from an intact copy; nothing was changed"
        ))
    };
    let mut line_buf = String::new();
    let mut ended = false;
    loop {
        line_buf.clear();
        let n = reader
            .read_line(&mut line_buf)
            .map_err(|e| io_err(path, e))?;
        if n == 0 {
            break;
        }
        let text = line_buf.trim_end_matches('\n');
        if text.is_empty() {
            continue;
        }
        if text.starts_with("{\"copy\"") {
            let rec: CopyRecord =
                serde_json::from_str(text).map_err(|_| corrupt("a copy record"))?;
            let sql = format!(
                "COPY {}.{} ({}) FROM STDIN",
                quote_ident(schema),
                quote_ident(&rec.copy),
                rec.columns
                    .iter()
                    .map(|c| quote_ident(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let copied =
                (|| -> std::result::Result<std::result::Result<(), Error>, postgres::Error> {
                    let mut w = conn.client.copy_in(sql.as_str())?;
                    let mut row = Vec::new();
                    loop {
                        row.clear();
                        let n = match reader.read_until(b'\n', &mut row) {
                            Ok(n) => n,
                            Err(e) => return Ok(Err(io_err(path, e))),
                        };
                        if n == 0 {
                            return Ok(Err(corrupt("it ends inside the rows of a table")));
                        }
                        if row == b"\\.\n" || row == b"\\." {
                            break;
                        }
                        if let Err(e) = w.write_all(&row) {
                            return Ok(Err(Error::unavailable(format!(
                                "restore: sending the rows of '{}' failed: {e}",
                                rec.copy
                            ))));
                        }
                    }
                    w.finish()?;
                    Ok(Ok(()))
                })();
            match copied {
                Ok(r) => r?,
                Err(e) => {
                    return Err(conn
                        .error(&e, &sql)
                        .context(format!("restoring table '{}'", rec.copy)))
                }
            }
            continue;
        }
        let rec: Record =
            serde_json::from_str(text).map_err(|_| corrupt("a line is not a record"))?;
        match rec {
            Record::Header(_) => {}
            Record::Sql(sql) => {
                if let Err(e) = conn.client.batch_execute(&sql) {
                    return Err(conn
                        .error(&e, &sql)
                        .context(format!("restore: `{}`", snippet(&sql))));
                }
            }
            Record::Copy(_) => return Err(corrupt("a copy record without columns")),
            Record::End(_) => {
                ended = true;
                break;
            }
        }
    }
    if !ended {
        return Err(corrupt("it is cut short: the end record is missing"));
    }
    Ok(())
}
