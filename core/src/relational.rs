//! The relational capability: SQL with parameters, transactions, migrations,
//! schema introspection and backup.

use crate::rows::{ParamsRef, RowSink};
use crate::Page;
use crate::{Error, Health, Result, Value};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Parameters bound to a statement.
///
/// Positional parameters fill `?` (or `?1`, `?2`) in order; named parameters
/// fill `:name`. Every backend accepts both styles; a backend whose native
/// style differs rewrites them outside string literals.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Params {
    /// No parameters.
    #[default]
    None,
    /// Values for `?` placeholders, in order.
    Positional(Vec<Value>),
    /// Values for `:name` placeholders. Names are given without the colon.
    Named(Vec<(String, Value)>),
}

impl Params {
    /// Named parameters from `(name, value)` pairs; a leading `:` is allowed.
    pub fn named<K: Into<String>, V: Into<Value>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Params::Named(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    let k: String = k.into();
                    (
                        k.strip_prefix(':').map(str::to_string).unwrap_or(k),
                        v.into(),
                    )
                })
                .collect(),
        )
    }
    /// How many values are bound.
    pub fn len(&self) -> usize {
        match self {
            Params::None => 0,
            Params::Positional(v) => v.len(),
            Params::Named(v) => v.len(),
        }
    }
    /// Whether no values are bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<Value>> for Params {
    fn from(v: Vec<Value>) -> Self {
        if v.is_empty() {
            Params::None
        } else {
            Params::Positional(v)
        }
    }
}
impl From<()> for Params {
    fn from(_: ()) -> Self {
        Params::None
    }
}

/// Build positional [`Params`] from expressions: `params![1, "alice", 2.5]`.
#[macro_export]
macro_rules! params {
    () => { $crate::Params::None };
    ($($v:expr),+ $(,)?) => { $crate::Params::Positional(vec![$($crate::Value::from($v)),+]) };
}

/// What a statement that does not return rows did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Rows inserted, updated or deleted.
    pub rows_affected: u64,
    /// The id of the last inserted row, where the backend has one.
    pub last_insert_id: Option<i64>,
}

/// Rows returned by a query: column names, then one `Vec<Value>` per row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// Column names, in order. Shared: a statement run again hands out the
    /// same names without copying them.
    pub columns: Arc<[String]>,
    /// The rows; each has one value per column.
    pub rows: Vec<Vec<Value>>,
}

impl Rows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
    /// The index of column `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }
    /// The value at `row`, column `name`.
    pub fn get(&self, row: usize, name: &str) -> Option<&Value> {
        self.rows.get(row)?.get(self.column_index(name)?)
    }
    /// The single value of the first row's first column, or an error saying
    /// what was returned instead.
    pub fn scalar(&self) -> Result<&Value> {
        self.rows
            .first()
            .and_then(|r| r.first())
            .ok_or_else(|| Error::not_found("the query returned no rows"))
    }
}

/// One statement of a transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// The SQL text.
    pub sql: String,
    /// Its parameters.
    pub params: Params,
}

impl Statement {
    /// A statement with parameters.
    pub fn new(sql: impl Into<String>, params: impl Into<Params>) -> Self {
        Statement {
            sql: sql.into(),
            params: params.into(),
        }
    }
}

/// One versioned migration script.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// Positive, unique version; scripts run in ascending order.
    pub version: i64,
    /// A short description, recorded with the version.
    pub name: String,
    /// The SQL, possibly several statements.
    pub sql: String,
}

impl Migration {
    /// A migration script.
    pub fn new(version: i64, name: impl Into<String>, sql: impl Into<String>) -> Self {
        Migration {
            version,
            name: name.into(),
            sql: sql.into(),
        }
    }
    /// A stable checksum of the script text (FNV-1a 64), recorded so that an
    /// applied script that was later edited is reported, not silently skipped.
    pub fn checksum(&self) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.sql.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        format!("{h:016x}")
    }
}

/// The name of the table where migrations are recorded.
pub const MIGRATIONS_TABLE: &str = "_backplane_migrations";

/// What `migrate` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// Versions applied by this call.
    pub applied: Vec<i64>,
    /// Versions that had been applied before.
    pub skipped: Vec<i64>,
}

