//! Index builds: when a collection's HNSW index is built, and the
//! background builder thread.
//!
//! Qdrant builds a collection's HNSW index only when asked
//! (`EdgeShard::optimize`); until then new vectors sit in an appendable
//! segment that is searched exactly. One background thread per process
//! builds indexes: a collection's once it has had no writes for
//! `index_after_idle_ms`, and at once when a search finds more unindexed
//! vectors than `indexing_threshold_kb` (the search asks for the build
//! and does not wait for it: it scans what is not indexed yet, and every
//! search after the build is an HNSW search). Small increments below the
//! threshold stay in the appendable segment and are scanned, which is as
//! fast at that size. Only when the background thread is not running (it
//! could not start, or the plugin was shut down) does a search build the
//! index itself first.

use crate::collection::{lock, read, Collection};
use crate::shard::{caught, engine};
use backplane_core::Result;
use backplane_qdrant_common::collection::keeps_raw;
use qdrant_edge::EdgeShard;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, TryLockError, Weak};
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
        // a cosine point's `raw` copy (whose index has no graph). Counted
        // as if every cosine point had one, where only those Qdrant
        // normalised do (`backend::kept_as_given`): an upper bound, so a
        // search may ask for a build that Qdrant's optimizer then finds
        // nothing to do for (it indexes by its own threshold).
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
        // What a search asked for before now is served by this build; a
        // search during it, after more writes, asks again.
        self.index_wanted.store(false, Ordering::Release);
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

    /// Before a search: when a scan would cover more vectors than the
    /// indexing threshold, ask the background builder for the index, and
    /// search now (the unindexed vectors are scanned until it is built).
    /// Without a background builder, build it here first.
    pub(crate) fn index_before_search(&self) -> Result<()> {
        if self.index_wanted.load(Ordering::Acquire) || lock(&self.dirty_since).is_none() {
            return Ok(());
        }
        if self.with(|shard| Ok(self.needs_index(shard)))? {
            self.index_wanted.store(true, Ordering::Release);
            if !BUILDER.wake() {
                self.build_index()?;
            }
        }
        Ok(())
    }

    /// Whether the background builder should build now.
    fn due(&self) -> bool {
        self.index_wanted.load(Ordering::Acquire)
            || (lock(&self.dirty_since).is_some()
                && lock(&self.last_write).elapsed() >= self.tuning.index_after_idle)
    }

    /// Whether an index build is under way, or asked for by a search and
    /// not started yet.
    pub(crate) fn index_pending(&self) -> bool {
        self.index_wanted.load(Ordering::Acquire)
            || matches!(self.building.try_lock(), Err(TryLockError::WouldBlock))
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
                    "qdrant-edge: cannot start the background index builder ({e}); a search that needs an index builds it first"
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
                    .filter(|c| c.due())
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
                    c.index_wanted.store(false, Ordering::Release);
                }
            }
        }
    }

    /// Have the thread look for due collections now. False when it is not
    /// running (it could not start, or it was stopped).
    fn wake(&self) -> bool {
        match lock(&self.thread).as_ref() {
            Some(h) if !self.stop.load(Ordering::Acquire) => {
                h.thread().unpark();
                true
            }
            _ => false,
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
