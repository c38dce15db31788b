//! The `backplane` command: inspect plugins, check stores, run the demo.

use backplane_host::{Capability, Storage, StorageBuilder};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
backplane: a plug-in storage layer for AI applications

USAGE:
    backplane [--config FILE] [--plugin-dir DIR]... <COMMAND>

COMMANDS:
    plugins   list the backends found and the plugin libraries that failed, with reasons
    check     open every store in plugins.toml and report its health
    demo      run a chat assistant's storage pattern on the configured stores
    help      print this text

OPTIONS:
    --config FILE      plugins.toml to read (default: $BACKPLANE_CONFIG, else ./plugins.toml)
    --plugin-dir DIR   search DIR for plugins first (repeatable; also $BACKPLANE_PLUGIN_PATH)
";

fn main() -> ExitCode {
    init_logging();
    let mut builder = Storage::builder();
    let mut command = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => match args.next() {
                Some(f) => builder = builder.config(f),
                None => return usage_error("--config needs a file"),
            },
            "--plugin-dir" => match args.next() {
                Some(d) => builder = builder.plugin_dir(d),
                None => return usage_error("--plugin-dir needs a folder"),
            },
            "-h" | "--help" | "help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            s if s.starts_with('-') => return usage_error(&format!("unknown option {s}")),
            s if command.is_none() => command = Some(s.to_string()),
            s => return usage_error(&format!("unexpected argument {s}")),
        }
    }
    match command.as_deref() {
        Some("plugins") => plugins(builder),
        Some("check") => check(builder),
        Some("demo") => demo(builder),
        Some(other) => usage_error(&format!("unknown command '{other}'")),
        None => usage_error("no command given"),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("error: {msg}\n\n{USAGE}");
    ExitCode::from(2)
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

fn plugins(builder: StorageBuilder) -> ExitCode {
    let path = builder.config_path();
    let config = match backplane_host::Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
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
            "  {name:<12} {:<34} plugin {} {}  from {}",
            caps(&b.descriptor.capabilities),
            b.plugin,
            b.version,
            b.source
        );
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
