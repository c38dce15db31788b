//! The `qdrant` backend against Qdrant servers this test starts from the
//! binary `BACKPLANE_QDRANT_BIN` names (a restart, an API key, a cluster),
//! or the server `BACKPLANE_QDRANT_URL` names. Qdrant is not installable
//! from the project's package registries: without the variables these
//! tests print that they skipped and why. The unreachable-server case
//! needs no server and always runs.

use backplane_behavior::servers::{free_port, http_get, qdrant_binary, QdrantServer};
use backplane_behavior::{library, namespace, qdrant_server, run_cases, vector, Scratch};
use backplane_host::{
    Capability, Distance, ErrorKind, Filter, SearchRequest, Storage, VectorRecord,
};
use serde_json::json;

/// A Storage with one `qdrant` vector store `v` with the section's lines
/// (opening it connects: a server problem is an error here).
fn try_storage(scratch: &Scratch, lines: &str) -> backplane_host::Result<Storage> {
    let file = scratch.path(&format!("plugins-{}.toml", namespace()));
    std::fs::write(
        &file,
        format!(
            "[plugins]\nload = [\"{}\"]\n\n[vector.v]\nbackend = \"qdrant\"\n{lines}\n",
            library("backplane_plugin_qdrant").display()
        ),
    )
    .unwrap();
    Storage::open(&file)
}

fn storage(scratch: &Scratch, lines: &str) -> Storage {
    try_storage(scratch, lines).unwrap_or_else(|e| panic!("open the qdrant store: {e}"))
}

fn record(id: &str, v: [f32; 3], payload: serde_json::Value) -> VectorRecord {
    VectorRecord::new(id, v.to_vec()).with_payload(payload)
}

#[test]
fn unreachable_server_is_one_clear_error_at_open() {
    let port = free_port();
    let scratch = Scratch::new();
    let e = try_storage(
        &scratch,
        &format!("url = \"http://127.0.0.1:{port}\"\nconnect_timeout_ms = 500\ntimeout_ms = 1000"),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        e.message().contains(&format!("127.0.0.1:{port}")) && e.message().contains("6334"),
        "names the url and the gRPC port: {e}"
    );
}

#[test]
fn api_key_is_checked_at_open() {
    let Some(bin) = qdrant_binary("qdrant API key") else {
        return;
    };
    let dir = Scratch::new();
    let server = QdrantServer::start(&bin, &dir.0, Some("right-k3y"));
    let scratch = Scratch::new();
    let url = server.url();
    for (lines, what) in [
        (
            format!("url = \"{url}\"\napi_key = \"wrong-k3y\""),
            "wrong key",
        ),
        (format!("url = \"{url}\""), "no key"),
    ] {
        let e = try_storage(&scratch, &lines).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{what}: {e}");
        assert!(
            e.message().contains("api_key_env"),
            "{what}: says what to set: {e}"
        );
        assert!(!e.to_string().contains("k3y"), "{what}: shows no key: {e}");
    }
    let s = storage(
        &scratch,
        &format!("url = \"{url}\"\napi_key = \"right-k3y\"\ndimension = 3"),
    );
    let v = s.vector("v").unwrap();
    let db = v.blocking();
    db.upsert("v", &[record("a", [1.0, 0.0, 0.0], json!({}))])
        .unwrap();
    assert_eq!(db.count("v", None).unwrap(), 1);
}

#[test]
fn restart_keeps_data_and_the_store_recovers() {
    let Some(bin) = qdrant_binary("qdrant restart") else {
        return;
    };
    let dir = Scratch::new();
    let mut server = QdrantServer::start(&bin, &dir.0, None);
    let scratch = Scratch::new();
    let s = storage(
        &scratch,
        &format!(
            "url = \"{}\"\nconnect_timeout_ms = 500\ntimeout_ms = 2000",
            server.url()
        ),
    );
    let v = s.vector("v").unwrap();
    let db = v.blocking();
    db.create_collection("kept", 3, Distance::Cosine).unwrap();
    let records: Vec<VectorRecord> = (0..100)
        .map(|i| record(&format!("r{i}"), [1.0, i as f32, 0.5], json!({"i": i})))
        .collect();
    db.upsert("kept", &records).unwrap();

    server.stop();
    let e = db.count("kept", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        e.message().contains("retried"),
        "says the call can be retried: {e}"
    );

    server.restart();
    // The same store, without reopening: the client reconnects.
    assert_eq!(db.count("kept", None).unwrap(), 100, "every write survived");
    let got = db.get("kept", &["r7".to_string()]).unwrap();
    assert_eq!(got[0].vector, records[7].vector, "raw vector, bit for bit");
    let hits = db
        .search("kept", &SearchRequest::new(vec![1.0, 7.0, 0.5], 1))
        .unwrap();
    assert_eq!(hits[0].id, "r7");
}

/// A server this test starts (`BACKPLANE_QDRANT_BIN`, data under `dir`),
/// or the one the suite uses (`BACKPLANE_QDRANT_URL`): the server, if
/// started here, and the section lines of a store on it with a fresh
/// collection prefix. `None` (printed: skipped) without either.
fn any_server(what: &str, dir: &Scratch) -> Option<(Option<QdrantServer>, String)> {
    let (server, url) = if std::env::var_os("BACKPLANE_QDRANT_BIN").is_some() {
        let s = QdrantServer::start(&qdrant_binary(what)?, &dir.0, None);
        let url = s.url();
        (Some(s), url)
    } else {
        match qdrant_server() {
            Ok(url) => (None, url),
            Err(why) => {
                println!("skip {what}: {why}");
                return None;
            }
        }
    };
    let prefix = format!("bp_test_{}_", namespace());
    Some((
        server,
        format!("url = \"{url}\"\ncollection_prefix = \"{prefix}\""),
    ))
}

