//! `backplane-host` is what an application embeds: it reads `plugins.toml`,
//! discovers and loads plugin libraries, opens every configured store and
//! hands out cheap, cloneable handles with an async and a blocking API. The
//! `backplane` command is built on it by `backplane-cli` (`cli/`).
//!
//! ```no_run
//! # async fn f() -> backplane_host::Result<()> {
//! let storage = backplane_host::Storage::open("plugins.toml")?;
//! let users = storage.relational("user_data")?;
//! users.execute("CREATE TABLE IF NOT EXISTS u (id INTEGER PRIMARY KEY, name TEXT)", ()).await?;
//! let rows = users.blocking().query("SELECT count(*) FROM u", &backplane_host::Params::None)?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`config`]: plugins.toml parsing, interpolation, profiles, overrides.
//! - `loader`: plugin discovery over the search paths, through
//!   `backplane_core::library`; every failure one line ([`Registry`]).
//! - `storage`: [`Storage`] and the store handles, whose async methods are
//!   generated from each capability's method list.
//! - `declared`: where a backend declares less than the interface
//!   promises (filter operators, batch sizes, expiry), the host makes up
//!   the difference.
//! - `layer`: how a store layer implements a capability's trait from the
//!   same list; `mirror`: a store made of several stores of one capability,
//!   writes to all (journalled for a member that is down), reads from the
//!   first in sync, which also serves a cache's `fallback`; [`ops`]: the
//!   operations layers (metrics, tracing, timeout, concurrency, retry,
//!   chaos); [`crypt`]: encryption at rest, a layer under the operations
//!   layers of an encrypted cache, vector or graph store, and `rekey`;
//!   [`access`]: principals and grants, and the handles bound to one;
//!   [`tenant`]: views in which one tenant sees only its own records.
//! - [`port`]: migrate, back up, restore and verify: moving every record
//!   of a store to another backend or into a portable archive.
//! - `demo`: the chat-assistant walk-through behind `backplane demo`.
#![warn(missing_docs)]

pub mod access;
pub mod config;
pub mod crypt;
mod declared;
mod demo;
mod layer;
mod loader;
mod mirror;
pub mod ops;
pub mod port;
mod runners;
mod storage;
pub mod tenant;

pub use backplane_core::{
    params, BackendDescriptor, CacheStats, Capability, CollectionInfo, Condition, Direction,
    Distance, Edge, Error, ErrorKind, ExecResult, Filter, Health, Message, Migration,
    MigrationReport, Neighbor, NewEdge, NewNode, Node, NodeQuery, Page, Params, Path, Range,
    Result, Rows, ScrollPage, SearchHit, SearchRequest, Statement, TableSchema, Value,
    VectorRecord, CORE_VERSION,
};
/// The capability traits, for the blocking API.
pub mod traits {
    pub use backplane_core::{Cache, Graph, Relational, Vector};
}
pub use config::Config;
pub use demo::run_demo;
pub use loader::{library_files, sha256_file, BackendInfo, LoadFailure, PluginSource, Registry};
pub use port::{
    verify_archive, ArchiveReport, CopyOptions, Merge, Progress, Quiet, Report, StoreRef,
};
pub use storage::{
    CacheStore, GraphStore, RelationalStore, Storage, StorageBuilder, StoreHealth, VectorStore,
};
