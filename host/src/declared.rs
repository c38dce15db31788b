//! What a backend declares is what the host relies on. Each store is
//! opened through its backend's [`BackendDescriptor`], and where the
//! backend declares less than the interface promises, the host makes up
//! the difference, so an application sees the same behaviour on every
//! backend:
//!
//! - **filter operators** (vector, graph) a backend does not declare are
//!   evaluated by the host, never dropped: the backend gets the part of
//!   the filter it runs (the `must` and `must_not` conditions it can
//!   evaluate, and `should` when it can evaluate all of it), and the host
//!   applies the whole filter to what comes back. A search over-fetches
//!   (4×, then 16×, … until `k` hits pass or the collection is exhausted);
//!   `count` and `delete_where` are exact (the host scrolls the
//!   collection).
//! - **`max_batch`**: a larger batch (upsert, get, delete, search_batch,
//!   a scroll page) is split into calls of at most that size. An upsert is
//!   checked whole (ids, dimensions, values) before its first part is sent,
//!   so bad input writes nothing; a backend failing halfway keeps the parts
//!   before.
//! - **`native_ttl = false`** (cache): the host enforces expiry. Values are
//!   stored with a 12-byte header holding their expiry (a value without
//!   the header, written by something else, never expires); a channel
//!   expires `ttl` after the timestamp of its newest message, checked when
//!   it is read.
//!
//! A backend that declares everything gets its stores unwrapped: the
//! shipped plugins pay nothing. A capability a backend does not declare is
//! refused when the store opens (see the loader).
//!
//! These layers implement the traits by hand, not from the method lists:
//! a method added to a trait later reaches the backend through the
//! trait's default body until it is added here (the boundary test lists
//! every method; `declared_layers_forward_every_method` checks this file
//! names each).

use crate::layer::forward;
use backplane_core::kit::time::now_ms;
use backplane_core::vector::validate_records;
use backplane_core::{
    check_value_size, validate_key, validate_ttl, BackendDescriptor, Cache, CacheEntry, CacheStats,
    ChannelInfo, CollectionInfo, Distance, Filter, FilterOp, Graph, Health, Message, NodeQuery,
    Page, Result, ScrollPage, SearchHit, SearchRequest, Vector, VectorRecord,
};
use std::time::Duration;

/// The part of `f` a backend running only `ops` evaluates itself, and
/// whether that part is all of `f`.
fn native_part(f: &Filter, ops: &[FilterOp]) -> (Filter, bool) {
    let runs = |c: &backplane_core::Condition| {
        Filter::must([c.clone()])
            .ops()
            .iter()
            .all(|op| ops.contains(op))
    };
    let native = Filter {
        must: f.must.iter().filter(|c| runs(c)).cloned().collect(),
        should: if f.should.iter().all(runs) {
            f.should.clone()
        } else {
            Vec::new()
        },
        must_not: f.must_not.iter().filter(|c| runs(c)).cloned().collect(),
    };
    let whole = native == *f;
    (native, whole)
}

fn optional(f: Filter) -> Option<Filter> {
    (f != Filter::default()).then_some(f)
}

/// The vector store of `d`'s backend, wrapped when it declares less than
/// every filter operator or limits its batches.
pub(crate) fn vector(
    inner: Box<dyn Vector>,
    d: &BackendDescriptor,
    store: &str,
) -> Box<dyn Vector> {
    let all_ops = FilterOp::ALL.iter().all(|op| d.filter_ops.contains(op));
    if all_ops && d.max_batch.is_none() {
        return inner;
    }
    Box::new(DeclaredVector {
        inner,
        named: Named::new(store, d),
        ops: d.filter_ops.clone(),
        batch: d.max_batch.map_or(usize::MAX, |b| (b as usize).max(1)),
    })
}

/// The store and backend an error of the host's own checks names, as the
/// backend's errors do.
struct Named(String, String);

impl Named {
    fn new(store: &str, d: &BackendDescriptor) -> Named {
        Named(store.to_string(), d.name.clone())
    }
    fn check(&self, r: Result<()>) -> Result<()> {
        r.map_err(|e| e.in_store(&self.0, &self.1))
    }
}

struct DeclaredVector {
    inner: Box<dyn Vector>,
    named: Named,
    ops: Vec<FilterOp>,
    batch: usize,
}

