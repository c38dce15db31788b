//! `backplane-plugin-custom-example` is the smallest complete Backplane
//! plugin: a backend named `custom-kv` that serves the cache capability from
//! a `Mutex<HashMap>`. Copy it to start a plugin of your own.
//!
//! Writing a plugin takes four steps:
//!
//! 1. **A crate** with `crate-type = ["cdylib", "rlib"]` that depends on
//!    `backplane-core` (and whatever your backend needs). `cdylib` makes the
//!    library the host loads from its plugin folders; `rlib` lets an
//!    application link the plugin statically instead.
//! 2. **A config struct** ([`CustomConfig`]): the keys of the store's
//!    section in plugins.toml, with `#[serde(deny_unknown_fields)]` and a
//!    documented default for each. [`StoreConfig::parse`] turns the section
//!    into it, and turns mistakes into `Config` errors that name the store.
//! 3. **The capability traits** ([`CustomKv`] implements
//!    [`Cache`]): plain Rust, synchronous, returning
//!    [`backplane_core::Error`] whose kind says what went wrong
//!    (`InvalidInput`, `NotFound`, …) and whose message says what to do.
//! 4. **A [`Plugin`]** ([`CustomPlugin`]) that describes its backends and
//!    opens stores, registered with exactly one
//!    [`export_plugin!`](backplane_core::export_plugin). The macro and
//!    `backplane-core` do the rest: the ABI and its load-time checks,
//!    catching panics, and forwarding the `log` crate's output to the host
//!    (add `log` to your dependencies to use it).
//!
//! Then `cargo build --release`, put the library on a `search_paths` folder
//! and name the backend in plugins.toml (see the README).
//!
//! # Layout
//!
//! - `lib.rs`: [`CustomPlugin`], its descriptor, and the export.
//! - [`config`]: [`CustomConfig`], the store section.
//! - [`backend`]: [`CustomKv`], the cache implementation.
#![warn(missing_docs)]

pub mod backend;
pub mod config;

pub use backend::CustomKv;
pub use config::CustomConfig;

use backplane_core::{BackendDescriptor, Cache, Capability, Plugin, Result, StoreConfig};

/// The plugin: one backend, `custom-kv`, serving the cache capability.
#[derive(Debug, Default)]
pub struct CustomPlugin;

impl Plugin for CustomPlugin {
    fn name(&self) -> &str {
        "custom-example"
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        let mut kv = BackendDescriptor::new("custom-kv", &[Capability::Cache])
            .describe("example plugin: a cache in a Mutex<HashMap>, not persistent");
        kv.native_ttl = true; // expiry is enforced here, not by the host
        vec![kv]
    }

    // Only `open_cache` is overridden: the defaults of the other `open_*`
    // methods answer that the capability is not served.
    fn open_cache(&self, config: &StoreConfig) -> Result<Box<dyn Cache>> {
        let (cfg, limits) = CustomConfig::from_store(config)?;
        Ok(Box::new(CustomKv::new(cfg.greeting, limits)))
    }
}

backplane_core::export_plugin!(CustomPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::{ErrorKind, Message};
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
        let c = CustomKv::new("ahoy".into(), limits);
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
}
