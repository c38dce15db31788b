//! kill -9 during writes, on every backend that persists on this machine
//! without a server: a child process writes records one by one and prints
//! the id of each write its store acknowledged; the test kills it with
//! SIGKILL at a random moment, many times, and after each kill opens the
//! store again and checks that every acknowledged write is there and that
//! the files open cleanly (sqlite, duckdb, qdrant-edge, faiss, and the
//! JSON files of the files backend: a file replaced while the process is
//! killed is the old one or the new one, never part of one).
//!
//! The child is this test binary run again with `BP_KILL9_CHILD` naming
//! the backend and capability; it writes until it is killed, starting at
//! the first write not acknowledged (which the kill may have left written:
//! each write can be repeated). The memory backend keeps nothing across a
//! process, so it has no case; the server backends have their own fault
//! tests.

use backplane_behavior::{plugins_toml, Scratch};
use backplane_host::{Message, Params, Storage, VectorRecord};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The stores a case writes to: (case, library crate, section).
const CASES: &[(&str, &str, &str)] = &[
    (
        "sqlite-relational",
        "backplane_plugin_sqlite",
        "[relational.s]\nbackend = \"sqlite\"\npath = \"data/s.db\"\n",
    ),
    (
        "sqlite-cache",
        "backplane_plugin_sqlite",
        "[cache.s]\nbackend = \"sqlite\"\npath = \"data/c.db\"\nmax_messages = 1000000\n",
    ),
    (
        "sqlite-vector",
        "backplane_plugin_sqlite",
        "[vector.s]\nbackend = \"sqlite\"\npath = \"data/v.db\"\n",
    ),
    (
        "duckdb-relational",
        "backplane_plugin_duckdb",
        "[relational.s]\nbackend = \"duckdb\"\npath = \"data/s.duckdb\"\n",
    ),
    (
        "qdrant-edge-vector",
        "backplane_plugin_qdrant_edge",
        "[vector.s]\nbackend = \"qdrant-edge\"\npath = \"data/q\"\n",
    ),
    // An index file written every 7 writes: a kill leaves it behind
    // records.db by 0 to 6 writes, and reopening brings it up to date.
    (
        "faiss-vector",
        "backplane_plugin_faiss",
        "[vector.s]\nbackend = \"faiss\"\npath = \"data/f\"\nindex = \"hnsw\"\nsave_every = 7\n",
    ),
    (
        "files-cache",
        "backplane_plugin_files",
        "[cache.s]\nbackend = \"files\"\nroot = \"data/c\"\nmax_messages = 1000000\n",
    ),
    (
        "files-graph",
        "backplane_plugin_files",
        "[graph.s]\nbackend = \"files\"\nroot = \"data/g\"\n",
    ),
];

/// Node `i` of the files-graph case.
fn node(i: u64) -> backplane_host::Node {
    backplane_host::Node {
        id: format!("n{i}"),
        label: "step".into(),
        properties: serde_json::json!({"i": i, "text": format!("step number {i}")}),
    }
}

/// Edge `i` of the files-graph case: from node `i - 1` to node `i`.
fn edge(i: u64) -> backplane_host::Edge {
    backplane_host::Edge {
        id: format!("e{i}"),
        from: format!("n{}", i - 1),
        to: format!("n{i}"),
        edge_type: "next".into(),
        properties: serde_json::json!({}),
    }
}

fn config(dir: &Scratch, case: &str) -> std::path::PathBuf {
    let (_, lib, section) = CASES.iter().find(|c| c.0 == case).expect("a known case");
    plugins_toml(dir, &[lib], section)
}

fn vector(i: u64) -> Vec<f32> {
    (0..8).map(|d| ((i * 7 + d) % 13) as f32 + 1.0).collect()
}

/// The child: write record after record, printing each acknowledged id.
fn write_until_killed(case: &str, dir: &Path) {
    let storage = Storage::open(dir.join("plugins.toml")).unwrap();
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    let mut ack = |i: u64| {
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    };
    let start: u64 = std::env::var("BP_KILL9_FROM").unwrap().parse().unwrap();
    match case {
        "sqlite-relational" | "duckdb-relational" => {
            let s = storage.relational("s").unwrap();
            let s = s.blocking();
            s.execute(
                "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
                &Params::None,
            )
            .unwrap();
            for i in start.. {
                s.execute(
                    "INSERT OR REPLACE INTO t (id, v) VALUES (?, ?)",
                    &backplane_host::params![i as i64, format!("v{i}")],
                )
                .unwrap();
                ack(i);
            }
        }
        "files-graph" => {
            let s = storage.graph("s").unwrap();
            let s = s.blocking();
            // Imports leave out what the last kill may have written already.
            for i in start.. {
                s.import_nodes(&[node(i)], false).unwrap();
                if i > 0 {
                    s.import_edges(&[edge(i)], false).unwrap();
                }
                ack(i);
            }
        }
        "sqlite-cache" | "files-cache" => {
            let s = storage.cache("s").unwrap();
            for i in start.. {
                s.blocking()
                    .set(&format!("k{i}"), format!("v{i}").as_bytes(), None)
                    .unwrap();
                let mut m = Message::new("user", format!("m{i}"));
                m.id = format!("m{i}");
                // The write the last kill cut short may be there already:
                // an import leaves out an id the channel holds.
                s.blocking().import_messages("chat", &[m]).unwrap();
                ack(i);
            }
        }
        _ => {
            let s = storage.vector("s").unwrap();
            let s = s.blocking();
            if s.collection_info("c").is_err() {
                s.create_collection("c", 8, backplane_host::Distance::Cosine)
                    .unwrap();
            }
            for i in start.. {
                let mut r = VectorRecord::new(format!("r{i}"), vector(i));
                r.document = Some(format!("doc {i}"));
                s.upsert("c", &[r]).unwrap();
                ack(i);
            }
        }
    }
}

