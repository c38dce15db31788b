//! A graph's nodes and edges with the adjacency indexes traversals walk
//! ([`State`], what `MemoryGraph` guards).
//!
//! Nodes and edges live in `BTreeMap`s keyed by id, which gives `find_nodes`
//! and the exports their id order (an export cursor is the last id
//! returned). Two indexes map each node to the ids of the edges leaving it
//! and arriving at it, so traversals and cascading deletes touch only the
//! edges concerned.

use backplane_core::{Direction, Edge, Node};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The nodes and edges of one graph, and its adjacency indexes.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) nodes: BTreeMap<String, Node>,
    pub(crate) edges: BTreeMap<String, Edge>,
    /// Node id → ids of edges leaving it.
    outgoing: HashMap<String, BTreeSet<String>>,
    /// Node id → ids of edges arriving at it.
    incoming: HashMap<String, BTreeSet<String>>,
}

impl State {
    /// The edges touching `node` in `direction`, each with the node at its
    /// other end.
    pub(crate) fn adjacent<'a>(
        &'a self,
        node: &str,
        direction: Direction,
    ) -> impl Iterator<Item = (&'a Edge, &'a str)> + 'a {
        let out = matches!(direction, Direction::Outgoing | Direction::Both)
            .then(|| self.outgoing.get(node))
            .flatten()
            .into_iter()
            .flatten()
            .filter_map(|e| self.edges.get(e))
            .map(|e| (e, e.to.as_str()));
        let inc = matches!(direction, Direction::Incoming | Direction::Both)
            .then(|| self.incoming.get(node))
            .flatten()
            .into_iter()
            .flatten()
            .filter_map(|e| self.edges.get(e))
            .map(|e| (e, e.from.as_str()));
        out.chain(inc)
    }

    /// Add `edge`, whose ends exist, to the edges and the indexes.
    pub(crate) fn add_edge(&mut self, edge: Edge) {
        self.outgoing
            .entry(edge.from.clone())
            .or_default()
            .insert(edge.id.clone());
        self.incoming
            .entry(edge.to.clone())
            .or_default()
            .insert(edge.id.clone());
        self.edges.insert(edge.id.clone(), edge);
    }

    /// Remove edge `id`; whether it existed.
    pub(crate) fn remove_edge(&mut self, id: &str) -> bool {
        match self.edges.remove(id) {
            Some(edge) => {
                self.unlink(&edge);
                true
            }
            None => false,
        }
    }

    /// Remove node `id` and every edge touching it; whether it existed.
    pub(crate) fn remove_node(&mut self, id: &str) -> bool {
        if self.nodes.remove(id).is_none() {
            return false;
        }
        let touching: BTreeSet<String> = self
            .outgoing
            .get(id)
            .into_iter()
            .chain(self.incoming.get(id))
            .flatten()
            .cloned()
            .collect();
        for e in touching {
            self.remove_edge(&e);
        }
        true
    }

    fn unlink(&mut self, edge: &Edge) {
        for (index, node) in [
            (&mut self.outgoing, &edge.from),
            (&mut self.incoming, &edge.to),
        ] {
            if let Some(set) = index.get_mut(node) {
                set.remove(&edge.id);
                if set.is_empty() {
                    index.remove(node);
                }
            }
        }
    }
}