impl DeclaredVector {
    /// Every record of `collection` that passes `filter`, scrolled.
    fn matching(&self, collection: &str, filter: &Filter) -> Result<Vec<VectorRecord>> {
        let all = backplane_core::kit::page::collect_pages(|cursor| {
            let page = self
                .inner
                .scroll(collection, cursor, self.batch.min(1000))?;
            Ok(backplane_core::Page {
                items: page
                    .records
                    .into_iter()
                    .filter(|r| filter.matches(&r.payload))
                    .collect(),
                next_cursor: page.next_cursor,
            })
        })?;
        Ok(all)
    }
}

impl Vector for DeclaredVector {
    forward! {
        fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> ();
        fn drop_collection(&self, name: &str) -> ();
        fn list_collections(&self) -> Vec<CollectionInfo>;
        fn collection_info(&self, name: &str) -> CollectionInfo;
    }
    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        if records.len() <= self.batch {
            return self.inner.upsert(collection, records);
        }
        // Checked whole first: bad input writes nothing.
        let info = self.inner.collection_info(collection)?;
        self.named
            .check(validate_records(records, info.dimension))?;
        records
            .chunks(self.batch)
            .try_for_each(|part| self.inner.upsert(collection, part))
    }
    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        if ids.len() <= self.batch {
            return self.inner.get(collection, ids);
        }
        let mut out = Vec::with_capacity(ids.len());
        for part in ids.chunks(self.batch) {
            out.extend(self.inner.get(collection, part)?);
        }
        Ok(out)
    }
    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        if ids.len() <= self.batch {
            return self.inner.delete(collection, ids);
        }
        ids.chunks(self.batch)
            .map(|part| self.inner.delete(collection, part))
            .sum()
    }
    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        if native_part(filter, &self.ops).1 {
            return self.inner.delete_where(collection, filter);
        }
        let ids: Vec<String> = self
            .matching(collection, filter)?
            .into_iter()
            .map(|r| r.id)
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        self.delete(collection, &ids)
    }
    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        match filter {
            Some(f) if !native_part(f, &self.ops).1 => {
                Ok(self.matching(collection, f)?.len() as u64)
            }
            _ => self.inner.count(collection, filter),
        }
    }
    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let Some(filter) = &request.filter else {
            return self.inner.search(collection, request);
        };
        let (native, whole) = native_part(filter, &self.ops);
        if whole || request.k == 0 {
            return self.inner.search(collection, request);
        }
        let mut fetch = request.k.saturating_mul(4).max(16);
        loop {
            let asked = SearchRequest {
                vector: request.vector.clone(),
                k: fetch,
                filter: optional(native.clone()),
            };
            let hits = self.inner.search(collection, &asked)?;
            // Fewer hits than asked for: the collection has no more.
            let exhausted = hits.len() < fetch;
            let mut passed: Vec<SearchHit> = hits
                .into_iter()
                .filter(|h| filter.matches(&h.payload))
                .collect();
            if passed.len() >= request.k || exhausted {
                passed.truncate(request.k);
                return Ok(passed);
            }
            fetch = fetch.saturating_mul(4);
        }
    }
    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        let host_filtered = requests.iter().any(|r| {
            r.filter
                .as_ref()
                .is_some_and(|f| !native_part(f, &self.ops).1)
        });
        if host_filtered {
            return requests
                .iter()
                .map(|r| self.search(collection, r))
                .collect();
        }
        let mut out = Vec::with_capacity(requests.len());
        for part in requests.chunks(self.batch) {
            out.extend(self.inner.search_batch(collection, part)?);
        }
        Ok(out)
    }
    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        self.inner.scroll(collection, cursor, limit.min(self.batch))
    }
    fn health(&self) -> Result<Health> {
        self.inner.health()
    }
}

/// The graph store of `d`'s backend, wrapped when it declares less than
/// every filter operator (node queries).
pub(crate) fn graph(inner: Box<dyn Graph>, d: &BackendDescriptor) -> Box<dyn Graph> {
    if FilterOp::ALL.iter().all(|op| d.filter_ops.contains(op)) {
        return inner;
    }
    Box::new(DeclaredGraph {
        inner,
        ops: d.filter_ops.clone(),
    })
}

