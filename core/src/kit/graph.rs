//! What graph backends share besides their storage: the checks of new
//! nodes and edges, and the shortest-path search.
//!
//! - [`new_item_id`], [`new_properties`], [`edge_label`],
//!   [`check_edge_type`]: a new node's or edge's id and properties, with
//!   the same messages on every backend.
//! - [`check_neighbors_depth`], [`check_max_depth`]: the depth limits.
//! - [`shortest_path_ids`]: breadth-first along outgoing edges, so the path
//!   found has the fewest edges, and among those the first in the order the
//!   backend lists edges in; one lookup per node, stopping at the first
//!   edge that reaches the end. A backend that reads a whole level at once
//!   (one query for every node of the frontier) drives a [`PathSearch`]
//!   itself.

use crate::error::{Error, Result};
use crate::graph::{NewEdge, MAX_DEPTH};
use crate::kit::id::new_id;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};

/// The id of a new node or edge that messages call `what` (`node 3`): the
/// caller's, which must not be empty, or a new one from [`new_id`] with
/// `prefix` (`n` for nodes, `e` for edges).
pub fn new_item_id(given: Option<&String>, what: &str, prefix: &str) -> Result<String> {
    match given {
        Some(id) if id.is_empty() => Err(Error::invalid(format!(
            "{what} has an empty id: give a non-empty id, or None to have one assigned"
        ))),
        Some(id) => Ok(id.clone()),
        None => Ok(new_id(prefix)),
    }
}

/// The properties of a new node or edge as stored: a JSON object, `{}`
/// for `null`; anything else is `InvalidInput`.
pub fn new_properties(properties: &Json, what: &str) -> Result<Json> {
    match properties {
        Json::Null => Ok(Json::Object(Default::default())),
        Json::Object(_) => Ok(properties.clone()),
        other => Err(Error::invalid(format!(
            "{what} has properties that are not a JSON object ({other}): pass an object like {{\"name\": \"x\"}}"
        ))),
    }
}

/// How messages name edge `i` of a batch: `edge 0 ('a' -[knows]-> 'b')`.
pub fn edge_label(i: usize, edge: &NewEdge) -> String {
    format!(
        "edge {i} ('{}' -[{}]-> '{}')",
        edge.from, edge.edge_type, edge.to
    )
}

/// Check that a new edge has a type; `what` names it in the message.
pub fn check_edge_type(edge: &NewEdge, what: &str) -> Result<()> {
    if edge.edge_type.is_empty() {
        return Err(Error::invalid(format!(
            "{what} has an empty type: give every edge a type such as \"knows\""
        )));
    }
    Ok(())
}

/// The ids along a path: `nodes[0]` is the start, and `edges[i]` leads from
/// `nodes[i]` to `nodes[i + 1]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathIds {
    /// Node ids, start first.
    pub nodes: Vec<String>,
    /// Edge ids, one fewer than the nodes.
    pub edges: Vec<String>,
}

/// Check the `depth` of a neighbors call: 1 to [`MAX_DEPTH`].
pub fn check_neighbors_depth(depth: u32) -> Result<()> {
    if depth == 0 || depth > MAX_DEPTH {
        return Err(Error::invalid(format!(
            "depth {depth} is out of range: give 1 to {MAX_DEPTH}"
        )));
    }
    Ok(())
}

/// Check the `max_depth` of a shortest-path call: 0 to [`MAX_DEPTH`].
pub fn check_max_depth(max_depth: u32) -> Result<()> {
    if max_depth > MAX_DEPTH {
        return Err(Error::invalid(format!(
            "max_depth {max_depth} is out of range: give 0 to {MAX_DEPTH}"
        )));
    }
    Ok(())
}

/// The error for a path whose nodes or edges were deleted between the
/// search and reading them.
pub fn path_changed() -> Error {
    Error::conflict("the graph changed while the path was read: retry")
}

