//! Operations layers: what an operator adds to any store, of any
//! capability, in plugins.toml, with no change to application code.
//!
//! ```toml
//! [layers]                      # every store (a store's own table wins, key by key)
//! metrics = true
//! tracing = true
//!
//! [metrics]
//! listen = "127.0.0.1:9464"     # optional: serve GET /metrics
//!
//! [relational.user_data.layers]
//! timeout = "2s"                # deadline per call, retries included
//! concurrency = 32              # calls in flight at once; more wait (within the deadline)
//! workers = 1                   # the async API's calls run on 1 thread the store owns
//! retry = { attempts = 4, min_delay = "50ms", max_delay = "2s" }
//! chaos = { fail = 0.1, latency = "20ms", latency_fraction = 0.5 }
//! ```
//!
//! One layer type per store, [`Ops`], does all of them in a fixed order,
//! outermost first: tracing span → metrics → concurrency limit → deadline →
//! retry → chaos → the store. So the metrics count a call once with its
//! final outcome (and its retries apart), the deadline bounds the retries
//! too, and injected faults are what the retry layer sees, as an outage
//! would be.
//!
//! # Layout
//!
//! - this file: the layer settings ([`LayerSpec`], parsed and checked) and
//!   [`Ops`], the layer;
//! - `safety`: which operations a retry may repeat, per capability;
//! - `metrics`: the Prometheus series and the optional listener;
//! - `moved`: records and bytes a call moved, for the metrics.
//!
//! # Deadlines
//!
//! A store call cannot be interrupted inside a plugin, so a deadline frees
//! the caller, not the backend: on the blocking API the call runs on a
//! worker thread and the caller stops waiting at the deadline; on the
//! async API the future ends at the deadline (the call runs on tokio's
//! blocking pool, or on the store's own `workers`). Either way the caller
//! gets an `Unavailable` error that names the store, the operation and the
//! deadline; the abandoned call finishes in the background (or fails when
//! the backend's own timeouts end it) and its result is dropped.

pub(crate) mod metrics;
mod moved;
pub mod safety;

use crate::layer::{layer, Op, Owned};
use backplane_core::kit::text::plain_serde;
use backplane_core::{Capability, Error, ErrorKind, Health, Result};
use moved::Moved;
use serde::Deserialize;
use std::cell::Cell;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The layers of one store, as configured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerSpec {
    /// Prometheus series for every call.
    pub metrics: bool,
    /// A `tracing` span for every call.
    pub tracing: bool,
    /// A deadline per call.
    pub timeout: Option<Duration>,
    /// At most this many calls in flight.
    pub concurrency: Option<usize>,
    /// Retries of `Unavailable` errors, for operations safe to repeat.
    pub retry: Option<RetrySpec>,
    /// Injected faults.
    pub chaos: Option<ChaosSpec>,
    /// Threads of the store's own that run its async API's calls (see
    /// the host's `runners` module); none: tokio's blocking pool.
    pub workers: Option<usize>,
}

/// The `retry` layer's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrySpec {
    /// Attempts in all, the first included (at least 2).
    pub attempts: u32,
    /// The first wait; each next one doubles, with jitter.
    pub min_delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// The operations retried (default: every one safe to repeat).
    pub operations: Vec<&'static str>,
}

/// The `chaos` layer's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct ChaosSpec {
    /// The fraction of calls that fail with `Unavailable` (0 to 1).
    pub fail: f64,
    /// Latency added to a call.
    pub latency: Option<Duration>,
    /// The fraction of calls that get the latency (0 to 1; default 1).
    pub latency_fraction: f64,
    /// Seed for the draws, for a repeatable run.
    pub seed: Option<u64>,
    /// The operations affected (default: all).
    pub operations: Vec<&'static str>,
}

/// The names of the layers, as written in plugins.toml.
pub const LAYER_NAMES: [&str; 7] = [
    "metrics",
    "tracing",
    "timeout",
    "concurrency",
    "retry",
    "chaos",
    "workers",
];

