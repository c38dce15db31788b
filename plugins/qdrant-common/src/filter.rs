//! The common filter language translated to Qdrant's native filter, once
//! for both Qdrant backends: [`translate`] builds the filter through
//! [`Native`], which each backend implements for its own filter types
//! (qdrant-edge's in-process types, qdrant-client's gRPC messages).
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

/// Integers of at most this magnitude are exact in an `f64`.
const MAX_EXACT_INT: u64 = 1 << 53;

/// A backend's Qdrant filter types, and how to build each condition the
/// translation needs.
pub trait Native {
    /// A filter (`must` / `should` / `must_not`).
    type Filter: Clone;
    /// One condition of a filter.
    type Condition;
    /// A payload path.
    type Path: Clone;

    /// A path from Qdrant's JSON path syntax, each part quoted
    /// (`"meta"."lang"`); `None` if the backend cannot address it.
    fn path(text: &str) -> Option<Self::Path>;
    /// The value at `path` is the keyword (or holds it, for arrays).
    fn keyword(path: Self::Path, value: String) -> Self::Condition;
    /// The value at `path` is the boolean.
    fn boolean(path: Self::Path, value: bool) -> Self::Condition;
    /// The value at `path` is one of the keywords.
    fn any_keyword(path: Self::Path, values: Vec<String>) -> Self::Condition;
    /// The number at `path` is within the bounds.
    fn range(
        path: Self::Path,
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    ) -> Self::Condition;
    /// `path` is absent, `null` or `[]`.
    fn is_empty(path: Self::Path) -> Self::Condition;
    /// A condition no point passes.
    fn never() -> Self::Condition;
    /// A filter as a condition.
    fn nested(filter: Self::Filter) -> Self::Condition;
    /// A filter from its clauses; an empty clause is left out.
    fn filter(
        must: Vec<Self::Condition>,
        should: Vec<Self::Condition>,
        must_not: Vec<Self::Condition>,
    ) -> Self::Filter;
}

/// A common filter as Qdrant runs it.
#[derive(Clone, Debug)]
pub struct Translation<F> {
    /// What Qdrant evaluates; `None` selects every point.
    pub native: Option<F>,
    /// Whether `native` is the whole filter. When false, `native` selects
    /// a superset and every candidate must pass [`Filter::matches`].
    pub exact: bool,
}

/// Translate `filter` for a collection whose payloads have `shape`.
pub fn translate<N: Native>(filter: &Filter, shape: PayloadShape) -> Translation<N::Filter> {
    let t = Translator::<N> {
        shape,
        native: std::marker::PhantomData,
    };
    match t.exact(filter) {
        Some(clauses) => Translation {
            native: clauses.into_filter(),
            exact: true,
        },
        None => Translation {
            native: t.relaxed(filter).into_filter(),
            exact: false,
        },
    }
}

/// Whether translating `filter` would read `shape.dotted_keys`: some key
/// contains a `.`. A backend that learns the shape from elsewhere (a
/// server shared with other processes) refreshes it first then.
pub fn reads_dotted_keys(filter: &Filter) -> bool {
    fn cond(c: &Condition) -> bool {
        match c {
            Condition::Match { key, .. }
            | Condition::In { key, .. }
            | Condition::Range { key, .. }
            | Condition::Exists { key, .. } => key.contains('.'),
            Condition::Nested(f) => reads_dotted_keys(f),
        }
    }
    filter
        .must
        .iter()
        .chain(&filter.should)
        .chain(&filter.must_not)
        .any(cond)
}

/// A filter's clauses before they become a native filter.
struct Clauses<N: Native> {
    must: Vec<N::Condition>,
    should: Vec<N::Condition>,
    must_not: Vec<N::Condition>,
}

impl<N: Native> Clauses<N> {
    fn is_empty(&self) -> bool {
        self.must.is_empty() && self.should.is_empty() && self.must_not.is_empty()
    }

    /// `None` when no clause constrains anything.
    fn into_filter(self) -> Option<N::Filter> {
        (!self.is_empty()).then(|| N::filter(self.must, self.should, self.must_not))
    }
}

fn not<N: Native>(c: N::Condition) -> N::Condition {
    N::nested(N::filter(Vec::new(), Vec::new(), vec![c]))
}

struct Translator<N> {
    shape: PayloadShape,
    native: std::marker::PhantomData<N>,
}

impl<N: Native> Translator<N> {
    /// The JSON path Qdrant reads for a filter key, when it reads the same
    /// value core's `lookup` does.
    fn path(&self, key: &str) -> Option<N::Path> {
        N::path(&self.path_text(key)?)
    }

