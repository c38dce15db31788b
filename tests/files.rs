//! The `files` backend: its files as a person reads them, a hand-edited
//! file with a mistake refused with its line and column, one process per
//! root, and the graph and cache suites on object stores started here
//! (moto's S3 server and Azurite's blob service, on loopback ports), with
//! those servers stopped and restarted mid-stream.
//!
//! The suites on a local folder run with every other backend
//! (`behavior.rs`); kill -9 during writes is in `kill9.rs`.

use backplane_behavior::servers::{ObjectKind, ObjectServer, AZURITE_ACCOUNT, AZURITE_KEY};
use backplane_behavior::{cache, graph, namespace, plugins_toml, run_cases, Scratch};
use backplane_host::{Capability, ErrorKind, Message, NewEdge, NewNode, Storage};
use serde_json::{json, Value as Json};
use std::time::Duration;

/// A Storage with one `files` store `s` of `cap` with the section's lines.
fn try_open(scratch: &Scratch, cap: Capability, lines: &str) -> backplane_host::Result<Storage> {
    let file = plugins_toml(
        scratch,
        &["backplane_plugin_files"],
        &format!("[{cap}.s]\nbackend = \"files\"\n{lines}\n"),
    );
    Storage::open(&file)
}

fn open(scratch: &Scratch, cap: Capability, lines: &str) -> Storage {
    try_open(scratch, cap, lines).unwrap_or_else(|e| panic!("open the files store: {e}"))
}

fn read_json(path: std::path::PathBuf) -> Json {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_files_are_json_a_person_reads() {
    let scratch = Scratch::new();
    let g = open(&scratch, Capability::Graph, "root = \"kg\"");
    let graph = g.graph("s").unwrap();
    let db = graph.blocking();
    db.create_nodes(&[
        NewNode::new("person", json!({"name": "Ada Lovelace"})).with_id("ada"),
        NewNode::new("topic", json!({"name": "engines"})).with_id("engines"),
    ])
    .unwrap();
    db.create_edges(&[NewEdge {
        id: Some("e1".into()),
        ..NewEdge::new("ada", "engines", "wrote_about")
    }])
    .unwrap();
    let text = std::fs::read_to_string(scratch.path("kg/nodes.json")).unwrap();
    assert!(text.contains("\n  \"nodes\": ["), "indented: {text}");
    assert_eq!(
        read_json(scratch.path("kg/nodes.json"))["nodes"][0],
        json!({"id": "ada", "label": "person", "properties": {"name": "Ada Lovelace"}})
    );
    assert_eq!(
        read_json(scratch.path("kg/edges.json"))["edges"][0],
        json!({"id": "e1", "from": "ada", "to": "engines", "type": "wrote_about", "properties": {}})
    );
    let ix = read_json(scratch.path("kg/indexes.json"));
    assert_eq!(ix["outgoing"]["ada"], json!(["e1"]));
    assert_eq!(ix["incoming"]["engines"], json!(["e1"]));
    assert_eq!(ix["labels"]["person"], json!(["ada"]));
    assert_eq!(ix["words"]["lovelace"], json!(["ada"]));

    let c = open(
        &scratch,
        Capability::Cache,
        "root = \"chats\"\npretty = false",
    );
    let cache = c.cache("s").unwrap();
    let kv = cache.blocking();
    kv.add_message("user/42", &Message::new("user", "hello there"))
        .unwrap();
    kv.set("greeting", b"hi", None).unwrap();
    kv.set("blob", &[0, 159, 146, 150], Some(Duration::from_secs(600)))
        .unwrap();
    let session = read_json(scratch.path("chats/channels/user%2F42.json"));
    assert_eq!(session["channel"], json!("user/42"));
    assert_eq!(session["messages"][0]["content"], json!("hello there"));
    let keys = read_json(scratch.path("chats/keys.json"));
    assert_eq!(keys["keys"]["greeting"], json!({"text": "hi"}));
    assert_eq!(keys["keys"]["blob"]["base64"], json!("AJ+Slg=="));
    assert!(keys["keys"]["blob"]["expires_at_ms"].is_i64());
    assert!(
        !std::fs::read_to_string(scratch.path("chats/keys.json"))
            .unwrap()
            .contains("\n  "),
        "pretty = false writes one line"
    );
    // Another process (here, the store opened again) reads what was written.
    drop((cache, c));
    let again = open(&scratch, Capability::Cache, "root = \"chats\"");
    let kv = again.cache("s").unwrap();
    assert_eq!(
        kv.blocking().get("blob").unwrap(),
        Some(vec![0, 159, 146, 150])
    );
    assert_eq!(kv.blocking().recent("user/42", 10, None).unwrap().len(), 1);
}

#[test]
fn expired_keys_and_channels_leave_the_files() {
    let scratch = Scratch::new();
    let s = open(&scratch, Capability::Cache, "root = \"c\"\nttl = \"300ms\"");
    let c = s.cache("s").unwrap();
    let kv = c.blocking();
    kv.set("short", b"x", Some(Duration::from_millis(200)))
        .unwrap();
    kv.add_message("brief", &Message::new("user", "soon gone"))
        .unwrap();
    assert!(scratch.path("c/channels/brief.json").exists());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(kv.get("short").unwrap(), None, "expired on read");
    kv.set("other", b"y", None).unwrap();
    let keys = read_json(scratch.path("c/keys.json"));
    assert!(keys["keys"].get("short").is_none(), "{keys}");
    assert!(
        !scratch.path("c/channels/brief.json").exists(),
        "an expired channel's file is deleted at the next write"
    );
}

#[test]
fn a_hand_edited_file_with_a_mistake_names_its_line_and_column() {
    let scratch = Scratch::new();
    {
        let s = open(&scratch, Capability::Graph, "root = \"kg\"");
        s.graph("s")
            .unwrap()
            .blocking()
            .create_nodes(&[NewNode::new("person", json!({"name": "Ada"})).with_id("ada")])
            .unwrap();
    }
    let path = scratch.path("kg/nodes.json");
    let text = std::fs::read_to_string(&path).unwrap();
    // A missing comma on line 6.
    let broken = text.replacen("\"label\": \"person\",", "\"label\": \"person\"", 1);
    std::fs::write(&path, broken).unwrap();
    let e = try_open(&scratch, Capability::Graph, "root = \"kg\"").unwrap_err();
    let said = e.to_string();
    assert!(said.contains("nodes.json:7:"), "path and line: {said}");
    assert!(said.contains("expected"), "what is wrong: {said}");
    // An edge to a node that does not exist.
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        scratch.path("kg/edges.json"),
        r#"{"format": 1, "edges": [{"id": "e", "from": "ada", "to": "nobody", "type": "knows"}]}"#,
    )
    .unwrap();
    let e = try_open(&scratch, Capability::Graph, "root = \"kg\"").unwrap_err();
    assert!(
        e.to_string().contains("edges.json") && e.to_string().contains("nobody"),
        "{e}"
    );
}

