//! The host's side of the boundary: `Foreign*` types wrap an
//! [`FfiStore`](backplane_core::ffi::FfiStore) and implement the capability
//! traits by encoding each call, running it in the plugin, and decoding the
//! result. Errors gain the store name and backend here.

use backplane_core::ffi::{
    decode_result, FfiDone, FfiParams, FfiResult, FfiStore, SQL_EXECUTE, SQL_EXECUTE_MANY,
    SQL_QUERY,
};
use backplane_core::proto::{decode_owned, CacheCall, GraphCall, RelationalCall, VectorCall};
use backplane_core::rows::{decode_rows_with, ColumnsMemo};
use backplane_core::*;
use std::borrow::Cow;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

/// What the host hands a plugin as `ctx` of a started call: the callback
/// that decodes the result and completes the caller's future.
type Callback = Box<dyn FnOnce(FfiResult) + Send>;

/// The host's completion function for started calls; `ctx` is a boxed
/// [`Callback`], freed here.
unsafe extern "C" fn host_done(ctx: *mut c_void, r: FfiResult) {
    // SAFETY: made by `Box::into_raw` in `Foreign::start`; the plugin calls
    // this once per started call.
    let cb = unsafe { Box::from_raw(ctx as *mut Callback) };
    let _ = catch_unwind(AssertUnwindSafe(move || cb(r)));
}

/// A store opened in a plugin, with the names its errors carry.
pub struct Foreign {
    ffi: FfiStore,
    store: Arc<str>,
    backend: Arc<str>,
}

impl Foreign {
    pub(crate) fn new(ffi: FfiStore, store: &str, backend: &str) -> Self {
        Foreign {
            ffi,
            store: store.into(),
            backend: backend.into(),
        }
    }
    #[inline]
    fn call<T: serde::de::DeserializeOwned>(&self, call: &impl serde::Serialize) -> Result<T> {
        self.ffi
            .call(call)
            .map_err(|e| e.in_store(&self.store, &self.backend))
    }
}

/// A relational store in a plugin.
pub struct ForeignRelational(pub(crate) Foreign, pub(crate) ColumnsMemo);
/// A vector store in a plugin.
pub struct ForeignVector(pub(crate) Foreign);
/// A cache store in a plugin.
pub struct ForeignCache(pub(crate) Foreign);
/// A graph store in a plugin.
pub struct ForeignGraph(pub(crate) Foreign);

fn b(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}
fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

impl Foreign {
    /// The relational fast path: parameters cross as borrowed views.
    #[inline]
    fn sql<T>(
        &self,
        op: u8,
        sql: &str,
        sets: &[Params],
        decode_ok: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let params = FfiParams::new(sets);
        self.ffi
            .call_sql(op, sql, &params, decode_ok)
            .map_err(|e| e.in_store(&self.store, &self.backend))
    }
}

impl Relational for ForeignRelational {
    fn execute(&self, sql: &str, params: &Params) -> Result<ExecResult> {
        self.0
            .sql(SQL_EXECUTE, sql, std::slice::from_ref(params), decode_owned)
    }
    fn execute_many(&self, sql: &str, params: &[Params]) -> Result<ExecResult> {
        self.0.sql(SQL_EXECUTE_MANY, sql, params, decode_owned)
    }
    fn query(&self, sql: &str, params: &Params) -> Result<Rows> {
        self.0
            .sql(SQL_QUERY, sql, std::slice::from_ref(params), |b| {
                decode_rows_with(b, &self.1)
            })
    }
    fn transaction(&self, statements: &[Statement]) -> Result<Vec<ExecResult>> {
        self.0
            .call(&RelationalCall::Transaction(Cow::Borrowed(statements)))
    }
    fn migrate(&self, migrations: &[Migration]) -> Result<MigrationReport> {
        self.0
            .call(&RelationalCall::Migrate(Cow::Borrowed(migrations)))
    }
    fn tables(&self) -> Result<Vec<String>> {
        self.0.call(&RelationalCall::Tables)
    }
    fn describe(&self, table: &str) -> Result<TableSchema> {
        self.0.call(&RelationalCall::Describe(b(table)))
    }
    fn backup(&self, path: &str) -> Result<()> {
        self.0.call(&RelationalCall::Backup(b(path)))
    }
    fn restore(&self, path: &str) -> Result<()> {
        self.0.call(&RelationalCall::Restore(b(path)))
    }
    fn health(&self) -> Result<Health> {
        self.0.call(&RelationalCall::Health)
    }
}

