//! The dump file of `backup` and `restore` (no `pg_dump` needed): its
//! records, written by [`crate::backup`] and replayed by
//! [`crate::restore`].
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

use backplane_core::Error;
use serde::{Deserialize, Serialize};

/// The first line of every dump.
pub(crate) const MAGIC: &str = "BACKPLANE-POSTGRES-DUMP 1";

/// What the dump holds, for a reader of the file.
#[derive(Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) schema: String,
    pub(crate) server_version: String,
    pub(crate) tables: Vec<String>,
    pub(crate) not_included: Vec<String>,
}

/// What the dump counted, in its last record.
#[derive(Serialize, Deserialize)]
pub(crate) struct Totals {
    pub(crate) tables: u64,
    pub(crate) rows: u64,
}

/// One line of the file other than a `copy` record and its rows.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Record {
    Header(Header),
    Sql(String),
    Copy(String),
    End(Totals),
}

/// A `copy` record: the table and its columns.
#[derive(Serialize, Deserialize)]
pub(crate) struct CopyRecord {
    pub(crate) copy: String,
    pub(crate) columns: Vec<String>,
}

/// Not in a transaction and not a mapped error: read or write of the file.
pub(crate) fn io_err(path: &str, e: std::io::Error) -> Error {
    Error::invalid(format!("backup file '{path}': {e}"))
}

/// The condition "this object is not part of an extension" for `pg_class`
/// or `pg_type` rows aliased `x`.
pub(crate) const NOT_EXTENSION: &str =
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = x.oid AND d.deptype = 'e')";
