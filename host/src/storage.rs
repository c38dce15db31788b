//! [`Storage`]: the stores of a plugins.toml, opened, and the cloneable
//! handles an application uses.
//!
//! Each handle has an async API for tokio programs (the call runs on tokio's
//! blocking pool, so a slow backend never stalls the executor, or, for a
//! call the store serves without blocking, is awaited directly) and a
//! blocking one, `handle.blocking()`, which is the capability trait itself.
//! The async methods are generated from each capability's method list in
//! `backplane_core::boundary`, so they cover every trait method.

use crate::config::{Config, StoreEntry};
use crate::loader::{BackendInfo, LoadFailure, Registry};
use crate::ops::metrics::{Listener, Metrics};
use crate::ops::Ops;
use backplane_core::boundary::Arg;
use backplane_core::library::OpenedStore;
use backplane_core::*;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        let metrics = Arc::new(Metrics::new());
        let mut stores = BTreeMap::new();
        let mut failures = Vec::new();
        // Plain stores first, then the mirrors made of them.
        for entry in config.stores.iter().filter(|e| e.mirror.is_none()) {
            match open_store(&registry, &config, entry, &metrics) {
                Ok(s) => {
                    stores.insert((entry.capability, entry.name.clone()), s);
                }
                Err(e) => failures.push((entry.clone(), e)),
            }
        }
        for entry in config.stores.iter().filter(|e| e.mirror.is_some()) {
            match open_mirror(&config, entry, &stores, &metrics) {
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
        let principals = config
            .access
            .principals
            .iter()
            .map(|(name, spec)| {
                Ok((
                    name.clone(),
                    Arc::new(crate::access::Principal::open(name, spec)?),
                ))
            })
            .collect::<Result<_>>()?;
        let listener = match &config.metrics_listen {
            Some(addr) => Some(Listener::start(addr, metrics.clone())?),
            None => None,
        };
        Ok(Storage {
            principal: None,
            tenant: None,
            inner: Arc::new(Inner {
                tenant_stores: Default::default(),
                principals,
                config,
                registry,
                stores,
                failures,
                metrics,
                listener,
            }),
        })
    }
}

/// The operations layers go outermost, so they see the store as the
/// application does (fallback and host-made features included).
macro_rules! layered {
    ($entry:expr, $metrics:expr, $s:expr, $Trait:ident) => {{
        let s: Arc<dyn $Trait> = $s;
        if $entry.layers.is_empty() {
            s
        } else {
            Arc::new(Ops::new(
                s,
                &$entry.layers,
                $entry.capability,
                &$entry.name,
                &$entry.backend,
                $metrics,
            )) as Arc<dyn $Trait>
        }
    }};
}

/// The file a section is in, and `file:line: [capability.name]` for errors.
fn section_place(config: &Config, entry: &StoreEntry) -> (String, String) {
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
    (origin, place)
}

