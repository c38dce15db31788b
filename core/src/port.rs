//! The default implementations of the capability traits' export and
//! import methods, written with each trait's other methods (and, for
//! relational stores, standard SQL that SQLite and PostgreSQL both run), so
//! a backend that does nothing special can still be moved to another one.
//! Backends override them where they can do better: a stable row order,
//! a bulk load, an atomic upsert.

use crate::{
    Cache, CacheEntry, Edge, Error, ErrorKind, Graph, Message, NewEdge, NewNode, Node, Params,
    Relational, Result, Statement, TableSchema, Value,
};
use std::collections::HashSet;

/// `name` as a quoted SQL identifier (`"a""b"` for `a"b`).
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn cursor_error(cursor: &str) -> Error {
    Error::invalid(format!(
        "'{cursor}' is not a cursor this store gave: pass the next_cursor of the previous page, or none for the first"
    ))
}

/// [`Relational::export_rows_into`]'s default: keyset pages on the
/// primary key, or offset pages (in the backend's row order) without one.
pub fn export_rows_into<R: Relational + ?Sized>(
    r: &R,
    table: &str,
    cursor: Option<&str>,
    limit: usize,
    sink: &mut dyn crate::RowSink,
) -> Result<Option<String>> {
    crate::kit::page::check_limit(limit, "export_rows", "row")?;
    let schema = r.describe(table)?;
    let cols: Vec<String> = schema.columns.iter().map(|c| quote(&c.name)).collect();
    let cols = cols.join(", ");
    let t = quote(table);
    if schema.primary_key.is_empty() {
        let offset: u64 = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| cursor_error(c))?,
        };
        let mut counted = KeyedSink::new(sink, &schema, false);
        r.query_into(
            &format!("SELECT {cols} FROM {t} LIMIT {limit} OFFSET {offset}"),
            (&Params::None).into(),
            &mut counted,
        )?;
        let n = counted.rows as u64;
        return Ok((n == limit as u64).then(|| (offset + n).to_string()));
    }
    let key: Vec<String> = schema.primary_key.iter().map(|c| quote(c)).collect();
    let (filter, params) = match cursor {
        None => (String::new(), Params::None),
        Some(c) => {
            let last: Vec<Value> = serde_json::from_str(c).map_err(|_| cursor_error(c))?;
            if last.len() != key.len() {
                return Err(cursor_error(c));
            }
            let marks = vec!["?"; key.len()].join(", ");
            (
                format!(" WHERE ({}) > ({marks})", key.join(", ")),
                Params::Positional(last),
            )
        }
    };
    let mut keyed = KeyedSink::new(sink, &schema, false);
    r.query_into(
        &format!(
            "SELECT {cols} FROM {t}{filter} ORDER BY {} LIMIT {limit}",
            key.join(", ")
        ),
        (&params).into(),
        &mut keyed,
    )?;
    keyed.cursor(limit)
}

/// A [`RowSink`](crate::RowSink) in front of another that remembers the key of the last
/// row it passed on (for the next page's cursor) and, with `by_position`,
/// holds back each row's extra last column (a rowid or a ctid) as that key:
/// how a backend streams an export page straight into the boundary.
pub struct KeyedSink<'a> {
    inner: &'a mut dyn crate::RowSink,
    key_at: Vec<usize>,
    by_position: bool,
    width: usize,
    col: usize,
    rows: usize,
    /// The current row's key values, in key order.
    last_key: Vec<Value>,
}

impl<'a> KeyedSink<'a> {
    /// Pass rows of `schema`'s table (its columns, plus a position column
    /// when `by_position`) on to `inner`.
    pub fn new(inner: &'a mut dyn crate::RowSink, schema: &TableSchema, by_position: bool) -> Self {
        let key_at = if by_position {
            vec![schema.columns.len()]
        } else {
            schema
                .primary_key
                .iter()
                .filter_map(|k| schema.columns.iter().position(|c| &c.name == k))
                .collect()
        };
        KeyedSink {
            inner,
            key_at,
            by_position,
            width: schema.columns.len(),
            col: 0,
            rows: 0,
            last_key: Vec::new(),
        }
        .with_key_slots()
    }

    fn with_key_slots(mut self) -> Self {
        self.last_key = vec![Value::Null; self.key_at.len()];
        self
    }

