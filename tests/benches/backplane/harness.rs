//! What the groups share: the seeded RNG, medians and ratios, the round
//! loop and the result table, settings read from the environment, where
//! files go and how a `Storage` is opened, the relational rows and their
//! checksum, and the vector search pieces (ground truth, timed searches,
//! recall and latency) of the `vector` and `qdrant` groups.

use backplane_behavior::Scratch;
use backplane_host::{params, Params, SearchRequest, Storage, Value, VectorRecord};
use std::time::{Duration, Instant};

/// Rows per transaction of the relational and postgres inserts.
pub const TX_SIZE: usize = 1_000;
/// The vector collection's size, unless `BENCH_VECTORS` says otherwise.
pub const VECTORS: usize = 100_000;
pub const DIM: usize = 384;
pub const QUERIES: usize = 1_000;
pub const K: usize = 10;

/// The plugin libraries of the relational, vector and qdrant groups.
pub const PLUGINS: [&str; 4] = [
    "backplane_plugin_sqlite",
    "backplane_plugin_memory",
    "backplane_plugin_qdrant_edge",
    "backplane_plugin_qdrant",
];

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    pub fn vector(&mut self) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM).map(|_| self.unit()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
    /// 0..n in a shuffled order.
    pub fn order(&mut self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        for j in (1..n).rev() {
            order.swap(j, (self.next() % (j as u64 + 1)) as usize);
        }
        order
    }
}

/// The environment variable `key` as a `T`, or `default` when it is unset
/// or does not parse.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The middle value of `v` (the upper one of the two middles for an even
/// count): times over rounds, or the soak's memory samples.
pub fn median<T: Ord + Copy>(mut v: Vec<T>) -> T {
    v.sort_unstable();
    v[v.len() / 2]
}

