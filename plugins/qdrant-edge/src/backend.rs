//! The vector capability on qdrant-edge's [`EdgeShard`]: one shard per
//! collection, each in its own folder under the store's `path`.
//!
//! # On disk
//!
//! ```text
//! <path>/<collection>/backplane.json     dimension, distance, payload shape (ours)
//! <path>/<collection>/edge_config.json   qdrant-edge's configuration
//! <path>/<collection>/segments/, wal/    qdrant-edge's data
//! ```
//!
//! A collection is built in `<path>/.creating-<name>-…` and renamed into
//! place when complete, and renamed to `<path>/.dropped-<name>-…` before
//! its files are deleted, so a crash never leaves half a collection under
//! its name. Leftovers are removed when a store opens.
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
//! Dropping the last handle of a collection flushes it too.
//!
//! # Index builds
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
//!
//! # Vectors and scores
//!
//! Qdrant normalises cosine vectors when it stores them, so a cosine
//! collection keeps each record's original vector a second time, as the
//! named vector `raw` (dot distance, which stores vectors unchanged; on
//! disk; never indexed), and `get`/`scroll` return it: raw vectors come
//! back bit for bit. Dot and euclidean collections keep one vector, as
//! given. Scores: cosine and dot as Qdrant computes them; euclidean is the
//! negated distance (Qdrant reports the positive distance).

use crate::config::{DefaultCollection, Tuning};
use crate::filter::{translate, Translation};
use crate::point::{check_payload, decoded, encode_payload, parse_cursor, point_id, PayloadShape};
use backplane_core::kit;
use backplane_core::vector::{validate_collection_name, validate_records, validate_vector};
use backplane_core::{
    CollectionInfo, Distance, Error, ErrorKind, Filter, Health, Result, ScrollPage, SearchHit,
    SearchRequest, Vector, VectorRecord,
};
use backplane_qdrant_common::collection::{
    check_new, describe_all, scroll_page, unknown, RAW_VECTOR, SCAN_PAGE,
};
use backplane_qdrant_common::search::{hits, until_k};
use qdrant_edge::{
    CountRequest, Distance as QDistance, EdgeConfig, EdgeOptimizersConfig, EdgeShard,
    EdgeVectorParams, Filter as QFilter, HnswIndexConfig, NamedQuery, OperationError, PointId,
    PointInsertOperations, PointOperations, PointStruct, QueryEnum, Record, ScrollRequest,
    SearchParams, SearchRequest as QSearchRequest, UpdateOperation, VectorInternal,
    VectorStructInternal, Vectors, WithPayloadInterface, WithVector,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, RwLock, RwLockReadGuard, Weak};
use std::time::{Duration, Instant};

/// Our file in each collection's folder.
const META_FILE: &str = "backplane.json";
/// The searched vector: Qdrant's default (unnamed) vector.
const SEARCH_VECTOR: &str = "";
/// Prefix of a collection folder being built.
const CREATING: &str = ".creating-";
/// Prefix of a collection folder being deleted.
const DROPPED: &str = ".dropped-";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn engine(what: &str, e: OperationError) -> Error {
    Error::backend(format!("qdrant-edge: {what} failed: {e}"))
}

fn io(what: String, e: std::io::Error) -> Error {
    Error::backend(format!("{what}: {e}"))
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

fn qdistance(d: Distance) -> QDistance {
    match d {
        Distance::Cosine => QDistance::Cosine,
        Distance::Dot => QDistance::Dot,
        Distance::Euclidean => QDistance::Euclid,
    }
}

/// What `backplane.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Meta {
    /// Format of this file.
    format: u32,
    dimension: u32,
    distance: Distance,
    /// See [`PayloadShape`]; only ever turns on.
    #[serde(default)]
    dotted_keys: bool,
    #[serde(default)]
    empty_arrays: bool,
}

impl Meta {
    fn shape(&self) -> PayloadShape {
        PayloadShape {
            dotted_keys: self.dotted_keys,
            empty_arrays: self.empty_arrays,
        }
    }

    fn load(dir: &Path) -> Result<Meta> {
        let file = dir.join(META_FILE);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| io(format!("cannot read {}", file.display()), e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::backend(format!(
                "{} is not a collection description this plugin wrote ({e}): restore it from a backup, or move the folder away",
                file.display()
            ))
        })
    }

    /// Write atomically: a temporary file renamed over the old one.
    fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("Meta serialises");
        kit::fs::write_bytes(
            dir.join(META_FILE),
            "collection description",
            text.as_bytes(),
        )
    }
}

