//! Binding parameters: each value bound in place without a copy
//! ([`Bind`]), positional `?`/`?N` and named `:name`/`@name`/`$name`
//! placeholders checked so that each gets exactly one value.

use crate::db::sql_error;
use backplane_core::kit::text::snippet;
use backplane_core::{Error, JsonRef, ParamsRef, Result, ValueRef};
use rusqlite::types::{ToSqlOutput, ValueRef as SqlRef};
use rusqlite::ToSql;

/// Binds a borrowed value without copying it: integers, reals, text and
/// blobs go straight to SQLite; `Bool` binds as 0/1, `Timestamp` as its
/// integer microseconds, `Json` as its text.
pub(crate) struct Bind<'a>(pub ValueRef<'a>);

impl ToSql for Bind<'_> {
    #[inline]
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            ValueRef::Null => ToSqlOutput::Borrowed(SqlRef::Null),
            ValueRef::Integer(i) | ValueRef::Timestamp(i) => {
                ToSqlOutput::Borrowed(SqlRef::Integer(i))
            }
            ValueRef::Real(f) => ToSqlOutput::Borrowed(SqlRef::Real(f)),
            ValueRef::Text(s) => ToSqlOutput::Borrowed(SqlRef::Text(s.as_bytes())),
            ValueRef::Blob(b) => ToSqlOutput::Borrowed(SqlRef::Blob(b)),
            ValueRef::Bool(b) => ToSqlOutput::Borrowed(SqlRef::Integer(b as i64)),
            ValueRef::Json(JsonRef::Text(t)) => ToSqlOutput::Borrowed(SqlRef::Text(t.as_bytes())),
            ValueRef::Json(JsonRef::Doc(d)) => {
                ToSqlOutput::Owned(rusqlite::types::Value::Text(d.to_string()))
            }
        })
    }
}

/// Bind `params` to `stmt`, checking that every placeholder gets exactly
/// one value.
pub(crate) fn bind_params(
    stmt: &mut rusqlite::Statement<'_>,
    params: ParamsRef<'_>,
    sql: &str,
) -> Result<()> {
    let expected = stmt.parameter_count();
    if params.is_empty() {
        if expected != 0 {
            return Err(Error::invalid(format!(
                "`{}` has {expected} parameter(s) but none were given: pass Params::Positional or Params::Named",
                snippet(sql)
            )));
        }
    } else if params.is_named() {
        bind_named(stmt, params, expected, sql)?;
    } else {
        if params.len() != expected {
            return Err(Error::invalid(format!(
                "`{}` has {expected} parameter(s) but {} value(s) were given: pass one value per placeholder",
                snippet(sql),
                params.len()
            )));
        }
        for i in 0..params.len() {
            stmt.raw_bind_parameter(i + 1, Bind(params.value(i)))
                .map_err(|e| sql_error(e, sql))?;
        }
    }
    Ok(())
}

fn bind_named(
    stmt: &mut rusqlite::Statement<'_>,
    params: ParamsRef<'_>,
    expected: usize,
    sql: &str,
) -> Result<()> {
    // Which placeholders got a value: a bit mask for the usual few, a
    // vector beyond 64.
    let mut mask: u64 = 0;
    let mut wide: Vec<bool> = if expected > 64 {
        vec![false; expected + 1]
    } else {
        Vec::new()
    };
    let mut prefixed = String::new();
    for i in 0..params.len() {
        let name = params.name(i).unwrap_or("");
        let value = params.value(i);
        let index = named_index(stmt, name, &mut prefixed)?.ok_or_else(|| {
            Error::invalid(format!(
                "`{}` has no parameter :{}; it has {}: check the name",
                snippet(sql),
                name.trim_start_matches([':', '@', '$']),
                placeholder_list(stmt)
            ))
        })?;
        let seen = if expected > 64 {
            std::mem::replace(&mut wide[index], true)
        } else {
            let bit = 1u64 << (index - 1);
            let seen = mask & bit != 0;
            mask |= bit;
            seen
        };
        if seen {
            return Err(Error::invalid(format!(
                "parameter :{} is given twice for `{}`: give each name once",
                name.trim_start_matches([':', '@', '$']),
                snippet(sql)
            )));
        }
        stmt.raw_bind_parameter(index, Bind(value))
            .map_err(|e| sql_error(e, sql))?;
    }
    if params.len() != expected {
        let missing: Vec<String> = (1..=expected)
            .filter(|&i| {
                if expected > 64 {
                    !wide[i]
                } else {
                    mask & (1u64 << (i - 1)) == 0
                }
            })
            .map(|i| {
                stmt.parameter_name(i)
                    .map_or_else(|| format!("?{i}"), str::to_string)
            })
            .collect();
        return Err(Error::invalid(format!(
            "`{}` has {expected} parameter(s) but {} value(s) were given; missing: {}",
            snippet(sql),
            params.len(),
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The index of `:name`, `@name` or `$name` (a name given with its prefix
/// is looked up as is).
#[inline]
fn named_index(
    stmt: &rusqlite::Statement<'_>,
    name: &str,
    buf: &mut String,
) -> Result<Option<usize>> {
    let lookup = |n: &str| {
        stmt.parameter_index(n)
            .map_err(|e| Error::invalid(format!("bad parameter name {n}: {e}")))
    };
    if name.starts_with([':', '@', '$']) {
        return lookup(name);
    }
    for prefix in [':', '@', '$'] {
        buf.clear();
        buf.push(prefix);
        buf.push_str(name);
        if let Some(i) = lookup(buf)? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

fn placeholder_list(stmt: &rusqlite::Statement<'_>) -> String {
    let n = stmt.parameter_count();
    if n == 0 {
        return "no parameters".to_string();
    }
    (1..=n)
        .map(|i| {
            stmt.parameter_name(i)
                .map_or_else(|| format!("?{i}"), str::to_string)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
