//! The graph capability across the boundary: its method list, the plugin
//! side's dispatcher and non-blocking start, and the host side's client. See the
//! [parent module](super) for the list's syntax.

use super::generate;
use crate::ffi::Remote;
use crate::{AsyncGraph, Graph};

/// The graph capability's methods, for everything generated from them.
/// Expands `$then!` with `($args)` followed by the list.
#[doc(hidden)]
#[macro_export]
macro_rules! graph_methods {
    ($($then:ident)::+ ! ($($args:tt)*)) => {
        $($then)::+! { ($($args)*)
            trait Graph;
            async AsyncGraph.as_async;
            1 call fn create_nodes(nodes: &[$crate::NewNode] => Vec<$crate::NewNode>) -> Vec<$crate::Node>;
            2 start fn get_node(id: &str => String) -> Option<$crate::Node>;
            3 call fn update_node(id: &str => String, properties: &$crate::boundary::Json => $crate::boundary::Json) -> $crate::Node;
            4 call fn delete_node(id: &str => String) -> bool;
            5 call fn create_edges(edges: &[$crate::NewEdge] => Vec<$crate::NewEdge>) -> Vec<$crate::Edge>;
            6 call fn get_edge(id: &str => String) -> Option<$crate::Edge>;
            7 call fn update_edge(id: &str => String, properties: &$crate::boundary::Json => $crate::boundary::Json) -> $crate::Edge;
            8 call fn delete_edge(id: &str => String) -> bool;
            9 start fn neighbors(id: &str => String, direction: $crate::Direction, edge_types: &[String] as Vec<String>, depth: u32) -> Vec<$crate::Neighbor>;
            10 call fn shortest_path(from: &str => String, to: &str => String, max_depth: u32) -> Option<$crate::Path>;
            11 call fn edges_of(id: &str => String, direction: $crate::Direction) -> Vec<$crate::Edge>;
            12 call fn find_nodes(query: &$crate::NodeQuery => $crate::NodeQuery) -> Vec<$crate::Node>;
            13 call fn export_nodes(cursor: Option<&str> as Option<String>, limit: usize) -> $crate::Page<$crate::Node>;
            14 call fn export_edges(cursor: Option<&str> as Option<String>, limit: usize) -> $crate::Page<$crate::Edge>;
            15 call fn import_nodes(nodes: &[$crate::Node] => Vec<$crate::Node>, overwrite: bool) -> u64;
            16 call fn import_edges(edges: &[$crate::Edge] => Vec<$crate::Edge>, overwrite: bool) -> u64;
        }
    };
}

/// A graph store in a plugin, seen from the host.
pub(crate) struct GraphClient(pub(crate) Remote);

impl GraphClient {
    fn remote(&self) -> &Remote {
        &self.0
    }
}

graph_methods!(generate!(GraphClient {
    fn as_async(&self) -> Option<&dyn AsyncGraph> {
        self.0.has_async().then_some(self as &dyn AsyncGraph)
    }
}));
