//! Borrowed SQL values and parameters, and row sinks: the types of the
//! relational fast path.
//!
//! Across the plugin boundary, statement parameters travel as borrowed
//! views of the host's values ([`ParamsRef`]) and result rows are written
//! straight into the wire format ([`RowSink`]), so the hot calls `execute`,
//! `execute_many` and `query` copy no value twice. A plugin opts in by
//! overriding [`Relational::execute_ref`](crate::Relational::execute_ref),
//! [`execute_many_ref`](crate::Relational::execute_many_ref) and
//! [`query_into`](crate::Relational::query_into); the defaults convert to
//! the owned types and call the plain methods.
//!
//! The file stays whole (past 600 lines with its test): the raw view, the
//! writer and the decoder agree byte for byte on the wire layout, and are
//! read together.

use crate::{Params, Rows, Value};
use std::sync::{Arc, Mutex};

/// A borrowed [`Value`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    /// `NULL`.
    Null,
    /// An integer.
    Integer(i64),
    /// A float.
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
    /// A boolean.
    Bool(bool),
    /// A JSON document.
    Json(JsonRef<'a>),
    /// Microseconds since the Unix epoch.
    Timestamp(i64),
}

/// A borrowed JSON document: its text, or the parsed document.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum JsonRef<'a> {
    /// JSON text.
    Text(&'a str),
    /// A parsed document.
    Doc(&'a serde_json::Value),
}

impl JsonRef<'_> {
    /// The JSON text.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            JsonRef::Text(t) => std::borrow::Cow::Borrowed(t),
            JsonRef::Doc(d) => std::borrow::Cow::Owned(d.to_string()),
        }
    }
}

impl ValueRef<'_> {
    /// The owned value.
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(s) => Value::Text(s.to_string()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            ValueRef::Bool(b) => Value::Bool(b),
            ValueRef::Json(JsonRef::Doc(d)) => Value::Json(d.clone()),
            ValueRef::Json(JsonRef::Text(t)) => serde_json::from_str(t)
                .map(Value::Json)
                .unwrap_or_else(|_| Value::Text(t.to_string())),
            ValueRef::Timestamp(t) => Value::Timestamp(t),
        }
    }
}

/// Parameters of one statement, borrowed: either the caller's [`Params`]
/// or the host's values seen through the plugin boundary.
#[derive(Clone, Copy, Debug)]
pub struct ParamsRef<'a>(Inner<'a>);

#[derive(Clone, Copy, Debug)]
enum Inner<'a> {
    Owned(&'a Params),
    Raw {
        values: &'a [RawValue],
        names: &'a [RawValue],
    },
}

impl<'a> From<&'a Params> for ParamsRef<'a> {
    fn from(p: &'a Params) -> Self {
        ParamsRef(Inner::Owned(p))
    }
}

impl<'a> ParamsRef<'a> {
    /// Views of values the host passed; `names` is empty for positional
    /// parameters, else one name per value.
    ///
    /// # Safety
    /// Every pointer in `values` and `names` must be valid for `'a`, and
    /// text must be UTF-8 (it is checked, but reading it must be sound).
    pub(crate) unsafe fn from_raw(values: &'a [RawValue], names: &'a [RawValue]) -> Self {
        ParamsRef(Inner::Raw { values, names })
    }

    /// How many values.
    pub fn len(&self) -> usize {
        match self.0 {
            Inner::Owned(p) => p.len(),
            Inner::Raw { values, .. } => values.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the values are named (`:name`) rather than positional.
    pub fn is_named(&self) -> bool {
        match self.0 {
            Inner::Owned(p) => matches!(p, Params::Named(_)),
            Inner::Raw { names, .. } => !names.is_empty(),
        }
    }

    /// The `i`th value.
    #[inline]
    pub fn value(&self, i: usize) -> ValueRef<'a> {
        match self.0 {
            Inner::Owned(Params::Positional(v)) => value_ref(&v[i]),
            Inner::Owned(Params::Named(v)) => value_ref(&v[i].1),
            Inner::Owned(Params::None) => {
                panic!("parameter index {i} out of range (no parameters)")
            }
            // SAFETY: guaranteed by `from_raw`'s caller.
            Inner::Raw { values, .. } => unsafe { values[i].view() },
        }
    }

    /// The `i`th name (without a leading `:`), for named parameters.
    #[inline]
    pub fn name(&self, i: usize) -> Option<&'a str> {
        match self.0 {
            Inner::Owned(Params::Named(v)) => Some(v[i].0.as_str()),
            Inner::Owned(_) => None,
            // SAFETY: guaranteed by `from_raw`'s caller.
            Inner::Raw { names, .. } => names.get(i).map(|n| match unsafe { n.view() } {
                ValueRef::Text(s) => s,
                _ => "",
            }),
        }
        .map(|n| n.strip_prefix(':').unwrap_or(n))
    }

