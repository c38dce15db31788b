//! DuckDB's types and Backplane's values.
//!
//! | DuckDB | read as | bound from |
//! |---|---|---|
//! | `TINYINT` … `BIGINT`, `UTINYINT` … `UINTEGER` | `Integer` | `Integer`, `Bool`, `Real` (DuckDB casts) |
//! | `UBIGINT`, `HUGEINT`, `UHUGEINT` | `Integer` when within i64, else `Text` (the exact digits) | `Integer`, `Text` |
//! | `FLOAT`, `DOUBLE` | `Real` | `Real`, `Integer` |
//! | `DECIMAL(w,s)` | `Integer` when integral and within i64; else `Real` when the double prints back as the same decimal at scale `s`; else `Text` (the exact digits) | `Integer`, `Real`, `Text` |
//! | `VARCHAR`, `ENUM`, `UUID` | `Text` | `Text` |
//! | `JSON` | `Json` | `Json`, `Text` (JSON text) |
//! | `BLOB` | `Blob` | `Blob` |
//! | `BOOLEAN` | `Bool` | `Bool` |
//! | `TIMESTAMP`, `TIMESTAMP WITH TIME ZONE` (and `_S`, `_MS`, `_NS`) | `Timestamp` (µs since 1970-01-01 UTC) | `Timestamp`, `Text` |
//! | `DATE` | `Text` (`YYYY-MM-DD`) | `Text` |
//! | `TIME` | `Text` (`HH:MM:SS[.f]`) | `Text` |
//! | `INTERVAL` | `Text` (`P1M2DT3.5S`, ISO 8601) | `Text` |
//! | `LIST`, `ARRAY`, `STRUCT`, `MAP`, `UNION` | `Json` (arrays, objects; a `MAP` as an object when its keys are text, else a list of `{"key", "value"}`) | `Text` in DuckDB's literal syntax, cast in SQL |
//!
//! A `TIMESTAMP` without time zone is taken as UTC.

use backplane_core::kit::time::{date_text, time_text};
use backplane_core::{JsonRef, Value, ValueRef};
use duckdb::types::{TimeUnit, ToSql, ToSqlOutput, Value as DValue, ValueRef as DRef};

/// A Backplane value bound to a DuckDB parameter.
pub(crate) struct Bind<'a>(pub(crate) ValueRef<'a>);

impl ToSql for Bind<'_> {
    fn to_sql(&self) -> duckdb::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            ValueRef::Null => ToSqlOutput::Owned(DValue::Null),
            ValueRef::Integer(i) => ToSqlOutput::Owned(DValue::BigInt(i)),
            ValueRef::Real(f) => ToSqlOutput::Owned(DValue::Double(f)),
            ValueRef::Text(s) => ToSqlOutput::Borrowed(DRef::Text(s.as_bytes())),
            ValueRef::Blob(b) => ToSqlOutput::Borrowed(DRef::Blob(b)),
            ValueRef::Bool(b) => ToSqlOutput::Owned(DValue::Boolean(b)),
            ValueRef::Json(JsonRef::Text(t)) => ToSqlOutput::Borrowed(DRef::Text(t.as_bytes())),
            ValueRef::Json(JsonRef::Doc(d)) => ToSqlOutput::Owned(DValue::Text(d.to_string())),
            ValueRef::Timestamp(us) => {
                ToSqlOutput::Owned(DValue::Timestamp(TimeUnit::Microsecond, us))
            }
        })
    }
}

/// Hand one DuckDB value to `put` as a Backplane value; `json` says the
/// column is DuckDB's `JSON` type (text that holds a document).
pub(crate) fn with_value<R>(v: DRef<'_>, json: bool, put: impl FnOnce(ValueRef<'_>) -> R) -> R {
    match v {
        DRef::Null => put(ValueRef::Null),
        DRef::Boolean(b) => put(ValueRef::Bool(b)),
        DRef::TinyInt(i) => put(ValueRef::Integer(i.into())),
        DRef::SmallInt(i) => put(ValueRef::Integer(i.into())),
        DRef::Int(i) => put(ValueRef::Integer(i.into())),
        DRef::BigInt(i) => put(ValueRef::Integer(i)),
        DRef::UTinyInt(i) => put(ValueRef::Integer(i.into())),
        DRef::USmallInt(i) => put(ValueRef::Integer(i.into())),
        DRef::UInt(i) => put(ValueRef::Integer(i.into())),
        DRef::UBigInt(i) => wide(i as i128, put),
        DRef::HugeInt(i) => wide(i, put),
        DRef::UHugeInt(i) => match i64::try_from(i) {
            Ok(v) => put(ValueRef::Integer(v)),
            Err(_) => put(ValueRef::Text(&i.to_string())),
        },
        DRef::Float(f) => put(ValueRef::Real(f.into())),
        DRef::Double(f) => put(ValueRef::Real(f)),
        DRef::Decimal(d) => {
            let scale = d.scale() as u32;
            let raw = d.value();
            let unit = 10i128.pow(scale);
            if raw % unit == 0 {
                if let Ok(i) = i64::try_from(raw / unit) {
                    return put(ValueRef::Integer(i));
                }
            }
            // A double when it says the same number at the column's scale
            // (any decimal of up to 15 digits, and most sums of them),
            // else the exact digits as text.
            let exact = d.to_string();
            let f = raw as f64 / unit as f64;
            if format!("{f:.prec$}", prec = scale as usize) == exact {
                put(ValueRef::Real(f))
            } else {
                put(ValueRef::Text(&exact))
            }
        }
        DRef::Timestamp(unit, t) => put(ValueRef::Timestamp(unit.to_micros(t))),
        DRef::Text(b) => {
            let s = String::from_utf8_lossy(b);
            if json {
                put(ValueRef::Json(JsonRef::Text(&s)))
            } else {
                put(ValueRef::Text(&s))
            }
        }
        DRef::Blob(b) | DRef::Geometry(b) => put(ValueRef::Blob(b)),
        DRef::Date32(days) => put(ValueRef::Text(&date_text(days.into()))),
        DRef::Time64(unit, t) => put(ValueRef::Text(&time_text(unit.to_micros(t)))),
        DRef::Interval {
            months,
            days,
            nanos,
        } => put(ValueRef::Text(&interval_text(months, days, nanos))),
        other => {
            let doc = to_json(&other.to_owned());
            put(ValueRef::Json(JsonRef::Doc(&doc)))
        }
    }
}

