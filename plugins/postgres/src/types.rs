//! PostgreSQL's types and Backplane's values: which types map to which
//! values, and result columns read back as typed values (the binding side
//! is [`crate::bind`]), among them the stored vectors of vector stores.
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

use backplane_core::kit::time::{date_text, time_text};
use backplane_core::{Error, JsonRef, Result, ValueRef};
use postgres::types::{FromSql, Kind, Type};
use std::error::Error as StdError;

/// The driver's error type for conversions.
pub(crate) type BoxError = Box<dyn StdError + Sync + Send>;

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
pub(crate) const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
pub(crate) const PG_EPOCH_DAYS: i64 = 10_957;

/// The type to encode for: a domain's base type, else the type itself.
pub(crate) fn base(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(b) => base(b),
        _ => ty,
    }
}

/// Whether values of `ty` travel as plain text.
pub(crate) fn is_textual(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN
    ) || ty.name() == "citext"
}

/// A result column's raw bytes and type.
pub(crate) struct Raw<'a> {
    /// The column's type.
    pub(crate) ty: Type,
    /// Its binary value; `None` for NULL.
    pub(crate) bytes: Option<&'a [u8]>,
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
pub(crate) fn readable(ty: &Type) -> bool {
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
        || is_binary(ty)
        || matches!(*ty, Type::NUMERIC | Type::TIME | Type::UUID | Type::CHAR)
}

/// Whether the plugin writes values of `ty` in binary itself (textual
/// types aside): every other type is bound as text, for the server to
/// parse.
pub(crate) fn is_binary(ty: &Type) -> bool {
    matches!(
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
    )
}

/// Whether every value a column of type `ty` takes in an import goes into
/// a binary `COPY` (the type is bound in binary, or is text).
pub(crate) fn is_copyable(ty: &Type) -> bool {
    let ty = base(ty);
    (is_binary(ty) && *ty != Type::DATE) || is_textual(ty)
}

fn short(raw: &[u8], n: usize, ty: &Type) -> Result<(), BoxError> {
    if raw.len() < n {
        return Err(format!("a {} value of {} bytes is truncated", ty.name(), raw.len()).into());
    }
    Ok(())
}

/// The first four bytes of `raw` (at least four long).
fn be4(raw: &[u8]) -> [u8; 4] {
    [raw[0], raw[1], raw[2], raw[3]]
}

fn be_i64(raw: &[u8]) -> i64 {
    i64::from_be_bytes(raw[..8].try_into().unwrap_or([0; 8]))
}

/// Decode one non-NULL value of type `ty` and hand it to `f` as a
/// borrowed view. Errors describe malformed or unmapped values.
pub(crate) fn with_value<R>(
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
            f(ValueRef::Integer(i32::from_be_bytes(be4(raw)) as i64))
        }
        Type::OID => {
            short(raw, 4, ty)?;
            f(ValueRef::Integer(u32::from_be_bytes(be4(raw)) as i64))
        }
        Type::INT8 => {
            short(raw, 8, ty)?;
            f(ValueRef::Integer(be_i64(raw)))
        }
        Type::FLOAT4 => {
            short(raw, 4, ty)?;
            f(ValueRef::Real(f32::from_be_bytes(be4(raw)) as f64))
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
            let days = i32::from_be_bytes(be4(raw));
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
    let (ndim, len) = array_header(&mut r)?;
    if ndim == 0 {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    if ndim != 1 {
        return Err(format!(
            "a {ndim}-dimensional array cannot be mapped: select array_to_json(col) instead"
        )
        .into());
    }
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

/// Read a binary array's header, leaving `r` at its first element: the
/// number of dimensions and, for a one-dimensional array, its length (0
/// otherwise).
fn array_header(r: &mut Reader<'_>) -> Result<(i32, usize), BoxError> {
    let ndim = r.i32()?;
    let _flags = r.i32()?;
    let _oid = r.i32()?;
    if ndim != 1 {
        return Ok((ndim, 0));
    }
    let len = r.i32()?.max(0) as usize;
    let _lower = r.i32()?;
    Ok((ndim, len))
}

/// Read column `i` of `row`, a stored vector (a one-dimensional `real[]`),
/// into `out`.
pub(crate) fn read_vector(row: &postgres::Row, i: usize, out: &mut Vec<f32>) -> Result<()> {
    let raw: Raw<'_> = row
        .try_get(i)
        .map_err(|e| Error::backend(format!("reading a vector: {e}")))?;
    match raw.bytes {
        Some(b) => read_reals(b, out),
        None => Err(Error::backend("a stored vector is NULL")),
    }
}

/// A binary `real[]` value into `out`.
fn read_reals(raw: &[u8], out: &mut Vec<f32>) -> Result<()> {
    let bad = || {
        Error::backend("a stored vector is not a one-dimensional real[]: it was written by something other than this plugin")
    };
    out.clear();
    let mut r = Reader(raw);
    let (ndim, len) = array_header(&mut r).map_err(|_| bad())?;
    if ndim == 0 {
        return Ok(());
    }
    if ndim != 1 {
        return Err(bad());
    }
    out.reserve(len);
    for _ in 0..len {
        let n = r.i32().map_err(|_| bad())?;
        if n != 4 {
            return Err(bad());
        }
        let b = r.take(4).map_err(|_| bad())?;
        out.push(f32::from_be_bytes(be4(b)));
    }
    Ok(())
}

/// A big-endian cursor over a binary value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    fn take(&mut self, n: usize) -> Result<&'a [u8], BoxError> {
        if self.0.len() < n {
            return Err("a binary value is truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    /// The next i32.
    fn i32(&mut self) -> Result<i32, BoxError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes(be4(b)))
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
        assert_eq!(date_text(PG_EPOCH_DAYS), "2000-01-01");
    }
}