    /// The owned parameters.
    pub fn to_params(&self) -> Params {
        match self.0 {
            Inner::Owned(p) => p.clone(),
            Inner::Raw { values: [], .. } => Params::None,
            Inner::Raw { .. } if self.is_named() => Params::Named(
                (0..self.len())
                    .map(|i| {
                        (
                            self.name(i).unwrap_or("").to_string(),
                            self.value(i).to_value(),
                        )
                    })
                    .collect(),
            ),
            Inner::Raw { .. } => {
                Params::Positional((0..self.len()).map(|i| self.value(i).to_value()).collect())
            }
        }
    }
}

/// One SQL value seen through the plugin boundary, borrowed from the host
/// for the length of a call: a tag and either a number or a pointer and a
/// length. Its layout is part of the wire format (`#[repr(C)]`, checked by
/// the ABI version).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[doc(hidden)]
pub struct RawValue {
    /// Text, JSON text or blob bytes (null for numbers).
    ptr: *const u8,
    /// Their length; or the integer, bool (0/1), timestamp, or the bits of
    /// the real.
    word: u64,
    /// Which [`ValueRef`] variant (the `TAG_*` constants).
    tag: u8,
}

const TAG_NULL: u8 = 0;
const TAG_INTEGER: u8 = 1;
const TAG_REAL: u8 = 2;
const TAG_TEXT: u8 = 3;
const TAG_BLOB: u8 = 4;
const TAG_BOOL: u8 = 5;
const TAG_JSON: u8 = 6;
const TAG_TIMESTAMP: u8 = 7;

impl RawValue {
    /// `NULL`.
    pub(crate) const NULL: RawValue = RawValue {
        tag: TAG_NULL,
        word: 0,
        ptr: std::ptr::null(),
    };

    fn word(tag: u8, word: u64) -> Self {
        RawValue {
            tag,
            word,
            ptr: std::ptr::null(),
        }
    }
    fn bytes(tag: u8, b: &[u8]) -> Self {
        RawValue {
            tag,
            word: b.len() as u64,
            ptr: b.as_ptr(),
        }
    }
    /// A view of text.
    pub(crate) fn text(t: &str) -> Self {
        RawValue::bytes(TAG_TEXT, t.as_bytes())
    }
    /// A view of JSON text.
    pub(crate) fn json(t: &str) -> Self {
        RawValue::bytes(TAG_JSON, t.as_bytes())
    }
    /// A view of `v`; a JSON document must be rendered to text first
    /// ([`RawValue::json`]): this gives `NULL` for one.
    pub(crate) fn of(v: &Value) -> Self {
        match v {
            Value::Null | Value::Json(_) => RawValue::NULL,
            Value::Integer(i) => RawValue::word(TAG_INTEGER, *i as u64),
            Value::Real(f) => RawValue::word(TAG_REAL, f.to_bits()),
            Value::Text(t) => RawValue::text(t),
            Value::Blob(b) => RawValue::bytes(TAG_BLOB, b),
            Value::Bool(b) => RawValue::word(TAG_BOOL, *b as u64),
            Value::Timestamp(t) => RawValue::word(TAG_TIMESTAMP, *t as u64),
        }
    }

