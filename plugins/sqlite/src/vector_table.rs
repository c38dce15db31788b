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
use backplane_core::{Distance, Error, Filter, Result, SearchHit, SearchRequest, VectorRecord};
use backplane_sqlite_engine::db::sql_error;
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

pub(crate) fn unknown(collection: &str) -> Error {
    Error::not_found(format!(
        "collection '{collection}' does not exist: create it with create_collection(\"{collection}\", dimension, distance), \
         or set `dimension` in the store's section to have it created on open"
    ))
}

pub(crate) fn encode(v: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// `bytes` (a vector BLOB) decoded into `out`, replacing what it held.
#[inline]
pub(crate) fn decode_into(bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    extend_decoded(bytes, out);
}

/// `bytes` (a vector BLOB) decoded onto the end of `out`.
#[inline]
pub(crate) fn extend_decoded(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
}

pub(crate) fn parse_payload(text: Option<&str>) -> Result<serde_json::Value> {
    match text {
        None => Ok(serde_json::Value::Null),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            Error::backend(format!("a stored payload is not valid JSON ({e}): {t:.80}"))
        }),
    }
}

pub(crate) fn payload_text(p: &serde_json::Value) -> Option<String> {
    (!p.is_null()).then(|| p.to_string())
}

fn bad_blob(collection: &str, len: usize, m: Meta) -> Error {
    Error::backend(format!(
        "a vector in collection '{collection}' is {len} bytes but the collection has {} dimensions ({} bytes): \
         the row was written by something other than this plugin",
        m.dimension,
        m.dimension * 4
    ))
}

/// The vector BLOB in column 1 of a scan row, checked against the
/// collection's dimension.
pub(crate) fn vector_blob<'r>(
    row: &'r rusqlite::Row<'_>,
    collection: &str,
    m: Meta,
    sql: &str,
) -> Result<&'r [u8]> {
    let blob = row
        .get_ref(1)
        .and_then(|v| v.as_blob().map_err(Into::into))
        .map_err(|e| sql_error(e, sql))?;
    if blob.len() != m.dimension as usize * 4 {
        return Err(bad_blob(collection, blob.len(), m));
    }
    Ok(blob)
}

/// Rowids (and, when a filter is given, payloads) of a collection's
/// records passing `filter`.
pub(crate) fn matching_rowids(
    conn: &Connection,
    collection: &str,
    filter: &Filter,
) -> Result<Vec<i64>> {
    const SQL: &str = "SELECT rowid, payload FROM _bp_vec_records WHERE collection = ?1";
    let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
    let mut rows = stmt.query([collection]).map_err(|e| sql_error(e, SQL))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sql_error(e, SQL))? {
        let payload = parse_payload(
            row.get_ref(1)
                .and_then(|v| v.as_str_or_null().map_err(Into::into))
                .map_err(|e| sql_error(e, SQL))?,
        )?;
        if filter.matches(&payload) {
            out.push(row.get(0).map_err(|e| sql_error(e, SQL))?);
        }
    }
    Ok(out)
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
        decode_into(vector_blob(row, collection, m, sql)?, &mut buf);
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

pub(crate) fn read_record(
    row: &rusqlite::Row<'_>,
    m: Meta,
    collection: &str,
    sql: &str,
) -> Result<VectorRecord> {
    let err = |e| sql_error(e, sql);
    let blob = vector_blob(row, collection, m, sql)?;
    let mut vector = Vec::with_capacity(m.dimension as usize);
    decode_into(blob, &mut vector);
    let payload: Option<String> = row.get(3).map_err(err)?;
    Ok(VectorRecord {
        id: row.get(0).map_err(err)?,
        vector,
        document: row.get(2).map_err(err)?,
        payload: parse_payload(payload.as_deref())?,
    })
}
