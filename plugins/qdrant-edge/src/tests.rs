//! The backend on real shards in temporary folders: reopening, raw
//! vectors, the filter translation against core's evaluator, index builds.

use crate::backend::QdrantEdgeVector;
use crate::config::{DefaultCollection, Tuning};
use backplane_core::{Distance, ErrorKind, Filter, SearchRequest, Vector, VectorRecord};
use serde_json::{json, Value as Json};
use std::time::Duration;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.unit()).collect()
    }
}

/// Settings whose index is built only when a test asks (`build_index`),
/// once more than `threshold_kb` is unindexed.
fn built_when_asked(threshold_kb: usize) -> Tuning {
    Tuning {
        indexing_threshold_kb: threshold_kb,
        index_after_idle: Duration::from_secs(3600),
        ..Tuning::default()
    }
}

fn open(dir: &std::path::Path) -> QdrantEdgeVector {
    QdrantEdgeVector::open(dir, Tuning::default(), None).unwrap()
}

#[test]
fn data_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let s = open(tmp.path());
        s.create_collection("c", 3, Distance::Cosine).unwrap();
        s.create_collection("l2", 2, Distance::Euclidean).unwrap();
        s.upsert(
            "c",
            &[
                VectorRecord::new("a", vec![3.0, 4.0, 0.0])
                    .with_payload(json!({"user": "alice", "tags": []}))
                    .with_document("doc a"),
                VectorRecord::new("b", vec![0.1, 0.2, 0.3]).with_payload(Json::Null),
                VectorRecord::new("gone", vec![1.0, 1.0, 1.0]),
            ],
        )
        .unwrap();
        assert_eq!(s.delete("c", &["gone".into()]).unwrap(), 1);
        s.upsert("l2", &[VectorRecord::new("p", vec![1.0, 2.0])])
            .unwrap();
    }
    // Reopened by a new store: everything written is there.
    let s = open(tmp.path());
    let names: Vec<String> = s
        .list_collections()
        .unwrap()
        .into_iter()
        .map(|c| format!("{}:{}:{}", c.name, c.dimension, c.count))
        .collect();
    assert_eq!(names, ["c:3:2", "l2:2:1"]);
    let got = s
        .get("c", &["a".into(), "b".into(), "gone".into()])
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].vector, vec![3.0, 4.0, 0.0], "raw, not normalised");
    assert_eq!(got[0].payload, json!({"user": "alice", "tags": []}));
    assert_eq!(got[0].document.as_deref(), Some("doc a"));
    assert_eq!(got[1].payload, Json::Null);
    let f = Filter::parse(&json!({"key": "tags", "exists": true})).unwrap();
    assert_eq!(s.count("c", Some(&f)).unwrap(), 1, "the shape survives too");
    let hits = s
        .search("l2", &SearchRequest::new(vec![1.0, 1.0], 1))
        .unwrap();
    assert_eq!(hits[0].id, "p");
    assert!((hits[0].score + 1.0).abs() < 1e-5, "{}", hits[0].score);
    // A dropped collection stays dropped.
    s.drop_collection("l2").unwrap();
    drop(s);
    let s = open(tmp.path());
    assert_eq!(
        s.collection_info("l2").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(s.list_collections().unwrap().len(), 1);
}

#[test]
fn indexed_data_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let tuning = built_when_asked(10);
    let mut rng = Rng(7);
    let recs: Vec<VectorRecord> = (0..600)
        .map(|i| VectorRecord::new(format!("r{i}"), rng.vector(16)).with_payload(json!({"i": i})))
        .collect();
    {
        let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
        s.create_collection("c", 16, Distance::Cosine).unwrap();
        s.upsert("c", &recs).unwrap();
        assert_eq!(s.index_state("c").unwrap().indexed_vectors, 0);
        assert!(s.build_index("c").unwrap(), "600 x 16 is over 10 KiB");
        // Both vectors of each point count: the searched one and `raw`.
        assert_eq!(s.index_state("c").unwrap().indexed_vectors, 1200);
        assert!(!s.build_index("c").unwrap(), "nothing new to index");
        // Writes after the build.
        s.upsert("c", &recs[..10]).unwrap();
        s.delete("c", &["r599".into()]).unwrap();
    }
    let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
    assert_eq!(s.count("c", None).unwrap(), 599);
    let got = s.get("c", &["r5".into(), "r599".into()]).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].vector, recs[5].vector);
    let hits = s
        .search("c", &SearchRequest::new(recs[42].vector.clone(), 1))
        .unwrap();
    assert_eq!(hits[0].id, "r42");
}