    /// The borrowed value.
    ///
    /// # Safety
    /// `ptr` must be valid for `word` bytes for `'a`.
    #[inline]
    unsafe fn view<'a>(&self) -> ValueRef<'a> {
        let bytes = || -> &'a [u8] {
            if self.word == 0 || self.ptr.is_null() {
                &[]
            } else {
                // SAFETY: the caller guarantees ptr/len.
                unsafe { std::slice::from_raw_parts(self.ptr, self.word as usize) }
            }
        };
        let text = || {
            let b = bytes();
            if b.is_ascii() {
                // SAFETY: ASCII is UTF-8.
                unsafe { std::str::from_utf8_unchecked(b) }
            } else {
                std::str::from_utf8(b).unwrap_or("")
            }
        };
        match self.tag {
            TAG_INTEGER => ValueRef::Integer(self.word as i64),
            TAG_REAL => ValueRef::Real(f64::from_bits(self.word)),
            TAG_TEXT => ValueRef::Text(text()),
            TAG_BLOB => ValueRef::Blob(bytes()),
            TAG_BOOL => ValueRef::Bool(self.word != 0),
            TAG_JSON => ValueRef::Json(JsonRef::Text(text())),
            TAG_TIMESTAMP => ValueRef::Timestamp(self.word as i64),
            _ => ValueRef::Null,
        }
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    #[inline]
    fn from(v: &'a Value) -> Self {
        value_ref(v)
    }
}

#[inline]
fn value_ref(v: &Value) -> ValueRef<'_> {
    match v {
        Value::Null => ValueRef::Null,
        Value::Integer(i) => ValueRef::Integer(*i),
        Value::Real(f) => ValueRef::Real(*f),
        Value::Text(s) => ValueRef::Text(s),
        Value::Blob(b) => ValueRef::Blob(b),
        Value::Bool(b) => ValueRef::Bool(*b),
        Value::Json(j) => ValueRef::Json(JsonRef::Doc(j)),
        Value::Timestamp(t) => ValueRef::Timestamp(*t),
    }
}

/// Where a query writes its rows: column names once, then each row's
/// values in order.
pub trait RowSink {
    /// The column names; called once, before any row.
    fn columns(&mut self, names: &Arc<[String]>);
    /// Start a row.
    fn begin_row(&mut self);
    /// The next value of the current row.
    fn value(&mut self, v: ValueRef<'_>);
    /// Write whole rows (used by the default `query_into`).
    fn rows(&mut self, rows: &Rows) {
        self.columns(&rows.columns);
        for r in &rows.rows {
            self.begin_row();
            for v in r {
                self.value(value_ref(v));
            }
        }
    }
}

/// A [`RowSink`] that builds [`Rows`].
#[derive(Default)]
pub struct RowsBuilder {
    rows: Rows,
}

impl RowsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }
    /// The rows built.
    pub fn finish(self) -> Rows {
        self.rows
    }
}

impl RowSink for RowsBuilder {
    fn columns(&mut self, names: &Arc<[String]>) {
        self.rows.columns = names.clone();
    }
    fn begin_row(&mut self) {
        self.rows
            .rows
            .push(Vec::with_capacity(self.rows.columns.len()));
    }
    fn value(&mut self, v: ValueRef<'_>) {
        if let Some(r) = self.rows.rows.last_mut() {
            r.push(v.to_value());
        }
    }
}

/// A [`RowSink`] that writes [`Rows`] in the wire format directly, the
/// bytes `boundary::encode(&rows)` would produce, without building them.
pub struct RowsWriter {
    buf: Vec<u8>,
    rows_at: usize,
    row_len_at: usize,
    rows: u64,
    row_values: u64,
}

// The wire format is bincode's default: little-endian fixed-width integers,
// u64 lengths, u32 enum variant indexes (in declaration order).
const V_NULL: u32 = 0;
const V_INTEGER: u32 = 1;
const V_REAL: u32 = 2;
const V_TEXT: u32 = 3;
const V_BLOB: u32 = 4;
const V_BOOL: u32 = 5;
const V_JSON: u32 = 6;
const V_TIMESTAMP: u32 = 7;

impl Default for RowsWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl RowsWriter {
    /// An empty writer.
    pub fn new() -> Self {
        RowsWriter {
            buf: Vec::with_capacity(128),
            rows_at: usize::MAX,
            row_len_at: usize::MAX,
            rows: 0,
            row_values: 0,
        }
    }

