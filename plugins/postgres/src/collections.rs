//! The vector store's two tables and what the plugin reads from them
//! besides search: a collection's facts (dimension, distance, version),
//! stored vectors checked against them, payloads, and the ids of the
//! records a filter passes.
//!
//! ```sql
//! _bp_vec_collections(name TEXT COLLATE "C" PRIMARY KEY, dimension INT, distance TEXT, version BIGINT)
//! _bp_vec_records(collection → collections ON DELETE CASCADE, id TEXT COLLATE "C",
//!                 vector REAL[], norm REAL, document TEXT, payload JSONB,
//!                 [embedding vector,]  -- with pgvector only
//!                 PRIMARY KEY (collection, id))
//! ```

use crate::client::PooledConn;
use crate::filter::{refs, translate, SqlFilter};
use crate::types::read_vector;
use backplane_core::{Distance, Error, Filter, Result, VectorRecord};
use postgres::types::ToSql;
use postgres::Row;
use serde_json::Value as Json;

/// The largest dimension accepted.
pub(crate) const MAX_DIMENSION: u32 = 65_536;

/// The tables, created if missing.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS _bp_vec_collections (
    name      TEXT COLLATE "C" PRIMARY KEY,
    dimension INTEGER NOT NULL,
    distance  TEXT NOT NULL,
    version   BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS _bp_vec_records (
    collection TEXT COLLATE "C" NOT NULL REFERENCES _bp_vec_collections (name) ON DELETE CASCADE,
    id         TEXT COLLATE "C" NOT NULL,
    vector     REAL[] NOT NULL,
    norm       REAL NOT NULL,
    document   TEXT,
    payload    JSONB,
    PRIMARY KEY (collection, id)
);
"#;

/// A collection's facts; `version` is bumped by every write.
#[derive(Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) dimension: u32,
    pub(crate) distance: Distance,
    pub(crate) version: i64,
}

/// A distance as stored in `_bp_vec_collections`.
pub(crate) fn parse_distance(name: &str, d: &str) -> Result<Distance> {
    Distance::parse(d).map_err(|_| {
        Error::backend(format!(
            "collection '{name}' has an unknown distance '{d}' in _bp_vec_collections"
        ))
    })
}

/// The error for a collection that does not exist.
pub(crate) fn unknown(collection: &str) -> Error {
    Error::not_found(format!(
        "collection '{collection}' does not exist: create it with create_collection(\"{collection}\", dimension, distance)"
    ))
}

/// `(dimension, distance, version)` read from a row.
fn meta_of(collection: &str, r: &Row) -> Result<Meta> {
    Ok(Meta {
        dimension: r.get::<_, i32>(0) as u32,
        distance: parse_distance(collection, r.get(1))?,
        version: r.get(2),
    })
}

/// The collection's facts; `None` when it does not exist.
fn meta_opt(conn: &mut PooledConn<'_>, collection: &str) -> Result<Option<Meta>> {
    const SQL: &str =
        "SELECT dimension, distance, version FROM _bp_vec_collections WHERE name = $1";
    let rows = conn.query(SQL, &[&collection])?;
    rows.first().map(|r| meta_of(collection, r)).transpose()
}

/// The collection's facts, or the error for an unknown collection.
pub(crate) fn meta(conn: &mut PooledConn<'_>, collection: &str) -> Result<Meta> {
    meta_opt(conn, collection)?.ok_or_else(|| unknown(collection))
}

/// Lock the collection's row for a write and bump its version.
pub(crate) fn meta_for_write(conn: &mut PooledConn<'_>, collection: &str) -> Result<Meta> {
    const SQL: &str = "UPDATE _bp_vec_collections SET version = version + 1 WHERE name = $1 \
         RETURNING dimension, distance, version";
    let rows = conn.query(SQL, &[&collection])?;
    let r = rows.first().ok_or_else(|| unknown(collection))?;
    meta_of(collection, r)
}

/// Read the stored vector in column `i` of `row` into `out`, checked
/// against the collection's dimension.
pub(crate) fn stored_vector(
    row: &Row,
    i: usize,
    collection: &str,
    m: Meta,
    out: &mut Vec<f32>,
) -> Result<()> {
    read_vector(row, i, out)?;
    if out.len() != m.dimension as usize {
        return Err(Error::backend(format!(
            "a vector in collection '{collection}' has {} components but the collection has {} dimensions: \
             the row was written by something other than this plugin",
            out.len(),
            m.dimension
        )));
    }
    Ok(())
}

/// A record from a row of `id, vector, document, payload`.
pub(crate) fn record_of(r: &Row, collection: &str, m: Meta) -> Result<VectorRecord> {
    let mut vector = Vec::new();
    stored_vector(r, 1, collection, m, &mut vector)?;
    Ok(VectorRecord {
        id: r.get(0),
        vector,
        document: r.get(2),
        payload: payload_of(r.get(3)),
    })
}

/// A stored payload: SQL NULL reads as JSON null.
pub(crate) fn payload_of(p: Option<Json>) -> Json {
    p.unwrap_or(Json::Null)
}

/// The payload as stored: SQL NULL for a null payload.
pub(crate) fn stored_payload(p: &Json) -> Option<&Json> {
    (!p.is_null()).then_some(p)
}

/// `filter` as a condition on `payload` in a statement whose `$1` is
/// taken (the collection, or the query vector); `None` when core's
/// evaluator must run it.
pub(crate) fn payload_condition(filter: &Filter) -> Option<SqlFilter> {
    translate(filter, "payload", 2)
}

/// The parameters of a statement with a [`payload_condition`]: the
/// collection, then the condition's.
pub(crate) fn with_collection<'a>(
    collection: &'a &str,
    condition: &'a SqlFilter,
) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![collection];
    params.extend(refs(&condition.params));
    params
}

/// Which records pass `filter`: SQL where it translates, else core's
/// evaluator over every payload. Returns the passing ids.
pub(crate) fn matching_ids(
    conn: &mut PooledConn<'_>,
    collection: &str,
    filter: &Filter,
) -> Result<Vec<String>> {
    match payload_condition(filter) {
        Some(t) => {
            let sql = format!(
                "SELECT id FROM _bp_vec_records WHERE collection = $1 AND ({})",
                t.sql
            );
            Ok(conn
                .query(&sql, &with_collection(&collection, &t))?
                .iter()
                .map(|r| r.get(0))
                .collect())
        }
        None => {
            const SQL: &str = "SELECT id, payload FROM _bp_vec_records WHERE collection = $1";
            Ok(conn
                .query(SQL, &[&collection])?
                .iter()
                .filter(|r| filter.matches(&payload_of(r.get(1))))
                .map(|r| r.get(0))
                .collect())
        }
    }
}
