//! `layers`: what the operations layers cost when nothing fails. The same
//! work through the host with no layers and with metrics + tracing + retry
//! + timeout, in one run:
//!
//! - SQLite: 100k point selects by key (a table of 100k rows), on the
//!   blocking and the async API;
//! - Redis: 20k SET+GET pairs, sequential, on both APIs (skipped when no
//!   server answers; `BACKPLANE_REDIS_URL`).
//!
//! The rows with a timeout show its price apart: on the blocking API a
//! deadline hands every call to a worker thread (a call inside a plugin
//! cannot be interrupted, so the caller waits on the worker); on the async
//! API it is a timer on a call that runs on tokio's blocking pool anyway.
//! Tracing is on with no subscriber installed, as in an application that
//! has not asked for spans; metrics are rendered by nobody during the run.
//! With layers, a cache's async calls run on tokio's blocking pool: the
//! layers have no non-blocking form, so the plugin's callback path (which
//! the no-layers row of Redis's async API uses) is not taken.

use crate::harness::{bench_dir, interleaved, open, rows, Rng, Row, Variant, PLUGINS, TX_SIZE};
use backplane_host::{params, Params, Storage};

const SELECTS: usize = 100_000;
const REDIS_OPS: usize = 20_000;

/// The layers measured, without and with the deadline.
const LAYERS: &str = "metrics = true\ntracing = true\nretry = { attempts = 3 }\n";
const DEADLINE: &str = "timeout = \"5s\"\n";

fn sections(cap_store: &str, settings: &str) -> String {
    let mut s = format!("[{cap_store}_plain]\n{settings}\n");
    s.push_str(&format!(
        "[{cap_store}_layers]\n{settings}\n[{cap_store}_layers.layers]\n{LAYERS}\n"
    ));
    s.push_str(&format!(
        "[{cap_store}_deadline]\n{settings}\n[{cap_store}_deadline.layers]\n{LAYERS}{DEADLINE}\n"
    ));
    s
}

pub fn group(rounds: usize, out: &mut Vec<Row>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let scratch = bench_dir();
    // One file, three stores on it: the same rows read three ways. The
    // table is filled (and the write-ahead log folded into the file)
    // through a Storage of its own, closed before the measured stores
    // open, so none of them carries a writer's state.
    let db = scratch.path("layers.db");
    let settings = format!("backend = \"sqlite\"\npath = \"{}\"", db.display());
    {
        let loader_dir = backplane_behavior::Scratch::under(&scratch.0);
        let loader = open(
            &loader_dir,
            &PLUGINS,
            &format!("[relational.load]\n{settings}\n"),
        );
        let load = loader.relational("load").unwrap();
        load.blocking()
            .execute(
                "CREATE TABLE bench (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL NOT NULL)",
                &Params::None,
            )
            .unwrap();
        for b in 0..SELECTS / TX_SIZE {
            load.blocking()
                .execute_many(
                    "INSERT INTO bench (id, name, score) VALUES (?, ?, ?)",
                    &rows(b * TX_SIZE..(b + 1) * TX_SIZE),
                )
                .unwrap();
        }
        load.blocking()
            .query("PRAGMA wal_checkpoint(TRUNCATE)", &Params::None)
            .unwrap();
    }
    let storage = open(&scratch, &PLUGINS, &sections("relational.s", &settings));
    let keys: Vec<i64> = {
        let mut r = Rng(42);
        (0..SELECTS)
            .map(|_| (r.next() % SELECTS as u64) as i64)
            .collect()
    };
    const SELECT: &str = "SELECT id, name, score FROM bench WHERE id = ?";
    let stores: Vec<_> = ["s_plain", "s_layers", "s_deadline"]
        .iter()
        .map(|n| storage.relational(n).unwrap())
        .collect();
    let blocking = |s: &backplane_host::RelationalStore| {
        let db = s.blocking();
        for k in &keys {
            assert_eq!(db.query(SELECT, &params![*k]).unwrap().len(), 1);
        }
    };
    let asynchronous = |s: &backplane_host::RelationalStore| {
        rt.block_on(async {
            for k in &keys {
                assert_eq!(s.query(SELECT, params![*k]).await.unwrap().len(), 1);
            }
        })
    };
    three_ways(
        "sqlite 100k point selects",
        SELECTS,
        rounds,
        BLOCKING,
        &stores,
        &blocking,
        out,
    );
    three_ways(
        "sqlite 100k point selects",
        SELECTS,
        rounds,
        ASYNC,
        &stores,
        &asynchronous,
        out,
    );
    redis(rounds, &rt, out);
}

fn redis(rounds: usize, rt: &tokio::runtime::Runtime, out: &mut Vec<Row>) {
    let url =
        std::env::var("BACKPLANE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let scratch = bench_dir();
    let ns = backplane_behavior::namespace();
    let storage: Storage = match Storage::open(crate::harness::write_config(
        &scratch,
        &["backplane_plugin_redis"],
        &sections(
            "cache.r",
            &format!("backend = \"redis\"\nurl = \"{url}\"\nprefix = \"bp-bench:{ns}:\""),
        ),
    )) {
        Ok(s) => s,
        Err(e) => {
            println!("skip layers on redis: {e}");
            return;
        }
    };
    let stores: Vec<_> = ["r_plain", "r_layers", "r_deadline"]
        .iter()
        .map(|n| storage.cache(n).unwrap())
        .collect();
    if let Err(e) = stores[0].blocking().health() {
        println!("skip layers on redis: no server at {url} ({e})");
        return;
    }
    let value = vec![b'x'; 64];
    let blocking = |s: &backplane_host::CacheStore| {
        let c = s.blocking();
        for i in 0..REDIS_OPS {
            let k = format!("b:{i}");
            c.set(&k, &value, None).unwrap();
            assert_eq!(c.get(&k).unwrap().unwrap().len(), 64);
        }
    };
    let asynchronous = |s: &backplane_host::CacheStore| {
        rt.block_on(async {
            for i in 0..REDIS_OPS {
                let k = format!("a:{i}");
                s.set(k.clone(), value.clone(), None).await.unwrap();
                assert_eq!(s.get(k).await.unwrap().unwrap().len(), 64);
            }
        })
    };
    three_ways(
        "redis 20k SET+GET",
        REDIS_OPS,
        rounds,
        BLOCKING,
        &stores,
        &blocking,
        out,
    );
    three_ways(
        "redis 20k SET+GET",
        REDIS_OPS,
        rounds,
        ASYNC,
        &stores,
        &asynchronous,
        out,
    );
}

/// The three variants (no layers, layers, layers with a deadline) of one
/// API, `run(store)` doing the work, measured in one block.
#[allow(clippy::too_many_arguments)]
fn three_ways<S>(
    work: &'static str,
    ops: usize,
    rounds: usize,
    names: [&'static str; 3],
    stores: &[S],
    run: &dyn Fn(&S),
    out: &mut Vec<Row>,
) {
    let mut variants: Vec<Variant<'_>> = names
        .into_iter()
        .zip(stores)
        .map(|(name, store)| Variant {
            name,
            reset: Box::new(|| {}),
            run: Box::new(move |_| run(store)),
        })
        .collect();
    interleaved("layers", work, ops, rounds, 1, &mut variants, out);
}

const BLOCKING: [&str; 3] = [
    "blocking API, no layers",
    "blocking API, metrics+tracing+retry",
    "blocking API, metrics+tracing+retry+timeout",
];
const ASYNC: [&str; 3] = [
    "async API, no layers",
    "async API, metrics+tracing+retry",
    "async API, metrics+tracing+retry+timeout",
];
