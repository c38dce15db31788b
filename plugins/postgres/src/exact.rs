//! Exact search, the path without pgvector: every vector of the
//! collection scored in the plugin, from an in-memory copy of the
//! collection (within `search_cache_mb`) or streamed from the server when
//! the copy would not fit; then the winners' documents and payloads are
//! fetched.
//!
//! A copy is tagged with the collection's `version`, which every write
//! through the plugin bumps in its transaction, and a search reads the
//! version first, so a copy is never stale with respect to writes made
//! through Backplane by any process. Scoring in the plugin rather than in
//! SQL: PostgreSQL without pgvector has no vector arithmetic, and an
//! `unnest`-based dot product in SQL is far slower than sending the
//! vectors once and scoring a copy.

use crate::client::PooledConn;
use crate::collections::{matching_ids, payload_of, stored_vector, Meta};
use backplane_core::vector::{norm, TopK};
use backplane_core::{Result, SearchHit, SearchRequest};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// A collection's vectors copied out of the table.
struct Snapshot {
    version: i64,
    dimension: u32,
    ids: Vec<String>,
    vectors: Vec<f32>,
    norms: Vec<f32>,
}

impl Snapshot {
    fn bytes(&self) -> u64 {
        (self.vectors.len() * 4 + self.ids.iter().map(|i| i.len() + 28).sum::<usize>()) as u64
    }
}

/// The copies of one store, by collection.
#[derive(Default)]
struct Snapshots {
    by_collection: HashMap<String, Arc<Snapshot>>,
    bytes: u64,
}

/// Exact search for one store: its copies and their memory budget.
pub(crate) struct ExactSearch {
    snapshots: Mutex<Snapshots>,
    budget: u64,
}

impl ExactSearch {
    /// Copies within `budget` bytes (0: no copies, every search streams).
    pub(crate) fn new(budget: u64) -> Self {
        ExactSearch {
            snapshots: Mutex::new(Snapshots::default()),
            budget,
        }
    }

