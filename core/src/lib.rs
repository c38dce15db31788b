//! `backplane-core` is the contract between Backplane's host and its
//! plugins: the four capability interfaces (relational, vector, cache,
//! graph), the value and error types they use, the capability descriptor a
//! backend publishes, the ABI version, and the plugin SDK.
//!
//! A plugin author depends on this crate alone, implements [`Plugin`] and the
//! traits of the capabilities it serves, and calls [`export_plugin!`] once.
//! Built as a `cdylib`, the crate becomes a library the host loads at run
//! time; linked as an `rlib`, the host finds it in its static registry.
//!
//! # Layout
//!
//! - [`error`]: [`Error`] and [`ErrorKind`], the one error type.
//! - [`value`]: [`Value`], typed SQL values, and JSON helpers for the wire.
//! - [`relational`], [`vector`], [`cache`], [`graph`]: one module per
//!   capability, each with its trait and the types its methods use.
//! - [`rows`]: borrowed values and parameters, and row sinks: what the
//!   relational fast path reads and writes.
//! - [`filter`]: the payload filter language and its evaluator.
//! - [`port`]: the default export and import of each capability, for
//!   moving a store to another backend.
//! - [`plugin`]: [`Plugin`], [`BackendDescriptor`], [`StoreConfig`],
//!   [`export_plugin!`].
//! - [`kit`]: helpers plugins share: redaction of secrets, ids, clocks,
//!   paging, atomic file writes, a connection pool.
//! - [`library`]: loading plugins and opening stores on them, for a host.
//! - `boundary` (hidden): per capability, the method list from which the
//!   plugin side's dispatcher, the host side's client and the host's async
//!   API are all generated; the wire encoding.
//! - `ffi` (private): the `abi_stable` root module and FFI-safe store
//!   handle. It is the only module that names `abi_stable` types; swapping
//!   the FFI layer touches nothing else.
//! - `build.rs`: [`WIRE_FINGERPRINT`], a hash of everything whose shape
//!   crosses the boundary; with [`CORE_VERSION`] and [`ABI_VERSION`] it
//!   decides which plugins a host loads (docs/abi.md).
#![warn(missing_docs)]

#[doc(hidden)]
pub mod boundary;
pub mod cache;
pub mod error;
mod ffi;
pub mod filter;
pub mod graph;
pub mod kit;
pub mod library;
pub mod plugin;
pub mod port;
pub mod relational;
pub mod rows;
pub mod value;
pub mod vector;

pub use cache::{
    check_batch_ids, check_value_size, parse_duration, validate_key, validate_ttl, AsyncCache,
    Cache, CacheEntry, CacheStats, ChannelInfo, ChannelLimits, Done, Message,
    DEFAULT_MAX_VALUE_BYTES,
};
pub use error::{Error, ErrorKind, Result};
pub use filter::{Condition, Filter, FilterOp, Range, Scalar};
pub use graph::{
    AsyncGraph, Direction, Edge, Graph, Neighbor, NewEdge, NewNode, Node, NodeQuery, Page, Path,
    MAX_DEPTH,
};
pub use plugin::{
    registered_plugins, resolve_path, BackendDescriptor, Capability, Health, Plugin, PluginInfo,
    Registration, StoreConfig,
};
pub use relational::{
    AsyncRelational, ColumnInfo, ColumnType, ExecResult, ForeignKey, IndexInfo, Migration,
    MigrationReport, Params, Relational, Rows, Statement, TableSchema,
};
pub use rows::{JsonRef, ParamsRef, RowSink, RowsBuilder, RowsWriter, ValueRef};
pub use value::Value;
pub use vector::{
    AsyncVector, CollectionInfo, DefaultCollection, Distance, ScrollPage, SearchHit, SearchRequest,
    Vector, VectorRecord,
};

#[doc(hidden)]
pub use ffi::backplane_root_module;
pub use ffi::log::{demote_log_target, silence_log_target};
#[doc(hidden)]
pub use inventory;

/// The version of this crate; a plugin reports the one it was built with.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");

include!(concat!(env!("OUT_DIR"), "/wire.rs"));

/// Bumped whenever the wire format across the plugin boundary changes
/// (a method list's tags or types, a type that crosses it, the FFI
/// layout). The host refuses plugins built with another.
pub const ABI_VERSION: u32 = 3;
