//! The `backplane` command: inspect plugins, check stores, run the demo,
//! move data (migrate a store to another backend, back up stores into a
//! portable archive, restore one, verify one, count records), and certify
//! a plugin library with the behaviour suites.
//!
//! - this file: the commands and their arguments (clap);
//! - `conformance.rs`: `backplane conformance`, on `backplane-testkit`;
//! - `scaffold.rs`: `backplane new-plugin`, from the custom example;
//! - `port.rs`: migrate, backup, restore, verify and count, with their
//!   text and JSON reports, and rekey;
//! - `progress.rs`: progress bars on a terminal, nothing elsewhere.

mod conformance;
mod port;
mod progress;
mod scaffold;

use backplane_host::{Capability, Storage, StorageBuilder};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// backplane: a plug-in storage layer for AI applications.
#[derive(Parser, Debug)]
#[command(name = "backplane", version, about, long_about = None, disable_help_subcommand = false)]
struct Cli {
    /// plugins.toml to read [default: $BACKPLANE_CONFIG, else ./plugins.toml]; for conformance, the settings file [default: ./conformance.toml]
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Search DIR for plugins first (repeatable; also $BACKPLANE_PLUGIN_PATH)
    #[arg(long = "plugin-dir", global = true, value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the backends found and the plugin libraries that failed, with reasons
    Plugins {
        /// Print a [plugins.pins] table with the SHA-256 of every library found, to paste into plugins.toml
        #[arg(long)]
        pin: bool,
    },
    /// Open every store in plugins.toml and report its health
    Check,
    /// Run a chat assistant's storage pattern on the configured stores
    Demo,
    /// Copy every record of one store into another, any backend to any backend
    Migrate(port::MigrateArgs),
    /// Back up stores into a new archive folder (every store when none is named)
    Backup(port::BackupArgs),
    /// Restore an archive into the configured stores
    Restore(port::RestoreArgs),
    /// Check an archive's files against its manifest
    Verify(port::VerifyArgs),
    /// Count the records of stores (every store when none is named)
    Count(port::CountArgs),
    /// Re-encrypt encrypted stores under their current key, in place (every encrypted store when none is named); stop the application first
    Rekey {
        /// Stores, as <capability>.<store> (e.g. cache.conversations)
        stores: Vec<String>,
    },
    /// Print a new random encryption key (64 hex digits) for key_env or key_file
    Key,
    /// Run the behaviour suites on a plugin library and report each case (--config names the conformance settings)
    Conformance(conformance::ConformanceArgs),
    /// Write a new plugin crate (outside any workspace) that builds and loads as written
    NewPlugin(scaffold::NewPluginArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let mut builder = Storage::builder();
    if let Some(c) = &cli.config {
        builder = builder.config(c);
    }
    for d in &cli.plugin_dirs {
        builder = builder.plugin_dir(d);
    }
    let result = match cli.command {
        Command::Plugins { pin: false } => return plugins(builder),
        Command::Plugins { pin: true } => return pins(builder),
        Command::Check => return check(builder),
        Command::Demo => return demo(builder),
        Command::Migrate(a) => port::migrate(builder, &cli.plugin_dirs, a),
        Command::Backup(a) => port::backup(builder, a),
        Command::Restore(a) => port::restore(builder, a),
        Command::Verify(a) => port::verify(a),
        Command::Count(a) => port::count(builder, a),
        Command::Rekey { stores } => port::rekey(builder, &stores),
        Command::Key => {
            println!("{}", backplane_host::crypt::new_key_hex());
            Ok(true)
        }
        Command::NewPlugin(a) => scaffold::new_plugin(a),
        Command::Conformance(a) => conformance::conformance(cli.config.as_deref(), a),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "backplane",
                &mut std::io::stdout(),
            );
            Ok(true)
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            eprintln!("[{}] {}", r.level(), r.args());
        }
        fn flush(&self) {}
    }
    let level = match std::env::var("BACKPLANE_LOG").as_deref() {
        Ok("off") => log::LevelFilter::Off,
        Ok("error") => log::LevelFilter::Error,
        Ok("info") => log::LevelFilter::Info,
        Ok("debug") => log::LevelFilter::Debug,
        Ok("trace") => log::LevelFilter::Trace,
        _ => log::LevelFilter::Warn,
    };
    let _ = log::set_boxed_logger(Box::new(Stderr));
    log::set_max_level(level);
}

fn caps(c: &[Capability]) -> String {
    c.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
}

