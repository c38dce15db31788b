//! The `metrics` layer's series, in the Prometheus text format (the
//! OpenMetrics flavour Prometheus negotiates), and the optional listener.
//!
//! One [`Metrics`] per `Storage`: a `prometheus-client` registry whose
//! families every store with the layer writes into, keyed by store,
//! capability, backend and operation. A store's handles to its series are
//! made on its first call of each operation, so a call costs a few atomic
//! adds and one histogram observation.
//!
//! | series | what |
//! |---|---|
//! | `backplane_calls_total` | calls, by store and operation |
//! | `backplane_errors_total` | failed calls, by error kind |
//! | `backplane_call_duration_seconds` | latency histogram (50 µs … 10 min) |
//! | `backplane_records_total` | records returned or written, where a call moves records |
//! | `backplane_bytes_total` | value bytes returned by cache reads |
//! | `backplane_retries_total` | repeated attempts made by the retry layer |
//! | `backplane_in_flight` | calls running now, per store |

use crate::layer::Op;
use backplane_core::{Capability, Error, ErrorKind, Result};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: String,
    capability: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    store: String,
    capability: String,
    backend: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    store: String,
    capability: String,
    backend: String,
    operation: String,
    kind: String,
}

fn latency_histogram() -> Histogram {
    // 50 µs × 2.5^k: 50 µs, 125 µs, … up to about 10 minutes.
    Histogram::new(exponential_buckets(0.000_05, 2.5, 14))
}

/// The series of one `Storage`.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    duration: Family<CallLabels, Histogram, fn() -> Histogram>,
    records: Family<CallLabels, Counter>,
    bytes: Family<CallLabels, Counter>,
    retries: Family<CallLabels, Counter>,
    in_flight: Family<StoreLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with Backplane's families.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            calls: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            records: Family::default(),
            bytes: Family::default(),
            retries: Family::default(),
            in_flight: Family::default(),
            registry: Registry::default(),
        };
        registry.register("backplane_calls", "Store calls", m.calls.clone());
        registry.register(
            "backplane_errors",
            "Store calls that failed, by error kind",
            m.errors.clone(),
        );
        registry.register(
            "backplane_call_duration_seconds",
            "Time a store call took, retries included",
            m.duration.clone(),
        );
        registry.register(
            "backplane_records",
            "Records returned or written by store calls",
            m.records.clone(),
        );
        registry.register(
            "backplane_bytes",
            "Value bytes returned by cache reads",
            m.bytes.clone(),
        );
        registry.register(
            "backplane_retries",
            "Attempts repeated by the retry layer",
            m.retries.clone(),
        );
        registry.register(
            "backplane_in_flight",
            "Store calls running now",
            m.in_flight.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Every series, in the text format Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// One store's handles into the families.
pub struct StoreMetrics {
    metrics: Arc<Metrics>,
    store: StoreLabels,
    in_flight: Gauge,
    /// Indexed by the operation's tag (0 is health).
    ops: Vec<OnceLock<OpMetrics>>,
}

/// One operation's series.
pub struct OpMetrics {
    labels: CallLabels,
    pub calls: Counter,
    pub duration: Histogram,
    pub records: Counter,
    pub bytes: Counter,
    pub retries: Counter,
}

impl StoreMetrics {
    pub fn new(metrics: Arc<Metrics>, store: &str, cap: Capability, backend: &str) -> Self {
        let store = StoreLabels {
            store: store.to_string(),
            capability: cap.as_str().to_string(),
            backend: backend.to_string(),
        };
        let in_flight = metrics.in_flight.get_or_create_owned(&store);
        let tags = crate::layer::ops(cap)
            .iter()
            .map(|o| o.tag)
            .max()
            .unwrap_or(0);
        StoreMetrics {
            metrics,
            store,
            in_flight,
            ops: (0..=tags).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    pub fn op(&self, op: Op) -> &OpMetrics {
        self.ops[usize::from(op.tag)].get_or_init(|| {
            let labels = CallLabels {
                store: self.store.store.clone(),
                capability: self.store.capability.clone(),
                backend: self.store.backend.clone(),
                operation: op.name.to_string(),
            };
            let m = &self.metrics;
            OpMetrics {
                calls: m.calls.get_or_create_owned(&labels),
                duration: m.duration.get_or_create_owned(&labels),
                records: m.records.get_or_create_owned(&labels),
                bytes: m.bytes.get_or_create_owned(&labels),
                retries: m.retries.get_or_create_owned(&labels),
                labels,
            }
        })
    }

    pub fn error(&self, op: &OpMetrics, kind: ErrorKind) {
        let l = &op.labels;
        self.metrics
            .errors
            .get_or_create(&ErrorLabels {
                store: l.store.clone(),
                capability: l.capability.clone(),
                backend: l.backend.clone(),
                operation: l.operation.clone(),
                kind: kind_label(kind).to_string(),
            })
            .inc();
    }
}

/// An error kind as a label value (snake case, no spaces).
fn kind_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "not_found",
        ErrorKind::AlreadyExists => "already_exists",
        ErrorKind::InvalidInput => "invalid_input",
        ErrorKind::Unsupported => "unsupported",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Conflict => "conflict",
        ErrorKind::Config => "config",
        ErrorKind::Incompatible => "incompatible",
        ErrorKind::Panicked => "panicked",
        ErrorKind::Backend => "backend",
        ErrorKind::PermissionDenied => "permission_denied",
    }
}

/// The listener of `[metrics] listen`: answers `GET /metrics` with
/// [`Metrics::render`] until dropped.
pub struct Listener {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: std::net::SocketAddr,
}

impl Listener {
    pub fn start(addr: &str, metrics: Arc<Metrics>) -> Result<Listener> {
        let server = tiny_http::Server::http(addr).map_err(|e| {
            Error::config(format!(
                "[metrics] listen = \"{addr}\": cannot listen there ({e}): choose a free port, or remove the key"
            ))
        })?;
        let bound = server.server_addr().to_ip().ok_or_else(|| {
            Error::config(format!(
                "[metrics] listen = \"{addr}\": not an IP address and port"
            ))
        })?;
        let server = Arc::new(server);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("backplane-metrics".into())
            .spawn(move || {
                for req in s.incoming_requests() {
                    let path = req.url().split('?').next().unwrap_or("");
                    let resp = if path == "/metrics" || path == "/" {
                        tiny_http::Response::from_string(metrics.render()).with_header(
                            tiny_http::Header::from_bytes(
                                "Content-Type",
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )
                            .expect("a valid header"),
                        )
                    } else {
                        tiny_http::Response::from_string("not found: the series are at /metrics\n")
                            .with_status_code(404)
                    };
                    let _ = req.respond(resp);
                }
            })
            .map_err(|e| Error::backend(format!("cannot start the metrics listener: {e}")))?;
        log::info!("metrics: serving http://{bound}/metrics");
        Ok(Listener {
            server,
            thread: Some(thread),
            addr: bound,
        })
    }

    /// The address it listens on (the port chosen, for port 0).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
