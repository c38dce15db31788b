//! Every method of every list, called through a client and the FFI into a
//! plugin linked into this test binary: the plugin's store records which
//! method it received with which arguments (as an error message, so any
//! return type will do), and the test checks it against what the client
//! was called with. A list line whose two halves disagreed on the tag, the
//! argument order or an argument's wire form would fail here.

use super::Arg;
use crate::library::{Library, OpenedStore};
use crate::*;
use serde_json::json;
use std::fmt::Debug;
use std::time::Duration;

struct Recorder;

fn record(method: &str, args: &dyn Debug) -> Error {
    Error::not_found(format!("{method} {args:?}"))
}

/// The recorder's side: every method answers with what it received.
macro_rules! recorder {
    (
        ($($extra:tt)*)
        trait $Trait:ident;
        $(async $Async:ident . $as_async:ident;)?
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty $(=> $into:ty)? $(as $owned:ty)?),*) -> $r:ty;)*
    ) => {
        impl $Trait for Recorder {
            $($extra)*
            $(
                fn $m(&self, $($a: $t),*) -> Result<$r> {
                    Err(record(stringify!($m), &($($a,)*)))
                }
            )*
            fn health(&self) -> Result<Health> {
                Ok(Health::ok(concat!("recorder ", stringify!($Trait))))
            }
        }
    };
}

relational_methods!(recorder!(
    // The boundary's fast path runs the streaming form.
    fn export_rows_into(
        &self,
        snapshot: Option<&str>,
        table: &str,
        cursor: Option<&str>,
        limit: usize,
        _: &mut dyn RowSink,
    ) -> Result<Option<String>> {
        Err(record("export_rows", &(snapshot, table, cursor, limit)))
    }
    fn as_async(&self) -> Option<&dyn AsyncRelational> {
        Some(self)
    }
));

impl AsyncRelational for Recorder {
    fn execute(&self, sql: &str, params: &Params, done: crate::Done<ExecResult>) {
        done(Err(record("async execute", &(sql, params))))
    }
    fn query(&self, sql: &str, params: &Params, done: crate::Done<Rows>) {
        done(Err(record("async query", &(sql, params))))
    }
}
vector_methods!(recorder!());
graph_methods!(recorder!());
cache_methods!(recorder!(
    fn as_async(&self) -> Option<&dyn AsyncCache> {
        Some(self)
    }
));

impl AsyncCache for Recorder {
    fn get(&self, key: &str, done: cache::Done<Option<Vec<u8>>>) {
        done(Err(record("async get", &(key,))))
    }
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>, done: cache::Done<()>) {
        done(Err(record("async set", &(key, value, ttl))))
    }
}

struct RecorderPlugin;

impl Plugin for RecorderPlugin {
    fn name(&self) -> &str {
        "recorder"
    }
    fn version(&self) -> &str {
        "0"
    }
    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![BackendDescriptor::new("recorder", &Capability::ALL)]
    }
    fn open_relational(&self, _: &StoreConfig) -> Result<Box<dyn Relational>> {
        Ok(Box::new(Recorder))
    }
    fn open_vector(&self, _: &StoreConfig) -> Result<Box<dyn Vector>> {
        Ok(Box::new(Recorder))
    }
    fn open_cache(&self, _: &StoreConfig) -> Result<Box<dyn Cache>> {
        Ok(Box::new(Recorder))
    }
    fn open_graph(&self, _: &StoreConfig) -> Result<Box<dyn Graph>> {
        Ok(Box::new(Recorder))
    }
}

crate::export_plugin!(RecorderPlugin);

/// A sample argument, different per parameter name.
trait Sample {
    fn sample(name: &str) -> Self;
}

macro_rules! sample {
    ($($t:ty => |$n:ident| $e:expr;)*) => {$(
        impl Sample for $t {
            fn sample($n: &str) -> Self {
                $e
            }
        }
    )*};
}

fn filter(name: &str) -> Filter {
    Filter::must([
        Condition::matches(name, json!("é")).unwrap(),
        Condition::range(
            "n",
            Range {
                gte: Some(1.5),
                ..Default::default()
            },
        ),
    ])
}

fn params() -> Params {
    Params::Positional(vec![
        Value::Null,
        Value::Integer(i64::MAX),
        Value::Real(-1.5),
        Value::Text("é\u{0}x".into()),
        Value::Blob(vec![0, 255]),
        Value::Bool(true),
        Value::Json(json!({"a": [1, null, {"b": 2.5}]})),
        Value::Timestamp(-5),
    ])
}

