//! The graph capability in memory ([`MemoryGraph`]): the nodes, edges and
//! adjacency indexes of `adjacency` behind one `RwLock`. Reads run
//! concurrently, writes one at a time, and a batch is validated completely
//! before anything is written, so it is all or nothing.

use crate::adjacency::State;
use backplane_core::graph::merge_properties;
use backplane_core::kit::graph::{
    check_edge_type, check_neighbors_depth, new_properties, shortest_path_ids,
};
use backplane_core::kit::id::new_id_unless;
use backplane_core::kit::page::{check_limit, page_after};
use backplane_core::{
    validate_key, Direction, Edge, Error, Graph, Health, Neighbor, NewEdge, NewNode, Node,
    NodeQuery, Page, Path, Result, MAX_DEPTH,
};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A graph held in process memory.
#[derive(Default)]
pub struct MemoryGraph {
    state: RwLock<State>,
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn check_patch(patch: &Json, what: &str) -> Result<()> {
    if patch.is_object() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what}: the update must be a JSON object of properties (null values remove keys), got {}",
            json_type(patch)
        )))
    }
}

fn check_depth(depth: u32, what: &str) -> Result<()> {
    if (1..=MAX_DEPTH).contains(&depth) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{what} {depth} is out of range: give a depth from 1 to {MAX_DEPTH}"
        )))
    }
}

fn no_node(id: &str) -> Error {
    Error::not_found(format!(
        "node '{id}' does not exist: create it with create_nodes first"
    ))
}

impl MemoryGraph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Ids given in a batch: validated, unique in the batch and not taken.
fn explicit_ids<'a>(
    ids: impl Iterator<Item = Option<&'a String>>,
    taken: impl Fn(&str) -> bool,
    what: &str,
) -> Result<HashSet<&'a str>> {
    let mut seen = HashSet::new();
    for id in ids.flatten() {
        validate_key(id, &format!("{what} id"))?;
        if taken(id) || !seen.insert(id.as_str()) {
            return Err(Error::already_exists(format!(
                "{what} '{id}' exists already{}: give another id, or none to have one assigned",
                if taken(id) {
                    ""
                } else {
                    " (it appears twice in this batch)"
                }
            )));
        }
    }
    Ok(seen)
}

impl Graph for MemoryGraph {
    fn create_nodes(&self, nodes: &[NewNode]) -> Result<Vec<Node>> {
        let mut s = self.write();
        let given = explicit_ids(
            nodes.iter().map(|n| n.id.as_ref()),
            |id| s.nodes.contains_key(id),
            "node",
        )?;
        let mut created = Vec::with_capacity(nodes.len());
        for n in nodes {
            let id = match &n.id {
                Some(id) => id.clone(),
                None => new_id_unless("n", |id| s.nodes.contains_key(id) || given.contains(id)),
            };
            let properties = new_properties(&n.properties, &format!("node '{id}'"))?;
            created.push(Node {
                id,
                label: n.label.clone(),
                properties,
            });
        }
        for n in &created {
            s.nodes.insert(n.id.clone(), n.clone());
        }
        Ok(created)
    }

    fn get_node(&self, id: &str) -> Result<Option<Node>> {
        Ok(self.read().nodes.get(id).cloned())
    }

    fn update_node(&self, id: &str, patch: &Json) -> Result<Node> {
        check_patch(patch, &format!("node '{id}'"))?;
        let mut s = self.write();
        let node = s.nodes.get_mut(id).ok_or_else(|| no_node(id))?;
        merge_properties(&mut node.properties, patch);
        Ok(node.clone())
    }

    fn delete_node(&self, id: &str) -> Result<bool> {
        Ok(self.write().remove_node(id))
    }

