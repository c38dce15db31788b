//! The graph capability: [`PgGraph`], nodes and edges in two tables of
//! the store's schema.
//!
//! ```sql
//! _bp_graph_nodes(id TEXT COLLATE "C" PRIMARY KEY, label TEXT, properties JSONB)
//! _bp_graph_edges(id TEXT COLLATE "C" PRIMARY KEY,
//!                 from_id → nodes ON DELETE CASCADE, to_id → nodes ON DELETE CASCADE,
//!                 edge_type TEXT, properties JSONB)
//!     -- indexed on (from_id, edge_type) and (to_id, edge_type)
//! ```
//!
//! Ids use the "C" collation, so ordering (and export cursors) is by
//! bytes, as on every other backend, whatever the database's locale.
//!
//! - `neighbors` is one recursive query (`WITH RECURSIVE`): each step joins
//!   the frontier with the edges through the `(from_id, edge_type)` or
//!   `(to_id, edge_type)` index, and `UNION` keeps each (node, depth) once,
//!   so a step's work is bounded by the nodes at that depth, not by the
//!   number of walks.
//! - `shortest_path` is a breadth-first search run by the plugin, one
//!   indexed query per level for the whole frontier (`from_id = ANY($1)`),
//!   stopping at the first level that reaches the target. A recursive query
//!   cannot share a visited set between branches, so it would enumerate
//!   every walk up to `max_depth` before the shortest could be picked.
//! - `update_node`/`update_edge` merge in one statement: `properties ||
//!   patch`, minus the keys the patch sets to `null`.
//! - `find_nodes` runs the label and the payload filter in SQL (see
//!   [`crate::filter`]); the text search is evaluated by the plugin.

use crate::client::{in_transaction, Pool, PooledConn};
use crate::filter::{refs, translate, Param};
use backplane_core::kit::graph::{
    check_edge_type, check_max_depth, check_neighbors_depth, edge_label, new_item_id,
    new_properties, path_changed, PathSearch,
};
use backplane_core::kit::page::{check_limit, fetch_count, page_of};
use backplane_core::{
    Direction, Edge, Error, Graph, Health, Neighbor, NewEdge, NewNode, Node, NodeQuery, Page, Path,
    Result,
};
use postgres::Row;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS _bp_graph_nodes (
    id         TEXT COLLATE "C" PRIMARY KEY,
    label      TEXT NOT NULL,
    properties JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS _bp_graph_nodes_label ON _bp_graph_nodes (label, id);
CREATE TABLE IF NOT EXISTS _bp_graph_edges (
    id         TEXT COLLATE "C" PRIMARY KEY,
    from_id    TEXT COLLATE "C" NOT NULL REFERENCES _bp_graph_nodes (id) ON DELETE CASCADE,
    to_id      TEXT COLLATE "C" NOT NULL REFERENCES _bp_graph_nodes (id) ON DELETE CASCADE,
    edge_type  TEXT NOT NULL,
    properties JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS _bp_graph_edges_from ON _bp_graph_edges (from_id, edge_type);
CREATE INDEX IF NOT EXISTS _bp_graph_edges_to ON _bp_graph_edges (to_id, edge_type);
"#;

/// One of the two tables, as the statements nodes and edges share (get,
/// update, export) need it.
struct Items<T> {
    /// The item, for messages.
    what: &'static str,
    table: &'static str,
    /// The columns [`read`](Self::read) takes, in order.
    cols: &'static str,
    read: fn(&Row) -> T,
    id: fn(&T) -> &str,
}

impl<T> Items<T> {
    /// The item `id`, if it exists.
    fn get(&self, conn: &mut PooledConn<'_>, id: &str) -> Result<Option<T>> {
        let sql = format!("SELECT {} FROM {} WHERE id = $1", self.cols, self.table);
        Ok(conn.query(&sql, &[&id])?.first().map(self.read))
    }

    /// Merge `properties` into the item's, in one statement.
    fn update(&self, pool: &Pool, id: &str, properties: &Json) -> Result<T> {
        let what = self.what;
        if !properties.is_object() {
            return Err(Error::invalid(format!(
                "the update for {what} '{id}' is not a JSON object: pass the properties to set (null removes a key)"
            )));
        }
        let sql = format!(
            "UPDATE {} SET properties = {MERGE} WHERE id = $1 RETURNING {}",
            self.table, self.cols
        );
        let mut conn = pool.get()?;
        conn.query(&sql, &[&id, properties])?
            .first()
            .map(self.read)
            .ok_or_else(|| {
                Error::not_found(format!("{what} '{id}' does not exist: create it first"))
            })
    }

    /// A page of the items after `cursor`, by id.
    fn export(&self, pool: &Pool, cursor: Option<&str>, limit: usize) -> Result<Page<T>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2",
            self.cols, self.table
        );
        check_limit(limit, "export", "item")?;
        let fetch = fetch_count(limit);
        let rows = pool.get()?.query(&sql, &[&cursor, &fetch])?;
        Ok(page_of(
            rows.iter().map(self.read).collect(),
            limit,
            self.id,
        ))
    }
}

