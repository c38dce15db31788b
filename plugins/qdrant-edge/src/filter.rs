//! The common filter language translated to Qdrant's native filter.
//!
//! Every operator translates, with the same meaning as core's evaluator
//! ([`Filter::matches`]):
//!
//! | common | Qdrant |
//! |---|---|
//! | `must` / `should` / `must_not`, nested filters | the same clauses; a nested filter is a `Condition::Filter` |
//! | `match` string / bool | keyword / bool `match` |
//! | `match` number | `range` with `gte = lte = value` (so `2` matches a stored `2.0`, as in core) |
//! | `in` strings | `match any` |
//! | `in` mixed values | `should` of single matches; `in []` is a condition no point passes (`has_id []`) |
//! | `range` | float `range` |
//! | `exists: false` | `is_empty` (key absent or `null`), except where the stored value is `[]` (see below) |
//! | `exists: true` | not `is_empty`, or the stored value is `[]` |
//! | dotted key `a.b.c` | the JSON path `"a"."b"."c"` (each part quoted) |
//!
//! Two places where Qdrant's semantics differ from core's are bridged with
//! what [`crate::point`] records at upsert:
//!
//! - Qdrant's `is_empty` also holds for `[]`, but core's `exists` only
//!   asks for a present, non-null value. Upsert lists the paths holding
//!   `[]` in the reserved key `__bp_empty`, and `exists` consults it. A
//!   collection that never stored an empty array skips that part.
//! - Core reads a dotted key first as one literal top-level key (`"a.b"`),
//!   and only then as a path. Until a payload with a top-level key
//!   containing `.` is stored in a collection, both readings agree and the
//!   path translation is exact; after that, conditions on dotted keys are
//!   evaluated in the plugin.
//!
//! What stays untranslated is evaluated in the plugin with core's own
//! evaluator and is never dropped: conditions on dotted keys in such a
//! collection, keys whose parts contain `"` or `\`, keys in the reserved
//! `__bp_` namespace, and integers beyond ±2⁵³ in `match`/`in` (a float
//! range cannot tell them apart). Qdrant then gets the widest part of
//! the filter it can run exactly (the translatable conditions of `must`
//! and `must_not`, and `should` when all of it translates), which selects
//! a superset of the answer, and the plugin checks each candidate: search
//! over-fetches until it has `k` that pass, count and delete scan.

use crate::point::{PayloadShape, KEY_EMPTY, RESERVED_PREFIX};
use backplane_core::filter::{Condition, Filter, Scalar};
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    Condition as QCondition, FieldCondition, Filter as QFilter, HasIdCondition, IsEmptyCondition,
    JsonPath, Match, Range as QRange,
};

/// Integers of at most this magnitude are exact in an `f64`.
const MAX_EXACT_INT: u64 = 1 << 53;

/// A common filter as Qdrant runs it.
#[derive(Clone, Debug)]
pub struct Translation {
    /// What Qdrant evaluates; `None` selects every point.
    pub native: Option<QFilter>,
    /// Whether `native` is the whole filter. When false, `native` selects
    /// a superset and every candidate must pass [`Filter::matches`].
    pub exact: bool,
}

/// Translate `filter` for a collection whose payloads have `shape`.
pub fn translate(filter: &Filter, shape: PayloadShape) -> Translation {
    let t = Translator { shape };
    match t.exact(filter) {
        Some(f) => Translation {
            native: (!is_empty(&f)).then_some(f),
            exact: true,
        },
        None => Translation {
            native: t.relaxed(filter),
            exact: false,
        },
    }
}

fn is_empty(f: &QFilter) -> bool {
    f.must.is_none() && f.should.is_none() && f.must_not.is_none() && f.min_should.is_none()
}

fn non_empty(v: Vec<QCondition>) -> Option<Vec<QCondition>> {
    (!v.is_empty()).then_some(v)
}

fn not(c: QCondition) -> QCondition {
    QCondition::Filter(QFilter {
        must_not: Some(vec![c]),
        ..QFilter::new()
    })
}

/// A condition no point passes.
fn never() -> QCondition {
    QCondition::HasId(HasIdCondition::from_iter(std::iter::empty()))
}

fn field_match(path: JsonPath, m: Match) -> QCondition {
    QCondition::Field(FieldCondition::new_match(path, m))
}

