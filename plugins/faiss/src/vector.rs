//! The vector capability ([`FaissVector`]): records in `records.db`, one
//! FAISS index per collection (see `index`), and search that asks FAISS for
//! candidates and answers from `records.db`.
//!
//! Every write runs in one SQLite transaction and then updates the index,
//! both under the collection's write lock: a search sees a write whole or
//! not at all. A search takes the read lock, asks FAISS for the nearest
//! candidates, reads them back by `fid` (a candidate no longer in
//! `records.db` is skipped), keeps those whose payload passes the filter,
//! and scores them exactly from the stored vectors with the same function
//! every backend uses, so scores do not depend on the index type. When
//! fewer than `k` candidates pass, it asks for four times as many, and
//! after [`MAX_ROUNDS`] rounds (a filter that few records pass), or when an
//! approximate index may have missed some, it scans `records.db` exactly:
//! a filter is never dropped and a search never returns fewer hits than
//! exist.

use crate::config::Tuning;
use crate::index::{prepared, remove_file, CollIndex};
use crate::records::{
    self, encode, matching_fids, meta, meta_opt, payload_text, read_record, Meta, MAX_DIMENSION,
    SCHEMA,
};
use backplane_core::kit::id::new_id;
use backplane_core::vector::{
    norm, validate_collection_name, validate_records, validate_vector, DefaultCollection, TopK,
};
use backplane_core::{
    CollectionInfo, Distance, Error, Filter, Health, Result, ScrollPage, SearchHit, SearchRequest,
    Vector, VectorRecord,
};
use backplane_sqlite_engine::db::{sql_error, write_tx, Db};
use backplane_sqlite_engine::vector_rows;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Rounds of over-fetching before a filtered search scans exactly.
const MAX_ROUNDS: u32 = 4;

type Slot = Arc<RwLock<CollIndex>>;

/// A vector store in one folder.
pub(crate) struct FaissVector {
    db: Db,
    folder: PathBuf,
    tuning: Tuning,
    slots: Mutex<HashMap<String, Slot>>,
    /// Held while the store is open: one process at a time.
    _lock: File,
}

fn read(slot: &Slot) -> RwLockReadGuard<'_, CollIndex> {
    slot.read().unwrap_or_else(|p| p.into_inner())
}

fn write(slot: &Slot) -> RwLockWriteGuard<'_, CollIndex> {
    slot.write().unwrap_or_else(|p| p.into_inner())
}

