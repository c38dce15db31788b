//! `postgres`: the relational work at a tenth of the size (10k inserts in
//! transactions of 1,000, 10k point selects), with 1 and with 32
//! concurrent tasks, through the postgres plugin vs the `postgres` crate
//! (the driver the plugin uses) called directly, and the async API with 32
//! tasks vs tokio-postgres (a connection per task); and 3-hop neighbourhoods
//! on a 100k-node, 1M-edge graph, through the plugin vs the same recursive
//! query sent directly (skipped when no PostgreSQL answers;
//! `BACKPLANE_POSTGRES_URL`). Everything lives in a fresh schema, dropped
//! at the end. `BENCH_PG_WORKERS=N` runs the relational store's async
//! calls on N threads of its own (`workers`) instead of tokio's blocking
//! pool.

use crate::harness::{
    assert_same, bench_dir, checksum, interleaved, open, row_sum, rows, runtime, spawn_tasks, Rng,
    Row, Variant, TX_SIZE,
};
use backplane_host::params;

const PG_OPS: usize = 10_000;
const PG_TASKS: usize = 32;
const GRAPH_NODES: usize = 100_000;
const GRAPH_EDGES: usize = 1_000_000;
const GRAPH_QUERIES: usize = 200;

/// The postgres plugin vs the `postgres` crate: relational work with 1 and
/// 32 concurrent tasks, and 3-hop neighbourhoods on a 1M-edge graph.
pub fn group(rounds: usize, out: &mut Vec<Row>) {
    let (url, shown, unreachable) = backplane_behavior::postgres_server();
    if let Some(why) = unreachable {
        println!("skip postgres: no server at {shown} ({why})");
        return;
    }
    let schema = format!("bp_bench_{}", backplane_behavior::namespace());
    let connect = || {
        let mut c: postgres::Client = url
            .parse::<postgres::Config>()
            .unwrap()
            .connect(postgres::NoTls)
            .unwrap();
        c.batch_execute(&format!("SET search_path = {schema}"))
            .unwrap();
        c
    };
    let scratch = bench_dir();
    let section = format!(
        "backend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\npool_size = {PG_TASKS}\n"
    );
    // BENCH_PG_WORKERS=N: the relational store's async calls on N threads
    // of its own (the `workers` layer key) instead of tokio's blocking pool.
    let workers = match std::env::var("BENCH_PG_WORKERS") {
        Ok(n) => format!("[relational.r.layers]\nworkers = {n}\n"),
        Err(_) => String::new(),
    };
    let storage = open(
        &scratch,
        &["backplane_plugin_postgres"],
        &format!("[relational.r]\n{section}{workers}[graph.g]\n{section}"),
    );
    let r = storage.relational("r").unwrap();
    let rt = runtime(2);
    let direct = std::cell::RefCell::new(connect());
    let pool: Vec<std::sync::Mutex<postgres::Client>> = (0..PG_TASKS)
        .map(|_| std::sync::Mutex::new(connect()))
        .collect();
    // The async peer: tokio-postgres, a connection per task (as the
    // plugin's pool has), its connection futures run on `rt`.
    let peers: std::sync::Arc<Vec<tokio::sync::Mutex<tokio_postgres::Client>>> =
        rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..PG_TASKS {
                let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                c.batch_execute(&format!("SET search_path = {schema}"))
                    .await
                    .unwrap();
                v.push(tokio::sync::Mutex::new(c));
            }
            std::sync::Arc::new(v)
        });
    const PG_INSERT: &str = "INSERT INTO {t} (id, name, score) VALUES ($1, $2, $3)";
    const PG_SELECT: &str = "SELECT id, name, score FROM bench_read WHERE id = $1";
    let create = |t: &str| {
        direct
            .borrow_mut()
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION NOT NULL)"
            ))
            .unwrap();
    };
    let direct_insert = |c: &mut postgres::Client, t: &str, keys: std::ops::Range<usize>| {
        let mut tx = c.transaction().unwrap();
        let st = tx.prepare(&PG_INSERT.replace("{t}", t)).unwrap();
        for i in keys {
            tx.execute(&st, &[&(i as i64), &format!("user-{i}"), &(i as f64 * 0.5)])
                .unwrap();
        }
        tx.commit().unwrap();
    };
    let host_insert = |t: &str| format!("INSERT INTO {t} (id, name, score) VALUES (?, ?, ?)");
    // Per task: a share of the keys, in transactions of at most 1,000.
    let share = |t: usize| (t * PG_OPS / PG_TASKS)..((t + 1) * PG_OPS / PG_TASKS);
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct",
                reset: Box::new(|| create("bench_d1")),
                run: Box::new(|_| {
                    let mut c = direct.borrow_mut();
                    for b in 0..PG_OPS / TX_SIZE {
                        direct_insert(&mut c, "bench_d1", b * TX_SIZE..(b + 1) * TX_SIZE);
                    }
                }),
            },
            Variant {
                name: "host postgres, blocking API",
                reset: Box::new(|| create("bench_h1")),
                run: Box::new(|_| {
                    let sql = host_insert("bench_h1");
                    for b in 0..PG_OPS / TX_SIZE {
                        r.blocking()
                            .execute_many(&sql, &rows(b * TX_SIZE..(b + 1) * TX_SIZE))
                            .unwrap();
                    }
                }),
            },
        ];
        interleaved(
            "postgres",
            "10k inserts, tx of 1k",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct, 32 threads",
                reset: Box::new(|| create("bench_d32")),
                run: Box::new(|_| {
                    std::thread::scope(|s| {
                        for (t, c) in pool.iter().enumerate() {
                            s.spawn(move || {
                                direct_insert(&mut c.lock().unwrap(), "bench_d32", share(t))
                            });
                        }
                    })
                }),
            },
            Variant {
                name: "host postgres, blocking API, 32 threads",
                reset: Box::new(|| create("bench_b32")),
                run: Box::new(|_| {
                    let sql = host_insert("bench_b32");
                    std::thread::scope(|s| {
                        for t in 0..PG_TASKS {
                            let (r, sql) = (&r, &sql);
                            s.spawn(move || {
                                r.blocking().execute_many(sql, &rows(share(t))).unwrap()
                            });
                        }
                    })
                }),
            },
        ];
        interleaved(
            "postgres",
            "10k inserts, 32 tasks",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        let mut variants = [
            Variant {
                name: "tokio-postgres, 32 tasks",
                reset: Box::new(|| create("bench_p32")),
                run: Box::new(|_| {
                    let insert = PG_INSERT.replace("{t}", "bench_p32");
                    spawn_tasks(&rt, PG_TASKS, |t| {
                        let (peers, insert) = (peers.clone(), insert.clone());
                        async move {
                            let mut c = peers[t].lock().await;
                            let tx = c.transaction().await.unwrap();
                            let st = tx.prepare(&insert).await.unwrap();
                            for i in share(t) {
                                tx.execute(
                                    &st,
                                    &[&(i as i64), &format!("user-{i}"), &(i as f64 * 0.5)],
                                )
                                .await
                                .unwrap();
                            }
                            tx.commit().await.unwrap();
                        }
                    });
                }),
            },
            Variant {
                name: "host postgres, async API, 32 tasks",
                reset: Box::new(|| create("bench_h32")),
                run: Box::new(|_| {
                    let sql = host_insert("bench_h32");
                    spawn_tasks(&rt, PG_TASKS, |t| {
                        let (r, sql, set) = (r.clone(), sql.clone(), rows(share(t)));
                        async move {
                            r.execute_many(sql, set).await.unwrap();
                        }
                    });
                }),
            },
        ];
        interleaved(
            "postgres",
            "10k inserts, async, 32 tasks",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    // Point selects on one table of PG_OPS rows.
    create("bench_read");
    direct_insert(&mut direct.borrow_mut(), "bench_read", 0..PG_OPS);
    let mut rng = Rng(0x5eed);
    let keys: Vec<i64> = (0..PG_OPS)
        .map(|_| (rng.next() % PG_OPS as u64) as i64)
        .collect();
    let keys = &keys;
    let host_select = "SELECT id, name, score FROM bench_read WHERE id = ?";
    let sums = std::sync::Mutex::new([0i64; 6]);
    let add = |i: usize, v: i64| sums.lock().unwrap()[i] += v;
    let read_direct = |c: &mut postgres::Client, ks: &[i64]| -> i64 {
        let st = c.prepare(PG_SELECT).unwrap();
        ks.iter()
            .map(|k| {
                let row = c.query_one(&st, &[k]).unwrap();
                let (id, name, score): (i64, String, f64) = (row.get(0), row.get(1), row.get(2));
                checksum(id, &name, score)
            })
            .sum()
    };
    // The host's blocking reads of `ks`, each row's checksum added to
    // sums[i].
    let read_host = |i: usize, ks: &[i64]| {
        for k in ks {
            let rows = r.blocking().query(host_select, &params![*k]).unwrap();
            add(i, row_sum(&rows.rows[0]));
        }
    };
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct",
                reset: Box::new(|| {}),
                run: Box::new(|_| add(0, read_direct(&mut direct.borrow_mut(), keys))),
            },
            Variant {
                name: "host postgres, blocking API",
                reset: Box::new(|| {}),
                run: Box::new(|_| read_host(1, keys)),
            },
        ];
        interleaved(
            "postgres",
            "10k point selects",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct, 32 threads",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    std::thread::scope(|s| {
                        for (t, c) in pool.iter().enumerate() {
                            let add = &add;
                            s.spawn(move || {
                                add(2, read_direct(&mut c.lock().unwrap(), &keys[share(t)]))
                            });
                        }
                    })
                }),
            },
            Variant {
                name: "host postgres, blocking API, 32 threads",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    std::thread::scope(|s| {
                        for t in 0..PG_TASKS {
                            let read_host = &read_host;
                            s.spawn(move || read_host(4, &keys[share(t)]));
                        }
                    })
                }),
            },
        ];
        interleaved(
            "postgres",
            "10k point selects, 32 tasks",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    {
        let mut variants = [
            Variant {
                name: "tokio-postgres, 32 tasks",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    let total: i64 = spawn_tasks(&rt, PG_TASKS, |t| {
                        let (peers, ks) = (peers.clone(), keys[share(t)].to_vec());
                        async move {
                            let c = peers[t].lock().await;
                            let st = c.prepare(PG_SELECT).await.unwrap();
                            let mut sum = 0;
                            for k in ks {
                                let row = c.query_one(&st, &[&k]).await.unwrap();
                                let (id, name, score): (i64, String, f64) =
                                    (row.get(0), row.get(1), row.get(2));
                                sum += checksum(id, &name, score);
                            }
                            sum
                        }
                    })
                    .into_iter()
                    .sum();
                    add(5, total);
                }),
            },
            Variant {
                name: "host postgres, async API, 32 tasks",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    let total: i64 = spawn_tasks(&rt, PG_TASKS, |t| {
                        let (r, ks) = (r.clone(), keys[share(t)].to_vec());
                        async move {
                            let mut sum = 0;
                            for k in ks {
                                let rows = r.query(host_select, params![k]).await.unwrap();
                                sum += row_sum(&rows.rows[0]);
                            }
                            sum
                        }
                    })
                    .into_iter()
                    .sum();
                    add(3, total);
                }),
            },
        ];
        interleaved(
            "postgres",
            "10k point selects, async, 32 tasks",
            PG_OPS,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    assert_same(&*sums.lock().unwrap());

    // The graph: loaded with COPY into the store's own tables.
    let g = storage.graph("g").unwrap();
    eprintln!("postgres: loading {GRAPH_NODES} nodes and {GRAPH_EDGES} edges");
    {
        use std::io::Write;
        let mut c = direct.borrow_mut();
        let mut w = c
            .copy_in("COPY _bp_graph_nodes (id, label, properties) FROM STDIN")
            .unwrap();
        for i in 0..GRAPH_NODES {
            writeln!(w, "n{i}\tperson\t{{\"i\": {i}}}").unwrap();
        }
        w.finish().unwrap();
        let mut rng = Rng(0xed9e);
        let mut w = c
            .copy_in("COPY _bp_graph_edges (id, from_id, to_id, edge_type, properties) FROM STDIN")
            .unwrap();
        for j in 0..GRAPH_EDGES {
            let (a, b) = (
                rng.next() % GRAPH_NODES as u64,
                rng.next() % GRAPH_NODES as u64,
            );
            let ty = if j % 2 == 0 { "knows" } else { "likes" };
            writeln!(w, "e{j}\tn{a}\tn{b}\t{ty}\t{{}}").unwrap();
        }
        w.finish().unwrap();
        c.batch_execute("ANALYZE _bp_graph_nodes; ANALYZE _bp_graph_edges")
            .unwrap();
    }
    let mut rng = Rng(0x3407);
    let starts: Vec<String> = (0..GRAPH_QUERIES)
        .map(|_| format!("n{}", rng.next() % GRAPH_NODES as u64))
        .collect();
    let starts = &starts;
    // The plugin's own query (Direction::Outgoing), sent directly.
    const HOPS: &str = "WITH RECURSIVE walk(id, depth) AS (
        SELECT $1::text COLLATE \"C\", 0
      UNION
        SELECT x.next, w.depth + 1 FROM walk w
        CROSS JOIN LATERAL (SELECT e.to_id AS next, e.edge_type FROM _bp_graph_edges e WHERE e.from_id = w.id) x
        WHERE w.depth < $2
    )
    SELECT n.id, n.label, n.properties, min(w.depth) AS d
    FROM walk w JOIN _bp_graph_nodes n ON n.id = w.id
    WHERE w.id <> $1
    GROUP BY n.id ORDER BY d, n.id";
    let found = std::cell::RefCell::new([0usize; 2]);
    {
        let mut variants = [
            Variant {
                name: "postgres crate direct (same recursive query)",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    let mut c = direct.borrow_mut();
                    let st = c.prepare(HOPS).unwrap();
                    for s in starts {
                        for row in c.query(&st, &[s, &3i32]).unwrap() {
                            let (_, _, _, _): (String, String, serde_json::Value, i32) =
                                (row.get(0), row.get(1), row.get(2), row.get(3));
                            found.borrow_mut()[0] += 1;
                        }
                    }
                }),
            },
            Variant {
                name: "host postgres graph, blocking API",
                reset: Box::new(|| {}),
                run: Box::new(|_| {
                    for s in starts {
                        let n = g
                            .blocking()
                            .neighbors(s, backplane_host::Direction::Outgoing, &[], 3)
                            .unwrap();
                        found.borrow_mut()[1] += n.len();
                    }
                }),
            },
        ];
        interleaved(
            "postgres",
            "200 3-hop neighbourhoods, 100k nodes / 1M edges",
            GRAPH_QUERIES,
            rounds,
            1,
            &mut variants,
            out,
        );
    }
    let f = found.borrow();
    assert_eq!(f[0], f[1], "both found the same neighbourhoods");
    eprintln!(
        "postgres: {} nodes per 3-hop neighbourhood on average",
        f[0] / (GRAPH_QUERIES * rounds)
    );
    drop(storage);
    direct
        .borrow_mut()
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}
