//! The vector capability ([`SqliteVector`]): collections of embeddings in
//! two plain tables (see `vector_table`), searched exactly.
//!
//! Search is exact. The first search of a collection copies its vectors
//! into memory (`snapshot`) and later searches only score; a collection too
//! big for `search_cache_mb` is streamed from the table instead, each
//! vector decoded into one reused buffer. Either way a bounded heap keeps
//! the best `k` rowids; a payload is parsed for the filter only when the
//! record's score would enter the current top `k`, and ids, documents and
//! payloads are read for the final `k` alone.

use crate::config::DefaultCollection;
use crate::snapshot::{search_snapshot, Snapshots};
use crate::vector_table::{
    encode, fetch_hits, insert_collection, matching_rowids, meta, meta_opt, payload_text,
    search_table, MAX_DIMENSION, SCHEMA,
};
use backplane_core::vector::{norm, validate_collection_name, validate_records, validate_vector};
use backplane_core::{
    CollectionInfo, Distance, Error, Filter, Health, Result, ScrollPage, SearchHit, SearchRequest,
    Vector, VectorRecord,
};
use backplane_sqlite_engine::db::{sql_error, write_tx, Db};
use backplane_sqlite_engine::vector_rows;
use rusqlite::{params, Connection};
use std::sync::{Mutex, MutexGuard};

/// A vector store on one SQLite database.
pub(crate) struct SqliteVector {
    db: Db,
    snapshots: Mutex<Snapshots>,
    /// Bytes the in-memory copies may take.
    budget: u64,
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
        let top = match snaps.get(conn, collection, m, self.budget)? {
            Some(snap) => search_snapshot(conn, snap, req, m)?,
            None => search_table(conn, collection, req, m)?,
        };
        fetch_hits(conn, top)
    }
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
                return Err(backplane_core::vector::collection_exists(
                    name,
                    &backplane_core::vector::described(m.dimension, m.distance),
                ));
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
        vector_rows::get(&conn, SQL, collection, m.dimension, ids)
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
        let conn = self.db.lock();
        let m = meta(&conn, collection)?;
        vector_rows::scroll(&conn, SQL, collection, m.dimension, cursor, limit)
    }

    fn health(&self) -> Result<Health> {
        self.db.health()
    }
}
