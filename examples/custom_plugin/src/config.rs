//! The store section this backend reads from plugins.toml.

use backplane_core::{parse_duration, ChannelLimits, Result, StoreConfig};
use serde::Deserialize;

/// Options of a `backend = "custom-kv"` store.
///
/// ```toml
/// [cache.scratch]
/// backend = "custom-kv"
/// greeting = "hi there"
/// max_messages = 100
/// ttl = "30m"
/// ```
///
/// `deny_unknown_fields` makes a misspelt key a configuration error instead
/// of a silently ignored one; `default` makes every key optional.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CustomConfig {
    /// A word the store reports in its `health()` detail, to show that a
    /// setting made it from plugins.toml to the plugin. Default: `"hello"`.
    pub greeting: String,
    /// The most messages kept per channel; older ones are dropped. Every
    /// cache backend reads this key (see `backplane_core::ChannelLimits`).
    /// Default: 1000.
    pub max_messages: usize,
    /// A channel expires this long after its last message (`"30s"`,
    /// `"15m"`, `"2h"`). Every cache backend reads this key. Default: none.
    pub ttl: Option<String>,
    /// The largest value or message kept, in bytes; a larger one is
    /// refused. Every cache backend reads this key. Default: 16 MiB.
    pub max_value_bytes: usize,
}

impl Default for CustomConfig {
    fn default() -> Self {
        CustomConfig {
            greeting: "hello".to_string(),
            max_messages: ChannelLimits::default().max_messages,
            ttl: None,
            max_value_bytes: backplane_core::DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

impl CustomConfig {
    /// Parse a store section, and check the values serde cannot.
    pub fn from_store(config: &StoreConfig) -> Result<(CustomConfig, ChannelLimits)> {
        let cfg: CustomConfig = config.parse()?;
        if cfg.max_messages == 0 {
            return Err(config.error("max_messages is 0: give at least 1"));
        }
        if cfg.max_value_bytes == 0 {
            return Err(config.error("max_value_bytes is 0: give a positive size in bytes"));
        }
        let ttl = match &cfg.ttl {
            Some(t) => Some(parse_duration(t).map_err(|e| config.error(e.message()))?),
            None => None,
        };
        let limits = ChannelLimits {
            max_messages: cfg.max_messages,
            ttl,
        };
        Ok((cfg, limits))
    }
}
