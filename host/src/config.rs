//! `plugins.toml`: parsing, `${VAR}` interpolation, profiles, environment
//! overrides and path resolution.
//!
//! ```toml
//! [plugins]
//! search_paths = ["target/release", "~/.backplane/plugins"]
//!
//! [relational.user_data]
//! backend = "sqlite"
//! path = "data/users.db"
//!
//! [profile.container.cache.conversations]   # overlays [cache.conversations]
//! backend = "redis"                          # when BACKPLANE_PROFILE=container
//! ```
//!
//! Every key of a store section other than `backend`, `fallback`,
//! `layers` and `encryption` goes to the backend, which rejects keys it does not know. A
//! mirror's section holds `mirror`, `journal` and `layers` only.
//! `[layers]` (for every store) and `[metrics]` are the host's own.

use backplane_core::kit::redact::redact_options;
use backplane_core::{Capability, Error, Result, StoreConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The parsed configuration.
#[derive(Clone)]
pub struct Config {
    /// The file it was read from (None for a config built in code).
    pub file: Option<PathBuf>,
    /// Folder that relative paths resolve against.
    pub base_dir: PathBuf,
    /// Folders searched for plugin libraries, in order, already resolved.
    pub search_paths: Vec<PathBuf>,
    /// Plugin library files to load explicitly, already resolved.
    pub load: Vec<PathBuf>,
    /// `[plugins.pins]`: library file name → its SHA-256 (lowercase hex).
    /// When any is set, a library that is not pinned, or whose contents
    /// changed, is refused before it is loaded.
    pub pins: BTreeMap<String, String>,
    /// The profile that was applied, if any.
    pub profile: Option<String>,
    /// The stores, in file order within each capability.
    pub stores: Vec<StoreEntry>,
    /// `[metrics] listen`: where to serve the metrics, if anywhere.
    pub metrics_listen: Option<String>,
    /// `[access]`: principals and their grants.
    pub access: crate::access::AccessSpec,
}

/// Where a secret (an encryption key, a principal's token) is read from:
/// never plugins.toml itself.
#[derive(Clone, Debug, PartialEq)]
pub enum SecretSource {
    /// An environment variable holding it.
    Env(String),
    /// A file holding it (a mounted secret).
    File(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(v) => write!(f, "environment variable {v}"),
            SecretSource::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

impl SecretSource {
    /// The secret's bytes; `what` names it in errors, which never show it.
    pub fn read(&self, what: &str) -> Result<Vec<u8>> {
        match self {
            SecretSource::Env(v) => match std::env::var_os(v) {
                Some(s) if !s.is_empty() => Ok(s.into_encoded_bytes()),
                _ => Err(Error::config(format!(
                    "the environment variable {v} that should hold the {what} is not set: set it{}",
                    if what.contains("key") {
                        " to the key (64 hex digits; `backplane key` prints a new one)"
                    } else {
                        ""
                    }
                ))),
            },
            SecretSource::File(p) => std::fs::read(p).map_err(|e| {
                Error::config(format!("cannot read the {what} file {}: {e}", p.display()))
            }),
        }
    }
}

/// One store section.
#[derive(Clone)]
pub struct StoreEntry {
    /// Its capability.
    pub capability: Capability,
    /// Its name.
    pub name: String,
    /// The backend that serves it.
    pub backend: String,
    /// A backend to serve from while the primary is unavailable.
    pub fallback: Option<String>,
    /// For a mirror (`mirror = [...]`): its members and journal folder.
    pub mirror: Option<MirrorSpec>,
    /// Its operations layers (`[<capability>.<name>.layers]` over `[layers]`).
    pub layers: crate::ops::LayerSpec,
    /// Encryption at rest (`[<capability>.<name>.encryption]`).
    pub encryption: Option<crate::crypt::EncryptionSpec>,
    /// The remaining keys, for the backend.
    pub options: serde_json::Value,
    /// Line of the section header in the file, when known.
    pub line: Option<usize>,
    /// Line of each key of the section in the file, when known, so an
    /// error about a key points at it.
    pub key_lines: BTreeMap<String, usize>,
}

/// A mirror's settings: `mirror = ["primary", "secondary", …]` and
/// `journal = "folder"`.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorSpec {
    /// The member stores (sections of the same capability), primary first.
    pub members: Vec<String>,
    /// Where the journals of members that are down are kept.
    pub journal: PathBuf,
}

impl StoreEntry {
    /// The config handed to the plugin.
    pub fn store_config(&self, base_dir: &Path, backend: &str) -> StoreConfig {
        StoreConfig {
            store: self.name.clone(),
            backend: backend.to_string(),
            capability: self.capability,
            base_dir: base_dir.to_path_buf(),
            options: self.options.clone(),
        }
    }
}

impl fmt::Debug for StoreEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreEntry")
            .field("capability", &self.capability)
            .field("name", &self.name)
            .field("backend", &self.backend)
            .field("fallback", &self.fallback)
            .field("mirror", &self.mirror)
            .field("layers", &self.layers)
            .field("encryption", &self.encryption)
            .field("options", &redact_options(&self.options))
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("file", &self.file)
            .field("search_paths", &self.search_paths)
            .field("load", &self.load)
            .field("pins", &self.pins)
            .field("profile", &self.profile)
            .field("stores", &self.stores)
            .field("metrics_listen", &self.metrics_listen)
            .field("access", &self.access)
            .finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    #[serde(default)]
    pins: BTreeMap<String, String>,
    #[serde(default)]
    search_paths: Vec<String>,
    #[serde(default)]
    load: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    relational: BTreeMap<String, RawStore>,
    #[serde(default)]
    vector: BTreeMap<String, RawStore>,
    #[serde(default)]
    cache: BTreeMap<String, RawStore>,
    #[serde(default)]
    graph: BTreeMap<String, RawStore>,
    #[serde(default)]
    profile: BTreeMap<String, RawProfile>,
    /// Layers for every store.
    layers: Option<toml::Table>,
    metrics: Option<RawMetrics>,
    /// Principals and grants.
    access: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    #[serde(default)]
    relational: BTreeMap<String, toml::Table>,
    #[serde(default)]
    vector: BTreeMap<String, toml::Table>,
    #[serde(default)]
    cache: BTreeMap<String, toml::Table>,
    #[serde(default)]
    graph: BTreeMap<String, toml::Table>,
}

#[derive(Deserialize)]
struct RawStore {
    backend: Option<String>,
    fallback: Option<String>,
    #[serde(flatten)]
    options: toml::Table,
}

/// Env vars the host reads itself; never treated as store overrides.
const RESERVED_ENV: [&str; 4] = [
    "BACKPLANE_CONFIG",
    "BACKPLANE_PLUGIN_PATH",
    "BACKPLANE_PROFILE",
    "BACKPLANE_LOG",
];

impl Config {
    /// Read and parse a plugins.toml file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let what = if e.kind() == std::io::ErrorKind::NotFound {
                "does not exist: create it (see README, plugins.toml reference) or pass --config FILE / BACKPLANE_CONFIG".to_string()
            } else {
                format!("cannot be read: {e}")
            };
            Error::config(format!("{} {what}", path.display()))
        })?;
        let base = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."));
        let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::parse_with_env(&text, &path.display().to_string(), &base, &env).map(|c| Config {
            file: Some(path.to_path_buf()),
            ..c
        })
    }

    /// Parse config text. `origin` names it in errors; relative paths resolve
    /// against `base_dir`; `env` supplies `${VAR}`, the profile and overrides.
    pub fn parse_with_env(
        text: &str,
        origin: &str,
        base_dir: &Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Config> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(origin, text, &e))?;
        let line_of = |cap: Capability, name: &str| header_line(text, cap.as_str(), name);

        // Base sections, as ordered TOML tables.
        let mut sections: Vec<(Capability, String, toml::Table)> = Vec::new();
        for (cap, map) in [
            (Capability::Relational, raw.relational),
            (Capability::Vector, raw.vector),
            (Capability::Cache, raw.cache),
            (Capability::Graph, raw.graph),
        ] {
            for (name, store) in map {
                let mut t = store.options;
                if let Some(b) = store.backend {
                    t.insert("backend".into(), toml::Value::String(b));
                }
                if let Some(f) = store.fallback {
                    t.insert("fallback".into(), toml::Value::String(f));
                }
                sections.push((cap, name, t));
            }
        }

        // Profile overlay.
        let profile = match env.get("BACKPLANE_PROFILE").filter(|p| !p.is_empty()) {
            Some(p) => {
                if !raw.profile.contains_key(p) {
                    return Err(Error::config(format!(
                        "{origin}: BACKPLANE_PROFILE={p} but the file defines no [profile.{p}]; defined: {}",
                        list_or_none(raw.profile.keys())
                    )));
                }
                Some(p.clone())
            }
            None => {
                let detected = detect_profile(env);
                raw.profile
                    .contains_key(detected)
                    .then(|| detected.to_string())
            }
        };
        if let Some(p) = &profile {
            let prof = &raw.profile[p];
            for (cap, map) in [
                (Capability::Relational, &prof.relational),
                (Capability::Vector, &prof.vector),
                (Capability::Cache, &prof.cache),
                (Capability::Graph, &prof.graph),
            ] {
                for (name, overlay) in map {
                    match sections.iter_mut().find(|(c, n, _)| *c == cap && n == name) {
                        Some((_, _, t)) => {
                            // A backend switch replaces the section: the old
                            // backend's keys mean nothing to the new one.
                            if overlay.contains_key("backend") {
                                t.clear();
                            }
                            t.extend(overlay.clone());
                        }
                        None => sections.push((cap, name.clone(), overlay.clone())),
                    }
                }
            }
        }

        // Environment overrides: BACKPLANE_<CAP>_<STORE>_<KEY>=value. One
        // that names no store is a mistake, not something to ignore.
        for (k, v) in env {
            if !k.starts_with("BACKPLANE_") || RESERVED_ENV.contains(&k.as_str()) {
                continue;
            }
            let mut matched = false;
            for (cap, name, t) in sections.iter_mut() {
                let prefix = format!("BACKPLANE_{}_{}_", cap.as_str(), name).to_ascii_uppercase();
                if let Some(key) = k.strip_prefix(&prefix) {
                    if key.is_empty() {
                        continue;
                    }
                    matched = true;
                    let key = key.to_ascii_lowercase();
                    if key == "backend" {
                        let keep: Vec<_> = ["fallback", "layers", "encryption"]
                            .into_iter()
                            .filter_map(|k| t.get(k).map(|v| (k.to_string(), v.clone())))
                            .collect();
                        t.clear();
                        t.extend(keep);
                    }
                    t.insert(key, env_value(v));
                }
            }
            let cap = Capability::ALL.into_iter().find(|c| {
                k.starts_with(&format!("BACKPLANE_{}_", c.as_str().to_ascii_uppercase()))
            });
            if let (Some(cap), false) = (cap, matched) {
                let names: Vec<String> = sections
                    .iter()
                    .filter(|(c, _, _)| *c == cap)
                    .map(|(_, n, _)| n.clone())
                    .collect();
                return Err(Error::config(format!(
                    "{origin}: environment variable {k} names no {cap} store (the {cap} stores are: {}): write BACKPLANE_{}_<STORE>_<KEY>, or unset it",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") },
                    cap.as_str().to_ascii_uppercase()
                )));
            }
        }

        let default_layers = raw.layers.clone().unwrap_or_default();
        if let Some(defaults) = &raw.layers {
            // Checked once here, so a mistake is reported at [layers], not
            // at every store.
            for cap in Capability::ALL {
                let json = toml_to_json(&toml::Value::Table(defaults.clone()), env)
                    .map_err(|e| Error::config(format!("{origin}: [layers]: {e}")))?;
                crate::ops::LayerSpec::parse(cap, &json)
                    .map_err(|e| Error::config(format!("{origin}: [layers]: {e}")))?;
            }
        }
        let mut stores = Vec::new();
        for (cap, name, mut t) in sections {
            let where_ = format!(
                "{origin}{}: [{cap}.{name}]",
                line_of(cap, &name)
                    .map(|l| format!(":{l}"))
                    .unwrap_or_default()
            );
            if name.is_empty() {
                return Err(Error::config(format!("{where_}: a store needs a name")));
            }
            let mirror = match t.remove("mirror") {
                None => None,
                Some(toml::Value::Array(items)) => {
                    let members = items
                        .iter()
                        .map(|v| match v {
                            toml::Value::String(m) => interpolate(m, env)
                                .map_err(|e| Error::config(format!("{where_} mirror: {e}"))),
                            other => Err(Error::config(format!(
                                "{where_}: mirror lists store names, like mirror = [\"{name}_primary\", \"{name}_copy\"], not a {}",
                                other.type_str()
                            ))),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let journal = match t.remove("journal") {
                        None => base_dir
                            .join(".backplane")
                            .join("journal")
                            .join(format!("{cap}.{name}")),
                        Some(toml::Value::String(j)) => backplane_core::resolve_path(
                            base_dir,
                            &interpolate(&j, env)
                                .map_err(|e| Error::config(format!("{where_} journal: {e}")))?,
                        ),
                        Some(other) => {
                            return Err(Error::config(format!(
                                "{where_}: journal is a folder, like journal = \"data/journal\", not a {}",
                                other.type_str()
                            )))
                        }
                    };
                    if let Some(k) = t.keys().find(|k| *k != "layers" && *k != "backend") {
                        return Err(Error::config(format!(
                            "{where_}: a mirror takes mirror, journal and layers only, not '{k}': backend settings go in the members' own sections"
                        )));
                    }
                    Some(MirrorSpec { members, journal })
                }
                Some(other) => {
                    return Err(Error::config(format!(
                        "{where_}: mirror lists store names, like mirror = [\"{name}_primary\", \"{name}_copy\"], not a {}",
                        other.type_str()
                    )))
                }
            };
            let backend = match t.remove("backend") {
                Some(_) if mirror.is_some() => {
                    return Err(Error::config(format!(
                        "{where_}: a mirror has no backend of its own (its members have theirs): remove backend, or remove mirror"
                    )))
                }
                None if mirror.is_some() => "mirror".to_string(),
                Some(toml::Value::String(b)) => interpolate(&b, env)
                    .map_err(|e| Error::config(format!("{where_} backend: {e}")))?,
                Some(other) => {
                    return Err(Error::config(format!(
                        "{where_}: backend must be a string, got a {}", other.type_str()
                    )))
                }
                None => {
                    return Err(Error::config(format!(
                        "{where_} has no backend: add backend = \"sqlite\" (or another; `backplane plugins` lists them)"
                    )))
                }
            };
            let fallback = match t.remove("fallback") {
                Some(toml::Value::String(f)) => Some(
                    interpolate(&f, env)
                        .map_err(|e| Error::config(format!("{where_} fallback: {e}")))?,
                ),
                Some(other) => {
                    return Err(Error::config(format!(
                        "{where_}: fallback must be a backend name, got a {}",
                        other.type_str()
                    )))
                }
                None => None,
            };
            let layers = {
                let mut merged = default_layers.clone();
                match t.remove("layers") {
                    None => {}
                    Some(toml::Value::Table(own)) => merged.extend(own),
                    Some(other) => {
                        return Err(Error::config(format!(
                            "{where_}: layers must be a table, like [{cap}.{name}.layers] with metrics = true on the next line, not a {}",
                            other.type_str()
                        )))
                    }
                }
                let json = toml_to_json(&toml::Value::Table(merged), env)
                    .map_err(|e| Error::config(format!("{where_} layers: {e}")))?;
                crate::ops::LayerSpec::parse(cap, &json)
                    .map_err(|e| Error::config(format!("{where_} layers: {e}")))?
            };
            let encryption = match t.remove("encryption") {
                None => None,
                Some(_) if mirror.is_some() => {
                    return Err(Error::config(format!(
                        "{where_}: a mirror is encrypted by its members: put encryption in each member's section"
                    )))
                }
                Some(v @ toml::Value::Table(_)) => {
                    let json = toml_to_json(&v, env)
                        .map_err(|e| Error::config(format!("{where_} encryption: {e}")))?;
                    Some(
                        crate::crypt::EncryptionSpec::parse(cap, &json, base_dir)
                            .map_err(|e| Error::config(format!("{where_} encryption: {e}")))?,
                    )
                }
                Some(other) => {
                    return Err(Error::config(format!(
                        "{where_}: encryption must be a table, like [{cap}.{name}.encryption] with key_env = \"BACKPLANE_KEY\" on the next line, not a {}",
                        other.type_str()
                    )))
                }
            };
            let options = toml_to_json(&toml::Value::Table(t), env)
                .map_err(|e| Error::config(format!("{where_}: {e}")))?;
            let line = line_of(cap, &name);
            stores.push(StoreEntry {
                capability: cap,
                key_lines: line.map(|l| key_lines(text, l)).unwrap_or_default(),
                line,
                name,
                backend,
                fallback,
                mirror,
                layers,
                encryption,
                options,
            });
        }

        check_mirrors(&stores, origin)?;

        let resolve_list = |list: &[String], what: &str| -> Result<Vec<PathBuf>> {
            list.iter()
                .map(|p| {
                    interpolate(p, env)
                        .map(|p| backplane_core::resolve_path(base_dir, &p))
                        .map_err(|e| Error::config(format!("{origin}: [plugins] {what}: {e}")))
                })
                .collect()
        };
        let access = match &raw.access {
            None => crate::access::AccessSpec::default(),
            Some(t) => {
                let json = toml_to_json(&toml::Value::Table(t.clone()), env)
                    .map_err(|e| Error::config(format!("{origin}: [access]: {e}")))?;
                let names: Vec<(Capability, String)> = stores
                    .iter()
                    .map(|s| (s.capability, s.name.clone()))
                    .collect();
                crate::access::AccessSpec::parse(&json, base_dir, &names)
                    .map_err(|e| Error::config(format!("{origin}: [access] {e}")))?
            }
        };
        Ok(Config {
            access,
            file: None,
            base_dir: base_dir.to_path_buf(),
            search_paths: resolve_list(&raw.plugins.search_paths, "search_paths")?,
            load: resolve_list(&raw.plugins.load, "load")?,
            pins: raw
                .plugins
                .pins
                .iter()
                .map(|(file, pin)| {
                    let hex = pin.trim().strip_prefix("sha256:").unwrap_or(pin.trim());
                    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        Ok((file.clone(), hex.to_ascii_lowercase()))
                    } else {
                        Err(Error::config(format!(
                            "{origin}: [plugins.pins] \"{file}\" = \"{pin}\": write sha256: and the 64 hex digits of the library's SHA-256, as `backplane plugins --pin` prints them"
                        )))
                    }
                })
                .collect::<Result<_>>()?,
            profile,
            stores,
            metrics_listen: match raw.metrics.and_then(|m| m.listen) {
                Some(l) => Some(
                    interpolate(&l, env)
                        .map_err(|e| Error::config(format!("{origin}: [metrics] listen: {e}")))?,
                ),
                None => None,
            },
        })
    }

    /// The store `name` of capability `cap`.
    pub fn store(&self, cap: Capability, name: &str) -> Option<&StoreEntry> {
        self.stores
            .iter()
            .find(|s| s.capability == cap && s.name == name)
    }
}

