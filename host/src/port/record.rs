//! The records that move between stores and archives: one page type per
//! kind of item, their JSON Lines form (the archive's), and the per-record
//! checksums that verify a copy.
//!
//! A record's checksum is a 128-bit xxh3 of a canonical encoding of its
//! content: JSON documents with their keys sorted and integral numbers
//! written as integers (so a backend that normalises JSON, as PostgreSQL's
//! `jsonb` does, still compares equal), vectors as their exact bits, and a
//! cache entry's time to live reduced to whether it has one (it shrinks
//! while it is copied). An item's [`Digest`] is its record count and the
//! wrapping sum of its records' checksums: the same whatever order the
//! records come in.
//!
//! The file stays whole (past 600 lines with its tests): each record's
//! archive form, its parser and its checksum are one definition, read
//! side by side.

use backplane_core::{CacheEntry, Edge, Error, Message, Node, Value, VectorRecord};
use base64::Engine as _;
use serde_json::{json, Map, Value as Json};
use std::time::Duration;
use xxhash_rust::xxh3::Xxh3;

/// One page of records of one item.
#[derive(Clone, Debug, PartialEq)]
pub enum Records {
    /// Table rows, values in the table's column order.
    Rows(Vec<Vec<Value>>),
    /// Vectors with their payloads.
    Vectors(Vec<VectorRecord>),
    /// Graph nodes.
    Nodes(Vec<Node>),
    /// Graph edges.
    Edges(Vec<Edge>),
    /// Cache keys with values and remaining time to live.
    Entries(Vec<CacheEntry>),
    /// Conversation messages, each with its channel.
    Messages(Vec<(String, Message)>),
}

impl Records {
    /// How many records.
    pub fn len(&self) -> usize {
        match self {
            Records::Rows(v) => v.len(),
            Records::Vectors(v) => v.len(),
            Records::Nodes(v) => v.len(),
            Records::Edges(v) => v.len(),
            Records::Entries(v) => v.len(),
            Records::Messages(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each record's checksum, in order.
    pub fn checksums(&self) -> Vec<u128> {
        fn each<T>(v: &[T], f: impl Fn(&mut Canon, &T)) -> Vec<u128> {
            v.iter()
                .map(|r| {
                    let mut c = Canon::new();
                    f(&mut c, r);
                    c.finish()
                })
                .collect()
        }
        match self {
            Records::Rows(v) => each(v, |c, row| {
                for x in row {
                    c.value(x)
                }
            }),
            Records::Vectors(v) => each(v, |c, r| {
                c.str(&r.id);
                c.u64(r.vector.len() as u64);
                for x in &r.vector {
                    c.bytes(&x.to_bits().to_le_bytes());
                }
                c.opt_str(r.document.as_deref());
                c.json(&r.payload);
            }),
            Records::Nodes(v) => each(v, |c, n| {
                c.str(&n.id);
                c.str(&n.label);
                c.json(&n.properties);
            }),
            Records::Edges(v) => each(v, |c, e| {
                c.str(&e.id);
                c.str(&e.from);
                c.str(&e.to);
                c.str(&e.edge_type);
                c.json(&e.properties);
            }),
            Records::Entries(v) => each(v, |c, e| {
                c.str(&e.key);
                c.bytes(&e.value);
                c.u64(e.ttl.is_some() as u64);
            }),
            Records::Messages(v) => each(v, |c, (channel, m)| {
                c.str(channel);
                c.str(&m.id);
                c.str(&m.role);
                c.str(&m.content);
                c.u64(m.timestamp_ms as u64);
                c.json(&m.metadata);
            }),
        }
    }

    /// The records' identities (a row's primary key values as JSON text),
    /// parallel to [`checksums`](Self::checksums), for naming a record that
    /// differs. `key` holds a row's primary key column positions.
    pub fn ids(&self, key: &[usize]) -> Vec<String> {
        match self {
            Records::Rows(v) => v
                .iter()
                .map(|row| {
                    let k: Vec<Json> = key.iter().map(|&i| value_json(&row[i])).collect();
                    Json::Array(k).to_string()
                })
                .collect(),
            Records::Vectors(v) => v.iter().map(|r| r.id.clone()).collect(),
            Records::Nodes(v) => v.iter().map(|r| r.id.clone()).collect(),
            Records::Edges(v) => v.iter().map(|r| r.id.clone()).collect(),
            Records::Entries(v) => v.iter().map(|r| r.key.clone()).collect(),
            Records::Messages(v) => v.iter().map(|(c, m)| format!("{c}/{}", m.id)).collect(),
        }
    }
}

/// A record count and the order-independent sum of the records' checksums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Digest {
    /// How many records.
    pub records: u64,
    /// The wrapping sum of their checksums, as 32 hex digits.
    #[serde(with = "hex128")]
    pub sum: u128,
}

impl Digest {
    /// Add a page's records.
    pub fn add(&mut self, records: &Records) {
        for c in records.checksums() {
            self.sum = self.sum.wrapping_add(c);
        }
        self.records += records.len() as u64;
    }
}

mod hex128 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:032x}"))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let t = String::deserialize(d)?;
        u128::from_str_radix(&t, 16).map_err(serde::de::Error::custom)
    }
}

