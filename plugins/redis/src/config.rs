//! The redis backend's store section in plugins.toml.
//!
//! Every key is optional. Unknown keys are configuration errors: a setting
//! is never silently ignored.

use backplane_core::kit::redact::{redact_url, Secret};
use backplane_core::{parse_duration, ChannelLimits, Result, StoreConfig};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Default for [`RedisConfig::url`].
pub(crate) const DEFAULT_URL: &str = "redis://127.0.0.1:6379/0";
/// Default for [`RedisConfig::connect_timeout_ms`].
pub(crate) const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 2000;
/// Default for [`RedisConfig::timeout_ms`].
pub(crate) const DEFAULT_TIMEOUT_MS: u64 = 2000;
/// Default for [`RedisConfig::max_messages`].
pub(crate) const DEFAULT_MAX_MESSAGES: usize = 1000;
/// Default for [`RedisConfig::max_value_bytes`]: 16 MiB.
pub(crate) const DEFAULT_MAX_VALUE_BYTES: usize = backplane_core::DEFAULT_MAX_VALUE_BYTES;
/// Default for [`RedisConfig::pool_size`].
pub(crate) const DEFAULT_POOL_SIZE: usize = 16;

/// Options of a `backend = "redis"` store. The `tls` key, kept as the
/// section gives it, is described in the crate's Configuration section.
///
/// ```toml
/// [cache.conversations]
/// backend = "redis"
/// url = "${REDIS_URL:-redis://127.0.0.1:6379/0}"
/// password = "${REDIS_PASSWORD}"
/// prefix = "myapp:conversations:"
/// max_messages = 100
/// ttl = "30m"
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// The server: `redis://[user[:password]@]host[:port][/db]`, or
    /// `redis+unix:///path/to/redis.sock[?db=N]`. Default (when `nodes` is
    /// not given either): `redis://127.0.0.1:6379/0`. `rediss://` asks for
    /// TLS (see the `tls` key).
    pub url: Option<String>,
    /// Redis Cluster: some of the cluster's nodes
    /// (`["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]`); the rest are
    /// discovered from them. Instead of `url`, never with it. Database 0
    /// only, as Redis Cluster has no other.
    pub nodes: Option<Vec<String>>,
    /// The password; when given it replaces the one in `url`. Default: none
    /// (the URL's, if any). Never logged, never shown by `Debug`.
    pub password: Option<Secret<String>>,
    /// The namespace of every key this store touches. Default:
    /// `bp:<store>:` (`bp:conversations:` for `[cache.conversations]`). Two
    /// stores with the same prefix on the same database share their data.
    /// Must not be empty and must not contain `{` or `}` (the plugin places
    /// Redis Cluster hash tags itself).
    pub prefix: Option<String>,
    /// How long to wait for a connection (TCP connect and handshake), in
    /// milliseconds. Default: 2000.
    pub connect_timeout_ms: u64,
    /// How long to wait for a reply (and for a request to be sent), in
    /// milliseconds. Default: 2000. A call that times out fails with
    /// `Unavailable` and the connection is replaced.
    pub timeout_ms: u64,
    /// The most messages kept per conversation channel; adding one more
    /// drops the oldest. Default: 1000. Must be at least 1.
    pub max_messages: usize,
    /// A channel expires this long after its last `add_message` (`"30s"`,
    /// `"15m"`, `"2h"`, `"1d"`, `"250ms"`); Redis enforces it. Default:
    /// none, channels never expire.
    pub ttl: Option<String>,
    /// The largest value (and message content) accepted, in bytes; larger
    /// ones are refused with `InvalidInput` before anything is sent.
    /// Default: 16 MiB (16777216).
    pub max_value_bytes: usize,
    /// The most connections the store opens at once (each one a cluster
    /// connection in cluster mode); calls beyond it wait for a free one,
    /// up to `timeout_ms`. Default: 16.
    pub pool_size: usize,
    /// TLS: `true` (verify the server against the system's trusted
    /// roots), `false` (plain TCP; the default, unless a URL says
    /// `rediss://`), or a table `{ ca_file = "...", cert_file = "...",
    /// key_file = "..." }`: the CA that signed the server's certificate
    /// (instead of the system's roots), and a client certificate and key
    /// for servers that ask for one (both or neither). Paths are relative
    /// to plugins.toml's folder.
    tls: Option<serde_json::Value>,
    /// The TLS settings with their paths resolved (filled in by
    /// [`RedisConfig::from_store`]).
    #[serde(skip)]
    tls_resolved: Option<TlsFiles>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            nodes: None,
            password: None,
            prefix: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_messages: DEFAULT_MAX_MESSAGES,
            ttl: None,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            pool_size: DEFAULT_POOL_SIZE,
            tls: None,
            tls_resolved: None,
        }
    }
}

