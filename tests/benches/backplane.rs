//! Backplane's benchmark: the same work through the host and directly on
//! the backend's own crate, in one run, reported as medians and ratios.
//!
//! ```text
//! cargo build --release && cargo bench -p backplane-behavior
//! cargo bench -p backplane-behavior -- relational     # one group
//! BENCH_ROUNDS=7 cargo bench -p backplane-behavior    # more rounds
//! ```
//!
//! Groups:
//! - `relational`: 100k inserts (in transactions of 1,000) and 100k point
//!   selects by key, through the sqlite plugin (blocking and async API)
//!   vs rusqlite called directly with prepared statements, values read
//!   into Rust types. A middle row runs the plugin's own engine in-process,
//!   without the boundary, to show which part of a gap is whose.
//! - `redis`: 100k SET+GET pairs, sequential and from 64 concurrent tokio
//!   tasks, through the redis plugin (the async API both ways: awaited
//!   through the plugin's callback, and on tokio's blocking pool) vs the
//!   redis crate's multiplexed async connection; and 100k conversation
//!   messages appended in batches of 100 (`add_messages` vs a pipelined
//!   RPUSH + LTRIM) and read back (skipped when no Redis answers;
//!   `BACKPLANE_REDIS_URL`).
//! - `postgres`: the relational work at a tenth of the size (10k inserts in
//!   transactions of 1,000, 10k point selects), with 1 and with 32
//!   concurrent tasks, through the postgres plugin vs the `postgres` crate
//!   (the driver the plugin uses) called directly; and 3-hop neighbourhoods
//!   on a 100k-node, 1M-edge graph, through the plugin vs the same recursive
//!   query sent directly (skipped when no PostgreSQL answers;
//!   `BACKPLANE_POSTGRES_URL`). Everything lives in a fresh schema, dropped
//!   at the end.
//! - `vector`: 100k seeded random 384-dimension vectors (normalised), 1k
//!   top-10 cosine queries, through the sqlite and memory plugins (exact),
//!   the qdrant-edge plugin (HNSW) and qdrant-edge's `EdgeShard` called
//!   directly, next to a plain exact scan over a `Vec<f32>` (the floor):
//!   upsert throughput (batches of 1,000), the first search (qdrant-edge
//!   builds its index there, sqlite its in-memory copy), query throughput,
//!   p50/p99 latency and recall@10 against the exact top 10, and the
//!   plugin's query throughput over the direct crate's. `BENCH_VECTORS`
//!   changes the collection size, `BENCH_VECTOR_LOAD_ROUNDS` (default 1)
//!   the number of loads, `BENCH_HNSW_M`, `BENCH_HNSW_EF_CONSTRUCT` and
//!   `BENCH_HNSW_EF` the HNSW settings of both qdrant-edge variants, and
//!   `BENCH_VECTOR_EXACT=0` leaves the exact variants out;
//!   `BENCH_VECTOR_DATA=clustered` draws the vectors around 1,000 random
//!   centres instead of uniformly;
//!   `BENCH_HNSW_EF_SWEEP=128,256,…` adds the direct variant's recall and
//!   speed at other search-time `hnsw_ef` on the same index.
//! - `qdrant`: the same vectors and queries on a Qdrant server
//!   (`BACKPLANE_QDRANT_URL`; skipped without it), through the qdrant
//!   plugin vs qdrant-client called directly: upsert throughput, query
//!   throughput, p50/p99, recall@10, once the server has built both
//!   indexes.
//!
//! Database files live on tmpfs (`/dev/shm`) when the machine has it, so
//! disk flushes stay out of a comparison of CPU work.
//!
//! Each round runs every variant once over the whole work, in a shuffled
//! order, so drift on a shared machine hits all of them alike. (Finer
//! interleaving was tried and dropped: one variant's heap and cache state
//! then leaks into the next variant's timing.) The table shows each
//! variant's median round, and the median over rounds of its time divided
//! by the baseline's time in the same round.

use backplane_behavior::{library, Scratch};
use backplane_host::{params, Distance, Params, SearchRequest, Storage, Value, VectorRecord};
use std::time::{Duration, Instant};

const INSERTS: usize = 100_000;
const TX_SIZE: usize = 1_000;
const SELECTS: usize = 100_000;
const VECTORS: usize = 100_000;
const DIM: usize = 384;
const QUERIES: usize = 1_000;
const K: usize = 10;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vector(&mut self) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM).map(|_| self.unit()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Run `body(t)` for t in 0..tasks as tokio tasks on `rt`, and wait for
/// all of them: their outputs, in task order.
fn spawn_tasks<T, F>(
    rt: &tokio::runtime::Runtime,
    tasks: usize,
    body: impl Fn(usize) -> F,
) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks).map(|t| tokio::spawn(body(t))).collect();
        let mut out = Vec::with_capacity(tasks);
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    })
}

struct Row {
    group: &'static str,
    work: &'static str,
    variant: String,
    median: Duration,
    ops: usize,
    /// Median over rounds of (this variant's time / the baseline's time).
    ratio: Option<f64>,
}

fn print_table(rows: &[Row]) {
    println!("\n| group | work | variant | median | ops/s | time ratio vs baseline |");
    println!("|---|---|---|---:|---:|---:|");
    for r in rows {
        let ops = r.ops as f64 / r.median.as_secs_f64();
        let ratio = r
            .ratio
            .map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "1 (baseline)".into());
        println!(
            "| {} | {} | {} | {:.1} ms | {:.0} | {} |",
            r.group,
            r.work,
            r.variant,
            r.median.as_secs_f64() * 1e3,
            ops,
            ratio
        );
    }
}

/// One way of doing a workload: `reset` runs before each round (untimed),
/// `run(chunk)` does one chunk of the work (timed).
struct Variant<'a> {
    name: &'static str,
    reset: Box<dyn FnMut() + 'a>,
    run: Box<dyn FnMut(usize) + 'a>,
}

/// Run every variant over `chunks` chunks per round, interleaved chunk by
/// chunk (in a shuffled order), so that drift on a shared machine hits all
/// variants alike. Rows: per-round totals; ratios against the first variant.
fn interleaved(
    group: &'static str,
    work: &'static str,
    ops: usize,
    rounds: usize,
    chunks: usize,
    variants: &mut [Variant<'_>],
    out: &mut Vec<Row>,
) -> Vec<Vec<Duration>> {
    let n = variants.len();
    let mut totals = vec![Vec::with_capacity(rounds); n];
    let mut shuffle = Rng(0x0bad_cafe);
    for round in 0..rounds {
        eprintln!("{group}: {work}, round {}/{rounds}", round + 1);
        for v in variants.iter_mut() {
            (v.reset)();
        }
        let mut acc = vec![Duration::ZERO; n];
        for chunk in 0..chunks {
            // A fresh order every time, so no variant always follows the
            // same other one (a heavy writer slows whoever runs next).
            let mut order: Vec<usize> = (0..n).collect();
            for j in (1..n).rev() {
                order.swap(j, (shuffle.next() % (j as u64 + 1)) as usize);
            }
            for i in order {
                let t = Instant::now();
                (variants[i].run)(chunk);
                acc[i] += t.elapsed();
            }
        }
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!(
                "  round times: {:?}",
                acc.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
            );
        }
        for (t, a) in totals.iter_mut().zip(acc) {
            t.push(a);
        }
    }
    for (i, v) in variants.iter().enumerate() {
        let ratio = (i > 0).then(|| {
            let mut r: Vec<f64> = totals[i]
                .iter()
                .zip(&totals[0])
                .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
                .collect();
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        });
        out.push(Row {
            group,
            work,
            variant: v.name.into(),
            median: median(totals[i].clone()),
            ops,
            ratio,
        });
    }
    totals
}

fn open(scratch: &Scratch, body: &str) -> Storage {
    let file = scratch.path("plugins.toml");
    let libs = [
        library("backplane_plugin_sqlite"),
        library("backplane_plugin_memory"),
        library("backplane_plugin_qdrant_edge"),
        library("backplane_plugin_qdrant"),
    ];
    let load: Vec<String> = libs
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    std::fs::write(
        &file,
        format!("[plugins]\nload = [{}]\n{body}", load.join(", ")),
    )
    .unwrap();
    Storage::open(&file).unwrap()
}