    fn create_edges(&self, edges: &[NewEdge]) -> Result<Vec<Edge>> {
        let mut s = self.write();
        let given = explicit_ids(
            edges.iter().map(|e| e.id.as_ref()),
            |id| s.edges.contains_key(id),
            "edge",
        )?;
        let mut created = Vec::with_capacity(edges.len());
        for e in edges {
            let id = match &e.id {
                Some(id) => id.clone(),
                None => new_id_unless("e", |id| s.edges.contains_key(id) || given.contains(id)),
            };
            let what = format!("edge '{id}' ({} -[{}]-> {})", e.from, e.edge_type, e.to);
            check_edge_type(e, &what)?;
            for (end, node) in [("from", &e.from), ("to", &e.to)] {
                if !s.nodes.contains_key(node.as_str()) {
                    return Err(Error::not_found(format!(
                        "{what}: its '{end}' node '{node}' does not exist: create the node first; no edge was created"
                    )));
                }
            }
            let properties = new_properties(&e.properties, &what)?;
            created.push(Edge {
                id,
                from: e.from.clone(),
                to: e.to.clone(),
                edge_type: e.edge_type.clone(),
                properties,
            });
        }
        for e in &created {
            s.add_edge(e.clone());
        }
        Ok(created)
    }

    fn get_edge(&self, id: &str) -> Result<Option<Edge>> {
        Ok(self.read().edges.get(id).cloned())
    }

    fn update_edge(&self, id: &str, patch: &Json) -> Result<Edge> {
        check_patch(patch, &format!("edge '{id}'"))?;
        let mut s = self.write();
        let edge = s.edges.get_mut(id).ok_or_else(|| {
            Error::not_found(format!(
                "edge '{id}' does not exist: create it with create_edges first"
            ))
        })?;
        merge_properties(&mut edge.properties, patch);
        Ok(edge.clone())
    }

    fn delete_edge(&self, id: &str) -> Result<bool> {
        Ok(self.write().remove_edge(id))
    }

