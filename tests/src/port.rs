//! Fixed datasets with the awkward cases, one per capability, written into
//! a store through its public API, and comparisons of two stores read
//! back through the same API (not through the migration's own checksums):
//! the portability tests' ground truth.

use backplane_host::{
    params, CacheStore, Capability, Direction, Distance, Edge, GraphStore, Message, NewEdge,
    NewNode, Node, Params, RelationalStore, Storage, Value, VectorRecord, VectorStore,
};
use serde_json::json;
use std::time::Duration;

/// The relational dataset's DDL for `backend`: SQLite's dialect for
/// sqlite and memory, PostgreSQL's for postgres, DuckDB's (keys numbered
/// by sequences) for duckdb. `cascade`: the foreign key of books deletes
/// with its author (`ON DELETE CASCADE`, which DuckDB cannot hold: false
/// for a dataset that is to move to or from duckdb).
fn ddl(backend: &str, cascade: bool) -> Vec<String> {
    let on_delete = if cascade { " ON DELETE CASCADE" } else { "" };
    let ddl: Vec<&str> = match backend {
        "postgres" => vec![
            "CREATE TABLE authors (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL, born TIMESTAMPTZ, bio TEXT, big BIGINT)",
            "CREATE UNIQUE INDEX authors_name ON authors (name)",
            "CREATE TABLE books (id BIGSERIAL PRIMARY KEY, author_id BIGINT NOT NULL REFERENCES authors (id){on_delete}, title TEXT, price DOUBLE PRECISION, cover BYTEA, meta JSONB, in_print BOOLEAN, added TIMESTAMPTZ)",
            "CREATE INDEX books_title ON books (title)",
            "CREATE TABLE tags (book_id BIGINT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (book_id, tag))",
            "CREATE TABLE empty_table (id BIGSERIAL PRIMARY KEY, note TEXT)",
        ],
        "duckdb" => vec![
            "CREATE SEQUENCE authors_id_seq",
            "CREATE TABLE authors (id BIGINT PRIMARY KEY DEFAULT nextval('authors_id_seq'), name VARCHAR NOT NULL, born TIMESTAMP, bio VARCHAR, big BIGINT)",
            "CREATE UNIQUE INDEX authors_name ON authors (name)",
            "CREATE SEQUENCE books_id_seq",
            "CREATE TABLE books (id BIGINT PRIMARY KEY DEFAULT nextval('books_id_seq'), author_id BIGINT NOT NULL REFERENCES authors (id){on_delete}, title VARCHAR, price DOUBLE, cover BLOB, meta JSON, in_print BOOLEAN, added TIMESTAMP)",
            "CREATE INDEX books_title ON books (title)",
            "CREATE TABLE tags (book_id BIGINT NOT NULL, tag VARCHAR NOT NULL, PRIMARY KEY (book_id, tag))",
            "CREATE SEQUENCE empty_table_id_seq",
            "CREATE TABLE empty_table (id BIGINT PRIMARY KEY DEFAULT nextval('empty_table_id_seq'), note VARCHAR)",
        ],
        _ => vec![
            "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, born TIMESTAMP, bio TEXT, big INTEGER)",
            "CREATE UNIQUE INDEX authors_name ON authors (name)",
            "CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES authors (id){on_delete}, title TEXT, price REAL, cover BLOB, meta JSON, in_print BOOLEAN, added TIMESTAMP)",
            "CREATE INDEX books_title ON books (title)",
            "CREATE TABLE tags (book_id INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (book_id, tag))",
            "CREATE TABLE empty_table (id INTEGER PRIMARY KEY, note TEXT)",
        ],
    };
    ddl.into_iter()
        .map(|d| d.replace("{on_delete}", on_delete))
        .collect()
}

/// The tables of the relational dataset, each with its key for ordering.
pub const TABLES: [(&str, &str); 4] = [
    ("authors", "id"),
    ("books", "id"),
    ("tags", "book_id, tag"),
    ("empty_table", "id"),
];

