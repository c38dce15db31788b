//! `records.db`: what FAISS does not keep, in SQLite, and the single source
//! of truth of a store (the index files are derived from it and rebuilt
//! from it).
//!
//! ```sql
//! _bp_faiss_collections(name PRIMARY KEY, dimension, distance, token)
//! _bp_faiss_records(fid INTEGER PRIMARY KEY AUTOINCREMENT, collection, id,
//!                   vector BLOB, document TEXT, payload TEXT, UNIQUE(collection, id))
//! ```
//!
//! `fid` is the id a vector has inside FAISS. An upsert deletes the old row
//! and inserts a new one, so a record's vector never changes under its
//! `fid`, and `AUTOINCREMENT` never hands out a `fid` twice: an index entry
//! whose `fid` is in the table holds exactly that row's vector, and one
//! whose `fid` is not is stale. `token` ties a collection's index file to
//! the collection it was built for. Vectors are little-endian `f32` BLOBs,
//! payloads JSON text: the `sqlite3` shell reads both.

use backplane_core::{Distance, Error, Filter, Result};
use backplane_sqlite_engine::db::sql_error;
pub(crate) use backplane_sqlite_engine::vector_rows::{
    encode, extend_decoded, matching_keys, payload_text, read_record, vector_blob,
};
use rusqlite::{params, Connection, OptionalExtension};

/// The largest dimension accepted.
pub(crate) const MAX_DIMENSION: u32 = 65_536;

/// The tables, created when a store opens.
pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _bp_faiss_collections (
    name      TEXT PRIMARY KEY,
    dimension INTEGER NOT NULL,
    distance  TEXT NOT NULL,
    token     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS _bp_faiss_records (
    fid        INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL REFERENCES _bp_faiss_collections(name) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    vector     BLOB NOT NULL,
    document   TEXT,
    payload    TEXT,
    UNIQUE (collection, id)
);";

/// A collection's row in `_bp_faiss_collections`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) dimension: u32,
    pub(crate) distance: Distance,
    /// Written into the collection's index file; a file with another token
    /// was not built for this collection.
    pub(crate) token: String,
}

pub(crate) fn insert_collection(conn: &Connection, name: &str, meta: &Meta) -> Result<()> {
    const SQL: &str = "INSERT INTO _bp_faiss_collections (name, dimension, distance, token) \
         VALUES (?1, ?2, ?3, ?4)";
    conn.prepare_cached(SQL)
        .and_then(|mut s| {
            s.execute(params![
                name,
                meta.dimension,
                meta.distance.as_str(),
                meta.token
            ])
        })
        .map_err(|e| sql_error(e, SQL))?;
    Ok(())
}

pub(crate) fn meta_opt(conn: &Connection, collection: &str) -> Result<Option<Meta>> {
    const SQL: &str =
        "SELECT dimension, distance, token FROM _bp_faiss_collections WHERE name = ?1";
    let row: Option<(u32, String, String)> = conn
        .prepare_cached(SQL)
        .and_then(|mut s| {
            s.query_row([collection], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
        })
        .map_err(|e| sql_error(e, SQL))?;
    row.map(|(dimension, d, token)| {
        let distance = Distance::parse(&d).map_err(|_| {
            Error::backend(format!(
                "collection '{collection}' has an unknown distance '{d}' in _bp_faiss_collections"
            ))
        })?;
        Ok(Meta {
            dimension,
            distance,
            token,
        })
    })
    .transpose()
}

pub(crate) fn meta(conn: &Connection, collection: &str) -> Result<Meta> {
    meta_opt(conn, collection)?.ok_or_else(|| unknown(collection))
}

/// Every collection's name and metadata.
pub(crate) fn all_collections(conn: &Connection) -> Result<Vec<(String, Meta)>> {
    const SQL: &str = "SELECT name FROM _bp_faiss_collections ORDER BY name";
    let names: Vec<String> = conn
        .prepare_cached(SQL)
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| sql_error(e, SQL))?;
    names
        .into_iter()
        .map(|n| Ok((n.clone(), meta(conn, &n)?)))
        .collect()
}

pub(crate) use backplane_core::vector::unknown_collection as unknown;

/// The records of a collection.
pub(crate) fn count(conn: &Connection, collection: &str) -> Result<u64> {
    const SQL: &str = "SELECT count(*) FROM _bp_faiss_records WHERE collection = ?1";
    conn.prepare_cached(SQL)
        .and_then(|mut s| s.query_row([collection], |r| r.get(0)))
        .map_err(|e| sql_error(e, SQL))
}

/// The highest `fid` ever handed out (0 before the first).
pub(crate) fn max_fid(conn: &Connection) -> Result<i64> {
    const SQL: &str = "SELECT seq FROM sqlite_sequence WHERE name = '_bp_faiss_records'";
    conn.query_row(SQL, [], |r| r.get::<_, i64>(0))
        .optional()
        .map(|v| v.unwrap_or(0))
        .map_err(|e| sql_error(e, SQL))
}

/// Every `(fid, vector)` of a collection, in `fid` order.
pub(crate) fn all_vectors(
    conn: &Connection,
    collection: &str,
    dimension: u32,
) -> Result<Vec<(i64, Vec<f32>)>> {
    const SQL: &str =
        "SELECT fid, vector FROM _bp_faiss_records WHERE collection = ?1 ORDER BY fid";
    let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
    let mut rows = stmt.query([collection]).map_err(|e| sql_error(e, SQL))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sql_error(e, SQL))? {
        let fid: i64 = row.get(0).map_err(|e| sql_error(e, SQL))?;
        let mut v = Vec::with_capacity(dimension as usize);
        extend_decoded(vector_blob(row, collection, dimension, SQL)?, &mut v);
        out.push((fid, v));
    }
    Ok(out)
}

/// Every `fid` of a collection.
pub(crate) fn all_fids(conn: &Connection, collection: &str) -> Result<Vec<i64>> {
    const SQL: &str = "SELECT fid FROM _bp_faiss_records WHERE collection = ?1";
    conn.prepare_cached(SQL)
        .and_then(|mut s| s.query_map([collection], |r| r.get(0))?.collect())
        .map_err(|e| sql_error(e, SQL))
}

/// The `fid`s of a collection's records whose payload passes `filter`.
pub(crate) fn matching_fids(
    conn: &Connection,
    collection: &str,
    filter: &Filter,
) -> Result<Vec<i64>> {
    const SQL: &str = "SELECT fid, payload FROM _bp_faiss_records WHERE collection = ?1";
    matching_keys(conn, SQL, collection, filter)
}
