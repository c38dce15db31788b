//! The vector capability: collections of embeddings with JSON payloads,
//! filtered similarity search, and scrolling with raw vectors.
//!
//! Scores are *higher is better* on every backend: cosine similarity, dot
//! product, and for euclidean the negated distance.

use crate::{Error, Filter, Health, Result};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// How vectors are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Distance {
    /// Cosine similarity, in [-1, 1].
    Cosine,
    /// Dot product.
    Dot,
    /// Euclidean (L2); the score is the negated distance.
    Euclidean,
}

impl Distance {
    /// The name used in plugins.toml: `cosine`, `dot`, `euclidean`.
    pub fn as_str(self) -> &'static str {
        match self {
            Distance::Cosine => "cosine",
            Distance::Dot => "dot",
            Distance::Euclidean => "euclidean",
        }
    }
    /// Parse a name as written in plugins.toml.
    pub fn parse(s: &str) -> Result<Distance> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" => Ok(Distance::Cosine),
            "dot" => Ok(Distance::Dot),
            "euclidean" | "euclid" | "l2" => Ok(Distance::Euclidean),
            other => Err(Error::invalid(format!(
                "unknown distance '{other}': use cosine, dot or euclidean"
            ))),
        }
    }
    /// The score of `a` against `b` (higher is better). `a_norm` and `b_norm`
    /// are the vectors' L2 norms, used by cosine.
    #[inline]
    pub fn score(self, a: &[f32], b: &[f32], a_norm: f32, b_norm: f32) -> f32 {
        match self {
            Distance::Cosine => {
                let d = a_norm * b_norm;
                if d == 0.0 {
                    0.0
                } else {
                    dot(a, b) / d
                }
            }
            Distance::Dot => dot(a, b),
            Distance::Euclidean => -l2_sq(a, b).sqrt(),
        }
    }
}

/// Dot product, written so the compiler vectorises it.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Squared euclidean distance.
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    s
}

