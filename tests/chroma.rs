//! The `chroma` backend against Chroma servers: filters pushed down to
//! Chroma's `where` give what an exact backend gives, vectors come back bit
//! for bit, a collection made by another tool is read whole, a server
//! stopped mid-stream is `Unavailable` and recovers, and every way to point
//! a store at the wrong place is one clear error within its timeouts.
//!
//! The servers come from PyPI's `chromadb` (`.ci/run` installs it): the
//! suite's shared one ([`chroma_server`]) or one a test starts and stops.
//! Without it, outside CI, the server cases print that they skipped.

use backplane_behavior::servers::{chroma_available, free_port, ChromaServer};
use backplane_behavior::{chroma_server, library, namespace, open_with, Scratch};
use backplane_host::{
    Capability, Distance, ErrorKind, Filter, SearchRequest, Storage, VectorRecord,
};
use serde_json::{json, Value as Json};
use std::io::{Read, Write};
use std::net::TcpListener;

/// A Storage with one `chroma` vector store `v` with the section's lines.
fn try_storage(scratch: &Scratch, lines: &str) -> backplane_host::Result<Storage> {
    let file = scratch.path(&format!("plugins-{}.toml", namespace()));
    std::fs::write(
        &file,
        format!(
            "[plugins]\nload = [\"{}\"]\n\n[vector.v]\nbackend = \"chroma\"\n{lines}\n",
            library("backplane_plugin_chroma").display()
        ),
    )
    .unwrap();
    Storage::open(&file)
}

/// The section lines of a store on `url` with a prefix of its own.
fn lines(url: &str) -> String {
    lines_with_prefix(url, &format!("bp-{}-", namespace()))
}

fn lines_with_prefix(url: &str, prefix: &str) -> String {
    format!(
        "url = \"{url}\"\ncollection_prefix = \"{prefix}\"\nconnect_timeout_ms = 1000\ntimeout_ms = 5000"
    )
}

/// The host's error for a store that did not open: its header line, then
/// the store's one line.
fn assert_one_line(e: &backplane_host::Error, what: &str) {
    assert_eq!(
        e.to_string().lines().count(),
        2,
        "{what}: one line for the store: {e}"
    );
}

#[test]
fn unreachable_server_is_one_clear_error_at_open() {
    let port = free_port();
    let scratch = Scratch::new();
    let e = try_storage(
        &scratch,
        &format!("url = \"http://127.0.0.1:{port}\"\nconnect_timeout_ms = 500"),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        e.message().contains(&format!("127.0.0.1:{port}")) && e.message().contains("retried"),
        "names the server and says the call can be retried: {e}"
    );
    assert_one_line(&e, "unreachable");
}

/// A listener that accepts connections and then never answers, or
/// answers `reply` and closes.
fn listener(reply: Option<&'static [u8]>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            match reply {
                Some(r) => {
                    let _ = c.write_all(r);
                }
                None => held.push(c),
            }
        }
    });
    port
}

