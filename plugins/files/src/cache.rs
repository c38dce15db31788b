//! The cache capability as JSON files ([`FilesCache`]):
//!
//! - `keys.json`: `{"format": 1, "keys": {"<key>": {"text": "…"} or
//!   {"base64": "…"}, with "expires_at_ms" when it expires}}`, in key
//!   order; a value that is UTF-8 text is kept as text, anything else as
//!   base64;
//! - `channels/<name>.json`, one per conversation channel (the session
//!   file a person reads): `{"format": 1, "channel": "<name>",
//!   "expires_at_ms": …, "messages": [{"id", "role", "content",
//!   "timestamp_ms", "metadata"}, …]}`, oldest first. The file name is the
//!   channel's name with every byte other than ASCII letters, digits, `-`
//!   and `_` written `%XX`; the name inside the file is the channel's.
//!
//! The cache is held in memory ([`MemoryCache`], which enforces TTLs and
//! channel bounds on every read) and each write rewrites the file it
//! changed, atomically. Expired entries leave the files at the next write
//! (and at open): a key whose time has passed is dropped from
//! `keys.json`, an expired channel's file is deleted. A channel's
//! `expires_at_ms` is its last write plus `ttl`; a channel loaded at open
//! gets the whole `ttl` again from then.

use crate::held::{check_format, parse, to_bytes, Held, FORMAT};
use crate::storage::Storage;
use backplane_core::kit::page::collect_pages;
use backplane_core::kit::time::now_ms;
use backplane_core::{
    Cache, CacheEntry, CacheStats, ChannelInfo, ChannelLimits, Error, Health, Message, Page, Result,
};
use backplane_memory_engine::MemoryCache;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const KEYS: &str = "keys.json";
const CHANNELS: &str = "channels/";
/// Items per page when the files are written.
const PAGE: usize = 10_000;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    format: u32,
    keys: BTreeMap<String, FileValue>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileValue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelFile {
    format: u32,
    channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
    messages: Vec<FileMessage>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMessage {
    id: String,
    role: String,
    content: String,
    timestamp_ms: i64,
    #[serde(default)]
    metadata: Json,
}

/// The longest file name written for a channel (file systems allow 255
/// bytes).
const MAX_NAME: usize = 200;

/// The file of channel `name`: the name with every byte other than
/// lower-case ASCII letters, digits, `-` and `_` written `%XX` (upper-case
/// letters too, so two names never share a file on a case-insensitive
/// file system); a name longer than [`MAX_NAME`] that way is cut, and its
/// FNV-1a hash (of the whole name) appended.
fn channel_file(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 5);
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_NAME {
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        let mut cut = MAX_NAME - 17;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out = format!("{}~{hash:016x}", &out[..cut]);
    }
    format!("{CHANNELS}{out}.json")
}

/// The state held in memory, and what the files hold besides.
struct State {
    cache: MemoryCache,
    /// Channels that have a file.
    on_disk: Mutex<BTreeSet<String>>,
    /// The earliest `expires_at_ms` in `keys.json` (`i64::MAX`: none).
    next_expiry: AtomicI64,
}

/// A cache store on files.
pub(crate) struct FilesCache {
    held: Held<State>,
    shape: Shape,
}

/// The settings that shape the files and the cache in memory.
#[derive(Clone, Copy)]
struct Shape {
    limits: ChannelLimits,
    max_value_bytes: usize,
    pretty: bool,
}

/// Every live key of `c`, with its value and time left.
fn all_keys(c: &MemoryCache) -> Result<Vec<CacheEntry>> {
    collect_pages(|cursor| c.scan_keys(cursor, PAGE))
}

/// Every channel of `c` holding messages.
fn all_channels(c: &MemoryCache) -> Result<Vec<ChannelInfo>> {
    collect_pages(|cursor| c.list_channels(cursor, PAGE))
}

