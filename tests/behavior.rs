//! The behaviour suite: every case of every capability, on every backend
//! that claims the capability, loaded from its built shared library.

use backplane_behavior::{async_runtime, cache, graph, relational, run_suite, vector};
use backplane_host::Capability;

#[test]
fn relational_suite() {
    run_suite(Capability::Relational, &relational::cases(), "", |s| {
        s.relational("s")
    });
}

#[test]
fn vector_suite() {
    run_suite(Capability::Vector, &vector::cases(), "", |s| s.vector("s"));
}

#[test]
fn cache_suite() {
    run_suite(Capability::Cache, &cache::cases(), cache::OPTIONS, |s| {
        s.cache("s")
    });
}

/// The suites again, every case on every backend, through the async API:
/// each call the cases make on the blocking trait is the async method
/// awaited (on tokio's blocking pool, or the backend's own non-blocking
/// call where it has one: redis's `get` and `set`).
#[test]
fn relational_suite_through_the_async_api() {
    run_suite(Capability::Relational, &relational::cases(), "", |s| {
        Ok(s.relational("s")?.through_async(async_runtime()))
    });
}

#[test]
fn vector_suite_through_the_async_api() {
    run_suite(Capability::Vector, &vector::cases(), "", |s| {
        Ok(s.vector("s")?.through_async(async_runtime()))
    });
}

#[test]
fn cache_suite_through_the_async_api() {
    run_suite(Capability::Cache, &cache::cases(), cache::OPTIONS, |s| {
        Ok(s.cache("s")?.through_async(async_runtime()))
    });
}

#[test]
fn graph_suite_through_the_async_api() {
    run_suite(Capability::Graph, &graph::cases(), "", |s| {
        Ok(s.graph("s")?.through_async(async_runtime()))
    });
}

/// The relational suite through the async API on the store's own worker
/// threads (`workers = 1`: one thread, one queue) instead of tokio's
/// blocking pool, on every relational backend.
#[test]
fn relational_suite_through_the_async_api_on_the_stores_own_worker() {
    run_suite(
        Capability::Relational,
        &relational::cases(),
        "layers = { workers = 1 }",
        |s| Ok(s.relational("s")?.through_async(async_runtime())),
    );
}

/// The cache suite on the redis backend pointed at a Redis Cluster of three
/// masters, started here on loopback ports and stopped after.
#[test]
fn cache_suite_on_redis_cluster() {
    use backplane_behavior::servers::{redis_binaries_available, RedisCluster};
    if !redis_binaries_available("the cache suite on Redis Cluster") {
        return;
    }
    let cluster = RedisCluster::start(3);
    let nodes: Vec<String> = cluster.urls().iter().map(|u| format!("\"{u}\"")).collect();
    run_redis_cases(
        "on Redis Cluster",
        &format!("nodes = [{}]", nodes.join(", ")),
    );
}

/// The whole cache suite on the redis backend with the section lines
/// `connection` (plus a fresh prefix and the suite's options), failing with
/// every failed case.
fn run_redis_cases(on: &str, connection: &str) {
    let (ran, failures) = backplane_behavior::run_cases(
        "redis",
        Capability::Cache,
        &cache::cases(),
        |s| s.cache("s"),
        |_| {
            Some(format!(
                "{connection}\nprefix = \"bp-test:{}:\"\n{}",
                backplane_behavior::namespace(),
                cache::OPTIONS
            ))
        },
    );
    assert_eq!(ran, cache::cases().len());
    assert!(
        failures.is_empty(),
        "{} cache cases failed {on}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The cache suite on the redis backend over TLS: a `redis-server` that
/// speaks only TLS, its certificate signed by a CA made for the test
/// (`tls.ca_file`). Without that CA the server's certificate is refused
/// with one `Config` error.
#[test]
fn cache_suite_on_redis_tls() {
    use backplane_behavior::servers::{
        free_port, redis_binaries_available, RedisServer, TestCerts,
    };
    if !redis_binaries_available("the cache suite over TLS")
        || !TestCerts::available("the cache suite over TLS")
    {
        return;
    }
    let certs = TestCerts::generate();
    let port = free_port();
    let _server = RedisServer::start_tls(port, &certs);
    let ca = certs.path("ca.crt");
    run_redis_cases(
        "over TLS",
        &format!("url = \"rediss://127.0.0.1:{port}/0\"\ntls = {{ ca_file = \"{ca}\" }}"),
    );
    // The async API's non-blocking path goes over TLS too.
    let scratch = backplane_behavior::Scratch::new();
    let storage = backplane_behavior::open_with(
        "redis",
        Capability::Cache,
        &scratch,
        &format!(
            "url = \"redis://127.0.0.1:{port}/0\"\ntls = {{ ca_file = \"{ca}\" }}\nprefix = \"bp-test:{}:\"",
            backplane_behavior::namespace()
        ),
    );
    let c = storage.cache("s").unwrap();
    assert!(c.blocking().as_async().is_some());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            c.set("a", b"over tls".to_vec(), None).await.unwrap();
            assert_eq!(c.get("a").await.unwrap().as_deref(), Some(&b"over tls"[..]));
        });
    // The system's roots do not know the test CA.
    let scratch = backplane_behavior::Scratch::new();
    let storage = backplane_behavior::open_with(
        "redis",
        Capability::Cache,
        &scratch,
        &format!("url = \"redis://127.0.0.1:{port}/0\"\ntls = true"),
    );
    let e = storage.cache("s").unwrap().blocking().get("k").unwrap_err();
    assert_eq!(e.kind(), backplane_host::ErrorKind::Config, "{e}");
    assert!(e.message().contains("tls.ca_file"), "{e}");
}