/// Write the relational dataset into `s` (served by `backend`); see
/// [`ddl`] for `cascade`.
pub fn fill_relational(s: &RelationalStore, backend: &str, cascade: bool) {
    let db = s.blocking();
    for stmt in ddl(backend, cascade) {
        db.execute(&stmt, &Params::None).unwrap();
    }
    let authors: Vec<Params> = vec![
        params![
            1,
            "Ada Lovelace",
            Value::Timestamp(-4_000_000_000_000_000),
            Value::Null,
            i64::MIN
        ],
        params![
            2,
            "中文 名字 🚀 é",
            Value::Timestamp(1_796_066_139_123_456),
            "a \"quoted\"\nbio with a tab\tand ' quote",
            i64::MAX
        ],
        params![5, "Gap before me", Value::Null, "", 0],
    ];
    db.execute_many(
        "INSERT INTO authors (id, name, born, bio, big) VALUES (?, ?, ?, ?, ?)",
        &authors,
    )
    .unwrap();
    let books: Vec<Params> = vec![
        params![
            1,
            1,
            "Notes",
            12.75,
            Value::Blob(vec![0, 255, 0, 10]),
            Value::Json(json!({"a": [1, 2.5, null], "b": {"c": "é"}, "big": 9007199254740993i64})),
            true,
            Value::Timestamp(0)
        ],
        params![
            2,
            2,
            Value::Null,
            1e-300,
            Value::Blob(vec![]),
            Value::Json(json!([])),
            false,
            Value::Timestamp(-1)
        ],
        params![
            3,
            2,
            "Third",
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null
        ],
    ];
    db.execute_many(
        "INSERT INTO books (id, author_id, title, price, cover, meta, in_print, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        &books,
    )
    .unwrap();
    db.execute_many(
        "INSERT INTO tags (book_id, tag) VALUES (?, ?)",
        &[
            params![1, "math"],
            params![1, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"],
            params![3, "math"],
        ],
    )
    .unwrap();
}

/// Every row of every dataset table of `s`, in key order.
pub fn read_relational(s: &RelationalStore) -> Vec<(String, Vec<Vec<Value>>)> {
    TABLES
        .iter()
        .map(|(t, key)| {
            let rows = s
                .blocking()
                .query(&format!("SELECT * FROM {t} ORDER BY {key}"), &Params::None)
                .unwrap_or_else(|e| panic!("read {t}: {e}"));
            (t.to_string(), rows.rows)
        })
        .collect()
}

/// What a target of a migration of the relational dataset must also do:
/// its schema has the keys, index and foreign key, and numbering continues
/// past the imported ids.
pub fn check_relational_target(s: &RelationalStore) {
    let db = s.blocking();
    let authors = db.describe("authors").unwrap();
    assert_eq!(authors.primary_key, ["id"], "{authors:?}");
    assert!(
        authors
            .indexes
            .iter()
            .any(|i| i.unique && i.columns == ["name"]),
        "the unique index on authors.name: {authors:?}"
    );
    let books = db.describe("books").unwrap();
    assert!(
        books
            .foreign_keys
            .iter()
            .any(|f| f.ref_table == "authors" && f.columns == ["author_id"]),
        "the foreign key books.author_id: {books:?}"
    );
    let tags = db.describe("tags").unwrap();
    assert_eq!(tags.primary_key, ["book_id", "tag"], "{tags:?}");
    db.execute(
        "INSERT INTO authors (name) VALUES (?)",
        &params!["numbered"],
    )
    .unwrap();
    let id = db
        .query(
            "SELECT id FROM authors WHERE name = ?",
            &params!["numbered"],
        )
        .unwrap();
    assert_eq!(
        id.scalar().unwrap().as_i64(),
        Some(6),
        "auto-numbering continues past the imported ids (largest 5)"
    );
}

/// The vector dataset: a collection per distance and an empty one.
pub fn fill_vector(s: &VectorStore) {
    let v = s.blocking();
    for (name, distance) in [
        ("cos", Distance::Cosine),
        ("dot", Distance::Dot),
        ("l2", Distance::Euclidean),
    ] {
        v.create_collection(name, 4, distance).unwrap();
        let records = vec![
            // The largest component every backend accepts, and a
            // subnormal: bits must survive at both ends.
            VectorRecord::new("é-1", vec![0.1, -2.5e-7, 1.0e15, 1.0e-40])
                .with_payload(
                    json!({"user": 1, "tags": ["a", "b"], "deep": {"x": [1, {"y": null}]}}),
                )
                .with_document("un café ☕"),
            VectorRecord::new("plain", vec![1.0 / 3.0, f32::MIN_POSITIVE, -1.0, 0.5])
                .with_payload(json!({})),
            VectorRecord::new("x:y/z", vec![-7.25, 8.0, 1e-30, 2.0])
                .with_payload(json!({"n": -12, "f": 0.125, "b": false})),
        ];
        v.upsert(name, &records).unwrap();
    }
    v.create_collection("empty", 3, Distance::Cosine).unwrap();
}

/// Every collection of `s` with its settings and records (sorted by id).
pub fn read_vector(s: &VectorStore) -> Vec<(String, u32, Distance, Vec<VectorRecord>)> {
    let v = s.blocking();
    let mut out = Vec::new();
    let mut cols = v.list_collections().unwrap();
    cols.sort_by(|a, b| a.name.cmp(&b.name));
    for c in cols {
        let mut records = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let p = v.scroll(&c.name, cursor.as_deref(), 2).unwrap();
            records.extend(p.records);
            match p.next_cursor {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        out.push((c.name, c.dimension, c.distance, records));
    }
    out
}

/// Compare two vector stores' contents, vectors bit for bit.
pub fn assert_same_vectors(
    a: &[(String, u32, Distance, Vec<VectorRecord>)],
    b: &[(String, u32, Distance, Vec<VectorRecord>)],
) {
    assert_eq!(
        a.len(),
        b.len(),
        "collections: {:?} vs {:?}",
        names(a),
        names(b)
    );
    for (x, y) in a.iter().zip(b) {
        assert_eq!((&x.0, x.1, x.2), (&y.0, y.1, y.2));
        assert_eq!(x.3.len(), y.3.len(), "records of {}", x.0);
        for (r, s) in x.3.iter().zip(&y.3) {
            assert_eq!(r.id, s.id);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&r.vector),
                bits(&s.vector),
                "vector {} of {}",
                r.id,
                x.0
            );
            assert_eq!(r.document, s.document, "document {}", r.id);
            assert_eq!(r.payload, s.payload, "payload {}", r.id);
        }
    }
}

