//! The store section of a `files` store in plugins.toml.
//!
//! ```toml
//! [graph.knowledge]
//! backend = "files"
//! root = "data/knowledge"            # a folder (relative to this file)
//!
//! [cache.conversations]
//! backend = "files"
//! root = "s3://my-bucket/conversations"
//! region = "eu-west-1"
//! max_messages = 100
//! ttl = "30m"
//!
//! [graph.shared]
//! backend = "files"
//! root = "azblob://my-container/graph"
//! account_name = "myaccount"         # key from AZURE_STORAGE_KEY
//! ```

use backplane_core::kit::net::millis;
use backplane_core::kit::redact::{redact_url, Secret};
use backplane_core::{parse_duration, Capability, ChannelLimits, Result, StoreConfig};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default request timeout of object stores.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Default connect timeout of object stores.
const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Default of `max_messages`.
const DEFAULT_MAX_MESSAGES: usize = 1000;

/// A `files` store section. Secrets are never in it: only the names of the
/// environment variables or files holding them. `Debug` masks any password
/// written into `endpoint`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Where the files live: a folder (relative to plugins.toml),
    /// `s3://bucket/prefix` or `azblob://container/prefix`.
    pub root: String,
    /// Write the JSON indented, for people to read (default true).
    #[serde(default)]
    pub pretty: Option<bool>,
    /// Object stores: the service's address (an S3-compatible server, or
    /// Azure's blob endpoint, e.g. `https://acct.blob.core.windows.net`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3: the region (default `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// S3: the variable holding the access key id (default
    /// `AWS_ACCESS_KEY_ID`).
    #[serde(default)]
    pub access_key_id_env: Option<String>,
    /// S3: a file holding the access key id instead (a mounted secret).
    #[serde(default)]
    pub access_key_id_file: Option<String>,
    /// S3: the variable holding the secret access key (default
    /// `AWS_SECRET_ACCESS_KEY`).
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// S3: a file holding the secret access key instead.
    #[serde(default)]
    pub secret_access_key_file: Option<String>,
    /// S3: send requests unsigned (a public bucket); default false.
    #[serde(default)]
    pub anonymous: Option<bool>,
    /// Azure: the storage account.
    #[serde(default)]
    pub account_name: Option<String>,
    /// Azure: the variable holding the account key (default
    /// `AZURE_STORAGE_KEY`).
    #[serde(default)]
    pub account_key_env: Option<String>,
    /// Azure: a file holding the account key instead.
    #[serde(default)]
    pub account_key_file: Option<String>,
    /// Object stores: the timeout of each request, in milliseconds
    /// (default 30000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Object stores: the connect timeout, in milliseconds (default 5000).
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Cache: the most messages kept per channel (default 1000).
    #[serde(default)]
    pub max_messages: Option<usize>,
    /// Cache: a channel expires this long after its last message.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Cache: the largest value accepted, in bytes (default 16 MiB).
    #[serde(default)]
    pub max_value_bytes: Option<usize>,
}

impl std::fmt::Debug for FilesConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesConfig")
            .field("root", &self.root)
            .field("pretty", &self.pretty)
            .field("endpoint", &self.endpoint.as_deref().map(redact_url))
            .field("region", &self.region)
            .field("access_key_id_env", &self.access_key_id_env)
            .field("access_key_id_file", &self.access_key_id_file)
            .field("secret_access_key_env", &self.secret_access_key_env)
            .field("secret_access_key_file", &self.secret_access_key_file)
            .field("anonymous", &self.anonymous)
            .field("account_name", &self.account_name)
            .field("account_key_env", &self.account_key_env)
            .field("account_key_file", &self.account_key_file)
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("max_messages", &self.max_messages)
            .field("ttl", &self.ttl)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish()
    }
}

/// Where the files live, checked.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A local folder.
    Folder(PathBuf),
    /// An S3 bucket (or an S3-compatible server's).
    S3 {
        bucket: String,
        prefix: String,
        endpoint: Option<String>,
        region: String,
        access_key_id: Option<Secret<String>>,
        secret_access_key: Option<Secret<String>>,
        anonymous: bool,
    },
    /// An Azure Blob Storage container.
    Azblob {
        container: String,
        prefix: String,
        endpoint: String,
        account_name: String,
        account_key: Option<Secret<String>>,
    },
}