#[test]
fn graph_suite() {
    run_suite(Capability::Graph, &graph::cases(), "", |s| s.graph("s"));
}

/// The postgres backend's two vector search paths, each forced: exact
/// search (`pgvector = "off"`) always, and pgvector's HNSW index
/// (`pgvector = "require"`) when the server has the extension; without it,
/// that half prints that it skipped and why.
#[test]
fn vector_suite_postgres_paths() {
    if !backplane_behavior::backends_for(Capability::Vector).contains(&"postgres".to_string()) {
        println!("  skip postgres/vector paths: the postgres plugin is not built");
        return;
    }
    let (_, shown, unreachable) = backplane_behavior::postgres_server();
    if let (Some(reason), false) = (&unreachable, backplane_behavior::in_ci()) {
        println!("  skip postgres/vector paths: no PostgreSQL at {shown} ({reason})");
        return;
    }
    let postgres = ["postgres".to_string()];
    let run = |extra: &str| {
        backplane_behavior::run_suite_on(
            Capability::Vector,
            &postgres,
            &vector::cases(),
            extra,
            |s| s.vector("s"),
        )
    };
    println!("  postgres/vector, exact search (pgvector = \"off\"):");
    run("pgvector = \"off\"");
    match backplane_behavior::postgres_pgvector() {
        Ok(version) => {
            println!("  postgres/vector, pgvector {version} (pgvector = \"require\"):");
            run("pgvector = \"require\"");
        }
        Err(why) => println!("  skip postgres/vector with pgvector: {why}"),
    }
}

/// The async API runs the same calls on tokio's blocking pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_api() {
    for backend in backplane_behavior::backends_for(Capability::Vector) {
        let scratch = backplane_behavior::Scratch::new();
        let Some(storage) =
            backplane_behavior::open_one(&backend, Capability::Vector, &scratch, "")
        else {
            continue;
        };
        let v = storage.vector("s").unwrap();
        v.create_collection("c", 2, backplane_host::Distance::Cosine)
            .await
            .unwrap();
        v.upsert(
            "c",
            vec![backplane_host::VectorRecord::new("a", vec![1.0, 0.0])],
        )
        .await
        .unwrap();
        let hits = v
            .search("c", backplane_host::SearchRequest::new(vec![1.0, 0.0], 1))
            .await
            .unwrap();
        assert_eq!(hits[0].id, "a", "{backend}");
        // Many concurrent calls on one cloned handle.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let v = v.clone();
            tasks.push(tokio::spawn(async move {
                v.count("c", None).await.map(|n| (i, n))
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().1, 1);
        }
    }
}

/// The cache's async `get`/`set`: awaited without a blocking thread where
/// the backend has a non-blocking form (redis), on tokio's blocking pool
/// elsewhere; the same results and errors either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_cache_calls() {
    use backplane_host::ErrorKind;
    for backend in backplane_behavior::backends_for(Capability::Cache) {
        let scratch = backplane_behavior::Scratch::new();
        let Some(storage) = backplane_behavior::open_one(&backend, Capability::Cache, &scratch, "")
        else {
            continue;
        };
        let c = storage.cache("s").unwrap();
        let mut tasks = Vec::new();
        for t in 0..32 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..20 {
                    let k = format!("k{t}:{i}");
                    c.set(k.clone(), k.clone().into_bytes(), None).await?;
                    assert_eq!(c.get(k.clone()).await?, Some(k.into_bytes()));
                }
                c.get(format!("missing{t}")).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), None, "{backend}");
        }
        // A TTL set through the async path is kept.
        c.set(
            "short",
            b"x".to_vec(),
            Some(std::time::Duration::from_millis(100)),
        )
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert_eq!(c.get("short").await.unwrap(), None, "{backend}");
        // Bad input fails the same way, naming the store.
        for e in [
            c.get("").await.unwrap_err(),
            c.set("", b"v".to_vec(), None).await.unwrap_err(),
            c.set("k", b"v".to_vec(), Some(std::time::Duration::ZERO))
                .await
                .unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{backend}: {e}");
            assert_eq!(e.store(), Some("s"), "{backend}: {e}");
        }
        let stats = c.blocking().stats().unwrap();
        assert!(
            stats.hits >= 640 && stats.misses >= 33,
            "{backend}: {stats:?}"
        );
    }
}
