//! The async API when calls are cut short: a future dropped mid-call, a
//! plugin that panics inside a started call, and the host shut down with
//! calls in flight neither hang nor leak. Both of the async API's paths
//! are tried:
//!
//! - a call started in the plugin and completed through a callback: the
//!   `panicking` fixture with `started = true` (its `get` answers from a
//!   thread of its own, and counts started and answered calls), the
//!   redis plugin's multiplexed connection, and the postgres plugin's
//!   `execute` and `query` on tokio-postgres;
//! - the embedded backends' hot calls (relational, vector, cache and
//!   graph on sqlite, memory and qdrant-edge), served from their stores' own
//!   threads with tokio's only blocking thread held;
//! - a slow SQLite query, started on the sqlite plugin's own worker
//!   thread (its `execute` and `query` are started calls), and the same
//!   query as a blocking call run on tokio's blocking pool (`run`).
//!
//! "No leak" is checked on what a call holds: every started call's
//! callback is called (the fixture's counts agree, and the host frees its
//! side of a call in that callback), and a store's SQLite connection is
//! closed once its handles are dropped and the calls in flight have ended
//! (no descriptor of the process still names the file).

use backplane_behavior::{
    drop_postgres_schema, in_ci, library, namespace, plugins_toml, postgres_server, redis_server,
    Scratch,
};
use backplane_host::{params, CacheStore, ErrorKind, Storage, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// A query that keeps SQLite busy for a while (a million-row count).
const SLOW: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) SELECT count(*) FROM n";

/// Storage with the fixture's started cache `[cache.f]` and a SQLite
/// relational store `[relational.r]` at `db`.
fn open(scratch: &Scratch, db: &Path) -> Storage {
    let cfg = scratch.path("plugins.toml");
    std::fs::write(
        &cfg,
        format!(
            "[plugins]\nload = [\"{}\", \"{}\"]\n\n[cache.f]\nbackend = \"panicking\"\nstarted = true\n\n[relational.r]\nbackend = \"sqlite\"\npath = \"{}\"\n",
            library("backplane_fixture_panicking").display(),
            library("backplane_plugin_sqlite").display(),
            db.display()
        ),
    )
    .unwrap();
    Storage::open(&cfg).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Wait (up to 30 s) until `done` holds; false if it never did.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// The fixture's counts: (started, answered), process-wide.
fn counts(c: &CacheStore) -> (u64, u64) {
    let s = c.blocking().stats().unwrap();
    (s.hits, s.misses)
}

/// Every call the fixture started has been answered, eventually.
fn all_answered(c: &CacheStore) {
    assert!(
        eventually(|| {
            let (started, answered) = counts(c);
            started == answered
        }),
        "started calls left unanswered: {:?} (started, answered)",
        counts(c)
    );
}

/// Descriptors of this process that name `db` (or its -wal/-shm files).
fn open_files(db: &Path) -> usize {
    let name = db.file_name().unwrap().to_string_lossy().to_string();
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.to_string_lossy().contains(&name))
                .count()
        })
        .unwrap_or(0)
}

/// No descriptor names `db` any more, eventually (after `when`).
fn all_closed(db: &Path, when: &str) {
    assert!(
        eventually(|| open_files(db) == 0),
        "the SQLite store's files are still open after {when}: {} descriptors",
        open_files(db)
    );
}

#[test]
fn a_plugin_that_panics_inside_a_started_call_gives_an_error_not_a_hang() {
    let scratch = Scratch::new();
    let storage = open(&scratch, &scratch.path("p.db"));
    let c = storage.cache("f").unwrap();
    assert!(
        c.blocking().as_async().is_some(),
        "the fixture starts calls"
    );
    runtime().block_on(async {
        for key in ["panic-now", "panic-later"] {
            let e = tokio::time::timeout(Duration::from_secs(30), c.get(key))
                .await
                .unwrap_or_else(|_| panic!("get({key}) hung"))
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Panicked, "{key}: {e}");
            assert!(
                e.message().contains("panicked in a started call")
                    && e.message()
                        .contains("(at tests/fixtures/panicking/src/lib.rs:"),
                "{key}: the error says where the plugin panicked: {e}"
            );
            assert_eq!(e.store(), Some("f"), "{e}");
        }
        // The store still answers, on the same path.
        let v = c.get("slow-1").await.unwrap();
        assert_eq!(v.as_deref(), Some(&b"slow-1"[..]));
        c.set("k", b"v".to_vec(), None).await.unwrap();
    });
    all_answered(&c);
}