/// The median over rounds of `a`'s time divided by `b`'s time in the same
/// round.
pub fn median_ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let mut r: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The bytes on disk (allocated blocks, not lengths: qdrant-edge's files
/// are created large and sparse) of `path`, a file or a folder at any
/// depth; 0 if it is not there.
pub fn disk_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !m.is_dir() {
        return m.blocks() * 512;
    }
    std::fs::read_dir(path)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| disk_bytes(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// A multi-thread tokio runtime with `workers` worker threads.
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

/// Run `body(t)` for t in 0..tasks as tokio tasks on `rt`, and wait for
/// all of them: their outputs, in task order.
pub fn spawn_tasks<T, F>(
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

/// Run `body(t)` for each of `tasks` tasks: one task on the
/// current-thread runtime `rt`, more as tokio tasks on `mrt`. Their
/// outputs, in task order.
pub fn on_tasks<T, F>(
    rt: &tokio::runtime::Runtime,
    mrt: &tokio::runtime::Runtime,
    tasks: usize,
    body: impl Fn(usize) -> F,
) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    if tasks == 1 {
        vec![rt.block_on(body(0))]
    } else {
        spawn_tasks(mrt, tasks, body)
    }
}

pub struct Row {
    pub group: &'static str,
    pub work: &'static str,
    pub variant: String,
    pub median: Duration,
    pub ops: usize,
    /// Median over rounds of (this variant's time / the baseline's time).
    pub ratio: Option<f64>,
}

pub fn print_table(rows: &[Row]) {
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
pub struct Variant<'a> {
    pub name: &'static str,
    pub reset: Box<dyn FnMut() + 'a>,
    pub run: Box<dyn FnMut(usize) + 'a>,
}

/// Run every variant over `chunks` chunks per round, interleaved chunk by
/// chunk (in a shuffled order), so that drift on a shared machine hits all
/// variants alike. Rows: per-round totals; ratios against the first variant.
pub fn interleaved(
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
    // `BENCH_ONLY`: for a profile, run only the variants whose "work /
    // variant" contains one of its `;`-separated parts, or ends with one
    // that ends in `$` (rows of the others are left out, and ratios need
    // the baseline among those run).
    let only = std::env::var("BENCH_ONLY").ok();
    let runs = |v: &Variant<'_>| {
        only.as_deref().is_none_or(|o| {
            let name = format!("{work} / {}", v.name);
            o.split(';').any(|part| match part.strip_suffix('$') {
                Some(end) => name.ends_with(end),
                None => name.contains(part),
            })
        })
    };
    let run: Vec<bool> = variants.iter().map(runs).collect();
    if !run.iter().any(|&r| r) {
        return totals;
    }
    for round in 0..rounds {
        eprintln!("{group}: {work}, round {}/{rounds}", round + 1);
        for v in variants.iter_mut() {
            (v.reset)();
        }
        let mut acc = vec![Duration::ZERO; n];
        for chunk in 0..chunks {
            // A fresh order every time, so no variant always follows the
            // same other one (a heavy writer slows whoever runs next).
            for i in shuffle.order(n).into_iter().filter(|&i| run[i]) {
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
    for (i, v) in variants.iter().enumerate().filter(|&(i, _)| run[i]) {
        let ratio = (i > 0 && run[0]).then(|| median_ratio(&totals[i], &totals[0]));
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

/// Where the benchmark's files go: tmpfs when there is one, so that the
/// disk's flushes (which land on whichever variant runs next) stay out of
/// a comparison of CPU work. Both sides always use the same place.
pub fn bench_dir() -> Scratch {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        Scratch::under(shm)
    } else {
        Scratch::new()
    }
}

/// A `Storage` opened from a `plugins.toml` under `scratch` that loads the
/// plugin libraries `libs` (crate names) and holds the store sections
/// `body`.
pub fn open(scratch: &Scratch, libs: &[&str], body: &str) -> Storage {
    Storage::open(write_config(scratch, libs, body)).unwrap()
}

/// The `plugins.toml` [`open`] reads.
pub fn write_config(scratch: &Scratch, libs: &[&str], body: &str) -> std::path::PathBuf {
    backplane_behavior::plugins_toml(scratch, libs, body)
}

/// The host's parameters for the rows `keys` of the table
/// (id, name, score).
pub fn rows(keys: std::ops::Range<usize>) -> Vec<Params> {
    keys.map(|i| params![i as i64, format!("user-{i}"), i as f64 * 0.5])
        .collect()
}

/// What every variant adds up for a row (id, name, score) it reads.
pub fn checksum(id: i64, name: &str, score: f64) -> i64 {
    id + name.len() as i64 + score as i64
}

/// Read a row of (id, name, score) into Rust types, as the direct variant does.
pub fn row_sum(r: &[Value]) -> i64 {
    match (&r[0], &r[1], &r[2]) {
        (Value::Integer(i), Value::Text(n), Value::Real(s)) => checksum(*i, n, *s),
        other => panic!("unexpected row {other:?}"),
    }
}

/// Check that every variant's checksum is the same.
pub fn assert_same(sums: &[i64]) {
    // Under `BENCH_ONLY`, variants that did not run read nothing.
    let skipped = |x: &i64| *x == 0 && std::env::var_os("BENCH_ONLY").is_some();
    let ran: Vec<i64> = sums.iter().copied().filter(|x| !skipped(x)).collect();
    assert!(
        ran.windows(2).all(|w| w[0] == w[1]),
        "every variant read the same data: {sums:?}"
    );
}

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

/// The floor: an exact top-k cosine scan over a flat `Vec<f32>`.
pub fn exact_top(flat: &[f32], norms: &[f32], q: &[f32]) -> Vec<(f32, usize)> {
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

/// A vector group's data: the vectors, the queries, the vectors laid out
/// flat with their norms (for the exact scan), and every query's exact
/// top `K` (the numbers of the vectors).
pub struct VectorData {
    pub data: Vec<Vec<f32>>,
    pub queries: Vec<Vec<f32>>,
    pub flat: Vec<f32>,
    pub norms: Vec<f32>,
    pub truth: Vec<Vec<usize>>,
}

impl VectorData {
    /// `n` vectors, then `QUERIES` queries, each drawn by `draw` from
    /// `rng`; `group` names the progress line.
    pub fn new(
        group: &str,
        n: usize,
        rng: &mut Rng,
        mut draw: impl FnMut(&mut Rng) -> Vec<f32>,
    ) -> VectorData {
        let data: Vec<Vec<f32>> = (0..n).map(|_| draw(rng)).collect();
        let queries: Vec<Vec<f32>> = (0..QUERIES).map(|_| draw(rng)).collect();
        let flat: Vec<f32> = data.iter().flatten().copied().collect();
        let norms: Vec<f32> = data.iter().map(|v| dot(v, v).sqrt()).collect();
        eprintln!("{group}: exact top-{K} of {QUERIES} queries over {n} vectors (ground truth)");
        let truth = ground_truth(&flat, &norms, &queries);
        VectorData {
            data,
            queries,
            flat,
            norms,
            truth,
        }
    }
}

/// The vector groups' data, as `BENCH_VECTOR_DATA` asks: `n` uniformly
/// random normalised vectors, or (`clustered`) points scattered around
/// 1,000 random centres (each component of a centre perturbed by ±0.06,
/// then normalised: closer to how real embeddings lie). The same seed in
/// every group, so every group searches the same vectors. Also: whether
/// the data is clustered.
pub fn vector_data(group: &str, n: usize) -> (VectorData, bool) {
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
    (VectorData::new(group, n, &mut rng, draw), clustered)
}

/// The host's records for the `b`th batch of vectors: ids `v<n>`.
pub fn batch_records(b: usize, chunk: &[Vec<f32>]) -> Vec<VectorRecord> {
    chunk
        .iter()
        .enumerate()
        .map(|(i, v)| VectorRecord::new(format!("v{}", b * 1000 + i), v.clone()))
        .collect()
}

/// What a variant's searches measured: every query's latency, and how many
/// of the hits were among the exact top `K`.
#[derive(Default)]
pub struct Searched {
    pub latencies: Vec<Duration>,
    pub found: usize,
}

impl Searched {
    /// One query: the numbers of its hits `got`, against its exact top
    /// `K` `truth`, and its latency.
    pub fn record(&mut self, truth: &[usize], got: &[usize], took: Duration) {
        self.latencies.push(took);
        self.found += got.iter().filter(|i| truth.contains(i)).count();
    }

    /// Recall@K: the relevant hits found over those asked for.
    pub fn recall(&self) -> f64 {
        self.found as f64 / (self.latencies.len() * K) as f64
    }

    /// The p50 and p99 cells of a table row.
    pub fn latency_cells(&self) -> String {
        let mut lat = self.latencies.clone();
        lat.sort();
        format!(
            "{:.2} ms | {:.2} ms",
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3
        )
    }
}

/// Run the queries `qs` (numbered from `first`) one after another: time
/// each `search`, turn its answer into the numbers of the hits with `ids`
/// (untimed), check there are `K`, and hand `record` the query's number,
/// those numbers and the latency.
pub fn timed_searches<R>(
    qs: &[Vec<f32>],
    first: usize,
    mut search: impl FnMut(&[f32]) -> R,
    ids: impl Fn(R) -> Vec<usize>,
    mut record: impl FnMut(usize, &[usize], Duration),
) {
    for (i, q) in qs.iter().enumerate() {
        let t = Instant::now();
        let answer = search(q);
        let took = t.elapsed();
        let got = ids(answer);
        assert_eq!(got.len(), K);
        record(first + i, &got, took);
    }
}

/// `timed_searches` on `db`'s collection "bench", top-K each, the hits'
/// ids `v<n>`.
pub fn host_searches(
    db: &dyn backplane_host::traits::Vector,
    qs: &[Vec<f32>],
    first: usize,
    record: impl FnMut(usize, &[usize], Duration),
) {
    timed_searches(
        qs,
        first,
        |q| {
            db.search("bench", &SearchRequest::new(q.to_vec(), K))
                .unwrap()
        },
        |hits| hits.iter().map(|h| h.id[1..].parse().unwrap()).collect(),
        record,
    );
}
