#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cache;
mod config;
mod graph;
mod snapshot;
#[cfg(test)]
mod tests;
mod vector;
mod vector_table;

pub use config::SqliteConfig;

use cache::SqliteCache;
use graph::SqliteGraph;
use vector::SqliteVector;

use backplane_core::kit::served::Served;
use backplane_core::{
    BackendDescriptor, Cache, Capability, Graph, Plugin, Relational, Result, StoreConfig, Vector,
};
use backplane_sqlite_engine::{Db, SqliteRelational};

/// The backend name used as `backend = "sqlite"` in plugins.toml.
const BACKEND: &str = "sqlite";

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
        // Its hot calls through the host's async API (`execute` and
        // `query` here; `upsert` and `search`, `get` and `set`, `get_node`
        // and `neighbors` below) run on one thread of the store's own
        // (one: the store has one connection), which takes queued calls
        // without parking.
        Ok(Box::new(Served::new(
            SqliteRelational::new(db),
            &format!("sqlite-{}", config.store),
            1,
        )?))
    }

    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        let (cfg, db) = self.open_db(config)?;
        let default = cfg.default_collection(config)?;
        let store = SqliteVector::open(db, default, cfg.search_cache_bytes())?;
        Ok(Box::new(Served::new(
            store,
            &format!("sqlite-{}", config.store),
            1,
        )?))
    }

    fn open_cache(&self, config: &StoreConfig) -> Result<Box<dyn Cache>> {
        let (cfg, db) = self.open_db(config)?;
        let ttl = cfg.channel_ttl(config)?;
        let store = SqliteCache::open(db, cfg.max_messages(), cfg.max_value_bytes(), ttl)?;
        Ok(Box::new(Served::new(
            store,
            &format!("sqlite-{}", config.store),
            1,
        )?))
    }

    fn open_graph(&self, config: &StoreConfig) -> Result<Box<dyn Graph>> {
        let (_, db) = self.open_db(config)?;
        Ok(Box::new(Served::new(
            SqliteGraph::open(db)?,
            &format!("sqlite-{}", config.store),
            1,
        )?))
    }
}

backplane_core::export_plugin!(SqlitePlugin::default());
