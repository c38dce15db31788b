//! [`Storage`]: the stores of a plugins.toml, opened, and the cloneable
//! handles an application uses.
//!
//! Each handle has an async API for tokio programs (the call runs on tokio's
//! blocking pool, so a slow backend never stalls the executor) and a
//! blocking one, `handle.blocking()`, which is the capability trait itself.

use crate::config::{Config, StoreEntry};
use crate::foreign::{Foreign, ForeignCache, ForeignGraph, ForeignRelational, ForeignVector};
use crate::loader::{BackendInfo, LoadFailure, Registry};
use backplane_core::ffi::store_capability;
use backplane_core::*;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How to open a [`Storage`]: which config file, which extra plugin folders.
#[derive(Clone, Debug, Default)]
pub struct StorageBuilder {
    config: Option<PathBuf>,
    plugin_dirs: Vec<PathBuf>,
    lenient: bool,
}

impl StorageBuilder {
    /// Use this plugins.toml (default: `$BACKPLANE_CONFIG`, else `./plugins.toml`).
    pub fn config(mut self, path: impl Into<PathBuf>) -> Self {
        self.config = Some(path.into());
        self
    }
    /// Search this folder for plugins before the config's own search paths.
    /// May be called several times; `$BACKPLANE_PLUGIN_PATH` comes after.
    pub fn plugin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.plugin_dirs.push(dir.into());
        self
    }
    /// Keep going when a store fails to open: the failure is reported by
    /// [`Storage::failures`] and [`Storage::health`] instead.
    pub fn lenient(mut self, yes: bool) -> Self {
        self.lenient = yes;
        self
    }

    /// The config file this builder would read.
    pub fn config_path(&self) -> PathBuf {
        self.config
            .clone()
            .or_else(|| {
                std::env::var_os("BACKPLANE_CONFIG")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("plugins.toml"))
    }

    /// The plugin folders searched before the config's own.
    pub fn extra_plugin_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = self.plugin_dirs.clone();
        if let Some(p) = std::env::var_os("BACKPLANE_PLUGIN_PATH") {
            dirs.extend(std::env::split_paths(&p).filter(|p| !p.as_os_str().is_empty()));
        }
        dirs
    }

    /// Read the config, discover plugins, open every store.
    pub fn open(self) -> Result<Storage> {
        let config = Config::load(&self.config_path())?;
        self.open_config(config)
    }

    /// Open the stores of an already parsed config.
    pub fn open_config(self, config: Config) -> Result<Storage> {
        let registry = Registry::discover(&config, &self.extra_plugin_dirs());
        let mut stores = BTreeMap::new();
        let mut failures = Vec::new();
        for entry in &config.stores {
            match open_store(&registry, &config, entry) {
                Ok(s) => {
                    stores.insert((entry.capability, entry.name.clone()), s);
                }
                Err(e) => failures.push((entry.clone(), e)),
            }
        }
        if !failures.is_empty() && !self.lenient {
            let origin = config
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "config".into());
            let mut msg = format!(
                "{} of {} stores in {origin} could not be opened:",
                failures.len(),
                config.stores.len()
            );
            for (_, e) in &failures {
                msg.push_str("\n  ");
                msg.push_str(&e.to_string());
            }
            if !registry.failures.is_empty() {
                msg.push_str("\nplugin libraries that failed to load:");
                for f in &registry.failures {
                    msg.push_str(&format!("\n  {f}"));
                }
            }
            let kind = failures[0].1.kind();
            return Err(Error::new(kind, msg));
        }
        Ok(Storage {
            inner: Arc::new(Inner {
                config,
                registry,
                stores,
                failures,
            }),
        })
    }
}

