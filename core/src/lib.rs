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
//! - [`rows`]: borrowed values and parameters, and row sinks: the
//!   relational fast path across the boundary.
//! - [`filter`]: the payload filter language and its evaluator.
//! - [`plugin`]: [`Plugin`], [`BackendDescriptor`], [`StoreConfig`],
//!   [`export_plugin!`].
//! - [`kit`]: helpers plugins share: redaction of secrets, ids, clocks,
//!   paging, atomic file writes, a connection pool.
//! - [`proto`]: the calls that cross the boundary, and their dispatchers.
//! - [`ffi`]: the `abi_stable` root module and FFI-safe store handle. It is
//!   the only module that names `abi_stable` types; swapping the FFI layer
//!   touches nothing else.
#![warn(missing_docs)]

pub mod cache;
pub mod error;
pub mod ffi;
pub mod filter;
pub mod graph;
pub mod kit;
pub mod plugin;
pub mod proto;
pub mod relational;
pub mod rows;
pub mod value;
pub mod vector;

pub use cache::{
    check_batch_ids, parse_duration, validate_key, validate_ttl, AsyncCache, Cache, CacheStats,
    ChannelLimits, Done, Message,
};
pub use error::{Error, ErrorKind, Result};
pub use filter::{Condition, Filter, FilterOp, Range, Scalar};
pub use graph::{
    Direction, Edge, Graph, Neighbor, NewEdge, NewNode, Node, NodeQuery, Page, Path, MAX_DEPTH,
};
pub use plugin::{
    registered_plugins, resolve_path, BackendDescriptor, Capability, Health, Plugin, PluginInfo,
    Registration, StoreConfig,
};
pub use relational::{
    ColumnInfo, ExecResult, Migration, MigrationReport, Params, Relational, Rows, Statement,
    TableSchema,
};
pub use rows::{JsonRef, ParamsRef, RowSink, RowsBuilder, RowsWriter, ValueRef};
pub use value::Value;
pub use vector::{
    CollectionInfo, DefaultCollection, Distance, ScrollPage, SearchHit, SearchRequest, Vector,
    VectorRecord,
};

#[doc(hidden)]
pub use inventory;

/// The version of this crate; a plugin reports the one it was built with.
pub const CORE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Bumped whenever the wire format of [`proto`] changes. The host refuses
/// plugins built with another.
pub const ABI_VERSION: u32 = 2;
