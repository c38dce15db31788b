//! Unit tests on temporary database files, through the plugin as the host
//! opens stores. One file for every capability, whole: the cases share the
//! temporary-folder fixture.

use crate::SqlitePlugin;
use backplane_core::{
    params, Cache, Capability, Direction, ErrorKind, Filter, Message, Migration, NewEdge, NewNode,
    NodeQuery, Params, Plugin, Relational, SearchRequest, Statement, StoreConfig, Value,
    VectorRecord,
};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A fresh folder under the system temp dir, removed on drop (kept when
/// `BP_SQLITE_KEEP_TEST_DIRS` is set, to look at the files with `sqlite3`).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bp-sqlite-test-{}-{}-{}",
            std::process::id(),
            backplane_core::kit::time::now_ms(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn config(&self, cap: Capability, options: serde_json::Value) -> StoreConfig {
        let mut c = StoreConfig::new("test", "sqlite", cap, options);
        c.base_dir = self.0.clone();
        c
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("BP_SQLITE_KEEP_TEST_DIRS").is_some() {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn relational(dir: &TempDir) -> Box<dyn Relational> {
    SqlitePlugin::default()
        .open_relational(&dir.config(Capability::Relational, json!({"path": "db/rel.db"})))
        .unwrap()
}

#[test]
fn params_positional_and_named() {
    let dir = TempDir::new();
    let db = relational(&dir);
    db.execute(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, active BOOLEAN, meta JSON, seen TIMESTAMP)",
        &Params::None,
    )
    .unwrap();
    let r = db
        .execute(
            "INSERT INTO users (name, active, meta, seen) VALUES (?, ?, ?, ?)",
            &params!["alice", true, json!({"a": 1}), Value::Timestamp(42)],
        )
        .unwrap();
    assert_eq!(r.rows_affected, 1);
    assert_eq!(r.last_insert_id, Some(1));
    db.execute(
        "INSERT INTO users (name, active) VALUES (:name, @active)",
        &Params::named([("name", Value::from("bob")), ("active", Value::from(false))]),
    )
    .unwrap();
    db.execute(
        "INSERT INTO users (name) VALUES (?2 || ?1)",
        &params!["y", "x"],
    )
    .unwrap();

    let rows = db
        .query(
            "SELECT id, name, active, meta, seen FROM users WHERE id = :id",
            &Params::named([("id", 1)]),
        )
        .unwrap();
    assert_eq!(*rows.columns, ["id", "name", "active", "meta", "seen"]);
    assert_eq!(
        rows.rows[0],
        vec![
            Value::Integer(1),
            Value::Text("alice".into()),
            Value::Bool(true),
            Value::Json(json!({"a": 1})),
            Value::Timestamp(42)
        ]
    );
    let rows = db
        .query("SELECT name FROM users ORDER BY id", &Params::None)
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows.get(2, "name"), Some(&Value::Text("xy".into())));

    // DDL does not report the previous statement's row count.
    let r = db.execute("CREATE TABLE t2 (x)", &Params::None).unwrap();
    assert_eq!(r.rows_affected, 0);

    // Mistakes name what is wrong.
    let e = db
        .query("SELECT * FROM users WHERE id = ?", &Params::None)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = db
        .query("SELECT * FROM users WHERE id = ?", &params![1, 2])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("1 parameter"), "{e}");
    let e = db
        .query(
            "SELECT * FROM users WHERE id = :id",
            &Params::named([("ident", 1)]),
        )
        .unwrap_err();
    assert!(
        e.message().contains(":ident") && e.message().contains(":id"),
        "{e}"
    );
    let e = db
        .query(
            "SELECT * FROM users WHERE id = :id AND name = :name",
            &Params::named([("id", 1)]),
        )
        .unwrap_err();
    assert!(e.message().contains("missing: :name"), "{e}");
    let e = db.query("SELECT * FROM nope", &Params::None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("no such table: nope"), "{e}");
    let e = db.query("SELEKT 1", &Params::None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = db
        .execute(
            "INSERT INTO users (id, name) VALUES (1, 'dup')",
            &Params::None,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);

    // execute on a statement returning rows steps through it.
    db.execute("SELECT * FROM users", &Params::None).unwrap();
    let r = db
        .execute(
            "INSERT INTO users (name) VALUES ('z') RETURNING id",
            &Params::None,
        )
        .unwrap();
    assert_eq!(r.rows_affected, 1);

    // Batches are one transaction.
    let r = db
        .execute_many(
            "INSERT INTO t2 (x) VALUES (?)",
            &[params![1], params![2], params![3]],
        )
        .unwrap();
    assert_eq!(r.rows_affected, 3);
    assert_eq!(db.tables().unwrap(), ["t2", "users"]);
    let s = db.describe("users").unwrap();
    assert_eq!(s.columns.len(), 5);
    assert!(s.columns[0].primary_key && !s.columns[0].nullable);
    assert!(!s.columns[1].nullable);
    assert_eq!(db.describe("nope").unwrap_err().kind(), ErrorKind::NotFound);
    let h = db.health().unwrap();
    assert!(h.healthy && h.detail.contains("journal=wal"), "{h:?}");
}

#[test]
fn transaction_rolls_back() {
    let dir = TempDir::new();
    let db = relational(&dir);
    db.execute("CREATE TABLE t (x INTEGER UNIQUE)", &Params::None)
        .unwrap();
    let e = db
        .transaction(&[
            Statement::new("INSERT INTO t VALUES (?)", params![1]),
            Statement::new("INSERT INTO t VALUES (?)", params![2]),
            Statement::new("INSERT INTO t VALUES (?)", params![1]),
        ])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(
        e.message().contains("statement 3 of 3"),
        "the third statement, counted from 1: {e}"
    );
    let n = db.query("SELECT count(*) FROM t", &Params::None).unwrap();
    assert_eq!(n.scalar().unwrap(), &Value::Integer(0));
    let e = db
        .execute_many("INSERT INTO t VALUES (?)", &[params![5], params![5]])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    let n = db.query("SELECT count(*) FROM t", &Params::None).unwrap();
    assert_eq!(n.scalar().unwrap(), &Value::Integer(0));
    let r = db
        .transaction(&[
            Statement::new("INSERT INTO t VALUES (?)", params![1]),
            Statement::new("UPDATE t SET x = 3", Params::None),
        ])
        .unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].rows_affected, 1);
}

