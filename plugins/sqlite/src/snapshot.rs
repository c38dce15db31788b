//! The in-memory copies of searched collections ([`Snapshots`]), and the
//! search that only scores them.
//!
//! Reading 20 000 rows out of SQLite costs ten times more than scoring
//! them, so the first search of a collection copies its vectors into one
//! flat in-memory array and later searches only score. Search stays exact:
//! only where the vectors are read from changes.

use crate::vector_table::{offer, parse_payload, vector_blob, Meta};
use backplane_core::vector::{norm, TopK};
use backplane_core::{Result, SearchRequest};
use backplane_sqlite_engine::db::sql_error;
use backplane_sqlite_engine::vector_rows::extend_decoded;
use rusqlite::Connection;
use std::collections::HashMap;

/// A collection's vectors, norms and rowids, copied out of the table.
pub(crate) struct Snapshot {
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
            extend_decoded(
                vector_blob(row, collection, m.dimension, SQL)?,
                &mut snap.vectors,
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
pub(crate) struct Snapshots {
    pub(crate) data_version: Option<i64>,
    by_collection: HashMap<String, Snapshot>,
    bytes: u64,
}

impl Snapshots {
    pub(crate) fn clear(&mut self) {
        self.by_collection.clear();
        self.bytes = 0;
    }

    pub(crate) fn remove(&mut self, collection: &str) {
        if let Some(s) = self.by_collection.remove(collection) {
            self.bytes -= s.bytes();
        }
    }

    /// The in-memory copy of `collection`, loaded if needed; `None` when it
    /// would not fit `budget` bytes.
    pub(crate) fn get(
        &mut self,
        conn: &Connection,
        collection: &str,
        m: Meta,
        budget: u64,
    ) -> Result<Option<&Snapshot>> {
        const VERSION: &str = "PRAGMA data_version";
        const COUNT: &str = "SELECT count(*) FROM _bp_vec_records WHERE collection = ?1";
        if budget == 0 {
            return Ok(None);
        }
        let version: i64 = conn
            .prepare_cached(VERSION)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| sql_error(e, VERSION))?;
        if self.data_version != Some(version) {
            self.clear();
            self.data_version = Some(version);
        }
        if self
            .by_collection
            .get(collection)
            .is_some_and(|s| s.dimension != m.dimension)
        {
            self.remove(collection);
        }
        if !self.by_collection.contains_key(collection) {
            let count: usize = conn
                .prepare_cached(COUNT)
                .and_then(|mut s| s.query_row([collection], |r| r.get(0)))
                .map_err(|e| sql_error(e, COUNT))?;
            let bytes = (count * (m.dimension as usize * 4 + 12)) as u64;
            if bytes > budget {
                return Ok(None);
            }
            if self.bytes + bytes > budget {
                self.clear();
            }
            let snap = Snapshot::load(conn, collection, m, count)?;
            self.bytes += snap.bytes();
            self.by_collection.insert(collection.to_string(), snap);
        }
        Ok(self.by_collection.get(collection))
    }
}

/// Search over the in-memory copy; payloads (for a filter) are read by
/// rowid, and only for records whose score would enter the top k.
pub(crate) fn search_snapshot(
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
