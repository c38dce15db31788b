//! The vector store's encryption layer: documents and the payload fields
//! named in config. Vectors stay as they are (the backend searches them).

use super::{probe, rekey_pages, Opened, Rekey, RekeyReport, Sealer};
use crate::layer::forward;
use backplane_core::{
    CollectionInfo, Distance, Filter, Health, Result, ScrollPage, SearchHit, SearchRequest, Vector,
    VectorRecord,
};
use std::sync::Arc;

/// Records per page while scanning.
const PAGE: usize = 256;

/// A vector store whose documents and named payload fields are encrypted.
pub(crate) struct CryptVector {
    inner: Arc<dyn Vector>,
    seal: Sealer,
}

impl CryptVector {
    /// Wrap `inner`; fails when what it holds is under a key not
    /// configured.
    pub(crate) fn new(inner: Arc<dyn Vector>, seal: Sealer) -> Result<CryptVector> {
        let v = CryptVector { inner, seal };
        probe(|| {
            for c in v.inner.list_collections()?.into_iter().take(4) {
                for r in v.inner.scroll(&c.name, None, 4)?.records {
                    v.record(&c.name, r)?;
                }
            }
            Ok(())
        })?;
        Ok(v)
    }

    fn parts(
        &self,
        collection: &str,
        id: &str,
        document: Option<String>,
        payload: serde_json::Value,
    ) -> Result<Opened<(Option<String>, serde_json::Value)>> {
        let what = || format!("record '{id}' of collection '{collection}'");
        let mut stale = false;
        let document = match document {
            Some(d) if self.seal.documents() => {
                let o = self.seal.open_text(d, &what)?;
                stale |= o.stale;
                Some(o.value)
            }
            d => d,
        };
        let payload = if self.seal.has_fields() {
            let o = self.seal.open_fields(payload, &what)?;
            stale |= o.stale;
            o.value
        } else {
            payload
        };
        Ok(Opened {
            value: (document, payload),
            stale,
        })
    }

    fn record(&self, collection: &str, r: VectorRecord) -> Result<Opened<VectorRecord>> {
        let o = self.parts(collection, &r.id, r.document, r.payload)?;
        let (document, payload) = o.value;
        Ok(Opened {
            value: VectorRecord {
                id: r.id,
                vector: r.vector,
                document,
                payload,
            },
            stale: o.stale,
        })
    }

    fn hits(&self, collection: &str, hits: Vec<SearchHit>) -> Result<Vec<SearchHit>> {
        hits.into_iter()
            .map(|h| {
                let (document, payload) =
                    self.parts(collection, &h.id, h.document, h.payload)?.value;
                Ok(SearchHit {
                    document,
                    payload,
                    ..h
                })
            })
            .collect()
    }

    fn sealed(&self, r: &VectorRecord) -> VectorRecord {
        VectorRecord {
            id: r.id.clone(),
            vector: r.vector.clone(),
            document: match &r.document {
                Some(d) if self.seal.documents() => Some(self.seal.seal_text(d)),
                d => d.clone(),
            },
            payload: self.seal.seal_fields(&r.payload),
        }
    }

    fn check(&self, filter: Option<&Filter>) -> Result<()> {
        filter.map_or(Ok(()), |f| self.seal.check_filter(f))
    }
}

impl Rekey for CryptVector {
    fn rekey(&self, progress: &mut dyn FnMut(u64)) -> Result<RekeyReport> {
        let mut report = RekeyReport::default();
        for c in self.inner.list_collections()? {
            rekey_pages(
                &mut report,
                progress,
                |cursor| {
                    let p = self.inner.scroll(&c.name, cursor, PAGE)?;
                    Ok((p.records, p.next_cursor))
                },
                |r| self.record(&c.name, r),
                |r| self.sealed(&r),
                |stale| self.inner.upsert(&c.name, stale),
            )?;
        }
        Ok(report)
    }
}

impl Vector for CryptVector {
    forward! {
        fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> ();
        fn drop_collection(&self, name: &str) -> ();
        fn list_collections(&self) -> Vec<CollectionInfo>;
        fn collection_info(&self, name: &str) -> CollectionInfo;
        fn delete(&self, collection: &str, ids: &[String]) -> u64;
        fn health(&self) -> Health;
    }
    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        let sealed: Vec<VectorRecord> = records.iter().map(|r| self.sealed(r)).collect();
        self.inner.upsert(collection, &sealed)
    }
    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        self.inner
            .get(collection, ids)?
            .into_iter()
            .map(|r| Ok(self.record(collection, r)?.value))
            .collect()
    }
    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        self.check(Some(filter))?;
        self.inner.delete_where(collection, filter)
    }
    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        self.check(filter)?;
        self.inner.count(collection, filter)
    }
    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        self.check(request.filter.as_ref())?;
        let hits = self.inner.search(collection, request)?;
        self.hits(collection, hits)
    }
    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        for r in requests {
            self.check(r.filter.as_ref())?;
        }
        self.inner
            .search_batch(collection, requests)?
            .into_iter()
            .map(|h| self.hits(collection, h))
            .collect()
    }
    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        let page = self.inner.scroll(collection, cursor, limit)?;
        Ok(ScrollPage {
            records: page
                .records
                .into_iter()
                .map(|r| Ok(self.record(collection, r)?.value))
                .collect::<Result<_>>()?,
            next_cursor: page.next_cursor,
        })
    }
}
