//! `backplane-plugin-redis` is Backplane's Redis backend, named `redis`: a
//! cache store (key/value with expiry, bounded conversation channels) kept
//! on a Redis or Valkey server, so it is shared by every process that
//! points at the same server and prefix, and survives as long as the
//! server keeps its data (the descriptor says `persistent: true`).
//!
//! Redis enforces the TTLs (`native_ttl: true`) and, through one Lua
//! script per `add_message`/`add_messages` call, the channel bound. The
//! plugin talks to the server with redis-rs's synchronous client through a
//! small pool of connections per store, and serves the host's async
//! `get`/`set` from a multiplexed connection on a tokio runtime it owns. The same
//! store runs on one server (`url`) or on a Redis Cluster (`nodes`): a
//! channel's keys share a hash tag, so its scripts stay atomic on a
//! cluster. Opening a store does not connect, so a host starts while Redis
//! is down; calls then fail with `Unavailable` until the server answers,
//! and connections are re-established by themselves.
//!
//! TLS (`rediss://`, `tls`) goes through rustls with the `ring` provider.
//!
//! # Layout
//!
//! - `lib.rs`: [`RedisPlugin`], its [`BackendDescriptor`], and the one
//!   [`export_plugin!`](backplane_core::export_plugin).
//! - [`config`]: [`RedisConfig`], the store section of plugins.toml.
//! - [`backend`]: [`RedisCache`], the cache capability: key names, the
//!   Lua scripts, the connection pool (single server or cluster) and the
//!   error mapping.
#![warn(missing_docs)]

pub mod backend;
pub mod config;

pub use backend::RedisCache;
pub use config::RedisConfig;

use backplane_core::{BackendDescriptor, Cache, Capability, Plugin, Result, StoreConfig};

/// The backend's name in plugins.toml.
pub const BACKEND: &str = "redis";

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

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;
    use serde_json::json;

    fn config(cap: Capability, options: serde_json::Value) -> StoreConfig {
        StoreConfig::new("conv", BACKEND, cap, options)
    }

    #[test]
    fn descriptor() {
        let d = RedisPlugin::descriptor();
        assert_eq!(d.name, "redis");
        assert_eq!(d.capabilities, vec![Capability::Cache]);
        assert!(d.native_ttl && d.persistent);
        assert!(d.filter_ops.is_empty() && d.distances.is_empty());
        assert_eq!(RedisPlugin.backends(), vec![d]);
    }

    #[test]
    fn serves_only_cache() {
        for cap in [
            Capability::Relational,
            Capability::Vector,
            Capability::Graph,
        ] {
            let e = match cap {
                Capability::Relational => {
                    RedisPlugin.open_relational(&config(cap, json!({}))).err()
                }
                Capability::Vector => RedisPlugin.open_vector(&config(cap, json!({}))).err(),
                _ => RedisPlugin.open_graph(&config(cap, json!({}))).err(),
            };
            assert_eq!(e.unwrap().kind(), ErrorKind::Unsupported);
        }
    }

    #[test]
    fn malformed_url_is_a_config_error_at_open() {
        for url in ["http://h:6379", "redis://h:notaport", "nonsense"] {
            let e = RedisPlugin
                .open_cache(&config(Capability::Cache, json!({ "url": url })))
                .err()
                .unwrap();
            assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
            assert!(e.message().contains("url"), "{url}: {e}");
        }
    }

    /// Nothing listens on port 1: opening works, calls fail with a
    /// retryable error, and keep failing the same way (a fresh connection
    /// attempt each time).
    #[test]
    fn server_down_opens_then_unavailable() {
        let c = RedisPlugin
            .open_cache(&config(
                Capability::Cache,
                json!({"url": "redis://127.0.0.1:1/0", "connect_timeout_ms": 500}),
            ))
            .unwrap();
        for _ in 0..2 {
            let e = c.get("k").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
            assert!(e.kind().is_retryable());
            assert!(e.message().contains("127.0.0.1:1"), "{e}");
            assert!(e.message().contains("retried"), "{e}");
        }
        assert_eq!(c.health().unwrap_err().kind(), ErrorKind::Unavailable);
        // Validation still comes first.
        assert_eq!(c.get("").unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn password_never_in_errors() {
        let c = RedisPlugin
            .open_cache(&config(
                Capability::Cache,
                json!({"url": "redis://u:hunter2@127.0.0.1:1/0", "password": "swordfish"}),
            ))
            .unwrap();
        let e = c.get("k").unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("swordfish"),
            "{text}"
        );
    }
}
