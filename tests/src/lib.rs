//! The workspace's harness for Backplane's behaviour suites. The suites
//! (`backplane-testkit`) are written once per capability; this runs them
//! against every backend that claims the capability, each backend loaded
//! from its built shared library the way a user's host loads it, with the
//! store options of its `conformance.toml`.
//!
//! # Layout
//!
//! - this file: finding the built libraries, the shipped conformance
//!   settings, the servers the shipped backends need (and the CI rule for
//!   absent ones), opening stores, running the suites;
//! - [`relational`], [`vector`], [`cache`], [`graph`]: the cases, from the
//!   testkit;
//! - [`port`]: the portability tests' datasets and comparisons;
//! - [`servers`]: servers a test starts: `redis-server`s and a Redis
//!   Cluster, PostgreSQL, Qdrant, Chroma;
//! - `behavior.rs` (a test target): runs every case on every backend;
//! - `conformance.rs` (a test target): `backplane conformance` on every
//!   built plugin, from outside the workspace, and on wrong ones;
//! - `loading.rs` (a test target): the host's loading and failure cases,
//!   with real broken libraries built from `fixtures/`.

pub mod port;
pub mod servers;

pub use backplane_testkit::{
    cache, expect_err, graph, namespace, relational, vector, Case, Scratch, Settings,
};