/// The qdrant-edge configuration of a new collection.
fn edge_config(dimension: u32, distance: Distance, t: &Tuning) -> EdgeConfig {
    let mut b = EdgeConfig::builder()
        .vector(
            SEARCH_VECTOR,
            EdgeVectorParams::builder(dimension as usize, qdistance(distance))
                .on_disk(t.vectors_on_disk)
                .build(),
        )
        .hnsw_config(hnsw(t))
        .on_disk_payload(true)
        .optimizers(optimizers(t));
    if distance == Distance::Cosine {
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

fn optimizers(t: &Tuning) -> EdgeOptimizersConfig {
    EdgeOptimizersConfig {
        indexing_threshold: Some(t.indexing_threshold_kb),
        ..EdgeOptimizersConfig::default()
    }
}

/// One open collection: its shard and what guards it.
pub(crate) struct Collection {
    name: String,
    dir: PathBuf,
    dimension: u32,
    distance: Distance,
    tuning: Tuning,
    /// `None` once the collection is dropped.
    shard: RwLock<Option<EdgeShard>>,
    /// Payload shape; persisted in `backplane.json` before points with a
    /// new shape are written.
    meta: Mutex<Meta>,
    /// Updates and index builds: shared; flush: exclusive.
    gate: RwLock<()>,
    /// Serialises this collection's write calls.
    writer: Mutex<()>,
    /// One index build at a time.
    building: Mutex<()>,
    /// An index build holds the gate.
    optimizing: AtomicBool,
    /// When the collection was first written since its last index build.
    dirty_since: Mutex<Option<Instant>>,
    /// When it was last written.
    last_write: Mutex<Instant>,
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
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| drop(shard))) {
                log::error!(
                    "qdrant-edge: closing collection '{}' at {} failed: {}",
                    self.name,
                    self.dir.display(),
                    panic_text(p)
                );
            }
        }
    }
}