/// The canonical encoding of a record, hashed as it is written.
struct Canon(Xxh3);

impl Canon {
    fn new() -> Self {
        Canon(Xxh3::new())
    }
    fn finish(&self) -> u128 {
        self.0.digest128()
    }
    fn u64(&mut self, n: u64) {
        self.0.update(&n.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.0.update(&[0]),
            Some(s) => {
                self.0.update(&[1]);
                self.str(s)
            }
        }
    }
    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.0.update(&[0]),
            Value::Integer(i) => {
                self.0.update(&[1]);
                self.u64(*i as u64)
            }
            Value::Real(f) => {
                self.0.update(&[2]);
                self.u64(f.to_bits())
            }
            Value::Text(t) => {
                self.0.update(&[3]);
                self.str(t)
            }
            Value::Blob(b) => {
                self.0.update(&[4]);
                self.bytes(b)
            }
            Value::Bool(b) => self.0.update(&[5, *b as u8]),
            Value::Json(j) => {
                self.0.update(&[6]);
                self.json(j)
            }
            Value::Timestamp(t) => {
                self.0.update(&[7]);
                self.u64(*t as u64)
            }
        }
    }
    fn json(&mut self, j: &Json) {
        match j {
            Json::Null => self.0.update(&[10]),
            Json::Bool(b) => self.0.update(&[11, *b as u8]),
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.0.update(&[12]);
                    self.u64(i as u64)
                } else if let Some(u) = n.as_u64() {
                    self.0.update(&[13]);
                    self.u64(u)
                } else {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                        // 100.0 and 100 are one number.
                        self.0.update(&[12]);
                        self.u64(f as i64 as u64)
                    } else {
                        self.0.update(&[14]);
                        self.u64(f.to_bits())
                    }
                }
            }
            Json::String(s) => {
                self.0.update(&[15]);
                self.str(s)
            }
            Json::Array(a) => {
                self.0.update(&[16]);
                self.u64(a.len() as u64);
                for x in a {
                    self.json(x)
                }
            }
            Json::Object(o) => {
                self.0.update(&[17]);
                self.u64(o.len() as u64);
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                for k in keys {
                    self.str(k);
                    self.json(&o[k]);
                }
            }
        }
    }
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A typed value as archive JSON: `null`, booleans, integers, floats
/// (always with a fraction or exponent) and strings stand for themselves;
/// blobs, JSON documents, timestamps and non-finite floats are one-key
/// objects (`{"$blob": base64}`, `{"$json": …}`, `{"$ts": micros}`,
/// `{"$real": "NaN" | "inf" | "-inf"}`).
pub fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Integer(i) => json!(i),
        Value::Real(f) if f.is_finite() => json!(f),
        Value::Real(f) => {
            json!({ "$real": if f.is_nan() { "NaN" } else if *f > 0.0 { "inf" } else { "-inf" } })
        }
        Value::Text(t) => json!(t),
        Value::Blob(b) => json!({ "$blob": B64.encode(b) }),
        Value::Bool(b) => json!(b),
        Value::Json(j) => json!({ "$json": j }),
        Value::Timestamp(t) => json!({ "$ts": t }),
    }
}

