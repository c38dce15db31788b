//! The relational capability on one DuckDB database.
//!
//! One connection per store, behind a mutex (DuckDB runs each query on its
//! own thread pool, so one connection does not limit a query's speed).
//! A statement is prepared once and kept by the connection's statement
//! cache; what the plugin learned about it (its placeholders rewritten to
//! `$n` by the kit's PostgreSQL-rules scanner, which DuckDB's parser
//! shares; whether it inserts into a table with a generated key) is kept
//! beside it. Any schema change forgets both.
//!
//! `last_insert_id`: DuckDB has no row ids. An `INSERT` into a table whose
//! key column takes its default from a sequence (`DEFAULT nextval('…')`,
//! DuckDB's auto-numbering) gets `RETURNING <key>` appended, and the last
//! key returned is the id, as on SQLite and PostgreSQL.
//!
//! `execute_many` of a plain `INSERT INTO t (a, b) VALUES (?, ?)` into a
//! table without a generated key goes through DuckDB's appender (the bulk
//! loading path); anything else runs the statement once per set. Either
//! way the batch is one transaction.

use crate::error::sql_error;
use crate::types::{with_value, Bind};
use backplane_core::kit::sql::{
    first_keyword, in_placeholder_order, insert_target, is_ddl, quote_ident, rewrite,
};
use backplane_core::kit::time::now_ms;
use backplane_core::relational::{
    apply_migrations, each_set, migration_still_pending, refuse_transaction_control, set_failed,
    statement_failed, validate_migrations, MIGRATIONS_TABLE,
};
use backplane_core::{
    ExecResult, Health, Migration, MigrationReport, Params, ParamsRef, Relational, Result, RowSink,
    Rows, RowsBuilder, Statement, TableSchema,
};
use duckdb::Connection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// A relational store on one DuckDB database.
pub struct DuckRelational {
    inner: Mutex<Inner>,
    /// Open export snapshots: each a store on a connection of its own
    /// holding a read transaction (DuckDB's MVCC keeps what it sees fixed).
    snapshots: Mutex<HashMap<String, Arc<DuckRelational>>>,
    /// The database file (`None`: in memory), for messages.
    pub(crate) file: Option<PathBuf>,
}

/// The connection and what the plugin knows about its statements.
pub(crate) struct Inner {
    pub(crate) conn: Connection,
    plans: HashMap<String, Arc<Plan>>,
    /// Each table's generated key column (or none), as looked up by
    /// `generated_key`: a catalog query, too slow to repeat per batch.
    keys: HashMap<String, Option<String>>,
}

/// What the plugin learned about one statement of the caller's.
struct Plan {
    /// The SQL DuckDB prepares: `$n` placeholders, perhaps `RETURNING`.
    text: String,
    /// For `:name` placeholders, the name of each `$n` in order.
    names: Vec<String>,
    /// `RETURNING <key>` was appended: the rows returned are the ids.
    returning_id: bool,
    /// The statement may change the schema.
    ddl: bool,
    /// A `SELECT` (which affects no rows).
    select: bool,
    /// Result column names, and which columns are `JSON`, once known.
    columns: OnceLock<(Arc<[String]>, Vec<bool>)>,
}

/// Statements kept at most; past that the plans start afresh.
const MAX_PLANS: usize = 256;

/// The generated key column of a table: an integer column whose default is
/// a sequence's next value.
const GENERATED_KEY: &str = "SELECT column_name FROM duckdb_columns() \
     WHERE database_name = current_database() AND schema_name = current_schema() \
       AND lower(table_name) = lower($1) AND column_default LIKE 'nextval(%' \
       AND data_type IN ('TINYINT', 'SMALLINT', 'INTEGER', 'BIGINT', 'HUGEINT') \
     ORDER BY column_index LIMIT 1";

