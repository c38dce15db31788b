//! Typed values that cross the plugin boundary: SQL parameters and columns,
//! plus the helpers that carry JSON through the binary wire format.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One typed value: a SQL parameter or a column of a result row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
    /// A boolean. SQLite stores it as 0/1 and reads it back as `Integer`
    /// unless the column is declared `BOOLEAN`.
    Bool(bool),
    /// A JSON document.
    Json(#[serde(with = "json_text")] serde_json::Value),
    /// A point in time: microseconds since 1970-01-01 00:00:00 UTC.
    Timestamp(i64),
}

impl Value {
    /// The value's type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Integer(_) => "integer",
            Value::Real(_) => "real",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
            Value::Bool(_) => "bool",
            Value::Json(_) => "json",
            Value::Timestamp(_) => "timestamp",
        }
    }
    /// `Some(i)` for integers (and bools as 0/1).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) | Value::Timestamp(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }
    /// `Some(f)` for reals and integers.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Real(f) => Some(*f),
            Value::Integer(i) => Some(*i as f64),
            _ => None,
        }
    }
    /// `Some(s)` for text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
    /// `Some(bytes)` for blobs.
    pub fn as_blob(&self) -> Option<&[u8]> {
        match self {
            Value::Blob(b) => Some(b),
            _ => None,
        }
    }
    /// `Some(b)` for bools, and for the integers 0 and 1.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Integer(0) => Some(false),
            Value::Integer(1) => Some(true),
            _ => None,
        }
    }
    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Integer(i) => write!(f, "{i}"),
            Value::Real(r) => write!(f, "{r}"),
            Value::Text(s) => f.write_str(s),
            Value::Blob(b) => write!(f, "<{} bytes>", b.len()),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Json(j) => write!(f, "{j}"),
            Value::Timestamp(t) => write!(f, "@{t}us"),
        }
    }
}

macro_rules! from_impls {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for Value { fn from($v: $t) -> Self { $e } })*
    };
}
from_impls! {
    i64 => |v| Value::Integer(v),
    i32 => |v| Value::Integer(v as i64),
    u32 => |v| Value::Integer(v as i64),
    f64 => |v| Value::Real(v),
    f32 => |v| Value::Real(v as f64),
    bool => |v| Value::Bool(v),
    String => |v| Value::Text(v),
    &str => |v| Value::Text(v.to_string()),
    &String => |v| Value::Text(v.clone()),
    Vec<u8> => |v| Value::Blob(v),
    &[u8] => |v| Value::Blob(v.to_vec()),
    serde_json::Value => |v| Value::Json(v),
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Serde adapter: a `serde_json::Value` written as its JSON text, so that
/// binary formats without self-description can carry it.
pub mod json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Write `v` as JSON text.
    pub fn serialize<S: Serializer>(v: &serde_json::Value, s: S) -> Result<S::Ok, S::Error> {
        serde_json::to_string(v)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
    /// Read JSON text back.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter: `Option<serde_json::Value>` written as optional JSON text.
pub mod opt_json_text {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Write `v` as optional JSON text.
    pub fn serialize<S: Serializer>(
        v: &Option<serde_json::Value>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
    /// Read optional JSON text back.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<serde_json::Value>, D::Error> {
        let text = <Option<String>>::deserialize(d)?;
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(serde::de::Error::custom)
    }
}