impl Collection {
    /// Open the collection in `dir` (which holds `backplane.json`).
    fn open(name: &str, dir: &Path, tuning: &Tuning) -> Result<Collection> {
        let meta = Meta::load(dir)?;
        let shard = EdgeShard::load(dir, None).map_err(|e| open_error(name, dir, e))?;
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
            // A collection loaded with unindexed vectors (written by a
            // process that stopped before building) is checked too.
            dirty_since: Mutex::new(Some(now)),
            last_write: Mutex::new(now),
        })
    }

    fn info(&self) -> CollectionInfo {
        CollectionInfo {
            name: self.name.clone(),
            dimension: self.dimension,
            distance: self.distance,
            count: 0,
        }
    }

    fn dropped(&self) -> bool {
        read(&self.shard).is_none()
    }

    /// Run `f` on the shard, or fail with `NotFound` if the collection was
    /// dropped.
    fn with<T>(&self, f: impl FnOnce(&EdgeShard) -> Result<T>) -> Result<T> {
        let guard = read(&self.shard);
        let shard = guard.as_ref().ok_or_else(|| unknown(&self.name))?;
        f(shard)
    }

    fn shape(&self) -> PayloadShape {
        lock(&self.meta).shape()
    }

    /// Record that payloads of `shape` are about to be stored.
    fn note_shape(&self, shape: PayloadShape) -> Result<()> {
        let mut meta = lock(&self.meta);
        let old = meta.shape();
        if (shape.dotted_keys && !old.dotted_keys) || (shape.empty_arrays && !old.empty_arrays) {
            let mut next = meta.clone();
            next.dotted_keys |= shape.dotted_keys;
            next.empty_arrays |= shape.empty_arrays;
            next.save(&self.dir)?;
            *meta = next;
        }
        Ok(())
    }

    /// Apply one update, then flush (or leave the flush to an index build
    /// that holds the gate).
    fn update(&self, shard: &EdgeShard, what: &str, op: UpdateOperation) -> Result<()> {
        let r = {
            let _g = read(&self.gate);
            catch_unwind(AssertUnwindSafe(|| shard.update(op)))
        };
        let now = Instant::now();
        *lock(&self.last_write) = now;
        lock(&self.dirty_since).get_or_insert(now);
        self.flush(shard, false)?;
        match r {
            Ok(r) => r.map_err(|e| engine(what, e)),
            Err(p) => Err(Error::backend(format!(
                "qdrant-edge: {what} failed: {}",
                panic_text(p)
            ))),
        }
    }

    /// Flush the shard. Unless `wait`, an index build in progress is left
    /// to do it (it flushes when it ends) instead of being waited for.
    fn flush(&self, shard: &EdgeShard, wait: bool) -> Result<()> {
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
        catch_unwind(AssertUnwindSafe(|| shard.flush())).map_err(|p| {
            Error::backend(format!(
                "qdrant-edge: writing collection '{}' to {} failed: {}",
                self.name,
                self.dir.display(),
                panic_text(p)
            ))
        })
    }

    /// Vectors not yet in an HNSW index (an estimate from the shard's
    /// counters).
    fn unindexed(&self, shard: &EdgeShard) -> usize {
        let info = shard.info();
        // Every vector of an indexed segment counts as indexed, including
        // a cosine collection's `raw` vector (whose index has no graph).
        let per_point = if self.distance == Distance::Cosine {
            2
        } else {
            1
        };
        info.points_count
            .saturating_sub(info.indexed_vectors_count / per_point)
    }

    /// Whether enough vectors are unindexed for an index build to pay.
    fn needs_index(&self, shard: &EdgeShard) -> bool {
        let bytes = self.unindexed(shard) as u64 * self.dimension as u64 * 4;
        bytes >= self.tuning.indexing_threshold_kb as u64 * 1024
    }

    /// Build the index if the collection was written since the last build.
    /// Returns whether a build ran.
    fn build_index(&self) -> Result<bool> {
        let _b = lock(&self.building);
        if lock(&self.dirty_since).is_none() {
            return Ok(false);
        }
        self.with(|shard| {
            let started = Instant::now();
            self.optimizing.store(true, Ordering::Release);
            let r = {
                let _g = read(&self.gate);
                catch_unwind(AssertUnwindSafe(|| shard.optimize()))
            };
            self.optimizing.store(false, Ordering::Release);
            let flushed = self.flush(shard, true);
            let built = match r {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => return Err(engine("building the index", e)),
                Err(p) => {
                    return Err(Error::backend(format!(
                        "qdrant-edge: building the index failed: {}",
                        panic_text(p)
                    )))
                }
            };
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
    fn index_before_search(&self) -> Result<()> {
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

/// The process's open collections, by folder.
static REGISTRY: LazyLock<Mutex<HashMap<PathBuf, Weak<Collection>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Open (or share) the collection in `root/name`; `NotFound` if absent.
fn registry_open(root: &Path, name: &str, tuning: &Tuning) -> Result<Arc<Collection>> {
    let dir = root.join(name);
    let mut reg = lock(&REGISTRY);
    if let Some(c) = reg.get(&dir).and_then(Weak::upgrade) {
        if !c.dropped() {
            return Ok(c);
        }
    }
    if !dir.join(META_FILE).is_file() {
        return Err(unknown(name));
    }
    let c = Arc::new(Collection::open(name, &dir, tuning)?);
    reg.insert(dir, Arc::downgrade(&c));
    builder().watch(&c);
    Ok(c)
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

fn builder() -> &'static Builder {
    &BUILDER
}

/// How often the builder looks for idle collections.
const BUILDER_TICK: Duration = Duration::from_millis(100);

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

/// Stop the background index builder; called by the plugin's `shutdown`.
pub fn shutdown() {
    builder().shutdown();
}

/// A vector store: the collections under one folder.
pub struct QdrantEdgeVector {
    root: PathBuf,
    tuning: Tuning,
    /// This store's handles, by collection name.
    open: Mutex<HashMap<String, Arc<Collection>>>,
}

impl QdrantEdgeVector {
    /// Open the store in `root` (created if missing), creating `default`
    /// if given and absent.
    pub fn open(root: &Path, tuning: Tuning, default: Option<DefaultCollection>) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| {
            Error::config(format!(
                "cannot create the folder {} for the collections ({e}): fix `path` or the folder's permissions",
                root.display()
            ))
        })?;
        let root = root.canonicalize().map_err(|e| {
            Error::config(format!("cannot resolve `path` {} ({e})", root.display()))
        })?;
        remove_leftovers(&root);
        let store = QdrantEdgeVector {
            root,
            tuning,
            open: Mutex::new(HashMap::new()),
        };
        if let Some(d) = default {
            d.ensure(&store, "qdrant-edge")?;
        }
        Ok(store)
    }

    /// The folder of the store.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        if validate_collection_name(name).is_err() {
            return Err(unknown(name));
        }
        let mut open = lock(&self.open);
        if let Some(c) = open.get(name) {
            if !c.dropped() {
                return Ok(c.clone());
            }
            open.remove(name);
        }
        let c = registry_open(&self.root, name, &self.tuning)?;
        open.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// Build the index of `collection` now if it has unindexed writes.
    /// Returns whether a build ran. (Not part of the `Vector` trait: for
    /// programs that link the plugin directly, and for the benchmark.)
    pub fn build_index(&self, collection: &str) -> Result<bool> {
        self.collection(collection)?.build_index()
    }

    /// Where `collection`'s vectors are: points, vectors in an HNSW index,
    /// segments. (For programs that link the plugin directly, tests and
    /// the benchmark.)
    pub fn index_state(&self, collection: &str) -> Result<IndexState> {
        self.collection(collection)?.with(|shard| {
            let i = shard.info();
            Ok(IndexState {
                points: i.points_count,
                indexed_vectors: i.indexed_vectors_count,
                segments: i.segments_count,
            })
        })
    }

    fn search_one(
        &self,
        c: &Collection,
        shard: &EdgeShard,
        req: &SearchRequest,
        translation: Option<&Translation>,
    ) -> Result<Vec<SearchHit>> {
        validate_vector(&req.vector, c.dimension, "the query vector")?;
        if req.k == 0 {
            return Ok(Vec::new());
        }
        let run = |limit: usize, filter: Option<QFilter>, exact: bool| {
            shard
                .search(QSearchRequest {
                    query: QueryEnum::Nearest(NamedQuery::default_dense(req.vector.clone())),
                    filter,
                    params: Some(SearchParams {
                        hnsw_ef: Some(self.tuning.ef.max(limit)),
                        exact,
                        ..SearchParams::default()
                    }),
                    limit,
                    offset: 0,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: Some(WithVector::Bool(false)),
                    score_threshold: None,
                })
                .map_err(|e| engine("search", e))
        };
        let (native, post) = match translation {
            None => (None, None),
            Some(t) if t.exact => (t.native.clone(), None),
            Some(t) => (t.native.clone(), req.filter.as_ref()),
        };
        until_k(req.k, post.is_some(), |limit, exact| {
            let points = run(limit, native.clone(), exact)?;
            let returned = points.len();
            let hits = hits(points, req.k, post, c.distance, |p| {
                Ok((p.score, decoded(p.payload.map(|p| p.0), &p.id)?))
            })?;
            Ok((returned, hits))
        })
    }

    /// The ids of the points passing `filter`, with a scan where Qdrant
    /// cannot evaluate all of it.
    fn matching(&self, c: &Collection, shard: &EdgeShard, filter: &Filter) -> Result<Vec<PointId>> {
        let t = translate(filter, c.shape());
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let (records, next) = shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(SCAN_PAGE),
                    filter: t.native.clone(),
                    with_payload: Some(WithPayloadInterface::Bool(!t.exact)),
                    with_vector: WithVector::Bool(false),
                    order_by: None,
                })
                .map_err(|e| engine("scroll", e))?;
            for r in records {
                if !t.exact {
                    let d = decoded(r.payload.map(|p| p.0), &r.id)?;
                    if !filter.matches(&d.payload) {
                        continue;
                    }
                }
                out.push(r.id);
            }
            match next {
                Some(n) => offset = Some(n),
                None => return Ok(out),
            }
        }
    }

    fn record(&self, c: &Collection, r: Record) -> Result<VectorRecord> {
        let d = decoded(r.payload.map(|p| p.0), &r.id)?;
        let name = if c.distance == Distance::Cosine {
            RAW_VECTOR
        } else {
            SEARCH_VECTOR
        };
        let vector = match r.vector {
            Some(VectorStructInternal::Single(v)) => Some(v),
            Some(VectorStructInternal::Named(mut m)) => match m.remove(name) {
                Some(VectorInternal::Dense(v)) => Some(v),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| {
            Error::backend(format!(
                "record '{}' in collection '{}' has no stored vector '{name}'",
                d.id, c.name
            ))
        })?;
        Ok(VectorRecord {
            id: d.id,
            vector,
            document: d.document,
            payload: d.payload,
        })
    }

    fn with_vector(c: &Collection) -> WithVector {
        if c.distance == Distance::Cosine {
            WithVector::Selector(vec![RAW_VECTOR.to_string()])
        } else {
            WithVector::Bool(true)
        }
    }
}

