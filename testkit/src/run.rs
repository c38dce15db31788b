//! The runner: every case on a fresh store, with a report.
//!
//! Each case runs on a thread of its own: its store is opened there from
//! the plugin libraries on disk (a plugins.toml written into the case's
//! scratch folder), the case runs, and with [`RunOptions::clean_up`] the
//! store is emptied afterwards through its own interface (tables dropped,
//! collections dropped, keys and channels deleted, nodes deleted), so a
//! run against a shared server leaves nothing behind. A case that panics
//! fails with the panic's message and place; a case that takes longer
//! than the time limit fails saying so, and the run goes on (its thread
//! is left behind).

use crate::{cache, graph, relational, vector, Case, Scratch, Settings};
use backplane_host::{Capability, Storage};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Once;
use std::time::{Duration, Instant};

/// How a run behaves.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// How long one case may take before it fails.
    pub case_timeout: Duration,
    /// Run only the cases whose `capability::name` contains this.
    pub only: Option<String>,
    /// Empty each store through its interface after its case.
    pub clean_up: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            case_timeout: Duration::from_secs(120),
            only: None,
            clean_up: false,
        }
    }
}

/// How one case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every assertion held.
    Passed,
    /// What was expected and what happened, with the place in the case.
    Failed(String),
}

/// One case's result.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// The backend it ran on.
    pub backend: String,
    /// The capability.
    pub capability: Capability,
    /// The case's name.
    pub case: &'static str,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took (opening the store included).
    pub elapsed: Duration,
}

impl CaseReport {
    /// Whether it passed.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
    /// The report's line for it.
    pub fn line(&self) -> String {
        let name = format!("{}::{}", self.capability, self.case);
        let secs = format!("{:.2}s", self.elapsed.as_secs_f64());
        match &self.outcome {
            Outcome::Passed => format!("  ok    {:<12} {name:<34} {secs:>8}", self.backend),
            Outcome::Failed(why) => {
                format!("  FAIL  {:<12} {name:<34} {secs:>8}  {why}", self.backend)
            }
        }
    }
}

/// Every case's result, in the order they ran.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The cases.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// The failed cases.
    pub fn failures(&self) -> Vec<&CaseReport> {
        self.cases.iter().filter(|c| !c.passed()).collect()
    }
    /// `N passed, M failed`.
    pub fn summary(&self) -> String {
        let failed = self.failures().len();
        format!(
            "{} passed, {failed} failed, {} cases",
            self.cases.len() - failed,
            self.cases.len()
        )
    }
}

/// What to certify: a plugin library on disk, any other libraries to load
/// beside it, and how to make its stores.
#[derive(Clone, Debug)]
pub struct Target {
    /// The library under test.
    pub library: PathBuf,
    /// How to make a fresh store of each capability.
    pub settings: Settings,
}

impl Target {
    /// The backends to certify among `backends` (the library's): every one,
    /// or the one the settings name. `Err` is one line when the settings
    /// name a backend the library does not provide.
    pub fn chosen(
        &self,
        backends: &[backplane_host::BackendInfo],
    ) -> Result<Vec<backplane_host::BackendDescriptor>, String> {
        let all = backends.iter().map(|b| b.descriptor.clone());
        let Some(name) = &self.settings.backend else {
            return Ok(all.collect());
        };
        let one: Vec<_> = all.filter(|d| &d.name == name).collect();
        if one.is_empty() {
            let names: Vec<&str> = backends
                .iter()
                .map(|b| b.descriptor.name.as_str())
                .collect();
            return Err(format!(
                "the settings name backend '{name}', but {} provides {}: fix [conformance] backend",
                self.library.display(),
                names.join(", ")
            ));
        }
        Ok(one)
    }
}

/// Run every case of every capability that each backend of
/// `target.library` declares (or only the backend the settings name),
/// calling `on_case` as each case ends. `Err` is one line: the library did
/// not load, or the settings name a backend it does not provide.
pub fn run(
    target: &Target,
    options: &RunOptions,
    on_case: &mut dyn FnMut(&CaseReport),
) -> Result<Report, String> {
    let backends = backends_of(std::slice::from_ref(&target.library))?;
    run_on(target, &backends, options, on_case)
}

/// [`run`] on `backends`, the library's as [`backends_of`] found them.
pub fn run_on(
    target: &Target,
    backends: &[backplane_host::BackendInfo],
    options: &RunOptions,
    on_case: &mut dyn FnMut(&CaseReport),
) -> Result<Report, String> {
    let libraries = vec![target.library.clone()];
    let chosen = target.chosen(backends)?;
    let mut report = Report::default();
    for d in &chosen {
        for cap in Capability::ALL {
            if !d.serves(cap) {
                continue;
            }
            let settings = target.settings.clone();
            let options_for = move |scratch: &Scratch, suite: &str| {
                Some(settings.options(cap, suite, scratch, &crate::namespace()))
            };
            report.cases.extend(run_capability(
                &libraries,
                &d.name,
                cap,
                &options_for,
                options,
                on_case,
            ));
        }
    }
    Ok(report)
}