fn field_range(
    path: JsonPath,
    gt: Option<f64>,
    gte: Option<f64>,
    lt: Option<f64>,
    lte: Option<f64>,
) -> QCondition {
    QCondition::Field(FieldCondition::new_range(
        path,
        QRange {
            lt: lt.map(OrderedFloat),
            gt: gt.map(OrderedFloat),
            gte: gte.map(OrderedFloat),
            lte: lte.map(OrderedFloat),
        },
    ))
}

struct Translator {
    shape: PayloadShape,
}

impl Translator {
    /// The JSON path Qdrant reads for a filter key, when it reads the same
    /// value core's `lookup` does.
    fn path(&self, key: &str) -> Option<JsonPath> {
        if key.starts_with(RESERVED_PREFIX) {
            return None;
        }
        if key.contains('.') && self.shape.dotted_keys {
            return None;
        }
        let mut text = String::with_capacity(key.len() + 8);
        for (i, part) in key.split('.').enumerate() {
            if part.contains(['"', '\\']) {
                return None;
            }
            if i > 0 {
                text.push('.');
            }
            text.push('"');
            text.push_str(part);
            text.push('"');
        }
        text.parse().ok()
    }

    fn scalar(&self, path: JsonPath, value: &Scalar) -> Option<QCondition> {
        Some(match value {
            Scalar::Str(s) => field_match(path, Match::from(s.clone())),
            Scalar::Bool(b) => field_match(path, Match::from(*b)),
            Scalar::Int(i) if i.unsigned_abs() < MAX_EXACT_INT => {
                let x = *i as f64;
                field_range(path, None, Some(x), None, Some(x))
            }
            Scalar::Int(_) => return None,
            Scalar::Float(x) => field_range(path, None, Some(*x), None, Some(*x)),
        })
    }

