//! `migrate`: moving data between backends.
//!
//! - A 1M-row table from SQLite to PostgreSQL through `Storage::migrate`
//!   (what `backplane migrate` runs: copy, then read the target back and
//!   compare every row's checksum), against the floor: the rows read with
//!   rusqlite and written with PostgreSQL's binary `COPY` directly.
//! - 100k 384-dimension vectors from qdrant-edge into the sqlite and the
//!   postgres plugins, against the target's own bulk upsert of the same
//!   records (batches of 1,000 through the host).
//! - Peak memory of the `backplane migrate` command (the release binary)
//!   copying 100k and 1M rows: it streams, so the two should be close.
//!
//! `BENCH_MIGRATE_ROWS` (1,000,000), `BENCH_MIGRATE_ROUNDS` (3); skipped
//! without PostgreSQL (`BACKPLANE_POSTGRES_URL`).

use crate::harness::{bench_dir, env_or, median, median_ratio, open, Rng, Row, DIM};
use backplane_behavior::Scratch;
use backplane_host::{Capability, CopyOptions, Distance, Quiet, Storage, StoreRef, VectorRecord};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use std::path::Path;
use std::time::{Duration, Instant};

const CREATE_SQLITE: &str = "CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, kind TEXT NOT NULL, score REAL, at TIMESTAMP)";

