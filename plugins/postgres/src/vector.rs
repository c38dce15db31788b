//! The vector capability: collections of embeddings in two tables of the
//! store's schema, searched exactly or with pgvector's HNSW index.
//!
//! ```sql
//! _bp_vec_collections(name TEXT COLLATE "C" PRIMARY KEY, dimension INT, distance TEXT, version BIGINT)
//! _bp_vec_records(collection → collections ON DELETE CASCADE, id TEXT COLLATE "C",
//!                 vector REAL[], norm REAL, document TEXT, payload JSONB,
//!                 [embedding vector,]  -- with pgvector only
//!                 PRIMARY KEY (collection, id))
//! ```
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

use crate::config::PgvectorMode;
use crate::filter::{refs, translate, Param};
use crate::pool::{Pool, PooledConn};
use crate::relational::{health, in_transaction};
use crate::sql::{quote_ident, quote_literal};
use crate::types::{Bind, Raw, Reader};
use backplane_core::kit::page::{check_limit, fetch_count, page_of};
use backplane_core::vector::{
    norm, validate_collection_name, validate_records, validate_vector, TopK,
};
use backplane_core::{
    CollectionInfo, Distance, Error, Filter, Health, Result, ScrollPage, SearchHit, SearchRequest,
    Vector, VectorRecord,
};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// The largest dimension accepted.
const MAX_DIMENSION: u32 = 65_536;
/// The largest dimension pgvector's HNSW index takes for `vector`.
const HNSW_MAX_DIMENSION: u32 = 2_000;

const SCHEMA: &str = r#"
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

/// pgvector, when the store uses it.
#[derive(Clone, Debug)]
struct Pgvector {
    /// The extension's version.
    version: String,
    /// The quoted schema it lives in, for qualified names.
    schema: String,
    /// Whether it has iterative index scans (0.8 and later).
    iterative: bool,
}

impl Pgvector {
    fn ty(&self, dimension: u32) -> String {
        format!("{}.vector({dimension})", self.schema)
    }
    fn op(&self, d: Distance) -> String {
        let op = match d {
            Distance::Cosine => "<=>",
            Distance::Dot => "<#>",
            Distance::Euclidean => "<->",
        };
        format!("OPERATOR({}.{op})", self.schema)
    }
    fn opclass(&self, d: Distance) -> &'static str {
        match d {
            Distance::Cosine => "vector_cosine_ops",
            Distance::Dot => "vector_ip_ops",
            Distance::Euclidean => "vector_l2_ops",
        }
    }
}

/// The index of collection `name` (a hash keeps it within 63 bytes).
fn index_name(name: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("_bp_vec_hnsw_{h:016x}")
}

#[derive(Clone, Copy)]
struct Meta {
    dimension: u32,
    distance: Distance,
    version: i64,
}

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

#[derive(Default)]
struct Snapshots {
    by_collection: HashMap<String, Arc<Snapshot>>,
    bytes: u64,
}

/// A vector store on PostgreSQL.
pub struct PgVector {
    pool: Arc<Pool>,
    pgvector: Option<Pgvector>,
    /// Why the exact path is used, for `health()`.
    exact_reason: String,
    /// Whether `_bp_vec_records` has an `embedding` column (to be cleared
    /// by writes on the exact path).
    has_embedding: bool,
    snapshots: Mutex<Snapshots>,
    budget: u64,
}

fn parse_distance(name: &str, d: &str) -> Result<Distance> {
    Distance::parse(d).map_err(|_| {
        Error::backend(format!(
            "collection '{name}' has an unknown distance '{d}' in _bp_vec_collections"
        ))
    })
}

fn unknown(collection: &str) -> Error {
    Error::not_found(format!(
        "collection '{collection}' does not exist: create it with create_collection(\"{collection}\", dimension, distance)"
    ))
}

