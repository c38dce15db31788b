//! The calls that cross the plugin boundary, one enum per capability.
//!
//! The host encodes a call with [`encode`], the plugin's export layer decodes
//! it, runs the trait method and encodes the method's return value; the host
//! decodes that as the type the method returns. Borrowed fields (`Cow`) let
//! the host encode without copying its arguments.

use crate::{
    Direction, Distance, Error, Filter, Message, Migration, NewEdge, NewNode, NodeQuery, Result,
    SearchRequest, Statement, VectorRecord,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::borrow::Cow;

/// Encode a value for the wire.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("wire encoding of backplane-core types cannot fail")
}

/// Decode a value from the wire.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| {
        Error::incompatible(format!(
            "could not decode a message across the plugin boundary ({e}): host and plugin disagree on the wire format; rebuild the plugin against this host's backplane-core"
        ))
    })
}

/// Decode an owned value from the wire.
pub fn decode_owned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode(bytes)
}

/// Relational calls. `execute`, `execute_many` and `query` take the fast
/// path instead ([`FfiSql`](crate::ffi::FfiSql)).
#[derive(Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum RelationalCall<'a> {
    Transaction(Cow<'a, [Statement]>),
    Migrate(Cow<'a, [Migration]>),
    Tables,
    Describe(#[serde(borrow)] Cow<'a, str>),
    Backup(#[serde(borrow)] Cow<'a, str>),
    Restore(#[serde(borrow)] Cow<'a, str>),
    Health,
}

/// Vector calls.
#[derive(Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum VectorCall<'a> {
    CreateCollection {
        #[serde(borrow)]
        name: Cow<'a, str>,
        dimension: u32,
        distance: Distance,
    },
    DropCollection(#[serde(borrow)] Cow<'a, str>),
    ListCollections,
    CollectionInfo(#[serde(borrow)] Cow<'a, str>),
    Upsert {
        #[serde(borrow)]
        collection: Cow<'a, str>,
        records: Cow<'a, [VectorRecord]>,
    },
    Get {
        #[serde(borrow)]
        collection: Cow<'a, str>,
        ids: Cow<'a, [String]>,
    },
    Delete {
        #[serde(borrow)]
        collection: Cow<'a, str>,
        ids: Cow<'a, [String]>,
    },
    DeleteWhere {
        #[serde(borrow)]
        collection: Cow<'a, str>,
        filter: Cow<'a, Filter>,
    },
    Count {
        #[serde(borrow)]
        collection: Cow<'a, str>,
        filter: Option<Cow<'a, Filter>>,
    },
    Search {
        #[serde(borrow)]
        collection: Cow<'a, str>,
        request: Cow<'a, SearchRequest>,
    },
    SearchBatch {
        #[serde(borrow)]
        collection: Cow<'a, str>,
        requests: Cow<'a, [SearchRequest]>,
    },
    Scroll {
        #[serde(borrow)]
        collection: Cow<'a, str>,
        cursor: Option<Cow<'a, str>>,
        limit: u64,
    },
    Health,
}

/// Cache calls. TTLs travel as milliseconds.
#[derive(Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum CacheCall<'a> {
    Get(#[serde(borrow)] Cow<'a, str>),
    Set {
        #[serde(borrow)]
        key: Cow<'a, str>,
        #[serde(borrow)]
        value: Cow<'a, [u8]>,
        ttl_ms: Option<u64>,
    },
    Delete(#[serde(borrow)] Cow<'a, str>),
    Exists(#[serde(borrow)] Cow<'a, str>),
    Expire {
        #[serde(borrow)]
        key: Cow<'a, str>,
        ttl_ms: u64,
    },
    GetMany(Cow<'a, [String]>),
    SetMany {
        entries: Cow<'a, [(String, Vec<u8>)]>,
        ttl_ms: Option<u64>,
    },
    AddMessage {
        #[serde(borrow)]
        channel: Cow<'a, str>,
        message: Cow<'a, Message>,
    },
    Recent {
        #[serde(borrow)]
        channel: Cow<'a, str>,
        limit: u64,
        exclude_id: Option<Cow<'a, str>>,
    },
    RemoveMessage {
        #[serde(borrow)]
        channel: Cow<'a, str>,
        #[serde(borrow)]
        id: Cow<'a, str>,
    },
    Clear(#[serde(borrow)] Cow<'a, str>),
    Stats,
    Health,
    AddMessages {
        #[serde(borrow)]
        channel: Cow<'a, str>,
        messages: Cow<'a, [Message]>,
    },
}

/// Graph calls.
#[derive(Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum GraphCall<'a> {
    CreateNodes(Cow<'a, [NewNode]>),
    GetNode(#[serde(borrow)] Cow<'a, str>),
    UpdateNode {
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        properties: Cow<'a, str>,
    },
    DeleteNode(#[serde(borrow)] Cow<'a, str>),
    CreateEdges(Cow<'a, [NewEdge]>),
    GetEdge(#[serde(borrow)] Cow<'a, str>),
    UpdateEdge {
        #[serde(borrow)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        properties: Cow<'a, str>,
    },
    DeleteEdge(#[serde(borrow)] Cow<'a, str>),
    Neighbors {
        #[serde(borrow)]
        id: Cow<'a, str>,
        direction: Direction,
        edge_types: Cow<'a, [String]>,
        depth: u32,
    },
    ShortestPath {
        #[serde(borrow)]
        from: Cow<'a, str>,
        #[serde(borrow)]
        to: Cow<'a, str>,
        max_depth: u32,
    },
    EdgesOf {
        #[serde(borrow)]
        id: Cow<'a, str>,
        direction: Direction,
    },
    FindNodes(Cow<'a, NodeQuery>),
    ExportNodes {
        cursor: Option<Cow<'a, str>>,
        limit: u64,
    },
    ExportEdges {
        cursor: Option<Cow<'a, str>>,
        limit: u64,
    },
    Health,
}

fn ms(d: u64) -> std::time::Duration {
    std::time::Duration::from_millis(d)
}

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::invalid(format!("properties are not valid JSON: {e}")))
}

/// Run an encoded relational call against `s`, returning the encoded result.
pub fn dispatch_relational(s: &dyn crate::Relational, req: &[u8]) -> Result<Vec<u8>> {
    use RelationalCall as C;
    Ok(match decode::<C>(req)? {
        C::Transaction(st) => encode(&s.transaction(&st)?),
        C::Migrate(m) => encode(&s.migrate(&m)?),
        C::Tables => encode(&s.tables()?),
        C::Describe(t) => encode(&s.describe(&t)?),
        C::Backup(p) => encode(&s.backup(&p)?),
        C::Restore(p) => encode(&s.restore(&p)?),
        C::Health => encode(&s.health()?),
    })
}

/// Run an encoded vector call against `s`, returning the encoded result.
pub fn dispatch_vector(s: &dyn crate::Vector, req: &[u8]) -> Result<Vec<u8>> {
    use VectorCall as C;
    Ok(match decode::<C>(req)? {
        C::CreateCollection {
            name,
            dimension,
            distance,
        } => encode(&s.create_collection(&name, dimension, distance)?),
        C::DropCollection(n) => encode(&s.drop_collection(&n)?),
        C::ListCollections => encode(&s.list_collections()?),
        C::CollectionInfo(n) => encode(&s.collection_info(&n)?),
        C::Upsert {
            collection,
            records,
        } => encode(&s.upsert(&collection, &records)?),
        C::Get { collection, ids } => encode(&s.get(&collection, &ids)?),
        C::Delete { collection, ids } => encode(&s.delete(&collection, &ids)?),
        C::DeleteWhere { collection, filter } => encode(&s.delete_where(&collection, &filter)?),
        C::Count { collection, filter } => encode(&s.count(&collection, filter.as_deref())?),
        C::Search {
            collection,
            request,
        } => encode(&s.search(&collection, &request)?),
        C::SearchBatch {
            collection,
            requests,
        } => encode(&s.search_batch(&collection, &requests)?),
        C::Scroll {
            collection,
            cursor,
            limit,
        } => encode(&s.scroll(&collection, cursor.as_deref(), limit as usize)?),
        C::Health => encode(&s.health()?),
    })
}

/// Run an encoded cache call against `s`, returning the encoded result.
pub fn dispatch_cache(s: &dyn crate::Cache, req: &[u8]) -> Result<Vec<u8>> {
    use CacheCall as C;
    Ok(match decode::<C>(req)? {
        C::Get(k) => encode(&s.get(&k)?),
        C::Set { key, value, ttl_ms } => encode(&s.set(&key, &value, ttl_ms.map(ms))?),
        C::Delete(k) => encode(&s.delete(&k)?),
        C::Exists(k) => encode(&s.exists(&k)?),
        C::Expire { key, ttl_ms } => encode(&s.expire(&key, ms(ttl_ms))?),
        C::GetMany(keys) => encode(&s.get_many(&keys)?),
        C::SetMany { entries, ttl_ms } => encode(&s.set_many(&entries, ttl_ms.map(ms))?),
        C::AddMessage { channel, message } => encode(&s.add_message(&channel, &message)?),
        C::Recent {
            channel,
            limit,
            exclude_id,
        } => encode(&s.recent(&channel, limit as usize, exclude_id.as_deref())?),
        C::RemoveMessage { channel, id } => encode(&s.remove_message(&channel, &id)?),
        C::Clear(c) => encode(&s.clear(&c)?),
        C::Stats => encode(&s.stats()?),
        C::Health => encode(&s.health()?),
        C::AddMessages { channel, messages } => encode(&s.add_messages(&channel, &messages)?),
    })
}

/// Run an encoded graph call against `s`, returning the encoded result.
pub fn dispatch_graph(s: &dyn crate::Graph, req: &[u8]) -> Result<Vec<u8>> {
    use GraphCall as C;
    Ok(match decode::<C>(req)? {
        C::CreateNodes(n) => encode(&s.create_nodes(&n)?),
        C::GetNode(id) => encode(&s.get_node(&id)?),
        C::UpdateNode { id, properties } => encode(&s.update_node(&id, &json(&properties)?)?),
        C::DeleteNode(id) => encode(&s.delete_node(&id)?),
        C::CreateEdges(e) => encode(&s.create_edges(&e)?),
        C::GetEdge(id) => encode(&s.get_edge(&id)?),
        C::UpdateEdge { id, properties } => encode(&s.update_edge(&id, &json(&properties)?)?),
        C::DeleteEdge(id) => encode(&s.delete_edge(&id)?),
        C::Neighbors {
            id,
            direction,
            edge_types,
            depth,
        } => encode(&s.neighbors(&id, direction, &edge_types, depth)?),
        C::ShortestPath {
            from,
            to,
            max_depth,
        } => encode(&s.shortest_path(&from, &to, max_depth)?),
        C::EdgesOf { id, direction } => encode(&s.edges_of(&id, direction)?),
        C::FindNodes(q) => encode(&s.find_nodes(&q)?),
        C::ExportNodes { cursor, limit } => {
            encode(&s.export_nodes(cursor.as_deref(), limit as usize)?)
        }
        C::ExportEdges { cursor, limit } => {
            encode(&s.export_edges(cursor.as_deref(), limit as usize)?)
        }
        C::Health => encode(&s.health()?),
    })
}
