//! The memory backend's store section in plugins.toml.
//!
//! Every key is optional. Keys belong to one capability; a key given to a
//! store of another capability (say `max_messages` on a vector store) is a
//! configuration error, like an unknown key, so a typo or a misplaced
//! setting never goes unnoticed.

use backplane_core::{parse_duration, Capability, ChannelLimits, Distance, Result, StoreConfig};
use serde::Deserialize;

/// Default for [`MemoryConfig::max_messages`].
pub(crate) const DEFAULT_MAX_MESSAGES: usize = 1000;
/// Default for [`MemoryConfig::max_value_bytes`]: 16 MiB, as every cache.
pub(crate) const DEFAULT_MAX_VALUE_BYTES: usize = backplane_core::DEFAULT_MAX_VALUE_BYTES;

/// Options of a `backend = "memory"` store.
///
/// ```toml
/// [cache.conversations]
/// backend = "memory"
/// max_messages = 100
/// ttl = "30m"
///
/// [vector.memories]
/// backend = "memory"
/// dimension = 384
/// distance = "cosine"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// Cache: the most messages kept per conversation channel; adding one
    /// more drops the oldest. Default: 1000. Must be at least 1.
    pub max_messages: usize,
    /// Cache: a channel expires this long after its last `add_message`
    /// (`"30s"`, `"15m"`, `"2h"`, `"1d"`, `"250ms"`). Default: none, channels
    /// never expire.
    pub ttl: Option<String>,
    /// Cache: the largest value (and message content) accepted, in bytes;
    /// larger ones are refused with `InvalidInput`. Default: 16 MiB
    /// (16777216).
    pub max_value_bytes: usize,
    /// Vector: the dimension of the default collection. Default: none. Given
    /// together with `distance`, a collection named after the store is
    /// created when the store opens.
    pub dimension: Option<u32>,
    /// Vector: the distance of the default collection: `cosine`, `dot` or
    /// `euclidean`. Default: none. Needs `dimension`.
    pub distance: Option<String>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            max_messages: DEFAULT_MAX_MESSAGES,
            ttl: None,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            dimension: None,
            distance: None,
        }
    }
}

impl MemoryConfig {
    /// Parse and check a store section for the capability it is opened as.
    pub fn from_store(config: &StoreConfig) -> Result<MemoryConfig> {
        let parsed: MemoryConfig = config.parse()?;
        parsed.check(config)?;
        Ok(parsed)
    }

    fn check(&self, config: &StoreConfig) -> Result<()> {
        let defaults = MemoryConfig::default();
        let set_keys = [
            (
                "max_messages",
                Capability::Cache,
                self.max_messages != defaults.max_messages,
            ),
            ("ttl", Capability::Cache, self.ttl.is_some()),
            (
                "max_value_bytes",
                Capability::Cache,
                self.max_value_bytes != defaults.max_value_bytes,
            ),
            ("dimension", Capability::Vector, self.dimension.is_some()),
            ("distance", Capability::Vector, self.distance.is_some()),
        ];
        if let Some((key, owner, _)) = set_keys
            .iter()
            .find(|(_, owner, set)| *set && *owner != config.capability)
        {
            return Err(config.error(format!(
                "key '{key}' applies to {owner} stores only, not to a {} store: remove it",
                config.capability
            )));
        }
        if self.max_messages == 0 {
            return Err(config.error("max_messages is 0: give at least 1"));
        }
        if self.max_value_bytes == 0 {
            return Err(config.error("max_value_bytes is 0: give a positive size in bytes"));
        }
        self.channel_limits()
            .map_err(|e| config.error(e.message()))?;
        match (self.dimension, &self.distance) {
            (Some(0), _) => Err(config.error("dimension is 0: give the embedding model's dimension")),
            (Some(_), None) => Err(config.error(
                "dimension is set but distance is not: add distance = \"cosine\" (or \"dot\", \"euclidean\"), or remove dimension",
            )),
            (None, Some(_)) => Err(config.error(
                "distance is set but dimension is not: add dimension = <the embedding size>, or remove distance",
            )),
            _ => self.default_distance().map(|_| ()).map_err(|e| config.error(e.message())),
        }
    }

    /// The channel bound and TTL for the cache.
    pub fn channel_limits(&self) -> Result<ChannelLimits> {
        Ok(ChannelLimits {
            max_messages: self.max_messages,
            ttl: self.ttl.as_deref().map(parse_duration).transpose()?,
        })
    }

    /// The default collection's dimension and distance, when both are set.
    pub fn default_collection(&self) -> Result<Option<(u32, Distance)>> {
        Ok(match (self.dimension, self.default_distance()?) {
            (Some(d), Some(dist)) => Some((d, dist)),
            _ => None,
        })
    }

    fn default_distance(&self) -> Result<Option<Distance>> {
        self.distance.as_deref().map(Distance::parse).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;
    use serde_json::json;
    use std::time::Duration;

    fn cfg(cap: Capability, options: serde_json::Value) -> Result<MemoryConfig> {
        MemoryConfig::from_store(&StoreConfig::new("s", "memory", cap, options))
    }

    #[test]
    fn defaults() {
        let c = cfg(Capability::Cache, serde_json::Value::Null).unwrap();
        assert_eq!(c, MemoryConfig::default());
        assert_eq!(c.channel_limits().unwrap(), ChannelLimits::default());
        assert_eq!(c.default_collection().unwrap(), None);
    }

    #[test]
    fn parses_keys() {
        let c = cfg(Capability::Cache, json!({"max_messages": 5, "ttl": "30m"})).unwrap();
        let l = c.channel_limits().unwrap();
        assert_eq!(l.max_messages, 5);
        assert_eq!(l.ttl, Some(Duration::from_secs(1800)));
        let c = cfg(
            Capability::Vector,
            json!({"dimension": 3, "distance": "dot"}),
        )
        .unwrap();
        assert_eq!(c.default_collection().unwrap(), Some((3, Distance::Dot)));
    }

    #[test]
    fn rejects_bad_config() {
        for (cap, opts, needle) in [
            (Capability::Cache, json!({"max_mesages": 5}), "max_mesages"),
            (Capability::Cache, json!({"ttl": "5 parsecs"}), "parsecs"),
            (
                Capability::Cache,
                json!({"max_messages": 0}),
                "max_messages",
            ),
            (
                Capability::Cache,
                json!({"dimension": 3, "distance": "dot"}),
                "dimension",
            ),
            (Capability::Vector, json!({"ttl": "1m"}), "ttl"),
            (
                Capability::Graph,
                json!({"max_messages": 3}),
                "max_messages",
            ),
            (Capability::Vector, json!({"dimension": 3}), "distance"),
            (
                Capability::Vector,
                json!({"dimension": 3, "distance": "manhattan"}),
                "manhattan",
            ),
        ] {
            let e = cfg(cap, opts.clone()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{opts}: {e}");
            assert!(e.message().contains(needle), "{opts}: {e}");
        }
    }
}
