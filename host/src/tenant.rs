//! Tenants: `Storage::for_tenant(name)` is a view of the same stores in
//! which a tenant sees and writes only its own records.
//!
//! - **cache**: a key namespace. Keys and conversation names are stored as
//!   `tenant:<name>:<key>`; listings show the tenant's own, without the
//!   prefix; `stats` counts the tenant's keys, conversations and messages
//!   (hits, misses and memory are the store's, so they read 0 / none).
//! - **vector**: collections are shared; every record carries the
//!   reserved payload field `_tenant` and is stored under the id
//!   `tenant:<name>:<id>`. Every search, count, scroll and `delete_where`
//!   is narrowed to the tenant; `get` and `delete` reach only its ids;
//!   collection counts are the tenant's. Dropping a collection (every
//!   tenant's records) is refused: do it from a view bound to no tenant.
//! - **graph**: the same with the reserved property `_tenant` and ids
//!   `tenant:<name>:<id>` for nodes and edges (an edge's ends too), so a
//!   tenant's edges join only its own nodes.
//! - **relational**: a store per tenant, opened on first use with the
//!   section's settings: on PostgreSQL in the schema `<schema>__<name>`
//!   (`tenant_<name>` when the section names none), on a backend with a
//!   `path` (SQLite, DuckDB) in the file `<stem>.<name>.<ext>` beside the
//!   section's (`data/users.acme.db`). Migrations run per tenant. The
//!   tenant's SQL is not rewritten: a statement naming another schema or
//!   attaching another file reaches it unless the database refuses (a
//!   role per tenant), so untrusted tenants get `read` grants, whose
//!   statements access control checks.
//!
//! A tenant name is 1 to 40 of `a-z`, `0-9` and `_`, so it is a valid
//! schema, file and key part everywhere. `_tenant` in a payload, property
//! or filter a tenant gives is refused (`InvalidInput`): it is the host's.
//! A view bound to no tenant sees everything, the tenants' records
//! included (with their prefixes and fields), as an operator needs for
//! backups and migrations.

use backplane_core::{
    Cache, CacheEntry, CacheStats, ChannelInfo, CollectionInfo, Condition, Direction, Distance,
    Edge, Error, Filter, Graph, Health, Message, Neighbor, NewEdge, NewNode, Node, NodeQuery, Page,
    Path, Result, ScrollPage, SearchHit, SearchRequest, Vector, VectorRecord,
};
use serde_json::{json, Value as Json};
use std::sync::Arc;
use std::time::Duration;

/// The reserved payload field / property holding a record's tenant.
pub const TENANT_FIELD: &str = "_tenant";
/// Pages read while counting or listing a tenant's part of a store.
const PAGE: usize = 512;

/// Check a tenant name.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "'{name}' is not a tenant name: use 1 to 40 of a-z, 0-9 and _ (it names a schema, a file and a key prefix)"
        )))
    }
}

/// One tenant's scope: its name and the prefix of its ids and keys.
#[derive(Clone, Debug)]
pub(crate) struct Scope {
    name: Arc<str>,
    prefix: Arc<str>,
}