/// Shows every setting, with the password (the key's and the URL's)
/// replaced by `***`.
impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field(
                "nodes",
                &self
                    .nodes
                    .as_ref()
                    .map(|n| n.iter().map(|u| redact_url(u)).collect::<Vec<_>>()),
            )
            .field("password", &self.password)
            .field("prefix", &self.prefix)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_messages", &self.max_messages)
            .field("ttl", &self.ttl)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("pool_size", &self.pool_size)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// Parse and check a store section.
    pub fn from_store(config: &StoreConfig) -> Result<RedisConfig> {
        let mut parsed: RedisConfig = config.parse()?;
        parsed.check(config)?;
        parsed.tls_resolved = parsed.parse_tls(config)?;
        Ok(parsed)
    }

    /// The TLS settings: `None` for plain TCP.
    pub(crate) fn tls(&self) -> Option<&TlsFiles> {
        self.tls_resolved.as_ref()
    }

    fn parse_tls(&self, config: &StoreConfig) -> Result<Option<TlsFiles>> {
        let url_asks = self.urls().iter().any(|u| {
            let scheme = u.split("://").next().unwrap_or_default();
            scheme.eq_ignore_ascii_case("rediss") || scheme.eq_ignore_ascii_case("valkeys")
        });
        let files = match &self.tls {
            None => url_asks.then(TlsFiles::default),
            Some(serde_json::Value::Bool(false)) => {
                if url_asks {
                    return Err(config.error(
                        "tls = false, but a URL says rediss:// (TLS): write redis:// for plain TCP, or drop `tls = false`",
                    ));
                }
                None
            }
            Some(serde_json::Value::Bool(true)) => Some(TlsFiles::default()),
            Some(serde_json::Value::Object(table)) => {
                let mut files = TlsFiles::default();
                for (k, v) in table {
                    let slot = match k.as_str() {
                        "ca_file" => &mut files.ca_file,
                        "cert_file" => &mut files.cert_file,
                        "key_file" => &mut files.key_file,
                        other => {
                            return Err(config.error(format!(
                                "tls has unknown key '{other}': use ca_file, cert_file and key_file"
                            )))
                        }
                    };
                    let Some(path) = v.as_str().filter(|p| !p.is_empty()) else {
                        return Err(config.error(format!(
                            "tls.{k} must be a file path (a string), like \"certs/ca.crt\""
                        )));
                    };
                    *slot = Some(config.resolve_path(path));
                }
                if files.cert_file.is_some() != files.key_file.is_some() {
                    return Err(config.error(
                        "tls has only one of cert_file and key_file: a client certificate needs both (or neither)",
                    ));
                }
                Some(files)
            }
            Some(other) => {
                return Err(config.error(format!(
                    "tls = {other} is not a TLS setting: write tls = true, tls = false, or tls = {{ ca_file = \"...\" }}"
                )))
            }
        };
        if files.is_some()
            && self
                .urls()
                .iter()
                .any(|u| u.starts_with("redis+unix:") || u.starts_with("unix:"))
        {
            return Err(config.error(
                "TLS over a unix socket is not supported: use a redis:// URL with host and port, or drop the TLS settings",
            ));
        }
        Ok(files)
    }

    fn check(&self, config: &StoreConfig) -> Result<()> {
        if let Some(nodes) = &self.nodes {
            if self.url.is_some() {
                return Err(config.error(
                    "both `url` and `nodes` are given: keep `url` for a single server, or `nodes` for Redis Cluster",
                ));
            }
            if nodes.is_empty() {
                return Err(config.error(
                    "nodes is empty: list at least one node of the cluster, like nodes = [\"redis://127.0.0.1:7000\"]",
                ));
            }
        }
        let prefix = self.prefix(&config.store);
        if prefix.is_empty() {
            return Err(config.error(
                "prefix is empty: give a namespace such as \"myapp:conversations:\" so the store's keys stay apart from other data",
            ));
        }
        if prefix.contains(['{', '}']) {
            return Err(config.error(format!(
                "prefix '{prefix}' contains '{{' or '}}': remove them (the redis backend places Redis Cluster hash tags in key names itself)"
            )));
        }
        if self.connect_timeout_ms == 0 {
            return Err(
                config.error("connect_timeout_ms is 0: give a positive number of milliseconds")
            );
        }
        if self.timeout_ms == 0 {
            return Err(config.error("timeout_ms is 0: give a positive number of milliseconds"));
        }
        if self.max_messages == 0 {
            return Err(config.error("max_messages is 0: give at least 1"));
        }
        if self.max_messages > i64::MAX as usize {
            return Err(config.error("max_messages is too large: give at most 2^63-1"));
        }
        if self.pool_size == 0 {
            return Err(config.error("pool_size is 0: give at least 1 connection"));
        }
        if self.max_value_bytes == 0 {
            return Err(config.error("max_value_bytes is 0: give a positive size in bytes"));
        }
        self.channel_limits()
            .map_err(|e| config.error(e.message()))?;
        Ok(())
    }

    /// The single server's URL: `url`, or the default.
    pub(crate) fn url(&self) -> &str {
        self.url.as_deref().unwrap_or(DEFAULT_URL)
    }

    /// The URLs the store connects to: the cluster's nodes, or the one
    /// server's.
    pub(crate) fn urls(&self) -> Vec<&str> {
        match &self.nodes {
            Some(nodes) => nodes.iter().map(String::as_str).collect(),
            None => vec![self.url()],
        }
    }

    /// The key prefix for store `store`: the configured one, or `bp:<store>:`.
    pub(crate) fn prefix(&self, store: &str) -> String {
        match &self.prefix {
            Some(p) => p.clone(),
            None => format!("bp:{store}:"),
        }
    }

    /// The channel bound and TTL.
    pub(crate) fn channel_limits(&self) -> Result<ChannelLimits> {
        Ok(ChannelLimits {
            max_messages: self.max_messages,
            ttl: self.ttl.as_deref().map(parse_duration).transpose()?,
        })
    }

    /// [`connect_timeout_ms`](Self::connect_timeout_ms) as a duration.
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// [`timeout_ms`](Self::timeout_ms) as a duration.
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// A store's TLS settings, paths resolved. All `None`: TLS, verifying the
/// server against the system's trusted roots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// The CA certificate (PEM) that signed the server's certificate.
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM), for servers that ask for one.
    pub(crate) cert_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    pub(crate) key_file: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::{Capability, ErrorKind};
    use serde_json::json;

    fn cfg(options: serde_json::Value) -> Result<RedisConfig> {
        RedisConfig::from_store(&StoreConfig::new(
            "conv",
            "redis",
            Capability::Cache,
            options,
        ))
    }

    #[test]
    fn defaults() {
        let c = cfg(serde_json::Value::Null).unwrap();
        assert_eq!(c, RedisConfig::default());
        assert_eq!(c.url(), DEFAULT_URL);
        assert_eq!(c.urls(), vec![DEFAULT_URL]);
        assert_eq!(c.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(c.prefix("conv"), "bp:conv:");
        assert_eq!(c.channel_limits().unwrap(), ChannelLimits::default());
        assert_eq!(c.timeout(), Duration::from_secs(2));
        assert_eq!(c.connect_timeout(), Duration::from_secs(2));
        assert_eq!(c.max_value_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn parses_keys() {
        let c = cfg(json!({
            "url": "redis://10.0.0.1:6380/2",
            "password": "s3cret",
            "prefix": "app:",
            "connect_timeout_ms": 100,
            "timeout_ms": 300,
            "max_messages": 5,
            "ttl": "30m",
            "max_value_bytes": 1024,
        }))
        .unwrap();
        assert_eq!(c.prefix("conv"), "app:");
        assert_eq!(
            c.password.as_ref().map(|p| p.expose().as_str()),
            Some("s3cret")
        );
        let l = c.channel_limits().unwrap();
        assert_eq!(l.max_messages, 5);
        assert_eq!(l.ttl, Some(Duration::from_secs(1800)));
        assert_eq!(c.timeout(), Duration::from_millis(300));
        assert!(cfg(json!({"tls": false})).unwrap().tls().is_none());
        assert_eq!(
            cfg(json!({"tls": true})).unwrap().tls(),
            Some(&TlsFiles::default())
        );
        assert!(cfg(json!({"url": "rediss://h:6380"}))
            .unwrap()
            .tls()
            .is_some());
        let c = cfg(
            json!({"tls": {"ca_file": "/etc/ca.crt", "cert_file": "c.pem", "key_file": "k.pem"}}),
        )
        .unwrap();
        let t = c.tls().unwrap();
        assert_eq!(
            t.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.crt"))
        );
        assert!(t.cert_file.as_ref().unwrap().ends_with("c.pem"));
        let c =
            cfg(json!({"nodes": ["redis://a:7000", "redis://b:7001"], "pool_size": 4})).unwrap();
        assert_eq!(c.urls(), vec!["redis://a:7000", "redis://b:7001"]);
        assert_eq!(c.pool_size, 4);
    }

    #[test]
    fn rejects_bad_config() {
        for (opts, needle) in [
            (json!({"urll": "redis://x"}), "urll"),
            (json!({"nodes": []}), "nodes is empty"),
            (json!({"nodes": "redis://a:7000"}), "nodes"),
            (
                json!({"nodes": ["redis://a:7000"], "url": "redis://b"}),
                "both",
            ),
            (json!({"pool_size": 0}), "pool_size"),
            (json!({"tls": {"ca": "x.pem"}}), "unknown key 'ca'"),
            (json!({"tls": {"ca_file": 3}}), "tls.ca_file"),
            (json!({"tls": {"cert_file": "c.pem"}}), "both"),
            (json!({"tls": "yes"}), "not a TLS setting"),
            (json!({"tls": false, "url": "rediss://h:6379"}), "rediss://"),
            (
                json!({"tls": true, "url": "redis+unix:///tmp/r.sock"}),
                "unix socket",
            ),
            (json!({"ttl": "5 parsecs"}), "parsecs"),
            (json!({"max_messages": 0}), "max_messages"),
            (json!({"max_value_bytes": 0}), "max_value_bytes"),
            (json!({"timeout_ms": 0}), "timeout_ms"),
            (json!({"connect_timeout_ms": 0}), "connect_timeout_ms"),
            (json!({"prefix": ""}), "prefix"),
            (json!({"prefix": "a{b}:"}), "hash tags"),
            (json!({"max_messages": "many"}), "many"),
        ] {
            let e = cfg(opts.clone()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{opts}: {e}");
            assert!(e.message().contains(needle), "{opts}: {e}");
        }
    }

    #[test]
    fn debug_hides_passwords() {
        for (opts, shown) in [
            (
                json!({"url": "redis://alice:url-secret@h:6379/0", "password": "key-secret"}),
                "redis://alice:***@h:6379/0",
            ),
            (
                json!({"nodes": ["redis://alice:url-secret@h:7000/0"], "password": "key-secret"}),
                "redis://alice:***@h:7000/0",
            ),
        ] {
            let d = format!("{:?}", cfg(opts).unwrap());
            assert!(
                !d.contains("url-secret") && !d.contains("key-secret"),
                "{d}"
            );
            assert!(d.contains(shown), "{d}");
        }
        let e = cfg(json!({"url": "rediss://:pw@h", "tls": false})).unwrap_err();
        assert!(!e.message().contains("pw@"), "{e}");
    }
}
