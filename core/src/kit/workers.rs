//! Worker threads fed by one queue, for calls that must not run on the
//! caller's thread: the host's `workers` layer, and a plugin serving its
//! started calls ([`crate::kit::served`]).
//!
//! A thread that finishes a job takes the next queued one without
//! parking, so a burst of calls from many tasks costs no wake-up per call
//! on this side. A thread that finds the queue empty looks again for a
//! short while ([`LINGER`]) before it parks, so a caller that awaits one
//! call at a time, and sends the next as soon as it has the answer, does
//! not pay a park and a wake-up per call either (measured: BENCHMARKS.md,
//! "The worker looks again before it parks"). The threads end when the
//! [`Workers`] is dropped, after the jobs already queued. Built on the
//! standard library's channel: with more than one thread, the one waiting
//! holds the receiving end and the others wait for it.

use crate::{Error, Result};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One job for a worker thread.
pub type Job = Box<dyn FnOnce() + Send>;

/// How long a worker that has just finished a job keeps looking for the
/// next one before it parks.
pub const LINGER: Duration = Duration::from_micros(50);

/// The next job, looking for [`LINGER`] before parking; `None` when every
/// sender is gone and the queue is empty.
fn next_job(jobs: &Receiver<Job>) -> Option<Job> {
    let since = Instant::now();
    loop {
        match jobs.try_recv() {
            Ok(job) => return Some(job),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) if since.elapsed() < LINGER => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return jobs.recv().ok(),
        }
    }
}

/// The queue of a set of worker threads.
pub struct Workers {
    queue: Sender<Job>,
}

impl Workers {
    /// Start `n` threads named `name` (at least one). `what` names them in
    /// the error when the system refuses a thread, which ends with `fix`.
    pub fn start(name: &str, n: usize, what: &str, fix: &str) -> Result<Workers> {
        let (queue, jobs) = channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        let n = n.max(1);
        for i in 0..n {
            let jobs = jobs.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || loop {
                    // One thread at a time waits on the queue.
                    let job = {
                        let jobs = jobs.lock().unwrap_or_else(|p| p.into_inner());
                        next_job(&jobs)
                    };
                    match job {
                        Some(job) => job(),
                        None => return,
                    }
                })
                .map_err(|e| {
                    Error::unavailable(format!(
                        "{what}: cannot start worker thread {} of {n} ({e}): {fix}",
                        i + 1
                    ))
                })?;
        }
        Ok(Workers { queue })
    }

    /// Queue `job`; it is handed back if the threads have stopped.
    pub fn send(&self, job: Job) -> std::result::Result<(), Job> {
        self.queue.send(job).map_err(|e| e.0)
    }
}
