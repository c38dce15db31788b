//! qdrant-edge's engine as this backend drives it: the configuration a new
//! collection's shard gets, and the engine's errors and panics as
//! Backplane errors.
//!
//! A cosine collection's shard holds the searched vector (Qdrant's
//! default, unnamed vector, which Qdrant normalises unless its length is
//! already 1) and, for the points Qdrant changed, `raw` (dot distance,
//! which stores vectors unchanged; on disk; never indexed), which `get`
//! and `scroll` return so that vectors come back bit for bit (see
//! `backend::kept_as_given`). Dot and euclidean shards hold the searched
//! vector alone.

use crate::config::Tuning;
use backplane_core::kit::text::panic_text;
use backplane_core::{Distance, Error, Result};
use backplane_qdrant_common::collection::{keeps_raw, RAW_VECTOR};
use qdrant_edge::{
    Distance as QDistance, EdgeConfig, EdgeOptimizersConfig, EdgeVectorParams, HnswIndexConfig,
    OperationError, WalOptions,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// The searched vector: Qdrant's default (unnamed) vector.
pub(crate) const SEARCH_VECTOR: &str = "";

fn qdistance(d: Distance) -> QDistance {
    match d {
        Distance::Cosine => QDistance::Cosine,
        Distance::Dot => QDistance::Dot,
        Distance::Euclidean => QDistance::Euclid,
    }
}

/// The qdrant-edge configuration of a new collection.
pub(crate) fn edge_config(dimension: u32, distance: Distance, t: &Tuning) -> EdgeConfig {
    let mut b = EdgeConfig::builder()
        .vector(
            SEARCH_VECTOR,
            EdgeVectorParams::builder(dimension as usize, qdistance(distance))
                .on_disk(t.vectors_on_disk)
                .build(),
        )
        .hnsw_config(hnsw(t))
        .on_disk_payload(true)
        .optimizers(optimizers(t))
        .wal_options(wal_options(t));
    if keeps_raw(distance) {
        b = b.vector(
            RAW_VECTOR,
            EdgeVectorParams::builder(dimension as usize, QDistance::Dot)
                .on_disk(true)
                .hnsw_config(HnswIndexConfig { m: 0, ..hnsw(t) })
                .build(),
        );
    }
    b.build()
}

fn hnsw(t: &Tuning) -> HnswIndexConfig {
    HnswIndexConfig {
        m: t.m,
        ef_construct: t.ef_construct,
        ..HnswIndexConfig::default()
    }
}

/// The write-ahead log's file size from `wal_segment_mb`.
pub(crate) fn wal_options(t: &Tuning) -> WalOptions {
    WalOptions {
        segment_capacity: t.wal_segment_mb * 1024 * 1024,
        ..WalOptions::default()
    }
}

fn optimizers(t: &Tuning) -> EdgeOptimizersConfig {
    EdgeOptimizersConfig {
        indexing_threshold: Some(t.indexing_threshold_kb),
        ..EdgeOptimizersConfig::default()
    }
}

/// An engine error met while doing `what`.
pub(crate) fn engine(what: &str, e: OperationError) -> Error {
    Error::backend(format!("qdrant-edge: {what} failed: {e}"))
}

/// Run `f`, which may panic inside qdrant-edge (a flush does when it meets
/// a held lock or a failing disk): a panic is an error saying that `what`
/// failed.
pub(crate) fn caught<T>(what: &str, f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f))
        .map_err(|p| Error::backend(format!("qdrant-edge: {what} failed: {}", panic_text(&*p))))
}

/// The error of loading collection `name`'s shard from `dir`: a WAL locked
/// by another process is `Unavailable`.
pub(crate) fn open_error(name: &str, dir: &Path, e: OperationError) -> Error {
    let text = e.to_string();
    let lower = text.to_lowercase();
    if lower.contains("wal")
        && (lower.contains("lock")
            || lower.contains("temporarily unavailable")
            || lower.contains("would block"))
    {
        return Error::unavailable(format!(
            "collection '{name}' at {} is open in another process (its wal/ folder is locked): one process at a time may open a qdrant-edge collection; stop the other process, or give this store another `path`",
            dir.display()
        ));
    }
    Error::backend(format!(
        "qdrant-edge: opening collection '{name}' at {} failed: {text}",
        dir.display()
    ))
}
