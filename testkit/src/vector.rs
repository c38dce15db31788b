//! Vector cases.

use crate::{expect_err, Case};
use backplane_host::traits::Vector;
use backplane_host::{Distance, ErrorKind, Filter, SearchRequest, VectorRecord, VectorStore};
use serde_json::json;

/// Every vector case.
pub fn cases() -> Vec<Case<VectorStore>> {
    vec![
        ("collections", collections),
        ("upsert_get_count", upsert_get_count),
        ("search_cosine", search_cosine),
        ("search_dot_and_euclidean", search_dot_and_euclidean),
        ("filter_operators", filter_operators),
        ("delete_and_delete_where", delete_and_delete_where),
        ("bad_vectors_write_nothing", bad_vectors_write_nothing),
        ("unknown_collection", unknown_collection),
        ("scroll_returns_raw_vectors", scroll_returns_raw_vectors),
        ("search_batch", search_batch),
        ("health", health),
    ]
}

fn rec(id: &str, v: &[f32], payload: serde_json::Value) -> VectorRecord {
    VectorRecord::new(id, v.to_vec())
        .with_payload(payload)
        .with_document(format!("doc {id}"))
}

fn seeded(db: &dyn Vector) {
    db.create_collection("c", 3, Distance::Cosine).unwrap();
    db.upsert(
        "c",
        &[
            rec(
                "a",
                &[1.0, 0.0, 0.0],
                json!({"user": "alice", "n": 1, "tags": ["x", "y"]}),
            ),
            rec(
                "b",
                &[0.9, 0.1, 0.0],
                json!({"user": "bob", "n": 2, "tags": ["y"]}),
            ),
            rec(
                "c",
                &[0.0, 1.0, 0.0],
                json!({"user": "alice", "n": 3, "meta": {"lang": "en"}}),
            ),
            rec(
                "d",
                &[0.0, 0.0, 1.0],
                json!({"user": "carol", "n": 4, "gone": null}),
            ),
            rec("e", &[-1.0, 0.0, 0.0], json!({"user": "bob", "n": 5.5})),
        ],
    )
    .unwrap();
}

fn ids(hits: &[backplane_host::SearchHit]) -> Vec<&str> {
    hits.iter().map(|h| h.id.as_str()).collect()
}

fn collections(s: &VectorStore) {
    let db = s.blocking();
    db.create_collection("one", 4, Distance::Cosine).unwrap();
    db.create_collection("two", 2, Distance::Euclidean).unwrap();
    expect_err(
        db.create_collection("one", 4, Distance::Cosine),
        ErrorKind::AlreadyExists,
    );
    expect_err(
        db.create_collection("bad name!", 4, Distance::Cosine),
        ErrorKind::InvalidInput,
    );
    expect_err(
        db.create_collection("zero", 0, Distance::Cosine),
        ErrorKind::InvalidInput,
    );
    let mut names: Vec<String> = db
        .list_collections()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    names.sort();
    assert!(
        names.contains(&"one".to_string()) && names.contains(&"two".to_string()),
        "{names:?}"
    );
    let info = db.collection_info("two").unwrap();
    assert_eq!(
        (info.dimension, info.distance, info.count),
        (2, Distance::Euclidean, 0)
    );
    db.drop_collection("two").unwrap();
    expect_err(db.collection_info("two"), ErrorKind::NotFound);
    expect_err(db.drop_collection("two"), ErrorKind::NotFound);
}

fn upsert_get_count(s: &VectorStore) {
    let db = s.blocking();
    seeded(db);
    assert_eq!(db.count("c", None).unwrap(), 5);
    let got = db
        .get("c", &["c".into(), "missing".into(), "a".into()])
        .unwrap();
    let mut got_ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    got_ids.sort();
    assert_eq!(got_ids, ["a", "c"]);
    let a = got.iter().find(|r| r.id == "a").unwrap();
    assert_eq!(a.vector, vec![1.0, 0.0, 0.0]);
    assert_eq!(a.document.as_deref(), Some("doc a"));
    assert_eq!(a.payload["tags"], json!(["x", "y"]));
    // Upsert replaces.
    db.upsert("c", &[rec("a", &[0.0, 1.0, 0.0], json!({"user": "zed"}))])
        .unwrap();
    assert_eq!(db.count("c", None).unwrap(), 5);
    let a = db.get("c", &["a".into()]).unwrap().remove(0);
    assert_eq!(a.vector, vec![0.0, 1.0, 0.0]);
    assert_eq!(a.payload, json!({"user": "zed"}));
    assert!(db.get("c", &[]).unwrap().is_empty());
    assert_eq!(db.collection_info("c").unwrap().count, 5);
}