#[test]
fn a_second_open_of_a_folder_shares_the_shard() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path());
    a.create_collection("c", 2, Distance::Dot).unwrap();
    let b = open(tmp.path());
    a.upsert("c", &[VectorRecord::new("x", vec![1.0, 0.0])])
        .unwrap();
    assert_eq!(b.count("c", None).unwrap(), 1);
    // Dropped through one store, gone for the other; recreated, seen anew.
    b.drop_collection("c").unwrap();
    assert_eq!(a.count("c", None).unwrap_err().kind(), ErrorKind::NotFound);
    a.create_collection("c", 3, Distance::Euclidean).unwrap();
    assert_eq!(b.collection_info("c").unwrap().dimension, 3);
    // Opened from outside the registry (as another process would), the
    // folder is locked.
    let e = qdrant_edge::EdgeShard::load(&tmp.path().canonicalize().unwrap().join("c"), None)
        .expect_err("the WAL is locked");
    let e = crate::shard::open_error("c", tmp.path(), e);
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(e.message().contains("another process"), "{e}");
}

#[test]
fn default_collection_and_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |dimension, distance| {
        Some(DefaultCollection {
            name: "mem".into(),
            dimension,
            distance,
        })
    };
    let s = QdrantEdgeVector::open(tmp.path(), Tuning::default(), d(4, Distance::Dot)).unwrap();
    assert_eq!(s.collection_info("mem").unwrap().distance, Distance::Dot);
    drop(s);
    assert!(QdrantEdgeVector::open(tmp.path(), Tuning::default(), d(4, Distance::Dot)).is_ok());
    let e = QdrantEdgeVector::open(tmp.path(), Tuning::default(), d(5, Distance::Dot))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("4 dims"), "{e}");
}

#[test]
fn raw_vectors_round_trip_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let mut rng = Rng(99);
    for (name, distance) in [
        ("cos", Distance::Cosine),
        ("dot", Distance::Dot),
        ("l2", Distance::Euclidean),
    ] {
        s.create_collection(name, 7, distance).unwrap();
        let recs: Vec<VectorRecord> = (0..50)
            .map(|i| {
                let scale = 10f32.powi(i % 7 - 3);
                let v = rng.vector(7).into_iter().map(|x| x * scale).collect();
                VectorRecord::new(format!("{i}"), v)
            })
            .collect();
        s.upsert(name, &recs).unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = s.scroll(name, cursor.as_deref(), 7).unwrap();
            seen.extend(page.records);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen.len(), 50);
        for r in &recs {
            let got = seen.iter().find(|x| x.id == r.id).unwrap();
            assert_eq!(got.vector, r.vector, "{name}: bit-exact");
        }
    }
    let e = s.scroll("cos", Some("not-a-cursor"), 5).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
}