impl DuckRelational {
    pub(crate) fn new(conn: Connection, file: Option<PathBuf>) -> Self {
        DuckRelational {
            inner: Mutex::new(Inner {
                conn,
                plans: HashMap::new(),
                keys: HashMap::new(),
            }),
            snapshots: Mutex::new(HashMap::new()),
            file,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the database lives, for messages.
    pub(crate) fn shown(&self) -> String {
        self.file
            .as_ref()
            .map_or(":memory:".to_string(), |p| p.display().to_string())
    }
}

impl Inner {
    /// Forget what was learned about statements (the schema changed).
    pub(crate) fn forget(&mut self) {
        self.plans.clear();
        self.keys.clear();
        self.conn.flush_prepared_statement_cache();
    }

    fn plan(&mut self, sql: &str) -> Result<Arc<Plan>> {
        if let Some(p) = self.plans.get(sql) {
            return Ok(p.clone());
        }
        refuse_transaction_control(sql)?;
        let rw = rewrite(sql)?;
        let mut text = rw.sql.clone();
        let mut returning_id = false;
        if let Some((table, end)) = insert_target(&rw.sql) {
            if let Some(key) = self.generated_key(&table)? {
                text = format!("{}\nRETURNING {}", &rw.sql[..end], quote_ident(&key));
                returning_id = true;
            }
        }
        let plan = Arc::new(Plan {
            text,
            names: rw.names,
            returning_id,
            ddl: is_ddl(sql),
            select: first_keyword(sql) == "SELECT",
            columns: OnceLock::new(),
        });
        if self.plans.len() >= MAX_PLANS {
            self.plans.clear();
        }
        self.plans.insert(sql.to_string(), plan.clone());
        Ok(plan)
    }

    /// The generated key column of `table` (as written in an INSERT).
    fn generated_key(&mut self, table: &str) -> Result<Option<String>> {
        if let Some(k) = self.keys.get(table) {
            return Ok(k.clone());
        }
        let k = generated_key(&self.conn, table)?;
        self.keys.insert(table.to_string(), k.clone());
        Ok(k)
    }

    /// Run one statement (inside or outside a transaction).
    pub(crate) fn exec(&mut self, sql: &str, params: ParamsRef<'_>) -> Result<ExecResult> {
        let plan = self.plan(sql)?;
        let result = {
            let mut stmt = self
                .conn
                .prepare_cached(&plan.text)
                .map_err(|e| sql_error(e, sql))?;
            bind(&mut stmt, &plan, params, sql)?;
            let changed = stmt.raw_execute().map_err(|e| sql_error(e, sql))?;
            if plan.returning_id {
                let mut rows = stmt.raw_query();
                let (mut n, mut last) = (0u64, None);
                while let Some(row) = rows.next().map_err(|e| sql_error(e, sql))? {
                    n += 1;
                    last = row.get::<_, i64>(0).ok();
                }
                ExecResult {
                    rows_affected: n,
                    last_insert_id: last,
                }
            } else {
                ExecResult {
                    rows_affected: if plan.select { 0 } else { changed as u64 },
                    last_insert_id: None,
                }
            }
        };
        if plan.ddl {
            self.forget();
        }
        Ok(result)
    }

    /// Run a query, writing its rows into `sink`.
    fn query(&mut self, sql: &str, params: ParamsRef<'_>, sink: &mut dyn RowSink) -> Result<()> {
        let plan = self.plan(sql)?;
        let mut stmt = self
            .conn
            .prepare_cached(&plan.text)
            .map_err(|e| sql_error(e, sql))?;
        bind(&mut stmt, &plan, params, sql)?;
        stmt.raw_execute().map_err(|e| sql_error(e, sql))?;
        let (names, json) = plan.columns.get_or_init(|| {
            let n = stmt.column_count();
            let names: Arc<[String]> = stmt.column_names().into();
            let json = (0..n)
                .map(|i| stmt.column_logical_type(i).get_alias().as_deref() == Some("JSON"))
                .collect();
            (names, json)
        });
        sink.columns(names);
        let mut rows = stmt.raw_query();
        while let Some(row) = rows.next().map_err(|e| sql_error(e, sql))? {
            sink.begin_row();
            for (i, json) in json.iter().enumerate() {
                let v = row.get_ref(i).map_err(|e| sql_error(e, sql))?;
                with_value(v, *json, |v| sink.value(v));
            }
        }
        drop(rows);
        drop(stmt);
        if plan.ddl {
            self.forget();
        }
        Ok(())
    }

    /// Run `f` in a transaction: committed when it returns `Ok`, rolled
    /// back otherwise.
    pub(crate) fn in_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Inner) -> Result<T>,
    ) -> Result<T> {
        self.conn
            .execute_batch("BEGIN TRANSACTION")
            .map_err(|e| sql_error(e, "BEGIN TRANSACTION"))?;
        match f(self) {
            Ok(v) => match self.conn.execute_batch("COMMIT") {
                Ok(()) => Ok(v),
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    self.forget();
                    Err(sql_error(e, "COMMIT"))
                }
            },
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                // A rolled-back schema change leaves plans of a schema that
                // no longer exists.
                self.forget();
                Err(e)
            }
        }
    }

    /// A whole script (several statements), as migrations give it.
    pub(crate) fn batch(&mut self, sql: &str) -> Result<()> {
        self.conn
            .execute_batch(sql)
            .map_err(|e| sql_error(e, sql))?;
        self.forget();
        Ok(())
    }

    /// The rows of an internal query with positional text parameters.
    pub(crate) fn rows(
        &mut self,
        sql: &str,
        params: &[&str],
    ) -> Result<Vec<Vec<backplane_core::Value>>> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| sql_error(e, sql))?;
        for (i, p) in params.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, *p)
                .map_err(|e| sql_error(e, sql))?;
        }
        stmt.raw_execute().map_err(|e| sql_error(e, sql))?;
        let n = stmt.column_count();
        let mut rows = stmt.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| sql_error(e, sql))? {
            let mut r = Vec::with_capacity(n);
            for i in 0..n {
                r.push(crate::types::to_value(
                    row.get_ref(i).map_err(|e| sql_error(e, sql))?,
                    false,
                ));
            }
            out.push(r);
        }
        Ok(out)
    }

    /// `execute_many` through DuckDB's appender, when the statement is a
    /// plain insert it can serve; `None` when it is not.
    fn append(&mut self, sql: &str, sets: &[ParamsRef<'_>]) -> Result<Option<ExecResult>> {
        let Some(target) = plain_insert(sql) else {
            return Ok(None);
        };
        if sets.iter().any(|p| p.is_named() || p.len() != target.marks)
            || self.generated_key(&target.table)?.is_some()
        {
            return Ok(None);
        }
        let cols: Vec<&str> = target.columns.iter().map(String::as_str).collect();
        let mut app = if cols.is_empty() {
            self.conn.appender(&target.table)
        } else {
            self.conn.appender_with_columns(&target.table, &cols)
        }
        .map_err(|e| sql_error(e, sql))?;
        let n = sets.len();
        for (i, p) in sets.iter().enumerate() {
            app.append_row(duckdb::appender_params_from_iter(
                (0..p.len()).map(|j| Bind(p.value(j))),
            ))
            .map_err(|e| sql_error(e, sql).context(set_failed(i, n)))?;
        }
        app.flush().map_err(|e| {
            sql_error(e, sql).context("the batch was rolled back, nothing was written".to_string())
        })?;
        Ok(Some(ExecResult {
            rows_affected: n as u64,
            last_insert_id: None,
        }))
    }
}