/// The nodes table.
const NODES: Items<Node> = Items {
    what: "node",
    table: "_bp_graph_nodes",
    cols: "id, label, properties",
    read: node,
    id: node_id,
};

/// The edges table.
const EDGES: Items<Edge> = Items {
    what: "edge",
    table: "_bp_graph_edges",
    cols: "id, from_id, to_id, edge_type, properties",
    read: edge,
    id: edge_id,
};

/// A graph store on PostgreSQL.
pub(crate) struct PgGraph {
    pool: Arc<Pool>,
}

impl PgGraph {
    /// Create the tables and indexes if missing (serialised with an
    /// advisory lock, so stores opening at once do not race).
    pub(crate) fn open(pool: Arc<Pool>) -> Result<Self> {
        {
            let mut conn = pool.get()?;
            let key = format!("{}._bp_graph", pool.schema());
            in_transaction(&mut conn, "creating the graph tables", |conn| {
                conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&key])?;
                conn.batch(SCHEMA)
            })?;
        }
        Ok(PgGraph { pool })
    }
}

/// A node from a row of [`NODES`]`.cols`.
fn node(r: &Row) -> Node {
    Node {
        id: r.get(0),
        label: r.get(1),
        properties: r.get(2),
    }
}

/// An edge from a row of [`EDGES`]`.cols`.
fn edge(r: &Row) -> Edge {
    Edge {
        id: r.get(0),
        from: r.get(1),
        to: r.get(2),
        edge_type: r.get(3),
        properties: r.get(4),
    }
}

fn node_id(n: &Node) -> &str {
    &n.id
}

fn edge_id(e: &Edge) -> &str {
    &e.id
}

/// An error unless node `id` exists; `role` names it in the message.
fn require_node(conn: &mut PooledConn<'_>, id: &str, role: &str) -> Result<()> {
    const SQL: &str = "SELECT 1 FROM _bp_graph_nodes WHERE id = $1";
    if conn.query(SQL, &[&id])?.is_empty() {
        return Err(Error::not_found(format!(
            "{role} node '{id}' does not exist: create it first, or check the id"
        )));
    }
    Ok(())
}

/// The merge of `update_node` / `update_edge`: shallow, `null` removes.
const MERGE: &str =
    "(properties || $2::jsonb) - COALESCE(ARRAY(SELECT k FROM jsonb_each($2::jsonb) AS t(k, v) \
     WHERE v = 'null'::jsonb), '{}'::text[])";

/// The recursive query of `neighbors` in `direction`: `$1` the start,
/// `$2` the depth, `$3` the edge types (NULL: any).
fn neighbors_sql(direction: Direction) -> String {
    let step = match direction {
        Direction::Outgoing => {
            "SELECT e.to_id AS next, e.edge_type FROM _bp_graph_edges e WHERE e.from_id = w.id"
        }
        Direction::Incoming => {
            "SELECT e.from_id AS next, e.edge_type FROM _bp_graph_edges e WHERE e.to_id = w.id"
        }
        Direction::Both => {
            "SELECT e.to_id AS next, e.edge_type FROM _bp_graph_edges e WHERE e.from_id = w.id \
             UNION ALL SELECT e.from_id, e.edge_type FROM _bp_graph_edges e WHERE e.to_id = w.id"
        }
    };
    format!(
        "WITH RECURSIVE walk(id, depth) AS (\n\
             SELECT $1::text COLLATE \"C\", 0\n\
           UNION\n\
             SELECT x.next, w.depth + 1 FROM walk w\n\
             CROSS JOIN LATERAL ({step}) x\n\
             WHERE w.depth < $2 AND ($3::text[] IS NULL OR x.edge_type = ANY($3::text[]))\n\
         )\n\
         SELECT n.id, n.label, n.properties, min(w.depth) AS d\n\
         FROM walk w JOIN _bp_graph_nodes n ON n.id = w.id\n\
         WHERE w.id <> $1\n\
         GROUP BY n.id ORDER BY d, n.id"
    )
}