/// The value of archive JSON written by [`value_json`].
pub fn json_value(j: &Json) -> std::result::Result<Value, String> {
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) if !n.is_f64() => Value::Integer(i),
            _ => Value::Real(n.as_f64().ok_or("a number out of range")?),
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(o) if o.len() == 1 => {
            let (k, v) = o.iter().next().expect("one key");
            match (k.as_str(), v) {
                ("$blob", Json::String(b)) => Value::Blob(
                    B64.decode(b)
                        .map_err(|e| format!("a $blob is not base64 ({e})"))?,
                ),
                ("$json", doc) => Value::Json(doc.clone()),
                ("$ts", Json::Number(n)) => {
                    Value::Timestamp(n.as_i64().ok_or("a $ts is not a whole number")?)
                }
                ("$real", Json::String(s)) => Value::Real(match s.as_str() {
                    "NaN" => f64::NAN,
                    "inf" => f64::INFINITY,
                    "-inf" => f64::NEG_INFINITY,
                    _ => return Err(format!("'{s}' is not a $real")),
                }),
                _ => return Err(format!("an object with key '{k}' is not a value")),
            }
        }
        other => return Err(format!("{other} is not a value")),
    })
}

fn f32s_b64(v: &[f32]) -> String {
    let mut b = Vec::with_capacity(v.len() * 4);
    for x in v {
        b.extend_from_slice(&x.to_le_bytes());
    }
    B64.encode(b)
}

fn b64_f32s(s: &str) -> std::result::Result<Vec<f32>, String> {
    let b = B64
        .decode(s)
        .map_err(|e| format!("a vector is not base64 ({e})"))?;
    if b.len() % 4 != 0 {
        return Err(format!(
            "a vector of {} bytes is not whole 4-byte floats",
            b.len()
        ));
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The archive lines of a page, one JSON document each.
pub fn to_lines(records: &Records) -> Vec<Json> {
    match records {
        Records::Rows(v) => v
            .iter()
            .map(|row| Json::Array(row.iter().map(value_json).collect()))
            .collect(),
        Records::Vectors(v) => v
            .iter()
            .map(|r| {
                json!({
                    "id": r.id,
                    "vector": f32s_b64(&r.vector),
                    "document": r.document,
                    "payload": r.payload,
                })
            })
            .collect(),
        Records::Nodes(v) => v
            .iter()
            .map(|n| json!({"id": n.id, "label": n.label, "properties": n.properties}))
            .collect(),
        Records::Edges(v) => v
            .iter()
            .map(|e| {
                json!({"id": e.id, "from": e.from, "to": e.to, "type": e.edge_type, "properties": e.properties})
            })
            .collect(),
        Records::Entries(v) => {
            let now = now_ms();
            v.iter()
                .map(|e| {
                    json!({
                        "key": e.key,
                        "value": B64.encode(&e.value),
                        "expires_at_ms": e.ttl.map(|t| now.saturating_add(t.as_millis() as i64)),
                    })
                })
                .collect()
        }
        Records::Messages(v) => v
            .iter()
            .map(|(channel, m)| {
                json!({
                    "channel": channel,
                    "id": m.id,
                    "role": m.role,
                    "content": m.content,
                    "timestamp_ms": m.timestamp_ms,
                    "metadata": m.metadata,
                })
            })
            .collect(),
    }
}

/// Which kind of records an item holds, for reading its lines back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A table.
    Table,
    /// A vector collection.
    Collection,
    /// A graph's nodes.
    Nodes,
    /// A graph's edges.
    Edges,
    /// A cache's keys.
    Keys,
    /// A cache's conversations.
    Messages,
}

fn field<'a>(o: &'a Map<String, Json>, k: &str) -> std::result::Result<&'a Json, String> {
    o.get(k).ok_or_else(|| format!("has no \"{k}\""))
}
fn text(o: &Map<String, Json>, k: &str) -> std::result::Result<String, String> {
    field(o, k)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("\"{k}\" is not text"))
}

