#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backend;
mod client;
mod collections;
mod config;
mod filter;
mod payload;
mod point;
mod search;

pub use config::QdrantConfig;

use backend::QdrantVector;
use backplane_core::{BackendDescriptor, Capability, Plugin, Result, StoreConfig, Vector};

/// The backend's name in plugins.toml.
const BACKEND: &str = "qdrant";

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
