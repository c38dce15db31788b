//! `soak` (only when named: `cargo bench -p backplane-behavior -- soak`):
//! a bounded load of mixed operations on a store of every shipped backend
//! at once, with the servers stopped and started again during it, to show
//! that nothing crashes, nothing fails but what meets a server that is
//! down, and memory and file descriptors stay flat.
//!
//! - Stores: relational on sqlite, duckdb and postgres; cache on memory,
//!   sqlite, redis and files (a folder); vector on memory, sqlite,
//!   qdrant-edge and chroma; graph on memory, sqlite, postgres and files
//!   on Azure Blob Storage (Azurite). The servers are the harness's own,
//!   on free loopback ports: redis-server, a PostgreSQL cluster, a Chroma
//!   server and Azurite (a store whose server cannot start here is left
//!   out, saying so).
//! - Work: `BENCH_SOAK_THREADS` threads (default 4) go round the stores;
//!   each visit is a few calls of the store's capability (an upsert and a
//!   point select; set, get, a message and the recent ones; an upsert and
//!   a search; a node, an edge to the thread's previous node, a 2-hop
//!   walk, and the deletion of its oldest nodes beyond 500), on bounded
//!   key spaces, so what a store holds stops growing. A graph node whose
//!   deletion fails (its server is down) is deleted at a later visit: an
//!   outage does not leave nodes behind (it did before, which made the
//!   graph on Azurite grow by about 2,000 nodes, 1 MiB of memory, per
//!   outage).
//! - Outages: every `BENCH_SOAK_OUTAGE_EVERY` seconds (default 120) the
//!   next server in turn is stopped for 10 s, then started again (Redis
//!   comes back empty; the others keep their data).
//! - An error counts as expected when its store's server was down at any
//!   time from the call's start minus 5 s to 20 s after the server came
//!   back (calls in flight, reconnection); any other is unexpected.
//! - Before the clock starts, every key space is written once (rows,
//!   keys, vector ids, 50 full conversations), so the stores hold their
//!   bound from the first sample on. Relational stores then take
//!   `BENCH_SOAK_WARM_UPSERTS` (default 150,000) single-row upserts, one
//!   statement each as in a visit: DuckDB's memory in use rises by about
//!   20 MiB over its first ~120,000 upserts and then holds (measured on
//!   DuckDB alone, 10 minutes, 230,000 visits: 31 MiB at 20 s, 51 MiB at
//!   290 s, 50–52 MiB to 600 s, with checkpoints at 4 MiB or 16 MiB of
//!   log alike), more than the whole soak gives that store.
//! - Every 10 s: the process's resident memory (VmRSS), what malloc has
//!   handed out and not had back (glibc's `mallinfo2`), its open file
//!   descriptors and the calls so far. The report gives the first sample
//!   after a 2-minute warm-up, the last, and the range between, and the
//!   median of each third of the samples after the warm-up; with
//!   `BENCH_VERBOSE` every sample, with resident memory split into
//!   anonymous and file-backed pages and malloc's bytes taken from the
//!   system beside those in use. With `BENCH_SOAK_TRIM` set, glibc's
//!   `malloc_trim(0)` runs before each sample: malloc gives back the free
//!   memory it holds in every arena, so resident memory is then what is
//!   allocated and mapped, without what the allocator merely keeps.
//!
//! - qdrant-edge's write-ahead-log files are 4 MiB (`wal_segment_mb`;
//!   `BENCH_SOAK_EDGE_WAL_MB` sets another size): the file being written is
//!   memory-mapped and counts in resident memory until it is full, so at
//!   the default 32 MiB the process's memory rises by 31 MiB over about
//!   80,000 of that store's visits before falling back, longer than a run
//!   gives it.
//!
//! `BENCH_SOAK_SECS` (default 1200) sets the length; `BENCH_SOAK_STORES`
//! (store names, or parts of them, comma-separated) runs only those stores,
//! and starts only their servers.

