//! `relational`: 100k inserts (in transactions of 1,000) and 100k point
//! selects by key, through the sqlite plugin (blocking and async API) vs
//! rusqlite called directly with prepared statements, values read into
//! Rust types. A middle row runs the plugin's own engine in-process,
//! without the boundary, to show which part of a gap is whose.
//!
//! Then the async API against the async crate a tokio program would pick
//! instead, tokio-rusqlite (one connection, served by the thread it owns,
//! shared by every task): the same inserts and point selects from 1 task
//! and from 32 tasks, with tokio-rusqlite as the baseline. (sqlx, the other
//! candidate, cannot be linked into this benchmark: its SQLite driver needs
//! an older `libsqlite3-sys` than rusqlite 0.37, and a binary holds one.)

use crate::harness::{
    assert_same, bench_dir, checksum, interleaved, on_tasks, open, row_sum, rows, runtime, Rng,
    Row, Variant, PLUGINS, TX_SIZE,
};
use backplane_behavior::Scratch;
use backplane_host::{params, Params, Storage};
use std::ops::Range;

const INSERTS: usize = 100_000;
const SELECTS: usize = 100_000;

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

/// A sqlite plugin store on `file`, opened through the host; `extra`
/// is more of its section (such as its layers).
fn sqlite_store(
    scratch: &Scratch,
    file: &std::path::Path,
    extra: &str,
) -> (Storage, backplane_host::RelationalStore) {
    let dir = Scratch::under(&scratch.0);
    let st = open(
        &dir,
        &PLUGINS,
        &format!(
            "[relational.s]\nbackend = \"sqlite\"\npath = \"{}\"\n{extra}",
            file.display()
        ),
    );
    let s = st.relational("s").unwrap();
    (st, s)
}

/// Tasks of the async groups' concurrent rows.
const TASKS: usize = 32;

/// The async rows' variant whose store runs its calls on one thread of its
/// own (the `workers` layer key) instead of tokio's blocking pool.
const WORKERS_VARIANT: &str = "host sqlite, async API, workers = 1";
const WORKERS_LAYER: &str = "[relational.s.layers]\nworkers = 1\n";

/// A tokio-rusqlite connection set up as [`direct_conn`] is.
async fn peer_open(path: &std::path::Path) -> tokio_rusqlite::Connection {
    let c = tokio_rusqlite::Connection::open(path).await.unwrap();
    c.call(|c| {
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "NORMAL")
    })
    .await
    .unwrap();
    c
}

/// Insert batch `bt` (one transaction) through tokio-rusqlite.
async fn peer_insert(c: &tokio_rusqlite::Connection, bt: usize) {
    c.call(move |conn| {
        let tx = conn.transaction()?;
        {
            let mut st = tx.prepare_cached(INSERT)?;
            for i in bt * TX_SIZE..(bt + 1) * TX_SIZE {
                st.execute(rusqlite::params![
                    i as i64,
                    format!("user-{i}"),
                    i as f64 * 0.5
                ])?;
            }
        }
        tx.commit()
    })
    .await
    .unwrap()
}

/// Select one row by key through tokio-rusqlite: its checksum.
async fn peer_select(c: &tokio_rusqlite::Connection, k: i64) -> i64 {
    c.call(move |conn| {
        let mut st = conn.prepare_cached(SELECT)?;
        st.query_row([k], |r| {
            Ok(checksum(r.get(0)?, &r.get::<_, String>(1)?, r.get(2)?))
        })
    })
    .await
    .unwrap()
}

/// Insert the batches `batches` of `TX_SIZE` rows, one `execute_many` (one
/// transaction) each.
fn insert_batches<R: backplane_core::Relational + ?Sized>(db: &R, batches: Range<usize>) {
    for bt in batches {
        db.execute_many(INSERT, &rows(bt * TX_SIZE..(bt + 1) * TX_SIZE))
            .unwrap();
    }
}