fn direct_conn(path: &std::path::Path) -> rusqlite::Connection {
    let c = rusqlite::Connection::open(path).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "NORMAL").unwrap();
    c
}

const CREATE: &str =
    "CREATE TABLE bench (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL NOT NULL)";
const INSERT: &str = "INSERT INTO bench (id, name, score) VALUES (?, ?, ?)";
const SELECT: &str = "SELECT id, name, score FROM bench WHERE id = ?";

fn engine(path: &std::path::Path) -> backplane_sqlite_engine::SqliteRelational {
    backplane_sqlite_engine::SqliteRelational::new(
        backplane_sqlite_engine::Db::open(
            &backplane_core::StoreConfig::new(
                "engine",
                "sqlite",
                backplane_core::Capability::Relational,
                serde_json::Value::Null,
            ),
            Some(path),
            5000,
        )
        .unwrap(),
    )
}

fn batch(b: usize) -> Vec<Params> {
    (b * TX_SIZE..(b + 1) * TX_SIZE)
        .map(|i| params![i as i64, format!("user-{i}"), i as f64 * 0.5])
        .collect()
}

/// Where the benchmark's files go: tmpfs when there is one, so that the
/// disk's flushes (which land on whichever variant runs next) stay out of
/// a comparison of CPU work. Both sides always use the same place.
fn bench_dir() -> Scratch {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        Scratch::under(shm)
    } else {
        Scratch::new()
    }
}