/// The backends the libraries provide (what each declares, its plugin and
/// the core it was built on), or the first library failure.
pub fn backends_of(libraries: &[PathBuf]) -> Result<Vec<backplane_host::BackendInfo>, String> {
    let scratch = Scratch::new();
    let file = write_config(&scratch, libraries, "");
    let storage = Storage::open(&file).map_err(|e| e.to_string())?;
    if let Some(f) = storage.plugin_failures().first() {
        return Err(f.to_string());
    }
    let mine: Vec<_> = storage
        .backends()
        .into_iter()
        .filter(|b| match &b.source {
            backplane_host::PluginSource::Library(p) => libraries.iter().any(|l| same_file(l, p)),
            backplane_host::PluginSource::Static => false,
        })
        .collect();
    if mine.is_empty() {
        return Err(format!(
            "{} loaded but provides no backend: its plugin must declare at least one BackendDescriptor",
            libraries
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ));
    }
    Ok(mine)
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || a.canonicalize()
            .ok()
            .is_some_and(|a| b.canonicalize().ok() == Some(a))
}

/// Every case of `cap` on `backend`. `options_for(scratch, suite)` gives
/// the store section's lines (besides `backend`) for a fresh store, given
/// the options the cases rely on; `None` skips the backend (the function
/// says why).
pub fn run_capability(
    libraries: &[PathBuf],
    backend: &str,
    cap: Capability,
    options_for: &dyn Fn(&Scratch, &str) -> Option<String>,
    options: &RunOptions,
    on_case: &mut dyn FnMut(&CaseReport),
) -> Vec<CaseReport> {
    macro_rules! suite {
        ($cases:expr, $suite:expr, $handle:expr) => {
            run_cases(
                libraries,
                backend,
                cap,
                &$cases,
                $suite,
                $handle,
                options_for,
                options,
                on_case,
            )
        };
    }
    match cap {
        Capability::Relational => suite!(relational::cases(), "", |s| s.relational("s")),
        Capability::Vector => suite!(vector::cases(), "", |s| s.vector("s")),
        Capability::Cache => suite!(cache::cases(), cache::OPTIONS, |s| s.cache("s")),
        Capability::Graph => suite!(graph::cases(), "", |s| s.graph("s")),
    }
}

/// How a case's store handle is taken from its Storage.
pub type Handle<S> = fn(&Storage) -> backplane_host::Result<S>;

/// Every case of `cases` on `backend`, each on a fresh store (see
/// [`run_capability`]); `suite` holds the options the cases rely on.
#[allow(clippy::too_many_arguments)]
pub fn run_cases<S: 'static>(
    libraries: &[PathBuf],
    backend: &str,
    cap: Capability,
    cases: &[Case<S>],
    suite: &str,
    handle: Handle<S>,
    options_for: &dyn Fn(&Scratch, &str) -> Option<String>,
    options: &RunOptions,
    on_case: &mut dyn FnMut(&CaseReport),
) -> Vec<CaseReport> {
    install_panic_capture();
    let mut out = Vec::new();
    for &(name, case) in cases {
        if let Some(only) = &options.only {
            if !format!("{cap}::{name}").contains(only.as_str()) {
                continue;
            }
        }
        let scratch = Scratch::new();
        let Some(opts) = options_for(&scratch, suite) else {
            break;
        };
        let config = write_config(
            &scratch,
            libraries,
            &format!("[{cap}.s]\nbackend = \"{backend}\"\n{opts}\n"),
        );
        let clean_up = options.clean_up;
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        let spawned = std::thread::Builder::new()
            .name(format!("{backend} {cap}::{name}"))
            .spawn(move || {
                let outcome = run_one(&config, cap, case, handle, clean_up);
                let _ = tx.send(outcome);
                drop(scratch);
            });
        let outcome = match spawned {
            Err(e) => Outcome::Failed(format!("cannot start the case's thread: {e}")),
            Ok(_) => match rx.recv_timeout(options.case_timeout) {
                Ok(o) => o,
                Err(mpsc::RecvTimeoutError::Timeout) => Outcome::Failed(format!(
                    "did not finish within {} s: a call hangs, or the store is far slower than the suite expects (raise case_timeout in the settings if it is only slow)",
                    options.case_timeout.as_secs_f64()
                )),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    Outcome::Failed("the case's thread ended without a result".into())
                }
            },
        };
        let r = CaseReport {
            backend: backend.to_string(),
            capability: cap,
            case: name,
            outcome,
            elapsed: started.elapsed(),
        };
        on_case(&r);
        out.push(r);
    }
    out
}

