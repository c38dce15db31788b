//! `backplane-plugin-memory` is Backplane's reference backend, named
//! `memory`: the simplest correct implementation of every capability, with
//! everything held in process memory. The
//! behaviour suite is checked against it first, it serves tests and
//! laptops that need no files, and it is the natural `fallback` of a store
//! whose server is down.
//!
//! Nothing survives the process (the descriptor says `persistent: false`),
//! and every opened store is independent: two stores named alike in two
//! `Storage`s do not share data.
//!
//! Its relational capability is a private in-memory SQLite database per
//! store, through the SQLite code it shares with the `sqlite` plugin
//! (`backplane-sqlite-engine`): a relational store needs a SQL engine, and
//! an embedded, well-tested one is the simplest correct choice.
//!
//! # Layout
//!
//! - `lib.rs`: [`MemoryPlugin`], its [`BackendDescriptor`], and the one
//!   [`export_plugin!`](backplane_core::export_plugin).
//! - [`config`]: [`MemoryConfig`], the store section of plugins.toml.
//! - [`vector`]: [`MemoryVector`], exact search over a contiguous matrix.
//! - [`cache`]: [`MemoryCache`], keys with expiry and bounded channels.
//! - [`graph`]: [`MemoryGraph`], ordered maps with adjacency indexes.
//! - `relational`: opening the in-memory SQLite database.
#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod graph;
mod relational;
pub mod vector;

pub use cache::MemoryCache;
pub use config::MemoryConfig;
pub use graph::MemoryGraph;
pub use vector::MemoryVector;

use backplane_core::{
    BackendDescriptor, Cache, Capability, Graph, Plugin, Result, StoreConfig, Vector,
};

/// The backend's name in plugins.toml.
pub const BACKEND: &str = "memory";

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
        Ok(Box::new(store))
    }

    fn open_cache(&self, config: &StoreConfig) -> Result<Box<dyn Cache>> {
        let cfg = MemoryConfig::from_store(config)?;
        let store = MemoryCache::new(cfg.channel_limits()?, cfg.max_value_bytes);
        log::debug!("memory: opened cache store '{}'", config.store);
        Ok(Box::new(store))
    }

    fn open_graph(&self, config: &StoreConfig) -> Result<Box<dyn Graph>> {
        MemoryConfig::from_store(config)?;
        log::debug!("memory: opened graph store '{}'", config.store);
        Ok(Box::new(MemoryGraph::new()))
    }
}

backplane_core::export_plugin!(MemoryPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::{Distance, ErrorKind};
    use serde_json::json;

    fn config(cap: Capability, options: serde_json::Value) -> StoreConfig {
        StoreConfig::new("mem", BACKEND, cap, options)
    }

    #[test]
    fn descriptor() {
        let d = MemoryPlugin::descriptor();
        assert_eq!(d.name, "memory");
        assert!(d.serves(Capability::Vector) && d.serves(Capability::Cache));
        assert!(d.serves(Capability::Graph) && d.serves(Capability::Relational));
        assert!(d.native_ttl && !d.persistent);
        assert_eq!(MemoryPlugin.backends(), vec![d]);
    }

    #[test]
    fn opens_every_capability() {
        let p = MemoryPlugin;
        assert!(p
            .open_cache(&config(Capability::Cache, json!({"ttl": "1m"})))
            .is_ok());
        assert!(p
            .open_graph(&config(Capability::Graph, json!(null)))
            .is_ok());
        let v = p
            .open_vector(&config(Capability::Vector, json!({})))
            .unwrap();
        assert!(v.list_collections().unwrap().is_empty());
        let r = p
            .open_relational(&config(Capability::Relational, json!({})))
            .unwrap();
        assert!(r.tables().unwrap().is_empty());
        let e = p
            .open_relational(&config(Capability::Relational, json!({"ttl": "1m"})))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn default_collection() {
        let v = MemoryPlugin
            .open_vector(&config(
                Capability::Vector,
                json!({"dimension": 4, "distance": "euclidean"}),
            ))
            .unwrap();
        let info = v.collection_info("mem").unwrap();
        assert_eq!(
            (info.dimension, info.distance, info.count),
            (4, Distance::Euclidean, 0)
        );
        let bad = StoreConfig::new(
            "bad.name",
            BACKEND,
            Capability::Vector,
            json!({"dimension": 4, "distance": "dot"}),
        );
        let e = MemoryPlugin.open_vector(&bad).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn bad_config_is_a_config_error() {
        let e = MemoryPlugin
            .open_cache(&config(Capability::Cache, json!({"url": "redis://x"})))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains("url"), "{e}");
    }
}
