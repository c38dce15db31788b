//! Search when Qdrant runs only part of the filter: over-fetch, check each
//! candidate with core's evaluator, widen until `k` pass.

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
    fn euclidean_scores_are_negated() {
        assert_eq!(score(Distance::Euclidean, 2.5), -2.5);
        assert_eq!(score(Distance::Cosine, 0.5), 0.5);
        assert_eq!(score(Distance::Dot, -1.0), -1.0);
    }
}
