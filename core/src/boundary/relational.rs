//! The relational capability across the boundary: its method list, the
//! plugin side's dispatcher and the host side's client, plus the fast path
//! of its three hot calls.
//!
//! `execute`, `execute_many` and `query` do not encode their parameters:
//! the host lays them out as [`RawValue`] views of its own values
//! (`RawParams`), the plugin reads them through
//! [`ParamsRef`](crate::ParamsRef) for the length of the call
//! (`run_sql`), and rows come back written straight into the wire format
//! by a [`RowsWriter`]. Their list entries (`fast`, `fast_start`) still
//! give them tags, so the plain encoding serves them too: the started form
//! of `execute` and `query` ([`AsyncRelational`]) travels in it.

use super::generate;
use crate::ffi::Remote;
use crate::rows::{decode_rows, decode_rows_with, ColumnsMemo, RawValue, RowsWriter};
use crate::{
    AsyncRelational, Error, ExecResult, Page, Params, ParamsRef, Relational, Result, Rows, Value,
};
use std::sync::Arc;

/// The started form of a `fast_start` method on its wire form
/// ([`AsyncRelational::execute_wire`], [`AsyncRelational::query_wire`]).
macro_rules! start_wire {
    (execute, $a:ident, $sql:ident, $params:ident, $reply:ident) => {
        $a.execute_wire($sql, $params, $reply)
    };
    (query, $a:ident, $sql:ident, $params:ident, $reply:ident) => {
        $a.query_wire($sql, $params, $reply)
    };
}
pub(crate) use start_wire;

/// The relational capability's methods, for everything generated from them.
/// Expands `$then!` with `($args)` followed by the list.
#[doc(hidden)]
#[macro_export]
macro_rules! relational_methods {
    ($($then:ident)::+ ! ($($args:tt)*)) => {
        $($then)::+! { ($($args)*)
            trait Relational;
            async AsyncRelational.as_async;
            1 fast_start fn execute(sql: &str => String, params: &$crate::Params => $crate::Params) -> $crate::ExecResult;
            2 fast fn execute_many(sql: &str => String, params: &[$crate::Params] => Vec<$crate::Params>) -> $crate::ExecResult;
            3 fast_start fn query(sql: &str => String, params: &$crate::Params => $crate::Params) -> $crate::Rows;
            4 call fn transaction(statements: &[$crate::Statement] => Vec<$crate::Statement>) -> Vec<$crate::ExecResult>;
            5 call fn migrate(migrations: &[$crate::Migration] => Vec<$crate::Migration>) -> $crate::MigrationReport;
            6 call fn tables() -> Vec<String>;
            7 call fn describe(table: &str => String) -> $crate::TableSchema;
            8 call fn backup(path: &str => String) -> ();
            9 call fn restore(path: &str => String) -> ();
            10 fast fn export_rows(snapshot: Option<&str> as Option<String>, table: &str => String, cursor: Option<&str> as Option<String>, limit: usize) -> $crate::Page<Vec<$crate::Value>>;
            11 call fn import_begin(tables: &[$crate::TableSchema] => Vec<$crate::TableSchema>) -> ();
            12 fast fn import_rows(table: &str => String, columns: &[String] => Vec<String>, rows: &[Vec<$crate::Value>] => Vec<Vec<$crate::Value>>, overwrite: bool) -> u64;
            13 call fn import_end(tables: &[$crate::TableSchema] => Vec<$crate::TableSchema>) -> ();
            14 call fn export_snapshot() -> Option<String>;
            15 call fn release_snapshot(snapshot: &str => String) -> ();
        }
    };
}

/// The fast-path operation `execute`.
pub const SQL_EXECUTE: u8 = 0;
/// The fast-path operation `execute_many`.
pub const SQL_EXECUTE_MANY: u8 = 1;
/// The fast-path operation `query`.
pub const SQL_QUERY: u8 = 2;
/// The fast-path operation `export_rows`; the values are (snapshot, table,
/// cursor, limit), the reply the next cursor and the rows.
pub const SQL_EXPORT: u8 = 3;
/// The fast-path operation `import_rows`; the SQL text is the JSON
/// `[table, [columns…], overwrite]`, the parameter sets the rows.
pub const SQL_IMPORT: u8 = 4;

