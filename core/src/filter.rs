//! The one payload filter language every vector backend (and graph
//! `find_nodes`) accepts, its JSON syntax, and an evaluator that backends and
//! the host use where an operator is not native.
//!
//! ```json
//! {"must":     [{"key": "user", "match": "alice"},
//!               {"key": "score", "range": {"gte": 0.5, "lt": 1}}],
//!  "should":   [{"key": "tag", "in": ["work", "home"]}],
//!  "must_not": [{"key": "deleted", "exists": true}]}
//! ```
//!
//! `must`: every condition holds; `should`: at least one holds (when the list
//! is not empty); `must_not`: none holds. A condition is a `key` (a dotted
//! path into the payload) with exactly one of `match`, `in`, `range`,
//! `exists`, or is itself a nested filter. When the payload value is an
//! array, `match`, `in` and `range` hold if any element satisfies them.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// A scalar a filter compares against.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl Scalar {
    fn from_json(v: &Json, ctx: &str) -> Result<Scalar> {
        match v {
            Json::String(s) => Ok(Scalar::Str(s.clone())),
            Json::Bool(b) => Ok(Scalar::Bool(*b)),
            Json::Number(n) => Ok(n
                .as_i64()
                .map(Scalar::Int)
                .unwrap_or_else(|| Scalar::Float(n.as_f64().unwrap_or(f64::NAN)))),
            other => Err(Error::invalid(format!(
                "filter: {ctx} must be a string, number or bool, got {other}{}",
                if other.is_null() {
                    " (to test for a missing key use {\"exists\": false})"
                } else {
                    ""
                }
            ))),
        }
    }
    /// The scalar as JSON.
    pub fn to_json(&self) -> Json {
        match self {
            Scalar::Str(s) => Json::String(s.clone()),
            Scalar::Int(i) => Json::from(*i),
            Scalar::Float(f) => Json::from(*f),
            Scalar::Bool(b) => Json::Bool(*b),
        }
    }
    /// Whether the JSON value `v` equals this scalar (numbers compare by value).
    pub fn matches(&self, v: &Json) -> bool {
        match (self, v) {
            (Scalar::Str(a), Json::String(b)) => a == b,
            (Scalar::Bool(a), Json::Bool(b)) => a == b,
            (Scalar::Int(a), Json::Number(n)) => match n.as_i64() {
                Some(b) => *a == b,
                None => n.as_f64() == Some(*a as f64),
            },
            (Scalar::Float(a), Json::Number(n)) => n.as_f64() == Some(*a),
            _ => false,
        }
    }
}

/// Bounds of a `range` condition; at least one is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// Greater than.
    pub gt: Option<f64>,
    /// Greater than or equal.
    pub gte: Option<f64>,
    /// Less than.
    pub lt: Option<f64>,
    /// Less than or equal.
    pub lte: Option<f64>,
}

impl Range {
    /// Whether `x` lies within the bounds.
    pub fn contains(&self, x: f64) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

/// One condition of a filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    /// `{"key": k, "match": v}`: the value at `k` equals `v`.
    Match {
        /// Dotted payload path.
        key: String,
        /// The value to equal.
        value: Scalar,
    },
    /// `{"key": k, "in": [..]}`: the value at `k` equals one of the list.
    In {
        /// Dotted payload path.
        key: String,
        /// Accepted values.
        values: Vec<Scalar>,
    },
    /// `{"key": k, "range": {"gte": a, "lt": b}}`: a number within bounds.
    Range {
        /// Dotted payload path.
        key: String,
        /// The bounds.
        range: Range,
    },
    /// `{"key": k, "exists": true}`: `k` is present and not null
    /// (`false`: absent or null).
    Exists {
        /// Dotted payload path.
        key: String,
        /// Whether the key must exist.
        exists: bool,
    },
    /// A nested filter.
    Nested(Box<Filter>),
}

