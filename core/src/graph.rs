//! The graph capability: nodes and edges with JSON properties, traversal,
//! shortest path, search and paged export.

use crate::{Filter, Health, Result};
use serde::{Deserialize, Serialize};

/// A node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Unique id.
    pub id: String,
    /// Its label (kind), e.g. `person`.
    pub label: String,
    /// Properties, a JSON object.
    #[serde(with = "crate::value::json_text")]
    pub properties: serde_json::Value,
}

/// A node to create. Without an id, the backend assigns one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewNode {
    /// Id to use, or `None` to have one assigned.
    pub id: Option<String>,
    /// Label.
    pub label: String,
    /// Properties, a JSON object.
    #[serde(with = "crate::value::json_text")]
    pub properties: serde_json::Value,
}

impl NewNode {
    /// A node with a label and properties.
    pub fn new(label: impl Into<String>, properties: serde_json::Value) -> Self {
        NewNode {
            id: None,
            label: label.into(),
            properties,
        }
    }
    /// With an explicit id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// A directed, typed edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// Unique id.
    pub id: String,
    /// Source node id.
    pub from: String,
    /// Target node id.
    pub to: String,
    /// Relation type, e.g. `knows`.
    pub edge_type: String,
    /// Properties, a JSON object.
    #[serde(with = "crate::value::json_text")]
    pub properties: serde_json::Value,
}

/// An edge to create. Without an id, the backend assigns one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEdge {
    /// Id to use, or `None`.
    pub id: Option<String>,
    /// Source node id; must exist.
    pub from: String,
    /// Target node id; must exist.
    pub to: String,
    /// Relation type.
    pub edge_type: String,
    /// Properties, a JSON object.
    #[serde(with = "crate::value::json_text")]
    pub properties: serde_json::Value,
}

impl NewEdge {
    /// An edge `from -[edge_type]-> to` with no properties.
    pub fn new(
        from: impl Into<String>,
        to: impl Into<String>,
        edge_type: impl Into<String>,
    ) -> Self {
        NewEdge {
            id: None,
            from: from.into(),
            to: to.into(),
            edge_type: edge_type.into(),
            properties: serde_json::json!({}),
        }
    }
    /// With properties.
    pub fn with_properties(mut self, properties: serde_json::Value) -> Self {
        self.properties = properties;
        self
    }
}

/// Which edges a traversal follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Edges leaving the node.
    Outgoing,
    /// Edges arriving at the node.
    Incoming,
    /// Both.
    Both,
}

/// A node reached by a traversal, with its distance in hops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbor {
    /// The node.
    pub node: Node,
    /// Hops from the start (1 = direct neighbour).
    pub depth: u32,
}

/// A path: nodes from start to end, and the edges between them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Path {
    /// `nodes[0]` is the start, the last is the end.
    pub nodes: Vec<Node>,
    /// `edges[i]` joins `nodes[i]` and `nodes[i+1]`.
    pub edges: Vec<Edge>,
}

/// What `find_nodes` looks for; every part given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeQuery {
    /// Only nodes with this label.
    pub label: Option<String>,
    /// Only nodes whose properties pass this filter.
    pub filter: Option<Filter>,
    /// Only nodes whose properties contain this text (case-insensitive)
    /// in any string value.
    pub text: Option<String>,
    /// At most this many (0: no limit).
    pub limit: usize,
}

impl NodeQuery {
    /// The nodes of `candidates` (in their order) that pass the query —
    /// label, property filter, text — at most `limit`. Backends narrow
    /// what they can natively (label, a translated filter) and hand the
    /// rest here; the first error stops the scan.
    pub fn select(&self, candidates: impl IntoIterator<Item = Result<Node>>) -> Result<Vec<Node>> {
        let needle = self
            .text
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase);
        let limit = if self.limit == 0 {
            usize::MAX
        } else {
            self.limit
        };
        let mut out = Vec::new();
        for n in candidates {
            if out.len() >= limit {
                break;
            }
            let n = n?;
            if self.label.as_ref().is_some_and(|l| &n.label != l)
                || self
                    .filter
                    .as_ref()
                    .is_some_and(|f| !f.matches(&n.properties))
                || needle
                    .as_deref()
                    .is_some_and(|t| !json_contains_text(&n.properties, t))
            {
                continue;
            }
            out.push(n);
        }
        Ok(out)
    }

    /// Whether a filter or a text is set: [`Self::select`] then has to see
    /// every node of the label, and a backend that does not evaluate them
    /// natively cannot apply the limit itself.
    pub fn needs_scan(&self) -> bool {
        self.filter.is_some() || self.text.as_deref().is_some_and(|t| !t.is_empty())
    }
}

