//! The store section of a `qdrant` vector store in plugins.toml.
//!
//! ```toml
//! [vector.memories]
//! backend = "qdrant"
//! url = "http://127.0.0.1:6334"       # the gRPC port; https:// for TLS
//! api_key_env = "QDRANT_API_KEY"      # or api_key = "..." (keep it out of the file)
//! collection_prefix = "myapp_"        # Qdrant collection = prefix + name
//! dimension = 384                     # create collection `memories` on open
//! shard_number = 6                    # distributed deployments:
//! replication_factor = 2              #   passed to Qdrant when a
//! write_consistency_factor = 1        #   collection is created
//! ```

use backplane_core::kit::net::{collection_prefix, http_url, millis, secret_from_env};
use backplane_core::kit::redact::{redact_url, Secret};
use backplane_core::{Capability, DefaultCollection, Result, StoreConfig};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Default request timeout.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default connect timeout.
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Default HNSW `ef` at search time.
const DEFAULT_HNSW_EF: u64 = 128;

/// A `qdrant` store section. `Debug` shows the url with any password in
/// it masked, and the API key as `***`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantConfig {
    /// The server's gRPC endpoint, e.g. `http://127.0.0.1:6334` (Qdrant's
    /// gRPC port is 6334; 6333 is its REST port). `https://` for TLS.
    pub url: String,
    /// The API key, when the server requires one. Prefer `api_key_env`.
    /// `Debug` shows it as `***`.
    #[serde(default)]
    pub api_key: Option<Secret<String>>,
    /// The environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Request timeout in milliseconds. Default 30000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Connect timeout in milliseconds. Default 5000.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Prepended to every collection name on the server, so several
    /// applications (or stores) can share one server. Default empty.
    #[serde(default)]
    pub collection_prefix: Option<String>,
    /// Shards of a new collection (Qdrant's default: one per node).
    #[serde(default)]
    pub shard_number: Option<u32>,
    /// Copies of each shard in a cluster (Qdrant's default: 1).
    #[serde(default)]
    pub replication_factor: Option<u32>,
    /// Replicas that must confirm a write (Qdrant's default: 1).
    #[serde(default)]
    pub write_consistency_factor: Option<u32>,
    /// Keep new collections' vectors on disk (memory-mapped).
    #[serde(default)]
    pub vectors_on_disk: Option<bool>,
    /// HNSW `m` of new collections (Qdrant's default: 16).
    #[serde(default)]
    pub hnsw_m: Option<u64>,
    /// HNSW `ef_construct` of new collections (Qdrant's default: 100).
    #[serde(default)]
    pub hnsw_ef_construct: Option<u64>,
    /// HNSW `ef` of searches. Default 128.
    #[serde(default)]
    pub hnsw_ef: Option<u64>,
    /// A collection named after the store is created on open with this
    /// dimension, if absent.
    #[serde(default)]
    pub dimension: Option<u32>,
    /// That collection's distance: `cosine` (default), `dot`, `euclidean`.
    #[serde(default)]
    pub distance: Option<String>,
}

/// What a store does with the section, checked. (No `Debug`: it holds the
/// API key; [`QdrantConfig`]'s `Debug` shows a section safely.)
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The gRPC url.
    pub(crate) url: String,
    /// The API key.
    pub(crate) api_key: Option<Secret<String>>,
    /// Request timeout.
    pub(crate) timeout: Duration,
    /// Connect timeout.
    pub(crate) connect_timeout: Duration,
    /// Collection name prefix.
    pub(crate) prefix: String,
    /// Shards of a new collection.
    pub(crate) shard_number: Option<u32>,
    /// Replication factor of a new collection.
    pub(crate) replication_factor: Option<u32>,
    /// Write consistency factor of a new collection.
    pub(crate) write_consistency_factor: Option<u32>,
    /// Vectors on disk.
    pub(crate) vectors_on_disk: Option<bool>,
    /// HNSW `m`.
    pub(crate) hnsw_m: Option<u64>,
    /// HNSW `ef_construct`.
    pub(crate) hnsw_ef_construct: Option<u64>,
    /// Search `ef`.
    pub(crate) hnsw_ef: u64,
    /// The collection to create on open.
    pub(crate) default: Option<DefaultCollection>,
}

