//! How a Backplane collection and record are laid out in Chroma: the
//! collection's name and metadata, and each record's metadata.
//!
//! A record's metadata holds:
//! - [`PAYLOAD`]: the payload as JSON text, exactly as given (Chroma's
//!   metadata is flat, of scalars and flat lists, so the payload itself
//!   could not round-trip);
//! - the payload's scalar leaves under their dotted paths (`user`,
//!   `meta.lang`), for Chroma's `where` to filter on ([`crate::filter`]);
//!   a payload those cannot describe exactly (it holds a list, a key with
//!   `.`, a reserved key, an integer beyond ±2⁶³) has no leaves but
//!   [`OPAQUE`]` = true`, and every pushed-down filter lets it through to
//!   the plugin's own evaluation;
//! - [`RAW`]: in a cosine collection, the vector as given (Chroma
//!   normalises the searched copy, which then differs in the last bits);
//! - [`NO_DOC`]: the record has no document (Chroma keeps a previous
//!   document when an upsert sends none, so "no document" is said here and
//!   the document sent is `""`); sent as null (removed) when it has one.

use backplane_core::{Distance, Error, Result, VectorRecord};
use base64::Engine;
use serde_json::{Map, Value as Json};

/// Record metadata: the payload as JSON text.
pub(crate) const PAYLOAD: &str = "bp:payload";
/// Record metadata: the raw vector, base64 of little-endian f32s.
pub(crate) const RAW: &str = "bp:raw";
/// Record metadata: the record has no document.
pub(crate) const NO_DOC: &str = "bp:nodoc";
/// Record metadata: the payload's leaves are not mirrored.
pub(crate) const OPAQUE: &str = "bp:opaque";
/// Collection metadata: the dimension.
pub(crate) const DIMENSION: &str = "bp:dimension";
/// Collection metadata: the distance, as plugins.toml names it.
pub(crate) const DISTANCE: &str = "bp:distance";

/// Whether a payload key may be mirrored as a Chroma metadata key (and
/// a filter on it pushed down): not empty, not Chroma's (`#document`,
/// `chroma:…`), not an operator (`$and`), not this plugin's (`bp:…`).
pub(crate) fn plain_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('#')
        && !key.starts_with('$')
        && !key.starts_with("bp:")
        && !key.starts_with("chroma:")
}

/// The Chroma collection name of collection `name` under `prefix`:
/// `prefix + name` when Chroma accepts it (3-512 characters, first and last
/// a letter or digit), otherwise `prefix + "bp." + name + ".bp"` (a name
/// never holds a `.`, so the two cannot meet).
pub(crate) fn chroma_name(prefix: &str, name: &str) -> String {
    let plain = format!("{prefix}{name}");
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if plain.len() >= 3 && alnum(plain.chars().next()) && alnum(plain.chars().last()) {
        plain
    } else {
        format!("{prefix}bp.{name}.bp")
    }
}

/// The collection name a Chroma collection `chroma` has under `prefix`,
/// if it is one ([`chroma_name`] reversed).
pub(crate) fn backplane_name(prefix: &str, chroma: &str) -> Option<String> {
    let rest = chroma.strip_prefix(prefix)?;
    let name = if rest.contains('.') {
        rest.strip_prefix("bp.")?.strip_suffix(".bp")?
    } else {
        rest
    };
    backplane_core::vector::validate_collection_name(name)
        .ok()
        .map(|_| name.to_string())
}

/// Chroma's name of a distance (`configuration.hnsw.space`).
pub(crate) fn space(distance: Distance) -> &'static str {
    match distance {
        Distance::Cosine => "cosine",
        Distance::Dot => "ip",
        Distance::Euclidean => "l2",
    }
}

/// The distance of a Chroma space.
pub(crate) fn from_space(space: &str) -> Option<Distance> {
    match space {
        "cosine" => Some(Distance::Cosine),
        "ip" => Some(Distance::Dot),
        "l2" => Some(Distance::Euclidean),
        _ => None,
    }
}