/// The most threads `workers` may give a store.
const MAX_WORKERS: u64 = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayers {
    metrics: Option<bool>,
    tracing: Option<bool>,
    timeout: Option<String>,
    concurrency: Option<u64>,
    retry: Option<serde_json::Value>,
    chaos: Option<serde_json::Value>,
    workers: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Option<u32>,
    min_delay: Option<String>,
    max_delay: Option<String>,
    operations: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChaos {
    fail: Option<f64>,
    latency: Option<String>,
    latency_fraction: Option<f64>,
    seed: Option<u64>,
    operations: Option<Vec<String>>,
}

fn from_json<T: serde::de::DeserializeOwned>(
    v: serde_json::Value,
    what: &str,
) -> std::result::Result<T, String> {
    serde_json::from_value(v).map_err(|e| {
        let msg = plain_serde(&e.to_string());
        if what.is_empty() {
            msg.replacen("unknown key", "unknown layer", 1)
                .replace("(the keys are", "(the layers are")
        } else {
            format!("{what}: {msg}")
        }
    })
}

fn duration(s: &str, what: &str) -> std::result::Result<Duration, String> {
    backplane_core::parse_duration(s).map_err(|e| format!("{what}: {}", e.message()))
}

fn fraction(v: f64, what: &str) -> std::result::Result<f64, String> {
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{what} = {v}: write a fraction from 0 to 1 (0.1 is one call in ten)"
        ))
    }
}

