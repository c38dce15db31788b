//! Plugin discovery and loading.
//!
//! Plugins come from two places: libraries found on disk (every shared
//! library in the search paths, plus files listed explicitly) and plugins
//! linked into the program (registered with `export_plugin!`). Every failure
//! is collected as one [`LoadFailure`] line; a broken library never stops
//! the others from loading.

use crate::config::Config;
use abi_stable::library::{lib_header_from_raw_library, LibraryError, RawLibrary};
use abi_stable::std_types::{RSlice, RStr};
use backplane_core::ffi::{self, FfiStore, LogFn, PluginModRef};
use backplane_core::{
    proto::encode, BackendDescriptor, Capability, Error, Plugin, PluginInfo, Result, StoreConfig,
};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a plugin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// Linked into this program.
    Static,
    /// Loaded from this file.
    Library(PathBuf),
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Static => f.write_str("(linked in)"),
            PluginSource::Library(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Clone)]
enum Opener {
    Static(Arc<dyn Plugin>),
    Library(PluginModRef),
}

/// A plugin that loaded.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// What it reported.
    pub info: PluginInfo,
    /// Where it came from.
    pub source: PluginSource,
    opener: Opener,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("info", &self.info)
            .field("source", &self.source)
            .finish()
    }
}

impl LoadedPlugin {
    /// Open a store on this plugin.
    pub(crate) fn open(&self, config: &StoreConfig) -> Result<FfiStore> {
        match &self.opener {
            Opener::Static(p) => Ok(ffi::open_store(&**p, config)?.into_ffi()),
            Opener::Library(m) => {
                let req = encode(config);
                ffi::decode_open((m.open())(RSlice::from_slice(&req)))
            }
        }
    }

    fn shutdown(&self) {
        match &self.opener {
            Opener::Static(p) => {
                let _ = ffi::catch("shutdown", || {
                    p.shutdown();
                    Ok(())
                });
            }
            Opener::Library(m) => (m.shutdown())(),
        }
    }
}

/// A library that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    /// The file, or the plugins.toml entry.
    pub path: PathBuf,
    /// One line: what is wrong and what to do.
    pub reason: String,
}

impl fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

/// A backend name and the plugin that provides it.
#[derive(Clone, Debug)]
pub struct BackendInfo {
    /// What the backend declares.
    pub descriptor: BackendDescriptor,
    /// The plugin's name.
    pub plugin: String,
    /// The plugin's version.
    pub version: String,
    /// Where the plugin came from.
    pub source: PluginSource,
    /// Same-named backends from later search paths, which this one shadows.
    pub shadows: Vec<PathBuf>,
    pub(crate) plugin_index: usize,
}

/// Everything discovery found.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    /// Plugins that loaded.
    pub plugins: Vec<LoadedPlugin>,
    /// Libraries that did not, one line each.
    pub failures: Vec<LoadFailure>,
    /// Backends by name.
    pub backends: BTreeMap<String, BackendInfo>,
}

/// The platform's shared-library extension.
pub const LIB_EXTENSION: &str = std::env::consts::DLL_EXTENSION;

extern "C" fn host_log(level: u8, target: RStr<'_>, message: RStr<'_>) {
    let level = match level {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        3 => log::Level::Info,
        4 => log::Level::Debug,
        _ => log::Level::Trace,
    };
    log::log!(target: "backplane::plugin", level, "[{}] {}", target.as_str(), message.as_str());
}

fn level_code() -> u8 {
    match log::max_level() {
        log::LevelFilter::Off => 0,
        log::LevelFilter::Error => 1,
        log::LevelFilter::Warn => 2,
        log::LevelFilter::Info => 3,
        log::LevelFilter::Debug => 4,
        log::LevelFilter::Trace => 5,
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect()
}

fn library_error(e: LibraryError) -> String {
    let core = backplane_core::CORE_VERSION;
    match e {
        LibraryError::OpenError { err, .. } => format!(
            "cannot be loaded as a shared library ({}): remove it from the plugin folder, or rebuild it for this platform",
            first_line(&err.to_string())
        ),
        LibraryError::GetSymbolError { .. } => {
            "not a Backplane plugin (it exports no Backplane root module): remove it from the plugin folder".into()
        }
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => format!(
            "built against backplane-core {actual_version}, host has {core}: rebuild the plugin against backplane-core {core}"
        ),
        LibraryError::AbiInstability(e) => format!(
            "its backplane-core types do not match the host's ({}): rebuild the plugin against backplane-core {core}",
            first_line(&e.to_string())
        ),
        LibraryError::RootModule { err, .. } => format!(
            "its root module failed to initialise ({}): fix or rebuild the plugin",
            first_line(&err.to_string())
        ),
        other => format!(
            "cannot be used as a Backplane plugin ({}): rebuild it against backplane-core {core}",
            first_line(&other.to_string())
        ),
    }
}

fn load_library(path: &Path) -> std::result::Result<(PluginModRef, PluginInfo), String> {
    let raw = RawLibrary::load_at(path).map_err(library_error)?;
    // SAFETY: abi_stable reads the library's header; its layout is checked
    // before the root module is used.
    let header = unsafe { lib_header_from_raw_library(&raw) }.map_err(library_error)?;
    let lib_version = header.version_strings();
    let module = header.init_root_module::<PluginModRef>().map_err(|e| {
        match e {
            // A core with another version string fails the version check
            // first; name both versions.
            LibraryError::IncompatibleVersionNumber { .. } => format!(
                "built against backplane-core {}, host has {}: rebuild the plugin against backplane-core {}",
                lib_version.version,
                backplane_core::CORE_VERSION,
                backplane_core::CORE_VERSION
            ),
            other => library_error(other),
        }
    })?;
    // Libraries are never unloaded: their code may still be referenced.
    std::mem::forget(raw);
    if module.abi_version() != backplane_core::ABI_VERSION {
        return Err(format!(
            "speaks Backplane wire format {}, host speaks {}: rebuild the plugin against backplane-core {}",
            module.abi_version(),
            backplane_core::ABI_VERSION,
            backplane_core::CORE_VERSION
        ));
    }
    (module.init())(LogFn { log: host_log }, level_code());
    let info = ffi::decode_info((module.info())()).map_err(|e| first_line(e.message()))?;
    Ok((module, info))
}

/// Shared libraries directly inside `dir`, sorted by name.
fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == LIB_EXTENSION))
        .collect();
    v.sort();
    v
}

