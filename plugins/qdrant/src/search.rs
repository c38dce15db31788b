//! Reading with a filter: searches (one request for a batch whose filters
//! all run on the server, else one per query, over-fetching where the
//! plugin completes the filter) and the scans `count` and `delete_where`
//! need.

use crate::backend::QdrantVector;
use crate::collections::{Known, SEARCH_VECTOR};
use crate::point::{decode, no_vectors, payload_selector};
use backplane_core::{Error, Filter, Result, SearchHit, SearchRequest};
use backplane_qdrant_common::collection::SCAN_PAGE;
use backplane_qdrant_common::filter::Translation;
use backplane_qdrant_common::search::{hits, scan_matching, search};
use qdrant_client::qdrant::{
    Filter as QFilter, PointId, Query, QueryBatchPoints, QueryPoints, RetrievedPoint, ScoredPoint,
    ScrollPoints, SearchParams,
};

impl QdrantVector {
    /// The query for the best `limit` points of collection `name` passing
    /// `filter` (`exact`: a full scan rather than the HNSW graph).
    fn query(
        &self,
        name: &str,
        req: &SearchRequest,
        filter: Option<QFilter>,
        limit: usize,
        exact: bool,
    ) -> QueryPoints {
        QueryPoints {
            collection_name: self.full(name),
            query: Some(Query::new_nearest(req.vector.clone())),
            using: Some(SEARCH_VECTOR.to_string()),
            filter,
            params: Some(SearchParams {
                hnsw_ef: Some(self.settings.hnsw_ef.max(limit as u64)),
                exact: Some(exact),
                ..SearchParams::default()
            }),
            limit: Some(limit as u64),
            with_payload: payload_selector(true),
            with_vectors: no_vectors(),
            ..QueryPoints::default()
        }
    }

    /// Search collection `name` for `req`, whose filter translated to `t`.
    pub(crate) fn search_one(
        &self,
        name: &str,
        k: &Known,
        req: &SearchRequest,
        t: Option<Translation<QFilter>>,
    ) -> Result<Vec<SearchHit>> {
        let run = |limit, native, exact| {
            self.client
                .call(|q| q.query(self.query(name, req, native, limit, exact)))
                .map(|r| r.result)
                .map_err(self.on(name, "search"))
        };
        search(req.k, req.filter.as_ref(), t, k.distance, run, scored)
    }

    /// Search collection `name` for every request, each with its
    /// translated filter: one request for the batch when every filter runs
    /// on the server, else one per query.
    pub(crate) fn search_all(
        &self,
        name: &str,
        k: &Known,
        requests: &[SearchRequest],
        translations: Vec<Option<Translation<QFilter>>>,
    ) -> Result<Vec<Vec<SearchHit>>> {
        let one_trip = requests.iter().all(|r| r.k > 0)
            && translations
                .iter()
                .all(|t| t.as_ref().is_none_or(|t| t.exact));
        if !one_trip || requests.is_empty() {
            return requests
                .iter()
                .zip(translations)
                .enumerate()
                .map(|(i, (r, t))| {
                    self.search_one(name, k, r, t)
                        .map_err(|e| e.context(format!("query {i}")))
                })
                .collect();
        }
        // Every filter runs on the server: one request for the batch.
        let queries = requests
            .iter()
            .zip(translations)
            .map(|(r, t)| self.query(name, r, t.and_then(|t| t.native), r.k, false))
            .collect();
        let results = self
            .client
            .call(|q| {
                q.query_batch(QueryBatchPoints {
                    collection_name: self.full(name),
                    query_points: queries,
                    ..QueryBatchPoints::default()
                })
            })
            .map_err(self.on(name, "search_batch"))?
            .result;
        if results.len() != requests.len() {
            return Err(Error::backend(format!(
                "the server answered {} of {} queries of the batch",
                results.len(),
                requests.len()
            )));
        }
        results
            .into_iter()
            .zip(requests)
            .map(|(b, r)| hits(b.result, r.k, None, k.distance, scored))
            .collect()
    }

    /// The ids of the points passing `filter`, scanning where Qdrant
    /// cannot evaluate all of it.
    pub(crate) fn matching(&self, name: &str, k: &Known, filter: &Filter) -> Result<Vec<PointId>> {
        let t = self.translate(name, k, filter)?;
        let page = |offset| {
            let page = self
                .client
                .call(|q| {
                    q.scroll(ScrollPoints {
                        collection_name: self.full(name),
                        filter: t.native.clone(),
                        offset,
                        limit: Some(SCAN_PAGE as u32),
                        with_payload: payload_selector(!t.exact),
                        with_vectors: no_vectors(),
                        ..ScrollPoints::default()
                    })
                })
                .map_err(self.on(name, "scanning"))?;
            Ok((page.result, page.next_page_offset))
        };
        scan_matching(
            filter,
            t.exact,
            page,
            |p: &RetrievedPoint| p.id.clone(),
            |p: RetrievedPoint| decode(p.payload, &p.id),
        )
    }
}

/// A scored point's score and decoded payload.
fn scored(p: ScoredPoint) -> Result<(f32, backplane_qdrant_common::point::Decoded)> {
    Ok((p.score, decode(p.payload, &p.id)?))
}