#[test]
fn futures_dropped_mid_call_are_answered_and_freed() {
    let scratch = Scratch::new();
    let db = scratch.path("dropped.db");
    let storage = open(&scratch, &db);
    let c = storage.cache("f").unwrap();
    let r = storage.relational("r").unwrap();
    let rt = runtime();
    rt.block_on(async {
        // Started calls: each future is dropped while its call runs on the
        // plugin's thread.
        for _ in 0..200 {
            let cut = tokio::time::timeout(Duration::from_millis(1), c.get("slow-20")).await;
            assert!(cut.is_err(), "a 20 ms call finished within 1 ms");
        }
        // Started on the plugin's worker, then blocking calls on tokio's
        // pool: each future is dropped while SQLite works.
        assert!(r.blocking().as_async().is_some(), "sqlite starts query");
        for _ in 0..4 {
            let cut =
                tokio::time::timeout(Duration::from_millis(5), r.query(SLOW, params![])).await;
            assert!(cut.is_err(), "the slow query finished within 5 ms");
            let blocking = r.run(|s| s.query(SLOW, &params![]));
            let cut = tokio::time::timeout(Duration::from_millis(5), blocking).await;
            assert!(cut.is_err(), "the slow query finished within 5 ms");
        }
        // Both stores still answer, with their own results.
        let v = c.get("slow-0").await.unwrap();
        assert_eq!(v.as_deref(), Some(&b"slow-0"[..]));
        let rows = r.query("SELECT 41 + 1", params![]).await.unwrap();
        assert_eq!(rows.rows[0][0].as_i64(), Some(42));
    });
    all_answered(&c);
    assert!(open_files(&db) > 0, "the store holds its file while open");
    drop((r, c, storage));
    all_closed(&db, "every handle was dropped and the cut calls ended");
}

