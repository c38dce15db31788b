//! The common filter language on qdrant-edge's filter types: the
//! [`Native`] of [`backplane_qdrant_common::filter`], which holds the
//! translation and its semantics (shared with the `qdrant` backend).

use backplane_qdrant_common::filter::Native;
use qdrant_edge::external::ordered_float::OrderedFloat;
use qdrant_edge::{
    Condition as QCondition, FieldCondition, Filter as QFilter, HasIdCondition, IsEmptyCondition,
    JsonPath, Match, Range as QRange,
};

/// A translation to qdrant-edge's filter.
pub(crate) type Translation = backplane_qdrant_common::filter::Translation<QFilter>;

/// Translate `filter` for a collection whose payloads have `shape`.
pub(crate) fn translate(
    filter: &backplane_core::Filter,
    shape: backplane_qdrant_common::point::PayloadShape,
) -> Translation {
    backplane_qdrant_common::filter::translate::<Edge>(filter, shape)
}

/// qdrant-edge's filter types.
#[derive(Debug)]
pub(crate) enum Edge {}

fn non_empty(v: Vec<QCondition>) -> Option<Vec<QCondition>> {
    (!v.is_empty()).then_some(v)
}

impl Native for Edge {
    type Filter = QFilter;
    type Condition = QCondition;
    type Path = JsonPath;

    fn path(text: &str) -> Option<JsonPath> {
        text.parse().ok()
    }

    fn keyword(path: JsonPath, value: String) -> QCondition {
        QCondition::Field(FieldCondition::new_match(path, Match::from(value)))
    }

    fn boolean(path: JsonPath, value: bool) -> QCondition {
        QCondition::Field(FieldCondition::new_match(path, Match::from(value)))
    }

    fn any_keyword(path: JsonPath, values: Vec<String>) -> QCondition {
        QCondition::Field(FieldCondition::new_match(path, Match::from(values)))
    }

    fn range(
        path: JsonPath,
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    ) -> QCondition {
        QCondition::Field(FieldCondition::new_range(
            path,
            QRange {
                lt: lt.map(OrderedFloat),
                gt: gt.map(OrderedFloat),
                gte: gte.map(OrderedFloat),
                lte: lte.map(OrderedFloat),
            },
        ))
    }

    fn is_empty(path: JsonPath) -> QCondition {
        QCondition::IsEmpty(IsEmptyCondition::from(path))
    }

    fn never() -> QCondition {
        QCondition::HasId(HasIdCondition::from_iter(std::iter::empty()))
    }

    fn nested(filter: QFilter) -> QCondition {
        QCondition::Filter(filter)
    }

    fn filter(
        must: Vec<QCondition>,
        should: Vec<QCondition>,
        must_not: Vec<QCondition>,
    ) -> QFilter {
        QFilter {
            must: non_empty(must),
            should: non_empty(should),
            must_not: non_empty(must_not),
            min_should: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_qdrant_common::point::PayloadShape;
    use serde_json::json;

    #[test]
    fn keys_become_engine_paths() {
        assert_eq!(Edge::path("\"meta\".\"lang\""), "meta.lang".parse().ok());
        assert_eq!(
            Edge::path("\"a b\".\"c[]\""),
            "\"a b\".\"c[]\"".parse().ok()
        );
        let f = backplane_core::Filter::parse(
            &json!({"must": [{"key": "meta.lang", "match": "en"}, {"key": "n", "in": []}]}),
        )
        .unwrap();
        let t = translate(&f, PayloadShape::default());
        assert!(t.exact);
        assert_eq!(t.native.unwrap().must.map(|m| m.len()), Some(2));
    }
}