fn open_store(registry: &Registry, config: &Config, entry: &StoreEntry) -> Result<AnyStore> {
    let origin = config
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "config".into());
    let place = format!(
        "{origin}{}: [{}.{}]",
        entry.line.map(|l| format!(":{l}")).unwrap_or_default(),
        entry.capability,
        entry.name
    );
    let wrap = |e: Error| {
        let msg = e.message().to_string();
        Error::new(
            e.kind(),
            format!("{place} (backend '{}'): {msg}", entry.backend),
        )
    };
    let open_on = |backend: &str, options: serde_json::Value| -> Result<_> {
        let (info, plugin) = registry.provider(backend, entry.capability)?;
        let mut cfg = entry.store_config(&config.base_dir, backend);
        cfg.options = options;
        let ffi = plugin.open(&cfg)?;
        if store_capability(&ffi) != Some(entry.capability) {
            return Err(Error::incompatible(
                "the plugin returned a store of another capability: report this to the plugin's author",
            ));
        }
        Ok((info, Foreign::new(ffi, &entry.name, backend)))
    };
    let (info, foreign) = open_on(&entry.backend, entry.options.clone()).map_err(wrap)?;
    let fallback = match &entry.fallback {
        None => None,
        Some(_) if entry.capability != Capability::Cache => {
            return Err(wrap(Error::config(
                "fallback is supported for cache stores only: remove the key",
            )))
        }
        Some(f) => {
            // The fallback gets the keys every cache backend understands;
            // the primary's own keys (url, prefix, …) mean nothing to it.
            let shared: serde_json::Map<String, serde_json::Value> = entry
                .options
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| crate::fallback::SHARED_CACHE_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let (_, fb) = open_on(f, serde_json::Value::Object(shared))
                .map_err(|e| wrap(e.context(format!("fallback '{f}'"))))?;
            Some((f.clone(), fb))
        }
    };
    let meta = Arc::new(StoreMeta {
        name: entry.name.clone(),
        backend: entry.backend.clone(),
        descriptor: info.descriptor.clone(),
    });
    Ok(match entry.capability {
        Capability::Relational => AnyStore::Relational(RelationalStore {
            inner: Arc::new(ForeignRelational(foreign, Default::default())),
            meta,
        }),
        Capability::Vector => AnyStore::Vector(VectorStore {
            inner: Arc::new(ForeignVector(foreign)),
            meta,
        }),
        Capability::Cache => AnyStore::Cache(CacheStore {
            inner: match fallback {
                None => Arc::new(ForeignCache(foreign)),
                Some((name, fb)) => Arc::new(crate::fallback::FallbackCache::new(
                    Box::new(ForeignCache(foreign)),
                    Box::new(ForeignCache(fb)),
                    &entry.name,
                    &entry.backend,
                    &name,
                )),
            },
            meta,
        }),
        Capability::Graph => AnyStore::Graph(GraphStore {
            inner: Arc::new(ForeignGraph(foreign)),
            meta,
        }),
    })
}

#[derive(Clone)]
enum AnyStore {
    Relational(RelationalStore),
    Vector(VectorStore),
    Cache(CacheStore),
    Graph(GraphStore),
}

impl AnyStore {
    fn health(&self) -> Result<Health> {
        match self {
            AnyStore::Relational(s) => s.blocking().health(),
            AnyStore::Vector(s) => s.blocking().health(),
            AnyStore::Cache(s) => s.blocking().health(),
            AnyStore::Graph(s) => s.blocking().health(),
        }
    }
}

struct Inner {
    config: Config,
    registry: Registry,
    stores: BTreeMap<(Capability, String), AnyStore>,
    failures: Vec<(StoreEntry, Error)>,
}