fn search_cosine(s: &VectorStore) {
    let db = s.blocking();
    seeded(db);
    let hits = db
        .search("c", &SearchRequest::new(vec![1.0, 0.0, 0.0], 3))
        .unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(ids(&hits)[..2], ["a", "b"]);
    assert!(
        (hits[0].score - 1.0).abs() < 1e-5,
        "cosine of identical vectors is 1: {}",
        hits[0].score
    );
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "scores must be descending"
    );
    assert_eq!(hits[0].document.as_deref(), Some("doc a"));
    assert_eq!(hits[0].payload["user"], "alice");
    let all = db
        .search("c", &SearchRequest::new(vec![1.0, 0.0, 0.0], 50))
        .unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all.last().unwrap().id, "e");
    assert!((all.last().unwrap().score + 1.0).abs() < 1e-5);
    assert!(db
        .search("c", &SearchRequest::new(vec![1.0, 0.0, 0.0], 0))
        .unwrap()
        .is_empty());
}

fn search_dot_and_euclidean(s: &VectorStore) {
    let db = s.blocking();
    db.create_collection("dot", 2, Distance::Dot).unwrap();
    db.create_collection("l2", 2, Distance::Euclidean).unwrap();
    let recs = [
        rec("small", &[1.0, 0.0], json!({})),
        rec("big", &[10.0, 0.0], json!({})),
        rec("near", &[2.0, 0.1], json!({})),
    ];
    db.upsert("dot", &recs).unwrap();
    db.upsert("l2", &recs).unwrap();
    let hits = db
        .search("dot", &SearchRequest::new(vec![1.0, 0.0], 3))
        .unwrap();
    assert_eq!(ids(&hits), ["big", "near", "small"]);
    assert!((hits[0].score - 10.0).abs() < 1e-4);
    let hits = db
        .search("l2", &SearchRequest::new(vec![2.0, 0.0], 3))
        .unwrap();
    assert_eq!(ids(&hits), ["near", "small", "big"]);
    assert!(
        hits[0].score > hits[1].score,
        "higher is better for euclidean too"
    );
    assert!(
        (hits[1].score + 1.0).abs() < 1e-4,
        "euclidean score is the negated distance"
    );
}

fn filter_operators(s: &VectorStore) {
    let db = s.blocking();
    seeded(db);
    let q = |f: serde_json::Value| {
        let f = Filter::parse(&f).unwrap();
        let mut v: Vec<String> = db
            .search(
                "c",
                &SearchRequest::new(vec![1.0, 0.0, 0.0], 10).with_filter(f.clone()),
            )
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        v.sort();
        assert_eq!(
            db.count("c", Some(&f)).unwrap() as usize,
            v.len(),
            "count agrees with search"
        );
        v
    };
    assert_eq!(
        q(json!({"must": [{"key": "user", "match": "alice"}]})),
        ["a", "c"]
    );
    assert_eq!(
        q(json!({"must": [{"key": "user", "in": ["bob", "carol"]}]})),
        ["b", "d", "e"]
    );
    assert_eq!(
        q(json!({"must": [{"key": "n", "range": {"gt": 1, "lte": 4}}]})),
        ["b", "c", "d"]
    );
    assert_eq!(
        q(json!({"must": [{"key": "n", "range": {"gte": 5}}]})),
        ["e"]
    );
    assert_eq!(
        q(json!({"must": [{"key": "meta.lang", "match": "en"}]})),
        ["c"]
    );
    assert_eq!(
        q(json!({"must": [{"key": "tags", "match": "y"}]})),
        ["a", "b"]
    );
    assert_eq!(q(json!({"must": [{"key": "meta", "exists": true}]})), ["c"]);
    assert_eq!(
        q(json!({"must": [{"key": "gone", "exists": false}, {"key": "n", "range": {"gte": 4}}]})),
        ["d", "e"]
    );
    assert_eq!(
        q(json!({"must_not": [{"key": "user", "match": "bob"}]})),
        ["a", "c", "d"]
    );
    assert_eq!(
        q(json!({"should": [{"key": "n", "match": 1}, {"key": "n", "match": 4}]})),
        ["a", "d"]
    );
    assert_eq!(
        q(
            json!({"must": [{"key": "user", "match": "bob"}, {"should": [{"key": "n", "match": 2}, {"key": "tags", "exists": false}]}]})
        ),
        ["b", "e"]
    );
    assert_eq!(
        q(json!({"must": [{"key": "user", "match": "nobody"}]})),
        Vec::<String>::new()
    );
}

fn delete_and_delete_where(s: &VectorStore) {
    let db = s.blocking();
    seeded(db);
    assert_eq!(db.delete("c", &["a".into(), "zzz".into()]).unwrap(), 1);
    assert_eq!(db.count("c", None).unwrap(), 4);
    let f = Filter::parse(&json!({"must": [{"key": "user", "match": "bob"}]})).unwrap();
    assert_eq!(db.delete_where("c", &f).unwrap(), 2);
    assert_eq!(db.count("c", None).unwrap(), 2);
    assert_eq!(db.delete_where("c", &f).unwrap(), 0);
    let left = db
        .search("c", &SearchRequest::new(vec![1.0, 0.0, 0.0], 10))
        .unwrap();
    let mut l = ids(&left);
    l.sort();
    assert_eq!(l, ["c", "d"]);
}