/// Bind `params` to `stmt` in `$n` order.
fn bind(
    stmt: &mut duckdb::Statement<'_>,
    plan: &Plan,
    params: ParamsRef<'_>,
    sql: &str,
) -> Result<()> {
    let values = in_placeholder_order(&plan.names, stmt.parameter_count(), params, sql)?;
    for (i, v) in values.into_iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, Bind(v))
            .map_err(|e| sql_error(e, sql))?;
    }
    Ok(())
}

/// The generated key column of `table` (as written in an INSERT), if any.
fn generated_key(conn: &Connection, table: &str) -> Result<Option<String>> {
    let Some(name) = bare_table(table) else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(GENERATED_KEY)
        .map_err(|e| sql_error(e, GENERATED_KEY))?;
    let mut rows = stmt
        .query([name.as_str()])
        .map_err(|e| sql_error(e, GENERATED_KEY))?;
    Ok(
        match rows.next().map_err(|e| sql_error(e, GENERATED_KEY))? {
            Some(r) => Some(r.get(0).map_err(|e| sql_error(e, GENERATED_KEY))?),
            None => None,
        },
    )
}

/// A table name as written (`items`, `"My T"`) without its quotes; `None`
/// for a qualified name (`s.items`), which the plugin leaves alone.
fn bare_table(written: &str) -> Option<String> {
    let w = written.trim();
    if let Some(inner) = w.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        return (!inner.contains("\".\"")).then(|| inner.replace("\"\"", "\""));
    }
    (!w.contains('.')).then(|| w.to_string())
}

