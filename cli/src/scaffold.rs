//! `backplane new-plugin`: write a plugin crate that compiles, loads and,
//! for the cache capability, passes `backplane conformance` as written.
//!
//! The cache is the custom example's (`examples/custom_plugin`), taken
//! from its source at build time with its names changed, so the scaffold
//! and the example never drift apart. The other capabilities start as
//! stubs whose every method answers `Unsupported` ("not written yet"), so
//! the crate compiles and conformance lists what is left to write.

use anyhow::{bail, Context, Result};
use backplane_host::Capability;
use clap::Args;
use std::path::{Path, PathBuf};

const EXAMPLE_CACHE: &str = include_str!("../../examples/custom_plugin/src/backend.rs");
const EXAMPLE_CONFIG: &str = include_str!("../../examples/custom_plugin/src/config.rs");

/// Arguments of `backplane new-plugin`.
#[derive(Args, Debug)]
pub struct NewPluginArgs {
    /// The backend's name (lowercase letters, digits and '-'); the crate is
    /// backplane-plugin-NAME, in a folder of that name
    pub name: String,
    /// The capabilities it serves, comma-separated: cache, vector, relational, graph
    #[arg(long, value_delimiter = ',', default_value = "cache", value_parser = capability)]
    pub capabilities: Vec<Capability>,
    /// Write the crate's folder inside DIR
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Depend on the backplane-core source in DIR instead of the one this
    /// command was built from (or, when that is gone, the registry's)
    #[arg(long, value_name = "DIR")]
    pub core: Option<PathBuf>,
}

fn capability(s: &str) -> std::result::Result<Capability, String> {
    Capability::parse(s.trim()).ok_or_else(|| {
        format!("'{s}' is not a capability: write cache, vector, relational or graph")
    })
}

