//! `backplane-plugin-sqlite` is Backplane's SQLite backend. One plugin,
//! backend name `"sqlite"`, serves all four capabilities (relational,
//! vector, cache, graph) on [rusqlite] with SQLite bundled: no server, one
//! file per store (or several stores in one file), WAL journal. What it
//! writes is plain SQLite: the `sqlite3` shell reads every table (JSON as
//! TEXT, vectors as little-endian `f32` BLOBs).
//!
//! Built as a `cdylib` the host loads it from its plugin folder; linked as
//! an `rlib` it registers itself in the host's static registry.
//!
//! # Layout
//!
//! - [`config`]: [`SqliteConfig`], the store section of plugins.toml.
//! - `engine/` (crate `backplane-sqlite-engine`, shared with the memory
//!   plugin): the connection (opened in WAL mode, behind a mutex), write
//!   transactions, the mapping from SQLite errors to Backplane's kinds, and
//!   [`SqliteRelational`]: SQL with `?` / `:name` parameters, migrations,
//!   online backup and restore.
//! - [`vector`]: [`SqliteVector`], collections in `_bp_vec_*` tables, exact
//!   search.
//! - [`cache`]: [`SqliteCache`], keys with expiry and conversation channels
//!   in `_bp_cache_*` tables.
//! - [`graph`]: [`SqliteGraph`], nodes and edges in `_bp_graph_*` tables,
//!   traversals as recursive CTEs.
//! - [`SqlitePlugin`] and the [`export_plugin!`](backplane_core::export_plugin) call.

pub mod cache;
pub mod config;
pub mod graph;
pub mod vector;

#[cfg(test)]
mod tests;

pub use backplane_sqlite_engine::SqliteRelational;
pub use cache::SqliteCache;
pub use config::SqliteConfig;
pub use graph::SqliteGraph;
pub use vector::SqliteVector;

use backplane_core::{
    BackendDescriptor, Cache, Capability, Graph, Plugin, Relational, Result, StoreConfig, Vector,
};
use backplane_sqlite_engine::Db;

/// The backend name used as `backend = "sqlite"` in plugins.toml.
pub const BACKEND: &str = "sqlite";

/// The SQLite plugin. Build it with `SqlitePlugin::default()`; the private
/// field leaves room for plugin-wide settings without breaking callers.
#[derive(Clone, Copy, Debug, Default)]
pub struct SqlitePlugin {
    _private: (),
}

impl SqlitePlugin {
    fn open_db(&self, config: &StoreConfig) -> Result<(SqliteConfig, Db)> {
        let cfg = SqliteConfig::from_store(config)?;
        let path = (!cfg.is_memory()).then(|| cfg.resolved_path(config));
        let db = Db::open(config, path.as_deref(), cfg.busy_timeout_ms)?;
        Ok((cfg, db))
    }
}

impl Plugin for SqlitePlugin {
    fn name(&self) -> &str {
        BACKEND
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        let mut d = BackendDescriptor::new(BACKEND, &Capability::ALL).describe(format!(
            "SQLite {} (bundled), WAL mode: relational, vector (exact search), cache, graph",
            rusqlite::version()
        ));
        // Every filter operator is evaluated by the plugin itself, expiry is
        // enforced on read, and the data lives in a file.
        d.native_ttl = true;
        d.persistent = true;
        vec![d]
    }

    fn open_relational(&self, config: &StoreConfig) -> Result<Box<dyn Relational>> {
        let (_, db) = self.open_db(config)?;
        Ok(Box::new(SqliteRelational::new(db)))
    }

    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        let (cfg, db) = self.open_db(config)?;
        let default = cfg.default_collection(config)?;
        Ok(Box::new(SqliteVector::open(
            db,
            default,
            cfg.search_cache_bytes(),
        )?))
    }

    fn open_cache(&self, config: &StoreConfig) -> Result<Box<dyn Cache>> {
        let (cfg, db) = self.open_db(config)?;
        let ttl = cfg.channel_ttl(config)?;
        Ok(Box::new(SqliteCache::open(db, cfg.max_messages(), ttl)?))
    }

    fn open_graph(&self, config: &StoreConfig) -> Result<Box<dyn Graph>> {
        let (_, db) = self.open_db(config)?;
        Ok(Box::new(SqliteGraph::open(db)?))
    }
}

backplane_core::export_plugin!(SqlitePlugin::default());
