//! Operations layers on real backends: chaos and retry on SQLite; the
//! metrics scraped by a real Prometheus server; tracing spans that carry
//! the plugin's own log records; deadlines against frozen Redis and
//! PostgreSQL servers (SIGSTOP), on the blocking and the async API;
//! retries across real Redis and PostgreSQL restarts; the concurrency
//! limit; and one clear error for each layer setting written wrong.
//!
//! The servers are the test's own (`redis-server`, PostgreSQL's server
//! programs, `prometheus`), started on free loopback ports and stopped
//! after, so the suite's shared servers are never frozen or restarted.
//! Without a program the test prints that it skipped and why; in CI that
//! is a failure, except for Qdrant, whose server the project's package
//! registries do not offer: its case runs when `BACKPLANE_QDRANT_BIN`
//! names a `qdrant` binary.

use backplane_behavior::servers::{
    free_port, http_get, qdrant_binary, redis_binaries_available, PgServer, QdrantServer,
    RedisServer,
};
use backplane_behavior::{in_ci, plugins_toml, Scratch};
use backplane_host::{params, ErrorKind, Params, Storage};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open_err(scratch: &Scratch, body: &str) -> String {
    let file = plugins_toml(scratch, &["backplane_plugin_sqlite"], body);
    let e = Storage::open(&file).expect_err("the config is wrong");
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let text = e.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    text
}

#[test]
fn each_wrong_layer_setting_is_one_clear_error() {
    let s = Scratch::new();
    let store = "[cache.c]\nbackend = \"sqlite\"\npath = \"c.db\"\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "[cache.c.layers]\nmetircs = true\n",
            &[
                "unknown layer 'metircs'",
                "did you mean 'metrics'",
                "plugins.toml",
            ],
        ),
        (
            "[cache.c.layers]\nretry = { operations = [\"add_message\"] }\n",
            &["'add_message' is not safe to repeat", "[cache.c]"],
        ),
        (
            "[cache.c.layers]\nretry = { operations = [\"fetch\"] }\n",
            &["no operation 'fetch'", "get, set"],
        ),
        (
            "[cache.c.layers]\nretry = { attempts = 1 }\n",
            &["attempts = 1", "2 to 100"],
        ),
        (
            "[cache.c.layers]\nretry = { atempts = 3 }\n",
            &["retry", "did you mean 'attempts'"],
        ),
        (
            "[cache.c.layers]\nchaos = { fail = 2.0 }\n",
            &["chaos: fail = 2", "fraction"],
        ),
        ("[cache.c.layers]\nchaos = {}\n", &["chaos does nothing"]),
        (
            "[cache.c.layers]\ntimeout = \"soon\"\n",
            &["timeout", "not a duration"],
        ),
        ("[cache.c.layers]\nconcurrency = 0\n", &["concurrency = 0"]),
        (
            "[cache.c.layers]\nworkers = 0\n",
            &["workers = 0: write 1 to 256", "[cache.c]"],
        ),
        (
            "[cache.c.layers]\nworkers = \"two\"\n",
            &["workers = \"two\": write a whole number, 1 to 256"],
        ),
        (
            "[layers]\ntracing = \"yes\"\n",
            &["[layers]", "tracing = \"yes\": write true or false"],
        ),
    ];
    for (extra, wants) in cases {
        let text = open_err(&s, &format!("{store}{extra}"));
        for w in *wants {
            assert!(text.contains(w), "{extra:?}: the error says {w:?}: {text}");
        }
    }
    // A retry on a statement, which may have run before the error.
    let text = open_err(
        &s,
        "[relational.r]\nbackend = \"sqlite\"\npath = \"r.db\"\n[relational.r.layers]\nretry = { operations = [\"query\", \"execute\"] }\n",
    );
    assert!(
        text.contains("'execute' is not safe to repeat on a relational store"),
        "{text}"
    );
    // A listener on a port that is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let text = open_err(
        &s,
        &format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n\n{store}"),
    );
    assert!(text.contains("cannot listen there"), "{text}");
}