/// A plain `INSERT INTO t [(a, b)] VALUES (?, ?)`.
struct PlainInsert {
    table: String,
    columns: Vec<String>,
    marks: usize,
}

/// Whether `sql` is an insert of one row of `?` placeholders and nothing
/// else (no `ON CONFLICT`, no `RETURNING`, no expressions), which the
/// appender can serve.
fn plain_insert(sql: &str) -> Option<PlainInsert> {
    let mut t = Tokens(sql.trim().trim_end_matches(';').trim_end());
    t.keyword("INSERT")?;
    t.keyword("INTO")?;
    let table = t.ident()?;
    let mut columns = Vec::new();
    if t.punct('(') {
        loop {
            columns.push(t.ident()?);
            if t.punct(')') {
                break;
            }
            if !t.punct(',') {
                return None;
            }
        }
    }
    t.keyword("VALUES")?;
    if !t.punct('(') {
        return None;
    }
    let mut marks = 0;
    loop {
        if !t.punct('?') {
            return None;
        }
        marks += 1;
        if t.punct(')') {
            break;
        }
        if !t.punct(',') {
            return None;
        }
    }
    if !t.0.trim().is_empty() || (!columns.is_empty() && columns.len() != marks) {
        return None;
    }
    Some(PlainInsert {
        table,
        columns,
        marks,
    })
}

/// A tiny cursor over SQL text for [`plain_insert`].
struct Tokens<'a>(&'a str);

