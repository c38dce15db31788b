//! The store section of plugins.toml as the faiss backend reads it.
//!
//! ```toml
//! [vector.memories]
//! backend = "faiss"
//! path = "data/memories-faiss"     # a folder: records.db and one index file per collection
//! index = "hnsw"                   # flat (exact, the default), hnsw or ivf
//! # optional:
//! dimension = 384                  # create a collection named after the store on open
//! distance = "cosine"
//! hnsw_m = 32
//! hnsw_ef_construction = 40
//! hnsw_ef_search = 64
//! ivf_lists = 256
//! ivf_probe = 16
//! ivf_train_at = 9984
//! save_every = 10000
//! ```

use backplane_core::vector::DefaultCollection;
use backplane_core::{Capability, Result, StoreConfig};
use serde::Deserialize;

/// Options of a `backend = "faiss"` store.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaissConfig {
    /// The folder holding the store: `records.db` (SQLite: ids, raw
    /// vectors, documents, payloads) and one `<collection>.faiss` index
    /// file per collection. Required. A relative path is resolved against
    /// the folder of plugins.toml; missing folders are created. One process
    /// at a time opens a folder.
    pub path: String,
    /// When given, a collection named after the store is created on open
    /// (if absent) with this dimension.
    #[serde(default)]
    pub dimension: Option<u32>,
    /// The distance of that default collection: `cosine` (default), `dot`
    /// or `euclidean`. Needs `dimension`.
    #[serde(default)]
    pub distance: Option<String>,
    /// The index type: `flat` (exact search, the default), `hnsw` (a graph,
    /// approximate, fast) or `ivf` (inverted lists over k-means centroids,
    /// approximate, trained once `ivf_train_at` records exist and searched
    /// exactly before). A change rebuilds existing indexes when they open.
    #[serde(default)]
    pub index: Option<String>,
    /// HNSW: links per node. Default 32.
    #[serde(default)]
    pub hnsw_m: Option<u32>,
    /// HNSW: candidates considered while adding. Default 40.
    #[serde(default)]
    pub hnsw_ef_construction: Option<u32>,
    /// HNSW: candidates considered per search (at least the number asked
    /// for). Default 64.
    #[serde(default)]
    pub hnsw_ef_search: Option<u32>,
    /// IVF: inverted lists (centroids). Default 256.
    #[serde(default)]
    pub ivf_lists: Option<u32>,
    /// IVF: lists searched per query. Default 16.
    #[serde(default)]
    pub ivf_probe: Option<u32>,
    /// IVF: records a collection must hold before the index is trained on
    /// them (searches are exact until then). Default 39 × `ivf_lists`,
    /// FAISS's minimum for a good training.
    #[serde(default)]
    pub ivf_train_at: Option<u64>,
    /// Records changed since an index file was last written after which it
    /// is written again (it is also written when the store closes). Writes
    /// are durable in `records.db` when acknowledged either way: an index
    /// file behind it is brought up to date when it opens. Default 10000.
    #[serde(default)]
    pub save_every: Option<u64>,
}

/// The index type of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Exact search over every vector.
    Flat,
    /// Hierarchical navigable small-world graph.
    Hnsw,
    /// Inverted file over k-means centroids.
    Ivf,
}

/// What the store's indexes are built and searched with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// The index type.
    pub kind: Kind,
    /// HNSW links per node.
    pub hnsw_m: u32,
    /// HNSW build breadth.
    pub hnsw_ef_construction: u32,
    /// HNSW search breadth.
    pub hnsw_ef_search: u32,
    /// IVF lists.
    pub ivf_lists: u32,
    /// IVF lists probed.
    pub ivf_probe: u32,
    /// Records before IVF training.
    pub ivf_train_at: u64,
    /// Changed records between index writes.
    pub save_every: u64,
}

impl Tuning {
    /// FAISS's factory description of the index this tuning asks for.
    pub(crate) fn description(&self) -> String {
        match self.kind {
            Kind::Flat => "Flat".to_string(),
            Kind::Hnsw => format!("HNSW{}", self.hnsw_m),
            Kind::Ivf => format!("IVF{},Flat", self.ivf_lists),
        }
    }
}

