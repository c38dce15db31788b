//! Values both ways: Backplane's [`Value`](backplane_core::Value) bound as
//! a statement parameter of whatever type the server inferred, and result
//! columns read back as typed values.
//!
//! | PostgreSQL | read as | bound from |
//! |---|---|---|
//! | `smallint`, `integer`, `bigint`, `oid` | `Integer` | `Integer` (range-checked), `Bool`, integral `Real` |
//! | `real`, `double precision` | `Real` | `Real`, `Integer` |
//! | `numeric` | `Integer` when integral and within i64, else `Real` | `Integer`, `Real`, `Text` (sent as text) |
//! | `text`, `varchar`, `char(n)`, `name`, `citext`, enums | `Text` | `Text`; `Integer`/`Real`/`Bool`/`Json` as their text |
//! | `bytea` | `Blob` | `Blob`, `Text` (its bytes) |
//! | `boolean` | `Bool` | `Bool`, `Integer` 0/1 |
//! | `json`, `jsonb` | `Json` | `Json`, `Text` (JSON text), numbers and bools |
//! | `timestamp`, `timestamptz` | `Timestamp` (µs since 1970-01-01 UTC) | `Timestamp`, `Integer` (µs), `Text` (sent as text) |
//! | `date` | `Text` (`YYYY-MM-DD`) | `Text`, `Timestamp` (its day) |
//! | `time` | `Text` (`HH:MM:SS[.ffffff]`) | `Text` |
//! | `uuid` | `Text` | `Text` |
//! | one-dimensional arrays of the above | `Json` array | `Text` in array syntax (`'{1,2}'`) |
//! | anything else (`interval`, `inet`, ranges, …) | an error naming the column: cast it (`col::text`) | `Text`, sent as text for the server to parse |
//!
//! A `timestamp` without time zone is taken as UTC. Values of other types
//! that arrive as `Text` are sent in PostgreSQL's text format and parsed by
//! the server, so `'2024-05-01'` binds to a `date`, and an enum label to its
//! enum.

use backplane_core::{JsonRef, ValueRef};
use bytes::{BufMut, BytesMut};
use postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type};
use std::error::Error as StdError;

type BoxError = Box<dyn StdError + Sync + Send>;

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;

/// A borrowed value bound as a parameter of any type.
#[derive(Debug)]
pub struct Bind<'a>(pub ValueRef<'a>);

/// The type to encode for: a domain's base type, else the type itself.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(b) => base(b),
        _ => ty,
    }
}

fn is_textual(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || ty.name() == "citext"
}

/// How a value travels for a parameter of type `ty`.
enum Plan<'v> {
    Binary,
    Text(std::borrow::Cow<'v, str>),
}

fn plan<'v>(v: &ValueRef<'v>, ty: &Type) -> Plan<'v> {
    use std::borrow::Cow;
    let ty = base(ty);
    let binary_here = matches!(
        *ty,
        Type::BOOL
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::OID
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::BYTEA
            | Type::JSON
            | Type::JSONB
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
            | Type::DATE
    ) || is_textual(ty);
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

/// A result column's raw bytes and type.
pub struct Raw<'a> {
    /// The column's type.
    pub ty: Type,
    /// Its binary value; `None` for NULL.
    pub bytes: Option<&'a [u8]>,
}

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw {
            ty: ty.clone(),
            bytes: Some(raw),
        })
    }
    fn from_sql_null(ty: &Type) -> Result<Self, BoxError> {
        Ok(Raw {
            ty: ty.clone(),
            bytes: None,
        })
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Whether columns of type `ty` can be read.
pub fn readable(ty: &Type) -> bool {
    let ty = base(ty);
    match ty.kind() {
        Kind::Enum(_) => true,
        Kind::Array(elem) => {
            !matches!(base(elem).kind(), Kind::Array(_)) && readable_scalar(base(elem))
        }
        _ => readable_scalar(ty),
    }
}

fn readable_scalar(ty: &Type) -> bool {
    matches!(ty.kind(), Kind::Enum(_))
        || is_textual(ty)
        || matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::OID
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::BYTEA
                | Type::JSON
                | Type::JSONB
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
                | Type::DATE
                | Type::TIME
                | Type::UUID
                | Type::CHAR
        )
}

