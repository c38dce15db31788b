//! Backplane's benchmark: the same work through the host and directly on
//! the backend's own crate, in one run, reported as medians and ratios.
//!
//! ```text
//! cargo build --release --workspace && cargo bench -p backplane-behavior
//! cargo bench -p backplane-behavior -- relational     # one group
//! BENCH_ROUNDS=7 cargo bench -p backplane-behavior    # more rounds
//! ```
//!
//! Groups:
//! - `relational`: 100k inserts (in transactions of 1,000) and 100k point
//!   selects by key, through the sqlite plugin (blocking and async API)
//!   vs rusqlite called directly with prepared statements.
//! - `vector`: 1k exact top-10 cosine searches over 20k 384-dimension
//!   vectors through the sqlite and memory plugins vs a plain exact scan
//!   over a `Vec<f32>` (the floor).
//!
//! Each round runs every variant once, interleaved, so drift on a shared
//! machine hits all variants alike; the table shows the median round.

use backplane_behavior::{library, Scratch};
use backplane_host::{params, Distance, Params, SearchRequest, Storage, Value, VectorRecord};
use std::time::{Duration, Instant};

const INSERTS: usize = 100_000;
const TX_SIZE: usize = 1_000;
const SELECTS: usize = 100_000;
const VECTORS: usize = 20_000;
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

struct Row {
    group: &'static str,
    work: &'static str,
    variant: String,
    median: Duration,
    ops: usize,
    baseline: Option<Duration>,
}

