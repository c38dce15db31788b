//! The settings every backend on a server shares, checked the same way:
//! the server's address, timeouts in milliseconds, a secret read from the
//! environment, a collection-name prefix. Each mistake is one `Config`
//! error naming the key, in the store's section.

use crate::kit::redact::{redact_url, Secret};
use crate::{Result, StoreConfig};
use std::time::Duration;

/// `url` trimmed and without a trailing `/`, if it is `http://host…` or
/// `https://host…`; otherwise an error saying to give `what`, e.g.
/// `"the Chroma server's address"`, with `example`.
pub fn http_url(store: &StoreConfig, url: &str, what: &str, example: &str) -> Result<String> {
    let trimmed = url.trim().trim_end_matches('/').to_string();
    let host = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .unwrap_or("");
    if host.is_empty() || host.starts_with(['/', ':']) {
        return Err(store.error(format!(
            "`url` is \"{}\": give {what}, e.g. url = \"{example}\" (https:// for TLS)",
            redact_url(url)
        )));
    }
    Ok(trimmed)
}

/// `value` milliseconds, `default` when absent; 0 is an error naming `key`.
pub fn millis(
    store: &StoreConfig,
    value: Option<u64>,
    default: u64,
    key: &str,
) -> Result<Duration> {
    match value.unwrap_or(default) {
        0 => Err(store.error(format!(
            "`{key}` is 0: give a time in milliseconds, e.g. {default}"
        ))),
        n => Ok(Duration::from_millis(n)),
    }
}

/// The secret held by the environment variable `var`, which the section's
/// `key` names; unset or empty is an error saying to export it, or to
/// remove `key` when the server needs no `what` (`"API key"`, `"auth"`).
pub fn secret_from_env(
    store: &StoreConfig,
    key: &str,
    var: &str,
    what: &str,
) -> Result<Secret<String>> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
        _ => Err(store.error(format!(
            "`{key}` names the environment variable {var}, which is not set: export it, or remove `{key}` for a server without {what}"
        ))),
    }
}

/// Check a prefix put before every collection name on a server: up to 64
/// ASCII letters, digits and the characters `extra` allows.
pub fn collection_prefix(
    store: &StoreConfig,
    prefix: Option<&str>,
    extra: &[u8],
) -> Result<String> {
    let prefix = prefix.unwrap_or_default();
    if prefix.len() > 64
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    {
        let allowed: Vec<String> = extra.iter().map(|b| format!("'{}'", *b as char)).collect();
        return Err(store.error(format!(
            "`collection_prefix` is \"{prefix}\": use up to 64 ASCII letters, digits and {}",
            allowed.join(", ")
        )));
    }
    Ok(prefix.to_string())
}
