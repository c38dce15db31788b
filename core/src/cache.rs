//! The cache capability: key/value with expiry, and conversation lists per
//! channel with a bound on length and a TTL.

use crate::{Error, Health, Page, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Unique within its channel. Left empty, the backend assigns one.
    pub id: String,
    /// Who spoke: `user`, `assistant`, `system`, `tool`, …
    pub role: String,
    /// The text.
    pub content: String,
    /// Milliseconds since the Unix epoch. Zero: the backend sets "now".
    pub timestamp_ms: i64,
    /// Anything else, as JSON.
    #[serde(with = "crate::value::json_text")]
    pub metadata: serde_json::Value,
}

impl Message {
    /// A message with a role and content; id and timestamp assigned on add.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            id: String::new(),
            role: role.into(),
            content: content.into(),
            timestamp_ms: 0,
            metadata: serde_json::Value::Null,
        }
    }
    /// With an explicit id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }
    /// With metadata.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// What a cache has seen. Fields a backend cannot know are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// `get` calls that found a live value.
    pub hits: u64,
    /// `get` calls that found nothing.
    pub misses: u64,
    /// Live keys.
    pub keys: u64,
    /// Channels with at least one message.
    pub channels: u64,
    /// Messages across all channels.
    pub messages: u64,
    /// Bytes used, where known.
    pub memory_bytes: Option<u64>,
}

/// One conversation channel, as [`Cache::list_channels`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// The channel's name.
    pub channel: String,
    /// How many messages it holds.
    pub messages: u64,
    /// The timestamp of its newest message, milliseconds since the epoch.
    pub last_activity_ms: i64,
}

/// One key with its value and the time it has left, as
/// [`Cache::scan_keys`] returns it and [`Cache::import_entries`] takes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
    /// The time it has left to live; `None` when it never expires.
    pub ttl: Option<Duration>,
}

/// Settings every cache backend reads from its store section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelLimits {
    /// Most messages kept per channel; older ones are dropped.
    pub max_messages: usize,
    /// A channel expires this long after its last message.
    pub ttl: Option<Duration>,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        ChannelLimits {
            max_messages: 1000,
            ttl: None,
        }
    }
}

/// The default of every cache backend's `max_value_bytes`: 16 MiB.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

/// Refuse a `what` ("value", "message") for `name` of `len` bytes when it is
/// larger than `max` (the store's `max_value_bytes`): the one contract and
/// message every cache backend shares.
pub fn check_value_size(what: &str, name: &str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::invalid(format!(
            "the {what} for '{name}' is {len} bytes; this store accepts at most {max} (max_value_bytes): store it elsewhere or raise max_value_bytes"
        )));
    }
    Ok(())
}

/// The largest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Check a key or channel name: non-empty, at most [`MAX_KEY_LEN`] bytes.
pub fn validate_key(key: &str, what: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid(format!(
            "{what} is empty: give a non-empty {what}"
        )));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

/// Check a TTL: more than zero, and no longer than a backend can keep
/// (`i64::MAX` milliseconds).
pub fn validate_ttl(ttl: Option<Duration>) -> Result<()> {
    if ttl.is_some_and(|t| t.is_zero()) {
        return Err(Error::invalid(
            "ttl is zero: give a positive duration, or none to keep the value",
        ));
    }
    if ttl.is_some_and(|t| t.as_millis() > i64::MAX as u128) {
        return Err(Error::invalid(format!(
            "ttl is longer than any backend can keep (at most {} days): give a shorter one, or none to keep the value",
            i64::MAX as u64 / 86_400_000
        )));
    }
    Ok(())
}

/// The error for a message whose id is taken in its channel.
pub fn message_taken(channel: &str, id: &str) -> Error {
    Error::already_exists(format!(
        "message '{id}' exists already in channel '{channel}': give another id, or leave the id empty to have one assigned"
    ))
}

/// Check that no id is given twice in a batch of messages (empty ids are
/// assigned by the backend and never clash).
pub fn check_batch_ids(messages: &[Message]) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(messages.len());
    for m in messages {
        if !m.id.is_empty() && !seen.insert(m.id.as_str()) {
            return Err(Error::invalid(format!(
                "message id '{}' appears twice in the batch: give each message its own id, or leave ids empty to have them assigned",
                m.id
            )));
        }
    }
    Ok(())
}

/// Parse a duration as written in plugins.toml: `"30s"`, `"15m"`, `"2h"`,
/// `"1d"`, `"250ms"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        Error::config(format!(
            "'{s}' is not a duration: write a number with a unit, like 30s, 15m, 2h, 1d, 250ms"
        ))
    })?;
    let ms_per = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(Error::config(format!(
                "'{s}' has unknown unit '{other}': use ms, s, m, h or d"
            )))
        }
    };
    // Every backend keeps a time to live as milliseconds in a signed
    // 64-bit integer (Redis's PX, SQLite's INTEGER): longer is refused, not
    // wrapped around.
    let ms = n
        .checked_mul(ms_per)
        .filter(|&ms| ms <= i64::MAX as u64)
        .ok_or_else(|| {
            Error::config(format!(
                "duration '{s}' is too long: the longest is {} days; leave the ttl out to keep values without expiry",
                i64::MAX as u64 / 86_400_000
            ))
        })?;
    let d = Duration::from_millis(ms);
    if d.is_zero() {
        return Err(Error::config(format!(
            "duration '{s}' is zero: give a positive duration"
        )));
    }
    Ok(d)
}

/// Called once with the result of a started call ([`AsyncCache`],
/// [`AsyncRelational`](crate::AsyncRelational)).
pub type Done<T> = Box<dyn FnOnce(Result<T>) + Send + 'static>;