/// Parse archive lines of `kind` back into a page. An entry that expired
/// since it was written is left out. Errors name what is wrong.
pub fn from_lines(kind: Kind, lines: &[Json]) -> std::result::Result<Records, String> {
    parse_lines(kind, lines, true)
}

/// [`from_lines`], keeping expired entries (to check an archive's digest).
pub fn from_lines_all(kind: Kind, lines: &[Json]) -> std::result::Result<Records, String> {
    parse_lines(kind, lines, false)
}

fn parse_lines(
    kind: Kind,
    lines: &[Json],
    drop_expired: bool,
) -> std::result::Result<Records, String> {
    let obj = |j: &Json| -> std::result::Result<Map<String, Json>, String> {
        j.as_object()
            .cloned()
            .ok_or_else(|| "is not a JSON object".to_string())
    };
    Ok(match kind {
        Kind::Table => Records::Rows(
            lines
                .iter()
                .map(|l| match l {
                    Json::Array(a) => a.iter().map(json_value).collect(),
                    _ => Err("is not a JSON array of values".to_string()),
                })
                .collect::<std::result::Result<_, _>>()?,
        ),
        Kind::Collection => Records::Vectors(
            lines
                .iter()
                .map(|l| {
                    let o = obj(l)?;
                    let document = match field(&o, "document")? {
                        Json::Null => None,
                        Json::String(s) => Some(s.clone()),
                        _ => return Err("\"document\" is not text or null".into()),
                    };
                    Ok(VectorRecord {
                        id: text(&o, "id")?,
                        vector: b64_f32s(&text(&o, "vector")?)?,
                        document,
                        payload: field(&o, "payload")?.clone(),
                    })
                })
                .collect::<std::result::Result<_, String>>()?,
        ),
        Kind::Nodes => Records::Nodes(
            lines
                .iter()
                .map(|l| {
                    let o = obj(l)?;
                    Ok(Node {
                        id: text(&o, "id")?,
                        label: text(&o, "label")?,
                        properties: field(&o, "properties")?.clone(),
                    })
                })
                .collect::<std::result::Result<_, String>>()?,
        ),
        Kind::Edges => Records::Edges(
            lines
                .iter()
                .map(|l| {
                    let o = obj(l)?;
                    Ok(Edge {
                        id: text(&o, "id")?,
                        from: text(&o, "from")?,
                        to: text(&o, "to")?,
                        edge_type: text(&o, "type")?,
                        properties: field(&o, "properties")?.clone(),
                    })
                })
                .collect::<std::result::Result<_, String>>()?,
        ),
        Kind::Keys => {
            let now = now_ms();
            let mut out = Vec::with_capacity(lines.len());
            for l in lines {
                let o = obj(l)?;
                let value = B64
                    .decode(text(&o, "value")?)
                    .map_err(|e| format!("\"value\" is not base64 ({e})"))?;
                let ttl = match field(&o, "expires_at_ms")? {
                    Json::Null => None,
                    j => {
                        let at = j
                            .as_i64()
                            .ok_or("\"expires_at_ms\" is not a whole number")?;
                        if at <= now && drop_expired {
                            continue;
                        }
                        Some(Duration::from_millis(at.saturating_sub(now).max(1) as u64))
                    }
                };
                out.push(CacheEntry {
                    key: text(&o, "key")?,
                    value,
                    ttl,
                });
            }
            Records::Entries(out)
        }
        Kind::Messages => Records::Messages(
            lines
                .iter()
                .map(|l| {
                    let o = obj(l)?;
                    Ok((
                        text(&o, "channel")?,
                        Message {
                            id: text(&o, "id")?,
                            role: text(&o, "role")?,
                            content: text(&o, "content")?,
                            timestamp_ms: field(&o, "timestamp_ms")?
                                .as_i64()
                                .ok_or("\"timestamp_ms\" is not a whole number")?,
                            metadata: field(&o, "metadata")?.clone(),
                        },
                    ))
                })
                .collect::<std::result::Result<_, String>>()?,
        ),
    })
}