    fn neighbors(
        &self,
        id: &str,
        direction: Direction,
        edge_types: &[String],
        depth: u32,
    ) -> Result<Vec<Neighbor>> {
        check_neighbors_depth(depth)?;
        let s = self.read();
        if !s.nodes.contains_key(id) {
            return Err(no_node(id));
        }
        let follow = |e: &Edge| edge_types.is_empty() || edge_types.contains(&e.edge_type);
        let mut visited: HashSet<&str> = HashSet::from([id]);
        let mut frontier: Vec<&str> = vec![id];
        let mut found: Vec<(u32, &str)> = Vec::new();
        for d in 1..=depth {
            let mut next = Vec::new();
            for &n in &frontier {
                for (_, other) in s.adjacent(n, direction).filter(|(e, _)| follow(e)) {
                    if visited.insert(other) {
                        next.push(other);
                        found.push((d, other));
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        found.sort_unstable();
        Ok(found
            .into_iter()
            .filter_map(|(depth, n)| {
                s.nodes.get(n).map(|node| Neighbor {
                    node: node.clone(),
                    depth,
                })
            })
            .collect())
    }

    fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Result<Option<Path>> {
        check_depth(max_depth, "max_depth")?;
        let s = self.read();
        for n in [from, to] {
            if !s.nodes.contains_key(n) {
                return Err(no_node(n));
            }
        }
        // Breadth first along outgoing edges, in edge id order.
        let found = shortest_path_ids(from, to, max_depth, |n| {
            Ok(s.adjacent(n, Direction::Outgoing)
                .map(|(edge, next)| (edge.id.clone(), next.to_string()))
                .collect())
        })?;
        let Some(ids) = found else {
            return Ok(None);
        };
        let nodes = ids.nodes.iter().map(|id| s.nodes[id].clone()).collect();
        let edges = ids.edges.iter().map(|id| s.edges[id].clone()).collect();
        Ok(Some(Path { nodes, edges }))
    }

    fn edges_of(&self, id: &str, direction: Direction) -> Result<Vec<Edge>> {
        let s = self.read();
        if !s.nodes.contains_key(id) {
            return Err(no_node(id));
        }
        // By id; a self-loop appears once even for `Both`.
        let edges: BTreeMap<&str, &Edge> = s
            .adjacent(id, direction)
            .map(|(e, _)| (e.id.as_str(), e))
            .collect();
        Ok(edges.into_values().cloned().collect())
    }

    fn find_nodes(&self, query: &NodeQuery) -> Result<Vec<Node>> {
        query.select(self.read().nodes.values().cloned().map(Ok))
    }

    fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Node>> {
        check_limit(limit, "export", "item")?;
        Ok(page_after(&self.read().nodes, cursor, limit, Node::clone))
    }

    fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Edge>> {
        check_limit(limit, "export", "item")?;
        Ok(page_after(&self.read().edges, cursor, limit, Edge::clone))
    }

    fn health(&self) -> Result<Health> {
        Ok(Health::ok("in-memory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::{ErrorKind, Filter};
    use serde_json::json;

    fn node(id: &str, label: &str, props: Json) -> NewNode {
        NewNode::new(label, props).with_id(id)
    }

    fn edge(id: &str, from: &str, to: &str, t: &str) -> NewEdge {
        NewEdge {
            id: Some(id.into()),
            ..NewEdge::new(from, to, t)
        }
    }

    /// a -> b -> c -> d, a -> c (likes), e isolated.
    fn sample() -> MemoryGraph {
        let g = MemoryGraph::new();
        g.create_nodes(&[
            node("a", "person", json!({"name": "Alice", "age": 30})),
            node("b", "person", json!({"name": "Bob", "age": 40})),
            node("c", "city", json!({"name": "Paris"})),
            node("d", "country", json!({"name": "France", "tags": ["EU"]})),
            node("e", "person", json!({"name": "Eve"})),
        ])
        .unwrap();
        g.create_edges(&[
            edge("ab", "a", "b", "knows"),
            edge("bc", "b", "c", "lives_in"),
            edge("cd", "c", "d", "in"),
            edge("ac", "a", "c", "likes"),
        ])
        .unwrap();
        g
    }

    fn ids(ns: &[Neighbor]) -> Vec<(String, u32)> {
        ns.iter().map(|n| (n.node.id.clone(), n.depth)).collect()
    }

    #[test]
    fn create_get_update() {
        let g = sample();
        let n = g.create_nodes(&[NewNode::new("x", json!(null))]).unwrap();
        assert!(!n[0].id.is_empty());
        assert_eq!(n[0].properties, json!({}));
        assert_eq!(g.get_node(&n[0].id).unwrap().unwrap(), n[0]);
        let a = g
            .update_node("a", &json!({"age": 31, "name": null, "x": 1}))
            .unwrap();
        assert_eq!(a.properties, json!({"age": 31, "x": 1}));
        assert_eq!(
            g.update_node("zz", &json!({})).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            g.update_node("a", &json!([1])).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        let e = g.update_edge("ab", &json!({"since": 2020})).unwrap();
        assert_eq!(e.properties, json!({"since": 2020}));
        assert_eq!(g.get_edge("ab").unwrap().unwrap(), e);
        assert_eq!(
            g.update_edge("zz", &json!({})).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn batches_are_all_or_nothing() {
        let g = sample();
        let e = g
            .create_nodes(&[node("new", "x", json!({})), node("a", "x", json!({}))])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(g.get_node("new").unwrap().is_none());
        let e = g
            .create_nodes(&[node("p", "x", json!({})), node("p", "x", json!({}))])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        let e = g
            .create_nodes(&[node("q", "x", json!({})), node("r", "x", json!(3))])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(g.get_node("q").unwrap().is_none());
        let e = g
            .create_edges(&[edge("ok", "a", "e", "t"), edge("bad", "a", "ghost", "t")])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.message().contains("ghost"), "{e}");
        assert!(g.get_edge("ok").unwrap().is_none());
        let e = g.create_edges(&[edge("ab", "a", "e", "t")]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    }

    #[test]
    fn delete_node_cascades() {
        let g = sample();
        assert!(g.delete_node("b").unwrap());
        assert!(!g.delete_node("b").unwrap());
        assert!(g.get_edge("ab").unwrap().is_none());
        assert!(g.get_edge("bc").unwrap().is_none());
        assert!(g.get_edge("ac").unwrap().is_some());
        let out: Vec<_> = g
            .edges_of("a", Direction::Outgoing)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(out, ["ac"]);
        assert!(g.delete_edge("ac").unwrap());
        assert!(!g.delete_edge("ac").unwrap());
        assert!(g.edges_of("a", Direction::Both).unwrap().is_empty());
    }

    #[test]
    fn neighbors_bfs() {
        let g = sample();
        let n = g.neighbors("a", Direction::Outgoing, &[], 1).unwrap();
        assert_eq!(ids(&n), [("b".into(), 1), ("c".into(), 1)]);
        let n = g.neighbors("a", Direction::Outgoing, &[], 3).unwrap();
        assert_eq!(ids(&n), [("b".into(), 1), ("c".into(), 1), ("d".into(), 2)]);
        let n = g
            .neighbors(
                "a",
                Direction::Outgoing,
                &["knows".into(), "lives_in".into()],
                5,
            )
            .unwrap();
        assert_eq!(ids(&n), [("b".into(), 1), ("c".into(), 2)]);
        let n = g.neighbors("c", Direction::Incoming, &[], 2).unwrap();
        assert_eq!(ids(&n), [("a".into(), 1), ("b".into(), 1)]);
        let n = g.neighbors("b", Direction::Both, &[], 1).unwrap();
        assert_eq!(ids(&n), [("a".into(), 1), ("c".into(), 1)]);
        assert!(g
            .neighbors("e", Direction::Both, &[], 2)
            .unwrap()
            .is_empty());
        let kind = |r: Result<Vec<Neighbor>>| r.unwrap_err().kind();
        assert_eq!(
            kind(g.neighbors("zz", Direction::Both, &[], 1)),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(g.neighbors("a", Direction::Both, &[], 0)),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(g.neighbors("a", Direction::Both, &[], MAX_DEPTH + 1)),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn shortest_paths() {
        let g = sample();
        let p = g.shortest_path("a", "d", 5).unwrap().unwrap();
        let nodes: Vec<_> = p.nodes.iter().map(|n| n.id.as_str()).collect();
        let edges: Vec<_> = p.edges.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(nodes, ["a", "c", "d"]);
        assert_eq!(edges, ["ac", "cd"]);
        assert!(g.shortest_path("a", "d", 1).unwrap().is_none());
        assert!(g.shortest_path("a", "d", 2).unwrap().is_some());
        assert!(g.shortest_path("d", "a", 5).unwrap().is_none());
        assert!(g.shortest_path("a", "e", 5).unwrap().is_none());
        let p = g.shortest_path("a", "a", 1).unwrap().unwrap();
        assert_eq!((p.nodes.len(), p.edges.len()), (1, 0));
        assert_eq!(
            g.shortest_path("a", "zz", 3).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            g.shortest_path("zz", "a", 3).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            g.shortest_path("a", "d", 0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn self_loops() {
        let g = sample();
        g.create_edges(&[edge("aa", "a", "a", "self")]).unwrap();
        assert_eq!(g.edges_of("a", Direction::Both).unwrap().len(), 3);
        let n = g.neighbors("a", Direction::Both, &[], 1).unwrap();
        assert!(n.iter().all(|n| n.node.id != "a"));
        assert!(g.delete_node("a").unwrap());
        assert!(g.get_edge("aa").unwrap().is_none());
    }

    #[test]
    fn find() {
        let g = sample();
        let find = |q: NodeQuery| -> Vec<String> {
            g.find_nodes(&q)
                .unwrap()
                .into_iter()
                .map(|n| n.id)
                .collect()
        };
        assert_eq!(find(NodeQuery::default()), ["a", "b", "c", "d", "e"]);
        let person = || Some("person".to_string());
        assert_eq!(
            find(NodeQuery {
                label: person(),
                ..Default::default()
            }),
            ["a", "b", "e"]
        );
        assert_eq!(
            find(NodeQuery {
                label: person(),
                limit: 2,
                ..Default::default()
            }),
            ["a", "b"]
        );
        let filter = Filter::parse(&json!({"key": "age", "range": {"gte": 35}})).unwrap();
        assert_eq!(
            find(NodeQuery {
                filter: Some(filter),
                ..Default::default()
            }),
            ["b"]
        );
        let text = |t: &str| NodeQuery {
            text: Some(t.into()),
            ..Default::default()
        };
        assert_eq!(find(text("PAR")), ["c"]);
        assert_eq!(find(text("eu")), ["d"]);
        assert!(find(text("nobody")).is_empty());
    }

    #[test]
    fn export_pages() {
        let g = sample();
        let mut cursor = None;
        let mut all = Vec::new();
        loop {
            let p = g.export_nodes(cursor.as_deref(), 2).unwrap();
            all.extend(p.items.into_iter().map(|n| n.id));
            cursor = p.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(all, ["a", "b", "c", "d", "e"]);
        let p = g.export_edges(None, 10).unwrap();
        assert_eq!(p.items.len(), 4);
        assert_eq!(p.next_cursor, None);
        let p = g.export_edges(None, 4).unwrap();
        assert_eq!(p.next_cursor, None);
        assert_eq!(
            g.export_edges(None, 0).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