fn names(v: &[(String, u32, Distance, Vec<VectorRecord>)]) -> Vec<&str> {
    v.iter().map(|c| c.0.as_str()).collect()
}

/// The graph dataset: a cycle, a self loop, parallel edges of two types.
pub fn fill_graph(s: &GraphStore) {
    let g = s.blocking();
    g.create_nodes(&[
        NewNode::new("person", json!({"name": "Ada", "born": 1815})).with_id("ada"),
        NewNode::new("person", json!({"name": "中文", "tags": ["x", {"y": 1.5}]})).with_id("n-é"),
        NewNode::new("topic", json!({})).with_id("math"),
        NewNode::new("topic", json!({"deep": {"a": {"b": null}}})).with_id("loop"),
    ])
    .unwrap();
    let edge = |id: &str, from: &str, to: &str, t: &str, p: serde_json::Value| {
        let mut e = NewEdge::new(from, to, t).with_properties(p);
        e.id = Some(id.into());
        e
    };
    g.create_edges(&[
        edge("e1", "ada", "n-é", "knows", json!({"since": 1833})),
        edge("e2", "n-é", "math", "likes", json!({})),
        edge("e3", "math", "ada", "cites", json!({"w": 0.5})),
        edge("e4", "loop", "loop", "self", json!({})),
        edge("e5", "ada", "n-é", "wrote_to", json!({"letters": 12})),
    ])
    .unwrap();
}

/// Every node and edge of `s`, sorted by id.
pub fn read_graph(s: &GraphStore) -> (Vec<Node>, Vec<Edge>) {
    let g = s.blocking();
    let mut nodes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = g.export_nodes(cursor.as_deref(), 2).unwrap();
        nodes.extend(p.items);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut edges = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = g.export_edges(cursor.as_deref(), 2).unwrap();
        edges.extend(p.items);
        match p.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    edges.sort_by(|a, b| a.id.cmp(&b.id));
    (nodes, edges)
}

/// What a target graph must also do: traversals see the imported edges.
pub fn check_graph_target(s: &GraphStore) {
    let g = s.blocking();
    let n = g.neighbors("ada", Direction::Outgoing, &[], 3).unwrap();
    let ids: Vec<&str> = n.iter().map(|x| x.node.id.as_str()).collect();
    assert!(ids.contains(&"n-é") && ids.contains(&"math"), "{ids:?}");
    let path = g.shortest_path("ada", "math", 5).unwrap().expect("a path");
    assert_eq!(path.nodes.len(), 3, "{path:?}");
}