/// A fast-path call as the plugin receives it: views valid for the call.
pub(crate) struct SqlCall<'a> {
    pub op: u8,
    pub sql: &'a str,
    pub values: &'a [RawValue],
    pub names: &'a [RawValue],
    pub set_lens: &'a [u32],
}

/// A relational store in a plugin, seen from the host.
pub(crate) struct RelationalClient(pub(crate) Remote, pub(crate) Arc<ColumnsMemo>);

/// How the host decodes the reply of a started `execute` or `query`: as
/// the blocking fast path does (rows without serde, column names reused).
pub(crate) trait Reply: Sized + 'static {
    fn decoder(c: &RelationalClient) -> impl FnOnce(&[u8]) -> Result<Self> + Send + 'static;
}

impl Reply for ExecResult {
    fn decoder(_: &RelationalClient) -> impl FnOnce(&[u8]) -> Result<Self> + Send + 'static {
        super::decode_owned
    }
}

impl Reply for Rows {
    fn decoder(c: &RelationalClient) -> impl FnOnce(&[u8]) -> Result<Self> + Send + 'static {
        let memo = c.1.clone();
        move |b| decode_rows_with(b, &memo)
    }
}

impl RelationalClient {
    fn remote(&self) -> &Remote {
        &self.0
    }
}

relational_methods!(generate!(RelationalClient {
    fn as_async(&self) -> Option<&dyn AsyncRelational> {
        self.0.has_async().then_some(self as &dyn AsyncRelational)
    }
    fn execute(&self, sql: &str, params: &Params) -> Result<ExecResult> {
        let raw = RawParams::new(std::slice::from_ref(params));
        self.0.call_sql(SQL_EXECUTE, sql, &raw, super::decode_owned)
    }
    fn execute_many(&self, sql: &str, params: &[Params]) -> Result<ExecResult> {
        let raw = RawParams::new(params);
        self.0.call_sql(SQL_EXECUTE_MANY, sql, &raw, super::decode_owned)
    }
    fn query(&self, sql: &str, params: &Params) -> Result<Rows> {
        let raw = RawParams::new(std::slice::from_ref(params));
        self.0
            .call_sql(SQL_QUERY, sql, &raw, |b| decode_rows_with(b, &self.1))
    }
    fn export_rows(
        &self,
        snapshot: Option<&str>,
        table: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Vec<Value>>> {
        let text = |s: Option<&str>| s.map_or(Value::Null, |s| Value::Text(s.into()));
        let args = Params::Positional(vec![
            text(snapshot),
            Value::Text(table.into()),
            text(cursor),
            Value::Integer(limit.min(i64::MAX as usize) as i64),
        ]);
        let raw = RawParams::new(std::slice::from_ref(&args));
        self.0.call_sql(SQL_EXPORT, "", &raw, |b| {
            let (next_cursor, rows): (Option<String>, &[u8]) = split_cursor(b)?;
            Ok(Page {
                items: decode_rows(rows)?.rows,
                next_cursor,
            })
        })
    }
    fn import_rows(
        &self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Value>],
        overwrite: bool,
    ) -> Result<u64> {
        let head = serde_json::to_string(&(table, columns, overwrite))?;
        let raw = RawParams::rows(rows);
        self.0.call_sql(SQL_IMPORT, &head, &raw, super::decode_owned)
    }
}));

/// The reply of [`SQL_EXPORT`]: the next cursor (a flag byte, then its
/// length and bytes), then the rows as a [`RowsWriter`] writes them.
fn export_reply(next: Option<&str>, rows: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() + 16);
    match next {
        None => out.push(0),
        Some(c) => {
            out.push(1);
            out.extend_from_slice(&(c.len() as u64).to_le_bytes());
            out.extend_from_slice(c.as_bytes());
        }
    }
    out.extend_from_slice(&rows);
    out
}

