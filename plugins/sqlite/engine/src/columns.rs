//! Reading column values: a column's declared type (`BOOLEAN`, `JSON`,
//! `TIMESTAMP`) refines how SQLite's storage classes read back.

use backplane_core::{JsonRef, RowSink, ValueRef};
use rusqlite::types::ValueRef as SqlRef;

/// How a column's declared type changes the way its values are read.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    /// `BOOLEAN`/`BOOL`: integers read as `Bool`.
    Bool,
    /// `JSON`/`JSONB`: text that parses reads as `Json`.
    Json,
    /// `TIMESTAMP`/`DATETIME`: integers read as `Timestamp`.
    Timestamp,
}

#[inline]
pub(crate) fn kind_of(decl: Option<&str>) -> Kind {
    let Some(decl) = decl else {
        return Kind::Plain;
    };
    let word = decl
        .trim()
        .split(|c: char| c == '(' || c.is_ascii_whitespace())
        .next()
        .unwrap_or("");
    let is = |w: &str| word.eq_ignore_ascii_case(w);
    if is("BOOLEAN") || is("BOOL") {
        Kind::Bool
    } else if is("JSON") || is("JSONB") {
        Kind::Json
    } else if is("TIMESTAMP") || is("DATETIME") || is("TIMESTAMPTZ") {
        Kind::Timestamp
    } else {
        Kind::Plain
    }
}

/// Pass one column value to `sink`, typed by the column's declared kind.
#[inline]
pub(crate) fn put_value(sink: &mut dyn RowSink, v: SqlRef<'_>, kind: Kind) {
    match v {
        SqlRef::Null => sink.value(ValueRef::Null),
        SqlRef::Integer(i) => sink.value(match kind {
            Kind::Bool => ValueRef::Bool(i != 0),
            Kind::Timestamp => ValueRef::Timestamp(i),
            _ => ValueRef::Integer(i),
        }),
        SqlRef::Real(f) => sink.value(ValueRef::Real(f)),
        SqlRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s)
                if kind == Kind::Json
                    && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() =>
            {
                sink.value(ValueRef::Json(JsonRef::Text(s)))
            }
            Ok(s) => sink.value(ValueRef::Text(s)),
            Err(_) => sink.value(ValueRef::Text(&String::from_utf8_lossy(t))),
        },
        SqlRef::Blob(b) => sink.value(ValueRef::Blob(b)),
    }
}