impl Vector for ForeignVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        self.0.call(&VectorCall::CreateCollection {
            name: b(name),
            dimension,
            distance,
        })
    }
    fn drop_collection(&self, name: &str) -> Result<()> {
        self.0.call(&VectorCall::DropCollection(b(name)))
    }
    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        self.0.call(&VectorCall::ListCollections)
    }
    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        self.0.call(&VectorCall::CollectionInfo(b(name)))
    }
    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        self.0.call(&VectorCall::Upsert {
            collection: b(collection),
            records: Cow::Borrowed(records),
        })
    }
    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        self.0.call(&VectorCall::Get {
            collection: b(collection),
            ids: Cow::Borrowed(ids),
        })
    }
    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        self.0.call(&VectorCall::Delete {
            collection: b(collection),
            ids: Cow::Borrowed(ids),
        })
    }
    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.0.call(&VectorCall::DeleteWhere {
            collection: b(collection),
            filter: Cow::Borrowed(filter),
        })
    }
    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        self.0.call(&VectorCall::Count {
            collection: b(collection),
            filter: filter.map(Cow::Borrowed),
        })
    }
    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        self.0.call(&VectorCall::Search {
            collection: b(collection),
            request: Cow::Borrowed(request),
        })
    }
    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        self.0.call(&VectorCall::SearchBatch {
            collection: b(collection),
            requests: Cow::Borrowed(requests),
        })
    }
    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        self.0.call(&VectorCall::Scroll {
            collection: b(collection),
            cursor: cursor.map(b),
            limit: limit as u64,
        })
    }
    fn health(&self) -> Result<Health> {
        self.0.call(&VectorCall::Health)
    }
}

impl Foreign {
    /// Start `call` in the plugin without blocking; `done` gets the
    /// decoded result (run here, blocking, if the plugin did not start it).
    fn start<T: serde::de::DeserializeOwned + 'static>(
        &self,
        call: &impl serde::Serialize,
        done: Done<T>,
    ) {
        let req = backplane_core::proto::encode(call);
        let (store, backend) = (self.store.clone(), self.backend.clone());
        let cb: Callback =
            Box::new(move |r| done(decode_result(r).map_err(|e| e.in_store(&store, &backend))));
        let ctx = Box::into_raw(Box::new(cb)) as *mut c_void;
        // SAFETY: `ctx` lives until `host_done` frees it, which may run on
        // any thread.
        let started = unsafe {
            self.ffi
                .call_async_raw(&req, ctx, FfiDone { func: host_done })
        };
        if !started {
            // SAFETY: not started, so the plugin never saw `ctx`.
            let cb = unsafe { Box::from_raw(ctx as *mut Callback) };
            cb(self.ffi.call_raw(&req));
        }
    }
}

impl AsyncCache for ForeignCache {
    fn get(&self, key: &str, done: Done<Option<Vec<u8>>>) {
        self.0.start(&CacheCall::Get(b(key)), done)
    }
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>, done: Done<()>) {
        self.0.start(
            &CacheCall::Set {
                key: b(key),
                value: Cow::Borrowed(value),
                ttl_ms: ttl.map(ms),
            },
            done,
        )
    }
}

