//! The store section of a `chroma` vector store in plugins.toml.
//!
//! ```toml
//! [vector.memories]
//! backend = "chroma"
//! url = "http://127.0.0.1:8000"       # the server's HTTP address
//! tenant = "default_tenant"           # Chroma's defaults
//! database = "default_database"
//! token_env = "CHROMA_TOKEN"          # the auth token, from the environment
//! collection_prefix = "myapp-"        # Chroma collection = prefix + name
//! dimension = 384                     # create collection `memories` on open
//! ```

use backplane_core::kit::net::{collection_prefix, http_url, millis, secret_from_env};
use backplane_core::kit::redact::{redact_url, Secret};
use backplane_core::{Capability, DefaultCollection, Result, StoreConfig};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Default request timeout.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default connect timeout.
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// A `chroma` store section. `Debug` shows the url with any password in
/// it masked; the token is never in the section (only the name of the
/// variable holding it).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChromaConfig {
    /// The server's address, e.g. `http://127.0.0.1:8000`; `https://` for
    /// TLS.
    pub url: String,
    /// The tenant. Default `default_tenant`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The database in the tenant. Default `default_database`.
    #[serde(default)]
    pub database: Option<String>,
    /// The environment variable holding the auth token, when the server
    /// requires one.
    #[serde(default)]
    pub token_env: Option<String>,
    /// The header the token goes in: `x-chroma-token` (default) or
    /// `authorization` (sent as `Bearer <token>`), as the server's
    /// `CHROMA_AUTH_TOKEN_TRANSPORT_HEADER` says.
    #[serde(default)]
    pub token_header: Option<String>,
    /// Request timeout in milliseconds. Default 30000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Connect timeout in milliseconds. Default 5000.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Prepended to every collection name on the server, so several
    /// applications (or stores) can share one database. Default empty.
    #[serde(default)]
    pub collection_prefix: Option<String>,
    /// A collection named after the store is created on open with this
    /// dimension, if absent.
    #[serde(default)]
    pub dimension: Option<u32>,
    /// That collection's distance: `cosine` (default), `dot`, `euclidean`.
    #[serde(default)]
    pub distance: Option<String>,
}

impl fmt::Debug for ChromaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChromaConfig")
            .field("url", &redact_url(&self.url))
            .field("tenant", &self.tenant)
            .field("database", &self.database)
            .field("token_env", &self.token_env)
            .field("token_header", &self.token_header)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("collection_prefix", &self.collection_prefix)
            .field("dimension", &self.dimension)
            .field("distance", &self.distance)
            .finish()
    }
}

/// Where the token goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenHeader {
    /// `x-chroma-token: <token>`.
    XChromaToken,
    /// `authorization: Bearer <token>`.
    Authorization,
}

/// What a store does with the section, checked. (No `Debug`: it holds the
/// token.)
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The server's address, without a trailing `/`.
    pub(crate) url: String,
    /// The tenant.
    pub(crate) tenant: String,
    /// The database.
    pub(crate) database: String,
    /// The token and where it goes.
    pub(crate) token: Option<(Secret<String>, TokenHeader)>,
    /// Request timeout.
    pub(crate) timeout: Duration,
    /// Connect timeout.
    pub(crate) connect_timeout: Duration,
    /// Collection name prefix.
    pub(crate) prefix: String,
    /// The collection to create on open.
    pub(crate) default: Option<DefaultCollection>,
}

/// Whether `s` is a tenant or database name Chroma accepts: 3–63 ASCII
/// letters, digits, `.`, `_`, `-`.
fn chroma_name(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ChromaConfig {
    /// Parse and check a store section.
    pub(crate) fn settings(store: &StoreConfig) -> Result<Settings> {
        store.require(Capability::Vector, "chroma")?;
        let cfg: ChromaConfig = store.parse()?;
        let url = http_url(
            store,
            &cfg.url,
            "the Chroma server's address",
            "http://127.0.0.1:8000",
        )?;
        let tenant = cfg.tenant.unwrap_or_else(|| "default_tenant".into());
        let database = cfg.database.unwrap_or_else(|| "default_database".into());
        for (key, v) in [("tenant", &tenant), ("database", &database)] {
            if !chroma_name(v) {
                return Err(store.error(format!(
                    "`{key}` is \"{v}\": Chroma names are 3-63 ASCII letters, digits, '.', '_' or '-'"
                )));
            }
        }
        let header = match cfg.token_header.as_deref() {
            None => TokenHeader::XChromaToken,
            Some(h) if h.eq_ignore_ascii_case("x-chroma-token") => TokenHeader::XChromaToken,
            Some(h) if h.eq_ignore_ascii_case("authorization") => TokenHeader::Authorization,
            Some(other) => {
                return Err(store.error(format!(
                    "`token_header` is \"{other}\": use \"x-chroma-token\" or \"authorization\", as the server's CHROMA_AUTH_TOKEN_TRANSPORT_HEADER says"
                )))
            }
        };
        let token = match &cfg.token_env {
            None => {
                if cfg.token_header.is_some() {
                    return Err(store.error(
                        "`token_header` is set without `token_env`: name the environment variable holding the token, or remove `token_header`",
                    ));
                }
                None
            }
            Some(var) => Some((secret_from_env(store, "token_env", var, "auth")?, header)),
        };
        let prefix = collection_prefix(store, cfg.collection_prefix.as_deref(), b"_-.")?;
        if prefix.starts_with(['_', '-', '.']) {
            return Err(store.error(format!(
                "`collection_prefix` is \"{prefix}\": begin it with a letter or digit (Chroma's names do)"
            )));
        }
        Ok(Settings {
            url,
            tenant,
            database,
            token,
            timeout: millis(store, cfg.timeout_ms, DEFAULT_TIMEOUT_MS, "timeout_ms")?,
            connect_timeout: millis(
                store,
                cfg.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT_MS,
                "connect_timeout_ms",
            )?,
            prefix,
            default: DefaultCollection::from_options(
                store,
                cfg.dimension,
                cfg.distance.as_deref(),
            )?,
        })
    }
}