    /// The next page's cursor, when the page was full (`limit` rows): the
    /// last row's key. A full last page is followed by an empty one.
    pub fn cursor(&self, limit: usize) -> Result<Option<String>> {
        if self.rows < limit {
            return Ok(None);
        }
        Ok(Some(if self.by_position {
            match self.last_key.first() {
                Some(Value::Integer(i)) => i.to_string(),
                Some(Value::Text(t)) => t.clone(),
                _ => return Err(Error::backend("a row came back without its position")),
            }
        } else {
            serde_json::to_string(&self.last_key)?
        }))
    }
}

impl crate::RowSink for KeyedSink<'_> {
    fn columns(&mut self, names: &std::sync::Arc<[String]>) {
        if self.by_position && names.len() > self.width {
            let kept: std::sync::Arc<[String]> = names[..self.width].into();
            self.inner.columns(&kept);
        } else {
            self.inner.columns(names);
        }
    }
    fn begin_row(&mut self) {
        self.rows += 1;
        self.col = 0;
        self.inner.begin_row();
    }
    fn value(&mut self, v: crate::ValueRef<'_>) {
        if let Some(rank) = self.key_at.iter().position(|&k| k == self.col) {
            self.last_key[rank] = v.to_value();
        }
        if !(self.by_position && self.col == self.width) {
            self.inner.value(v);
        }
        self.col += 1;
    }
}

/// The `CREATE TABLE` (SQLite's dialect, which the default import uses)
/// and `CREATE INDEX` statements of `schema`.
pub fn create_statements(schema: &TableSchema) -> Vec<String> {
    let t = quote(&schema.name);
    let single_auto_key = schema.primary_key.len() == 1
        && schema
            .column(&schema.primary_key[0])
            .is_some_and(|c| c.auto_increment);
    let mut parts: Vec<String> = schema
        .columns
        .iter()
        .map(|c| {
            let ty = c
                .column_type
                .map_or(c.data_type.as_str(), |t| t.sqlite_type());
            let mut d = format!("{} {ty}", quote(&c.name));
            if single_auto_key && c.name == schema.primary_key[0] {
                // INTEGER PRIMARY KEY: SQLite numbers it past the largest.
                d = format!("{} INTEGER PRIMARY KEY", quote(&c.name));
            } else if !c.nullable {
                d.push_str(" NOT NULL");
            }
            d
        })
        .collect();
    if !schema.primary_key.is_empty() && !single_auto_key {
        let k: Vec<String> = schema.primary_key.iter().map(|c| quote(c)).collect();
        parts.push(format!("PRIMARY KEY ({})", k.join(", ")));
    }
    for fk in &schema.foreign_keys {
        let cols: Vec<String> = fk.columns.iter().map(|c| quote(c)).collect();
        let refs: Vec<String> = fk.ref_columns.iter().map(|c| quote(c)).collect();
        let mut d = format!(
            "FOREIGN KEY ({}) REFERENCES {} ({})",
            cols.join(", "),
            quote(&fk.ref_table),
            refs.join(", ")
        );
        if let Some(action) = &fk.on_delete {
            d.push_str(&format!(" ON DELETE {action}"));
        }
        parts.push(d);
    }
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {t} ({})",
        parts.join(", ")
    )];
    out.extend(create_index_statements(schema));
    out
}

/// The `CREATE [UNIQUE] INDEX IF NOT EXISTS` statements of `schema`'s
/// indexes (standard SQL: SQLite, PostgreSQL and DuckDB run them).
pub fn create_index_statements(schema: &TableSchema) -> Vec<String> {
    let t = quote(&schema.name);
    schema
        .indexes
        .iter()
        .map(|ix| {
            let cols: Vec<String> = ix.columns.iter().map(|c| quote(c)).collect();
            format!(
                "CREATE {}INDEX IF NOT EXISTS {} ON {t} ({})",
                if ix.unique { "UNIQUE " } else { "" },
                quote(&ix.name),
                cols.join(", ")
            )
        })
        .collect()
}

/// [`Relational::import_begin`]'s default: every table and index created
/// in one transaction, with [`create_statements`].
pub fn import_begin<R: Relational + ?Sized>(r: &R, tables: &[TableSchema]) -> Result<()> {
    let statements: Vec<Statement> = tables
        .iter()
        .flat_map(create_statements)
        .map(|sql| Statement::new(sql, ()))
        .collect();
    r.transaction(&statements).map(|_| ())
}

