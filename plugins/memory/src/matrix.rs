//! A collection's records as one contiguous matrix ([`Collection`]), and
//! its exact search.
//!
//! # Storage
//!
//! Each collection keeps its records in *slots*: slot `i`'s vector is row
//! `i` of one row-major `Vec<f32>`, its L2 norm is `norms[i]`, its id,
//! document and payload are `rows[i]`. A `BTreeMap` from id to slot gives
//! lookups and the stable id order that `scroll` pages through (the cursor
//! is the last id returned).
//!
//! The matrix is kept current on every write instead of being rebuilt: a new
//! id appends a slot, an existing id is overwritten in place, and a delete
//! moves the last slot into the freed one. Each write therefore costs
//! O(dimension + log n), and a search is one linear, cache-friendly pass
//! over memory with no pointer chasing, however writes and searches
//! interleave. (Rebuilding a matrix lazily after writes would copy the whole
//! collection on the first search after every write, which is the common
//! pattern of an agent that remembers something and then recalls.)
//!
//! # Search
//!
//! Scores are [`Distance::score`] (higher is better) and the best `k` are
//! kept in a [`TopK`]. A filter is evaluated only for candidates whose score
//! would enter the top `k`, so a filtered search costs little more than an
//! unfiltered one. `search_batch` walks the matrix once in blocks that fit
//! the CPU cache and scores every query against a block before moving on.
//! Large scans are split across threads.

use backplane_core::vector::TopK;
use backplane_core::{CollectionInfo, Distance, Filter, SearchHit, VectorRecord};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Rows scored per query before moving on to the next query of a batch:
/// about 128 KiB of vectors, so a block stays in L2 while every query of the
/// batch is scored against it.
const BLOCK_BYTES: usize = 128 * 1024;

/// Below this many multiply-adds (rows × dimension × queries) a search runs
/// on the calling thread; above it, it is split across threads.
const PARALLEL_WORK: usize = 4_000_000;

/// The most threads one search uses.
const MAX_THREADS: usize = 8;

/// Id, document and payload of one slot.
struct Row {
    id: String,
    document: Option<String>,
    payload: Json,
}

/// One collection's records, in slots.
pub(crate) struct Collection {
    pub(crate) dimension: u32,
    pub(crate) distance: Distance,
    /// Id → slot, in id order.
    pub(crate) index: BTreeMap<String, usize>,
    /// Row-major vectors: slot `i` is `data[i * dim..(i + 1) * dim]`.
    data: Vec<f32>,
    /// L2 norm of each slot's vector.
    norms: Vec<f32>,
    /// Id, document and payload of each slot.
    rows: Vec<Row>,
}

impl Collection {
    pub(crate) fn new(dimension: u32, distance: Distance) -> Self {
        Collection {
            dimension,
            distance,
            index: BTreeMap::new(),
            data: Vec::new(),
            norms: Vec::new(),
            rows: Vec::new(),
        }
    }

    fn dim(&self) -> usize {
        self.dimension as usize
    }

    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    fn vector(&self, slot: usize) -> &[f32] {
        let d = self.dim();
        &self.data[slot * d..(slot + 1) * d]
    }

    pub(crate) fn record(&self, slot: usize) -> VectorRecord {
        let row = &self.rows[slot];
        VectorRecord {
            id: row.id.clone(),
            vector: self.vector(slot).to_vec(),
            document: row.document.clone(),
            payload: row.payload.clone(),
        }
    }

    /// Insert or replace one (validated) record.
    fn put(&mut self, r: &VectorRecord) {
        let norm = backplane_core::vector::norm(&r.vector);
        let row = Row {
            id: r.id.clone(),
            document: r.document.clone(),
            payload: r.payload.clone(),
        };
        match self.index.get(&r.id) {
            Some(&slot) => {
                let d = self.dim();
                self.data[slot * d..(slot + 1) * d].copy_from_slice(&r.vector);
                self.norms[slot] = norm;
                self.rows[slot] = row;
            }
            None => {
                self.index.insert(r.id.clone(), self.rows.len());
                self.data.extend_from_slice(&r.vector);
                self.norms.push(norm);
                self.rows.push(row);
            }
        }
    }

