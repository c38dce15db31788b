//! Index builds: when a collection's HNSW index is built, and the
//! background builder thread.
//!
//! Qdrant builds a collection's HNSW index only when asked
//! (`EdgeShard::optimize`); until then new vectors sit in an appendable
//! segment that is searched exactly. A background thread builds the index
//! once a collection has had no writes for `index_after_idle_ms`; and a
//! search that finds more unindexed vectors than `indexing_threshold_kb`
//! builds it first (or waits for the build under way), so a search after a
//! bulk load is an HNSW search, not a scan. Small increments below the
//! threshold stay in the appendable segment and are scanned, which is as
//! fast at that size.

use crate::collection::{lock, read, Collection};
use crate::shard::{caught, engine};
use backplane_core::Result;
use backplane_qdrant_common::collection::keeps_raw;
use qdrant_edge::EdgeShard;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

/// Where a collection's vectors are (see `QdrantEdgeVector::index_state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexState {
    /// Points stored.
    pub points: usize,
    /// Vectors in HNSW indexes.
    pub indexed_vectors: usize,
    /// Segments.
    pub segments: usize,
}

impl IndexState {
    /// The state of `shard`.
    pub(crate) fn of(shard: &EdgeShard) -> IndexState {
        let i = shard.info();
        IndexState {
            points: i.points_count,
            indexed_vectors: i.indexed_vectors_count,
            segments: i.segments_count,
        }
    }
}

impl Collection {
    /// Vectors not yet in an HNSW index (an estimate from the shard's
    /// counters).
    fn unindexed(&self, shard: &EdgeShard) -> usize {
        let info = shard.info();
        // Every vector of an indexed segment counts as indexed, including
        // a cosine collection's `raw` vector (whose index has no graph).
        let per_point = if keeps_raw(self.distance) { 2 } else { 1 };
        info.points_count
            .saturating_sub(info.indexed_vectors_count / per_point)
    }

    /// Whether enough vectors are unindexed for an index build to pay.
    fn needs_index(&self, shard: &EdgeShard) -> bool {
        let bytes = self.unindexed(shard) as u64 * self.dimension as u64 * 4;
        bytes >= self.tuning.indexing_threshold_kb as u64 * 1024
    }

    /// Build the index if the collection was written since the last build,
    /// then trim the write-ahead log ([`crate::wal`]). Returns whether a
    /// build ran.
    pub(crate) fn build_index(&self) -> Result<bool> {
        let built = self.build_index_now()?;
        if built {
            self.trim_after_build();
        }
        Ok(built)
    }

    /// The build itself, with `building` held.
    fn build_index_now(&self) -> Result<bool> {
        let _b = lock(&self.building);
        if lock(&self.dirty_since).is_none() {
            return Ok(false);
        }
        self.with(|shard| {
            let started = Instant::now();
            self.optimizing.store(true, Ordering::Release);
            let r = {
                let _g = read(&self.gate);
                caught("building the index", || shard.optimize())
            };
            self.optimizing.store(false, Ordering::Release);
            let flushed = self.flush(shard, true);
            let built = r?.map_err(|e| engine("building the index", e))?;
            flushed?;
            // Writes made during the build leave the collection dirty.
            if *lock(&self.last_write) <= started {
                *lock(&self.dirty_since) = None;
            }
            if built {
                log::debug!(
                    "qdrant-edge: built the index of collection '{}' in {:.1}s",
                    self.name,
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(built)
        })
    }

    /// Before a search: build the index if a scan would cover more
    /// vectors than the indexing threshold.
    pub(crate) fn index_before_search(&self) -> Result<()> {
        if lock(&self.dirty_since).is_none() {
            return Ok(());
        }
        if self.with(|shard| Ok(self.needs_index(shard)))? {
            self.build_index()?;
        }
        Ok(())
    }

    /// Whether the background builder should build now.
    fn idle_and_dirty(&self) -> bool {
        lock(&self.dirty_since).is_some()
            && lock(&self.last_write).elapsed() >= self.tuning.index_after_idle
    }
}

/// The background index builder: one thread per process, started on
/// first use, stopped by the plugin's `shutdown`.
struct Builder {
    watched: Mutex<Vec<Weak<Collection>>>,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

static BUILDER: LazyLock<Builder> = LazyLock::new(|| Builder {
    watched: Mutex::new(Vec::new()),
    stop: AtomicBool::new(false),
    thread: Mutex::new(None),
});

/// How often the builder looks for idle collections.
const BUILDER_TICK: Duration = Duration::from_millis(100);

/// Have the background builder watch `c` (starting it if needed).
pub(crate) fn watch(c: &Arc<Collection>) {
    BUILDER.watch(c);
}

/// Stop the background index builder; called by the plugin's `shutdown`.
pub(crate) fn shutdown() {
    BUILDER.shutdown();
}

impl Builder {
    fn watch(&'static self, c: &Arc<Collection>) {
        lock(&self.watched).push(Arc::downgrade(c));
        let mut t = lock(&self.thread);
        if t.is_none() && !self.stop.load(Ordering::Acquire) {
            match std::thread::Builder::new()
                .name("qdrant-edge-index".into())
                .spawn(move || self.run())
            {
                Ok(h) => *t = Some(h),
                Err(e) => log::warn!(
                    "qdrant-edge: cannot start the background index builder ({e}); indexes are built by searches"
                ),
            }
        }
    }

    fn run(&self) {
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(BUILDER_TICK);
            let due: Vec<Arc<Collection>> = {
                let mut w = lock(&self.watched);
                w.retain(|c| c.strong_count() > 0);
                w.iter()
                    .filter_map(Weak::upgrade)
                    .filter(|c| c.idle_and_dirty())
                    .collect()
            };
            for c in due {
                if self.stop.load(Ordering::Acquire) {
                    break;
                }
                if let Err(e) = c.build_index() {
                    log::warn!(
                        "qdrant-edge: background index build of collection '{}' failed: {e}",
                        c.name
                    );
                    // Do not retry in a tight loop; the next write retries.
                    *lock(&c.dirty_since) = None;
                }
            }
        }
    }

    /// Stop the thread (an index build under way finishes first).
    fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = lock(&self.thread).take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}