struct DeclaredGraph {
    inner: Box<dyn Graph>,
    ops: Vec<FilterOp>,
}

impl Graph for DeclaredGraph {
    forward! {
        fn create_nodes(&self, nodes: &[backplane_core::NewNode]) -> Vec<backplane_core::Node>;
        fn get_node(&self, id: &str) -> Option<backplane_core::Node>;
        fn update_node(&self, id: &str, properties: &serde_json::Value) -> backplane_core::Node;
        fn delete_node(&self, id: &str) -> bool;
        fn create_edges(&self, edges: &[backplane_core::NewEdge]) -> Vec<backplane_core::Edge>;
        fn get_edge(&self, id: &str) -> Option<backplane_core::Edge>;
        fn update_edge(&self, id: &str, properties: &serde_json::Value) -> backplane_core::Edge;
        fn delete_edge(&self, id: &str) -> bool;
        fn neighbors(&self, id: &str, direction: backplane_core::Direction, edge_types: &[String], depth: u32) -> Vec<backplane_core::Neighbor>;
        fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Option<backplane_core::Path>;
        fn edges_of(&self, id: &str, direction: backplane_core::Direction) -> Vec<backplane_core::Edge>;
        fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Page<backplane_core::Node>;
        fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Page<backplane_core::Edge>;
        fn import_nodes(&self, nodes: &[backplane_core::Node], overwrite: bool) -> u64;
        fn import_edges(&self, edges: &[backplane_core::Edge], overwrite: bool) -> u64;
        fn health(&self) -> Health;
    }
    fn find_nodes(&self, query: &NodeQuery) -> Result<Vec<backplane_core::Node>> {
        let Some(filter) = &query.filter else {
            return self.inner.find_nodes(query);
        };
        let (native, whole) = native_part(filter, &self.ops);
        if whole {
            return self.inner.find_nodes(query);
        }
        // The backend narrows what it can; the host applies the rest and
        // the limit.
        let wide = NodeQuery {
            label: query.label.clone(),
            filter: optional(native),
            text: query.text.clone(),
            limit: 0,
        };
        query.select(self.inner.find_nodes(&wide)?.into_iter().map(Ok))
    }
}

/// What the host needs of a cache store's settings to enforce expiry for a
/// backend that does not: the channel TTL and the value limit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CacheSettings {
    channel_ttl: Option<Duration>,
    /// The configured limit: what the application may store.
    pub(crate) max_value_bytes: usize,
    /// Bytes a layer above adds to every value (encryption), which the
    /// limits below it allow for.
    sealed: usize,
}

impl CacheSettings {
    /// Read from a store section's options (the backend refuses malformed
    /// values at open, so these are read leniently).
    pub(crate) fn of(options: &serde_json::Value) -> CacheSettings {
        CacheSettings {
            channel_ttl: options
                .get("ttl")
                .and_then(|t| t.as_str())
                .and_then(|t| backplane_core::parse_duration(t).ok()),
            max_value_bytes: options
                .get("max_value_bytes")
                .and_then(|m| m.as_u64())
                .map_or(backplane_core::DEFAULT_MAX_VALUE_BYTES, |m| m as usize),
            sealed: 0,
        }
    }

    /// The settings under a layer that adds `overhead` bytes to every
    /// value: the backend and the host's expiry layer allow for them,
    /// the layer holds values to the configured limit.
    pub(crate) fn sealed(self, overhead: usize) -> CacheSettings {
        CacheSettings {
            sealed: overhead,
            ..self
        }
    }

    /// The options a store of `backend` is opened with: for a cache whose
    /// expiry the host enforces, `max_value_bytes` grows by the expiry
    /// header the host adds to each value (the host itself holds values to
    /// the configured limit), and for an encrypted cache by what the
    /// encryption adds, so the limit means the same on every backend.
    pub(crate) fn options_for(
        &self,
        registry: &crate::Registry,
        backend: &str,
        cap: backplane_core::Capability,
        mut options: serde_json::Value,
    ) -> serde_json::Value {
        let host_ttl = cap == backplane_core::Capability::Cache
            && registry
                .backends
                .get(backend)
                .is_some_and(|b| !b.descriptor.native_ttl);
        let grow = if host_ttl { HEADER } else { 0 } + self.sealed;
        if let (true, Some(o)) = (
            grow > 0 && cap == backplane_core::Capability::Cache,
            options.as_object_mut(),
        ) {
            o.insert(
                "max_value_bytes".into(),
                serde_json::Value::from(self.max_value_bytes.saturating_add(grow)),
            );
        }
        options
    }
}