fn normalised(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

/// A cosine vector Qdrant stores unchanged (length 1) is stored once; one
/// it normalises keeps its `raw` copy; both come back bit for bit, also
/// after one replaces the other under the same id and after a reopen.
#[test]
fn a_unit_cosine_vector_is_stored_once_and_comes_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let tuning = built_when_asked(1);
    let mut rng = Rng(21);
    for dim in [7usize, 384] {
        let name = format!("c{dim}");
        let unit: Vec<VectorRecord> = (0..40)
            .map(|i| VectorRecord::new(format!("u{i}"), normalised(rng.vector(dim))))
            .collect();
        let scaled: Vec<VectorRecord> = (0..10)
            .map(|i| VectorRecord::new(format!("s{i}"), rng.vector(dim)))
            .collect();
        assert!(unit
            .iter()
            .all(|r| crate::backend::kept_as_given(&r.vector).is_some()));
        assert!(!scaled
            .iter()
            .any(|r| crate::backend::kept_as_given(&r.vector).is_some()));
        // "a" is first scaled, then unit; "b" the other way round.
        let (a1, a2) = (rng.vector(dim), normalised(rng.vector(dim)));
        let (b1, b2) = (normalised(rng.vector(dim)), rng.vector(dim));
        let expect: Vec<VectorRecord> = unit
            .iter()
            .chain(&scaled)
            .cloned()
            .chain([
                VectorRecord::new("a", a2.clone()),
                VectorRecord::new("b", b2.clone()),
            ])
            .collect();
        {
            let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
            s.create_collection(&name, dim as u32, Distance::Cosine)
                .unwrap();
            s.upsert(&name, &unit).unwrap();
            s.upsert(&name, &scaled).unwrap();
            s.upsert(
                &name,
                &[VectorRecord::new("a", a1), VectorRecord::new("b", b1)],
            )
            .unwrap();
            s.upsert(
                &name,
                &[VectorRecord::new("a", a2), VectorRecord::new("b", b2)],
            )
            .unwrap();
            assert!(s.build_index(&name).unwrap());
            // The unit vectors and "a" once, the scaled ones and "b" twice.
            assert_eq!(
                s.index_state(&name).unwrap().indexed_vectors,
                41 + 2 * 11,
                "dimension {dim}"
            );
        }
        let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
        let ids: Vec<String> = expect.iter().map(|r| r.id.clone()).collect();
        let got = s.get(&name, &ids).unwrap();
        assert_eq!(got.len(), expect.len());
        for r in &expect {
            let g = got.iter().find(|g| g.id == r.id).unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&g.vector),
                bits(&r.vector),
                "{name}/{}: bit for bit",
                r.id
            );
        }
        let page = s.scroll(&name, None, 100).unwrap();
        assert_eq!(page.records.len(), expect.len());
        for g in &page.records {
            let r = expect.iter().find(|r| r.id == g.id).unwrap();
            assert_eq!(g.vector, r.vector, "{name}/{}: scroll", r.id);
        }
        let hits = s
            .search(&name, &SearchRequest::new(expect[3].vector.clone(), 1))
            .unwrap();
        assert_eq!(hits[0].id, expect[3].id);
    }
}

#[test]
fn reserved_keys_and_bad_input_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    s.create_collection("c", 2, Distance::Cosine).unwrap();
    let e = s
        .upsert(
            "c",
            &[
                VectorRecord::new("ok", vec![1.0, 0.0]),
                VectorRecord::new("bad", vec![1.0, 0.0]).with_payload(json!({"__bp_doc": 1})),
            ],
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(s.count("c", None).unwrap(), 0);
    assert_eq!(
        s.get("nope", &["a".into()]).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.count("../c", None).unwrap_err().kind(),
        ErrorKind::NotFound,
        "a name that cannot be a collection is never a path"
    );
}

/// Random payloads in the shapes filters meet: nested objects, arrays,
/// empty arrays, nulls, integers stored as floats, mixed types.
fn payload(rng: &mut Rng, i: usize) -> Json {
    let users = ["alice", "bob", "carol", "dave"];
    let mut m = serde_json::Map::new();
    m.insert("i".into(), json!(i));
    if rng.below(5) > 0 {
        m.insert("user".into(), json!(users[rng.below(4) as usize]));
    }
    match rng.below(6) {
        0 => {}
        1 => {
            m.insert("n".into(), Json::Null);
        }
        2 => {
            m.insert("n".into(), json!(rng.below(5) as f64));
        }
        3 => {
            m.insert("n".into(), json!(rng.below(5) as f64 + 0.5));
        }
        4 => {
            m.insert("n".into(), json!("3"));
        }
        _ => {
            m.insert("n".into(), json!(rng.below(5)));
        }
    }
    match rng.below(5) {
        0 => {}
        1 => {
            m.insert("tags".into(), json!([]));
        }
        2 => {
            m.insert("tags".into(), json!(["x"]));
        }
        3 => {
            m.insert("tags".into(), json!(["y", "z", 2]));
        }
        _ => {
            m.insert("tags".into(), json!([null]));
        }
    }
    if rng.below(2) == 0 {
        let lang = ["en", "pt"][rng.below(2) as usize];
        let meta = match rng.below(4) {
            0 => json!({"lang": lang, "level": rng.below(4)}),
            1 => json!({"lang": null, "list": []}),
            2 => json!({"level": 2.0, "deep": {"x": true}}),
            _ => json!([{"lang": lang}]),
        };
        m.insert("meta".into(), meta);
    }
    if rng.below(3) == 0 {
        m.insert("flag".into(), json!(rng.below(2) == 0));
    }
    Json::Object(m)
}

