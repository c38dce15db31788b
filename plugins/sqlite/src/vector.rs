//! The vector capability: collections of embeddings in two plain tables,
//! searched exactly.
//!
//! ```sql
//! _bp_vec_collections(name PRIMARY KEY, dimension, distance)
//! _bp_vec_records(collection, id, vector BLOB, norm REAL, document TEXT, payload TEXT,
//!                 PRIMARY KEY(collection, id))
//! ```
//!
//! Vectors are little-endian `f32` BLOBs, payloads JSON text: the `sqlite3`
//! shell reads both.
//!
//! Search is exact. Reading 20 000 rows out of SQLite costs ten times more
//! than scoring them, so the first search of a collection copies its
//! vectors into one flat in-memory array (see `Snapshots` for when the
//! copy is dropped) and later searches only score. A collection too big for
//! `search_cache_mb` is streamed from the table instead, each vector decoded
//! into one reused buffer. Either way a bounded heap keeps the best `k`
//! rowids; a payload is parsed for the filter only when the record's score
//! would enter the current top `k`, and ids, documents and payloads are read
//! for the final `k` alone.

use backplane_core::vector::{
    norm, validate_collection_name, validate_records, validate_vector, TopK,
};
use backplane_core::{
    CollectionInfo, Distance, Error, Filter, Health, Result, ScrollPage, SearchHit, SearchRequest,
    Vector, VectorRecord,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::config::DefaultCollection;
use backplane_core::kit::page::{check_limit, fetch_count, page_of};
use backplane_sqlite_engine::db::{sql_error, write_tx, Db};

/// The largest dimension accepted.
const MAX_DIMENSION: u32 = 65_536;

const SCHEMA: &str = "
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

/// A vector store on one SQLite database.
pub struct SqliteVector {
    db: Db,
    snapshots: Mutex<Snapshots>,
    /// Bytes the in-memory copies may take.
    budget: u64,
}

#[derive(Clone, Copy)]
struct Meta {
    dimension: u32,
    distance: Distance,
}

impl SqliteVector {
    pub(crate) fn open(db: Db, default: Option<DefaultCollection>, budget: u64) -> Result<Self> {
        {
            let conn = db.lock();
            write_tx(&conn, |tx| {
                tx.execute_batch(SCHEMA).map_err(|e| sql_error(e, SCHEMA))?;
                if let Some(d) = &default {
                    match meta_opt(tx, &d.name)? {
                        None => {
                            insert_collection(tx, &d.name, d.dimension, d.distance)?;
                            log::info!(
                                "sqlite: created collection '{}' ({} dims, {})",
                                d.name,
                                d.dimension,
                                d.distance.as_str()
                            );
                        }
                        Some(m) if m.dimension != d.dimension || m.distance != d.distance => {
                            return Err(Error::config(format!(
                                "[vector.{0}]: collection '{0}' exists with {1} dims and {2} distance, \
                                 but the config says {3} dims and {4}: fix `dimension`/`distance`, or drop the collection",
                                d.name,
                                m.dimension,
                                m.distance.as_str(),
                                d.dimension,
                                d.distance.as_str()
                            )));
                        }
                        Some(_) => {}
                    }
                }
                Ok(())
            })?;
        }
        Ok(SqliteVector {
            db,
            snapshots: Mutex::new(Snapshots::default()),
            budget,
        })
    }
}

fn insert_collection(
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

fn meta_opt(conn: &Connection, collection: &str) -> Result<Option<Meta>> {
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

fn meta(conn: &Connection, collection: &str) -> Result<Meta> {
    meta_opt(conn, collection)?.ok_or_else(|| unknown(collection))
}

fn unknown(collection: &str) -> Error {
    Error::not_found(format!(
        "collection '{collection}' does not exist: create it with create_collection(\"{collection}\", dimension, distance), \
         or set `dimension` in the store's section to have it created on open"
    ))
}

fn encode(v: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

#[inline]
fn decode_into(bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
}

fn parse_payload(text: Option<&str>) -> Result<serde_json::Value> {
    match text {
        None => Ok(serde_json::Value::Null),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            Error::backend(format!("a stored payload is not valid JSON ({e}): {t:.80}"))
        }),
    }
}

fn payload_text(p: &serde_json::Value) -> Option<String> {
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
fn vector_blob<'r>(
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
fn matching_rowids(conn: &Connection, collection: &str, filter: &Filter) -> Result<Vec<i64>> {
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
fn offer(
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
fn search_table(
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

/// Search over the in-memory copy; payloads (for a filter) are read by
/// rowid, and only for records whose score would enter the top k.
fn search_snapshot(
    conn: &Connection,
    snap: &Snapshot,
    req: &SearchRequest,
    m: Meta,
) -> Result<TopK<i64>> {
    const PAYLOAD: &str = "SELECT payload FROM _bp_vec_records WHERE rowid = ?1";
    let q = req.vector.as_slice();
    let q_norm = norm(q);
    let mut top: TopK<i64> = TopK::new(req.k);
    let mut payload_stmt = match &req.filter {
        Some(_) => Some(
            conn.prepare_cached(PAYLOAD)
                .map_err(|e| sql_error(e, PAYLOAD))?,
        ),
        None => None,
    };
    let vectors = snap.vectors.chunks_exact(m.dimension as usize);
    for ((v, &r_norm), &rowid) in vectors.zip(&snap.norms).zip(&snap.rowids) {
        let score = m.distance.score(q, v, q_norm, r_norm);
        offer(&mut top, score, rowid, req.filter.as_ref(), || {
            let stmt = payload_stmt
                .as_mut()
                .expect("prepared when a filter is given");
            let text: Option<String> = stmt
                .query_row([rowid], |r| r.get(0))
                .map_err(|e| sql_error(e, PAYLOAD))?;
            parse_payload(text.as_deref())
        })?;
    }
    Ok(top)
}

/// Ids, documents and payloads of the winners, best first.
fn fetch_hits(conn: &Connection, top: TopK<i64>) -> Result<Vec<SearchHit>> {
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

/// A collection's vectors, norms and rowids, copied out of the table.
struct Snapshot {
    dimension: u32,
    rowids: Vec<i64>,
    vectors: Vec<f32>,
    norms: Vec<f32>,
}

impl Snapshot {
    fn bytes(&self) -> u64 {
        (self.vectors.len() * 4 + self.rowids.len() * 12) as u64
    }

    fn load(conn: &Connection, collection: &str, m: Meta, count: usize) -> Result<Snapshot> {
        const SQL: &str = "SELECT rowid, vector, norm FROM _bp_vec_records WHERE collection = ?1";
        let err = |e| sql_error(e, SQL);
        let dim = m.dimension as usize;
        let mut snap = Snapshot {
            dimension: m.dimension,
            rowids: Vec::with_capacity(count),
            vectors: Vec::with_capacity(count * dim),
            norms: Vec::with_capacity(count),
        };
        let mut stmt = conn.prepare_cached(SQL).map_err(err)?;
        let mut rows = stmt.query([collection]).map_err(err)?;
        while let Some(row) = rows.next().map_err(err)? {
            let blob = vector_blob(row, collection, m, SQL)?;
            snap.vectors.extend(
                blob.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            snap.norms.push(row.get::<_, f64>(2).map_err(err)? as f32);
            snap.rowids.push(row.get(0).map_err(err)?);
        }
        Ok(snap)
    }
}

/// The in-memory copies of one store's collections.
///
/// Scanning rows out of SQLite costs far more than scoring them, so search
/// keeps each searched collection's vectors in one flat `Vec<f32>` (within
/// `search_cache_mb`). A copy is dropped when this store writes to the
/// collection, and all are dropped when `PRAGMA data_version` shows that
/// another connection (another store, process or the `sqlite3` shell)
/// committed to the file. Search stays exact; only where the vectors are
/// read from changes.
#[derive(Default)]
struct Snapshots {
    data_version: Option<i64>,
    by_collection: HashMap<String, Snapshot>,
    bytes: u64,
}

impl Snapshots {
    fn clear(&mut self) {
        self.by_collection.clear();
        self.bytes = 0;
    }

    fn remove(&mut self, collection: &str) {
        if let Some(s) = self.by_collection.remove(collection) {
            self.bytes -= s.bytes();
        }
    }
}

impl SqliteVector {
    fn snapshots(&self) -> MutexGuard<'_, Snapshots> {
        self.snapshots.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            g.clear();
            g.data_version = None;
            g
        })
    }

    /// Forget the copy of `collection`: this store is about to write to it.
    /// (Called with the connection locked, so no search sees a stale copy.)
    fn invalidate(&self, collection: &str) {
        self.snapshots().remove(collection);
    }

    /// The in-memory copy of `collection`, loaded if needed; `None` when it
    /// would not fit the budget.
    fn snapshot<'s>(
        &self,
        conn: &Connection,
        snaps: &'s mut Snapshots,
        collection: &str,
        m: Meta,
    ) -> Result<Option<&'s Snapshot>> {
        const VERSION: &str = "PRAGMA data_version";
        const COUNT: &str = "SELECT count(*) FROM _bp_vec_records WHERE collection = ?1";
        if self.budget == 0 {
            return Ok(None);
        }
        let version: i64 = conn
            .prepare_cached(VERSION)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| sql_error(e, VERSION))?;
        if snaps.data_version != Some(version) {
            snaps.clear();
            snaps.data_version = Some(version);
        }
        if snaps
            .by_collection
            .get(collection)
            .is_some_and(|s| s.dimension != m.dimension)
        {
            snaps.remove(collection);
        }
        if !snaps.by_collection.contains_key(collection) {
            let count: usize = conn
                .prepare_cached(COUNT)
                .and_then(|mut s| s.query_row([collection], |r| r.get(0)))
                .map_err(|e| sql_error(e, COUNT))?;
            let bytes = (count * (m.dimension as usize * 4 + 12)) as u64;
            if bytes > self.budget {
                return Ok(None);
            }
            if snaps.bytes + bytes > self.budget {
                snaps.clear();
            }
            let snap = Snapshot::load(conn, collection, m, count)?;
            snaps.bytes += snap.bytes();
            snaps.by_collection.insert(collection.to_string(), snap);
        }
        Ok(snaps.by_collection.get(collection))
    }

    fn search_locked(
        &self,
        conn: &Connection,
        snaps: &mut Snapshots,
        collection: &str,
        req: &SearchRequest,
    ) -> Result<Vec<SearchHit>> {
        let m = meta(conn, collection)?;
        validate_vector(&req.vector, m.dimension, "the query vector")?;
        if req.k == 0 {
            return Ok(Vec::new());
        }
        let top = match self.snapshot(conn, snaps, collection, m)? {
            Some(snap) => search_snapshot(conn, snap, req, m)?,
            None => search_table(conn, collection, req, m)?,
        };
        fetch_hits(conn, top)
    }
}

fn read_record(
    row: &rusqlite::Row<'_>,
    m: Meta,
    collection: &str,
    sql: &str,
) -> Result<VectorRecord> {
    let err = |e| sql_error(e, sql);
    let blob = row
        .get_ref(1)
        .and_then(|v| v.as_blob().map_err(Into::into))
        .map_err(err)?;
    if blob.len() != m.dimension as usize * 4 {
        return Err(bad_blob(collection, blob.len(), m));
    }
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

impl Vector for SqliteVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        validate_collection_name(name)?;
        if dimension == 0 || dimension > MAX_DIMENSION {
            return Err(Error::invalid(format!(
                "dimension {dimension} is out of range: give the embedding size, 1 to {MAX_DIMENSION}"
            )));
        }
        let conn = self.db.lock();
        self.invalidate(name);
        write_tx(&conn, |tx| {
            if let Some(m) = meta_opt(tx, name)? {
                return Err(Error::already_exists(format!(
                    "collection '{name}' exists already ({} dims, {}): use it, or drop it first",
                    m.dimension,
                    m.distance.as_str()
                )));
            }
            insert_collection(tx, name, dimension, distance)
        })
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        let conn = self.db.lock();
        self.invalidate(name);
        write_tx(&conn, |tx| {
            meta(tx, name)?;
            const RECORDS: &str = "DELETE FROM _bp_vec_records WHERE collection = ?1";
            const COLL: &str = "DELETE FROM _bp_vec_collections WHERE name = ?1";
            tx.execute(RECORDS, [name])
                .map_err(|e| sql_error(e, RECORDS))?;
            tx.execute(COLL, [name]).map_err(|e| sql_error(e, COLL))?;
            Ok(())
        })
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        const SQL: &str = "SELECT c.name, c.dimension, c.distance, \
             (SELECT count(*) FROM _bp_vec_records r WHERE r.collection = c.name) \
             FROM _bp_vec_collections c ORDER BY c.name";
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, u64>(3)?,
                ))
            })
            .map_err(|e| sql_error(e, SQL))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, dimension, distance, count) = row.map_err(|e| sql_error(e, SQL))?;
            let distance = Distance::parse(&distance).map_err(|_| {
                Error::backend(format!(
                    "collection '{name}' has an unknown distance '{distance}'"
                ))
            })?;
            out.push(CollectionInfo {
                name,
                dimension,
                distance,
                count,
            });
        }
        Ok(out)
    }

    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        const SQL: &str = "SELECT count(*) FROM _bp_vec_records WHERE collection = ?1";
        let conn = self.db.lock();
        let m = meta(&conn, name)?;
        let count: u64 = conn
            .prepare_cached(SQL)
            .and_then(|mut s| s.query_row([name], |r| r.get(0)))
            .map_err(|e| sql_error(e, SQL))?;
        Ok(CollectionInfo {
            name: name.to_string(),
            dimension: m.dimension,
            distance: m.distance,
            count,
        })
    }

    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        const SQL: &str = "INSERT INTO _bp_vec_records (collection, id, vector, norm, document, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (collection, id) DO UPDATE SET vector = excluded.vector, norm = excluded.norm, \
             document = excluded.document, payload = excluded.payload";
        let conn = self.db.lock();
        self.invalidate(collection);
        write_tx(&conn, |tx| {
            let m = meta(tx, collection)?;
            validate_records(records, m.dimension)?;
            let mut stmt = tx.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
            let mut blob = Vec::with_capacity(m.dimension as usize * 4);
            for r in records {
                encode(&r.vector, &mut blob);
                stmt.execute(params![
                    collection,
                    r.id,
                    blob,
                    norm(&r.vector) as f64,
                    r.document,
                    payload_text(&r.payload)
                ])
                .map_err(|e| {
                    sql_error(e, SQL).context(format!(
                        "upserting record '{}' failed; nothing of this batch was written",
                        r.id
                    ))
                })?;
            }
            Ok(())
        })
    }

    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        const SQL: &str = "SELECT id, vector, document, payload FROM _bp_vec_records \
             WHERE collection = ?1 AND id = ?2";
        let conn = self.db.lock();
        let m = meta(&conn, collection)?;
        let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let mut rows = stmt
                .query([collection, id])
                .map_err(|e| sql_error(e, SQL))?;
            if let Some(row) = rows.next().map_err(|e| sql_error(e, SQL))? {
                out.push(read_record(row, m, collection, SQL)?);
            }
        }
        Ok(out)
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        const SQL: &str = "DELETE FROM _bp_vec_records WHERE collection = ?1 AND id = ?2";
        let conn = self.db.lock();
        self.invalidate(collection);
        write_tx(&conn, |tx| {
            meta(tx, collection)?;
            let mut stmt = tx.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
            let mut n = 0u64;
            for id in ids {
                n += stmt
                    .execute([collection, id])
                    .map_err(|e| sql_error(e, SQL))? as u64;
            }
            Ok(n)
        })
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        const SQL: &str = "DELETE FROM _bp_vec_records WHERE rowid = ?1";
        let conn = self.db.lock();
        self.invalidate(collection);
        write_tx(&conn, |tx| {
            meta(tx, collection)?;
            let rowids = matching_rowids(tx, collection, filter)?;
            let mut stmt = tx.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
            for rowid in &rowids {
                stmt.execute([rowid]).map_err(|e| sql_error(e, SQL))?;
            }
            Ok(rowids.len() as u64)
        })
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        const SQL: &str = "SELECT count(*) FROM _bp_vec_records WHERE collection = ?1";
        let conn = self.db.lock();
        meta(&conn, collection)?;
        match filter {
            Some(f) => Ok(matching_rowids(&conn, collection, f)?.len() as u64),
            None => conn
                .prepare_cached(SQL)
                .and_then(|mut s| s.query_row([collection], |r| r.get(0)))
                .map_err(|e| sql_error(e, SQL)),
        }
    }

    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let conn = self.db.lock();
        self.search_locked(&conn, &mut self.snapshots(), collection, request)
    }

    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        let conn = self.db.lock();
        let mut snaps = self.snapshots();
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                self.search_locked(&conn, &mut snaps, collection, r)
                    .map_err(|e| e.context(format!("query {i}")))
            })
            .collect()
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        const SQL: &str = "SELECT id, vector, document, payload FROM _bp_vec_records \
             WHERE collection = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3";
        check_limit(limit, "scroll", "record")?;
        let conn = self.db.lock();
        let m = meta(&conn, collection)?;
        let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
        let mut rows = stmt
            .query(params![collection, cursor, fetch_count(limit)])
            .map_err(|e| sql_error(e, SQL))?;
        let mut records = Vec::with_capacity(limit.min(1024));
        while let Some(row) = rows.next().map_err(|e| sql_error(e, SQL))? {
            records.push(read_record(row, m, collection, SQL)?);
        }
        let page = page_of(records, limit, |r: &VectorRecord| &r.id);
        Ok(ScrollPage {
            records: page.items,
            next_cursor: page.next_cursor,
        })
    }

    fn health(&self) -> Result<Health> {
        self.db.health()
    }
}
