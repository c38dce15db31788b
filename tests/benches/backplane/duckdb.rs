//! `duckdb`: the duckdb plugin vs the `duckdb` crate called directly (the
//! same pinned version, the same prebuilt library), with the sqlite plugin
//! beside them:
//! - 100k inserts, in batches of 1,000: `execute_many` through the host
//!   (which loads a plain insert through DuckDB's appender) vs the crate's
//!   appender in a transaction per batch;
//! - 100k point selects by key, through one prepared statement each way;
//! - an analytical aggregate over 1M rows (`GROUP BY` 100 groups with
//!   count, sum, avg, min and max), where a columnar engine should beat
//!   SQLite: the crate, the host on duckdb, and the host on sqlite over
//!   the same rows (`BENCH_DUCKDB_ROWS`, default 1,000,000).

use crate::harness::{
    assert_same, bench_dir, checksum, env_or, interleaved, open, row_sum, rows, Rng, Row, Variant,
    TX_SIZE,
};
use backplane_behavior::Scratch;
use backplane_host::{params, Params, Storage, Value};

const INSERTS: usize = 100_000;
const SELECTS: usize = 100_000;

const CREATE: &str =
    "CREATE TABLE bench (id BIGINT PRIMARY KEY, name VARCHAR NOT NULL, score DOUBLE NOT NULL)";
const INSERT: &str = "INSERT INTO bench (id, name, score) VALUES (?, ?, ?)";
const SELECT: &str = "SELECT id, name, score FROM bench WHERE id = ?";
const AGGREGATE: &str = "SELECT grp, count(*) AS n, sum(score) AS total, avg(score) AS mean, min(score) AS lo, max(score) AS hi \
     FROM facts GROUP BY grp ORDER BY grp";

const LIBS: [&str; 2] = ["backplane_plugin_duckdb", "backplane_plugin_sqlite"];

fn store(
    scratch: &Scratch,
    backend: &str,
    file: &std::path::Path,
) -> (Storage, backplane_host::RelationalStore) {
    let dir = Scratch::under(&scratch.0);
    let st = open(
        &dir,
        &LIBS,
        &format!(
            "[relational.s]\nbackend = \"{backend}\"\npath = \"{}\"\n",
            file.display()
        ),
    );
    let s = st.relational("s").unwrap();
    (st, s)
}

/// The rows `keys` of `bench` through the crate's appender.
fn append_rows(c: &duckdb::Connection, keys: std::ops::Range<usize>) {
    let mut app = c.appender("bench").unwrap();
    for i in keys {
        app.append_row(duckdb::params![
            i as i64,
            format!("user-{i}"),
            i as f64 * 0.5
        ])
        .unwrap();
    }
    app.flush().unwrap();
}

/// `batches` batches of `TX_SIZE` rows, one `execute_many` each, into the
/// store `held` holds.
fn insert_batches(
    held: &std::cell::RefCell<Option<(Storage, backplane_host::RelationalStore)>>,
    batches: usize,
) {
    let guard = held.borrow();
    let db = guard.as_ref().unwrap().1.blocking();
    for bt in 0..batches {
        db.execute_many(INSERT, &rows(bt * TX_SIZE..(bt + 1) * TX_SIZE))
            .unwrap();
    }
}

/// The aggregate's rows, summed into one number every variant must agree on.
fn aggregate_sum(rows: &[Vec<Value>]) -> i64 {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    Value::Integer(i) => *i,
                    Value::Real(f) => (*f * 1000.0).round() as i64,
                    other => panic!("unexpected value {other:?}"),
                })
                .sum::<i64>()
        })
        .sum()
}