#[test]
fn shutting_down_with_calls_in_flight_neither_hangs_nor_leaks() {
    let scratch = Scratch::new();
    let db = scratch.path("shutdown.db");
    let storage = open(&scratch, &db);
    let rt = runtime();
    for t in 0..16 {
        let (c, r) = (
            storage.cache("f").unwrap(),
            storage.relational("r").unwrap(),
        );
        rt.spawn(async move {
            loop {
                match t % 3 {
                    0 => drop(c.get("slow-200").await),
                    1 => drop(r.query(SLOW, params![]).await),
                    _ => drop(r.run(|s| s.query(SLOW, &params![])).await),
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let c = storage.cache("f").unwrap();
    drop(storage);
    // Tasks are dropped mid-call; the blocking pool is given 5 s to finish
    // the SQLite calls it runs, then left behind; the sqlite plugin's
    // worker runs the queries queued on it to their end.
    let began = Instant::now();
    rt.shutdown_timeout(Duration::from_secs(5));
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "shutting the runtime down took {:?}",
        began.elapsed()
    );
    all_answered(&c);
    drop(c);
    all_closed(&db, "shutdown");
}

/// A redis plugin cache store `[cache.c]` under a key prefix of its own
/// (the prefix, and the server's URL, are returned); `None` when no
/// server answers outside CI (it says it skipped).
fn redis_store(scratch: &Scratch, tag: &str) -> Option<(Storage, CacheStore, String, String)> {
    let (url, shown, unreachable) = redis_server();
    if let Some(why) = unreachable {
        assert!(!in_ci(), "no Redis at {shown} in CI: {why}");
        println!("skip: no Redis at {shown} ({why})");
        return None;
    }
    let prefix = format!("bp-{tag}-{}", std::process::id());
    let cfg = plugins_toml(
        scratch,
        &["backplane_plugin_redis"],
        &format!("[cache.c]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"{prefix}:\"\n"),
    );
    let storage = Storage::open(&cfg).unwrap();
    let c = storage.cache("c").unwrap();
    assert!(c.blocking().as_async().is_some(), "redis starts its calls");
    Some((storage, c, url, prefix))
}

/// On the redis plugin's multiplexed connection: a reply whose future was
/// dropped never reaches another call.
#[test]
fn dropped_redis_calls_do_not_cross_replies() {
    let scratch = Scratch::new();
    let Some((_storage, c, _, _)) = redis_store(&scratch, "async") else {
        return;
    };
    runtime().block_on(async {
        for i in 0..100 {
            c.set(format!("k{i}"), format!("v{i}").into_bytes(), None)
                .await
                .unwrap();
        }
        for round in 0..20 {
            for i in 0..100 {
                // Cut one call right after it started, then check the next
                // answers with its own value.
                let _ = tokio::time::timeout(Duration::ZERO, c.get(format!("k{}", (i + 1) % 100)))
                    .await;
                let got = c.get(format!("k{i}")).await.unwrap();
                assert_eq!(
                    got.as_deref(),
                    Some(format!("v{i}").as_bytes()),
                    "round {round}, key k{i}"
                );
            }
        }
        for i in 0..100 {
            c.delete(format!("k{i}")).await.unwrap();
        }
    });
}

/// The redis plugin sends the commands that many tasks start at once
/// together, as one pipeline: each call still gets its own reply, and a
/// command the server refuses fails alone, the others in its pipeline
/// answering.
#[test]
fn redis_calls_sent_together_keep_their_own_replies_and_errors() {
    let scratch = Scratch::new();
    let Some((_storage, c, url, prefix)) = redis_store(&scratch, "batch") else {
        return;
    };
    // A key holding a list: the server refuses GET on it (WRONGTYPE).
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let listy = format!("{prefix}:kv:listy");
    redis::cmd("RPUSH")
        .arg(&listy)
        .arg("x")
        .query::<()>(&mut raw)
        .unwrap();
    const TASKS: usize = 64;
    const EACH: usize = 100;
    let rt = runtime();
    let refused = rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let c = c.clone();
                tokio::spawn(async move {
                    let mut refused = 0;
                    for i in 0..EACH {
                        let (k, v) = (format!("k{t}-{i}"), format!("v{t}-{i}-{}", "x".repeat(i)));
                        c.set(k.clone(), v.clone().into_bytes(), None)
                            .await
                            .unwrap();
                        if i % 10 == t % 10 {
                            let e = c.get("listy".to_string()).await.unwrap_err();
                            assert!(e.message().contains("WRONGTYPE"), "task {t}: {e}");
                            refused += 1;
                        }
                        let got = c.get(k.clone()).await.unwrap();
                        assert_eq!(got.as_deref(), Some(v.as_bytes()), "task {t}, key {k}");
                    }
                    refused
                })
            })
            .collect();
        let mut refused = 0;
        for t in tasks {
            refused += tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("the calls answered")
                .unwrap();
        }
        refused
    });
    assert_eq!(refused, TASKS * EACH / 10);
    // The store goes on answering, and the values are on the server.
    let got: Option<Vec<u8>> = redis::cmd("GET")
        .arg(format!("{prefix}:kv:k3-7"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(
        got.as_deref(),
        Some(format!("v3-7-{}", "x".repeat(7)).as_bytes())
    );
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(keys.len(), TASKS * EACH + 1);
    keys.sort();
    redis::cmd("DEL").arg(&keys).query::<()>(&mut raw).unwrap();
}

/// Threads of this process named `name` (as `comm` shows them).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
                .filter(|c| c.trim_end() == name)
                .count()
        })
        .unwrap_or(0)
}

