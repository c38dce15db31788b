//! What a plugin author implements: the [`Plugin`] trait, the capability
//! descriptor it returns, and the per-store configuration it receives.

use crate::{Cache, Distance, Error, FilterOp, Graph, Relational, Result, Vector};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The four capabilities a store can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// SQL tables.
    Relational,
    /// Embeddings with payloads.
    Vector,
    /// Key/value with expiry, and conversation lists.
    Cache,
    /// Nodes and edges.
    Graph,
}

impl Capability {
    /// Every capability, in the order plugins.toml lists them.
    pub const ALL: [Capability; 4] = [
        Capability::Relational,
        Capability::Vector,
        Capability::Cache,
        Capability::Graph,
    ];
    /// The section name in plugins.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Relational => "relational",
            Capability::Vector => "vector",
            Capability::Cache => "cache",
            Capability::Graph => "graph",
        }
    }
    /// Parse a section name.
    pub fn parse(s: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == s)
    }
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
    pub(crate) fn from_code(c: u8) -> Option<Capability> {
        Capability::ALL.get(c as usize).copied()
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one backend declares it can do. The host and the behaviour suite
/// read it to decide what to run and what to evaluate on the backend's behalf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackendDescriptor {
    /// The name used as `backend = "…"` in plugins.toml.
    pub name: String,
    /// One line for `backplane plugins`.
    pub description: String,
    /// Capabilities served.
    pub capabilities: Vec<Capability>,
    /// Filter operators evaluated natively (vector and graph). The host
    /// evaluates the others itself: the backend is given only the part of
    /// a filter it declares, never a filter it would drop.
    pub filter_ops: Vec<FilterOp>,
    /// Distances supported (vector).
    pub distances: Vec<Distance>,
    /// Whether expiry is enforced by the backend itself (cache). When
    /// false, the host enforces key and channel expiry, storing each value
    /// with its expiry, and the backend never receives a TTL.
    pub native_ttl: bool,
    /// Whether data survives a restart of the process.
    pub persistent: bool,
    /// Largest batch accepted in one call, if limited (vector records,
    /// ids, queries and scroll pages); the host splits larger ones.
    pub max_batch: Option<u32>,
}

impl BackendDescriptor {
    /// A descriptor with the given name and capabilities, every filter
    /// operator (when it serves vector or graph) and every distance (when
    /// it serves vector), and the other fields off.
    pub fn new(name: impl Into<String>, capabilities: &[Capability]) -> Self {
        let filters = capabilities
            .iter()
            .any(|c| matches!(c, Capability::Vector | Capability::Graph));
        let vector = capabilities.contains(&Capability::Vector);
        BackendDescriptor {
            name: name.into(),
            description: String::new(),
            capabilities: capabilities.to_vec(),
            filter_ops: if filters {
                FilterOp::ALL.to_vec()
            } else {
                Vec::new()
            },
            distances: if vector {
                vec![Distance::Cosine, Distance::Dot, Distance::Euclidean]
            } else {
                Vec::new()
            },
            native_ttl: false,
            persistent: false,
            max_batch: None,
        }
    }
    /// With a description.
    pub fn describe(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    /// Whether it serves `c`.
    pub fn serves(&self, c: Capability) -> bool {
        self.capabilities.contains(&c)
    }
}

/// What `backplane plugins` shows of a plugin library.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// The plugin's name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The backplane-core version it was built against.
    pub core_version: String,
    /// The backends it provides.
    pub backends: Vec<BackendDescriptor>,
}

/// Whether a store answered, and what it said about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// True when the store answered.
    pub healthy: bool,
    /// A short line: version, path, mode.
    pub detail: String,
}

impl Health {
    /// A healthy store with a detail line.
    pub fn ok(detail: impl Into<String>) -> Self {
        Health {
            healthy: true,
            detail: detail.into(),
        }
    }
}

/// One store's section of plugins.toml, as handed to a plugin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// The store's name (`user_data` in `[relational.user_data]`).
    pub store: String,
    /// The backend asked for.
    pub backend: String,
    /// The capability asked for.
    pub capability: Capability,
    /// The folder of the plugins.toml; relative paths resolve against it.
    pub base_dir: PathBuf,
    /// The section's keys other than those the host reads (`backend`,
    /// `fallback`), with `${VAR}` already interpolated.
    #[serde(with = "crate::value::json_text")]
    pub options: serde_json::Value,
}

impl StoreConfig {
    /// A config for tests and static use.
    pub fn new(
        store: impl Into<String>,
        backend: impl Into<String>,
        capability: Capability,
        options: serde_json::Value,
    ) -> Self {
        StoreConfig {
            store: store.into(),
            backend: backend.into(),
            capability,
            base_dir: PathBuf::from("."),
            options,
        }
    }

