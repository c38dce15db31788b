//! A plugin's own tokio runtime, for a backend whose driver is async
//! (feature `runtime`). The host's tokio is another copy of the crate, so
//! a plugin never runs on it: it starts its own, and the host's async API
//! reaches it through started calls or blocking ones.

use crate::{Error, Result};

/// A multi-thread runtime with one worker thread named
/// `backplane-<plugin>`, its I/O and timers on. One worker is what every
/// shipped plugin measured fastest with on two cores (BENCHMARKS.md); the
/// runtime's blocking pool takes what must not hold that thread.
pub fn runtime(plugin: &str) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(format!("backplane-{plugin}"))
        .enable_all()
        .build()
        .map_err(|e| Error::backend(format!("the {plugin} plugin cannot start its runtime: {e}")))
}
