//! The graph capability as three JSON files ([`FilesGraph`]):
//!
//! - `nodes.json`: `{"format": 1, "nodes": [{"id", "label", "properties"}, …]}`
//!   in id order;
//! - `edges.json`: `{"format": 1, "edges": [{"id", "from", "to", "type",
//!   "properties"}, …]}` in id order;
//! - `indexes.json`: what the files imply, for a person or a tool to look
//!   things up without reading everything: `labels` (label → node ids),
//!   `outgoing` and `incoming` (node id → edge ids), `words` (each
//!   lower-cased word of a string property → node ids, for content
//!   search). It is derived: when it is missing or does not match the
//!   other two (after a hand edit), it is written again at open.
//!
//! The graph is held in memory ([`MemoryGraph`]) and each write rewrites
//! the files it changed, each atomically. A write that adds writes
//! `nodes.json` before `edges.json`; one that removes writes `edges.json`
//! first. So the two files always describe a graph whose edges join
//! existing nodes, even when a process is killed between them.

use crate::held::{check_format, parse, to_bytes, Held, FORMAT};
use crate::storage::Storage;
use backplane_core::kit::page::collect_pages;
use backplane_core::{
    Direction, Edge, Error, Graph, Health, Neighbor, NewEdge, NewNode, Node, NodeQuery, Page, Path,
    Result,
};
use backplane_memory_engine::MemoryGraph;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

