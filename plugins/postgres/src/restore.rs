//! `restore`: the schema's tables, views, sequences and enum types
//! replaced by a dump file's (see [`crate::dump`]), in one transaction.

use crate::client::{in_transaction, PooledConn};
use crate::dump::{io_err, CopyRecord, Record, MAGIC, NOT_EXTENSION};
use backplane_core::kit::sql::quote_ident;
use backplane_core::kit::text::snippet;
use backplane_core::{Error, Result};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// Replace the schema's objects with the ones in the file at `path`.
pub(crate) fn restore(conn: &mut PooledConn<'_>, schema: &str, path: &str) -> Result<()> {
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

/// Drop the schema's tables, views, sequences and enum types (not those
/// of an extension).
fn drop_schema_objects(conn: &mut PooledConn<'_>, schema: &str) -> Result<()> {
    let rows = conn.query_once(
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
    for r in conn.query_once(
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
        conn.batch(&s)?;
    }
    Ok(())
}

/// Run the file's records after the magic line.
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
                conn.batch(&sql)
                    .map_err(|e| e.context(format!("restore: `{}`", snippet(&sql))))?;
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
