//! Reading a collection's shard: searches, scans for the points a filter
//! selects, and stored points back to records.
//!
//! Scores are higher-is-better: cosine and dot as Qdrant computes them;
//! euclidean is the negated distance (Qdrant reports the positive
//! distance). A filter Qdrant runs only in part is completed in the plugin
//! (see `backplane_qdrant_common::search`).

use crate::collection::Collection;
use crate::filter::{translate, Translation};
use crate::point::decoded;
use crate::shard::{engine, SEARCH_VECTOR};
use backplane_core::{Error, Filter, Result, SearchHit, SearchRequest, VectorRecord};
use backplane_qdrant_common::collection::{keeps_raw, RAW_VECTOR, SCAN_PAGE};
use backplane_qdrant_common::search::{scan_matching, search};
use qdrant_edge::{
    EdgeShard, NamedQuery, PointId, QueryEnum, Record, ScrollRequest, SearchParams,
    SearchRequest as QSearchRequest, VectorInternal, VectorStructInternal, WithPayloadInterface,
    WithVector,
};

/// Search `shard` of `c` for `req`, whose filter translated to
/// `translation`; `ef` is the store's HNSW search setting.
pub(crate) fn search_one(
    c: &Collection,
    shard: &EdgeShard,
    req: &SearchRequest,
    translation: Option<Translation>,
    ef: usize,
) -> Result<Vec<SearchHit>> {
    let run = |limit: usize, filter, exact| {
        shard
            .search(QSearchRequest {
                query: QueryEnum::Nearest(NamedQuery::default_dense(req.vector.clone())),
                filter,
                params: Some(SearchParams {
                    hnsw_ef: Some(ef.max(limit)),
                    exact,
                    ..SearchParams::default()
                }),
                limit,
                offset: 0,
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: Some(WithVector::Bool(false)),
                score_threshold: None,
            })
            .map_err(|e| engine("search", e))
    };
    search(
        req.k,
        req.filter.as_ref(),
        translation,
        c.distance,
        run,
        |p| Ok((p.score, decoded(p.payload.map(|p| p.0), &p.id)?)),
    )
}

/// The ids of the points passing `filter`, with a scan where Qdrant
/// cannot evaluate all of it.
pub(crate) fn matching(c: &Collection, shard: &EdgeShard, filter: &Filter) -> Result<Vec<PointId>> {
    let t = translate(filter, c.shape());
    let page = |offset| {
        shard
            .scroll(ScrollRequest {
                offset,
                limit: Some(SCAN_PAGE),
                filter: t.native.clone(),
                with_payload: Some(WithPayloadInterface::Bool(!t.exact)),
                with_vector: WithVector::Bool(false),
                order_by: None,
            })
            .map_err(|e| engine("scroll", e))
    };
    scan_matching(
        filter,
        t.exact,
        page,
        |r: &Record| Some(r.id),
        |r: Record| decoded(r.payload.map(|p| p.0), &r.id),
    )
}

/// A stored point as a record, with the vector as upserted.
pub(crate) fn record(c: &Collection, r: Record) -> Result<VectorRecord> {
    let d = decoded(r.payload.map(|p| p.0), &r.id)?;
    let vector = match r.vector {
        Some(VectorStructInternal::Single(v)) => Some(v),
        // A cosine point keeps `raw` only where Qdrant changed the vector
        // it searches (see `backend::kept_as_given`); elsewhere that one
        // is the vector as given.
        Some(VectorStructInternal::Named(mut m)) => match m.remove(RAW_VECTOR) {
            Some(VectorInternal::Dense(v)) if keeps_raw(c.distance) => Some(v),
            _ => match m.remove(SEARCH_VECTOR) {
                Some(VectorInternal::Dense(v)) => Some(v),
                _ => None,
            },
        },
        _ => None,
    }
    .ok_or_else(|| {
        Error::backend(format!(
            "record '{}' in collection '{}' has no stored vector",
            d.id, c.name
        ))
    })?;
    Ok(VectorRecord {
        id: d.id,
        vector,
        document: d.document,
        payload: d.payload,
    })
}

/// What a read asks for to get [`record`]'s vector: a cosine point's
/// `raw` copy where it has one, and the searched vector.
pub(crate) fn with_vector(c: &Collection) -> WithVector {
    if keeps_raw(c.distance) {
        WithVector::Selector(vec![SEARCH_VECTOR.to_string(), RAW_VECTOR.to_string()])
    } else {
        WithVector::Bool(true)
    }
}
