//! The vector tables: their schema, a collection's metadata, vectors and
//! payloads as stored, records read back, and the scans that stream rows
//! (the records a filter selects; a search of a collection too large for
//! its in-memory copy).
//!
//! ```sql
//! _bp_vec_collections(name PRIMARY KEY, dimension, distance)
//! _bp_vec_records(collection, id, vector BLOB, norm REAL, document TEXT, payload TEXT,
//!                 PRIMARY KEY(collection, id))
//! ```
//!
//! Vectors are little-endian `f32` BLOBs, payloads JSON text: the `sqlite3`
//! shell reads both.

use backplane_core::vector::{norm, TopK};
use backplane_core::{Distance, Error, Filter, Result, SearchHit, SearchRequest};
use backplane_sqlite_engine::db::sql_error;
pub(crate) use backplane_sqlite_engine::vector_rows::{
    decode_into, encode, matching_keys, parse_payload, payload_text, vector_blob,
};
use rusqlite::{params, Connection, OptionalExtension};

/// The largest dimension accepted.
pub(crate) const MAX_DIMENSION: u32 = 65_536;

/// The vector tables, created when a store opens.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _bp_vec_collections (
    name      TEXT PRIMARY KEY,
    dimension INTEGER NOT NULL,
    distance  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _bp_vec_records (
    collection TEXT NOT NULL REFERENCES _bp_vec_collections(name) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    vector     BLOB NOT NULL,
    norm       REAL NOT NULL,
    document   TEXT,
    payload    TEXT,
    PRIMARY KEY (collection, id)
);";

#[derive(Clone, Copy)]
/// A collection's row in `_bp_vec_collections`.
pub(crate) struct Meta {
    pub(crate) dimension: u32,
    pub(crate) distance: Distance,
}

pub(crate) fn insert_collection(
    conn: &Connection,
    name: &str,
    dimension: u32,
    distance: Distance,
) -> Result<()> {
    const SQL: &str =
        "INSERT INTO _bp_vec_collections (name, dimension, distance) VALUES (?1, ?2, ?3)";
    conn.prepare_cached(SQL)
        .and_then(|mut s| s.execute(params![name, dimension, distance.as_str()]))
        .map_err(|e| sql_error(e, SQL))?;
    Ok(())
}

pub(crate) fn meta_opt(conn: &Connection, collection: &str) -> Result<Option<Meta>> {
    const SQL: &str = "SELECT dimension, distance FROM _bp_vec_collections WHERE name = ?1";
    let row: Option<(u32, String)> = conn
        .prepare_cached(SQL)
        .and_then(|mut s| {
            s.query_row([collection], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(|e| sql_error(e, SQL))?;
    row.map(|(dimension, d)| {
        let distance = Distance::parse(&d).map_err(|_| {
            Error::backend(format!(
                "collection '{collection}' has an unknown distance '{d}' in _bp_vec_collections"
            ))
        })?;
        Ok(Meta {
            dimension,
            distance,
        })
    })
    .transpose()
}

pub(crate) fn meta(conn: &Connection, collection: &str) -> Result<Meta> {
    meta_opt(conn, collection)?.ok_or_else(|| unknown(collection))
}

pub(crate) use backplane_core::vector::unknown_collection as unknown;

/// Rowids of a collection's records whose payload passes `filter`.
pub(crate) fn matching_rowids(
    conn: &Connection,
    collection: &str,
    filter: &Filter,
) -> Result<Vec<i64>> {
    const SQL: &str = "SELECT rowid, payload FROM _bp_vec_records WHERE collection = ?1";
    matching_keys(conn, SQL, collection, filter)
}

/// What a search keeps: the rowids of the best records so far.
pub(crate) fn offer(
    top: &mut TopK<i64>,
    score: f32,
    rowid: i64,
    filter: Option<&Filter>,
    payload: impl FnOnce() -> Result<serde_json::Value>,
) -> Result<()> {
    // Cheap test first: a record that cannot enter the top k is never
    // looked at further, so its payload is not parsed.
    let threshold = top.threshold();
    if threshold != f32::NEG_INFINITY && score <= threshold {
        return Ok(());
    }
    if let Some(f) = filter {
        if !f.matches(&payload()?) {
            return Ok(());
        }
    }
    top.push(score, rowid);
    Ok(())
}

/// Search by streaming the collection's rows out of the table.
pub(crate) fn search_table(
    conn: &Connection,
    collection: &str,
    req: &SearchRequest,
    m: Meta,
) -> Result<TopK<i64>> {
    const SCAN: &str = "SELECT rowid, vector, norm FROM _bp_vec_records WHERE collection = ?1";
    const SCAN_P: &str =
        "SELECT rowid, vector, norm, payload FROM _bp_vec_records WHERE collection = ?1";
    let q = req.vector.as_slice();
    let q_norm = norm(q);
    let mut top: TopK<i64> = TopK::new(req.k);
    let mut buf: Vec<f32> = Vec::with_capacity(m.dimension as usize);
    let sql = if req.filter.is_some() { SCAN_P } else { SCAN };
    let err = |e| sql_error(e, sql);
    let mut stmt = conn.prepare_cached(sql).map_err(err)?;
    let mut rows = stmt.query([collection]).map_err(err)?;
    while let Some(row) = rows.next().map_err(err)? {
        decode_into(vector_blob(row, collection, m.dimension, sql)?, &mut buf);
        let r_norm = row
            .get_ref(2)
            .and_then(|v| v.as_f64().map_err(Into::into))
            .map_err(err)? as f32;
        let rowid = row
            .get_ref(0)
            .and_then(|v| v.as_i64().map_err(Into::into))
            .map_err(err)?;
        let score = m.distance.score(q, &buf, q_norm, r_norm);
        offer(&mut top, score, rowid, req.filter.as_ref(), || {
            let text = row
                .get_ref(3)
                .and_then(|v| v.as_str_or_null().map_err(Into::into))
                .map_err(err)?;
            parse_payload(text)
        })?;
    }
    Ok(top)
}

/// Ids, documents and payloads of the winners, best first.
pub(crate) fn fetch_hits(conn: &Connection, top: TopK<i64>) -> Result<Vec<SearchHit>> {
    const FETCH: &str = "SELECT id, document, payload FROM _bp_vec_records WHERE rowid = ?1";
    let mut fetch = conn
        .prepare_cached(FETCH)
        .map_err(|e| sql_error(e, FETCH))?;
    top.into_sorted()
        .into_iter()
        .map(|(score, rowid)| {
            let (id, document, payload): (String, Option<String>, Option<String>) = fetch
                .query_row([rowid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(|e| sql_error(e, FETCH))?;
            Ok(SearchHit {
                id,
                score,
                document,
                payload: parse_payload(payload.as_deref())?,
            })
        })
        .collect()
}
