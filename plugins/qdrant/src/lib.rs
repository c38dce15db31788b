//! `backplane-plugin-qdrant` is Backplane's Qdrant server backend, named
//! `qdrant`: a vector store on a Qdrant server or cluster, reached over
//! gRPC with the official client
//! ([`qdrant-client`](https://crates.io/crates/qdrant-client)). The same
//! store moves from one server to a cluster by pointing `url` at it;
//! `shard_number`, `replication_factor` and `write_consistency_factor` are
//! passed to Qdrant when a collection is created.
//!
//! Collections mean the same as on `qdrant-edge`, the embedded engine:
//! string ids map to the same UUIDv5 point ids, payloads carry the same
//! reserved keys, filters translate the same way and scores are
//! higher-is-better; that shared part is `backplane-qdrant-common`.
//!
//! # Layout
//!
//! - `lib.rs`: [`QdrantPlugin`], its [`BackendDescriptor`], and the one
//!   [`export_plugin!`](backplane_core::export_plugin).
//! - [`config`]: the store section of plugins.toml.
//! - [`backend`]: [`QdrantVector`], the vector capability: the client and
//!   its runtime, collections on the server, every call.
//! - [`filter`]: the filter translation's gRPC messages.
//! - [`payload`]: JSON payloads to gRPC values and back.
#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod filter;
pub mod payload;

pub use backend::QdrantVector;
pub use config::QdrantConfig;

use backplane_core::{BackendDescriptor, Capability, Plugin, Result, StoreConfig, Vector};

/// The backend's name in plugins.toml.
pub const BACKEND: &str = "qdrant";

/// The plugin: one backend, `qdrant`, serving the vector capability.
#[derive(Clone, Copy, Debug, Default)]
pub struct QdrantPlugin;

impl QdrantPlugin {
    /// What the `qdrant` backend declares: every filter operator
    /// (translated to Qdrant's filter, the rest evaluated in the plugin),
    /// every distance, persistent.
    pub fn descriptor() -> BackendDescriptor {
        let mut d = BackendDescriptor::new(BACKEND, &[Capability::Vector]).describe(
            "vector store on a Qdrant server or cluster over gRPC (qdrant-client 1.20): HNSW search, Qdrant filters, sharding and replication",
        );
        d.persistent = true;
        d
    }
}

impl Plugin for QdrantPlugin {
    fn name(&self) -> &str {
        "qdrant"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![Self::descriptor()]
    }

    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        let settings = QdrantConfig::settings(config)?;
        let store = QdrantVector::open(settings).map_err(|e| match e.kind() {
            backplane_core::ErrorKind::Config => config.error(e.message()),
            _ => e,
        })?;
        log::debug!(
            "qdrant: opened vector store '{}' on Qdrant {}",
            config.store,
            store.server_version()
        );
        Ok(Box::new(store))
    }
}

backplane_core::export_plugin!(QdrantPlugin);
