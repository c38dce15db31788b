//! The vector capability: [`PgVector`], collections of embeddings in two
//! tables of the store's schema ([`crate::collections`]), searched with
//! pgvector's HNSW index ([`crate::pgvector`]) or exactly
//! ([`crate::exact`]).
//!
//! Raw vectors always live in `vector REAL[]`: readable with `psql`,
//! returned exactly by `get` and `scroll`, and castable to pgvector's type.
//!
//! # Which search
//!
//! At open the plugin looks for the `vector` extension: installed in the
//! database, or installable (`CREATE EXTENSION vector` succeeds). With it
//! (and `pgvector` not `"off"`), records also get an `embedding vector`
//! column, every collection a partial HNSW index on
//! `embedding::vector(<dimension>)` with the operator class of its
//! distance, and `search` is one `ORDER BY embedding <=> $q LIMIT k` query
//! that the index serves (`hnsw.ef_search` raised to `k`; pgvector 0.8's
//! iterative scan keeps filtered searches from coming back short). HNSW is
//! approximate. Without it, search is exact: the first search of a
//! collection copies its vectors into memory (within `search_cache_mb`),
//! later searches score that copy and fetch the winners' payloads. Every
//! write through the plugin bumps the collection's `version` in the same
//! transaction, and a search first reads the version (the round trip that
//! also reads the collection's dimension), so a copy is never stale with
//! respect to writes made through Backplane, from any process. A collection
//! over the budget is streamed from the server on each search. `health()`
//! says which path the store uses, and why.
//!
//! Filters are translated to SQL over `payload` ([`crate::filter`]); the
//! rare key core's evaluator must handle is evaluated by the plugin.

use crate::client::{in_transaction, Pool, PooledConn};
use crate::collections::{
    matching_ids, meta, meta_for_write, parse_distance, payload_condition, record_of,
    stored_payload, unknown, with_collection, MAX_DIMENSION, SCHEMA,
};
use crate::config::PgvectorMode;
use crate::exact::ExactSearch;
use crate::pgvector::{self, Pgvector};
use backplane_core::kit::page::{check_limit, fetch_count, page_of};
use backplane_core::vector::{norm, validate_collection_name, validate_records, validate_vector};
use backplane_core::{
    CollectionInfo, Distance, Error, Filter, Health, Result, ScrollPage, SearchHit, SearchRequest,
    Vector, VectorRecord,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A vector store on PostgreSQL.
pub(crate) struct PgVector {
    pool: Arc<Pool>,
    pgvector: Option<Pgvector>,
    /// Why the exact path is used, for `health()`.
    exact_reason: String,
    /// Whether `_bp_vec_records` has an `embedding` column (to be cleared
    /// by writes on the exact path).
    has_embedding: bool,
    /// The exact path's copies of searched collections.
    exact: ExactSearch,
}

impl PgVector {
    /// Create the tables if missing and choose the search path.
    pub(crate) fn open(pool: Arc<Pool>) -> Result<Self> {
        let mode = pool.settings().pgvector;
        let budget = pool.settings().search_cache_bytes;
        let mut conn = pool.get()?;
        let key = format!("{}._bp_vec", pool.schema());
        let schema = pool.schema().to_string();
        let (pgvector, exact_reason, has_embedding) = in_transaction(
            &mut conn,
            "creating the vector tables",
            |conn| {
                conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&key])?;
                conn.batch(SCHEMA)?;
                let (pgvector, reason) = match mode {
                    PgvectorMode::Off => (
                        None,
                        "pgvector = \"off\" in the store's section".to_string(),
                    ),
                    _ => pgvector::detect(conn)?,
                };
                if pgvector.is_none() && mode == PgvectorMode::Require {
                    return Err(Error::config(format!(
                        "pgvector = \"require\", but the extension cannot be used: {reason}. \
                         Install pgvector on the server (or have an administrator run CREATE EXTENSION vector), \
                         or set pgvector = \"auto\""
                    )));
                }
                if let Some(pv) = &pgvector {
                    pv.prepare(conn)?;
                }
                const COLUMN: &str =
                    "SELECT 1 FROM information_schema.columns WHERE table_schema = $1 \
                     AND table_name = '_bp_vec_records' AND column_name = 'embedding'";
                let has_embedding = !conn.query(COLUMN, &[&schema])?.is_empty();
                Ok((pgvector, reason, has_embedding))
            },
        )?;
        drop(conn);
        match &pgvector {
            Some(pv) => log::info!(
                "postgres: vector store in schema '{}' searches with pgvector {} (HNSW)",
                pool.schema(),
                pv.version
            ),
            None => log::info!(
                "postgres: vector store in schema '{}' searches exactly: {exact_reason}",
                pool.schema()
            ),
        }
        Ok(PgVector {
            pool,
            pgvector,
            exact_reason,
            has_embedding,
            exact: ExactSearch::new(budget),
        })
    }

    /// Search on `conn`: the collection's facts first (its version and
    /// dimension), then the store's path.
    fn search_on(
        &self,
        conn: &mut PooledConn<'_>,
        collection: &str,
        req: &SearchRequest,
    ) -> Result<Vec<SearchHit>> {
        let m = meta(conn, collection)?;
        validate_vector(&req.vector, m.dimension, "the query vector")?;
        if req.k == 0 {
            return Ok(Vec::new());
        }
        match &self.pgvector {
            Some(pv) => pv.search(conn, collection, req, m),
            None => self.exact.search(conn, collection, req, m),
        }
    }
}