fn conditions() -> Vec<Json> {
    vec![
        json!({"key": "user", "match": "alice"}),
        json!({"key": "user", "in": ["bob", "carol"]}),
        json!({"key": "user", "in": []}),
        json!({"key": "n", "match": 3}),
        json!({"key": "n", "match": 2.5}),
        json!({"key": "n", "match": "3"}),
        json!({"key": "n", "in": [1, "3", 4.5]}),
        json!({"key": "n", "range": {"gt": 1, "lte": 3}}),
        json!({"key": "n", "exists": true}),
        json!({"key": "n", "exists": false}),
        json!({"key": "tags", "match": "y"}),
        json!({"key": "tags", "match": 2}),
        json!({"key": "tags", "exists": true}),
        json!({"key": "tags", "exists": false}),
        json!({"key": "meta.lang", "match": "en"}),
        json!({"key": "meta.lang", "exists": true}),
        json!({"key": "meta.lang", "exists": false}),
        json!({"key": "meta.list", "exists": true}),
        json!({"key": "meta.level", "match": 2}),
        json!({"key": "meta.deep.x", "match": true}),
        json!({"key": "flag", "match": false}),
        json!({"key": "flag", "in": [true, "true"]}),
        json!({"key": "i", "range": {"gte": 10, "lt": 40}}),
        json!({"key": "missing", "exists": false}),
        json!({"key": "__bp_id", "exists": true}),
        json!({"key": "i", "match": 9007199254740993_u64}),
    ]
}

fn random_filter(rng: &mut Rng, conds: &[Json], depth: u32) -> Json {
    let pick = |rng: &mut Rng| -> Vec<Json> {
        (0..rng.below(3))
            .map(|_| {
                if depth > 0 && rng.below(4) == 0 {
                    random_filter(rng, conds, depth - 1)
                } else {
                    conds[rng.below(conds.len() as u64) as usize].clone()
                }
            })
            .collect()
    };
    json!({"must": pick(rng), "should": pick(rng), "must_not": pick(rng)})
}

/// Qdrant's answer (native, or partly evaluated in the plugin) equals core's
/// evaluator on every filter, in collections of every payload shape.
#[test]
fn filters_agree_with_core() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path());
    let mut rng = Rng(2024);
    let payloads: Vec<Json> = (0..120).map(|i| payload(&mut rng, i)).collect();
    let mut dotted = payloads.clone();
    dotted[7]
        .as_object_mut()
        .unwrap()
        .insert("meta.lang".into(), json!("en"));
    let mut plain = payloads.clone();
    for p in &mut plain {
        // No empty arrays anywhere.
        let m = p.as_object_mut().unwrap();
        m.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
        if let Some(Json::Object(meta)) = m.get_mut("meta") {
            meta.remove("list");
        }
    }
    let conds = conditions();
    for (name, set) in [("plain", &plain), ("mixed", &payloads), ("dotted", &dotted)] {
        s.create_collection(name, 2, Distance::Cosine).unwrap();
        let recs: Vec<VectorRecord> = set
            .iter()
            .enumerate()
            .map(|(i, p)| {
                VectorRecord::new(format!("r{i}"), vec![1.0, i as f32 / 100.0])
                    .with_payload(p.clone())
            })
            .collect();
        s.upsert(name, &recs).unwrap();
        let mut filters: Vec<Json> = conds.iter().map(|c| json!({"must": [c]})).collect();
        filters.extend(conds.iter().map(|c| json!({"must_not": [c]})));
        filters.extend((0..150).map(|_| random_filter(&mut rng, &conds, 2)));
        for fj in &filters {
            let f = Filter::parse(fj).unwrap();
            let mut expected: Vec<String> = recs
                .iter()
                .filter(|r| f.matches(&r.payload))
                .map(|r| r.id.clone())
                .collect();
            expected.sort();
            assert_eq!(
                s.count(name, Some(&f)).unwrap() as usize,
                expected.len(),
                "{name}: count of {fj}"
            );
            let mut got: Vec<String> = s
                .search(
                    name,
                    &SearchRequest::new(vec![1.0, 0.0], 1000).with_filter(f.clone()),
                )
                .unwrap()
                .into_iter()
                .map(|h| h.id)
                .collect();
            got.sort();
            assert_eq!(got, expected, "{name}: search with {fj}");
        }
        // Top-k with a filter Qdrant only partly runs is still the true top k.
        let f = Filter::parse(&json!({"must": [{"key": "__bp_id", "exists": false}, {"key": "user", "match": "bob"}]})).unwrap();
        let want: Vec<String> = {
            let mut v: Vec<(usize, &VectorRecord)> = recs
                .iter()
                .enumerate()
                .filter(|(_, r)| f.matches(&r.payload))
                .collect();
            v.sort_by_key(|(i, _)| *i);
            v.into_iter().take(3).map(|(_, r)| r.id.clone()).collect()
        };
        let got: Vec<String> = s
            .search(name, &SearchRequest::new(vec![1.0, 0.0], 3).with_filter(f))
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(got, want, "{name}");
        // delete_where removes exactly what passes.
        let f = Filter::parse(&json!({"should": [{"key": "tags", "exists": false}, {"key": "meta.lang", "match": "pt"}]})).unwrap();
        let n = recs.iter().filter(|r| f.matches(&r.payload)).count() as u64;
        assert_eq!(s.delete_where(name, &f).unwrap(), n, "{name}");
        assert_eq!(s.count(name, None).unwrap(), recs.len() as u64 - n);
    }
}

