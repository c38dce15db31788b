//! The graph's encryption layer: the node and edge properties named in
//! config. Ids, labels, edge types and the structure stay readable.

use super::{probe, rekey_pages, Opened, Rekey, RekeyReport, Sealer};
use crate::layer::forward;
use backplane_core::{
    Direction, Edge, Graph, Health, Neighbor, NewEdge, NewNode, Node, NodeQuery, Page, Path, Result,
};
use std::sync::Arc;

/// Records per page while scanning.
const PAGE: usize = 256;

/// A graph whose named properties are encrypted.
pub(crate) struct CryptGraph {
    inner: Arc<dyn Graph>,
    seal: Sealer,
}

impl CryptGraph {
    /// Wrap `inner`; fails when what it holds is under a key not
    /// configured.
    pub(crate) fn new(inner: Arc<dyn Graph>, seal: Sealer) -> Result<CryptGraph> {
        let g = CryptGraph { inner, seal };
        probe(|| {
            for n in g.inner.export_nodes(None, 4)?.items {
                g.node(n)?;
            }
            for e in g.inner.export_edges(None, 4)?.items {
                g.edge(e)?;
            }
            Ok(())
        })?;
        Ok(g)
    }

    fn node(&self, mut n: Node) -> Result<Opened<Node>> {
        let o = self
            .seal
            .open_fields(std::mem::take(&mut n.properties), &|| {
                format!("node '{}'", n.id)
            })?;
        n.properties = o.value;
        Ok(Opened {
            value: n,
            stale: o.stale,
        })
    }

    fn edge(&self, mut e: Edge) -> Result<Opened<Edge>> {
        let o = self
            .seal
            .open_fields(std::mem::take(&mut e.properties), &|| {
                format!("edge '{}'", e.id)
            })?;
        e.properties = o.value;
        Ok(Opened {
            value: e,
            stale: o.stale,
        })
    }

    fn nodes(&self, list: Vec<Node>) -> Result<Vec<Node>> {
        list.into_iter().map(|n| Ok(self.node(n)?.value)).collect()
    }

    fn edges(&self, list: Vec<Edge>) -> Result<Vec<Edge>> {
        list.into_iter().map(|e| Ok(self.edge(e)?.value)).collect()
    }
}

impl Rekey for CryptGraph {
    fn rekey(&self, progress: &mut dyn FnMut(u64)) -> Result<RekeyReport> {
        let mut report = RekeyReport::default();
        rekey_pages(
            &mut report,
            progress,
            |c| {
                self.inner
                    .export_nodes(c, PAGE)
                    .map(|p| (p.items, p.next_cursor))
            },
            |n| self.node(n),
            |n| Node {
                properties: self.seal.seal_fields(&n.properties),
                ..n
            },
            // In place: an import would refuse a node that differs.
            |stale| {
                stale
                    .iter()
                    .try_for_each(|n| self.inner.update_node(&n.id, &n.properties).map(drop))
            },
        )?;
        rekey_pages(
            &mut report,
            progress,
            |c| {
                self.inner
                    .export_edges(c, PAGE)
                    .map(|p| (p.items, p.next_cursor))
            },
            |e| self.edge(e),
            |e| Edge {
                properties: self.seal.seal_fields(&e.properties),
                ..e
            },
            |stale| {
                stale
                    .iter()
                    .try_for_each(|e| self.inner.update_edge(&e.id, &e.properties).map(drop))
            },
        )?;
        Ok(report)
    }
}

