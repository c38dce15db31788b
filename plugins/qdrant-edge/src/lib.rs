//! `backplane-plugin-qdrant-edge` is Backplane's embedded Qdrant backend,
//! named `qdrant-edge`: a vector store on Qdrant's own engine
//! ([`qdrant-edge`](https://crates.io/crates/qdrant-edge)), running in the
//! host's process and keeping its collections in a folder (`path`), one
//! sub-folder per collection. Search is approximate (HNSW) once a
//! collection is large enough to be worth indexing, exact below that; it
//! is the default vector store of the shipped plugins.toml.
//!
//! String ids map to UUIDv5 point ids (the original id kept in the
//! payload), the common filter language translates to Qdrant's filter
//! (what cannot is evaluated in the plugin, never dropped), scores are
//! higher-is-better for every distance, and `get`/`scroll` return the raw
//! vectors as upserted. qdrant-edge is pinned to 0.7.2, the last release
//! that builds with the workspace's toolchain (rustc 1.95).
//!
//! # Layout
//!
//! - `lib.rs`: [`QdrantEdgePlugin`], its [`BackendDescriptor`], and the one
//!   [`export_plugin!`](backplane_core::export_plugin).
//! - [`config`]: [`QdrantEdgeConfig`], the store section of plugins.toml.
//! - [`backend`]: [`QdrantEdgeVector`], the vector capability: folders,
//!   the per-process registry of open shards, locking, flushing and index
//!   builds.
//! - [`point`]: ids and payloads on qdrant-edge's types.
//! - [`filter`]: qdrant-edge's filter types for the shared translation.
//!
//! The id mapping, payload layout, filter translation and search
//! over-fetch are `backplane-qdrant-common`'s, shared with the `qdrant`
//! (server) backend.
#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod filter;
pub mod point;
#[cfg(test)]
mod tests;

pub use backend::QdrantEdgeVector;
pub use config::QdrantEdgeConfig;

use backplane_core::{BackendDescriptor, Capability, Plugin, Result, StoreConfig, Vector};

/// The backend's name in plugins.toml.
pub const BACKEND: &str = "qdrant-edge";

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
        Ok(Box::new(store))
    }

    fn shutdown(&self) {
        backend::shutdown();
    }
}

backplane_core::export_plugin!(QdrantEdgePlugin);