impl QdrantConfig {
    /// Parse and check a store section.
    pub(crate) fn settings(store: &StoreConfig) -> Result<Settings> {
        store.require(Capability::Vector, "qdrant")?;
        let cfg: QdrantConfig = store.parse()?;
        let url = http_url(
            store,
            &cfg.url,
            "the server's gRPC endpoint",
            "http://127.0.0.1:6334",
        )?;
        if url.contains(":6333") {
            log::warn!(
                "qdrant: [vector.{}] url {url} names port 6333, Qdrant's REST port; this backend speaks gRPC, on port 6334 by default",
                store.store
            );
        }
        let api_key = match (&cfg.api_key, &cfg.api_key_env) {
            (Some(_), Some(_)) => {
                return Err(store.error(
                    "both `api_key` and `api_key_env` are set: keep one (api_key_env keeps the key out of the file)",
                ))
            }
            (Some(k), None) => Some(k.clone()),
            (None, Some(var)) => Some(secret_from_env(store, "api_key_env", var, "an API key")?),
            (None, None) => None,
        };
        if api_key.as_ref().is_some_and(|k| k.expose().is_empty()) {
            return Err(store.error("`api_key` is empty: give the key, or remove the line"));
        }
        let prefix = collection_prefix(store, cfg.collection_prefix.as_deref(), b"_-")?;
        for (key, v) in [
            ("shard_number", cfg.shard_number),
            ("replication_factor", cfg.replication_factor),
            ("write_consistency_factor", cfg.write_consistency_factor),
        ] {
            if v == Some(0) {
                return Err(store.error(format!(
                    "`{key}` is 0: give at least 1, or leave it out for Qdrant's default"
                )));
            }
        }
        backplane_qdrant_common::collection::check_hnsw(
            store,
            cfg.hnsw_m,
            cfg.hnsw_ef_construct,
            cfg.hnsw_ef,
        )?;
        let hnsw_ef = cfg.hnsw_ef.unwrap_or(DEFAULT_HNSW_EF);
        Ok(Settings {
            url,
            api_key,
            timeout: millis(store, cfg.timeout_ms, DEFAULT_TIMEOUT_MS, "timeout_ms")?,
            connect_timeout: millis(
                store,
                cfg.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT_MS,
                "connect_timeout_ms",
            )?,
            prefix,
            shard_number: cfg.shard_number,
            replication_factor: cfg.replication_factor,
            write_consistency_factor: cfg.write_consistency_factor,
            vectors_on_disk: cfg.vectors_on_disk,
            hnsw_m: cfg.hnsw_m,
            hnsw_ef_construct: cfg.hnsw_ef_construct,
            hnsw_ef,
            default: DefaultCollection::from_options(
                store,
                cfg.dimension,
                cfg.distance.as_deref(),
            )?,
        })
    }
}

impl fmt::Debug for QdrantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantConfig")
            .field("url", &redact_url(&self.url))
            .field("api_key", &self.api_key)
            .field("api_key_env", &self.api_key_env)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("collection_prefix", &self.collection_prefix)
            .field("shard_number", &self.shard_number)
            .field("replication_factor", &self.replication_factor)
            .field("write_consistency_factor", &self.write_consistency_factor)
            .field("vectors_on_disk", &self.vectors_on_disk)
            .field("hnsw_m", &self.hnsw_m)
            .field("hnsw_ef_construct", &self.hnsw_ef_construct)
            .field("hnsw_ef", &self.hnsw_ef)
            .field("dimension", &self.dimension)
            .field("distance", &self.distance)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;
    use serde_json::json;

    fn store(options: serde_json::Value) -> StoreConfig {
        StoreConfig::new("mem", "qdrant", Capability::Vector, options)
    }

    #[test]
    fn debug_hides_the_api_key() {
        let section = json!({"url": "https://user:pa55word@h:6334", "api_key": "s3cret-k3y"});
        let s = QdrantConfig::settings(&store(section.clone())).unwrap();
        assert_eq!(
            s.api_key.as_ref().map(|k| k.expose().as_str()),
            Some("s3cret-k3y")
        );
        let c: QdrantConfig = serde_json::from_value(section).unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("pa55word") && !d.contains("s3cret"), "{d}");
        assert!(
            d.contains("user:***@h:6334") && d.contains("api_key: Some(***)"),
            "{d}"
        );
    }

    #[test]
    fn defaults() {
        let s = QdrantConfig::settings(&store(json!({"url": "http://127.0.0.1:6334"}))).unwrap();
        assert_eq!(s.timeout, Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(s.prefix, "");
        assert_eq!(s.hnsw_ef, DEFAULT_HNSW_EF);
        assert!(s.default.is_none() && s.api_key.is_none());
        let s = QdrantConfig::settings(&store(
            json!({"url": "https://q.example:6334", "dimension": 3, "distance": "dot", "shard_number": 4, "collection_prefix": "app_"}),
        ))
        .unwrap();
        let d = s.default.unwrap();
        assert_eq!((d.name.as_str(), d.dimension), ("mem", 3));
        assert_eq!((s.shard_number, s.prefix.as_str()), (Some(4), "app_"));
    }

    #[test]
    fn mistakes_are_config_errors_naming_the_key() {
        for (bad, key) in [
            (json!({}), "url"),
            (json!({"url": "127.0.0.1:6334"}), "url"),
            (json!({"url": "http://x", "timeout_ms": 0}), "timeout_ms"),
            (
                json!({"url": "http://x", "collection_prefix": "a b"}),
                "collection_prefix",
            ),
            (
                json!({"url": "http://x", "shard_number": 0}),
                "shard_number",
            ),
            (json!({"url": "http://x", "hnsw_m": 1}), "hnsw_m"),
            (json!({"url": "http://x", "hnsw_ef": 0}), "hnsw_ef"),
            (json!({"url": "http://x", "distance": "dot"}), "dimension"),
            (
                json!({"url": "http://x", "api_key": "k", "api_key_env": "K"}),
                "api_key_env",
            ),
            (
                json!({"url": "http://x", "api_key_env": "BACKPLANE_TEST_UNSET_VARIABLE"}),
                "BACKPLANE_TEST_UNSET_VARIABLE",
            ),
            (json!({"url": "http://x", "path": "data"}), "path"),
        ] {
            let e = QdrantConfig::settings(&store(bad.clone()))
                .err()
                .expect("a mistake");
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}: {e}");
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
        let e = QdrantConfig::settings(&StoreConfig::new(
            "c",
            "qdrant",
            Capability::Cache,
            json!({"url": "http://x"}),
        ))
        .err()
        .expect("a cache section");
        assert!(e.to_string().contains("vector stores only"), "{e}");
    }
}
