//! The relational capability on PostgreSQL.
//!
//! A call takes a connection from the pool, looks up the statement it
//! prepared for this SQL text before (or rewrites the placeholders and
//! prepares it now), binds the caller's values in place ([`Bind`]) and
//! streams the rows into the caller's [`RowSink`] as borrowed views.
//!
//! PostgreSQL has no "last insert id". For an `INSERT` into a table whose
//! primary key is one generated integer column (`GENERATED … AS IDENTITY`,
//! `serial`, `bigserial`), the plugin appends `RETURNING <key>` to the
//! statement it prepares (once per connection and statement), so
//! `last_insert_id` is the key of the last row inserted, as on SQLite.
//! Other statements report `None`.

use crate::dump;
use crate::pool::{map_error, Pool, PooledConn, Prepared};
use crate::sql::{first_keyword, insert_target, is_ddl, quote_ident, rewrite};
use crate::types::{readable, with_value, Bind, Raw};
use backplane_core::kit::text::snippet;
use backplane_core::relational::{
    migration_failed, migration_still_pending, plan_migrations, validate_migrations,
    MIGRATIONS_TABLE,
};
use backplane_core::{
    ColumnInfo, ColumnType, Error, ExecResult, ForeignKey, Health, IndexInfo, Migration,
    MigrationReport, Params, ParamsRef, Relational, Result, RowSink, Rows, RowsBuilder, Statement,
    TableSchema, ValueRef,
};
use postgres::error::SqlState;
use postgres::types::ToSql;
use std::sync::Arc;

/// A relational store: tables in one schema of one PostgreSQL database.
pub struct PgRelational {
    pool: Arc<Pool>,
}

/// Why a statement failed: the driver (mapped with the connection at hand)
/// or the plugin itself.
pub enum Fail {
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
    pub fn resolve(self, conn: &mut PooledConn<'_>, sql: &str) -> Error {
        match self {
            Fail::Pg(e) => conn.error(&e, sql),
            Fail::Done(e) => e,
        }
    }
}

impl PgRelational {
    /// A store on `pool` (already checked by [`crate::open_pool`]).
    pub fn new(pool: Arc<Pool>) -> Self {
        PgRelational { pool }
    }
}

const GENERATED_KEY: &str = "SELECT a.attname::text FROM pg_index i \
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
     WHERE i.indrelid = to_regclass($1) AND i.indisprimary AND i.indnatts = 1 \
       AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype) \
       AND (a.attidentity <> '' OR EXISTS (SELECT 1 FROM pg_attrdef d \
            WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum \
              AND pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'))";

/// The statement prepared on `conn` for `sql`, preparing it if needed.
pub fn prepared(conn: &mut PooledConn<'_>, sql: &str) -> Result<Arc<Prepared>, Fail> {
    if let Some(p) = conn.stmts.get(sql) {
        return Ok(p.clone());
    }
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
        positional: rw.positional,
        returning_id,
        ddl: is_ddl(sql),
        select: first_keyword(sql) == "SELECT",
    });
    conn.keep(sql, p.clone());
    Ok(p)
}

/// The values for `p`'s placeholders, in `$n` order, checked against them.
pub fn binds<'a>(p: &Prepared, params: ParamsRef<'a>, sql: &str) -> Result<Vec<Bind<'a>>> {
    let expected = p.stmt.params().len();
    if params.is_named() {
        if p.param_names.is_empty() {
            return Err(Error::invalid(format!(
                "`{}` has no :name placeholders but named values were given: pass Params::Positional, or write :name in the SQL",
                snippet(sql)
            )));
        }
        let mut out: Vec<Option<Bind<'a>>> = (0..expected).map(|_| None).collect();
        for i in 0..params.len() {
            let name = params.name(i).unwrap_or("");
            let idx = p
                .param_names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "`{}` has no parameter :{name}; it has {}: check the name",
                        snippet(sql),
                        p.param_names
                            .iter()
                            .map(|n| format!(":{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            if out[idx].is_some() {
                return Err(Error::invalid(format!(
                    "parameter :{name} is given twice for `{}`: give each name once",
                    snippet(sql)
                )));
            }
            out[idx] = Some(Bind(params.value(i)));
        }
        let missing: Vec<String> = out
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_none())
            .map(|(i, _)| format!(":{}", p.param_names.get(i).map_or("?", |s| s.as_str())))
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "`{}` has {expected} parameter(s) but {} value(s) were given; missing: {}",
                snippet(sql),
                params.len(),
                missing.join(", ")
            )));
        }
        return Ok(out.into_iter().flatten().collect());
    }
    if !p.param_names.is_empty() && !params.is_empty() {
        return Err(Error::invalid(format!(
            "`{}` uses :name placeholders but positional values were given: pass Params::Named",
            snippet(sql)
        )));
    }
    if params.len() != expected {
        return Err(Error::invalid(format!(
            "`{}` has {expected} parameter(s) but {} value(s) were given: pass one value per placeholder",
            snippet(sql),
            params.len()
        )));
    }
    Ok((0..params.len()).map(|i| Bind(params.value(i))).collect())
}