/// The operators of the filter language, as a capability descriptor lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FilterOp {
    /// `match`.
    Match,
    /// `in`.
    In,
    /// `range`.
    Range,
    /// `exists`.
    Exists,
    /// A nested filter inside a condition list.
    Nested,
}

impl FilterOp {
    /// Every operator.
    pub const ALL: [FilterOp; 5] = [
        FilterOp::Match,
        FilterOp::In,
        FilterOp::Range,
        FilterOp::Exists,
        FilterOp::Nested,
    ];
}

/// A parsed filter. Build one with [`Filter::parse`] from JSON, or with the
/// constructors.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    /// All must hold.
    pub must: Vec<Condition>,
    /// At least one must hold, if any are given.
    pub should: Vec<Condition>,
    /// None may hold.
    pub must_not: Vec<Condition>,
}

impl Condition {
    /// `match` condition.
    pub fn matches(key: impl Into<String>, value: impl Into<Json>) -> Result<Condition> {
        Ok(Condition::Match {
            key: key.into(),
            value: Scalar::from_json(&value.into(), "match value")?,
        })
    }
    /// `range` condition.
    pub fn range(key: impl Into<String>, range: Range) -> Condition {
        Condition::Range {
            key: key.into(),
            range,
        }
    }
    /// `exists` condition.
    pub fn exists(key: impl Into<String>, exists: bool) -> Condition {
        Condition::Exists {
            key: key.into(),
            exists,
        }
    }

