//! `backplane migrate`, `backup`, `restore`, `verify` and `count`: their
//! arguments, and their reports as text or, with `--json`, as one JSON
//! document on stdout. Each returns whether everything checked out.

use crate::progress::Bars;
use anyhow::{bail, Context, Result};
use backplane_host::{
    ArchiveReport, CopyOptions, Merge, Report, Storage, StorageBuilder, StoreRef,
};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// How to merge into a target that holds data.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MergeArg {
    /// The target's records win: copy only those it does not have
    Keep,
    /// The source's records win: replace the target's where both have one
    Overwrite,
}

/// What to copy and how: shared by migrate and restore.
#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Check everything and say what would be copied; write nothing
    #[arg(long)]
    dry_run: bool,
    /// Copy into a target that holds data already, and how
    #[arg(long, value_enum, value_name = "HOW")]
    merge: Option<MergeArg>,
    /// Only these tables (relational stores)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    tables: Vec<String>,
    /// Only these collections (vector stores)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    collections: Vec<String>,
    /// Only these conversation channels (cache stores; keys are then left out)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    channels: Vec<String>,
    /// Records per page
    #[arg(long, default_value_t = 5000, value_name = "N")]
    batch: usize,
    /// Where to keep the state that makes the copy resumable
    /// [default: .backplane/copies/ beside the target's plugins.toml]
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Print the report as JSON on stdout (no progress bars)
    #[arg(long)]
    json: bool,
}

impl CopyArgs {
    fn options(&self) -> CopyOptions {
        let mut only = self.tables.clone();
        only.extend(self.collections.iter().cloned());
        only.extend(self.channels.iter().cloned());
        CopyOptions {
            dry_run: self.dry_run,
            merge: self.merge.map(|m| match m {
                MergeArg::Keep => Merge::Keep,
                MergeArg::Overwrite => Merge::Overwrite,
            }),
            batch: self.batch.max(1),
            state: self.state.clone(),
            only,
        }
    }
}

/// `backplane migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The store to copy from: CAPABILITY.STORE, e.g. relational.user_data
    from: String,
    /// The store to copy into: CAPABILITY.STORE
    to: String,
    /// The target store is configured in this plugins.toml (default: the same file)
    #[arg(long, value_name = "FILE")]
    to_config: Option<PathBuf>,
    #[command(flatten)]
    copy: CopyArgs,
}

/// `backplane backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// A new folder to write the archive into
    dir: PathBuf,
    /// Stores to back up, CAPABILITY.STORE (default: every store)
    stores: Vec<String>,
    /// Print the report as JSON on stdout (no progress bars)
    #[arg(long)]
    json: bool,
}

/// `backplane restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The archive's folder
    dir: PathBuf,
    /// Restore only this archive store, into this configured store
    /// (repeatable), e.g. --into relational.user_data=relational.users_copy
    #[arg(long, value_name = "FROM=TO")]
    into: Vec<String>,
    #[command(flatten)]
    copy: CopyArgs,
}

/// `backplane verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The archive's folder
    dir: PathBuf,
    /// Print the report as JSON on stdout
    #[arg(long)]
    json: bool,
}

/// `backplane count`.
#[derive(Args, Debug)]
pub struct CountArgs {
    /// Stores to count, CAPABILITY.STORE (default: every store)
    stores: Vec<String>,
    /// Print the counts as JSON on stdout
    #[arg(long)]
    json: bool,
}

fn open(builder: StorageBuilder) -> Result<Storage> {
    Ok(builder.open()?)
}

fn refs(names: &[String]) -> Result<Vec<StoreRef>> {
    Ok(names
        .iter()
        .map(|s| StoreRef::parse(s))
        .collect::<backplane_host::Result<_>>()?)
}