/// Run one statement on `conn` (inside or outside a transaction).
pub fn exec_on(
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
pub fn query_on(
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
fn stale_plan(f: &Fail) -> bool {
    matches!(f, Fail::Pg(e) if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED)
        && e.to_string().contains("cached plan"))
}

/// Run `f` in a transaction on `conn`: committed when it returns `Ok`,
/// rolled back when it fails.
pub fn in_transaction<T>(
    conn: &mut PooledConn<'_>,
    what: &str,
    f: impl FnOnce(&mut PooledConn<'_>) -> Result<T>,
) -> Result<T> {
    if let Err(e) = conn.client.batch_execute("BEGIN") {
        return Err(conn.error(&e, "BEGIN"));
    }
    // A panic must not give a connection with an open transaction back to
    // the pool.
    conn.set_in_transaction(true);
    let out = f(conn);
    match out {
        Ok(v) => match conn.client.batch_execute("COMMIT") {
            Ok(()) => {
                conn.set_in_transaction(false);
                Ok(v)
            }
            Err(e) => Err(conn
                .error(&e, "COMMIT")
                .context(format!("{what}: the commit failed; nothing was written"))),
        },
        Err(e) => {
            if conn.client.batch_execute("ROLLBACK").is_ok() {
                conn.set_in_transaction(false);
            }
            Err(e)
        }
    }
}

impl PgRelational {
    fn run<T>(
        &self,
        sql: &str,
        mut f: impl FnMut(&mut PooledConn<'_>) -> Result<T, Fail>,
    ) -> Result<T> {
        let mut conn = self.pool.get()?;
        let r = match f(&mut conn) {
            Err(fail) if stale_plan(&fail) => {
                conn.stmts.remove(sql);
                f(&mut conn)
            }
            other => other,
        };
        let r = r.map_err(|fail| fail.resolve(&mut conn, sql));
        if r.is_ok() && is_ddl(sql) {
            self.pool.schema_changed();
        }
        r
    }
}

impl Relational for PgRelational {
    fn execute(&self, sql: &str, params: &Params) -> Result<ExecResult> {
        self.execute_ref(sql, params.into())
    }

    fn execute_ref(&self, sql: &str, params: ParamsRef<'_>) -> Result<ExecResult> {
        self.run(sql, |conn| exec_on(conn, sql, params))
    }

    fn execute_many(&self, sql: &str, params: &[Params]) -> Result<ExecResult> {
        let sets: Vec<ParamsRef<'_>> = params.iter().map(ParamsRef::from).collect();
        self.execute_many_ref(sql, &sets)
    }

    fn execute_many_ref(&self, sql: &str, sets: &[ParamsRef<'_>]) -> Result<ExecResult> {
        if sets.is_empty() {
            return Ok(ExecResult::default());
        }
        let n = sets.len();
        let mut conn = self.pool.get()?;
        let r = in_transaction(&mut conn, "execute_many", |conn| {
            let mut total = ExecResult::default();
            for (i, p) in sets.iter().enumerate() {
                let r = exec_on(conn, sql, *p).map_err(|f| {
                    f.resolve(conn, sql).context(format!(
                        "parameter set {i} of {n} failed; the batch was rolled back, nothing was written"
                    ))
                })?;
                total.rows_affected += r.rows_affected;
                if r.last_insert_id.is_some() {
                    total.last_insert_id = r.last_insert_id;
                }
            }
            Ok(total)
        });
        if r.is_ok() && is_ddl(sql) {
            self.pool.schema_changed();
        }
        r
    }

    fn query(&self, sql: &str, params: &Params) -> Result<Rows> {
        let mut rows = RowsBuilder::new();
        self.query_into(sql, params.into(), &mut rows)?;
        Ok(rows.finish())
    }

    fn query_into(&self, sql: &str, params: ParamsRef<'_>, sink: &mut dyn RowSink) -> Result<()> {
        // A stale plan fails before any row is written, so a retry writes
        // the columns once.
        self.run(sql, |conn| query_on(conn, sql, params, sink))
    }

    fn transaction(&self, statements: &[Statement]) -> Result<Vec<ExecResult>> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        let n = statements.len();
        let mut conn = self.pool.get()?;
        let r = in_transaction(&mut conn, "transaction", |conn| {
            statements
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    exec_on(conn, &s.sql, (&s.params).into()).map_err(|f| {
                        f.resolve(conn, &s.sql).context(format!(
                            "statement {i} of {n} failed; the transaction was rolled back, nothing was written"
                        ))
                    })
                })
                .collect()
        });
        if r.is_ok() && statements.iter().any(|s| is_ddl(&s.sql)) {
            self.pool.schema_changed();
        }
        r
    }

    fn migrate(&self, migrations: &[Migration]) -> Result<MigrationReport> {
        // A malformed list is refused before the database is touched.
        validate_migrations(migrations)?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                version    BIGINT PRIMARY KEY,
                name       TEXT NOT NULL,
                checksum   TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )"
        );
        let select = format!("SELECT version, checksum FROM {MIGRATIONS_TABLE}");
        let mut conn = self.pool.get()?;
        let applied: std::collections::HashMap<i64, String> = (|| {
            conn.client.batch_execute(&create)?;
            let rows = conn.client.query(&select, &[])?;
            Ok::<_, postgres::Error>(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })()
        .map_err(|e| conn.error(&e, &select))?;
        let plan = plan_migrations(migrations, &applied)?;
        let mut report = MigrationReport::default();
        for (m, applied_before) in plan {
            if applied_before {
                report.skipped.push(m.version);
                continue;
            }
            let checksum = m.checksum();
            let done_before = report.applied.clone();
            let ran = in_transaction(&mut conn, "migrate", |conn| {
                let lock = format!("LOCK TABLE {MIGRATIONS_TABLE} IN SHARE ROW EXCLUSIVE MODE");
                let check = format!("SELECT checksum FROM {MIGRATIONS_TABLE} WHERE version = $1");
                let recorded: Option<String> = (|| {
                    conn.client.batch_execute(&lock)?;
                    let rows = conn.client.query(&check, &[&m.version])?;
                    Ok::<_, postgres::Error>(rows.first().map(|r| r.get(0)))
                })()
                .map_err(|e| conn.error(&e, &check))?;
                if !migration_still_pending(m, recorded)? {
                    return Ok(false);
                }
                if let Err(e) = conn.client.batch_execute(&m.sql) {
                    return Err(conn.error(&e, &m.sql));
                }
                let insert = format!(
                    "INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum) VALUES ($1, $2, $3)"
                );
                if let Err(e) = conn
                    .client
                    .execute(&insert, &[&m.version, &m.name, &checksum])
                {
                    return Err(conn.error(&e, &insert));
                }
                Ok(true)
            })
            .map_err(|e| e.context(migration_failed(m, &done_before)));
            self.pool.schema_changed();
            conn.forget_statements();
            if ran? {
                report.applied.push(m.version);
            } else {
                report.skipped.push(m.version);
            }
        }
        Ok(report)
    }

    fn tables(&self) -> Result<Vec<String>> {
        const SQL: &str = "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' \
               AND table_name::text NOT LIKE '\\_bp\\_%' \
             ORDER BY table_name COLLATE \"C\"";
        let mut conn = self.pool.get()?;
        let schema = self.pool.schema().to_string();
        match conn.client.query(SQL, &[&schema]) {
            Ok(rows) => Ok(rows.iter().map(|r| r.get(0)).collect()),
            Err(e) => Err(conn.error(&e, SQL)),
        }
    }

    fn describe(&self, table: &str) -> Result<TableSchema> {
        const FIND: &str = "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND (table_name = $2 OR table_name = lower($2)) \
             ORDER BY table_name = $2 DESC LIMIT 1";
        // Columns with their type, nullability, position in the primary key
        // (0: none) and whether the server numbers them.
        const COLS: &str = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
               t.typname::text, NOT a.attnotnull, \
               coalesce((SELECT k.o FROM unnest(pk.indkey::int2[]) WITH ORDINALITY k(n, o) WHERE k.n = a.attnum), 0)::int4, \
               a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid), '') LIKE 'nextval(%' \
             FROM pg_attribute a \
             JOIN pg_type t ON t.oid = a.atttypid \
             LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
             LEFT JOIN pg_index pk ON pk.indrelid = a.attrelid AND pk.indisprimary \
             WHERE a.attrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass \
               AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum";
        // Indexes other than the primary key, on plain columns, without a
        // condition.
        const INDEXES: &str = "SELECT c.relname::text, i.indisunique, \
               array(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o) \
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE i.indrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass \
               AND NOT i.indisprimary AND i.indpred IS NULL AND NOT (0 = ANY(i.indkey::int2[])) \
             ORDER BY c.relname";
        const FKS: &str = "SELECT f.relname::text, \
               array(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, o) \
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), \
               array(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, o) \
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o), \
               c.confdeltype::text \
             FROM pg_constraint c JOIN pg_class f ON f.oid = c.confrelid \
             WHERE c.conrelid = (quote_ident($1) || '.' || quote_ident($2))::regclass AND c.contype = 'f' \
             ORDER BY c.conname";
        let mut conn = self.pool.get()?;
        let schema = self.pool.schema().to_string();
        let found = match conn.client.query(FIND, &[&schema, &table]) {
            Ok(rows) => rows.first().map(|r| r.get::<_, String>(0)),
            Err(e) => return Err(conn.error(&e, FIND)),
        };
        let Some(name) = found else {
            return Err(Error::not_found(format!(
                "table '{table}' does not exist in schema '{schema}' of {}: see tables() for the ones that do",
                self.pool.shown()
            )));
        };
        let mut run = |sql: &'static str| match conn.client.query(sql, &[&schema, &name]) {
            Ok(rows) => Ok(rows),
            Err(e) => Err(conn.error(&e, sql)),
        };
        let mut keyed: Vec<(i32, String)> = Vec::new();
        let columns = run(COLS)?
            .iter()
            .map(|r| {
                let name: String = r.get(0);
                let key: i32 = r.get(4);
                if key > 0 {
                    keyed.push((key, name.clone()));
                }
                ColumnInfo {
                    column_type: neutral_type(r.get(2)),
                    name,
                    data_type: r.get(1),
                    nullable: r.get(3),
                    primary_key: key > 0,
                    auto_increment: r.get(5),
                }
            })
            .collect();
        keyed.sort();
        let indexes = run(INDEXES)?
            .iter()
            .map(|r| IndexInfo {
                name: r.get(0),
                unique: r.get(1),
                columns: r.get(2),
            })
            .collect();
        let foreign_keys = run(FKS)?
            .iter()
            .map(|r| ForeignKey {
                ref_table: r.get(0),
                columns: r.get(1),
                ref_columns: r.get(2),
                on_delete: match r.get::<_, String>(3).as_str() {
                    "c" => Some("CASCADE".into()),
                    "n" => Some("SET NULL".into()),
                    "d" => Some("SET DEFAULT".into()),
                    "r" => Some("RESTRICT".into()),
                    _ => None,
                },
            })
            .collect();
        Ok(TableSchema {
            name,
            columns,
            primary_key: keyed.into_iter().map(|(_, n)| n).collect(),
            indexes,
            foreign_keys,
        })
    }

    fn backup(&self, path: &str) -> Result<()> {
        let mut conn = self.pool.get()?;
        dump::backup(&mut conn, self.pool.schema(), path)
    }

    fn restore(&self, path: &str) -> Result<()> {
        let mut conn = self.pool.get()?;
        let r = dump::restore(&mut conn, self.pool.schema(), path);
        self.pool.schema_changed();
        conn.forget_statements();
        r
    }

    fn health(&self) -> Result<Health> {
        health(&self.pool, "")
    }
}