#[test]
fn silent_and_wrong_protocol_endpoints_end_within_the_timeouts() {
    let scratch = Scratch::new();
    let silent = listener(None);
    let e = try_storage(
        &scratch,
        &format!(
            "url = \"http://127.0.0.1:{silent}\"\nconnect_timeout_ms = 500\ntimeout_ms = 1500"
        ),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("did not answer in time"), "{e}");

    let redis_like = listener(Some(b"-ERR unknown command 'GET'\r\n"));
    let e = try_storage(
        &scratch,
        &format!("url = \"http://127.0.0.1:{redis_like}\"\ntimeout_ms = 1500"),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.message().contains("does not answer as an HTTP server"),
        "says the endpoint is not an HTTP server: {e}"
    );
    assert_one_line(&e, "not HTTP");

    let other_http = listener(Some(
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found",
    ));
    let e = try_storage(
        &scratch,
        &format!("url = \"http://127.0.0.1:{other_http}\"\ntimeout_ms = 1500"),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(e.message().contains("not as a Chroma 1.x server"), "{e}");
}

#[test]
fn section_mistakes_are_one_clear_line() {
    let scratch = Scratch::new();
    for (section, says) in [
        ("url = \"127.0.0.1:8000\"", "`url`"),
        ("url = \"http://127.0.0.1:1\"\ntenant = \"a b\"", "`tenant`"),
        (
            "url = \"http://127.0.0.1:1\"\ntoken_env = \"BACKPLANE_TEST_NO_SUCH_VARIABLE\"",
            "BACKPLANE_TEST_NO_SUCH_VARIABLE, which is not set",
        ),
        (
            "url = \"http://127.0.0.1:1\"\ntoken_header = \"cookie\"",
            "`token_header`",
        ),
        (
            "url = \"http://127.0.0.1:1\"\ntimeout_ms = 0",
            "`timeout_ms` is 0",
        ),
        (
            "url = \"http://127.0.0.1:1\"\ncollection_prefix = \"a/b\"",
            "`collection_prefix`",
        ),
        ("url = \"http://127.0.0.1:1\"\nshards = 3", "shards"),
    ] {
        let e = try_storage(&scratch, section).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{section}: {e}");
        assert!(e.message().contains(says), "{section}: {e}");
        assert_one_line(&e, section);
    }
}

#[test]
fn a_missing_database_is_named_at_open() {
    let Ok(url) = chroma_server() else {
        println!("skip a missing database: no Chroma server");
        return;
    };
    let scratch = Scratch::new();
    let e = try_storage(
        &scratch,
        &format!("url = \"{url}\"\ndatabase = \"no_such_db\""),
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.message().contains("database 'no_such_db'") && e.message().contains("does not exist"),
        "{e}"
    );
}

/// Payloads of every shape a filter can meet: lists, nested objects,
/// dotted keys, missing and null keys, mixed types, huge integers.
fn payload(i: usize) -> Json {
    let mut p = serde_json::Map::new();
    if !i.is_multiple_of(7) {
        p.insert("n".into(), json!(i % 10));
    }
    if i % 5 == 1 {
        p.insert("n".into(), json!((i % 10) as f64 + 0.5));
    }
    p.insert(
        "tag".into(),
        match i % 6 {
            0 => json!("a"),
            1 => json!("b"),
            2 => json!(["a", "c"]),
            3 => json!(null),
            4 => json!(true),
            _ => json!(3),
        },
    );
    if i.is_multiple_of(4) {
        p.insert(
            "meta".into(),
            json!({"lang": if i.is_multiple_of(8) { "en" } else { "fr" }, "len": i}),
        );
    }
    if i.is_multiple_of(9) {
        p.insert("meta.lang".into(), json!("en"));
    }
    if i.is_multiple_of(11) {
        p.insert("big".into(), json!(u64::MAX - i as u64));
    }
    if i.is_multiple_of(13) {
        p.insert("#hash".into(), json!("x"));
    }
    Json::Object(p)
}

/// Filters over [`payload`]'s keys: every operator, nested, negated, and
/// in both `must` and `should`.
fn filters() -> Vec<Json> {
    vec![
        json!({"must": [{"key": "tag", "match": "a"}]}),
        json!({"must": [{"key": "tag", "in": ["b", "c"]}]}),
        json!({"must": [{"key": "tag", "in": ["a", 3]}]}),
        json!({"must": [{"key": "tag", "match": true}]}),
        json!({"must": [{"key": "n", "range": {"gte": 3, "lt": 7}}]}),
        // Fractional bounds against integer values (Chroma cuts them).
        json!({"must": [{"key": "n", "range": {"gt": 2.5, "lt": 6.5}}]}),
        json!({"must": [{"key": "n", "range": {"gt": -0.5, "lte": 0.5}}]}),
        json!({"must": [{"key": "n", "in": [4, 5.5]}]}),
        json!({"must": [{"key": "$and", "match": 1}]}),
        json!({"must": [{"key": "n", "match": 4}]}),
        json!({"must": [{"key": "n", "match": 5.5}]}),
        json!({"must": [{"key": "meta.lang", "match": "en"}]}),
        json!({"must": [{"key": "meta.len", "range": {"gt": 20}}]}),
        json!({"must": [{"key": "tag", "exists": false}]}),
        json!({"must_not": [{"key": "tag", "match": "a"}]}),
        json!({"must_not": [{"key": "n", "range": {"lt": 5}}]}),
        json!({"should": [{"key": "tag", "match": "b"}, {"key": "n", "match": 2}]}),
        json!({"should": [{"key": "tag", "match": "b"}, {"key": "meta", "exists": true}]}),
        json!({"must": [{"must": [{"key": "n", "range": {"gte": 1}}],
                         "must_not": [{"key": "tag", "match": "c"}]},
                        {"key": "tag", "in": ["a", "b"]}]}),
        json!({"must": [{"key": "big", "range": {"gt": 1e18}}]}),
        json!({"must": [{"key": "#hash", "match": "x"}]}),
        json!({"must": [{"key": "n", "in": []}]}),
    ]
}

#[test]
fn pushed_down_filters_give_what_an_exact_backend_gives() {
    let Ok(url) = chroma_server() else {
        println!("skip the filter comparison: no Chroma server");
        return;
    };
    let scratch = Scratch::new();
    let chroma = try_storage(&scratch, &lines(&url)).unwrap();
    let exact_scratch = Scratch::new();
    let exact = open_with("memory", Capability::Vector, &exact_scratch, "");
    let (c, m) = (chroma.vector("v").unwrap(), exact.vector("s").unwrap());
    let (c, m) = (c.blocking(), m.blocking());
    let records: Vec<VectorRecord> = (0..300)
        .map(|i| {
            let v = vec![
                (i as f32 * 0.37).sin(),
                (i as f32 * 0.11).cos(),
                1.0 + (i % 17) as f32,
            ];
            VectorRecord::new(format!("r{i}"), v).with_payload(payload(i))
        })
        .collect();
    for db in [&c, &m] {
        db.create_collection("f", 3, Distance::Euclidean).unwrap();
        db.upsert("f", &records).unwrap();
    }
    let query = vec![0.2, -0.4, 6.0];
    for f in filters() {
        let filter = Filter::parse(&f).unwrap();
        let (nc, nm) = (
            c.count("f", Some(&filter)).unwrap(),
            m.count("f", Some(&filter)).unwrap(),
        );
        assert_eq!(nc, nm, "count with {f}");
        for k in [5, 300] {
            let req = SearchRequest::new(query.clone(), k).with_filter(filter.clone());
            let (hc, hm) = (c.search("f", &req).unwrap(), m.search("f", &req).unwrap());
            let ids = |h: &[backplane_host::SearchHit]| {
                h.iter().map(|h| h.id.clone()).collect::<Vec<_>>()
            };
            assert_eq!(ids(&hc), ids(&hm), "search k={k} with {f}");
            for (a, b) in hc.iter().zip(&hm) {
                assert_eq!(a.score, b.score, "score of {} with {f}", a.id);
                assert_eq!(a.payload, b.payload, "payload of {}", a.id);
            }
        }
    }
    // delete_where removes exactly what the filter passes.
    let f = Filter::parse(
        &json!({"should": [{"key": "tag", "match": "a"}, {"key": "n", "range": {"gte": 8}}]}),
    )
    .unwrap();
    assert_eq!(
        c.delete_where("f", &f).unwrap(),
        m.delete_where("f", &f).unwrap()
    );
    assert_eq!(c.count("f", None).unwrap(), m.count("f", None).unwrap());
    // An upsert replaces the whole record: keys it lacks are gone.
    let replaced = VectorRecord::new("r1", vec![1.0, 1.0, 1.0]).with_payload(json!({"only": 1}));
    c.upsert("f", std::slice::from_ref(&replaced)).unwrap();
    let back = c.get("f", &["r1".to_string()]).unwrap();
    assert_eq!(back, vec![replaced]);
    let tag_b = Filter::parse(&json!({"must": [{"key": "tag", "match": "b"}]})).unwrap();
    assert!(
        !c.search(
            "f",
            &SearchRequest::new(vec![1.0, 1.0, 1.0], 300).with_filter(tag_b)
        )
        .unwrap()
        .iter()
        .any(|h| h.id == "r1"),
        "a key the new payload lacks no longer matches"
    );
    c.drop_collection("f").unwrap();
}

#[test]
fn vectors_and_documents_come_back_bit_for_bit() {
    let Ok(url) = chroma_server() else {
        println!("skip bit-for-bit vectors: no Chroma server");
        return;
    };
    let scratch = Scratch::new();
    let s = try_storage(&scratch, &lines(&url)).unwrap();
    let v = s.vector("v").unwrap();
    let db = v.blocking();
    // Awkward values: subnormals, tiny and huge magnitudes, negative zero,
    // values with no short decimal form.
    let awkward = [
        f32::from_bits(1),
        -0.0,
        1e-30,
        0.1,
        1.0 / 3.0,
        -7.123_456_7e12,
        f32::MIN_POSITIVE,
        16_777_217.0,
    ];
    for (name, distance) in [
        ("c", Distance::Cosine),
        ("d", Distance::Dot),
        ("e", Distance::Euclidean),
    ] {
        db.create_collection(name, 8, distance).unwrap();
        let records: Vec<VectorRecord> = (0..50)
            .map(|i| {
                let v: Vec<f32> = awkward
                    .iter()
                    .enumerate()
                    .map(|(j, x)| {
                        if (i + j) % 3 == 0 {
                            *x
                        } else {
                            x * (i as f32 + 1.5)
                        }
                    })
                    .collect();
                let r = VectorRecord::new(format!("id-{i}"), v).with_payload(json!({"i": i}));
                match i % 3 {
                    0 => r,
                    1 => r.with_document(""),
                    _ => r.with_document(format!("document {i} ✓")),
                }
            })
            .collect();
        db.upsert(name, &records).unwrap();
        let ids: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
        let got = db.get(name, &ids).unwrap();
        for (a, b) in records.iter().zip(&got) {
            let bits = |r: &VectorRecord| r.vector.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(a), bits(b), "{distance:?} get {}", a.id);
            assert_eq!(a.document, b.document, "document of {}", a.id);
        }
        let mut scrolled = Vec::new();
        let mut cursor = None;
        loop {
            let page = db.scroll(name, cursor.as_deref(), 7).unwrap();
            scrolled.extend(page.records);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        scrolled.sort_by(|a, b| a.id.cmp(&b.id));
        let mut want = records.clone();
        want.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(scrolled.len(), want.len());
        for (a, b) in want.iter().zip(&scrolled) {
            assert_eq!(
                a.vector.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                b.vector.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{distance:?} scroll {}",
                a.id
            );
            assert_eq!(a, b);
        }
        // A record re-upserted without a document has none.
        let bare = VectorRecord::new("id-2", records[2].vector.clone());
        db.upsert(name, std::slice::from_ref(&bare)).unwrap();
        assert_eq!(db.get(name, &["id-2".to_string()]).unwrap(), vec![bare]);
    }
}

/// POST `body` to `path` of Chroma's v2 API at `url`, as another tool
/// would (Python's standard library), returning the answer's text.
fn chroma_post(url: &str, path: &str, body: &Json) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request\n\
             r = urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method='POST', headers={'content-type': 'application/json'})\n\
             print(urllib.request.urlopen(r).read().decode())",
        ])
        .arg(format!("{url}/api/v2{path}"))
        .arg(body.to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "POST {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_collection_made_by_another_tool_is_read_whole() {
    let Ok(url) = chroma_server() else {
        println!("skip a foreign collection: no Chroma server");
        return;
    };
    let prefix = format!("bp-{}-", namespace());
    let base = "/tenants/default_tenant/databases/default_database/collections";
    let made = chroma_post(
        &url,
        base,
        &json!({"name": format!("{prefix}theirs"), "configuration": {"hnsw": {"space": "ip"}}}),
    );
    let id = serde_json::from_str::<Json>(&made).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    chroma_post(
        &url,
        &format!("{base}/{id}/add"),
        &json!({
            "ids": ["x1", "x2", "x3"],
            "embeddings": [[0.5, 0.25], [0.125, 1.0], [-1.0, 0.75]],
            "documents": ["first", null, "third"],
            "metadatas": [{"lang": "en", "n": 1}, {"lang": "fr", "n": 2.5}, null],
        }),
    );
    let scratch = Scratch::new();
    let s = try_storage(&scratch, &lines_with_prefix(&url, &prefix)).unwrap();
    let v = s.vector("v").unwrap();
    let db = v.blocking();
    let info = db.collection_info("theirs").unwrap();
    assert_eq!(
        (info.dimension, info.distance, info.count),
        (2, Distance::Dot, 3)
    );
    assert!(db
        .list_collections()
        .unwrap()
        .iter()
        .any(|c| c.name == "theirs"));
    let page = db.scroll("theirs", None, 10).unwrap();
    let mut got = page.records;
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        got,
        vec![
            VectorRecord::new("x1", vec![0.5, 0.25])
                .with_document("first")
                .with_payload(json!({"lang": "en", "n": 1})),
            VectorRecord::new("x2", vec![0.125, 1.0]).with_payload(json!({"lang": "fr", "n": 2.5})),
            VectorRecord::new("x3", vec![-1.0, 0.75]).with_document("third"),
        ]
    );
    let en = Filter::parse(&json!({"must": [{"key": "lang", "match": "en"}]})).unwrap();
    let hits = db
        .search(
            "theirs",
            &SearchRequest::new(vec![1.0, 1.0], 3).with_filter(en),
        )
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!((hits[0].id.as_str(), hits[0].score), ("x1", 0.75));
    db.drop_collection("theirs").unwrap();
}

