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

#[test]
fn graph_suite() {
    run_suite(Capability::Graph, &graph::cases(), "", |s| {
        s.graph("s").unwrap()
    });
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
            |s| s.vector("s").unwrap(),
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