#[test]
fn migrations_are_idempotent_and_checked() {
    let dir = TempDir::new();
    let db = relational(&dir);
    let m = vec![
        Migration::new(
            1,
            "users",
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);",
        ),
        Migration::new(
            2,
            "index",
            "CREATE INDEX users_name ON users(name); INSERT INTO users (name) VALUES ('root');",
        ),
    ];
    let r = db.migrate(&m).unwrap();
    assert_eq!(r.applied, [1, 2]);
    let r = db.migrate(&m).unwrap();
    assert_eq!(r.skipped, [1, 2]);
    assert!(r.applied.is_empty());
    assert!(db
        .tables()
        .unwrap()
        .contains(&"_backplane_migrations".to_string()));

    let mut edited = m.clone();
    edited[0].sql.push_str(" -- edited");
    let e = db.migrate(&edited).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert!(e.message().contains("migration 1"), "{e}");

    // A failing script leaves nothing behind.
    let mut more = m.clone();
    more.push(Migration::new(
        3,
        "bad",
        "CREATE TABLE t3 (x); INSERT INTO nope VALUES (1);",
    ));
    let e = db.migrate(&more).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("migration 3"), "{e}");
    assert!(!db.tables().unwrap().contains(&"t3".to_string()));
}

#[test]
fn backup_and_restore() {
    let dir = TempDir::new();
    let db = relational(&dir);
    db.execute("CREATE TABLE t (x)", &Params::None).unwrap();
    db.execute("INSERT INTO t VALUES (1)", &Params::None)
        .unwrap();
    let file = dir.0.join("backups/copy.db");
    db.backup(file.to_str().unwrap()).unwrap();
    let mut left: Vec<String> = std::fs::read_dir(dir.0.join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["copy.db"]);
    db.execute("INSERT INTO t VALUES (2)", &Params::None)
        .unwrap();
    db.restore(file.to_str().unwrap()).unwrap();
    let n = db.query("SELECT count(*) FROM t", &Params::None).unwrap();
    assert_eq!(n.scalar().unwrap(), &Value::Integer(1));
    let e = db
        .restore(dir.0.join("missing.db").to_str().unwrap())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[test]
fn vector_search_with_filter() {
    // With the in-memory copy of the vectors, and streaming from the table.
    vector_search(json!({"path": "kb.db", "dimension": 3, "distance": "cosine"}));
    vector_search(json!({"path": "kb.db", "dimension": 3, "search_cache_mb": 0}));
}

fn vector_search(options: serde_json::Value) {
    let dir = TempDir::new();
    let config = dir.config(Capability::Vector, options);
    let v = SqlitePlugin::default().open_vector(&config).unwrap();
    assert_eq!(v.collection_info("test").unwrap().dimension, 3);
    let recs = vec![
        VectorRecord::new("a", vec![1.0, 0.0, 0.0]).with_payload(json!({"user": "alice", "n": 1})),
        VectorRecord::new("b", vec![0.9, 0.1, 0.0]).with_payload(json!({"user": "bob", "n": 2})),
        VectorRecord::new("c", vec![0.0, 1.0, 0.0])
            .with_payload(json!({"user": "alice", "n": 3}))
            .with_document("third"),
    ];
    v.upsert("test", &recs).unwrap();
    let hits = v
        .search("test", &SearchRequest::new(vec![1.0, 0.0, 0.0], 2))
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!((hits[0].score - 1.0).abs() < 1e-6);
    assert_eq!(hits[0].payload["user"], "alice");

    let f = Filter::parse(&json!({"key": "user", "match": "alice"})).unwrap();
    let hits = v
        .search(
            "test",
            &SearchRequest::new(vec![1.0, 0.0, 0.0], 5).with_filter(f.clone()),
        )
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(hits[1].document.as_deref(), Some("third"));
    assert_eq!(v.count("test", Some(&f)).unwrap(), 2);
    assert_eq!(v.count("test", None).unwrap(), 3);

    // A write through another store on the same file is seen at once.
    let other = SqlitePlugin::default().open_vector(&config).unwrap();
    other
        .upsert(
            "test",
            &[VectorRecord::new("a", vec![0.0, 0.0, 1.0]).with_payload(json!({"user": "alice"}))],
        )
        .unwrap();
    let hits = v
        .search(
            "test",
            &SearchRequest::new(vec![0.0, 0.0, 1.0], 1).with_filter(f.clone()),
        )
        .unwrap();
    assert_eq!((hits[0].id.as_str(), hits[0].score), ("a", 1.0));
    other
        .upsert(
            "test",
            &[VectorRecord::new("a", vec![1.0, 0.0, 0.0])
                .with_payload(json!({"user": "alice", "n": 1}))],
        )
        .unwrap();
    // And this store's own writes too.
    v.upsert("test", &[VectorRecord::new("tmp", vec![1.0, 0.0, 0.0])])
        .unwrap();
    assert_eq!(
        v.search("test", &SearchRequest::new(vec![1.0, 0.0, 0.0], 5))
            .unwrap()
            .len(),
        4
    );
    v.delete("test", &["tmp".into()]).unwrap();
    let batch = v
        .search_batch(
            "test",
            &[
                SearchRequest::new(vec![1.0, 0.0, 0.0], 5),
                SearchRequest::new(vec![0.0, 1.0, 0.0], 1),
            ],
        )
        .unwrap();
    assert_eq!(batch[0].len(), 3);
    assert_eq!(batch[1][0].id, "c");

    // Bad input writes nothing.
    let e = v
        .upsert(
            "test",
            &[
                VectorRecord::new("d", vec![1.0, 2.0, 3.0]),
                VectorRecord::new("e", vec![1.0]),
            ],
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(v.count("test", None).unwrap(), 3);
    assert_eq!(
        v.search("nope", &SearchRequest::new(vec![1.0], 1))
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    // Scroll returns raw vectors in id order.
    let p1 = v.scroll("test", None, 2).unwrap();
    assert_eq!(p1.records.len(), 2);
    assert_eq!(p1.records[1].vector, vec![0.9, 0.1, 0.0]);
    let p2 = v.scroll("test", p1.next_cursor.as_deref(), 2).unwrap();
    assert_eq!(p2.records[0].id, "c");
    assert!(p2.next_cursor.is_none());

    assert_eq!(v.delete_where("test", &f).unwrap(), 2);
    assert_eq!(v.get("test", &["a".into(), "b".into()]).unwrap().len(), 1);
    assert_eq!(v.delete("test", &["b".into(), "zz".into()]).unwrap(), 1);

    v.create_collection("e", 2, backplane_core::Distance::Euclidean)
        .unwrap();
    v.upsert("e", &[VectorRecord::new("x", vec![3.0, 4.0])])
        .unwrap();
    let hits = v
        .search("e", &SearchRequest::new(vec![0.0, 0.0], 1))
        .unwrap();
    assert!((hits[0].score + 5.0).abs() < 1e-6);
    assert_eq!(
        v.create_collection("e", 2, backplane_core::Distance::Dot)
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(v.list_collections().unwrap().len(), 2);
    v.drop_collection("e").unwrap();
    assert_eq!(
        v.drop_collection("e").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

fn cache(dir: &TempDir, opts: serde_json::Value) -> Box<dyn Cache> {
    SqlitePlugin::default()
        .open_cache(&dir.config(Capability::Cache, opts))
        .unwrap()
}

#[test]
fn cache_ttl_expiry() {
    let dir = TempDir::new();
    let c = cache(&dir, json!({"path": "cache.db", "ttl": "50ms"}));
    c.set("k", b"v", Some(Duration::from_millis(50))).unwrap();
    c.set("forever", b"x", None).unwrap();
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert!(c.exists("k").unwrap());
    c.add_message("ch", &Message::new("user", "hi")).unwrap();
    assert_eq!(c.recent("ch", 10, None).unwrap().len(), 1);
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(c.get("k").unwrap(), None);
    assert!(!c.exists("k").unwrap());
    assert!(!c.delete("k").unwrap());
    assert!(!c.expire("k", Duration::from_secs(1)).unwrap());
    assert!(c.recent("ch", 10, None).unwrap().is_empty());
    assert_eq!(c.clear("ch").unwrap(), 0);
    let s = c.stats().unwrap();
    assert_eq!(
        (s.hits, s.misses, s.keys, s.channels, s.messages),
        (1, 1, 1, 0, 0)
    );
    assert!(s.memory_bytes.unwrap() > 0);
    assert!(c.expire("forever", Duration::from_secs(60)).unwrap());
    assert_eq!(
        c.set("z", b"", Some(Duration::ZERO)).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    assert_eq!(c.get("").unwrap_err().kind(), ErrorKind::InvalidInput);
    c.set_many(
        &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
        None,
    )
    .unwrap();
    assert_eq!(
        c.get_many(&["a".into(), "nope".into(), "b".into()])
            .unwrap(),
        vec![Some(b"1".to_vec()), None, Some(b"2".to_vec())]
    );
}

#[test]
fn cache_message_bound() {
    let dir = TempDir::new();
    let c = cache(&dir, json!({"path": "cache.db", "max_messages": 3}));
    for i in 0..5 {
        c.add_message(
            "ch",
            &Message::new("user", format!("m{i}")).with_id(format!("id{i}")),
        )
        .unwrap();
    }
    let recent = c.recent("ch", 10, None).unwrap();
    assert_eq!(
        recent
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["m2", "m3", "m4"]
    );
    assert!(recent[0].timestamp_ms > 0);
    let recent = c.recent("ch", 2, Some("id4")).unwrap();
    assert_eq!(
        recent.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["id2", "id3"]
    );
    let e = c
        .add_message("ch", &Message::new("user", "dup").with_id("id4"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    let m = c
        .add_message(
            "ch",
            &Message::new("assistant", "auto").with_metadata(json!({"t": 1})),
        )
        .unwrap();
    assert!(!m.id.is_empty());
    let last = c.recent("ch", 1, None).unwrap();
    assert_eq!(last[0], m);
    assert!(c.remove_message("ch", "id3").unwrap());
    assert!(!c.remove_message("ch", "id3").unwrap());
    let s = c.stats().unwrap();
    assert_eq!((s.channels, s.messages), (1, 2));
    assert_eq!(c.clear("ch").unwrap(), 2);

    let e = SqlitePlugin::default()
        .open_cache(&dir.config(Capability::Cache, json!({"path": "x.db", "dimension": 3})))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    let e = SqlitePlugin::default()
        .open_cache(&dir.config(Capability::Cache, json!({"path": "x.db", "bogus": 1})))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[test]
fn graph_traversal() {
    let dir = TempDir::new();
    // Graph and relational share one file; the relational side does not
    // see the graph's tables.
    let cfg = dir.config(Capability::Graph, json!({"path": "kg.db"}));
    let g = SqlitePlugin::default().open_graph(&cfg).unwrap();
    let node = |id: &str| NewNode::new("person", json!({"name": id.to_uppercase()})).with_id(id);
    g.create_nodes(&[node("a"), node("b"), node("c"), node("d"), node("e")])
        .unwrap();
    g.create_edges(&[
        NewEdge::new("a", "b", "knows"),
        NewEdge::new("b", "c", "knows"),
        NewEdge::new("c", "d", "likes"),
        NewEdge::new("a", "c", "likes"),
        NewEdge::new("e", "a", "knows"),
    ])
    .unwrap();
    let rel = SqlitePlugin::default()
        .open_relational(&dir.config(Capability::Relational, json!({"path": "kg.db"})))
        .unwrap();
    assert!(rel.tables().unwrap().is_empty());

    let n = g.neighbors("a", Direction::Outgoing, &[], 2).unwrap();
    let got: Vec<(&str, u32)> = n.iter().map(|x| (x.node.id.as_str(), x.depth)).collect();
    assert_eq!(got, [("b", 1), ("c", 1), ("d", 2)]);
    let n = g
        .neighbors("a", Direction::Outgoing, &["knows".into()], 3)
        .unwrap();
    let got: Vec<(&str, u32)> = n.iter().map(|x| (x.node.id.as_str(), x.depth)).collect();
    assert_eq!(got, [("b", 1), ("c", 2)]);
    let n = g.neighbors("a", Direction::Both, &[], 1).unwrap();
    let got: Vec<&str> = n.iter().map(|x| x.node.id.as_str()).collect();
    assert_eq!(got, ["b", "c", "e"]);
    let n = g.neighbors("d", Direction::Incoming, &[], 16).unwrap();
    let got: Vec<(&str, u32)> = n.iter().map(|x| (x.node.id.as_str(), x.depth)).collect();
    assert_eq!(got, [("c", 1), ("a", 2), ("b", 2), ("e", 3)]);
    assert_eq!(
        g.neighbors("zz", Direction::Both, &[], 1)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        g.neighbors("a", Direction::Both, &[], 0)
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );

    let p = g.shortest_path("e", "d", 5).unwrap().unwrap();
    let ids: Vec<&str> = p.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["e", "a", "c", "d"]);
    assert_eq!(p.edges.len(), 3);
    assert_eq!(p.edges[1].from, "a");
    assert!(g.shortest_path("e", "d", 2).unwrap().is_none());
    assert!(g.shortest_path("d", "a", 5).unwrap().is_none());
    assert_eq!(
        g.shortest_path("a", "a", 1).unwrap().unwrap().nodes.len(),
        1
    );
    assert_eq!(
        g.shortest_path("a", "zz", 3).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // All or nothing, with the missing endpoint named.
    let e = g
        .create_edges(&[NewEdge::new("a", "d", "x"), NewEdge::new("a", "ghost", "x")])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("ghost"), "{e}");
    assert_eq!(g.edges_of("a", Direction::Outgoing).unwrap().len(), 2);
    let e = g.create_nodes(&[node("f"), node("a")]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    assert!(g.get_node("f").unwrap().is_none());

    let updated = g
        .update_node("a", &json!({"age": 3, "name": null}))
        .unwrap();
    assert_eq!(updated.properties, json!({"age": 3}));
    let found = g
        .find_nodes(&NodeQuery {
            label: Some("person".into()),
            text: Some("b".into()),
            ..NodeQuery::default()
        })
        .unwrap();
    assert_eq!(
        found.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let found = g
        .find_nodes(&NodeQuery {
            filter: Some(Filter::parse(&json!({"key": "age", "range": {"gte": 3}})).unwrap()),
            ..NodeQuery::default()
        })
        .unwrap();
    assert_eq!(found.len(), 1);

    // Deleting a node takes its edges with it.
    assert!(g.delete_node("c").unwrap());
    assert!(!g.delete_node("c").unwrap());
    assert_eq!(g.edges_of("a", Direction::Both).unwrap().len(), 2);
    let page1 = g.export_edges(None, 1).unwrap();
    let page2 = g.export_edges(page1.next_cursor.as_deref(), 5).unwrap();
    assert_eq!(page1.items.len() + page2.items.len(), 2);
    assert!(page2.next_cursor.is_none());
    let nodes = g.export_nodes(None, 10).unwrap();
    assert_eq!(nodes.items.len(), 4);
}

#[test]
fn config_and_memory_path() {
    let dir = TempDir::new();
    let p = SqlitePlugin::default();
    let e = p
        .open_relational(&dir.config(Capability::Relational, json!({})))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("path"), "{e}");
    let e = p
        .open_relational(&dir.config(Capability::Relational, json!({"path": "a.db", "ttl": "1m"})))
        .err()
        .unwrap();
    assert!(e.message().contains("`ttl` applies only to cache"), "{e}");
    let e = p
        .open_cache(&dir.config(Capability::Cache, json!({"path": "a.db", "ttl": "soon"})))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    std::fs::write(dir.0.join("junk.db"), vec![7u8; 8192]).unwrap();
    let e = p
        .open_graph(&dir.config(Capability::Graph, json!({"path": "junk.db"})))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("junk.db"), "{e}");

    let db = p
        .open_relational(&dir.config(Capability::Relational, json!({"path": ":memory:"})))
        .unwrap();
    db.execute("CREATE TABLE t (x)", &Params::None).unwrap();
    assert_eq!(db.tables().unwrap(), ["t"]);
    assert!(db.health().unwrap().detail.contains(":memory:"));
    assert_eq!(
        p.backends()[0].capabilities,
        Capability::ALL.to_vec(),
        "serves every capability"
    );
}