impl Cache for ForeignCache {
    fn as_async(&self) -> Option<&dyn AsyncCache> {
        self.0.ffi.has_async.then_some(self as &dyn AsyncCache)
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.0.call(&CacheCall::Get(b(key)))
    }
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.0.call(&CacheCall::Set {
            key: b(key),
            value: Cow::Borrowed(value),
            ttl_ms: ttl.map(ms),
        })
    }
    fn delete(&self, key: &str) -> Result<bool> {
        self.0.call(&CacheCall::Delete(b(key)))
    }
    fn exists(&self, key: &str) -> Result<bool> {
        self.0.call(&CacheCall::Exists(b(key)))
    }
    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.0.call(&CacheCall::Expire {
            key: b(key),
            ttl_ms: ms(ttl),
        })
    }
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.0.call(&CacheCall::GetMany(Cow::Borrowed(keys)))
    }
    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        self.0.call(&CacheCall::SetMany {
            entries: Cow::Borrowed(entries),
            ttl_ms: ttl.map(ms),
        })
    }
    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        self.0.call(&CacheCall::AddMessage {
            channel: b(channel),
            message: Cow::Borrowed(message),
        })
    }
    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        self.0.call(&CacheCall::AddMessages {
            channel: b(channel),
            messages: Cow::Borrowed(messages),
        })
    }
    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        self.0.call(&CacheCall::Recent {
            channel: b(channel),
            limit: limit as u64,
            exclude_id: exclude_id.map(b),
        })
    }
    fn remove_message(&self, channel: &str, id: &str) -> Result<bool> {
        self.0.call(&CacheCall::RemoveMessage {
            channel: b(channel),
            id: b(id),
        })
    }
    fn clear(&self, channel: &str) -> Result<u64> {
        self.0.call(&CacheCall::Clear(b(channel)))
    }
    fn stats(&self) -> Result<CacheStats> {
        self.0.call(&CacheCall::Stats)
    }
    fn health(&self) -> Result<Health> {
        self.0.call(&CacheCall::Health)
    }
}

impl Graph for ForeignGraph {
    fn create_nodes(&self, nodes: &[NewNode]) -> Result<Vec<Node>> {
        self.0.call(&GraphCall::CreateNodes(Cow::Borrowed(nodes)))
    }
    fn get_node(&self, id: &str) -> Result<Option<Node>> {
        self.0.call(&GraphCall::GetNode(b(id)))
    }
    fn update_node(&self, id: &str, properties: &serde_json::Value) -> Result<Node> {
        let p = properties.to_string();
        self.0.call(&GraphCall::UpdateNode {
            id: b(id),
            properties: b(&p),
        })
    }
    fn delete_node(&self, id: &str) -> Result<bool> {
        self.0.call(&GraphCall::DeleteNode(b(id)))
    }
    fn create_edges(&self, edges: &[NewEdge]) -> Result<Vec<Edge>> {
        self.0.call(&GraphCall::CreateEdges(Cow::Borrowed(edges)))
    }
    fn get_edge(&self, id: &str) -> Result<Option<Edge>> {
        self.0.call(&GraphCall::GetEdge(b(id)))
    }
    fn update_edge(&self, id: &str, properties: &serde_json::Value) -> Result<Edge> {
        let p = properties.to_string();
        self.0.call(&GraphCall::UpdateEdge {
            id: b(id),
            properties: b(&p),
        })
    }
    fn delete_edge(&self, id: &str) -> Result<bool> {
        self.0.call(&GraphCall::DeleteEdge(b(id)))
    }
    fn neighbors(
        &self,
        id: &str,
        direction: Direction,
        edge_types: &[String],
        depth: u32,
    ) -> Result<Vec<Neighbor>> {
        self.0.call(&GraphCall::Neighbors {
            id: b(id),
            direction,
            edge_types: Cow::Borrowed(edge_types),
            depth,
        })
    }
    fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Result<Option<Path>> {
        self.0.call(&GraphCall::ShortestPath {
            from: b(from),
            to: b(to),
            max_depth,
        })
    }
    fn edges_of(&self, id: &str, direction: Direction) -> Result<Vec<Edge>> {
        self.0.call(&GraphCall::EdgesOf {
            id: b(id),
            direction,
        })
    }
    fn find_nodes(&self, query: &NodeQuery) -> Result<Vec<Node>> {
        self.0.call(&GraphCall::FindNodes(Cow::Borrowed(query)))
    }
    fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Node>> {
        self.0.call(&GraphCall::ExportNodes {
            cursor: cursor.map(b),
            limit: limit as u64,
        })
    }
    fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Edge>> {
        self.0.call(&GraphCall::ExportEdges {
            cursor: cursor.map(b),
            limit: limit as u64,
        })
    }
    fn health(&self) -> Result<Health> {
        self.0.call(&GraphCall::Health)
    }
}
