//! `vector`: 100k seeded random 384-dimension vectors (normalised), 1k
//! top-10 cosine queries, through the sqlite and memory plugins (exact),
//! the qdrant-edge plugin (HNSW) and qdrant-edge's `EdgeShard` called
//! directly, next to a plain exact scan over a `Vec<f32>` (the floor):
//! upsert throughput (batches of 1,000), the first search (qdrant-edge
//! builds its index there, sqlite its in-memory copy) and the p99 of the
//! first 100 searches after the load, the bytes on disk after them (and
//! of them qdrant-edge's write-ahead log), query throughput,
//! p50/p99 latency and recall@10 against the exact top 10, and the
//! plugin's query throughput over the direct crate's. `BENCH_VECTORS`
//! changes the collection size, `BENCH_VECTOR_LOAD_ROUNDS` (default 1)
//! the number of loads, `BENCH_HNSW_M`, `BENCH_HNSW_EF_CONSTRUCT` and
//! `BENCH_HNSW_EF` the HNSW settings of both qdrant-edge variants, and
//! `BENCH_VECTOR_EXACT=0` leaves the exact variants out;
//! `BENCH_VECTOR_DATA=clustered` draws the vectors around 1,000 random
//! centres instead of uniformly; `BENCH_HNSW_EF_SWEEP=128,256,…` adds the
//! direct variant's recall and speed at other search-time `hnsw_ef` on
//! the same index.

use crate::harness::{
    batch_records, bench_dir, disk_bytes, env_or, exact_top, host_searches, interleaved, median,
    median_ratio, open, percentile, timed_searches, vector_data, Rng, Row, Searched, Variant,
    VectorData, DIM, K, PLUGINS, QUERIES, VECTORS,
};
use backplane_host::{Distance, SearchRequest, VectorRecord};
use std::time::{Duration, Instant};

