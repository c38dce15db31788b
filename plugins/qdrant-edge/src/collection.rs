//! One open collection ([`Collection`]): its shard and the locks around
//! it, writes and flushes, the payload shape; and the process's registry
//! of open collections.
//!
//! # Handles and locks
//!
//! qdrant-edge locks a shard's `wal/` folder (`flock`) while it is open, and
//! a second open of the same folder fails, even in the same process. So
//! the process keeps one [`Collection`] per folder in a registry, shared by
//! every store that names the same `path`; a second *process* gets an
//! `Unavailable` error saying the folder is in use.
//!
//! `EdgeShard::flush` panics if it runs while an update or an optimization
//! holds the shard's internal locks, so each collection has a `gate`:
//! updates and index builds take it shared, a flush takes it exclusively.
//! Reads take no gate. Writes (upsert, delete, delete_where) are also
//! serialised per collection, so a delete's count is exact.
//!
//! # Durability
//!
//! qdrant-edge 0.7.2 logs every update to its WAL but never replays the WAL
//! when a shard is loaded: what reaches disk is what `flush` wrote. Every
//! write call therefore flushes before it returns, so data written is
//! readable after a restart or a crash. While an index build runs (it holds
//! the gate), the flush is left to the build, which flushes when it ends.
//! Dropping the last handle of a collection flushes it too. Since the WAL
//! is never read back nor acknowledged, it would grow without end: the
//! plugin trims it ([`wal`](crate::wal)).

use crate::config::Tuning;
use crate::folder::{is_collection, Meta};
use crate::index;
use crate::shard::{caught, engine, open_error, wal_options};
use crate::wal;
use backplane_core::kit::text::panic_text;
use backplane_core::{CollectionInfo, Distance, Result};
use backplane_qdrant_common::collection::unknown;
use backplane_qdrant_common::point::PayloadShape;
use qdrant_edge::{EdgeConfig, EdgeOptimizersConfig, EdgeShard, HnswIndexConfig, UpdateOperation};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock, RwLockReadGuard, TryLockError, Weak};
use std::time::Instant;

/// `m` locked; a panic that poisoned it left nothing half-done that
/// matters here.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `l` read-locked, poisoned or not.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// One open collection: its shard and what guards it.
pub(crate) struct Collection {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) dimension: u32,
    pub(crate) distance: Distance,
    pub(crate) tuning: Tuning,
    /// `None` once the collection is dropped (or when loading it again
    /// after trimming its log failed: the store's next call opens it).
    pub(crate) shard: RwLock<Option<EdgeShard>>,
    /// Payload shape; persisted in `backplane.json` before points with a
    /// new shape are written.
    meta: Mutex<Meta>,
    /// Updates and index builds: shared; flush: exclusive.
    pub(crate) gate: RwLock<()>,
    /// Serialises this collection's write calls.
    pub(crate) writer: Mutex<()>,
    /// One index build at a time.
    pub(crate) building: Mutex<()>,
    /// An index build holds the gate.
    pub(crate) optimizing: AtomicBool,
    /// A search asked the background builder for this collection's index
    /// ([`index`](crate::index)).
    pub(crate) index_wanted: AtomicBool,
    /// When the collection was first written since its last index build.
    pub(crate) dirty_since: Mutex<Option<Instant>>,
    /// When it was last written.
    pub(crate) last_write: Mutex<Instant>,
    /// The write-ahead log's closed files when a write last found the log
    /// smaller than the data ([`wal::grown`]).
    log_files_seen: AtomicUsize,
}

impl Drop for Collection {
    fn drop(&mut self) {
        let shard = self
            .shard
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(shard) = shard {
            // Dropping the shard flushes it; a failing flush panics inside
            // qdrant-edge, which must not unwind out of a drop.
            if let Err(p) = close_shard(shard) {
                log::error!(
                    "qdrant-edge: closing collection '{}' at {} failed: {p}",
                    self.name,
                    self.dir.display(),
                );
            }
        }
    }
}

/// Drop `shard`, which flushes it. A failing flush panics inside
/// qdrant-edge, which must not unwind out of the caller: the panic's text
/// is returned instead.
fn close_shard(shard: EdgeShard) -> std::result::Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| drop(shard))).map_err(|p| panic_text(&*p))
}