    /// Remove one record; the last slot moves into the freed one.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.index.remove(id) else {
            return false;
        };
        let d = self.dim();
        let last = self.rows.len() - 1;
        if slot != last {
            self.data.copy_within(last * d..(last + 1) * d, slot * d);
            if let Some(moved) = self.index.get_mut(&self.rows[last].id) {
                *moved = slot;
            }
        }
        self.data.truncate(last * d);
        self.norms.swap_remove(slot);
        self.rows.swap_remove(slot);
        true
    }

    /// Insert or replace (validated) records.
    pub(crate) fn put_all(&mut self, records: &[VectorRecord]) {
        self.data.reserve(records.len() * self.dim());
        for r in records {
            self.put(r);
        }
    }

    /// Remove the records whose payload passes `filter`; how many.
    pub(crate) fn remove_where(&mut self, filter: &Filter) -> u64 {
        let doomed: Vec<String> = self
            .rows
            .iter()
            .filter(|r| filter.matches(&r.payload))
            .map(|r| r.id.clone())
            .collect();
        for id in &doomed {
            self.remove(id);
        }
        doomed.len() as u64
    }

    /// How many records pass `filter` (all without one).
    pub(crate) fn count(&self, filter: Option<&Filter>) -> u64 {
        match filter {
            None => self.len() as u64,
            Some(f) => self.rows.iter().filter(|r| f.matches(&r.payload)).count() as u64,
        }
    }

    pub(crate) fn info(&self, name: &str) -> CollectionInfo {
        CollectionInfo {
            name: name.to_string(),
            dimension: self.dimension,
            distance: self.distance,
            count: self.len() as u64,
        }
    }

    /// Score slots `start..end` against each query, feeding `tops`.
    fn scan(&self, queries: &[Query<'_>], tops: &mut [TopK<usize>], start: usize, end: usize) {
        let d = self.dim();
        let block = (BLOCK_BYTES / (d * 4)).max(1);
        let mut lo = start;
        while lo < end {
            let hi = (lo + block).min(end);
            let vectors = &self.data[lo * d..hi * d];
            let norms = &self.norms[lo..hi];
            for (q, top) in queries.iter().zip(tops.iter_mut()) {
                if q.k == 0 {
                    continue;
                }
                for (i, (v, &n)) in vectors.chunks_exact(d).zip(norms).enumerate() {
                    let score = self.distance.score(v, q.vector, n, q.norm);
                    if score > top.threshold() {
                        let slot = lo + i;
                        if q.filter.is_none_or(|f| f.matches(&self.rows[slot].payload)) {
                            top.push(score, slot);
                        }
                    }
                }
            }
            lo = hi;
        }
    }

    /// The best `k` slots for each query.
    pub(crate) fn search(&self, queries: &[Query<'_>]) -> Vec<Vec<(f32, usize)>> {
        let n = self.len();
        let work = n.saturating_mul(self.dim()).saturating_mul(queries.len());
        let threads = if work >= PARALLEL_WORK {
            std::thread::available_parallelism()
                .map_or(1, |p| p.get())
                .min(MAX_THREADS)
                .min(n)
        } else {
            1
        };
        let new_tops = || queries.iter().map(|q| TopK::new(q.k)).collect::<Vec<_>>();
        if threads <= 1 {
            let mut tops = new_tops();
            self.scan(queries, &mut tops, 0, n);
            return tops.into_iter().map(TopK::into_sorted).collect();
        }
        // Workers take the first chunks, the calling thread the last one; a
        // chunk whose thread cannot be started runs here too.
        let chunk = n.div_ceil(threads);
        let range = |t: usize| (t * chunk, ((t + 1) * chunk).min(n));
        let parts: Vec<Vec<TopK<usize>>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads - 1)
                .map(|t| {
                    let (start, end) = range(t);
                    let spawned = std::thread::Builder::new()
                        .name("memory-vector-scan".into())
                        .spawn_scoped(s, move || {
                            let mut tops = new_tops();
                            self.scan(queries, &mut tops, start, end);
                            tops
                        });
                    (t, spawned.ok())
                })
                .collect();
            let mut parts = Vec::with_capacity(threads);
            let (start, end) = range(threads - 1);
            let mut tops = new_tops();
            self.scan(queries, &mut tops, start, end);
            parts.push(tops);
            for (t, worker) in workers {
                parts.push(match worker {
                    Some(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                    None => {
                        let (start, end) = range(t);
                        let mut tops = new_tops();
                        self.scan(queries, &mut tops, start, end);
                        tops
                    }
                });
            }
            parts
        });
        let mut merged = new_tops();
        for part in parts {
            for (top, partial) in merged.iter_mut().zip(part) {
                for (score, slot) in partial.into_sorted() {
                    top.push(score, slot);
                }
            }
        }
        merged.into_iter().map(TopK::into_sorted).collect()
    }

    pub(crate) fn hits(&self, found: Vec<(f32, usize)>) -> Vec<SearchHit> {
        let mut hits: Vec<SearchHit> = found
            .into_iter()
            .map(|(score, slot)| {
                let row = &self.rows[slot];
                SearchHit {
                    id: row.id.clone(),
                    score,
                    document: row.document.clone(),
                    payload: row.payload.clone(),
                }
            })
            .collect();
        // Equal scores in id order, whatever the slot layout.
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        hits
    }
}

/// One validated query.
pub(crate) struct Query<'a> {
    pub(crate) vector: &'a [f32],
    pub(crate) norm: f32,
    pub(crate) k: usize,
    pub(crate) filter: Option<&'a Filter>,
}