fn relational(rounds: usize, out: &mut Vec<Row>) {
    use backplane_core::Relational as _;
    // A current-thread runtime: idle worker threads of a multi-thread one
    // keep spinning for a moment after each chunk and slow whichever
    // variant runs next on this two-core machine.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch = bench_dir();
    let path = |name: &str| scratch.path(name);
    // Every round inserts into fresh files, opened (untimed) by `reset`.
    use std::cell::{Cell, RefCell};
    let round = Cell::new(0usize);
    let fresh = |name: &str| path(&format!("{name}-{}.db", round.get()));
    let direct: RefCell<Option<rusqlite::Connection>> = RefCell::new(None);
    let eng: RefCell<Option<backplane_sqlite_engine::SqliteRelational>> = RefCell::new(None);
    let host: RefCell<Option<(Storage, backplane_host::RelationalStore)>> = RefCell::new(None);
    let host_async: RefCell<Option<(Storage, backplane_host::RelationalStore)>> =
        RefCell::new(None);
    let open_store = |name: &str| {
        let dir = Scratch::under(&scratch.0);
        let st = open(
            &dir,
            &format!(
                "[relational.s]\nbackend = \"sqlite\"\npath = \"{}\"\n",
                fresh(name).display()
            ),
        );
        let s = st.relational("s").unwrap();
        s.blocking().execute(CREATE, &Params::None).unwrap();
        (st, s)
    };
    let chunks = 1;
    let per_chunk = INSERTS / TX_SIZE;
    {
        let mut variants = [
            Variant {
                name: "rusqlite direct",
                reset: Box::new(|| {
                    round.set(round.get() + 1);
                    let c = direct_conn(&fresh("direct"));
                    c.execute_batch(CREATE).unwrap();
                    *direct.borrow_mut() = Some(c);
                }),
                run: Box::new(|c| {
                    let mut guard = direct.borrow_mut();
                    let conn = guard.as_mut().unwrap();
                    for bt in c * per_chunk..(c + 1) * per_chunk {
                        let tx = conn.transaction().unwrap();
                        {
                            let mut st = tx.prepare_cached(INSERT).unwrap();
                            for i in bt * TX_SIZE..(bt + 1) * TX_SIZE {
                                st.execute(rusqlite::params![
                                    i as i64,
                                    format!("user-{i}"),
                                    i as f64 * 0.5
                                ])
                                .unwrap();
                            }
                        }
                        tx.commit().unwrap();
                    }
                }),
            },
            Variant {
                name: "sqlite engine in-process (no boundary)",
                reset: Box::new(|| {
                    let e = engine(&fresh("engine"));
                    e.execute(CREATE, &Params::None).unwrap();
                    *eng.borrow_mut() = Some(e);
                }),
                run: Box::new(|c| {
                    let guard = eng.borrow();
                    let e = guard.as_ref().unwrap();
                    for bt in c * per_chunk..(c + 1) * per_chunk {
                        e.execute_many(INSERT, &batch(bt)).unwrap();
                    }
                }),
            },
            Variant {
                name: "host sqlite, blocking API",
                reset: Box::new(|| *host.borrow_mut() = Some(open_store("host"))),
                run: Box::new(|c| {
                    let guard = host.borrow();
                    let db = guard.as_ref().unwrap().1.blocking();
                    for bt in c * per_chunk..(c + 1) * per_chunk {
                        db.execute_many(INSERT, &batch(bt)).unwrap();
                    }
                }),
            },
            Variant {
                name: "host sqlite, async API",
                reset: Box::new(|| *host_async.borrow_mut() = Some(open_store("async"))),
                run: Box::new(|c| {
                    let guard = host_async.borrow();
                    let a = &guard.as_ref().unwrap().1;
                    rt.block_on(async {
                        for bt in c * per_chunk..(c + 1) * per_chunk {
                            a.execute_many(INSERT, batch(bt)).await.unwrap();
                        }
                    })
                }),
            },
        ];
        interleaved(
            "relational",
            "100k inserts, tx of 1k",
            INSERTS,
            rounds,
            chunks,
            &mut variants,
            out,
        );
    }

    // Point selects: all variants read one checkpointed file, each through
    // its own connection.
    {
        let conn = direct_conn(&path("read.db"));
        conn.execute_batch(CREATE).unwrap();
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..INSERTS {
            conn.execute(
                INSERT,
                rusqlite::params![i as i64, format!("user-{i}"), i as f64 * 0.5],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let mut rng = Rng(0x5eed);
    let keys: Vec<i64> = (0..SELECTS)
        .map(|_| (rng.next() % INSERTS as u64) as i64)
        .collect();
    let chunks = 1;
    let per = SELECTS / chunks;
    let reader = direct_conn(&path("read.db"));
    let eng = engine(&path("read.db"));
    let reads_dir = bench_dir();
    let reads = open(
        &reads_dir,
        &format!(
            "[relational.r]\nbackend = \"sqlite\"\npath = \"{}\"\n",
            path("read.db").display()
        ),
    );
    let r = reads.relational("r").unwrap();
    let sums = std::cell::RefCell::new([0i64; 4]);
    let add = |i: usize, v: i64| sums.borrow_mut()[i] += v;
    {
        let mut variants = [
            Variant {
                name: "rusqlite direct",
                reset: Box::new(|| {}),
                run: Box::new(|c| {
                    let mut st = reader.prepare_cached(SELECT).unwrap();
                    for &k in &keys[c * per..(c + 1) * per] {
                        let (id, name, score): (i64, String, f64) = st
                            .query_row([k], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .unwrap();
                        add(0, id + name.len() as i64 + score as i64);
                    }
                }),
            },
            Variant {
                name: "sqlite engine in-process (no boundary)",
                reset: Box::new(|| {}),
                run: Box::new(|c| {
                    for &k in &keys[c * per..(c + 1) * per] {
                        let rows = eng.query(SELECT, &params![k]).unwrap();
                        add(1, row_sum(&rows.rows[0]));
                    }
                }),
            },
            Variant {
                name: "host sqlite, blocking API",
                reset: Box::new(|| {}),
                run: Box::new(|c| {
                    for &k in &keys[c * per..(c + 1) * per] {
                        let rows = r.blocking().query(SELECT, &params![k]).unwrap();
                        add(2, row_sum(&rows.rows[0]));
                    }
                }),
            },
            Variant {
                name: "host sqlite, async API",
                reset: Box::new(|| {}),
                run: Box::new(|c| {
                    rt.block_on(async {
                        for &k in &keys[c * per..(c + 1) * per] {
                            let rows = r.query(SELECT, params![k]).await.unwrap();
                            add(3, row_sum(&rows.rows[0]));
                        }
                    })
                }),
            },
        ];
        interleaved(
            "relational",
            "100k point selects",
            SELECTS,
            rounds,
            chunks,
            &mut variants,
            out,
        );
    }
    let s = sums.borrow();
    assert!(
        s.iter().all(|x| *x == s[0]),
        "every variant read the same data: {s:?}"
    );
}

/// Read a row of (id, name, score) into Rust types, as the direct variant does.
fn row_sum(r: &[Value]) -> i64 {
    match (&r[0], &r[1], &r[2]) {
        (Value::Integer(i), Value::Text(n), Value::Real(s)) => *i + n.len() as i64 + *s as i64,
        other => panic!("unexpected row {other:?}"),
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

/// The floor: an exact top-k cosine scan over a flat `Vec<f32>`.
fn exact_top(flat: &[f32], norms: &[f32], q: &[f32]) -> Vec<(f32, usize)> {
    let qn = dot(q, q).sqrt();
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(K + 1);
    for (i, row) in flat.chunks_exact(DIM).enumerate() {
        let s = dot(q, row) / (qn * norms[i]);
        if best.len() < K || s > best[best.len() - 1].0 {
            let pos = best.partition_point(|b| b.0 >= s);
            best.insert(pos, (s, i));
            best.truncate(K);
        }
    }
    best
}

/// The exact top-`K` of every query over `flat`, on every core.
fn ground_truth(flat: &[f32], norms: &[f32], queries: &[Vec<f32>]) -> Vec<Vec<usize>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = queries.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = queries
            .chunks(per)
            .map(|qs| {
                s.spawn(move || {
                    qs.iter()
                        .map(|q| exact_top(flat, norms, q).iter().map(|h| h.1).collect())
                        .collect::<Vec<Vec<usize>>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
    })
}

/// What one vector variant measured.
#[derive(Default)]
struct VectorStats {
    /// Per round: the whole load's upsert time.
    upsert: Vec<Duration>,
    /// Per round: the index build after the load.
    build: Vec<Duration>,
    /// Every query's latency, every round.
    latencies: Vec<Duration>,
    /// Relevant hits found, and asked for.
    found: usize,
    asked: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Search `db`'s collection "bench" for the queries `qs` (numbered from
/// `first`), top-K each, and hand `record` each query's number, the
/// numbers of the hits (ids `v<n>`) and the call's latency.
fn host_searches(
    db: &dyn backplane_host::traits::Vector,
    qs: &[Vec<f32>],
    first: usize,
    mut record: impl FnMut(usize, &[usize], Duration),
) {
    for (i, q) in qs.iter().enumerate() {
        let t = Instant::now();
        let hits = db
            .search("bench", &SearchRequest::new(q.clone(), K))
            .unwrap();
        let took = t.elapsed();
        assert_eq!(hits.len(), K);
        let got: Vec<usize> = hits.iter().map(|h| h.id[1..].parse().unwrap()).collect();
        record(first + i, &got, took);
    }
}

/// The settings of the qdrant-edge collections, shared by the plugin and
/// the direct variant: the plugin's defaults unless overridden with
/// BENCH_HNSW_M / BENCH_HNSW_EF_CONSTRUCT / BENCH_HNSW_EF.
struct Hnsw {
    m: usize,
    ef_construct: usize,
    ef: usize,
}

impl Hnsw {
    fn from_env() -> Hnsw {
        let get = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Hnsw {
            m: get("BENCH_HNSW_M", 16),
            ef_construct: get("BENCH_HNSW_EF_CONSTRUCT", 128),
            ef: get("BENCH_HNSW_EF", 128),
        }
    }
}

/// qdrant-edge called directly: one EdgeShard, numeric point ids, the
/// application id in the payload (which the search reads back, as the
/// plugin's does), a flush after every batch (the plugin's durability).
struct DirectQdrant {
    dir: std::path::PathBuf,
    shard: Option<qdrant_edge::EdgeShard>,
    ef: usize,
}

impl DirectQdrant {
    fn create(dir: std::path::PathBuf, h: &Hnsw) -> DirectQdrant {
        use qdrant_edge::*;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = EdgeConfig::builder()
            .vector("", EdgeVectorParams::builder(DIM, Distance::Cosine).build())
            .hnsw_config(HnswIndexConfig {
                m: h.m,
                ef_construct: h.ef_construct,
                ..HnswIndexConfig::default()
            })
            .on_disk_payload(true)
            .optimizers(EdgeOptimizersConfig {
                indexing_threshold: Some(10_000),
                ..EdgeOptimizersConfig::default()
            })
            .build();
        DirectQdrant {
            shard: Some(EdgeShard::new(&dir, config).unwrap()),
            dir,
            ef: h.ef,
        }
    }

    fn upsert(&self, first: usize, vectors: &[Vec<f32>]) {
        use qdrant_edge::*;
        let shard = self.shard.as_ref().unwrap();
        let points = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = first + i;
                PointStruct::new(
                    PointId::NumId(id as u64),
                    v.clone(),
                    serde_json::json!({ "id": format!("v{id}") }),
                )
                .into()
            })
            .collect();
        shard
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(points)),
            ))
            .unwrap();
        shard.flush();
    }

    fn search(&self, q: &[f32]) -> Vec<usize> {
        use qdrant_edge::*;
        self.shard
            .as_ref()
            .unwrap()
            .search(SearchRequest {
                query: QueryEnum::Nearest(NamedQuery::default_dense(q.to_vec())),
                filter: None,
                params: Some(SearchParams {
                    hnsw_ef: Some(self.ef),
                    ..SearchParams::default()
                }),
                limit: K,
                offset: 0,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: Some(WithVector::Bool(false)),
                score_threshold: None,
            })
            .unwrap()
            .into_iter()
            .map(|p| {
                let id = p.payload.unwrap().0["id"].as_str().unwrap()[1..].to_string();
                id.parse().unwrap()
            })
            .collect()
    }
}

impl Drop for DirectQdrant {
    fn drop(&mut self) {
        drop(self.shard.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Vector search: VECTORS seeded random 384-dimension vectors (normalised),
/// 1k queries, top-10, cosine. Loads (upsert in batches of 1,000, then the
/// index build where there is one) and searches through the sqlite and
/// memory plugins (exact), the qdrant-edge plugin (HNSW) and qdrant-edge
/// called directly, next to a plain exact scan (the floor). Recall@10 is
/// against the exact top 10.
fn vector(rounds: usize, load_rounds: usize, out: &mut Vec<Row>, table: &mut Vec<String>) {
    use std::cell::RefCell;
    let n: usize = std::env::var("BENCH_VECTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(VECTORS);
    let h = Hnsw::from_env();
    // BENCH_VECTOR_EXACT=0 leaves out the exact variants (for trying
    // HNSW settings; recall is still against the exact top 10).
    let exact = std::env::var("BENCH_VECTOR_EXACT").map_or(true, |v| v != "0");
    // BENCH_VECTOR_DATA=clustered: points scattered around 1,000 random
    // centres (closer to how real embeddings lie) instead of uniformly.
    let clustered = std::env::var("BENCH_VECTOR_DATA").is_ok_and(|v| v == "clustered");
    let mut rng = Rng(0xdecaf);
    let centres: Vec<Vec<f32>> = (0..1000).map(|_| rng.vector()).collect();
    let draw = |rng: &mut Rng| {
        if !clustered {
            return rng.vector();
        }
        let c = &centres[(rng.next() % centres.len() as u64) as usize];
        let mut v: Vec<f32> = c.iter().map(|x| x + 0.06 * rng.unit()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    };
    let data: Vec<Vec<f32>> = (0..n).map(|_| draw(&mut rng)).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| draw(&mut rng)).collect();
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let norms: Vec<f32> = data.iter().map(|v| dot(v, v).sqrt()).collect();
    eprintln!("vector: exact top-{K} of {QUERIES} queries over {n} vectors (ground truth)");
    let truth = ground_truth(&flat, &norms, &queries);

    let scratch = bench_dir();
    let storage = open(
        &scratch,
        &format!(
            "[vector.sqlite]\nbackend = \"sqlite\"\npath = \"{}\"\n\
             [vector.memory]\nbackend = \"memory\"\n\
             [vector.qdrant]\nbackend = \"qdrant-edge\"\npath = \"{}\"\n\
             hnsw_m = {}\nhnsw_ef_construct = {}\nhnsw_ef = {}\n",
            scratch.path("vec.db").display(),
            scratch.path("qdrant").display(),
            h.m,
            h.ef_construct,
            h.ef
        ),
    );
    let stores = [
        (
            "host sqlite plugin, exact",
            storage.vector("sqlite").unwrap(),
        ),
        (
            "host memory plugin, exact",
            storage.vector("memory").unwrap(),
        ),
        (
            "host qdrant-edge plugin, HNSW",
            storage.vector("qdrant").unwrap(),
        ),
    ];
    let direct_dir = scratch.path("direct");
    let direct: RefCell<Option<DirectQdrant>> = RefCell::new(None);
    // 0..3: the host stores; 3: qdrant-edge direct.
    let mut stats: Vec<VectorStats> = (0..4).map(|_| VectorStats::default()).collect();
    let records: Vec<Vec<VectorRecord>> = data
        .chunks(1000)
        .enumerate()
        .map(|(b, chunk)| {
            chunk
                .iter()
                .enumerate()
                .map(|(i, v)| VectorRecord::new(format!("v{}", b * 1000 + i), v.clone()))
                .collect()
        })
        .collect();

    // Loading: each round recreates every collection and loads it again,
    // the variants in a shuffled order.
    let mut shuffle = Rng(0x10ad);
    for round in 0..load_rounds {
        let mut order: Vec<usize> = (0..4).collect();
        for j in (1..4).rev() {
            order.swap(j, (shuffle.next() % (j as u64 + 1)) as usize);
        }
        for v in order {
            if !exact && v < 2 {
                continue;
            }
            eprintln!(
                "vector: load {n} into variant {v}, round {}/{load_rounds}",
                round + 1
            );
            if v == 3 {
                *direct.borrow_mut() = None;
                *direct.borrow_mut() = Some(DirectQdrant::create(direct_dir.clone(), &h));
                let t = Instant::now();
                let d = direct.borrow();
                let d = d.as_ref().unwrap();
                for (b, chunk) in data.chunks(1000).enumerate() {
                    d.upsert(b * 1000, chunk);
                }
                stats[3].upsert.push(t.elapsed());
                let t = Instant::now();
                d.shard.as_ref().unwrap().optimize().unwrap();
                d.shard.as_ref().unwrap().flush();
                stats[3].build.push(t.elapsed());
                continue;
            }
            let db = stores[v].1.blocking();
            let _ = db.drop_collection("bench");
            db.create_collection("bench", DIM as u32, Distance::Cosine)
                .unwrap();
            let t = Instant::now();
            for recs in &records {
                db.upsert("bench", recs).unwrap();
            }
            stats[v].upsert.push(t.elapsed());
            // The first search builds what the store builds (qdrant-edge's
            // HNSW index, sqlite's in-memory copy).
            let t = Instant::now();
            db.search("bench", &SearchRequest::new(queries[0].clone(), K))
                .unwrap();
            stats[v].build.push(t.elapsed());
        }
    }

    let chunks = 10;
    let per = QUERIES / chunks;
    let stats = RefCell::new(stats);
    let recall = |v: usize, qi: usize, got: &[usize], took: Duration| {
        let mut s = stats.borrow_mut();
        let s = &mut s[v];
        s.latencies.push(took);
        s.found += got.iter().filter(|i| truth[qi].contains(i)).count();
        s.asked += K;
    };
    let through = |v: usize, c: usize| {
        host_searches(
            stores[v].1.blocking(),
            &queries[c * per..(c + 1) * per],
            c * per,
            |qi, got, took| recall(v, qi, got, took),
        );
    };
    let mut variants: Vec<Variant<'_>> = Vec::new();
    // Where each stats entry's variant sits in `variants` (0..3 host
    // stores, 3 direct).
    let mut at = [usize::MAX; 4];
    if exact {
        variants.push(Variant {
            name: "plain exact scan over Vec<f32> (floor)",
            reset: Box::new(|| {}),
            run: Box::new(|c| {
                for q in &queries[c * per..(c + 1) * per] {
                    std::hint::black_box(exact_top(&flat, &norms, q));
                }
            }),
        });
        for v in 0..2 {
            at[v] = variants.len();
            variants.push(Variant {
                name: stores[v].0,
                reset: Box::new(|| {}),
                run: Box::new(move |c| through(v, c)),
            });
        }
    }
    at[3] = variants.len();
    variants.push(Variant {
        name: "qdrant-edge direct (EdgeShard), HNSW",
        reset: Box::new(|| {}),
        run: Box::new(|c| {
            let d = direct.borrow();
            let d = d.as_ref().unwrap();
            for (qi, q) in queries.iter().enumerate().skip(c * per).take(per) {
                let t = Instant::now();
                let got = d.search(q);
                let took = t.elapsed();
                assert_eq!(got.len(), K);
                recall(3, qi, &got, took);
            }
        }),
    });
    at[2] = variants.len();
    variants.push(Variant {
        name: stores[2].0,
        reset: Box::new(|| {}),
        run: Box::new(|c| through(2, c)),
    });
    let work: &'static str = if n == VECTORS {
        "1k top-10 cosine, 100k x 384"
    } else {
        "1k top-10 cosine, BENCH_VECTORS x 384"
    };
    let totals = interleaved("vector", work, QUERIES, rounds, chunks, &mut variants, out);
    drop(variants);

    // Host qdrant-edge's query throughput against the direct crate's, per
    // round.
    let mut ratio: Vec<f64> = totals[at[3]]
        .iter()
        .zip(&totals[at[2]])
        .map(|(direct, host)| direct.as_secs_f64() / host.as_secs_f64())
        .collect();
    ratio.sort_by(f64::total_cmp);
    let host_vs_direct = ratio[ratio.len() / 2];

    let stats = stats.into_inner();
    table.push(format!(
        "\n{n} {} vectors x {DIM}, {QUERIES} queries, top-{K}, cosine; qdrant-edge hnsw_m={} hnsw_ef_construct={} hnsw_ef={}; {load_rounds} load round(s), {rounds} query round(s)\n",
        if clustered { "clustered" } else { "uniformly random" },
        h.m,
        h.ef_construct,
        h.ef
    ));
    table.push(
        "| variant | upsert vectors/s | first search / index build | queries/s | p50 | p99 | recall@10 | query throughput vs direct |".into(),
    );
    table.push("|---|---:|---:|---:|---:|---:|---:|---:|".into());
    let qps = |i: usize| QUERIES as f64 / median(totals[i].clone()).as_secs_f64();
    for (name, si) in [
        (stores[0].0, 0),
        (stores[1].0, 1),
        ("qdrant-edge direct (EdgeShard), HNSW", 3),
        (stores[2].0, 2),
    ] {
        if at[si] == usize::MAX {
            continue;
        }
        let s = &stats[si];
        let mut lat = s.latencies.clone();
        lat.sort();
        table.push(format!(
            "| {name} | {:.0} | {:.2} s | {:.0} | {:.2} ms | {:.2} ms | {:.3} | {} |",
            n as f64 / median(s.upsert.clone()).as_secs_f64(),
            median(s.build.clone()).as_secs_f64(),
            qps(at[si]),
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            s.found as f64 / s.asked as f64,
            match si {
                3 => "1 (baseline)".to_string(),
                2 => format!("**{host_vs_direct:.3}**"),
                _ => String::new(),
            }
        ));
    }

    // BENCH_HNSW_EF_SWEEP=64,128,…: the direct variant's recall and speed
    // at other search-time settings, on the same index.
    let sweep: Vec<usize> = std::env::var("BENCH_HNSW_EF_SWEEP")
        .unwrap_or_default()
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    if !sweep.is_empty() {
        table.push(format!(
            "\nqdrant-edge direct, the same index (hnsw_m={} hnsw_ef_construct={}) searched with other hnsw_ef:\n",
            h.m, h.ef_construct
        ));
        table.push("| hnsw_ef | queries/s | p50 | p99 | recall@10 |".into());
        table.push("|---:|---:|---:|---:|---:|".into());
    }
    for ef in sweep {
        let mut d = direct.borrow_mut();
        let d = d.as_mut().unwrap();
        d.ef = ef;
        let (mut lat, mut found) = (Vec::with_capacity(QUERIES), 0);
        let t = Instant::now();
        for (qi, q) in queries.iter().enumerate() {
            let t = Instant::now();
            let got = d.search(q);
            lat.push(t.elapsed());
            found += got.iter().filter(|i| truth[qi].contains(i)).count();
        }
        let total = t.elapsed();
        lat.sort();
        table.push(format!(
            "| {ef} | {:.0} | {:.2} ms | {:.2} ms | {:.3} |",
            QUERIES as f64 / total.as_secs_f64(),
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            found as f64 / (QUERIES * K) as f64
        ));
    }
}

/// The Qdrant server: the same vectors and queries as the `vector` group
/// (uniform data), through the qdrant plugin and through qdrant-client
/// called directly, against one server (`BACKPLANE_QDRANT_URL`; skipped
/// without it). Both load in batches of 1,000 and wait until the server
/// has indexed the collection; then 1k top-10 cosine queries, each reading
/// back the application's id from the payload. The direct variant keeps
/// one vector per point under numeric ids, what a program written for
/// qdrant-client alone would do; the plugin also keeps each cosine vector
/// as given (the `raw` copy its `get` and `scroll` return).
fn qdrant_group(rounds: usize, out: &mut Vec<Row>, table: &mut Vec<String>) {
    use qdrant_client::qdrant::{
        vectors_config, with_payload_selector, CreateCollection, Distance as QDistance,
        PointStruct, QueryPoints, SearchParams, UpsertPoints, VectorParams, VectorParamsMap,
        VectorsConfig, WithPayloadSelector,
    };
    use std::cell::RefCell;
    use std::collections::HashMap;
    let url = match backplane_behavior::qdrant_server() {
        Ok(url) => url,
        Err(why) => {
            eprintln!("qdrant: skipped: {why}");
            return;
        }
    };
    let n: usize = std::env::var("BENCH_VECTORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(VECTORS);
    let ef: u64 = std::env::var("BENCH_HNSW_EF")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let mut rng = Rng(0xdecaf);
    let data: Vec<Vec<f32>> = (0..n).map(|_| rng.vector()).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| rng.vector()).collect();
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let norms: Vec<f32> = data.iter().map(|v| dot(v, v).sqrt()).collect();
    eprintln!("qdrant: exact top-{K} of {QUERIES} queries over {n} vectors (ground truth)");
    let truth = ground_truth(&flat, &norms, &queries);

    let prefix = format!("bp_bench_{}_", backplane_behavior::namespace());
    let scratch = bench_dir();
    let storage = open(
        &scratch,
        &format!(
            "[vector.q]\nbackend = \"qdrant\"\nurl = \"{url}\"\ncollection_prefix = \"{prefix}\"\nhnsw_ef = {ef}\n"
        ),
    );
    let store = storage.vector("q").unwrap();
    let host = store.blocking();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = qdrant_client::Qdrant::from_url(&url)
        .skip_compatibility_check()
        .build()
        .unwrap();
    let direct_name = format!("{prefix}direct");
    let host_name = format!("{prefix}bench");

    // Load both, then wait for the server's background index builds.
    eprintln!("qdrant: load {n} through the plugin");
    host.create_collection("bench", DIM as u32, Distance::Cosine)
        .unwrap();
    let t = Instant::now();
    for (b, chunk) in data.chunks(1000).enumerate() {
        let recs: Vec<VectorRecord> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| VectorRecord::new(format!("v{}", b * 1000 + i), v.clone()))
            .collect();
        host.upsert("bench", &recs).unwrap();
    }
    let host_upsert = t.elapsed();
    eprintln!("qdrant: load {n} through qdrant-client");
    rt.block_on(client.create_collection(CreateCollection {
        collection_name: direct_name.clone(),
        vectors_config: Some(VectorsConfig {
            config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                map: HashMap::from([(
                    "search".to_string(),
                    VectorParams {
                        size: DIM as u64,
                        distance: QDistance::Cosine as i32,
                        ..VectorParams::default()
                    },
                )]),
            })),
        }),
        ..CreateCollection::default()
    }))
    .unwrap();
    let t = Instant::now();
    for (b, chunk) in data.chunks(1000).enumerate() {
        let points: Vec<PointStruct> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = (b * 1000 + i) as u64;
                let payload: HashMap<String, qdrant_client::qdrant::Value> =
                    HashMap::from([("id".to_string(), format!("v{id}").into())]);
                PointStruct::new(
                    id,
                    HashMap::from([("search".to_string(), v.clone())]),
                    payload,
                )
            })
            .collect();
        rt.block_on(client.upsert_points(UpsertPoints {
            collection_name: direct_name.clone(),
            wait: Some(true),
            points,
            ..UpsertPoints::default()
        }))
        .unwrap();
    }
    let direct_upsert = t.elapsed();
    let t = Instant::now();
    for name in [&host_name, &direct_name] {
        loop {
            let info = rt
                .block_on(client.collection_info(name.as_str()))
                .unwrap()
                .result
                .unwrap();
            // Green: no optimisation (index build) pending or running.
            if info.status == qdrant_client::qdrant::CollectionStatus::Green as i32
                && info.indexed_vectors_count.unwrap_or(0) >= n as u64 * 9 / 10
            {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(1800),
                "qdrant: {name} not indexed after 30 min"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let build = t.elapsed();

    let chunks = 10;
    let per = QUERIES / chunks;
    // 0: direct, 1: host.
    let stats = RefCell::new([(Vec::new(), 0usize), (Vec::new(), 0usize)]);
    let record = |v: usize, qi: usize, got: &[usize], took: Duration| {
        let mut s = stats.borrow_mut();
        s[v].0.push(took);
        s[v].1 += got.iter().filter(|i| truth[qi].contains(i)).count();
    };
    let mut variants = vec![
        Variant {
            name: "qdrant-client direct (gRPC)",
            reset: Box::new(|| {}),
            run: Box::new(|c| {
                for (qi, q) in queries.iter().enumerate().skip(c * per).take(per) {
                    let t = Instant::now();
                    let points = rt
                        .block_on(client.query(QueryPoints {
                            collection_name: direct_name.clone(),
                            query: Some(qdrant_client::qdrant::Query::new_nearest(q.clone())),
                            using: Some("search".to_string()),
                            params: Some(SearchParams {
                                hnsw_ef: Some(ef),
                                ..SearchParams::default()
                            }),
                            limit: Some(K as u64),
                            with_payload: Some(WithPayloadSelector {
                                selector_options: Some(
                                    with_payload_selector::SelectorOptions::Enable(true),
                                ),
                            }),
                            ..QueryPoints::default()
                        }))
                        .unwrap()
                        .result;
                    let got: Vec<usize> = points
                        .iter()
                        .map(|p| match &p.payload["id"].kind {
                            Some(qdrant_client::qdrant::value::Kind::StringValue(s)) => {
                                s[1..].parse().unwrap()
                            }
                            other => panic!("id payload {other:?}"),
                        })
                        .collect();
                    let took = t.elapsed();
                    assert_eq!(got.len(), K);
                    record(0, qi, &got, took);
                }
            }),
        },
        Variant {
            name: "host qdrant plugin (gRPC)",
            reset: Box::new(|| {}),
            run: Box::new(|c| {
                host_searches(
                    host,
                    &queries[c * per..(c + 1) * per],
                    c * per,
                    |qi, got, took| record(1, qi, got, took),
                );
            }),
        },
    ];
    let work: &'static str = if n == VECTORS {
        "1k top-10 cosine on a Qdrant server, 100k x 384"
    } else {
        "1k top-10 cosine on a Qdrant server, BENCH_VECTORS x 384"
    };
    let totals = interleaved("qdrant", work, QUERIES, rounds, chunks, &mut variants, out);
    drop(variants);
    let server = rt
        .block_on(client.health_check())
        .map(|h| h.version)
        .unwrap_or_default();
    let _ = rt.block_on(client.delete_collection(direct_name.as_str()));
    let _ = host.drop_collection("bench");

    let mut ratio: Vec<f64> = totals[0]
        .iter()
        .zip(&totals[1])
        .map(|(direct, host)| direct.as_secs_f64() / host.as_secs_f64())
        .collect();
    ratio.sort_by(f64::total_cmp);
    let stats = stats.into_inner();
    table.push(format!(
        "\nQdrant server {server} at {url}: {n} uniformly random vectors x {DIM}, {QUERIES} queries, top-{K}, cosine, hnsw_ef={ef}; index builds waited for: {:.1} s; {rounds} query round(s)\n",
        build.as_secs_f64()
    ));
    table.push(
        "| variant | upsert vectors/s | queries/s | p50 | p99 | recall@10 | query throughput vs direct |".into(),
    );
    table.push("|---|---:|---:|---:|---:|---:|---:|".into());
    for (i, name, upsert) in [
        (0, "qdrant-client direct (gRPC)", direct_upsert),
        (1, "host qdrant plugin (gRPC)", host_upsert),
    ] {
        let mut lat = stats[i].0.clone();
        lat.sort();
        table.push(format!(
            "| {name} | {:.0} | {:.0} | {:.2} ms | {:.2} ms | {:.3} | {} |",
            n as f64 / upsert.as_secs_f64(),
            QUERIES as f64 / median(totals[i].clone()).as_secs_f64(),
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            stats[i].1 as f64 / lat.len() as f64 / K as f64,
            if i == 0 {
                "1 (baseline)".to_string()
            } else {
                format!("**{:.3}**", ratio[ratio.len() / 2])
            }
        ));
    }
}

const REDIS_OPS: usize = 100_000;
const REDIS_TASKS: usize = 64;
const MSG_TOTAL: usize = 100_000;
const MSG_BATCH: usize = 100;
const MSG_CHANNELS: usize = 100;
const MSG_BOUND: usize = 1_000;

/// Redis: 100k SET+GET pairs, sequential and from 64 concurrent tasks,
/// through the redis plugin vs the redis crate's multiplexed async
/// connection. Skipped (with a message) when no server answers.
fn redis_group(rounds: usize, out: &mut Vec<Row>) {
    let url =
        std::env::var("BACKPLANE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let direct = match rt.block_on(async {
        redis::Client::open(url.as_str())?
            .get_multiplexed_async_connection()
            .await
    }) {
        Ok(c) => c,
        Err(e) => {
            println!("skip redis: no server at {url} ({e})");
            return;
        }
    };
    let scratch = bench_dir();
    let ns = backplane_behavior::namespace();
    let file = scratch.path("plugins.toml");
    std::fs::write(
        &file,
        format!(
            "[plugins]\nload = [\"{}\"]\n[cache.r]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"bp-bench:{ns}:\"\n[cache.m]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"bp-bench:{ns}:msg:\"\nmax_messages = {MSG_BOUND}\n",
            library("backplane_plugin_redis").display()
        ),
    )
    .unwrap();
    let storage = Storage::open(&file).unwrap();
    let store = storage.cache("r").unwrap();
    let msg_store = storage.cache("m").unwrap();
    let value = vec![b'x'; 64];
    {
        let mut variants = [
            Variant {
                name: "redis crate, multiplexed async",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    rt.block_on(async {
                        let mut c = direct.clone();
                        for i in 0..REDIS_OPS {
                            let k = format!("bp-bench:{ns}:direct:{i}");
                            redis::AsyncCommands::set::<_, _, ()>(&mut c, &k, &value)
                                .await
                                .unwrap();
                            let v: Vec<u8> = redis::AsyncCommands::get(&mut c, &k).await.unwrap();
                            assert_eq!(v.len(), 64);
                        }
                    })
                }),
            },
            Variant {
                name: "host redis, blocking API",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    let c = store.blocking();
                    for i in 0..REDIS_OPS {
                        let k = format!("b:{i}");
                        c.set(&k, &value, None).unwrap();
                        assert_eq!(c.get(&k).unwrap().unwrap().len(), 64);
                    }
                }),
            },
            Variant {
                name: "host redis, async API",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    rt.block_on(async {
                        for i in 0..REDIS_OPS {
                            let k = format!("a:{i}");
                            store.set(k.clone(), value.clone(), None).await.unwrap();
                            assert_eq!(store.get(k).await.unwrap().unwrap().len(), 64);
                        }
                    })
                }),
            },
        ];
        interleaved(
            "redis",
            "100k SET+GET, sequential",
            REDIS_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        let mut variants = [
            Variant {
                name: "redis crate, multiplexed async",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    spawn_tasks(&rt, REDIS_TASKS, |t| {
                        let mut c = direct.clone();
                        let (ns, value) = (ns.clone(), value.clone());
                        async move {
                            for i in (t..REDIS_OPS).step_by(REDIS_TASKS) {
                                let k = format!("bp-bench:{ns}:direct64:{i}");
                                redis::AsyncCommands::set::<_, _, ()>(&mut c, &k, &value)
                                    .await
                                    .unwrap();
                                let v: Vec<u8> =
                                    redis::AsyncCommands::get(&mut c, &k).await.unwrap();
                                assert_eq!(v.len(), 64);
                            }
                        }
                    });
                }),
            },
            Variant {
                name: "host redis, async API",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    spawn_tasks(&rt, REDIS_TASKS, |t| {
                        let (store, value) = (store.clone(), value.clone());
                        async move {
                            for i in (t..REDIS_OPS).step_by(REDIS_TASKS) {
                                let k = format!("a64:{i}");
                                store.set(k.clone(), value.clone(), None).await.unwrap();
                                assert_eq!(store.get(k).await.unwrap().unwrap().len(), 64);
                            }
                        }
                    });
                }),
            },
            // The other way futures can cross: each call run blocking on
            // tokio's blocking pool (`run`), what the async API does for
            // calls without a non-blocking form.
            Variant {
                name: "host redis, async API on the blocking pool",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    spawn_tasks(&rt, REDIS_TASKS, |t| {
                        let (store, value) = (store.clone(), value.clone());
                        async move {
                            for i in (t..REDIS_OPS).step_by(REDIS_TASKS) {
                                let k = format!("p64:{i}");
                                let (k2, v) = (k.clone(), value.clone());
                                store.run(move |s| s.set(&k2, &v, None)).await.unwrap();
                                let got = store.run(move |s| s.get(&k)).await.unwrap();
                                assert_eq!(got.unwrap().len(), 64);
                            }
                        }
                    });
                }),
            },
        ];
        interleaved(
            "redis",
            "100k SET+GET, 64 tasks",
            REDIS_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        // 100k messages: 100 channels of 1,000, appended in batches of 100
        // and read back whole. The direct row does what an application
        // without Backplane would: a MULTI of RPUSH (the batch's JSON) and
        // LTRIM to the bound per batch, and LRANGE + JSON decoding to read
        // back. The host's add_messages does more per batch: one Lua
        // script that also refuses taken ids and keeps the id set.
        let batches: Vec<Vec<backplane_host::Message>> = (0..MSG_TOTAL / MSG_BATCH)
            .map(|b| {
                (0..MSG_BATCH)
                    .map(|i| {
                        let mut m = backplane_host::Message::new(
                            "user",
                            format!("message {b}-{i} with some text in it"),
                        );
                        m.id = format!("m{b}-{i}");
                        m.timestamp_ms = 1_700_000_000_000 + (b * MSG_BATCH + i) as i64;
                        m
                    })
                    .collect()
            })
            .collect();
        let channel_of = |b: usize| format!("ch{}", b % MSG_CHANNELS);
        // Every round writes fresh channels (its number in the names).
        let (batches, channel_of, rt, direct, ns, msg_store) =
            (&batches, &channel_of, &rt, &direct, &ns, &msg_store);
        let mut variants = [
            Variant {
                name: "redis crate, multiplexed async",
                reset: Box::new(|| {}),
                run: Box::new({
                    let mut r = 0;
                    move |_| {
                        r += 1;
                        rt.block_on(async {
                            let mut c = direct.clone();
                            for (b, batch) in batches.iter().enumerate() {
                                let list =
                                    format!("bp-bench:{ns}:direct-msg:{r}:{{{}}}", channel_of(b));
                                let json: Vec<Vec<u8>> = batch
                                    .iter()
                                    .map(|m| serde_json::to_vec(m).unwrap())
                                    .collect();
                                let _: () = redis::pipe()
                                    .atomic()
                                    .rpush(&list, json)
                                    .ignore()
                                    .ltrim(&list, -(MSG_BOUND as isize), -1)
                                    .ignore()
                                    .query_async(&mut c)
                                    .await
                                    .unwrap();
                            }
                            for ch in 0..MSG_CHANNELS {
                                let list = format!("bp-bench:{ns}:direct-msg:{r}:{{ch{ch}}}");
                                let raw: Vec<Vec<u8>> =
                                    redis::AsyncCommands::lrange(&mut c, &list, 0, -1)
                                        .await
                                        .unwrap();
                                let ms: Vec<backplane_host::Message> = raw
                                    .iter()
                                    .map(|r| serde_json::from_slice(r).unwrap())
                                    .collect();
                                assert_eq!(ms.len(), MSG_BOUND);
                            }
                        })
                    }
                }),
            },
            Variant {
                name: "host redis, blocking API",
                reset: Box::new(|| {}),
                run: Box::new({
                    let mut r = 0;
                    move |_| {
                        r += 1;
                        let c = msg_store.blocking();
                        for (b, batch) in batches.iter().enumerate() {
                            c.add_messages(&format!("b{r}:{}", channel_of(b)), batch)
                                .unwrap();
                        }
                        for ch in 0..MSG_CHANNELS {
                            let ms = c.recent(&format!("b{r}:ch{ch}"), MSG_BOUND, None).unwrap();
                            assert_eq!(ms.len(), MSG_BOUND);
                        }
                    }
                }),
            },
            Variant {
                name: "host redis, async API",
                reset: Box::new(|| {}),
                run: Box::new({
                    let mut r = 0;
                    move |_| {
                        r += 1;
                        rt.block_on(async {
                            for (b, batch) in batches.iter().enumerate() {
                                msg_store
                                    .add_messages(format!("a{r}:{}", channel_of(b)), batch.clone())
                                    .await
                                    .unwrap();
                            }
                            for ch in 0..MSG_CHANNELS {
                                let ms = msg_store
                                    .recent(format!("a{r}:ch{ch}"), MSG_BOUND, None)
                                    .await
                                    .unwrap();
                                assert_eq!(ms.len(), MSG_BOUND);
                            }
                        })
                    }
                }),
            },
        ];
        interleaved(
            "redis",
            "100k messages, batches of 100, read back",
            MSG_TOTAL,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    // Leave the shared server as it was.
    let mut c = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("bp-bench:{ns}:*"))
        .query(&mut c)
        .unwrap_or_default();
    for chunk in keys.chunks(1000) {
        let _: () = redis::cmd("DEL").arg(chunk).query(&mut c).unwrap_or(());
    }
}

