//! Access control: principals named in plugins.toml, each with a token
//! and per-store grants, and handles bound to one that refuse what it may
//! not do before anything reaches the backend.
//!
//! ```toml
//! [access.principals.assistant]
//! token_env = "ASSISTANT_TOKEN"          # or token_file = "/run/secrets/assistant"
//! grants = { "cache.conversations" = "write", "vector.*" = "write", "*" = "read" }
//!
//! [access.principals.operator]
//! token_file = "/run/secrets/operator"
//! grants = { "*" = "admin" }
//!
//! [access.principals.acme]
//! token_env = "ACME_TOKEN"
//! tenant = "acme"                         # its views see only tenant acme's records
//! grants = { "*" = "write" }
//! ```
//!
//! `Storage::as_principal(name, token)` checks the token and returns a
//! view of the same stores whose handles are bound to the principal. A
//! grant names a store (`"cache.conversations"`), every store of a
//! capability (`"vector.*"`) or every store (`"*"`); where several match,
//! the highest level counts. A store with no grant is not there for the
//! principal (`PermissionDenied` when its handle is asked for).
//!
//! The levels, each including the one before:
//!
//! - **read**: every call that only reads (get, search, scroll, count,
//!   recent, neighbors, find_nodes, describe, export …) and `query` with a
//!   statement that only reads: one `SELECT`, `WITH` or `VALUES` statement
//!   naming no keyword that writes (`INSERT`, `UPDATE`, `DELETE`, `INTO`,
//!   `FOR UPDATE` …). Functions with side effects called from a SELECT
//!   (`nextval`) are the database's to restrict, with a role of its own.
//! - **write**: the calls that change records (set, add_message, upsert,
//!   delete, create/update nodes and edges, execute, transaction).
//! - **admin**: the calls that change a store's shape or replace it whole:
//!   migrate, backup, restore, create/drop a collection, the bulk imports
//!   a migration or restore uses, and `rekey`.
//!
//! The `Storage` opened from plugins.toml itself is the operator's and is
//! bound to no principal: it may do everything.
//!
//! # Layout
//!
//! - the settings ([`AccessSpec`]) and the principals as opened;
//! - [`Guarded`]: a store bound to a principal's level, one trait impl per
//!   capability, each method with the level it needs.

use crate::config::SecretSource;
use backplane_core::{
    Cache, CacheEntry, CacheStats, Capability, ChannelInfo, CollectionInfo, Direction, Distance,
    Edge, Error, ExecResult, Filter, Graph, Health, Message, Migration, MigrationReport, Neighbor,
    NewEdge, NewNode, Node, NodeQuery, Page, Params, ParamsRef, Path, Relational, Result, RowSink,
    Rows, ScrollPage, SearchHit, SearchRequest, Statement, TableSchema, Value, Vector,
    VectorRecord,
};
use serde::Deserialize;
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What a principal may do on a store; each level includes the ones
/// before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Calls that only read.
    Read,
    /// Calls that change records.
    Write,
    /// Calls that change a store's shape or replace it whole.
    Admin,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        }
    }
}

/// `[access]`: the principals.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AccessSpec {
    /// By name.
    pub principals: BTreeMap<String, PrincipalSpec>,
}

/// One `[access.principals.<name>]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PrincipalSpec {
    /// Where its token is read from.
    pub token: SecretSource,
    /// `(pattern, level)`: `"*"`, `"<capability>.*"` or
    /// `"<capability>.<store>"`.
    pub grants: Vec<(String, Level)>,
    /// The tenant it acts for, if any: its views see only that tenant.
    pub tenant: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default)]
    principals: BTreeMap<String, RawPrincipal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    token_env: Option<String>,
    token_file: Option<String>,
    #[serde(default)]
    grants: BTreeMap<String, String>,
    tenant: Option<String>,
}

