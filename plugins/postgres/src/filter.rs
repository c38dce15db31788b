//! The payload filter language translated to SQL over a `jsonb` column,
//! with exactly the semantics of core's evaluator
//! ([`Filter::matches`](backplane_core::Filter::matches)):
//!
//! - a key is looked up as a literal key first, then as a dotted path
//!   (`COALESCE(p -> 'a.b', p #> '{a,b}')`);
//! - `match` is jsonb containment of the scalar (`v @> '"alice"'`), which
//!   holds when `v` equals it (numbers by value) or `v` is an array with an
//!   element equal to it, and never for nested arrays;
//! - `in` is an `OR` of such containments;
//! - `range` compares `v::float8` (or, for an array, any numeric element)
//!   with the bounds as `float8`, as core compares `f64`s;
//! - `exists` is "present and not JSON null";
//! - every condition is wrapped in `COALESCE(…, false)`, so a missing key
//!   is false, and `must_not` is `NOT (… OR …)`.
//!
//! Values travel as statement parameters, never inside the SQL text. A key
//! with an all-digit path segment (`tags.0`) is left to core's evaluator
//! ([`translate`] returns `None`): `#>` would index into arrays where core
//! does not.

use backplane_core::{Condition, Filter, Range, Scalar};
use postgres::types::ToSql;

/// One statement parameter owned by a translated filter.
pub(crate) type Param = Box<dyn ToSql + Sync + Send>;

/// A filter as a SQL condition and the parameters it refers to.
pub(crate) struct SqlFilter {
    /// A boolean SQL expression.
    pub(crate) sql: String,
    /// Its parameters; the first is `$first_param` as given to [`translate`].
    pub(crate) params: Vec<Param>,
}

struct Builder<'a> {
    column: &'a str,
    first: usize,
    params: Vec<Param>,
}

impl Builder<'_> {
    fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.first + self.params.len() - 1)
    }

    fn value(&mut self, key: &str) -> Option<String> {
        let parts: Vec<&str> = key.split('.').collect();
        if parts
            .iter()
            .any(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
        {
            return None;
        }
        let k = self.param(Box::new(key.to_string()));
        if parts.len() == 1 {
            Some(format!("({} -> {k}::text)", self.column))
        } else {
            let path: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            let p = self.param(Box::new(path));
            Some(format!(
                "COALESCE({c} -> {k}::text, {c} #> {p}::text[])",
                c = self.column
            ))
        }
    }

    fn contains(&mut self, v: &str, s: &Scalar) -> String {
        let lit = self.param(Box::new(s.to_json()));
        format!("({v} @> {lit}::jsonb)")
    }

    fn range(&mut self, x: &str, r: &Range) -> String {
        let mut parts = Vec::new();
        for (op, b) in [(">", r.gt), (">=", r.gte), ("<", r.lt), ("<=", r.lte)] {
            if let Some(b) = b {
                let p = self.param(Box::new(b));
                parts.push(format!("({x})::float8 {op} {p}::float8"));
            }
        }
        parts.join(" AND ")
    }

    fn condition(&mut self, c: &Condition) -> Option<String> {
        Some(match c {
            Condition::Match { key, value } => {
                let v = self.value(key)?;
                format!("COALESCE({}, false)", self.contains(&v, value))
            }
            Condition::In { key, values } => {
                let v = self.value(key)?;
                if values.is_empty() {
                    return Some("false".into());
                }
                let any: Vec<String> = values.iter().map(|s| self.contains(&v, s)).collect();
                format!("COALESCE(({}), false)", any.join(" OR "))
            }
            Condition::Range { key, range } => {
                let v = self.value(key)?;
                let scalar = self.range(&v, range);
                let elem = self.range("e", range);
                format!(
                    "COALESCE(CASE jsonb_typeof({v}) WHEN 'number' THEN {scalar} \
                     WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({v}) e \
                     WHERE jsonb_typeof(e) = 'number' AND {elem}) ELSE false END, false)"
                )
            }
            Condition::Exists { key, exists } => {
                let v = self.value(key)?;
                let present = format!("COALESCE({v} IS NOT NULL AND {v} <> 'null'::jsonb, false)");
                if *exists {
                    present
                } else {
                    format!("NOT {present}")
                }
            }
            Condition::Nested(f) => format!("({})", self.filter(f)?),
        })
    }

    /// The conditions joined with `OR`.
    fn any(&mut self, conditions: &[Condition]) -> Option<String> {
        let each = conditions
            .iter()
            .map(|c| self.condition(c))
            .collect::<Option<Vec<_>>>()?;
        Some(each.join(" OR "))
    }

    fn filter(&mut self, f: &Filter) -> Option<String> {
        let mut parts = Vec::new();
        for c in &f.must {
            parts.push(self.condition(c)?);
        }
        if !f.should.is_empty() {
            parts.push(format!("({})", self.any(&f.should)?));
        }
        if !f.must_not.is_empty() {
            parts.push(format!("NOT ({})", self.any(&f.must_not)?));
        }
        Some(if parts.is_empty() {
            "true".to_string()
        } else {
            parts.join(" AND ")
        })
    }
}

/// `filter` as a condition on the `jsonb` expression `column`, its
/// parameters numbered from `$first_param`; `None` when part of it must be
/// evaluated by core's evaluator instead.
pub(crate) fn translate(filter: &Filter, column: &str, first_param: usize) -> Option<SqlFilter> {
    let mut b = Builder {
        column,
        first: first_param,
        params: Vec::new(),
    };
    let sql = b.filter(filter)?;
    Some(SqlFilter {
        sql,
        params: b.params,
    })
}

/// References to the parameters, for the driver's calls.
pub(crate) fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn translates_and_numbers_parameters() {
        let f = Filter::parse(&json!({
            "must": [{"key": "user", "match": "alice"}, {"key": "meta.lang", "match": "en"}],
            "should": [{"key": "n", "range": {"gte": 1}}],
            "must_not": [{"key": "gone", "exists": true}]
        }))
        .unwrap();
        let t = translate(&f, "payload", 3).unwrap();
        assert!(t.sql.contains("$3") && !t.sql.contains("$2"), "{}", t.sql);
        assert!(t.sql.contains("NOT ("), "{}", t.sql);
        assert_eq!(t.params.len(), 9);
        let digits = Filter::parse(&json!({"key": "tags.0", "match": "x"})).unwrap();
        assert!(translate(&digits, "payload", 1).is_none());
        assert_eq!(translate(&Filter::default(), "p", 1).unwrap().sql, "true");
    }
}