/// The opened stores of one plugins.toml. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("config", &self.inner.config)
            .field("stores", &self.inner.stores.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// One line of [`Storage::health`].
#[derive(Clone, Debug)]
pub struct StoreHealth {
    /// The store's capability.
    pub capability: Capability,
    /// The store's name.
    pub store: String,
    /// Its backend.
    pub backend: String,
    /// What the store said, or why it could not be asked.
    pub result: Result<Health>,
}

impl Storage {
    /// Open every store of the plugins.toml at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Storage> {
        Storage::builder().config(path.as_ref()).open()
    }

    /// Open `$BACKPLANE_CONFIG`, or `./plugins.toml`.
    pub fn open_default() -> Result<Storage> {
        Storage::builder().open()
    }

    /// A builder for more options.
    pub fn builder() -> StorageBuilder {
        StorageBuilder::default()
    }

    fn get(&self, cap: Capability, name: &str) -> Result<&AnyStore> {
        if let Some(s) = self.inner.stores.get(&(cap, name.to_string())) {
            return Ok(s);
        }
        if let Some((_, e)) = self
            .inner
            .failures
            .iter()
            .find(|(s, _)| s.capability == cap && s.name == name)
        {
            return Err(e.clone());
        }
        let other: Vec<String> = self
            .inner
            .config
            .stores
            .iter()
            .filter(|s| s.name == name)
            .map(|s| format!("[{}.{}]", s.capability, s.name))
            .collect();
        let configured: Vec<String> = self
            .inner
            .config
            .stores
            .iter()
            .filter(|s| s.capability == cap)
            .map(|s| s.name.clone())
            .collect();
        Err(Error::config(if other.is_empty() {
            format!(
                "no {cap} store named '{name}' is configured (configured {cap} stores: {}): add a [{cap}.{name}] section to plugins.toml",
                if configured.is_empty() { "none".into() } else { configured.join(", ") }
            )
        } else {
            format!(
                "'{name}' is configured as {} , not as a {cap} store: ask for it with that capability, or add [{cap}.{name}]",
                other.join(", ")
            )
        }))
    }

    /// The relational store `name`.
    pub fn relational(&self, name: &str) -> Result<RelationalStore> {
        match self.get(Capability::Relational, name)? {
            AnyStore::Relational(s) => Ok(s.clone()),
            _ => unreachable!("stores are keyed by capability"),
        }
    }
    /// The vector store `name`.
    pub fn vector(&self, name: &str) -> Result<VectorStore> {
        match self.get(Capability::Vector, name)? {
            AnyStore::Vector(s) => Ok(s.clone()),
            _ => unreachable!("stores are keyed by capability"),
        }
    }
    /// The cache store `name`.
    pub fn cache(&self, name: &str) -> Result<CacheStore> {
        match self.get(Capability::Cache, name)? {
            AnyStore::Cache(s) => Ok(s.clone()),
            _ => unreachable!("stores are keyed by capability"),
        }
    }
    /// The graph store `name`.
    pub fn graph(&self, name: &str) -> Result<GraphStore> {
        match self.get(Capability::Graph, name)? {
            AnyStore::Graph(s) => Ok(s.clone()),
            _ => unreachable!("stores are keyed by capability"),
        }
    }

    /// Every backend available, by name.
    pub fn backends(&self) -> Vec<BackendInfo> {
        self.inner.registry.backends.values().cloned().collect()
    }

    /// Plugin libraries that failed to load, one line each.
    pub fn plugin_failures(&self) -> &[LoadFailure] {
        &self.inner.registry.failures
    }

    /// Stores that failed to open (only with [`StorageBuilder::lenient`]).
    pub fn failures(&self) -> Vec<(Capability, String, Error)> {
        self.inner
            .failures
            .iter()
            .map(|(s, e)| (s.capability, s.name.clone(), e.clone()))
            .collect()
    }

    /// The parsed configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Ask every configured store whether it answers.
    pub fn health(&self) -> Vec<StoreHealth> {
        self.inner
            .config
            .stores
            .iter()
            .map(|entry| {
                let result = match self
                    .inner
                    .stores
                    .get(&(entry.capability, entry.name.clone()))
                {
                    Some(s) => s.health(),
                    None => Err(self
                        .get(entry.capability, &entry.name)
                        .err()
                        .unwrap_or_else(|| Error::backend("store is not open"))),
                };
                StoreHealth {
                    capability: entry.capability,
                    store: entry.name.clone(),
                    backend: entry.backend.clone(),
                    result,
                }
            })
            .collect()
    }

    /// Stop every plugin's background work. Handles must not be used after.
    pub fn shutdown(&self) {
        self.inner.registry.shutdown();
    }
}

struct StoreMeta {
    name: String,
    backend: String,
    descriptor: BackendDescriptor,
}

fn join_error(e: tokio::task::JoinError) -> Error {
    if e.is_panic() {
        Error::new(
            ErrorKind::Panicked,
            format!("a store call panicked in the host: {e}"),
        )
    } else {
        Error::unavailable(format!("a store call was cancelled: {e}"))
    }
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident, $tr:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            inner: Arc<dyn $tr>,
            meta: Arc<StoreMeta>,
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("store", &self.meta.name)
                    .field("backend", &self.meta.backend)
                    .finish()
            }
        }

        impl $name {
            /// The blocking API: the capability trait itself.
            pub fn blocking(&self) -> &dyn $tr {
                &*self.inner
            }
            /// The store's name.
            pub fn name(&self) -> &str {
                &self.meta.name
            }
            /// The backend serving it.
            pub fn backend(&self) -> &str {
                &self.meta.backend
            }
            /// What the backend declares it can do.
            pub fn descriptor(&self) -> &BackendDescriptor {
                &self.meta.descriptor
            }
            /// Run a closure on the blocking API from async code, on
            /// tokio's blocking pool. Must be called within a tokio runtime.
            pub async fn run<T: Send + 'static>(
                &self,
                f: impl FnOnce(&dyn $tr) -> Result<T> + Send + 'static,
            ) -> Result<T> {
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || f(&*inner))
                    .await
                    .map_err(join_error)?
            }
            /// Check the store answers.
            pub async fn health(&self) -> Result<Health> {
                self.run(|s| s.health()).await
            }
        }
    };
}

handle!(
    /// A relational store. Async methods below; `blocking()` for plain code.
    RelationalStore, Relational);
handle!(
    /// A vector store. Async methods below; `blocking()` for plain code.
    VectorStore, Vector);