impl Graph for PgGraph {
    fn create_nodes(&self, nodes: &[NewNode]) -> Result<Vec<Node>> {
        const SQL: &str =
            "INSERT INTO _bp_graph_nodes (id, label, properties) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING";
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut prepared = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            let id = new_item_id(n.id.as_ref(), &format!("node {i}"), "n")?;
            let properties = new_properties(&n.properties, &format!("node '{id}'"))?;
            prepared.push(Node {
                id,
                label: n.label.clone(),
                properties,
            });
        }
        let mut conn = self.pool.get()?;
        in_transaction(&mut conn, "create_nodes", |conn| {
            for n in &prepared {
                if conn.execute(SQL, &[&n.id, &n.label, &n.properties])? == 0 {
                    return Err(Error::already_exists(format!(
                        "node '{}' exists already: use update_node to change it, or another id; nothing was created",
                        n.id
                    )));
                }
            }
            Ok(())
        })?;
        Ok(prepared)
    }

    fn get_node(&self, id: &str) -> Result<Option<Node>> {
        NODES.get(&mut self.pool.get()?, id)
    }

    fn update_node(&self, id: &str, properties: &Json) -> Result<Node> {
        NODES.update(&self.pool, id, properties)
    }

    fn delete_node(&self, id: &str) -> Result<bool> {
        // Its edges go with it (ON DELETE CASCADE).
        const SQL: &str = "DELETE FROM _bp_graph_nodes WHERE id = $1";
        Ok(self.pool.get()?.execute(SQL, &[&id])? > 0)
    }

    fn create_edges(&self, edges: &[NewEdge]) -> Result<Vec<Edge>> {
        const SQL: &str =
            "INSERT INTO _bp_graph_edges (id, from_id, to_id, edge_type, properties) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING";
        const ENDS: &str = "SELECT id FROM _bp_graph_nodes WHERE id = ANY($1)";
        if edges.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(edges.len());
        for (i, e) in edges.iter().enumerate() {
            let what = edge_label(i, e);
            check_edge_type(e, &what)?;
            let id = new_item_id(e.id.as_ref(), &what, "e")?;
            out.push((
                what.clone(),
                Edge {
                    id,
                    from: e.from.clone(),
                    to: e.to.clone(),
                    edge_type: e.edge_type.clone(),
                    properties: new_properties(&e.properties, &what)?,
                },
            ));
        }
        let mut conn = self.pool.get()?;
        in_transaction(&mut conn, "create_edges", |conn| {
            let ends: Vec<&str> = out
                .iter()
                .flat_map(|(_, e)| [e.from.as_str(), e.to.as_str()])
                .collect();
            let found: HashSet<String> = conn
                .query(ENDS, &[&ends])?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for (what, e) in &out {
                for (end, role) in [(&e.from, "source"), (&e.to, "target")] {
                    if !found.contains(end) {
                        return Err(Error::not_found(format!(
                            "{what}: the {role} node '{end}' does not exist: create it first; nothing was created"
                        )));
                    }
                }
                let n = conn.execute(SQL, &[&e.id, &e.from, &e.to, &e.edge_type, &e.properties])?;
                if n == 0 {
                    return Err(Error::already_exists(format!(
                        "edge '{}' exists already: use update_edge to change it, or another id; nothing was created",
                        e.id
                    )));
                }
            }
            Ok(())
        })?;
        Ok(out.into_iter().map(|(_, e)| e).collect())
    }

    fn get_edge(&self, id: &str) -> Result<Option<Edge>> {
        EDGES.get(&mut self.pool.get()?, id)
    }

    fn update_edge(&self, id: &str, properties: &Json) -> Result<Edge> {
        EDGES.update(&self.pool, id, properties)
    }

    fn delete_edge(&self, id: &str) -> Result<bool> {
        const SQL: &str = "DELETE FROM _bp_graph_edges WHERE id = $1";
        Ok(self.pool.get()?.execute(SQL, &[&id])? > 0)
    }

    fn neighbors(
        &self,
        id: &str,
        direction: Direction,
        edge_types: &[String],
        depth: u32,
    ) -> Result<Vec<Neighbor>> {
        check_neighbors_depth(depth)?;
        let sql = neighbors_sql(direction);
        let types: Option<Vec<String>> = (!edge_types.is_empty()).then(|| edge_types.to_vec());
        let depth = depth as i32;
        let mut conn = self.pool.get()?;
        let rows = conn.query(&sql, &[&id, &depth, &types])?;
        // Only an empty result needs the second look: no neighbours, or no
        // such node.
        if rows.is_empty() {
            require_node(&mut conn, id, "start")?;
        }
        Ok(rows
            .iter()
            .map(|r| Neighbor {
                node: node(r),
                depth: r.get::<_, i32>(3) as u32,
            })
            .collect())
    }

    fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Result<Option<Path>> {
        const OUT: &str = "SELECT from_id, id, to_id FROM _bp_graph_edges WHERE from_id = ANY($1) \
             ORDER BY from_id, to_id, id";
        check_max_depth(max_depth)?;
        let mut conn = self.pool.get()?;
        let start = NODES.get(&mut conn, from)?.ok_or_else(|| {
            Error::not_found(format!("start node '{from}' does not exist: check the id"))
        })?;
        if from == to {
            return Ok(Some(Path {
                nodes: vec![start],
                edges: Vec::new(),
            }));
        }
        require_node(&mut conn, to, "end")?;
        // Breadth-first, one query per level; within a level, frontier
        // nodes in order and their edges by (to_id, id), so the path found
        // is the same as on the other backends.
        let mut search = PathSearch::new(from, to);
        let mut frontier = vec![from.to_string()];
        'bfs: for _ in 0..max_depth {
            let rows = conn.query(OUT, &[&frontier])?;
            let mut by_source: HashMap<String, Vec<(String, String)>> = HashMap::new();
            for r in &rows {
                by_source
                    .entry(r.get(0))
                    .or_default()
                    .push((r.get(1), r.get(2)));
            }
            for n in &frontier {
                for (edge_id, target) in by_source.remove(n).unwrap_or_default() {
                    if search.visit(n, edge_id, target) {
                        break 'bfs;
                    }
                }
            }
            frontier = search.next_level();
            if frontier.is_empty() {
                break;
            }
        }
        let Some(ids) = search.path() else {
            return Ok(None);
        };
        let nodes = ids
            .nodes
            .iter()
            .map(|id| NODES.get(&mut conn, id)?.ok_or_else(path_changed))
            .collect::<Result<Vec<_>>>()?;
        let edges = ids
            .edges
            .iter()
            .map(|id| EDGES.get(&mut conn, id)?.ok_or_else(path_changed))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Path { nodes, edges }))
    }

    fn edges_of(&self, id: &str, direction: Direction) -> Result<Vec<Edge>> {
        let sql = format!(
            "SELECT {} FROM _bp_graph_edges WHERE {} ORDER BY id",
            EDGES.cols,
            match direction {
                Direction::Outgoing => "from_id = $1",
                Direction::Incoming => "to_id = $1",
                Direction::Both => "from_id = $1 OR to_id = $1",
            }
        );
        let mut conn = self.pool.get()?;
        require_node(&mut conn, id, "the")?;
        Ok(conn.query(&sql, &[&id])?.iter().map(edge).collect())
    }

    fn find_nodes(&self, query: &NodeQuery) -> Result<Vec<Node>> {
        let translated = query.filter.as_ref().map(|f| translate(f, "properties", 2));
        let mut params: Vec<Param> = vec![Box::new(query.label.clone())];
        let mut sql = format!(
            "SELECT {} FROM _bp_graph_nodes WHERE ($1::text IS NULL OR label = $1)",
            NODES.cols
        );
        // The filter runs in SQL when it translates; `select` checks every
        // row again (and the text), so the limit is SQL's only when nothing
        // is left to check here.
        let mut in_rust = query.text.as_deref().is_some_and(|t| !t.is_empty());
        match translated {
            Some(Some(t)) => {
                sql.push_str(&format!(" AND ({})", t.sql));
                params.extend(t.params);
            }
            Some(None) => in_rust = true,
            None => {}
        }
        sql.push_str(" ORDER BY id");
        if query.limit != 0 && !in_rust {
            sql.push_str(&format!(" LIMIT {}", query.limit.min(i64::MAX as usize)));
        }
        let mut conn = self.pool.get()?;
        let rows = conn.query(&sql, &refs(&params))?;
        query.select(rows.iter().map(|r| Ok(node(r))))
    }

    fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Node>> {
        NODES.export(&self.pool, cursor, limit)
    }

    fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Edge>> {
        EDGES.export(&self.pool, cursor, limit)
    }

    fn health(&self) -> Result<Health> {
        self.pool
            .health(", graph in _bp_graph_nodes/_bp_graph_edges")
    }
}