/// The non-blocking form of a cache's two hottest calls, for a backend that
/// owns an async runtime (the redis backend does) or threads of its own
/// (the embedded backends, through [`crate::kit::served`]). Each method starts the
/// call and returns at once; `done` is called exactly once, from any thread,
/// when the call has finished. The host's async API awaits these directly
/// instead of handing the blocking call to a thread, so many concurrent
/// tasks can share one multiplexed connection.
///
/// A backend offers it through [`Cache::as_async`]; the blocking methods
/// of [`Cache`] stay the reference semantics and must agree with it.
pub trait AsyncCache: Send + Sync {
    /// Start [`Cache::get`].
    fn get(&self, key: &str, done: Done<Option<Vec<u8>>>);
    /// Start [`Cache::set`].
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>, done: Done<()>);
}

/// A cache store. Implemented by plugins; used through the host.
pub trait Cache: Send + Sync {
    /// The store's non-blocking form of `get` and `set`, if it has one.
    /// Default: none; the host's async API then runs the blocking call on
    /// a blocking thread.
    fn as_async(&self) -> Option<&dyn AsyncCache> {
        None
    }
    /// The value of `key`, if set and not expired.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Set `key`, expiring after `ttl` if given.
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()>;
    /// Delete `key`; returns whether it existed.
    fn delete(&self, key: &str) -> Result<bool>;
    /// Whether `key` is set and not expired.
    fn exists(&self, key: &str) -> Result<bool>;
    /// Set a new TTL on an existing key; returns whether it existed.
    fn expire(&self, key: &str, ttl: Duration) -> Result<bool>;
    /// Several values at once, in the order of `keys`.
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>>;
    /// Set several keys, all with the same TTL.
    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()>;
    /// Append a message to a channel; returns the stored message (with its
    /// id and timestamp filled in). The channel is trimmed to its bound.
    fn add_message(&self, channel: &str, message: &Message) -> Result<Message>;
    /// Append several messages to a channel, in order, in one call; returns
    /// them as stored. All or nothing: when one is refused (a taken id, an
    /// id given twice, a message over the size limit) none is added. The
    /// channel is trimmed to its bound afterwards, so a batch longer than
    /// the bound keeps only its newest messages.
    ///
    /// The default checks the batch's ids against each other and against
    /// the channel (one `recent` of the whole channel), then adds the
    /// messages one by one: a taken id refuses the batch before anything is
    /// written, but a failure part way (the server going away, a writer
    /// racing this one) leaves the earlier messages added. Backends that can
    /// do it atomically override it (memory, sqlite and redis do).
    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        check_batch_ids(messages)?;
        if messages.iter().any(|m| !m.id.is_empty()) {
            let present = self.recent(channel, usize::MAX, None)?;
            if let Some(m) = messages
                .iter()
                .find(|m| !m.id.is_empty() && present.iter().any(|p| p.id == m.id))
            {
                return Err(message_taken(channel, &m.id));
            }
        }
        messages
            .iter()
            .map(|m| self.add_message(channel, m))
            .collect()
    }
    /// The last `limit` messages of a channel, oldest first, leaving out
    /// `exclude_id` if given; the excluded message does not count toward
    /// `limit` (with three messages and the newest excluded, a limit of 2
    /// gives the first two).
    fn recent(&self, channel: &str, limit: usize, exclude_id: Option<&str>)
        -> Result<Vec<Message>>;
    /// Remove one message; returns whether it existed.
    fn remove_message(&self, channel: &str, id: &str) -> Result<bool>;
    /// Remove a channel's messages; returns how many there were.
    fn clear(&self, channel: &str) -> Result<u64>;
    /// Counters.
    fn stats(&self) -> Result<CacheStats>;
    /// Check the store answers.
    fn health(&self) -> Result<Health>;

    /// One page of the channels that hold messages, in name order, with
    /// their message counts and last activity; pass the page's
    /// `next_cursor` for the next. The default says the backend cannot
    /// list them.
    fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ChannelInfo>> {
        let _ = (cursor, limit);
        Err(Error::unsupported(
            "this cache backend cannot list its channels, so its conversations cannot be exported",
        ))
    }
    /// One page of the live keys (not the channels), with their values and
    /// the time each has left; pass the page's `next_cursor` for the next.
    /// A key may be missed or seen twice only if it is written during the
    /// scan. The default says the backend cannot scan.
    fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Result<Page<CacheEntry>> {
        let _ = (cursor, limit);
        Err(Error::unsupported(
            "this cache backend cannot scan its keys, so its keys cannot be exported",
        ))
    }
    /// Set each entry with its own time to live; a key that exists is kept
    /// unless `overwrite`. Returns the entries given.
    fn import_entries(&self, entries: &[CacheEntry], overwrite: bool) -> Result<u64> {
        crate::port::import_entries(self, entries, overwrite)
    }
    /// Add `messages` (oldest first, with their ids and timestamps) to
    /// `channel`, leaving out those whose id the channel holds already, so
    /// a replayed batch changes nothing. Returns the messages given.
    fn import_messages(&self, channel: &str, messages: &[Message]) -> Result<u64> {
        crate::port::import_messages(self, channel, messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_refuse_what_they_cannot_hold() {
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        // 213503982334602 days overflowed into a 17-hour TTL once.
        let e = parse_duration("213503982334602d").unwrap_err();
        assert!(e.message().contains("too long"), "{e}");
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("106751991167d").is_ok());
        assert!(parse_duration("106751991168d").is_err());
        assert!(validate_ttl(Some(Duration::from_secs(u64::MAX))).is_err());
        assert!(validate_ttl(Some(Duration::from_secs(60))).is_ok());
    }
}
