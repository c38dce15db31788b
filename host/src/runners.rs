//! A store's own call runners for the async API (the `workers` layer key).
//!
//! The threads and their queue are core's [`Workers`]; this module runs a
//! call on them and awaits its answer.
//!
//! By default the async API runs each blocking store call on tokio's
//! blocking pool: every call is handed to a pool thread, which is woken for
//! it and parks again after it. When many tasks call one store at once, the
//! wake-ups and parkings are most of a short call's cost (a profile of 32
//! tasks making SQLite point selects: 73% of the time in the kernel's
//! scheduler, against 3% in SQLite). With `workers = N` the store owns N
//! threads fed by one queue: a thread that finishes a call takes the next
//! queued one without parking, so a burst from many tasks costs a
//! wake-up only for the answer. A thread that finds the queue empty looks
//! again for a short while (50 µs, `LINGER`) before it parks, so a task that
//! awaits one call at a time, and sends the next as soon as it has the
//! answer, does not pay a park and a wake-up per call either. That suits
//! a backend that serialises its calls anyway (SQLite's one connection per
//! store: `workers = 1`); a backend that can serve many calls at once
//! needs as many workers as it should have calls in flight.
//!
//! The threads are the host's, not the plugin's: every backend gets them,
//! a third party's included, without a change to the plugin boundary, and
//! a call crosses the boundary on them exactly as on tokio's pool. (An
//! embedded backend can also serve its `execute` and `query` from threads
//! of its own, as started calls: core's `kit::served`, which the sqlite and
//! memory plugins use.)
//!
//! The threads are the store's: named `backplane-<store>`, started when
//! the store opens, ended when the last handle to it is dropped (after the
//! calls already queued). A call whose future is dropped still runs, as on
//! tokio's pool, and its answer is dropped. A panic in a call is that
//! call's `Panicked` error; the thread goes on with the next call.

use backplane_core::kit::workers::{Job, Workers};
use backplane_core::{Error, ErrorKind, Result};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The queue of a store's runner threads.
pub(crate) struct Runners {
    workers: Workers,
}

impl Runners {
    /// Start `n` threads for store `name`.
    pub(crate) fn start(name: &str, n: usize) -> Result<Runners> {
        Ok(Runners {
            workers: Workers::start(
                &format!("backplane-{name}"),
                n,
                &format!("store '{name}'"),
                "lower `workers` or raise the process's thread limit",
            )?,
        })
    }

    /// Run `f` on one of the threads; the answer when it has run.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
                let what = backplane_core::kit::text::panic_text(&*p);
                Err(Error::new(
                    ErrorKind::Panicked,
                    format!("a store call panicked in the host: {what}"),
                ))
            });
            let _ = tx.send(r);
        });
        self.workers
            .send(job)
            .map_err(|_| Error::unavailable("the store's worker threads have stopped"))?;
        rx.await.unwrap_or_else(|_| {
            Err(Error::backend(
                "a store call ended without an answer on the store's worker thread: retry",
            ))
        })
    }
}