/// A bulk load gets an HNSW index before it is searched, searches find
/// what an exact scan finds, and writes during a build are kept.
#[test]
fn bulk_load_is_indexed_and_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        indexing_threshold_kb: 50,
        index_after_idle: Duration::from_millis(50),
        ..Tuning::default()
    };
    let dim = 32;
    let mut rng = Rng(5);
    let data: Vec<Vec<f32>> = (0..3000).map(|_| rng.vector(dim)).collect();
    {
        let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
        s.create_collection("c", dim as u32, Distance::Cosine)
            .unwrap();
        for (b, chunk) in data.chunks(500).enumerate() {
            let recs: Vec<VectorRecord> = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| VectorRecord::new(format!("v{}", b * 500 + i), v.clone()))
                .collect();
            s.upsert("c", &recs).unwrap();
        }
        // Let the background builder start, and write while it may run.
        std::thread::sleep(Duration::from_millis(80));
        for i in 0..20 {
            s.upsert(
                "c",
                &[VectorRecord::new(format!("late{i}"), rng.vector(dim))],
            )
            .unwrap();
        }
        let mut found = 0;
        for (qi, q) in data.iter().enumerate().step_by(100) {
            let hits = s.search("c", &SearchRequest::new(q.clone(), 10)).unwrap();
            assert_eq!(hits.len(), 10);
            found += usize::from(hits.iter().any(|h| h.id == format!("v{qi}")));
        }
        assert!(found >= 28, "a stored vector finds itself: {found}/30");
        s.build_index("c").unwrap();
        assert_eq!(s.count("c", None).unwrap(), 3020);
    }
    let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
    assert_eq!(s.count("c", None).unwrap(), 3020);
    assert_eq!(s.get("c", &["late19".into()]).unwrap().len(), 1);
}

