//! Which operations are safe to repeat, per capability: the ones a retry
//! may run again after an `Unavailable` error without changing what the
//! store holds beyond what one successful call would (the call may have
//! reached the backend before the error did).
//!
//! Not safe, and never retried: statements and transactions (a statement
//! may have run and committed before the connection broke), creating
//! nodes, edges or messages with ids the backend assigns (a second call
//! makes a second one), creating or dropping a collection (the repeat
//! fails with "already exists" / "not found" although the first call
//! worked), and the steps of an import that open or close it.
//!
//! Safe, with one caveat: `delete`-like calls return whether something was
//! there; repeated after a lost reply they may say "nothing was there"
//! although the first call removed it. What the store holds is the same.

use crate::layer::{ops, Op};
use backplane_core::Capability;

/// The operations of `cap` a retry may repeat.
pub fn safe_to_repeat(cap: Capability) -> &'static [&'static str] {
    match cap {
        Capability::Relational => &[
            "query",
            "migrate",
            "tables",
            "describe",
            "backup",
            "restore",
            "export_rows",
            "release_snapshot",
        ],
        Capability::Vector => &[
            "list_collections",
            "collection_info",
            "upsert",
            "get",
            "delete",
            "delete_where",
            "count",
            "search",
            "search_batch",
            "scroll",
        ],
        Capability::Cache => &[
            "get",
            "set",
            "delete",
            "exists",
            "expire",
            "get_many",
            "set_many",
            "recent",
            "remove_message",
            "clear",
            "stats",
            "list_channels",
            "scan_keys",
            "import_entries",
        ],
        Capability::Graph => &[
            "get_node",
            "update_node",
            "delete_node",
            "get_edge",
            "update_edge",
            "delete_edge",
            "neighbors",
            "shortest_path",
            "edges_of",
            "find_nodes",
            "export_nodes",
            "export_edges",
            "import_nodes",
            "import_edges",
        ],
    }
}

/// The operations of `cap` a retry must not repeat: with
/// [`safe_to_repeat`], every operation once (the test says so), so a new
/// operation is placed on purpose.
pub fn not_safe_to_repeat(cap: Capability) -> &'static [&'static str] {
    match cap {
        Capability::Relational => &[
            "execute",
            "execute_many",
            "transaction",
            "import_begin",
            "import_rows",
            "import_end",
            "export_snapshot",
        ],
        Capability::Vector => &["create_collection", "drop_collection"],
        Capability::Cache => &["add_message", "add_messages", "import_messages"],
        Capability::Graph => &["create_nodes", "create_edges"],
    }
}

/// The operation of `cap` named `name`, if it has one.
pub fn op_named(cap: Capability, name: &str) -> Option<Op> {
    ops(cap).iter().copied().find(|o| o.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_safe_operation_exists_and_unsafe_ones_are_left_out() {
        for cap in Capability::ALL {
            for name in safe_to_repeat(cap) {
                assert!(
                    op_named(cap, name).is_some(),
                    "{cap} has no operation {name}"
                );
            }
        }
        let rel = safe_to_repeat(Capability::Relational);
        for w in ["execute", "execute_many", "transaction"] {
            assert!(!rel.contains(&w));
        }
        assert!(!safe_to_repeat(Capability::Cache).contains(&"add_message"));
        assert!(!safe_to_repeat(Capability::Graph).contains(&"create_nodes"));
        for cap in Capability::ALL {
            for o in ops(cap) {
                let (s, n) = (
                    safe_to_repeat(cap).contains(&o.name),
                    not_safe_to_repeat(cap).contains(&o.name),
                );
                assert!(
                    s ^ n,
                    "{cap} {}: say once whether a retry may repeat it",
                    o.name
                );
            }
        }
    }
}