    fn parse(v: &Json, path: &str) -> Result<Condition> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::invalid(format!("filter: {path} must be an object, got {v}")))?;
        if !obj.contains_key("key") {
            if obj
                .keys()
                .any(|k| matches!(k.as_str(), "must" | "should" | "must_not"))
            {
                return Ok(Condition::Nested(Box::new(Filter::parse_at(v, path)?)));
            }
            return Err(Error::invalid(format!(
                "filter: {path} needs a \"key\" and one of match/in/range/exists, or must/should/must_not for a nested filter"
            )));
        }
        let key = obj["key"]
            .as_str()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Error::invalid(format!("filter: {path}.key must be a non-empty string"))
            })?
            .to_string();
        let ops: Vec<&String> = obj.keys().filter(|k| k.as_str() != "key").collect();
        if ops.len() != 1 {
            return Err(Error::invalid(format!(
                "filter: {path} (key '{key}') must have exactly one of match, in, range, exists; found {:?}",
                ops
            )));
        }
        let op = ops[0].as_str();
        let arg = &obj[op];
        let ctx = format!("{path}.{op}");
        Ok(match op {
            "match" => Condition::Match {
                key,
                value: Scalar::from_json(arg, &ctx)?,
            },
            "in" => {
                let list = arg.as_array().ok_or_else(|| {
                    Error::invalid(format!("filter: {ctx} must be an array of values"))
                })?;
                Condition::In {
                    key,
                    values: list
                        .iter()
                        .map(|x| Scalar::from_json(x, &ctx))
                        .collect::<Result<_>>()?,
                }
            }
            "range" => {
                let r = arg.as_object().ok_or_else(|| {
                    Error::invalid(format!(
                        "filter: {ctx} must be an object with gt/gte/lt/lte"
                    ))
                })?;
                let mut range = Range::default();
                for (k, v) in r {
                    let n = v.as_f64().ok_or_else(|| {
                        Error::invalid(format!("filter: {ctx}.{k} must be a number, got {v}"))
                    })?;
                    match k.as_str() {
                        "gt" => range.gt = Some(n),
                        "gte" => range.gte = Some(n),
                        "lt" => range.lt = Some(n),
                        "lte" => range.lte = Some(n),
                        other => {
                            return Err(Error::invalid(format!(
                                "filter: {ctx} has unknown bound '{other}': use gt, gte, lt or lte"
                            )))
                        }
                    }
                }
                if r.is_empty() {
                    return Err(Error::invalid(format!(
                        "filter: {ctx} needs at least one of gt, gte, lt, lte"
                    )));
                }
                Condition::Range { key, range }
            }
            "exists" => Condition::Exists {
                key,
                exists: arg.as_bool().ok_or_else(|| {
                    Error::invalid(format!("filter: {ctx} must be true or false"))
                })?,
            },
            other => {
                return Err(Error::invalid(format!(
                    "filter: {path} has unknown operator '{other}': use match, in, range or exists"
                )))
            }
        })
    }

    fn to_json(&self) -> Json {
        let mut m = Map::new();
        match self {
            Condition::Match { key, value } => {
                m.insert("key".into(), key.clone().into());
                m.insert("match".into(), value.to_json());
            }
            Condition::In { key, values } => {
                m.insert("key".into(), key.clone().into());
                m.insert("in".into(), values.iter().map(Scalar::to_json).collect());
            }
            Condition::Range { key, range } => {
                m.insert("key".into(), key.clone().into());
                let mut r = Map::new();
                for (name, b) in [
                    ("gt", range.gt),
                    ("gte", range.gte),
                    ("lt", range.lt),
                    ("lte", range.lte),
                ] {
                    if let Some(b) = b {
                        r.insert(name.into(), b.into());
                    }
                }
                m.insert("range".into(), Json::Object(r));
            }
            Condition::Exists { key, exists } => {
                m.insert("key".into(), key.clone().into());
                m.insert("exists".into(), (*exists).into());
            }
            Condition::Nested(f) => return f.to_json(),
        }
        Json::Object(m)
    }

    /// Whether the condition holds for `payload`.
    pub fn eval(&self, payload: &Json) -> bool {
        fn any(v: Option<&Json>, f: impl Fn(&Json) -> bool) -> bool {
            match v {
                Some(Json::Array(items)) => items.iter().any(&f),
                Some(x) => f(x),
                None => false,
            }
        }
        match self {
            Condition::Match { key, value } => any(lookup(payload, key), |x| value.matches(x)),
            Condition::In { key, values } => any(lookup(payload, key), |x| {
                values.iter().any(|s| s.matches(x))
            }),
            Condition::Range { key, range } => any(lookup(payload, key), |x| {
                x.as_f64().is_some_and(|n| range.contains(n))
            }),
            Condition::Exists { key, exists } => {
                lookup(payload, key).is_some_and(|v| !v.is_null()) == *exists
            }
            Condition::Nested(f) => f.matches(payload),
        }
    }

    fn collect_ops(&self, out: &mut Vec<FilterOp>) {
        let op = match self {
            Condition::Match { .. } => FilterOp::Match,
            Condition::In { .. } => FilterOp::In,
            Condition::Range { .. } => FilterOp::Range,
            Condition::Exists { .. } => FilterOp::Exists,
            Condition::Nested(f) => {
                f.collect_ops(out);
                FilterOp::Nested
            }
        };
        if !out.contains(&op) {
            out.push(op);
        }
    }
}

/// The value at a dotted path (`"a.b.c"`) in a JSON object.
pub fn lookup<'a>(payload: &'a Json, path: &str) -> Option<&'a Json> {
    if let Some(v) = payload.get(path) {
        return Some(v);
    }
    let mut cur = payload;
    for part in path.split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

impl Filter {
    /// Parse the JSON syntax described in the module docs. Every mistake is
    /// an `InvalidInput` error that names where it is.
    pub fn parse(v: &Json) -> Result<Filter> {
        Self::parse_at(v, "filter")
    }