/// Read back what [`export_reply`] wrote.
fn split_cursor(b: &[u8]) -> Result<(Option<String>, &[u8])> {
    let bad = || {
        Error::incompatible("an export reply from the plugin is malformed: rebuild the plugin against this host's backplane-core")
    };
    match b.split_first() {
        Some((0, rest)) => Ok((None, rest)),
        Some((1, rest)) if rest.len() >= 8 => {
            let n = u64::from_le_bytes(rest[..8].try_into().map_err(|_| bad())?) as usize;
            let text = rest.get(8..8 + n).ok_or_else(bad)?;
            let c = std::str::from_utf8(text).map_err(|_| bad())?.to_string();
            Ok((Some(c), &rest[8 + n..]))
        }
        _ => Err(bad()),
    }
}

/// Run a fast-path call on the plugin's side, returning the encoded result.
pub(crate) fn run_sql(store: &dyn Relational, call: &SqlCall<'_>) -> Result<Vec<u8>> {
    let (values, names, lens) = (call.values, call.names, call.set_lens);
    let named = !names.is_empty();
    if named && names.len() != values.len() {
        return Err(Error::incompatible(
            "malformed parameter names across the boundary",
        ));
    }
    if lens.iter().map(|&n| n as usize).sum::<usize>() != values.len() {
        return Err(Error::incompatible(
            "malformed parameter sets across the boundary",
        ));
    }
    let set = |at: usize, end: usize| {
        // SAFETY: the host keeps the values alive for the call, and the
        // lengths were checked above.
        unsafe { ParamsRef::from_raw(&values[at..end], if named { &names[at..end] } else { &[] }) }
    };
    let one = || {
        if lens.len() == 1 {
            Ok(set(0, values.len()))
        } else {
            Err(Error::incompatible(
                "a statement call needs exactly one parameter set",
            ))
        }
    };
    match call.op {
        SQL_EXECUTE => Ok(super::encode(&store.execute_ref(call.sql, one()?)?)),
        SQL_EXECUTE_MANY => {
            let mut sets = Vec::with_capacity(lens.len());
            let mut at = 0usize;
            for &n in lens {
                sets.push(set(at, at + n as usize));
                at += n as usize;
            }
            Ok(super::encode(&store.execute_many_ref(call.sql, &sets)?))
        }
        SQL_QUERY => {
            let mut w = RowsWriter::new();
            store.query_into(call.sql, one()?, &mut w)?;
            Ok(w.finish())
        }
        SQL_EXPORT => {
            let args = one()?;
            let text = |i: usize| match args.value(i) {
                crate::ValueRef::Text(t) => Some(t),
                _ => None,
            };
            let (Some(table), crate::ValueRef::Integer(limit)) = (text(1), args.value(3)) else {
                return Err(Error::incompatible(
                    "malformed export call across the boundary",
                ));
            };
            let mut w = RowsWriter::new();
            let next =
                store.export_rows_into(text(0), table, text(2), limit.max(0) as usize, &mut w)?;
            Ok(export_reply(next.as_deref(), w.finish()))
        }
        SQL_IMPORT => {
            let (table, columns, overwrite): (String, Vec<String>, bool) =
                serde_json::from_str(call.sql).map_err(|_| {
                    Error::incompatible("malformed import call across the boundary")
                })?;
            let mut sets = Vec::with_capacity(lens.len());
            let mut at = 0usize;
            for &n in lens {
                sets.push(set(at, at + n as usize));
                at += n as usize;
            }
            Ok(super::encode(
                &store.import_rows_ref(&table, &columns, &sets, overwrite)?,
            ))
        }
        other => Err(Error::incompatible(format!("unknown SQL call {other}"))),
    }
}

/// A list that lives on the stack up to `N` items, then on the heap: one
/// statement's parameters cross the boundary without an allocation.
pub(crate) struct SmallList<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    heap: Vec<T>,
}

impl<T: Copy, const N: usize> SmallList<T, N> {
    fn new(fill: T, capacity: usize) -> Self {
        SmallList {
            inline: [fill; N],
            len: 0,
            heap: if capacity > N {
                Vec::with_capacity(capacity)
            } else {
                Vec::new()
            },
        }
    }
    /// Whether the items live in `heap` (decided by the capacity given to
    /// `new`, or by outgrowing `inline`).
    #[inline]
    fn on_heap(&self) -> bool {
        self.heap.capacity() != 0
    }
    #[inline]
    fn push(&mut self, v: T) {
        if self.on_heap() {
            self.heap.push(v);
        } else if self.len < N {
            self.inline[self.len] = v;
            self.len += 1;
        } else {
            self.heap.reserve(N * 2);
            self.heap.extend_from_slice(&self.inline[..self.len]);
            self.heap.push(v);
        }
    }
    /// The items.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[T] {
        if self.on_heap() {
            &self.heap
        } else {
            &self.inline[..self.len]
        }
    }
    #[inline]
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn set(&mut self, i: usize, v: T) {
        if self.on_heap() {
            self.heap[i] = v;
        } else {
            self.inline[i] = v;
        }
    }
}

