//! The `tracing` layer: one span per store call, named `store_call`, with
//! the store, capability, backend, operation, outcome and duration; the
//! plugin's own log records (which cross the boundary as log records)
//! arrive as events inside the span of the call that made them, once the
//! application bridges `log` into `tracing` (tracing-log's `LogTracer`,
//! which `tracing_subscriber`'s `init()` installs).

use backplane_behavior::{library, Scratch};
use backplane_host::{Params, Storage};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

impl Visit for Fields {
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.insert(
            f.name().to_string(),
            format!("{v:?}").trim_matches('"').to_string(),
        );
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().to_string(), v.to_string());
    }
}

#[derive(Default)]
struct Seen {
    /// Closed spans: name and fields.
    spans: Vec<(String, BTreeMap<String, String>)>,
    /// Events: their message and the fields of the span they were in.
    events: Vec<(String, Option<BTreeMap<String, String>>)>,
}

struct Capture(Arc<Mutex<Seen>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        ctx.span(id).unwrap().extensions_mut().insert(f);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).unwrap();
        let mut ext = span.extensions_mut();
        values.record(ext.get_mut::<Fields>().unwrap());
    }
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let parent = ctx
            .event_span(event)
            .and_then(|s| s.extensions().get::<Fields>().map(|f| f.0.clone()));
        let msg = f.0.get("message").cloned().unwrap_or_default();
        self.0.lock().unwrap().events.push((msg, parent));
    }
    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).unwrap();
        let fields = span
            .extensions()
            .get::<Fields>()
            .map(|f| f.0.clone())
            .unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .spans
            .push((span.name().to_string(), fields));
    }
}

#[test]
fn a_span_per_call_with_the_plugins_records_inside() {
    tracing_log::LogTracer::init().expect("the log bridge installs");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let s = Scratch::new();
    let file = s.path("plugins.toml");
    std::fs::write(
        &file,
        format!(
            "[plugins]\nload = [\"{}\"]\n\n[relational.users]\nbackend = \"sqlite\"\npath = \"u.db\"\n[relational.users.layers]\ntracing = true\n",
            library("backplane_plugin_sqlite").display()
        ),
    )
    .unwrap();
    let storage = Storage::open(&file).unwrap();
    let users = storage.relational("users").unwrap();
    users
        .blocking()
        .execute("CREATE TABLE t (x)", &Params::None)
        .unwrap();
    users
        .blocking()
        .query("SELECT nope FROM t", &Params::None)
        .unwrap_err();
    let backup = s.path("u.backup.db");
    users.blocking().backup(backup.to_str().unwrap()).unwrap();
    users.blocking().restore(backup.to_str().unwrap()).unwrap();

    let seen = seen.lock().unwrap();
    let calls: Vec<_> = seen
        .spans
        .iter()
        .filter(|(n, _)| n == "store_call")
        .collect();
    let op = |name: &str| {
        calls
            .iter()
            .find(|(_, f)| f.get("operation").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("a span for {name}: {calls:?}"))
            .1
            .clone()
    };
    let exec = op("execute");
    assert_eq!(exec["store"], "users");
    assert_eq!(exec["backend"], "sqlite");
    assert_eq!(exec["capability"], "relational");
    assert_eq!(exec["outcome"], "ok");
    assert!(exec["duration_us"].parse::<u64>().is_ok(), "{exec:?}");
    assert_ne!(
        op("query")["outcome"],
        "ok",
        "the failed query says how it failed"
    );
    // The sqlite plugin logs the restore; the record is an event in the
    // restore's span.
    let (msg, parent) = seen
        .events
        .iter()
        .find(|(m, _)| m.contains("restored"))
        .unwrap_or_else(|| panic!("the plugin's record arrived: {:?}", seen.events));
    let parent = parent
        .as_ref()
        .unwrap_or_else(|| panic!("'{msg}' is inside a span"));
    assert_eq!(
        parent.get("operation").map(String::as_str),
        Some("restore"),
        "{parent:?}"
    );
}
