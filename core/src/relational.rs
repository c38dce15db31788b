//! The relational capability: SQL with parameters, transactions, migrations,
//! schema introspection and backup.

use crate::rows::{ParamsRef, RowSink};
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
            if *recorded != m.checksum() {
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

/// The check inside a migration's transaction, against what is recorded
/// for its version now (another process may have applied it since the
/// plan): `true` to apply it, `false` when it was applied meanwhile with
/// the same checksum, a `Conflict` when with another.
pub fn migration_still_pending(m: &Migration, recorded: Option<String>) -> Result<bool> {
    match recorded {
        None => Ok(true),
        Some(c) if c == m.checksum() => Ok(false),
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

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Declared type, as the backend reports it.
    pub data_type: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Whether the column is part of the primary key.
    pub primary_key: bool,
}

/// A table's columns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Table name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnInfo>,
}

/// A relational store. Implemented by plugins; used through the host.
pub trait Relational: Send + Sync {
    /// Run one statement that returns no rows.
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