    /// Deserialize the options into a plugin's config struct. Unknown keys
    /// and wrong types become one `Config` error naming the store.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        let opts = if self.options.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            self.options.clone()
        };
        serde_json::from_value(opts.clone()).map_err(|e| {
            // serde_json does not say which key holds a value of the wrong
            // type: the key without which the section parses is the one.
            let culprit = opts.as_object().and_then(|o| {
                o.keys()
                    .find(|k| {
                        let mut rest = o.clone();
                        rest.remove(k.as_str());
                        serde_json::from_value::<T>(serde_json::Value::Object(rest)).is_ok()
                    })
                    .cloned()
            });
            let at = culprit.map_or(String::new(), |k| format!("key '{k}': "));
            Error::config(format!(
                "[{}.{}] (backend '{}'): {at}{}",
                self.capability,
                self.store,
                self.backend,
                crate::kit::text::plain_serde(&e.to_string())
            ))
        })
    }

    /// Resolve a path from the config against the config file's folder
    /// (absolute paths and `~/` are kept as given / expanded).
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        resolve_path(&self.base_dir, p)
    }

    /// A `Config` error unless this is a store of `capability`, the only
    /// one `backend` serves (for a backend of one capability to check
    /// first).
    pub fn require(&self, capability: Capability, backend: &str) -> Result<()> {
        if self.capability == capability {
            return Ok(());
        }
        Err(self.error(format!(
            "backend \"{backend}\" serves {capability} stores only, not {}: move this section under [{capability}.<name>] or pick another backend",
            self.capability
        )))
    }

    /// A `Config` error about this store.
    pub fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::config(format!("[{}.{}]: {message}", self.capability, self.store))
    }
}

/// Resolve `p` against `base`: `~/` expands to the home folder, absolute
/// paths stay, anything else is joined to `base`.
pub fn resolve_path(base: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    let path = Path::new(p);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// A plugin: a set of backends, each serving one or more capabilities.
///
/// Implement this, then call [`export_plugin!`](crate::export_plugin) once in
/// the crate. Every `open_*` receives the store's section of plugins.toml;
/// the defaults say the capability is not served.
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's name (usually the crate name without the prefix).
    fn name(&self) -> &str;
    /// The plugin's version.
    fn version(&self) -> &str;
    /// The backends it provides, with what each can do.
    fn backends(&self) -> Vec<BackendDescriptor>;
    /// Open a relational store.
    fn open_relational(&self, config: &StoreConfig) -> Result<Box<dyn Relational>> {
        Err(not_served(config))
    }
    /// Open a vector store.
    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        Err(not_served(config))
    }
    /// Open a cache store.
    fn open_cache(&self, config: &StoreConfig) -> Result<Box<dyn Cache>> {
        Err(not_served(config))
    }
    /// Open a graph store.
    fn open_graph(&self, config: &StoreConfig) -> Result<Box<dyn Graph>> {
        Err(not_served(config))
    }
    /// Stop background work (runtimes, pools). Called once when the host
    /// shuts down; the library itself is never unloaded.
    fn shutdown(&self) {}
}

fn not_served(config: &StoreConfig) -> Error {
    Error::unsupported(format!(
        "backend '{}' does not serve the {} capability: pick a backend that does (see `backplane plugins`)",
        config.backend, config.capability
    ))
}

/// A plugin's entry in the registry that [`export_plugin!`](crate::export_plugin)
/// fills. The host reads the registry of statically linked plugins; a plugin
/// library's exported root module reads its own.
pub struct Registration {
    make: fn() -> Box<dyn Plugin>,
}

impl Registration {
    /// Used by [`export_plugin!`](crate::export_plugin).
    pub const fn new(make: fn() -> Box<dyn Plugin>) -> Self {
        Registration { make }
    }
    /// Construct the plugin.
    pub fn make(&self) -> Box<dyn Plugin> {
        (self.make)()
    }
}

inventory::collect!(Registration);

/// Every plugin registered in this binary with [`export_plugin!`](crate::export_plugin).
pub fn registered_plugins() -> impl Iterator<Item = &'static Registration> {
    inventory::iter::<Registration>.into_iter()
}

/// Register a plugin. Call once per plugin crate with an expression that
/// builds the plugin:
///
/// ```ignore
/// backplane_core::export_plugin!(MyPlugin::default());
/// ```
///
/// Built as a `cdylib`, the library then carries Backplane's root module and
/// the host loads it from disk; linked as an `rlib`, the host finds the
/// plugin in its static registry. Either way the host sees the same plugin.
#[macro_export]
macro_rules! export_plugin {
    ($make:expr) => {
        const _: () = {
            fn __backplane_make_plugin() -> ::std::boxed::Box<dyn $crate::Plugin> {
                ::std::boxed::Box::new($make)
            }
            $crate::inventory::submit! {
                $crate::Registration::new(__backplane_make_plugin)
            }
        };
    };
}