#[test]
fn a_channel_file_under_another_name_is_refused() {
    let scratch = Scratch::new();
    {
        let s = open(&scratch, Capability::Cache, "root = \"c\"");
        s.cache("s")
            .unwrap()
            .blocking()
            .add_message("Ann", &Message::new("user", "hi"))
            .unwrap();
    }
    assert!(
        scratch.path("c/channels/%41nn.json").exists(),
        "upper case escaped"
    );
    std::fs::copy(
        scratch.path("c/channels/%41nn.json"),
        scratch.path("c/channels/copy.json"),
    )
    .unwrap();
    let e = try_open(&scratch, Capability::Cache, "root = \"c\"").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.to_string().contains("copy.json") && e.to_string().contains("%41nn.json"),
        "names both files: {e}"
    );
}

#[test]
fn one_process_per_folder() {
    let scratch = Scratch::new();
    let first = open(&scratch, Capability::Graph, "root = \"kg\"");
    let e = try_open(&scratch, Capability::Graph, "root = \"kg\"").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.to_string().contains(".lock"), "names the lock: {e}");
    drop(first);
    open(&scratch, Capability::Graph, "root = \"kg\"");
}

#[test]
fn section_mistakes_are_one_clear_line() {
    let scratch = Scratch::new();
    for (cap, section, says) in [
        (Capability::Graph, "root = \"\"", "`root` is empty"),
        (Capability::Graph, "root = \"ftp://x/y\"", "`root`"),
        (Capability::Graph, "root = \"s3:///p\"", "name the bucket"),
        (Capability::Graph, "root = \"azblob://c/p\"", "`account_name`"),
        (Capability::Graph, "root = \"kg\"\nregion = \"x\"", "`region`"),
        (Capability::Graph, "root = \"kg\"\nttl = \"1m\"", "cache stores only"),
        (Capability::Cache, "root = \"c\"\nmax_messages = 0", "`max_messages` is 0"),
        (
            Capability::Graph,
            "root = \"s3://b/p\"\naccess_key_id_file = \"missing.txt\"\nsecret_access_key_file = \"missing.txt\"",
            "cannot be read",
        ),
        (
            Capability::Graph,
            "root = \"s3://b/p\"\nanonymous = true\naccess_key_id_env = \"X\"",
            "`anonymous = true`",
        ),
        (Capability::Vector, "root = \"v\"", "does not serve the vector capability"),
    ] {
        let e = try_open(&scratch, cap, section).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{section}: {e}");
        assert!(e.to_string().contains(says), "{section}: {e}");
        assert_eq!(e.to_string().lines().count(), 2, "{section}: one line for the store: {e}");
    }
}

