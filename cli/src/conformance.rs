//! `backplane conformance`: certify a plugin library with the behaviour
//! suites, from anywhere, with a report.

use anyhow::{bail, Context, Result};
use backplane_testkit::{run_on, RunOptions, Settings, Target};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `backplane conformance`.
#[derive(Args, Debug)]
pub struct ConformanceArgs {
    /// The plugin library to certify (a .so, .dylib or .dll file)
    pub library: PathBuf,
    /// Run only the cases whose name contains TEXT (e.g. cache::ttl)
    #[arg(long = "case", value_name = "TEXT")]
    pub only: Option<String>,
    /// Fail a case that takes longer than this [default: the settings' case_timeout, else 120s]
    #[arg(long, value_name = "DURATION", value_parser = humantime_duration)]
    pub case_timeout: Option<Duration>,
    /// Print the report as JSON instead of text
    #[arg(long)]
    pub json: bool,
}

fn humantime_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|_| format!("'{s}' is not a duration: write e.g. 60s or 2m"))
}

/// Run it. `settings` is the global `--config`, which for this command
/// names the conformance settings file; without it, `./conformance.toml`
/// is used when present. Returns whether every case passed.
pub fn conformance(settings: Option<&Path>, args: ConformanceArgs) -> Result<bool> {
    if !args.library.is_file() {
        bail!(
            "{} is not a file: give the path of the built plugin library (e.g. target/release/lib<name>.so)",
            args.library.display()
        );
    }
    let settings_file = match settings {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from("conformance.toml")).filter(|p| p.is_file()),
    };
    let settings = match &settings_file {
        Some(p) => Settings::load(p).map_err(anyhow::Error::msg)?,
        None => Settings::default(),
    };
    let options = RunOptions {
        case_timeout: args
            .case_timeout
            .or(settings.case_timeout)
            .unwrap_or(Duration::from_secs(120)),
        only: args.only.clone(),
        // A shared server keeps nothing of the run.
        clean_up: true,
    };
    // The runner writes a plugins.toml per case in a scratch folder.
    let library = args
        .library
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.library.display()))?;
    let target = Target { library, settings };
    // The library is loaded once: for the header and for the run.
    let backends = backplane_testkit::run::backends_of(std::slice::from_ref(&target.library))
        .map_err(anyhow::Error::msg)?;
    let chosen = target.chosen(&backends).map_err(anyhow::Error::msg)?;
    if !args.json {
        println!("conformance: {}", target.library.display());
        println!(
            "settings:    {}",
            settings_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| {
                    "none (no --config, no ./conformance.toml): stores get no options".into()
                })
        );
        if let Some(b) = backends.first() {
            println!(
                "plugin:      {} {}, built on backplane-core {}",
                b.plugin, b.version, b.core_version
            );
        }
        for d in &chosen {
            let caps: Vec<&str> = d.capabilities.iter().map(|c| c.as_str()).collect();
            println!(
                "backend:     {} ({}){}",
                d.name,
                caps.join(", "),
                if d.description.is_empty() {
                    String::new()
                } else {
                    format!(": {}", d.description)
                }
            );
        }
    }
    let json = args.json;
    let report = run_on(&target, &backends, &options, &mut |c| {
        if !json {
            println!("{}", c.line());
        }
    })
    .map_err(anyhow::Error::msg)?;
    if report.cases.is_empty() {
        bail!(
            "no case ran: {}",
            match &options.only {
                Some(o) => format!("no case name contains '{o}'"),
                None => "the library's backends declare no capability".into(),
            }
        );
    }
    if json {
        let cases: Vec<_> = report
            .cases
            .iter()
            .map(|c| {
                serde_json::json!({
                    "backend": c.backend,
                    "capability": c.capability.as_str(),
                    "case": c.case,
                    "passed": c.passed(),
                    "seconds": c.elapsed.as_secs_f64(),
                    "failure": match &c.outcome {
                        backplane_testkit::run::Outcome::Failed(why) => Some(why.as_str()),
                        backplane_testkit::run::Outcome::Passed => None,
                    },
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "library": target.library.display().to_string(),
                "passed": report.failures().is_empty(),
                "cases": cases,
            }))?
        );
    } else {
        println!("{}", report.summary());
    }
    Ok(report.failures().is_empty())
}