pub fn group(rounds: usize, out: &mut Vec<Row>) {
    let scratch = bench_dir();
    let path = |name: &str| scratch.path(name);
    use std::cell::{Cell, RefCell};
    let round = Cell::new(0usize);
    let fresh = |name: &str, ext: &str| path(&format!("{name}-{}.{ext}", round.get()));
    let per_chunk = INSERTS / TX_SIZE;

    // Inserts: every round into fresh files (opened, untimed, by `reset`).
    {
        let direct: RefCell<Option<duckdb::Connection>> = RefCell::new(None);
        let host: RefCell<Option<(Storage, backplane_host::RelationalStore)>> = RefCell::new(None);
        let lite: RefCell<Option<(Storage, backplane_host::RelationalStore)>> = RefCell::new(None);
        let mut variants = [
            Variant {
                name: "duckdb crate direct (appender)",
                reset: Box::new(|| {
                    round.set(round.get() + 1);
                    let c = duckdb::Connection::open(fresh("direct", "duckdb")).unwrap();
                    c.execute_batch(CREATE).unwrap();
                    *direct.borrow_mut() = Some(c);
                }),
                run: Box::new(|_| {
                    let guard = direct.borrow();
                    let c = guard.as_ref().unwrap();
                    for bt in 0..per_chunk {
                        c.execute_batch("BEGIN TRANSACTION").unwrap();
                        append_rows(c, bt * TX_SIZE..(bt + 1) * TX_SIZE);
                        c.execute_batch("COMMIT").unwrap();
                    }
                }),
            },
            Variant {
                name: "host duckdb, blocking API",
                reset: Box::new(|| {
                    let s = store(&scratch, "duckdb", &fresh("host", "duckdb"));
                    s.1.blocking().execute(CREATE, &Params::None).unwrap();
                    *host.borrow_mut() = Some(s);
                }),
                run: Box::new(|_| insert_batches(&host, per_chunk)),
            },
            Variant {
                name: "host sqlite, blocking API (beside)",
                reset: Box::new(|| {
                    let s = store(&scratch, "sqlite", &fresh("lite", "db"));
                    s.1.blocking()
                        .execute(
                            "CREATE TABLE bench (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL NOT NULL)",
                            &Params::None,
                        )
                        .unwrap();
                    *lite.borrow_mut() = Some(s);
                }),
                run: Box::new(|_| insert_batches(&lite, per_chunk)),
            },
        ];
        interleaved(
            "duckdb",
            "100k inserts, batches of 1k",
            INSERTS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }

    // Point selects: one file each, written once.
    let read_file = path("read.duckdb");
    {
        let c = duckdb::Connection::open(&read_file).unwrap();
        c.execute_batch(CREATE).unwrap();
        append_rows(&c, 0..INSERTS);
    }
    let mut rng = Rng(0x5eed);
    let keys: Vec<i64> = (0..SELECTS)
        .map(|_| (rng.next() % INSERTS as u64) as i64)
        .collect();
    {
        // The direct connection and the host's store cannot both hold the
        // file: each reads its own copy.
        let host_file = path("read-host.duckdb");
        std::fs::copy(&read_file, &host_file).unwrap();
        let reader = duckdb::Connection::open(&read_file).unwrap();
        let (_st, r) = store(&scratch, "duckdb", &host_file);
        let sums = RefCell::new([0i64; 2]);
        let add = |i: usize, v: i64| sums.borrow_mut()[i] += v;
        let mut variants = [
            Variant {
                name: "duckdb crate direct",
                reset: Box::new(|| *sums.borrow_mut() = [0; 2]),
                run: Box::new(|_| {
                    let mut st = reader.prepare_cached(SELECT).unwrap();
                    for &k in &keys {
                        let (id, name, score): (i64, String, f64) = st
                            .query_row([k], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                            .unwrap();
                        add(0, checksum(id, &name, score));
                    }
                }),
            },
            Variant {
                name: "host duckdb, blocking API",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    for &k in &keys {
                        let rows = r.blocking().query(SELECT, &params![k]).unwrap();
                        add(1, row_sum(&rows.rows[0]));
                    }
                }),
            },
        ];
        interleaved(
            "duckdb",
            "100k point selects",
            SELECTS,
            rounds,
            1,
            &mut variants,
            out,
        );
        assert_same(&*sums.borrow());
    }

    // The aggregate over a fact table, in each engine's own file.
    let facts: usize = env_or("BENCH_DUCKDB_ROWS", 1_000_000);
    let fact = |i: usize| (i as i64, (i % 100) as i64, (i % 9973) as f64 * 0.25);
    let direct_file = path("facts.duckdb");
    {
        let c = duckdb::Connection::open(&direct_file).unwrap();
        c.execute_batch("CREATE TABLE facts (id BIGINT, grp BIGINT, score DOUBLE)")
            .unwrap();
        let mut app = c.appender("facts").unwrap();
        for i in 0..facts {
            let (id, grp, score) = fact(i);
            app.append_row(duckdb::params![id, grp, score]).unwrap();
        }
        app.flush().unwrap();
    }
    let host_file = path("facts-host.duckdb");
    std::fs::copy(&direct_file, &host_file).unwrap();
    let lite_file = path("facts.db");
    {
        let c = rusqlite::Connection::open(&lite_file).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE facts (id INTEGER, grp INTEGER, score REAL); BEGIN",
        )
        .unwrap();
        {
            let mut st = c.prepare("INSERT INTO facts VALUES (?, ?, ?)").unwrap();
            for i in 0..facts {
                let (id, grp, score) = fact(i);
                st.execute(rusqlite::params![id, grp, score]).unwrap();
            }
        }
        c.execute_batch("COMMIT; PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
    }
    let direct = duckdb::Connection::open(&direct_file).unwrap();
    let (_dst, dstore) = store(&scratch, "duckdb", &host_file);
    let (_lst, lstore) = store(&scratch, "sqlite", &lite_file);
    let sums = RefCell::new([0i64; 3]);
    let mut variants = [
        Variant {
            name: "duckdb crate direct",
            reset: Box::new(|| {}),
            run: Box::new(|_| {
                let mut st = direct.prepare_cached(AGGREGATE).unwrap();
                let rows: Vec<Vec<Value>> = st
                    .query_map([], |r| {
                        let n: i64 = r.get(1)?;
                        Ok(vec![
                            Value::Integer(r.get(0)?),
                            Value::Integer(n),
                            Value::Real(r.get(2)?),
                            Value::Real(r.get(3)?),
                            Value::Real(r.get(4)?),
                            Value::Real(r.get(5)?),
                        ])
                    })
                    .unwrap()
                    .map(|r| r.unwrap())
                    .collect();
                sums.borrow_mut()[0] = aggregate_sum(&rows);
            }),
        },
        Variant {
            name: "host duckdb, blocking API",
            reset: Box::new(|| {}),
            run: Box::new(|_| {
                let rows = dstore.blocking().query(AGGREGATE, &Params::None).unwrap();
                sums.borrow_mut()[1] = aggregate_sum(&rows.rows);
            }),
        },
        Variant {
            name: "host sqlite, blocking API (beside)",
            reset: Box::new(|| {}),
            run: Box::new(|_| {
                let rows = lstore.blocking().query(AGGREGATE, &Params::None).unwrap();
                sums.borrow_mut()[2] = aggregate_sum(&rows.rows);
            }),
        },
    ];
    let work: &'static str = if facts == 1_000_000 {
        "GROUP BY aggregate over 1M rows"
    } else {
        "GROUP BY aggregate (BENCH_DUCKDB_ROWS rows)"
    };
    interleaved("duckdb", work, 1, rounds, 1, &mut variants, out);
    assert_same(&*sums.borrow());
}
