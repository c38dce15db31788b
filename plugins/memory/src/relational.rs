//! The relational capability: a private in-memory SQLite database per
//! store, run by the engine the `sqlite` plugin uses too. A relational store
//! needs a SQL engine; an embedded, well-tested one is the simplest correct
//! implementation, and sharing it keeps one copy of the SQL handling.
//! Its `execute` and `query` are also served as started calls, from one
//! thread of the store's own (core's `kit::served`).

use crate::config::MemoryConfig;
use backplane_core::kit::served::Served;
use backplane_core::{Relational, Result, StoreConfig};
use backplane_sqlite_engine::{Db, SqliteRelational};

/// How long a statement waits for a lock (never contended: the database is
/// private to the store).
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// Open a relational store: a fresh, empty in-memory database.
pub(crate) fn open(config: &StoreConfig) -> Result<Box<dyn Relational>> {
    MemoryConfig::from_store(config)?;
    let db = Db::open(config, None, BUSY_TIMEOUT_MS)?;
    Ok(Box::new(Served::new(
        SqliteRelational::new(db),
        &format!("memory-{}", config.store),
        1,
    )?))
}
