#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backup;
mod config;
mod error;
mod relational;
mod schema;
mod types;

pub use config::DuckDbConfig;
pub use relational::DuckRelational;

use backplane_core::{
    BackendDescriptor, Capability, Error, Plugin, Relational, Result, StoreConfig,
};
use duckdb::Connection;
use std::path::Path;

/// The backend's name in plugins.toml.
const BACKEND: &str = "duckdb";

/// How the store's connections are opened.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    threads: Option<u32>,
    memory_limit: Option<String>,
}

impl Settings {
    fn config(&self) -> duckdb::Result<duckdb::Config> {
        let mut c = duckdb::Config::default();
        if let Some(t) = self.threads {
            c = c.threads(t.into())?;
        }
        if let Some(m) = &self.memory_limit {
            c = c.max_memory(m)?;
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
                "cannot open the DuckDB database {shown}: {first}; check `path`, `threads` and `memory_limit`"
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

/// The plugin: one backend, `duckdb`, serving relational stores.
#[derive(Clone, Copy, Debug, Default)]
pub struct DuckDbPlugin;

impl DuckDbPlugin {
    /// What the `duckdb` backend declares.
    pub fn descriptor() -> BackendDescriptor {
        let mut d = BackendDescriptor::new(BACKEND, &[Capability::Relational]).describe(format!(
            "DuckDB {} (libduckdb, linked): relational, columnar, for analytics",
            duckdb_version()
        ));
        d.persistent = true;
        d
    }
}

/// The linked library's version (`v1.5.6`).
fn duckdb_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(duckdb::ffi::duckdb_library_version()) }
        .to_string_lossy()
        .into_owned()
}

impl Plugin for DuckDbPlugin {
    fn name(&self) -> &str {
        BACKEND
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![Self::descriptor()]
    }

    fn open_relational(&self, config: &StoreConfig) -> Result<Box<dyn Relational>> {
        let cfg = DuckDbConfig::from_store(config)?;
        let settings = Settings {
            threads: cfg.threads,
            memory_limit: cfg.memory_limit.clone(),
        };
        let file = cfg.file(config);
        let conn = settings.open(config, file.as_deref())?;
        Ok(Box::new(DuckRelational::new(conn, file)))
    }
}

backplane_core::export_plugin!(DuckDbPlugin);