impl Scope {
    pub(crate) fn new(name: &str) -> Result<Scope> {
        check_name(name)?;
        Ok(Scope {
            name: name.into(),
            prefix: format!("tenant:{name}:").into(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn id(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    fn ids(&self, ids: &[String]) -> Vec<String> {
        ids.iter().map(|i| self.id(i)).collect()
    }

    /// The tenant's id for a stored one, or None when it is not the
    /// tenant's.
    fn own<'a>(&self, stored: &'a str) -> Option<&'a str> {
        stored.strip_prefix(&*self.prefix)
    }

    /// Strip a stored id known to be the tenant's.
    fn unprefix(&self, stored: String) -> String {
        match self.own(&stored) {
            Some(id) => id.to_string(),
            None => stored,
        }
    }

    /// `doc` (a payload or properties) with the tenant's field; refuses
    /// one that sets the field itself.
    fn tag(&self, doc: &Json) -> Result<Json> {
        let mut out = match doc {
            Json::Null => json!({}),
            Json::Object(_) => doc.clone(),
            other => {
                return Err(Error::invalid(format!(
                    "a tenant's payload or properties must be an object (it carries the tenant's field), not {other}"
                )))
            }
        };
        let o = out.as_object_mut().expect("an object");
        if o.contains_key(TENANT_FIELD) {
            return Err(reserved());
        }
        o.insert(TENANT_FIELD.into(), Json::String(self.name.to_string()));
        Ok(out)
    }

    fn is_own(&self, doc: &Json) -> bool {
        doc.get(TENANT_FIELD).and_then(Json::as_str) == Some(&*self.name)
    }

    /// `doc` without the tenant's field.
    fn untag(&self, mut doc: Json) -> Json {
        if let Some(o) = doc.as_object_mut() {
            o.remove(TENANT_FIELD);
        }
        doc
    }

    /// `filter` narrowed to the tenant; refuses one that names the field.
    fn narrow(&self, filter: Option<&Filter>) -> Result<Filter> {
        if let Some(f) = filter {
            check_filter(f)?;
        }
        let mut f = filter.cloned().unwrap_or_default();
        f.must.push(
            Condition::matches(TENANT_FIELD, self.name.to_string()).expect("a string matches"),
        );
        Ok(f)
    }
}

fn reserved() -> Error {
    Error::invalid(format!(
        "'{TENANT_FIELD}' is reserved for the tenant a record belongs to: rename the field"
    ))
}

fn check_filter(f: &Filter) -> Result<()> {
    for c in f.must.iter().chain(&f.should).chain(&f.must_not) {
        let key = match c {
            Condition::Nested(n) => {
                check_filter(n)?;
                continue;
            }
            Condition::Match { key, .. }
            | Condition::In { key, .. }
            | Condition::Range { key, .. }
            | Condition::Exists { key, .. } => key,
        };
        if key == TENANT_FIELD || key.starts_with(&format!("{TENANT_FIELD}.")) {
            return Err(reserved());
        }
    }
    Ok(())
}

/// A store seen by one tenant.
pub(crate) struct Tenant<T: ?Sized> {
    inner: Arc<T>,
    scope: Scope,
}

impl<T: ?Sized> Tenant<T> {
    pub(crate) fn new(inner: Arc<T>, scope: Scope) -> Tenant<T> {
        Tenant { inner, scope }
    }
}

// ---- cache -------------------------------------------------------------

/// One page of a listing shared by tenants, the tenant's items only:
/// `list` reads a page of the store at a cursor, `own` keeps (and turns)
/// the tenant's items. Pages of other tenants' items are read past, so a
/// page is empty only at the end of the listing.
fn own_page<I>(
    cursor: Option<&str>,
    list: impl Fn(Option<&str>) -> Result<(Vec<I>, Option<String>)>,
    own: impl Fn(Vec<I>) -> Vec<I>,
) -> Result<(Vec<I>, Option<String>)> {
    let mut cursor = cursor.map(str::to_string);
    let mut items = Vec::new();
    loop {
        let (page, next) = list(cursor.as_deref())?;
        items.extend(own(page));
        cursor = next;
        if !items.is_empty() || cursor.is_none() {
            return Ok((items, cursor));
        }
    }
}

impl Tenant<dyn Cache> {
    /// A page of keys or conversations: the tenant's, without the prefix.
    fn own_page<I>(
        &self,
        cursor: Option<&str>,
        limit: usize,
        list: impl Fn(Option<&str>, usize) -> Result<Page<I>>,
        key: impl Fn(&mut I) -> &mut String,
    ) -> Result<Page<I>> {
        let (items, next_cursor) = own_page(
            cursor,
            |c| list(c, limit.max(1)).map(|p| (p.items, p.next_cursor)),
            |page| {
                page.into_iter()
                    .filter_map(|mut item| {
                        let k = key(&mut item);
                        let own = self.scope.own(k)?.to_string();
                        *k = own;
                        Some(item)
                    })
                    .collect()
            },
        )?;
        Ok(Page { items, next_cursor })
    }
}

impl Cache for Tenant<dyn Cache> {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get(&self.scope.id(key))
    }
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.inner.set(&self.scope.id(key), value, ttl)
    }
    fn delete(&self, key: &str) -> Result<bool> {
        self.inner.delete(&self.scope.id(key))
    }
    fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(&self.scope.id(key))
    }
    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.inner.expire(&self.scope.id(key), ttl)
    }
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.get_many(&self.scope.ids(keys))
    }
    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        let own: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| (self.scope.id(k), v.clone()))
            .collect();
        self.inner.set_many(&own, ttl)
    }
    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        self.inner.add_message(&self.scope.id(channel), message)
    }
    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        self.inner.add_messages(&self.scope.id(channel), messages)
    }
    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        self.inner
            .recent(&self.scope.id(channel), limit, exclude_id)
    }
    fn remove_message(&self, channel: &str, id: &str) -> Result<bool> {
        self.inner.remove_message(&self.scope.id(channel), id)
    }
    fn clear(&self, channel: &str) -> Result<u64> {
        self.inner.clear(&self.scope.id(channel))
    }
    fn stats(&self) -> Result<CacheStats> {
        let mut stats = CacheStats::default();
        let mut cursor: Option<String> = None;
        loop {
            let p = self.scan_keys(cursor.as_deref(), PAGE)?;
            stats.keys += p.items.len() as u64;
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        cursor = None;
        loop {
            let p = self.list_channels(cursor.as_deref(), PAGE)?;
            stats.channels += p.items.len() as u64;
            stats.messages += p.items.iter().map(|c| c.messages).sum::<u64>();
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(stats)
    }
    fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ChannelInfo>> {
        self.own_page(
            cursor,
            limit,
            |c, l| self.inner.list_channels(c, l),
            |i| &mut i.channel,
        )
    }
    fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Result<Page<CacheEntry>> {
        self.own_page(
            cursor,
            limit,
            |c, l| self.inner.scan_keys(c, l),
            |i| &mut i.key,
        )
    }
    fn import_entries(&self, entries: &[CacheEntry], overwrite: bool) -> Result<u64> {
        let own: Vec<CacheEntry> = entries
            .iter()
            .map(|e| CacheEntry {
                key: self.scope.id(&e.key),
                ..e.clone()
            })
            .collect();
        self.inner.import_entries(&own, overwrite)
    }
    fn import_messages(&self, channel: &str, messages: &[Message]) -> Result<u64> {
        self.inner
            .import_messages(&self.scope.id(channel), messages)
    }
    fn health(&self) -> Result<Health> {
        self.inner.health()
    }
}

// ---- vector ------------------------------------------------------------

impl Tenant<dyn Vector> {
    fn record(&self, r: VectorRecord) -> VectorRecord {
        VectorRecord {
            id: self.scope.unprefix(r.id),
            payload: self.scope.untag(r.payload),
            ..r
        }
    }

    fn hits(&self, hits: Vec<SearchHit>) -> Vec<SearchHit> {
        hits.into_iter()
            .map(|h| SearchHit {
                id: self.scope.unprefix(h.id),
                payload: self.scope.untag(h.payload),
                ..h
            })
            .collect()
    }

    fn narrowed(&self, r: &SearchRequest) -> Result<SearchRequest> {
        Ok(SearchRequest {
            filter: Some(self.scope.narrow(r.filter.as_ref())?),
            ..r.clone()
        })
    }

    fn info(&self, mut c: CollectionInfo) -> Result<CollectionInfo> {
        c.count = self.inner.count(&c.name, Some(&self.scope.narrow(None)?))?;
        Ok(c)
    }
}

impl Vector for Tenant<dyn Vector> {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        self.inner.create_collection(name, dimension, distance)
    }
    fn drop_collection(&self, name: &str) -> Result<()> {
        Err(Error::permission_denied(format!(
            "tenant '{}' cannot drop collection '{name}': it holds every tenant's records; drop it from a view bound to no tenant, or delete the tenant's records with delete_where",
            self.scope.name()
        )))
    }
    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        self.inner
            .list_collections()?
            .into_iter()
            .map(|c| self.info(c))
            .collect()
    }
    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let c = self.inner.collection_info(name)?;
        self.info(c)
    }
    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        let own: Vec<VectorRecord> = records
            .iter()
            .map(|r| {
                Ok(VectorRecord {
                    id: self.scope.id(&r.id),
                    payload: self.scope.tag(&r.payload)?,
                    ..r.clone()
                })
            })
            .collect::<Result<_>>()?;
        self.inner.upsert(collection, &own)
    }
    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        Ok(self
            .inner
            .get(collection, &self.scope.ids(ids))?
            .into_iter()
            .filter(|r| self.scope.is_own(&r.payload))
            .map(|r| self.record(r))
            .collect())
    }
    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        self.inner.delete(collection, &self.scope.ids(ids))
    }
    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.inner
            .delete_where(collection, &self.scope.narrow(Some(filter))?)
    }
    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        self.inner
            .count(collection, Some(&self.scope.narrow(filter)?))
    }
    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let hits = self.inner.search(collection, &self.narrowed(request)?)?;
        Ok(self.hits(hits))
    }
    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        let own: Vec<SearchRequest> = requests
            .iter()
            .map(|r| self.narrowed(r))
            .collect::<Result<_>>()?;
        Ok(self
            .inner
            .search_batch(collection, &own)?
            .into_iter()
            .map(|h| self.hits(h))
            .collect())
    }
    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        let (records, next_cursor) = own_page(
            cursor,
            |c| {
                let p = self.inner.scroll(collection, c, limit.max(1))?;
                Ok((p.records, p.next_cursor))
            },
            |page| {
                page.into_iter()
                    .filter(|r| self.scope.is_own(&r.payload))
                    .map(|r| self.record(r))
                    .collect()
            },
        )?;
        Ok(ScrollPage {
            records,
            next_cursor,
        })
    }
    fn health(&self) -> Result<Health> {
        self.inner.health()
    }
}

