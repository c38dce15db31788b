//! Backplane's benchmark: the same work through the host and directly on
//! the backend's own crate, in one run, reported as medians and ratios.
//!
//! ```text
//! cargo build --release && cargo bench -p backplane-behavior
//! cargo bench -p backplane-behavior -- relational     # one group
//! BENCH_ROUNDS=7 cargo bench -p backplane-behavior    # more rounds
//! ```
//!
//! The words after `--` pick groups: a group runs when its name contains
//! one of them (none: every group).
//!
//! One file per group, each with its own description, on one harness:
//! - `harness.rs`: the seeded RNG, medians and ratios, the round loop
//!   (`interleaved`) and the result table, `BENCH_*` settings, where files
//!   go, how a `Storage` is opened, and the search pieces `vector`,
//!   `faiss` and `qdrant` share (the vectors, ground truth, timed
//!   searches, recall, latency).
//! - `relational.rs`: 100k inserts and 100k point selects, the sqlite
//!   plugin vs rusqlite (and the plugin's engine without the boundary).
//! - `duckdb.rs`: 100k inserts, 100k point selects and a GROUP BY over 1M
//!   rows, the duckdb plugin vs the duckdb crate, the sqlite plugin beside
//!   (`BENCH_DUCKDB_ROWS`).
//! - `redis.rs`: SET+GET pairs and conversation messages, the redis plugin
//!   vs the redis crate (`BACKPLANE_REDIS_URL`; `BENCH_REDIS_ROUNDS`,
//!   default 1).
//! - `postgres.rs`: inserts, point selects and 3-hop graph neighbourhoods,
//!   the postgres plugin vs the `postgres` crate (`BACKPLANE_POSTGRES_URL`;
//!   `BENCH_PG_ROUNDS`, default 3).
//! - `vector.rs`: 100k 384-dimension vectors, 1k top-10 cosine queries,
//!   the sqlite, memory and qdrant-edge plugins vs qdrant-edge called
//!   directly and a plain exact scan (`BENCH_VECTORS`,
//!   `BENCH_VECTOR_LOAD_ROUNDS`, `BENCH_HNSW_*`, `BENCH_VECTOR_EXACT`,
//!   `BENCH_VECTOR_DATA`).
//! - `faiss.rs`: the same vectors on the faiss plugin at each index type
//!   (flat, HNSW, IVF) vs FAISS called directly.
//! - `qdrant.rs`: the same vectors on a Qdrant server, the qdrant plugin vs
//!   qdrant-client (`BACKPLANE_QDRANT_URL`).
//! - `layers.rs`: what the operations layers cost when nothing fails:
//!   SQLite point selects and Redis SET+GET with no layers vs metrics +
//!   tracing + retry, with and without a timeout, on both APIs.
//! - `migrate.rs`: a 1M-row table SQLite -> PostgreSQL against rusqlite +
//!   binary COPY, 100k vectors qdrant-edge -> sqlite and -> postgres
//!   against the target's own upsert, and the command's peak memory
//!   (`BENCH_MIGRATE_ROWS`, `BENCH_MIGRATE_ROUNDS`).
//! - `soak.rs`: 20 minutes of mixed calls on a store of every shipped
//!   backend with the servers stopped and started during it: failures,
//!   memory and file descriptors (`BENCH_SOAK_*`). It runs only when
//!   named (`-- soak`), never with the other groups.
//!
//! Database files live on tmpfs (`/dev/shm`) when the machine has it, so
//! disk flushes stay out of a comparison of CPU work.
//!
//! Each round runs every variant once over the whole work, in a shuffled
//! order, so drift on a shared machine hits all of them alike. (Finer
//! interleaving was tried and dropped: one variant's heap and cache state
//! then leaks into the next variant's timing.) The table shows each
//! variant's median round, and the median over rounds of its time divided
//! by the baseline's time in the same round. `BENCH_ROUNDS` (default 5)
//! sets the relational group's rounds and, up to 3, the vector groups';
//! `BENCH_VERBOSE` prints every round's times. For a profile,
//! `BENCH_ONLY` runs only the variants whose "work / variant" contains one
//! of its `;`-separated parts, or ends with a part written with a closing
//! `$` (such as `64 tasks / host redis, async API$`);
//! the vector groups, which compare variants with each other, need all of
//! theirs.

mod duckdb;
mod faiss;
mod harness;
mod layers;
mod migrate;
mod postgres;
mod qdrant;
mod redis;
mod relational;
mod soak;
mod vector;

use harness::{env_or, print_table};

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |g: &str| filter.is_empty() || filter.iter().any(|f| g.contains(f.as_str()));
    let rounds: usize = env_or("BENCH_ROUNDS", 5);
    let mut rows = Vec::new();
    if want("relational") {
        relational::group(rounds, &mut rows);
    }
    if want("duckdb") {
        duckdb::group(rounds, &mut rows);
    }
    if want("redis") {
        // Round trips to a server are slow here (a 100k SET+GET round takes
        // tens of seconds on loopback): one round unless asked for more.
        let redis_rounds = env_or("BENCH_REDIS_ROUNDS", 1);
        redis::group(redis_rounds, &mut rows);
    }
    if want("postgres") {
        let pg_rounds = env_or("BENCH_PG_ROUNDS", 3);
        postgres::group(pg_rounds, &mut rows);
    }
    let vector_rounds = rounds.clamp(1, 3);
    // Loading 100k vectors (and building two HNSW indexes) takes minutes a
    // round: one round unless asked for more.
    let load_rounds = env_or("BENCH_VECTOR_LOAD_ROUNDS", 1);
    let mut vector_table = Vec::new();
    if want("vector") {
        vector::group(vector_rounds, load_rounds, &mut rows, &mut vector_table);
    }
    if want("faiss") {
        faiss::group(vector_rounds, &mut rows, &mut vector_table);
    }
    if want("qdrant") {
        qdrant::group(vector_rounds, &mut rows, &mut vector_table);
    }
    if want("layers") {
        layers::group(rounds, &mut rows);
    }
    let mut notes = Vec::new();
    if want("migrate") {
        migrate::group(&mut rows, &mut notes);
    }
    if filter.iter().any(|f| f == "soak") {
        soak::group(&mut notes);
    }
    println!("rounds: {rounds} (vector: {vector_rounds}); medians over rounds");
    print_table(&rows);
    for line in vector_table.into_iter().chain(notes) {
        println!("{line}");
    }
}