/// A breadth-first search from one node to another, one level at a time.
///
/// ```
/// # use backplane_core::kit::graph::PathSearch;
/// let edges = [("a", "ab", "b"), ("b", "bc", "c")];
/// let mut search = PathSearch::new("a", "c");
/// let mut frontier = vec!["a".to_string()];
/// 'levels: for _ in 0..5 {
///     for node in &frontier {
///         for (_, edge, target) in edges.iter().filter(|e| e.0 == node) {
///             if search.visit(node, edge.to_string(), target.to_string()) {
///                 break 'levels;
///             }
///         }
///     }
///     frontier = search.next_level();
///     if frontier.is_empty() {
///         break;
///     }
/// }
/// let path = search.path().unwrap();
/// assert_eq!(path.nodes, ["a", "b", "c"]);
/// assert_eq!(path.edges, ["ab", "bc"]);
/// ```
#[derive(Clone, Debug)]
pub struct PathSearch {
    from: String,
    to: String,
    /// For every node reached: the node and the edge it was first reached by.
    parent: HashMap<String, (String, String)>,
    seen: HashSet<String>,
    next: Vec<String>,
    found: bool,
}

impl PathSearch {
    /// A search from `from` to `to`; the first frontier is `[from]`.
    pub fn new(from: &str, to: &str) -> PathSearch {
        PathSearch {
            from: from.to_string(),
            to: to.to_string(),
            parent: HashMap::new(),
            seen: HashSet::from([from.to_string()]),
            next: Vec::new(),
            found: from == to,
        }
    }

    /// Follow `edge` from `node` (a node of the current frontier) to
    /// `target`. True once the end is reached: stop then.
    pub fn visit(&mut self, node: &str, edge: String, target: String) -> bool {
        if self.found {
            return true;
        }
        if self.seen.insert(target.clone()) {
            self.found = target == self.to;
            self.parent.insert(target.clone(), (node.to_string(), edge));
            self.next.push(target);
        }
        self.found
    }

    /// Whether the end was reached.
    pub fn found(&self) -> bool {
        self.found
    }

    /// End the current level: the nodes first reached in it, in the order
    /// reached, are the next frontier (empty when there are none).
    pub fn next_level(&mut self) -> Vec<String> {
        std::mem::take(&mut self.next)
    }

    /// The path found, or `None`.
    pub fn path(self) -> Option<PathIds> {
        if !self.found {
            return None;
        }
        let mut nodes = vec![self.to.clone()];
        let mut edges = Vec::new();
        let mut cur = self.to;
        while cur != self.from {
            let (prev, edge) = self.parent[&cur].clone();
            edges.push(edge);
            nodes.push(prev.clone());
            cur = prev;
        }
        nodes.reverse();
        edges.reverse();
        Some(PathIds { nodes, edges })
    }
}