impl Location {
    /// The location as messages show it (no secret in it).
    pub(crate) fn shown(&self) -> String {
        match self {
            Location::Folder(p) => p.display().to_string(),
            Location::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
            Location::Azblob {
                container, prefix, ..
            } => format!("azblob://{container}/{prefix}"),
        }
    }
}

/// What a store does with the section, checked. (No `Debug`: it holds
/// the object stores' keys.)
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) location: Location,
    pub(crate) pretty: bool,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) limits: ChannelLimits,
    pub(crate) max_value_bytes: usize,
}

/// A secret from the file `file` (its first line) if given, else from the
/// environment variable `var` (`default` unless the section names one),
/// `None` when neither holds it.
fn secret(
    store: &StoreConfig,
    name: &str,
    var: Option<&str>,
    default: &str,
    file: Option<&str>,
) -> Result<Option<Secret<String>>> {
    if let Some(file) = file {
        if var.is_some() {
            return Err(store.error(format!(
                "both `{name}_env` and `{name}_file` are set: keep one"
            )));
        }
        let path = store.resolve_path(file);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            store.error(format!(
                "`{name}_file` is {}, which cannot be read ({e}): give the file holding the {}",
                path.display(),
                name.replace('_', " ")
            ))
        })?;
        let value = text.lines().next().unwrap_or("").trim().to_string();
        if value.is_empty() {
            return Err(store.error(format!("`{name}_file` {} is empty", path.display())));
        }
        return Ok(Some(Secret::new(value)));
    }
    Ok(std::env::var(var.unwrap_or(default))
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new))
}

/// `bucket/prefix` split, the prefix with no leading `/` and, when not
/// empty, a trailing one.
fn split_bucket(rest: &str) -> (String, String) {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    (bucket.to_string(), prefix)
}