#[test]
fn a_server_stopped_mid_stream_is_unavailable_then_recovers() {
    if !chroma_available("a Chroma server stopped mid-stream") {
        return;
    }
    let dir = Scratch::new();
    let mut server = ChromaServer::start(&dir.0);
    let scratch = Scratch::new();
    let s = try_storage(&scratch, &lines(&server.url())).unwrap();
    let v = s.vector("v").unwrap();
    let db = v.blocking();
    db.create_collection("kept", 3, Distance::Cosine).unwrap();
    let records: Vec<VectorRecord> = (0..100)
        .map(|i| {
            VectorRecord::new(format!("r{i}"), vec![1.0, i as f32, 0.5])
                .with_payload(json!({"i": i}))
        })
        .collect();
    db.upsert("kept", &records).unwrap();
    let first = db.scroll("kept", None, 40).unwrap();
    assert_eq!(first.records.len(), 40);

    server.stop();
    for e in [
        db.count("kept", None).unwrap_err(),
        db.scroll("kept", first.next_cursor.as_deref(), 40)
            .unwrap_err(),
        db.upsert("kept", &records[..1]).unwrap_err(),
        db.search("kept", &SearchRequest::new(vec![1.0, 2.0, 3.0], 3))
            .unwrap_err(),
    ] {
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(
            e.message().contains("retried"),
            "says the call can be retried: {e}"
        );
    }
    assert!(s.vector("v").unwrap().blocking().health().is_err());

    server.restart();
    let mut rest = Vec::new();
    let mut cursor = first.next_cursor;
    while let Some(c) = cursor {
        let page = db.scroll("kept", Some(&c), 40).unwrap();
        rest.extend(page.records);
        cursor = page.next_cursor;
    }
    let mut all: Vec<VectorRecord> = first.records.into_iter().chain(rest).collect();
    all.sort_by_key(|r| r.payload["i"].as_u64());
    assert_eq!(all, records, "every record is there after the restart");
    assert_eq!(db.count("kept", None).unwrap(), 100);
    assert!(db.health().unwrap().healthy);
}
