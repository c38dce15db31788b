//! The graph and cache capabilities held in process memory: the `memory`
//! plugin serves them as they are, and the `files` plugin keeps one in
//! memory and writes it to JSON files after each change.
//!
//! A library, not a plugin: it exports no plugin, so a plugin links it
//! without declaring the `memory` backend a second time.
//!
//! # Layout
//!
//! - [`graph`]: [`MemoryGraph`], nodes and edges behind one lock, with the
//!   adjacency indexes of `adjacency`;
//! - [`cache`]: [`MemoryCache`], keys with expiry and bounded
//!   conversation channels.

#![warn(missing_docs)]

mod adjacency;
pub mod cache;
pub mod graph;

pub use cache::MemoryCache;
pub use graph::MemoryGraph;