/// The owned Backplane value of a DuckDB value.
pub(crate) fn to_value(v: DRef<'_>, json: bool) -> Value {
    with_value(v, json, |v| v.to_value())
}

fn wide<R>(i: i128, put: impl FnOnce(ValueRef<'_>) -> R) -> R {
    match i64::try_from(i) {
        Ok(v) => put(ValueRef::Integer(v)),
        Err(_) => put(ValueRef::Text(&i.to_string())),
    }
}

/// A nested value (list, struct, map, …) as a JSON document.
pub(crate) fn to_json(v: &DValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        DValue::List(items) | DValue::Array(items) => J::Array(items.iter().map(to_json).collect()),
        DValue::Struct(fields) => J::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
        DValue::Map(entries) => {
            if entries.iter().all(|(k, _)| matches!(k, DValue::Text(_))) {
                J::Object(
                    entries
                        .iter()
                        .map(|(k, v)| match k {
                            DValue::Text(k) => (k.clone(), to_json(v)),
                            _ => unreachable!("checked: every key is text"),
                        })
                        .collect(),
                )
            } else {
                J::Array(
                    entries
                        .iter()
                        .map(|(k, v)| serde_json::json!({"key": to_json(k), "value": to_json(v)}))
                        .collect(),
                )
            }
        }
        DValue::Union(inner) => to_json(inner),
        DValue::Enum(s) => J::String(s.clone()),
        scalar => {
            let r = duckdb::types::ValueRef::from(scalar);
            match to_value(r, false) {
                Value::Null => J::Null,
                Value::Integer(i) => J::from(i),
                Value::Real(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
                Value::Text(s) => J::String(s),
                Value::Bool(b) => J::Bool(b),
                Value::Json(j) => j,
                Value::Timestamp(us) => J::String(timestamp_text(us)),
                Value::Blob(b) => J::Array(b.into_iter().map(J::from).collect()),
            }
        }
    }
}

/// Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC).
pub(crate) fn timestamp_text(us: i64) -> String {
    let day = us.div_euclid(86_400_000_000);
    format!(
        "{} {}",
        date_text(day),
        time_text(us.rem_euclid(86_400_000_000))
    )
}

/// An interval as ISO 8601 (`P1M2DT3.5S`).
fn interval_text(months: i32, days: i32, nanos: i64) -> String {
    let mut s = String::from("P");
    if months != 0 {
        s.push_str(&format!("{months}M"));
    }
    if days != 0 {
        s.push_str(&format!("{days}D"));
    }
    if nanos != 0 || s.len() == 1 {
        let secs = nanos as f64 / 1e9;
        s.push_str(&format!("T{secs}S"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_times_and_intervals_read_as_text() {
        assert_eq!(
            timestamp_text(86_400_000_000 + 1_000_000),
            "1970-01-02 00:00:01"
        );
        assert_eq!(interval_text(1, 2, 3_500_000_000), "P1M2DT3.5S");
        assert_eq!(interval_text(0, 0, 0), "PT0S");
    }

    #[test]
    fn wide_integers_keep_every_digit() {
        let big = i128::from(i64::MAX) + 1;
        assert_eq!(
            to_value(DRef::HugeInt(big), false),
            Value::Text(big.to_string())
        );
        assert_eq!(to_value(DRef::HugeInt(-5), false), Value::Integer(-5));
        let d = duckdb::types::Decimal::new(38, 4, 123_456).unwrap();
        assert_eq!(to_value(DRef::Decimal(d), false), Value::Real(12.3456));
        let d = duckdb::types::Decimal::new(38, 2, 12_345_678_901_234_567_891).unwrap();
        assert_eq!(
            to_value(DRef::Decimal(d), false),
            Value::Text("123456789012345678.91".into())
        );
        let d = duckdb::types::Decimal::new(10, 2, 1_250).unwrap();
        assert_eq!(to_value(DRef::Decimal(d), false), Value::Real(12.5));
        let d = duckdb::types::Decimal::new(30, 2, 1_200).unwrap();
        assert_eq!(to_value(DRef::Decimal(d), false), Value::Integer(12));
    }
}