sample! {
    String => |n| format!("{n}-é");
    Option<String> => |n| Some(format!("{n}-cursor"));
    Vec<u8> => |n| n.bytes().chain([0, 255]).collect();
    Vec<String> => |n| vec![format!("{n}-1"), String::new(), format!("{n}-3")];
    Vec<(String, Vec<u8>)> => |n| vec![(n.into(), vec![1, 2]), ("b".into(), vec![])];
    u32 => |n| n.len() as u32 + 7;
    usize => |n| n.len() + 11;
    Duration => |_n| Duration::new(3, 500);
    Option<Duration> => |_n| Some(Duration::from_millis(1500));
    Distance => |_n| Distance::Dot;
    Direction => |_n| Direction::Incoming;
    Message => |n| Message::new("user", "hi").with_id(n).with_metadata(json!({"k": [1, {"x": null}]}));
    Vec<Message> => |n| vec![Message::sample(n), Message::new("assistant", "")];
    VectorRecord => |n| VectorRecord::new(n, vec![0.5, -1.25, f32::MIN_POSITIVE, f32::MAX])
        .with_payload(json!({"a": {"b": [1, 2]}}))
        .with_document("doc é");
    Vec<VectorRecord> => |n| vec![VectorRecord::sample(n), VectorRecord::new("2", vec![0.0; 4])];
    Filter => |n| filter(n);
    Option<Filter> => |n| Some(filter(n));
    SearchRequest => |n| SearchRequest::new(vec![1.0, -0.0, 3.5], 4).with_filter(filter(n));
    Vec<SearchRequest> => |n| vec![SearchRequest::sample(n), SearchRequest::new(vec![2.0], 1)];
    serde_json::Value => |n| json!({"name": n, "list": [1, 2.5, "x", null, true], "deep": {"a": {}}});
    Vec<NewNode> => |n| vec![NewNode::new("Person", json!({"n": n})).with_id(n), NewNode::new("X", json!({}))];
    Vec<NewEdge> => |n| vec![NewEdge::new("a", n, "knows").with_properties(json!({"w": 0.5}))];
    NodeQuery => |n| NodeQuery { label: Some(n.into()), filter: Some(filter(n)), text: Some("t".into()), limit: 3 };
    Params => |n| Params::named([(format!(":{n}"), Value::Integer(1)), ("b".into(), Value::Json(json!([1])))]);
    Vec<Params> => |_n| vec![params(), params(), Params::None];
    Vec<Statement> => |n| vec![Statement::new(format!("UPDATE {n}"), params()), Statement::new("SELECT 1", ())];
    Vec<Migration> => |n| vec![Migration::new(1, n, "CREATE TABLE t (x)"), Migration::new(2, "two", "")];
    bool => |n| n.len() % 2 == 0;
    Vec<Vec<Value>> => |_n| vec![match params() { Params::Positional(v) => v, _ => unreachable!() }, vec![]];
    Vec<TableSchema> => |n| vec![TableSchema {
        name: n.into(),
        columns: vec![ColumnInfo::new("id", ColumnType::Integer), ColumnInfo::new("j", ColumnType::Json)],
        primary_key: vec!["id".into()],
        indexes: vec![IndexInfo { name: "ix".into(), columns: vec!["j".into()], unique: true }],
        foreign_keys: vec![ForeignKey { columns: vec!["id".into()], ref_table: "p".into(), ref_columns: vec!["pid".into()], on_delete: Some("CASCADE".into()) }],
    }];
    Vec<Node> => |n| vec![Node { id: n.into(), label: "L".into(), properties: json!({"a": [1, 2.5]}) }];
    Vec<Edge> => |n| vec![Edge { id: n.into(), from: "a".into(), to: "b".into(), edge_type: "t".into(), properties: json!({}) }];
    Vec<CacheEntry> => |n| vec![CacheEntry { key: n.into(), value: vec![0, 1], ttl: Some(Duration::new(5, 7)) }, CacheEntry { key: "k".into(), value: vec![], ttl: None }];
}

