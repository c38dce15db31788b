//! Points on qdrant-client's gRPC messages: ids, the selectors of what a
//! read returns, and records to points and back. The mapping itself (ids
//! to UUIDv5, the reserved `__bp_*` payload keys) is
//! `backplane_qdrant_common::point`, shared with the `qdrant-edge` backend
//! so that a collection means the same on both.

use crate::collections::{Known, SEARCH_VECTOR};
use crate::payload::{from_grpc, to_grpc};
use backplane_core::{Error, Result, VectorRecord};
use backplane_qdrant_common::collection::{keeps_raw, RAW_VECTOR};
use backplane_qdrant_common::point::{self as common, Uuid};
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::vector_output::Vector as OutVector;
use qdrant_client::qdrant::vectors_output::VectorsOptions;
use qdrant_client::qdrant::{
    with_payload_selector, with_vectors_selector, NamedVectors, PointId, PointStruct,
    RetrievedPoint, Value, Vectors, WithPayloadSelector, WithVectorsSelector,
};
use serde_json::{Map, Value as Json};
use std::collections::HashMap;

/// The point id of an application id.
pub(crate) fn point_id(id: &str) -> PointId {
    uuid_point(common::point_id(id))
}

/// A point id from its UUID.
pub(crate) fn uuid_point(u: Uuid) -> PointId {
    PointId {
        point_id_options: Some(PointIdOptions::Uuid(u.to_string())),
    }
}

/// A point id as a scroll cursor and in messages.
pub(crate) fn shown(id: &Option<PointId>) -> String {
    match id.as_ref().and_then(|p| p.point_id_options.as_ref()) {
        Some(PointIdOptions::Uuid(u)) => u.clone(),
        Some(PointIdOptions::Num(n)) => n.to_string(),
        None => "(without id)".to_string(),
    }
}

/// A stored payload split into the original id, the document and the
/// application's payload, checked against the point that holds it.
pub(crate) fn decode(
    payload: HashMap<String, Value>,
    id: &Option<PointId>,
) -> Result<common::Decoded> {
    let uuid = match id.as_ref().and_then(|p| p.point_id_options.as_ref()) {
        Some(PointIdOptions::Uuid(u)) => Uuid::parse_str(u).ok(),
        _ => None,
    };
    common::decode_payload(from_grpc(payload), uuid, &shown(id))
}

/// Payloads returned (`on`) or not.
pub(crate) fn payload_selector(on: bool) -> Option<WithPayloadSelector> {
    Some(WithPayloadSelector {
        selector_options: Some(with_payload_selector::SelectorOptions::Enable(on)),
    })
}

/// No vectors returned.
pub(crate) fn no_vectors() -> Option<WithVectorsSelector> {
    Some(WithVectorsSelector {
        selector_options: Some(with_vectors_selector::SelectorOptions::Enable(false)),
    })
}

/// Record `r` as a point of a collection like `k`, with its stored
/// payload (see `backplane_qdrant_common::point::encode_batch`).
pub(crate) fn to_point(
    k: &Known,
    r: &VectorRecord,
    payload: Map<String, Json>,
) -> Result<PointStruct> {
    let mut vectors = vec![(SEARCH_VECTOR, r.vector.clone())];
    if keeps_raw(k.distance) {
        vectors.push((RAW_VECTOR, r.vector.clone()));
    }
    Ok(PointStruct {
        id: Some(point_id(&r.id)),
        payload: to_grpc(payload, &r.id)?,
        vectors: Some(Vectors::from(NamedVectors::from(vectors))),
    })
}

/// A point read from collection `name` as a record, with the vector as
/// upserted.
pub(crate) fn record(k: &Known, name: &str, p: RetrievedPoint) -> Result<VectorRecord> {
    let d = decode(p.payload, &p.id)?;
    let want = k.stored_vector();
    let vector = match p.vectors.and_then(|v| v.vectors_options) {
        Some(VectorsOptions::Vectors(mut m)) => m.vectors.remove(want).map(|v| v.into_vector()),
        Some(VectorsOptions::Vector(v)) => Some(v.into_vector()),
        None => None,
    };
    match vector {
        Some(OutVector::Dense(v)) => Ok(VectorRecord {
            id: d.id,
            vector: v.data,
            document: d.document,
            payload: d.payload,
        }),
        _ => Err(Error::backend(format!(
            "record '{}' in collection '{name}' came back without its dense vector '{want}'",
            d.id
        ))),
    }
}