/// Check a migration list: positive, unique versions.
pub fn validate_migrations(migrations: &[Migration]) -> Result<Vec<&Migration>> {
    let mut sorted: Vec<&Migration> = migrations.iter().collect();
    sorted.sort_by_key(|m| m.version);
    for w in sorted.windows(2) {
        if w[0].version == w[1].version {
            return Err(Error::invalid(format!(
                "migration version {} appears twice: give every script its own version",
                w[0].version
            )));
        }
    }
    if let Some(m) = sorted.iter().find(|m| m.version <= 0) {
        return Err(Error::invalid(format!(
            "migration '{}' has version {}: versions must be positive",
            m.name, m.version
        )));
    }
    Ok(sorted)
}

/// The first word of `sql`, upper-cased, after white space and comments.
pub fn first_keyword(sql: &str) -> String {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, after)| after);
        } else {
            break;
        }
    }
    rest.chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// The context a backend adds to the error of statement `index` (0-based)
/// of an `n`-statement transaction: counted from 1, as a reader counts.
pub fn statement_failed(index: usize, n: usize) -> String {
    format!(
        "statement {} of {n} failed; the transaction was rolled back, nothing was written",
        index + 1
    )
}

/// Refuse a statement that controls a transaction (`BEGIN`, `COMMIT`,
/// `ROLLBACK`, `SAVEPOINT`, …) in `execute`, `execute_many` or `query`: a
/// store never holds a transaction open from one call to the next (writes
/// that seemed to succeed would be lost when the process ends, and other
/// processes would be locked out), so the statements of a transaction go
/// to [`Relational::transaction`] together.
pub fn refuse_transaction_control(sql: &str) -> Result<()> {
    let word = first_keyword(sql);
    if matches!(
        word.as_str(),
        "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "ABORT" | "SAVEPOINT" | "RELEASE" | "START"
    ) {
        return Err(Error::invalid(format!(
            "`{word}` controls a transaction, and a store never keeps one open between calls: pass the statements together to transaction(), which commits them all or none"
        )));
    }
    Ok(())
}

/// How a migration record copied from another store starts its checksum
/// (`imported:<checksum>`). The table that migration made came along with
/// the data, and the application's script for the version may be written
/// in the target's dialect: such a version counts as applied whatever its
/// script's checksum is now.
pub const IMPORTED_PREFIX: &str = "imported:";

/// Plan a migration run: check the list ([`validate_migrations`]) and the
/// recorded checksums of the versions already applied (`applied`: version
/// to checksum), and return every migration in version order with whether
/// it was applied before. An applied script that changed is a `Conflict`,
/// before anything runs.
pub fn plan_migrations<'a>(
    migrations: &'a [Migration],
    applied: &std::collections::HashMap<i64, String>,
) -> Result<Vec<(&'a Migration, bool)>> {
    let sorted = validate_migrations(migrations)?;
    for m in &sorted {
        if let Some(recorded) = applied.get(&m.version) {
            if *recorded != m.checksum() && !recorded.starts_with(IMPORTED_PREFIX) {
                return Err(Error::conflict(format!(
                    "migration {} '{}' was applied with checksum {recorded} but the script now has checksum {}: \
                     applied migrations must not change; put the change in a new migration with a higher version",
                    m.version,
                    m.name,
                    m.checksum()
                )));
            }
        }
    }
    Ok(sorted
        .into_iter()
        .map(|m| (m, applied.contains_key(&m.version)))
        .collect())
}

/// The loop of a `migrate`: for each migration of the plan not applied
/// yet (see [`plan_migrations`]), in version order, `apply(migration,
/// checksum)` runs it in its own transaction with its record and says
/// whether it ran (`false`: applied meanwhile by another process, see
/// [`migration_still_pending`]). A failure stops the loop and says which
/// migrations were applied before it.
pub fn apply_migrations(
    migrations: &[Migration],
    applied: &std::collections::HashMap<i64, String>,
    mut apply: impl FnMut(&Migration, &str) -> Result<bool>,
) -> Result<MigrationReport> {
    let plan = plan_migrations(migrations, applied)?;
    let mut report = MigrationReport::default();
    for (m, applied_before) in plan {
        let ran = !applied_before
            && apply(m, &m.checksum())
                .map_err(|e| e.context(migration_failed(m, &report.applied)))?;
        if ran {
            report.applied.push(m.version);
        } else {
            report.skipped.push(m.version);
        }
    }
    Ok(report)
}