    /// Parse from JSON text.
    pub fn parse_str(text: &str) -> Result<Filter> {
        let v: Json = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("filter is not valid JSON: {e}")))?;
        Self::parse(&v)
    }

    fn parse_at(v: &Json, path: &str) -> Result<Filter> {
        let obj = v.as_object().ok_or_else(|| {
            Error::invalid(format!(
                "{path} must be an object with must/should/must_not, got {v}"
            ))
        })?;
        if obj.contains_key("key") {
            // A single condition is accepted as a filter of one `must`.
            return Ok(Filter {
                must: vec![Condition::parse(v, path)?],
                ..Filter::default()
            });
        }
        let mut f = Filter::default();
        for (k, list) in obj {
            let target = match k.as_str() {
                "must" => &mut f.must,
                "should" => &mut f.should,
                "must_not" => &mut f.must_not,
                other => {
                    return Err(Error::invalid(format!(
                        "{path} has unknown clause '{other}': use must, should or must_not"
                    )))
                }
            };
            let items = list.as_array().ok_or_else(|| {
                Error::invalid(format!("{path}.{k} must be an array of conditions"))
            })?;
            for (i, c) in items.iter().enumerate() {
                target.push(Condition::parse(c, &format!("{path}.{k}[{i}]"))?);
            }
        }
        Ok(f)
    }

    /// The filter in its JSON syntax.
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        for (name, list) in [
            ("must", &self.must),
            ("should", &self.should),
            ("must_not", &self.must_not),
        ] {
            if !list.is_empty() {
                m.insert(name.into(), list.iter().map(Condition::to_json).collect());
            }
        }
        Json::Object(m)
    }

    /// A filter whose `must` list is `conditions`.
    pub fn must(conditions: impl IntoIterator<Item = Condition>) -> Filter {
        Filter {
            must: conditions.into_iter().collect(),
            ..Filter::default()
        }
    }

    /// Whether `payload` passes the filter.
    pub fn matches(&self, payload: &Json) -> bool {
        self.must.iter().all(|c| c.eval(payload))
            && (self.should.is_empty() || self.should.iter().any(|c| c.eval(payload)))
            && !self.must_not.iter().any(|c| c.eval(payload))
    }

    /// The operators this filter uses.
    pub fn ops(&self) -> Vec<FilterOp> {
        let mut out = Vec::new();
        self.collect_ops(&mut out);
        out
    }

    fn collect_ops(&self, out: &mut Vec<FilterOp>) {
        for c in self.must.iter().chain(&self.should).chain(&self.must_not) {
            c.collect_ops(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_evaluates_every_operator() {
        let f = Filter::parse(&json!({
            "must": [{"key": "user", "match": "alice"}, {"key": "n", "range": {"gte": 2, "lt": 5}}],
            "should": [{"key": "tags", "in": ["a", "z"]}],
            "must_not": [{"key": "gone", "exists": true}]
        }))
        .unwrap();
        assert!(f.matches(&json!({"user": "alice", "n": 3, "tags": ["x", "a"]})));
        assert!(!f.matches(&json!({"user": "alice", "n": 5, "tags": ["a"]})));
        assert!(!f.matches(&json!({"user": "alice", "n": 3, "tags": ["b"]})));
        assert!(!f.matches(&json!({"user": "alice", "n": 3, "tags": "a", "gone": 1})));
        assert_eq!(Filter::parse(&f.to_json()).unwrap(), f);
    }

    #[test]
    fn nested_paths_and_numbers() {
        let f = Filter::parse(&json!({"key": "meta.level", "match": 2})).unwrap();
        assert!(f.matches(&json!({"meta": {"level": 2.0}})));
        assert!(!f.matches(&json!({"meta": {"level": 3}})));
    }

    #[test]
    fn errors_name_the_place() {
        let e = Filter::parse(&json!({"must": [{"key": "a", "near": 1}]})).unwrap_err();
        assert!(e.message().contains("filter.must[0]"), "{e}");
        assert!(e.message().contains("near"), "{e}");
        let e = Filter::parse(&json!({"muts": []})).unwrap_err();
        assert!(e.message().contains("muts"), "{e}");
        let e = Filter::parse(&json!({"key": "a", "match": null})).unwrap_err();
        assert!(e.message().contains("exists"), "{e}");
    }
}
