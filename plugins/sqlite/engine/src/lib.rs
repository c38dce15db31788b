//! `backplane-sqlite-engine` is the SQLite code that two plugins share: the
//! `sqlite` plugin (every capability, on files) and the `memory` plugin
//! (whose relational capability is an in-memory SQLite database). It is a
//! plain library and registers no plugin: a plugin library that linked
//! another plugin crate would register two plugins, so shared code lives
//! here instead.
//!
//! # Layout
//!
//! - [`db`]: [`Db`], one connection opened the way stores want it (WAL,
//!   `synchronous=NORMAL`, foreign keys, busy timeout) behind a mutex;
//!   write transactions; the mapping from SQLite errors to Backplane kinds;
//!   time and id helpers.
//! - [`relational`]: [`SqliteRelational`], the relational capability: `?`
//!   and `:name` parameters bound from `Value`, typed columns, transactions,
//!   migrations, online backup and restore.

pub mod db;
pub mod relational;

pub use db::Db;
pub use relational::SqliteRelational;