// ---- graph -------------------------------------------------------------

impl Tenant<dyn Graph> {
    fn node(&self, n: Node) -> Node {
        Node {
            id: self.scope.unprefix(n.id),
            properties: self.scope.untag(n.properties),
            ..n
        }
    }

    fn edge(&self, e: Edge) -> Edge {
        Edge {
            id: self.scope.unprefix(e.id),
            from: self.scope.unprefix(e.from),
            to: self.scope.unprefix(e.to),
            properties: self.scope.untag(e.properties),
            ..e
        }
    }

    fn own_nodes(&self, list: Vec<Node>) -> Vec<Node> {
        list.into_iter()
            .filter(|n| self.scope.is_own(&n.properties))
            .map(|n| self.node(n))
            .collect()
    }

    fn own_edges(&self, list: Vec<Edge>) -> Vec<Edge> {
        list.into_iter()
            .filter(|e| self.scope.is_own(&e.properties))
            .map(|e| self.edge(e))
            .collect()
    }

    /// The tenant's id for a new record: the one given, or a new one.
    fn new_id(&self, id: &Option<String>, kind: &str) -> String {
        match id {
            Some(id) => self.scope.id(id),
            None => self.scope.id(&backplane_core::kit::id::new_id(kind)),
        }
    }

    fn page<I>(
        &self,
        cursor: Option<&str>,
        limit: usize,
        list: impl Fn(Option<&str>, usize) -> Result<Page<I>>,
        own: impl Fn(Vec<I>) -> Vec<I>,
    ) -> Result<Page<I>> {
        let (items, next_cursor) = own_page(
            cursor,
            |c| list(c, limit.max(1)).map(|p| (p.items, p.next_cursor)),
            own,
        )?;
        Ok(Page { items, next_cursor })
    }
}