/// Sizes of the write-ahead-log files of collection `c` under `dir`.
fn wal_file_sizes(dir: &std::path::Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(dir.join("c").join("wal"))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            (name.starts_with("open-") || name.starts_with("closed-"))
                .then(|| e.metadata().unwrap().len())
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

#[test]
fn wal_segment_size_applies_to_new_and_existing_collections() {
    const MIB: u64 = 1024 * 1024;
    let tmp = tempfile::tempdir().unwrap();
    let tuning = |mb| Tuning {
        wal_segment_mb: mb,
        ..Tuning::default()
    };
    let mut rng = Rng(11);
    let recs: Vec<VectorRecord> = (0..500)
        .map(|i| VectorRecord::new(format!("r{i}"), rng.vector(64)))
        .collect();
    {
        let s = QdrantEdgeVector::open(tmp.path(), tuning(1), None).unwrap();
        s.create_collection("c", 64, Distance::Dot).unwrap();
        s.upsert("c", &recs).unwrap();
        let sizes = wal_file_sizes(tmp.path());
        assert!(!sizes.is_empty());
        assert!(sizes.iter().all(|&n| n == MIB), "{sizes:?}");
    }
    // Reopened with another size: the files made from now on have it,
    // and nothing written before is lost.
    let s = QdrantEdgeVector::open(tmp.path(), tuning(2), None).unwrap();
    for _ in 0..8 {
        s.upsert("c", &recs).unwrap();
    }
    let sizes = wal_file_sizes(tmp.path());
    assert!(sizes.contains(&(2 * MIB)), "{sizes:?}");
    assert!(sizes.iter().all(|&n| n == MIB || n == 2 * MIB), "{sizes:?}");
    assert_eq!(s.count("c", None).unwrap(), 500);
    let got = s.get("c", &["r7".into()]).unwrap();
    assert_eq!(got[0].vector, recs[7].vector);
}

/// The write-ahead log's closed files of collection `c` under `dir`.
fn closed_wal_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("c").join("wal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("closed-")
        })
        .count()
}

#[test]
fn the_wal_is_trimmed_and_updates_after_a_trim_still_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        wal_segment_mb: 1,
        ..Tuning::default()
    };
    let mut rng = Rng(21);
    let ids: Vec<String> = (0..200).map(|i| format!("r{i}")).collect();
    let mut last: Vec<VectorRecord> = Vec::new();
    {
        let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
        s.create_collection("c", 64, Distance::Cosine).unwrap();
        // The same 200 points written 150 times over: about 25 MiB of
        // log in 1 MiB files for a collection that never grows.
        let mut most = 0;
        for round in 0..150 {
            last = ids
                .iter()
                .map(|id| {
                    VectorRecord::new(id.clone(), rng.vector(64))
                        .with_payload(json!({ "round": round }))
                })
                .collect();
            s.upsert("c", &last).unwrap();
            most = most.max(closed_wal_files(tmp.path()));
        }
        assert!(
            most <= 2,
            "the log kept {most} closed files: it is trimmed once two are closed"
        );
        assert_eq!(s.count("c", None).unwrap(), 200);
        // Every point has its last write: the log's numbering (the points'
        // versions) went on across the trims, so no update was ignored.
        let got = s.get("c", &ids).unwrap();
        for (g, want) in got.iter().zip(&last) {
            assert_eq!(g.vector, want.vector, "{}", g.id);
            assert_eq!(g.payload, json!({ "round": 149 }), "{}", g.id);
        }
        let hits = s
            .search("c", &SearchRequest::new(last[5].vector.clone(), 1))
            .unwrap();
        assert_eq!(hits[0].id, "r5");
    }
    // Reopened: the data is there, and the trimmed log loads.
    let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
    assert!(closed_wal_files(tmp.path()) <= 1);
    let got = s.get("c", &ids).unwrap();
    assert_eq!(got.len(), 200);
    for (g, want) in got.iter().zip(&last) {
        assert_eq!(g.vector, want.vector, "{}", g.id);
    }
    let changed = VectorRecord::new("r0", rng.vector(64));
    s.upsert("c", std::slice::from_ref(&changed)).unwrap();
    assert_eq!(
        s.get("c", &["r0".into()]).unwrap()[0].vector,
        changed.vector
    );
}