fn bad_vectors_write_nothing(s: &VectorStore) {
    let db = s.blocking();
    seeded(db);
    let e = expect_err(
        db.upsert(
            "c",
            &[
                rec("new1", &[1.0, 0.0, 0.0], json!({})),
                rec("new2", &[1.0, 0.0], json!({})),
            ],
        ),
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("dimension"), "{e}");
    expect_err(
        db.upsert("c", &[rec("new3", &[f32::NAN, 0.0, 0.0], json!({}))]),
        ErrorKind::InvalidInput,
    );
    expect_err(
        db.upsert("c", &[rec("new4", &[f32::INFINITY, 0.0, 0.0], json!({}))]),
        ErrorKind::InvalidInput,
    );
    expect_err(
        db.upsert("c", &[rec("", &[1.0, 0.0, 0.0], json!({}))]),
        ErrorKind::InvalidInput,
    );
    // Finite but so large that scores would overflow: one contract on
    // every backend (components within ±1e15), for records and queries.
    let e = expect_err(
        db.upsert("c", &[rec("huge", &[3e38, 0.0, 0.0], json!({}))]),
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("1e15"), "the limit is named: {e}");
    expect_err(
        db.search("c", &SearchRequest::new(vec![3e38, 0.0, 0.0], 3)),
        ErrorKind::InvalidInput,
    );
    expect_err(
        db.upsert(
            "c",
            &[
                rec("dup", &[1.0, 0.0, 0.0], json!({})),
                rec("dup", &[1.0, 0.0, 0.0], json!({})),
            ],
        ),
        ErrorKind::InvalidInput,
    );
    assert_eq!(
        db.count("c", None).unwrap(),
        5,
        "nothing may be written by a rejected upsert"
    );
    expect_err(
        db.search("c", &SearchRequest::new(vec![1.0, 0.0], 3)),
        ErrorKind::InvalidInput,
    );
    expect_err(
        db.search("c", &SearchRequest::new(vec![f32::NAN, 0.0, 0.0], 3)),
        ErrorKind::InvalidInput,
    );
}

fn unknown_collection(s: &VectorStore) {
    let db = s.blocking();
    let e = expect_err(
        db.search("nope", &SearchRequest::new(vec![1.0], 1)),
        ErrorKind::NotFound,
    );
    assert!(e.message().contains("nope"), "{e}");
    expect_err(
        db.upsert("nope", &[rec("a", &[1.0], json!({}))]),
        ErrorKind::NotFound,
    );
    expect_err(db.count("nope", None), ErrorKind::NotFound);
    expect_err(db.get("nope", &["a".into()]), ErrorKind::NotFound);
    expect_err(db.scroll("nope", None, 10), ErrorKind::NotFound);
}

fn scroll_returns_raw_vectors(s: &VectorStore) {
    let db = s.blocking();
    db.create_collection("big", 4, Distance::Cosine).unwrap();
    let recs: Vec<VectorRecord> = (0..25)
        .map(|i| {
            rec(
                &format!("r{i:02}"),
                &[i as f32, 2.0, -3.5, 0.25],
                json!({"i": i}),
            )
        })
        .collect();
    db.upsert("big", &recs).unwrap();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = db.scroll("big", cursor.as_deref(), 10).unwrap();
        assert!(page.records.len() <= 10);
        seen.extend(page.records);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "scroll visits every record once");
    for r in &recs {
        let got = seen.iter().find(|x| x.id == r.id).unwrap();
        assert_eq!(
            got.vector, r.vector,
            "scroll returns raw (unnormalised) vectors"
        );
        assert_eq!(got.payload, r.payload);
    }
    expect_err(db.scroll("big", None, 0), ErrorKind::InvalidInput);
}

fn search_batch(s: &VectorStore) {
    let db = s.blocking();
    seeded(db);
    let f = Filter::parse(&json!({"must": [{"key": "user", "match": "alice"}]})).unwrap();
    let res = db
        .search_batch(
            "c",
            &[
                SearchRequest::new(vec![1.0, 0.0, 0.0], 1),
                SearchRequest::new(vec![0.0, 1.0, 0.0], 1),
                SearchRequest::new(vec![1.0, 0.0, 0.0], 5).with_filter(f),
            ],
        )
        .unwrap();
    assert_eq!(res.len(), 3);
    assert_eq!(ids(&res[0]), ["a"]);
    assert_eq!(ids(&res[1]), ["c"]);
    assert_eq!(ids(&res[2]), ["a", "c"]);
}

fn health(s: &VectorStore) {
    assert!(s.blocking().health().unwrap().healthy);
}