impl State {
    /// Write `keys.json` from memory.
    fn save_keys(&self, storage: &Storage, pretty: bool) -> Result<()> {
        let now = now_ms();
        let mut keys = BTreeMap::new();
        let mut next = i64::MAX;
        for e in all_keys(&self.cache)? {
            let expires_at_ms = e.ttl.map(|t| now.saturating_add(t.as_millis() as i64));
            if let Some(x) = expires_at_ms {
                next = next.min(x);
            }
            let (text, base64) = match String::from_utf8(e.value) {
                Ok(t) => (Some(t), None),
                Err(b) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(b.into_bytes())),
                ),
            };
            keys.insert(
                e.key,
                FileValue {
                    text,
                    base64,
                    expires_at_ms,
                },
            );
        }
        let file = KeysFile {
            format: FORMAT,
            keys,
        };
        storage.write(KEYS, to_bytes(&file, pretty))?;
        self.next_expiry.store(next, Ordering::Relaxed);
        Ok(())
    }

    /// Write channel `name`'s file from memory (delete it when the channel
    /// is empty).
    fn save_channel(&self, storage: &Storage, shape: Shape, name: &str) -> Result<()> {
        let messages = self.cache.recent(name, usize::MAX, None)?;
        let path = channel_file(name);
        let mut on_disk = self.on_disk.lock().unwrap_or_else(|p| p.into_inner());
        if messages.is_empty() {
            storage.delete(&path)?;
            on_disk.remove(name);
            return Ok(());
        }
        let file = ChannelFile {
            format: FORMAT,
            channel: name.to_string(),
            expires_at_ms: shape
                .limits
                .ttl
                .map(|t| now_ms().saturating_add(t.as_millis() as i64)),
            messages: messages
                .into_iter()
                .map(|m| FileMessage {
                    id: m.id,
                    role: m.role,
                    content: m.content,
                    timestamp_ms: m.timestamp_ms,
                    metadata: m.metadata,
                })
                .collect(),
        };
        storage.write(&path, to_bytes(&file, shape.pretty))?;
        on_disk.insert(name.to_string());
        Ok(())
    }

    /// [`sweep`](Self::sweep) after a write that is done: failing to
    /// sweep does not fail the write (the next write or open sweeps).
    fn sweep_quietly(&self, storage: &Storage, pretty: bool) {
        if let Err(e) = self.sweep(storage, pretty) {
            log::warn!(
                "files: expired entries stay in {} until the next write ({})",
                storage.shown(),
                e.message()
            );
        }
    }

    /// Remove from the files what has expired in memory: channel files of
    /// channels gone, and `keys.json`'s entries past their time.
    fn sweep(&self, storage: &Storage, pretty: bool) -> Result<()> {
        let on_disk: Vec<String> = self
            .on_disk
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        if !on_disk.is_empty() {
            let live: BTreeSet<String> = all_channels(&self.cache)?
                .into_iter()
                .map(|c| c.channel)
                .collect();
            for name in on_disk.iter().filter(|n| !live.contains(*n)) {
                storage.delete(&channel_file(name))?;
                self.on_disk
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(name);
            }
        }
        if self.next_expiry.load(Ordering::Relaxed) <= now_ms() {
            self.save_keys(storage, pretty)?;
        }
        Ok(())
    }
}

/// Read the cache from `storage`'s files (none: an empty cache).
fn load(storage: &Storage, shape: Shape) -> Result<State> {
    let state = State {
        cache: MemoryCache::new(shape.limits, shape.max_value_bytes),
        on_disk: Mutex::new(BTreeSet::new()),
        next_expiry: AtomicI64::new(i64::MAX),
    };
    let now = now_ms();
    let refused = |file: &str, e: Error| {
        Error::config(format!(
            "{} cannot be loaded: {}: fix the file",
            storage.path_of(file),
            e.message()
        ))
    };
    let mut stale = false;
    if let Some(bytes) = storage.read(KEYS)? {
        let f: KeysFile = parse(storage, KEYS, &bytes)?;
        check_format(storage, KEYS, f.format)?;
        let mut entries = Vec::with_capacity(f.keys.len());
        for (key, v) in f.keys {
            let value = match (v.text, v.base64) {
                (Some(t), None) => t.into_bytes(),
                (None, Some(b)) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| {
                        Error::config(format!(
                            "{}: key '{key}': its base64 value does not decode ({e}): fix the file",
                            storage.path_of(KEYS)
                        ))
                    })?,
                _ => {
                    return Err(Error::config(format!(
                    "{}: key '{key}' needs exactly one of \"text\" and \"base64\": fix the file",
                    storage.path_of(KEYS)
                )))
                }
            };
            let ttl = match v.expires_at_ms {
                Some(x) if x <= now => {
                    stale = true;
                    continue;
                }
                Some(x) => Some(Duration::from_millis((x - now) as u64)),
                None => None,
            };
            entries.push(CacheEntry { key, value, ttl });
        }
        state
            .cache
            .import_entries(&entries, true)
            .map_err(|e| refused(KEYS, e))?;
    }
    for file in storage.list(CHANNELS)? {
        if !file.ends_with(".json") {
            continue;
        }
        let path = format!("{CHANNELS}{file}");
        let Some(bytes) = storage.read(&path)? else {
            continue;
        };
        let f: ChannelFile = parse(storage, &path, &bytes)?;
        check_format(storage, &path, f.format)?;
        let own = channel_file(&f.channel);
        if own != path {
            return Err(Error::config(format!(
                "{} holds channel '{}', whose file is {}: rename the file (or fix its \"channel\"), so that clearing the channel clears it",
                storage.path_of(&path),
                f.channel,
                storage.path_of(&own)
            )));
        }
        if f.expires_at_ms.is_some_and(|x| x <= now) {
            storage.delete(&path)?;
            continue;
        }
        let messages: Vec<Message> = f
            .messages
            .into_iter()
            .map(|m| Message {
                id: m.id,
                role: m.role,
                content: m.content,
                timestamp_ms: m.timestamp_ms,
                metadata: m.metadata,
            })
            .collect();
        state
            .cache
            .import_messages(&f.channel, &messages)
            .map_err(|e| refused(&path, e))?;
        state
            .on_disk
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(f.channel);
    }
    if stale {
        state.save_keys(storage, shape.pretty)?;
    } else {
        let next = all_keys(&state.cache)?
            .iter()
            .filter_map(|e| e.ttl)
            .map(|t| now.saturating_add(t.as_millis() as i64))
            .min()
            .unwrap_or(i64::MAX);
        state.next_expiry.store(next, Ordering::Relaxed);
    }
    Ok(state)
}

