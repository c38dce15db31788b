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
pub(crate) const GENERATED_KEY: &str = "SELECT a.attname::text FROM pg_index i \
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
     WHERE i.indrelid = to_regclass($1) AND i.indisprimary AND i.indnatts = 1 \
       AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) \
       AND (a.attidentity <> '' OR EXISTS (SELECT 1 FROM pg_attrdef d \
            WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum \
              AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'))";

/// What preparing the caller's `sql` takes, before the server is asked:
/// its placeholders rewritten, and the table an `INSERT` goes into (whose
/// generated key, if it has one, the statement then returns).
pub(crate) struct Plan {
    rw: backplane_core::kit::sql::Rewritten,
    target: Option<(String, usize)>,
}

impl Plan {
    /// Plan `sql`; a statement controlling a transaction is refused.
    pub(crate) fn new(sql: &str) -> Result<Plan> {
        backplane_core::relational::refuse_transaction_control(sql)?;
        let rw = rewrite(sql)?;
        let target = insert_target(&rw.sql);
        Ok(Plan { rw, target })
    }

    /// The table whose generated key to look up ([`GENERATED_KEY`]).
    pub(crate) fn insert_table(&self) -> Option<&str> {
        self.target.as_ref().map(|(t, _)| t.as_str())
    }

    /// The text to prepare, given the insert table's generated key.
    pub(crate) fn text(&self, key: Option<&str>) -> String {
        match (&self.target, key) {
            (Some((_, end)), Some(key)) => {
                format!("{}\nRETURNING {}", &self.rw.sql[..*end], quote_ident(key))
            }
            _ => self.rw.sql.clone(),
        }
    }

    /// What the plugin keeps for `sql`, prepared as `stmt`.
    pub(crate) fn prepared(self, sql: &str, stmt: Statement, returning_id: bool) -> Arc<Prepared> {
        let names: Arc<[String]> = stmt
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        Arc::new(Prepared {
            stmt,
            names,
            param_names: self.rw.names,
            returning_id,
            ddl: is_ddl(sql),
            select: first_keyword(sql) == "SELECT",
        })
    }
}

/// The generated key's name from [`GENERATED_KEY`]'s rows.
pub(crate) fn generated_key(rows: &[postgres::Row]) -> Option<String> {
    rows.first().map(|r| r.get(0))
}

/// The statement prepared on `conn` for `sql`, preparing it if needed.
fn prepared(conn: &mut PooledConn<'_>, sql: &str) -> Result<Arc<Prepared>, Fail> {
    if let Some(p) = conn.stmts.get(sql) {
        return Ok(p.clone());
    }
    let plan = Plan::new(sql)?;
    let key = match plan.insert_table() {
        Some(table) => generated_key(&conn.client.query(GENERATED_KEY, &[&table])?),
        None => None,
    };
    let stmt = conn.client.prepare(&plan.text(key.as_deref()))?;
    let p = plan.prepared(sql, stmt, key.is_some());
    conn.keep(sql, p.clone());
    Ok(p)
}

/// The values for `p`'s placeholders, in `$n` order, checked against them.
pub(crate) fn binds<'a>(p: &Prepared, params: ParamsRef<'a>, sql: &str) -> Result<Vec<Bind<'a>>> {
    Ok(
        in_placeholder_order(&p.param_names, p.stmt.params().len(), params, sql)?
            .into_iter()
            .map(Bind)
            .collect(),
    )
}

/// What running a statement gave: its rows (a statement with `RETURNING`)
/// or the number of rows it changed.
pub(crate) enum Ran {
    Rows(Vec<postgres::Row>),
    Count(u64),
}

/// The statement's [`ExecResult`] from what running it gave.
pub(crate) fn exec_result(p: &Prepared, ran: Ran) -> Result<ExecResult, Fail> {
    let (affected, last) = match ran {
        Ran::Rows(rows) => {
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
        }
        Ran::Count(n) => (n, None),
    };
    Ok(ExecResult {
        rows_affected: if p.select { 0 } else { affected },
        last_insert_id: last,
    })
}

/// The parameters of a call as the driver takes them.
pub(crate) fn refs<'b>(binds: &'b [Bind<'_>]) -> Vec<&'b (dyn ToSql + Sync)> {
    binds.iter().map(|b| b as &(dyn ToSql + Sync)).collect()
}

/// Run one statement on `conn` (inside or outside a transaction).
pub(crate) fn exec_on(
    conn: &mut PooledConn<'_>,
    sql: &str,
    params: ParamsRef<'_>,
) -> Result<ExecResult, Fail> {
    let p = prepared(conn, sql)?;
    let binds = binds(&p, params, sql)?;
    let refs = refs(&binds);
    let ran = if p.returning_id {
        Ran::Rows(conn.client.query(&p.stmt, &refs)?)
    } else {
        Ran::Count(conn.client.execute(&p.stmt, &refs)?)
    };
    if p.ddl {
        conn.forget_statements();
    }
    exec_result(&p, ran)
}

/// Refuse a query with a column that has no Backplane value.
pub(crate) fn check_readable(p: &Prepared, sql: &str) -> Result<(), Fail> {
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
    Ok(())
}

/// Write a query's rows into `sink`.
pub(crate) fn write_rows(
    p: &Prepared,
    rows: &[postgres::Row],
    sql: &str,
    sink: &mut dyn RowSink,
) -> Result<(), Fail> {
    sink.columns(&p.names);
    for row in rows {
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

/// Run a query on `conn`, writing its rows into `sink`.
pub(crate) fn query_on(
    conn: &mut PooledConn<'_>,
    sql: &str,
    params: ParamsRef<'_>,
    sink: &mut dyn RowSink,
) -> Result<(), Fail> {
    let p = prepared(conn, sql)?;
    check_readable(&p, sql)?;
    let binds = binds(&p, params, sql)?;
    // One round trip collects every row: fewer hand-offs to the client's
    // runtime than pulling rows one by one.
    let rows = conn.client.query(&p.stmt, &refs(&binds))?;
    write_rows(&p, &rows, sql, sink)
}

/// Whether the failure is "cached plan must not change result type": the
/// table changed under a kept statement; preparing again fixes it.
pub(crate) fn stale_plan(f: &Fail) -> bool {
    matches!(f, Fail::Pg(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
        && e.to_string().contains("cached plan"))
}