/// One page of an export.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass this to get the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// The deepest traversal accepted.
pub const MAX_DEPTH: u32 = 16;

/// Whether any string value in `v` contains `needle_lower` (lower-cased).
pub fn json_contains_text(v: &serde_json::Value, needle_lower: &str) -> bool {
    match v {
        serde_json::Value::String(s) => s.to_lowercase().contains(needle_lower),
        serde_json::Value::Array(a) => a.iter().any(|x| json_contains_text(x, needle_lower)),
        serde_json::Value::Object(o) => o.values().any(|x| json_contains_text(x, needle_lower)),
        _ => false,
    }
}

/// Merge `patch` into `target` (both JSON objects): keys in `patch` replace
/// those in `target`; a `null` in `patch` removes the key.
pub fn merge_properties(target: &mut serde_json::Value, patch: &serde_json::Value) {
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The non-blocking form of a graph store's two hottest calls, for a
/// backend that serves them from threads or a runtime of its own (the
/// embedded backends do, through [`crate::kit::served`]). Each method
/// starts the call and returns at once; `done` is called exactly once,
/// from any thread, when the call has finished.
///
/// A backend offers it through [`Graph::as_async`]; the blocking methods
/// stay the reference semantics and must agree with it.
pub trait AsyncGraph: Send + Sync {
    /// Start [`Graph::get_node`].
    fn get_node(&self, id: &str, done: crate::Done<Option<Node>>);
    /// Start [`Graph::neighbors`].
    fn neighbors(
        &self,
        id: &str,
        direction: Direction,
        edge_types: &[String],
        depth: u32,
        done: crate::Done<Vec<Neighbor>>,
    );
}

/// A graph store. Implemented by plugins; used through the host.
pub trait Graph: Send + Sync {
    /// The store's non-blocking form of `get_node` and `neighbors`, if it
    /// has one. Default: none; the host's async API then runs the
    /// blocking call on a thread.
    fn as_async(&self) -> Option<&dyn AsyncGraph> {
        None
    }
    /// Create nodes, all or none; `AlreadyExists` for a taken id.
    fn create_nodes(&self, nodes: &[NewNode]) -> Result<Vec<Node>>;
    /// A node by id, if present.
    fn get_node(&self, id: &str) -> Result<Option<Node>>;
    /// Merge properties into a node (`null` removes a key); `NotFound` if absent.
    fn update_node(&self, id: &str, properties: &serde_json::Value) -> Result<Node>;
    /// Delete a node and every edge touching it; returns whether it existed.
    fn delete_node(&self, id: &str) -> Result<bool>;
    /// Create edges, all or none; `NotFound` if an endpoint is missing.
    fn create_edges(&self, edges: &[NewEdge]) -> Result<Vec<Edge>>;
    /// An edge by id, if present.
    fn get_edge(&self, id: &str) -> Result<Option<Edge>>;
    /// Merge properties into an edge; `NotFound` if absent.
    fn update_edge(&self, id: &str, properties: &serde_json::Value) -> Result<Edge>;
    /// Delete an edge; returns whether it existed.
    fn delete_edge(&self, id: &str) -> Result<bool>;
    /// Nodes within `depth` hops, each once at its smallest depth, following
    /// only `edge_types` when not empty. The start node is not included.
    fn neighbors(
        &self,
        id: &str,
        direction: Direction,
        edge_types: &[String],
        depth: u32,
    ) -> Result<Vec<Neighbor>>;
    /// A shortest path along outgoing edges, or `None` within `max_depth`.
    fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Result<Option<Path>>;
    /// Edges touching a node in the given direction.
    fn edges_of(&self, id: &str, direction: Direction) -> Result<Vec<Edge>>;
    /// Nodes matching a query.
    fn find_nodes(&self, query: &NodeQuery) -> Result<Vec<Node>>;
    /// All nodes, in pages, in a stable order.
    fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Node>>;
    /// All edges, in pages, in a stable order.
    fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Edge>>;
    /// Create `nodes` with their ids; a node whose id exists is kept as it
    /// is, or replaced when `overwrite`, so a replayed batch changes
    /// nothing. Returns the nodes given.
    fn import_nodes(&self, nodes: &[Node], overwrite: bool) -> Result<u64> {
        crate::port::import_nodes(self, nodes, overwrite)
    }
    /// Create `edges` with their ids, as [`import_nodes`](Self::import_nodes);
    /// their end nodes must exist.
    fn import_edges(&self, edges: &[Edge], overwrite: bool) -> Result<u64> {
        crate::port::import_edges(self, edges, overwrite)
    }
    /// Check the store answers.
    fn health(&self) -> Result<Health>;
}
