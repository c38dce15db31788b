//! Backplane's values bound as statement parameters: [`Bind`] encodes a
//! borrowed value for whatever type the server inferred for its
//! placeholder, in binary where the plugin knows the type and in
//! PostgreSQL's text format where the server is to parse it (see the table
//! in [`crate::types`]).

use crate::types::{base, is_binary, is_textual, BoxError, PG_EPOCH_DAYS, PG_EPOCH_US};
use backplane_core::{JsonRef, ValueRef};
use bytes::{BufMut, BytesMut};
use postgres::types::{Format, IsNull, ToSql, Type};

/// A borrowed value bound as a parameter of any type.
#[derive(Debug)]
pub(crate) struct Bind<'a>(pub(crate) ValueRef<'a>);

/// How a value travels for a parameter of type `ty`.
enum Plan<'v> {
    Binary,
    Text(std::borrow::Cow<'v, str>),
}

/// How `v` travels for a parameter of type `ty`.
fn plan<'v>(v: &ValueRef<'v>, ty: &Type) -> Plan<'v> {
    use std::borrow::Cow;
    let ty = base(ty);
    let binary_here = is_binary(ty) || is_textual(ty);
    if binary_here {
        // `Text` into a timestamp or date column is parsed by the server.
        if let ValueRef::Text(s) = v {
            if matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ | Type::DATE) {
                return Plan::Text(Cow::Borrowed(s));
            }
        }
        return Plan::Binary;
    }
    match *v {
        ValueRef::Text(s) => Plan::Text(Cow::Borrowed(s)),
        ValueRef::Integer(i) => Plan::Text(Cow::Owned(i.to_string())),
        ValueRef::Real(f) => Plan::Text(Cow::Owned(real_text(f))),
        ValueRef::Bool(b) => Plan::Text(Cow::Borrowed(if b { "true" } else { "false" })),
        ValueRef::Json(j) => Plan::Text(Cow::Owned(j.text().into_owned())),
        // Null, and what has no text form here: reported by `to_sql`.
        _ => Plan::Binary,
    }
}

fn real_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        f.to_string()
    }
}

fn mismatch(v: &ValueRef<'_>, ty: &Type, hint: &str) -> BoxError {
    let name = match v {
        ValueRef::Null => "null",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
        ValueRef::Bool(_) => "a bool",
        ValueRef::Json(_) => "json",
        ValueRef::Timestamp(_) => "a timestamp",
    };
    format!(
        "{name} cannot be bound where PostgreSQL expects {}{hint}",
        ty.name()
    )
    .into()
}

impl ToSql for Bind<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let v = self.0;
        if matches!(v, ValueRef::Null) {
            return Ok(IsNull::Yes);
        }
        if let Plan::Text(t) = plan(&v, ty) {
            out.put_slice(t.as_bytes());
            return Ok(IsNull::No);
        }
        let bty = base(ty);
        let int = |v: &ValueRef<'_>| -> Option<i64> {
            match *v {
                ValueRef::Integer(i) => Some(i),
                ValueRef::Bool(b) => Some(b as i64),
                ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
                _ => None,
            }
        };
        let range = |lo: i64, hi: i64| -> Result<i64, BoxError> {
            let i = int(&v).ok_or_else(|| mismatch(&v, ty, ""))?;
            if i < lo || i > hi {
                return Err(format!("{i} is out of range for {} ({lo} to {hi})", ty.name()).into());
            }
            Ok(i)
        };
        match *bty {
            Type::BOOL => match v {
                ValueRef::Bool(b) => out.put_u8(b as u8),
                ValueRef::Integer(i @ (0 | 1)) => out.put_u8(i as u8),
                _ => return Err(mismatch(&v, ty, ": pass a bool")),
            },
            Type::INT2 => out.put_i16(range(i16::MIN as i64, i16::MAX as i64)? as i16),
            Type::INT4 => out.put_i32(range(i32::MIN as i64, i32::MAX as i64)? as i32),
            Type::INT8 => out.put_i64(range(i64::MIN, i64::MAX)?),
            Type::OID => out.put_u32(range(0, u32::MAX as i64)? as u32),
            Type::FLOAT4 | Type::FLOAT8 => {
                let f = match v {
                    ValueRef::Real(f) => f,
                    ValueRef::Integer(i) => i as f64,
                    _ => return Err(mismatch(&v, ty, ": pass a number")),
                };
                if *bty == Type::FLOAT4 {
                    out.put_f32(f as f32)
                } else {
                    out.put_f64(f)
                }
            }
            Type::BYTEA => match v {
                ValueRef::Blob(b) => out.put_slice(b),
                ValueRef::Text(s) => out.put_slice(s.as_bytes()),
                _ => return Err(mismatch(&v, ty, ": pass a blob")),
            },
            Type::JSON | Type::JSONB => {
                if *bty == Type::JSONB {
                    out.put_u8(1);
                }
                match v {
                    ValueRef::Json(JsonRef::Text(t)) => out.put_slice(t.as_bytes()),
                    ValueRef::Json(JsonRef::Doc(d)) => {
                        serde_json::to_writer((&mut *out).writer(), d)?
                    }
                    ValueRef::Text(s) => out.put_slice(s.as_bytes()),
                    ValueRef::Integer(i) => out.put_slice(i.to_string().as_bytes()),
                    ValueRef::Real(f) if f.is_finite() => out.put_slice(f.to_string().as_bytes()),
                    ValueRef::Bool(b) => out.put_slice(if b { b"true" } else { b"false" }),
                    _ => return Err(mismatch(&v, ty, ": pass a JSON value")),
                }
            }
            Type::TIMESTAMP | Type::TIMESTAMPTZ => match v {
                ValueRef::Timestamp(us) | ValueRef::Integer(us) => {
                    out.put_i64(us.saturating_sub(PG_EPOCH_US))
                }
                _ => {
                    return Err(mismatch(
                        &v,
                        ty,
                        ": pass a Timestamp (microseconds since 1970-01-01 UTC) or text like '2024-05-01 12:00:00+00'",
                    ))
                }
            },
            Type::DATE => match v {
                ValueRef::Timestamp(us) => {
                    out.put_i32((us.div_euclid(86_400_000_000) - PG_EPOCH_DAYS) as i32)
                }
                _ => return Err(mismatch(&v, ty, ": pass text like '2024-05-01' or a Timestamp")),
            },
            _ if is_textual(bty) => match v {
                ValueRef::Text(s) => out.put_slice(s.as_bytes()),
                ValueRef::Integer(i) => out.put_slice(i.to_string().as_bytes()),
                ValueRef::Real(f) => out.put_slice(real_text(f).as_bytes()),
                ValueRef::Bool(b) => out.put_slice(if b { b"true" } else { b"false" }),
                ValueRef::Json(j) => out.put_slice(j.text().as_bytes()),
                _ => return Err(mismatch(&v, ty, ": pass text")),
            },
            _ => {
                return Err(mismatch(
                    &v,
                    ty,
                    ": pass the value as text in PostgreSQL's input syntax, or cast the placeholder ($1::text)",
                ))
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, ty: &Type) -> Format {
        match plan(&self.0, ty) {
            Plan::Text(_) => Format::Text,
            Plan::Binary => Format::Binary,
        }
    }

    postgres::types::to_sql_checked!();
}