    fn path_text(&self, key: &str) -> Option<String> {
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
        Some(text)
    }

    fn scalar(&self, path: N::Path, value: &Scalar) -> Option<N::Condition> {
        Some(match value {
            Scalar::Str(s) => N::keyword(path, s.clone()),
            Scalar::Bool(b) => N::boolean(path, *b),
            Scalar::Int(i) if i.unsigned_abs() < MAX_EXACT_INT => {
                let x = *i as f64;
                N::range(path, None, Some(x), None, Some(x))
            }
            Scalar::Int(_) => return None,
            Scalar::Float(x) => N::range(path, None, Some(*x), None, Some(*x)),
        })
    }

    fn condition(&self, c: &Condition) -> Option<N::Condition> {
        match c {
            Condition::Match { key, value } => self.scalar(self.path(key)?, value),
            Condition::In { key, values } => {
                let path = self.path(key)?;
                if values.is_empty() {
                    return Some(N::never());
                }
                let strings: Option<Vec<String>> = values
                    .iter()
                    .map(|v| match v {
                        Scalar::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                if let Some(strings) = strings {
                    return Some(N::any_keyword(path, strings));
                }
                let any = values
                    .iter()
                    .map(|v| self.scalar(path.clone(), v))
                    .collect::<Option<Vec<_>>>()?;
                Some(N::nested(N::filter(Vec::new(), any, Vec::new())))
            }
            Condition::Range { key, range } => Some(N::range(
                self.path(key)?,
                range.gt,
                range.gte,
                range.lt,
                range.lte,
            )),
            Condition::Exists { key, exists } => {
                let empty = N::is_empty(self.path(key)?);
                if !self.shape.empty_arrays {
                    return Some(if *exists { not::<N>(empty) } else { empty });
                }
                let listed = || {
                    N::keyword(
                        N::path(&format!("\"{KEY_EMPTY}\"")).expect("a plain key is a path"),
                        key.clone(),
                    )
                };
                Some(N::nested(if *exists {
                    N::filter(Vec::new(), vec![not::<N>(empty), listed()], Vec::new())
                } else {
                    N::filter(vec![empty], Vec::new(), vec![listed()])
                }))
            }
            Condition::Nested(f) => self
                .exact(f)
                .map(|c| N::nested(N::filter(c.must, c.should, c.must_not))),
        }
    }

    fn all(&self, cs: &[Condition]) -> Option<Vec<N::Condition>> {
        cs.iter().map(|c| self.condition(c)).collect()
    }

    /// The whole filter, or `None` if any part does not translate.
    fn exact(&self, f: &Filter) -> Option<Clauses<N>> {
        Some(Clauses {
            must: self.all(&f.must)?,
            should: self.all(&f.should)?,
            must_not: self.all(&f.must_not)?,
        })
    }

    /// Clauses every point passing `f` passes (all empty: no constraint).
    fn relaxed(&self, f: &Filter) -> Clauses<N> {
        let must: Vec<N::Condition> = f
            .must
            .iter()
            .filter_map(|c| match (self.condition(c), c) {
                (Some(q), _) => Some(q),
                (None, Condition::Nested(inner)) => {
                    self.relaxed(inner).into_filter().map(N::nested)
                }
                (None, _) => None,
            })
            .collect();
        // Leaving out a `must_not` condition only widens the selection.
        let must_not = f
            .must_not
            .iter()
            .filter_map(|c| self.condition(c))
            .collect();
        // `should` narrows only when every alternative is known.
        let should = self.all(&f.should).unwrap_or_default();
        Clauses {
            must,
            should,
            must_not,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A native filter as plain data, to look at what was built.
    #[derive(Clone, Debug, PartialEq)]
    enum C {
        Keyword(String, String),
        Bool(String, bool),
        Any(String, Vec<String>),
        Range(String, [Option<f64>; 4]),
        Empty(String),
        Never,
        Nested(Box<F>),
    }

    #[derive(Clone, Debug, PartialEq)]
    struct F {
        must: Vec<C>,
        should: Vec<C>,
        must_not: Vec<C>,
    }

    struct Plain;

    impl Native for Plain {
        type Filter = F;
        type Condition = C;
        type Path = String;
        fn path(text: &str) -> Option<String> {
            Some(text.to_string())
        }
        fn keyword(path: String, value: String) -> C {
            C::Keyword(path, value)
        }
        fn boolean(path: String, value: bool) -> C {
            C::Bool(path, value)
        }
        fn any_keyword(path: String, values: Vec<String>) -> C {
            C::Any(path, values)
        }
        fn range(
            path: String,
            gt: Option<f64>,
            gte: Option<f64>,
            lt: Option<f64>,
            lte: Option<f64>,
        ) -> C {
            C::Range(path, [gt, gte, lt, lte])
        }
        fn is_empty(path: String) -> C {
            C::Empty(path)
        }
        fn never() -> C {
            C::Never
        }
        fn nested(filter: F) -> C {
            C::Nested(Box::new(filter))
        }
        fn filter(must: Vec<C>, should: Vec<C>, must_not: Vec<C>) -> F {
            F {
                must,
                should,
                must_not,
            }
        }
    }

    fn tr(f: serde_json::Value, shape: PayloadShape) -> Translation<F> {
        translate::<Plain>(&Filter::parse(&f).unwrap(), shape)
    }

    const DOTTED: PayloadShape = PayloadShape {
        dotted_keys: true,
        empty_arrays: false,
    };

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
    fn conditions_have_core_meaning() {
        let t = tr(
            json!({"must": [{"key": "n", "match": 2}, {"key": "u", "in": ["a", "b"]}],
                   "must_not": [{"key": "meta.lang", "exists": true}]}),
            PayloadShape::default(),
        );
        assert_eq!(
            t.native.unwrap(),
            F {
                must: vec![
                    C::Range("\"n\"".into(), [None, Some(2.0), None, Some(2.0)]),
                    C::Any("\"u\"".into(), vec!["a".into(), "b".into()]),
                ],
                should: vec![],
                must_not: vec![C::Nested(Box::new(F {
                    must: vec![],
                    should: vec![],
                    must_not: vec![C::Empty("\"meta\".\"lang\"".into())],
                }))],
            }
        );
        // With empty arrays stored, `exists` consults the list of them.
        let t = tr(
            json!({"key": "tags", "exists": false}),
            PayloadShape {
                dotted_keys: false,
                empty_arrays: true,
            },
        );
        assert_eq!(
            t.native.unwrap().must,
            vec![C::Nested(Box::new(F {
                must: vec![C::Empty("\"tags\"".into())],
                should: vec![],
                must_not: vec![C::Keyword("\"__bp_empty\"".into(), "tags".into())],
            }))]
        );
    }

    #[test]
    fn keys_become_quoted_paths() {
        let t = Translator::<Plain> {
            shape: PayloadShape::default(),
            native: std::marker::PhantomData,
        };
        assert_eq!(
            t.path_text("meta.lang").as_deref(),
            Some("\"meta\".\"lang\"")
        );
        assert_eq!(
            t.path_text("a b.c[]").as_deref(),
            Some("\"a b\".\"c[]\""),
            "special characters stay part of the key"
        );
        assert!(t.path_text("a\"b").is_none());
        assert!(t.path_text("__bp_id").is_none());
    }

    #[test]
    fn what_does_not_translate_is_narrowed_safely() {
        // A dotted key in a collection with dotted top-level keys: the rest
        // of `must` still goes to Qdrant.
        let t = tr(
            json!({"must": [{"key": "meta.lang", "match": "en"}, {"key": "user", "match": "a"}]}),
            DOTTED,
        );
        assert!(!t.exact);
        assert_eq!(
            t.native.unwrap().must,
            vec![C::Keyword("\"user\"".into(), "a".into())]
        );
        // In `should`, one unknown alternative drops the clause natively.
        let t = tr(
            json!({"should": [{"key": "a.b", "match": 1}, {"key": "c", "match": 1}]}),
            DOTTED,
        );
        assert!(!t.exact && t.native.is_none());
        // In `must_not`, the known conditions stay.
        let t = tr(
            json!({"must_not": [{"key": "a.b", "match": 1}, {"key": "c", "match": 1}]}),
            DOTTED,
        );
        assert!(!t.exact);
        assert_eq!(t.native.unwrap().must_not.len(), 1);
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

    #[test]
    fn dotted_keys_are_found_at_any_depth() {
        let f = |v| Filter::parse(&v).unwrap();
        assert!(!reads_dotted_keys(&f(
            json!({"must": [{"key": "a", "match": 1}]})
        )));
        assert!(reads_dotted_keys(&f(
            json!({"should": [{"key": "a.b", "exists": true}]})
        )));
        assert!(reads_dotted_keys(&f(
            json!({"must_not": [{"must": [{"key": "x.y", "range": {"gt": 1}}]}]})
        )));
    }
}