/// Every mirror names at least two distinct stores of its own capability,
/// none of them a mirror or itself.
fn check_mirrors(stores: &[StoreEntry], origin: &str) -> Result<()> {
    for s in stores {
        let Some(m) = &s.mirror else { continue };
        let where_ = format!(
            "{origin}{}: [{}.{}]",
            s.line.map(|l| format!(":{l}")).unwrap_or_default(),
            s.capability,
            s.name
        );
        if m.members.len() < 2 {
            return Err(Error::config(format!(
                "{where_}: a mirror needs two members or more (the primary first), it lists {}",
                m.members.len()
            )));
        }
        for (i, member) in m.members.iter().enumerate() {
            if m.members[..i].contains(member) {
                return Err(Error::config(format!(
                    "{where_}: mirror lists '{member}' twice: list each member once"
                )));
            }
            if *member == s.name {
                return Err(Error::config(format!(
                    "{where_}: a mirror cannot be its own member: list the sections that hold the data"
                )));
            }
            match stores
                .iter()
                .find(|o| o.capability == s.capability && o.name == *member)
            {
                Some(o) if o.mirror.is_some() => {
                    return Err(Error::config(format!(
                        "{where_}: member '{member}' is itself a mirror: list its members instead"
                    )))
                }
                Some(_) => {}
                None => {
                    let elsewhere: Vec<String> = stores
                        .iter()
                        .filter(|o| o.name == *member)
                        .map(|o| format!("[{}.{}]", o.capability, o.name))
                        .collect();
                    let same: Vec<&str> = stores
                        .iter()
                        .filter(|o| {
                            o.capability == s.capability && o.mirror.is_none() && o.name != s.name
                        })
                        .map(|o| o.name.as_str())
                        .collect();
                    return Err(Error::config(if elsewhere.is_empty() {
                        format!(
                            "{where_}: mirror member '{member}' is not configured: add a [{}.{member}] section, or list one of: {}",
                            s.capability,
                            if same.is_empty() { "none yet".to_string() } else { same.join(", ") }
                        )
                    } else {
                        format!(
                            "{where_}: mirror member '{member}' is {}, not a {} store: a mirror's members all have its capability",
                            elsewhere.join(", "),
                            s.capability
                        )
                    }));
                }
            }
        }
    }
    Ok(())
}