/// A mirror of stores opened already.
fn open_mirror(
    config: &Config,
    entry: &StoreEntry,
    stores: &BTreeMap<(Capability, String), AnyStore>,
    metrics: &Arc<Metrics>,
) -> Result<AnyStore> {
    let spec = entry.mirror.as_ref().expect("a mirror entry");
    let (_, place) = section_place(config, entry);
    let place = format!("{place} (mirror)");
    if let Some(m) = spec.members.iter().find(|m| {
        config
            .store(entry.capability, m)
            .is_some_and(|e| e.encryption.is_some())
    }) {
        return Err(Error::config(format!(
            "{place}: member '{m}' is encrypted, and the mirror's journal would keep what it writes while a member is down in the clear: encrypt the members' data in the application, or remove the member's encryption"
        )));
    }
    let mut members = Vec::new();
    for m in &spec.members {
        match stores.get(&(entry.capability, m.clone())) {
            Some(s) => members.push((m, s.clone())),
            None => {
                return Err(Error::unavailable(format!(
                    "{place}: member '{m}' did not open (its own error is listed with it): the mirror opens when every member does"
                )))
            }
        }
    }
    let journal = crate::mirror::JournalAt::Folder(spec.journal.clone());
    let wrap = |e: Error| Error::new(e.kind(), format!("{place}: {}", e.message()));
    macro_rules! mirror {
        ($Any:ident, $Handle:ident, $Trait:ident) => {{
            let list = members
                .iter()
                .map(|(name, s)| match s {
                    AnyStore::$Any(h) => (
                        format!("member '{name}' ({})", h.meta.backend),
                        h.inner.clone(),
                    ),
                    _ => unreachable!("members have the mirror's capability"),
                })
                .collect();
            let m = crate::mirror::Mirror::<dyn $Trait>::new(&entry.name, list, &journal)
                .map_err(wrap)?;
            AnyStore::$Any($Handle {
                inner: layered!(entry, metrics, Arc::new(m), $Trait),
                meta: Arc::new(StoreMeta {
                    name: entry.name.clone(),
                    backend: entry.backend.clone(),
                    capability: entry.capability,
                    // What every member can do is what the first declares.
                    descriptor: match &members[0].1 {
                        AnyStore::$Any(h) => h.meta.descriptor.clone(),
                        _ => unreachable!("members have the mirror's capability"),
                    },
                    timeout: entry.layers.timeout,
                    rekey: None,
                    runners: runners(entry).map_err(wrap)?,
                }),
            })
        }};
    }
    Ok(match entry.capability {
        Capability::Relational => mirror!(Relational, RelationalStore, Relational),
        Capability::Vector => mirror!(Vector, VectorStore, Vector),
        Capability::Cache => mirror!(Cache, CacheStore, Cache),
        Capability::Graph => mirror!(Graph, GraphStore, Graph),
    })
}

