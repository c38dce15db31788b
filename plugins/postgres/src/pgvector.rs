//! pgvector, when the server has it: finding (or creating) the `vector`
//! extension at open, the `embedding vector` column and one partial HNSW
//! index per collection (on `embedding::vector(<dimension>)`, with its
//! distance's operator class), and search as one `ORDER BY embedding <=>
//! $q LIMIT k` query the index serves (`hnsw.ef_search` raised to `k`;
//! from pgvector 0.8, iterative scans keep filtered searches from coming
//! back short). HNSW is approximate.

use crate::bind::Bind;
use crate::client::{in_transaction, PooledConn};
use crate::collections::{parse_distance, payload_condition, payload_of, Meta};
use crate::error::error_text;
use crate::filter::{refs, Param};
use backplane_core::kit::sql::{quote_ident, quote_literal};
use backplane_core::{Distance, Result, SearchHit, SearchRequest, ValueRef};
use postgres::types::ToSql;

/// The largest dimension pgvector's HNSW index takes for `vector`.
const HNSW_MAX_DIMENSION: u32 = 2_000;

/// pgvector, when the store uses it.
#[derive(Clone, Debug)]
pub(crate) struct Pgvector {
    /// The extension's version.
    pub(crate) version: String,
    /// The quoted schema it lives in, for qualified names.
    schema: String,
    /// Whether it has iterative index scans (0.8 and later).
    iterative: bool,
}

impl Pgvector {
    /// pgvector's type, qualified: `"public".vector`.
    pub(crate) fn vector_type(&self) -> String {
        format!("{}.vector", self.schema)
    }

    /// The type of a collection's vectors: `"public".vector(384)`.
    fn ty(&self, dimension: u32) -> String {
        format!("{}.vector({dimension})", self.schema)
    }

    /// The distance operator, qualified.
    fn op(&self, d: Distance) -> String {
        let op = match d {
            Distance::Cosine => "<=>",
            Distance::Dot => "<#>",
            Distance::Euclidean => "<->",
        };
        format!("OPERATOR({}.{op})", self.schema)
    }

    /// The HNSW operator class of a distance.
    fn opclass(&self, d: Distance) -> &'static str {
        match d {
            Distance::Cosine => "vector_cosine_ops",
            Distance::Dot => "vector_ip_ops",
            Distance::Euclidean => "vector_l2_ops",
        }
    }

    /// The `req.k` records nearest to the query vector, best first, as
    /// the collection's index finds them.
    pub(crate) fn search(
        &self,
        conn: &mut PooledConn<'_>,
        collection: &str,
        req: &SearchRequest,
        m: Meta,
    ) -> Result<Vec<SearchHit>> {
        let ty = self.ty(m.dimension);
        let op = self.op(m.distance);
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
            Some(f) => match payload_condition(f) {
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
        let q = Bind(ValueRef::Text(&q_text));
        let mut all: Vec<&(dyn ToSql + Sync)> = vec![&q];
        all.extend(refs(&params));
        let ef = req.k.clamp(40, 1000);
        let iterative = self.iterative && req.filter.is_some();
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

    /// The `embedding` column, filled for records written without it, and
    /// an HNSW index per collection.
    pub(crate) fn prepare(&self, conn: &mut PooledConn<'_>) -> Result<()> {
        conn.batch(&format!(
            "ALTER TABLE _bp_vec_records ADD COLUMN IF NOT EXISTS embedding {}",
            self.vector_type()
        ))?;
        conn.batch(&format!(
            "UPDATE _bp_vec_records SET embedding = vector::{} WHERE embedding IS NULL",
            self.vector_type()
        ))?;
        let rows = conn.query(
            "SELECT name, dimension, distance FROM _bp_vec_collections",
            &[],
        )?;
        for r in rows {
            let name: String = r.get(0);
            let distance = parse_distance(&name, r.get(2))?;
            self.create_index(conn, &name, r.get::<_, i32>(1) as u32, distance)?;
        }
        Ok(())
    }

    /// The HNSW index of collection `name`; none (and a warning) over
    /// [`HNSW_MAX_DIMENSION`] dimensions.
    pub(crate) fn create_index(
        &self,
        conn: &mut PooledConn<'_>,
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
            self.ty(dimension),
            self.opclass(distance),
            quote_literal(name)
        ))
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

/// Drop the HNSW index of collection `name`, if it has one.
pub(crate) fn drop_index(conn: &mut PooledConn<'_>, name: &str) -> Result<()> {
    conn.batch(&format!(
        "DROP INDEX IF EXISTS {}",
        quote_ident(&index_name(name))
    ))
}

/// Find pgvector: installed in the database, or installable now.
pub(crate) fn detect(conn: &mut PooledConn<'_>) -> Result<(Option<Pgvector>, String)> {
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
                why = error_text(&e);
            }
        }
    }
    Ok((
        None,
        format!("CREATE EXTENSION vector failed ({why}); an administrator can run it once"),
    ))
}

/// Whether version `v` (`0.8.0`) is at least `major.minor`.
fn version_at_least(v: &str, major: u32, minor: u32) -> bool {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}
