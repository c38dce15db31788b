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

use backplane_core::{BackendDescriptor, Capability, Plugin, Relational, Result, StoreConfig};

/// The backend's name in plugins.toml.
const BACKEND: &str = "duckdb";

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
        let file = cfg.file(config);
        let conn = cfg.open(config, file.as_deref())?;
        Ok(Box::new(DuckRelational::new(conn, file)))
    }
}

backplane_core::export_plugin!(DuckDbPlugin);