impl Vector for PgVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        const SQL: &str =
            "INSERT INTO _bp_vec_collections (name, dimension, distance) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING";
        validate_collection_name(name)?;
        if dimension == 0 || dimension > MAX_DIMENSION {
            return Err(Error::invalid(format!(
                "dimension {dimension} is out of range: give the embedding size, 1 to {MAX_DIMENSION}"
            )));
        }
        self.exact.forget(name);
        let mut conn = self.pool.get()?;
        in_transaction(&mut conn, "create_collection", |conn| {
            if conn.execute(SQL, &[&name, &(dimension as i32), &distance.as_str()])? == 0 {
                let m = meta(conn, name)?;
                return Err(backplane_core::vector::collection_exists(
                    name,
                    &backplane_core::vector::described(m.dimension, m.distance),
                ));
            }
            if let Some(pv) = &self.pgvector {
                pv.create_index(conn, name, dimension, distance)?;
            }
            Ok(())
        })
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        const SQL: &str = "DELETE FROM _bp_vec_collections WHERE name = $1";
        self.exact.forget(name);
        let mut conn = self.pool.get()?;
        in_transaction(&mut conn, "drop_collection", |conn| {
            if conn.execute(SQL, &[&name])? == 0 {
                return Err(unknown(name));
            }
            if self.pgvector.is_some() {
                pgvector::drop_index(conn, name)?;
            }
            Ok(())
        })
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        const SQL: &str = "SELECT c.name, c.dimension, c.distance, \
             (SELECT count(*) FROM _bp_vec_records r WHERE r.collection = c.name) \
             FROM _bp_vec_collections c ORDER BY c.name";
        let rows = self.pool.get()?.query(SQL, &[])?;
        rows.iter()
            .map(|r| {
                let name: String = r.get(0);
                Ok(CollectionInfo {
                    distance: parse_distance(&name, r.get(2))?,
                    dimension: r.get::<_, i32>(1) as u32,
                    count: r.get::<_, i64>(3) as u64,
                    name,
                })
            })
            .collect()
    }

    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        const SQL: &str = "SELECT count(*) FROM _bp_vec_records WHERE collection = $1";
        let mut conn = self.pool.get()?;
        let m = meta(&mut conn, name)?;
        let count: i64 = conn.query(SQL, &[&name])?[0].get(0);
        Ok(CollectionInfo {
            name: name.to_string(),
            dimension: m.dimension,
            distance: m.distance,
            count: count as u64,
        })
    }

    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        // With pgvector the `embedding` column is written with the vector;
        // without it, a stale embedding left by an earlier pgvector run is
        // cleared (the next pgvector open fills it again).
        let (col, val, set) = match &self.pgvector {
            Some(pv) => (
                ", embedding".to_string(),
                format!(", $3::real[]::{}", pv.vector_type()),
                ", embedding = excluded.embedding",
            ),
            None if self.has_embedding => (String::new(), String::new(), ", embedding = NULL"),
            None => (String::new(), String::new(), ""),
        };
        let sql = format!(
            "INSERT INTO _bp_vec_records (collection, id, vector, norm, document, payload{col}) \
             VALUES ($1, $2, $3, $4, $5, $6{val}) \
             ON CONFLICT (collection, id) DO UPDATE SET vector = excluded.vector, norm = excluded.norm, \
             document = excluded.document, payload = excluded.payload{set}"
        );
        let mut conn = self.pool.get()?;
        in_transaction(&mut conn, "upsert", |conn| {
            let m = meta_for_write(conn, collection)?;
            validate_records(records, m.dimension)?;
            for r in records {
                let n = norm(&r.vector);
                conn.execute(
                    &sql,
                    &[
                        &collection,
                        &r.id,
                        &r.vector,
                        &n,
                        &r.document,
                        &stored_payload(&r.payload),
                    ],
                )
                .map_err(|e| {
                    e.context(format!(
                        "upserting record '{}' failed; nothing of this batch was written",
                        r.id
                    ))
                })?;
            }
            Ok(())
        })?;
        self.exact.forget(collection);
        Ok(())
    }

    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        const SQL: &str = "SELECT id, vector, document, payload FROM _bp_vec_records \
             WHERE collection = $1 AND id = ANY($2)";
        let mut conn = self.pool.get()?;
        let m = meta(&mut conn, collection)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut by_id: HashMap<String, VectorRecord> = HashMap::new();
        for r in conn.query(SQL, &[&collection, &ids])? {
            let record = record_of(&r, collection, m)?;
            by_id.insert(record.id.clone(), record);
        }
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        const SQL: &str = "DELETE FROM _bp_vec_records WHERE collection = $1 AND id = ANY($2)";
        let mut conn = self.pool.get()?;
        let n = in_transaction(&mut conn, "delete", |conn| {
            meta_for_write(conn, collection)?;
            conn.execute(SQL, &[&collection, &ids])
        })?;
        self.exact.forget(collection);
        Ok(n)
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        const BY_ID: &str = "DELETE FROM _bp_vec_records WHERE collection = $1 AND id = ANY($2)";
        let mut conn = self.pool.get()?;
        let n = in_transaction(&mut conn, "delete_where", |conn| {
            meta_for_write(conn, collection)?;
            match payload_condition(filter) {
                Some(t) => {
                    let sql = format!(
                        "DELETE FROM _bp_vec_records WHERE collection = $1 AND ({})",
                        t.sql
                    );
                    conn.execute(&sql, &with_collection(&collection, &t))
                }
                None => {
                    let ids = matching_ids(conn, collection, filter)?;
                    conn.execute(BY_ID, &[&collection, &ids])
                }
            }
        })?;
        self.exact.forget(collection);
        Ok(n)
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        const SQL: &str = "SELECT count(*) FROM _bp_vec_records WHERE collection = $1";
        let mut conn = self.pool.get()?;
        meta(&mut conn, collection)?;
        match filter {
            None => Ok(conn.query(SQL, &[&collection])?[0].get::<_, i64>(0) as u64),
            Some(f) => match payload_condition(f) {
                Some(t) => {
                    let sql = format!("{SQL} AND ({})", t.sql);
                    let rows = conn.query(&sql, &with_collection(&collection, &t))?;
                    Ok(rows[0].get::<_, i64>(0) as u64)
                }
                None => Ok(matching_ids(&mut conn, collection, f)?.len() as u64),
            },
        }
    }

    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let mut conn = self.pool.get()?;
        self.search_on(&mut conn, collection, request)
    }

    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        let mut conn = self.pool.get()?;
        requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                self.search_on(&mut conn, collection, r)
                    .map_err(|e| e.context(format!("query {i}")))
            })
            .collect()
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        const SQL: &str = "SELECT id, vector, document, payload FROM _bp_vec_records \
             WHERE collection = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3";
        check_limit(limit, "scroll", "record")?;
        let mut conn = self.pool.get()?;
        let m = meta(&mut conn, collection)?;
        let rows = conn.query(SQL, &[&collection, &cursor, &fetch_count(limit)])?;
        let records = rows
            .iter()
            .map(|r| record_of(r, collection, m))
            .collect::<Result<Vec<_>>>()?;
        let page = page_of(records, limit, |r| &r.id);
        Ok(ScrollPage {
            records: page.items,
            next_cursor: page.next_cursor,
        })
    }

    fn health(&self) -> Result<Health> {
        let extra = match &self.pgvector {
            Some(pv) => format!(
                ", vector search: pgvector {} (HNSW index per collection)",
                pv.version
            ),
            None => format!(", vector search: exact ({})", self.exact_reason),
        };
        self.pool.health(&extra)
    }
}
