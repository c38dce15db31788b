//! The relational capability on PostgreSQL: [`PgRelational`].
//!
//! A call takes a connection from the pool and runs the caller's statement
//! through [`crate::statement`]: kept prepared per connection, the caller's
//! values bound in place, the rows streamed into the caller's [`RowSink`]
//! as borrowed views. A statement that may change the schema makes every
//! connection forget its kept statements.
//!
//! PostgreSQL has no "last insert id". For an `INSERT` into a table whose
//! primary key is one generated integer column (`GENERATED … AS IDENTITY`,
//! `serial`, `bigserial`), the plugin appends `RETURNING <key>` to the
//! statement it prepares (once per connection and statement), so
//! `last_insert_id` is the key of the last row inserted, as on SQLite.
//! Other statements report `None`.
//!
//! `migrate` keeps its record in `_backplane_migrations`; `tables` and
//! `describe` read the catalog; `backup` and `restore` are in
//! [`crate::backup`] and [`crate::restore`].

use crate::client::{in_transaction, Pool, PooledConn};
use crate::statement::{exec_on, query_on, stale_plan, Fail};
use crate::{backup, restore};
use backplane_core::kit::sql::is_ddl;
use backplane_core::relational::{
    apply_migrations, migration_still_pending, validate_migrations, MIGRATIONS_TABLE,
};
use backplane_core::{
    AsyncRelational, ColumnInfo, ColumnType, Error, ExecResult, ForeignKey, Health, IndexInfo,
    Migration, MigrationReport, Params, ParamsRef, Relational, Result, RowSink, Rows, RowsBuilder,
    Statement, TableSchema,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A relational store: tables in one schema of one PostgreSQL database.
pub(crate) struct PgRelational {
    pool: Arc<Pool>,
    /// `execute` and `query` without blocking ([`crate::started`]).
    started: crate::started::Started,
    snapshots: crate::port::Snapshots,
    copy_types: crate::port::CopyTypes,
}

impl PgRelational {
    /// A store on `pool` (already checked by [`Pool::open`]).
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        PgRelational {
            started: crate::started::Started::new(pool.clone()),
            pool,
            snapshots: Default::default(),
            copy_types: Default::default(),
        }
    }

    /// Run `f` on a connection; a statement whose kept plan went stale
    /// (the table changed under it) is prepared again and run once more.
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
    fn as_async(&self) -> Option<&dyn AsyncRelational> {
        Some(&self.started)
    }

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
        let mut conn = self.pool.get()?;
        let r = in_transaction(&mut conn, "execute_many", |conn| {
            backplane_core::relational::each_set(sets, |p| {
                exec_on(conn, sql, p).map_err(|f| f.resolve(conn, sql))
            })
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
                        f.resolve(conn, &s.sql)
                            .context(backplane_core::relational::statement_failed(i, n))
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
        let applied: HashMap<i64, String> = (|| {
            conn.client.batch_execute(&create)?;
            let rows = conn.client.query(&select, &[])?;
            Ok::<_, postgres::Error>(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })()
        .map_err(|e| conn.error(&e, &select))?;
        apply_migrations(migrations, &applied, |m, checksum| {
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
                conn.batch(&m.sql)?;
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
            });
            self.pool.schema_changed();
            conn.forget_statements();
            ran
        })
    }

    fn tables(&self) -> Result<Vec<String>> {
        const SQL: &str = "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = $1 AND table_type = 'BASE TABLE' \
               AND table_name::text NOT LIKE '\\_bp\\_%' \
             ORDER BY table_name COLLATE \"C\"";
        let mut conn = self.pool.get()?;
        let schema = self.pool.schema().to_string();
        Ok(conn
            .query_once(SQL, &[&schema])?
            .iter()
            .map(|r| r.get(0))
            .collect())
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
        let found = conn
            .query_once(FIND, &[&schema, &table])?
            .first()
            .map(|r| r.get::<_, String>(0));
        let Some(name) = found else {
            return Err(Error::not_found(format!(
                "table '{table}' does not exist in schema '{schema}' of {}: see tables() for the ones that do",
                self.pool.shown()
            )));
        };
        let mut run = |sql: &str| conn.query_once(sql, &[&schema, &name]);
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
        backup::backup(&mut conn, self.pool.schema(), path)
    }

    fn restore(&self, path: &str) -> Result<()> {
        let mut conn = self.pool.get()?;
        let r = restore::restore(&mut conn, self.pool.schema(), path);
        self.pool.schema_changed();
        conn.forget_statements();
        r
    }

    fn export_snapshot(&self) -> Result<Option<String>> {
        self.snapshots.open(&self.pool).map(Some)
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
        let schema = match snapshot {
            Some(id) => self.snapshots.schema(id, table, || self.describe(table))?,
            None => self.describe(table)?,
        };
        crate::port::export_rows_into(
            &self.pool,
            &self.snapshots,
            &schema,
            snapshot,
            cursor,
            limit,
            sink,
        )
    }

    fn import_begin(&self, tables: &[TableSchema]) -> Result<()> {
        let statements: Vec<Statement> = tables
            .iter()
            .flat_map(crate::port::create_statements)
            .map(|sql| Statement::new(sql, ()))
            .collect();
        self.transaction(&statements).map(|_| ())
    }

    fn import_rows(
        &self,
        table: &str,
        columns: &[String],
        rows: &[Vec<backplane_core::Value>],
        overwrite: bool,
    ) -> Result<u64> {
        let params: Vec<Params> = rows.iter().map(|r| Params::Positional(r.clone())).collect();
        let refs: Vec<ParamsRef<'_>> = params.iter().map(ParamsRef::from).collect();
        self.import_rows_ref(table, columns, &refs, overwrite)
    }

    fn import_rows_ref(
        &self,
        table: &str,
        columns: &[String],
        rows: &[ParamsRef<'_>],
        overwrite: bool,
    ) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        if !overwrite && crate::port::copy_rows(&self.pool, &self.copy_types, table, columns, rows)?
        {
            return Ok(rows.len() as u64);
        }
        // A row that exists already, or a value without a binary form: one
        // INSERT … ON CONFLICT per row instead.
        let key = if overwrite {
            self.describe(table)?.primary_key
        } else {
            Vec::new()
        };
        let sql = backplane_core::port::insert_statement(&key, table, columns, overwrite);
        self.execute_many_ref(&sql, rows)?;
        Ok(rows.len() as u64)
    }

    fn import_end(&self, tables: &[TableSchema]) -> Result<()> {
        crate::port::finish_tables(&self.pool, tables)
    }

    fn health(&self) -> Result<Health> {
        self.pool.health("")
    }
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
