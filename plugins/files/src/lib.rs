#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod cache;
mod config;
mod graph;
mod held;
mod storage;

pub use config::FilesConfig;

use backplane_core::{BackendDescriptor, Cache, Capability, Graph, Plugin, Result, StoreConfig};
use storage::Storage;

/// The backend's name in plugins.toml.
const BACKEND: &str = "files";

/// The plugin: one backend, `files`, serving the graph and cache
/// capabilities.
#[derive(Clone, Copy, Debug, Default)]
pub struct FilesPlugin;

impl FilesPlugin {
    /// What the `files` backend declares: graph and cache, TTLs enforced
    /// by the plugin, persistent.
    pub fn descriptor() -> BackendDescriptor {
        let mut d = BackendDescriptor::new(BACKEND, &[Capability::Graph, Capability::Cache])
            .describe(
                "graph and cache as human-readable JSON files in a folder, an S3 bucket or an Azure Blob container (Apache OpenDAL)",
            );
        d.native_ttl = true;
        d.persistent = true;
        d
    }
}

/// Keep the request signers' log records in the plugin: reqsign logs the
/// credentials it loaded (keys included) at debug level.
fn quiet_signers() {
    backplane_core::silence_log_target("reqsign");
}

/// `e` with the store named, when it is about the section.
fn in_section(config: &StoreConfig, e: backplane_core::Error) -> backplane_core::Error {
    match e.kind() {
        backplane_core::ErrorKind::Config => config.error(e.message()),
        _ => e,
    }
}

impl Plugin for FilesPlugin {
    fn name(&self) -> &str {
        "files"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![Self::descriptor()]
    }

    fn open_graph(&self, config: &StoreConfig) -> Result<Box<dyn Graph>> {
        quiet_signers();
        let settings = FilesConfig::settings(config)?;
        let storage = Storage::open(&settings).map_err(|e| in_section(config, e))?;
        let shown = storage.shown().to_string();
        let g =
            graph::FilesGraph::open(storage, settings.pretty).map_err(|e| in_section(config, e))?;
        log::debug!("files: opened graph store '{}' in {shown}", config.store);
        Ok(Box::new(g))
    }

    fn open_cache(&self, config: &StoreConfig) -> Result<Box<dyn Cache>> {
        quiet_signers();
        let settings = FilesConfig::settings(config)?;
        let storage = Storage::open(&settings).map_err(|e| in_section(config, e))?;
        let shown = storage.shown().to_string();
        let c = cache::FilesCache::open(
            storage,
            settings.limits,
            settings.max_value_bytes,
            settings.pretty,
        )
        .map_err(|e| in_section(config, e))?;
        log::debug!("files: opened cache store '{}' in {shown}", config.store);
        Ok(Box::new(c))
    }
}

backplane_core::export_plugin!(FilesPlugin);