/// The check inside a migration's transaction, against what is recorded
/// for its version now (another process may have applied it since the
/// plan): `true` to apply it, `false` when it was applied meanwhile with
/// the same checksum, a `Conflict` when with another.
pub fn migration_still_pending(m: &Migration, recorded: Option<String>) -> Result<bool> {
    match recorded {
        None => Ok(true),
        Some(c) if c == m.checksum() || c.starts_with(IMPORTED_PREFIX) => Ok(false),
        Some(c) => Err(Error::conflict(format!(
            "migration {} '{}' was applied meanwhile with checksum {c}, but this script has {}",
            m.version,
            m.name,
            m.checksum()
        ))),
    }
}

/// What a failed migration's error adds: it was rolled back, and which
/// versions this call applied before it.
pub fn migration_failed(m: &Migration, applied_before: &[i64]) -> String {
    format!(
        "migration {} '{}' failed and was rolled back (applied by this call before it: {:?})",
        m.version, m.name, applied_before
    )
}

/// A column type every relational backend maps to and from its own: what
/// a table's schema says when it moves between backends. The mapping to
/// and from SQLite's and PostgreSQL's types is in `docs/archive-format.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// 64-bit signed integers ([`Value::Integer`]).
    Integer,
    /// 64-bit floats ([`Value::Real`]).
    Real,
    /// Exact decimal numbers, carried as their text ([`Value::Text`]).
    Decimal,
    /// UTF-8 text ([`Value::Text`]).
    Text,
    /// Bytes ([`Value::Blob`]).
    Blob,
    /// Booleans ([`Value::Bool`]).
    Bool,
    /// JSON documents ([`Value::Json`]).
    Json,
    /// Points in time, microseconds since the epoch ([`Value::Timestamp`]).
    Timestamp,
}

impl ColumnType {
    /// Every neutral type.
    pub const ALL: [ColumnType; 8] = [
        ColumnType::Integer,
        ColumnType::Real,
        ColumnType::Decimal,
        ColumnType::Text,
        ColumnType::Blob,
        ColumnType::Bool,
        ColumnType::Json,
        ColumnType::Timestamp,
    ];
    /// The name used in archives and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Integer => "integer",
            ColumnType::Real => "real",
            ColumnType::Decimal => "decimal",
            ColumnType::Text => "text",
            ColumnType::Blob => "blob",
            ColumnType::Bool => "bool",
            ColumnType::Json => "json",
            ColumnType::Timestamp => "timestamp",
        }
    }
    /// Parse a name given by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<ColumnType> {
        ColumnType::ALL.into_iter().find(|t| t.as_str() == s)
    }
    /// The neutral type of a SQLite declared type (SQLite's affinity rules,
    /// with the names Backplane reads as booleans, JSON and timestamps).
    pub fn from_sqlite(declared: &str) -> ColumnType {
        let d = declared.to_ascii_uppercase();
        let word = d.split(['(', ' ']).next().unwrap_or("");
        match word {
            "BOOLEAN" | "BOOL" => ColumnType::Bool,
            "JSON" | "JSONB" => ColumnType::Json,
            "TIMESTAMP" | "TIMESTAMPTZ" | "DATETIME" => ColumnType::Timestamp,
            "NUMERIC" | "DECIMAL" => ColumnType::Decimal,
            _ if d.contains("INT") => ColumnType::Integer,
            _ if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") => ColumnType::Text,
            _ if d.contains("BLOB") || d.is_empty() => ColumnType::Blob,
            _ if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") => ColumnType::Real,
            _ => ColumnType::Decimal,
        }
    }
    /// The SQLite type a column of this type is created with.
    pub fn sqlite_type(self) -> &'static str {
        match self {
            ColumnType::Integer => "INTEGER",
            ColumnType::Real => "REAL",
            ColumnType::Decimal => "NUMERIC",
            ColumnType::Text => "TEXT",
            ColumnType::Blob => "BLOB",
            ColumnType::Bool => "BOOLEAN",
            ColumnType::Json => "JSON",
            ColumnType::Timestamp => "TIMESTAMP",
        }
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Declared type, as the backend reports it.
    pub data_type: String,
    /// The declared type's neutral type; `None` when it has no portable
    /// mapping (the table can then not move to another backend).
    pub column_type: Option<ColumnType>,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether the column is part of the primary key.
    pub primary_key: bool,
    /// Whether the backend numbers it (SQLite's `INTEGER PRIMARY KEY`,
    /// PostgreSQL's `serial` and identity columns).
    pub auto_increment: bool,
}

