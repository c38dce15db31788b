//! The store section of plugins.toml as the qdrant-edge backend reads it.
//!
//! ```toml
//! [vector.memories]
//! backend = "qdrant-edge"
//! path = "data/memories"
//! # optional:
//! dimension = 384          # create a collection named after the store on open
//! distance = "cosine"
//! hnsw_m = 16
//! hnsw_ef_construct = 128
//! hnsw_ef = 128
//! ```

use backplane_core::{Capability, Result, StoreConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default of [`QdrantEdgeConfig::hnsw_m`].
pub(crate) const DEFAULT_HNSW_M: usize = 16;
/// Default of [`QdrantEdgeConfig::hnsw_ef_construct`].
pub(crate) const DEFAULT_HNSW_EF_CONSTRUCT: usize = 128;
/// Default of [`QdrantEdgeConfig::hnsw_ef`].
pub(crate) const DEFAULT_HNSW_EF: usize = 128;
/// Default of [`QdrantEdgeConfig::indexing_threshold_kb`] (Qdrant's own).
pub(crate) const DEFAULT_INDEXING_THRESHOLD_KB: usize = 10_000;
/// Default of [`QdrantEdgeConfig::index_after_idle_ms`].
pub(crate) const DEFAULT_INDEX_AFTER_IDLE_MS: u64 = 1_000;
/// Default of [`QdrantEdgeConfig::wal_segment_mb`] (Qdrant's own).
pub(crate) const DEFAULT_WAL_SEGMENT_MB: usize = 32;
/// The largest `wal_segment_mb` accepted.
const MAX_WAL_SEGMENT_MB: usize = 1024;

/// Options of a `backend = "qdrant-edge"` store.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QdrantEdgeConfig {
    /// The folder holding the store's collections, one sub-folder each.
    /// Required. A relative path is resolved against the folder of
    /// plugins.toml (`~/` expands to the home folder); missing folders are
    /// created. One process at a time may open a collection: a second
    /// process gets an `Unavailable` error naming the folder.
    pub path: String,

    /// When given, a collection named after the store is created on open
    /// (if absent) with this dimension. Default: none.
    #[serde(default)]
    pub dimension: Option<u32>,

    /// The distance of that default collection: `cosine`, `dot` or
    /// `euclidean`. Default: `cosine`. Needs `dimension`.
    #[serde(default)]
    pub distance: Option<String>,

    /// HNSW: links per node. More links give better recall and a larger,
    /// slower-to-build index. Default: 16. A change applies to existing
    /// collections too: their indexes are rebuilt in the background.
    #[serde(default)]
    pub hnsw_m: Option<usize>,

    /// HNSW: candidates considered while building. Default: 128. A change
    /// rebuilds existing indexes, like `hnsw_m`.
    #[serde(default)]
    pub hnsw_ef_construct: Option<usize>,

    /// HNSW: candidates considered per search (at least `k` are always
    /// considered). Higher gives better recall and slower searches.
    /// Default: 128.
    #[serde(default)]
    pub hnsw_ef: Option<usize>,

    /// Vectors of a collection beyond this many KiB that are not yet in
    /// an HNSW index get one built (Qdrant's indexing threshold); below it
    /// they are searched exactly, which is as fast at that size.
    /// Default: 10000 (about 6,500 vectors of 384 dimensions).
    #[serde(default)]
    pub indexing_threshold_kb: Option<usize>,

    /// How long a collection must go without writes before its index is
    /// built in the background, in milliseconds. A search that finds more
    /// unindexed vectors than `indexing_threshold_kb` builds it first
    /// instead of scanning. Default: 1000.
    #[serde(default)]
    pub index_after_idle_ms: Option<u64>,

    /// Keep vectors in memory-mapped files instead of RAM. Default: false.
    #[serde(default)]
    pub vectors_on_disk: Option<bool>,

    /// Size of each write-ahead-log file, in MiB (1 to 1024). The log is
    /// memory-mapped: the file being written counts in the process's
    /// resident memory until it is full and closed, so resident memory
    /// rises by up to this much and falls back as each file fills. Smaller
    /// files keep that rise small on devices with little memory; larger
    /// ones mean fewer files. Applies to existing collections from their
    /// next log file on. Default: 32 (Qdrant's own).
    #[serde(default)]
    pub wal_segment_mb: Option<usize>,
}

pub(crate) use backplane_core::vector::DefaultCollection;

/// The settings a collection is created and searched with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// HNSW links per node.
    pub m: usize,
    /// HNSW build candidates.
    pub ef_construct: usize,
    /// HNSW search candidates.
    pub ef: usize,
    /// Indexing threshold in KiB.
    pub indexing_threshold_kb: usize,
    /// Idle time before a background index build.
    pub index_after_idle: Duration,
    /// Vectors in memory-mapped files.
    pub vectors_on_disk: bool,
    /// Write-ahead-log file size in MiB.
    pub wal_segment_mb: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            m: DEFAULT_HNSW_M,
            ef_construct: DEFAULT_HNSW_EF_CONSTRUCT,
            ef: DEFAULT_HNSW_EF,
            indexing_threshold_kb: DEFAULT_INDEXING_THRESHOLD_KB,
            index_after_idle: Duration::from_millis(DEFAULT_INDEX_AFTER_IDLE_MS),
            vectors_on_disk: false,
            wal_segment_mb: DEFAULT_WAL_SEGMENT_MB,
        }
    }
}