use crate::harness::{env_or, median, Rng};
use backplane_behavior::servers::{
    chroma_available, redis_binaries_available, ChromaServer, ObjectKind, ObjectServer, PgServer,
    RedisServer, AZURITE_ACCOUNT, AZURITE_KEY,
};
use backplane_behavior::{plugins_toml, Scratch};
use backplane_host::{
    params, Direction, Distance, Message, NewEdge, NewNode, SearchRequest, Storage, VectorRecord,
};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const LIBS: [&str; 8] = [
    "backplane_plugin_sqlite",
    "backplane_plugin_memory",
    "backplane_plugin_qdrant_edge",
    "backplane_plugin_duckdb",
    "backplane_plugin_postgres",
    "backplane_plugin_redis",
    "backplane_plugin_chroma",
    "backplane_plugin_files",
];
const DIM: usize = 32;
/// Rows, cache keys and vector ids each store cycles through.
const KEYS: usize = 5000;
/// Graph nodes each thread keeps on each graph store.
const NODES: usize = 500;

/// The relational stores' write: one row, inserted or replaced.
const UPSERT: &str =
    "INSERT INTO soak (id, v) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET v = excluded.v";
/// How long a server stays down.
const DOWN: Duration = Duration::from_secs(10);
/// Errors this long before a stop and after a start count as the outage's.
const BEFORE: Duration = Duration::from_secs(5);
const AFTER: Duration = Duration::from_secs(20);

/// One store under load: its section name, capability, and the server it
/// needs (if any).
struct Store {
    name: &'static str,
    cap: &'static str,
    server: Option<&'static str>,
    calls: AtomicU64,
    expected: AtomicU64,
    unexpected: AtomicU64,
    first_unexpected: Mutex<Option<String>>,
}

/// When each server was down: (server, stopped at, started again at).
type Windows = Mutex<Vec<(&'static str, Instant, Option<Instant>)>>;

enum Server {
    Redis(RedisServer),
    Pg(PgServer),
    Chroma(ChromaServer),
    Azure(ObjectServer),
}

impl Server {
    fn name(&self) -> &'static str {
        match self {
            Server::Redis(_) => "redis",
            Server::Pg(_) => "postgres",
            Server::Chroma(_) => "chroma",
            Server::Azure(_) => "azurite",
        }
    }
    fn stop(&mut self) {
        match self {
            Server::Redis(r) => r.stop(),
            Server::Pg(p) => p.stop(),
            Server::Chroma(c) => c.stop(),
            Server::Azure(a) => a.stop(),
        }
    }
    fn start(&mut self) {
        match self {
            Server::Redis(r) => *r = RedisServer::start(r.port),
            Server::Pg(p) => p.start_again(),
            Server::Chroma(c) => c.restart(),
            Server::Azure(a) => a.restart(),
        }
    }
}

/// One sample: (seconds, resident KiB, descriptors, visits, malloc in use
/// KiB, where resident memory is).
type Sample = (u64, u64, usize, u64, u64, String);

/// The process and the stores, `at` into the run. One read of
/// /proc/self/status and one call of `mallinfo2` serve the whole sample.
fn sample(at: Duration, stores: &[Store]) -> Sample {
    if std::env::var_os("BENCH_SOAK_TRIM").is_some() {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only returns free memory to the
        // system; it may be called from any thread at any time.
        unsafe { malloc_trim(0) };
    }
    let calls: u64 = stores.iter().map(|s| s.calls.load(Ordering::Relaxed)).sum();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |field: &str| status_kb(&status, field);
    // What malloc has taken from the system (in use or kept on its free
    // lists) and what it has handed out and not had back: a leak shows in
    // the second, while resident memory can also grow from free lists.
    let (from_system, in_use) = mallinfo();
    (
        at.as_secs(),
        kb("VmRSS"),
        fds(),
        calls,
        in_use,
        // Where resident memory is, for the verbose samples: anonymous
        // memory (the heap) and file-backed pages (memory-mapped files).
        format!(
            "anon {} KiB, file {} KiB, malloc from the system {from_system} KiB",
            kb("RssAnon"),
            kb("RssFile"),
        ),
    )
}