    fn condition(&self, c: &Condition) -> Option<QCondition> {
        match c {
            Condition::Match { key, value } => self.scalar(self.path(key)?, value),
            Condition::In { key, values } => {
                let path = self.path(key)?;
                if values.is_empty() {
                    return Some(never());
                }
                let strings: Option<Vec<String>> = values
                    .iter()
                    .map(|v| match v {
                        Scalar::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                if let Some(strings) = strings {
                    return Some(field_match(path, Match::from(strings)));
                }
                let any = values
                    .iter()
                    .map(|v| self.scalar(path.clone(), v))
                    .collect::<Option<Vec<_>>>()?;
                Some(QCondition::Filter(QFilter {
                    should: Some(any),
                    ..QFilter::new()
                }))
            }
            Condition::Range { key, range } => Some(field_range(
                self.path(key)?,
                range.gt,
                range.gte,
                range.lt,
                range.lte,
            )),
            Condition::Exists { key, exists } => {
                let empty = QCondition::IsEmpty(IsEmptyCondition::from(self.path(key)?));
                if !self.shape.empty_arrays {
                    return Some(if *exists { not(empty) } else { empty });
                }
                let listed = field_match(
                    KEY_EMPTY.parse().expect("a plain key is a JSON path"),
                    Match::from(key.clone()),
                );
                Some(QCondition::Filter(if *exists {
                    QFilter {
                        should: Some(vec![not(empty), listed]),
                        ..QFilter::new()
                    }
                } else {
                    QFilter {
                        must: Some(vec![empty]),
                        must_not: Some(vec![listed]),
                        ..QFilter::new()
                    }
                }))
            }
            Condition::Nested(f) => self.exact(f).map(QCondition::Filter),
        }
    }

    fn all(&self, cs: &[Condition]) -> Option<Vec<QCondition>> {
        cs.iter().map(|c| self.condition(c)).collect()
    }

    /// The whole filter, or `None` if any part does not translate.
    fn exact(&self, f: &Filter) -> Option<QFilter> {
        Some(QFilter {
            must: non_empty(self.all(&f.must)?),
            should: non_empty(self.all(&f.should)?),
            must_not: non_empty(self.all(&f.must_not)?),
            min_should: None,
        })
    }

    /// A filter every point passing `f` passes (`None`: no constraint).
    fn relaxed(&self, f: &Filter) -> Option<QFilter> {
        let must: Vec<QCondition> = f
            .must
            .iter()
            .filter_map(|c| match (self.condition(c), c) {
                (Some(q), _) => Some(q),
                (None, Condition::Nested(inner)) => self.relaxed(inner).map(QCondition::Filter),
                (None, _) => None,
            })
            .collect();
        // Leaving out a `must_not` condition only widens the selection.
        let must_not: Vec<QCondition> = f
            .must_not
            .iter()
            .filter_map(|c| self.condition(c))
            .collect();
        // `should` narrows only when every alternative is known.
        let should = self.all(&f.should).unwrap_or_default();
        let out = QFilter {
            must: non_empty(must),
            should: non_empty(should),
            must_not: non_empty(must_not),
            min_should: None,
        };
        (!is_empty(&out)).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tr(f: serde_json::Value, shape: PayloadShape) -> Translation {
        translate(&Filter::parse(&f).unwrap(), shape)
    }

    #[test]
    fn every_operator_translates() {
        for f in [
            json!({"must": [{"key": "user", "match": "alice"}]}),
            json!({"must": [{"key": "n", "match": 2}, {"key": "x", "match": 2.5}, {"key": "b", "match": true}]}),
            json!({"should": [{"key": "user", "in": ["a", "b"]}, {"key": "n", "in": [1, "one", false]}]}),
            json!({"must_not": [{"key": "n", "range": {"gt": 1, "lte": 4}}]}),
            json!({"must": [{"key": "gone", "exists": false}, {"key": "meta.lang", "exists": true}]}),
            json!({"must": [{"should": [{"key": "a", "in": []}]}, {"must": []}]}),
            json!({"must": [{"key": "we ird[].key-\u{e9}", "match": "x"}]}),
        ] {
            let t = tr(f.clone(), PayloadShape::default());
            assert!(t.exact && t.native.is_some(), "{f}");
            let t = tr(
                f.clone(),
                PayloadShape {
                    dotted_keys: false,
                    empty_arrays: true,
                },
            );
            assert!(t.exact, "{f}");
        }
        let t = tr(json!({}), PayloadShape::default());
        assert!(t.exact && t.native.is_none());
    }

    #[test]
    fn keys_become_quoted_paths() {
        let t = Translator {
            shape: PayloadShape::default(),
        };
        assert_eq!(t.path("meta.lang"), "meta.lang".parse().ok());
        assert_eq!(
            t.path("a b.c[]"),
            "\"a b\".\"c[]\"".parse().ok(),
            "special characters stay part of the key"
        );
        assert!(t.path("a\"b").is_none());
        assert!(t.path("__bp_id").is_none());
    }

    #[test]
    fn what_does_not_translate_is_narrowed_safely() {
        let dotted = PayloadShape {
            dotted_keys: true,
            empty_arrays: false,
        };
        // A dotted key in a collection with dotted top-level keys: the rest
        // of `must` still goes to Qdrant.
        let t = tr(
            json!({"must": [{"key": "meta.lang", "match": "en"}, {"key": "user", "match": "a"}]}),
            dotted,
        );
        assert!(!t.exact);
        let native = t.native.unwrap();
        assert_eq!(native.must.as_ref().map(Vec::len), Some(1));
        // In `should`, one unknown alternative drops the clause natively.
        let t = tr(
            json!({"should": [{"key": "a.b", "match": 1}, {"key": "c", "match": 1}]}),
            dotted,
        );
        assert!(!t.exact && t.native.is_none());
        // In `must_not`, the known conditions stay.
        let t = tr(
            json!({"must_not": [{"key": "a.b", "match": 1}, {"key": "c", "match": 1}]}),
            dotted,
        );
        assert!(!t.exact);
        assert_eq!(t.native.unwrap().must_not.map(|v| v.len()), Some(1));
        // Large integers and reserved keys.
        for f in [
            json!({"key": "n", "match": 9007199254740993_i64}),
            json!({"key": "n", "in": [1, -9007199254740993_i64]}),
            json!({"key": "__bp_id", "exists": true}),
        ] {
            let t = tr(f.clone(), PayloadShape::default());
            assert!(!t.exact && t.native.is_none(), "{f}");
        }
        // A nested filter with an unknown part keeps its known `must`.
        let t = tr(
            json!({"must": [{"must": [{"key": "__bp_x", "match": 1}, {"key": "u", "match": "a"}]}]}),
            PayloadShape::default(),
        );
        assert!(!t.exact && t.native.is_some());
    }
}