/// What one vector variant measured.
#[derive(Default)]
struct VectorStats {
    /// Per round: the whole load's upsert time.
    upsert: Vec<Duration>,
    /// Per round: the first search after the load (for sqlite, which
    /// makes its in-memory copy then, included).
    first: Vec<Duration>,
    /// Per round: the index build after the load, where there is one (the
    /// qdrant-edge plugin's runs in the background: from the load's end
    /// until `health` no longer reports it).
    build: Vec<Duration>,
    /// Per round: the 99th percentile of the first `FIRST` searches after
    /// the load, the first included.
    first_p99: Vec<Duration>,
    /// After the last round's load and first searches: bytes on disk, and
    /// of them the write-ahead log's (qdrant-edge).
    disk: Option<(u64, u64)>,
    /// Every query, every round.
    searched: Searched,
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
        Hnsw {
            m: env_or("BENCH_HNSW_M", 16),
            ef_construct: env_or("BENCH_HNSW_EF_CONSTRUCT", 128),
            ef: env_or("BENCH_HNSW_EF", 128),
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

/// The bytes on disk of the SQLite database `db` with its `-wal` and
/// `-shm` files.
fn disk_files(db: &std::path::Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|x| {
            let mut p = db.as_os_str().to_owned();
            p.push(x);
            disk_bytes(std::path::Path::new(&p))
        })
        .sum()
}

/// Searches timed right after a load, for the p99 of the first searches.
const FIRST: usize = 100;

/// The p99 of the first `FIRST` searches (`search(i)` for query `i`), the
/// first one's time apart.
fn first_searches(mut search: impl FnMut(usize)) -> (Duration, Duration) {
    let mut lat: Vec<Duration> = (0..FIRST)
        .map(|i| {
            let t = Instant::now();
            search(i);
            t.elapsed()
        })
        .collect();
    let first = lat[0];
    lat.sort();
    (first, percentile(&lat, 0.99))
}

/// Vector search: VECTORS seeded random 384-dimension vectors (normalised),
/// 1k queries, top-10, cosine. Loads (upsert in batches of 1,000, then the
/// index build where there is one) and searches through the sqlite and
/// memory plugins (exact), the qdrant-edge plugin (HNSW) and qdrant-edge
/// called directly, next to a plain exact scan (the floor). Recall@10 is
/// against the exact top 10.
pub fn group(rounds: usize, load_rounds: usize, out: &mut Vec<Row>, table: &mut Vec<String>) {
    use std::cell::RefCell;
    let n: usize = env_or("BENCH_VECTORS", VECTORS);
    let h = Hnsw::from_env();
    // BENCH_VECTOR_EXACT=0 leaves out the exact variants (for trying
    // HNSW settings; recall is still against the exact top 10).
    let exact = std::env::var("BENCH_VECTOR_EXACT").map_or(true, |v| v != "0");
    // BENCH_VECTOR_DATA=clustered: points scattered around 1,000 random
    // centres (closer to how real embeddings lie) instead of uniformly.
    let (
        VectorData {
            data,
            queries,
            flat,
            norms,
            truth,
        },
        clustered,
    ) = vector_data("vector", n);

    let scratch = bench_dir();
    let storage = open(
        &scratch,
        &PLUGINS,
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
        .map(|(b, chunk)| batch_records(b, chunk))
        .collect();

    // Loading: each round recreates every collection and loads it again,
    // the variants in a shuffled order.
    let mut shuffle = Rng(0x10ad);
    for round in 0..load_rounds {
        for v in shuffle.order(4) {
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
                let (first, p99) = first_searches(|i| {
                    std::hint::black_box(d.search(&queries[i]));
                });
                stats[3].first.push(first);
                stats[3].first_p99.push(p99);
                stats[3].disk =
                    Some((disk_bytes(&direct_dir), disk_bytes(&direct_dir.join("wal"))));
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
            let loaded = Instant::now();
            // The first searches: sqlite makes its in-memory copy on the
            // first; qdrant-edge's first asks for the index build, which
            // runs in the background while these scan.
            let (first, p99) = first_searches(|i| {
                db.search("bench", &SearchRequest::new(queries[i].clone(), K))
                    .unwrap();
            });
            stats[v].first.push(first);
            stats[v].first_p99.push(p99);
            if v == 2 {
                // The query rounds measure the index: wait for it.
                while db.health().unwrap().detail.contains("index build") {
                    std::thread::sleep(Duration::from_millis(50));
                }
                stats[v].build.push(loaded.elapsed());
            }
            stats[v].disk = match v {
                0 => Some((disk_files(&scratch.path("vec.db")), 0)),
                2 => {
                    let dir = scratch.path("qdrant").join("bench");
                    Some((disk_bytes(&dir), disk_bytes(&dir.join("wal"))))
                }
                _ => None,
            };
        }
    }

    let chunks = 10;
    let per = QUERIES / chunks;
    let stats = RefCell::new(stats);
    let recall = |v: usize, qi: usize, got: &[usize], took: Duration| {
        stats.borrow_mut()[v].searched.record(&truth[qi], got, took);
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
            timed_searches(
                &queries[c * per..(c + 1) * per],
                c * per,
                |q| d.search(q),
                |got| got,
                |qi, got, took| recall(3, qi, got, took),
            );
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
    let host_vs_direct = median_ratio(&totals[at[3]], &totals[at[2]]);

    let stats = stats.into_inner();
    table.push(format!(
        "\n{n} {} vectors x {DIM}, {QUERIES} queries, top-{K}, cosine; qdrant-edge hnsw_m={} hnsw_ef_construct={} hnsw_ef={}; {load_rounds} load round(s), {rounds} query round(s)\n",
        if clustered { "clustered" } else { "uniformly random" },
        h.m,
        h.ef_construct,
        h.ef
    ));
    table.push(
        format!("| variant | upsert vectors/s | index build | first search | p99 of the first {FIRST} searches | on disk (of it wal/) | queries/s | p50 | p99 | recall@10 | query throughput vs direct |"),
    );
    table.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".into());
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
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        table.push(format!(
            "| {name} | {:.0} | {} | {:.2} ms | {:.2} ms | {} | {:.0} | {} | {:.3} | {} |",
            n as f64 / median(s.upsert.clone()).as_secs_f64(),
            if s.build.is_empty() {
                "none".to_string()
            } else {
                format!("{:.2} s", median(s.build.clone()).as_secs_f64())
            },
            median(s.first.clone()).as_secs_f64() * 1e3,
            median(s.first_p99.clone()).as_secs_f64() * 1e3,
            match s.disk {
                None => "in memory".to_string(),
                Some((all, 0)) => format!("{:.0} MiB", mib(all)),
                Some((all, wal)) => format!("{:.0} MiB ({:.0} MiB)", mib(all), mib(wal)),
            },
            qps(at[si]),
            s.searched.latency_cells(),
            s.searched.recall(),
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
        let mut s = Searched {
            latencies: Vec::with_capacity(QUERIES),
            found: 0,
        };
        let t = Instant::now();
        for (qi, q) in queries.iter().enumerate() {
            let t = Instant::now();
            let got = d.search(q);
            s.record(&truth[qi], &got, t.elapsed());
        }
        let total = t.elapsed();
        table.push(format!(
            "| {ef} | {:.0} | {} | {:.3} |",
            QUERIES as f64 / total.as_secs_f64(),
            s.latency_cells(),
            s.recall()
        ));
    }
}