impl Graph for Tenant<dyn Graph> {
    fn create_nodes(&self, nodes: &[NewNode]) -> Result<Vec<Node>> {
        let own: Vec<NewNode> = nodes
            .iter()
            .map(|n| {
                Ok(NewNode {
                    id: Some(self.new_id(&n.id, "n")),
                    properties: self.scope.tag(&n.properties)?,
                    ..n.clone()
                })
            })
            .collect::<Result<_>>()?;
        let made = self.inner.create_nodes(&own)?;
        Ok(made.into_iter().map(|n| self.node(n)).collect())
    }
    fn get_node(&self, id: &str) -> Result<Option<Node>> {
        Ok(self
            .inner
            .get_node(&self.scope.id(id))?
            .filter(|n| self.scope.is_own(&n.properties))
            .map(|n| self.node(n)))
    }
    fn update_node(&self, id: &str, properties: &Json) -> Result<Node> {
        let n = self
            .inner
            .update_node(&self.scope.id(id), &self.scope.tag(properties)?)?;
        Ok(self.node(n))
    }
    fn delete_node(&self, id: &str) -> Result<bool> {
        self.inner.delete_node(&self.scope.id(id))
    }
    fn create_edges(&self, edges: &[NewEdge]) -> Result<Vec<Edge>> {
        let own: Vec<NewEdge> = edges
            .iter()
            .map(|e| {
                Ok(NewEdge {
                    id: Some(self.new_id(&e.id, "e")),
                    from: self.scope.id(&e.from),
                    to: self.scope.id(&e.to),
                    properties: self.scope.tag(&e.properties)?,
                    ..e.clone()
                })
            })
            .collect::<Result<_>>()?;
        let made = self.inner.create_edges(&own)?;
        Ok(made.into_iter().map(|e| self.edge(e)).collect())
    }
    fn get_edge(&self, id: &str) -> Result<Option<Edge>> {
        Ok(self
            .inner
            .get_edge(&self.scope.id(id))?
            .filter(|e| self.scope.is_own(&e.properties))
            .map(|e| self.edge(e)))
    }
    fn update_edge(&self, id: &str, properties: &Json) -> Result<Edge> {
        let e = self
            .inner
            .update_edge(&self.scope.id(id), &self.scope.tag(properties)?)?;
        Ok(self.edge(e))
    }
    fn delete_edge(&self, id: &str) -> Result<bool> {
        self.inner.delete_edge(&self.scope.id(id))
    }
    fn neighbors(
        &self,
        id: &str,
        direction: Direction,
        edge_types: &[String],
        depth: u32,
    ) -> Result<Vec<Neighbor>> {
        Ok(self
            .inner
            .neighbors(&self.scope.id(id), direction, edge_types, depth)?
            .into_iter()
            .filter(|n| self.scope.is_own(&n.node.properties))
            .map(|n| Neighbor {
                node: self.node(n.node),
                ..n
            })
            .collect())
    }
    fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Result<Option<Path>> {
        let p = self
            .inner
            .shortest_path(&self.scope.id(from), &self.scope.id(to), max_depth)?;
        Ok(
            p.filter(|p| p.nodes.iter().all(|n| self.scope.is_own(&n.properties)))
                .map(|p| Path {
                    nodes: p.nodes.into_iter().map(|n| self.node(n)).collect(),
                    edges: p.edges.into_iter().map(|e| self.edge(e)).collect(),
                }),
        )
    }
    fn edges_of(&self, id: &str, direction: Direction) -> Result<Vec<Edge>> {
        let list = self.inner.edges_of(&self.scope.id(id), direction)?;
        Ok(self.own_edges(list))
    }
    fn find_nodes(&self, query: &NodeQuery) -> Result<Vec<Node>> {
        let own = NodeQuery {
            filter: Some(self.scope.narrow(query.filter.as_ref())?),
            ..query.clone()
        };
        let found = self.inner.find_nodes(&own)?;
        Ok(self.own_nodes(found))
    }
    fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Node>> {
        self.page(
            cursor,
            limit,
            |c, l| self.inner.export_nodes(c, l),
            |l| self.own_nodes(l),
        )
    }
    fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Edge>> {
        self.page(
            cursor,
            limit,
            |c, l| self.inner.export_edges(c, l),
            |l| self.own_edges(l),
        )
    }
    fn import_nodes(&self, nodes: &[Node], overwrite: bool) -> Result<u64> {
        let own: Vec<Node> = nodes
            .iter()
            .map(|n| {
                Ok(Node {
                    id: self.scope.id(&n.id),
                    properties: self.scope.tag(&n.properties)?,
                    ..n.clone()
                })
            })
            .collect::<Result<_>>()?;
        self.inner.import_nodes(&own, overwrite)
    }
    fn import_edges(&self, edges: &[Edge], overwrite: bool) -> Result<u64> {
        let own: Vec<Edge> = edges
            .iter()
            .map(|e| {
                Ok(Edge {
                    id: self.scope.id(&e.id),
                    from: self.scope.id(&e.from),
                    to: self.scope.id(&e.to),
                    properties: self.scope.tag(&e.properties)?,
                    ..e.clone()
                })
            })
            .collect::<Result<_>>()?;
        self.inner.import_edges(&own, overwrite)
    }
    fn health(&self) -> Result<Health> {
        self.inner.health()
    }
}

