//! Scores, and reading with a filter Qdrant may run only in part: a search
//! over-fetches, checks each candidate with core's evaluator and widens
//! until `k` pass; a scan checks every point it reads.

use crate::filter::Translation;
use crate::point::Decoded;
use backplane_core::{Distance, Filter, Result, SearchHit};

/// A Qdrant score as the common contract has it (higher is better):
/// cosine and dot as Qdrant computes them; euclidean negated, since Qdrant
/// reports the positive distance.
pub fn score(distance: Distance, qdrant: f32) -> f32 {
    match distance {
        Distance::Euclidean => -qdrant,
        Distance::Cosine | Distance::Dot => qdrant,
    }
}

/// The first `k` of `points` (best first) whose payload passes `post`,
/// as hits. `decode` gives a point's Qdrant score and decoded payload.
pub fn hits<P>(
    points: Vec<P>,
    k: usize,
    post: Option<&Filter>,
    distance: Distance,
    decode: impl Fn(P) -> Result<(f32, Decoded)>,
) -> Result<Vec<SearchHit>> {
    let mut out = Vec::with_capacity(k.min(points.len()));
    for p in points {
        let (s, d) = decode(p)?;
        if post.is_some_and(|f| !f.matches(&d.payload)) {
            continue;
        }
        out.push(SearchHit {
            id: d.id,
            score: score(distance, s),
            document: d.document,
            payload: d.payload,
        });
        if out.len() == k {
            break;
        }
    }
    Ok(out)
}

/// Run a search of `k` hits. `fetch(limit, exact)` asks Qdrant for `limit`
/// points (`exact`: a full scan rather than the HNSW graph) and returns
/// how many came back and the hits among them. When `post_filtered`
/// (candidates are checked by the plugin) it over-fetches and widens until
/// `k` pass or nothing more is there; a graph search that comes back short
/// (a restrictive filter can strand it) is repeated as an exact scan, so
/// fewer than `k` hits means fewer than `k` records pass.
pub fn until_k(
    k: usize,
    post_filtered: bool,
    mut fetch: impl FnMut(usize, bool) -> Result<(usize, Vec<SearchHit>)>,
) -> Result<Vec<SearchHit>> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let mut limit = if post_filtered {
        k.saturating_mul(4).max(64)
    } else {
        k
    };
    let mut exact = false;
    loop {
        let (returned, hits) = fetch(limit, exact)?;
        if hits.len() >= k {
            return Ok(hits);
        }
        if returned < limit {
            if exact {
                return Ok(hits);
            }
            exact = true;
        } else {
            limit = limit.saturating_mul(4);
        }
    }
}

/// Search for `k` hits with `filter` (`None`: none), which translated to
/// `translation`. `run(limit, native, exact)` asks Qdrant for the best
/// `limit` points passing `native` (`exact`: a full scan rather than the
/// HNSW graph); `decode` gives a point's Qdrant score and decoded payload.
/// Where the translation is not exact, candidates are checked against
/// `filter` and the search widens as [`until_k`] does.
pub fn search<F: Clone, P>(
    k: usize,
    filter: Option<&Filter>,
    translation: Option<Translation<F>>,
    distance: Distance,
    mut run: impl FnMut(usize, Option<F>, bool) -> Result<Vec<P>>,
    decode: impl Fn(P) -> Result<(f32, Decoded)>,
) -> Result<Vec<SearchHit>> {
    let (native, post) = match translation {
        None => (None, None),
        Some(t) if t.exact => (t.native, None),
        Some(t) => (t.native, filter),
    };
    until_k(k, post.is_some(), |limit, exact| {
        let points = run(limit, native.clone(), exact)?;
        let returned = points.len();
        Ok((returned, hits(points, k, post, distance, &decode)?))
    })
}

/// The ids of the points passing `filter`, read page by page:
/// `page(offset)` returns the points from `offset` on that pass the
/// native part of the filter (with their payloads unless `exact`) and the
/// next page's offset. Unless `exact` (Qdrant ran the whole filter), each
/// point's payload is decoded and checked against `filter`.
pub fn scan_matching<P, Id, Offset>(
    filter: &Filter,
    exact: bool,
    mut page: impl FnMut(Option<Offset>) -> Result<(Vec<P>, Option<Offset>)>,
    id: impl Fn(&P) -> Option<Id>,
    decode: impl Fn(P) -> Result<Decoded>,
) -> Result<Vec<Id>> {
    let mut out = Vec::new();
    let mut offset = None;
    loop {
        let (points, next) = page(offset)?;
        for p in points {
            let id = id(&p);
            if !exact && !filter.matches(&decode(p)?.payload) {
                continue;
            }
            out.extend(id);
        }
        match next {
            Some(n) => offset = Some(n),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hit(i: usize) -> SearchHit {
        SearchHit {
            id: i.to_string(),
            score: 0.0,
            document: None,
            payload: json!({}),
        }
    }

    #[test]
    fn widens_then_scans_exactly() {
        // 3 of 1000 points pass; the graph search finds only 2 of them.
        let mut calls = Vec::new();
        let hits = until_k(3, true, |limit, exact| {
            calls.push((limit, exact));
            let found = if exact { 3 } else { 2 };
            Ok((limit.min(1000), (0..found).map(hit).collect()))
        })
        .unwrap();
        assert_eq!(hits.len(), 3);
        assert_eq!(
            calls,
            [(64, false), (256, false), (1024, false), (1024, true)]
        );
        // Unfiltered: one call of exactly k.
        let mut calls = 0;
        let hits = until_k(10, false, |limit, _| {
            calls += 1;
            Ok((limit, (0..limit).map(hit).collect()))
        })
        .unwrap();
        assert_eq!((hits.len(), calls), (10, 1));
        assert!(until_k(0, true, |_, _| unreachable!()).unwrap().is_empty());
    }

    #[test]
    fn scans_check_what_qdrant_did_not() {
        let f = Filter::parse(&json!({"key": "keep", "match": true})).unwrap();
        let decoded = |i: &u32| Decoded {
            id: i.to_string(),
            document: None,
            payload: json!({"keep": i % 2 == 0}),
        };
        // Three pages of two; the offset is the next page's first point.
        let page = |offset: Option<u32>| {
            let from = offset.unwrap_or(0);
            Ok(((from..from + 2).collect(), (from < 4).then_some(from + 2)))
        };
        let ids = scan_matching(&f, false, page, |p| Some(*p), |p| Ok(decoded(&p))).unwrap();
        assert_eq!(ids, [0, 2, 4]);
        let ids = scan_matching(&f, true, page, |p| Some(*p), |_| unreachable!()).unwrap();
        assert_eq!(ids, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn euclidean_scores_are_negated() {
        assert_eq!(score(Distance::Euclidean, 2.5), -2.5);
        assert_eq!(score(Distance::Cosine, 0.5), 0.5);
        assert_eq!(score(Distance::Dot, -1.0), -1.0);
    }
}
