//! The plugin as the host drives it: its descriptor, and opening a store
//! of every capability from its section.

use crate::{MemoryPlugin, BACKEND};
use backplane_core::{Capability, Distance, ErrorKind, Plugin, StoreConfig};
use serde_json::json;

fn config(cap: Capability, options: serde_json::Value) -> StoreConfig {
    StoreConfig::new("mem", BACKEND, cap, options)
}

#[test]
fn descriptor() {
    let d = MemoryPlugin::descriptor();
    assert_eq!(d.name, "memory");
    assert!(d.serves(Capability::Vector) && d.serves(Capability::Cache));
    assert!(d.serves(Capability::Graph) && d.serves(Capability::Relational));
    assert!(d.native_ttl && !d.persistent);
    assert_eq!(MemoryPlugin.backends(), vec![d]);
}

#[test]
fn opens_every_capability() {
    let p = MemoryPlugin;
    assert!(p
        .open_cache(&config(Capability::Cache, json!({"ttl": "1m"})))
        .is_ok());
    assert!(p
        .open_graph(&config(Capability::Graph, json!(null)))
        .is_ok());
    let v = p
        .open_vector(&config(Capability::Vector, json!({})))
        .unwrap();
    assert!(v.list_collections().unwrap().is_empty());
    let r = p
        .open_relational(&config(Capability::Relational, json!({})))
        .unwrap();
    assert!(r.tables().unwrap().is_empty());
    let e = p
        .open_relational(&config(Capability::Relational, json!({"ttl": "1m"})))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[test]
fn default_collection() {
    let v = MemoryPlugin
        .open_vector(&config(
            Capability::Vector,
            json!({"dimension": 4, "distance": "euclidean"}),
        ))
        .unwrap();
    let info = v.collection_info("mem").unwrap();
    assert_eq!(
        (info.dimension, info.distance, info.count),
        (4, Distance::Euclidean, 0)
    );
    let bad = StoreConfig::new(
        "bad.name",
        BACKEND,
        Capability::Vector,
        json!({"dimension": 4, "distance": "dot"}),
    );
    let e = MemoryPlugin.open_vector(&bad).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[test]
fn bad_config_is_a_config_error() {
    let e = MemoryPlugin
        .open_cache(&config(Capability::Cache, json!({"url": "redis://x"})))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("url"), "{e}");
}