/// The cache store of `d`'s backend, wrapped when it does not enforce
/// expiry itself (`native_ttl = false`).
pub(crate) fn cache(
    inner: Box<dyn Cache>,
    d: &BackendDescriptor,
    store: &str,
    settings: CacheSettings,
) -> Box<dyn Cache> {
    if d.native_ttl {
        return inner;
    }
    Box::new(HostTtl {
        inner,
        named: Named::new(store, d),
        channel_ttl: settings.channel_ttl,
        max_value_bytes: settings.max_value_bytes.saturating_add(settings.sealed),
    })
}

struct HostTtl {
    inner: Box<dyn Cache>,
    named: Named,
    max_value_bytes: usize,
    channel_ttl: Option<Duration>,
}

/// The header of a value stored with its expiry: 4 marker bytes, then the
/// expiry in milliseconds since the epoch (little-endian; 0 = never).
const MARK: &[u8; 4] = b"\xffbpx";
const HEADER: usize = 12;

fn frame(value: &[u8], ttl: Option<Duration>) -> Vec<u8> {
    let at = ttl.map_or(0, |t| {
        now_ms().saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
    });
    let mut v = Vec::with_capacity(HEADER + value.len());
    v.extend_from_slice(MARK);
    v.extend_from_slice(&at.to_le_bytes());
    v.extend_from_slice(value);
    v
}

/// The value and its expiry (ms since the epoch, if any) of a stored value.
fn unframe(stored: Vec<u8>) -> (Vec<u8>, Option<i64>) {
    if stored.len() >= HEADER && &stored[..4] == MARK {
        let at = i64::from_le_bytes(stored[4..HEADER].try_into().expect("8 bytes"));
        (stored[HEADER..].to_vec(), (at != 0).then_some(at))
    } else {
        (stored, None)
    }
}

impl HostTtl {
    /// The live value of `key` and its expiry; an expired one is deleted.
    fn live(&self, key: &str, stored: Option<Vec<u8>>) -> Result<Option<(Vec<u8>, Option<i64>)>> {
        let Some(stored) = stored else {
            return Ok(None);
        };
        let (value, at) = unframe(stored);
        if at.is_some_and(|at| at <= now_ms()) {
            self.inner.delete(key)?;
            return Ok(None);
        }
        Ok(Some((value, at)))
    }

    /// Whether `channel` has expired (its newest message is older than the
    /// channel TTL); an expired channel is cleared.
    fn expired(&self, channel: &str) -> Result<bool> {
        let Some(ttl) = self.channel_ttl else {
            return Ok(false);
        };
        let newest = self.inner.recent(channel, 1, None)?;
        let Some(m) = newest.last() else {
            return Ok(false);
        };
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        if m.timestamp_ms.saturating_add(ttl_ms) <= now_ms() {
            self.inner.clear(channel)?;
            return Ok(true);
        }
        Ok(false)
    }
}