/// The section of a store on `server`'s bucket `bucket` under `prefix`,
/// its keys in files under `scratch`.
fn object_section(
    server: &ObjectServer,
    kind: ObjectKind,
    scratch: &Scratch,
    prefix: &str,
) -> String {
    match kind {
        ObjectKind::S3 => {
            std::fs::write(scratch.path("id.txt"), "testing\n").unwrap();
            std::fs::write(scratch.path("secret.txt"), "testing\n").unwrap();
            format!(
                "root = \"s3://bp-test/{prefix}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\naccess_key_id_file = \"id.txt\"\nsecret_access_key_file = \"secret.txt\"\nconnect_timeout_ms = 500\ntimeout_ms = 5000",
                server.endpoint()
            )
        }
        ObjectKind::Azure => {
            std::fs::write(scratch.path("key.txt"), AZURITE_KEY).unwrap();
            format!(
                "root = \"azblob://bp-test/{prefix}\"\nendpoint = \"{}\"\naccount_name = \"{AZURITE_ACCOUNT}\"\naccount_key_file = \"key.txt\"\nconnect_timeout_ms = 500\ntimeout_ms = 5000",
                server.endpoint()
            )
        }
    }
}

/// The graph and cache suites on a `kind` server started here.
fn suites_on(kind: ObjectKind) {
    if !ObjectServer::available(kind, &format!("the files suites on {kind:?}")) {
        return;
    }
    let dir = Scratch::new();
    let server = ObjectServer::start(kind, &dir.0);
    server.create_bucket("bp-test");
    let mut failures = Vec::new();
    let (ran, f) = run_cases(
        "files",
        Capability::Graph,
        &graph::cases(),
        |s| s.graph("s"),
        |scratch| Some(object_section(&server, kind, scratch, &namespace())),
    );
    assert_eq!(ran, graph::cases().len());
    failures.extend(f);
    let (ran, f) = run_cases(
        "files",
        Capability::Cache,
        &cache::cases(),
        |s| s.cache("s"),
        |scratch| {
            Some(format!(
                "{}\n{}",
                object_section(&server, kind, scratch, &namespace()),
                cache::OPTIONS
            ))
        },
    );
    assert_eq!(ran, cache::cases().len());
    failures.extend(f);
    assert!(
        failures.is_empty(),
        "{} cases failed on {kind:?}:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn graph_and_cache_suites_on_s3() {
    suites_on(ObjectKind::S3);
}

#[test]
fn graph_and_cache_suites_on_azure_blob() {
    suites_on(ObjectKind::Azure);
}

/// A server stopped mid-stream: writes are `Unavailable` while it is down,
/// and the store works again once it is back (Azurite keeps its data
/// across the restart; moto starts empty, so its bucket is made again).
fn stopped_mid_stream(kind: ObjectKind) {
    if !ObjectServer::available(kind, &format!("{kind:?} stopped mid-stream")) {
        return;
    }
    let dir = Scratch::new();
    let mut server = ObjectServer::start(kind, &dir.0);
    server.create_bucket("bp-test");
    let scratch = Scratch::new();
    let section = object_section(&server, kind, &scratch, "faults");
    let s = open(&scratch, Capability::Cache, &section);
    let c = s.cache("s").unwrap();
    let kv = c.blocking();
    for i in 0..20 {
        kv.add_message("chat", &Message::new("user", format!("m{i}")))
            .unwrap();
    }
    kv.set("k", b"before", None).unwrap();

    server.stop();
    let e = kv.set("k", b"during", None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        e.message().contains("retried"),
        "says the call can be retried: {e}"
    );
    let e = kv.get("k").unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Unavailable,
        "after a failed write, reads wait for the files: {e}"
    );

    server.restart();
    if kind == ObjectKind::S3 {
        server.create_bucket("bp-test");
        kv.set("k", b"after", None).unwrap();
        assert_eq!(kv.get("k").unwrap(), Some(b"after".to_vec()));
    } else {
        assert_eq!(
            kv.get("k").unwrap(),
            Some(b"before".to_vec()),
            "the failed write left nothing"
        );
        assert_eq!(kv.recent("chat", 100, None).unwrap().len(), 20);
        kv.set("k", b"after", None).unwrap();
        drop((c, s));
        let again = open(&scratch, Capability::Cache, &section);
        assert_eq!(
            again.cache("s").unwrap().blocking().get("k").unwrap(),
            Some(b"after".to_vec())
        );
    }
}

#[test]
fn s3_stopped_mid_stream_is_unavailable_then_recovers() {
    stopped_mid_stream(ObjectKind::S3);
}

#[test]
fn azure_blob_stopped_mid_stream_is_unavailable_then_recovers() {
    stopped_mid_stream(ObjectKind::Azure);
}

#[test]
fn one_process_per_object_store_root() {
    let kind = ObjectKind::Azure;
    if !ObjectServer::available(kind, "the lock object") {
        return;
    }
    let dir = Scratch::new();
    let server = ObjectServer::start(kind, &dir.0);
    server.create_bucket("bp-test");
    let scratch = Scratch::new();
    let section = object_section(&server, kind, &scratch, "locked");
    let first = open(&scratch, Capability::Graph, &section);
    let e = try_open(&scratch, Capability::Graph, &section).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        e.to_string().contains(".lock"),
        "names the lock object: {e}"
    );
    drop(first);
    open(&scratch, Capability::Graph, &section);
    // A bucket that does not exist is named.
    let missing = section.replace("bp-test", "no-such-bucket");
    let e = try_open(&scratch, Capability::Graph, &missing).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
}
