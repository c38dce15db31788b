//! `backplane-qdrant-common` is what Backplane's two Qdrant backends share
//! (`qdrant-edge`, the embedded engine, and `qdrant`, the server over
//! gRPC), so that a collection means the same on both: the same point ids,
//! payload layout, filter semantics and scores. It is a plain library,
//! linked into each plugin; it is not a plugin itself.
//!
//! # Layout
//!
//! - [`collection`]: names, dimensions, page sizes and the not-found error.
//! - [`point`]: string ids to UUIDv5 point ids, the reserved payload keys
//!   (`__bp_*`), encoding and decoding a record's payload.
//! - [`filter`]: the common filter language translated to Qdrant's filter
//!   through [`filter::Native`], which each backend implements for its own
//!   filter types; what does not translate is left to core's evaluator.
//! - [`search`]: scores (higher is better) and the over-fetch loop of a
//!   search whose filter Qdrant runs only in part.
#![warn(missing_docs)]

pub mod collection;
pub mod filter;
pub mod point;
pub mod search;