impl Graph for CryptGraph {
    forward! {
        fn delete_node(&self, id: &str) -> bool;
        fn delete_edge(&self, id: &str) -> bool;
        fn health(&self) -> Health;
    }
    fn create_nodes(&self, nodes: &[NewNode]) -> Result<Vec<Node>> {
        let sealed: Vec<NewNode> = nodes
            .iter()
            .map(|n| NewNode {
                properties: self.seal.seal_fields(&n.properties),
                ..n.clone()
            })
            .collect();
        let made = self.inner.create_nodes(&sealed)?;
        self.nodes(made)
    }
    fn get_node(&self, id: &str) -> Result<Option<Node>> {
        self.inner
            .get_node(id)?
            .map(|n| Ok(self.node(n)?.value))
            .transpose()
    }
    fn update_node(&self, id: &str, properties: &serde_json::Value) -> Result<Node> {
        let n = self
            .inner
            .update_node(id, &self.seal.seal_fields(properties))?;
        Ok(self.node(n)?.value)
    }
    fn create_edges(&self, edges: &[NewEdge]) -> Result<Vec<Edge>> {
        let sealed: Vec<NewEdge> = edges
            .iter()
            .map(|e| NewEdge {
                properties: self.seal.seal_fields(&e.properties),
                ..e.clone()
            })
            .collect();
        let made = self.inner.create_edges(&sealed)?;
        self.edges(made)
    }
    fn get_edge(&self, id: &str) -> Result<Option<Edge>> {
        self.inner
            .get_edge(id)?
            .map(|e| Ok(self.edge(e)?.value))
            .transpose()
    }
    fn update_edge(&self, id: &str, properties: &serde_json::Value) -> Result<Edge> {
        let e = self
            .inner
            .update_edge(id, &self.seal.seal_fields(properties))?;
        Ok(self.edge(e)?.value)
    }
    fn neighbors(
        &self,
        id: &str,
        direction: Direction,
        edge_types: &[String],
        depth: u32,
    ) -> Result<Vec<Neighbor>> {
        self.inner
            .neighbors(id, direction, edge_types, depth)?
            .into_iter()
            .map(|n| {
                Ok(Neighbor {
                    node: self.node(n.node)?.value,
                    ..n
                })
            })
            .collect()
    }
    fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Result<Option<Path>> {
        self.inner
            .shortest_path(from, to, max_depth)?
            .map(|p| {
                Ok(Path {
                    nodes: self.nodes(p.nodes)?,
                    edges: self.edges(p.edges)?,
                })
            })
            .transpose()
    }
    fn edges_of(&self, id: &str, direction: Direction) -> Result<Vec<Edge>> {
        let list = self.inner.edges_of(id, direction)?;
        self.edges(list)
    }
    fn find_nodes(&self, query: &NodeQuery) -> Result<Vec<Node>> {
        if let Some(f) = &query.filter {
            self.seal.check_filter(f)?;
        }
        let searches_text = query.text.as_deref().is_some_and(|t| !t.is_empty());
        if !searches_text || !self.seal.has_fields() {
            let found = self.inner.find_nodes(query)?;
            return self.nodes(found);
        }
        // The text may be in an encrypted property, which the backend
        // cannot read: it narrows by label and filter, the text is looked
        // for in the decrypted nodes.
        let wide = NodeQuery {
            text: None,
            limit: 0,
            ..query.clone()
        };
        let found = self.inner.find_nodes(&wide)?;
        query.select(found.into_iter().map(|n| Ok(self.node(n)?.value)))
    }
    fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Node>> {
        let p = self.inner.export_nodes(cursor, limit)?;
        Ok(Page {
            items: self.nodes(p.items)?,
            next_cursor: p.next_cursor,
        })
    }
    fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Edge>> {
        let p = self.inner.export_edges(cursor, limit)?;
        Ok(Page {
            items: self.edges(p.items)?,
            next_cursor: p.next_cursor,
        })
    }
    fn import_nodes(&self, nodes: &[Node], overwrite: bool) -> Result<u64> {
        let sealed: Vec<Node> = nodes
            .iter()
            .map(|n| Node {
                properties: self.seal.seal_fields(&n.properties),
                ..n.clone()
            })
            .collect();
        self.inner.import_nodes(&sealed, overwrite)
    }
    fn import_edges(&self, edges: &[Edge], overwrite: bool) -> Result<u64> {
        let sealed: Vec<Edge> = edges
            .iter()
            .map(|e| Edge {
                properties: self.seal.seal_fields(&e.properties),
                ..e.clone()
            })
            .collect();
        self.inner.import_edges(&sealed, overwrite)
    }
}
