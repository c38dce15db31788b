//! The faiss backend beyond the vector suite's default (flat) run: the
//! whole vector suite on an HNSW and on an IVF index; an IVF index trained
//! once enough records exist, still finding what a filter selects; index
//! files that do not match `records.db` refused with the repair, and
//! rebuilt once deleted; a folder opened twice refused; and the mistakes a
//! user can make in the section, one clear line each.

use backplane_behavior::{plugins_toml, run_suite_on, vector, Scratch};
use backplane_host::{Capability, Distance, ErrorKind, SearchRequest, Storage, VectorRecord};
use serde_json::json;

const LIB: &str = "backplane_plugin_faiss";

fn open(scratch: &Scratch, section: &str) -> backplane_host::Result<Storage> {
    Storage::open(plugins_toml(
        scratch,
        &[LIB],
        &format!("[vector.s]\nbackend = \"faiss\"\npath = \"data/f\"\n{section}"),
    ))
}

fn suite(extra: &str) {
    run_suite_on(
        Capability::Vector,
        &["faiss".to_string()],
        &vector::cases(),
        extra,
        |s| s.vector("s"),
    );
}

#[test]
fn vector_suite_on_hnsw() {
    suite("index = \"hnsw\"\nhnsw_m = 8");
}

/// Trained at 8 records: the suite's larger cases run on a trained index,
/// its small ones on the exact stage before training.
#[test]
fn vector_suite_on_ivf() {
    suite("index = \"ivf\"\nivf_lists = 2\nivf_probe = 1\nivf_train_at = 8");
}

/// A deterministic spread of vectors.
fn v(i: u64, d: usize) -> Vec<f32> {
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..d)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn records(n: u64, d: usize) -> Vec<VectorRecord> {
    (0..n)
        .map(|i| {
            VectorRecord::new(format!("r{i:04}"), v(i, d))
                .with_payload(json!({"group": i % 50, "i": i}))
        })
        .collect()
}

#[test]
fn ivf_trains_once_and_filters_are_never_dropped() {
    let scratch = Scratch::new();
    let storage = open(
        &scratch,
        "index = \"ivf\"\nivf_lists = 8\nivf_probe = 1\nivf_train_at = 400\ndimension = 16\n",
    )
    .unwrap();
    let s = storage.vector("s").unwrap();
    let s = s.blocking();
    s.upsert("s", &records(1000, 16)).unwrap();
    let health = s.health().unwrap();
    assert!(
        health.detail.contains("IVF8,Flat"),
        "trained after 400 records: {}",
        health.detail
    );
    // One record in fifty passes; with one list probed of eight, FAISS's
    // first candidates miss most of them, and the search still returns k.
    let filter =
        backplane_host::Filter::parse(&json!({"must": [{"key": "group", "match": 7}]})).unwrap();
    let hits = s
        .search("s", &SearchRequest::new(v(3, 16), 10).with_filter(filter))
        .unwrap();
    assert_eq!(hits.len(), 10, "{hits:?}");
    assert!(hits.iter().all(|h| h.payload["group"] == 7));
    // The same ten the exact answer gives: scores computed from the stored
    // vectors, best first.
    let exact = Storage::open(plugins_toml(
        &scratch,
        &["backplane_plugin_sqlite"],
        "[vector.e]\nbackend = \"sqlite\"\npath = \"data/e.db\"\ndimension = 16\n",
    ))
    .unwrap();
    let e = exact.vector("e").unwrap();
    e.blocking().upsert("e", &records(1000, 16)).unwrap();
    let want = e
        .blocking()
        .search(
            "e",
            &SearchRequest::new(v(3, 16), 10).with_filter(
                backplane_host::Filter::parse(&json!({"must": [{"key": "group", "match": 7}]}))
                    .unwrap(),
            ),
        )
        .unwrap();
    let ids = |h: &[backplane_host::SearchHit]| h.iter().map(|h| h.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&hits), ids(&want));
    // Deletes reach the index: a deleted record is never a hit.
    s.delete("s", &[hits[0].id.clone()]).unwrap();
    let again = s
        .search(
            "s",
            &SearchRequest::new(v(3, 16), 10).with_filter(
                backplane_host::Filter::parse(&json!({"must": [{"key": "group", "match": 7}]}))
                    .unwrap(),
            ),
        )
        .unwrap();
    assert!(again.iter().all(|h| h.id != hits[0].id));
    assert_eq!(again.len(), 10);
}