/// The cache dataset: keys with and without a time to live, binary
/// values, and two conversations with metadata.
pub fn fill_cache(s: &CacheStore) {
    let c = s.blocking();
    c.set("plain", b"value", None).unwrap();
    c.set("ttl:é", b"expires", Some(Duration::from_secs(3600)))
        .unwrap();
    c.set("bin", &(0u8..=255).collect::<Vec<u8>>(), None)
        .unwrap();
    let msg = |id: &str, role: &str, content: &str, ts: i64, meta: serde_json::Value| {
        let mut m = Message::new(role, content).with_id(id).with_metadata(meta);
        m.timestamp_ms = ts;
        m
    };
    c.add_messages(
        "user-1",
        &[
            msg(
                "m1",
                "user",
                "hello",
                1_700_000_000_000,
                json!({"lang": "en"}),
            ),
            msg("m2", "assistant", "hi! ☕", 1_700_000_000_500, json!(null)),
            msg(
                "m3",
                "tool",
                "{\"x\": 1}",
                1_700_000_001_000,
                json!({"n": [1, 2]}),
            ),
        ],
    )
    .unwrap();
    c.add_messages(
        "chan-é",
        &[msg(
            "a",
            "user",
            "中文",
            1_700_000_002_000,
            json!({"deep": {"k": true}}),
        )],
    )
    .unwrap();
}

/// A cache's keys (with whether each has a time to live) and conversations.
pub type CacheContent = (Vec<(String, Vec<u8>, bool)>, Vec<(String, Vec<Message>)>);

/// Every key and conversation of `s`, sorted.
pub fn read_cache(s: &CacheStore) -> CacheContent {
    let c = s.blocking();
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = c.scan_keys(cursor.as_deref(), 2).unwrap();
        for e in p.items {
            if let Some(t) = e.ttl {
                assert!(
                    t <= Duration::from_secs(3600) && t > Duration::from_secs(3000),
                    "{}'s time to live is kept: {t:?}",
                    e.key
                );
            }
            keys.push((e.key, e.value, e.ttl.is_some()));
        }
        match p.next_cursor {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    keys.sort();
    let mut channels = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = c.list_channels(cursor.as_deref(), 1).unwrap();
        for ch in p.items {
            let msgs = c.recent(&ch.channel, usize::MAX, None).unwrap();
            assert_eq!(msgs.len() as u64, ch.messages, "{}'s count", ch.channel);
            channels.push((ch.channel, msgs));
        }
        match p.next_cursor {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    channels.sort_by(|a, b| a.0.cmp(&b.0));
    (keys, channels)
}

/// The store named `s` of `storage` as a reference for migrations.
pub fn store_ref(cap: Capability) -> backplane_host::StoreRef {
    backplane_host::StoreRef::new(cap, "s")
}

/// Fill the store `s` of `storage` (served by `backend`) with the dataset
/// of `cap`.
pub fn fill(storage: &Storage, cap: Capability, backend: &str) {
    fill_with(storage, cap, backend, backend != "duckdb")
}

/// [`fill`], saying whether the relational dataset's foreign key cascades
/// (see [`ddl`]).
pub fn fill_with(storage: &Storage, cap: Capability, backend: &str, cascade: bool) {
    match cap {
        Capability::Relational => {
            fill_relational(&storage.relational("s").unwrap(), backend, cascade)
        }
        Capability::Vector => fill_vector(&storage.vector("s").unwrap()),
        Capability::Graph => fill_graph(&storage.graph("s").unwrap()),
        Capability::Cache => fill_cache(&storage.cache("s").unwrap()),
    }
}

/// Assert that the stores `s` of `a` and `b` hold the same records of the
/// dataset of `cap`, read through the public API; `b` is also checked as
/// a target (schema, numbering, traversals).
pub fn assert_same(a: &Storage, b: &Storage, cap: Capability) {
    match cap {
        Capability::Relational => {
            let (x, y) = (a.relational("s").unwrap(), b.relational("s").unwrap());
            assert_eq!(read_relational(&x), read_relational(&y));
            check_relational_target(&y);
        }
        Capability::Vector => {
            assert_same_vectors(
                &read_vector(&a.vector("s").unwrap()),
                &read_vector(&b.vector("s").unwrap()),
            );
        }
        Capability::Graph => {
            let (x, y) = (a.graph("s").unwrap(), b.graph("s").unwrap());
            assert_eq!(read_graph(&x), read_graph(&y));
            check_graph_target(&y);
        }
        Capability::Cache => {
            let (x, y) = (a.cache("s").unwrap(), b.cache("s").unwrap());
            let (kx, cx) = read_cache(&x);
            let (ky, cy) = read_cache(&y);
            assert_eq!(kx, ky, "keys");
            assert_eq!(cx, cy, "conversations");
            assert!(!kx.is_empty() && !cx.is_empty(), "the dataset is there");
        }
    }
}