/// Every acknowledged write of `0..acked` is in the store, read back after
/// a fresh open.
fn check(case: &str, scratch: &Scratch, acked: u64) {
    let storage = Storage::open(scratch.path("plugins.toml"))
        .unwrap_or_else(|e| panic!("{case}: the store does not open after kill -9: {e}"));
    match case {
        "sqlite-relational" | "duckdb-relational" => {
            let s = storage.relational("s").unwrap();
            let rows = s
                .blocking()
                .query(
                    "SELECT count(*) FROM t WHERE id < ?",
                    &backplane_host::params![acked as i64],
                )
                .unwrap();
            assert_eq!(
                rows.rows[0][0],
                backplane_host::Value::Integer(acked as i64),
                "{case}"
            );
        }
        "files-graph" => {
            let s = storage.graph("s").unwrap();
            let s = s.blocking();
            for i in 0..acked {
                assert_eq!(
                    s.get_node(&format!("n{i}")).unwrap(),
                    Some(node(i)),
                    "{case}: node n{i}"
                );
                if i > 0 {
                    assert_eq!(
                        s.get_edge(&format!("e{i}")).unwrap(),
                        Some(edge(i)),
                        "{case}: edge e{i}"
                    );
                }
            }
        }
        "sqlite-cache" | "files-cache" => {
            let s = storage.cache("s").unwrap();
            for i in [0, acked / 2, acked.saturating_sub(1)] {
                if acked == 0 {
                    break;
                }
                let v = s.blocking().get(&format!("k{i}")).unwrap();
                assert_eq!(v, Some(format!("v{i}").into_bytes()), "{case}: key k{i}");
            }
            let msgs = s.blocking().recent("chat", 1_000_000, None).unwrap();
            assert!(
                msgs.len() as u64 >= acked,
                "{case}: {} messages, {acked} acknowledged",
                msgs.len()
            );
        }
        _ => {
            let s = storage.vector("s").unwrap();
            if acked == 0 {
                return;
            }
            let ids: Vec<String> = (0..acked).map(|i| format!("r{i}")).collect();
            let got = s.blocking().get("c", &ids).unwrap();
            assert_eq!(got.len() as u64, acked, "{case}: every acknowledged record");
            let last = got
                .iter()
                .find(|r| r.id == format!("r{}", acked - 1))
                .unwrap();
            assert_eq!(
                last.vector,
                vector(acked - 1),
                "{case}: its vector, bit for bit"
            );
            // The index found the last write too (the vectors repeat every
            // 13 records, so any of its twins may come first).
            let hits = s
                .blocking()
                .search(
                    "c",
                    &backplane_host::SearchRequest::new(vector(acked - 1), 1),
                )
                .unwrap();
            assert!(
                hits.first().is_some_and(|h| h.score > 0.9999),
                "{case}: a search finds the last write: {hits:?}"
            );
        }
    }
}

fn run_case(case: &str, kills: u32) {
    let scratch = Scratch::new();
    std::fs::create_dir_all(scratch.path("data")).unwrap();
    config(&scratch, case);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(kills) ^ case.len() as u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut acked = 0u64;
    for k in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env("BP_KILL9_CHILD", case)
            .env("BP_KILL9_DIR", &scratch.0)
            .env("BP_KILL9_FROM", acked.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // Kill after a random number of acknowledged writes (1 to 40), then
        // a random few milliseconds more of writing.
        let target = 1 + next() % 40;
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen < target {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("{case}: the writer stopped"));
            if let Some(i) = line.unwrap().strip_prefix("ack ") {
                acked = i.parse::<u64>().unwrap() + 1;
                seen += 1;
            }
            assert!(Instant::now() < deadline, "{case}: the writer is too slow");
        }
        std::thread::sleep(Duration::from_micros(next() % 5_000));
        child.kill().unwrap();
        // Acknowledgements printed before the kill landed count too.
        for line in lines.map_while(|l| l.ok()) {
            if let Some(i) = line.strip_prefix("ack ") {
                acked = i.parse::<u64>().unwrap() + 1;
            }
        }
        let _ = child.wait();
        check(case, &scratch, acked);
        println!(
            "{case}: kill {} of {kills}: {acked} writes acknowledged, all there",
            k + 1
        );
    }
}

/// The writer, when this binary runs as the child; nothing otherwise.
#[test]
fn child() {
    if let (Ok(case), Ok(dir)) = (
        std::env::var("BP_KILL9_CHILD"),
        std::env::var("BP_KILL9_DIR"),
    ) {
        write_until_killed(&case, Path::new(&dir));
    }
}

#[test]
fn sqlite_relational_keeps_every_acknowledged_write() {
    run_case("sqlite-relational", 12);
}

#[test]
fn sqlite_cache_keeps_every_acknowledged_write() {
    run_case("sqlite-cache", 12);
}

#[test]
fn sqlite_vector_keeps_every_acknowledged_write() {
    run_case("sqlite-vector", 12);
}

#[test]
fn duckdb_relational_keeps_every_acknowledged_write() {
    run_case("duckdb-relational", 12);
}

#[test]
fn qdrant_edge_keeps_every_acknowledged_write() {
    run_case("qdrant-edge-vector", 8);
}

#[test]
fn faiss_keeps_every_acknowledged_write() {
    run_case("faiss-vector", 12);
}

#[test]
fn files_cache_keeps_every_acknowledged_write() {
    run_case("files-cache", 12);
}

#[test]
fn files_graph_keeps_every_acknowledged_write() {
    run_case("files-graph", 12);
}