fn list_or_none<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The profile detected from the environment: `cluster` under Kubernetes,
/// `container` in a container, otherwise `desktop`.
pub fn detect_profile(env: &BTreeMap<String, String>) -> &'static str {
    if env.contains_key("KUBERNETES_SERVICE_HOST") {
        "cluster"
    } else if Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists() {
        "container"
    } else {
        "desktop"
    }
}

fn env_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = v.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(v.to_string())
    }
}

fn header_line(text: &str, cap: &str, name: &str) -> Option<usize> {
    let want = [format!("[{cap}.{name}]"), format!("[{cap}.\"{name}\"]")];
    text.lines()
        .position(|l| {
            let l: String = l
                .split('#')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            want.contains(&l)
        })
        .map(|i| i + 1)
}

/// The line of each `key = ...` of the section whose header is on line
/// `header` (1-based), up to the next header.
fn key_lines(text: &str, header: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (i, l) in text.lines().enumerate().skip(header) {
        let l = l.trim();
        if l.starts_with('[') {
            break;
        }
        if let Some((k, _)) = l.split_once('=') {
            let k = k.trim().trim_matches('"');
            if !k.is_empty() && !k.starts_with('#') {
                out.entry(k.to_string()).or_insert(i + 1);
            }
        }
    }
    out
}