/// L2 norm.
#[inline]
pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// Check a vector against a collection's dimension: right length, every
/// component finite. `what` names it in the error ("record 'a1'", "query").
pub fn validate_vector(v: &[f32], dimension: u32, what: &str) -> Result<()> {
    if v.len() != dimension as usize {
        return Err(Error::invalid(format!(
            "{what} has {} dimensions but the collection has {dimension}: embed with the model the collection was created for",
            v.len()
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(format!(
            "{what} has a non-finite component ({}) at index {i}: vectors must contain only finite numbers",
            v[i]
        )));
    }
    if let Some(i) = v.iter().position(|x| x.abs() > MAX_COMPONENT) {
        return Err(Error::invalid(format!(
            "{what} has a component of {:e} at index {i}: components must lie within ±{MAX_COMPONENT:e}, or scores overflow (normalise the embedding)",
            v[i]
        )));
    }
    Ok(())
}

/// The largest magnitude a vector component may have, on every backend:
/// with components this large, a dot product or squared distance of a
/// million dimensions still fits an `f32`, so every backend scores the
/// same (beyond it, backends gave NaN, -inf or 0.0, or dropped the hit).
/// Embeddings are many orders of magnitude smaller.
pub const MAX_COMPONENT: f32 = 1e15;

/// The collection a vector store creates when it opens, named after the
/// store, from the store section's `dimension` and `distance` options
/// (shared by every backend that offers them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultCollection {
    /// The store's name.
    pub name: String,
    /// Its dimension.
    pub dimension: u32,
    /// Its distance.
    pub distance: Distance,
}

impl DefaultCollection {
    /// Read `dimension` (required for a default collection) and `distance`
    /// (default cosine) as given in `store`'s section; `None` when neither
    /// is set. Each mistake is one `Config` error naming the option.
    pub fn from_options(
        store: &crate::StoreConfig,
        dimension: Option<u32>,
        distance: Option<&str>,
    ) -> Result<Option<DefaultCollection>> {
        let Some(dimension) = dimension else {
            if distance.is_some() {
                return Err(
                    store.error("`distance` is set without `dimension`: give both, or neither")
                );
            }
            return Ok(None);
        };
        if dimension == 0 {
            return Err(store.error("`dimension` is 0: give the embedding size, e.g. 384"));
        }
        let distance = match distance {
            None => Distance::Cosine,
            Some(d) => Distance::parse(d)
                .map_err(|e| store.error(format!("`distance`: {}", e.message())))?,
        };
        validate_collection_name(&store.store).map_err(|e| {
            store.error(format!(
                "the store name is used as the default collection's name, but {}",
                e.message()
            ))
        })?;
        Ok(Some(DefaultCollection {
            name: store.store.clone(),
            dimension,
            distance,
        }))
    }

    /// Create the collection in `store` if absent. An existing collection
    /// of another dimension or distance is a `Config` error (the config
    /// says one thing, the data another); `backend` names the log line.
    pub fn ensure(&self, store: &dyn Vector, backend: &str) -> Result<()> {
        match store.collection_info(&self.name) {
            Ok(c) if c.dimension != self.dimension || c.distance != self.distance => {
                Err(Error::config(format!(
                    "collection '{0}' exists with {1} dims and {2} distance, but the config says {3} dims and {4}: fix `dimension`/`distance`, or drop the collection",
                    self.name,
                    c.dimension,
                    c.distance.as_str(),
                    self.dimension,
                    self.distance.as_str()
                )))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                store.create_collection(&self.name, self.dimension, self.distance)?;
                log::info!(
                    "{backend}: created collection '{}' ({} dims, {})",
                    self.name,
                    self.dimension,
                    self.distance.as_str()
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// The error for a collection that does not exist, worded the same on
/// every backend.
pub fn unknown_collection(collection: &str) -> Error {
    Error::not_found(format!(
        "collection '{collection}' does not exist: create it with create_collection(\"{collection}\", dimension, distance), \
         or set `dimension` in the store's section to have it created on open"
    ))
}

/// The error for creating collection `name` when one exists already;
/// `what` says what it is (`384 dims, cosine`, or why it is not a
/// collection of this backend).
pub fn collection_exists(name: &str, what: &str) -> Error {
    Error::already_exists(format!(
        "collection '{name}' exists already ({what}): use it, or drop it first"
    ))
}

/// A collection's dimension and distance as messages give them:
/// `384 dims, cosine`.
pub fn described(dimension: u32, distance: Distance) -> String {
    format!("{dimension} dims, {}", distance.as_str())
}

/// Check a collection name: 1–64 of ASCII letters, digits, `_`, `-`.
pub fn validate_collection_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::invalid(format!(
            "collection name '{name}' is not allowed: use 1-64 ASCII letters, digits, '_' or '-'"
        )));
    }
    Ok(())
}

/// One stored embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VectorRecord {
    /// The application's id.
    pub id: String,
    /// The embedding.
    pub vector: Vec<f32>,
    /// The text it embeds, if kept.
    pub document: Option<String>,
    /// Arbitrary JSON payload (an object, or null).
    #[serde(with = "crate::value::json_text")]
    pub payload: serde_json::Value,
}

impl VectorRecord {
    /// A record with an empty payload and no document.
    pub fn new(id: impl Into<String>, vector: Vec<f32>) -> Self {
        VectorRecord {
            id: id.into(),
            vector,
            document: None,
            payload: serde_json::Value::Object(Default::default()),
        }
    }
    /// With a payload.
    pub fn with_payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }
    /// With a document.
    pub fn with_document(mut self, document: impl Into<String>) -> Self {
        self.document = Some(document.into());
        self
    }
}

/// Check a batch for upsert: ids non-empty and unique, vectors valid,
/// payloads objects or null. Nothing is written when this fails.
pub fn validate_records(records: &[VectorRecord], dimension: u32) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(records.len());
    for r in records {
        if r.id.is_empty() {
            return Err(Error::invalid(
                "a record has an empty id: every record needs an id",
            ));
        }
        if !seen.insert(r.id.as_str()) {
            return Err(Error::invalid(format!(
                "id '{}' appears twice in one upsert: send each id once",
                r.id
            )));
        }
        validate_vector(&r.vector, dimension, &format!("record '{}'", r.id))?;
        if !(r.payload.is_object() || r.payload.is_null()) {
            return Err(Error::invalid(format!(
                "record '{}' has a payload that is not a JSON object",
                r.id
            )));
        }
    }
    Ok(())
}

/// A search result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The record's id.
    pub id: String,
    /// Similarity; higher is better.
    pub score: f32,
    /// The record's document.
    pub document: Option<String>,
    /// The record's payload.
    #[serde(with = "crate::value::json_text")]
    pub payload: serde_json::Value,
}

