//! The behaviour suite: every case of every capability, on every backend
//! that claims the capability, loaded from its built shared library.

use backplane_behavior::{cache, graph, relational, run_suite, vector};
use backplane_host::Capability;

#[test]
fn relational_suite() {
    run_suite(Capability::Relational, &relational::cases(), "", |s| {
        s.relational("s").unwrap()
    });
}

#[test]
fn vector_suite() {
    run_suite(Capability::Vector, &vector::cases(), "", |s| {
        s.vector("s").unwrap()
    });
}

#[test]
fn cache_suite() {
    run_suite(Capability::Cache, &cache::cases(), cache::OPTIONS, |s| {
        s.cache("s").unwrap()
    });
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
    let (ran, failures) = backplane_behavior::run_cases(
        "redis",
        Capability::Cache,
        &cache::cases(),
        |s| s.cache("s").unwrap(),
        |_| {
            Some(format!(
                "nodes = [{}]\nprefix = \"bp-test:{}:\"\n{}",
                nodes.join(", "),
                backplane_behavior::namespace(),
                cache::OPTIONS
            ))
        },
    );
    assert_eq!(ran, cache::cases().len());
    assert!(
        failures.is_empty(),
        "{} cache cases failed on Redis Cluster:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn graph_suite() {
    run_suite(Capability::Graph, &graph::cases(), "", |s| {
        s.graph("s").unwrap()
    });
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