fn short(raw: &[u8], n: usize, ty: &Type) -> Result<(), BoxError> {
    if raw.len() < n {
        return Err(format!("a {} value of {} bytes is truncated", ty.name(), raw.len()).into());
    }
    Ok(())
}

fn be_i64(raw: &[u8]) -> i64 {
    i64::from_be_bytes(raw[..8].try_into().unwrap_or([0; 8]))
}

/// Decode one non-NULL value of type `ty` and hand it to `f` as a
/// borrowed view. Errors describe malformed or unmapped values.
pub fn with_value<R>(
    ty: &Type,
    raw: &[u8],
    f: impl FnOnce(ValueRef<'_>) -> R,
) -> Result<R, BoxError> {
    let ty = base(ty);
    if let Kind::Array(elem) = ty.kind() {
        let doc = decode_array(base(elem), raw)?;
        return Ok(f(ValueRef::Json(JsonRef::Doc(&doc))));
    }
    if matches!(ty.kind(), Kind::Enum(_)) || is_textual(ty) {
        return Ok(f(ValueRef::Text(std::str::from_utf8(raw)?)));
    }
    Ok(match *ty {
        Type::BOOL => {
            short(raw, 1, ty)?;
            f(ValueRef::Bool(raw[0] != 0))
        }
        Type::CHAR => {
            short(raw, 1, ty)?;
            let s = (raw[0] as char).to_string();
            f(ValueRef::Text(&s))
        }
        Type::INT2 => {
            short(raw, 2, ty)?;
            f(ValueRef::Integer(
                i16::from_be_bytes([raw[0], raw[1]]) as i64
            ))
        }
        Type::INT4 => {
            short(raw, 4, ty)?;
            f(ValueRef::Integer(
                i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as i64,
            ))
        }
        Type::OID => {
            short(raw, 4, ty)?;
            f(ValueRef::Integer(
                u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as i64,
            ))
        }
        Type::INT8 => {
            short(raw, 8, ty)?;
            f(ValueRef::Integer(be_i64(raw)))
        }
        Type::FLOAT4 => {
            short(raw, 4, ty)?;
            f(ValueRef::Real(
                f32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]) as f64,
            ))
        }
        Type::FLOAT8 => {
            short(raw, 8, ty)?;
            f(ValueRef::Real(f64::from_bits(be_i64(raw) as u64)))
        }
        Type::NUMERIC => {
            let text = numeric_text(raw)?;
            match text.parse::<i64>() {
                Ok(i) => f(ValueRef::Integer(i)),
                Err(_) => f(ValueRef::Real(numeric_f64(&text))),
            }
        }
        Type::BYTEA => f(ValueRef::Blob(raw)),
        Type::JSON => f(ValueRef::Json(JsonRef::Text(std::str::from_utf8(raw)?))),
        Type::JSONB => {
            short(raw, 1, ty)?;
            if raw[0] != 1 {
                return Err(format!("unknown jsonb format version {}", raw[0]).into());
            }
            f(ValueRef::Json(JsonRef::Text(std::str::from_utf8(
                &raw[1..],
            )?)))
        }
        Type::TIMESTAMP | Type::TIMESTAMPTZ => {
            short(raw, 8, ty)?;
            let us = be_i64(raw);
            let us = match us {
                i64::MAX | i64::MIN => us, // 'infinity' / '-infinity'
                _ => us.saturating_add(PG_EPOCH_US),
            };
            f(ValueRef::Timestamp(us))
        }
        Type::DATE => {
            short(raw, 4, ty)?;
            let days = i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
            let s = match days {
                i32::MAX => "infinity".to_string(),
                i32::MIN => "-infinity".to_string(),
                d => date_text(d as i64 + PG_EPOCH_DAYS),
            };
            f(ValueRef::Text(&s))
        }
        Type::TIME => {
            short(raw, 8, ty)?;
            let s = time_text(be_i64(raw));
            f(ValueRef::Text(&s))
        }
        Type::UUID => {
            short(raw, 16, ty)?;
            let h: String = raw[..16].iter().map(|b| format!("{b:02x}")).collect();
            let s = format!(
                "{}-{}-{}-{}-{}",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            );
            f(ValueRef::Text(&s))
        }
        _ => return Err(format!("type {} is not mapped", ty.name()).into()),
    })
}

