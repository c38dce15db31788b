//! A store as the engine's source (its items, read page by page through
//! the capability's export methods) and as its sink (the import methods).
//!
//! The table `_backplane_migrations`, where every relational backend
//! records the migrations it ran, crosses in one canonical form (version,
//! name, checksum, and `applied_at` as a timestamp), because each backend
//! keeps it its own way: the target creates it its own way too (an empty
//! `migrate`) and gets the records in its own form, each checksum marked
//! as imported, so that the application's scripts for those versions, in
//! the target's dialect, count as applied.

use super::engine::{Item, Sink, Source};
use super::record::{Kind, Records};
use super::Merge;
use crate::storage::{CacheStore, GraphStore, RelationalStore, VectorStore};
use backplane_core::relational::{IMPORTED_PREFIX, MIGRATIONS_TABLE};
use backplane_core::{
    ColumnInfo, ColumnType, Distance, Error, Message, Params, Result, TableSchema, Value,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// One store of a [`Storage`](crate::Storage), as the engine sees it.
pub(crate) struct StoreEnd {
    label: String,
    store: Handle,
    /// A cache's `max_messages`, to refuse a channel the target would trim.
    max_messages: Option<u64>,
    /// The relational snapshot being read, if any.
    snapshot: Mutex<Option<String>>,
    /// Whether the last read ran in a snapshot.
    snapshot_taken: Mutex<bool>,
    /// A table's column positions in the store, by item, when they differ
    /// from the item's schema (a table created by someone else).
    order: Mutex<HashMap<String, Option<Vec<usize>>>>,
    /// The target's column type of `applied_at` in its migrations table.
    applied_at: Mutex<Option<ColumnType>>,
    /// Cache keys returned so far in this pass over the keys: a key scan
    /// may return a key twice (Redis's `SCAN` does, while its table is
    /// resized), and each is copied and counted once.
    seen_keys: Mutex<HashSet<String>>,
}

pub(crate) enum Handle {
    Relational(RelationalStore),
    Vector(VectorStore),
    Cache(CacheStore),
    Graph(GraphStore),
}

impl StoreEnd {
    pub(crate) fn new(label: String, store: Handle, max_messages: Option<u64>) -> Self {
        StoreEnd {
            label,
            store,
            max_messages,
            snapshot: Mutex::new(None),
            snapshot_taken: Mutex::new(false),
            order: Mutex::new(HashMap::new()),
            applied_at: Mutex::new(None),
            seen_keys: Mutex::new(HashSet::new()),
        }
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a backup of this store is consistent with, once it was read.
    pub(crate) fn consistency(&self) -> String {
        match &self.store {
            Handle::Relational(_) if Self::lock(&self.snapshot_taken).to_owned() => {
                "snapshot: every table as it was when the backup started".into()
            }
            Handle::Relational(_) => "per page: each page of a table as it was when read".into(),
            Handle::Vector(_) => "per page: each page of a collection as it was when read".into(),
            Handle::Graph(_) => "per page: each page of nodes or edges as it was when read".into(),
            Handle::Cache(_) => {
                "per page: a key or channel written during the backup may be missed".into()
            }
        }
    }

    /// The positions of `item`'s columns in the store's own table.
    fn column_order(&self, r: &RelationalStore, item: &Item) -> Result<Option<Vec<usize>>> {
        if let Some(o) = Self::lock(&self.order).get(&item.name) {
            return Ok(o.clone());
        }
        let want = item_schema(item)?;
        let have = r.blocking().describe(&item.name)?;
        let mut positions = Vec::with_capacity(want.columns.len());
        for c in &want.columns {
            positions.push(have.columns.iter().position(|h| h.name == c.name).ok_or_else(|| {
                Error::invalid(format!(
                    "table '{}' of {} has no column '{}': the two tables differ; copy into an empty store",
                    item.name, self.label, c.name
                ))
            })?);
        }
        let identity = positions.len() == have.columns.len()
            && positions.iter().enumerate().all(|(i, &p)| i == p);
        let o = (!identity).then_some(positions);
        Self::lock(&self.order).insert(item.name.clone(), o.clone());
        Ok(o)
    }
}

fn item_schema(item: &Item) -> Result<&TableSchema> {
    item.schema.as_ref().ok_or_else(|| {
        Error::invalid(format!(
            "table '{}' comes without its schema: the archive's manifest is damaged",
            item.name
        ))
    })
}

/// The migrations table in its canonical form.
fn migrations_schema() -> TableSchema {
    let mut version = ColumnInfo::new("version", ColumnType::Integer);
    version.primary_key = true;
    version.nullable = false;
    let not_null = |name: &str, t: ColumnType| {
        let mut c = ColumnInfo::new(name, t);
        c.nullable = false;
        c
    };
    TableSchema {
        name: MIGRATIONS_TABLE.into(),
        columns: vec![
            version,
            not_null("name", ColumnType::Text),
            not_null("checksum", ColumnType::Text),
            not_null("applied_at", ColumnType::Timestamp),
        ],
        primary_key: vec!["version".into()],
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
    }
}

/// A migration record (version, name, checksum, applied_at) in its
/// canonical form: `applied_at` a timestamp (SQLite keeps milliseconds in
/// an integer), the checksum without the mark of an earlier import.
fn canonical_migration(row: &mut [Value]) {
    if let Some(Value::Text(c)) = row.get_mut(2) {
        if let Some(original) = c.strip_prefix(IMPORTED_PREFIX) {
            *c = original.to_string();
        }
    }
    if let Some(v) = row.get_mut(3) {
        if let Value::Integer(ms) = v {
            *v = Value::Timestamp(ms.saturating_mul(1000));
        }
    }
}

/// A canonical migration record as the target keeps it: the checksum
/// marked as imported (see `IMPORTED_PREFIX`), `applied_at` in the
/// target's column type.
fn imported_migration(row: &[Value], applied_at: Option<ColumnType>) -> Vec<Value> {
    let mut row = row.to_vec();
    if let Some(Value::Text(c)) = row.get_mut(2) {
        *c = format!("{IMPORTED_PREFIX}{c}");
    }
    if applied_at == Some(ColumnType::Integer) {
        if let Some(Value::Timestamp(us)) = row.get(3) {
            row[3] = Value::Integer(us / 1000);
        }
    }
    row
}

/// Tables ordered parents first (a table after those its foreign keys
/// reference); tables in a cycle keep their order.
fn parents_first(mut tables: Vec<TableSchema>) -> Vec<TableSchema> {
    let names: HashSet<String> = tables.iter().map(|t| t.name.clone()).collect();
    let mut out: Vec<TableSchema> = Vec::with_capacity(tables.len());
    let mut placed: HashSet<String> = HashSet::new();
    while !tables.is_empty() {
        let ready = tables.iter().position(|t| {
            t.foreign_keys.iter().all(|fk| {
                fk.ref_table == t.name
                    || !names.contains(&fk.ref_table)
                    || placed.contains(&fk.ref_table)
            })
        });
        let t = tables.remove(ready.unwrap_or(0));
        placed.insert(t.name.clone());
        out.push(t);
    }
    out
}

fn distance_name(d: Distance) -> String {
    d.as_str().to_string()
}

impl Source for StoreEnd {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn items(&self, only: &[String]) -> Result<Vec<Item>> {
        let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
        Ok(match &self.store {
            Handle::Relational(r) => {
                let r = r.blocking();
                let mut schemas = Vec::new();
                let mut migrations = false;
                for t in r.tables()? {
                    if !wanted(&t) {
                        continue;
                    }
                    if t == MIGRATIONS_TABLE {
                        migrations = true;
                        continue;
                    }
                    schemas.push(r.describe(&t)?);
                }
                let mut items: Vec<Item> = parents_first(schemas)
                    .into_iter()
                    .map(|s| {
                        let mut i = Item::new(Kind::Table, s.name.clone());
                        i.schema = Some(s);
                        i
                    })
                    .collect();
                if migrations {
                    let mut i = Item::new(Kind::Table, MIGRATIONS_TABLE);
                    i.schema = Some(migrations_schema());
                    items.insert(0, i);
                }
                items
            }
            Handle::Vector(v) => v
                .blocking()
                .list_collections()?
                .into_iter()
                .filter(|c| wanted(&c.name))
                .map(|c| {
                    let mut i = Item::new(Kind::Collection, c.name);
                    i.dimension = Some(c.dimension);
                    i.distance = Some(distance_name(c.distance));
                    i
                })
                .collect(),
            Handle::Graph(_) => vec![
                Item::new(Kind::Nodes, "nodes"),
                Item::new(Kind::Edges, "edges"),
            ],
            Handle::Cache(_) => {
                let mut messages = Item::new(Kind::Messages, "messages");
                messages.channels = only.to_vec();
                if only.is_empty() {
                    vec![Item::new(Kind::Keys, "keys"), messages]
                } else {
                    vec![messages]
                }
            }
        })
    }

    fn total(&self, item: &Item) -> Result<Option<u64>> {
        Ok(match &self.store {
            Handle::Relational(r) => {
                let rows = r.blocking().query(
                    &format!(
                        "SELECT count(*) FROM {}",
                        backplane_core::port::quote(&item.name)
                    ),
                    &Params::None,
                )?;
                rows.scalar()?.as_i64().map(|n| n as u64)
            }
            Handle::Vector(v) => Some(v.blocking().collection_info(&item.name)?.count),
            Handle::Graph(_) => None,
            Handle::Cache(c) => {
                let st = c.blocking().stats()?;
                match item.kind {
                    Kind::Keys => Some(st.keys),
                    _ if item.channels.is_empty() => Some(st.messages),
                    _ => None,
                }
            }
        })
    }

    fn open(&self) -> Result<()> {
        if let Handle::Relational(r) = &self.store {
            let id = r.blocking().export_snapshot()?;
            *Self::lock(&self.snapshot_taken) = id.is_some();
            *Self::lock(&self.snapshot) = id;
        }
        Ok(())
    }

    fn close(&self) {
        if let (Handle::Relational(r), Some(id)) = (&self.store, Self::lock(&self.snapshot).take())
        {
            if let Err(e) = r.blocking().release_snapshot(&id) {
                log::warn!("{}: releasing the export snapshot failed: {e}", self.label);
            }
        }
    }

    fn page(
        &self,
        item: &Item,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Records, Option<String>)> {
        match &self.store {
            Handle::Relational(r) => {
                let snapshot = Self::lock(&self.snapshot).clone();
                let page =
                    r.blocking()
                        .export_rows(snapshot.as_deref(), &item.name, cursor, limit)?;
                let mut rows = page.items;
                if let Some(order) = self.column_order(r, item)? {
                    rows = rows
                        .into_iter()
                        .map(|mut row| {
                            order
                                .iter()
                                .map(|&i| std::mem::replace(&mut row[i], Value::Null))
                                .collect()
                        })
                        .collect();
                }
                if item.name == MIGRATIONS_TABLE {
                    for row in &mut rows {
                        canonical_migration(row);
                    }
                }
                Ok((Records::Rows(rows), page.next_cursor))
            }
            Handle::Vector(v) => {
                let p = v.blocking().scroll(&item.name, cursor, limit)?;
                Ok((Records::Vectors(p.records), p.next_cursor))
            }
            Handle::Graph(g) => match item.kind {
                Kind::Nodes => {
                    let p = g.blocking().export_nodes(cursor, limit)?;
                    Ok((Records::Nodes(p.items), p.next_cursor))
                }
                _ => {
                    let p = g.blocking().export_edges(cursor, limit)?;
                    Ok((Records::Edges(p.items), p.next_cursor))
                }
            },
            Handle::Cache(c) => {
                let c = c.blocking();
                match item.kind {
                    Kind::Keys => {
                        let p = c.scan_keys(cursor, limit)?;
                        let mut seen = Self::lock(&self.seen_keys);
                        if cursor.is_none() {
                            seen.clear();
                        }
                        let items = p
                            .items
                            .into_iter()
                            .filter(|e| seen.insert(e.key.clone()))
                            .collect();
                        Ok((Records::Entries(items), p.next_cursor))
                    }
                    _ => {
                        // A page is whole channels: a tenth of `limit`
                        // of them, at least one.
                        let channels = c.list_channels(cursor, (limit / 10).max(1))?;
                        let mut out = Vec::new();
                        for ch in channels.items {
                            if !item.channels.is_empty() && !item.channels.contains(&ch.channel) {
                                continue;
                            }
                            for m in c.recent(&ch.channel, usize::MAX, None)? {
                                out.push((ch.channel.clone(), m));
                            }
                        }
                        Ok((Records::Messages(out), channels.next_cursor))
                    }
                }
            }
        }
    }
}

fn table_names(r: &RelationalStore) -> Result<HashSet<String>> {
    Ok(r.blocking().tables()?.into_iter().collect())
}

impl Sink for StoreEnd {
    fn label(&self) -> String {
        self.label.clone()
    }

    fn occupied(&self, items: &[Item]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        match &self.store {
            Handle::Relational(r) => {
                let present = table_names(r)?;
                for item in items.iter().filter(|i| present.contains(&i.name)) {
                    if let Some(n) = Source::total(self, item)?.filter(|&n| n > 0) {
                        out.push(format!("table '{}' holds {n} rows", item.name));
                    }
                }
            }
            Handle::Vector(v) => {
                let existing: BTreeMap<String, u64> = v
                    .blocking()
                    .list_collections()?
                    .into_iter()
                    .map(|c| (c.name, c.count))
                    .collect();
                for item in items {
                    if let Some(&n) = existing.get(&item.name).filter(|&&n| n > 0) {
                        out.push(format!("collection '{}' holds {n} records", item.name));
                    }
                }
            }
            Handle::Graph(g) => {
                let g = g.blocking();
                if !g.export_nodes(None, 1)?.items.is_empty() {
                    out.push("the graph holds nodes".into());
                }
            }
            Handle::Cache(c) => {
                let c = c.blocking();
                if items.iter().any(|i| i.kind == Kind::Keys)
                    && !c.scan_keys(None, 1)?.items.is_empty()
                {
                    out.push("the cache holds keys".into());
                }
                if !c.list_channels(None, 1)?.items.is_empty() {
                    out.push("the cache holds conversations".into());
                }
            }
        }
        Ok(out)
    }

    fn check(&self, items: &[Item], _merge: Option<Merge>) -> Result<()> {
        match &self.store {
            Handle::Relational(_) => {
                for item in items {
                    let schema = item_schema(item)?;
                    if let Some(c) = schema.columns.iter().find(|c| c.column_type.is_none()) {
                        return Err(Error::invalid(format!(
                            "table '{}' column '{}' has type '{}', which has no portable mapping (integer, real, decimal, text, blob, bool, json, timestamp): leave the table out with --tables, or change the column's type",
                            item.name, c.name, c.data_type
                        )));
                    }
                }
            }
            Handle::Vector(v) => {
                let existing: BTreeMap<String, backplane_core::CollectionInfo> = v
                    .blocking()
                    .list_collections()?
                    .into_iter()
                    .map(|c| (c.name.clone(), c))
                    .collect();
                for item in items {
                    let Some(have) = existing.get(&item.name) else {
                        continue;
                    };
                    let (dim, dist) = (
                        item.dimension.unwrap_or(0),
                        item.distance.clone().unwrap_or_default(),
                    );
                    if have.dimension != dim || distance_name(have.distance) != dist {
                        return Err(Error::invalid(format!(
                            "collection '{}' exists in {} with dimension {} and distance {}; the source's has dimension {dim} and distance {dist}: copy into another collection name or store, or drop the target's collection",
                            item.name,
                            self.label,
                            have.dimension,
                            distance_name(have.distance)
                        )));
                    }
                }
            }
            Handle::Graph(_) | Handle::Cache(_) => {}
        }
        Ok(())
    }

    fn prepare(&self, items: &[Item]) -> Result<()> {
        match &self.store {
            Handle::Relational(r) => {
                let r = r.blocking();
                if items.iter().any(|i| i.name == MIGRATIONS_TABLE) {
                    // The backend's own table, made its own way.
                    r.migrate(&[])?;
                    let d = r.describe(MIGRATIONS_TABLE)?;
                    *Self::lock(&self.applied_at) =
                        d.column("applied_at").and_then(|c| c.column_type);
                }
                let schemas: Vec<TableSchema> = items
                    .iter()
                    .filter(|i| i.name != MIGRATIONS_TABLE)
                    .map(|i| item_schema(i).cloned())
                    .collect::<Result<_>>()?;
                if !schemas.is_empty() {
                    r.import_begin(&schemas)?;
                }
            }
            Handle::Vector(v) => {
                let v = v.blocking();
                let existing: HashSet<String> =
                    v.list_collections()?.into_iter().map(|c| c.name).collect();
                for item in items.iter().filter(|i| !existing.contains(&i.name)) {
                    let distance = Distance::parse(item.distance.as_deref().unwrap_or("cosine"))?;
                    v.create_collection(&item.name, item.dimension.unwrap_or(0), distance)?;
                }
            }
            Handle::Graph(_) | Handle::Cache(_) => {}
        }
        Ok(())
    }

    fn write(&self, item: &Item, records: &Records, merge: Option<Merge>) -> Result<()> {
        let overwrite = merge == Some(Merge::Overwrite);
        match (&self.store, records) {
            (Handle::Relational(r), Records::Rows(rows)) => {
                let schema = item_schema(item)?;
                let columns = schema.column_names();
                if item.name == MIGRATIONS_TABLE {
                    let applied_at = *Self::lock(&self.applied_at);
                    let rows: Vec<Vec<Value>> = rows
                        .iter()
                        .map(|row| imported_migration(row, applied_at))
                        .collect();
                    r.blocking()
                        .import_rows(&item.name, &columns, &rows, overwrite)?;
                } else {
                    r.blocking()
                        .import_rows(&item.name, &columns, rows, overwrite)?;
                }
            }
            (Handle::Vector(v), Records::Vectors(recs)) => {
                let v = v.blocking();
                if overwrite {
                    v.upsert(&item.name, recs)?;
                } else {
                    let ids: Vec<String> = recs.iter().map(|r| r.id.clone()).collect();
                    let have: HashSet<String> =
                        v.get(&item.name, &ids)?.into_iter().map(|r| r.id).collect();
                    if have.is_empty() {
                        v.upsert(&item.name, recs)?;
                    } else {
                        let missing: Vec<_> = recs
                            .iter()
                            .filter(|r| !have.contains(&r.id))
                            .cloned()
                            .collect();
                        if !missing.is_empty() {
                            v.upsert(&item.name, &missing)?;
                        }
                    }
                }
            }
            (Handle::Graph(g), Records::Nodes(n)) => {
                g.blocking().import_nodes(n, overwrite)?;
            }
            (Handle::Graph(g), Records::Edges(e)) => {
                g.blocking().import_edges(e, overwrite)?;
            }
            (Handle::Cache(c), Records::Entries(e)) => {
                c.blocking().import_entries(e, overwrite)?;
            }
            (Handle::Cache(c), Records::Messages(m)) => {
                let c = c.blocking();
                let mut by_channel: Vec<(String, Vec<Message>)> = Vec::new();
                for (channel, msg) in m {
                    match by_channel.last_mut() {
                        Some((ch, list)) if ch == channel => list.push(msg.clone()),
                        _ => by_channel.push((channel.clone(), vec![msg.clone()])),
                    }
                }
                for (channel, msgs) in &by_channel {
                    if let Some(max) = self.max_messages.filter(|&max| msgs.len() as u64 > max) {
                        return Err(Error::invalid(format!(
                            "channel '{channel}' has {} messages, but {} keeps at most {max} per channel (max_messages): raise max_messages in the target's section, or the oldest messages would be lost",
                            msgs.len(),
                            self.label
                        )));
                    }
                    c.import_messages(channel, msgs)?;
                }
            }
            _ => {
                return Err(Error::invalid(format!(
                    "{} records do not belong in {}",
                    item.label(),
                    self.label
                )))
            }
        }
        Ok(())
    }

    fn finish(&self, items: &[Item]) -> Result<()> {
        if let Handle::Relational(r) = &self.store {
            let schemas: Vec<TableSchema> = items
                .iter()
                .filter(|i| i.name != MIGRATIONS_TABLE)
                .filter_map(|i| i.schema.clone())
                .collect();
            r.blocking().import_end(&schemas)?;
        }
        Ok(())
    }
}