/// A shortest path from `from` to `to` of at most `max_depth` edges, or
/// `None`. `outgoing(node)` lists the node's outgoing edges as `(edge id,
/// target id)`, in the order ties are broken in. Checks `max_depth`; the
/// caller checks that both nodes exist.
pub fn shortest_path_ids(
    from: &str,
    to: &str,
    max_depth: u32,
    mut outgoing: impl FnMut(&str) -> Result<Vec<(String, String)>>,
) -> Result<Option<PathIds>> {
    check_max_depth(max_depth)?;
    let mut search = PathSearch::new(from, to);
    let mut frontier = vec![from.to_string()];
    'levels: for _ in 0..max_depth {
        if search.found() {
            break;
        }
        for node in &frontier {
            for (edge, target) in outgoing(node)? {
                if search.visit(node, edge, target) {
                    break 'levels;
                }
            }
        }
        frontier = search.next_level();
        if frontier.is_empty() {
            break;
        }
    }
    Ok(search.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::collections::BTreeMap;

    /// Edges by source, each list in (target, id) order.
    fn graph(edges: &[(&str, &str, &str)]) -> BTreeMap<String, Vec<(String, String)>> {
        let mut g: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (from, id, to) in edges {
            g.entry(from.to_string())
                .or_default()
                .push((id.to_string(), to.to_string()));
        }
        for list in g.values_mut() {
            list.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        }
        g
    }

    fn search(
        g: &BTreeMap<String, Vec<(String, String)>>,
        from: &str,
        to: &str,
        depth: u32,
    ) -> Option<PathIds> {
        let mut lookups = 0;
        let found = shortest_path_ids(from, to, depth, |n| {
            lookups += 1;
            Ok(g.get(n).cloned().unwrap_or_default())
        })
        .unwrap();
        assert!(lookups <= g.len() + 1);
        found
    }

    #[test]
    fn finds_the_fewest_edges_and_breaks_ties_by_order() {
        let g = graph(&[
            ("a", "ab", "b"),
            ("a", "ac", "c"),
            ("b", "bd", "d"),
            ("c", "cd", "d"),
            ("d", "de", "e"),
            ("a", "ae", "x"),
            ("x", "xe", "e"),
            ("e", "ea", "a"),
        ]);
        let p = search(&g, "a", "d", 5).unwrap();
        assert_eq!(p.nodes, ["a", "b", "d"]);
        assert_eq!(p.edges, ["ab", "bd"]);
        let p = search(&g, "a", "e", 5).unwrap();
        assert_eq!(p.nodes, ["a", "x", "e"]);
        assert!(search(&g, "a", "e", 1).is_none());
        assert!(search(&g, "a", "nowhere", 16).is_none());
        // Cycles end the search instead of looping.
        assert!(search(&g, "e", "zz", 16).is_none());
        let p = search(&g, "e", "d", 3).unwrap();
        assert_eq!(p.edges, ["ea", "ab", "bd"]);
        // A node to itself: no edges, at any depth.
        let p = search(&g, "a", "a", 0).unwrap();
        assert_eq!((p.nodes, p.edges), (vec!["a".to_string()], vec![]));
        assert!(search(&g, "a", "b", 0).is_none());
    }

    #[test]
    fn stops_at_the_first_edge_that_reaches_the_end() {
        let g = graph(&[
            ("a", "ab", "b"),
            ("a", "ac", "c"),
            ("b", "bz", "z"),
            ("c", "cz", "z"),
        ]);
        let mut asked = Vec::new();
        let p = shortest_path_ids("a", "z", 5, |n| {
            asked.push(n.to_string());
            Ok(g.get(n).cloned().unwrap_or_default())
        })
        .unwrap()
        .unwrap();
        assert_eq!(p.edges, ["ab", "bz"]);
        assert_eq!(asked, ["a", "b"], "c is never looked up");
    }

    #[test]
    fn new_items() {
        let given = "x".to_string();
        assert_eq!(new_item_id(Some(&given), "node 0", "n").unwrap(), "x");
        let id = new_item_id(None, "node 0", "n").unwrap();
        assert!(id.starts_with('n') && id.len() > 20, "{id}");
        let e = new_item_id(Some(&String::new()), "node 2", "n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().starts_with("node 2 has an empty id"), "{e}");

        assert_eq!(
            new_properties(&Json::Null, "n").unwrap(),
            serde_json::json!({})
        );
        let p = serde_json::json!({"a": 1});
        assert_eq!(new_properties(&p, "n").unwrap(), p);
        let e = new_properties(&serde_json::json!([1]), "node 'x'").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(
            e.message()
                .contains("node 'x' has properties that are not a JSON object ([1])"),
            "{e}"
        );

        let edge = NewEdge {
            id: None,
            from: "a".into(),
            to: "b".into(),
            edge_type: String::new(),
            properties: Json::Null,
        };
        let what = edge_label(3, &edge);
        assert_eq!(what, "edge 3 ('a' -[]-> 'b')");
        let e = check_edge_type(&edge, &what).unwrap_err();
        assert!(e.message().contains("has an empty type"), "{e}");
        assert!(check_edge_type(
            &NewEdge {
                edge_type: "knows".into(),
                ..edge
            },
            &what
        )
        .is_ok());
    }

    #[test]
    fn errors_pass_through_and_depth_is_checked() {
        let e = shortest_path_ids("a", "b", 3, |_| Err(Error::unavailable("down"))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let e = shortest_path_ids("a", "b", MAX_DEPTH + 1, |_| Ok(vec![])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("max_depth 17"), "{e}");
        assert_eq!(path_changed().kind(), ErrorKind::Conflict);
        assert!(check_max_depth(0).is_ok() && check_max_depth(MAX_DEPTH).is_ok());
        assert!(check_neighbors_depth(1).is_ok() && check_neighbors_depth(MAX_DEPTH).is_ok());
        for d in [0, MAX_DEPTH + 1] {
            let e = check_neighbors_depth(d).unwrap_err();
            assert_eq!(
                e.message(),
                format!("depth {d} is out of range: give 1 to {MAX_DEPTH}")
            );
        }
    }
}