const PG_OPS: usize = 10_000;
const PG_TASKS: usize = 32;
const GRAPH_NODES: usize = 100_000;
const GRAPH_EDGES: usize = 1_000_000;
const GRAPH_QUERIES: usize = 200;

/// The postgres plugin vs the `postgres` crate: relational work with 1 and
/// 32 concurrent tasks, and 3-hop neighbourhoods on a 1M-edge graph.
fn postgres_group(rounds: usize, out: &mut Vec<Row>) {
    let (url, shown, unreachable) = backplane_behavior::postgres_server();
    if let Some(why) = unreachable {
        println!("skip postgres: no server at {shown} ({why})");
        return;
    }
    let schema = format!("bp_bench_{}", backplane_behavior::namespace());
    let connect = || {
        let mut c: postgres::Client = url
            .parse::<postgres::Config>()
            .unwrap()
            .connect(postgres::NoTls)
            .unwrap();
        c.batch_execute(&format!("SET search_path = {schema}"))
            .unwrap();
        c
    };
    let scratch = bench_dir();
    let file = scratch.path("plugins.toml");
    let section = format!(
        "backend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\npool_size = {PG_TASKS}\n"
    );
    std::fs::write(
        &file,
        format!(
            "[plugins]\nload = [\"{}\"]\n[relational.r]\n{section}[graph.g]\n{section}",
            library("backplane_plugin_postgres").display()
        ),
    )
    .unwrap();
    let storage = Storage::open(&file).unwrap();
    let r = storage.relational("r").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let direct = std::cell::RefCell::new(connect());
    let pool: Vec<std::sync::Mutex<postgres::Client>> = (0..PG_TASKS)
        .map(|_| std::sync::Mutex::new(connect()))
        .collect();
    const PG_INSERT: &str = "INSERT INTO {t} (id, name, score) VALUES ($1, $2, $3)";
    const PG_SELECT: &str = "SELECT id, name, score FROM bench_read WHERE id = $1";
    let create = |t: &str| {
        direct
            .borrow_mut()
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION NOT NULL)"
            ))
            .unwrap();
    };
    let direct_insert = |c: &mut postgres::Client, t: &str, keys: std::ops::Range<usize>| {
        let mut tx = c.transaction().unwrap();
        let st = tx.prepare(&PG_INSERT.replace("{t}", t)).unwrap();
        for i in keys {
            tx.execute(&st, &[&(i as i64), &format!("user-{i}"), &(i as f64 * 0.5)])
                .unwrap();
        }
        tx.commit().unwrap();
    };
    let host_insert = |t: &str| format!("INSERT INTO {t} (id, name, score) VALUES (?, ?, ?)");
    let sets = |keys: std::ops::Range<usize>| -> Vec<Params> {
        keys.map(|i| params![i as i64, format!("user-{i}"), i as f64 * 0.5])
            .collect()
    };
    // Per task: a share of the keys, in transactions of at most 1,000.
    let share = |t: usize| (t * PG_OPS / PG_TASKS)..((t + 1) * PG_OPS / PG_TASKS);
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct",
                reset: Box::new(|| create("bench_d1")),
                run: Box::new(|_| {
                    let mut c = direct.borrow_mut();
                    for b in 0..PG_OPS / TX_SIZE {
                        direct_insert(&mut c, "bench_d1", b * TX_SIZE..(b + 1) * TX_SIZE);
                    }
                }),
            },
            Variant {
                name: "host postgres, blocking API",
                reset: Box::new(|| create("bench_h1")),
                run: Box::new(|_| {
                    let sql = host_insert("bench_h1");
                    for b in 0..PG_OPS / TX_SIZE {
                        r.blocking()
                            .execute_many(&sql, &sets(b * TX_SIZE..(b + 1) * TX_SIZE))
                            .unwrap();
                    }
                }),
            },
        ];
        interleaved(
            "postgres",
            "10k inserts, tx of 1k",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct, 32 threads",
                reset: Box::new(|| create("bench_d32")),
                run: Box::new(|_| {
                    std::thread::scope(|s| {
                        for (t, c) in pool.iter().enumerate() {
                            s.spawn(move || {
                                direct_insert(&mut c.lock().unwrap(), "bench_d32", share(t))
                            });
                        }
                    })
                }),
            },
            Variant {
                name: "host postgres, blocking API, 32 threads",
                reset: Box::new(|| create("bench_b32")),
                run: Box::new(|_| {
                    let sql = host_insert("bench_b32");
                    std::thread::scope(|s| {
                        for t in 0..PG_TASKS {
                            let (r, sql) = (&r, &sql);
                            s.spawn(move || {
                                r.blocking().execute_many(sql, &sets(share(t))).unwrap()
                            });
                        }
                    })
                }),
            },
            Variant {
                name: "host postgres, async API, 32 tasks",
                reset: Box::new(|| create("bench_h32")),
                run: Box::new(|_| {
                    let sql = host_insert("bench_h32");
                    spawn_tasks(&rt, PG_TASKS, |t| {
                        let (r, sql, set) = (r.clone(), sql.clone(), sets(share(t)));
                        async move {
                            r.execute_many(sql, set).await.unwrap();
                        }
                    });
                }),
            },
        ];
        interleaved(
            "postgres",
            "10k inserts, 32 tasks",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    // Point selects on one table of PG_OPS rows.
    create("bench_read");
    direct_insert(&mut direct.borrow_mut(), "bench_read", 0..PG_OPS);
    let mut rng = Rng(0x5eed);
    let keys: Vec<i64> = (0..PG_OPS)
        .map(|_| (rng.next() % PG_OPS as u64) as i64)
        .collect();
    let keys = &keys;
    let host_select = "SELECT id, name, score FROM bench_read WHERE id = ?";
    let sums = std::sync::Mutex::new([0i64; 5]);
    let add = |i: usize, v: i64| sums.lock().unwrap()[i] += v;
    let read_direct = |c: &mut postgres::Client, ks: &[i64]| -> i64 {
        let st = c.prepare(PG_SELECT).unwrap();
        ks.iter()
            .map(|k| {
                let row = c.query_one(&st, &[k]).unwrap();
                let (id, name, score): (i64, String, f64) = (row.get(0), row.get(1), row.get(2));
                id + name.len() as i64 + score as i64
            })
            .sum()
    };
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct",
                reset: Box::new(|| {}),
                run: Box::new(|_| add(0, read_direct(&mut direct.borrow_mut(), keys))),
            },
            Variant {
                name: "host postgres, blocking API",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    for k in keys {
                        let rows = r.blocking().query(host_select, &params![*k]).unwrap();
                        add(1, row_sum(&rows.rows[0]));
                    }
                }),
            },
        ];
        interleaved(
            "postgres",
            "10k point selects",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct, 32 threads",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    std::thread::scope(|s| {
                        for (t, c) in pool.iter().enumerate() {
                            let add = &add;
                            s.spawn(move || {
                                add(2, read_direct(&mut c.lock().unwrap(), &keys[share(t)]))
                            });
                        }
                    })
                }),
            },
            Variant {
                name: "host postgres, blocking API, 32 threads",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    std::thread::scope(|s| {
                        for t in 0..PG_TASKS {
                            let (r, add) = (&r, &add);
                            s.spawn(move || {
                                for k in &keys[share(t)] {
                                    let rows =
                                        r.blocking().query(host_select, &params![*k]).unwrap();
                                    add(4, row_sum(&rows.rows[0]));
                                }
                            });
                        }
                    })
                }),
            },
            Variant {
                name: "host postgres, async API, 32 tasks",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    let total: i64 = spawn_tasks(&rt, PG_TASKS, |t| {
                        let (r, ks) = (r.clone(), keys[share(t)].to_vec());
                        async move {
                            let mut sum = 0;
                            for k in ks {
                                let rows = r.query(host_select, params![k]).await.unwrap();
                                sum += row_sum(&rows.rows[0]);
                            }
                            sum
                        }
                    })
                    .into_iter()
                    .sum();
                    add(3, total);
                }),
            },
        ];
        interleaved(
            "postgres",
            "10k point selects, 32 tasks",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        let s = sums.lock().unwrap();
        assert!(
            s.iter().all(|x| *x == s[0]),
            "every variant read the same data: {s:?}"
        );
    }

    // The graph: loaded with COPY into the store's own tables.
    let g = storage.graph("g").unwrap();
    eprintln!("postgres: loading {GRAPH_NODES} nodes and {GRAPH_EDGES} edges");
    {
        use std::io::Write;
        let mut c = direct.borrow_mut();
        let mut w = c
            .copy_in("COPY _bp_graph_nodes (id, label, properties) FROM STDIN")
            .unwrap();
        for i in 0..GRAPH_NODES {
            writeln!(w, "n{i}\tperson\t{{\"i\": {i}}}").unwrap();
        }
        w.finish().unwrap();
        let mut rng = Rng(0xed9e);
        let mut w = c
            .copy_in("COPY _bp_graph_edges (id, from_id, to_id, edge_type, properties) FROM STDIN")
            .unwrap();
        for j in 0..GRAPH_EDGES {
            let (a, b) = (
                rng.next() % GRAPH_NODES as u64,
                rng.next() % GRAPH_NODES as u64,
            );
            let ty = if j % 2 == 0 { "knows" } else { "likes" };
            writeln!(w, "e{j}\tn{a}\tn{b}\t{ty}\t{{}}").unwrap();
        }
        w.finish().unwrap();
        c.batch_execute("ANALYZE _bp_graph_nodes; ANALYZE _bp_graph_edges")
            .unwrap();
    }
    let mut rng = Rng(0x3407);
    let starts: Vec<String> = (0..GRAPH_QUERIES)
        .map(|_| format!("n{}", rng.next() % GRAPH_NODES as u64))
        .collect();
    let starts = &starts;
    // The plugin's own query (Direction::Outgoing), sent directly.
    const HOPS: &str = "WITH RECURSIVE walk(id, depth) AS (
        SELECT $1::text COLLATE \"C\", 0
      UNION
        SELECT x.next, w.depth + 1 FROM walk w
        CROSS JOIN LATERAL (SELECT e.to_id AS next, e.edge_type FROM _bp_graph_edges e WHERE e.from_id = w.id) x
        WHERE w.depth < $2
    )
    SELECT n.id, n.label, n.properties, min(w.depth) AS d
    FROM walk w JOIN _bp_graph_nodes n ON n.id = w.id
    WHERE w.id <> $1
    GROUP BY n.id ORDER BY d, n.id";
    let found = std::cell::RefCell::new([0usize; 2]);
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct (same recursive query)",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    let mut c = direct.borrow_mut();
                    let st = c.prepare(HOPS).unwrap();
                    for s in starts {
                        for row in c.query(&st, &[s, &3i32]).unwrap() {
                            let (_, _, _, _): (String, String, serde_json::Value, i32) =
                                (row.get(0), row.get(1), row.get(2), row.get(3));
                            found.borrow_mut()[0] += 1;
                        }
                    }
                }),
            },
            Variant {
                name: "host postgres graph, blocking API",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    for s in starts {
                        let n = g
                            .blocking()
                            .neighbors(s, backplane_host::Direction::Outgoing, &[], 3)
                            .unwrap();
                        found.borrow_mut()[1] += n.len();
                    }
                }),
            },
        ];
        interleaved(
            "postgres",
            "200 3-hop neighbourhoods, 100k nodes / 1M edges",
            GRAPH_QUERIES,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    let f = found.borrow();
    assert_eq!(f[0], f[1], "both found the same neighbourhoods");
    eprintln!(
        "postgres: {} nodes per 3-hop neighbourhood on average",
        f[0] / (GRAPH_QUERIES * rounds)
    );
    drop(storage);
    direct
        .borrow_mut()
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |g: &str| filter.is_empty() || filter.iter().any(|f| g.contains(f.as_str()));
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut rows = Vec::new();
    if want("relational") {
        relational(rounds, &mut rows);
    }
    if want("redis") {
        // Round trips to a server are slow here (a 100k SET+GET round takes
        // tens of seconds on loopback): one round unless asked for more.
        let redis_rounds = std::env::var("BENCH_REDIS_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        redis_group(redis_rounds, &mut rows);
    }
    if want("postgres") {
        let pg_rounds = std::env::var("BENCH_PG_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        postgres_group(pg_rounds, &mut rows);
    }
    let vector_rounds = rounds.clamp(1, 3);
    // Loading 100k vectors (and building two HNSW indexes) takes minutes a
    // round: one round unless asked for more.
    let load_rounds = std::env::var("BENCH_VECTOR_LOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut vector_table = Vec::new();
    if want("vector") {
        vector(vector_rounds, load_rounds, &mut rows, &mut vector_table);
    }
    if want("qdrant") {
        qdrant_group(vector_rounds, &mut rows, &mut vector_table);
    }
    println!("rounds: {rounds} (vector: {vector_rounds}); medians over rounds");
    print_table(&rows);
    for line in vector_table {
        println!("{line}");
    }
}
