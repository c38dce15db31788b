//! The store section of plugins.toml as the duckdb backend reads it.
//!
//! ```toml
//! [relational.project_data]
//! backend = "duckdb"
//! path = "data/project.duckdb"
//! threads = 2
//! memory_limit = "2GB"
//! checkpoint_threshold = "4MB"
//! ```

use backplane_core::{Capability, Error, Result, StoreConfig};
use duckdb::Connection;
use serde::Deserialize;
use std::path::Path;
use std::path::PathBuf;

/// The path value that opens a private in-memory database instead of a file.
pub(crate) const MEMORY_PATH: &str = ":memory:";

/// Options of one duckdb store.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuckDbConfig {
    /// The database file. Required. A relative path is resolved against the
    /// folder of plugins.toml; missing parent folders are created.
    /// `":memory:"` opens a private in-memory database that lives as long
    /// as the store. A DuckDB file is opened by one process at a time.
    pub path: String,
    /// Threads DuckDB may use for one query. Default: DuckDB's (one per
    /// core).
    #[serde(default)]
    pub threads: Option<u32>,
    /// The most memory DuckDB may use, as DuckDB writes it (`"2GB"`,
    /// `"512MB"`). Default: DuckDB's (80% of the machine's memory).
    #[serde(default)]
    pub memory_limit: Option<String>,
    /// How much write-ahead log DuckDB lets build up before it checkpoints
    /// the changes into the database file, as DuckDB writes it (`"4MB"`):
    /// the first commit after the log passes this size checkpoints it, so
    /// the log file holds about this much plus the last transaction.
    /// Default: DuckDB's (16 MiB).
    #[serde(default)]
    pub checkpoint_threshold: Option<String>,
}

/// Whether `m` reads as an amount of memory as DuckDB writes it: a positive
/// number and an optional unit (`"2GB"`, `"512 MB"`, `"4MiB"`).
fn is_amount(m: &str) -> bool {
    m.trim()
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .trim()
        .parse::<f64>()
        .is_ok_and(|n| n > 0.0)
}

impl DuckDbConfig {
    /// Read and check a store section.
    pub(crate) fn from_store(store: &StoreConfig) -> Result<DuckDbConfig> {
        store.require(Capability::Relational, "duckdb")?;
        let cfg: DuckDbConfig = store.parse()?;
        if cfg.path.trim().is_empty() {
            return Err(store.error(
                "path is empty: give the database file (e.g. \"data/project.duckdb\") or \":memory:\"",
            ));
        }
        if cfg.threads == Some(0) {
            return Err(
                store.error("threads = 0: give at least 1, or leave it out for one per core")
            );
        }
        for (key, value, example) in [
            ("memory_limit", &cfg.memory_limit, "\"2GB\" or \"512MB\""),
            (
                "checkpoint_threshold",
                &cfg.checkpoint_threshold,
                "\"4MB\" or \"1GB\"",
            ),
        ] {
            if let Some(m) = value.as_ref().filter(|m| !is_amount(m)) {
                return Err(store.error(format!(
                    "{key} = \"{m}\" is not an amount of memory: write e.g. {example}"
                )));
            }
        }
        Ok(cfg)
    }

    /// The database file, or `None` for an in-memory database.
    pub(crate) fn file(&self, store: &StoreConfig) -> Option<PathBuf> {
        (self.path != MEMORY_PATH).then(|| store.resolve_path(&self.path))
    }

    /// DuckDB's settings for this store's connection.
    fn config(&self) -> duckdb::Result<duckdb::Config> {
        let mut c = duckdb::Config::default();
        if let Some(t) = self.threads {
            c = c.threads(t.into())?;
        }
        if let Some(m) = &self.memory_limit {
            c = c.max_memory(m)?;
        }
        if let Some(m) = &self.checkpoint_threshold {
            c = c.with("checkpoint_threshold", m)?;
        }
        Ok(c)
    }

    /// Open the database at `file` (or in memory).
    pub(crate) fn open(&self, store: &StoreConfig, file: Option<&Path>) -> Result<Connection> {
        let shown = file.map_or(":memory:".to_string(), |p| p.display().to_string());
        let fail = |e: duckdb::Error| {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").to_string();
            if first.contains("lock") {
                return Error::unavailable(store.error(format!(
                    "cannot open the DuckDB database {shown}: another process has it open \
                     (a DuckDB file is opened by one process at a time): stop that process, or give this store its own file"
                )).message().to_string());
            }
            if first.contains("not a valid DuckDB database") {
                return store.error(format!(
                    "{shown} exists but is not a DuckDB database: give a new file name, or the file of a DuckDB database"
                ));
            }
            store.error(format!(
                "cannot open the DuckDB database {shown}: {first}; check `path`, `threads`, `memory_limit` and `checkpoint_threshold`"
            ))
        };
        let config = self.config().map_err(fail)?;
        match file {
            Some(path) => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        store.error(format!(
                            "cannot create the folder {} for the database: {e}; check `path` and the folder's permissions",
                            parent.display()
                        ))
                    })?;
                }
                Connection::open_with_flags(path, config).map_err(fail)
            }
            None => Connection::open_in_memory_with_flags(config).map_err(fail),
        }
    }
}