fn open_store(
    registry: &Registry,
    config: &Config,
    entry: &StoreEntry,
    metrics: &Arc<Metrics>,
) -> Result<AnyStore> {
    let (origin, place) = section_place(config, entry);
    let wrap = |e: Error| {
        // The plugin's own message may name the section too: say it once,
        // and point at the key's line when the message names a key.
        let mut msg = e.message();
        let section = format!("[{}.{}]", entry.capability, entry.name);
        for prefix in [
            format!("{section} (backend '{}'): ", entry.backend),
            format!("{section}: "),
        ] {
            msg = msg.strip_prefix(prefix.as_str()).unwrap_or(msg);
        }
        let key_line = msg
            .strip_prefix("key '")
            .and_then(|r| r.split_once('\''))
            .and_then(|(k, _)| entry.key_lines.get(k));
        let place = match key_line {
            Some(l) => format!("{origin}:{l}: {section}"),
            None => place.clone(),
        };
        Error::new(
            e.kind(),
            format!("{place} (backend '{}'): {msg}", entry.backend),
        )
    };
    // What the host needs of a cache's settings where it enforces expiry.
    let cache_settings = crate::declared::CacheSettings::of(&entry.options);
    let cache_settings = match entry.encryption {
        Some(_) => cache_settings.sealed(crate::crypt::growth(cache_settings.max_value_bytes)),
        None => cache_settings,
    };
    let open_on = |backend: &str, options: serde_json::Value| -> Result<_> {
        let mut cfg = entry.store_config(&config.base_dir, backend);
        cfg.options = cache_settings.options_for(registry, backend, entry.capability, options);
        registry.open(&cfg)
    };
    let (info, opened) = open_on(&entry.backend, entry.options.clone()).map_err(wrap)?;
    let fallback = match &entry.fallback {
        None => None,
        Some(_) if entry.capability != Capability::Cache => {
            return Err(wrap(Error::config(
                "fallback is supported for cache stores only (for the others, make a mirror: see the README): remove the key",
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
                .filter(|(k, _)| crate::mirror::SHARED_CACHE_KEYS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let (fb_info, fb) = open_on(f, serde_json::Value::Object(shared))
                .map_err(|e| wrap(e.context(format!("fallback '{f}'"))))?;
            match fb {
                OpenedStore::Cache(fb) => Some((
                    f.clone(),
                    crate::declared::cache(fb, &fb_info.descriptor, &entry.name, cache_settings),
                )),
                _ => unreachable!("a cache section opens cache stores"),
            }
        }
    };
    let mut meta = StoreMeta {
        name: entry.name.clone(),
        backend: entry.backend.clone(),
        capability: entry.capability,
        descriptor: info.descriptor.clone(),
        timeout: entry.layers.timeout,
        rekey: None,
        runners: runners(entry).map_err(wrap)?,
    };
    // Encryption goes under the operations layers (a retried call is
    // encrypted once) and over everything the host makes of the store (a
    // fallback holds ciphertext too).
    macro_rules! encrypted {
        ($s:expr, $Crypt:ident, $Trait:ident $(, $limit:expr)?) => {{
            let s: Arc<dyn $Trait> = $s;
            match &entry.encryption {
                None => s,
                Some(spec) => {
                    let seal = crate::crypt::Sealer::open(&entry.name, &entry.backend, spec)
                        .map_err(wrap)?;
                    let c = Arc::new(crate::crypt::$Crypt::new(s, seal $(, $limit)?).map_err(wrap)?);
                    meta.rekey = Some(c.clone());
                    c as Arc<dyn $Trait>
                }
            }
        }};
    }
    Ok(match opened {
        OpenedStore::Relational(s) => {
            let inner = layered!(entry, metrics, s.into(), Relational);
            AnyStore::Relational(RelationalStore {
                inner,
                meta: Arc::new(meta),
            })
        }
        OpenedStore::Vector(s) => {
            let s = encrypted!(
                crate::declared::vector(s, &info.descriptor, &entry.name).into(),
                CryptVector,
                Vector
            );
            AnyStore::Vector(VectorStore {
                inner: layered!(entry, metrics, s, Vector),
                meta: Arc::new(meta),
            })
        }
        OpenedStore::Cache(s) => {
            let s = encrypted!(
                match (
                    fallback,
                    crate::declared::cache(s, &info.descriptor, &entry.name, cache_settings),
                ) {
                    (None, s) => s.into(),
                    // A fallback is a mirror of the primary and the
                    // fallback whose journal is kept in memory.
                    (Some((name, fb)), s) => Arc::new(
                        crate::mirror::Mirror::<dyn Cache>::new(
                            &entry.name,
                            vec![
                                (format!("'{}'", entry.backend), Arc::from(s)),
                                (format!("fallback '{name}'"), Arc::from(fb)),
                            ],
                            &crate::mirror::JournalAt::Memory,
                        )
                        .map_err(wrap)?,
                    ),
                },
                CryptCache,
                Cache,
                cache_settings.max_value_bytes
            );
            AnyStore::Cache(CacheStore {
                inner: layered!(entry, metrics, s, Cache),
                meta: Arc::new(meta),
            })
        }
        OpenedStore::Graph(s) => {
            let s = encrypted!(
                crate::declared::graph(s, &info.descriptor).into(),
                CryptGraph,
                Graph
            );
            AnyStore::Graph(GraphStore {
                inner: layered!(entry, metrics, s, Graph),
                meta: Arc::new(meta),
            })
        }
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
    fn meta(&self) -> &StoreMeta {
        match self {
            AnyStore::Relational(s) => &s.meta,
            AnyStore::Vector(s) => &s.meta,
            AnyStore::Cache(s) => &s.meta,
            AnyStore::Graph(s) => &s.meta,
        }
    }
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
    /// The relational stores of tenants, opened on first use, by (store,
    /// tenant).
    tenant_stores: std::sync::Mutex<BTreeMap<(String, String), RelationalStore>>,
    /// `[access]`'s principals, with their tokens read.
    principals: BTreeMap<String, Arc<crate::access::Principal>>,
    registry: Registry,
    stores: BTreeMap<(Capability, String), AnyStore>,
    failures: Vec<(StoreEntry, Error)>,
    metrics: Arc<Metrics>,
    listener: Option<Listener>,
}

/// The opened stores of one plugins.toml. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
    /// The principal this view is bound to (see [`Storage::as_principal`]).
    principal: Option<Arc<crate::access::Principal>>,
    /// The tenant this view is bound to (see [`Storage::for_tenant`]).
    tenant: Option<crate::tenant::Scope>,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("config", &self.inner.config)
            .field("stores", &self.inner.stores.keys().collect::<Vec<_>>())
            .field("principal", &self.principal.as_ref().map(|p| &p.name))
            .field("tenant", &self.tenant.as_ref().map(|t| t.name()))
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

/// A store's handle as this view gives it: the principal's grant checked
/// first (a refused caller opens nothing, not even a tenant's relational
/// store), then the tenant's scope (`tenant_wrapped`: the store's records
/// seen through [`crate::tenant::Tenant`]; or a closure giving the
/// tenant's own store), then the principal's guard outermost.
macro_rules! scoped_handle {
    ($self:ident, $name:ident, $Cap:ident, $Handle:ident, tenant_wrapped) => {
        scoped_handle!(
            $self,
            $name,
            $Cap,
            $Handle,
            |s: &$Handle, t: &crate::tenant::Scope| {
                Ok::<_, Error>($Handle {
                    inner: Arc::new(crate::tenant::Tenant::<dyn $Cap>::new(
                        s.inner.clone(),
                        t.clone(),
                    )),
                    meta: s.meta.clone(),
                })
            }
        )
    };
    ($self:ident, $name:ident, $Cap:ident, $Handle:ident, $tenant:expr) => {{
        let AnyStore::$Cap(s) = $self.get(Capability::$Cap, $name)? else {
            unreachable!("stores are keyed by capability")
        };
        let guard = $self.guard(Capability::$Cap, $name)?;
        let s = match &$self.tenant {
            None => s.clone(),
            Some(t) => ($tenant)(s, t)?,
        };
        Ok(match guard {
            None => s,
            Some((level, p)) => $Handle {
                inner: Arc::new(crate::access::Guarded::<dyn $Cap>::new(
                    s.inner.clone(),
                    level,
                    p,
                    Capability::$Cap,
                    $name,
                )),
                meta: s.meta.clone(),
            },
        })
    }};
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
        scoped_handle!(
            self,
            name,
            Relational,
            RelationalStore,
            |_: &RelationalStore, t| { self.tenant_relational(name, t) }
        )
    }
    /// The vector store `name`.
    pub fn vector(&self, name: &str) -> Result<VectorStore> {
        scoped_handle!(self, name, Vector, VectorStore, tenant_wrapped)
    }
    /// The cache store `name`.
    pub fn cache(&self, name: &str) -> Result<CacheStore> {
        scoped_handle!(self, name, Cache, CacheStore, tenant_wrapped)
    }
    /// The graph store `name`.
    pub fn graph(&self, name: &str) -> Result<GraphStore> {
        scoped_handle!(self, name, Graph, GraphStore, tenant_wrapped)
    }

    /// A view of the same stores bound to the principal `name` of
    /// `[access]`, whose handles refuse what its grants do not allow
    /// (`PermissionDenied`, before anything reaches the backend). `token`
    /// must be the principal's.
    pub fn as_principal(&self, name: &str, token: &str) -> Result<Storage> {
        let Some(p) = self.inner.principals.get(name) else {
            return Err(Error::permission_denied(format!(
                "no principal '{name}' in plugins.toml's [access]: add [access.principals.{name}]"
            )));
        };
        if !p.accepts(token) {
            return Err(Error::permission_denied(format!(
                "the token given for principal '{name}' is not its token"
            )));
        }
        Ok(Storage {
            inner: self.inner.clone(),
            principal: Some(p.clone()),
            tenant: match p.tenant() {
                Some(t) => Some(crate::tenant::Scope::new(t)?),
                None => self.tenant.clone(),
            },
        })
    }

    /// A view of the same stores in which only the records of tenant
    /// `name` are seen and written (see the README, "Tenants"): a key
    /// namespace for caches, a reserved field and id prefix for vector and
    /// graph stores, a schema or file of its own for relational stores.
    /// A view bound to a principal of another tenant is refused.
    pub fn for_tenant(&self, name: &str) -> Result<Storage> {
        let scope = crate::tenant::Scope::new(name)?;
        if let (Some(p), Some(t)) = (&self.principal, &self.tenant) {
            if t.name() != name {
                return Err(Error::permission_denied(format!(
                    "principal '{}' is bound to tenant '{}', not '{name}'",
                    p.name,
                    t.name()
                )));
            }
        }
        Ok(Storage {
            inner: self.inner.clone(),
            principal: self.principal.clone(),
            tenant: Some(scope),
        })
    }

    /// The tenant this view is bound to, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_ref().map(|t| t.name())
    }

    /// The relational store `name` of a tenant: opened on first use from
    /// the section with the tenant's schema or file.
    fn tenant_relational(&self, name: &str, t: &crate::tenant::Scope) -> Result<RelationalStore> {
        let key = (name.to_string(), t.name().to_string());
        let mut open = self
            .inner
            .tenant_stores
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(s) = open.get(&key) {
            return Ok(s.clone());
        }
        let entry = self
            .inner
            .config
            .store(Capability::Relational, name)
            .expect("an open store has a section");
        if entry.mirror.is_some() {
            return Err(Error::unsupported(format!(
                "[relational.{name}] is a mirror: tenants of a mirror are not supported; give each tenant a store of its own"
            )));
        }
        let mut own = entry.clone();
        own.options = crate::tenant::relational_options(&entry.backend, &entry.options, t)?;
        let store = match open_store(
            &self.inner.registry,
            &self.inner.config,
            &own,
            &self.inner.metrics,
        )? {
            AnyStore::Relational(s) => s,
            _ => unreachable!("a relational section opens a relational store"),
        };
        open.insert(key, store.clone());
        Ok(store)
    }

    /// The principal this view is bound to, if any.
    pub fn principal(&self) -> Option<&str> {
        self.principal.as_ref().map(|p| p.name.as_str())
    }

    /// For a view bound to a principal: its level on the store, or the
    /// refusal when it has none.
    fn guard(
        &self,
        cap: Capability,
        name: &str,
    ) -> Result<Option<(crate::access::Level, Arc<crate::access::Principal>)>> {
        let Some(p) = &self.principal else {
            return Ok(None);
        };
        match p.level(cap, name) {
            Some(l) => Ok(Some((l, p.clone()))),
            None => Err(p.refuse(cap, name, None, crate::access::Level::Read, "")),
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

    /// The metrics of every store with the `metrics` layer, in the text
    /// format Prometheus scrapes (OpenMetrics), for an application that
    /// serves them on its own HTTP server.
    pub fn metrics(&self) -> String {
        self.inner.metrics.render()
    }

    /// Where `[metrics] listen` serves them, when it is set (the port
    /// actually bound, for port 0).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.inner.listener.as_ref().map(|l| l.addr())
    }

    /// The stores with encryption, as (capability, name).
    pub fn encrypted_stores(&self) -> Vec<(Capability, String)> {
        self.inner
            .stores
            .iter()
            .filter(|(_, s)| s.meta().rekey.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Rewrite every record of the encrypted store `cap`.`name` that is
    /// not under its current key (written before encryption was turned on,
    /// or under a key in `old_keys_*`), in place. It needs the store to
    /// itself: stop the application first (a value written while it runs
    /// may be overwritten with the one read a moment before). Run again
    /// after an interruption: it skips what is done. `progress` gets the
    /// records examined so far.
    pub fn rekey(
        &self,
        cap: Capability,
        name: &str,
        progress: &mut dyn FnMut(u64),
    ) -> Result<crate::crypt::RekeyReport> {
        let store = self.get(cap, name)?;
        if let Some(t) = &self.tenant {
            return Err(Error::permission_denied(format!(
                "rekey rewrites every tenant's records: run it from a view bound to no tenant, not tenant '{}'",
                t.name()
            )));
        }
        if let Some((level, p)) = self.guard(cap, name)? {
            if level < crate::access::Level::Admin {
                let need = crate::access::Level::Admin;
                return Err(p.refuse(cap, name, Some(level), need, "rekey"));
            }
        }
        match &store.meta().rekey {
            Some(r) => r.rekey(progress),
            None => Err(Error::config(format!(
                "[{cap}.{name}] is not encrypted: add [{cap}.{name}.encryption] with its key to plugins.toml first"
            ))),
        }
    }

    /// Stop every plugin's background work. Handles must not be used after.
    pub fn shutdown(&self) {
        self.inner.registry.shutdown();
    }
}

struct StoreMeta {
    name: String,
    backend: String,
    capability: Capability,
    descriptor: BackendDescriptor,
    /// The timeout layer's deadline, which the async API enforces itself.
    timeout: Option<std::time::Duration>,
    /// The encryption layer, when the store is encrypted.
    rekey: Option<Arc<dyn crate::crypt::Rekey>>,
    /// The store's own threads for the async API (`workers`), if set.
    runners: Option<crate::runners::Runners>,
}

/// The store's own worker threads, when its layers set `workers`.
fn runners(entry: &StoreEntry) -> Result<Option<crate::runners::Runners>> {
    entry
        .layers
        .workers
        .map(|n| crate::runners::Runners::start(&entry.name, n))
        .transpose()
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

/// Run a blocking call from async code: on the store's own threads if it
/// has them, else on tokio's blocking pool.
async fn on_thread<T: Send + 'static>(
    runners: Option<&crate::runners::Runners>,
    call: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match runners {
        Some(r) => r.run(call).await,
        None => tokio::task::spawn_blocking(call)
            .await
            .map_err(join_error)?,
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
            /// tokio's blocking pool, or on the store's own threads when
            /// its layers set `workers`. Must be called within a tokio
            /// runtime.
            ///
            /// Under the store's timeout layer the future ends at the
            /// deadline with an `Unavailable` error.
            pub async fn run<T: Send + 'static>(
                &self,
                f: impl FnOnce(&dyn $tr) -> Result<T> + Send + 'static,
            ) -> Result<T> {
                let inner = self.inner.clone();
                let runners = self.meta.runners.as_ref();
                let Some(t) = self.meta.timeout else {
                    return on_thread(runners, move || f(&*inner)).await;
                };
                let call = on_thread(runners, move || {
                    crate::ops::with_deadline_held(|| f(&*inner))
                });
                match crate::ops::deadline(t, call).await {
                    Some(r) => r,
                    None => Err(crate::ops::deadline_error(
                        self.meta.capability,
                        &self.meta.name,
                        "the call",
                        t,
                    )),
                }
            }
            /// Check the store answers.
            pub async fn health(&self) -> Result<Health> {
                self.run(|s| s.health()).await
            }
            /// The same store, whose blocking API runs every call through
            /// this handle's async API, awaited on `runtime` (a
            /// multi-thread runtime's handle; call the blocking API from
            /// outside it). The two APIs are generated from one method
            /// list but take different paths (the store's threads, the
            /// timeout's deadline, a backend's non-blocking calls): this
            /// holds code written against the blocking trait, such as the
            /// behaviour suites, to the async path. The returned handle's
            /// own async API runs its calls on tokio's blocking pool,
            /// without a deadline (this handle's apply inside).
            pub fn through_async(&self, runtime: tokio::runtime::Handle) -> Self {
                let m = &self.meta;
                $name {
                    inner: Arc::new(ThroughAsync {
                        handle: self.clone(),
                        runtime,
                    }),
                    meta: Arc::new(StoreMeta {
                        name: m.name.clone(),
                        backend: m.backend.clone(),
                        capability: m.capability,
                        descriptor: m.descriptor.clone(),
                        timeout: None,
                        rekey: m.rekey.clone(),
                        runners: None,
                    }),
                }
            }
        }
    };
}

/// A handle's blocking API served by its async API: see `through_async`.
struct ThroughAsync<H> {
    handle: H,
    runtime: tokio::runtime::Handle,
}

/// Implements a capability's trait on [`ThroughAsync`] from its method
/// list: each method copies its arguments into the async API's owned forms
/// and blocks on the async method.
macro_rules! through_async {
    (
        ($Store:ident)
        trait $Trait:ident;
        $(async $Async:ident . $as_async:ident;)?
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty $(=> $into:ty)? $(as $owned:ty)?),*) -> $r:ty;)*
    ) => {
        impl backplane_core::$Trait for ThroughAsync<$Store> {
            $(
                #[allow(clippy::too_many_arguments)]
                fn $m(&self, $($a: $t),*) -> Result<$r> {
                    self.runtime
                        .block_on(self.handle.$m($(<$t as Arg<'_>>::owned($a)),*))
                }
            )*
            fn health(&self) -> Result<Health> {
                self.runtime.block_on(self.handle.health())
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

/// Generates a handle's async methods from a capability's method list
/// (`backplane_core::*_methods!`): each moves its arguments to tokio's
/// blocking pool (or the store's `workers`) and runs the trait method
/// there; a `start` method is awaited without a thread when the store
/// serves it without blocking and has no `workers`.
macro_rules! async_api {
    (
        ($Store:ident)
        trait $Trait:ident;
        $(async $Async:ident . $as_async:ident;)?
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty $(=> $into:ty)? $(as $owned:ty)?),*) -> $r:ty;)*
    ) => {
        impl $Store {
            $(
                #[doc = concat!("See [`", stringify!($Trait), "::", stringify!($m), "`].")]
                #[allow(clippy::too_many_arguments)]
                pub async fn $m(
                    &self,
                    $($a: backplane_core::__boundary_async_ty!($t $(=> $into)? $(as $owned)?)),*
                ) -> Result<$r> {
                    $(let $a: <$t as Arg<'_>>::Owned = $a.into();)*
                    async_api!(@start $mode self $m($($a: $t),*) -> $r);
                    self.run(move |s| s.$m($(<$t as Arg<'_>>::lend(&$a)),*)).await
                }
            )*
        }
    };
    (@start start $self:ident $m:ident($($a:ident: $t:ty),*) -> $r:ty) => {
        // A store with `workers` runs every async call on them, as its
        // section asks; otherwise a call the store can start is started.
        if let Some(a) = $self.inner.as_async().filter(|_| $self.meta.runners.is_none()) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            a.$m(
                $(<$t as Arg<'_>>::lend(&$a),)*
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            return rx.await.unwrap_or_else(|_| Err(unanswered()));
        }
    };
    (@start fast_start $($rest:tt)*) => {
        async_api!(@start start $($rest)*);
    };
    (@start $mode:ident $($rest:tt)*) => {};
}

backplane_core::relational_methods!(async_api!(RelationalStore));
backplane_core::vector_methods!(async_api!(VectorStore));
backplane_core::cache_methods!(async_api!(CacheStore));
backplane_core::graph_methods!(async_api!(GraphStore));
backplane_core::relational_methods!(through_async!(RelationalStore));
backplane_core::vector_methods!(through_async!(VectorStore));
backplane_core::cache_methods!(through_async!(CacheStore));
backplane_core::graph_methods!(through_async!(GraphStore));

/// A started call whose callback was dropped without being called (which
/// the plugin boundary rules out; kept so a bug is an error, not a hang).
fn unanswered() -> Error {
    Error::backend("a started call ended without an answer: retry")
}