#[test]
fn the_wal_is_trimmed_after_an_index_build() {
    let tmp = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        wal_segment_mb: 1,
        ..built_when_asked(10)
    };
    let mut rng = Rng(33);
    let mut recs: Vec<VectorRecord> = Vec::new();
    {
        let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
        s.create_collection("c", 64, Distance::Cosine).unwrap();
        // A bulk load of distinct points in 1 MiB log files, until two
        // files are closed (a load's log is smaller than its data, so no
        // write trims it).
        while closed_wal_files(tmp.path()) < 2 {
            assert!(recs.len() < 100_000, "the log closed no second file");
            let batch: Vec<VectorRecord> = (recs.len()..recs.len() + 500)
                .map(|i| {
                    VectorRecord::new(format!("r{i}"), rng.vector(64))
                        .with_payload(json!({ "i": i }))
                })
                .collect();
            s.upsert("c", &batch).unwrap();
            recs.extend(batch);
        }
        assert!(s.build_index("c").unwrap());
        let after = closed_wal_files(tmp.path());
        assert!(
            after <= 1,
            "{after} closed log files after the build: it flushed everything, so the rest goes"
        );
        let ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
        assert_eq!(s.count("c", None).unwrap(), recs.len() as u64);
        let got = s.get("c", &ids).unwrap();
        assert_eq!(got.len(), recs.len());
        for (g, want) in got.iter().zip(&recs) {
            assert_eq!(g.vector, want.vector, "{}", g.id);
            assert_eq!(g.payload, want.payload, "{}", g.id);
        }
        let hits = s
            .search("c", &SearchRequest::new(recs[77].vector.clone(), 1))
            .unwrap();
        assert_eq!(hits[0].id, "r77");
        // A write after the trim applies (the log's numbering went on).
        s.upsert("c", &[VectorRecord::new("r1", recs[2].vector.clone())])
            .unwrap();
    }
    let s = QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap();
    assert_eq!(s.count("c", None).unwrap(), recs.len() as u64);
    assert_eq!(
        s.get("c", &["r1".into()]).unwrap()[0].vector,
        recs[2].vector
    );
}

/// The ids of the `k` stored vectors nearest `q` by cosine, by a scan.
fn exact_cosine_top(data: &[Vec<f32>], q: &[f32], k: usize) -> Vec<String> {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut scored: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let dot: f32 = v.iter().zip(q).map(|(a, b)| a * b).sum();
            (dot / (norm(v) * norm(q)), i)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut ids: Vec<String> = scored[..k].iter().map(|(_, i)| format!("v{i}")).collect();
    ids.sort();
    ids
}

/// A search that finds a bulk load unindexed asks the background builder
/// for the index and answers at once by scanning what is not indexed: it
/// does not wait for the build (held back here by the test, which takes
/// the build's lock), and finds exactly what an exact scan finds. Health
/// says a build is due until the builder has built it; later searches use
/// the index.
#[test]
fn a_search_does_not_wait_for_an_index_build() {
    use std::sync::{mpsc, Arc};
    let tmp = tempfile::tempdir().unwrap();
    let tuning = built_when_asked(10);
    let dim = 16;
    let mut rng = Rng(9);
    let data: Vec<Vec<f32>> = (0..2000).map(|_| rng.vector(dim)).collect();
    let s = Arc::new(QdrantEdgeVector::open(tmp.path(), tuning, None).unwrap());
    s.create_collection("c", dim as u32, Distance::Cosine)
        .unwrap();
    let recs: Vec<VectorRecord> = data
        .iter()
        .enumerate()
        .map(|(i, v)| VectorRecord::new(format!("v{i}"), v.clone()))
        .collect();
    s.upsert("c", &recs).unwrap();
    assert_eq!(s.index_state("c").unwrap().indexed_vectors, 0);
    assert!(!s.health().unwrap().detail.contains("index build"));

    // An index build that cannot start: the test holds its lock.
    let c = s.collection("c").unwrap();
    let held = crate::collection::lock(&c.building);
    let (tx, rx) = mpsc::channel();
    let (s2, q) = (s.clone(), data[7].clone());
    std::thread::spawn(move || {
        let _ = tx.send(s2.search("c", &SearchRequest::new(q, 10)));
    });
    let hits = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the search answered while the index build could not run")
        .unwrap();
    let mut got: Vec<String> = hits.into_iter().map(|h| h.id).collect();
    got.sort();
    assert_eq!(got, exact_cosine_top(&data, &data[7], 10));
    assert_eq!(s.index_state("c").unwrap().indexed_vectors, 0);
    let detail = s.health().unwrap().detail;
    assert!(
        detail.contains("index build under way or due: c"),
        "{detail}"
    );

    // Let the build run: the background builder does it.
    drop(held);
    let since = std::time::Instant::now();
    while s.health().unwrap().detail.contains("index build") {
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "the background builder did not build the index"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Both vectors of each point count: the searched one and `raw`.
    assert_eq!(s.index_state("c").unwrap().indexed_vectors, 4000);
    let hits = s
        .search("c", &SearchRequest::new(data[42].clone(), 1))
        .unwrap();
    assert_eq!(hits[0].id, "v42");
}
