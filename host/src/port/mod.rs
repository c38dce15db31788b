//! Moving data between stores and archives: `backplane migrate`,
//! `backup`, `restore` and `verify`, and the [`Storage`](crate::Storage)
//! methods under them.
//!
//! Everything is one engine: a **source** (a store, or an archive) yields
//! each item of a store (a table, a collection, a graph's nodes and edges,
//! a cache's keys and conversations) in pages; a **sink** (a store, or an
//! archive being written) takes them. Pages are streamed, so memory stays
//! flat whatever the size. Every record's checksum is summed into its
//! item's [`Digest`] on the way; at the end the target is read back and its
//! digests compared, so a copy that lost or changed a record says so.
//!
//! A copy into a store records how far it got in a state file after every
//! page; run again after a crash it continues from there, and because every
//! import keeps records that exist already, a page written twice changes
//! nothing.
//!
//! - [`record`]: the records, their archive lines and checksums;
//! - `store`: a store as a source and as a sink;
//! - `archive`: the archive format (see `docs/archive-format.md`);
//! - `engine`: the copy loop, its state file, and the verification.

mod api;
mod archive;
mod engine;
pub mod record;
mod store;

pub use api::verify_archive;
pub use archive::{ArchiveReport, ArchiveStore, FORMAT_VERSION};
pub use engine::{Item, ItemReport, Report};
pub use record::Digest;

use backplane_core::{Capability, Error, Result};
use std::fmt;
use std::path::PathBuf;

/// A store named the way the CLI writes it: `<capability>.<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreRef {
    /// The capability.
    pub capability: Capability,
    /// The store's name.
    pub name: String,
}

impl StoreRef {
    /// A reference to `[capability.name]`.
    pub fn new(capability: Capability, name: impl Into<String>) -> Self {
        StoreRef {
            capability,
            name: name.into(),
        }
    }
    /// Parse `relational.user_data`.
    pub fn parse(s: &str) -> Result<StoreRef> {
        let (cap, name) = s.split_once('.').ok_or_else(|| {
            Error::invalid(format!(
                "'{s}' names no store: write <capability>.<store>, e.g. relational.user_data"
            ))
        })?;
        let capability = Capability::parse(cap).ok_or_else(|| {
            Error::invalid(format!(
                "'{cap}' in '{s}' is not a capability: use relational, vector, cache or graph"
            ))
        })?;
        if name.is_empty() {
            return Err(Error::invalid(format!(
                "'{s}' has no store name after the dot"
            )));
        }
        Ok(StoreRef::new(capability, name))
    }
}

impl fmt::Display for StoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.capability, self.name)
    }
}

/// What to do with a target that holds data already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Keep the target's records; copy only those it does not have.
    Keep,
    /// Replace the target's records with the source's where both have one.
    Overwrite,
}

/// How to run a migration or a restore.
#[derive(Clone, Debug)]
pub struct CopyOptions {
    /// Check everything and say what would be copied, writing nothing.
    pub dry_run: bool,
    /// Copy into a target that holds data already, and how. `None`: such
    /// a target is refused.
    pub merge: Option<Merge>,
    /// Records per page.
    pub batch: usize,
    /// Where to keep the state that makes the copy resumable (default: a
    /// file under `.backplane/` beside the target's plugins.toml).
    pub state: Option<PathBuf>,
    /// Only these tables, collections or conversation channels (empty: all).
    pub only: Vec<String>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            dry_run: false,
            merge: None,
            batch: 5000,
            state: None,
            only: Vec::new(),
        }
    }
}

/// Where a long operation reports how far it got. The CLI draws progress
/// bars; [`Quiet`] reports nothing.
pub trait Progress: Send + Sync {
    /// An item starts: `label` says which, `total` how many records if known.
    fn start(&self, label: &str, total: Option<u64>);
    /// `n` more records of the current item are done.
    fn advance(&self, n: u64);
    /// The current item is done.
    fn finish(&self);
}

/// A [`Progress`] that reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