#[test]
fn an_index_file_that_does_not_match_is_refused_with_the_repair() {
    let scratch = Scratch::new();
    let section = "index = \"hnsw\"\nsave_every = 1\n";
    {
        let storage = open(&scratch, section).unwrap();
        let s = storage.vector("s").unwrap();
        let s = s.blocking();
        s.create_collection("a", 4, Distance::Cosine).unwrap();
        s.create_collection("b", 4, Distance::Cosine).unwrap();
        s.upsert("a", &records(20, 4)).unwrap();
        s.upsert("b", &records(5, 4)).unwrap();
    }
    let folder = scratch.path("data/f");
    // b's index file put in a's place: built for another collection.
    let a_file = folder.join("a.faiss");
    std::fs::copy(folder.join("b.faiss"), &a_file).unwrap();
    let err = open(&scratch, section)
        .and_then(|st| st.vector("s").map(|_| ()))
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("a.faiss"), "{msg}");
    assert!(msg.contains("does not match records.db"), "{msg}");
    assert!(
        msg.contains("delete") && msg.contains("rebuilt from records.db"),
        "{msg}"
    );
    // A file that is not an index at all.
    std::fs::write(&a_file, b"not an index").unwrap();
    let msg = open(&scratch, section)
        .and_then(|st| st.vector("s").map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("cannot be read") && msg.contains("delete"),
        "{msg}"
    );
    // The repair works: delete the file, and the index is rebuilt.
    std::fs::remove_file(&a_file).unwrap();
    let storage = open(&scratch, section).unwrap();
    let s = storage.vector("s").unwrap();
    let hits = s
        .blocking()
        .search("a", &SearchRequest::new(v(4, 4), 1))
        .unwrap();
    assert_eq!(hits[0].id, "r0004");
    assert!(a_file.exists(), "the rebuilt index is written again");
}

#[test]
fn an_index_newer_than_records_db_is_refused() {
    let scratch = Scratch::new();
    let section = "save_every = 1\n";
    let folder = scratch.path("data/f");
    {
        let storage = open(&scratch, section).unwrap();
        let s = storage.vector("s").unwrap();
        s.blocking()
            .create_collection("a", 4, Distance::Dot)
            .unwrap();
        s.blocking().upsert("a", &records(3, 4)).unwrap();
    }
    let old_db = std::fs::read(folder.join("records.db")).unwrap();
    {
        let storage = open(&scratch, section).unwrap();
        let s = storage.vector("s").unwrap();
        s.blocking().upsert("a", &records(30, 4)).unwrap();
    }
    std::fs::write(folder.join("records.db"), old_db).unwrap();
    let msg = open(&scratch, section)
        .and_then(|st| st.vector("s").map(|_| ()))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("records.db only up to") && msg.contains("delete"),
        "{msg}"
    );
}

#[test]
fn a_folder_is_opened_by_one_store_at_a_time() {
    let scratch = Scratch::new();
    let first = open(&scratch, "").unwrap();
    let _s = first.vector("s").unwrap();
    let err = open(&scratch, "")
        .and_then(|st| st.vector("s").map(|_| ()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("open already"), "{err}");
}

#[test]
fn section_mistakes_are_one_clear_line_each() {
    let cases = [
        ("index = \"annoy\"\n", "is not an index type"),
        ("hnsw_m = 16\n", "apply to index = \"hnsw\" only"),
        ("index = \"ivf\"\nivf_lists = 0\n", "ivf_lists = 0"),
        (
            "index = \"ivf\"\nivf_lists = 100\nivf_train_at = 10\n",
            "is below ivf_lists",
        ),
        ("save_every = 0\n", "save_every = 0"),
        ("colour = \"red\"\n", "colour"),
        ("distance = \"cosine\"\n", "without `dimension`"),
    ];
    for (section, want) in cases {
        let scratch = Scratch::new();
        let msg = open(&scratch, section)
            .and_then(|st| st.vector("s").map(|_| ()))
            .unwrap_err()
            .to_string();
        // The plugin's part is one line, naming the store.
        let line = msg.lines().find(|l| l.contains(want));
        assert!(
            line.is_some_and(|l| l.contains("[vector.s]")),
            "{section:?}: {msg}"
        );
    }
    // A relational store on faiss.
    let scratch = Scratch::new();
    let msg = Storage::open(plugins_toml(
        &scratch,
        &[LIB],
        "[relational.r]\nbackend = \"faiss\"\npath = \"data/x\"\n",
    ))
    .and_then(|st| st.relational("r").map(|_| ()))
    .unwrap_err()
    .to_string();
    assert!(msg.contains("relational"), "{msg}");
}