impl AccessSpec {
    /// Parse `[access]`; `stores` are the configured (capability, name)
    /// pairs a grant may name. Errors are one line, without the table's
    /// name.
    pub(crate) fn parse(
        v: &serde_json::Value,
        base_dir: &std::path::Path,
        stores: &[(Capability, String)],
    ) -> std::result::Result<AccessSpec, String> {
        let raw: RawAccess = serde_json::from_value(v.clone()).map_err(|e| {
            backplane_core::kit::text::plain_serde(&e.to_string())
                + " ([access] holds principals: [access.principals.<name>] with token_env or token_file, grants and an optional tenant)"
        })?;
        let mut principals = BTreeMap::new();
        for (name, p) in raw.principals {
            let at = format!("principals.{name}");
            let token = match (p.token_env, p.token_file) {
                (Some(e), None) if !e.is_empty() => SecretSource::Env(e),
                (None, Some(f)) if !f.is_empty() => {
                    SecretSource::File(backplane_core::resolve_path(base_dir, &f))
                }
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{at}: give the token once: token_env or token_file, not both"
                    ))
                }
                _ => {
                    return Err(format!(
                        "{at}: no token: add token_env = \"{}_TOKEN\" (a variable holding it) or token_file = \"/path/to/token\"",
                        name.to_ascii_uppercase()
                    ))
                }
            };
            let mut grants = Vec::new();
            for (pattern, level) in p.grants {
                let level = match level.as_str() {
                    "read" => Level::Read,
                    "write" => Level::Write,
                    "admin" => Level::Admin,
                    other => {
                        return Err(format!(
                        "{at}: grants \"{pattern}\" = \"{other}\": a level is read, write or admin"
                    ))
                    }
                };
                check_pattern(&pattern, stores)
                    .map_err(|e| format!("{at}: grants \"{pattern}\": {e}"))?;
                grants.push((pattern, level));
            }
            if grants.is_empty() {
                return Err(format!(
                    "{at}: no grants: add grants = {{ \"*\" = \"read\" }} (or name stores, like \"cache.conversations\" = \"write\")"
                ));
            }
            if let Some(t) = &p.tenant {
                crate::tenant::check_name(t)
                    .map_err(|e| format!("{at}: tenant: {}", e.message()))?;
            }
            principals.insert(
                name,
                PrincipalSpec {
                    token,
                    grants,
                    tenant: p.tenant,
                },
            );
        }
        Ok(AccessSpec { principals })
    }
}

fn check_pattern(
    pattern: &str,
    stores: &[(Capability, String)],
) -> std::result::Result<(), String> {
    if pattern == "*" {
        return Ok(());
    }
    let Some((cap, name)) = pattern.split_once('.') else {
        return Err("a grant names \"*\", \"<capability>.*\" or \"<capability>.<store>\", like \"cache.conversations\"".into());
    };
    let Some(cap) = Capability::ALL.into_iter().find(|c| c.as_str() == cap) else {
        return Err(format!(
            "'{cap}' is not a capability (relational, vector, cache, graph)"
        ));
    };
    if name == "*" || stores.iter().any(|(c, n)| *c == cap && n == name) {
        return Ok(());
    }
    Err(format!(
        "plugins.toml configures no [{cap}.{name}]: fix the name, or add the store"
    ))
}

/// A principal as opened: its token's digest and its grants.
pub(crate) struct Principal {
    pub(crate) name: String,
    token: [u8; 32],
    grants: Vec<(String, Level)>,
    tenant: Option<String>,
}

fn digest(b: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(b).into()
}

impl Principal {
    /// Read the principal's token.
    pub(crate) fn open(name: &str, spec: &PrincipalSpec) -> Result<Principal> {
        let token = spec.token.read("token").map_err(|e| {
            Error::new(
                e.kind(),
                format!("[access.principals.{name}]: {}", e.message()),
            )
        })?;
        let text = String::from_utf8_lossy(&token);
        if text.trim().is_empty() {
            return Err(Error::config(format!(
                "[access.principals.{name}]: the {} holds an empty token: put the principal's token in it",
                spec.token
            )));
        }
        Ok(Principal {
            name: name.to_string(),
            token: digest(text.trim().as_bytes()),
            grants: spec.grants.clone(),
            tenant: spec.tenant.clone(),
        })
    }

    /// The tenant the principal acts for, if any.
    pub(crate) fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Whether `token` is this principal's (compared as SHA-256 digests,
    /// so the comparison's time says nothing about the token).
    pub(crate) fn accepts(&self, token: &str) -> bool {
        digest(token.trim().as_bytes()) == self.token
    }

    /// The principal's level on `cap`.`name`, if it has one.
    pub(crate) fn level(&self, cap: Capability, name: &str) -> Option<Level> {
        self.grants
            .iter()
            .filter(|(p, _)| {
                p == "*"
                    || p.split_once('.')
                        .is_some_and(|(c, n)| c == cap.as_str() && (n == "*" || n == name))
            })
            .map(|(_, l)| *l)
            .max()
    }