/// Check operation names against the capability's, keeping `allowed` ones.
fn operations(
    cap: Capability,
    names: &[String],
    what: &str,
    allowed: &[&'static str],
    why_not: &str,
) -> std::result::Result<Vec<&'static str>, String> {
    names
        .iter()
        .map(|n| match safety::op_named(cap, n) {
            None => Err(format!(
                "{what}: a {cap} store has no operation '{n}' (its operations are: {})",
                crate::layer::ops(cap)
                    .iter()
                    .map(|o| o.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some(op) if !allowed.contains(&op.name) => Err(format!(
                "{what}: '{n}' {why_not}: leave it out; the ones allowed are: {}",
                allowed.join(", ")
            )),
            Some(op) => Ok(op.name),
        })
        .collect()
}

impl LayerSpec {
    /// Whether no layer that wraps the store is on (`workers` does not:
    /// it is where the async API runs the store's calls).
    pub fn is_empty(&self) -> bool {
        *self
            == LayerSpec {
                workers: self.workers,
                ..LayerSpec::default()
            }
    }

    /// The layers that are on, by name, for `backplane check`.
    pub fn names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.metrics {
            v.push("metrics".to_string());
        }
        if self.tracing {
            v.push("tracing".to_string());
        }
        if let Some(t) = self.timeout {
            v.push(format!("timeout {}", humantime::format_duration(t)));
        }
        if let Some(c) = self.concurrency {
            v.push(format!("concurrency {c}"));
        }
        if let Some(r) = &self.retry {
            v.push(format!("retry ×{}", r.attempts));
        }
        if let Some(c) = &self.chaos {
            v.push(format!("chaos (fail {})", c.fail));
        }
        if let Some(n) = self.workers {
            v.push(format!("workers {n}"));
        }
        v
    }

    /// Parse a store's `layers` table (its keys already merged over the
    /// file's `[layers]`). Errors are one line, without the section.
    pub fn parse(cap: Capability, v: &serde_json::Value) -> std::result::Result<LayerSpec, String> {
        let mut map = match v {
            serde_json::Value::Object(m) => m.clone(),
            other => {
                return Err(format!(
                    "layers must be a table, like layers = {{ metrics = true }}, not {other}"
                ))
            }
        };
        // `retry = false` switches off what [layers] turned on; `retry =
        // true` takes the defaults.
        for k in ["timeout", "concurrency", "retry", "chaos", "workers"] {
            match map.get(k) {
                Some(serde_json::Value::Bool(false)) => {
                    map.remove(k);
                }
                Some(serde_json::Value::Bool(true)) if k == "retry" => {
                    map.insert(k.into(), serde_json::json!({}));
                }
                _ => {}
            }
        }
        // Each layer's value in words, before serde would say it without
        // naming the layer.
        for (k, v) in &map {
            let want = match k.as_str() {
                "metrics" | "tracing" if !v.is_boolean() => "true or false",
                "timeout" if !v.is_string() => "a duration such as \"2s\"",
                "concurrency" if !v.is_u64() => "a whole number, 1 or more",
                "workers" if !v.is_u64() => "a whole number, 1 to 256",
                "retry" | "chaos" if !v.is_object() => "a table, like { attempts = 3 }, or false",
                _ => continue,
            };
            return Err(format!("{k} = {v}: write {want}"));
        }
        let raw: RawLayers = from_json(serde_json::Value::Object(map), "")?;
        let mut spec = LayerSpec {
            metrics: raw.metrics.unwrap_or(false),
            tracing: raw.tracing.unwrap_or(false),
            timeout: raw.timeout.map(|t| duration(&t, "timeout")).transpose()?,
            concurrency: match raw.concurrency {
                Some(0) => return Err(
                    "concurrency = 0 would let no call through: write 1 or more, or leave it out"
                        .into(),
                ),
                Some(n) => Some(
                    usize::try_from(n).map_err(|_| format!("concurrency = {n} is too large"))?,
                ),
                None => None,
            },
            retry: None,
            chaos: None,
            workers: match raw.workers {
                Some(n) if (1..=MAX_WORKERS).contains(&n) => Some(n as usize),
                Some(n) => return Err(format!(
                    "workers = {n}: write 1 to {MAX_WORKERS} (threads of the store's own for the async API), or leave it out to use tokio's blocking pool"
                )),
                None => None,
            },
        };
        if let Some(r) = raw.retry {
            let r: RawRetry = from_json(r, "retry")?;
            let safe = safety::safe_to_repeat(cap);
            let attempts = r.attempts.unwrap_or(3);
            if !(2..=100).contains(&attempts) {
                return Err(format!(
                    "retry: attempts = {attempts}: write 2 to 100 (attempts in all, the first included), or leave retry out"
                ));
            }
            let min_delay = duration(r.min_delay.as_deref().unwrap_or("50ms"), "retry: min_delay")?;
            let max_delay = duration(r.max_delay.as_deref().unwrap_or("2s"), "retry: max_delay")?;
            if max_delay < min_delay {
                return Err("retry: max_delay is shorter than min_delay: raise it".into());
            }
            let operations = match r.operations {
                None => safe.to_vec(),
                Some(names) => operations(
                    cap,
                    &names,
                    "retry",
                    safe,
                    &format!("is not safe to repeat on a {cap} store (it may have taken effect before the error, and would take effect twice)"),
                )?,
            };
            spec.retry = Some(RetrySpec {
                attempts,
                min_delay,
                max_delay,
                operations,
            });
        }
        if let Some(c) = raw.chaos {
            let c: RawChaos = from_json(c, "chaos")?;
            let all: Vec<&'static str> = crate::layer::ops(cap).iter().map(|o| o.name).collect();
            let chaos = ChaosSpec {
                fail: fraction(c.fail.unwrap_or(0.0), "chaos: fail")?,
                latency: c
                    .latency
                    .map(|l| duration(&l, "chaos: latency"))
                    .transpose()?,
                latency_fraction: fraction(
                    c.latency_fraction.unwrap_or(1.0),
                    "chaos: latency_fraction",
                )?,
                seed: c.seed,
                operations: match c.operations {
                    None => all.clone(),
                    Some(names) => operations(cap, &names, "chaos", &all, "")?,
                },
            };
            if chaos.fail == 0.0 && chaos.latency.is_none() {
                return Err("chaos does nothing as written: give it fail = 0.1 (a fraction of calls that fail) or latency = \"20ms\"".into());
            }
            spec.chaos = Some(chaos);
        }
        Ok(spec)
    }
}

thread_local! {
    /// Set while an async call runs on tokio's blocking pool under a
    /// deadline the async side enforces, so the layer does not hand the
    /// call to a worker a second time.
    static DEADLINE_HELD: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with the deadline already enforced by the caller.
pub(crate) fn with_deadline_held<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            DEADLINE_HELD.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(DEADLINE_HELD.with(|c| c.replace(true)));
    f()
}

/// The runtime whose blocking pool runs calls under a deadline for the
/// blocking API, and whose timer the async API's deadlines use (so they
/// work in an application runtime built without tokio's timer). Its one
/// thread only drives the timer.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<&'static tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let rt: &'static tokio::runtime::Runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .thread_name("backplane-deadline")
                .build()
                .expect("the deadline runtime starts"),
        ));
        std::thread::Builder::new()
            .name("backplane-timer".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .expect("the timer thread starts");
        rt
    })
}

/// `fut`, or None when `t` passes first. Uses the deadline runtime's
/// timer, so the application's runtime needs none.
pub(crate) async fn deadline<F: std::future::Future>(t: Duration, fut: F) -> Option<F::Output> {
    let timed = {
        let _in = runtime().enter();
        tokio::time::timeout(t, fut)
    };
    timed.await.ok()
}