/// Load the shard of collection `name` in `dir`, its write-ahead log
/// trimmed first ([`wal`]).
fn load_shard(name: &str, dir: &Path, tuning: &Tuning) -> Result<EdgeShard> {
    if let Err(e) = wal::trim(dir) {
        log::warn!(
            "qdrant-edge: could not trim the write-ahead log of collection '{name}' in {}: {e}",
            wal::folder(dir).display()
        );
    }
    // The saved configuration with this store's write-ahead-log file
    // size, which qdrant-edge takes at load and does not save.
    let saved = EdgeConfig::load(dir)
        .transpose()
        .map_err(|e| open_error(name, dir, e))?
        .map(|mut c| {
            c.wal_options = Some(wal_options(tuning));
            c
        });
    EdgeShard::load(dir, saved).map_err(|e| open_error(name, dir, e))
}

impl Collection {
    /// Open the collection in `dir` (which holds `backplane.json`).
    fn open(name: &str, dir: &Path, tuning: &Tuning) -> Result<Collection> {
        let meta = Meta::load(dir)?;
        let shard = load_shard(name, dir, tuning)?;
        // Settings from plugins.toml apply to existing collections too; a
        // changed HNSW setting makes the next index build rebuild.
        let (cur_hnsw, cur_opt) = {
            let cfg = shard.config();
            (cfg.hnsw_config, cfg.optimizers.clone())
        };
        let mut stale = false;
        if cur_hnsw.m != tuning.m || cur_hnsw.ef_construct != tuning.ef_construct {
            shard
                .set_hnsw_config(HnswIndexConfig {
                    m: tuning.m,
                    ef_construct: tuning.ef_construct,
                    ..cur_hnsw
                })
                .map_err(|e| engine("updating the HNSW settings", e))?;
            stale = true;
        }
        if cur_opt.indexing_threshold != Some(tuning.indexing_threshold_kb) {
            shard
                .set_optimizers_config(EdgeOptimizersConfig {
                    indexing_threshold: Some(tuning.indexing_threshold_kb),
                    ..cur_opt
                })
                .map_err(|e| engine("updating the indexing threshold", e))?;
            stale = true;
        }
        if stale {
            log::info!(
                "qdrant-edge: collection '{name}' gets new index settings from plugins.toml (hnsw_m {}, hnsw_ef_construct {}, indexing_threshold_kb {}); its index is rebuilt in the background",
                tuning.m,
                tuning.ef_construct,
                tuning.indexing_threshold_kb
            );
        }
        let now = Instant::now();
        Ok(Collection {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            dimension: meta.dimension,
            distance: meta.distance,
            tuning: *tuning,
            shard: RwLock::new(Some(shard)),
            meta: Mutex::new(meta),
            gate: RwLock::new(()),
            writer: Mutex::new(()),
            building: Mutex::new(()),
            optimizing: AtomicBool::new(false),
            index_wanted: AtomicBool::new(false),
            // A collection loaded with unindexed vectors (written by a
            // process that stopped before building) is checked too.
            dirty_since: Mutex::new(Some(now)),
            last_write: Mutex::new(now),
            log_files_seen: AtomicUsize::new(0),
        })
    }

    /// The name, dimension and distance (the count left at 0).
    pub(crate) fn info(&self) -> CollectionInfo {
        CollectionInfo {
            name: self.name.clone(),
            dimension: self.dimension,
            distance: self.distance,
            count: 0,
        }
    }

    pub(crate) fn dropped(&self) -> bool {
        read(&self.shard).is_none()
    }