    /// The error for a call that needs `need` on a store where the
    /// principal has `have` (or nothing).
    pub(crate) fn refuse(
        &self,
        cap: Capability,
        name: &str,
        have: Option<Level>,
        need: Level,
        what: &str,
    ) -> Error {
        let store = format!("{cap}.{name}");
        Error::permission_denied(match have {
            None => format!(
                "principal '{}' has no grant on [{store}]: add \"{store}\" = \"read\" (or write, admin) to its grants in [access.principals.{}]",
                self.name, self.name
            ),
            Some(have) => format!(
                "principal '{}' may {} [{store}] but {what} needs {}: grant \"{store}\" = \"{}\" in [access.principals.{}]",
                self.name,
                have.as_str(),
                need.as_str(),
                need.as_str(),
                self.name
            ),
        })
    }
}

/// A store bound to a principal's level on it.
pub(crate) struct Guarded<T: ?Sized> {
    inner: Arc<T>,
    level: Level,
    principal: Arc<Principal>,
    cap: Capability,
    store: String,
}

impl<T: ?Sized> Guarded<T> {
    pub(crate) fn new(
        inner: Arc<T>,
        level: Level,
        principal: Arc<Principal>,
        cap: Capability,
        store: &str,
    ) -> Guarded<T> {
        Guarded {
            inner,
            level,
            principal,
            cap,
            store: store.to_string(),
        }
    }

    fn allow(&self, need: Level, op: &str) -> Result<()> {
        if self.level >= need {
            return Ok(());
        }
        Err(self
            .principal
            .refuse(self.cap, &self.store, Some(self.level), need, op))
    }

    /// `query` needs read for a statement that only reads, write for any
    /// other.
    fn allow_sql(&self, sql: &str) -> Result<()> {
        if self.level >= Level::Write {
            return Ok(());
        }
        match backplane_core::kit::sql::writes(sql) {
            None => Ok(()),
            Some(why) => self.allow(Level::Write, &format!("query with this statement ({why})")),
        }
    }
}

/// Trait methods that need a level: each checks it, then calls the same
/// method of the store.
macro_rules! guard {
    ($($need:ident fn $m:ident(&self $(, $a:ident: $t:ty)*) -> $r:ty;)*) => {
        $(fn $m(&self $(, $a: $t)*) -> Result<$r> {
            self.allow(Level::$need, stringify!($m))?;
            self.inner.$m($($a),*)
        })*
    };
}

