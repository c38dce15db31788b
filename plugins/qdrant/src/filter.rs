//! The common filter language on qdrant-client's gRPC filter messages: the
//! [`Native`] of [`backplane_qdrant_common::filter`], which holds the
//! translation and its semantics (shared with the `qdrant-edge` backend).
//! Paths go to the server as text in Qdrant's JSON path syntax, each part
//! quoted; keyword matches are built as `Keyword` explicitly (the client's
//! `From<String>` would make a string with a space a full-text match).

use backplane_qdrant_common::filter::Native;
use qdrant_client::qdrant::condition::ConditionOneOf;
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::{
    Condition, FieldCondition, Filter, HasIdCondition, IsEmptyCondition, Match, Range,
    RepeatedStrings,
};

/// qdrant-client's filter messages.
#[derive(Debug)]
pub(crate) enum Grpc {}

fn field(key: String, m: MatchValue) -> Condition {
    Condition {
        condition_one_of: Some(ConditionOneOf::Field(FieldCondition {
            key,
            r#match: Some(Match {
                match_value: Some(m),
            }),
            ..FieldCondition::default()
        })),
    }
}

impl Native for Grpc {
    type Filter = Filter;
    type Condition = Condition;
    type Path = String;

    fn path(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    fn keyword(path: String, value: String) -> Condition {
        field(path, MatchValue::Keyword(value))
    }

    fn boolean(path: String, value: bool) -> Condition {
        field(path, MatchValue::Boolean(value))
    }

    fn any_keyword(path: String, values: Vec<String>) -> Condition {
        field(
            path,
            MatchValue::Keywords(RepeatedStrings { strings: values }),
        )
    }

    fn range(
        path: String,
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    ) -> Condition {
        Condition {
            condition_one_of: Some(ConditionOneOf::Field(FieldCondition {
                key: path,
                range: Some(Range { lt, gt, gte, lte }),
                ..FieldCondition::default()
            })),
        }
    }

    fn is_empty(path: String) -> Condition {
        Condition {
            condition_one_of: Some(ConditionOneOf::IsEmpty(IsEmptyCondition { key: path })),
        }
    }

    fn never() -> Condition {
        Condition {
            condition_one_of: Some(ConditionOneOf::HasId(HasIdCondition { has_id: Vec::new() })),
        }
    }

    fn nested(filter: Filter) -> Condition {
        Condition {
            condition_one_of: Some(ConditionOneOf::Filter(filter)),
        }
    }

    fn filter(must: Vec<Condition>, should: Vec<Condition>, must_not: Vec<Condition>) -> Filter {
        Filter {
            must,
            should,
            must_not,
            min_should: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_qdrant_common::filter::translate;
    use backplane_qdrant_common::point::PayloadShape;
    use serde_json::json;

    #[test]
    fn strings_with_spaces_stay_keywords() {
        let f = backplane_core::Filter::parse(
            &json!({"must": [{"key": "meta.title", "match": "two words"}]}),
        )
        .unwrap();
        let t = translate::<Grpc>(&f, PayloadShape::default());
        assert!(t.exact);
        let Some(ConditionOneOf::Field(c)) = &t.native.unwrap().must[0].condition_one_of else {
            panic!("a field condition")
        };
        assert_eq!(c.key, "\"meta\".\"title\"");
        assert_eq!(
            c.r#match.as_ref().unwrap().match_value,
            Some(MatchValue::Keyword("two words".into()))
        );
    }
}