/// Parameter sets laid out for the fast path: views of the caller's values,
/// with JSON documents rendered to text and kept alive here.
pub(crate) struct RawParams<'a> {
    /// One value per parameter, all parameter sets one after another.
    pub values: SmallList<RawValue, 4>,
    /// Names, parallel to `values`, when the sets are named.
    pub names: Vec<RawValue>,
    /// The number of values in each set.
    pub set_lens: SmallList<u32, 1>,
    json: Vec<String>,
    borrows: std::marker::PhantomData<&'a Params>,
}

impl<'a> RawParams<'a> {
    /// Lay out rows of values as positional parameter sets.
    pub(crate) fn rows(rows: &'a [Vec<Value>]) -> Self {
        let total = rows.iter().map(Vec::len).sum();
        let mut out = RawParams {
            values: SmallList::new(RawValue::NULL, total),
            names: Vec::new(),
            set_lens: SmallList::new(0, rows.len()),
            json: Vec::new(),
            borrows: std::marker::PhantomData,
        };
        let mut json_at: Vec<(usize, &serde_json::Value)> = Vec::new();
        for row in rows {
            out.set_lens.push(row.len() as u32);
            for v in row {
                if let Value::Json(j) = v {
                    json_at.push((out.values.len(), j));
                }
                out.values.push(RawValue::of(v));
            }
        }
        out.render_json(json_at);
        out
    }

    /// Render the JSON documents at the given places to text and point
    /// their views at it (after every value is placed, so no view points
    /// into a growing list).
    fn render_json(&mut self, json_at: Vec<(usize, &serde_json::Value)>) {
        if json_at.is_empty() {
            return;
        }
        self.json = json_at.iter().map(|(_, j)| j.to_string()).collect();
        for ((at, _), text) in json_at.iter().zip(&self.json) {
            self.values.set(*at, RawValue::json(text));
        }
    }

    /// Lay out `sets`, borrowing from them.
    pub(crate) fn new(sets: &'a [Params]) -> Self {
        let (count, total) = (sets.len(), sets.iter().map(Params::len).sum());
        let mut out = RawParams {
            values: SmallList::new(RawValue::NULL, total),
            names: Vec::new(),
            set_lens: SmallList::new(0, count),
            json: Vec::new(),
            borrows: std::marker::PhantomData,
        };
        // Indexes into `values` of JSON documents, rendered to text after
        // the loop so that no view points into a growing Vec.
        let mut json_at: Vec<(usize, &serde_json::Value)> = Vec::new();
        let mut named = false;
        for p in sets {
            out.set_lens.push(p.len() as u32);
            let mut push = |out: &mut RawParams, v: &'a Value| {
                let raw = match v {
                    Value::Json(j) => {
                        json_at.push((out.values.len(), j));
                        RawValue::NULL
                    }
                    other => RawValue::of(other),
                };
                out.values.push(raw);
            };
            match p {
                Params::None => {}
                Params::Positional(vs) => {
                    if named {
                        // A positional set among named ones: empty names.
                        vs.iter().for_each(|_| out.names.push(RawValue::text("")));
                    }
                    vs.iter().for_each(|v| push(&mut out, v));
                }
                Params::Named(pairs) => {
                    if !named {
                        // Earlier positional sets get empty names.
                        named = true;
                        let before = out.values.len();
                        (0..before).for_each(|_| out.names.push(RawValue::text("")));
                    }
                    for (name, v) in pairs {
                        out.names.push(RawValue::text(name));
                        push(&mut out, v);
                    }
                }
            }
        }
        out.render_json(json_at);
        out
    }
}