fn print_table(rows: &[Row]) {
    println!("\n| group | work | variant | median | ops/s | time ratio vs direct |");
    println!("|---|---|---|---:|---:|---:|");
    for r in rows {
        let ops = r.ops as f64 / r.median.as_secs_f64();
        let ratio = r
            .baseline
            .map(|b| format!("{:.3}", r.median.as_secs_f64() / b.as_secs_f64()))
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

fn open(scratch: &Scratch, body: &str) -> Storage {
    let file = scratch.path("plugins.toml");
    let libs = [
        library("backplane_plugin_sqlite"),
        library("backplane_plugin_memory"),
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

fn relational(rounds: usize, out: &mut Vec<Row>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut ins_direct, mut ins_host, mut ins_async) = (vec![], vec![], vec![]);
    let (mut sel_direct, mut sel_host, mut sel_async) = (vec![], vec![], vec![]);
    let mut sel_engine = vec![];
    let mut ins_engine = vec![];
    let mut rng = Rng(0x5eed);
    let keys: Vec<i64> = (0..SELECTS)
        .map(|_| (rng.next() % INSERTS as u64) as i64)
        .collect();
    for round in 0..rounds {
        eprintln!("relational round {}/{rounds}", round + 1);
        let scratch = Scratch::new();
        // Inserts, direct.
        let direct_db = scratch.path("direct.db");
        let mut conn = direct_conn(&direct_db);
        conn.execute(CREATE, []).unwrap();
        let t = Instant::now();
        for batch in 0..INSERTS / TX_SIZE {
            let tx = conn.transaction().unwrap();
            {
                let mut st = tx.prepare_cached(INSERT).unwrap();
                for i in batch * TX_SIZE..(batch + 1) * TX_SIZE {
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
        ins_direct.push(t.elapsed());

        // Inserts, through the host (blocking, then async), each on its own file.
        let storage = open(
            &scratch,
            &format!(
                "[relational.b]\nbackend = \"sqlite\"\npath = \"{}\"\n[relational.a]\nbackend = \"sqlite\"\npath = \"{}\"\n",
                scratch.path("host.db").display(),
                scratch.path("async.db").display()
            ),
        );
        let b = storage.relational("b").unwrap();
        b.blocking().execute(CREATE, &Params::None).unwrap();
        let t = Instant::now();
        for batch in 0..INSERTS / TX_SIZE {
            let sets: Vec<Params> = (batch * TX_SIZE..(batch + 1) * TX_SIZE)
                .map(|i| params![i as i64, format!("user-{i}"), i as f64 * 0.5])
                .collect();
            b.blocking().execute_many(INSERT, &sets).unwrap();
        }
        ins_host.push(t.elapsed());
        let engine = backplane_sqlite_engine::SqliteRelational::new(
            backplane_sqlite_engine::Db::open(
                &backplane_core::StoreConfig::new(
                    "e",
                    "sqlite",
                    backplane_core::Capability::Relational,
                    serde_json::Value::Null,
                ),
                Some(&scratch.path("engine.db")),
                5000,
            )
            .unwrap(),
        );
        backplane_core::Relational::execute(&engine, CREATE, &Params::None).unwrap();
        let t = Instant::now();
        for batch in 0..INSERTS / TX_SIZE {
            let sets: Vec<Params> = (batch * TX_SIZE..(batch + 1) * TX_SIZE)
                .map(|i| params![i as i64, format!("user-{i}"), i as f64 * 0.5])
                .collect();
            backplane_core::Relational::execute_many(&engine, INSERT, &sets).unwrap();
        }
        ins_engine.push(t.elapsed());
        drop(engine);
        let a = storage.relational("a").unwrap();
        a.blocking().execute(CREATE, &Params::None).unwrap();
        let t = Instant::now();
        rt.block_on(async {
            for batch in 0..INSERTS / TX_SIZE {
                let sets: Vec<Params> = (batch * TX_SIZE..(batch + 1) * TX_SIZE)
                    .map(|i| params![i as i64, format!("user-{i}"), i as f64 * 0.5])
                    .collect();
                a.execute_many(INSERT, sets).await.unwrap();
            }
        });
        ins_async.push(t.elapsed());

        // Point selects: every variant reads the same checkpointed file,
        // each through its own connection.
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        drop(conn);
        let conn = direct_conn(&direct_db);
        let reads = open(
            &scratch,
            &format!(
                "[relational.r]\nbackend = \"sqlite\"\npath = \"{}\"\n",
                direct_db.display()
            ),
        );
        let r = reads.relational("r").unwrap();
        let engine = backplane_sqlite_engine::SqliteRelational::new(
            backplane_sqlite_engine::Db::open(
                &backplane_core::StoreConfig::new(
                    "e",
                    "sqlite",
                    backplane_core::Capability::Relational,
                    serde_json::Value::Null,
                ),
                Some(&direct_db),
                5000,
            )
            .unwrap(),
        );

        let mut sum_direct = 0i64;
        let t = Instant::now();
        {
            let mut st = conn.prepare_cached(SELECT).unwrap();
            for &k in &keys {
                let (id, name, score): (i64, String, f64) = st
                    .query_row([k], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .unwrap();
                sum_direct += id + name.len() as i64 + score as i64;
            }
        }
        sel_direct.push(t.elapsed());

        // The plugin's engine called in-process, without the boundary.
        let mut sum_engine = 0i64;
        let t = Instant::now();
        for &k in &keys {
            let rows = backplane_core::Relational::query(&engine, SELECT, &params![k]).unwrap();
            let r = &rows.rows[0];
            sum_engine += r[0].as_i64().unwrap()
                + r[1].as_str().unwrap().len() as i64
                + r[2].as_f64().unwrap() as i64;
        }
        sel_engine.push(t.elapsed());

        let mut sum_host = 0i64;
        let t = Instant::now();
        for &k in &keys {
            let rows = r.blocking().query(SELECT, &params![k]).unwrap();
            let row = &rows.rows[0];
            let (id, name, score) = match (&row[0], &row[1], &row[2]) {
                (Value::Integer(i), Value::Text(n), Value::Real(s)) => (*i, n.as_str(), *s),
                other => panic!("unexpected row {other:?}"),
            };
            sum_host += id + name.len() as i64 + score as i64;
        }
        sel_host.push(t.elapsed());

        let t = Instant::now();
        let sum_async = rt.block_on(async {
            let mut sum = 0i64;
            for &k in &keys {
                let rows = r.query(SELECT, params![k]).await.unwrap();
                let row = &rows.rows[0];
                sum += row[0].as_i64().unwrap()
                    + row[1].as_str().unwrap().len() as i64
                    + row[2].as_f64().unwrap() as i64;
            }
            sum
        });
        sel_async.push(t.elapsed());
        assert_eq!(sum_direct, sum_host, "host and direct read the same data");
        assert_eq!(
            sum_direct, sum_engine,
            "engine and direct read the same data"
        );
        assert_eq!(sum_direct, sum_async, "async and direct read the same data");
    }
    let ins_base = median(ins_direct.clone());
    let sel_base = median(sel_direct.clone());
    let row = |work, variant: &str, v: Vec<Duration>, ops, base: Option<Duration>| Row {
        group: "relational",
        work,
        variant: variant.into(),
        median: median(v),
        ops,
        baseline: base,
    };
    out.push(row(
        "100k inserts, tx of 1k",
        "rusqlite direct",
        ins_direct,
        INSERTS,
        None,
    ));
    out.push(row(
        "100k inserts, tx of 1k",
        "sqlite engine in-process (no boundary)",
        ins_engine,
        INSERTS,
        Some(ins_base),
    ));
    out.push(row(
        "100k inserts, tx of 1k",
        "host sqlite, blocking API",
        ins_host,
        INSERTS,
        Some(ins_base),
    ));
    out.push(row(
        "100k inserts, tx of 1k",
        "host sqlite, async API",
        ins_async,
        INSERTS,
        Some(ins_base),
    ));
    out.push(row(
        "100k point selects",
        "rusqlite direct",
        sel_direct,
        SELECTS,
        None,
    ));
    out.push(row(
        "100k point selects",
        "sqlite engine in-process (no boundary)",
        sel_engine,
        SELECTS,
        Some(sel_base),
    ));
    out.push(row(
        "100k point selects",
        "host sqlite, blocking API",
        sel_host,
        SELECTS,
        Some(sel_base),
    ));
    out.push(row(
        "100k point selects",
        "host sqlite, async API",
        sel_async,
        SELECTS,
        Some(sel_base),
    ));
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

fn vector(rounds: usize, out: &mut Vec<Row>) {
    let mut rng = Rng(0xdecaf);
    let data: Vec<Vec<f32>> = (0..VECTORS).map(|_| rng.vector()).collect();
    let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| rng.vector()).collect();
    let flat: Vec<f32> = data.iter().flatten().copied().collect();
    let norms: Vec<f32> = data.iter().map(|v| dot(v, v).sqrt()).collect();

    let scratch = Scratch::new();
    let storage = open(
        &scratch,
        &format!(
            "[vector.sqlite]\nbackend = \"sqlite\"\npath = \"{}\"\n[vector.memory]\nbackend = \"memory\"\n",
            scratch.path("vec.db").display()
        ),
    );
    let stores = [
        storage.vector("sqlite").unwrap(),
        storage.vector("memory").unwrap(),
    ];
    for s in &stores {
        s.blocking()
            .create_collection("bench", DIM as u32, Distance::Cosine)
            .unwrap();
        for (chunk_no, chunk) in data.chunks(1000).enumerate() {
            let recs: Vec<VectorRecord> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| VectorRecord::new(format!("v{}", chunk_no * 1000 + i), v.clone()))
                .collect();
            s.blocking().upsert("bench", &recs).unwrap();
        }
    }
    let mut floor = vec![];
    let mut through: Vec<Vec<Duration>> = vec![vec![]; stores.len()];
    for round in 0..rounds {
        eprintln!("vector round {}/{rounds}", round + 1);
        let t = Instant::now();
        let mut top_ids = Vec::with_capacity(QUERIES);
        for q in &queries {
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
            top_ids.push(best[0].1);
        }
        floor.push(t.elapsed());
        for (si, s) in stores.iter().enumerate() {
            let t = Instant::now();
            for (qi, q) in queries.iter().enumerate() {
                let hits = s
                    .blocking()
                    .search("bench", &SearchRequest::new(q.clone(), K))
                    .unwrap();
                assert_eq!(hits.len(), K);
                assert_eq!(
                    hits[0].id,
                    format!("v{}", top_ids[qi]),
                    "exact search agrees with the floor"
                );
            }
            through[si].push(t.elapsed());
        }
    }
    let base = median(floor.clone());
    let work = "1k top-10 cosine, 20k x 384";
    out.push(Row {
        group: "vector",
        work,
        variant: "plain exact scan (floor)".into(),
        median: base,
        ops: QUERIES,
        baseline: None,
    });
    for (s, times) in stores.iter().zip(through) {
        out.push(Row {
            group: "vector",
            work,
            variant: format!("host {} plugin, exact", s.backend()),
            median: median(times),
            ops: QUERIES,
            baseline: Some(base),
        });
    }
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
    if want("vector") {
        vector(rounds.clamp(1, 3), &mut rows);
    }
    println!(
        "rounds: {rounds} (vector: {}), medians of rounds",
        rounds.clamp(1, 3)
    );
    print_table(&rows);
}
