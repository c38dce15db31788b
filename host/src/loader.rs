//! Plugin discovery and loading.
//!
//! Plugins come from two places: libraries found on disk (every shared
//! library in the search paths, plus files listed explicitly) and plugins
//! linked into the program (registered with `export_plugin!`). Every failure
//! is collected as one [`LoadFailure`] line; a broken library never stops
//! the others from loading.

use crate::config::Config;
use backplane_core::library::{Library, OpenedStore};
use backplane_core::{BackendDescriptor, Capability, Error, PluginInfo, Result, StoreConfig};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

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
    /// The backplane-core version the plugin was built against.
    pub core_version: String,
    /// Where the plugin came from.
    pub source: PluginSource,
    /// Same-named backends from later search paths, which this one shadows.
    pub shadows: Vec<PathBuf>,
    plugin_index: usize,
}

/// Everything plugin discovery found: the backends by name, and every
/// library that failed to load.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    plugins: Vec<Library>,
    /// `[plugins.pins]`: when not empty, every library must match its pin.
    pins: BTreeMap<String, String>,
    /// Search folders that do not exist, for the message when a backend is
    /// not found.
    missing_dirs: Vec<PathBuf>,
    /// Libraries that did not load, one line each.
    pub failures: Vec<LoadFailure>,
    /// Backends by name.
    pub backends: BTreeMap<String, BackendInfo>,
}

/// The platform's shared-library extension.
pub const LIB_EXTENSION: &str = std::env::consts::DLL_EXTENSION;

/// Whether `path` can be loaded as a library file: `Err` is the one line
/// that says why not (a symbolic link that loops or leads nowhere, a
/// folder, something unreadable).
fn usable(path: &Path) -> std::result::Result<(), String> {
    let link = std::fs::symlink_metadata(path);
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => std::fs::File::open(path).map(drop).map_err(|e| {
            format!("cannot be read ({e}): make it readable by the user running the host")
        }),
        Ok(m) if m.is_dir() => Err(
            "is a folder, not a library: plugin folders hold library files; remove or rename it"
                .into(),
        ),
        Ok(_) => Err("is not a regular file (a device, pipe or socket): remove it".into()),
        Err(e) if e.raw_os_error() == Some(40) || e.to_string().contains("symbolic links") => Err(
            "is a symbolic link that loops back on itself: point it at the library file, or remove it"
                .into(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && link.is_ok() => Err(format!(
            "is a symbolic link to {}, which does not exist: point it at the library file, or remove it",
            std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "nothing".into())
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("file missing: fix the path in [plugins] load, or build the plugin".into())
        }
        Err(e) => Err(format!(
            "cannot be read ({e}): make it readable by the user running the host"
        )),
    }
}

/// Shared libraries directly inside `dir`, sorted by name, and the entries
/// named like one that cannot be loaded, each with why. A folder that
/// cannot be listed is one failure; one that does not exist is none
/// (`backplane plugins` shows it as missing).
fn libraries_in(dir: &Path) -> (Vec<PathBuf>, Vec<LoadFailure>) {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Vec::new(), Vec::new()),
        Err(e) => {
            return (
                Vec::new(),
                vec![LoadFailure {
                    path: dir.to_path_buf(),
                    reason: format!(
                        "the plugin folder cannot be listed ({e}): make it readable by the user running the host"
                    ),
                }],
            )
        }
    };
    let mut named: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == LIB_EXTENSION))
        .collect();
    named.sort();
    let mut libs = Vec::new();
    let mut failures = Vec::new();
    for p in named {
        match usable(&p) {
            Ok(()) => libs.push(p),
            Err(reason) => failures.push(LoadFailure { path: p, reason }),
        }
    }
    (libs, failures)
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(path)?;
    std::io::copy(&mut f, &mut h)?;
    Ok(format!("{:x}", h.finalize()))
}

/// The library files discovery would consider, in its order (the extra
/// folders, the config's search paths, its `load` list): what `backplane
/// plugins --pin` pins.
pub fn library_files(config: &Config, extra_dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = extra_dirs
        .iter()
        .chain(&config.search_paths)
        .flat_map(|d| libraries_in(d).0)
        .collect();
    files.extend(config.load.iter().filter(|l| usable(l).is_ok()).cloned());
    files
}

