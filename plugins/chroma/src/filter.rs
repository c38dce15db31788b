//! Backplane filters pushed down to Chroma's `where` clause.
//!
//! Chroma's language has `$eq`, `$in`, `$gt`/`$gte`/`$lt`/`$lte`, `$and`
//! and `$or` over flat metadata, but differs from Backplane's where a key
//! is missing (`$ne` and `$nin` hold there), has no `exists`, and has no
//! "any element of a list". So the clause sent is never the whole filter:
//! it selects a *superset* of the records the filter passes, and the
//! plugin evaluates the whole filter (core's evaluator) on what comes back.
//! A filter is never dropped, and pushing down only narrows the candidates.
//!
//! What is pushed down: `must` conditions `match`, `in` (one type of
//! value), `range`, and nested filters built of them; a `should` list whose
//! every condition is pushed down. `exists` and `must_not` are evaluated
//! in the plugin only. Records whose payload is not mirrored
//! ([`OPAQUE`]) pass every pushed-down clause.

use crate::record::{plain_key, OPAQUE};
use backplane_core::filter::{Condition, Scalar};
use backplane_core::Filter;
use serde_json::{json, Value as Json};

/// A `where` clause selecting a superset of the records `filter` passes,
/// or `None` when nothing of it can be pushed down.
pub(crate) fn superset(filter: &Filter) -> Option<Json> {
    let inner = narrowing(filter)?;
    Some(json!({"$or": [inner, {OPAQUE: {"$eq": true}}]}))
}

/// The pushed-down part of `filter` for mirrored payloads.
fn narrowing(filter: &Filter) -> Option<Json> {
    let mut clauses: Vec<Json> = filter.must.iter().filter_map(condition).collect();
    if !filter.should.is_empty() {
        let any: Option<Vec<Json>> = filter.should.iter().map(condition).collect();
        if let Some(any) = any {
            clauses.push(combine("$or", any)?);
        }
    }
    combine("$and", clauses)
}

/// `op` over `clauses`: none is `None`, one is itself.
fn combine(op: &str, mut clauses: Vec<Json>) -> Option<Json> {
    match clauses.len() {
        0 => None,
        1 => clauses.pop(),
        _ => Some(json!({ op: clauses })),
    }
}

/// A scalar as Chroma compares it (`None`: not a finite number).
fn value(s: &Scalar) -> Option<Json> {
    match s {
        Scalar::Float(f) if !f.is_finite() => None,
        s => Some(s.to_json()),
    }
}

/// The kind of a scalar, for `$in`'s one-type rule.
fn kind(s: &Scalar) -> u8 {
    match s {
        Scalar::Str(_) => 0,
        Scalar::Bool(_) => 1,
        Scalar::Int(_) | Scalar::Float(_) => 2,
    }
}

/// One condition as a clause, if it can be pushed down.
fn condition(c: &Condition) -> Option<Json> {
    let key_ok = |k: &str| plain_key(k) && !k.split('.').any(str::is_empty);
    match c {
        Condition::Match { key, value: v } if key_ok(key) => {
            Some(json!({ key.as_str(): {"$eq": value(v)?} }))
        }
        Condition::In { key, values } if key_ok(key) && !values.is_empty() => {
            let k = kind(&values[0]);
            if values.iter().any(|v| kind(v) != k) {
                return None;
            }
            let values: Option<Vec<Json>> = values.iter().map(value).collect();
            Some(json!({ key.as_str(): {"$in": values?} }))
        }
        Condition::Range { key, range } if key_ok(key) => {
            let bounds = [
                ("$gt", range.gt),
                ("$gte", range.gte),
                ("$lt", range.lt),
                ("$lte", range.lte),
            ];
            let clauses = bounds
                .iter()
                .filter_map(|(op, b)| b.filter(|b| b.is_finite()).map(|b| (op, b)))
                .map(|(op, b)| json!({ key.as_str(): { *op: b } }))
                .collect();
            combine("$and", clauses)
        }
        Condition::Nested(f) => narrowing(f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_down_what_narrows_and_nothing_else() {
        let f = Filter::parse_str(
            r#"{"must": [{"key": "user", "match": "al"}, {"key": "n", "range": {"gte": 1, "lt": 5}},
                         {"key": "gone", "exists": false}],
                "should": [{"key": "t", "in": ["a", "b"]}, {"key": "t", "match": "c"}],
                "must_not": [{"key": "user", "match": "bo"}]}"#,
        )
        .unwrap();
        let w = superset(&f).unwrap();
        assert_eq!(
            w,
            json!({"$or": [{"$and": [
                {"user": {"$eq": "al"}},
                {"$and": [{"n": {"$gte": 1.0}}, {"n": {"$lt": 5.0}}]},
                {"$or": [{"t": {"$in": ["a", "b"]}}, {"t": {"$eq": "c"}}]}
            ]}, {OPAQUE: {"$eq": true}}]})
        );
        let only_local = Filter::parse_str(
            r#"{"must_not": [{"key": "x", "match": 1}], "should": [{"key": "y", "exists": true}, {"key": "z", "match": 2}]}"#,
        )
        .unwrap();
        assert_eq!(superset(&only_local), None);
        let mixed_in = Filter::parse_str(r#"{"must": [{"key": "x", "in": ["a", 1]}]}"#).unwrap();
        assert_eq!(superset(&mixed_in), None);
    }
}
