//! How a [`VectorRecord`] becomes a Qdrant point and back: the id mapping
//! and the reserved payload keys.
//!
//! **Ids.** Qdrant point ids are unsigned integers or UUIDs; the
//! application's ids are arbitrary strings. Each string id maps to the
//! UUID version 5 of its UTF-8 bytes in the namespace [`ID_NAMESPACE`]
//! (RFC 4122 name-based, SHA-1): the same id always gives the same point,
//! so an upsert replaces, in every process and after every restart. Two
//! different ids meet on one point with probability about n²/2¹²³ for n
//! records (below 10⁻¹⁹ at a billion), and the original id is kept in the
//! payload and compared on every read, so even that would be detected
//! rather than return the wrong record.
//!
//! **Reserved payload keys** (top-level, prefix `__bp_`), next to the
//! application's own keys so that filters address the latter unchanged:
//!
//! | key | holds |
//! |---|---|
//! | `__bp_id` | the original string id |
//! | `__bp_doc` | the document, when the record has one |
//! | `__bp_empty` | dotted paths whose value is `[]` (see [`crate::filter`]), when any |
//! | `__bp_null` | `true` when the record's payload is JSON `null` rather than an object |
//!
//! A record whose payload has a top-level key starting with `__bp_` is
//! refused with `InvalidInput`. Reads strip the reserved keys.

use backplane_core::vector::validate_records;
use backplane_core::{Error, Result, VectorRecord};
use serde_json::{Map, Value as Json};
pub use uuid::Uuid;

/// The prefix of every reserved payload key.
pub const RESERVED_PREFIX: &str = "__bp_";
/// The original id.
pub const KEY_ID: &str = "__bp_id";
/// The document.
pub const KEY_DOC: &str = "__bp_doc";
/// Paths holding an empty array.
pub const KEY_EMPTY: &str = "__bp_empty";
/// Marks a `null` payload.
pub const KEY_NULL: &str = "__bp_null";

/// The UUID namespace of Backplane's point ids: the UUIDv5 of
/// `backplane.vector.id` in the RFC 4122 URL namespace. Fixed forever:
/// changing it would orphan every stored point.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6d3d_050f_952f_59da_9575_bcee_885c_54be);

/// The point id of an application id.
pub fn point_id(id: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, id.as_bytes())
}

/// A scroll cursor (a point id as text) back to the point id.
pub fn parse_cursor(cursor: &str) -> Result<Uuid> {
    Uuid::parse_str(cursor).map_err(|_| {
        Error::invalid(format!(
            "scroll cursor '{cursor}' was not returned by this store: pass the previous page's next_cursor, or no cursor to start from the beginning"
        ))
    })
}

/// What upsert learns about a batch's payloads, for the filter translation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PayloadShape {
    /// Some payload has a top-level key containing a `.`.
    pub dotted_keys: bool,
    /// Some payload holds an empty array at a path filters can reach.
    pub empty_arrays: bool,
}

impl PayloadShape {
    /// What either shape has.
    pub fn join(self, other: PayloadShape) -> PayloadShape {
        PayloadShape {
            dotted_keys: self.dotted_keys || other.dotted_keys,
            empty_arrays: self.empty_arrays || other.empty_arrays,
        }
    }
}

/// Check that no user key is reserved.
pub fn check_payload(record: &VectorRecord) -> Result<()> {
    if let Some(obj) = record.payload.as_object() {
        if let Some(k) = obj.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            return Err(Error::invalid(format!(
                "record '{}' has the payload key '{k}', but keys starting with '{RESERVED_PREFIX}' are reserved by Backplane's Qdrant backends: rename the key",
                record.id
            )));
        }
    }
    Ok(())
}

/// Paths (as a filter names them) whose value is an empty array: top-level
/// keys, and dotted paths through nested objects whose keys have no `.`.
fn empty_paths(obj: &Map<String, Json>, prefix: Option<&str>, out: &mut Vec<String>) {
    for (k, v) in obj {
        if prefix.is_some() && k.contains('.') {
            // A filter key "a.b.c" is split at every dot, so a nested key
            // with a dot cannot be reached.
            continue;
        }
        let path = match prefix {
            Some(p) => format!("{p}.{k}"),
            None => k.clone(),
        };
        match v {
            Json::Array(a) if a.is_empty() => out.push(path),
            Json::Object(inner) if prefix.is_some() || !k.contains('.') => {
                empty_paths(inner, Some(&path), out)
            }
            _ => {}
        }
    }
}

/// The stored payloads of a batch of records for a collection of
/// `dimension`, in order, and the shape they add to the collection. The
/// whole batch is checked first (vectors, ids, [`check_payload`]), so a
/// mistake anywhere means nothing is written.
pub fn encode_batch(
    records: &[VectorRecord],
    dimension: u32,
) -> Result<(Vec<Map<String, Json>>, PayloadShape)> {
    validate_records(records, dimension)?;
    records.iter().try_for_each(check_payload)?;
    let mut shape = PayloadShape::default();
    let payloads = records
        .iter()
        .map(|r| {
            let (payload, s) = encode_payload(r);
            shape = shape.join(s);
            payload
        })
        .collect();
    Ok((payloads, shape))
}