/// `postgresql 15.4 at host:5432/db, schema s, primary, pool 1/8 open`,
/// plus `extra`.
pub fn health(pool: &Pool, extra: &str) -> Result<Health> {
    const SQL: &str = "SELECT current_setting('server_version'), pg_is_in_recovery()";
    let mut conn = pool.get()?;
    let (version, standby): (String, bool) = match conn.client.query_one(SQL, &[]) {
        Ok(r) => (r.get(0), r.get(1)),
        Err(e) => return Err(conn.error(&e, SQL)),
    };
    drop(conn);
    let open = pool.usage().open;
    Ok(Health::ok(format!(
        "postgresql {version} at {}, schema {}, {}, pool {open}/{} open{extra}",
        pool.shown(),
        pool.schema(),
        if standby {
            "standby (read-only)"
        } else {
            "primary"
        },
        pool.settings().pool_size,
    )))
}

/// Map a driver error without a pooled connection at hand.
pub fn plain_error(pool: &Pool, e: &postgres::Error, sql: &str) -> Error {
    map_error(e, sql, pool.settings())
}

/// The neutral type of a PostgreSQL type (by its `pg_type` name), where one
/// carries every value exactly.
fn neutral_type(typname: &str) -> Option<ColumnType> {
    Some(match typname {
        "int2" | "int4" | "int8" => ColumnType::Integer,
        "float4" | "float8" => ColumnType::Real,
        "numeric" => ColumnType::Decimal,
        "text" | "varchar" | "bpchar" | "name" | "citext" => ColumnType::Text,
        "bytea" => ColumnType::Blob,
        "bool" => ColumnType::Bool,
        "json" | "jsonb" => ColumnType::Json,
        "timestamp" | "timestamptz" => ColumnType::Timestamp,
        _ => return None,
    })
}