impl Cache for HostTtl {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let stored = self.inner.get(key)?;
        Ok(self.live(key, stored)?.map(|(v, _)| v))
    }
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.named.check(validate_key(key, "key"))?;
        self.named.check(validate_ttl(ttl))?;
        self.named.check(check_value_size(
            "value",
            key,
            value.len(),
            self.max_value_bytes,
        ))?;
        self.inner.set(key, &frame(value, ttl), None)
    }
    fn delete(&self, key: &str) -> Result<bool> {
        let stored = self.inner.get(key)?;
        let live = self.live(key, stored)?.is_some();
        Ok(self.inner.delete(key)? && live)
    }
    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }
    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.named.check(validate_key(key, "key"))?;
        self.named.check(validate_ttl(Some(ttl)))?;
        let stored = self.inner.get(key)?;
        match self.live(key, stored)? {
            Some((value, _)) => {
                self.inner.set(key, &frame(&value, Some(ttl)), None)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        let stored = self.inner.get_many(keys)?;
        keys.iter()
            .zip(stored)
            .map(|(k, s)| Ok(self.live(k, s)?.map(|(v, _)| v)))
            .collect()
    }
    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        self.named.check(validate_ttl(ttl))?;
        for (k, v) in entries {
            self.named
                .check(check_value_size("value", k, v.len(), self.max_value_bytes))?;
        }
        let framed: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| (k.clone(), frame(v, ttl)))
            .collect();
        self.inner.set_many(&framed, None)
    }
    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        self.add_messages(channel, std::slice::from_ref(message))
            .map(|mut v| v.remove(0))
    }
    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        // The backend's own limit was raised by the value header; messages
        // are held to the configured one here.
        for m in messages {
            self.named.check(check_value_size(
                "message",
                channel,
                m.content.len(),
                self.max_value_bytes,
            ))?;
        }
        self.expired(channel)?;
        if let [one] = messages {
            return Ok(vec![self.inner.add_message(channel, one)?]);
        }
        self.inner.add_messages(channel, messages)
    }
    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        if self.expired(channel)? {
            return Ok(Vec::new());
        }
        self.inner.recent(channel, limit, exclude_id)
    }
    fn remove_message(&self, channel: &str, id: &str) -> Result<bool> {
        if self.expired(channel)? {
            return Ok(false);
        }
        self.inner.remove_message(channel, id)
    }
    fn clear(&self, channel: &str) -> Result<u64> {
        if self.expired(channel)? {
            return Ok(0);
        }
        self.inner.clear(channel)
    }
    fn stats(&self) -> Result<CacheStats> {
        self.inner.stats()
    }
    fn health(&self) -> Result<Health> {
        self.inner.health()
    }
    fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ChannelInfo>> {
        let mut page = self.inner.list_channels(cursor, limit)?;
        if let Some(ttl) = self.channel_ttl {
            let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            let now = now_ms();
            page.items
                .retain(|c| c.last_activity_ms.saturating_add(ttl_ms) > now);
        }
        Ok(page)
    }
    fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Result<Page<CacheEntry>> {
        let page = self.inner.scan_keys(cursor, limit)?;
        let now = now_ms();
        let items = page
            .items
            .into_iter()
            .filter_map(|e| {
                let (value, at) = unframe(e.value);
                match at {
                    Some(at) if at <= now => None,
                    at => Some(CacheEntry {
                        key: e.key,
                        value,
                        ttl: at.map(|at| Duration::from_millis((at - now) as u64)),
                    }),
                }
            })
            .collect();
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }
    fn import_entries(&self, entries: &[CacheEntry], overwrite: bool) -> Result<u64> {
        backplane_core::port::import_entries(self, entries, overwrite)
    }
    fn import_messages(&self, channel: &str, messages: &[Message]) -> Result<u64> {
        self.inner.import_messages(channel, messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_native_part_keeps_what_the_backend_runs() {
        let f = Filter::parse(&json!({
            "must": [{"key": "a", "match": 1}, {"key": "n", "range": {"gt": 1}}],
            "should": [{"key": "b", "match": 2}, {"key": "c", "in": [1, 2]}],
            "must_not": [{"key": "d", "match": 3}],
        }))
        .unwrap();
        let (native, whole) = native_part(&f, &[FilterOp::Match]);
        assert!(!whole);
        assert_eq!(native.must.len(), 1, "the range condition is the host's");
        assert!(
            native.should.is_empty(),
            "an OR is pushed down whole or not at all"
        );
        assert_eq!(native.must_not.len(), 1);
        assert!(native_part(&f, &FilterOp::ALL).1);
    }

    #[test]
    fn values_carry_their_expiry() {
        let (v, at) = unframe(frame(b"abc", Some(Duration::from_secs(10))));
        assert_eq!(v, b"abc");
        assert!(at.unwrap() > now_ms());
        assert_eq!(unframe(frame(b"", None)), (Vec::new(), None));
        assert_eq!(unframe(b"plain".to_vec()), (b"plain".to_vec(), None));
    }

    #[test]
    fn declared_layers_forward_every_method() {
        crate::layer::assert_every_method(
            include_str!("declared.rs"),
            &[
                include_str!("../../core/src/boundary/vector.rs"),
                include_str!("../../core/src/boundary/graph.rs"),
                include_str!("../../core/src/boundary/cache.rs"),
            ],
            "add it to the declared layers in host/src/declared.rs",
        );
    }
}