impl Relational for Guarded<dyn Relational> {
    guard! {
        Write fn execute(&self, sql: &str, params: &Params) -> ExecResult;
        Write fn execute_many(&self, sql: &str, params: &[Params]) -> ExecResult;
        Write fn transaction(&self, statements: &[Statement]) -> Vec<ExecResult>;
        Admin fn migrate(&self, migrations: &[Migration]) -> MigrationReport;
        Read fn tables(&self) -> Vec<String>;
        Read fn describe(&self, table: &str) -> TableSchema;
        Admin fn backup(&self, path: &str) -> ();
        Admin fn restore(&self, path: &str) -> ();
        Read fn health(&self) -> Health;
        Read fn export_snapshot(&self) -> Option<String>;
        Read fn release_snapshot(&self, snapshot: &str) -> ();
        Read fn export_rows(&self, snapshot: Option<&str>, table: &str, cursor: Option<&str>, limit: usize) -> Page<Vec<Value>>;
        Read fn export_rows_into(&self, snapshot: Option<&str>, table: &str, cursor: Option<&str>, limit: usize, sink: &mut dyn RowSink) -> Option<String>;
        Admin fn import_begin(&self, tables: &[TableSchema]) -> ();
        Admin fn import_rows(&self, table: &str, columns: &[String], rows: &[Vec<Value>], overwrite: bool) -> u64;
        Admin fn import_rows_ref(&self, table: &str, columns: &[String], rows: &[ParamsRef<'_>], overwrite: bool) -> u64;
        Admin fn import_end(&self, tables: &[TableSchema]) -> ();
        Write fn execute_ref(&self, sql: &str, params: ParamsRef<'_>) -> ExecResult;
        Write fn execute_many_ref(&self, sql: &str, sets: &[ParamsRef<'_>]) -> ExecResult;
    }
    fn query(&self, sql: &str, params: &Params) -> Result<Rows> {
        self.allow_sql(sql)?;
        self.inner.query(sql, params)
    }
    fn query_into(&self, sql: &str, params: ParamsRef<'_>, sink: &mut dyn RowSink) -> Result<()> {
        self.allow_sql(sql)?;
        self.inner.query_into(sql, params, sink)
    }
}

impl Vector for Guarded<dyn Vector> {
    guard! {
        Admin fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> ();
        Admin fn drop_collection(&self, name: &str) -> ();
        Read fn list_collections(&self) -> Vec<CollectionInfo>;
        Read fn collection_info(&self, name: &str) -> CollectionInfo;
        Write fn upsert(&self, collection: &str, records: &[VectorRecord]) -> ();
        Read fn get(&self, collection: &str, ids: &[String]) -> Vec<VectorRecord>;
        Write fn delete(&self, collection: &str, ids: &[String]) -> u64;
        Write fn delete_where(&self, collection: &str, filter: &Filter) -> u64;
        Read fn count(&self, collection: &str, filter: Option<&Filter>) -> u64;
        Read fn search(&self, collection: &str, request: &SearchRequest) -> Vec<SearchHit>;
        Read fn search_batch(&self, collection: &str, requests: &[SearchRequest]) -> Vec<Vec<SearchHit>>;
        Read fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> ScrollPage;
        Read fn health(&self) -> Health;
    }
}

impl Cache for Guarded<dyn Cache> {
    guard! {
        Read fn get(&self, key: &str) -> Option<Vec<u8>>;
        Write fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> ();
        Write fn delete(&self, key: &str) -> bool;
        Read fn exists(&self, key: &str) -> bool;
        Write fn expire(&self, key: &str, ttl: Duration) -> bool;
        Read fn get_many(&self, keys: &[String]) -> Vec<Option<Vec<u8>>>;
        Write fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> ();
        Write fn add_message(&self, channel: &str, message: &Message) -> Message;
        Read fn recent(&self, channel: &str, limit: usize, exclude_id: Option<&str>) -> Vec<Message>;
        Write fn remove_message(&self, channel: &str, id: &str) -> bool;
        Write fn clear(&self, channel: &str) -> u64;
        Read fn stats(&self) -> CacheStats;
        Write fn add_messages(&self, channel: &str, messages: &[Message]) -> Vec<Message>;
        Read fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Page<ChannelInfo>;
        Read fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Page<CacheEntry>;
        Admin fn import_entries(&self, entries: &[CacheEntry], overwrite: bool) -> u64;
        Admin fn import_messages(&self, channel: &str, messages: &[Message]) -> u64;
        Read fn health(&self) -> Health;
    }
}

impl Graph for Guarded<dyn Graph> {
    guard! {
        Write fn create_nodes(&self, nodes: &[NewNode]) -> Vec<Node>;
        Read fn get_node(&self, id: &str) -> Option<Node>;
        Write fn update_node(&self, id: &str, properties: &serde_json::Value) -> Node;
        Write fn delete_node(&self, id: &str) -> bool;
        Write fn create_edges(&self, edges: &[NewEdge]) -> Vec<Edge>;
        Read fn get_edge(&self, id: &str) -> Option<Edge>;
        Write fn update_edge(&self, id: &str, properties: &serde_json::Value) -> Edge;
        Write fn delete_edge(&self, id: &str) -> bool;
        Read fn neighbors(&self, id: &str, direction: Direction, edge_types: &[String], depth: u32) -> Vec<Neighbor>;
        Read fn shortest_path(&self, from: &str, to: &str, max_depth: u32) -> Option<Path>;
        Read fn edges_of(&self, id: &str, direction: Direction) -> Vec<Edge>;
        Read fn find_nodes(&self, query: &NodeQuery) -> Vec<Node>;
        Read fn export_nodes(&self, cursor: Option<&str>, limit: usize) -> Page<Node>;
        Read fn export_edges(&self, cursor: Option<&str>, limit: usize) -> Page<Edge>;
        Admin fn import_nodes(&self, nodes: &[Node], overwrite: bool) -> u64;
        Admin fn import_edges(&self, edges: &[Edge], overwrite: bool) -> u64;
        Read fn health(&self) -> Health;
    }
}

#[cfg(test)]
mod tests {
    /// A method added to a capability later would reach the store through
    /// the trait's default body without a check: every method of every
    /// list has its level here.
    #[test]
    fn every_method_has_a_level() {
        crate::layer::assert_every_method(
            include_str!("access.rs"),
            &[
                include_str!("../../core/src/boundary/relational.rs"),
                include_str!("../../core/src/boundary/vector.rs"),
                include_str!("../../core/src/boundary/graph.rs"),
                include_str!("../../core/src/boundary/cache.rs"),
            ],
            "access control gives it no level: add it to host/src/access.rs",
        );
    }
}