/// The error of a call that missed its deadline.
pub(crate) fn deadline_error(cap: Capability, store: &str, op: &str, t: Duration) -> Error {
    Error::unavailable(format!(
        "{cap} store '{store}': {op} did not finish within {} (the store's timeout layer): the backend may be down, frozen or overloaded; the call may still complete in the background",
        humantime::format_duration(t)
    ))
}

/// A counting semaphore for the concurrency limit.
struct Limit {
    max: usize,
    used: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a>(&'a Limit);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.used.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

impl Limit {
    fn acquire(&self, until: Option<Instant>) -> Option<Permit<'_>> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        while *used >= self.max {
            used = match until {
                None => self.freed.wait(used).unwrap_or_else(|p| p.into_inner()),
                Some(t) => {
                    let left = t.checked_duration_since(Instant::now())?;
                    self.freed
                        .wait_timeout(used, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
        *used += 1;
        Some(Permit(self))
    }
}

struct Chaos {
    spec: ChaosSpec,
    rng: Mutex<fastrand::Rng>,
}

impl Chaos {
    /// Sleep and fail as the settings say, for one attempt of `op`.
    fn strike(&self, ctx: &Ctx, op: Op) -> Result<()> {
        if !self.spec.operations.contains(&op.name) {
            return Ok(());
        }
        let (slow, fail) = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            (
                rng.f64() < self.spec.latency_fraction,
                rng.f64() < self.spec.fail,
            )
        };
        if let (Some(l), true) = (self.spec.latency, slow) {
            std::thread::sleep(l);
        }
        if fail {
            return Err(Error::unavailable(format!(
                "{} store '{}': {} failed on purpose (the store's chaos layer, fail = {})",
                ctx.cap, ctx.store, op.name, self.spec.fail
            )));
        }
        Ok(())
    }
}

struct Retry {
    spec: RetrySpec,
}

/// What a store's layers need at each call.
struct Ctx {
    cap: Capability,
    store: String,
    backend: String,
    tracing: bool,
    metrics: Option<metrics::StoreMetrics>,
    timeout: Option<Duration>,
    limit: Option<Limit>,
    retry: Option<Retry>,
    chaos: Option<Chaos>,
}

impl Ctx {
    /// The call with retries and injected faults, no later than `until`.
    fn attempts<D: ?Sized, T>(
        &self,
        s: &D,
        op: Op,
        call: &dyn Fn(&D) -> Result<T>,
        until: Option<Instant>,
    ) -> Result<T> {
        let once = || {
            if let Some(c) = &self.chaos {
                c.strike(self, op)?;
            }
            call(s)
        };
        let Some(r) = self
            .retry
            .as_ref()
            .filter(|r| r.spec.operations.contains(&op.name))
        else {
            return once();
        };
        use backon::BlockingRetryable;
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(r.spec.min_delay)
            .with_max_delay(r.spec.max_delay)
            .with_max_times(r.spec.attempts as usize - 1)
            .with_jitter();
        once.retry(backoff)
            .sleep(std::thread::sleep)
            .when(|e: &Error| {
                e.kind() == ErrorKind::Unavailable && until.is_none_or(|t| Instant::now() < t)
            })
            .notify(|e: &Error, wait: Duration| {
                if let Some(m) = &self.metrics {
                    m.op(op).retries.inc();
                }
                log::debug!(
                    "{} store '{}': {} failed ({}); trying again in {wait:?}",
                    self.cap,
                    self.store,
                    op.name,
                    e.message()
                );
            })
            .call()
    }
}

/// A store with operations layers.
pub(crate) struct Ops<D: ?Sized> {
    inner: Arc<D>,
    ctx: Arc<Ctx>,
}

impl<D: ?Sized + Send + Sync + 'static> Ops<D> {
    /// Wrap `inner` in the layers of `spec`; `metrics` is the Storage's
    /// registry.
    pub fn new(
        inner: Arc<D>,
        spec: &LayerSpec,
        cap: Capability,
        store: &str,
        backend: &str,
        registry: &Arc<metrics::Metrics>,
    ) -> Self {
        Ops {
            inner,
            ctx: Arc::new(Ctx {
                cap,
                store: store.to_string(),
                backend: backend.to_string(),
                tracing: spec.tracing,
                metrics: spec
                    .metrics
                    .then(|| metrics::StoreMetrics::new(registry.clone(), store, cap, backend)),
                timeout: spec.timeout,
                limit: spec.concurrency.map(|max| Limit {
                    max,
                    used: Mutex::new(0),
                    freed: Condvar::new(),
                }),
                retry: spec.retry.clone().map(|spec| Retry { spec }),
                chaos: spec.chaos.clone().map(|spec| Chaos {
                    rng: Mutex::new(match spec.seed {
                        Some(s) => fastrand::Rng::with_seed(s),
                        None => fastrand::Rng::new(),
                    }),
                    spec,
                }),
            }),
        }
    }

    fn route<T: Moved + Send + 'static>(
        &self,
        op: Op,
        call: impl Fn(&D) -> Result<T>,
        owned: impl FnOnce() -> Owned<D, T>,
    ) -> Result<T> {
        let ctx = &*self.ctx;
        let span = ctx.tracing.then(|| {
            tracing::info_span!(
                "store_call",
                store = %ctx.store,
                capability = ctx.cap.as_str(),
                backend = %ctx.backend,
                operation = op.name,
                outcome = tracing::field::Empty,
                duration_us = tracing::field::Empty,
            )
        });
        let _entered = span.as_ref().map(|s| s.enter());
        let started = Instant::now();
        let m = ctx.metrics.as_ref().map(|m| (m, m.op(op)));
        if let Some((sm, _)) = m {
            sm.in_flight().inc();
        }
        let result = self.run(op, call, owned);
        if let Some((sm, om)) = m {
            sm.in_flight().dec();
            om.calls.inc();
            om.duration.observe(started.elapsed().as_secs_f64());
            match &result {
                Ok(v) => {
                    om.records.inc_by(v.records());
                    om.bytes.inc_by(v.bytes());
                }
                Err(e) => sm.error(om, e.kind()),
            }
        }
        if let Some(s) = &span {
            s.record("duration_us", started.elapsed().as_micros() as u64);
            match &result {
                Ok(_) => s.record("outcome", "ok"),
                Err(e) => s.record("outcome", e.kind().as_str()),
            };
        }
        result
    }

    /// Limit, deadline, retries, faults, the call.
    fn run<T: Send + 'static>(
        &self,
        op: Op,
        call: impl Fn(&D) -> Result<T>,
        owned: impl FnOnce() -> Owned<D, T>,
    ) -> Result<T> {
        let ctx = &*self.ctx;
        let held = DEADLINE_HELD.with(|c| c.get());
        let until = ctx.timeout.map(|t| Instant::now() + t);
        let _permit = match &ctx.limit {
            None => None,
            Some(l) => Some(l.acquire(until).ok_or_else(|| {
                Error::unavailable(format!(
                    "{} store '{}': {} waited its whole timeout for one of the {} calls in flight to finish (the store's concurrency layer): raise concurrency or timeout",
                    ctx.cap, ctx.store, op.name, l.max
                ))
            })?),
        };
        let (Some(t), false) = (ctx.timeout, held) else {
            return ctx.attempts(&*self.inner, op, &call, until);
        };
        // The blocking API under a deadline: the call moves to a worker.
        let owned = owned().call;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let inner = self.inner.clone();
        let worker_ctx = self.ctx.clone();
        runtime().spawn_blocking(move || {
            let r = worker_ctx.attempts(&*inner, op, &*owned, until);
            let _ = tx.send(r);
        });
        match rx.recv_timeout(t) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(deadline_error(ctx.cap, &ctx.store, op.name, t))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::new(
                ErrorKind::Panicked,
                format!(
                    "{} store '{}': {} panicked on the worker that ran it under the store's deadline",
                    ctx.cap, ctx.store, op.name
                ),
            )),
        }
    }
}

macro_rules! capability {
    ($($Trait:ident $methods:ident),*) => {$(
        impl Ops<dyn backplane_core::$Trait> {
            fn layer_health(&self) -> Result<Health> {
                self.route(
                    Op { tag: 0, name: "health" },
                    |s: &(dyn backplane_core::$Trait + 'static)| s.health(),
                    || Owned {
                        request: backplane_core::boundary::request(0, &()).into(),
                        call: Box::new(|s: &(dyn backplane_core::$Trait + 'static)| s.health()),
                    },
                )
            }
        }
        backplane_core::$methods!(layer!(Ops<dyn backplane_core::$Trait>));
    )*};
}
capability!(
    Relational relational_methods,
    Vector vector_methods,
    Cache cache_methods,
    Graph graph_methods
);