/// A store with `workers` runs its async calls on threads of its own: the
/// answers are right from many tasks, a panic is that call's error, the
/// deadline still holds, and the threads end with the store.
#[test]
fn a_store_with_its_own_workers_answers_and_stops_them_when_dropped() {
    let scratch = Scratch::new();
    let db = scratch.path("workers.db");
    let cfg = plugins_toml(
        &scratch,
        &["backplane_plugin_sqlite"],
        &format!(
            "[relational.wk]\nbackend = \"sqlite\"\npath = \"{}\"\n[relational.wk.layers]\nworkers = 2\ntimeout = \"1s\"\n",
            db.display()
        ),
    );
    let storage = Storage::open(&cfg).unwrap();
    let r = storage.relational("wk").unwrap();
    // A new thread names itself once it runs.
    assert!(
        eventually(|| threads_named("backplane-wk") == 2),
        "the store's two workers: {} found",
        threads_named("backplane-wk")
    );
    let rt = runtime();
    rt.block_on(async {
        r.execute(
            "CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)",
            params![],
        )
        .await
        .unwrap();
        let tasks: Vec<_> = (0..32i64)
            .map(|t| {
                let r = r.clone();
                tokio::spawn(async move {
                    let mut sum = 0;
                    for i in 0..50 {
                        let k = t * 50 + i;
                        r.execute("INSERT INTO t VALUES (?1, ?2)", params![k, k * 3])
                            .await
                            .unwrap();
                        let rows = r
                            .query("SELECT v FROM t WHERE k = ?1", params![k])
                            .await
                            .unwrap();
                        sum += rows.rows[0][0].as_i64().unwrap();
                    }
                    sum
                })
            })
            .collect();
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap();
        }
        assert_eq!(sum, (0..1600i64).map(|k| k * 3).sum::<i64>());
        // A panic in a call is that call's error; the workers go on.
        let e = r
            .run(|_| -> backplane_host::Result<()> { panic!("boom in a call") })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
        assert!(e.message().contains("boom in a call"), "{e}");
        // The deadline frees the caller of a slow call on a worker.
        let e = r
            .run(|_| {
                std::thread::sleep(Duration::from_secs(2));
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.message().contains("did not finish within 1s"), "{e}");
        let rows = r.query("SELECT count(*) FROM t", params![]).await.unwrap();
        assert_eq!(rows.rows[0][0].as_i64(), Some(1600));
    });
    assert_eq!(threads_named("backplane-wk"), 2, "no worker was lost");
    drop((r, storage));
    assert!(
        eventually(|| threads_named("backplane-wk") == 0),
        "the store's workers outlived it: {} left",
        threads_named("backplane-wk")
    );
    all_closed(&db, "the store with workers was dropped");
}

/// A two-worker runtime with one blocking thread.
fn one_blocking_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Run `calls` on `rt` (from [`one_blocking_thread`]) while its one
/// blocking thread is held: their output, or `None` if they did not end
/// within 30 s (a call that needed the blocking thread waits for ever).
fn with_the_blocking_thread_held<T>(
    rt: &tokio::runtime::Runtime,
    calls: impl std::future::Future<Output = T>,
) -> Option<T> {
    let (holding, held) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = rt.spawn_blocking(move || {
        holding.send(()).unwrap();
        released.recv_timeout(Duration::from_secs(60)).ok();
    });
    held.recv().unwrap();
    let outcome = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), calls).await });
    release.send(()).unwrap();
    rt.block_on(holder).unwrap();
    outcome.ok()
}

