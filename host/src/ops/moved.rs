//! What a call moved, for the `metrics` layer: records returned, written
//! or affected, and value bytes for the cache. Implemented for every
//! return type of every capability method (the compiler checks the list
//! is whole); types that move nothing countable say so.

use backplane_core::*;

/// Records and bytes in a call's result.
pub trait Moved {
    /// Records the result holds or reports.
    fn records(&self) -> u64 {
        0
    }
    /// Value bytes the result holds.
    fn bytes(&self) -> u64 {
        0
    }
}

impl<T> Moved for Vec<T> {
    fn records(&self) -> u64 {
        self.len() as u64
    }
}

impl Moved for Option<Vec<u8>> {
    fn records(&self) -> u64 {
        u64::from(self.is_some())
    }
    fn bytes(&self) -> u64 {
        self.as_ref().map_or(0, |v| v.len() as u64)
    }
}

impl<T> Moved for Page<T> {
    fn records(&self) -> u64 {
        self.items.len() as u64
    }
}

impl Moved for u64 {
    fn records(&self) -> u64 {
        *self
    }
}

impl Moved for Rows {
    fn records(&self) -> u64 {
        self.len() as u64
    }
}

impl Moved for ExecResult {
    fn records(&self) -> u64 {
        self.rows_affected
    }
}

impl Moved for ScrollPage {
    fn records(&self) -> u64 {
        self.records.len() as u64
    }
}

macro_rules! one_record {
    ($($t:ty),*) => { $(impl Moved for $t { fn records(&self) -> u64 { 1 } })* };
}
one_record!(Message, Node, Edge);

macro_rules! optional_record {
    ($($t:ty),*) => { $(impl Moved for Option<$t> { fn records(&self) -> u64 { u64::from(self.is_some()) } })* };
}
optional_record!(Node, Edge, Path);

macro_rules! nothing {
    ($($t:ty),*) => { $(impl Moved for $t {})* };
}
nothing!(
    (),
    bool,
    CacheStats,
    MigrationReport,
    TableSchema,
    Option<String>,
    CollectionInfo,
    Health
);