/// The config file the builder names, parsed; an error is printed.
fn load_config(builder: &StorageBuilder) -> Result<(PathBuf, backplane_host::Config), ExitCode> {
    let path = builder.config_path();
    match backplane_host::Config::load(&path) {
        Ok(c) => Ok((path, c)),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// `backplane plugins --pin`: the pins of the libraries found now.
fn pins(builder: StorageBuilder) -> ExitCode {
    let (path, config) = match load_config(&builder) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let files = backplane_host::library_files(&config, &builder.extra_plugin_dirs());
    if files.is_empty() {
        eprintln!("error: no plugin library found to pin: build the plugins (cargo build --release) or fix [plugins] search_paths");
        return ExitCode::FAILURE;
    }
    println!(
        "# the libraries found for {}; paste under [plugins]",
        path.display()
    );
    println!("[plugins.pins]");
    let mut named = std::collections::BTreeMap::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        match backplane_host::sha256_file(&f) {
            Ok(h) => match named.get(&name) {
                // An earlier folder's library of the same name is the one
                // that loads; a different later one is left out.
                Some(earlier) if *earlier != h => println!(
                    "# {} is left out: {name} from an earlier folder is the one that loads",
                    f.display()
                ),
                Some(_) => {}
                None => {
                    println!("\"{name}\" = \"sha256:{h}\"   # {}", f.display());
                    named.insert(name, h);
                }
            },
            Err(e) => {
                eprintln!("error: {}: cannot be read ({e})", f.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn plugins(builder: StorageBuilder) -> ExitCode {
    let (path, config) = match load_config(&builder) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let extra: Vec<PathBuf> = builder.extra_plugin_dirs();
    let registry = backplane_host::Registry::discover(&config, &extra);
    println!("config: {}", path.display());
    println!("searched:");
    for d in extra.iter().chain(&config.search_paths) {
        println!(
            "  {}{}",
            d.display(),
            if d.is_dir() { "" } else { "  (does not exist)" }
        );
    }
    println!("backends:");
    if registry.backends.is_empty() {
        println!("  none found: build the plugins (cargo build --release) or add a search path");
    }
    for (name, b) in &registry.backends {
        println!(
            "  {name:<12} {:<34} plugin {} {} (core {})  from {}",
            caps(&b.descriptor.capabilities),
            b.plugin,
            b.version,
            b.core_version,
            b.source
        );
        if !b.descriptor.description.is_empty() {
            println!("  {:<12} {}", "", b.descriptor.description);
        }
        for s in &b.shadows {
            println!(
                "  {:<12} (also in {}, not used: an earlier search path wins)",
                "",
                s.display()
            );
        }
    }
    if !registry.failures.is_empty() {
        println!("failed to load:");
        for f in &registry.failures {
            println!("  {f}");
        }
    }
    ExitCode::SUCCESS
}

fn check(builder: StorageBuilder) -> ExitCode {
    let storage = match builder.lenient(true).open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if storage.config().stores.is_empty() {
        println!(
            "no stores in {}: add a section such as [relational.users] with backend = \"sqlite\" (the README's plugins.toml reference lists the keys)",
            storage
                .config()
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "the configuration".into())
        );
        return ExitCode::FAILURE;
    }
    let mut bad = 0;
    for h in storage.health() {
        let label = format!("[{}.{}] ({})", h.capability, h.store, h.backend);
        match h.result {
            Ok(health) if health.healthy => println!("ok    {label:<40} {}", health.detail),
            Ok(health) => {
                bad += 1;
                println!("FAIL  {label:<40} {}", health.detail)
            }
            Err(e) => {
                bad += 1;
                println!("FAIL  {label:<40} {}", e.message())
            }
        }
        if let Some(entry) = storage.config().store(h.capability, &h.store) {
            let layers = entry.layers.names();
            if !layers.is_empty() {
                println!("      {:<40} layers: {}", "", layers.join(", "));
            }
        }
    }
    if let Some(addr) = storage.metrics_addr() {
        println!("metrics: http://{addr}/metrics");
    }
    for f in storage.plugin_failures() {
        println!("note  plugin library {f}");
    }
    if bad == 0 {
        println!("all {} stores healthy", storage.config().stores.len());
        ExitCode::SUCCESS
    } else {
        println!(
            "{bad} of {} stores unhealthy",
            storage.config().stores.len()
        );
        ExitCode::FAILURE
    }
}

fn demo(builder: StorageBuilder) -> ExitCode {
    let storage = match builder.open() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    match backplane_host::run_demo(&storage, &mut out) {
        Ok(()) => {
            storage.shutdown();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