/// The postgres plugin starts `execute` and `query` on its own runtime:
/// through the async API they answer, right, while tokio's only blocking
/// thread is held, from many tasks at once on the connections they share
/// (a statement that fails among them fails alone); their errors are the
/// blocking calls' errors; and a table created through them is seen by the
/// blocking API and the other way round.
#[test]
fn postgres_started_calls_take_no_blocking_thread() {
    let (url, shown, unreachable) = postgres_server();
    if let Some(why) = unreachable {
        assert!(!in_ci(), "no PostgreSQL at {shown} in CI: {why}");
        println!("skip: no PostgreSQL at {shown} ({why})");
        return;
    }
    let scratch = Scratch::new();
    let schema = format!("bp_started_{}", namespace());
    let (u, sc) = (url.clone(), schema.clone());
    scratch.on_drop(move || drop_postgres_schema(&u, &sc));
    let cfg = plugins_toml(
        &scratch,
        &["backplane_plugin_postgres"],
        &format!(
            "[relational.pg]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\npool_size = 4\n"
        ),
    );
    let storage = Storage::open(&cfg).unwrap();
    let r = storage.relational("pg").unwrap();
    assert!(
        r.blocking().as_async().is_some(),
        "the postgres plugin starts execute and query"
    );
    let rt = one_blocking_thread();
    let outcome = with_the_blocking_thread_held(&rt, async {
        r.execute(
            "CREATE TABLE t (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v TEXT NOT NULL)",
            params![],
        )
        .await
        .unwrap();
        let tasks: Vec<_> = (0..16i64)
            .map(|t| {
                let r = r.clone();
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    for i in 0..20 {
                        let done = r
                            .execute(
                                "INSERT INTO t (v) VALUES (:v)",
                                backplane_host::Params::Named(vec![(
                                    "v".into(),
                                    format!("{t}-{i}").into(),
                                )]),
                            )
                            .await
                            .unwrap();
                        assert_eq!(done.rows_affected, 1);
                        let id = done.last_insert_id.expect("the generated key");
                        let rows = r
                            .query("SELECT v FROM t WHERE id = ?", params![id])
                            .await
                            .unwrap();
                        assert_eq!(rows.scalar().unwrap().as_str(), Some(&*format!("{t}-{i}")));
                        ids.push(id);
                        // Calls share pipelined connections: one that
                        // fails fails alone.
                        if (t + i) % 5 == 0 {
                            let e = r
                                .query("SELECT 1 / (id - id) FROM t WHERE id = ?", params![id])
                                .await
                                .unwrap_err();
                            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
                            assert!(e.message().contains("division by zero"), "{e}");
                        }
                    }
                    ids
                })
            })
            .collect();
        let mut ids = Vec::new();
        for t in tasks {
            ids.extend(t.await.unwrap());
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 320, "every insert its own key");
        // The blocking calls' errors, the same kinds and words.
        let e = r.query("SELEC 1", params![]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.message().contains("SELEC"), "{e}");
        let e = r.execute("BEGIN", params![]).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        let e = r
            .query("SELECT v FROM t WHERE id = ?", params![1, 2])
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        // A schema change through the started calls is seen by them.
        r.execute("ALTER TABLE t ADD COLUMN w BIGINT DEFAULT 7", params![])
            .await
            .unwrap();
        r.query("SELECT w FROM t WHERE id = ?", params![ids[0]])
            .await
            .unwrap()
    });
    let rows = outcome.expect("the started calls answered without a blocking thread");
    assert_eq!(rows.scalar().unwrap(), &backplane_host::Value::Integer(7));
    // The blocking API sees what the started calls wrote, and its schema
    // change is seen by them in turn.
    let count = r
        .blocking()
        .query("SELECT count(*) FROM t", &params![])
        .unwrap();
    assert_eq!(
        count.scalar().unwrap(),
        &backplane_host::Value::Integer(320)
    );
    r.blocking()
        .execute("ALTER TABLE t DROP COLUMN w", &params![])
        .unwrap();
    let e = rt
        .block_on(r.query("SELECT w FROM t LIMIT 1", params![]))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("w"), "{e}");
}