impl SearchHit {
    /// The hit for `record` at `score` (its vector left behind).
    pub fn of(record: VectorRecord, score: f32) -> SearchHit {
        SearchHit {
            id: record.id,
            score,
            document: record.document,
            payload: record.payload,
        }
    }
}

/// One similarity query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// The query embedding.
    pub vector: Vec<f32>,
    /// How many hits at most.
    pub k: usize,
    /// Only records whose payload passes.
    pub filter: Option<Filter>,
}

impl SearchRequest {
    /// A query for the `k` nearest records.
    pub fn new(vector: Vec<f32>, k: usize) -> Self {
        SearchRequest {
            vector,
            k,
            filter: None,
        }
    }
    /// With a filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }
}

/// A collection's description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionInfo {
    /// Name.
    pub name: String,
    /// Vector dimension.
    pub dimension: u32,
    /// Distance.
    pub distance: Distance,
    /// Number of records.
    pub count: u64,
}

/// One page of a scroll.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScrollPage {
    /// Records with their raw vectors.
    pub records: Vec<VectorRecord>,
    /// Pass this to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// The non-blocking form of a vector store's two hottest calls, for a
/// backend that serves them from threads or a runtime of its own (the
/// embedded backends do, through [`crate::kit::served`]). Each method
/// starts the call and returns at once; `done` is called exactly once,
/// from any thread, when the call has finished.
///
/// A backend offers it through [`Vector::as_async`]; the blocking methods
/// stay the reference semantics and must agree with it.
pub trait AsyncVector: Send + Sync {
    /// Start [`Vector::upsert`].
    fn upsert(&self, collection: &str, records: &[VectorRecord], done: crate::Done<()>);
    /// Start [`Vector::search`].
    fn search(&self, collection: &str, request: &SearchRequest, done: crate::Done<Vec<SearchHit>>);
}

/// A vector store. Implemented by plugins; used through the host.
pub trait Vector: Send + Sync {
    /// The store's non-blocking form of `upsert` and `search`, if it has
    /// one. Default: none; the host's async API then runs the blocking
    /// call on a thread.
    fn as_async(&self) -> Option<&dyn AsyncVector> {
        None
    }
    /// Create a collection; `AlreadyExists` if it does.
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()>;
    /// Drop a collection and its records; `NotFound` if absent.
    fn drop_collection(&self, name: &str) -> Result<()>;
    /// Every collection.
    fn list_collections(&self) -> Result<Vec<CollectionInfo>>;
    /// One collection; `NotFound` if absent.
    fn collection_info(&self, name: &str) -> Result<CollectionInfo>;
    /// Insert or replace records, all or none.
    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()>;
    /// Records by id; missing ids are left out.
    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>>;
    /// Delete by id; returns how many existed.
    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64>;
    /// Delete every record whose payload passes `filter`; returns how many.
    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64>;
    /// Count records, optionally filtered.
    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64>;
    /// The `k` best records for a query.
    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>>;
    /// Several queries at once.
    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        requests
            .iter()
            .map(|r| self.search(collection, r))
            .collect()
    }
    /// Records in a stable order, `limit` at a time, with raw vectors.
    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage>;
    /// Check the store answers.
    fn health(&self) -> Result<Health>;
}

/// A bounded best-k collector for exact search.
pub struct TopK<T> {
    k: usize,
    heap: BinaryHeap<Scored<T>>,
}

struct Scored<T>(f32, T);
impl<T> PartialEq for Scored<T> {
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}
impl<T> Eq for Scored<T> {}
impl<T> PartialOrd for Scored<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Scored<T> {
    // Reversed, so the heap's top is the worst kept score.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0)
    }
}

impl<T> TopK<T> {
    /// Keep the best `k`.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }
    /// The score a candidate must beat to be kept.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.heap.peek().map_or(f32::NEG_INFINITY, |s| s.0)
        }
    }
    /// Offer a candidate.
    #[inline]
    pub fn push(&mut self, score: f32, item: T) {
        if self.k == 0 {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Scored(score, item));
        } else if score > self.threshold() {
            self.heap.pop();
            self.heap.push(Scored(score, item));
        }
    }
    /// The kept items, best first.
    pub fn into_sorted(self) -> Vec<(f32, T)> {
        let mut v: Vec<(f32, T)> = self.heap.into_iter().map(|s| (s.0, s.1)).collect();
        v.sort_by(|a, b| b.0.total_cmp(&a.0));
        v
    }
}
