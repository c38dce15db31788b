//! The graph capability: nodes and edges in two tables, traversed with
//! recursive CTEs.
//!
//! ```sql
//! _bp_graph_nodes(id PRIMARY KEY, label, properties TEXT)
//! _bp_graph_edges(id PRIMARY KEY, from_id, to_id, edge_type, properties TEXT)
//!     -- indexed on (from_id, edge_type) and (to_id, edge_type)
//! ```
//!
//! Edges reference their nodes with `ON DELETE CASCADE`, so the schema keeps
//! the graph consistent even when edited from the `sqlite3` shell.

use backplane_core::graph::merge_properties;
use backplane_core::{
    Direction, Edge, Error, Graph, Health, Neighbor, NewEdge, NewNode, Node, NodeQuery, Page, Path,
    Result,
};
use rusqlite::{params, Connection, OptionalExtension};

use backplane_core::kit::graph::{
    check_edge_type, check_max_depth, check_neighbors_depth, edge_label, new_item_id,
    new_properties, path_changed, shortest_path_ids,
};
use backplane_core::kit::page::{check_limit, fetch_count, page_of};
use backplane_sqlite_engine::db::{sql_error, write_tx, Db};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _bp_graph_nodes (
    id         TEXT PRIMARY KEY,
    label      TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS _bp_graph_nodes_label ON _bp_graph_nodes(label);
CREATE TABLE IF NOT EXISTS _bp_graph_edges (
    id         TEXT PRIMARY KEY,
    from_id    TEXT NOT NULL REFERENCES _bp_graph_nodes(id) ON DELETE CASCADE,
    to_id      TEXT NOT NULL REFERENCES _bp_graph_nodes(id) ON DELETE CASCADE,
    edge_type  TEXT NOT NULL,
    properties TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS _bp_graph_edges_from ON _bp_graph_edges(from_id, edge_type);
CREATE INDEX IF NOT EXISTS _bp_graph_edges_to ON _bp_graph_edges(to_id, edge_type);";

/// A graph store on one SQLite database.
pub(crate) struct SqliteGraph {
    db: Db,
}

impl SqliteGraph {
    /// The graph store on `db`, its tables created if missing.
    pub(crate) fn open(db: Db) -> Result<Self> {
        db.create_tables(SCHEMA)?;
        Ok(SqliteGraph { db })
    }

    /// Merge `patch` into the properties of the `kind` ("node" or "edge")
    /// `id`: read with `get`, written back with `sql` (`?1` the id, `?2`
    /// the properties).
    fn update_properties<T>(
        &self,
        kind: &str,
        id: &str,
        patch: &serde_json::Value,
        sql: &str,
        get: fn(&Connection, &str) -> Result<Option<T>>,
        properties: fn(&mut T) -> &mut serde_json::Value,
    ) -> Result<T> {
        if !patch.is_object() {
            return Err(Error::invalid(format!(
                "the update for {kind} '{id}' is not a JSON object: pass the properties to set (null removes a key)"
            )));
        }
        let conn = self.db.lock();
        write_tx(&conn, |tx| {
            let mut item = get(tx, id)?.ok_or_else(|| {
                Error::not_found(format!("{kind} '{id}' does not exist: create it first"))
            })?;
            let merged = properties(&mut item);
            merge_properties(merged, patch);
            let text = merged.to_string();
            tx.prepare_cached(sql)
                .and_then(|mut s| s.execute(params![id, text]))
                .map_err(|e| sql_error(e, sql))?;
            Ok(item)
        })
    }
}

const NODE_COLS: &str = "id, label, properties";
const EDGE_COLS: &str = "id, from_id, to_id, edge_type, properties";

fn parse_props(text: &str, what: &str, id: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| {
        Error::backend(format!(
            "{what} '{id}' has properties that are not JSON: {e}"
        ))
    })
}

fn node_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn to_node((id, label, props): (String, String, String)) -> Result<Node> {
    let properties = parse_props(&props, "node", &id)?;
    Ok(Node {
        id,
        label,
        properties,
    })
}

type EdgeRow = (String, String, String, String, String);

fn edge_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EdgeRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn to_edge((id, from, to, edge_type, props): EdgeRow) -> Result<Edge> {
    let properties = parse_props(&props, "edge", &id)?;
    Ok(Edge {
        id,
        from,
        to,
        edge_type,
        properties,
    })
}

fn get_node(conn: &Connection, id: &str) -> Result<Option<Node>> {
    const SQL: &str = "SELECT id, label, properties FROM _bp_graph_nodes WHERE id = ?1";
    conn.prepare_cached(SQL)
        .and_then(|mut s| s.query_row([id], node_from_row).optional())
        .map_err(|e| sql_error(e, SQL))?
        .map(to_node)
        .transpose()
}

fn get_edge(conn: &Connection, id: &str) -> Result<Option<Edge>> {
    const SQL: &str =
        "SELECT id, from_id, to_id, edge_type, properties FROM _bp_graph_edges WHERE id = ?1";
    conn.prepare_cached(SQL)
        .and_then(|mut s| s.query_row([id], edge_from_row).optional())
        .map_err(|e| sql_error(e, SQL))?
        .map(to_edge)
        .transpose()
}

fn node_exists(conn: &Connection, id: &str) -> Result<bool> {
    const SQL: &str = "SELECT 1 FROM _bp_graph_nodes WHERE id = ?1";
    conn.prepare_cached(SQL)
        .and_then(|mut s| s.exists([id]))
        .map_err(|e| sql_error(e, SQL))
}

fn require_node(conn: &Connection, id: &str, role: &str) -> Result<()> {
    if node_exists(conn, id)? {
        Ok(())
    } else {
        Err(Error::not_found(format!(
            "{role} node '{id}' does not exist: create it first, or check the id"
        )))
    }
}

const WALK_OUT: &str = "
    SELECT e.to_id, w.depth + 1 FROM walk w JOIN _bp_graph_edges e ON e.from_id = w.id
    WHERE w.depth < ?2 AND (?3 IS NULL OR e.edge_type IN (SELECT value FROM json_each(?3)))";
const WALK_IN: &str = "
    SELECT e.from_id, w.depth + 1 FROM walk w JOIN _bp_graph_edges e ON e.to_id = w.id
    WHERE w.depth < ?2 AND (?3 IS NULL OR e.edge_type IN (SELECT value FROM json_each(?3)))";

fn neighbors_sql(direction: Direction) -> String {
    let steps = match direction {
        Direction::Outgoing => WALK_OUT.to_string(),
        Direction::Incoming => WALK_IN.to_string(),
        Direction::Both => format!("{WALK_OUT}\n    UNION{WALK_IN}"),
    };
    format!(
        "WITH RECURSIVE walk(id, depth) AS (\n    SELECT ?1, 0\n    UNION{steps}\n)\n\
         SELECT n.id, n.label, n.properties, min(w.depth) AS d\n\
         FROM walk w JOIN _bp_graph_nodes n ON n.id = w.id\n\
         WHERE w.id <> ?1\n\
         GROUP BY n.id ORDER BY d, n.id"
    )
}

impl Graph for SqliteGraph {
    fn create_nodes(&self, nodes: &[NewNode]) -> Result<Vec<Node>> {
        const SQL: &str = "INSERT INTO _bp_graph_nodes (id, label, properties) VALUES (?1, ?2, ?3)";
        let conn = self.db.lock();
        write_tx(&conn, |tx| {
            let mut out = Vec::with_capacity(nodes.len());
            for (i, n) in nodes.iter().enumerate() {
                let id = new_item_id(n.id.as_ref(), &format!("node {i}"), "n")?;
                let properties = new_properties(&n.properties, &format!("node '{id}'"))?;
                if node_exists(tx, &id)? {
                    return Err(Error::already_exists(format!(
                        "node '{id}' exists already: use update_node to change it, or another id; nothing was created"
                    )));
                }
                tx.prepare_cached(SQL)
                    .and_then(|mut s| s.execute(params![id, n.label, properties.to_string()]))
                    .map_err(|e| sql_error(e, SQL))?;
                out.push(Node {
                    id,
                    label: n.label.clone(),
                    properties,
                });
            }
            Ok(out)
        })
    }

    fn get_node(&self, id: &str) -> Result<Option<Node>> {
        let conn = self.db.lock();
        get_node(&conn, id)
    }

    fn update_node(&self, id: &str, properties: &serde_json::Value) -> Result<Node> {
        const SQL: &str = "UPDATE _bp_graph_nodes SET properties = ?2 WHERE id = ?1";
        self.update_properties("node", id, properties, SQL, get_node, |n| &mut n.properties)
    }

    fn delete_node(&self, id: &str) -> Result<bool> {
        const EDGES: &str = "DELETE FROM _bp_graph_edges WHERE from_id = ?1 OR to_id = ?1";
        const NODE: &str = "DELETE FROM _bp_graph_nodes WHERE id = ?1";
        let conn = self.db.lock();
        write_tx(&conn, |tx| {
            tx.prepare_cached(EDGES)
                .and_then(|mut s| s.execute([id]))
                .map_err(|e| sql_error(e, EDGES))?;
            let n = tx
                .prepare_cached(NODE)
                .and_then(|mut s| s.execute([id]))
                .map_err(|e| sql_error(e, NODE))?;
            Ok(n > 0)
        })
    }

    fn create_edges(&self, edges: &[NewEdge]) -> Result<Vec<Edge>> {
        const SQL: &str =
            "INSERT INTO _bp_graph_edges (id, from_id, to_id, edge_type, properties) \
             VALUES (?1, ?2, ?3, ?4, ?5)";
        const EXISTS: &str = "SELECT 1 FROM _bp_graph_edges WHERE id = ?1";
        let conn = self.db.lock();
        write_tx(&conn, |tx| {
            let mut out = Vec::with_capacity(edges.len());
            for (i, e) in edges.iter().enumerate() {
                let what = edge_label(i, e);
                check_edge_type(e, &what)?;
                let id = new_item_id(e.id.as_ref(), &what, "e")?;
                let properties = new_properties(&e.properties, &what)?;
                for (end, role) in [(&e.from, "source"), (&e.to, "target")] {
                    if !node_exists(tx, end)? {
                        return Err(Error::not_found(format!(
                            "{what}: the {role} node '{end}' does not exist: create it first; nothing was created"
                        )));
                    }
                }
                let taken = tx
                    .prepare_cached(EXISTS)
                    .and_then(|mut s| s.exists([&id]))
                    .map_err(|e| sql_error(e, EXISTS))?;
                if taken {
                    return Err(Error::already_exists(format!(
                        "edge '{id}' exists already: use update_edge to change it, or another id; nothing was created"
                    )));
                }
                tx.prepare_cached(SQL)
                    .and_then(|mut s| {
                        s.execute(params![
                            id,
                            e.from,
                            e.to,
                            e.edge_type,
                            properties.to_string()
                        ])
                    })
                    .map_err(|e| sql_error(e, SQL))?;
                out.push(Edge {
                    id,
                    from: e.from.clone(),
                    to: e.to.clone(),
                    edge_type: e.edge_type.clone(),
                    properties,
                });
            }
            Ok(out)
        })
    }

    fn get_edge(&self, id: &str) -> Result<Option<Edge>> {
        let conn = self.db.lock();
        get_edge(&conn, id)
    }

    fn update_edge(&self, id: &str, properties: &serde_json::Value) -> Result<Edge> {
        const SQL: &str = "UPDATE _bp_graph_edges SET properties = ?2 WHERE id = ?1";
        self.update_properties("edge", id, properties, SQL, get_edge, |e| &mut e.properties)
    }

    fn delete_edge(&self, id: &str) -> Result<bool> {
        const SQL: &str = "DELETE FROM _bp_graph_edges WHERE id = ?1";
        let conn = self.db.lock();
        let n = conn
            .prepare_cached(SQL)
            .and_then(|mut s| s.execute([id]))
            .map_err(|e| sql_error(e, SQL))?;
        Ok(n > 0)
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
        let types = (!edge_types.is_empty())
            .then(|| serde_json::to_string(edge_types))
            .transpose()?;
        let conn = self.db.lock();
        require_node(&conn, id, "start")?;
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| sql_error(e, &sql))?;
        let rows = stmt
            .query_map(params![id, depth, types], |r| {
                Ok((node_from_row(r)?, r.get::<_, u32>(3)?))
            })
            .map_err(|e| sql_error(e, &sql))?;
        let mut out = Vec::new();
        for r in rows {
            let (n, depth) = r.map_err(|e| sql_error(e, &sql))?;
            out.push(Neighbor {
                node: to_node(n)?,
                depth,
            });
        }
        Ok(out)
    }

    fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Result<Option<Path>> {
        const OUT: &str =
            "SELECT id, to_id FROM _bp_graph_edges WHERE from_id = ?1 ORDER BY to_id, id";
        check_max_depth(max_depth)?;
        let conn = self.db.lock();
        let start = get_node(&conn, from)?.ok_or_else(|| {
            Error::not_found(format!("start node '{from}' does not exist: check the id"))
        })?;
        if from == to {
            return Ok(Some(Path {
                nodes: vec![start],
                edges: Vec::new(),
            }));
        }
        require_node(&conn, to, "end")?;

        // Breadth-first along outgoing edges, one indexed lookup per node.
        let mut stmt = conn.prepare_cached(OUT).map_err(|e| sql_error(e, OUT))?;
        let found = shortest_path_ids(from, to, max_depth, |node| {
            let mut rows = stmt.query([node]).map_err(|e| sql_error(e, OUT))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().map_err(|e| sql_error(e, OUT))? {
                let edge: String = r.get(0).map_err(|e| sql_error(e, OUT))?;
                let target: String = r.get(1).map_err(|e| sql_error(e, OUT))?;
                out.push((edge, target));
            }
            Ok(out)
        })?;
        drop(stmt);
        let Some(ids) = found else {
            return Ok(None);
        };
        let nodes = ids
            .nodes
            .iter()
            .map(|id| get_node(&conn, id)?.ok_or_else(path_changed))
            .collect::<Result<Vec<_>>>()?;
        let edges = ids
            .edges
            .iter()
            .map(|id| get_edge(&conn, id)?.ok_or_else(path_changed))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Path { nodes, edges }))
    }

    fn edges_of(&self, id: &str, direction: Direction) -> Result<Vec<Edge>> {
        let sql = format!(
            "SELECT {EDGE_COLS} FROM _bp_graph_edges WHERE {} ORDER BY id",
            match direction {
                Direction::Outgoing => "from_id = ?1",
                Direction::Incoming => "to_id = ?1",
                Direction::Both => "from_id = ?1 OR to_id = ?1",
            }
        );
        let conn = self.db.lock();
        require_node(&conn, id, "the")?;
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| sql_error(e, &sql))?;
        let rows = stmt
            .query_map([id], edge_from_row)
            .map_err(|e| sql_error(e, &sql))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(to_edge(r.map_err(|e| sql_error(e, &sql))?)?);
        }
        Ok(out)
    }

    fn find_nodes(&self, query: &NodeQuery) -> Result<Vec<Node>> {
        const SQL: &str = "SELECT id, label, properties FROM _bp_graph_nodes \
             WHERE (?1 IS NULL OR label = ?1) ORDER BY id LIMIT ?2";
        // Without conditions evaluated here, SQLite applies the limit itself.
        let sql_limit: i64 = if query.limit == 0 || query.needs_scan() {
            -1
        } else {
            query.limit.min(i64::MAX as usize) as i64
        };
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
        let mut rows = stmt
            .query(params![query.label, sql_limit])
            .map_err(|e| sql_error(e, SQL))?;
        query.select(std::iter::from_fn(|| match rows.next() {
            Ok(Some(r)) => Some(
                node_from_row(r)
                    .map_err(|e| sql_error(e, SQL))
                    .and_then(to_node),
            ),
            Ok(None) => None,
            Err(e) => Some(Err(sql_error(e, SQL))),
        }))
    }

    fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Node>> {
        let sql = format!(
            "SELECT {NODE_COLS} FROM _bp_graph_nodes WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
        );
        check_limit(limit, "export", "item")?;
        let fetch = fetch_count(limit);
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| sql_error(e, &sql))?;
        let rows = stmt
            .query_map(params![cursor, fetch], node_from_row)
            .map_err(|e| sql_error(e, &sql))?;
        let mut items = Vec::new();
        for r in rows {
            items.push(to_node(r.map_err(|e| sql_error(e, &sql))?)?);
        }
        Ok(page_of(items, limit, |n| &n.id))
    }

    fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Edge>> {
        let sql = format!(
            "SELECT {EDGE_COLS} FROM _bp_graph_edges WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2"
        );
        check_limit(limit, "export", "item")?;
        let fetch = fetch_count(limit);
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached(&sql).map_err(|e| sql_error(e, &sql))?;
        let rows = stmt
            .query_map(params![cursor, fetch], edge_from_row)
            .map_err(|e| sql_error(e, &sql))?;
        let mut items = Vec::new();
        for r in rows {
            items.push(to_edge(r.map_err(|e| sql_error(e, &sql))?)?);
        }
        Ok(page_of(items, limit, |e| &e.id))
    }

    fn health(&self) -> Result<Health> {
        self.db.health()
    }
}
