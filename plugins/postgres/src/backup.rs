//! `backup`: the schema's objects and rows written to a dump file (see
//! [`crate::dump`]) from one `REPEATABLE READ` snapshot, beside the target
//! and renamed over it.

use crate::client::PooledConn;
use crate::dump::{io_err, CopyRecord, Header, Record, Totals, MAGIC, NOT_EXTENSION};
use backplane_core::kit::sql::{quote_ident, quote_literal};
use backplane_core::{Error, Result};
use serde::Serialize;
use std::io::{Read, Write};

/// A table of the schema.
struct Table {
    oid: u32,
    name: String,
}

/// Write the schema's objects and data to `path`.
pub(crate) fn backup(conn: &mut PooledConn<'_>, schema: &str, path: &str) -> Result<()> {
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
            conn.batch("COMMIT")?;
            conn.set_in_transaction(false);
            Ok(())
        })();
        if r.is_err() && conn.client.batch_execute("ROLLBACK").is_ok() {
            conn.set_in_transaction(false);
        }
        r
    })
}

/// Write one record as a line.
fn line(out: &mut impl Write, rec: &impl Serialize, path: &str) -> Result<()> {
    serde_json::to_writer(&mut *out, rec)?;
    out.write_all(b"\n").map_err(|e| io_err(path, e))
}

/// Write an `sql` record.
fn sql_line(out: &mut impl Write, sql: String, path: &str) -> Result<()> {
    line(out, &Record::Sql(sql), path)
}

/// Write every record of the dump, in the order `restore` replays them.
fn write_dump(
    conn: &mut PooledConn<'_>,
    schema: &str,
    out: &mut impl Write,
    path: &str,
) -> Result<()> {
    let version: String =
        conn.query_once("SELECT current_setting('server_version')", &[])?[0].get(0);
    let tables: Vec<Table> = conn.query_once(
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
    let mut not_included: Vec<String> = conn.query_once(
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
    for r in conn.query_once(
        &format!(
            "SELECT x.typname::text, array_agg(e.enumlabel::text ORDER BY e.enumsortorder) \
             FROM pg_type x JOIN pg_enum e ON e.enumtypid = x.oid JOIN pg_namespace n ON n.oid = x.typnamespace \
             WHERE n.nspname = $1 AND {NOT_EXTENSION} GROUP BY x.oid, x.typname ORDER BY x.oid"
        ),
        &[&schema],
    )? {
        let name: String = r.get(0);
        let labels: Vec<String> = r.get(1);
        let labels: Vec<String> = labels.iter().map(|l| quote_literal(l)).collect();
        sql_line(out, format!("CREATE TYPE {} AS ENUM ({})", quote_ident(&name), labels.join(", ")), path)?;
    }

    // Sequences other than those of identity columns.
    let seqs = conn.query_once(
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
        let v = conn.query_once(
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
            quote_literal(&quote_ident(&name))
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
        let cols = conn.query_once(
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
    for r in conn.query_once(
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
        for r in conn.query_once(
            "SELECT a.attname::text, pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.attrelid = $1 AND a.attidentity <> '' AND NOT a.attisdropped",
            &[&t.oid],
        )? {
            let col: String = r.get(0);
            let Some(seq): Option<String> = r.get(1) else {
                continue;
            };
            let v = conn.query_once(&format!("SELECT last_value, is_called FROM {seq}"), &[])?;
            let (last, called): (i64, bool) = (v[0].get(0), v[0].get(1));
            sql_line(
                out,
                format!(
                    "SELECT setval(pg_get_serial_sequence({}, {}), {last}, {called})",
                    quote_literal(&quote_ident(&t.name)),
                    quote_literal(&col)
                ),
                path,
            )?;
        }
    }
    // Constraints (foreign keys last), then the other indexes.
    let mut fks = Vec::new();
    for t in &tables {
        for r in conn.query_once(
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
        for r in conn.query_once(
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

/// How streaming a table's rows out failed.
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