#[test]
fn chaos_fails_calls_and_retry_rides_it_out() {
    let s = Scratch::new();
    let file = plugins_toml(
        &s,
        &["backplane_plugin_sqlite"],
        "[layers]\nmetrics = true\n\n\
         [cache.flaky]\nbackend = \"sqlite\"\npath = \"flaky.db\"\n[cache.flaky.layers]\nchaos = { fail = 0.3, seed = 7 }\n\n\
         [cache.steady]\nbackend = \"sqlite\"\npath = \"steady.db\"\n[cache.steady.layers]\nchaos = { fail = 0.3, seed = 7 }\nretry = { attempts = 30, min_delay = \"1ms\", max_delay = \"5ms\" }\n\n\
         [relational.r]\nbackend = \"sqlite\"\npath = \"r.db\"\n[relational.r.layers]\nchaos = { fail = 0.5, seed = 3 }\nretry = { attempts = 30, min_delay = \"1ms\", max_delay = \"5ms\" }\n",
    );
    let storage = Storage::open(&file).unwrap();
    let flaky = storage.cache("flaky").unwrap();
    let mut failed = 0;
    for i in 0..100 {
        if let Err(e) = flaky.blocking().set(&format!("k{i}"), b"v", None) {
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
            assert!(e.message().contains("chaos layer"), "says why: {e}");
            failed += 1;
        }
    }
    assert!(
        (10..=60).contains(&failed),
        "about 30 of 100 fail: {failed}"
    );

    let steady = storage.cache("steady").unwrap();
    for i in 0..100 {
        let k = format!("k{i}");
        steady.blocking().set(&k, k.as_bytes(), None).unwrap();
        assert_eq!(
            steady.blocking().get(&k).unwrap().as_deref(),
            Some(k.as_bytes())
        );
    }
    // A statement is not repeated: some fail, and none ran twice.
    let r = storage.relational("r").unwrap();
    let mut created = false;
    while !created {
        created = r
            .blocking()
            .execute(
                "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)",
                &Params::None,
            )
            .is_ok();
    }
    let (mut ok, mut err) = (0, 0);
    for i in 0..60 {
        match r
            .blocking()
            .execute("INSERT INTO t (id) VALUES (?)", &params![i])
        {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                err += 1;
            }
        }
    }
    assert!(err > 0, "execute is never retried, so chaos shows");
    // The count itself is a query, which is retried.
    let rows = r
        .blocking()
        .query("SELECT count(*) FROM t", &Params::None)
        .unwrap();
    assert_eq!(
        rows.rows[0][0],
        backplane_host::Value::Integer(ok),
        "every acknowledged insert, once"
    );

    let text = storage.metrics();
    let line = |name: &str, store: &str, op: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(name)
                    && l.contains(&format!("store=\"{store}\""))
                    && l.contains(&format!("operation=\"{op}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(
        line("backplane_calls_total", "steady", "set"),
        100.0,
        "{text}"
    );
    assert!(
        line("backplane_retries_total", "steady", "set") > 0.0,
        "{text}"
    );
    assert_eq!(
        line("backplane_errors_total", "steady", "set"),
        0.0,
        "{text}"
    );
    assert_eq!(
        line("backplane_errors_total", "flaky", "set"),
        failed as f64,
        "{text}"
    );
    assert_eq!(
        line("backplane_bytes_total", "steady", "get"),
        290.0,
        "bytes read: {text}"
    );
}

#[test]
fn the_concurrency_limit_holds_calls_within_the_deadline() {
    let s = Scratch::new();
    let file = plugins_toml(
        &s,
        &["backplane_plugin_sqlite"],
        "[cache.c]\nbackend = \"sqlite\"\npath = \"c.db\"\n[cache.c.layers]\nconcurrency = 1\ntimeout = \"700ms\"\nchaos = { latency = \"400ms\" }\n",
    );
    let storage = Storage::open(&file).unwrap();
    let c = storage.cache("c").unwrap();
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let c = c.clone();
            std::thread::spawn(move || c.blocking().set(&format!("k{i}"), b"v", None))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        !refused.is_empty(),
        "three 400 ms calls, one at a time, do not all fit in 700 ms"
    );
    assert!(refused.len() < 3, "the first one fits");
    for e in refused {
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(
            e.message().contains("concurrency") || e.message().contains("did not finish within"),
            "{e}"
        );
    }
}

/// A `prometheus` server scraping `target` every second, stopped when
/// dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: Scratch,
}