impl Registry {
    /// Discover plugins: linked-in ones first, then the libraries in
    /// `extra_dirs` (searched before the config's own paths), the config's
    /// `search_paths`, and its explicit `load` list.
    pub fn discover(config: &Config, extra_dirs: &[PathBuf]) -> Registry {
        let mut reg = Registry {
            pins: config.pins.clone(),
            ..Registry::default()
        };
        for r in Library::linked() {
            match r {
                Ok(library) => reg.add(PluginSource::Static, library, 0),
                Err(e) => reg.failures.push(LoadFailure {
                    path: PathBuf::from("(linked in)"),
                    reason: e.to_string(),
                }),
            }
        }
        let mut seen = HashSet::new();
        let dirs: Vec<&PathBuf> = extra_dirs.iter().chain(&config.search_paths).collect();
        for (rank, dir) in dirs.iter().enumerate() {
            if !dir.exists() {
                reg.missing_dirs.push(dir.to_path_buf());
            }
            let (libs, failures) = libraries_in(dir);
            reg.failures.extend(failures);
            for lib in libs {
                reg.try_load(&lib, rank + 1, &mut seen);
            }
        }
        for lib in &config.load {
            if let Err(reason) = usable(lib) {
                reg.failures.push(LoadFailure {
                    path: lib.clone(),
                    reason,
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
        // Checked before loading: loading a library runs its code.
        if let Err(reason) = self.check_pin(lib) {
            self.failures.push(LoadFailure {
                path: lib.to_path_buf(),
                reason,
            });
            return;
        }
        match Library::load(lib) {
            Ok(library) => self.add(PluginSource::Library(lib.to_path_buf()), library, rank),
            Err(e) => self.failures.push(LoadFailure {
                path: lib.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    }

    /// With pins set: the library's SHA-256 matches its file name's pin.
    fn check_pin(&self, lib: &Path) -> std::result::Result<(), String> {
        if self.pins.is_empty() {
            return Ok(());
        }
        let name = lib
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let found = sha256_file(lib)
            .map_err(|e| format!("cannot be read to check its pin ({e}): make it readable"))?;
        match self.pins.get(&name) {
            None => Err(format!(
                "is not pinned (sha256 {found}), and [plugins.pins] is set, so only pinned libraries load: add \"{name}\" = \"sha256:{found}\" if you trust it, or remove the file"
            )),
            Some(pin) if *pin != found => Err(format!(
                "has changed since it was pinned: its sha256 is {found}, the pin says {pin}: if the new build is trusted, pin it again (backplane plugins --pin), else restore the pinned file"
            )),
            Some(_) => Ok(()),
        }
    }

    fn add(&mut self, source: PluginSource, library: Library, rank: usize) {
        let info: &PluginInfo = library.info();
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
                    core_version: info.core_version.clone(),
                    source: source.clone(),
                    shadows: Vec::new(),
                    plugin_index: index,
                },
            );
        }
        self.plugins.push(library);
    }

    /// The backend `backend`, checked to serve `cap`, and the library that
    /// provides it.
    fn provider(&self, backend: &str, cap: Capability) -> Result<(&BackendInfo, &Library)> {
        let b = self.backends.get(backend).ok_or_else(|| {
            let known: Vec<&str> = self.backends.keys().map(String::as_str).collect();
            if let (true, Some(dir)) = (known.is_empty(), self.missing_dirs.first()) {
                return Error::config(format!(
                    "no plugin provides backend '{backend}': the plugin folder {} does not exist and no other holds a plugin: build the plugins (cargo build --release) or fix [plugins] search_paths",
                    dir.display()
                ));
            }
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

    /// Open `config`'s store on the backend it names; also returns what
    /// the backend declares.
    pub(crate) fn open(&self, config: &StoreConfig) -> Result<(&BackendInfo, OpenedStore)> {
        let (info, library) = self.provider(&config.backend, config.capability)?;
        Ok((info, library.open(config)?))
    }

    /// Stop every plugin's background work.
    pub fn shutdown(&self) {
        for p in &self.plugins {
            p.shutdown();
        }
    }
}