/// `backplane rekey`: each encrypted store named (all when none is)
/// rewritten under its current key.
pub fn rekey(builder: StorageBuilder, names: &[String]) -> Result<bool> {
    let storage = open(builder)?;
    let stores: Vec<(backplane_host::Capability, String)> = if names.is_empty() {
        storage.encrypted_stores()
    } else {
        refs(names)?
            .into_iter()
            .map(|r| (r.capability, r.name))
            .collect()
    };
    if stores.is_empty() {
        println!("no store is encrypted: add [<capability>.<store>.encryption] with its key to plugins.toml (README, \"Encryption at rest\")");
        return Ok(true);
    }
    let bars = crate::progress::Bars::new(false);
    for (cap, name) in stores {
        use backplane_host::Progress;
        bars.start(&format!("{cap}.{name}"), None);
        let mut seen = 0;
        let report = storage.rekey(cap, &name, &mut |n| {
            bars.advance(n - seen);
            seen = n;
        });
        bars.finish();
        let r = report?;
        println!(
            "{cap}.{name}: {} records read, {} rewritten under the current key",
            r.examined, r.rewritten
        );
    }
    storage.shutdown();
    Ok(true)
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_report(r: &Report) {
    println!("{} -> {}", r.source, r.target);
    for i in &r.items {
        let status = if r.dry_run {
            "dry run".to_string()
        } else if i.verified {
            "verified".to_string()
        } else {
            "MISMATCH".to_string()
        };
        println!(
            "  {:<32} {:>10} records  {status}{}",
            i.item,
            i.records,
            i.note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
    }
    let how = if r.already_done {
        " (finished by an earlier run; read back again now)"
    } else if r.resumed {
        " (continued from an earlier run)"
    } else {
        ""
    };
    if r.dry_run {
        println!("dry run: nothing was written");
    } else if r.ok() {
        println!(
            "ok: {} records in {} items copied and verified{how}",
            r.records(),
            r.items.len()
        );
    } else {
        println!("FAILED: the target does not hold what was copied (see above)");
    }
}

/// `backplane migrate FROM TO`.
pub fn migrate(builder: StorageBuilder, plugin_dirs: &[PathBuf], a: MigrateArgs) -> Result<bool> {
    let from = StoreRef::parse(&a.from)?;
    let to = StoreRef::parse(&a.to)?;
    let source = open(builder)?;
    let target = match &a.to_config {
        None => source.clone(),
        Some(file) => {
            let mut b = Storage::builder().config(file);
            for d in plugin_dirs {
                b = b.plugin_dir(d);
            }
            b.open()
                .with_context(|| format!("opening the target config {}", file.display()))?
        }
    };
    let bars = Bars::new(a.copy.json);
    let report = source.migrate(&from, &target, &to, &a.copy.options(), &bars)?;
    if a.copy.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    source.shutdown();
    if a.to_config.is_some() {
        target.shutdown();
    }
    Ok(report.ok())
}

fn print_archive(r: &ArchiveReport, verb: &str) {
    println!("{} ({}, created {})", r.dir.display(), verb, r.created_at);
    for s in &r.stores {
        println!("  {} (from {})", s.store, s.backend);
        for (item, n, ok) in &s.items {
            println!(
                "    {:<30} {:>10} records  {}",
                item,
                n,
                if *ok { "ok" } else { "DAMAGED" }
            );
        }
    }
    for p in &r.problems {
        println!("problem: {p}");
    }
    println!(
        "{}",
        if r.ok {
            "ok: every file matches its checksum"
        } else {
            "FAILED"
        }
    );
}

/// `backplane backup DIR [STORES]`.
pub fn backup(builder: StorageBuilder, a: BackupArgs) -> Result<bool> {
    let storage = open(builder)?;
    let bars = Bars::new(a.json);
    let report = storage.backup(&a.dir, &refs(&a.stores)?, &bars)?;
    if a.json {
        print_json(&report)?;
    } else {
        print_archive(&report, "written and read back");
    }
    storage.shutdown();
    Ok(report.ok)
}

/// `backplane restore DIR [--into FROM=TO]`.
pub fn restore(builder: StorageBuilder, a: RestoreArgs) -> Result<bool> {
    let mut pairs = Vec::new();
    for spec in &a.into {
        let Some((f, t)) = spec.split_once('=') else {
            bail!("--into {spec}: write FROM=TO, e.g. relational.user_data=relational.user_data");
        };
        pairs.push((StoreRef::parse(f)?, StoreRef::parse(t)?));
    }
    let storage = open(builder)?;
    let bars = Bars::new(a.copy.json);
    let reports = storage.restore(&a.dir, &pairs, &a.copy.options(), &bars)?;
    let ok = reports.iter().all(Report::ok);
    if a.copy.json {
        print_json(&reports)?;
    } else {
        for r in &reports {
            print_report(r);
        }
        if reports.len() > 1 {
            let n: u64 = reports.iter().map(Report::records).sum();
            println!(
                "{}: {} stores, {n} records",
                if ok { "restored" } else { "FAILED" },
                reports.len()
            );
        }
    }
    storage.shutdown();
    Ok(ok)
}

/// `backplane verify DIR`.
pub fn verify(a: VerifyArgs) -> Result<bool> {
    let bars = Bars::new(a.json);
    let report = backplane_host::verify_archive(&a.dir, &bars)?;
    if a.json {
        print_json(&report)?;
    } else {
        print_archive(&report, "verified");
    }
    Ok(report.ok)
}

/// `backplane count [STORES]`.
pub fn count(builder: StorageBuilder, a: CountArgs) -> Result<bool> {
    let storage = open(builder)?;
    let stores = if a.stores.is_empty() {
        storage.store_refs()
    } else {
        refs(&a.stores)?
    };
    let mut all = Vec::new();
    for r in &stores {
        let counts = storage.count(r)?;
        all.push(serde_json::json!({
            "store": r.to_string(),
            "items": counts.iter().map(|(i, n)| serde_json::json!({"item": i, "records": n})).collect::<Vec<_>>(),
            "records": counts.iter().map(|(_, n)| n).sum::<u64>(),
        }));
        if !a.json {
            let total: u64 = counts.iter().map(|(_, n)| n).sum();
            println!("{r}: {total} records");
            for (item, n) in &counts {
                println!("  {item:<32} {n:>10}");
            }
        }
    }
    if a.json {
        print_json(&all)?;
    }
    storage.shutdown();
    Ok(true)
}
