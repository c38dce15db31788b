//! JSON payloads to Qdrant's gRPC values and back, exactly: integers stay
//! integers, floats stay floats, objects and arrays nest.

use backplane_core::{Error, Result};
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{ListValue, Struct, Value};
use serde_json::{Map, Number, Value as Json};
use std::collections::HashMap;

/// A payload object as gRPC values. An integer beyond the signed 64-bit
/// range (gRPC's integer) is refused rather than stored as a float that
/// would read back as another number; `id` names the record.
pub(crate) fn to_grpc(map: Map<String, Json>, id: &str) -> Result<HashMap<String, Value>> {
    map.into_iter()
        .map(|(k, v)| {
            let v = value(v).map_err(|()| {
                Error::invalid(format!(
                    "record '{id}': the payload under '{k}' holds an integer beyond ±2^63, which a Qdrant server cannot store as a number: store it as a string"
                ))
            })?;
            Ok((k, v))
        })
        .collect()
}

fn value(v: Json) -> std::result::Result<Value, ()> {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Kind::IntegerValue(i),
            (None, Some(_), _) => return Err(()),
            (None, None, Some(f)) => Kind::DoubleValue(f),
            (None, None, None) => return Err(()),
        },
        Json::String(s) => Kind::StringValue(s),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a
                .into_iter()
                .map(value)
                .collect::<std::result::Result<_, _>>()?,
        }),
        Json::Object(o) => Kind::StructValue(Struct {
            fields: o
                .into_iter()
                .map(|(k, v)| Ok((k, value(v)?)))
                .collect::<std::result::Result<_, _>>()?,
        }),
    };
    Ok(Value { kind: Some(kind) })
}

/// A stored payload back to a JSON object.
pub(crate) fn from_grpc(map: HashMap<String, Value>) -> Map<String, Json> {
    map.into_iter().map(|(k, v)| (k, json(v))).collect()
}

fn json(v: Value) -> Json {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::IntegerValue(i)) => Json::Number(i.into()),
        Some(Kind::DoubleValue(f)) => Number::from_f64(f).map_or(Json::Null, Json::Number),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::ListValue(l)) => Json::Array(l.values.into_iter().map(json).collect()),
        Some(Kind::StructValue(s)) => Json::Object(from_grpc(s.fields)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_exactly() {
        let p = json!({"i": -3, "f": 2.0, "g": 0.1, "s": "x", "b": true, "n": null,
                       "a": [1, "two", [3.5], {}], "o": {"deep": {"er": [null]}}, "e": []});
        let Json::Object(m) = p.clone() else {
            unreachable!()
        };
        let back = Json::Object(from_grpc(to_grpc(m, "r").unwrap()));
        assert_eq!(back, p);
        assert!(
            back["f"].is_f64() && back["i"].is_i64(),
            "number kinds kept"
        );
    }

    #[test]
    fn huge_integers_are_refused() {
        let Json::Object(m) = json!({"big": u64::MAX}) else {
            unreachable!()
        };
        let e = to_grpc(m, "r1").unwrap_err();
        assert!(
            e.message().contains("'big'") && e.message().contains("r1"),
            "{e}"
        );
    }
}
