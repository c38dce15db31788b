#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backend;
mod config;
#[cfg(test)]
mod tests;

pub use config::CustomConfig;

use backend::CustomKv;

use backplane_core::{BackendDescriptor, Cache, Capability, Plugin, Result, StoreConfig};

/// The plugin: one backend, `custom-kv`, serving the cache capability.
#[derive(Debug, Default)]
pub struct CustomPlugin;

impl Plugin for CustomPlugin {
    fn name(&self) -> &str {
        "custom-example"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        let mut kv = BackendDescriptor::new("custom-kv", &[Capability::Cache])
            .describe("example plugin: a cache in a Mutex<HashMap>, not persistent");
        kv.native_ttl = true; // expiry is enforced here, not by the host
        vec![kv]
    }

    // Only `open_cache` is overridden: the defaults of the other `open_*`
    // methods answer that the capability is not served.
    fn open_cache(&self, config: &StoreConfig) -> Result<Box<dyn Cache>> {
        let (cfg, limits) = CustomConfig::from_store(config)?;
        Ok(Box::new(CustomKv::new(
            cfg.greeting,
            limits,
            cfg.max_value_bytes,
        )))
    }
}

backplane_core::export_plugin!(CustomPlugin);