/// See [`QdrantEdgeVector::index_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexState {
    /// Points stored.
    pub points: usize,
    /// Vectors in HNSW indexes.
    pub indexed_vectors: usize,
    /// Segments.
    pub segments: usize,
}

/// Remove `.dropped-*` folders, and `.creating-*` folders older than an
/// hour (a creation interrupted by a crash).
fn remove_leftovers(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = || {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600))
        };
        if name.starts_with(DROPPED) || (name.starts_with(CREATING) && old()) {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                log::warn!(
                    "qdrant-edge: cannot remove the leftover folder {}: {err}",
                    e.path().display()
                );
            }
        }
    }
}

/// `<name>-<unique id>`, for the temporary names of a collection's folder.
fn unique_suffix(name: &str) -> String {
    kit::id::new_id(&format!("{name}-"))
}

impl Vector for QdrantEdgeVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        check_new(name, dimension)?;
        let dir = self.root.join(name);
        let exists = |dir: &Path| {
            match Meta::load(dir) {
            Ok(m) => Error::already_exists(format!(
                "collection '{name}' exists already ({} dims, {}): use it, or drop it first",
                m.dimension,
                m.distance.as_str()
            )),
            Err(_) => Error::already_exists(format!(
                "collection '{name}': the folder {} exists already and is not a collection: move it away, or pick another name",
                dir.display()
            )),
        }
        };
        // The registry's lock keeps two stores of this process from
        // building the same collection at once.
        let reg = lock(&REGISTRY);
        if dir.exists() {
            return Err(exists(&dir));
        }
        let tmp = self.root.join(format!("{CREATING}{}", unique_suffix(name)));
        let built = kit::fs::build_dir(&tmp, &dir, "collection", |tmp| {
            let shard = EdgeShard::new(tmp, edge_config(dimension, distance, &self.tuning))
                .map_err(|e| engine("creating the collection", e))?;
            catch_unwind(AssertUnwindSafe(|| drop(shard))).map_err(|p| {
                Error::backend(format!(
                    "qdrant-edge: writing the new collection failed: {}",
                    panic_text(p)
                ))
            })?;
            Meta {
                format: 1,
                dimension,
                distance,
                dotted_keys: false,
                empty_arrays: false,
            }
            .save(tmp)
        });
        drop(reg);
        match built {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(exists(&dir)),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        self.collection(name).map(|_| ())
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        let c = self.collection(name)?;
        let _w = lock(&c.writer);
        let _b = lock(&c.building);
        let mut reg = lock(&REGISTRY);
        {
            let mut guard = c.shard.write().unwrap_or_else(|p| p.into_inner());
            let Some(shard) = guard.take() else {
                return Err(unknown(name));
            };
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| drop(shard))) {
                log::warn!(
                    "qdrant-edge: flushing collection '{name}' before dropping it failed: {}",
                    panic_text(p)
                );
            }
        }
        reg.remove(&c.dir);
        lock(&self.open).remove(name);
        let gone = self.root.join(format!("{DROPPED}{}", unique_suffix(name)));
        std::fs::rename(&c.dir, &gone).map_err(|e| {
            io(
                format!("cannot remove collection '{name}' ({})", c.dir.display()),
                e,
            )
        })?;
        drop(reg);
        if let Err(e) = std::fs::remove_dir_all(&gone) {
            log::warn!(
                "qdrant-edge: collection '{name}' is dropped, but deleting its files in {} failed ({e}); they are removed when a store next opens this path",
                gone.display()
            );
        }
        Ok(())
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| io(format!("cannot list {}", self.root.display()), e))?;
        describe_all(
            self,
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| self.root.join(n).join(META_FILE).is_file()),
        )
    }

    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let c = self.collection(name)?;
        let count = self.count(name, None)?;
        Ok(CollectionInfo { count, ..c.info() })
    }

    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        let c = self.collection(collection)?;
        validate_records(records, c.dimension)?;
        records.iter().try_for_each(check_payload)?;
        if records.is_empty() {
            return Ok(());
        }
        let mut shape = PayloadShape::default();
        let points = records
            .iter()
            .map(|r| {
                let (payload, s) = encode_payload(r);
                shape.dotted_keys |= s.dotted_keys;
                shape.empty_arrays |= s.empty_arrays;
                let vectors: Vectors = if c.distance == Distance::Cosine {
                    Vectors::new_named([
                        (SEARCH_VECTOR, r.vector.clone()),
                        (RAW_VECTOR, r.vector.clone()),
                    ])
                } else {
                    r.vector.clone().into()
                };
                PointStruct::new(point_id(&r.id), vectors, payload).into()
            })
            .collect();
        let _w = lock(&c.writer);
        c.note_shape(shape)?;
        c.with(|shard| {
            c.update(
                shard,
                "upsert",
                UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                    PointInsertOperations::PointsList(points),
                )),
            )
        })
    }

    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        let c = self.collection(collection)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let points: Vec<PointId> = ids.iter().map(|id| point_id(id)).collect();
        c.with(|shard| {
            shard
                .retrieve(
                    &points,
                    Some(WithPayloadInterface::Bool(true)),
                    Some(Self::with_vector(&c)),
                )
                .map_err(|e| engine("get", e))?
                .into_iter()
                .map(|r| self.record(&c, r))
                .collect()
        })
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        let c = self.collection(collection)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut points: Vec<PointId> = ids.iter().map(|id| point_id(id)).collect();
        points.sort_unstable();
        points.dedup();
        let _w = lock(&c.writer);
        c.with(|shard| {
            let existing: Vec<PointId> = shard
                .retrieve(
                    &points,
                    Some(WithPayloadInterface::Bool(false)),
                    Some(WithVector::Bool(false)),
                )
                .map_err(|e| engine("delete", e))?
                .into_iter()
                .map(|r| r.id)
                .collect();
            let n = existing.len() as u64;
            if n > 0 {
                c.update(
                    shard,
                    "delete",
                    UpdateOperation::PointOperation(PointOperations::DeletePoints {
                        ids: existing,
                    }),
                )?;
            }
            Ok(n)
        })
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let c = self.collection(collection)?;
        let _w = lock(&c.writer);
        c.with(|shard| {
            let ids = self.matching(&c, shard, filter)?;
            let n = ids.len() as u64;
            if n > 0 {
                c.update(
                    shard,
                    "delete_where",
                    UpdateOperation::PointOperation(PointOperations::DeletePoints { ids }),
                )?;
            }
            Ok(n)
        })
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        let c = self.collection(collection)?;
        c.with(|shard| {
            let native = match filter {
                None => None,
                Some(f) => {
                    let t = translate(f, c.shape());
                    if !t.exact {
                        return Ok(self.matching(&c, shard, f)?.len() as u64);
                    }
                    t.native
                }
            };
            shard
                .count(CountRequest {
                    filter: native,
                    exact: true,
                })
                .map(|n| n as u64)
                .map_err(|e| engine("count", e))
        })
    }

    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let c = self.collection(collection)?;
        validate_vector(&request.vector, c.dimension, "the query vector")?;
        c.index_before_search()?;
        let t = request.filter.as_ref().map(|f| translate(f, c.shape()));
        c.with(|shard| self.search_one(&c, shard, request, t.as_ref()))
    }

    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        let c = self.collection(collection)?;
        for (i, r) in requests.iter().enumerate() {
            validate_vector(&r.vector, c.dimension, &format!("query {i}'s vector"))?;
        }
        c.index_before_search()?;
        let shape = c.shape();
        c.with(|shard| {
            requests
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let t = r.filter.as_ref().map(|f| translate(f, shape));
                    self.search_one(&c, shard, r, t.as_ref())
                        .map_err(|e| e.context(format!("query {i}")))
                })
                .collect()
        })
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        let page = scroll_page(limit)?;
        let c = self.collection(collection)?;
        let offset = cursor.map(parse_cursor).transpose()?;
        c.with(|shard| {
            let (records, next) = shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(page),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: Self::with_vector(&c),
                    order_by: None,
                })
                .map_err(|e| engine("scroll", e))?;
            Ok(ScrollPage {
                records: records
                    .into_iter()
                    .map(|r| self.record(&c, r))
                    .collect::<Result<_>>()?,
                next_cursor: next.as_ref().map(crate::point::cursor),
            })
        })
    }

    fn health(&self) -> Result<Health> {
        let probe = self.root.join(".health");
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                Error::unavailable(format!(
                    "the folder {} is not writable ({e}): check the disk and the folder's permissions",
                    self.root.display()
                ))
            })?;
        let open = lock(&self.open).len();
        Ok(Health::ok(format!(
            "qdrant-edge 0.7.2 (embedded) at {}, {open} collection(s) open",
            self.root.display()
        )))
    }
}