fn toml_error(origin: &str, text: &str, e: &toml::de::Error) -> Error {
    let msg = backplane_core::kit::text::plain_serde(e.message().trim());
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            Error::config(format!("{origin}:{line}:{col}: {msg}"))
        }
        None => Error::config(format!("{origin}: {msg}")),
    }
}

/// Replace `${VAR}` and `${VAR:-default}` in `s`. `$$` is a literal `$`.
pub fn interpolate(s: &str, env: &BTreeMap<String, String>) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| {
                format!("'{s}' has an unclosed ${{: write ${{VAR}} or ${{VAR:-default}}")
            })?;
            let inner = &body[..end];
            let (name, default) = match inner.find(":-") {
                Some(j) => (&inner[..j], Some(&inner[j + 2..])),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("'${{{inner}}}' is not a valid variable reference"));
            }
            match (env.get(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                    "environment variable {name} is not set: set it, or write ${{{name}:-default}}"
                ))
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn toml_to_json(
    v: &toml::Value,
    env: &BTreeMap<String, String>,
) -> std::result::Result<serde_json::Value, String> {
    Ok(match v {
        toml::Value::String(s) => serde_json::Value::String(interpolate(s, env)?),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Value::from(*f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(
            a.iter()
                .map(|x| toml_to_json(x, env))
                .collect::<std::result::Result<_, _>>()?,
        ),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, x)| Ok((k.clone(), toml_to_json(x, env)?)))
                .collect::<std::result::Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn interpolation() {
        let e = env(&[("A", "x")]);
        assert_eq!(interpolate("${A}/${B:-d}$$", &e).unwrap(), "x/d$");
        assert!(interpolate("${B}", &e)
            .unwrap_err()
            .contains("B is not set"));
        assert!(interpolate("${A", &e).is_err());
    }

    #[test]
    fn errors_have_line_and_column() {
        let text =
            "[plugins]\nsearch_paths = []\n\n[relational.a]\nbackend = \"sqlite\"\npath = \n";
        let e = Config::parse_with_env(text, "p.toml", Path::new("/b"), &env(&[])).unwrap_err();
        assert!(e.message().starts_with("p.toml:6:"), "{e}");
        let text = "[plugins]\nsearch_path = []\n";
        let e = Config::parse_with_env(text, "p.toml", Path::new("/b"), &env(&[])).unwrap_err();
        assert!(e.message().starts_with("p.toml:2:1"), "{e}");
        assert!(e.message().contains("search_path"), "{e}");
        let text = "[cache.c]\nurl = \"x\"\n";
        let e = Config::parse_with_env(text, "p.toml", Path::new("/b"), &env(&[])).unwrap_err();
        assert!(
            e.message().contains("p.toml:1: [cache.c] has no backend"),
            "{e}"
        );
    }

    #[test]
    fn profiles_and_overrides() {
        let text = r#"
[plugins]
search_paths = ["lib", "/abs"]
[cache.conv]
backend = "memory"
max_messages = 10
[profile.staging.cache.conv]
backend = "redis"
url = "${REDIS_URL:-redis://127.0.0.1:6379}"
"#;
        let c = Config::parse_with_env(text, "p", Path::new("/b"), &env(&[])).unwrap();
        assert_eq!(
            c.search_paths,
            vec![PathBuf::from("/b/lib"), PathBuf::from("/abs")]
        );
        let s = c.store(Capability::Cache, "conv").unwrap();
        assert_eq!(s.backend, "memory");
        assert_eq!(s.options["max_messages"], 10);

        let c = Config::parse_with_env(
            text,
            "p",
            Path::new("/b"),
            &env(&[("BACKPLANE_PROFILE", "staging")]),
        )
        .unwrap();
        let s = c.store(Capability::Cache, "conv").unwrap();
        assert_eq!(s.backend, "redis");
        assert_eq!(s.options["url"], "redis://127.0.0.1:6379");
        assert!(s.options.get("max_messages").is_none());

        let c = Config::parse_with_env(
            text,
            "p",
            Path::new("/b"),
            &env(&[("BACKPLANE_CACHE_CONV_MAX_MESSAGES", "5")]),
        )
        .unwrap();
        assert_eq!(
            c.store(Capability::Cache, "conv").unwrap().options["max_messages"],
            5
        );

        let e = Config::parse_with_env(
            text,
            "p",
            Path::new("/b"),
            &env(&[("BACKPLANE_PROFILE", "nope")]),
        )
        .unwrap_err();
        assert!(e.message().contains("[profile.nope]"), "{e}");
    }

    #[test]
    fn debug_hides_secrets() {
        let text = "[cache.c]\nbackend = \"redis\"\nurl = \"redis://u:hunter2@h:1\"\npassword = \"hunter2\"\n";
        let c = Config::parse_with_env(text, "p", Path::new("/b"), &env(&[])).unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2"), "{d}");
        let text = "[cache.c]\nbackend = \"redis\"\nnodes = [\"redis://:p@ss@a:7000\"]\n";
        let c = Config::parse_with_env(text, "p", Path::new("/b"), &env(&[])).unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("p@ss") && !d.contains("ss@a"), "{d}");
        assert!(d.contains("redis://:***@a:7000"), "{d}");
    }
}
