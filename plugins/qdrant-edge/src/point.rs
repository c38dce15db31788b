//! Point ids and payloads on qdrant-edge's types. The mapping itself (ids
//! to UUIDv5, the reserved `__bp_*` payload keys) is
//! [`backplane_qdrant_common::point`], shared with the `qdrant` backend so
//! that a collection means the same on both.

use backplane_core::Result;
use backplane_qdrant_common::point::{self as common, Decoded};
use qdrant_edge::external::uuid::Uuid;
use qdrant_edge::PointId;
use serde_json::{Map, Value as Json};

/// The point id of an application id.
pub(crate) fn point_id(id: &str) -> PointId {
    PointId::Uuid(uuid(common::point_id(id)))
}

/// The same UUID as the engine's type (the common crate and qdrant-edge
/// may link different `uuid` releases; the bytes are the same).
fn uuid(u: common::Uuid) -> Uuid {
    Uuid::from_bytes(*u.as_bytes())
}

/// A scroll cursor (a point id as text) back to the point id.
pub(crate) fn parse_cursor(cursor: &str) -> Result<PointId> {
    common::parse_cursor(cursor).map(|u| PointId::Uuid(uuid(u)))
}

/// A point id as a scroll cursor.
pub(crate) fn cursor(id: &PointId) -> String {
    match id {
        PointId::Uuid(u) => u.to_string(),
        PointId::NumId(n) => n.to_string(),
    }
}

/// A stored payload split into the original id, the document and the
/// application's payload, checked against the point that holds it.
pub(crate) fn decoded(payload: Option<Map<String, Json>>, id: &PointId) -> Result<Decoded> {
    let point = match id {
        PointId::Uuid(u) => Some(common::Uuid::from_bytes(*u.as_bytes())),
        PointId::NumId(_) => None,
    };
    common::decode_payload(payload.unwrap_or_default(), point, &cursor(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_cursors_round_trip() {
        assert_eq!(
            point_id("a"),
            PointId::Uuid(Uuid::parse_str("7b379a58-a350-5da1-9e39-a516c22c6785").unwrap())
        );
        let c = cursor(&point_id("x"));
        assert_eq!(parse_cursor(&c).unwrap(), point_id("x"));
        let e = decoded(None, &PointId::NumId(7)).unwrap_err();
        assert!(e.message().contains("point 7"), "{e}");
    }
}