const NODES: &str = "nodes.json";
const EDGES: &str = "edges.json";
const INDEXES: &str = "indexes.json";
/// Items per export page when the files are written.
const PAGE: usize = 10_000;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodesFile {
    format: u32,
    nodes: Vec<FileNode>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNode {
    id: String,
    label: String,
    #[serde(default)]
    properties: Json,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgesFile {
    format: u32,
    edges: Vec<FileEdge>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEdge {
    id: String,
    from: String,
    to: String,
    #[serde(rename = "type")]
    edge_type: String,
    #[serde(default)]
    properties: Json,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct IndexesFile {
    format: u32,
    labels: BTreeMap<String, BTreeSet<String>>,
    outgoing: BTreeMap<String, BTreeSet<String>>,
    incoming: BTreeMap<String, BTreeSet<String>>,
    words: BTreeMap<String, BTreeSet<String>>,
}

/// A graph store on files.
pub(crate) struct FilesGraph {
    held: Held<MemoryGraph>,
    pretty: bool,
}

/// Every node of `g`, in id order.
fn all_nodes(g: &MemoryGraph) -> Result<Vec<Node>> {
    collect_pages(|cursor| g.export_nodes(cursor, PAGE))
}

/// Every edge of `g`, in id order.
fn all_edges(g: &MemoryGraph) -> Result<Vec<Edge>> {
    collect_pages(|cursor| g.export_edges(cursor, PAGE))
}

/// The words of the string values in `v`, lower-cased.
fn words(v: &Json, out: &mut BTreeSet<String>) {
    match v {
        Json::String(s) => out.extend(
            s.split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase),
        ),
        Json::Array(a) => a.iter().for_each(|x| words(x, out)),
        Json::Object(m) => m.values().for_each(|x| words(x, out)),
        _ => {}
    }
}

/// The indexes `nodes` and `edges` imply.
fn indexes(nodes: &[Node], edges: &[Edge]) -> IndexesFile {
    let mut ix = IndexesFile {
        format: FORMAT,
        labels: BTreeMap::new(),
        outgoing: BTreeMap::new(),
        incoming: BTreeMap::new(),
        words: BTreeMap::new(),
    };
    for n in nodes {
        ix.labels
            .entry(n.label.clone())
            .or_default()
            .insert(n.id.clone());
        let mut w = BTreeSet::new();
        words(&n.properties, &mut w);
        for word in w {
            ix.words.entry(word).or_default().insert(n.id.clone());
        }
    }
    for e in edges {
        ix.outgoing
            .entry(e.from.clone())
            .or_default()
            .insert(e.id.clone());
        ix.incoming
            .entry(e.to.clone())
            .or_default()
            .insert(e.id.clone());
    }
    ix
}

/// Which files a change touched, and in which order to write them.
#[derive(Clone, Copy)]
enum Touched {
    /// Nodes only (an update).
    Nodes,
    /// Edges only (an update, or edges added or removed).
    Edges,
    /// Both, nodes first (something was added).
    Adding,
    /// Both, edges first (something was removed).
    Removing,
}

/// Write the files `touched` names, then the indexes.
fn save(g: &MemoryGraph, storage: &Storage, pretty: bool, touched: Touched) -> Result<()> {
    let nodes = all_nodes(g)?;
    let edges = all_edges(g)?;
    let write_nodes = || {
        let file = NodesFile {
            format: FORMAT,
            nodes: nodes
                .iter()
                .map(|n| FileNode {
                    id: n.id.clone(),
                    label: n.label.clone(),
                    properties: n.properties.clone(),
                })
                .collect(),
        };
        storage.write(NODES, to_bytes(&file, pretty))
    };
    let write_edges = || {
        let file = EdgesFile {
            format: FORMAT,
            edges: edges
                .iter()
                .map(|e| FileEdge {
                    id: e.id.clone(),
                    from: e.from.clone(),
                    to: e.to.clone(),
                    edge_type: e.edge_type.clone(),
                    properties: e.properties.clone(),
                })
                .collect(),
        };
        storage.write(EDGES, to_bytes(&file, pretty))
    };
    match touched {
        Touched::Nodes => write_nodes()?,
        Touched::Edges => write_edges()?,
        Touched::Adding => {
            write_nodes()?;
            write_edges()?;
        }
        Touched::Removing => {
            write_edges()?;
            write_nodes()?;
        }
    }
    // The indexes are derived (written again at open when they do not
    // match): failing to write them does not fail a write that is done.
    if let Err(e) = storage.write(INDEXES, to_bytes(&indexes(&nodes, &edges), pretty)) {
        log::warn!(
            "files: {} is behind the graph ({}); it is written again at the next write or open",
            storage.path_of(INDEXES),
            e.message()
        );
    }
    Ok(())
}

/// Read the graph from `storage`'s files (none: an empty graph).
fn load(storage: &Storage, pretty: bool) -> Result<MemoryGraph> {
    let g = MemoryGraph::new();
    let refused = |file: &str, e: Error| {
        Error::config(format!(
            "{} cannot be loaded: {}: fix the file",
            storage.path_of(file),
            e.message()
        ))
    };
    if let Some(bytes) = storage.read(NODES)? {
        let f: NodesFile = parse(storage, NODES, &bytes)?;
        check_format(storage, NODES, f.format)?;
        let nodes: Vec<NewNode> = f
            .nodes
            .into_iter()
            .map(|n| NewNode {
                id: Some(n.id),
                label: n.label,
                properties: if n.properties.is_null() {
                    Json::Object(Default::default())
                } else {
                    n.properties
                },
            })
            .collect();
        g.create_nodes(&nodes).map_err(|e| refused(NODES, e))?;
    }
    if let Some(bytes) = storage.read(EDGES)? {
        let f: EdgesFile = parse(storage, EDGES, &bytes)?;
        check_format(storage, EDGES, f.format)?;
        let edges: Vec<NewEdge> = f
            .edges
            .into_iter()
            .map(|e| NewEdge {
                id: Some(e.id),
                from: e.from,
                to: e.to,
                edge_type: e.edge_type,
                properties: if e.properties.is_null() {
                    Json::Object(Default::default())
                } else {
                    e.properties
                },
            })
            .collect();
        g.create_edges(&edges).map_err(|e| refused(EDGES, e))?;
    }
    let want = indexes(&all_nodes(&g)?, &all_edges(&g)?);
    let have = storage
        .read(INDEXES)?
        .and_then(|b| serde_json::from_slice::<IndexesFile>(&b).ok());
    if have.as_ref() != Some(&want) {
        storage.write(INDEXES, to_bytes(&want, pretty))?;
        log::info!(
            "files: wrote {} again from the nodes and edges",
            storage.path_of(INDEXES)
        );
    }
    Ok(g)
}

impl FilesGraph {
    /// Open the graph in `storage`.
    pub(crate) fn open(storage: Storage, pretty: bool) -> Result<FilesGraph> {
        let held = Held::open(storage, move |s| load(s, pretty))?;
        Ok(FilesGraph { held, pretty })
    }

    fn write<R>(
        &self,
        touched: Touched,
        change: impl FnOnce(&MemoryGraph) -> Result<R>,
    ) -> Result<R> {
        let pretty = self.pretty;
        // Only the imports can stop part way (the memory graph checks
        // every other batch whole first).
        let partial = matches!(touched, Touched::Adding);
        self.held.write(partial, change, |g, storage| {
            save(g, storage, pretty, touched)
        })
    }
}

impl Graph for FilesGraph {
    fn create_nodes(&self, nodes: &[NewNode]) -> Result<Vec<Node>> {
        self.write(Touched::Nodes, |g| g.create_nodes(nodes))
    }

    fn get_node(&self, id: &str) -> Result<Option<Node>> {
        self.held.read(|g| g.get_node(id))
    }

    fn update_node(&self, id: &str, properties: &Json) -> Result<Node> {
        self.write(Touched::Nodes, |g| g.update_node(id, properties))
    }

    fn delete_node(&self, id: &str) -> Result<bool> {
        self.write(Touched::Removing, |g| g.delete_node(id))
    }

    fn create_edges(&self, edges: &[NewEdge]) -> Result<Vec<Edge>> {
        self.write(Touched::Edges, |g| g.create_edges(edges))
    }

    fn get_edge(&self, id: &str) -> Result<Option<Edge>> {
        self.held.read(|g| g.get_edge(id))
    }

    fn update_edge(&self, id: &str, properties: &Json) -> Result<Edge> {
        self.write(Touched::Edges, |g| g.update_edge(id, properties))
    }

    fn delete_edge(&self, id: &str) -> Result<bool> {
        self.write(Touched::Edges, |g| g.delete_edge(id))
    }

    fn neighbors(
        &self,
        id: &str,
        direction: Direction,
        edge_types: &[String],
        depth: u32,
    ) -> Result<Vec<Neighbor>> {
        self.held
            .read(|g| g.neighbors(id, direction, edge_types, depth))
    }

    fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Result<Option<Path>> {
        self.held.read(|g| g.shortest_path(from, to, max_depth))
    }

    fn edges_of(&self, id: &str, direction: Direction) -> Result<Vec<Edge>> {
        self.held.read(|g| g.edges_of(id, direction))
    }

    fn find_nodes(&self, query: &NodeQuery) -> Result<Vec<Node>> {
        self.held.read(|g| g.find_nodes(query))
    }

    fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Node>> {
        self.held.read(|g| g.export_nodes(cursor, limit))
    }

    fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Edge>> {
        self.held.read(|g| g.export_edges(cursor, limit))
    }

    fn import_nodes(&self, nodes: &[Node], overwrite: bool) -> Result<u64> {
        self.write(Touched::Adding, |g| g.import_nodes(nodes, overwrite))
    }

    fn import_edges(&self, edges: &[Edge], overwrite: bool) -> Result<u64> {
        self.write(Touched::Adding, |g| g.import_edges(edges, overwrite))
    }

    fn health(&self) -> Result<Health> {
        self.held.storage.read(NODES)?;
        let (nodes, edges) = self
            .held
            .read(|g| Ok((all_nodes(g)?.len(), all_edges(g)?.len())))?;
        Ok(Health::ok(format!(
            "JSON files in {}: {nodes} nodes, {edges} edges",
            self.held.storage.shown()
        )))
    }
}