/// Write the crate; returns its folder.
pub fn new_plugin(args: NewPluginArgs) -> Result<bool> {
    let name = args.name.trim().to_string();
    if name.is_empty()
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.ends_with('-')
    {
        bail!("'{name}' cannot name a backend: use lowercase letters, digits and '-', starting with a letter (e.g. my-kv)");
    }
    let mut caps = args.capabilities.clone();
    caps.sort();
    caps.dedup();
    let krate = format!("backplane-plugin-{name}");
    let folder = args.dir.join(&krate);
    if folder.exists() {
        bail!(
            "{} already exists: choose another name or --dir, or remove it",
            folder.display()
        );
    }
    let core = core_dependency(args.core.as_deref())?;
    let files = render(&name, &krate, &caps, &core);
    for (path, text) in &files {
        let p = folder.join(path);
        std::fs::create_dir_all(p.parent().expect("a file in a folder"))
            .with_context(|| format!("cannot create {}", p.display()))?;
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    // Laid out as `cargo fmt` would; without rustfmt the files are fine
    // as they are.
    let sources: Vec<PathBuf> = files
        .iter()
        .filter(|(p, _)| p.ends_with(".rs"))
        .map(|(p, _)| folder.join(p))
        .collect();
    let _ = std::process::Command::new("rustfmt")
        .args(["--edition", "2021"])
        .args(&sources)
        .stderr(std::process::Stdio::null())
        .status();
    let lib = format!(
        "target/release/{}{}.{}",
        std::env::consts::DLL_PREFIX,
        krate.replace('-', "_"),
        std::env::consts::DLL_EXTENSION
    );
    println!("wrote {} ({} files):", folder.display(), files.len());
    for (path, _) in &files {
        println!("  {path}");
    }
    let stubs: Vec<&str> = caps
        .iter()
        .filter(|c| **c != Capability::Cache)
        .map(|c| c.as_str())
        .collect();
    if !stubs.is_empty() {
        println!(
            "{} start as stubs answering Unsupported: conformance fails their cases until you write them",
            stubs.join(", ")
        );
    }
    println!("next:");
    println!("  cd {}", folder.display());
    println!("  cargo build --release");
    println!("  backplane conformance {lib}");
    Ok(true)
}

/// The `backplane-core = …` dependency line.
fn core_dependency(given: Option<&Path>) -> Result<String> {
    let path = match given {
        Some(p) => Some(p.to_path_buf()),
        None => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core");
            Some(built_from).filter(|p| p.join("Cargo.toml").is_file())
        }
    };
    match path {
        Some(p) => {
            let p = p
                .canonicalize()
                .with_context(|| format!("--core {}: no such folder", p.display()))?;
            if !p.join("Cargo.toml").is_file() {
                bail!(
                    "--core {}: no Cargo.toml there: give the folder of backplane-core's source (core/ in a Backplane checkout)",
                    p.display()
                );
            }
            Ok(format!(
                "backplane-core = {{ path = {} }}",
                toml_string(&p.display().to_string())
            ))
        }
        None => Ok(format!(
            "backplane-core = \"{}\"",
            backplane_host::CORE_VERSION
        )),
    }
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

fn camel(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The crate's files, by path.
fn render(name: &str, krate: &str, caps: &[Capability], core: &str) -> Vec<(String, String)> {
    let camel = camel(name);
    let has = |c: Capability| caps.contains(&c);
    let rename = |text: &str| {
        text.replace("CustomKv", &format!("{camel}Cache"))
            .replace("CustomConfig", &format!("{camel}Config"))
            .replace("custom-kv", name)
    };
    let mut files = vec![
        ("Cargo.toml".to_string(), cargo_toml(krate, core, caps)),
        ("README.md".to_string(), readme(name, krate, caps)),
        ("conformance.toml".to_string(), conformance_toml(name)),
        ("src/lib.rs".to_string(), lib_rs(name, &camel, caps)),
        ("src/config.rs".to_string(), rename(EXAMPLE_CONFIG)),
        (
            ".gitignore".to_string(),
            "/target\nCargo.lock\n".to_string(),
        ),
    ];
    if has(Capability::Cache) {
        files.push(("src/cache.rs".into(), rename(EXAMPLE_CACHE)));
    }
    for cap in caps.iter().filter(|c| **c != Capability::Cache) {
        files.push((format!("src/{cap}.rs"), stub(*cap, &camel)));
    }
    files
}

fn cargo_toml(krate: &str, core: &str, caps: &[Capability]) -> String {
    let json = if caps.contains(&Capability::Graph) {
        "# Node and edge properties are JSON values.\nserde_json = \"1\"\n"
    } else {
        ""
    };
    format!(
        r#"[package]
name = "{krate}"
version = "0.1.0"
edition = "2021"
# Backplane builds with Rust 1.85 and later; cargo picks dependency
# versions that build with this one.
rust-version = "1.85"
publish = false

[lib]
# cdylib: the library the host loads from a plugin folder; rlib: an
# application may link the plugin statically instead.
crate-type = ["cdylib", "rlib"]

[dependencies]
# The plugin contract: the capability traits and types, the export macro.
{core}
# The store section's keys, parsed with #[derive(Deserialize)].
serde = {{ version = "1", features = ["derive"] }}
{json}
# A workspace of its own, wherever its folder sits.
[workspace]
resolver = "3"
"#
    )
}

fn conformance_toml(name: &str) -> String {
    format!(
        r#"# `backplane conformance target/release/<library> --config conformance.toml`
# says how to make a fresh store of each capability for the behaviour
# cases. The keys are the store section's keys (see README.md);
# "{{scratch}}" is each case's own empty folder and "{{ns}}" a name no
# other case uses; ${{VAR}} and ${{VAR:-default}} read the environment.
[conformance]
backend = "{name}"
case_timeout = "60s"

[store]
greeting = "conformance"
# A server-backed store would say where, and keep each case apart:
# url = "${{MY_SERVER_URL:-http://127.0.0.1:9000}}"
# prefix = "test-{{ns}}-"
"#
    )
}

fn lib_rs(name: &str, camel: &str, caps: &[Capability]) -> String {
    let mut mods = vec!["mod config;".to_string()];
    let mut uses = vec!["Capability", "Plugin", "Result", "StoreConfig"];
    let mut opens = String::new();
    for cap in caps {
        let c = cap.as_str();
        mods.push(format!("mod {c};"));
        let trait_name = camel_cap(*cap);
        uses.push(trait_name);
        let make = if *cap == Capability::Cache {
            format!(
                "        let (cfg, limits) = {camel}Config::from_store(config)?;\n        Ok(Box::new(cache::{camel}Cache::new(cfg.greeting, limits, cfg.max_value_bytes)))\n"
            )
        } else {
            format!(
                "        {camel}Config::from_store(config)?;\n        Ok(Box::new({c}::{camel}{trait_name}))\n"
            )
        };
        opens.push_str(&format!(
            "\n    fn open_{c}(&self, config: &StoreConfig) -> Result<Box<dyn {trait_name}>> {{\n{make}    }}\n"
        ));
    }
    uses.push("BackendDescriptor");
    uses.sort();
    let cap_list: Vec<String> = caps
        .iter()
        .map(|c| format!("Capability::{}", camel_cap(*c)))
        .collect();
    let native_ttl = if caps.contains(&Capability::Cache) {
        "        // Keys and channels expire in this plugin (src/cache.rs), not in the host.\n        d.native_ttl = true;\n"
    } else {
        ""
    };
    let mut_ = if native_ttl.is_empty() { "" } else { "mut " };
    format!(
        r#"#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

{mods}

pub use config::{camel}Config;

use backplane_core::{{{uses}}};

/// The plugin: one backend, `{name}`.
#[derive(Debug, Default)]
pub struct {camel}Plugin;

impl Plugin for {camel}Plugin {{
    fn name(&self) -> &str {{
        "{name}"
    }}

    fn version(&self) -> &str {{
        env!("CARGO_PKG_VERSION")
    }}

    fn backends(&self) -> Vec<BackendDescriptor> {{
        let {mut_}d = BackendDescriptor::new("{name}", &[{caps}])
            .describe("{name}: a Backplane backend");
{native_ttl}        vec![d]
    }}
{opens}}}

// Exactly one per library: the host finds the plugin through it.
backplane_core::export_plugin!({camel}Plugin);
"#,
        mods = mods.join("\n"),
        uses = uses.join(", "),
        caps = cap_list.join(", "),
    )
}

fn camel_cap(c: Capability) -> &'static str {
    match c {
        Capability::Relational => "Relational",
        Capability::Vector => "Vector",
        Capability::Cache => "Cache",
        Capability::Graph => "Graph",
    }
}

/// A store of `cap` whose every required method answers Unsupported.
fn stub(cap: Capability, camel: &str) -> String {
    let t = camel_cap(cap);
    let methods: &[(&str, &str)] = match cap {
        Capability::Vector => &[
            ("create_collection", "(&self, name: &str, dimension: u32, distance: Distance) -> Result<()>"),
            ("drop_collection", "(&self, name: &str) -> Result<()>"),
            ("list_collections", "(&self) -> Result<Vec<CollectionInfo>>"),
            ("collection_info", "(&self, name: &str) -> Result<CollectionInfo>"),
            ("upsert", "(&self, collection: &str, records: &[VectorRecord]) -> Result<()>"),
            ("get", "(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>>"),
            ("delete", "(&self, collection: &str, ids: &[String]) -> Result<u64>"),
            ("delete_where", "(&self, collection: &str, filter: &Filter) -> Result<u64>"),
            ("count", "(&self, collection: &str, filter: Option<&Filter>) -> Result<u64>"),
            ("search", "(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>>"),
            ("scroll", "(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage>"),
        ],
        Capability::Relational => &[
            ("execute", "(&self, sql: &str, params: &Params) -> Result<ExecResult>"),
            ("execute_many", "(&self, sql: &str, params: &[Params]) -> Result<ExecResult>"),
            ("query", "(&self, sql: &str, params: &Params) -> Result<Rows>"),
            ("transaction", "(&self, statements: &[Statement]) -> Result<Vec<ExecResult>>"),
            ("migrate", "(&self, migrations: &[Migration]) -> Result<MigrationReport>"),
            ("tables", "(&self) -> Result<Vec<String>>"),
            ("describe", "(&self, table: &str) -> Result<TableSchema>"),
            ("backup", "(&self, path: &str) -> Result<()>"),
            ("restore", "(&self, path: &str) -> Result<()>"),
        ],
        Capability::Graph => &[
            ("create_nodes", "(&self, nodes: &[NewNode]) -> Result<Vec<Node>>"),
            ("get_node", "(&self, id: &str) -> Result<Option<Node>>"),
            ("update_node", "(&self, id: &str, properties: &Json) -> Result<Node>"),
            ("delete_node", "(&self, id: &str) -> Result<bool>"),
            ("create_edges", "(&self, edges: &[NewEdge]) -> Result<Vec<Edge>>"),
            ("get_edge", "(&self, id: &str) -> Result<Option<Edge>>"),
            ("update_edge", "(&self, id: &str, properties: &Json) -> Result<Edge>"),
            ("delete_edge", "(&self, id: &str) -> Result<bool>"),
            ("neighbors", "(&self, id: &str, direction: Direction, edge_types: &[String], depth: u32) -> Result<Vec<Neighbor>>"),
            ("shortest_path", "(&self, from: &str, to: &str, max_depth: u32) -> Result<Option<Path>>"),
            ("edges_of", "(&self, id: &str, direction: Direction) -> Result<Vec<Edge>>"),
            ("find_nodes", "(&self, query: &NodeQuery) -> Result<Vec<Node>>"),
            ("export_nodes", "(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Node>>"),
            ("export_edges", "(&self, cursor: Option<&str>, limit: usize) -> Result<Page<Edge>>"),
        ],
        Capability::Cache => unreachable!("the cache is the example's"),
    };
    let imports = match cap {
        Capability::Vector => {
            "CollectionInfo, Distance, Filter, ScrollPage, SearchHit, SearchRequest, VectorRecord"
        }
        Capability::Relational => {
            "ExecResult, Migration, MigrationReport, Params, Rows, Statement, TableSchema"
        }
        Capability::Graph => {
            "Direction, Edge, Neighbor, NewEdge, NewNode, Node, NodeQuery, Page, Path"
        }
        Capability::Cache => "",
    };
    let json = if cap == Capability::Graph {
        "use serde_json::Value as Json;\n"
    } else {
        ""
    };
    let mut body = String::new();
    for (m, sig) in methods {
        // Parameters are unused until the method is written: `_name`.
        let (params, ret) = sig.split_once(") ->").expect("a signature");
        let params: Vec<String> = params
            .trim_start_matches('(')
            .split(", ")
            .map(|p| match p {
                "&self" => p.to_string(),
                p => format!("_{p}"),
            })
            .collect();
        let sig = format!("({}) ->{ret}", params.join(", "));
        body.push_str(&format!(
            "    fn {m}{sig} {{\n        Err(not_written(\"{m}\"))\n    }}\n\n"
        ));
    }
    format!(
        r#"//! The {cap} capability: a stub. Every method answers Unsupported
//! until it is written; `backplane conformance` lists the cases that still
//! fail. The trait's documentation (backplane_core::{t}) says what each
//! method must do.

use backplane_core::{{{t}, Error, Health, Result, {imports}}};
{json}
/// A `{cap}` store.
#[derive(Debug, Default)]
pub(crate) struct {camel}{t};

fn not_written(method: &str) -> Error {{
    Error::unsupported(format!("{cap} {{method}}: not written yet"))
}}

impl {t} for {camel}{t} {{
{body}    fn health(&self) -> Result<Health> {{
        Ok(Health::ok("{cap}: a stub, not written yet"))
    }}
}}
"#
    )
}

fn readme(name: &str, krate: &str, caps: &[Capability]) -> String {
    let lib = format!(
        "{}{}.{}",
        std::env::consts::DLL_PREFIX,
        krate.replace('-', "_"),
        std::env::consts::DLL_EXTENSION
    );
    let mut rows = String::new();
    for c in Capability::ALL {
        let served = if c == Capability::Cache && caps.contains(&c) {
            "yes: keys with expiry, conversation channels with a bound and a TTL (kept in memory)"
        } else if caps.contains(&c) {
            "started: a stub answering Unsupported"
        } else {
            "no"
        };
        rows.push_str(&format!("| {c} | {served} |\n"));
    }
    let first = caps.first().copied().unwrap_or(Capability::Cache);
    format!(
        r#"# {krate}

A Backplane plugin providing the backend `{name}`.

## Capabilities

| Capability | Served |
|------------|--------|
{rows}
## Configuration

| Key | Default | Meaning |
|-----|---------|---------|
| `greeting` | `"hello"` | A word reported in the store's health detail. |
| `max_messages` | `1000` | Messages kept per channel (cache); adding one more drops the oldest. |
| `ttl` | none | A channel expires this long after its last message (cache): `"30s"`, `"2h"`. |
| `max_value_bytes` | `16777216` | The largest value or message kept (cache); a larger one is refused. |

Any other key is a configuration error, naming the key.

## Example

```sh
cargo build --release
backplane conformance target/release/{lib} --config conformance.toml
```

```toml
[plugins]
search_paths = ["target/release"]

[{first}.scratch]
backend = "{name}"
```
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_files() {
        assert_eq!(camel("my-kv2"), "MyKv2");
        let files = render(
            "my-kv",
            "backplane-plugin-my-kv",
            &Capability::ALL,
            "backplane-core = \"0.1.0\"",
        );
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        for want in [
            "Cargo.toml",
            "README.md",
            "conformance.toml",
            "src/lib.rs",
            "src/config.rs",
            "src/cache.rs",
            "src/vector.rs",
            "src/relational.rs",
            "src/graph.rs",
        ] {
            assert!(paths.contains(&want), "{want} missing: {paths:?}");
        }
        let text = |p: &str| &files.iter().find(|(q, _)| q == p).unwrap().1;
        assert!(
            !text("src/cache.rs").contains("CustomKv"),
            "the example's names are replaced"
        );
        assert!(text("src/lib.rs").contains("export_plugin!(MyKvPlugin)"));
        assert!(
            text("README.md").contains("## Capabilities")
                && text("README.md").contains("## Configuration")
                && text("README.md").contains("## Example")
        );
        assert!(
            text("Cargo.toml").contains("serde_json"),
            "graph properties need serde_json"
        );
        let cache_only = render("kv", "backplane-plugin-kv", &[Capability::Cache], "x = 1");
        assert!(!cache_only.iter().any(|(p, _)| p == "src/vector.rs"));
        assert!(!cache_only
            .iter()
            .find(|(p, _)| p == "Cargo.toml")
            .unwrap()
            .1
            .contains("serde_json"));
    }

    #[test]
    fn bad_names_are_refused_in_one_line() {
        for bad in ["", "My-kv", "9kv", "kv-", "k v", "kv_1"] {
            let e = new_plugin(NewPluginArgs {
                name: bad.into(),
                capabilities: vec![Capability::Cache],
                dir: std::env::temp_dir(),
                core: None,
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains("cannot name a backend"), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
