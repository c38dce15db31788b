#![doc = include_str!("../README.md")]
#![warn(missing_docs)]
//!
//! ## Layout
//!
//! - `config`: the store section (`FaissConfig`) and the index settings it
//!   gives.
//! - FAISS itself is `backplane-faiss-sys` (`sys/`): an index as a Rust
//!   value, over a C shim compiled against the system's FAISS.
//! - `records`: `records.db`, the SQLite file holding ids, raw vectors,
//!   documents and payloads: the store's source of truth.
//! - `index`: one collection's FAISS index, its file, and how it is checked
//!   against `records.db` and brought up to date when it opens.
//! - `vector`: the vector capability over the two.

mod config;
mod index;
mod records;
mod vector;

pub use config::FaissConfig;

use backplane_core::{BackendDescriptor, Capability, Error, Plugin, Result, StoreConfig, Vector};
use backplane_sqlite_engine::Db;
use std::fs::{File, TryLockError};

/// The backend's name in plugins.toml.
const BACKEND: &str = "faiss";

/// How long a write waits for `records.db` when another connection holds
/// it (only tools such as the `sqlite3` shell can: the folder is locked).
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The plugin: one backend, `faiss`, serving vector stores.
#[derive(Clone, Copy, Debug, Default)]
pub struct FaissPlugin;

impl FaissPlugin {
    /// What the `faiss` backend declares.
    pub fn descriptor() -> BackendDescriptor {
        let mut d = BackendDescriptor::new(BACKEND, &[Capability::Vector]).describe(
            "FAISS indexes (flat, HNSW or IVF) with records in SQLite beside them: vector",
        );
        d.persistent = true;
        d
    }
}

impl Plugin for FaissPlugin {
    fn name(&self) -> &str {
        BACKEND
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![Self::descriptor()]
    }

    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        let cfg = FaissConfig::from_store(config)?;
        let tuning = cfg.tuning(config)?;
        let default = cfg.default_collection(config)?;
        let folder = config.resolve_path(&cfg.path);
        if folder.is_file() {
            return Err(config.error(format!(
                "path {} is a file: the faiss backend keeps a folder (records.db and index files); give a folder's path",
                folder.display()
            )));
        }
        std::fs::create_dir_all(&folder).map_err(|e| {
            config.error(format!(
                "cannot create the folder {}: {e}; check `path` and the folder's permissions",
                folder.display()
            ))
        })?;
        let lock_path = folder.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                config.error(format!(
                    "cannot open {}: {e}; check the folder's permissions",
                    lock_path.display()
                ))
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::unavailable(format!(
                    "the faiss store in {} is open already (in another process, or another store of this one): \
                     one store at a time opens a folder; close the other, or give this store its own `path`",
                    folder.display()
                )))
            }
            Err(TryLockError::Error(e)) => {
                return Err(config.error(format!(
                    "cannot lock {}: {e}",
                    lock_path.display()
                )))
            }
        }
        let db = Db::open(config, Some(&folder.join("records.db")), BUSY_TIMEOUT_MS)?;
        Ok(Box::new(vector::FaissVector::open(
            db, folder, lock, tuning, default,
        )?))
    }
}

backplane_core::export_plugin!(FaissPlugin);