    /// The copies; emptied when a panic left the lock poisoned.
    fn snapshots(&self) -> MutexGuard<'_, Snapshots> {
        self.snapshots.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            g.by_collection.clear();
            g.bytes = 0;
            g
        })
    }

    /// Drop the copy of `collection`.
    pub(crate) fn forget(&self, collection: &str) {
        let mut s = self.snapshots();
        if let Some(old) = s.by_collection.remove(collection) {
            s.bytes -= old.bytes();
        }
    }

    /// The in-memory copy of `collection` at version `m.version`, loaded if
    /// needed; `None` when it would not fit the budget.
    fn snapshot(
        &self,
        conn: &mut PooledConn<'_>,
        collection: &str,
        m: Meta,
    ) -> Result<Option<Arc<Snapshot>>> {
        const COUNT: &str = "SELECT count(*), COALESCE(sum(length(id)), 0)::bigint FROM _bp_vec_records WHERE collection = $1";
        const LOAD: &str = "SELECT id, vector, norm FROM _bp_vec_records WHERE collection = $1";
        if self.budget == 0 {
            return Ok(None);
        }
        if let Some(s) = self.snapshots().by_collection.get(collection) {
            if s.version == m.version && s.dimension == m.dimension {
                return Ok(Some(s.clone()));
            }
        }
        self.forget(collection);
        let rows = conn.query(COUNT, &[&collection])?;
        let (count, id_bytes): (i64, i64) = (rows[0].get(0), rows[0].get(1));
        let bytes = count as u64 * (m.dimension as u64 * 4 + 28) + id_bytes as u64;
        if bytes > self.budget {
            return Ok(None);
        }
        let mut snap = Snapshot {
            version: m.version,
            dimension: m.dimension,
            ids: Vec::with_capacity(count as usize),
            vectors: Vec::with_capacity(count as usize * m.dimension as usize),
            norms: Vec::with_capacity(count as usize),
        };
        let mut buf = Vec::with_capacity(m.dimension as usize);
        for r in conn.query(LOAD, &[&collection])? {
            stored_vector(&r, 1, collection, m, &mut buf)?;
            snap.vectors.extend_from_slice(&buf);
            snap.ids.push(r.get(0));
            snap.norms.push(r.get(2));
        }
        let snap = Arc::new(snap);
        let mut s = self.snapshots();
        if s.bytes + snap.bytes() > self.budget {
            s.by_collection.clear();
            s.bytes = 0;
        }
        s.bytes += snap.bytes();
        s.by_collection.insert(collection.to_string(), snap.clone());
        Ok(Some(snap))
    }

    /// The `req.k` records nearest to the query vector, best first.
    pub(crate) fn search(
        &self,
        conn: &mut PooledConn<'_>,
        collection: &str,
        req: &SearchRequest,
        m: Meta,
    ) -> Result<Vec<SearchHit>> {
        let allowed: Option<HashSet<String>> = match &req.filter {
            Some(f) => Some(matching_ids(conn, collection, f)?.into_iter().collect()),
            None => None,
        };
        if allowed.as_ref().is_some_and(|a| a.is_empty()) {
            return Ok(Vec::new());
        }
        let q = req.vector.as_slice();
        let q_norm = norm(q);
        let mut top: TopK<String> = TopK::new(req.k);
        match self.snapshot(conn, collection, m)? {
            Some(snap) => {
                let dim = snap.dimension as usize;
                for (i, (v, &n)) in snap.vectors.chunks_exact(dim).zip(&snap.norms).enumerate() {
                    let score = m.distance.score(q, v, q_norm, n);
                    if score <= top.threshold() && top.threshold() != f32::NEG_INFINITY {
                        continue;
                    }
                    let id = &snap.ids[i];
                    if allowed.as_ref().is_some_and(|a| !a.contains(id)) {
                        continue;
                    }
                    top.push(score, id.clone());
                }
            }
            None => {
                // Streamed from the server, one reused buffer.
                const SCAN: &str =
                    "SELECT id, vector, norm FROM _bp_vec_records WHERE collection = $1";
                let mut buf = Vec::with_capacity(m.dimension as usize);
                let r = (|| -> std::result::Result<Result<()>, postgres::Error> {
                    let mut it = conn
                        .client
                        .query_raw(SCAN, [&collection as &(dyn ToSql + Sync)])?;
                    while let Some(row) = it.next()? {
                        if let Err(e) = stored_vector(&row, 1, collection, m, &mut buf) {
                            return Ok(Err(e));
                        }
                        let n: f32 = row.try_get(2)?;
                        let score = m.distance.score(q, &buf, q_norm, n);
                        if score <= top.threshold() && top.threshold() != f32::NEG_INFINITY {
                            continue;
                        }
                        let id: String = row.try_get(0)?;
                        if allowed.as_ref().is_some_and(|a| !a.contains(&id)) {
                            continue;
                        }
                        top.push(score, id);
                    }
                    Ok(Ok(()))
                })();
                match r {
                    Ok(inner) => inner?,
                    Err(e) => return Err(conn.error(&e, SCAN)),
                }
            }
        }
        let winners = top.into_sorted();
        if winners.is_empty() {
            return Ok(Vec::new());
        }
        const FETCH: &str = "SELECT id, document, payload FROM _bp_vec_records WHERE collection = $1 AND id = ANY($2)";
        let ids: Vec<&str> = winners.iter().map(|(_, id)| id.as_str()).collect();
        let mut found: HashMap<String, (Option<String>, Json)> = conn
            .query(FETCH, &[&collection, &ids])?
            .iter()
            .map(|r| (r.get(0), (r.get(1), payload_of(r.get(2)))))
            .collect();
        // A record deleted since the copy was made is left out.
        Ok(winners
            .into_iter()
            .filter_map(|(score, id)| {
                let (document, payload) = found.remove(&id)?;
                Some(SearchHit {
                    id,
                    score,
                    document,
                    payload,
                })
            })
            .collect())
    }
}
