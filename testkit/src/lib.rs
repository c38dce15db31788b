//! Backplane's behaviour suites as a library: every case of every
//! capability, run on any plugin library through the host the way an
//! application loads it, with a report of what passed, what failed and
//! what was expected.
//!
//! The workspace's own tests and `backplane conformance` share it, so a
//! third-party plugin is held to exactly the cases the shipped ones pass.
//! Nothing here knows a backend by name: how to make a fresh store comes
//! from a [`Settings`] file (or, in the workspace's tests, from a function).
//!
//! # Layout
//!
//! - this file: scratch folders, fresh names, the case type and
//!   [`expect_err`];
//! - [`settings`]: the conformance settings file (TOML) that says how to
//!   make a fresh store of each capability;
//! - [`run`]: the runner: one fresh store per case, each case on a thread
//!   of its own with a time limit, panics captured into the report, the
//!   store emptied through its own interface afterwards;
//! - [`relational`], [`vector`], [`cache`], [`graph`]: the cases.

pub mod cache;
pub mod graph;
pub mod relational;
pub mod run;
pub mod settings;
pub mod vector;

pub use run::{run, run_on, CaseReport, Report, RunOptions, Target};
pub use settings::Settings;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// One case: a name and a function run on a fresh store. A case fails by
/// panicking (an `assert!`), its message saying what was expected.
pub type Case<S> = (&'static str, fn(&S));

/// A fresh, unique name for one case's data (tables, files, keys).
pub fn namespace() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "t{:x}{:x}{}",
        std::process::id(),
        t & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

type CleanUp = Box<dyn FnOnce() + Send>;

/// A scratch folder that is removed when dropped, with clean-up work for
/// what a case created elsewhere (a PostgreSQL schema), run at the same
/// time.
pub struct Scratch(pub PathBuf, Mutex<Vec<CleanUp>>);

impl Scratch {
    /// A new empty folder under the system temp dir.
    pub fn new() -> Scratch {
        Scratch::under(&std::env::temp_dir())
    }
    /// A new empty folder under `parent`.
    pub fn under(parent: &Path) -> Scratch {
        let p = parent.join(format!("backplane-{}", namespace()));
        std::fs::create_dir_all(&p).expect("create scratch folder");
        Scratch(p, Mutex::new(Vec::new()))
    }
    /// Run `f` when the scratch is dropped (after the stores opened on it,
    /// which are declared later and so dropped first).
    pub fn on_drop(&self, f: impl FnOnce() + Send + 'static) {
        self.1
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(f));
    }
    /// A path inside it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for f in self
            .1
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            f();
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Assert that `r` failed with `kind`, returning the error.
#[track_caller]
pub fn expect_err<T: std::fmt::Debug>(
    r: backplane_host::Result<T>,
    kind: backplane_host::ErrorKind,
) -> backplane_host::Error {
    match r {
        Ok(v) => panic!("expected a {kind:?} error, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "wrong error kind: {e}");
            assert!(e.store().is_some(), "error does not name its store: {e}");
            e
        }
    }
}