    #[inline]
    fn u64(&mut self, n: u64) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }
    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
    fn close_row(&mut self) {
        if self.row_len_at != usize::MAX {
            let at = self.row_len_at;
            self.buf[at..at + 8].copy_from_slice(&self.row_values.to_le_bytes());
        }
    }

    /// The encoded rows.
    pub fn finish(mut self) -> Vec<u8> {
        if self.rows_at == usize::MAX {
            // No columns were written: an empty result.
            self.u64(0);
            self.rows_at = self.buf.len();
            self.u64(0);
        }
        self.close_row();
        let at = self.rows_at;
        self.buf[at..at + 8].copy_from_slice(&self.rows.to_le_bytes());
        self.buf
    }
}

impl RowSink for RowsWriter {
    fn columns(&mut self, names: &Arc<[String]>) {
        self.u64(names.len() as u64);
        for name in names.iter() {
            self.bytes(name.as_bytes());
        }
        self.rows_at = self.buf.len();
        self.u64(0);
    }
    #[inline]
    fn begin_row(&mut self) {
        self.close_row();
        self.row_len_at = self.buf.len();
        self.u64(0);
        self.rows += 1;
        self.row_values = 0;
    }
    #[inline]
    fn value(&mut self, v: ValueRef<'_>) {
        self.row_values += 1;
        let tag = |w: &mut Self, t: u32| w.buf.extend_from_slice(&t.to_le_bytes());
        match v {
            ValueRef::Null => tag(self, V_NULL),
            ValueRef::Integer(i) => {
                tag(self, V_INTEGER);
                self.buf.extend_from_slice(&i.to_le_bytes());
            }
            ValueRef::Real(f) => {
                tag(self, V_REAL);
                self.buf.extend_from_slice(&f.to_le_bytes());
            }
            ValueRef::Text(s) => {
                tag(self, V_TEXT);
                self.bytes(s.as_bytes());
            }
            ValueRef::Blob(b) => {
                tag(self, V_BLOB);
                self.bytes(b);
            }
            ValueRef::Bool(b) => {
                tag(self, V_BOOL);
                self.buf.push(b as u8);
            }
            ValueRef::Json(j) => {
                tag(self, V_JSON);
                self.bytes(j.text().as_bytes());
            }
            ValueRef::Timestamp(t) => {
                tag(self, V_TIMESTAMP);
                self.buf.extend_from_slice(&t.to_le_bytes());
            }
        }
    }
}

/// The column names a query decoded last, with their encoding: a
/// statement run again gets the same shared names without decoding them.
#[derive(Default)]
pub struct ColumnsMemo(Mutex<Option<EncodedColumns>>);

/// Column names with the bytes they were decoded from.
type EncodedColumns = (Vec<u8>, Arc<[String]>);

/// Decode what a [`RowsWriter`] wrote (the wire encoding of [`Rows`]),
/// without going through serde: the hot end of `query`.
pub fn decode_rows(bytes: &[u8]) -> crate::Result<Rows> {
    decode_rows_with(bytes, &ColumnsMemo::default())
}