/// An archive line that does not parse: one error naming file and line.
pub fn bad_line(file: &str, line: u64, why: &str) -> Error {
    Error::invalid(format!(
        "{file}, line {line}: the record {why}: the archive is damaged; take the backup again, or restore without this store"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn awkward_rows() -> Records {
        Records::Rows(vec![vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Integer(i64::MAX),
            Value::Real(2.0),
            Value::Real(-0.0),
            Value::Real(1e300),
            Value::Real(f64::NAN),
            Value::Real(f64::NEG_INFINITY),
            Value::Text("é 中文 \u{0} \"q\"".into()),
            Value::Text("{\"$blob\": \"x\"}".into()),
            Value::Blob(vec![0, 255, 10]),
            Value::Bool(false),
            Value::Json(json!({"b": [1, 2.5, null], "a": {"$ts": 1}})),
            Value::Timestamp(-1),
        ]])
    }

    #[test]
    fn every_value_survives_its_archive_form() {
        let r = awkward_rows();
        let lines: Vec<Json> = to_lines(&r)
            .iter()
            .map(|l| serde_json::from_str(&l.to_string()).unwrap())
            .collect();
        let back = from_lines(Kind::Table, &lines).unwrap();
        // NaN != NaN: compare the checksums, which hash bits.
        assert_eq!(back.checksums(), r.checksums());
        let Records::Rows(b) = back else { panic!() };
        assert!(matches!(b[0][3], Value::Real(x) if x == 2.0));
        assert!(matches!(b[0][4], Value::Real(x) if x.to_bits() == (-0.0f64).to_bits()));
    }

    #[test]
    fn vectors_keep_their_bits() {
        let v = Records::Vectors(vec![VectorRecord {
            id: "a".into(),
            vector: vec![f32::MIN_POSITIVE, -0.0, 1.0 / 3.0, f32::MAX, 1e-45],
            document: None,
            payload: json!({"n": {"deep": [1]}}),
        }]);
        let back = from_lines(Kind::Collection, &to_lines(&v)).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn checksums_ignore_key_order_and_number_spelling_only() {
        let a = Records::Nodes(vec![Node {
            id: "n".into(),
            label: "L".into(),
            properties: json!({"a": 1, "b": 100.0}),
        }]);
        let b = Records::Nodes(vec![Node {
            id: "n".into(),
            label: "L".into(),
            properties: serde_json::from_str(r#"{"b": 100, "a": 1}"#).unwrap(),
        }]);
        let c = Records::Nodes(vec![Node {
            id: "n".into(),
            label: "L".into(),
            properties: json!({"a": 1, "b": 100.5}),
        }]);
        assert_eq!(a.checksums(), b.checksums());
        assert_ne!(a.checksums(), c.checksums());
        let mut d1 = Digest::default();
        d1.add(&a);
        let mut d2 = Digest::default();
        d2.add(&c);
        assert_ne!(d1, d2);
        assert_eq!(d1.records, 1);
    }

    #[test]
    fn expired_entries_are_left_out_on_read() {
        let lines = vec![
            json!({"key": "gone", "value": "", "expires_at_ms": 1}),
            json!({"key": "kept", "value": "AQ==", "expires_at_ms": null}),
        ];
        let Records::Entries(e) = from_lines(Kind::Keys, &lines).unwrap() else {
            panic!()
        };
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].value, vec![1]);
    }

    #[test]
    fn a_bad_line_says_what_is_wrong() {
        let e = from_lines(Kind::Nodes, &[json!({"id": "x"})]).unwrap_err();
        assert!(e.contains("label"), "{e}");
        let e = json_value(&json!({"$blob": "***"})).unwrap_err();
        assert!(e.contains("base64"), "{e}");
    }
}
