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

/// The kind of a scalar, for `$in`'s one-type rule (Chroma takes a
/// list's type from its first element, so integers and floats differ).
fn kind(s: &Scalar) -> u8 {
    match s {
        Scalar::Str(_) => 0,
        Scalar::Bool(_) => 1,
        Scalar::Int(_) => 2,
        Scalar::Float(_) => 3,
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
            // Chroma 1.5 compares a fractional bound with an integer value
            // after cutting the bound to a whole number (chroma#7491), so
            // `n < 2.5` would miss `n = 2`. Bounds are widened to whole
            // numbers (lower bounds down, upper bounds up) and made
            // inclusive: still a superset, whatever the stored type.
            let lower = [range.gt, range.gte].into_iter().flatten().map(f64::floor);
            let upper = [range.lt, range.lte].into_iter().flatten().map(f64::ceil);
            let whole = |b: f64| b.is_finite() && b.abs() < 9.0e15;
            let clauses = lower
                .filter(|b| whole(*b))
                .map(|b| json!({ key.as_str(): { "$gte": b as i64 } }))
                .chain(
                    upper
                        .filter(|b| whole(*b))
                        .map(|b| json!({ key.as_str(): { "$lte": b as i64 } })),
                )
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
                {"$and": [{"n": {"$gte": 1}}, {"n": {"$lte": 5}}]},
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
        let mixed_numbers =
            Filter::parse_str(r#"{"must": [{"key": "x", "in": [1, 2.5]}]}"#).unwrap();
        assert_eq!(superset(&mixed_numbers), None);
        // Fractional bounds widen to whole numbers.
        let frac =
            Filter::parse_str(r#"{"must": [{"key": "n", "range": {"gt": -2.5, "lt": 2.5}}]}"#)
                .unwrap();
        assert_eq!(
            superset(&frac).unwrap()["$or"][0],
            json!({"$and": [{"n": {"$gte": -3}}, {"n": {"$lte": 3}}]})
        );
    }
}