/// Read a `real[]` value into `out`.
fn read_f32_array(raw: &[u8], out: &mut Vec<f32>) -> Result<()> {
    let bad = || {
        Error::backend("a stored vector is not a one-dimensional real[]: it was written by something other than this plugin")
    };
    out.clear();
    let mut r = Reader(raw);
    let ndim = r.i32().map_err(|_| bad())?;
    if ndim == 0 {
        return Ok(());
    }
    let _flags = r.i32().map_err(|_| bad())?;
    let _oid = r.i32().map_err(|_| bad())?;
    if ndim != 1 {
        return Err(bad());
    }
    let len = r.i32().map_err(|_| bad())?.max(0) as usize;
    let _lower = r.i32().map_err(|_| bad())?;
    out.reserve(len);
    for _ in 0..len {
        let n = r.i32().map_err(|_| bad())?;
        if n != 4 {
            return Err(bad());
        }
        let b = r.take(4).map_err(|_| bad())?;
        out.push(f32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    }
    Ok(())
}

fn vector_of(row: &postgres::Row, i: usize, out: &mut Vec<f32>) -> Result<()> {
    let raw: Raw<'_> = row
        .try_get(i)
        .map_err(|e| Error::backend(format!("reading a vector: {e}")))?;
    match raw.bytes {
        Some(b) => read_f32_array(b, out),
        None => Err(Error::backend("a stored vector is NULL")),
    }
}

fn check_dimension(collection: &str, got: usize, m: Meta) -> Result<()> {
    if got != m.dimension as usize {
        return Err(Error::backend(format!(
            "a vector in collection '{collection}' has {got} components but the collection has {} dimensions: \
             the row was written by something other than this plugin",
            m.dimension
        )));
    }
    Ok(())
}

fn meta_opt(conn: &mut PooledConn<'_>, collection: &str) -> Result<Option<Meta>> {
    const SQL: &str =
        "SELECT dimension, distance, version FROM _bp_vec_collections WHERE name = $1";
    let rows = conn.query(SQL, &[&collection])?;
    let Some(r) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(Meta {
        dimension: r.get::<_, i32>(0) as u32,
        distance: parse_distance(collection, r.get(1))?,
        version: r.get(2),
    }))
}

fn meta(conn: &mut PooledConn<'_>, collection: &str) -> Result<Meta> {
    meta_opt(conn, collection)?.ok_or_else(|| unknown(collection))
}

/// Lock the collection's row for a write and bump its version.
fn meta_for_write(conn: &mut PooledConn<'_>, collection: &str) -> Result<Meta> {
    const SQL: &str = "UPDATE _bp_vec_collections SET version = version + 1 WHERE name = $1 \
         RETURNING dimension, distance, version";
    let rows = conn.query(SQL, &[&collection])?;
    let r = rows.first().ok_or_else(|| unknown(collection))?;
    Ok(Meta {
        dimension: r.get::<_, i32>(0) as u32,
        distance: parse_distance(collection, r.get(1))?,
        version: r.get(2),
    })
}

fn payload_of(p: Option<Json>) -> Json {
    p.unwrap_or(Json::Null)
}

/// The payload as stored: SQL NULL for a null payload.
fn stored_payload(p: &Json) -> Option<&Json> {
    (!p.is_null()).then_some(p)
}