impl Prometheus {
    fn start(target: std::net::SocketAddr) -> Option<Prometheus> {
        let runs = Command::new("prometheus")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !runs {
            assert!(!in_ci(), "the metrics test needs the prometheus server in CI (.ci/run installs Debian's prometheus)");
            println!("skip metrics scraped by Prometheus: no `prometheus` on PATH (Debian's prometheus package)");
            return None;
        }
        let dir = Scratch::new();
        let conf = dir.path("prometheus.yml");
        std::fs::write(
            &conf,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: backplane\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        Some(Prometheus {
            child,
            port,
            _dir: dir,
        })
    }

    fn query(&self, q: &str) -> Option<String> {
        let (code, body) = http_get(self.port, &format!("/api/v1/query?query={q}"))?;
        (code == 200).then_some(body)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn metrics_are_scraped_by_a_real_prometheus() {
    let s = Scratch::new();
    let file = plugins_toml(
        &s,
        &["backplane_plugin_sqlite"],
        "[metrics]\nlisten = \"127.0.0.1:0\"\n\n[layers]\nmetrics = true\n\n\
         [relational.users]\nbackend = \"sqlite\"\npath = \"u.db\"\n\n[cache.recent]\nbackend = \"sqlite\"\npath = \"c.db\"\n",
    );
    let storage = Storage::open(&file).unwrap();
    let addr = storage.metrics_addr().expect("the listener is up");
    let users = storage.relational("users").unwrap();
    users
        .blocking()
        .execute(
            "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT)",
            &Params::None,
        )
        .unwrap();
    for i in 0..25 {
        users
            .blocking()
            .execute(
                "INSERT INTO u (id, name) VALUES (?, ?)",
                &params![i, format!("n{i}")],
            )
            .unwrap();
    }
    let rows = users
        .blocking()
        .query("SELECT * FROM u", &Params::None)
        .unwrap();
    assert_eq!(rows.len(), 25);
    let e = users
        .blocking()
        .query("SELECT * FROM nope", &Params::None)
        .unwrap_err();
    assert_ne!(e.kind(), ErrorKind::Unavailable);
    storage
        .cache("recent")
        .unwrap()
        .blocking()
        .set("k", b"hello", None)
        .unwrap();

    // The listener itself, as curl would see it.
    let (code, body) = http_get(addr.port(), "/metrics").expect("the listener answers");
    assert_eq!(code, 200);
    assert!(body.contains("backplane_calls_total{store=\"users\",capability=\"relational\",backend=\"sqlite\",operation=\"execute\"} 26"), "{body}");
    assert!(body.contains("backplane_records_total{store=\"users\",capability=\"relational\",backend=\"sqlite\",operation=\"query\"} 25"), "{body}");
    assert!(
        body.contains("backplane_call_duration_seconds_bucket"),
        "{body}"
    );
    assert_eq!(http_get(addr.port(), "/other").map(|r| r.0), Some(404));

    let Some(prom) = Prometheus::start(addr) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let want = "backplane_calls_total%7Bstore%3D%22users%22%2Coperation%3D%22execute%22%7D";
    loop {
        if let Some(body) = prom.query(want) {
            if body.contains("\"value\"") {
                assert!(
                    body.contains("\"26\""),
                    "Prometheus holds the count: {body}"
                );
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not return the series within 60 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let errors = prom
        .query("backplane_errors_total%7Bstore%3D%22users%22%7D")
        .expect("the query API answers");
    assert!(
        errors.contains("\"kind\":\"not_found\"")
            || errors.contains("\"kind\":\"backend\"")
            || errors.contains("\"kind\":\"invalid_input\""),
        "the failed query is counted by kind: {errors}"
    );
}

#[test]
fn redis_frozen_ends_at_the_deadline_and_restarts_are_retried() {
    if !redis_binaries_available("redis layers") {
        return;
    }
    let port = free_port();
    let mut server = RedisServer::start(port);
    let s = Scratch::new();
    // The plugin's own timeouts are long, so only the layer can end a call.
    let file = plugins_toml(
        &s,
        &["backplane_plugin_redis"],
        &format!(
            "[cache.slow]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}/0\"\nprefix = \"slow:\"\ntimeout_ms = 60000\n[cache.slow.layers]\ntimeout = \"500ms\"\n\n\
             [cache.sure]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}/0\"\nprefix = \"sure:\"\nconnect_timeout_ms = 300\ntimeout_ms = 300\n[cache.sure.layers]\nretry = {{ attempts = 40, min_delay = \"50ms\", max_delay = \"400ms\" }}\n"
        ),
    );
    let storage = Storage::open(&file).unwrap();
    let slow = storage.cache("slow").unwrap();
    slow.blocking().set("k", b"v", None).unwrap();
    let pid = server.pid().unwrap();
    let results = while_frozen(
        |sig| signal(pid, sig),
        || slow.blocking().get("k").map(drop),
        async { slow.get("k").await.map(drop) },
    );
    ended_at_deadline(
        results,
        "did not finish within 500ms",
        Duration::from_secs(3),
    );

    // Restart under a stream of calls: the retry layer rides it out.
    let sure = storage.cache("sure").unwrap();
    let n = stream_across_restart(
        move |i| {
            let k = format!("k{i}");
            sure.blocking()
                .set(&k, k.as_bytes(), None)
                .map_err(|e| format!("set {k}: {e}"))?;
            // The restarted server keeps nothing (it saves no data), so a
            // value set just before the stop may be gone: only the call's
            // success is checked.
            sure.blocking()
                .get(&k)
                .map(|_| ())
                .map_err(|e| format!("get {k}: {e}"))
        },
        || {
            server.stop();
            std::thread::sleep(Duration::from_secs(1));
            RedisServer::start(port)
        },
    );
    assert!(n > 10, "the stream ran: {n} calls");
}

/// Run `op(0)`, `op(1)`, … on a thread while `restart` stops and starts
/// the server; every call must succeed. Returns how many ran.
fn stream_across_restart<S>(
    op: impl Fn(i64) -> Result<(), String> + Send + 'static,
    restart: impl FnOnce() -> S,
) -> i64 {
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                op(i)?;
                i += 1;
            }
            Ok::<i64, String>(i)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let _server = restart();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    worker
        .join()
        .unwrap()
        .expect("no call failed across the restart")
}

/// Send `signal` to a process (`-STOP`, `-CONT`).
fn signal(pid: u32, signal: &str) {
    assert!(Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap()
        .success());
}

/// Freeze the server with `signal("-STOP")`, make one call on the blocking
/// API and one on the async API (each must fail), thaw it; the errors and
/// how long each call took.
fn while_frozen(
    signal: impl Fn(&str),
    blocking: impl FnOnce() -> backplane_host::Result<()>,
    asynchronous: impl std::future::Future<Output = backplane_host::Result<()>>,
) -> [(backplane_host::Error, Duration); 2] {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    signal("-STOP");
    let t = Instant::now();
    let e = blocking().unwrap_err();
    let blocking_took = t.elapsed();
    let t = Instant::now();
    let e2 = rt.block_on(asynchronous).unwrap_err();
    let async_took = t.elapsed();
    signal("-CONT");
    [(e, blocking_took), (e2, async_took)]
}

/// Both calls failed as the deadline layer says, at the deadline.
fn ended_at_deadline(
    results: [(backplane_host::Error, Duration); 2],
    said: &str,
    within: Duration,
) {
    for (e, took) in results {
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.message().contains(said), "{e}");
        assert!(took < within, "ended at the deadline, not after {took:?}");
    }
}

#[test]
fn postgres_frozen_ends_at_the_deadline_and_restarts_are_retried() {
    let Some(server) = PgServer::start("postgres layers", None) else {
        return;
    };
    let s = Scratch::new();
    let url = server.url();
    let file = plugins_toml(
        &s,
        &["backplane_plugin_postgres"],
        &format!(
            "[relational.slow]\nbackend = \"postgres\"\nurl = \"{url}\"\ntimeout = \"60s\"\n[relational.slow.layers]\ntimeout = \"1s\"\n\n\
             [relational.sure]\nbackend = \"postgres\"\nurl = \"{url}\"\nconnect_timeout = \"1s\"\ntimeout = \"2s\"\n[relational.sure.layers]\nretry = {{ attempts = 60, min_delay = \"50ms\", max_delay = \"500ms\" }}\n"
        ),
    );
    let storage = Storage::open(&file).unwrap();
    let slow = storage.relational("slow").unwrap();
    slow.blocking().query("SELECT 1", &Params::None).unwrap();
    let results = while_frozen(
        |sig| server.signal(sig),
        || slow.blocking().query("SELECT 1", &Params::None).map(drop),
        async { slow.query("SELECT 2", Params::None).await.map(drop) },
    );
    ended_at_deadline(results, "did not finish within 1s", Duration::from_secs(4));

    let sure = storage.relational("sure").unwrap();
    let n = stream_across_restart(
        move |i| {
            let rows = sure
                .blocking()
                .query("SELECT ?::bigint + 1", &params![i])
                .map_err(|e| format!("query {i}: {e}"))?;
            assert_eq!(rows.rows[0][0], backplane_host::Value::Integer(i + 1));
            Ok(())
        },
        || {
            server.stop();
            std::thread::sleep(Duration::from_secs(1));
            server.start_again();
        },
    );
    assert!(n > 10, "the stream ran: {n} queries");
}

#[test]
fn qdrant_frozen_ends_at_the_deadline() {
    let Some(bin) = qdrant_binary("qdrant layers") else {
        return;
    };
    let dir = Scratch::new();
    let server = QdrantServer::start(&bin, &dir.path("qdrant"), None);
    let s = Scratch::new();
    let file = plugins_toml(
        &s,
        &["backplane_plugin_qdrant"],
        &format!(
            "[vector.v]\nbackend = \"qdrant\"\nurl = \"{}\"\ntimeout_ms = 60000\n[vector.v.layers]\ntimeout = \"1s\"\n",
            server.url()
        ),
    );
    let storage = Storage::open(&file).unwrap();
    let v = storage.vector("v").unwrap();
    v.blocking().list_collections().unwrap();
    let pid = server.pid().unwrap();
    let results = while_frozen(
        |sig| signal(pid, sig),
        || v.blocking().list_collections().map(drop),
        async { v.list_collections().await.map(drop) },
    );
    ended_at_deadline(results, "did not finish within 1s", Duration::from_secs(4));
}