/// The stored payload of a record, and what it adds to the collection's
/// shape.
pub fn encode_payload(record: &VectorRecord) -> (Map<String, Json>, PayloadShape) {
    let mut shape = PayloadShape::default();
    let mut map = match &record.payload {
        Json::Object(m) => m.clone(),
        _ => Map::new(),
    };
    shape.dotted_keys = map.keys().any(|k| k.contains('.'));
    let mut empty = Vec::new();
    empty_paths(&map, None, &mut empty);
    empty.sort();
    shape.empty_arrays = !empty.is_empty();
    map.insert(KEY_ID.into(), Json::String(record.id.clone()));
    if let Some(doc) = &record.document {
        map.insert(KEY_DOC.into(), Json::String(doc.clone()));
    }
    if !empty.is_empty() {
        map.insert(
            KEY_EMPTY.into(),
            Json::Array(empty.into_iter().map(Json::String).collect()),
        );
    }
    if record.payload.is_null() {
        map.insert(KEY_NULL.into(), Json::Bool(true));
    }
    (map, shape)
}

/// A stored payload split into the original id, the document and the
/// application's payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoded {
    /// The original id.
    pub id: String,
    /// The document.
    pub document: Option<String>,
    /// The application's payload.
    pub payload: Json,
}

/// Split a stored payload. `point` is the point's id as Qdrant holds it
/// (`None` for an integer id) and `shown` the same as text, for errors:
/// a payload without an original id, or whose id maps to another point,
/// was not written by a Backplane Qdrant backend.
pub fn decode_payload(
    mut map: Map<String, Json>,
    point: Option<Uuid>,
    shown: &dyn std::fmt::Display,
) -> Result<Decoded> {
    let id = match map.remove(KEY_ID) {
        Some(Json::String(s)) => s,
        _ => {
            return Err(Error::backend(format!(
                "point {shown} has no '{KEY_ID}' in its payload: it was not written by a Backplane Qdrant backend"
            )))
        }
    };
    if point != Some(point_id(&id)) {
        return Err(Error::backend(format!(
            "point {shown} holds id '{id}', which maps to another point: the collection was written by something other than a Backplane Qdrant backend"
        )));
    }
    let document = match map.remove(KEY_DOC) {
        Some(Json::String(s)) => Some(s),
        _ => None,
    };
    let null = map.remove(KEY_NULL).is_some();
    map.retain(|k, _| !k.starts_with(RESERVED_PREFIX));
    Ok(Decoded {
        id,
        document,
        payload: if null { Json::Null } else { Json::Object(map) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_map_to_fixed_uuids() {
        // Stable across versions and machines: these values are on disk.
        assert_eq!(
            point_id("a"),
            Uuid::parse_str("7b379a58-a350-5da1-9e39-a516c22c6785").unwrap()
        );
        assert_eq!(point_id("a"), point_id("a"));
        assert_ne!(point_id("a"), point_id("b"));
        assert_ne!(point_id("a"), point_id("A"));
        assert_ne!(point_id(""), point_id(" "));
        // The namespace is the UUIDv5 of its name in the URL namespace.
        assert_eq!(
            ID_NAMESPACE,
            Uuid::new_v5(&Uuid::NAMESPACE_URL, b"backplane.vector.id")
        );
        let c = point_id("x").to_string();
        assert_eq!(parse_cursor(&c).unwrap(), point_id("x"));
        assert!(parse_cursor("r07").is_err());
    }

    #[test]
    fn payload_round_trip() {
        for (payload, doc) in [
            (json!({"a": 1, "b": [1, 2], "c": {"d": "x"}}), Some("text")),
            (json!({}), None),
            (json!(null), Some("only a document")),
            (
                json!({"tags": [], "m": {"e": [], "f.g": []}, "h.i": []}),
                None,
            ),
        ] {
            let mut r = VectorRecord::new("id-1", vec![1.0]).with_payload(payload.clone());
            if let Some(d) = doc {
                r = r.with_document(d);
            }
            check_payload(&r).unwrap();
            let (map, shape) = encode_payload(&r);
            let d = decode_payload(map.clone(), Some(point_id("id-1")), &"p").unwrap();
            let e = decode_payload(map.clone(), Some(point_id("id-2")), &"p").unwrap_err();
            assert!(e.message().contains("maps to another point"), "{e}");
            assert_eq!(d.id, "id-1");
            assert_eq!(d.document.as_deref(), doc);
            assert_eq!(d.payload, payload);
            if payload.get("tags").is_some() {
                assert_eq!(
                    map[KEY_EMPTY],
                    json!(["h.i", "m.e", "tags"]),
                    "the empty arrays a filter can reach"
                );
                assert!(shape.empty_arrays && shape.dotted_keys);
            } else {
                assert_eq!(shape, PayloadShape::default());
            }
        }
    }

    #[test]
    fn reserved_keys_are_refused() {
        let r = VectorRecord::new("x", vec![1.0]).with_payload(json!({"__bp_id": "y"}));
        let e = check_payload(&r).unwrap_err();
        assert!(
            e.message().contains("__bp_id") && e.message().contains("rename"),
            "{e}"
        );
        let ok = VectorRecord::new("w", vec![1.0]).with_payload(json!({"a.b": 1}));
        let e = encode_batch(&[ok.clone(), r], 1).unwrap_err();
        assert!(e.message().contains("record 'x'"), "{e}");
        let (payloads, shape) = encode_batch(&[ok], 1).unwrap();
        assert_eq!(payloads[0][KEY_ID], json!("w"));
        assert!(shape.dotted_keys && !shape.empty_arrays);
    }
}