/// Base64 of `v`'s little-endian bytes.
fn encode_raw(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// [`encode_raw`] reversed.
fn decode_raw(text: &str) -> Option<Vec<f32>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Put `value`'s scalar leaves under `path` into `out`; false when the
/// value cannot be mirrored exactly (see the module docs).
fn leaves(path: &str, value: &Json, out: &mut Map<String, Json>) -> bool {
    match value {
        Json::Null => true,
        Json::Bool(_) | Json::String(_) => {
            out.insert(path.to_string(), value.clone());
            true
        }
        Json::Number(n) => {
            if n.as_i64().is_none() && n.as_u64().is_some() {
                return false;
            }
            out.insert(path.to_string(), value.clone());
            true
        }
        Json::Array(_) => false,
        Json::Object(m) => m.iter().all(|(k, v)| {
            plain_key(k) && !k.contains('.') && {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(&p, v, out)
            }
        }),
    }
}

/// The metadata of `record` in a collection of `distance`; keys of the
/// stored record's metadata `old` that the new one lacks are set to null,
/// which removes them (Chroma's upsert merges metadata).
pub(crate) fn metadata(
    record: &VectorRecord,
    distance: Distance,
    old: Option<&Map<String, Json>>,
) -> Map<String, Json> {
    let mut m = Map::new();
    if !record.payload.is_null() && !leaves("", &record.payload, &mut m) {
        m.clear();
        m.insert(OPAQUE.into(), Json::Bool(true));
    }
    m.insert(PAYLOAD.into(), Json::String(record.payload.to_string()));
    if distance == Distance::Cosine {
        m.insert(RAW.into(), Json::String(encode_raw(&record.vector)));
    }
    // Always said, true or null (null removes it), so two upserts racing
    // on one id never leave a document marked absent.
    m.insert(
        NO_DOC.into(),
        if record.document.is_none() {
            Json::Bool(true)
        } else {
            Json::Null
        },
    );
    if let Some(old) = old {
        for k in old.keys() {
            if !m.contains_key(k) {
                m.insert(k.clone(), Json::Null);
            }
        }
    }
    m
}

/// A record as Chroma returned it: `embedding` (if asked for),
/// `document` and `metadata`. A record written by another tool (no
/// [`PAYLOAD`]) has its metadata as its payload.
pub(crate) fn decode(
    id: String,
    embedding: Option<Vec<f32>>,
    document: Option<String>,
    metadata: Option<Map<String, Json>>,
) -> Result<VectorRecord> {
    let damaged = |what: &str| {
        Error::backend(format!(
            "record '{id}' has a damaged `{what}` in its Chroma metadata: re-upsert the record"
        ))
    };
    let mut metadata = metadata.unwrap_or_default();
    let vector = match metadata.get(RAW) {
        Some(Json::String(s)) => decode_raw(s).ok_or_else(|| damaged(RAW))?,
        _ => embedding.unwrap_or_default(),
    };
    let no_doc = metadata.get(NO_DOC) == Some(&Json::Bool(true));
    let payload = match metadata.remove(PAYLOAD) {
        Some(Json::String(s)) => serde_json::from_str(&s).map_err(|_| damaged(PAYLOAD))?,
        Some(_) => return Err(damaged(PAYLOAD)),
        None => Json::Object(metadata),
    };
    Ok(VectorRecord {
        id,
        vector,
        document: if no_doc { None } else { document },
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_round_trip() {
        for (prefix, name) in [
            ("", "notes"),
            ("", "a"),
            ("", "_x"),
            ("app-", "b_"),
            ("p.", "ok"),
        ] {
            let c = chroma_name(prefix, name);
            assert_eq!(backplane_name(prefix, &c).as_deref(), Some(name), "{c}");
        }
        assert_eq!(chroma_name("", "a"), "bp.a.bp");
        assert_eq!(backplane_name("", "my.collection"), None);
        assert_eq!(backplane_name("app-", "other"), None);
    }

    #[test]
    fn leaves_are_mirrored_or_the_payload_is_opaque() {
        let r = VectorRecord::new("a", vec![0.1, 0.2])
            .with_payload(json!({"user": "al", "m": {"n": 1, "f": 0.5}, "z": null}));
        let m = metadata(&r, Distance::Euclidean, None);
        assert_eq!(m["user"], json!("al"));
        assert_eq!(m["m.n"], json!(1));
        assert!(!m.contains_key(OPAQUE) && !m.contains_key(RAW));
        let r = r.with_payload(json!({"tags": ["a"], "user": "al"}));
        let m = metadata(&r, Distance::Cosine, None);
        assert_eq!(m[OPAQUE], json!(true));
        assert!(!m.contains_key("user"));
        let back = decode("a".into(), None, None, Some(m)).unwrap();
        assert_eq!(back.vector, vec![0.1, 0.2]);
        assert_eq!(back.payload, json!({"tags": ["a"], "user": "al"}));
        assert_eq!(back.document, None);
    }

    #[test]
    fn removed_keys_are_nulled() {
        let old = metadata(
            &VectorRecord::new("a", vec![1.0]).with_payload(json!({"x": 1})),
            Distance::Dot,
            None,
        );
        let new = metadata(
            &VectorRecord::new("a", vec![1.0]).with_document("d"),
            Distance::Dot,
            Some(&old),
        );
        assert_eq!(new["x"], Json::Null);
        assert_eq!(new[NO_DOC], Json::Null);
    }
}