/// The value as JSON (array elements).
fn to_json(ty: &Type, raw: &[u8]) -> Result<serde_json::Value, BoxError> {
    use serde_json::Value as J;
    with_value(ty, raw, |v| match v {
        ValueRef::Null => J::Null,
        ValueRef::Integer(i) => J::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        ValueRef::Text(s) => J::String(s.to_string()),
        ValueRef::Blob(b) => J::Array(b.iter().map(|x| J::from(*x)).collect()),
        ValueRef::Bool(b) => J::Bool(b),
        ValueRef::Json(j) => match j {
            JsonRef::Doc(d) => d.clone(),
            JsonRef::Text(t) => serde_json::from_str(t).unwrap_or(J::Null),
        },
        ValueRef::Timestamp(t) => J::from(t),
    })
}

/// A one-dimensional array as a JSON array.
fn decode_array(elem: &Type, raw: &[u8]) -> Result<serde_json::Value, BoxError> {
    let mut r = Reader(raw);
    let ndim = r.i32()?;
    let _flags = r.i32()?;
    let _oid = r.i32()?;
    if ndim == 0 {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    if ndim != 1 {
        return Err(format!(
            "a {ndim}-dimensional array cannot be mapped: select array_to_json(col) instead"
        )
        .into());
    }
    let len = r.i32()?.max(0) as usize;
    let _lower = r.i32()?;
    let mut items = Vec::with_capacity(len.min(1 << 16));
    for _ in 0..len {
        let n = r.i32()?;
        if n < 0 {
            items.push(serde_json::Value::Null);
        } else {
            items.push(to_json(elem, r.take(n as usize)?)?);
        }
    }
    Ok(serde_json::Value::Array(items))
}

/// A big-endian cursor over a binary value.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], BoxError> {
        if self.0.len() < n {
            return Err("a binary value is truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    /// The next i32.
    pub fn i32(&mut self) -> Result<i32, BoxError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i16(&mut self) -> Result<i16, BoxError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
}

/// A binary `numeric` as decimal text.
fn numeric_text(raw: &[u8]) -> Result<String, BoxError> {
    let mut r = Reader(raw);
    let ndigits = r.i16()?.max(0) as usize;
    let weight = r.i16()? as i32;
    let sign = r.i16()? as u16;
    let dscale = r.i16()?.max(0) as usize;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let mut digits = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        digits.push(r.i16()? as i32);
    }
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    // Integer part: groups 0..=weight.
    if weight < 0 {
        s.push('0');
    } else {
        for g in 0..=weight {
            let d = digits.get(g as usize).copied().unwrap_or(0);
            if g == 0 {
                s.push_str(&d.to_string());
            } else {
                s.push_str(&format!("{d:04}"));
            }
        }
    }
    if dscale > 0 {
        let mut frac = String::new();
        let mut g = weight + 1;
        while frac.len() < dscale {
            let d = if g < 0 {
                0
            } else {
                digits.get(g as usize).copied().unwrap_or(0)
            };
            frac.push_str(&format!("{d:04}"));
            g += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Ok(s)
}

fn numeric_f64(text: &str) -> f64 {
    match text {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        "-Infinity" => f64::NEG_INFINITY,
        t => t.parse().unwrap_or(f64::NAN),
    }
}

/// Days since 1970-01-01 as `YYYY-MM-DD` (proleptic Gregorian).
fn date_text(days: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

fn time_text(us: i64) -> String {
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    let t = format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
    if frac == 0 {
        t
    } else {
        format!("{t}.{}", format!("{frac:06}").trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_decoding() {
        // 12345.678: weight 1, digits [1, 2345, 6780], dscale 3
        let mut raw = Vec::new();
        for v in [3i16, 1, 0, 3, 1, 2345, 6780] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric_text(&raw).unwrap(), "12345.678");
        // -0.05: weight -1, digits [500], dscale 2
        let mut raw = Vec::new();
        for v in [1i16, -1, 0x4000u16 as i16, 2, 500] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric_text(&raw).unwrap(), "-0.05");
        // 0
        let mut raw = Vec::new();
        for v in [0i16, 0, 0, 0] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(numeric_text(&raw).unwrap(), "0");
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(PG_EPOCH_DAYS), "2000-01-01");
        assert_eq!(date_text(19_844), "2024-05-01");
        assert_eq!(time_text(45_296_500_000), "12:34:56.5");
        assert_eq!(time_text(0), "00:00:00");
    }
}