impl FilesCache {
    /// Open the cache in `storage`.
    pub(crate) fn open(
        storage: Storage,
        limits: ChannelLimits,
        max_value_bytes: usize,
        pretty: bool,
    ) -> Result<FilesCache> {
        let shape = Shape {
            limits,
            max_value_bytes,
            pretty,
        };
        Ok(FilesCache {
            held: Held::open(storage, move |s| load(s, shape))?,
            shape,
        })
    }

    /// A change to the keys.
    fn keys<R>(&self, partial: bool, change: impl FnOnce(&MemoryCache) -> Result<R>) -> Result<R> {
        let pretty = self.shape.pretty;
        self.held.write(
            partial,
            |s| change(&s.cache),
            |s, storage| {
                s.save_keys(storage, pretty)?;
                s.sweep_quietly(storage, pretty);
                Ok(())
            },
        )
    }

    /// A change to channel `name`.
    fn channel<R>(
        &self,
        name: &str,
        partial: bool,
        change: impl FnOnce(&MemoryCache) -> Result<R>,
    ) -> Result<R> {
        let shape = self.shape;
        self.held.write(
            partial,
            |s| change(&s.cache),
            |s, storage| {
                s.save_channel(storage, shape, name)?;
                s.sweep_quietly(storage, shape.pretty);
                Ok(())
            },
        )
    }
}

impl Cache for FilesCache {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.held.read(|s| s.cache.get(key))
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.keys(false, |c| c.set(key, value, ttl))
    }

    fn delete(&self, key: &str) -> Result<bool> {
        self.keys(false, |c| c.delete(key))
    }

    fn exists(&self, key: &str) -> Result<bool> {
        self.held.read(|s| s.cache.exists(key))
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.keys(false, |c| c.expire(key, ttl))
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.held.read(|s| s.cache.get_many(keys))
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        self.keys(false, |c| c.set_many(entries, ttl))
    }

    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        self.channel(channel, false, |c| c.add_message(channel, message))
    }

    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        self.channel(channel, false, |c| c.add_messages(channel, messages))
    }

    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        self.held
            .read(|s| s.cache.recent(channel, limit, exclude_id))
    }

    fn remove_message(&self, channel: &str, id: &str) -> Result<bool> {
        self.channel(channel, false, |c| c.remove_message(channel, id))
    }

    fn clear(&self, channel: &str) -> Result<u64> {
        self.channel(channel, false, |c| c.clear(channel))
    }

    fn stats(&self) -> Result<CacheStats> {
        self.held.read(|s| s.cache.stats())
    }

    fn health(&self) -> Result<Health> {
        self.held.storage.read(KEYS)?;
        let stats = self.held.read(|s| s.cache.stats())?;
        Ok(Health::ok(format!(
            "JSON files in {}: {} keys, {} channels",
            self.held.storage.shown(),
            stats.keys,
            stats.channels
        )))
    }

    fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ChannelInfo>> {
        self.held.read(|s| s.cache.list_channels(cursor, limit))
    }

    fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Result<Page<CacheEntry>> {
        self.held.read(|s| s.cache.scan_keys(cursor, limit))
    }

    fn import_entries(&self, entries: &[CacheEntry], overwrite: bool) -> Result<u64> {
        self.keys(true, |c| c.import_entries(entries, overwrite))
    }

    fn import_messages(&self, channel: &str, messages: &[Message]) -> Result<u64> {
        self.channel(channel, true, |c| c.import_messages(channel, messages))
    }
}

#[cfg(test)]
mod tests {
    use super::channel_file;

    #[test]
    fn channel_files_are_named_safely() {
        assert_eq!(channel_file("user-42_a"), "channels/user-42_a.json");
        assert_eq!(channel_file("a/b.c"), "channels/a%2Fb%2Ec.json");
        assert_eq!(channel_file("..é"), "channels/%2E%2E%C3%A9.json");
        assert_eq!(channel_file("Ab"), "channels/%41b.json");
        let long = "é".repeat(500);
        let f = channel_file(&long);
        assert!(f.len() <= "channels/".len() + 200 + ".json".len(), "{f}");
        assert_ne!(f, channel_file(&"é".repeat(501)));
    }
}