impl ColumnInfo {
    /// A nullable, non-key column of `column_type`.
    pub fn new(name: impl Into<String>, column_type: ColumnType) -> Self {
        ColumnInfo {
            name: name.into(),
            data_type: column_type.sqlite_type().to_string(),
            column_type: Some(column_type),
            nullable: true,
            primary_key: false,
            auto_increment: false,
        }
    }
}

/// An index of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexInfo {
    /// Its name.
    pub name: String,
    /// The columns, in index order.
    pub columns: Vec<String>,
    /// Whether it enforces uniqueness.
    pub unique: bool,
}

/// A foreign key of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignKey {
    /// The referencing columns, in this table.
    pub columns: Vec<String>,
    /// The referenced table.
    pub ref_table: String,
    /// The referenced columns, parallel to `columns`.
    pub ref_columns: Vec<String>,
    /// `ON DELETE` action as SQL (`CASCADE`, `SET NULL`, …), if not the default.
    pub on_delete: Option<String>,
}

/// A table's schema: enough to recreate it on another backend.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnInfo>,
    /// The primary key's columns, in key order (empty: none).
    pub primary_key: Vec<String>,
    /// Indexes other than the primary key.
    pub indexes: Vec<IndexInfo>,
    /// Foreign keys.
    pub foreign_keys: Vec<ForeignKey>,
}

impl TableSchema {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnInfo> {
        self.columns.iter().find(|c| c.name == name)
    }
    /// The column names, in declaration order.
    pub fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
}