/// Payloads a Qdrant server cannot hold as given, and reserved keys, are
/// refused before anything of the batch is written.
#[test]
fn unstorable_payloads_refuse_the_whole_batch() {
    let dir = Scratch::new();
    let Some((_server, lines)) = any_server("qdrant payload checks", &dir) else {
        return;
    };
    let scratch = Scratch::new();
    let s = storage(&scratch, &format!("{lines}\ndimension = 3"));
    let v = s.vector("v").unwrap();
    let db = v.blocking();
    for (bad, needle) in [
        (json!({"big": u64::MAX}), "'big'"),
        (json!({"__bp_id": "x"}), "__bp_id"),
    ] {
        let e = db
            .upsert(
                "v",
                &[
                    record("fine", [1.0, 0.0, 0.0], json!({"a": 1})),
                    record("bad", [0.0, 1.0, 0.0], bad),
                ],
            )
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.message().contains(needle), "{e}");
        assert_eq!(
            db.count("v", None).unwrap(),
            0,
            "nothing of the batch written"
        );
    }
    db.drop_collection("v").unwrap();
}

#[test]
fn stores_sharing_a_collection_agree_on_dotted_keys() {
    let dir = Scratch::new();
    let Some((_server, lines)) = any_server("qdrant shared collection", &dir) else {
        return;
    };
    let (sa, sb) = (Scratch::new(), Scratch::new());
    let (a, b) = (storage(&sa, &lines), storage(&sb, &lines));
    let (va, vb) = (a.vector("v").unwrap(), b.vector("v").unwrap());
    let (a, b) = (va.blocking(), vb.blocking());
    a.create_collection("shared", 3, Distance::Dot).unwrap();
    a.upsert(
        "shared",
        &[record(
            "n",
            [1.0, 0.0, 0.0],
            json!({"meta": {"lang": "en"}}),
        )],
    )
    .unwrap();
    let en = Filter::parse(&json!({"must": [{"key": "meta.lang", "match": "en"}]})).unwrap();
    assert_eq!(a.count("shared", Some(&en)).unwrap(), 1);
    // Another process writes a top-level key "meta.lang": core reads that
    // key first, so this record is "en" although its nested lang is "de".
    b.upsert(
        "shared",
        &[record(
            "d",
            [0.0, 1.0, 0.0],
            json!({"meta.lang": "en", "meta": {"lang": "de"}}),
        )],
    )
    .unwrap();
    assert_eq!(
        a.count("shared", Some(&en)).unwrap(),
        2,
        "the first store learns the new shape"
    );
    let hits = a
        .search(
            "shared",
            &SearchRequest::new(vec![0.0, 1.0, 0.0], 2).with_filter(en),
        )
        .unwrap();
    assert_eq!(hits.len(), 2);
    let de = Filter::parse(&json!({"must": [{"key": "meta.lang", "match": "de"}]})).unwrap();
    assert_eq!(a.count("shared", Some(&de)).unwrap(), 0, "as core reads it");
    a.drop_collection("shared").unwrap();
}

/// The whole vector suite on a three-node Qdrant cluster, collections made
/// with three shards, each kept twice.
#[test]
fn vector_suite_on_qdrant_cluster() {
    let Some(bin) = qdrant_binary("the vector suite on a Qdrant cluster") else {
        return;
    };
    let dir = Scratch::new();
    let nodes = QdrantServer::start_cluster(&bin, &dir.0, 3);
    let url = nodes[0].url();
    let section = |prefix: &str| {
        format!("url = \"{url}\"\ncollection_prefix = \"{prefix}\"\nshard_number = 3\nreplication_factor = 2")
    };
    let (ran, failures) = run_cases(
        "qdrant",
        Capability::Vector,
        &vector::cases(),
        |s| s.vector("s"),
        |_| Some(section(&format!("bp_test_{}_", namespace()))),
    );
    assert_eq!(ran, vector::cases().len());
    assert!(
        failures.is_empty(),
        "on the cluster:\n{}",
        failures.join("\n")
    );

    // The settings reached Qdrant: 3 shards, 6 replicas over the nodes.
    let scratch = Scratch::new();
    let s = storage(&scratch, &section("bp_shards_"));
    let v = s.vector("v").unwrap();
    v.blocking()
        .create_collection("spread", 4, Distance::Cosine)
        .unwrap();
    let (status, body) = http_get(nodes[0].http_port, "/collections/bp_shards_spread/cluster")
        .expect("the cluster answers over REST");
    assert_eq!(status, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["result"]["shard_count"], 3, "{body}");
    let replicas = info["result"]["local_shards"]
        .as_array()
        .map_or(0, Vec::len)
        + info["result"]["remote_shards"]
            .as_array()
            .map_or(0, Vec::len);
    assert_eq!(replicas, 6, "3 shards × replication_factor 2: {body}");
    v.blocking().drop_collection("spread").unwrap();
}