handle!(
    /// A cache store. Async methods below; `blocking()` for plain code.
    CacheStore, Cache);
handle!(
    /// A graph store. Async methods below; `blocking()` for plain code.
    GraphStore, Graph);

/// Generates async methods that move their arguments to the blocking pool.
macro_rules! async_methods {
    ($store:ident: $(
        $(#[$doc:meta])*
        fn $m:ident([$($a:ident: $t:ty),*] $(, $p:ident: $pt:ty)*) -> $r:ty => |$s:ident| $body:expr;
    )*) => {
        impl $store {
            $(
                $(#[$doc])*
                #[allow(clippy::too_many_arguments)]
                pub async fn $m(&self $(, $a: impl Into<$t>)* $(, $p: $pt)*) -> Result<$r> {
                    $(let $a: $t = $a.into();)*
                    self.run(move |$s| $body).await
                }
            )*
        }
    };
}

async_methods! { RelationalStore:
    /// See [`Relational::execute`].
    fn execute([sql: String, params: Params]) -> ExecResult => |s| s.execute(&sql, &params);
    /// See [`Relational::execute_many`].
    fn execute_many([sql: String, params: Vec<Params>]) -> ExecResult => |s| s.execute_many(&sql, &params);
    /// See [`Relational::query`].
    fn query([sql: String, params: Params]) -> Rows => |s| s.query(&sql, &params);
    /// See [`Relational::transaction`].
    fn transaction([statements: Vec<Statement>]) -> Vec<ExecResult> => |s| s.transaction(&statements);
    /// See [`Relational::migrate`].
    fn migrate([migrations: Vec<Migration>]) -> MigrationReport => |s| s.migrate(&migrations);
    /// See [`Relational::tables`].
    fn tables([]) -> Vec<String> => |s| s.tables();
    /// See [`Relational::describe`].
    fn describe([table: String]) -> TableSchema => |s| s.describe(&table);
    /// See [`Relational::backup`].
    fn backup([path: String]) -> () => |s| s.backup(&path);
    /// See [`Relational::restore`].
    fn restore([path: String]) -> () => |s| s.restore(&path);
}

async_methods! { VectorStore:
    /// See [`Vector::create_collection`].
    fn create_collection([name: String], dimension: u32, distance: Distance) -> () => |s| s.create_collection(&name, dimension, distance);
    /// See [`Vector::drop_collection`].
    fn drop_collection([name: String]) -> () => |s| s.drop_collection(&name);
    /// See [`Vector::list_collections`].
    fn list_collections([]) -> Vec<CollectionInfo> => |s| s.list_collections();
    /// See [`Vector::collection_info`].
    fn collection_info([name: String]) -> CollectionInfo => |s| s.collection_info(&name);
    /// See [`Vector::upsert`].
    fn upsert([collection: String, records: Vec<VectorRecord>]) -> () => |s| s.upsert(&collection, &records);
    /// See [`Vector::get`].
    fn get([collection: String, ids: Vec<String>]) -> Vec<VectorRecord> => |s| s.get(&collection, &ids);
    /// See [`Vector::delete`].
    fn delete([collection: String, ids: Vec<String>]) -> u64 => |s| s.delete(&collection, &ids);
    /// See [`Vector::delete_where`].
    fn delete_where([collection: String, filter: Filter]) -> u64 => |s| s.delete_where(&collection, &filter);
    /// See [`Vector::count`].
    fn count([collection: String], filter: Option<Filter>) -> u64 => |s| s.count(&collection, filter.as_ref());
    /// See [`Vector::search`].
    fn search([collection: String, request: SearchRequest]) -> Vec<SearchHit> => |s| s.search(&collection, &request);
    /// See [`Vector::search_batch`].
    fn search_batch([collection: String, requests: Vec<SearchRequest>]) -> Vec<Vec<SearchHit>> => |s| s.search_batch(&collection, &requests);
    /// See [`Vector::scroll`].
    fn scroll([collection: String], cursor: Option<String>, limit: usize) -> ScrollPage => |s| s.scroll(&collection, cursor.as_deref(), limit);
}

impl CacheStore {
    /// See [`Cache::get`]. On a store with a non-blocking form
    /// ([`Cache::as_async`], the redis backend) the call is awaited
    /// without taking a blocking thread.
    pub async fn get(&self, key: impl Into<String>) -> Result<Option<Vec<u8>>> {
        let key = key.into();
        if let Some(a) = self.inner.as_async() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            a.get(
                &key,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            return rx.await.unwrap_or_else(|_| Err(unanswered()));
        }
        self.run(move |s| s.get(&key)).await
    }

    /// See [`Cache::set`]; non-blocking where the store allows, as
    /// [`get`](Self::get).
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        if let Some(a) = self.inner.as_async() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            a.set(
                &key,
                &value,
                ttl,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            return rx.await.unwrap_or_else(|_| Err(unanswered()));
        }
        self.run(move |s| s.set(&key, &value, ttl)).await
    }
}

/// A started call whose callback was dropped without being called (which
/// the plugin boundary rules out; kept so a bug is an error, not a hang).
fn unanswered() -> Error {
    Error::backend("a started call ended without an answer: retry")
}

async_methods! { CacheStore:
    /// See [`Cache::delete`].
    fn delete([key: String]) -> bool => |s| s.delete(&key);
    /// See [`Cache::exists`].
    fn exists([key: String]) -> bool => |s| s.exists(&key);
    /// See [`Cache::expire`].
    fn expire([key: String], ttl: Duration) -> bool => |s| s.expire(&key, ttl);
    /// See [`Cache::get_many`].
    fn get_many([keys: Vec<String>]) -> Vec<Option<Vec<u8>>> => |s| s.get_many(&keys);
    /// See [`Cache::set_many`].
    fn set_many([entries: Vec<(String, Vec<u8>)>], ttl: Option<Duration>) -> () => |s| s.set_many(&entries, ttl);
    /// See [`Cache::add_message`].
    fn add_message([channel: String, message: Message]) -> Message => |s| s.add_message(&channel, &message);
    /// See [`Cache::add_messages`].
    fn add_messages([channel: String, messages: Vec<Message>]) -> Vec<Message> => |s| s.add_messages(&channel, &messages);
    /// See [`Cache::recent`].
    fn recent([channel: String], limit: usize, exclude_id: Option<String>) -> Vec<Message> => |s| s.recent(&channel, limit, exclude_id.as_deref());
    /// See [`Cache::remove_message`].
    fn remove_message([channel: String, id: String]) -> bool => |s| s.remove_message(&channel, &id);
    /// See [`Cache::clear`].
    fn clear([channel: String]) -> u64 => |s| s.clear(&channel);
    /// See [`Cache::stats`].
    fn stats([]) -> CacheStats => |s| s.stats();
}

async_methods! { GraphStore:
    /// See [`Graph::create_nodes`].
    fn create_nodes([nodes: Vec<NewNode>]) -> Vec<Node> => |s| s.create_nodes(&nodes);
    /// See [`Graph::get_node`].
    fn get_node([id: String]) -> Option<Node> => |s| s.get_node(&id);
    /// See [`Graph::update_node`].
    fn update_node([id: String, properties: serde_json::Value]) -> Node => |s| s.update_node(&id, &properties);
    /// See [`Graph::delete_node`].
    fn delete_node([id: String]) -> bool => |s| s.delete_node(&id);
    /// See [`Graph::create_edges`].
    fn create_edges([edges: Vec<NewEdge>]) -> Vec<Edge> => |s| s.create_edges(&edges);
    /// See [`Graph::get_edge`].
    fn get_edge([id: String]) -> Option<Edge> => |s| s.get_edge(&id);
    /// See [`Graph::update_edge`].
    fn update_edge([id: String, properties: serde_json::Value]) -> Edge => |s| s.update_edge(&id, &properties);
    /// See [`Graph::delete_edge`].
    fn delete_edge([id: String]) -> bool => |s| s.delete_edge(&id);
    /// See [`Graph::neighbors`].
    fn neighbors([id: String], direction: Direction, edge_types: Vec<String>, depth: u32) -> Vec<Neighbor> => |s| s.neighbors(&id, direction, &edge_types, depth);
    /// See [`Graph::shortest_path`].
    fn shortest_path([from: String, to: String], max_depth: u32) -> Option<backplane_core::Path> => |s| s.shortest_path(&from, &to, max_depth);
    /// See [`Graph::edges_of`].
    fn edges_of([id: String], direction: Direction) -> Vec<Edge> => |s| s.edges_of(&id, direction);
    /// See [`Graph::find_nodes`].
    fn find_nodes([query: NodeQuery]) -> Vec<Node> => |s| s.find_nodes(&query);
    /// See [`Graph::export_nodes`].
    fn export_nodes([], cursor: Option<String>, limit: usize) -> Page<Node> => |s| s.export_nodes(cursor.as_deref(), limit);
    /// See [`Graph::export_edges`].
    fn export_edges([], cursor: Option<String>, limit: usize) -> Page<Edge> => |s| s.export_edges(cursor.as_deref(), limit);
}