/// [`decode_rows`], reusing the column names in `memo` when they match.
pub fn decode_rows_with(bytes: &[u8], memo: &ColumnsMemo) -> crate::Result<Rows> {
    struct R<'a>(&'a [u8]);
    fn bad() -> crate::Error {
        crate::Error::incompatible(
            "a query result from the plugin is malformed: rebuild the plugin against this host's backplane-core",
        )
    }
    impl<'a> R<'a> {
        #[inline]
        fn take(&mut self, n: usize) -> crate::Result<&'a [u8]> {
            if self.0.len() < n {
                return Err(bad());
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Ok(a)
        }
        #[inline]
        fn u64(&mut self) -> crate::Result<u64> {
            Ok(u64::from_le_bytes(
                self.take(8)?.try_into().map_err(|_| bad())?,
            ))
        }
        #[inline]
        fn u32(&mut self) -> crate::Result<u32> {
            Ok(u32::from_le_bytes(
                self.take(4)?.try_into().map_err(|_| bad())?,
            ))
        }
        #[inline]
        fn len(&mut self) -> crate::Result<usize> {
            let n = self.u64()? as usize;
            if n > self.0.len() {
                // Every item takes at least one byte: a larger count is corrupt.
                return Err(bad());
            }
            Ok(n)
        }
        #[inline]
        fn string(&mut self) -> crate::Result<String> {
            let n = self.len()?;
            let b = self.take(n)?;
            if b.is_ascii() {
                // SAFETY: ASCII is UTF-8.
                Ok(unsafe { std::str::from_utf8_unchecked(b) }.to_owned())
            } else {
                std::str::from_utf8(b).map(str::to_owned).map_err(|_| bad())
            }
        }
    }
    let mut r = R(bytes);
    let start = r.0;
    let ncols = r.len()?;
    for _ in 0..ncols {
        let n = r.len()?;
        r.take(n)?;
    }
    let encoded = &start[..start.len() - r.0.len()];
    let columns = {
        let mut memo = memo.0.lock().unwrap_or_else(|p| p.into_inner());
        match &*memo {
            Some((bytes, names)) if bytes.as_slice() == encoded => names.clone(),
            _ => {
                let mut c = R(&encoded[8..]);
                let names: Arc<[String]> = (0..ncols)
                    .map(|_| c.string())
                    .collect::<crate::Result<_>>()?;
                *memo = Some((encoded.to_vec(), names.clone()));
                names
            }
        }
    };
    let nrows = r.len()?;
    let mut rows = Vec::with_capacity(nrows);
    for _ in 0..nrows {
        let n = r.len()?;
        let mut row = Vec::with_capacity(n);
        for _ in 0..n {
            row.push(match r.u32()? {
                V_NULL => Value::Null,
                V_INTEGER => Value::Integer(r.u64()? as i64),
                V_REAL => Value::Real(f64::from_bits(r.u64()?)),
                V_TEXT => Value::Text(r.string()?),
                V_BLOB => {
                    let n = r.len()?;
                    Value::Blob(r.take(n)?.to_vec())
                }
                V_BOOL => Value::Bool(r.take(1)?[0] != 0),
                V_JSON => {
                    let t = r.string()?;
                    Value::Json(serde_json::from_str(&t).map_err(|_| bad())?)
                }
                V_TIMESTAMP => Value::Timestamp(r.u64()? as i64),
                _ => return Err(bad()),
            });
        }
        rows.push(row);
    }
    if !r.0.is_empty() {
        return Err(bad());
    }
    Ok(Rows { columns, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_matches_the_wire_encoding() {
        let rows = Rows {
            columns: vec!["a".into(), "bb".into(), "c".into()].into(),
            rows: vec![
                vec![
                    Value::Integer(-3),
                    Value::Text("héllo".into()),
                    Value::Real(2.5),
                ],
                vec![
                    Value::Null,
                    Value::Blob(vec![0, 255]),
                    Value::Json(serde_json::json!({"k": [1, true]})),
                ],
                vec![
                    Value::Bool(true),
                    Value::Timestamp(7),
                    Value::Text(String::new()),
                ],
            ],
        };
        let mut w = RowsWriter::new();
        w.rows(&rows);
        assert_eq!(w.finish(), crate::boundary::encode(&rows));
        let empty = Rows {
            columns: vec!["x".into()].into(),
            rows: vec![],
        };
        let mut w = RowsWriter::new();
        w.rows(&empty);
        assert_eq!(w.finish(), crate::boundary::encode(&empty));
        assert_eq!(
            RowsWriter::new().finish(),
            crate::boundary::encode(&Rows::default())
        );
        let mut b = RowsBuilder::new();
        b.rows(&rows);
        assert_eq!(b.finish(), rows);
        assert_eq!(decode_rows(&crate::boundary::encode(&rows)).unwrap(), rows);
        assert_eq!(
            decode_rows(&crate::boundary::encode(&empty)).unwrap(),
            empty
        );
        let enc = crate::boundary::encode(&rows);
        assert!(decode_rows(&enc[..enc.len() - 1]).is_err());
        assert!(decode_rows(&[0xff; 16]).is_err());
        let memo = ColumnsMemo::default();
        let a = decode_rows_with(&crate::boundary::encode(&rows), &memo).unwrap();
        let b = decode_rows_with(&crate::boundary::encode(&rows), &memo).unwrap();
        assert!(Arc::ptr_eq(&a.columns, &b.columns), "same names are shared");
        assert_eq!(
            decode_rows_with(&crate::boundary::encode(&empty), &memo).unwrap(),
            empty
        );
    }
}