fn run_one<S>(
    config: &Path,
    cap: Capability,
    case: fn(&S),
    handle: Handle<S>,
    clean_up: bool,
) -> Outcome {
    let storage = match Storage::open(config) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("the store did not open: {e}")),
    };
    let store = match handle(&storage) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("the store did not open: {e}")),
    };
    CAPTURING.with(|c| *c.borrow_mut() = Some(String::new()));
    let r = catch_unwind(AssertUnwindSafe(|| case(&store)));
    let message = CAPTURING
        .with(|c| c.borrow_mut().take())
        .unwrap_or_default();
    drop(store);
    if clean_up {
        empty(&storage, cap);
    }
    storage.shutdown();
    match r {
        Ok(()) => Outcome::Passed,
        Err(p) if message.is_empty() => Outcome::Failed(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()),
        ),
        Err(_) => Outcome::Failed(message),
    }
}

thread_local! {
    /// On a case's thread while its case runs: the panic's message.
    static CAPTURING: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic on a case's thread goes into the report, as one line with its
/// place; any other panic is reported as before.
fn install_panic_capture() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let captured = CAPTURING.with(|c| match c.try_borrow_mut() {
                Ok(mut slot) => match slot.as_mut() {
                    Some(msg) => {
                        let text = info
                            .payload()
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| {
                                info.payload().downcast_ref::<&str>().map(|s| s.to_string())
                            })
                            .unwrap_or_else(|| "panicked".into());
                        let place = info
                            .location()
                            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
                            .unwrap_or_default();
                        *msg = format!(
                            "{}{place}",
                            text.lines()
                                .map(str::trim_end)
                                .collect::<Vec<_>>()
                                .join(" | ")
                        );
                        true
                    }
                    None => false,
                },
                Err(_) => false,
            });
            if !captured {
                previous(info);
            }
        }));
    });
}

/// Empty a store through its own interface, best effort.
fn empty(storage: &Storage, cap: Capability) {
    match cap {
        Capability::Relational => {
            let Ok(h) = storage.relational("s") else {
                return;
            };
            let db = h.blocking();
            // Foreign keys may need another order: drop until no progress.
            let mut left = db.tables().unwrap_or_default();
            while !left.is_empty() {
                let before = left.len();
                left.retain(|t| {
                    db.execute(
                        &format!("DROP TABLE \"{}\"", t.replace('"', "\"\"")),
                        &backplane_host::Params::None,
                    )
                    .is_err()
                });
                if left.len() == before {
                    break;
                }
            }
        }
        Capability::Vector => {
            let Ok(h) = storage.vector("s") else { return };
            let v = h.blocking();
            for c in v.list_collections().unwrap_or_default() {
                let _ = v.drop_collection(&c.name);
            }
        }
        Capability::Cache => {
            let Ok(h) = storage.cache("s") else { return };
            let c = h.blocking();
            let mut cursor: Option<String> = None;
            while let Ok(page) = c.list_channels(cursor.as_deref(), 500) {
                for ch in &page.items {
                    let _ = c.clear(&ch.channel);
                }
                match page.next_cursor {
                    Some(n) if !page.items.is_empty() => cursor = Some(n),
                    _ => break,
                }
            }
            let mut cursor: Option<String> = None;
            while let Ok(page) = c.scan_keys(cursor.as_deref(), 500) {
                for e in &page.items {
                    let _ = c.delete(&e.key);
                }
                match page.next_cursor {
                    Some(n) if !page.items.is_empty() => cursor = Some(n),
                    _ => break,
                }
            }
        }
        Capability::Graph => {
            let Ok(h) = storage.graph("s") else { return };
            let g = h.blocking();
            // Deleting a node deletes its edges; pages restart from the top
            // because the rows they pointed past are gone.
            for _ in 0..10_000 {
                let Ok(page) = g.export_nodes(None, 500) else {
                    break;
                };
                if page.items.is_empty() {
                    break;
                }
                let mut gone = 0;
                for n in &page.items {
                    if g.delete_node(&n.id).unwrap_or(false) {
                        gone += 1;
                    }
                }
                if gone == 0 {
                    break;
                }
            }
        }
    }
}

/// Write a plugins.toml into `scratch` that loads `libraries` and holds
/// `stores` (section text); returns its path.
pub fn write_config(scratch: &Scratch, libraries: &[PathBuf], stores: &str) -> PathBuf {
    let libs: Vec<String> = libraries
        .iter()
        .map(|p| toml::Value::String(p.display().to_string()).to_string())
        .collect();
    let text = format!("[plugins]\nload = [{}]\n\n{stores}", libs.join(", "));
    let file = scratch.path(&format!("plugins-{}.toml", crate::namespace()));
    std::fs::write(&file, text).expect("write plugins.toml");
    file
}