/// The embedded backends (sqlite, memory, qdrant-edge) serve their stores'
/// hot calls from threads of their own: through the async API a
/// relational store's `execute` and `query`, a vector store's `upsert` and
/// `search`, and a graph store's `get_node` and `neighbors` answer, right,
/// while tokio's only blocking thread is held.
#[test]
fn embedded_stores_serve_their_hot_calls_without_a_blocking_thread() {
    use backplane_host::{Direction, Distance, NewEdge, NewNode, SearchRequest, VectorRecord};
    let scratch = Scratch::new();
    let file = |name: &str| scratch.path(name).display().to_string();
    let cfg = plugins_toml(
        &scratch,
        &[
            "backplane_plugin_sqlite",
            "backplane_plugin_memory",
            "backplane_plugin_qdrant_edge",
        ],
        &format!(
            "[relational.sr]\nbackend = \"sqlite\"\npath = \"{}\"\n\
             [vector.sv]\nbackend = \"sqlite\"\npath = \"{}\"\n\
             [graph.sg]\nbackend = \"sqlite\"\npath = \"{}\"\n\
             [relational.mr]\nbackend = \"memory\"\n\
             [vector.mv]\nbackend = \"memory\"\n\
             [graph.mg]\nbackend = \"memory\"\n\
             [vector.qv]\nbackend = \"qdrant-edge\"\npath = \"{}\"\n\
             [cache.sc]\nbackend = \"sqlite\"\npath = \"{}\"\n\
             [cache.mc]\nbackend = \"memory\"\n",
            file("r.db"),
            file("v.db"),
            file("g.db"),
            file("q"),
            file("c.db")
        ),
    );
    let storage = Storage::open(&cfg).unwrap();
    let relational: Vec<_> = ["sr", "mr"]
        .iter()
        .map(|n| storage.relational(n).unwrap())
        .collect();
    let vector: Vec<_> = ["sv", "mv", "qv"]
        .iter()
        .map(|n| storage.vector(n).unwrap())
        .collect();
    let caches: Vec<_> = ["sc", "mc"]
        .iter()
        .map(|n| storage.cache(n).unwrap())
        .collect();
    for c in &caches {
        assert!(c.blocking().as_async().is_some(), "{}", c.name());
    }
    let graph: Vec<_> = ["sg", "mg"]
        .iter()
        .map(|n| storage.graph(n).unwrap())
        .collect();
    // What the started calls need, made through the blocking API.
    for r in &relational {
        assert!(r.blocking().as_async().is_some(), "{}", r.name());
        r.blocking()
            .execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)", &params![])
            .unwrap();
    }
    for v in &vector {
        assert!(v.blocking().as_async().is_some(), "{}", v.name());
        v.blocking()
            .create_collection("c", 3, Distance::Cosine)
            .unwrap();
    }
    for g in &graph {
        assert!(g.blocking().as_async().is_some(), "{}", g.name());
        let b = g.blocking();
        b.create_nodes(&[
            NewNode::new("L", serde_json::json!({"n": 1})).with_id("a"),
            NewNode::new("L", serde_json::json!({"n": 2})).with_id("b"),
        ])
        .unwrap();
        b.create_edges(&[NewEdge::new("a", "b", "knows")]).unwrap();
    }
    let rt = one_blocking_thread();
    let calls = async {
        for r in &relational {
            r.execute("INSERT INTO t (k, v) VALUES (?, ?)", params![7, "seven"])
                .await
                .unwrap();
            let rows = r
                .query("SELECT v FROM t WHERE k = ?", params![7])
                .await
                .unwrap();
            assert_eq!(
                rows.scalar().unwrap().as_str(),
                Some("seven"),
                "{}",
                r.name()
            );
            // Rows of several columns and kinds, then other columns: the
            // started reply's column names are those of its own query.
            r.execute("INSERT INTO t (k, v) VALUES (?, NULL)", params![8])
                .await
                .unwrap();
            let rows = r
                .query("SELECT k, v, k * 0.5 AS half FROM t ORDER BY k", params![])
                .await
                .unwrap();
            assert_eq!(&*rows.columns, ["k", "v", "half"], "{}", r.name());
            assert_eq!(
                rows.rows,
                vec![
                    vec![
                        Value::Integer(7),
                        Value::Text("seven".into()),
                        Value::Real(3.5)
                    ],
                    vec![Value::Integer(8), Value::Null, Value::Real(4.0)],
                ],
                "{}",
                r.name()
            );
            let rows = r
                .query("SELECT v AS name FROM t WHERE k = ?", params![7])
                .await
                .unwrap();
            assert_eq!(&*rows.columns, ["name"], "{}", r.name());
            let e = r.query("SELEC k FROM t", params![]).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{}: {e}", r.name());
            assert!(e.message().contains("SELEC"), "{}: {e}", r.name());
        }
        for v in &vector {
            v.upsert(
                "c",
                vec![
                    VectorRecord::new("x", vec![1.0, 0.0, 0.0]),
                    VectorRecord::new("y", vec![0.0, 1.0, 0.0]),
                ],
            )
            .await
            .unwrap();
            let hits = v
                .search("c", SearchRequest::new(vec![0.1, 0.9, 0.0], 1))
                .await
                .unwrap();
            assert_eq!(hits.len(), 1, "{}", v.name());
            assert_eq!(hits[0].id, "y", "{}", v.name());
        }
        for c in &caches {
            c.set("k", b"v".to_vec(), None).await.unwrap();
            let v = c.get("k").await.unwrap();
            assert_eq!(v.as_deref(), Some(&b"v"[..]), "{}", c.name());
        }
        for g in &graph {
            let a = g.get_node("a").await.unwrap().expect("node a");
            assert_eq!(a.properties["n"], 1, "{}", g.name());
            let near = g
                .neighbors("a", Direction::Outgoing, Vec::new(), 1)
                .await
                .unwrap();
            let ids: Vec<_> = near.iter().map(|n| n.node.id.as_str()).collect();
            assert_eq!(ids, ["b"], "{}", g.name());
        }
    };
    let outcome = with_the_blocking_thread_held(&rt, calls);
    outcome.expect("the started calls answered without a blocking thread");
}