/// The body of an `execute_many`: `exec` once per parameter set, what they
/// did summed (rows affected; the last `last_insert_id` given). A failure
/// names its set and says the batch was rolled back: run this inside the
/// batch's one transaction.
pub fn each_set<'a>(
    sets: &[ParamsRef<'a>],
    mut exec: impl FnMut(ParamsRef<'a>) -> Result<ExecResult>,
) -> Result<ExecResult> {
    let n = sets.len();
    let mut total = ExecResult::default();
    for (i, p) in sets.iter().enumerate() {
        let r = exec(*p).map_err(|e| e.context(set_failed(i, n)))?;
        total.rows_affected += r.rows_affected;
        if r.last_insert_id.is_some() {
            total.last_insert_id = r.last_insert_id;
        }
    }
    Ok(total)
}

/// What a failed parameter set of an `execute_many` adds to its error.
pub fn set_failed(i: usize, n: usize) -> String {
    format!("parameter set {i} of {n} failed; the batch was rolled back, nothing was written")
}

/// The non-blocking form of a relational store's two hottest calls, for a
/// backend that talks to its server from an async runtime of its own (the
/// postgres backend does). Each method starts the call and returns at
/// once; `done` is called exactly once, from any thread, when the call has
/// finished. The host's async API awaits these directly instead of handing
/// the blocking call to a thread.
///
/// A backend offers it through [`Relational::as_async`]; the blocking
/// methods stay the reference semantics and must agree with it.
pub trait AsyncRelational: Send + Sync {
    /// Start [`Relational::execute`].
    fn execute(&self, sql: &str, params: &Params, done: crate::Done<ExecResult>);
    /// Start [`Relational::query`].
    fn query(&self, sql: &str, params: &Params, done: crate::Done<Rows>);

    /// [`execute`](Self::execute) as the plugin boundary starts it: on
    /// arguments the boundary has decoded and gives up, answering with
    /// the result in its wire form. The default passes on to `execute`
    /// and encodes the result; a store that runs the call on a thread of
    /// its own overrides it to move the arguments there instead of copying
    /// them (`kit::served` does).
    fn execute_wire(&self, sql: String, params: Params, done: crate::boundary::Answer) {
        self.execute(
            &sql,
            &params,
            Box::new(move |r| done(r.map(|v| crate::boundary::encode(&v)))),
        )
    }

    /// [`query`](Self::query) as the plugin boundary starts it (see
    /// [`execute_wire`](Self::execute_wire)); `kit::served` also writes
    /// the rows straight into the reply's wire form.
    fn query_wire(&self, sql: String, params: Params, done: crate::boundary::Answer) {
        self.query(
            &sql,
            &params,
            Box::new(move |r| done(r.map(|v| crate::boundary::encode(&v)))),
        )
    }
}

/// A relational store. Implemented by plugins; used through the host.
pub trait Relational: Send + Sync {
    /// The store's non-blocking form of `execute` and `query`, if it has
    /// one. Default: none; the host's async API then runs the blocking
    /// call on a thread.
    fn as_async(&self) -> Option<&dyn AsyncRelational> {
        None
    }
    /// Run one statement that returns no rows. A statement that controls a
    /// transaction (`BEGIN`, `COMMIT`, `SAVEPOINT`, …) is refused here and
    /// in `execute_many` and `query` (see [`refuse_transaction_control`]):
    /// use [`transaction`](Self::transaction).
    fn execute(&self, sql: &str, params: &Params) -> Result<ExecResult>;
    /// Run the same statement once per parameter set, all in one transaction.
    fn execute_many(&self, sql: &str, params: &[Params]) -> Result<ExecResult>;
    /// Run a query and return its rows.
    fn query(&self, sql: &str, params: &Params) -> Result<Rows>;
    /// Run statements in one transaction: all or nothing.
    fn transaction(&self, statements: &[Statement]) -> Result<Vec<ExecResult>>;
    /// Apply migrations not yet recorded, in version order, each in its own
    /// transaction together with its record.
    fn migrate(&self, migrations: &[Migration]) -> Result<MigrationReport>;
    /// User tables (the migrations table included, internal tables not).
    fn tables(&self) -> Result<Vec<String>>;
    /// The columns of `table`; `NotFound` if it does not exist.
    fn describe(&self, table: &str) -> Result<TableSchema>;
    /// Write a consistent copy of the whole database to `path`.
    fn backup(&self, path: &str) -> Result<()>;
    /// Replace the database's contents with the copy at `path`.
    fn restore(&self, path: &str) -> Result<()>;
    /// Check the store answers.
    fn health(&self) -> Result<Health>;

    /// Open a read snapshot for an export: the pages read with its id see
    /// the database as it was when it was opened, across every table,
    /// whatever is written meanwhile. `None` when the backend has no
    /// snapshots (the default): each page then sees the data as it is when
    /// read. Release it with [`release_snapshot`](Self::release_snapshot).
    fn export_snapshot(&self) -> Result<Option<String>> {
        Ok(None)
    }
    /// Release a snapshot opened by [`export_snapshot`](Self::export_snapshot).
    fn release_snapshot(&self, snapshot: &str) -> Result<()> {
        let _ = snapshot;
        Ok(())
    }
    /// One page of `table`'s rows, every column in [`describe`](Self::describe)
    /// order, in a stable order (the primary key's, else the backend's row
    /// order); pass the page's `next_cursor` for the next, and the same
    /// `snapshot` (or none). Rows are never loaded whole. Built from
    /// [`export_rows_into`](Self::export_rows_into), which is what backends
    /// override.
    fn export_rows(
        &self,
        snapshot: Option<&str>,
        table: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Vec<Value>>> {
        let mut rows = crate::RowsBuilder::new();
        let next_cursor = self.export_rows_into(snapshot, table, cursor, limit, &mut rows)?;
        Ok(Page {
            items: rows.finish().rows,
            next_cursor,
        })
    }
    /// Before rows are imported: create each table of `tables` that does
    /// not exist yet, with its primary key and indexes, and its foreign keys
    /// where the backend can add them later only in [`import_end`](Self::import_end).
    /// `tables` come parents first. Idempotent: a resumed import calls it again.
    fn import_begin(&self, tables: &[TableSchema]) -> Result<()> {
        crate::port::import_begin(self, tables)
    }
    /// Insert `rows` (values in `columns` order) into `table`. A row whose
    /// primary key exists already is kept as it is, or replaced when
    /// `overwrite`; a replayed page therefore changes nothing. Returns the
    /// rows given.
    fn import_rows(
        &self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Value>],
        overwrite: bool,
    ) -> Result<u64> {
        crate::port::import_rows(self, table, columns, rows, overwrite)
    }
    /// After every table's rows: what the backend leaves for last (foreign
    /// keys), and auto-numbered columns moved past the imported values.
    /// Idempotent.
    fn import_end(&self, tables: &[TableSchema]) -> Result<()> {
        let _ = tables;
        Ok(())
    }

    /// [`export_rows`](Self::export_rows) writing the page's rows into
    /// `sink` (values in [`describe`](Self::describe) column order) and
    /// returning the next cursor; the rows stream into the boundary
    /// without being built. The default pages by primary key with standard
    /// SQL, or by offset for a table without one, and has no snapshots;
    /// backends override it where they have a better row order (SQLite's
    /// rowid) or snapshots.
    fn export_rows_into(
        &self,
        snapshot: Option<&str>,
        table: &str,
        cursor: Option<&str>,
        limit: usize,
        sink: &mut dyn RowSink,
    ) -> Result<Option<String>> {
        let _ = snapshot;
        crate::port::export_rows_into(self, table, cursor, limit, sink)
    }
    /// [`import_rows`](Self::import_rows) with each row's values borrowed
    /// (one [`ParamsRef`] per row): the fast path the plugin boundary uses.
    /// Override it to load rows without copying them first.
    fn import_rows_ref(
        &self,
        table: &str,
        columns: &[String],
        rows: &[ParamsRef<'_>],
        overwrite: bool,
    ) -> Result<u64> {
        let owned: Vec<Vec<Value>> = rows
            .iter()
            .map(|r| (0..r.len()).map(|i| r.value(i).to_value()).collect())
            .collect();
        self.import_rows(table, columns, &owned, overwrite)
    }

    /// [`execute`](Self::execute) with borrowed parameters: the fast path
    /// the plugin boundary uses. Override it (and have `execute` call it)
    /// to bind values without copying them first.
    fn execute_ref(&self, sql: &str, params: ParamsRef<'_>) -> Result<ExecResult> {
        self.execute(sql, &params.to_params())
    }
    /// [`execute_many`](Self::execute_many) with borrowed parameter sets.
    fn execute_many_ref(&self, sql: &str, sets: &[ParamsRef<'_>]) -> Result<ExecResult> {
        let owned: Vec<Params> = sets.iter().map(ParamsRef::to_params).collect();
        self.execute_many(sql, &owned)
    }
    /// [`query`](Self::query) writing its rows into `sink` instead of
    /// returning them. Override it to stream rows without building them.
    fn query_into(&self, sql: &str, params: ParamsRef<'_>, sink: &mut dyn RowSink) -> Result<()> {
        sink.rows(&self.query(sql, &params.to_params())?);
        Ok(())
    }
}

#[cfg(test)]
mod migration_tests {
    use super::*;

    #[test]
    fn transaction_control_is_refused_whatever_its_spelling() {
        for sql in [
            "BEGIN",
            "begin transaction",
            "  -- comment\n BEGIN IMMEDIATE",
            "/* x */ commit",
            "END",
            "rollback to savepoint a",
            "SAVEPOINT a",
            "RELEASE a",
            "START TRANSACTION",
            "abort",
        ] {
            let e = refuse_transaction_control(sql).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{sql}");
            assert!(e.message().contains("transaction()"), "{e}");
        }
        for sql in [
            "SELECT 1",
            "INSERT INTO t VALUES (1)",
            "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END",
            "-- BEGIN\nSELECT 1",
            "BEGINS",
        ] {
            assert!(refuse_transaction_control(sql).is_ok(), "{sql}");
        }
        assert_eq!(first_keyword("  /* a */ -- b\n  select"), "SELECT");
    }

    #[test]
    fn an_imported_record_counts_as_applied_whatever_the_script() {
        let m = Migration::new(
            1,
            "users",
            "CREATE TABLE users (id BIGINT GENERATED BY DEFAULT AS IDENTITY)",
        );
        let mut applied = std::collections::HashMap::new();
        applied.insert(1, format!("{IMPORTED_PREFIX}0123456789abcdef"));
        let plan = plan_migrations(std::slice::from_ref(&m), &applied).unwrap();
        assert_eq!(plan.len(), 1);
        assert!(plan[0].1, "applied");
        assert!(!migration_still_pending(&m, applied.get(&1).cloned()).unwrap());
        // A record of this store's own keeps the strict check.
        applied.insert(1, "0123456789abcdef".into());
        assert_eq!(
            plan_migrations(std::slice::from_ref(&m), &applied)
                .unwrap_err()
                .kind(),
            crate::ErrorKind::Conflict
        );
    }
}
