//! The vector capability in memory: exact (brute-force) search over a
//! contiguous matrix.
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

use backplane_core::kit::page::{check_limit, page_after};
use backplane_core::vector::{validate_collection_name, validate_records, validate_vector, TopK};
use backplane_core::{
    CollectionInfo, Distance, Error, Filter, Health, Result, ScrollPage, SearchHit, SearchRequest,
    Vector, VectorRecord,
};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Rows scored per query before moving on to the next query of a batch:
/// about 128 KiB of vectors, so a block stays in L2 while every query of the
/// batch is scored against it.
const BLOCK_BYTES: usize = 128 * 1024;

/// Below this many multiply-adds (rows × dimension × queries) a search runs
/// on the calling thread; above it, it is split across threads.
const PARALLEL_WORK: usize = 4_000_000;

/// The most threads one search uses.
const MAX_THREADS: usize = 8;

/// A vector store held in process memory.
#[derive(Default)]
pub struct MemoryVector {
    collections: RwLock<HashMap<String, Arc<RwLock<Collection>>>>,
}

/// Id, document and payload of one slot.
struct Row {
    id: String,
    document: Option<String>,
    payload: Json,
}

struct Collection {
    dimension: u32,
    distance: Distance,
    /// Id → slot, in id order.
    index: BTreeMap<String, usize>,
    /// Row-major vectors: slot `i` is `data[i * dim..(i + 1) * dim]`.
    data: Vec<f32>,
    /// L2 norm of each slot's vector.
    norms: Vec<f32>,
    /// Id, document and payload of each slot.
    rows: Vec<Row>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn no_collection(name: &str) -> Error {
    Error::not_found(format!(
        "collection '{name}' does not exist: create it first with create_collection(\"{name}\", dimension, distance)"
    ))
}

impl Collection {
    fn new(dimension: u32, distance: Distance) -> Self {
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

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn vector(&self, slot: usize) -> &[f32] {
        let d = self.dim();
        &self.data[slot * d..(slot + 1) * d]
    }

    fn record(&self, slot: usize) -> VectorRecord {
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
    fn remove(&mut self, id: &str) -> bool {
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

    fn info(&self, name: &str) -> CollectionInfo {
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
    fn search(&self, queries: &[Query<'_>]) -> Vec<Vec<(f32, usize)>> {
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

    fn hits(&self, found: Vec<(f32, usize)>) -> Vec<SearchHit> {
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
struct Query<'a> {
    vector: &'a [f32],
    norm: f32,
    k: usize,
    filter: Option<&'a Filter>,
}

impl MemoryVector {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn collection(&self, name: &str) -> Result<Arc<RwLock<Collection>>> {
        read(&self.collections)
            .get(name)
            .cloned()
            .ok_or_else(|| no_collection(name))
    }
}

impl Vector for MemoryVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        validate_collection_name(name)?;
        if dimension == 0 {
            return Err(Error::invalid(format!(
                "collection '{name}': dimension is 0: give the dimension of the embeddings it will hold"
            )));
        }
        let mut all = write(&self.collections);
        if let Some(existing) = all.get(name) {
            let c = read(existing);
            return Err(Error::already_exists(format!(
                "collection '{name}' exists already ({} dimensions, {}): use it, or drop_collection it first",
                c.dimension,
                c.distance.as_str()
            )));
        }
        all.insert(
            name.to_string(),
            Arc::new(RwLock::new(Collection::new(dimension, distance))),
        );
        Ok(())
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        write(&self.collections)
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| no_collection(name))
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let all = read(&self.collections);
        let mut out: Vec<CollectionInfo> = all.iter().map(|(n, c)| read(c).info(n)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let c = self.collection(name)?;
        let info = read(&c).info(name);
        Ok(info)
    }

    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        let c = self.collection(collection)?;
        let mut c = write(&c);
        // Validate everything first: a bad record means nothing is written.
        validate_records(records, c.dimension)?;
        let extra = records.len() * c.dim();
        c.data.reserve(extra);
        for r in records {
            c.put(r);
        }
        Ok(())
    }

    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        let c = self.collection(collection)?;
        let c = read(&c);
        let mut seen = std::collections::HashSet::new();
        Ok(ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .filter_map(|id| c.index.get(id).map(|&slot| c.record(slot)))
            .collect())
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        let c = self.collection(collection)?;
        let mut c = write(&c);
        Ok(ids.iter().filter(|id| c.remove(id)).count() as u64)
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let c = self.collection(collection)?;
        let mut c = write(&c);
        let doomed: Vec<String> = c
            .rows
            .iter()
            .filter(|r| filter.matches(&r.payload))
            .map(|r| r.id.clone())
            .collect();
        for id in &doomed {
            c.remove(id);
        }
        Ok(doomed.len() as u64)
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        let c = self.collection(collection)?;
        let c = read(&c);
        Ok(match filter {
            None => c.len() as u64,
            Some(f) => c.rows.iter().filter(|r| f.matches(&r.payload)).count() as u64,
        })
    }

    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        Ok(self
            .search_batch(collection, std::slice::from_ref(request))?
            .pop()
            .unwrap_or_default())
    }

    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        let c = self.collection(collection)?;
        let c = read(&c);
        let batch = requests.len() > 1;
        let queries = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let what = if batch {
                    format!("query {i}")
                } else {
                    "query".to_string()
                };
                validate_vector(&r.vector, c.dimension, &what)?;
                Ok(Query {
                    vector: &r.vector,
                    norm: backplane_core::vector::norm(&r.vector),
                    k: r.k.min(c.len()),
                    filter: r.filter.as_ref(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(c.search(&queries)
            .into_iter()
            .map(|found| c.hits(found))
            .collect())
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        check_limit(limit, "scroll", "record")?;
        let c = self.collection(collection)?;
        let c = read(&c);
        let page = page_after(&c.index, cursor, limit, |&slot| c.record(slot));
        Ok(ScrollPage {
            records: page.items,
            next_cursor: page.next_cursor,
        })
    }

    fn health(&self) -> Result<Health> {
        Ok(Health::ok("in-memory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;
    use serde_json::json;

    /// A small deterministic pseudo-random generator, to avoid a dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        fn vector(&mut self, d: usize) -> Vec<f32> {
            (0..d).map(|_| self.next()).collect()
        }
    }

    fn ids(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    fn hit_ids(h: &[SearchHit]) -> Vec<&str> {
        h.iter().map(|h| h.id.as_str()).collect()
    }

    fn store(distance: Distance) -> MemoryVector {
        let v = MemoryVector::new();
        v.create_collection("c", 2, distance).unwrap();
        v.upsert(
            "c",
            &[
                VectorRecord::new("x", vec![1.0, 0.0]).with_payload(json!({"n": 1, "tag": "a"})),
                VectorRecord::new("y", vec![0.0, 1.0]).with_payload(json!({"n": 2, "tag": "b"})),
                VectorRecord::new("xy", vec![2.0, 2.0])
                    .with_payload(json!({"n": 3, "tag": "a"}))
                    .with_document("diagonal"),
            ],
        )
        .unwrap();
        v
    }

    #[test]
    fn collections() {
        let v = MemoryVector::new();
        v.create_collection("b", 3, Distance::Dot).unwrap();
        v.create_collection("a", 2, Distance::Cosine).unwrap();
        let e = v.create_collection("a", 2, Distance::Cosine).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        let e = v
            .create_collection("bad name", 2, Distance::Cosine)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = v.create_collection("z", 0, Distance::Cosine).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let names: Vec<_> = v
            .list_collections()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        let info = v.collection_info("b").unwrap();
        assert_eq!(
            (info.dimension, info.distance, info.count),
            (3, Distance::Dot, 0)
        );
        v.drop_collection("b").unwrap();
        let e = v.collection_info("b").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.message().contains("'b'") && e.message().contains("create_collection"),
            "{e}"
        );
        assert_eq!(
            v.drop_collection("b").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let e = v.upsert("nope", &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn upsert_is_all_or_nothing() {
        let v = store(Distance::Cosine);
        for bad in [
            VectorRecord::new("z", vec![1.0]),
            VectorRecord::new("z", vec![f32::NAN, 1.0]),
            VectorRecord::new("z", vec![f32::INFINITY, 1.0]),
            VectorRecord::new("", vec![1.0, 1.0]),
            VectorRecord::new("z", vec![1.0, 1.0]).with_payload(json!([1])),
        ] {
            let batch = [VectorRecord::new("ok", vec![1.0, 1.0]), bad];
            assert_eq!(
                v.upsert("c", &batch).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
        assert_eq!(v.count("c", None).unwrap(), 3);
        assert!(v.get("c", &["ok".into()]).unwrap().is_empty());
    }

    #[test]
    fn get_replace_delete() {
        let v = store(Distance::Cosine);
        let got = v
            .get("c", &["xy".into(), "missing".into(), "x".into()])
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "xy");
        assert_eq!(got[0].vector, vec![2.0, 2.0]);
        assert_eq!(got[0].document.as_deref(), Some("diagonal"));
        assert_eq!(got[1].payload, json!({"n": 1, "tag": "a"}));
        v.upsert("c", &[VectorRecord::new("x", vec![0.5, 0.5])])
            .unwrap();
        assert_eq!(v.count("c", None).unwrap(), 3);
        assert_eq!(v.get("c", &["x".into()]).unwrap()[0].vector, vec![0.5, 0.5]);
        // Deleting the first slot moves the last into it.
        assert_eq!(v.delete("c", &["x".into(), "missing".into()]).unwrap(), 1);
        assert_eq!(v.delete("c", &["x".into()]).unwrap(), 0);
        let got = v.get("c", &["y".into(), "xy".into()]).unwrap();
        assert_eq!(got[0].vector, vec![0.0, 1.0]);
        assert_eq!(got[1].vector, vec![2.0, 2.0]);
        let hits = v
            .search("c", &SearchRequest::new(vec![0.0, 1.0], 5))
            .unwrap();
        assert_eq!(hit_ids(&hits), ["y", "xy"]);
    }

    #[test]
    fn scores_per_distance() {
        let q = SearchRequest::new(vec![1.0, 0.0], 3);
        let v = store(Distance::Cosine);
        let h = v.search("c", &q).unwrap();
        assert_eq!(hit_ids(&h), ["x", "xy", "y"]);
        assert!((h[0].score - 1.0).abs() < 1e-6);
        assert!((h[1].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(h[1].document.as_deref(), Some("diagonal"));
        let v = store(Distance::Dot);
        let h = v.search("c", &q).unwrap();
        assert_eq!(hit_ids(&h), ["xy", "x", "y"]);
        assert_eq!(h[0].score, 2.0);
        let v = store(Distance::Euclidean);
        let h = v.search("c", &q).unwrap();
        assert_eq!(hit_ids(&h), ["x", "y", "xy"]);
        assert_eq!(h[0].score, 0.0);
        assert!((h[1].score + std::f32::consts::SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn search_checks_and_filters() {
        let v = store(Distance::Cosine);
        let e = v
            .search("c", &SearchRequest::new(vec![1.0], 3))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = v
            .search("c", &SearchRequest::new(vec![f32::NAN, 0.0], 3))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(v
            .search("c", &SearchRequest::new(vec![1.0, 0.0], 0))
            .unwrap()
            .is_empty());
        let f = Filter::parse(&json!({"key": "tag", "match": "a"})).unwrap();
        let h = v
            .search(
                "c",
                &SearchRequest::new(vec![0.0, 1.0], 10).with_filter(f.clone()),
            )
            .unwrap();
        assert_eq!(hit_ids(&h), ["xy", "x"]);
        let h = v
            .search(
                "c",
                &SearchRequest::new(vec![0.0, 1.0], 1).with_filter(f.clone()),
            )
            .unwrap();
        assert_eq!(hit_ids(&h), ["xy"]);
        assert_eq!(v.count("c", Some(&f)).unwrap(), 2);
        assert_eq!(v.delete_where("c", &f).unwrap(), 2);
        assert_eq!(v.count("c", None).unwrap(), 1);
        assert_eq!(v.count("c", Some(&f)).unwrap(), 0);
    }

    #[test]
    fn scroll_pages_in_id_order() {
        let v = MemoryVector::new();
        v.create_collection("c", 1, Distance::Dot).unwrap();
        let recs: Vec<_> = (0..7)
            .map(|i| VectorRecord::new(format!("r{i}"), vec![i as f32]))
            .rev()
            .collect();
        v.upsert("c", &recs).unwrap();
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let page = v.scroll("c", cursor.as_deref(), 3).unwrap();
            assert!(page.records.len() <= 3);
            seen.extend(page.records.into_iter().map(|r| (r.id, r.vector)));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let expect: Vec<_> = (0..7).map(|i| (format!("r{i}"), vec![i as f32])).collect();
        assert_eq!(seen, expect);
        let page = v.scroll("c", None, 7).unwrap();
        assert_eq!(page.next_cursor, None);
        assert_eq!(
            v.scroll("c", None, 0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            v.scroll("zz", None, 1).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    /// The blocked, threaded scan agrees with a naive one, after deletes.
    #[test]
    fn matches_naive_search() {
        let (n, d) = (12_000, 384);
        let mut rng = Lcg(7);
        for distance in [Distance::Cosine, Distance::Dot, Distance::Euclidean] {
            let v = MemoryVector::new();
            v.create_collection("c", d as u32, distance).unwrap();
            let recs: Vec<_> = (0..n)
                .map(|i| {
                    VectorRecord::new(format!("{i:05}"), rng.vector(d))
                        .with_payload(json!({"even": i % 2 == 0}))
                })
                .collect();
            v.upsert("c", &recs).unwrap();
            let gone: Vec<String> = (0..n).step_by(7).map(|i| format!("{i:05}")).collect();
            v.delete("c", &gone).unwrap();
            let gone_set: std::collections::HashSet<&str> = ids(&gone).into_iter().collect();
            let live: Vec<&VectorRecord> = recs
                .iter()
                .filter(|r| !gone_set.contains(r.id.as_str()))
                .collect();
            let even = Filter::parse(&json!({"key": "even", "match": true})).unwrap();
            let requests: Vec<SearchRequest> = (0..3)
                .map(|i| {
                    let r = SearchRequest::new(rng.vector(d), 10);
                    if i == 1 {
                        r.with_filter(even.clone())
                    } else {
                        r
                    }
                })
                .collect();
            let batch = v.search_batch("c", &requests).unwrap();
            for (req, got) in requests.iter().zip(&batch) {
                let qn = backplane_core::vector::norm(&req.vector);
                let mut naive: Vec<(f32, &str)> = live
                    .iter()
                    .filter(|r| req.filter.as_ref().is_none_or(|f| f.matches(&r.payload)))
                    .map(|r| {
                        let rn = backplane_core::vector::norm(&r.vector);
                        (
                            distance.score(&r.vector, &req.vector, rn, qn),
                            r.id.as_str(),
                        )
                    })
                    .collect();
                naive.sort_by(|a, b| b.0.total_cmp(&a.0));
                let want: Vec<&str> = naive.iter().take(10).map(|x| x.1).collect();
                assert_eq!(hit_ids(got), want, "{distance:?}");
                let single = v.search("c", req).unwrap();
                assert_eq!(&single, got);
            }
        }
    }
}
