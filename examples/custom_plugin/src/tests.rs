//! The plugin opening a store, and the store itself.

use crate::backend::CustomKv;
use crate::CustomPlugin;
use backplane_core::{Cache, Capability, ErrorKind, Message, Plugin, StoreConfig};
use std::time::Duration;

#[test]
fn opens_with_defaults() {
    // `Default::default()` is JSON `null`: a section with no keys.
    let config = StoreConfig::new("s", "custom-kv", Capability::Cache, Default::default());
    let c = CustomPlugin.open_cache(&config).unwrap();
    assert_eq!(c.health().unwrap().detail, "hello: custom-kv in memory");
    assert!(CustomPlugin.open_graph(&config).is_err());
}

#[test]
fn keys_and_messages() {
    let limits = backplane_core::ChannelLimits {
        max_messages: 2,
        ttl: Some(Duration::from_millis(200)),
    };
    let c = CustomKv::new("ahoy".into(), limits, 1024);
    assert!(c.health().unwrap().detail.starts_with("ahoy"));
    c.set("k", b"v", None).unwrap();
    assert_eq!(c.get("k").unwrap(), Some(b"v".to_vec()));
    assert!(c.expire("k", Duration::from_millis(1)).unwrap());
    std::thread::sleep(Duration::from_millis(5));
    assert!(!c.exists("k").unwrap());
    assert_eq!(
        c.set("", b"v", None).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let a = c.add_message("ch", &Message::new("user", "one")).unwrap();
    c.add_message("ch", &Message::new("assistant", "two"))
        .unwrap();
    assert_eq!(c.recent("ch", 1, None).unwrap()[0].content, "two");
    assert_eq!(c.recent("ch", 5, Some(&a.id)).unwrap().len(), 1);
    let dup = c.add_message("ch", &a).unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::AlreadyExists);
    c.add_message("ch", &Message::new("user", "three")).unwrap();
    let kept: Vec<_> = c.recent("ch", 9, None).unwrap();
    assert_eq!((kept[0].content.as_str(), kept.len()), ("two", 2));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        c.recent("ch", 9, None).unwrap().is_empty(),
        "the channel expired"
    );
    c.add_message("ch", &Message::new("user", "four")).unwrap();
    assert_eq!(c.clear("ch").unwrap(), 1);
}