pub fn group(rounds: usize, out: &mut Vec<Row>) {
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
        let (st, s) = sqlite_store(&scratch, &fresh(name), "");
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
                    insert_batches(guard.as_ref().unwrap(), c * per_chunk..(c + 1) * per_chunk);
                }),
            },
            Variant {
                name: "host sqlite, blocking API",
                reset: Box::new(|| *host.borrow_mut() = Some(open_store("host"))),
                run: Box::new(|c| {
                    let guard = host.borrow();
                    let db = guard.as_ref().unwrap().1.blocking();
                    insert_batches(db, c * per_chunk..(c + 1) * per_chunk);
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
                            a.execute_many(INSERT, rows(bt * TX_SIZE..(bt + 1) * TX_SIZE))
                                .await
                                .unwrap();
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
    let (_reads, r) = sqlite_store(&scratch, &path("read.db"), "");
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
                        add(0, checksum(id, &name, score));
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
    assert_same(&*sums.borrow());
    async_groups(rounds, &rt, &scratch, &keys, out);
}

/// The async API vs tokio-rusqlite: inserts and point selects from 1 task
/// (on the current-thread runtime `rt`) and from [`TASKS`] tasks (on a
/// two-worker runtime). The point selects read `read.db` in `scratch`,
/// which the plain group wrote.
fn async_groups(
    rounds: usize,
    rt: &tokio::runtime::Runtime,
    scratch: &Scratch,
    keys: &[i64],
    out: &mut Vec<Row>,
) {
    use std::cell::{Cell, RefCell};
    let mrt = runtime(2);
    let batches = INSERTS / TX_SIZE;
    let round = Cell::new(0usize);
    let fresh = |name: &str| scratch.path(&format!("async-{name}-{}.db", round.get()));
    let open_store = |name: &str, extra: &str| {
        let (st, s) = sqlite_store(scratch, &fresh(name), extra);
        s.blocking().execute(CREATE, &Params::None).unwrap();
        (st, s)
    };
    let peer_fresh = |name: &str| {
        rt.block_on(async {
            let c = peer_open(&fresh(name)).await;
            c.call(|c| c.execute_batch(CREATE)).await.unwrap();
            c
        })
    };
    for (tasks, work) in [
        (1, "100k inserts, tx of 1k, async, 1 task"),
        (TASKS, "100k inserts, tx of 1k, async, 32 tasks"),
    ] {
        let peer: RefCell<Option<tokio_rusqlite::Connection>> = RefCell::new(None);
        type Opened = RefCell<Option<(Storage, backplane_host::RelationalStore)>>;
        let hosts: [(&'static str, &str, Opened); 2] = [
            ("host sqlite, async API", "", RefCell::new(None)),
            (WORKERS_VARIANT, WORKERS_LAYER, RefCell::new(None)),
        ];
        // Task t inserts the batches t, t + tasks, t + 2 * tasks, ...
        let mine = move |t: usize| (t..batches).step_by(tasks);
        let mut variants = vec![Variant {
            name: "tokio-rusqlite",
            reset: Box::new(|| {
                round.set(round.get() + 1);
                *peer.borrow_mut() = Some(peer_fresh("peer"));
            }),
            run: Box::new(|_| {
                let c = peer.borrow().clone().unwrap();
                on_tasks(rt, &mrt, tasks, |t| {
                    let c = c.clone();
                    async move {
                        for bt in mine(t) {
                            peer_insert(&c, bt).await;
                        }
                    }
                });
            }),
        }];
        for (i, (name, extra, host)) in hosts.iter().enumerate() {
            let file = ["host", "host-workers"][i];
            variants.push(Variant {
                name,
                reset: Box::new(move || *host.borrow_mut() = Some(open_store(file, extra))),
                run: Box::new(|_| {
                    let a = host.borrow().as_ref().unwrap().1.clone();
                    on_tasks(rt, &mrt, tasks, |t| {
                        let a = a.clone();
                        async move {
                            for bt in mine(t) {
                                a.execute_many(INSERT, rows(bt * TX_SIZE..(bt + 1) * TX_SIZE))
                                    .await
                                    .unwrap();
                            }
                        }
                    });
                }),
            });
        }
        interleaved("relational", work, INSERTS, rounds, 1, &mut variants, out);
    }

    let read = scratch.path("read.db");
    let peer = rt.block_on(peer_open(&read));
    // (name, (storage, store)): the storage is kept open with its store.
    let hosts = [
        ("host sqlite, async API", sqlite_store(scratch, &read, "")),
        (WORKERS_VARIANT, sqlite_store(scratch, &read, WORKERS_LAYER)),
    ];
    let sums = RefCell::new([0i64; 6]);
    let add = |i: usize, v: i64| sums.borrow_mut()[i] += v;
    for (tasks, work, at) in [
        (1, "100k point selects, async, 1 task", 0),
        (TASKS, "100k point selects, async, 32 tasks", 3),
    ] {
        // Task t reads its contiguous share of the keys.
        let share = |t: usize| keys[t * keys.len() / tasks..(t + 1) * keys.len() / tasks].to_vec();
        let mut variants = vec![Variant {
            name: "tokio-rusqlite",
            reset: Box::new(|| {}),
            run: Box::new(|_| {
                let got: i64 = on_tasks(rt, &mrt, tasks, |t| {
                    let (c, ks) = (peer.clone(), share(t));
                    async move {
                        let mut sum = 0;
                        for k in ks {
                            sum += peer_select(&c, k).await;
                        }
                        sum
                    }
                })
                .into_iter()
                .sum();
                add(at, got);
            }),
        }];
        for (i, (name, (_, r))) in hosts.iter().enumerate() {
            let (mrt, share, add) = (&mrt, &share, &add);
            variants.push(Variant {
                name,
                reset: Box::new(|| {}),
                run: Box::new(move |_| {
                    let got: i64 = on_tasks(rt, mrt, tasks, |t| {
                        let (r, ks) = (r.clone(), share(t));
                        async move {
                            let mut sum = 0;
                            for k in ks {
                                let rows = r.query(SELECT, params![k]).await.unwrap();
                                sum += row_sum(&rows.rows[0]);
                            }
                            sum
                        }
                    })
                    .into_iter()
                    .sum();
                    add(at + 1 + i, got);
                }),
            });
        }
        interleaved("relational", work, SELECTS, rounds, 1, &mut variants, out);
    }
    let s = sums.borrow();
    assert_same(&s[..3]);
    assert_same(&s[3..]);
}