/// A field of /proc/self/status in KiB (`VmRSS`, `RssAnon`, `RssFile`).
fn status_kb(status: &str, field: &str) -> u64 {
    status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// glibc's `mallinfo2` in KiB: (taken from the system, in use).
fn mallinfo() -> (u64, u64) {
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    extern "C" {
        fn mallinfo2() -> Mallinfo2;
    }
    // SAFETY: glibc's mallinfo2 takes nothing and returns a plain struct.
    let m = unsafe { mallinfo2() };
    (
        ((m.arena + m.hblkhd) / 1024) as u64,
        ((m.uordblks + m.hblkhd) / 1024) as u64,
    )
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

pub fn group(notes: &mut Vec<String>) {
    let secs: u64 = env_or("BENCH_SOAK_SECS", 1200);
    let every: u64 = env_or("BENCH_SOAK_OUTAGE_EVERY", 120);
    let threads: usize = env_or("BENCH_SOAK_THREADS", 4);
    // BENCH_SOAK_STORES: a comma-separated list of store names (or parts of
    // them) to run alone, to tell which store's memory grows.
    let only: Option<Vec<String>> = std::env::var("BENCH_SOAK_STORES")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let want = |n: &str| {
        only.as_ref()
            .is_none_or(|o| o.iter().any(|x| !x.is_empty() && n.contains(x.as_str())))
    };
    let scratch = Scratch::new();
    let dir = |n: &str| scratch.path(n).display().to_string();

    // The servers, and the sections of the stores on them.
    let mut servers: Vec<Server> = Vec::new();
    let mut body = String::new();
    let mut stores: Vec<Store> = Vec::new();
    let mut add =
        |name: &'static str, cap: &'static str, server: Option<&'static str>, section: String| {
            if !want(name) {
                return;
            }
            body.push_str(&format!("[{cap}.{name}]\n{section}\n\n"));
            stores.push(Store {
                name,
                cap,
                server,
                calls: AtomicU64::new(0),
                expected: AtomicU64::new(0),
                unexpected: AtomicU64::new(0),
                first_unexpected: Mutex::new(None),
            });
        };
    add(
        "rel_sqlite",
        "relational",
        None,
        format!("backend = \"sqlite\"\npath = \"{}\"", dir("rel.db")),
    );
    add(
        "rel_duckdb",
        "relational",
        None,
        format!("backend = \"duckdb\"\npath = \"{}\"", dir("rel.duckdb")),
    );
    add(
        "c_memory",
        "cache",
        None,
        "backend = \"memory\"\nmax_messages = 100".into(),
    );
    add(
        "c_sqlite",
        "cache",
        None,
        format!(
            "backend = \"sqlite\"\npath = \"{}\"\nmax_messages = 100",
            dir("cache.db")
        ),
    );
    add(
        "c_files",
        "cache",
        None,
        format!(
            "backend = \"files\"\nroot = \"{}\"\nmax_messages = 100",
            dir("cache-files")
        ),
    );
    add("v_memory", "vector", None, "backend = \"memory\"".into());
    add(
        "v_sqlite",
        "vector",
        None,
        format!("backend = \"sqlite\"\npath = \"{}\"", dir("vec.db")),
    );
    add(
        "v_qdrant_edge",
        "vector",
        None,
        format!(
            "backend = \"qdrant-edge\"\npath = \"{}\"\nwal_segment_mb = {}",
            dir("vec-edge"),
            env_or("BENCH_SOAK_EDGE_WAL_MB", 4)
        ),
    );
    add("g_memory", "graph", None, "backend = \"memory\"".into());
    add(
        "g_sqlite",
        "graph",
        None,
        format!("backend = \"sqlite\"\npath = \"{}\"", dir("kg.db")),
    );
    if want("c_redis") && redis_binaries_available("the soak's redis store") {
        let r = RedisServer::start(backplane_behavior::servers::free_port());
        add("c_redis", "cache", Some("redis"), format!(
            "backend = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"\nmax_messages = 100\nconnect_timeout_ms = 1000\ntimeout_ms = 2000",
            r.port
        ));
        servers.push(Server::Redis(r));
    }
    let pg = (want("rel_pg") || want("g_pg"))
        .then(|| PgServer::start("the soak's postgres stores", None))
        .flatten();
    if let Some(pg) = pg {
        let url = pg.url();
        add(
            "rel_pg",
            "relational",
            Some("postgres"),
            format!(
            "backend = \"postgres\"\nurl = \"{url}\"\nconnect_timeout = \"1s\"\ntimeout = \"5s\""
        ),
        );
        add("g_pg", "graph", Some("postgres"), format!(
            "backend = \"postgres\"\nurl = \"{url}\"\nschema = \"soak_graph\"\nconnect_timeout = \"1s\"\ntimeout = \"5s\""
        ));
        servers.push(Server::Pg(pg));
    }
    if want("v_chroma") && chroma_available("the soak's chroma store") {
        let c = ChromaServer::start(&scratch.path("chroma"));
        add(
            "v_chroma",
            "vector",
            Some("chroma"),
            format!(
                "backend = \"chroma\"\nurl = \"{}\"\ntimeout_ms = 5000\nconnect_timeout_ms = 1000",
                c.url()
            ),
        );
        servers.push(Server::Chroma(c));
    }
    if want("g_files_azure")
        && ObjectServer::available(ObjectKind::Azure, "the soak's files store on Azurite")
    {
        let a = ObjectServer::start(ObjectKind::Azure, &scratch.path("azurite"));
        a.create_bucket("soak");
        std::fs::write(scratch.path("azure.key"), AZURITE_KEY).unwrap();
        add("g_files_azure", "graph", Some("azurite"), format!(
            "backend = \"files\"\nroot = \"azblob://soak/kg\"\nendpoint = \"{}\"\naccount_name = \"{AZURITE_ACCOUNT}\"\naccount_key_file = \"azure.key\"\nconnect_timeout_ms = 500\ntimeout_ms = 5000",
            a.endpoint()
        ));
        servers.push(Server::Azure(a));
    }
    let file = plugins_toml(&scratch, &LIBS, &body);
    let storage = Storage::open(&file).unwrap_or_else(|e| panic!("open the soak's stores: {e}"));
    for s in &stores {
        match s.cap {
            "relational" => {
                storage
                    .relational(s.name)
                    .unwrap()
                    .blocking()
                    .execute(
                        "CREATE TABLE IF NOT EXISTS soak (id BIGINT PRIMARY KEY, v TEXT NOT NULL)",
                        &backplane_host::Params::None,
                    )
                    .unwrap();
            }
            "vector" => {
                let _ = storage
                    .vector(s.name)
                    .unwrap()
                    .blocking()
                    .create_collection("soak", DIM as u32, Distance::Cosine);
            }
            _ => {}
        }
    }

    // Every key space written once before the clock starts, so what the
    // stores hold is at its bound from the first sample on and memory
    // that still grows is not the data filling in.
    let fill = Instant::now();
    // One thread per store: the warm-up upserts of a slow store do not
    // wait for the others'.
    std::thread::scope(|scope| {
        for (i, s) in stores.iter().enumerate() {
            let storage = &storage;
            scope.spawn(move || {
                prefill(storage, s, &mut Rng(7 + i as u64))
                    .unwrap_or_else(|e| panic!("fill {} before the soak: {e}", s.name))
            });
        }
    });
    println!(
        "soak: key spaces filled in {:.0} s",
        fill.elapsed().as_secs_f64()
    );
    let stores = Arc::new(stores);
    let windows: Arc<Windows> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    println!(
        "soak: {} stores, {} servers, {threads} threads, {secs} s, an outage every {every} s",
        stores.len(),
        servers.len()
    );

    // The load.
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (storage, stores, windows, stop) = (
                storage.clone(),
                stores.clone(),
                windows.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t as u64 + 1));
                let mut seq = 0u64;
                // This thread's graph nodes on each store, oldest first.
                let mut nodes: Vec<VecDeque<String>> = vec![VecDeque::new(); stores.len()];
                while !stop.load(Ordering::Relaxed) {
                    for (s, nodes) in stores.iter().zip(nodes.iter_mut()) {
                        seq += 1;
                        let at = Instant::now();
                        let r = visit(&storage, s, t, seq, &mut rng, nodes);
                        s.calls.fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = r {
                            let expected = s.server.is_some_and(|name| {
                                windows.lock().unwrap().iter().any(|(w, down, up)| {
                                    *w == name
                                        && at + BEFORE >= *down
                                        && up.is_none_or(|up| at <= up + AFTER)
                                })
                            });
                            if expected {
                                s.expected.fetch_add(1, Ordering::Relaxed);
                            } else {
                                s.unexpected.fetch_add(1, Ordering::Relaxed);
                                let mut first = s.first_unexpected.lock().unwrap();
                                if first.is_none() {
                                    *first = Some(format!(
                                        "{:.0} s: {e}",
                                        at.duration_since(started).as_secs_f64()
                                    ));
                                }
                            }
                        }
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                    }
                }
            })
        })
        .collect();

    // Outages and samples, on this thread.
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = started;
    let mut next_outage = started + Duration::from_secs(every);
    let mut turn = 0;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_sample {
            samples.push(sample(now.duration_since(started), &stores));
            next_sample += Duration::from_secs(10);
        }
        if now >= next_outage && !servers.is_empty() && now + DOWN + AFTER < end {
            let n = servers.len();
            let s = &mut servers[turn % n];
            turn += 1;
            let name = s.name();
            windows.lock().unwrap().push((name, Instant::now(), None));
            s.stop();
            std::thread::sleep(DOWN);
            s.start();
            if let Some(w) = windows.lock().unwrap().last_mut() {
                w.2 = Some(Instant::now());
            }
            println!(
                "soak: {name} down at {:.0} s for {:.0} s",
                now.duration_since(started).as_secs_f64(),
                Instant::now().duration_since(now).as_secs_f64()
            );
            next_outage += Duration::from_secs(every);
            continue;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a soak worker panicked");
    }
    samples.push(sample(started.elapsed(), &stores));
    storage.shutdown();

    // The report.
    let outages = windows.lock().unwrap().clone();
    notes.push(format!(
        "\nsoak: {secs} s, {threads} threads, {} stores, {} outages of {} s ({})",
        stores.len(),
        outages.len(),
        DOWN.as_secs(),
        outages
            .iter()
            .map(|(n, d, _)| format!("{n} at {} s", d.duration_since(started).as_secs()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    notes.push("\n| store | capability | server | visits | failed while its server was down | failed otherwise |".into());
    notes.push("|---|---|---|---:|---:|---:|".into());
    for s in stores.iter() {
        notes.push(format!(
            "| {} | {} | {} | {} | {} | {} |",
            s.name,
            s.cap,
            s.server.unwrap_or("-"),
            s.calls.load(Ordering::Relaxed),
            s.expected.load(Ordering::Relaxed),
            s.unexpected.load(Ordering::Relaxed)
        ));
        if let Some(e) = s.first_unexpected.lock().unwrap().as_ref() {
            notes.push(format!("  first unexpected failure of {}: {e}", s.name));
        }
    }
    let warm: Vec<_> = samples
        .iter()
        .filter(|s| s.0 >= 120.min(secs / 2))
        .collect();
    if let (Some(first), Some(last)) = (warm.first(), warm.last()) {
        let (rmin, rmax) = (
            warm.iter().map(|s| s.1).min().unwrap(),
            warm.iter().map(|s| s.1).max().unwrap(),
        );
        let (fmin, fmax) = (
            warm.iter().map(|s| s.2).min().unwrap(),
            warm.iter().map(|s| s.2).max().unwrap(),
        );
        notes.push(format!(
            "\nsoak samples every 10 s after warm-up ({} samples, {} s → {} s): resident memory {} MiB → {} MiB (range {}–{} MiB); malloc in use {} MiB → {} MiB; open file descriptors {} → {} (range {}–{}); visits {} → {}",
            warm.len(),
            first.0,
            last.0,
            first.1 / 1024,
            last.1 / 1024,
            rmin / 1024,
            rmax / 1024,
            first.4 / 1024,
            last.4 / 1024,
            first.2,
            last.2,
            fmin,
            fmax,
            first.3,
            last.3
        ));
        // Flat or rising: the median of each third of the warm samples, so
        // one outage's spike does not decide it.
        let thirds = |field: fn(&Sample) -> u64| -> String {
            let n = warm.len().div_ceil(3).max(1);
            warm.chunks(n)
                .map(|c| {
                    let kb = median(c.iter().map(|s| field(s)).collect());
                    format!("{:.1}", kb as f64 / 1024.0)
                })
                .collect::<Vec<_>>()
                .join(" / ")
        };
        notes.push(format!(
            "soak medians per third of the warm samples: resident memory {} MiB; malloc in use {} MiB",
            thirds(|s| s.1),
            thirds(|s| s.4),
        ));
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        for s in &samples {
            notes.push(format!(
                "  sample {} s: rss {} KiB, malloc in use {} KiB, fds {}, visits {} ({})",
                s.0, s.1, s.4, s.2, s.3, s.5
            ));
        }
    }
}

/// Write every key of `s`'s key space once (graphs reach their bound on
/// their own within a minute: each thread keeps its last `NODES` nodes).
fn prefill(storage: &Storage, s: &Store, rng: &mut Rng) -> backplane_host::Result<()> {
    match s.cap {
        "relational" => {
            let sets: Vec<backplane_host::Params> = (0..KEYS as i64)
                .map(|k| params![k, format!("value {k}")])
                .collect();
            storage
                .relational(s.name)?
                .blocking()
                .execute_many(UPSERT, &sets)?;
            let warm: u64 = env_or("BENCH_SOAK_WARM_UPSERTS", 150_000);
            let db = storage.relational(s.name)?;
            let db = db.blocking();
            for i in 0..warm {
                db.execute(
                    UPSERT,
                    &params![
                        (rng.next() % KEYS as u64) as i64,
                        format!("value {i} of the warm-up")
                    ],
                )?;
            }
        }
        "cache" => {
            let c = storage.cache(s.name)?;
            let c = c.blocking();
            let entries: Vec<(String, Vec<u8>)> = (0..KEYS)
                .map(|k| (format!("k{k}"), vec![b'x'; 256]))
                .collect();
            for chunk in entries.chunks(500) {
                c.set_many(chunk, Some(Duration::from_secs(600)))?;
            }
            for ch in 0..50 {
                let msgs: Vec<Message> = (0..100)
                    .map(|i| Message::new("user", format!("message {i}")))
                    .collect();
                c.add_messages(&format!("chat{ch}"), &msgs)?;
            }
        }
        "vector" => {
            let v = storage.vector(s.name)?;
            let records: Vec<VectorRecord> = (0..KEYS)
                .map(|k| {
                    VectorRecord::new(format!("r{k}"), (0..DIM).map(|_| rng.unit()).collect())
                        .with_payload(json!({"t": 0, "seq": 0}))
                })
                .collect();
            for chunk in records.chunks(500) {
                v.blocking().upsert("soak", chunk)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One visit of thread `t` to store `s`; `nodes` are the graph nodes this
/// thread made on `s` and has not deleted yet, oldest first.
fn visit(
    storage: &Storage,
    s: &Store,
    t: usize,
    seq: u64,
    rng: &mut Rng,
    nodes: &mut VecDeque<String>,
) -> backplane_host::Result<()> {
    let key = rng.next() % KEYS as u64;
    match s.cap {
        "relational" => {
            let db = storage.relational(s.name)?;
            let db = db.blocking();
            db.execute(
                UPSERT,
                &params![key as i64, format!("value {seq} of thread {t}")],
            )?;
            db.query("SELECT v FROM soak WHERE id = ?", &params![key as i64])?;
        }
        "cache" => {
            let c = storage.cache(s.name)?;
            let c = c.blocking();
            c.set(
                &format!("k{key}"),
                &[b'x'; 256],
                Some(Duration::from_secs(600)),
            )?;
            c.get(&format!("k{}", rng.next() % KEYS as u64))?;
            let ch = format!("chat{}", key % 50);
            c.add_message(&ch, &Message::new("user", format!("message {seq}")))?;
            c.recent(&ch, 10, None)?;
        }
        "vector" => {
            let v = storage.vector(s.name)?;
            let v = v.blocking();
            let vector: Vec<f32> = (0..DIM).map(|_| rng.unit()).collect();
            v.upsert(
                "soak",
                &[VectorRecord::new(format!("r{key}"), vector.clone())
                    .with_payload(json!({"t": t, "seq": seq}))],
            )?;
            v.search("soak", &SearchRequest::new(vector, 5))?;
        }
        _ => {
            let g = storage.graph(s.name)?;
            let g = g.blocking();
            // The oldest nodes beyond the bound go first; one whose delete
            // fails (its server is down) stays in the queue and is deleted
            // at a later visit, so outages do not leave nodes behind.
            while nodes.len() >= NODES {
                g.delete_node(&nodes[0])?;
                nodes.pop_front();
            }
            let id = format!("t{t}-{seq}");
            g.create_nodes(&[NewNode::new("n", json!({"seq": seq})).with_id(id.clone())])?;
            let prev = nodes.back().cloned();
            nodes.push_back(id.clone());
            if let Some(prev) = prev {
                g.create_edges(&[NewEdge::new(id.clone(), prev, "next")])?;
            }
            g.neighbors(&id, Direction::Both, &[], 2)?;
        }
    }
    Ok(())
}