impl Tokens<'_> {
    fn keyword(&mut self, word: &str) -> Option<()> {
        let s = self.0.trim_start();
        let head = s.get(..word.len())?;
        let after = s[word.len()..].chars().next();
        if head.eq_ignore_ascii_case(word) && after.is_none_or(|c| !c.is_alphanumeric() && c != '_')
        {
            self.0 = &s[word.len()..];
            Some(())
        } else {
            None
        }
    }
    fn punct(&mut self, c: char) -> bool {
        let s = self.0.trim_start();
        if let Some(rest) = s.strip_prefix(c) {
            self.0 = rest;
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Option<String> {
        let s = self.0.trim_start();
        if let Some(rest) = s.strip_prefix('"') {
            let end = rest.find('"')?;
            if rest[end + 1..].starts_with('"') {
                return None; // an escaped quote: leave it to the general path
            }
            self.0 = &rest[end + 1..];
            return Some(rest[..end].to_string());
        }
        let len = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        if len == 0 || s.as_bytes()[0].is_ascii_digit() {
            return None;
        }
        self.0 = &s[len..];
        Some(s[..len].to_string())
    }
}

const CREATE_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS _backplane_migrations (
    version    BIGINT PRIMARY KEY,
    name       VARCHAR NOT NULL,
    checksum   VARCHAR NOT NULL,
    applied_at BIGINT NOT NULL
)";

impl Relational for DuckRelational {
    fn execute(&self, sql: &str, params: &Params) -> Result<ExecResult> {
        self.execute_ref(sql, params.into())
    }

    fn execute_ref(&self, sql: &str, params: ParamsRef<'_>) -> Result<ExecResult> {
        self.lock().exec(sql, params)
    }

    fn execute_many(&self, sql: &str, params: &[Params]) -> Result<ExecResult> {
        let sets: Vec<ParamsRef<'_>> = params.iter().map(ParamsRef::from).collect();
        self.execute_many_ref(sql, &sets)
    }

    fn execute_many_ref(&self, sql: &str, sets: &[ParamsRef<'_>]) -> Result<ExecResult> {
        refuse_transaction_control(sql)?;
        if sets.is_empty() {
            return Ok(ExecResult::default());
        }
        self.lock().in_transaction(|inner| {
            if let Some(r) = inner.append(sql, sets)? {
                return Ok(r);
            }
            each_set(sets, |p| inner.exec(sql, p))
        })
    }

    fn query(&self, sql: &str, params: &Params) -> Result<Rows> {
        let mut rows = RowsBuilder::new();
        self.query_into(sql, params.into(), &mut rows)?;
        Ok(rows.finish())
    }

    fn query_into(&self, sql: &str, params: ParamsRef<'_>, sink: &mut dyn RowSink) -> Result<()> {
        self.lock().query(sql, params, sink)
    }

    fn transaction(&self, statements: &[Statement]) -> Result<Vec<ExecResult>> {
        if statements.is_empty() {
            return Ok(Vec::new());
        }
        for s in statements {
            refuse_transaction_control(&s.sql)?;
        }
        let n = statements.len();
        self.lock().in_transaction(|inner| {
            statements
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    inner
                        .exec(&s.sql, (&s.params).into())
                        .map_err(|e| e.context(statement_failed(i, n)))
                })
                .collect()
        })
    }

    fn migrate(&self, migrations: &[Migration]) -> Result<MigrationReport> {
        validate_migrations(migrations)?;
        let mut inner = self.lock();
        inner.batch(CREATE_MIGRATIONS)?;
        let select = format!("SELECT version, checksum FROM {MIGRATIONS_TABLE}");
        let applied: HashMap<i64, String> = inner
            .rows(&select, &[])?
            .into_iter()
            .filter_map(|r| match (&r[0], &r[1]) {
                (backplane_core::Value::Integer(v), backplane_core::Value::Text(c)) => {
                    Some((*v, c.clone()))
                }
                _ => None,
            })
            .collect();
        apply_migrations(migrations, &applied, |m, checksum| {
            inner.in_transaction(|tx| {
                let version = m.version.to_string();
                let recorded = tx
                    .rows(
                        "SELECT checksum FROM _backplane_migrations WHERE version = CAST($1 AS BIGINT)",
                        &[&version],
                    )?
                    .into_iter()
                    .next()
                    .and_then(|r| r[0].as_str().map(str::to_string));
                if !migration_still_pending(m, recorded)? {
                    return Ok(false);
                }
                tx.batch(&m.sql)?;
                tx.exec(
                    "INSERT INTO _backplane_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
                    (&Params::Positional(vec![
                        m.version.into(),
                        m.name.as_str().into(),
                        checksum.into(),
                        now_ms().into(),
                    ]))
                        .into(),
                )?;
                Ok(true)
            })
        })
    }

    fn tables(&self) -> Result<Vec<String>> {
        crate::schema::tables(&mut self.lock())
    }

    fn describe(&self, table: &str) -> Result<TableSchema> {
        crate::schema::describe(&mut self.lock(), table)
    }

    fn export_snapshot(&self) -> Result<Option<String>> {
        let conn = self
            .lock()
            .conn
            .try_clone()
            .map_err(|e| sql_error(e, "a connection for the export"))?;
        let snap = DuckRelational::new(conn, self.file.clone());
        {
            let inner = snap.lock();
            inner
                .conn
                .execute_batch("BEGIN TRANSACTION; SELECT count(*) FROM duckdb_tables()")
                .map_err(|e| sql_error(e, "BEGIN TRANSACTION"))?;
        }
        let id = backplane_core::kit::id::new_id("snap");
        self.snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), Arc::new(snap));
        Ok(Some(id))
    }

    fn release_snapshot(&self, snapshot: &str) -> Result<()> {
        let snap = self
            .snapshots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(snapshot);
        if let Some(s) = snap {
            let _ = s.lock().conn.execute_batch("ROLLBACK");
        }
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
        match snapshot {
            None => backplane_core::port::export_rows_into(self, table, cursor, limit, sink),
            Some(id) => {
                let snap = self
                    .snapshots
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(id)
                    .cloned()
                    .ok_or_else(|| {
                        backplane_core::Error::not_found(format!(
                            "export snapshot '{id}' is not open: it was released, or the store was reopened; start the export again"
                        ))
                    })?;
                backplane_core::port::export_rows_into(&*snap, table, cursor, limit, sink)
            }
        }
    }

    fn import_begin(&self, tables: &[TableSchema]) -> Result<()> {
        let statements = tables
            .iter()
            .map(crate::schema::create_statements)
            .collect::<Result<Vec<_>>>()?;
        self.lock().in_transaction(|inner| {
            for sql in statements.iter().flatten() {
                inner.batch(sql)?;
            }
            Ok(())
        })
    }

    fn import_end(&self, tables: &[TableSchema]) -> Result<()> {
        let mut inner = self.lock();
        for t in tables {
            crate::schema::advance_sequence(&mut inner, t)?;
        }
        Ok(())
    }

    fn backup(&self, path: &str) -> Result<()> {
        crate::backup::backup(self, path)
    }

    fn restore(&self, path: &str) -> Result<()> {
        crate::backup::restore(self, path)
    }

    fn health(&self) -> Result<Health> {
        let mut inner = self.lock();
        let v = inner.rows("SELECT version()", &[])?;
        let version = v
            .first()
            .and_then(|r| r[0].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Health::ok(format!("DuckDB {version}, {}", self.shown())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_inserts_are_recognised() {
        let p = plain_insert("INSERT INTO items (name, price) VALUES (?, ?);").unwrap();
        assert_eq!(p.table, "items");
        assert_eq!(p.columns, ["name", "price"]);
        assert_eq!(p.marks, 2);
        let p = plain_insert("insert into \"My T\" values (?,?,?)").unwrap();
        assert_eq!(p.table, "My T");
        assert!(p.columns.is_empty());
        for not in [
            "INSERT INTO t (a) VALUES (?) ON CONFLICT DO NOTHING",
            "INSERT INTO t (a) VALUES (? + 1)",
            "INSERT INTO t (a, b) VALUES (?)",
            "INSERT INTO s.t (a) VALUES (?)",
            "INSERT INTO t (a) VALUES (:a)",
            "INSERT INTO t SELECT 1",
            "UPDATE t SET a = ?",
        ] {
            assert!(plain_insert(not).is_none(), "{not}");
        }
    }

    #[test]
    fn table_names_lose_their_quotes() {
        assert_eq!(bare_table("items").as_deref(), Some("items"));
        assert_eq!(bare_table("\"My \"\"T\"").as_deref(), Some("My \"T"));
        assert_eq!(bare_table("s.items"), None);
    }
}