impl Registry {
    /// Discover plugins: linked-in ones first, then the libraries in
    /// `extra_dirs` (searched before the config's own paths), the config's
    /// `search_paths`, and its explicit `load` list.
    pub fn discover(config: &Config, extra_dirs: &[PathBuf]) -> Registry {
        let mut reg = Registry::default();
        for r in backplane_core::registered_plugins() {
            match ffi::catch("construction", || Ok(r.make())) {
                Ok(p) => {
                    let p: Arc<dyn Plugin> = Arc::from(p);
                    let info = PluginInfo {
                        name: p.name().to_string(),
                        version: p.version().to_string(),
                        core_version: backplane_core::CORE_VERSION.to_string(),
                        backends: p.backends(),
                    };
                    reg.add(info, PluginSource::Static, Opener::Static(p), 0);
                }
                Err(e) => reg.failures.push(LoadFailure {
                    path: PathBuf::from("(linked in)"),
                    reason: first_line(e.message()),
                }),
            }
        }
        let mut seen = HashSet::new();
        let dirs: Vec<&PathBuf> = extra_dirs.iter().chain(&config.search_paths).collect();
        for (rank, dir) in dirs.iter().enumerate() {
            for lib in libraries_in(dir) {
                reg.try_load(&lib, rank + 1, &mut seen);
            }
        }
        for lib in &config.load {
            if !lib.exists() {
                reg.failures.push(LoadFailure {
                    path: lib.clone(),
                    reason: "file missing: fix the path in [plugins] load, or build the plugin"
                        .into(),
                });
                continue;
            }
            reg.try_load(lib, 0, &mut seen);
        }
        reg
    }

    fn try_load(&mut self, lib: &Path, rank: usize, seen: &mut HashSet<PathBuf>) {
        let canon = lib.canonicalize().unwrap_or_else(|_| lib.to_path_buf());
        if !seen.insert(canon) {
            return;
        }
        match load_library(lib) {
            Ok((m, info)) => self.add(
                info,
                PluginSource::Library(lib.to_path_buf()),
                Opener::Library(m),
                rank,
            ),
            Err(reason) => self.failures.push(LoadFailure {
                path: lib.to_path_buf(),
                reason,
            }),
        }
    }

    fn add(&mut self, info: PluginInfo, source: PluginSource, opener: Opener, rank: usize) {
        let index = self.plugins.len();
        let mut claimed = Vec::new();
        for d in &info.backends {
            if let Some(existing) = self.backends.get_mut(&d.name) {
                let same_dir = match (&existing.source, &source) {
                    (PluginSource::Library(a), PluginSource::Library(b)) => {
                        a.parent() == b.parent()
                    }
                    _ => false,
                };
                if same_dir || rank == 0 && !matches!(existing.source, PluginSource::Static) {
                    self.failures.push(LoadFailure {
                        path: match &source {
                            PluginSource::Library(p) => p.clone(),
                            PluginSource::Static => PathBuf::from("(linked in)"),
                        },
                        reason: format!(
                            "claims backend '{}', which {} already provides: remove one of the two",
                            d.name, existing.source
                        ),
                    });
                } else if let PluginSource::Library(p) = &source {
                    // A later search path: the earlier one wins.
                    existing.shadows.push(p.clone());
                }
                continue;
            }
            claimed.push(d.clone());
        }
        for d in claimed {
            self.backends.insert(
                d.name.clone(),
                BackendInfo {
                    descriptor: d,
                    plugin: info.name.clone(),
                    version: info.version.clone(),
                    source: source.clone(),
                    shadows: Vec::new(),
                    plugin_index: index,
                },
            );
        }
        self.plugins.push(LoadedPlugin {
            info,
            source,
            opener,
        });
    }

    /// The plugin that provides `backend`, checked to serve `cap`.
    pub(crate) fn provider(
        &self,
        backend: &str,
        cap: Capability,
    ) -> Result<(&BackendInfo, &LoadedPlugin)> {
        let b = self.backends.get(backend).ok_or_else(|| {
            let known: Vec<&str> = self.backends.keys().map(String::as_str).collect();
            Error::config(format!(
                "no plugin provides backend '{backend}' (available: {}): build or install its plugin and put it in a search path, or fix the name",
                if known.is_empty() { "none".into() } else { known.join(", ") }
            ))
        })?;
        if !b.descriptor.serves(cap) {
            let caps: Vec<&str> = b
                .descriptor
                .capabilities
                .iter()
                .map(|c| c.as_str())
                .collect();
            return Err(Error::config(format!(
                "backend '{backend}' does not serve the {cap} capability (it serves {}): pick another backend for this store",
                caps.join(", ")
            )));
        }
        Ok((b, &self.plugins[b.plugin_index]))
    }

    /// Stop every plugin's background work.
    pub fn shutdown(&self) {
        for p in &self.plugins {
            p.shutdown();
        }
    }
}