/// Call every method of a list on `$store` and check what the recorder got.
macro_rules! check_all {
    (
        ($store:expr, $dispatch:path)
        trait $Trait:ident;
        $(async $Async:ident . $as_async:ident;)?
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty $(=> $into:ty)? $(as $owned:ty)?),*) -> $r:ty;)*
    ) => {{
        let store: &dyn $Trait = $store;
        let mut checked = Vec::new();
        $(
            $(let $a: <$t as Arg<'_>>::Owned = Sample::sample(stringify!($a));)*
            let expected = format!(
                "{} {:?}",
                stringify!($m),
                ($(<$t as Arg<'_>>::lend(&$a),)*)
            );
            let got = store
                .$m($(<$t as Arg<'_>>::lend(&$a)),*)
                .err()
                .expect("the recorder answers with an error");
            assert_eq!(got.message(), expected, "{}::{}", stringify!($Trait), stringify!($m));
            assert_eq!(got.store(), Some("s"), "errors name the store");
            // The plain encoding of the same call, straight to the dispatcher.
            let req = super::request($tag, &($(<$t as Arg<'_>>::to_wire(<$t as Arg<'_>>::lend(&$a)),)*));
            let plain = $dispatch(&Recorder, &req).err().expect("an error");
            assert_eq!(plain.message(), expected, "{}::{} (plain)", stringify!($Trait), stringify!($m));
            checked.push(stringify!($m));
        )*
        assert!(store.health().unwrap().healthy);
        checked
    }};
}

fn open(capability: Capability) -> OpenedStore {
    let lib = Library::linked()
        .into_iter()
        .map(|r| r.expect("the recorder plugin constructs"))
        .find(|l| l.info().name == "recorder")
        .expect("the recorder plugin is linked into the test binary");
    lib.open(&StoreConfig::new("s", "recorder", capability, json!({})))
        .expect("open")
}

#[test]
fn every_relational_call_arrives_as_sent() {
    let OpenedStore::Relational(s) = open(Capability::Relational) else {
        panic!("a relational store")
    };
    let checked = relational_methods!(check_all!(&*s, super::relational::dispatch));
    assert!(checked.contains(&"execute") && checked.contains(&"restore"));
    let a = s
        .as_async()
        .expect("the recorder serves execute and query without blocking");
    let params = Params::Positional(vec![Value::Integer(7), Value::Text("x".into())]);
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    a.execute(
        "UPDATE t SET a = ? WHERE b = ?",
        &params,
        Box::new(move |r| tx.send(r.err().unwrap()).unwrap()),
    );
    a.query(
        "SELECT ?, ?",
        &params,
        Box::new(move |r| tx2.send(r.err().unwrap()).unwrap()),
    );
    let got: Vec<String> = rx.iter().take(2).map(|e| e.message().to_string()).collect();
    assert_eq!(
        got,
        [
            format!(
                "async execute {:?}",
                ("UPDATE t SET a = ? WHERE b = ?", &params)
            ),
            format!("async query {:?}", ("SELECT ?, ?", &params)),
        ]
    );
}

#[test]
fn every_vector_call_arrives_as_sent() {
    let OpenedStore::Vector(s) = open(Capability::Vector) else {
        panic!("a vector store")
    };
    let checked = vector_methods!(check_all!(&*s, super::vector::dispatch));
    assert!(checked.contains(&"upsert") && checked.contains(&"scroll"));
}

#[test]
fn every_graph_call_arrives_as_sent() {
    let OpenedStore::Graph(s) = open(Capability::Graph) else {
        panic!("a graph store")
    };
    let checked = graph_methods!(check_all!(&*s, super::graph::dispatch));
    assert!(checked.contains(&"create_nodes") && checked.contains(&"export_edges"));
}

#[test]
fn every_cache_call_arrives_as_sent_both_ways() {
    let OpenedStore::Cache(s) = open(Capability::Cache) else {
        panic!("a cache store")
    };
    let checked = cache_methods!(check_all!(&*s, super::cache::dispatch));
    assert!(checked.contains(&"get") && checked.contains(&"add_messages"));
    let a = s
        .as_async()
        .expect("the recorder serves get and set without blocking");
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    a.get("k", Box::new(move |r| tx.send(r.err().unwrap()).unwrap()));
    a.set(
        "k",
        b"v",
        Some(Duration::new(1, 2)),
        Box::new(move |r| tx2.send(r.err().unwrap()).unwrap()),
    );
    let got: Vec<String> = rx.iter().take(2).map(|e| e.message().to_string()).collect();
    assert_eq!(
        got,
        [
            r#"async get ("k",)"#.to_string(),
            format!(
                "async set {:?}",
                ("k", b"v".as_slice(), Some(Duration::new(1, 2)))
            )
        ]
    );
}

#[test]
fn an_unknown_tag_is_one_clear_error() {
    let e = super::cache::dispatch(&Recorder, &super::request(999, &())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incompatible);
    assert!(e.message().contains("does not know Cache call 999"), "{e}");
}