/// The `INSERT` statement the default import runs once per row.
pub fn insert_statement(
    schema_key: &[String],
    table: &str,
    columns: &[String],
    overwrite: bool,
) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote(c)).collect();
    let marks = vec!["?"; columns.len()].join(", ");
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ({marks}) ON CONFLICT",
        quote(table),
        cols.join(", ")
    );
    let set: Vec<String> = columns
        .iter()
        .filter(|c| !schema_key.contains(c))
        .map(|c| format!("{0} = excluded.{0}", quote(c)))
        .collect();
    if overwrite && !schema_key.is_empty() && !set.is_empty() {
        let k: Vec<String> = schema_key.iter().map(|c| quote(c)).collect();
        sql.push_str(&format!(
            " ({}) DO UPDATE SET {}",
            k.join(", "),
            set.join(", ")
        ));
    } else {
        sql.push_str(" DO NOTHING");
    }
    sql
}

/// [`Relational::import_rows`]'s default: one `INSERT … ON CONFLICT` per
/// row, all in one [`execute_many`](Relational::execute_many).
pub fn import_rows<R: Relational + ?Sized>(
    r: &R,
    table: &str,
    columns: &[String],
    rows: &[Vec<Value>],
    overwrite: bool,
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let key = if overwrite {
        r.describe(table)?.primary_key
    } else {
        Vec::new()
    };
    let sql = insert_statement(&key, table, columns, overwrite);
    let sets: Vec<Params> = rows
        .iter()
        .map(|row| Params::Positional(row.clone()))
        .collect();
    r.execute_many(&sql, &sets)?;
    Ok(rows.len() as u64)
}

/// [`Cache::import_entries`]'s default: `set` each entry with its TTL,
/// skipping keys that exist unless `overwrite`.
pub fn import_entries<C: Cache + ?Sized>(
    c: &C,
    entries: &[CacheEntry],
    overwrite: bool,
) -> Result<u64> {
    for e in entries {
        if !overwrite && c.exists(&e.key)? {
            continue;
        }
        c.set(&e.key, &e.value, e.ttl)?;
    }
    Ok(entries.len() as u64)
}

/// [`Cache::import_messages`]'s default: add, in one batch, the messages
/// whose ids the channel does not hold yet.
pub fn import_messages<C: Cache + ?Sized>(
    c: &C,
    channel: &str,
    messages: &[Message],
) -> Result<u64> {
    let present: HashSet<String> = c
        .recent(channel, usize::MAX, None)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    let missing: Vec<Message> = messages
        .iter()
        .filter(|m| m.id.is_empty() || !present.contains(&m.id))
        .cloned()
        .collect();
    if !missing.is_empty() {
        c.add_messages(channel, &missing)?;
    }
    Ok(messages.len() as u64)
}

fn cannot_replace(what: &str, id: &str) -> Error {
    Error::unsupported(format!(
        "this backend cannot replace the existing {what} '{id}' in place: import into an empty store, or keep the existing records"
    ))
}

/// [`Graph::import_nodes`]'s default: create them all; when some exist,
/// create the missing ones one by one and keep the existing ones (an
/// existing node that differs, with `overwrite`, is an error).
pub fn import_nodes<G: Graph + ?Sized>(g: &G, nodes: &[Node], overwrite: bool) -> Result<u64> {
    let fresh = |n: &Node| NewNode {
        id: Some(n.id.clone()),
        label: n.label.clone(),
        properties: n.properties.clone(),
    };
    match g.create_nodes(&nodes.iter().map(fresh).collect::<Vec<_>>()) {
        Ok(_) => return Ok(nodes.len() as u64),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for n in nodes {
        match g.get_node(&n.id)? {
            None => {
                g.create_nodes(&[fresh(n)])?;
            }
            Some(existing) if overwrite && existing != *n => {
                return Err(cannot_replace("node", &n.id))
            }
            Some(_) => {}
        }
    }
    Ok(nodes.len() as u64)
}

/// [`Graph::import_edges`]'s default, as [`import_nodes`].
pub fn import_edges<G: Graph + ?Sized>(g: &G, edges: &[Edge], overwrite: bool) -> Result<u64> {
    let fresh = |e: &Edge| NewEdge {
        id: Some(e.id.clone()),
        from: e.from.clone(),
        to: e.to.clone(),
        edge_type: e.edge_type.clone(),
        properties: e.properties.clone(),
    };
    match g.create_edges(&edges.iter().map(fresh).collect::<Vec<_>>()) {
        Ok(_) => return Ok(edges.len() as u64),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for e in edges {
        match g.get_edge(&e.id)? {
            None => {
                g.create_edges(&[fresh(e)])?;
            }
            Some(existing) if overwrite && existing != *e => {
                return Err(cannot_replace("edge", &e.id))
            }
            Some(_) => {}
        }
    }
    Ok(edges.len() as u64)
}