use backplane_host::{Capability, Storage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The cargo target folder of the running test (`target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/behavior-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf()
}

/// Write `scratch/plugins.toml`: a `[plugins] load` of the built libraries
/// of `crates` (underscores), then `body`.
pub fn plugins_toml(scratch: &Scratch, crates: &[&str], body: &str) -> PathBuf {
    let load: Vec<String> = crates
        .iter()
        .map(|l| format!("\"{}\"", library(l).display()))
        .collect();
    let file = scratch.path("plugins.toml");
    std::fs::write(
        &file,
        format!("[plugins]\nload = [{}]\n\n{body}", load.join(", ")),
    )
    .unwrap();
    file
}

/// The built shared library of crate `crate_name` (underscores).
pub fn library(crate_name: &str) -> PathBuf {
    let file = format!(
        "{}{crate_name}.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    );
    let p = target_dir().join(&file);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace), as the README's test command does",
        p.display()
    );
    p
}

/// The plugin libraries of the project, found in the target folder: every
/// `backplane_plugin_*` library (including the custom example).
pub fn plugin_libraries() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(target_dir())
        .expect("target folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!(
                    "{}backplane_plugin_",
                    std::env::consts::DLL_PREFIX
                )) && n.ends_with(std::env::consts::DLL_EXTENSION)
            })
        })
        .collect();
    v.sort();
    assert!(
        !v.is_empty(),
        "no plugin libraries in {}: run cargo build --workspace first",
        target_dir().display()
    );
    v
}

/// Send `sig` (`STOP`, `CONT`, …) to process `pid`, failing the test if
/// `kill` does.
pub fn signal(pid: &str, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{sig}"), pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// Whether we run in CI, where a missing server is a failure, not a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The shipped plugins' conformance settings (`plugins/*/conformance.toml`
/// and the custom example's), by the backend they name.
/// Each maps to its file and what the file says.
pub fn shipped_settings() -> &'static BTreeMap<String, (PathBuf, Settings)> {
    static ALL: OnceLock<BTreeMap<String, (PathBuf, Settings)>> = OnceLock::new();
    ALL.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace root");
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("plugins"))
            .expect("the plugins folder")
            .filter_map(|e| e.ok().map(|e| e.path().join("conformance.toml")))
            .collect();
        files.push(root.join("examples/custom_plugin/conformance.toml"));
        let mut all = BTreeMap::new();
        for f in files.into_iter().filter(|f| f.is_file()) {
            let s = Settings::load(&f).unwrap_or_else(|e| panic!("{e}"));
            let backend = s.backend.clone().unwrap_or_else(|| {
                panic!("{}: [conformance] backend is required here", f.display())
            });
            all.insert(backend, (f, s));
        }
        all
    })
}

/// Whether the server `backend` needs (if any) answers; when it does not,
/// outside CI this prints that `backend`'s `cap` cases skip and why, and in
/// CI it fails the test.
pub fn server_answers(backend: &str, cap: impl std::fmt::Display) -> bool {
    match backend {
        "redis" => {
            let (_, shown, unreachable) = redis_server();
            if let Some(reason) = unreachable {
                if in_ci() {
                    panic!(
                        "Redis is required in CI, but none answers at {shown} ({reason}): .ci/run starts redis-server on 127.0.0.1:6379 when `redis-cli ping` does not answer PONG; check that redis-server is installed, or set BACKPLANE_REDIS_URL"
                    );
                }
                println!(
                    "  skip redis/{cap}: no Redis at {shown} ({reason}); set BACKPLANE_REDIS_URL or start redis-server"
                );
                return false;
            }
        }
        "postgres" => {
            let (_, shown, unreachable) = postgres_server();
            if let Some(reason) = unreachable {
                if in_ci() {
                    panic!(
                        "PostgreSQL is required in CI, but none answers at {shown} ({reason}): .ci/run starts the cluster with pg_ctlcluster when `pg_isready -h 127.0.0.1 -p 5432` fails; check that it is installed, or set BACKPLANE_POSTGRES_URL"
                    );
                }
                println!(
                    "  skip postgres/{cap}: no PostgreSQL at {shown} ({reason}); set BACKPLANE_POSTGRES_URL or start the server"
                );
                return false;
            }
        }
        "qdrant" => {
            if let Err(why) = qdrant_server() {
                println!("  skip qdrant/{cap}: {why}");
                return false;
            }
        }
        "chroma" => {
            if let Err(why) = chroma_server() {
                println!("  skip chroma/{cap}: {why}");
                return false;
            }
        }
        _ => {}
    }
    true
}

/// The Chroma server the suite uses: the one `BACKPLANE_CHROMA_URL` names,
/// or else one this test process starts (on a free loopback port, from
/// PyPI's `chromadb`) the first time it is asked for, shared by every
/// case and gone with the process. `Err` says why the cases skip (outside
/// CI; in CI an absent server is a failure).
pub fn chroma_server() -> Result<String, String> {
    if let Some(url) = std::env::var("BACKPLANE_CHROMA_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return Ok(url);
    }
    static SHARED: OnceLock<Option<String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if !servers::chroma_available("the chroma cases") {
                return None;
            }
            // Kept for the life of the process: the server exits with it.
            let server = Box::leak(Box::new(servers::ChromaServer::start_for_process()));
            Some(server.url())
        })
        .clone()
        .ok_or_else(|| {
            "no Chroma server: python3 cannot import chromadb (python3 -m pip install --no-deps chromadb==1.5.9), and BACKPLANE_CHROMA_URL is not set".to_string()
        })
}

/// Drop every collection of the `chroma` backend under `prefix` on the
/// server at `url` (a test's clean-up), through the plugin itself.
pub fn drop_chroma_collections(url: &str, prefix: &str) {
    let scratch = Scratch::new();
    let Ok(storage) = open_with_result(
        "chroma",
        Capability::Vector,
        &scratch,
        &format!("url = \"{url}\"\ncollection_prefix = \"{prefix}\""),
    ) else {
        return;
    };
    let handle = storage.vector("s").expect("the clean-up store");
    let store = handle.blocking();
    for c in store.list_collections().unwrap_or_default() {
        if let Err(e) = store.drop_collection(&c.name) {
            println!(
                "  clean-up: cannot drop chroma collection {prefix}{}: {e}",
                c.name
            );
        }
    }
}

/// The store options a backend needs for a fresh store of `cap` (from its
/// conformance settings, `extra` over them), or `None` when the backend is
/// skipped here (with the reason printed). Stores on a server get a fresh
/// namespace, dropped with the scratch folder.
pub fn store_options(
    backend: &str,
    cap: Capability,
    scratch: &Scratch,
    extra: &str,
) -> Option<String> {
    let Some((_, settings)) = shipped_settings().get(backend) else {
        println!("  skip {backend}/{cap}: no conformance.toml of the workspace names this backend");
        return None;
    };
    if !server_answers(backend, cap) {
        return None;
    }
    // A Chroma server started by this process has a port of its own.
    let extra = match (backend, chroma_server()) {
        ("chroma", Ok(url)) => format!("url = \"{url}\"\n{extra}"),
        _ => extra.to_string(),
    };
    let opts = settings.options(cap, &extra, scratch, &namespace());
    // What the store creates on a server goes with the scratch folder.
    let t: toml::Table = opts.parse().expect("the settings' own output parses");
    let key = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match backend {
        "postgres" => {
            if let Some(schema) = key("schema") {
                let (url, _, _) = postgres_server();
                scratch.on_drop(move || drop_postgres_schema(&url, &schema));
            }
        }
        "qdrant" => {
            if let (Ok(url), Some(prefix)) = (qdrant_server(), key("collection_prefix")) {
                scratch.on_drop(move || drop_qdrant_collections(&url, &prefix));
            }
        }
        "chroma" => {
            if let (Some(url), Some(prefix)) = (key("url"), key("collection_prefix")) {
                scratch.on_drop(move || drop_chroma_collections(&url, &prefix));
            }
        }
        _ => {}
    }
    Some(opts)
}

/// The Redis server the suite uses: its URL (`BACKPLANE_REDIS_URL`, or
/// `redis://127.0.0.1:6379/0`), the URL as printed (any password shown as
/// `***`), and why nothing answers there, if nothing does (a TCP connect to
/// its host:port with a short timeout).
pub fn redis_server() -> (String, String, Option<String>) {
    let url = std::env::var("BACKPLANE_REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".to_string());
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let (userinfo, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => url.replacen(userinfo, &format!("{user}:***"), 1),
        None => url.clone(),
    };
    let host_port = if host_port.ends_with(']') || !host_port.contains(':') {
        format!("{host_port}:6379")
    } else {
        host_port.to_string()
    };
    let reach = || -> Result<(), String> {
        let addrs = std::net::ToSocketAddrs::to_socket_addrs(&host_port)
            .map_err(|e| format!("cannot resolve {host_port}: {e}"))?;
        let mut why = format!("{host_port} resolves to no address");
        for addr in addrs {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(e) => why = format!("{addr}: {e}"),
            }
        }
        Err(why)
    };
    let why = reach().err();
    (url, shown, why)
}

/// The Qdrant server the suite uses: `BACKPLANE_QDRANT_URL` (its gRPC
/// endpoint, e.g. `http://127.0.0.1:6334`). Qdrant cannot be installed from
/// this project's package registries, so without the variable the `qdrant`
/// cases skip, in CI too, saying so; with it, a server that does not answer
/// fails the run in CI. `Err` says why the cases skip.
pub fn qdrant_server() -> Result<String, String> {
    let Some(url) = std::env::var("BACKPLANE_QDRANT_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    else {
        return Err(
            "BACKPLANE_QDRANT_URL is not set (no Qdrant server is installed with the project's tools): set it to a server's gRPC endpoint, e.g. http://127.0.0.1:6334, to run these cases".to_string(),
        );
    };
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let host_port = &rest[..rest.find('/').unwrap_or(rest.len())];
    let reach = std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .map_err(|e| format!("cannot resolve {host_port}: {e}"))
        .and_then(|mut addrs| {
            let addr = addrs
                .next()
                .ok_or_else(|| format!("{host_port} resolves to no address"))?;
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(1000))
                .map(drop)
                .map_err(|e| format!("{addr}: {e}"))
        });
    match reach {
        Ok(()) => Ok(url),
        Err(reason) if in_ci() => panic!(
            "BACKPLANE_QDRANT_URL is {url}, but no Qdrant server answers there ({reason}): start it, or unset the variable to skip the qdrant cases"
        ),
        Err(reason) => Err(format!(
            "no Qdrant server answers at {url} ({reason}); start it, or unset BACKPLANE_QDRANT_URL"
        )),
    }
}

/// Drop every collection of the `qdrant` backend under `prefix` on the
/// server at `url` (a test's clean-up), through the plugin itself.
pub fn drop_qdrant_collections(url: &str, prefix: &str) {
    let scratch = Scratch::new();
    let storage = open_with(
        "qdrant",
        Capability::Vector,
        &scratch,
        &format!("url = \"{url}\"\ncollection_prefix = \"{prefix}\""),
    );
    let handle = storage.vector("s").expect("the clean-up store");
    let store = handle.blocking();
    for c in store.list_collections().unwrap_or_default() {
        if let Err(e) = store.drop_collection(&c.name) {
            println!(
                "  clean-up: cannot drop qdrant collection {prefix}{}: {e}",
                c.name
            );
        }
    }
}

/// The PostgreSQL server the suite uses: its URL
/// (`BACKPLANE_POSTGRES_URL`, or `postgres://postgres@127.0.0.1:5432/test`),
/// the URL as printed (any password shown as `***`), and why no session can
/// be had there, if none can (a connection with a 2 s timeout).
pub fn postgres_server() -> (String, String, Option<String>) {
    let url = std::env::var("BACKPLANE_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let shown = match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
            match authority
                .rsplit_once('@')
                .and_then(|(u, _)| u.split_once(':'))
            {
                Some((user, pw)) => format!(
                    "{scheme}://{}",
                    rest.replacen(&format!("{user}:{pw}@"), &format!("{user}:***@"), 1)
                ),
                None => url.clone(),
            }
        }
        None => url.clone(),
    };
    let u = url.clone();
    let why = off_runtime(move || -> Result<(), String> {
        let mut cfg: postgres::Config = u.parse().map_err(|e| format!("bad URL: {e}"))?;
        cfg.connect_timeout(Duration::from_secs(2));
        let mut c = cfg.connect(postgres::NoTls).map_err(|e| e.to_string())?;
        c.simple_query("SELECT 1").map_err(|e| e.to_string())?;
        Ok(())
    })
    .err();
    (url, shown, why)
}

/// Run `f` on a thread of its own: the `postgres` client blocks on a
/// runtime of its own, which tokio refuses inside an async test.
fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .expect("the PostgreSQL helper thread panicked")
}

/// Whether the suite's PostgreSQL server can use pgvector: `Ok(version)`
/// when the extension is installed or installable, else why not.
pub fn postgres_pgvector() -> Result<String, String> {
    let (url, shown, unreachable) = postgres_server();
    if let Some(reason) = unreachable {
        return Err(format!("no PostgreSQL at {shown} ({reason})"));
    }
    let row = off_runtime(move || {
        let mut c = url
            .parse::<postgres::Config>()
            .and_then(|c| c.connect(postgres::NoTls))
            .map_err(|e| e.to_string())?;
        c.query_opt(
            "SELECT coalesce(installed_version, default_version) FROM pg_available_extensions WHERE name = 'vector'",
            &[],
        )
        .map_err(|e| e.to_string())
    })?;
    match row {
        Some(r) => Ok(r.get(0)),
        None => Err(format!(
            "the server at {shown} has no pgvector extension (no 'vector' in pg_available_extensions); install pgvector for PostgreSQL to run this path"
        )),
    }
}

/// Drop a test's schema and everything in it.
pub fn drop_postgres_schema(url: &str, schema: &str) {
    let Ok(mut cfg) = url.parse::<postgres::Config>() else {
        return;
    };
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    off_runtime(move || {
        cfg.connect_timeout(Duration::from_secs(2));
        if let Ok(mut c) = cfg.connect(postgres::NoTls) {
            let _ = c.batch_execute(&sql);
        }
    });
}

/// Open a Storage with one store named `s` of capability `cap` on `backend`,
/// its plugins loaded from the built libraries.
pub fn open_one(backend: &str, cap: Capability, scratch: &Scratch, extra: &str) -> Option<Storage> {
    let opts = store_options(backend, cap, scratch, extra)?;
    Some(open_with(backend, cap, scratch, &opts))
}

/// [`open_with`], returning the error of a store that does not open.
pub fn open_with_result(
    backend: &str,
    cap: Capability,
    scratch: &Scratch,
    opts: &str,
) -> backplane_host::Result<Storage> {
    let file = backplane_testkit::run::write_config(
        scratch,
        &plugin_libraries(),
        &format!("[{cap}.s]\nbackend = \"{backend}\"\n{opts}\n"),
    );
    Storage::open(&file)
}

/// Open a Storage with one store named `s` of capability `cap` on
/// `backend` with the section's other lines `opts`.
pub fn open_with(backend: &str, cap: Capability, scratch: &Scratch, opts: &str) -> Storage {
    open_with_result(backend, cap, scratch, opts)
        .unwrap_or_else(|e| panic!("open {backend} store: {e}"))
}

/// The backends of the built plugins that claim `cap`.
pub fn backends_for(cap: Capability) -> Vec<String> {
    backplane_testkit::run::backends_of(&plugin_libraries())
        .unwrap_or_else(|e| panic!("plugin libraries failed to load: {e}"))
        .into_iter()
        .filter(|b| b.descriptor.serves(cap))
        .map(|b| b.descriptor.name)
        .collect()
}

/// The runtime the suites run through the async API await on: a
/// multi-thread one of two workers, shared by every case (each blocks on
/// it from a thread of its own, see `through_async` on the store
/// handles).
pub fn async_runtime() -> tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("backplane-suite-async")
                .enable_all()
                .build()
                .expect("start the suites' tokio runtime")
        })
        .handle()
        .clone()
}

/// Run every case on every backend claiming `cap`; `handle` turns a Storage
/// into the store handle. Prints one line per case and fails with the full
/// list of failures at the end.
pub fn run_suite<S: 'static>(
    cap: Capability,
    cases: &[Case<S>],
    extra: &str,
    handle: backplane_testkit::run::Handle<S>,
) {
    let backends = backends_for(cap);
    assert!(!backends.is_empty(), "no backend claims {cap}");
    run_suite_on(cap, &backends, cases, extra, handle);
}

/// [`run_suite`] on the given backends only, with store options `extra`
/// that they understand.
pub fn run_suite_on<S: 'static>(
    cap: Capability,
    backends: &[String],
    cases: &[Case<S>],
    extra: &str,
    handle: backplane_testkit::run::Handle<S>,
) {
    let mut failures = Vec::new();
    let mut ran = 0;
    for backend in backends {
        let (r, f) = run_cases(backend, cap, cases, handle, |scratch| {
            store_options(backend, cap, scratch, extra)
        });
        ran += r;
        failures.extend(f);
    }
    assert!(ran > 0, "no {cap} case ran");
    assert!(
        failures.is_empty(),
        "{} {cap} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Run every case on `backend` with the testkit's runner, each on a fresh
/// store whose section lines `options` gives (`None`: skip the backend).
/// Returns how many cases ran and the failures, one line each.
pub fn run_cases<S: 'static>(
    backend: &str,
    cap: Capability,
    cases: &[Case<S>],
    handle: backplane_testkit::run::Handle<S>,
    options: impl Fn(&Scratch) -> Option<String>,
) -> (usize, Vec<String>) {
    let reports = backplane_testkit::run::run_cases(
        &plugin_libraries(),
        backend,
        cap,
        cases,
        "",
        handle,
        &|scratch, _| options(scratch),
        &backplane_testkit::RunOptions::default(),
        &mut |c| println!("{}", c.line()),
    );
    let failures = reports
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.line().trim().to_string())
        .collect();
    (reports.len(), failures)
}
