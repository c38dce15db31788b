//! Tests of the plugin as the host sees it: its descriptor, and stores
//! opened with no server to answer.

use super::*;
use backplane_core::ErrorKind;
use serde_json::json;

fn config(cap: Capability, options: serde_json::Value) -> StoreConfig {
    StoreConfig::new("conv", BACKEND, cap, options)
}

#[test]
fn descriptor() {
    let d = RedisPlugin::descriptor();
    assert_eq!(d.name, "redis");
    assert_eq!(d.capabilities, vec![Capability::Cache]);
    assert!(d.native_ttl && d.persistent);
    assert!(d.filter_ops.is_empty() && d.distances.is_empty());
    assert_eq!(RedisPlugin.backends(), vec![d]);
}

#[test]
fn serves_only_cache() {
    for cap in [
        Capability::Relational,
        Capability::Vector,
        Capability::Graph,
    ] {
        let e = match cap {
            Capability::Relational => RedisPlugin.open_relational(&config(cap, json!({}))).err(),
            Capability::Vector => RedisPlugin.open_vector(&config(cap, json!({}))).err(),
            _ => RedisPlugin.open_graph(&config(cap, json!({}))).err(),
        };
        assert_eq!(e.unwrap().kind(), ErrorKind::Unsupported);
    }
}

#[test]
fn malformed_url_is_a_config_error_at_open() {
    for url in ["http://h:6379", "redis://h:notaport", "nonsense"] {
        let e = RedisPlugin
            .open_cache(&config(Capability::Cache, json!({ "url": url })))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Config, "{url}: {e}");
        assert!(e.message().contains("url"), "{url}: {e}");
    }
}

/// Nothing listens on port 1: opening works, calls fail with a
/// retryable error, and keep failing the same way (a fresh connection
/// attempt each time).
#[test]
fn server_down_opens_then_unavailable() {
    let c = RedisPlugin
        .open_cache(&config(
            Capability::Cache,
            json!({"url": "redis://127.0.0.1:1/0", "connect_timeout_ms": 500}),
        ))
        .unwrap();
    for _ in 0..2 {
        let e = c.get("k").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.kind().is_retryable());
        assert!(e.message().contains("127.0.0.1:1"), "{e}");
        assert!(e.message().contains("retried"), "{e}");
    }
    assert_eq!(c.health().unwrap_err().kind(), ErrorKind::Unavailable);
    // Validation still comes first.
    assert_eq!(c.get("").unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn password_never_in_errors() {
    let c = RedisPlugin
        .open_cache(&config(
            Capability::Cache,
            json!({"url": "redis://u:hunter2@127.0.0.1:1/0", "password": "swordfish"}),
        ))
        .unwrap();
    let e = c.get("k").unwrap_err();
    let text = format!("{e} {e:?}");
    assert!(
        !text.contains("hunter2") && !text.contains("swordfish"),
        "{text}"
    );
}