impl QdrantEdgeConfig {
    /// Parse and check a store section.
    pub fn from_store(store: &StoreConfig) -> Result<QdrantEdgeConfig> {
        store.require(Capability::Vector, "qdrant-edge")?;
        let cfg: QdrantEdgeConfig = store.parse()?;
        if cfg.path.trim().is_empty() {
            return Err(store.error(
                "`path` is empty: give the folder for the collections, e.g. path = \"data/memories\"",
            ));
        }
        cfg.tuning(store)?;
        cfg.default_collection(store)?;
        Ok(cfg)
    }

    /// The store's folder, resolved against plugins.toml's folder.
    pub fn resolved_path(&self, store: &StoreConfig) -> PathBuf {
        store.resolve_path(&self.path)
    }

    /// The HNSW and indexing settings, checked.
    pub fn tuning(&self, store: &StoreConfig) -> Result<Tuning> {
        let d = Tuning::default();
        let t = Tuning {
            m: self.hnsw_m.unwrap_or(d.m),
            ef_construct: self.hnsw_ef_construct.unwrap_or(d.ef_construct),
            ef: self.hnsw_ef.unwrap_or(d.ef),
            indexing_threshold_kb: self
                .indexing_threshold_kb
                .unwrap_or(d.indexing_threshold_kb),
            index_after_idle: self
                .index_after_idle_ms
                .map_or(d.index_after_idle, Duration::from_millis),
            vectors_on_disk: self.vectors_on_disk.unwrap_or(d.vectors_on_disk),
            wal_segment_mb: self.wal_segment_mb.unwrap_or(d.wal_segment_mb),
        };
        backplane_qdrant_common::collection::check_hnsw(
            store,
            Some(t.m as u64),
            Some(t.ef_construct as u64),
            Some(t.ef as u64),
        )?;
        if t.indexing_threshold_kb == 0 {
            return Err(store.error(
                "`indexing_threshold_kb` is 0: give the size in KiB above which vectors are indexed, e.g. 10000",
            ));
        }
        if !(1..=MAX_WAL_SEGMENT_MB).contains(&t.wal_segment_mb) {
            return Err(store.error(format!(
                "`wal_segment_mb` is {}: give the write-ahead-log file size in MiB, 1 to {MAX_WAL_SEGMENT_MB}, e.g. {DEFAULT_WAL_SEGMENT_MB}",
                t.wal_segment_mb
            )));
        }
        Ok(t)
    }

    /// The collection to create on open, if `dimension` is set.
    pub fn default_collection(&self, store: &StoreConfig) -> Result<Option<DefaultCollection>> {
        DefaultCollection::from_options(store, self.dimension, self.distance.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;
    use serde_json::json;

    fn store(options: serde_json::Value) -> StoreConfig {
        StoreConfig::new("mem", "qdrant-edge", Capability::Vector, options)
    }

    #[test]
    fn defaults_and_checks() {
        let cfg = QdrantEdgeConfig::from_store(&store(json!({"path": "x"}))).unwrap();
        assert_eq!(cfg.tuning(&store(json!({}))).unwrap(), Tuning::default());
        for bad in [
            json!({}),
            json!({"path": ""}),
            json!({"path": "x", "hnsw_m": 1}),
            json!({"path": "x", "hnsw_ef": 0}),
            json!({"path": "x", "distance": "dot"}),
            json!({"path": "x", "dimension": 0}),
            json!({"path": "x", "dimension": 3, "distance": "manhattan"}),
            json!({"path": "x", "url": "http://localhost:6334"}),
            json!({"path": "x", "wal_segment_mb": 0}),
            json!({"path": "x", "wal_segment_mb": 1025}),
        ] {
            let e = QdrantEdgeConfig::from_store(&store(bad.clone())).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}: {e}");
        }
        let e = QdrantEdgeConfig::from_store(&StoreConfig::new(
            "c",
            "qdrant-edge",
            Capability::Cache,
            json!({"path": "x"}),
        ))
        .unwrap_err();
        assert!(e.message().contains("vector stores only"), "{e}");
        let e = QdrantEdgeConfig::from_store(&store(json!({"path": "x", "wal_segment_mb": 0})))
            .unwrap_err();
        assert!(
            e.message().contains("`wal_segment_mb` is 0: give")
                && e.message().contains("1 to 1024"),
            "{e}"
        );
        let t = QdrantEdgeConfig::from_store(&store(json!({"path": "x", "wal_segment_mb": 4})))
            .unwrap()
            .tuning(&store(json!({})))
            .unwrap();
        assert_eq!(t.wal_segment_mb, 4);
    }
}
