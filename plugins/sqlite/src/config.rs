//! The store section of plugins.toml as the sqlite backend reads it.
//!
//! ```toml
//! [relational.user_data]
//! backend = "sqlite"
//! path = "data/users.db"
//! busy_timeout_ms = 5000
//! ```
//!
//! One struct serves all four capabilities; keys that only make sense for
//! one capability (`max_messages`, `ttl`, `dimension`, `distance`,
//! `search_cache_mb`) are
//! rejected elsewhere, so a misplaced key is reported instead of ignored.

use backplane_core::{parse_duration, Capability, Result, StoreConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// The path value that opens a private in-memory database instead of a file.
pub(crate) const MEMORY_PATH: &str = ":memory:";

/// Options of one sqlite store.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteConfig {
    /// The database file. Required. A relative path is resolved against the
    /// folder of plugins.toml (`~/` expands to the home folder); missing
    /// parent folders are created. `":memory:"` opens a private in-memory
    /// database that lives as long as the store.
    ///
    /// Several stores may name the same file (say a graph and a vector store
    /// in `data/knowledge.db`): each capability keeps its data in its own
    /// `_bp_*` tables.
    pub path: String,

    /// How long a statement waits for another connection's lock before it
    /// fails with `Unavailable`, in milliseconds. Default: `5000`.
    #[serde(default = "default_busy_timeout_ms")]
    pub busy_timeout_ms: u64,

    /// Cache stores only: most messages kept per channel; adding one more
    /// drops the oldest. Default: `1000`.
    #[serde(default)]
    pub max_messages: Option<usize>,

    /// Cache stores only: a channel expires this long after its last
    /// message, written like `"30s"`, `"15m"`, `"2h"`, `"1d"`, `"250ms"`.
    /// Default: none (channels never expire).
    #[serde(default)]
    pub ttl: Option<String>,

    /// Cache stores only: the largest value or message kept, in bytes; a
    /// larger one is refused. Default: 16 MiB, as on every cache backend.
    #[serde(default)]
    pub max_value_bytes: Option<usize>,

    /// Vector stores only: when given, a collection named after the store
    /// is created on open (if absent) with this dimension. Default: none.
    #[serde(default)]
    pub dimension: Option<u32>,

    /// Vector stores only: the distance of that default collection:
    /// `cosine`, `dot` or `euclidean`. Default: `cosine`. Needs `dimension`.
    #[serde(default)]
    pub distance: Option<String>,

    /// Vector stores only: memory, in MiB, for the copy of each searched
    /// collection's vectors that search keeps in memory (see the README).
    /// A collection larger than this is searched straight from the table,
    /// which is several times slower. `0` turns the copy off.
    /// Default: `512`.
    #[serde(default)]
    pub search_cache_mb: Option<u64>,
}

fn default_busy_timeout_ms() -> u64 {
    5000
}

/// The default of `max_messages`.
pub(crate) const DEFAULT_MAX_MESSAGES: usize = 1000;

/// The default of `search_cache_mb`.
pub(crate) const DEFAULT_SEARCH_CACHE_MB: u64 = 512;

pub(crate) use backplane_core::vector::DefaultCollection;

impl SqliteConfig {
    /// Parse and check a store section for the capability it is opened as.
    pub fn from_store(store: &StoreConfig) -> Result<SqliteConfig> {
        let cfg: SqliteConfig = store.parse()?;
        if cfg.path.trim().is_empty() {
            return Err(store.error(
                "`path` is empty: give the database file, e.g. path = \"data/app.db\", or \":memory:\"",
            ));
        }
        let misplaced = |key: &str, only: Capability| {
            store.error(format!(
                "`{key}` applies only to {only} stores with backend \"sqlite\": remove it from this section"
            ))
        };
        if store.capability != Capability::Cache {
            if cfg.max_messages.is_some() {
                return Err(misplaced("max_messages", Capability::Cache));
            }
            if cfg.ttl.is_some() {
                return Err(misplaced("ttl", Capability::Cache));
            }
            if cfg.max_value_bytes.is_some() {
                return Err(misplaced("max_value_bytes", Capability::Cache));
            }
        }
        if store.capability != Capability::Vector {
            if cfg.dimension.is_some() {
                return Err(misplaced("dimension", Capability::Vector));
            }
            if cfg.distance.is_some() {
                return Err(misplaced("distance", Capability::Vector));
            }
            if cfg.search_cache_mb.is_some() {
                return Err(misplaced("search_cache_mb", Capability::Vector));
            }
        }
        if cfg.max_messages == Some(0) {
            return Err(store.error("`max_messages` is 0: give at least 1"));
        }
        if cfg.max_value_bytes == Some(0) {
            return Err(store.error("`max_value_bytes` is 0: give a positive size in bytes"));
        }
        // Parse eagerly so a bad value fails at open, not at first use.
        cfg.channel_ttl(store)?;
        cfg.default_collection(store)?;
        Ok(cfg)
    }

    /// Whether `path` is the in-memory marker.
    pub(crate) fn is_memory(&self) -> bool {
        self.path == MEMORY_PATH
    }

    /// The database file, resolved against plugins.toml's folder.
    pub(crate) fn resolved_path(&self, store: &StoreConfig) -> PathBuf {
        if self.is_memory() {
            PathBuf::from(MEMORY_PATH)
        } else {
            store.resolve_path(&self.path)
        }
    }

    /// `max_messages`, or its default.
    pub(crate) fn max_messages(&self) -> usize {
        self.max_messages.unwrap_or(DEFAULT_MAX_MESSAGES)
    }

    /// `max_value_bytes`, or its default.
    pub(crate) fn max_value_bytes(&self) -> usize {
        self.max_value_bytes
            .unwrap_or(backplane_core::DEFAULT_MAX_VALUE_BYTES)
    }

    /// `search_cache_mb` in bytes, or its default.
    pub(crate) fn search_cache_bytes(&self) -> u64 {
        self.search_cache_mb
            .unwrap_or(DEFAULT_SEARCH_CACHE_MB)
            .saturating_mul(1 << 20)
    }

    /// The parsed channel TTL.
    pub(crate) fn channel_ttl(&self, store: &StoreConfig) -> Result<Option<Duration>> {
        self.ttl
            .as_deref()
            .map(|t| parse_duration(t).map_err(|e| store.error(format!("`ttl`: {}", e.message()))))
            .transpose()
    }

    /// The collection to create on open, if `dimension` is set.
    pub(crate) fn default_collection(
        &self,
        store: &StoreConfig,
    ) -> Result<Option<DefaultCollection>> {
        DefaultCollection::from_options(store, self.dimension, self.distance.as_deref())
    }
}