impl FaissVector {
    /// Open the folder: take its lock, create the tables, and open (or
    /// build) every collection's index.
    pub(crate) fn open(
        db: Db,
        folder: PathBuf,
        lock: File,
        tuning: Tuning,
        default: Option<DefaultCollection>,
    ) -> Result<Self> {
        db.create_tables(SCHEMA)?;
        let store = FaissVector {
            db,
            folder,
            tuning,
            slots: Mutex::new(HashMap::new()),
            _lock: lock,
        };
        {
            let conn = store.db.lock();
            let mut slots = store.slots();
            for (name, m) in records::all_collections(&conn)? {
                let ix = CollIndex::open(&conn, &store.folder, &name, m, tuning)?;
                slots.insert(name, Arc::new(RwLock::new(ix)));
            }
        }
        if let Some(d) = default {
            d.ensure(&store, "faiss")?;
        }
        Ok(store)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn slot(&self, collection: &str) -> Result<Slot> {
        self.slots()
            .get(collection)
            .cloned()
            .ok_or_else(|| records::unknown(collection))
    }

    /// Run a write: `f` in one transaction (given the collection's
    /// metadata), then the index follows what it returns (new `fid`s with
    /// their vectors, and removed `fid`s).
    fn write<T>(
        &self,
        collection: &str,
        f: impl FnOnce(&rusqlite::Transaction<'_>, &Meta) -> Result<(T, Changes)>,
    ) -> Result<T> {
        let slot = self.slot(collection)?;
        let mut ix = write(&slot);
        let conn = self.db.lock();
        let (out, changes) = write_tx(&conn, |tx| {
            // The collection may have been dropped (and made again) since
            // the slot was looked up.
            match meta_opt(tx, collection)? {
                Some(m) if m.token == ix.meta.token => f(tx, &m),
                _ => Err(records::unknown(collection)),
            }
        })?;
        if !changes.added.is_empty() || !changes.removed.is_empty() {
            ix.apply(&conn, &changes.added, &changes.removed)
                .map_err(|e| {
                    e.context("the write is saved in records.db; the index is rebuilt before its next use")
                })?;
        }
        Ok(out)
    }

    fn search_one(&self, collection: &str, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        let slot = self.slot(collection)?;
        if read(&slot).broken {
            let mut ix = write(&slot);
            if ix.broken {
                ix.rebuild(&self.db.lock())?;
            }
        }
        let ix = read(&slot);
        let m = &ix.meta;
        validate_vector(&req.vector, m.dimension, "the query vector")?;
        if req.k == 0 || ix.live == 0 {
            return Ok(Vec::new());
        }
        // No more hits than records (a huge `k` allocates nothing).
        let k = req.k.min(ix.live as usize);
        let query = prepared(m.distance, &req.vector);
        let q_norm = norm(&req.vector);
        let filter = req.filter.as_ref();
        let mut n = if filter.is_some() {
            k.saturating_mul(4).max(32)
        } else {
            k.saturating_add(ix.dead.min(k as u64 * 4) as usize)
        };
        for _ in 0..MAX_ROUNDS {
            // FAISS searches without the connection: concurrent searches
            // share only the SQLite lookups of their candidates.
            let fids = ix.nearest(&query, n)?;
            let hits = resolve(
                &self.db.lock(),
                collection,
                m,
                &fids,
                &req.vector,
                q_norm,
                filter,
            )?;
            // Every entry was a candidate: an exact index has then seen
            // every record; an approximate one may not have.
            let complete = n >= ix.entries();
            if hits.len() >= k || (complete && ix.exhaustive()) {
                return Ok(best(hits, k));
            }
            if complete {
                break;
            }
            n = n.saturating_mul(4);
        }
        exact_scan(&self.db.lock(), collection, m, req, k, q_norm)
    }
}

/// What a write did, for the index to follow.
#[derive(Default)]
struct Changes {
    added: Vec<(i64, Vec<f32>)>,
    removed: Vec<i64>,
}

/// The best `k` hits, best first (ties by id, for a stable order).
fn best(mut hits: Vec<SearchHit>, k: usize) -> Vec<SearchHit> {
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    hits.truncate(k);
    hits
}

/// The candidates still in `records.db` whose payload passes the filter,
/// scored exactly.
fn resolve(
    conn: &Connection,
    collection: &str,
    m: &Meta,
    fids: &[i64],
    query: &[f32],
    q_norm: f32,
    filter: Option<&Filter>,
) -> Result<Vec<SearchHit>> {
    const SQL: &str = "SELECT id, vector, document, payload FROM _bp_faiss_records \
         WHERE fid = ?1 AND collection = ?2";
    let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
    let mut out = Vec::with_capacity(fids.len());
    for fid in fids {
        let Some(r) = stmt
            .query_row(params![fid, collection], |row| {
                Ok(read_record(row, collection, m.dimension, SQL))
            })
            .optional()
            .map_err(|e| sql_error(e, SQL))?
            .transpose()?
        else {
            continue;
        };
        if filter.is_some_and(|f| !f.matches(&r.payload)) {
            continue;
        }
        let score = m.distance.score(query, &r.vector, q_norm, norm(&r.vector));
        out.push(SearchHit::of(r, score));
    }
    Ok(out)
}

/// Exact search over every record in `records.db`.
fn exact_scan(
    conn: &Connection,
    collection: &str,
    m: &Meta,
    req: &SearchRequest,
    k: usize,
    q_norm: f32,
) -> Result<Vec<SearchHit>> {
    const SQL: &str = "SELECT id, vector, document, payload FROM _bp_faiss_records \
         WHERE collection = ?1";
    let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
    let mut rows = stmt.query([collection]).map_err(|e| sql_error(e, SQL))?;
    let mut top: TopK<VectorRecord> = TopK::new(k);
    while let Some(row) = rows.next().map_err(|e| sql_error(e, SQL))? {
        let r = read_record(row, collection, m.dimension, SQL)?;
        if req.filter.as_ref().is_some_and(|f| !f.matches(&r.payload)) {
            continue;
        }
        let score = m
            .distance
            .score(&req.vector, &r.vector, q_norm, norm(&r.vector));
        top.push(score, r);
    }
    let hits = top
        .into_sorted()
        .into_iter()
        .map(|(score, r)| SearchHit::of(r, score))
        .collect();
    Ok(best(hits, k))
}

/// Delete the rows of `fids` (in a transaction).
fn delete_fids(tx: &Connection, fids: &[i64]) -> Result<()> {
    const SQL: &str = "DELETE FROM _bp_faiss_records WHERE fid = ?1";
    let mut stmt = tx.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
    for fid in fids {
        stmt.execute([fid]).map_err(|e| sql_error(e, SQL))?;
    }
    Ok(())
}

impl Vector for FaissVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        validate_collection_name(name)?;
        if dimension == 0 || dimension > MAX_DIMENSION {
            return Err(Error::invalid(format!(
                "dimension {dimension} is out of range: give the embedding size, 1 to {MAX_DIMENSION}"
            )));
        }
        let mut slots = self.slots();
        let conn = self.db.lock();
        let m = Meta {
            dimension,
            distance,
            token: new_id("c"),
        };
        write_tx(&conn, |tx| {
            if let Some(old) = meta_opt(tx, name)? {
                return Err(backplane_core::vector::collection_exists(
                    name,
                    &backplane_core::vector::described(old.dimension, old.distance),
                ));
            }
            records::insert_collection(tx, name, &m)
        })?;
        let ix = CollIndex::create(&self.folder, name, m, self.tuning)?;
        slots.insert(name.to_string(), Arc::new(RwLock::new(ix)));
        Ok(())
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        let slot = self.slot(name)?;
        let _ix = write(&slot);
        let mut slots = self.slots();
        let conn = self.db.lock();
        write_tx(&conn, |tx| {
            meta(tx, name)?;
            const RECORDS: &str = "DELETE FROM _bp_faiss_records WHERE collection = ?1";
            const COLL: &str = "DELETE FROM _bp_faiss_collections WHERE name = ?1";
            tx.execute(RECORDS, [name])
                .map_err(|e| sql_error(e, RECORDS))?;
            tx.execute(COLL, [name]).map_err(|e| sql_error(e, COLL))?;
            Ok(())
        })?;
        slots.remove(name);
        remove_file(&CollIndex::file_of(&self.folder, name))
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let conn = self.db.lock();
        records::all_collections(&conn)?
            .into_iter()
            .map(|(name, m)| {
                Ok(CollectionInfo {
                    count: records::count(&conn, &name)?,
                    name,
                    dimension: m.dimension,
                    distance: m.distance,
                })
            })
            .collect()
    }

    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let conn = self.db.lock();
        let m = meta(&conn, name)?;
        Ok(CollectionInfo {
            name: name.to_string(),
            dimension: m.dimension,
            distance: m.distance,
            count: records::count(&conn, name)?,
        })
    }

    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        const OLD: &str =
            "DELETE FROM _bp_faiss_records WHERE collection = ?1 AND id = ?2 RETURNING fid";
        const NEW: &str =
            "INSERT INTO _bp_faiss_records (collection, id, vector, document, payload) \
             VALUES (?1, ?2, ?3, ?4, ?5)";
        self.write(collection, |tx, m| {
            validate_records(records, m.dimension)?;
            let mut old = tx.prepare_cached(OLD).map_err(|e| sql_error(e, OLD))?;
            let mut new = tx.prepare_cached(NEW).map_err(|e| sql_error(e, NEW))?;
            let mut changes = Changes::default();
            let mut blob = Vec::with_capacity(m.dimension as usize * 4);
            for r in records {
                let context = |e: Error| {
                    e.context(format!(
                        "upserting record '{}' failed; nothing of this batch was written",
                        r.id
                    ))
                };
                if let Some(fid) = old
                    .query_row([collection, &r.id], |row| row.get::<_, i64>(0))
                    .optional()
                    .map_err(|e| context(sql_error(e, OLD)))?
                {
                    changes.removed.push(fid);
                }
                encode(&r.vector, &mut blob);
                new.execute(params![
                    collection,
                    r.id,
                    blob,
                    r.document,
                    payload_text(&r.payload)
                ])
                .map_err(|e| context(sql_error(e, NEW)))?;
                changes
                    .added
                    .push((tx.last_insert_rowid(), r.vector.clone()));
            }
            Ok(((), changes))
        })
    }

    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        const SQL: &str = "SELECT id, vector, document, payload FROM _bp_faiss_records \
             WHERE collection = ?1 AND id = ?2";
        let conn = self.db.lock();
        let m = meta(&conn, collection)?;
        vector_rows::get(&conn, SQL, collection, m.dimension, ids)
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        const SQL: &str =
            "DELETE FROM _bp_faiss_records WHERE collection = ?1 AND id = ?2 RETURNING fid";
        self.write(collection, |tx, _| {
            let mut stmt = tx.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
            let mut changes = Changes::default();
            for id in ids {
                if let Some(fid) = stmt
                    .query_row([collection, id], |row| row.get::<_, i64>(0))
                    .optional()
                    .map_err(|e| sql_error(e, SQL))?
                {
                    changes.removed.push(fid);
                }
            }
            Ok((changes.removed.len() as u64, changes))
        })
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.write(collection, |tx, _| {
            let fids = matching_fids(tx, collection, filter)?;
            delete_fids(tx, &fids)?;
            let n = fids.len() as u64;
            Ok((
                n,
                Changes {
                    added: Vec::new(),
                    removed: fids,
                },
            ))
        })
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        let conn = self.db.lock();
        meta(&conn, collection)?;
        match filter {
            Some(f) => Ok(matching_fids(&conn, collection, f)?.len() as u64),
            None => records::count(&conn, collection),
        }
    }

    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        self.search_one(collection, request)
    }

    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                self.search_one(collection, r)
                    .map_err(|e| e.context(format!("query {i}")))
            })
            .collect()
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        const SQL: &str = "SELECT id, vector, document, payload FROM _bp_faiss_records \
             WHERE collection = ?1 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3";
        let conn = self.db.lock();
        let m = meta(&conn, collection)?;
        vector_rows::scroll(&conn, SQL, collection, m.dimension, cursor, limit)
    }

    fn health(&self) -> Result<Health> {
        let mut h = self.db.health()?;
        let slots: Vec<Slot> = self.slots().values().cloned().collect();
        let mut indexes: Vec<String> = slots
            .iter()
            .map(|s| {
                let ix = read(s);
                format!("{}: {} ({} live)", ix.name, ix.description(), ix.live)
            })
            .collect();
        indexes.sort();
        h.detail = format!("faiss, {}; indexes [{}]", h.detail, indexes.join(", "));
        Ok(h)
    }
}

impl Drop for FaissVector {
    /// Write every changed index file, so the next open reads it instead of
    /// catching up with `records.db`.
    fn drop(&mut self) {
        let conn = self.db.lock();
        for slot in self.slots().values() {
            let mut ix = write(slot);
            if let Err(e) = ix.save(&conn) {
                log::warn!(
                    "faiss: writing the index of collection '{}' failed ({}); it is brought up to date from records.db at the next open",
                    ix.name,
                    e.message()
                );
            }
        }
    }
}