/// Which records pass `filter`: SQL where it translates, else core's
/// evaluator over every payload. Returns the passing ids.
fn matching_ids(
    conn: &mut PooledConn<'_>,
    collection: &str,
    filter: &Filter,
) -> Result<Vec<String>> {
    match translate(filter, "payload", 2) {
        Some(t) => {
            let sql = format!(
                "SELECT id FROM _bp_vec_records WHERE collection = $1 AND ({})",
                t.sql
            );
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&collection];
            params.extend(refs(&t.params));
            Ok(conn
                .query(&sql, &params)?
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

impl PgVector {
    /// Create the tables if missing and choose the search path.
    pub fn open(pool: Arc<Pool>) -> Result<Self> {
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
                    _ => detect_pgvector(conn)?,
                };
                if pgvector.is_none() && mode == PgvectorMode::Require {
                    return Err(Error::config(format!(
                        "pgvector = \"require\", but the extension cannot be used: {reason}. \
                         Install pgvector on the server (or have an administrator run CREATE EXTENSION vector), \
                         or set pgvector = \"auto\""
                    )));
                }
                if let Some(pv) = &pgvector {
                    prepare_pgvector(conn, pv)?;
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
            snapshots: Mutex::new(Snapshots::default()),
            budget,
        })
    }

    /// Whether searches use pgvector.
    pub fn uses_pgvector(&self) -> bool {
        self.pgvector.is_some()
    }

    fn snapshots(&self) -> MutexGuard<'_, Snapshots> {
        self.snapshots.lock().unwrap_or_else(|p| {
            let mut g = p.into_inner();
            g.by_collection.clear();
            g.bytes = 0;
            g
        })
    }

    fn forget(&self, collection: &str) {
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
            vector_of(&r, 1, &mut buf)?;
            check_dimension(collection, buf.len(), m)?;
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

    fn search_exact(
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
                        if let Err(e) = vector_of(&row, 1, &mut buf)
                            .and_then(|()| check_dimension(collection, buf.len(), m))
                        {
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

    fn search_pgvector(
        &self,
        conn: &mut PooledConn<'_>,
        pv: &Pgvector,
        collection: &str,
        req: &SearchRequest,
        m: Meta,
    ) -> Result<Vec<SearchHit>> {
        let ty = pv.ty(m.dimension);
        let op = pv.op(m.distance);
        let q_text = format!(
            "[{}]",
            req.vector
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        // The collection is written into the SQL (names are plain
        // letters, digits, '_' and '-') so the planner can match the
        // collection's partial index.
        let mut params: Vec<Param> = Vec::new();
        let (cond, in_rust) = match &req.filter {
            None => (String::new(), false),
            Some(f) => match translate(f, "payload", 2) {
                Some(t) => {
                    params = t.params;
                    (format!(" AND ({})", t.sql), false)
                }
                None => (String::new(), true),
            },
        };
        let k = if in_rust {
            i64::MAX
        } else {
            req.k.min(i64::MAX as usize) as i64
        };
        let sql = format!(
            "SELECT id, document, payload, embedding::{ty} {op} $1::{ty} AS dist FROM _bp_vec_records \
             WHERE collection = {lit}{cond} ORDER BY embedding::{ty} {op} $1::{ty} LIMIT {k}",
            lit = quote_literal(collection)
        );
        let q = Bind(backplane_core::ValueRef::Text(&q_text));
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&q];
        all.extend(refs(&params));
        let ef = req.k.clamp(40, 1000);
        let iterative = pv.iterative && req.filter.is_some();
        let distance = m.distance;
        let filter = req.filter.clone();
        let want = req.k;
        in_transaction(conn, "search", |conn| {
            conn.batch(&format!(
                "SET LOCAL hnsw.ef_search = {ef}{}",
                if iterative {
                    "; SET LOCAL hnsw.iterative_scan = strict_order"
                } else {
                    ""
                }
            ))?;
            let mut hits = Vec::new();
            for r in conn.query(&sql, &all)? {
                let payload = payload_of(r.get(2));
                if in_rust && !filter.as_ref().is_some_and(|f| f.matches(&payload)) {
                    continue;
                }
                let dist: f64 = r.get(3);
                let score = match distance {
                    Distance::Cosine => 1.0 - dist,
                    Distance::Dot | Distance::Euclidean => -dist,
                } as f32;
                hits.push(SearchHit {
                    id: r.get(0),
                    score,
                    document: r.get(1),
                    payload,
                });
                if hits.len() >= want {
                    break;
                }
            }
            Ok(hits)
        })
    }

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
            Some(pv) => self.search_pgvector(conn, pv, collection, req, m),
            None => self.search_exact(conn, collection, req, m),
        }
    }
}

/// Find pgvector: installed in the database, or installable now.
fn detect_pgvector(conn: &mut PooledConn<'_>) -> Result<(Option<Pgvector>, String)> {
    const INSTALLED: &str = "SELECT extversion, quote_ident(n.nspname) FROM pg_extension e \
         JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'";
    const AVAILABLE: &str =
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'";
    let found = |conn: &mut PooledConn<'_>| -> Result<Option<Pgvector>> {
        Ok(conn.query(INSTALLED, &[])?.first().map(|r| {
            let version: String = r.get(0);
            let iterative = version_at_least(&version, 0, 8);
            Pgvector {
                version,
                schema: r.get(1),
                iterative,
            }
        }))
    };
    if let Some(pv) = found(conn)? {
        return Ok((Some(pv), String::new()));
    }
    if conn.query(AVAILABLE, &[])?.is_empty() {
        return Ok((
            None,
            "the pgvector extension is not installed on the server (no 'vector' in pg_available_extensions)".into(),
        ));
    }
    // Installable: try, one store of the database at a time, inside a
    // savepoint so a refusal leaves the transaction usable. The extension
    // goes to `public` (where every schema's search path finds it) when
    // the user may create objects there, else to the store's schema.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('backplane.pgvector'))",
        &[],
    )?;
    if let Some(pv) = found(conn)? {
        return Ok((Some(pv), String::new()));
    }
    let mut why = String::new();
    for create in [
        "CREATE EXTENSION IF NOT EXISTS vector SCHEMA public",
        "CREATE EXTENSION IF NOT EXISTS vector",
    ] {
        conn.batch("SAVEPOINT bp_pgvector")?;
        match conn.client.batch_execute(create) {
            Ok(()) => {
                conn.batch("RELEASE SAVEPOINT bp_pgvector")?;
                if let Some(pv) = found(conn)? {
                    log::info!(
                        "postgres: created extension vector {} in {}",
                        pv.version,
                        pv.schema
                    );
                    return Ok((Some(pv), String::new()));
                }
            }
            Err(e) => {
                conn.batch("ROLLBACK TO SAVEPOINT bp_pgvector")?;
                why = crate::pool::error_text(&e);
            }
        }
    }
    Ok((
        None,
        format!("CREATE EXTENSION vector failed ({why}); an administrator can run it once"),
    ))
}

