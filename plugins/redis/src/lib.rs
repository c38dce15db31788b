#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backend;
mod client;
mod cluster;
mod codec;
mod config;
mod keys;
mod scripts;
#[cfg(test)]
mod tests;

pub use config::RedisConfig;

use backend::RedisCache;
use backplane_core::{BackendDescriptor, Cache, Capability, Plugin, Result, StoreConfig};

/// The backend's name in plugins.toml.
const BACKEND: &str = "redis";

/// The plugin: one backend, `redis`, serving the cache capability.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedisPlugin;

impl RedisPlugin {
    /// What the `redis` backend declares.
    pub fn descriptor() -> BackendDescriptor {
        let mut d = BackendDescriptor::new(BACKEND, &[Capability::Cache]).describe(
            "cache on a Redis or Valkey server or a Redis Cluster: TTLs enforced by the server, bounded channels kept atomic by Lua scripts",
        );
        d.native_ttl = true;
        d.persistent = true;
        d
    }
}

impl Plugin for RedisPlugin {
    fn name(&self) -> &str {
        "redis"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![Self::descriptor()]
    }

    fn open_cache(&self, config: &StoreConfig) -> Result<Box<dyn Cache>> {
        let cfg = RedisConfig::from_store(config)?;
        let store = RedisCache::new(&cfg, &config.store).map_err(|e| config.error(e.message()))?;
        log::debug!(
            "redis: opened cache store '{}' on {} (prefix {}); connecting on first use",
            config.store,
            store.addr(),
            store.prefix()
        );
        Ok(Box::new(store))
    }
}

backplane_core::export_plugin!(RedisPlugin);
