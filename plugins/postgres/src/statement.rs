//! One statement of the caller's: prepared once per connection (its
//! placeholders rewritten to `$n`, `RETURNING <key>` appended to an
//! `INSERT` into a table with a generated integer key), its values bound in
//! `$n` order, and run: rows affected and `last_insert_id`, or rows
//! streamed into a [`RowSink`].

use crate::bind::Bind;
use crate::client::PooledConn;
use crate::types::{readable, with_value, Raw};
use backplane_core::kit::sql::{
    first_keyword, in_placeholder_order, insert_target, is_ddl, quote_ident, rewrite,
};
use backplane_core::kit::text::snippet;
use backplane_core::{Error, ExecResult, ParamsRef, Result, RowSink, ValueRef};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::Statement;
use std::sync::Arc;

/// A prepared statement and what the plugin learned about it.
pub(crate) struct Prepared {
    /// The server's statement.
    pub(crate) stmt: Statement,
    /// Column names, shared by every result of this statement.
    pub(crate) names: Arc<[String]>,
    /// For `:name` placeholders: the name of `$1`, `$2`, ….
    pub(crate) param_names: Vec<String>,
    /// For an INSERT into a table with a generated integer key: the
    /// statement got `RETURNING <key>` appended, so `last_insert_id` is
    /// known.
    pub(crate) returning_id: bool,
    /// Whether the statement may change the schema.
    pub(crate) ddl: bool,
    /// Whether it is a `SELECT` (whose row count is not "rows affected").
    pub(crate) select: bool,
}

/// Why a statement failed: the driver (mapped with the connection at hand)
/// or the plugin itself.
pub(crate) enum Fail {
    /// A driver error.
    Pg(postgres::Error),
    /// Already mapped.
    Done(Error),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Pg(e)
    }
}
impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Done(e)
    }
}

impl Fail {
    /// The Backplane error, dropping the connection if the failure broke it.
    pub(crate) fn resolve(self, conn: &mut PooledConn<'_>, sql: &str) -> Error {
        match self {
            Fail::Pg(e) => conn.error(&e, sql),
            Fail::Done(e) => e,
        }
    }
}

/// The name of a table's primary key when it is one generated integer
/// column (identity or `serial`).
const GENERATED_KEY: &str = "SELECT a.attname::text FROM pg_index i \
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
     WHERE i.indrelid = to_regclass($1) AND i.indisprimary AND i.indnatts = 1 \
       AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) \
       AND (a.attidentity <> '' OR EXISTS (SELECT 1 FROM pg_attrdef d \
            WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum \
              AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'))";

/// The statement prepared on `conn` for `sql`, preparing it if needed.
fn prepared(conn: &mut PooledConn<'_>, sql: &str) -> Result<Arc<Prepared>, Fail> {
    if let Some(p) = conn.stmts.get(sql) {
        return Ok(p.clone());
    }
    backplane_core::relational::refuse_transaction_control(sql).map_err(Fail::Done)?;
    let rw = rewrite(sql)?;
    let mut text = rw.sql.clone();
    let mut returning_id = false;
    if let Some((table, end)) = insert_target(&rw.sql) {
        let rows = conn.client.query(GENERATED_KEY, &[&table])?;
        if let Some(row) = rows.first() {
            let key: String = row.get(0);
            text = format!("{}\nRETURNING {}", &rw.sql[..end], quote_ident(&key));
            returning_id = true;
        }
    }
    let stmt = conn.client.prepare(&text)?;
    let names: Arc<[String]> = stmt
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let p = Arc::new(Prepared {
        stmt,
        names,
        param_names: rw.names,
        returning_id,
        ddl: is_ddl(sql),
        select: first_keyword(sql) == "SELECT",
    });
    conn.keep(sql, p.clone());
    Ok(p)
}

/// The values for `p`'s placeholders, in `$n` order, checked against them.
fn binds<'a>(p: &Prepared, params: ParamsRef<'a>, sql: &str) -> Result<Vec<Bind<'a>>> {
    Ok(
        in_placeholder_order(&p.param_names, p.stmt.params().len(), params, sql)?
            .into_iter()
            .map(Bind)
            .collect(),
    )
}

/// Run one statement on `conn` (inside or outside a transaction).
pub(crate) fn exec_on(
    conn: &mut PooledConn<'_>,
    sql: &str,
    params: ParamsRef<'_>,
) -> Result<ExecResult, Fail> {
    let p = prepared(conn, sql)?;
    let binds = binds(&p, params, sql)?;
    let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
    let (affected, last) = if p.returning_id {
        let rows = conn.client.query(&p.stmt, &refs)?;
        let mut last = None;
        if let Some(row) = rows.last() {
            let raw: Raw<'_> = row.try_get(0)?;
            if let Some(b) = raw.bytes {
                last = with_value(&raw.ty, b, |v| match v {
                    ValueRef::Integer(i) => Some(i),
                    _ => None,
                })
                .ok()
                .flatten();
            }
        }
        (rows.len() as u64, last)
    } else {
        (conn.client.execute(&p.stmt, &refs)?, None)
    };
    if p.ddl {
        conn.forget_statements();
    }
    Ok(ExecResult {
        rows_affected: if p.select { 0 } else { affected },
        last_insert_id: last,
    })
}

/// Run a query on `conn`, writing its rows into `sink`.
pub(crate) fn query_on(
    conn: &mut PooledConn<'_>,
    sql: &str,
    params: ParamsRef<'_>,
    sink: &mut dyn RowSink,
) -> Result<(), Fail> {
    let p = prepared(conn, sql)?;
    for c in p.stmt.columns() {
        if !readable(c.type_()) {
            return Err(Fail::Done(Error::invalid(format!(
                "column '{0}' of `{1}` has type {2}, which has no Backplane value: cast it in the query, e.g. {0}::text",
                c.name(),
                snippet(sql),
                c.type_().name()
            ))));
        }
    }
    let binds = binds(&p, params, sql)?;
    let refs: Vec<&(dyn ToSql + Sync)> = binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect();
    // One round trip collects every row: fewer hand-offs to the client's
    // runtime than pulling rows one by one.
    let rows = conn.client.query(&p.stmt, &refs)?;
    sink.columns(&p.names);
    for row in &rows {
        sink.begin_row();
        for i in 0..p.names.len() {
            let raw: Raw<'_> = row.try_get(i)?;
            match raw.bytes {
                None => sink.value(ValueRef::Null),
                Some(b) => with_value(&raw.ty, b, |v| sink.value(v)).map_err(|e| {
                    Error::backend(format!(
                        "column '{}' of `{}` could not be read: {e}",
                        p.names[i],
                        snippet(sql)
                    ))
                })?,
            }
        }
    }
    Ok(())
}

/// Whether the failure is "cached plan must not change result type": the
/// table changed under a kept statement; preparing again fixes it.
pub(crate) fn stale_plan(f: &Fail) -> bool {
    matches!(f, Fail::Pg(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
        && e.to_string().contains("cached plan"))
}
