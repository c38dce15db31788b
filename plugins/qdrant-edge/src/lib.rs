#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backend;
mod collection;
mod config;
mod filter;
mod folder;
mod index;
mod point;
mod search;
mod shard;
#[cfg(test)]
mod tests;
mod wal;

pub use backend::QdrantEdgeVector;
pub use config::{QdrantEdgeConfig, Tuning};
pub use index::IndexState;

use backplane_core::kit::served::{parallel_workers, Served};
use backplane_core::{BackendDescriptor, Capability, Plugin, Result, StoreConfig, Vector};

/// The backend's name in plugins.toml.
const BACKEND: &str = "qdrant-edge";

/// The plugin: one backend, `qdrant-edge`, serving the vector capability.
#[derive(Clone, Copy, Debug, Default)]
pub struct QdrantEdgePlugin;

impl QdrantEdgePlugin {
    /// What the `qdrant-edge` backend declares: every filter operator
    /// (translated to Qdrant's filter, the rest evaluated in the plugin),
    /// every distance, persistent.
    pub fn descriptor() -> BackendDescriptor {
        let mut d = BackendDescriptor::new(BACKEND, &[Capability::Vector]).describe(
            "vector store on Qdrant's embedded engine (qdrant-edge 0.7.2): HNSW search, Qdrant filters, one folder per collection",
        );
        d.persistent = true;
        d
    }
}

impl Plugin for QdrantEdgePlugin {
    fn name(&self) -> &str {
        "qdrant-edge"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![Self::descriptor()]
    }

    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        // qdrant-edge warns that process-wide settings a Qdrant server sets
        // at startup (feature flags, a multi-mmap probe) were left at their
        // defaults, which is what an embedded engine wants.
        backplane_core::demote_log_target("qdrant_edge::common::flags");
        backplane_core::demote_log_target("qdrant_edge::common::mmap::ops");
        let cfg = QdrantEdgeConfig::from_store(config)?;
        let root = cfg.resolved_path(config);
        let store =
            QdrantEdgeVector::open(&root, cfg.tuning(config)?, cfg.default_collection(config)?)
                .map_err(|e| match e.kind() {
                    backplane_core::ErrorKind::Config => config.error(e.message()),
                    _ => e,
                })?;
        log::debug!(
            "qdrant-edge: opened vector store '{}' at {}",
            config.store,
            store.root().display()
        );
        // `upsert` and `search` through the host's async API run on
        // threads of the store's own (searches run in parallel).
        Ok(Box::new(Served::new(
            store,
            &format!("qdrant-edge-{}", config.store),
            parallel_workers(),
        )?))
    }

    fn shutdown(&self) {
        backend::shutdown();
    }
}

backplane_core::export_plugin!(QdrantEdgePlugin);
