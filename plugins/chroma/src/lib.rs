#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backend;
mod client;
mod config;
mod filter;
mod record;

pub use config::ChromaConfig;

use backend::ChromaVector;
use backplane_core::{BackendDescriptor, Capability, Plugin, Result, StoreConfig, Vector};

/// The backend's name in plugins.toml.
const BACKEND: &str = "chroma";

/// The plugin: one backend, `chroma`, serving the vector capability.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChromaPlugin;

impl ChromaPlugin {
    /// What the `chroma` backend declares: every filter operator (what
    /// Chroma's `where` has is pushed down, the whole filter is evaluated
    /// in the plugin), every distance, persistent.
    pub fn descriptor() -> BackendDescriptor {
        let mut d = BackendDescriptor::new(BACKEND, &[Capability::Vector]).describe(
            "vector store on a Chroma 1.x server over its HTTP API: HNSW search, filters pushed down to Chroma's where",
        );
        d.persistent = true;
        d
    }
}

impl Plugin for ChromaPlugin {
    fn name(&self) -> &str {
        "chroma"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![Self::descriptor()]
    }

    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        // ureq logs the wire at trace level, headers unredacted: the token
        // would be printed with BACKPLANE_LOG=trace.
        backplane_core::silence_log_target("ureq");
        let settings = ChromaConfig::settings(config)?;
        let store = ChromaVector::open(settings).map_err(|e| match e.kind() {
            backplane_core::ErrorKind::Config => config.error(e.message()),
            _ => e,
        })?;
        log::debug!(
            "chroma: opened vector store '{}' on Chroma (API {})",
            config.store,
            store.server_version()
        );
        Ok(Box::new(store))
    }
}

backplane_core::export_plugin!(ChromaPlugin);