impl FilesConfig {
    /// Parse and check a store section.
    pub(crate) fn settings(store: &StoreConfig) -> Result<Settings> {
        if !matches!(store.capability, Capability::Graph | Capability::Cache) {
            return Err(store.error(format!(
                "backend \"files\" serves graph and cache stores only, not {}: move this section under [graph.<name>] or [cache.<name>], or pick another backend",
                store.capability
            )));
        }
        let cfg: FilesConfig = store.parse()?;
        let root = cfg.root.trim();
        if root.is_empty() {
            return Err(store.error(
                "`root` is empty: give a folder, e.g. root = \"data/knowledge\", or s3://bucket/prefix, or azblob://container/prefix",
            ));
        }
        let s3_only = [
            ("region", cfg.region.is_some()),
            ("access_key_id_env", cfg.access_key_id_env.is_some()),
            ("access_key_id_file", cfg.access_key_id_file.is_some()),
            ("secret_access_key_env", cfg.secret_access_key_env.is_some()),
            (
                "secret_access_key_file",
                cfg.secret_access_key_file.is_some(),
            ),
            ("anonymous", cfg.anonymous.is_some()),
        ];
        let azure_only = [
            ("account_name", cfg.account_name.is_some()),
            ("account_key_env", cfg.account_key_env.is_some()),
            ("account_key_file", cfg.account_key_file.is_some()),
        ];
        let refuse = |keys: &[(&str, bool)], for_what: &str| -> Result<()> {
            match keys.iter().find(|(_, set)| *set) {
                Some((k, _)) => Err(store.error(format!(
                    "`{k}` applies to {for_what} only, and `root` is \"{root}\": remove it, or point `root` there"
                ))),
                None => Ok(()),
            }
        };
        let location = if let Some(rest) = root.strip_prefix("s3://") {
            refuse(&azure_only, "azblob:// roots")?;
            let (bucket, prefix) = split_bucket(rest);
            if bucket.is_empty() {
                return Err(store.error(format!(
                    "`root` is \"{root}\": name the bucket, e.g. s3://my-bucket/prefix"
                )));
            }
            let anonymous = cfg.anonymous.unwrap_or(false);
            let named = [
                cfg.access_key_id_env.is_some(),
                cfg.access_key_id_file.is_some(),
                cfg.secret_access_key_env.is_some(),
                cfg.secret_access_key_file.is_some(),
            ];
            if anonymous && named.iter().any(|n| *n) {
                return Err(store.error(
                    "`anonymous = true` and key settings are both given: keep one (anonymous requests are unsigned)",
                ));
            }
            let (access_key_id, secret_access_key) = if anonymous {
                (None, None)
            } else {
                (
                    secret(
                        store,
                        "access_key_id",
                        cfg.access_key_id_env.as_deref(),
                        "AWS_ACCESS_KEY_ID",
                        cfg.access_key_id_file.as_deref(),
                    )?,
                    secret(
                        store,
                        "secret_access_key",
                        cfg.secret_access_key_env.as_deref(),
                        "AWS_SECRET_ACCESS_KEY",
                        cfg.secret_access_key_file.as_deref(),
                    )?,
                )
            };
            if access_key_id.is_some() != secret_access_key.is_some() {
                let missing = if access_key_id.is_none() {
                    "access key id"
                } else {
                    "secret access key"
                };
                return Err(store.error(format!(
                    "the {missing} is not given, but its pair is: give both (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the `_env` / `_file` keys), or neither"
                )));
            }
            Location::S3 {
                bucket,
                prefix,
                endpoint: cfg.endpoint.clone(),
                region: cfg.region.clone().unwrap_or_else(|| "us-east-1".into()),
                anonymous,
                access_key_id,
                secret_access_key,
            }
        } else if let Some(rest) = root.strip_prefix("azblob://") {
            refuse(&s3_only, "s3:// roots")?;
            let (container, prefix) = split_bucket(rest);
            if container.is_empty() {
                return Err(store.error(format!(
                    "`root` is \"{root}\": name the container, e.g. azblob://my-container/prefix"
                )));
            }
            let Some(account_name) = cfg.account_name.clone() else {
                return Err(store.error(
                    "an azblob:// root needs `account_name`: give the storage account's name",
                ));
            };
            let account_key = secret(
                store,
                "account_key",
                cfg.account_key_env.as_deref(),
                "AZURE_STORAGE_KEY",
                cfg.account_key_file.as_deref(),
            )?;
            let endpoint = cfg
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("https://{account_name}.blob.core.windows.net"));
            Location::Azblob {
                container,
                prefix,
                endpoint,
                account_name,
                account_key,
            }
        } else if root.contains("://") {
            return Err(store.error(format!(
                "`root` is \"{root}\": give a folder, or s3://bucket/prefix, or azblob://container/prefix"
            )));
        } else {
            refuse(&s3_only, "s3:// roots")?;
            refuse(&azure_only, "azblob:// roots")?;
            if cfg.endpoint.is_some() {
                return Err(store.error(format!(
                    "`endpoint` applies to s3:// and azblob:// roots only, and `root` is the folder \"{root}\": remove it"
                )));
            }
            Location::Folder(store.resolve_path(root))
        };
        if store.capability == Capability::Graph {
            for (k, set) in [
                ("max_messages", cfg.max_messages.is_some()),
                ("ttl", cfg.ttl.is_some()),
                ("max_value_bytes", cfg.max_value_bytes.is_some()),
            ] {
                if set {
                    return Err(store.error(format!(
                        "`{k}` applies to cache stores only, not to a graph store: remove it"
                    )));
                }
            }
        }
        if cfg.max_messages == Some(0) {
            return Err(store.error("`max_messages` is 0: give at least 1"));
        }
        if cfg.max_value_bytes == Some(0) {
            return Err(store.error("`max_value_bytes` is 0: give a positive size in bytes"));
        }
        let ttl = cfg
            .ttl
            .as_deref()
            .map(|t| parse_duration(t).map_err(|e| store.error(format!("`ttl`: {}", e.message()))))
            .transpose()?;
        Ok(Settings {
            location,
            pretty: cfg.pretty.unwrap_or(true),
            timeout: millis(store, cfg.timeout_ms, DEFAULT_TIMEOUT_MS, "timeout_ms")?,
            connect_timeout: millis(
                store,
                cfg.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT_MS,
                "connect_timeout_ms",
            )?,
            limits: ChannelLimits {
                max_messages: cfg.max_messages.unwrap_or(DEFAULT_MAX_MESSAGES),
                ttl,
            },
            max_value_bytes: cfg
                .max_value_bytes
                .unwrap_or(backplane_core::DEFAULT_MAX_VALUE_BYTES),
        })
    }
}