/// A SQLite file with `rows` rows of (id, user_id, kind, score, at).
fn sqlite_source(path: &Path, rows: usize) {
    let mut c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    c.execute_batch(CREATE_SQLITE).unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut st = tx
            .prepare("INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5)")
            .unwrap();
        for i in 0..rows as i64 {
            st.execute(rusqlite::params![
                i + 1,
                i % 1000,
                format!("kind-{}", i % 17),
                i as f64 * 0.25,
                1_700_000_000_000_000i64 + i * 1_000
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn pg_client(url: &str) -> postgres::Client {
    url.parse::<postgres::Config>()
        .unwrap()
        .connect(postgres::NoTls)
        .unwrap()
}

/// The floor: read every row with rusqlite, write it with binary COPY.
fn floor_copy(sqlite: &Path, pg: &mut postgres::Client, schema: &str) {
    pg.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; \
         CREATE TABLE {schema}.events (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, kind TEXT NOT NULL, score DOUBLE PRECISION, at TIMESTAMPTZ)"
    ))
    .unwrap();
    let src = rusqlite::Connection::open(sqlite).unwrap();
    let mut st = src
        .prepare("SELECT id, user_id, kind, score, at FROM events ORDER BY id")
        .unwrap();
    let mut rows = st.query([]).unwrap();
    let sink = pg
        .copy_in(&format!(
            "COPY {schema}.events (id, user_id, kind, score, at) FROM STDIN (FORMAT binary)"
        ))
        .unwrap();
    let types = [
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::FLOAT8,
        Type::TIMESTAMPTZ,
    ];
    let mut w = BinaryCopyInWriter::new(sink, &types);
    let epoch = std::time::UNIX_EPOCH;
    while let Some(r) = rows.next().unwrap() {
        let id: i64 = r.get(0).unwrap();
        let user: i64 = r.get(1).unwrap();
        let kind: String = r.get(2).unwrap();
        let score: f64 = r.get(3).unwrap();
        let at_us: i64 = r.get(4).unwrap();
        let at = epoch + Duration::from_micros(at_us as u64);
        w.write(&[&id, &user, &kind, &score, &at]).unwrap();
    }
    w.finish().unwrap();
}

/// The migration through the host into a fresh target schema, and the
/// same command run again (finished already: it only reads the target
/// back and compares), timed apart.
fn host_migrate(
    sqlite: &Path,
    url: &str,
    schema: &str,
    scratch: &Scratch,
    batch: usize,
) -> (Duration, Duration) {
    let body = format!(
        "[relational.src]\nbackend = \"sqlite\"\npath = \"{}\"\n\n[relational.dst]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\n",
        sqlite.display()
    );
    let storage = open(
        scratch,
        &["backplane_plugin_sqlite", "backplane_plugin_postgres"],
        &body,
    );
    let opts = CopyOptions {
        batch,
        state: Some(scratch.path(&format!("state-{schema}-{batch}.json"))),
        ..Default::default()
    };
    let run = || {
        let t = Instant::now();
        let r = storage
            .migrate(
                &StoreRef::new(Capability::Relational, "src"),
                &storage,
                &StoreRef::new(Capability::Relational, "dst"),
                &opts,
                &Quiet,
            )
            .unwrap();
        assert!(r.ok(), "the migration verified");
        t.elapsed()
    };
    (run(), run())
}

/// The peak resident memory of `backplane migrate` copying `sqlite` into a
/// fresh schema, read from /proc while it runs (MiB).
fn peak_memory(sqlite: &Path, url: &str, schema: &str, scratch: &Scratch) -> f64 {
    let libs: Vec<String> = ["backplane_plugin_sqlite", "backplane_plugin_postgres"]
        .iter()
        .map(|l| format!("\"{}\"", backplane_behavior::library(l).display()))
        .collect();
    let cfg = scratch.path(&format!("peak-{schema}.toml"));
    std::fs::write(
        &cfg,
        format!(
            "[plugins]\nload = [{}]\n\n[relational.src]\nbackend = \"sqlite\"\npath = \"{}\"\n\n[relational.dst]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\n",
            libs.join(", "),
            sqlite.display()
        ),
    )
    .unwrap();
    let bin = backplane_behavior::target_dir().join("backplane");
    let mut child = std::process::Command::new(bin)
        .arg("--config")
        .arg(&cfg)
        .args(["migrate", "relational.src", "relational.dst", "--json"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the backplane command (cargo build --release first)");
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb: u64 = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "backplane migrate failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    peak_kb as f64 / 1024.0
}

/// Relational migration, vector migration and peak memory.
pub fn group(out: &mut Vec<Row>, notes: &mut Vec<String>) {
    let (url, shown, unreachable) = backplane_behavior::postgres_server();
    if let Some(why) = unreachable {
        println!("skip migrate: no PostgreSQL at {shown} ({why})");
        return;
    }
    let rounds: usize = env_or("BENCH_MIGRATE_ROUNDS", 3);
    let n: usize = env_or("BENCH_MIGRATE_ROWS", 1_000_000);
    let scratch = bench_dir();
    let sqlite = scratch.path("source.db");
    eprintln!("migrate: writing {n} rows into SQLite");
    sqlite_source(&sqlite, n);
    let ns = backplane_behavior::namespace();
    let mut pg = pg_client(&url);
    let (mut floor, mut host, mut host_big) = (Vec::new(), Vec::new(), Vec::new());
    let mut readback = Vec::new();
    for round in 0..rounds {
        eprintln!(
            "migrate: {n} rows SQLite -> PostgreSQL, round {}/{rounds}",
            round + 1
        );
        let mut order = Rng(0x5eed + round as u64).order(3);
        order.rotate_left(round % 3);
        for v in order {
            let schema = format!("bp_bench_mig_{ns}_{round}_{v}");
            match v {
                0 => {
                    let t = Instant::now();
                    floor_copy(&sqlite, &mut pg, &schema);
                    floor.push(t.elapsed());
                }
                1 => {
                    let (all, again) = host_migrate(&sqlite, &url, &schema, &scratch, 5_000);
                    host.push(all);
                    readback.push(again);
                }
                _ => host_big.push(host_migrate(&sqlite, &url, &schema, &scratch, 20_000).0),
            }
            pg.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .unwrap();
        }
    }
    let row = |variant: &str, v: &[Duration], ratio: Option<f64>| Row {
        group: "migrate",
        work: "1M rows SQLite -> PostgreSQL",
        variant: variant.into(),
        median: median(v.to_vec()),
        ops: n,
        ratio,
    };
    out.push(row("rusqlite read + binary COPY (floor)", &floor, None));
    out.push(row(
        "backplane migrate (copy + verify), batch 5000 (default)",
        &host,
        Some(median_ratio(&host, &floor)),
    ));
    out.push(row(
        "backplane migrate (copy + verify), batch 20000",
        &host_big,
        Some(median_ratio(&host_big, &floor)),
    ));
    out.push(row(
        "of which reading the target back (the same command run again)",
        &readback,
        Some(median_ratio(&readback, &floor)),
    ));

    // Peak memory of the command at 100k and at n rows.
    let small = scratch.path("small.db");
    sqlite_source(&small, n / 10);
    let peak_small = peak_memory(&small, &url, &format!("bp_bench_peak_s_{ns}"), &scratch);
    let peak_big = peak_memory(&sqlite, &url, &format!("bp_bench_peak_b_{ns}"), &scratch);
    for s in ["s", "b"] {
        pg.batch_execute(&format!(
            "DROP SCHEMA IF EXISTS bp_bench_peak_{s}_{ns} CASCADE"
        ))
        .unwrap();
    }
    notes.push(format!(
        "peak memory of `backplane migrate` (SQLite -> PostgreSQL, release build): {} rows {peak_small:.1} MiB, {n} rows {peak_big:.1} MiB, ratio {:.2}",
        n / 10,
        peak_big / peak_small
    ));

    vectors(&url, &scratch, out);
}

/// 100k vectors from qdrant-edge into sqlite and postgres, against each
/// target's own upsert of the same records.
fn vectors(url: &str, scratch: &Scratch, out: &mut Vec<Row>) {
    let n: usize = env_or("BENCH_VECTORS", crate::harness::VECTORS);
    let mut rng = Rng(0xfeed);
    let records: Vec<VectorRecord> = (0..n)
        .map(|i| {
            VectorRecord::new(format!("m{i}"), rng.vector())
                .with_payload(serde_json::json!({"user": i % 100, "i": i}))
        })
        .collect();
    let ns = backplane_behavior::namespace();
    let body = format!(
        "[vector.src]\nbackend = \"qdrant-edge\"\npath = \"{}\"\n\n\
         [vector.sqlite_mig]\nbackend = \"sqlite\"\npath = \"{}\"\n\n[vector.sqlite_up]\nbackend = \"sqlite\"\npath = \"{}\"\n\n\
         [vector.pg_mig]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"bp_bench_vm_{ns}\"\n\n\
         [vector.pg_up]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"bp_bench_vu_{ns}\"\n",
        scratch.path("src-vectors").display(),
        scratch.path("mig.db").display(),
        scratch.path("up.db").display(),
    );
    let storage: Storage = open(
        scratch,
        &[
            "backplane_plugin_qdrant_edge",
            "backplane_plugin_sqlite",
            "backplane_plugin_postgres",
        ],
        &body,
    );
    eprintln!("migrate: loading {n} vectors into qdrant-edge");
    let src = storage.vector("src").unwrap();
    src.blocking()
        .create_collection("mem", DIM as u32, Distance::Cosine)
        .unwrap();
    for c in records.chunks(1000) {
        src.blocking().upsert("mem", c).unwrap();
    }
    for (target, up, label) in [
        ("sqlite_mig", "sqlite_up", "qdrant-edge -> sqlite"),
        ("pg_mig", "pg_up", "qdrant-edge -> postgres"),
    ] {
        eprintln!("migrate: {n} vectors {label}");
        let t = Instant::now();
        let dst = storage.vector(up).unwrap();
        dst.blocking()
            .create_collection("mem", DIM as u32, Distance::Cosine)
            .unwrap();
        for c in records.chunks(1000) {
            dst.blocking().upsert("mem", c).unwrap();
        }
        let upsert = t.elapsed();
        let opts = CopyOptions {
            state: Some(scratch.path(&format!("state-{target}.json"))),
            ..Default::default()
        };
        let run = || {
            storage
                .migrate(
                    &StoreRef::new(Capability::Vector, "src"),
                    &storage,
                    &StoreRef::new(Capability::Vector, target),
                    &opts,
                    &Quiet,
                )
                .unwrap()
        };
        let t = Instant::now();
        let r = run();
        let migrate = t.elapsed();
        assert!(r.ok());
        // Run again on the same state file: it only verifies.
        let t = Instant::now();
        let again = run();
        let verify = t.elapsed();
        assert!(again.already_done && again.ok());
        let work: &'static str = if label.ends_with("sqlite") {
            "100k x 384 vectors qdrant-edge -> sqlite"
        } else {
            "100k x 384 vectors qdrant-edge -> postgres"
        };
        out.push(Row {
            group: "migrate",
            work,
            variant: "the target's own upsert, batches of 1000".into(),
            median: upsert,
            ops: n,
            ratio: None,
        });
        out.push(Row {
            group: "migrate",
            work,
            variant: "backplane migrate (copy + verify)".into(),
            median: migrate,
            ops: n,
            ratio: Some(migrate.as_secs_f64() / upsert.as_secs_f64()),
        });
        out.push(Row {
            group: "migrate",
            work,
            variant: "of which reading the target back (run again)".into(),
            median: verify,
            ops: n,
            ratio: Some(verify.as_secs_f64() / upsert.as_secs_f64()),
        });
    }
    let mut pg = pg_client(url);
    pg.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS bp_bench_vm_{ns} CASCADE; DROP SCHEMA IF EXISTS bp_bench_vu_{ns} CASCADE"
    ))
    .unwrap();
}