fn version_at_least(v: &str, major: u32, minor: u32) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The `embedding` column, filled for records written without it, and an
/// HNSW index per collection.
fn prepare_pgvector(conn: &mut PooledConn<'_>, pv: &Pgvector) -> Result<()> {
    conn.batch(&format!(
        "ALTER TABLE _bp_vec_records ADD COLUMN IF NOT EXISTS embedding {}.vector",
        pv.schema
    ))?;
    conn.batch(&format!(
        "UPDATE _bp_vec_records SET embedding = vector::{}.vector WHERE embedding IS NULL",
        pv.schema
    ))?;
    let rows = conn.query(
        "SELECT name, dimension, distance FROM _bp_vec_collections",
        &[],
    )?;
    for r in rows {
        let name: String = r.get(0);
        let distance = parse_distance(&name, r.get(2))?;
        create_index(conn, pv, &name, r.get::<_, i32>(1) as u32, distance)?;
    }
    Ok(())
}

fn create_index(
    conn: &mut PooledConn<'_>,
    pv: &Pgvector,
    name: &str,
    dimension: u32,
    distance: Distance,
) -> Result<()> {
    if dimension > HNSW_MAX_DIMENSION {
        log::warn!(
            "postgres: collection '{name}' has {dimension} dimensions, more than pgvector's HNSW index takes ({HNSW_MAX_DIMENSION}); its searches scan the table"
        );
        return Ok(());
    }
    conn.batch(&format!(
        "CREATE INDEX IF NOT EXISTS {} ON _bp_vec_records USING hnsw ((embedding::{}) {}) WHERE collection = {}",
        quote_ident(&index_name(name)),
        pv.ty(dimension),
        pv.opclass(distance),
        quote_literal(name)
    ))
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
        self.forget(name);
        let mut conn = self.pool.get()?;
        in_transaction(&mut conn, "create_collection", |conn| {
            if conn.execute(SQL, &[&name, &(dimension as i32), &distance.as_str()])? == 0 {
                let m = meta(conn, name)?;
                return Err(Error::already_exists(format!(
                    "collection '{name}' exists already ({} dims, {}): use it, or drop it first",
                    m.dimension,
                    m.distance.as_str()
                )));
            }
            if let Some(pv) = &self.pgvector {
                create_index(conn, pv, name, dimension, distance)?;
            }
            Ok(())
        })
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        const SQL: &str = "DELETE FROM _bp_vec_collections WHERE name = $1";
        self.forget(name);
        let mut conn = self.pool.get()?;
        in_transaction(&mut conn, "drop_collection", |conn| {
            if conn.execute(SQL, &[&name])? == 0 {
                return Err(unknown(name));
            }
            if self.pgvector.is_some() {
                conn.batch(&format!(
                    "DROP INDEX IF EXISTS {}",
                    quote_ident(&index_name(name))
                ))?;
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
                format!(", $3::real[]::{}.vector", pv.schema),
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
        self.forget(collection);
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
            let mut vector = Vec::new();
            vector_of(&r, 1, &mut vector)?;
            check_dimension(collection, vector.len(), m)?;
            let id: String = r.get(0);
            by_id.insert(
                id.clone(),
                VectorRecord {
                    id,
                    vector,
                    document: r.get(2),
                    payload: payload_of(r.get(3)),
                },
            );
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
        self.forget(collection);
        Ok(n)
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        const BY_ID: &str = "DELETE FROM _bp_vec_records WHERE collection = $1 AND id = ANY($2)";
        let mut conn = self.pool.get()?;
        let n = in_transaction(&mut conn, "delete_where", |conn| {
            meta_for_write(conn, collection)?;
            match translate(filter, "payload", 2) {
                Some(t) => {
                    let sql = format!(
                        "DELETE FROM _bp_vec_records WHERE collection = $1 AND ({})",
                        t.sql
                    );
                    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&collection];
                    params.extend(refs(&t.params));
                    conn.execute(&sql, &params)
                }
                None => {
                    let ids = matching_ids(conn, collection, filter)?;
                    conn.execute(BY_ID, &[&collection, &ids])
                }
            }
        })?;
        self.forget(collection);
        Ok(n)
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        const SQL: &str = "SELECT count(*) FROM _bp_vec_records WHERE collection = $1";
        let mut conn = self.pool.get()?;
        meta(&mut conn, collection)?;
        match filter {
            None => Ok(conn.query(SQL, &[&collection])?[0].get::<_, i64>(0) as u64),
            Some(f) => match translate(f, "payload", 2) {
                Some(t) => {
                    let sql = format!("{SQL} AND ({})", t.sql);
                    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&collection];
                    params.extend(refs(&t.params));
                    Ok(conn.query(&sql, &params)?[0].get::<_, i64>(0) as u64)
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
        let mut records = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut vector = Vec::new();
            vector_of(r, 1, &mut vector)?;
            check_dimension(collection, vector.len(), m)?;
            records.push(VectorRecord {
                id: r.get(0),
                vector,
                document: r.get(2),
                payload: payload_of(r.get(3)),
            });
        }
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
        health(&self.pool, &extra)
    }
}