    /// Run `f` on the shard, or fail with `NotFound` if the collection was
    /// dropped.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&EdgeShard) -> Result<T>) -> Result<T> {
        let guard = read(&self.shard);
        let shard = guard.as_ref().ok_or_else(|| unknown(&self.name))?;
        f(shard)
    }

    pub(crate) fn shape(&self) -> PayloadShape {
        lock(&self.meta).shape()
    }

    /// Record that payloads of `shape` are about to be stored.
    pub(crate) fn note_shape(&self, shape: PayloadShape) -> Result<()> {
        let mut meta = lock(&self.meta);
        let next = meta.with_shape(shape);
        if next != *meta {
            next.save(&self.dir)?;
            *meta = next;
        }
        Ok(())
    }

    /// A write call: `f` on the shard, with the collection's other writes
    /// kept out; then, if the write-ahead log has grown as large as the
    /// data, the shard is closed, its log trimmed and the shard loaded
    /// again ([`wal`]).
    pub(crate) fn write<T>(&self, f: impl FnOnce(&EdgeShard) -> Result<T>) -> Result<T> {
        let _w = lock(&self.writer);
        let r = self.with(f)?;
        self.trim_log_if(|dir| wal::grown(dir, &self.log_files_seen));
        Ok(r)
    }

    /// After an index build that ran: the build flushed everything, so a
    /// log of two closed files or more is trimmed now rather than left
    /// beside the data until later writes make it as large (after a bulk
    /// load the log holds about one copy of every vector).
    pub(crate) fn trim_after_build(&self) {
        let _w = lock(&self.writer);
        self.trim_log_if(wal::trimmable);
    }

    /// Close, trim and load the shard again if `due` says so of the
    /// collection's folder. Called with `writer` held. Skipped while an
    /// index build runs (it holds the shard for as long as it runs): a
    /// later write trims instead. The write that came before is done and
    /// flushed whatever happens here: a failed load is logged, and the
    /// store's next call opens the collection again (or says why it
    /// cannot).
    fn trim_log_if(&self, due: impl FnOnce(&Path) -> bool) {
        let _b = match self.building.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        if !due(&self.dir) {
            return;
        }
        if let Err(e) = self.reload() {
            log::error!(
                "qdrant-edge: reloading collection '{}' after trimming its write-ahead log failed: {e}",
                self.name
            );
        }
    }

    /// Close the shard (which flushes it), trim its log and load it again.
    /// If the load fails, the collection is left closed.
    fn reload(&self) -> Result<()> {
        let mut guard = self.shard.write().unwrap_or_else(|p| p.into_inner());
        let Some(shard) = guard.take() else {
            return Ok(());
        };
        if let Err(p) = close_shard(shard) {
            // The flush of the close failed: the files are as the last
            // write's flush left them, which every call has had.
            log::warn!(
                "qdrant-edge: closing collection '{}' to trim its write-ahead log failed: {p}",
                self.name,
            );
        }
        let shard = load_shard(&self.name, &self.dir, &self.tuning)?;
        *guard = Some(shard);
        log::debug!(
            "qdrant-edge: trimmed the write-ahead log of collection '{}'",
            self.name
        );
        Ok(())
    }

    /// Apply one update, then flush (or leave the flush to an index build
    /// that holds the gate).
    pub(crate) fn update(&self, shard: &EdgeShard, what: &str, op: UpdateOperation) -> Result<()> {
        let r = {
            let _g = read(&self.gate);
            caught(what, || shard.update(op))
        };
        let now = Instant::now();
        *lock(&self.last_write) = now;
        lock(&self.dirty_since).get_or_insert(now);
        self.flush(shard, false)?;
        r?.map_err(|e| engine(what, e))
    }

    /// Flush the shard. Unless `wait`, an index build in progress is left
    /// to do it (it flushes when it ends) instead of being waited for.
    pub(crate) fn flush(&self, shard: &EdgeShard, wait: bool) -> Result<()> {
        let _g = loop {
            match self.gate.try_write() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    if !wait && self.optimizing.load(Ordering::Acquire) {
                        return Ok(());
                    }
                    if wait {
                        break self.gate.write().unwrap_or_else(|p| p.into_inner());
                    }
                    std::thread::yield_now();
                }
            }
        };
        caught(
            &format!(
                "writing collection '{}' to {}",
                self.name,
                self.dir.display()
            ),
            || shard.flush(),
        )
    }

    /// Close the shard for good (flushing it) so that its folder can be
    /// removed; `false` if it was closed already.
    pub(crate) fn close(&self) -> bool {
        let mut guard = self.shard.write().unwrap_or_else(|p| p.into_inner());
        let Some(shard) = guard.take() else {
            return false;
        };
        if let Err(p) = close_shard(shard) {
            log::warn!(
                "qdrant-edge: flushing collection '{}' before dropping it failed: {p}",
                self.name,
            );
        }
        true
    }
}

/// The process's open collections, by folder.
static REGISTRY: LazyLock<Mutex<HashMap<PathBuf, Weak<Collection>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The registry, locked: while it is held no store of the process opens,
/// creates or drops a collection.
pub(crate) fn registry() -> MutexGuard<'static, HashMap<PathBuf, Weak<Collection>>> {
    lock(&REGISTRY)
}

/// Open (or share) the collection in `root/name`; `NotFound` if absent.
pub(crate) fn open_shared(root: &Path, name: &str, tuning: &Tuning) -> Result<Arc<Collection>> {
    let dir = root.join(name);
    let mut reg = registry();
    if let Some(c) = reg.get(&dir).and_then(Weak::upgrade) {
        if !c.dropped() {
            return Ok(c);
        }
    }
    if !is_collection(&dir) {
        return Err(unknown(name));
    }
    let c = Arc::new(Collection::open(name, &dir, tuning)?);
    reg.insert(dir, Arc::downgrade(&c));
    index::watch(&c);
    Ok(c)
}