// ---- relational --------------------------------------------------------

/// The options of a relational section for the store of tenant `scope`:
/// another schema on PostgreSQL, another file beside a `path`.
pub(crate) fn relational_options(backend: &str, options: &Json, scope: &Scope) -> Result<Json> {
    let mut o = options.clone();
    let map = o
        .as_object_mut()
        .ok_or_else(|| Error::config("the section's settings are not a table"))?;
    let t = scope.name();
    if backend == "postgres" {
        let schema = match map.get("schema").and_then(Json::as_str) {
            Some(s) => format!("{s}__{t}"),
            None => format!("tenant_{t}"),
        };
        if schema.len() > 63 {
            return Err(Error::invalid(format!(
                "tenant '{t}' makes the schema name '{schema}', longer than PostgreSQL's 63 bytes: use a shorter tenant or schema name"
            )));
        }
        map.insert("schema".into(), Json::String(schema));
        return Ok(o);
    }
    if let Some(path) = map.get("path").and_then(Json::as_str) {
        let p = std::path::Path::new(path);
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let file = match p.extension() {
            Some(ext) => format!("{stem}.{t}.{}", ext.to_string_lossy()),
            None => format!("{stem}.{t}"),
        };
        let tenant_path = p.with_file_name(file);
        map.insert(
            "path".into(),
            Json::String(tenant_path.display().to_string()),
        );
        return Ok(o);
    }
    Err(Error::unsupported(format!(
        "tenants of a relational store need a schema (postgres) or a file (a backend with `path`) per tenant; backend '{backend}' has neither: give each tenant a store of its own in plugins.toml"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fields_and_files() {
        assert!(check_name("acme_2").is_ok());
        for bad in ["", "Acme", "a-b", "a:b", &"x".repeat(41)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        let s = Scope::new("acme").unwrap();
        assert_eq!(
            s.tag(&json!({"a": 1})).unwrap(),
            json!({"a": 1, "_tenant": "acme"})
        );
        assert!(s.tag(&json!({"_tenant": "other"})).is_err());
        assert!(s
            .narrow(Some(
                &Filter::parse_str(r#"{"should":[{"key":"_tenant","exists":true}]}"#).unwrap()
            ))
            .is_err());
        let o = relational_options("sqlite", &json!({"path": "data/users.db"}), &s).unwrap();
        assert_eq!(o["path"], "data/users.acme.db");
        let o = relational_options("postgres", &json!({"url": "u"}), &s).unwrap();
        assert_eq!(o["schema"], "tenant_acme");
        let o = relational_options("postgres", &json!({"schema": "app"}), &s).unwrap();
        assert_eq!(o["schema"], "app__acme");
        assert!(relational_options("other", &json!({}), &s).is_err());
    }

    /// Every method of the cache, vector and graph lists is scoped here.
    #[test]
    fn every_method_is_scoped() {
        crate::layer::assert_every_method(
            include_str!("tenant.rs"),
            &[
                include_str!("../../core/src/boundary/vector.rs"),
                include_str!("../../core/src/boundary/graph.rs"),
                include_str!("../../core/src/boundary/cache.rs"),
            ],
            "tenants do not scope it: add it to host/src/tenant.rs",
        );
    }
}
