#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod config;
mod matrix;
mod relational;
#[cfg(test)]
mod tests;
mod vector;

pub use backplane_memory_engine::{MemoryCache, MemoryGraph};
pub use config::MemoryConfig;
pub use vector::MemoryVector;

use backplane_core::kit::served::{parallel_workers, Served};
use backplane_core::{
    BackendDescriptor, Cache, Capability, Graph, Plugin, Result, StoreConfig, Vector,
};

/// The backend's name in plugins.toml.
const BACKEND: &str = "memory";

/// The plugin: one backend, `memory`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryPlugin;

impl MemoryPlugin {
    /// What the `memory` backend declares.
    pub fn descriptor() -> BackendDescriptor {
        let mut d = BackendDescriptor::new(
            BACKEND,
            &Capability::ALL,
        )
        .describe(
            "reference backend in process memory: relational (in-memory SQLite), vector (exact search), cache, graph; not persistent",
        );
        d.native_ttl = true;
        d.persistent = false;
        d
    }
}

impl Plugin for MemoryPlugin {
    fn name(&self) -> &str {
        "memory"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![Self::descriptor()]
    }

    fn open_relational(&self, config: &StoreConfig) -> Result<Box<dyn backplane_core::Relational>> {
        relational::open(config)
    }

    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        let cfg = MemoryConfig::from_store(config)?;
        let store = MemoryVector::new();
        if let Some((dimension, distance)) = cfg.default_collection()? {
            store
                .create_collection(&config.store, dimension, distance)
                .map_err(|e| {
                    config.error(format!(
                        "cannot create the default collection '{}': {}",
                        config.store,
                        e.message()
                    ))
                })?;
        }
        log::debug!("memory: opened vector store '{}'", config.store);
        // `upsert` and `search` through the host's async API run on
        // threads of the store's own (searches run in parallel).
        Ok(Box::new(Served::new(
            store,
            &format!("memory-{}", config.store),
            parallel_workers(),
        )?))
    }

    fn open_cache(&self, config: &StoreConfig) -> Result<Box<dyn Cache>> {
        let cfg = MemoryConfig::from_store(config)?;
        let store = MemoryCache::new(cfg.channel_limits()?, cfg.max_value_bytes);
        log::debug!("memory: opened cache store '{}'", config.store);
        // `get` and `set` through the host's async API run on threads of
        // the store's own.
        Ok(Box::new(Served::new(
            store,
            &format!("memory-{}", config.store),
            parallel_workers(),
        )?))
    }

    fn open_graph(&self, config: &StoreConfig) -> Result<Box<dyn Graph>> {
        MemoryConfig::from_store(config)?;
        log::debug!("memory: opened graph store '{}'", config.store);
        Ok(Box::new(Served::new(
            MemoryGraph::new(),
            &format!("memory-{}", config.store),
            parallel_workers(),
        )?))
    }
}

backplane_core::export_plugin!(MemoryPlugin);