impl FaissConfig {
    /// Read and check a store section: each mistake is one `Config` error
    /// naming the option.
    pub(crate) fn from_store(store: &StoreConfig) -> Result<FaissConfig> {
        store.require(Capability::Vector, "faiss")?;
        let cfg: FaissConfig = store.parse()?;
        if cfg.path.trim().is_empty() {
            return Err(store.error(
                "path is empty: give the folder for the store (e.g. \"data/memories-faiss\")",
            ));
        }
        Ok(cfg)
    }

    /// The default collection, if `dimension` is set.
    pub(crate) fn default_collection(
        &self,
        store: &StoreConfig,
    ) -> Result<Option<DefaultCollection>> {
        DefaultCollection::from_options(store, self.dimension, self.distance.as_deref())
    }

    /// The index settings, checked.
    pub(crate) fn tuning(&self, store: &StoreConfig) -> Result<Tuning> {
        let kind = match self.index.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("flat") => Kind::Flat,
            Some("hnsw") => Kind::Hnsw,
            Some("ivf") => Kind::Ivf,
            Some(other) => {
                return Err(store.error(format!(
                    "index = \"{other}\" is not an index type: use \"flat\" (exact), \"hnsw\" or \"ivf\""
                )))
            }
        };
        let positive = |name: &str, v: Option<u32>, default: u32, max: u32| -> Result<u32> {
            match v {
                None => Ok(default),
                Some(0) => Err(store.error(format!(
                    "{name} = 0: give at least 1, or leave it out for {default}"
                ))),
                Some(n) if n > max => {
                    Err(store.error(format!("{name} = {n} is too large: give at most {max}")))
                }
                Some(n) => Ok(n),
            }
        };
        let hnsw_m = positive("hnsw_m", self.hnsw_m, 32, 512)?;
        let hnsw_ef_construction = positive(
            "hnsw_ef_construction",
            self.hnsw_ef_construction,
            40,
            1 << 16,
        )?;
        let hnsw_ef_search = positive("hnsw_ef_search", self.hnsw_ef_search, 64, 1 << 16)?;
        let ivf_lists = positive("ivf_lists", self.ivf_lists, 256, 1 << 20)?;
        let ivf_probe = positive("ivf_probe", self.ivf_probe, 16, 1 << 20)?;
        let ivf_train_at = match self.ivf_train_at {
            None => 39 * u64::from(ivf_lists),
            Some(n) if n < u64::from(ivf_lists) => {
                return Err(store.error(format!(
                    "ivf_train_at = {n} is below ivf_lists = {ivf_lists}: k-means needs at least one record per list; raise it (39 × ivf_lists is FAISS's advice) or leave it out"
                )))
            }
            Some(n) => n,
        };
        let save_every = match self.save_every {
            Some(0) => {
                return Err(store.error(
                    "save_every = 0: give at least 1 (records changed between index writes), or leave it out for 10000",
                ))
            }
            Some(n) => n,
            None => 10_000,
        };
        if kind != Kind::Ivf
            && (self.ivf_lists.is_some() || self.ivf_probe.is_some() || self.ivf_train_at.is_some())
        {
            return Err(store.error("ivf_lists, ivf_probe and ivf_train_at apply to index = \"ivf\" only: remove them, or set index = \"ivf\""));
        }
        if kind != Kind::Hnsw
            && (self.hnsw_m.is_some()
                || self.hnsw_ef_construction.is_some()
                || self.hnsw_ef_search.is_some())
        {
            return Err(store.error("hnsw_m, hnsw_ef_construction and hnsw_ef_search apply to index = \"hnsw\" only: remove them, or set index = \"hnsw\""));
        }
        Ok(Tuning {
            kind,
            hnsw_m,
            hnsw_ef_construction,
            hnsw_ef_search,
            ivf_lists,
            ivf_probe,
            ivf_train_at,
            save_every,
        })
    }
}
