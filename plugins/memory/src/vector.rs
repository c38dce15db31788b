//! The vector capability in memory ([`MemoryVector`]): collections by
//! name, each a contiguous matrix searched exactly (see `matrix`).

use crate::matrix::{Collection, Query};
use backplane_core::kit::page::{check_limit, page_after};
use backplane_core::vector::{validate_collection_name, validate_records, validate_vector};
use backplane_core::{
    CollectionInfo, Distance, Error, Filter, Health, Result, ScrollPage, SearchHit, SearchRequest,
    Vector, VectorRecord,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A vector store held in process memory.
#[derive(Default)]
pub struct MemoryVector {
    collections: RwLock<HashMap<String, Arc<RwLock<Collection>>>>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

use backplane_core::vector::unknown_collection as no_collection;

impl MemoryVector {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn collection(&self, name: &str) -> Result<Arc<RwLock<Collection>>> {
        read(&self.collections)
            .get(name)
            .cloned()
            .ok_or_else(|| no_collection(name))
    }
}

impl Vector for MemoryVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        validate_collection_name(name)?;
        if dimension == 0 {
            return Err(Error::invalid(format!(
                "collection '{name}': dimension is 0: give the dimension of the embeddings it will hold"
            )));
        }
        let mut all = write(&self.collections);
        if let Some(existing) = all.get(name) {
            let c = read(existing);
            return Err(backplane_core::vector::collection_exists(
                name,
                &backplane_core::vector::described(c.dimension, c.distance),
            ));
        }
        all.insert(
            name.to_string(),
            Arc::new(RwLock::new(Collection::new(dimension, distance))),
        );
        Ok(())
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        write(&self.collections)
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| no_collection(name))
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let all = read(&self.collections);
        let mut out: Vec<CollectionInfo> = all.iter().map(|(n, c)| read(c).info(n)).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let c = self.collection(name)?;
        let info = read(&c).info(name);
        Ok(info)
    }

    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        let c = self.collection(collection)?;
        let mut c = write(&c);
        // Validate everything first: a bad record means nothing is written.
        validate_records(records, c.dimension)?;
        c.put_all(records);
        Ok(())
    }

    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        let c = self.collection(collection)?;
        let c = read(&c);
        let mut seen = std::collections::HashSet::new();
        Ok(ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .filter_map(|id| c.index.get(id).map(|&slot| c.record(slot)))
            .collect())
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        let c = self.collection(collection)?;
        let mut c = write(&c);
        Ok(ids.iter().filter(|id| c.remove(id)).count() as u64)
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let c = self.collection(collection)?;
        let mut c = write(&c);
        Ok(c.remove_where(filter))
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        let c = self.collection(collection)?;
        let c = read(&c);
        Ok(c.count(filter))
    }

    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        Ok(self
            .search_batch(collection, std::slice::from_ref(request))?
            .pop()
            .unwrap_or_default())
    }

    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        let c = self.collection(collection)?;
        let c = read(&c);
        let batch = requests.len() > 1;
        let queries = requests
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let what = if batch {
                    format!("query {i}")
                } else {
                    "query".to_string()
                };
                validate_vector(&r.vector, c.dimension, &what)?;
                Ok(Query {
                    vector: &r.vector,
                    norm: backplane_core::vector::norm(&r.vector),
                    k: r.k.min(c.len()),
                    filter: r.filter.as_ref(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(c.search(&queries)
            .into_iter()
            .map(|found| c.hits(found))
            .collect())
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        check_limit(limit, "scroll", "record")?;
        let c = self.collection(collection)?;
        let c = read(&c);
        let page = page_after(&c.index, cursor, limit, |&slot| c.record(slot));
        Ok(ScrollPage {
            records: page.items,
            next_cursor: page.next_cursor,
        })
    }

    fn health(&self) -> Result<Health> {
        Ok(Health::ok("in-memory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;
    use serde_json::json;

    /// A small deterministic pseudo-random generator, to avoid a dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
        fn vector(&mut self, d: usize) -> Vec<f32> {
            (0..d).map(|_| self.next()).collect()
        }
    }

    fn ids(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    fn hit_ids(h: &[SearchHit]) -> Vec<&str> {
        h.iter().map(|h| h.id.as_str()).collect()
    }

    fn store(distance: Distance) -> MemoryVector {
        let v = MemoryVector::new();
        v.create_collection("c", 2, distance).unwrap();
        v.upsert(
            "c",
            &[
                VectorRecord::new("x", vec![1.0, 0.0]).with_payload(json!({"n": 1, "tag": "a"})),
                VectorRecord::new("y", vec![0.0, 1.0]).with_payload(json!({"n": 2, "tag": "b"})),
                VectorRecord::new("xy", vec![2.0, 2.0])
                    .with_payload(json!({"n": 3, "tag": "a"}))
                    .with_document("diagonal"),
            ],
        )
        .unwrap();
        v
    }

    #[test]
    fn collections() {
        let v = MemoryVector::new();
        v.create_collection("b", 3, Distance::Dot).unwrap();
        v.create_collection("a", 2, Distance::Cosine).unwrap();
        let e = v.create_collection("a", 2, Distance::Cosine).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        let e = v
            .create_collection("bad name", 2, Distance::Cosine)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = v.create_collection("z", 0, Distance::Cosine).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let names: Vec<_> = v
            .list_collections()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
        let info = v.collection_info("b").unwrap();
        assert_eq!(
            (info.dimension, info.distance, info.count),
            (3, Distance::Dot, 0)
        );
        v.drop_collection("b").unwrap();
        let e = v.collection_info("b").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.message().contains("'b'") && e.message().contains("create_collection"),
            "{e}"
        );
        assert_eq!(
            v.drop_collection("b").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let e = v.upsert("nope", &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn upsert_is_all_or_nothing() {
        let v = store(Distance::Cosine);
        for bad in [
            VectorRecord::new("z", vec![1.0]),
            VectorRecord::new("z", vec![f32::NAN, 1.0]),
            VectorRecord::new("z", vec![f32::INFINITY, 1.0]),
            VectorRecord::new("", vec![1.0, 1.0]),
            VectorRecord::new("z", vec![1.0, 1.0]).with_payload(json!([1])),
        ] {
            let batch = [VectorRecord::new("ok", vec![1.0, 1.0]), bad];
            assert_eq!(
                v.upsert("c", &batch).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
        assert_eq!(v.count("c", None).unwrap(), 3);
        assert!(v.get("c", &["ok".into()]).unwrap().is_empty());
    }

    #[test]
    fn get_replace_delete() {
        let v = store(Distance::Cosine);
        let got = v
            .get("c", &["xy".into(), "missing".into(), "x".into()])
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, "xy");
        assert_eq!(got[0].vector, vec![2.0, 2.0]);
        assert_eq!(got[0].document.as_deref(), Some("diagonal"));
        assert_eq!(got[1].payload, json!({"n": 1, "tag": "a"}));
        v.upsert("c", &[VectorRecord::new("x", vec![0.5, 0.5])])
            .unwrap();
        assert_eq!(v.count("c", None).unwrap(), 3);
        assert_eq!(v.get("c", &["x".into()]).unwrap()[0].vector, vec![0.5, 0.5]);
        // Deleting the first slot moves the last into it.
        assert_eq!(v.delete("c", &["x".into(), "missing".into()]).unwrap(), 1);
        assert_eq!(v.delete("c", &["x".into()]).unwrap(), 0);
        let got = v.get("c", &["y".into(), "xy".into()]).unwrap();
        assert_eq!(got[0].vector, vec![0.0, 1.0]);
        assert_eq!(got[1].vector, vec![2.0, 2.0]);
        let hits = v
            .search("c", &SearchRequest::new(vec![0.0, 1.0], 5))
            .unwrap();
        assert_eq!(hit_ids(&hits), ["y", "xy"]);
    }

    #[test]
    fn scores_per_distance() {
        let q = SearchRequest::new(vec![1.0, 0.0], 3);
        let v = store(Distance::Cosine);
        let h = v.search("c", &q).unwrap();
        assert_eq!(hit_ids(&h), ["x", "xy", "y"]);
        assert!((h[0].score - 1.0).abs() < 1e-6);
        assert!((h[1].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(h[1].document.as_deref(), Some("diagonal"));
        let v = store(Distance::Dot);
        let h = v.search("c", &q).unwrap();
        assert_eq!(hit_ids(&h), ["xy", "x", "y"]);
        assert_eq!(h[0].score, 2.0);
        let v = store(Distance::Euclidean);
        let h = v.search("c", &q).unwrap();
        assert_eq!(hit_ids(&h), ["x", "y", "xy"]);
        assert_eq!(h[0].score, 0.0);
        assert!((h[1].score + std::f32::consts::SQRT_2).abs() < 1e-6);
    }

    #[test]
    fn search_checks_and_filters() {
        let v = store(Distance::Cosine);
        let e = v
            .search("c", &SearchRequest::new(vec![1.0], 3))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = v
            .search("c", &SearchRequest::new(vec![f32::NAN, 0.0], 3))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(v
            .search("c", &SearchRequest::new(vec![1.0, 0.0], 0))
            .unwrap()
            .is_empty());
        let f = Filter::parse(&json!({"key": "tag", "match": "a"})).unwrap();
        let h = v
            .search(
                "c",
                &SearchRequest::new(vec![0.0, 1.0], 10).with_filter(f.clone()),
            )
            .unwrap();
        assert_eq!(hit_ids(&h), ["xy", "x"]);
        let h = v
            .search(
                "c",
                &SearchRequest::new(vec![0.0, 1.0], 1).with_filter(f.clone()),
            )
            .unwrap();
        assert_eq!(hit_ids(&h), ["xy"]);
        assert_eq!(v.count("c", Some(&f)).unwrap(), 2);
        assert_eq!(v.delete_where("c", &f).unwrap(), 2);
        assert_eq!(v.count("c", None).unwrap(), 1);
        assert_eq!(v.count("c", Some(&f)).unwrap(), 0);
    }

    #[test]
    fn scroll_pages_in_id_order() {
        let v = MemoryVector::new();
        v.create_collection("c", 1, Distance::Dot).unwrap();
        let recs: Vec<_> = (0..7)
            .map(|i| VectorRecord::new(format!("r{i}"), vec![i as f32]))
            .rev()
            .collect();
        v.upsert("c", &recs).unwrap();
        let mut cursor = None;
        let mut seen = Vec::new();
        loop {
            let page = v.scroll("c", cursor.as_deref(), 3).unwrap();
            assert!(page.records.len() <= 3);
            seen.extend(page.records.into_iter().map(|r| (r.id, r.vector)));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let expect: Vec<_> = (0..7).map(|i| (format!("r{i}"), vec![i as f32])).collect();
        assert_eq!(seen, expect);
        let page = v.scroll("c", None, 7).unwrap();
        assert_eq!(page.next_cursor, None);
        assert_eq!(
            v.scroll("c", None, 0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            v.scroll("zz", None, 1).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    /// The blocked, threaded scan agrees with a naive one, after deletes.
    #[test]
    fn matches_naive_search() {
        let (n, d) = (12_000, 384);
        let mut rng = Lcg(7);
        for distance in [Distance::Cosine, Distance::Dot, Distance::Euclidean] {
            let v = MemoryVector::new();
            v.create_collection("c", d as u32, distance).unwrap();
            let recs: Vec<_> = (0..n)
                .map(|i| {
                    VectorRecord::new(format!("{i:05}"), rng.vector(d))
                        .with_payload(json!({"even": i % 2 == 0}))
                })
                .collect();
            v.upsert("c", &recs).unwrap();
            let gone: Vec<String> = (0..n).step_by(7).map(|i| format!("{i:05}")).collect();
            v.delete("c", &gone).unwrap();
            let gone_set: std::collections::HashSet<&str> = ids(&gone).into_iter().collect();
            let live: Vec<&VectorRecord> = recs
                .iter()
                .filter(|r| !gone_set.contains(r.id.as_str()))
                .collect();
            let even = Filter::parse(&json!({"key": "even", "match": true})).unwrap();
            let requests: Vec<SearchRequest> = (0..3)
                .map(|i| {
                    let r = SearchRequest::new(rng.vector(d), 10);
                    if i == 1 {
                        r.with_filter(even.clone())
                    } else {
                        r
                    }
                })
                .collect();
            let batch = v.search_batch("c", &requests).unwrap();
            for (req, got) in requests.iter().zip(&batch) {
                let qn = backplane_core::vector::norm(&req.vector);
                let mut naive: Vec<(f32, &str)> = live
                    .iter()
                    .filter(|r| req.filter.as_ref().is_none_or(|f| f.matches(&r.payload)))
                    .map(|r| {
                        let rn = backplane_core::vector::norm(&r.vector);
                        (
                            distance.score(&r.vector, &req.vector, rn, qn),
                            r.id.as_str(),
                        )
                    })
                    .collect();
                naive.sort_by(|a, b| b.0.total_cmp(&a.0));
                let want: Vec<&str> = naive.iter().take(10).map(|x| x.1).collect();
                assert_eq!(hit_ids(got), want, "{distance:?}");
                let single = v.search("c", req).unwrap();
                assert_eq!(&single, got);
            }
        }
    }
}
