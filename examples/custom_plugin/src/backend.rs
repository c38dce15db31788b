//! The cache capability: one `Mutex` around a key map and a message list
//! per channel. Simple on purpose; see `backplane-plugin-memory` for a
//! tuned version of the same thing.

use backplane_core::kit::page::{check_limit, page_of_map};
use backplane_core::{
    check_value_size, validate_key, validate_ttl, Cache, CacheEntry, CacheStats, ChannelInfo,
    ChannelLimits, Health, Message, Page, Result,
};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A `custom-kv` store.
pub(crate) struct CustomKv {
    greeting: String,
    limits: ChannelLimits,
    /// The largest value or message content kept (`max_value_bytes`).
    max_value_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Key → value and expiry.
    keys: HashMap<String, (Vec<u8>, Option<Instant>)>,
    /// Channel → messages, oldest first.
    channels: HashMap<String, Channel>,
    hits: u64,
    misses: u64,
    next_id: u64,
}

struct Channel {
    messages: Vec<Message>,
    /// Refreshed by every new message when the store has a channel TTL.
    expires: Option<Instant>,
}

fn expired(at: Option<Instant>) -> bool {
    at.is_some_and(|e| e <= Instant::now())
}

impl State {
    /// The live value of `key`; an expired one is removed and reads as absent.
    fn live(&mut self, key: &str) -> Option<&mut (Vec<u8>, Option<Instant>)> {
        if self.keys.get(key).is_some_and(|(_, exp)| expired(*exp)) {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }

    /// The live channel `name`; an expired one is removed and reads as empty.
    fn channel(&mut self, name: &str) -> Option<&mut Channel> {
        if self.channels.get(name).is_some_and(|c| expired(c.expires)) {
            self.channels.remove(name);
        }
        self.channels.get_mut(name)
    }
}

fn expiry(ttl: Option<Duration>) -> Option<Instant> {
    ttl.and_then(|t| Instant::now().checked_add(t))
}

impl CustomKv {
    /// An empty store.
    pub(crate) fn new(greeting: String, limits: ChannelLimits, max_value_bytes: usize) -> Self {
        CustomKv {
            greeting,
            limits,
            max_value_bytes,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held poisons it; the data is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Cache for CustomKv {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key(key, "key")?;
        let mut s = self.lock();
        let value = s.live(key).map(|(v, _)| v.clone());
        if value.is_some() {
            s.hits += 1;
        } else {
            s.misses += 1;
        }
        Ok(value)
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        validate_key(key, "key")?;
        validate_ttl(ttl)?;
        check_value_size("value", key, value.len(), self.max_value_bytes)?;
        self.lock()
            .keys
            .insert(key.to_string(), (value.to_vec(), expiry(ttl)));
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool> {
        validate_key(key, "key")?;
        let mut s = self.lock();
        let existed = s.live(key).is_some();
        s.keys.remove(key);
        Ok(existed)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        validate_key(key, "key")?;
        Ok(self.lock().live(key).is_some())
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        validate_key(key, "key")?;
        validate_ttl(Some(ttl))?;
        Ok(match self.lock().live(key) {
            Some((_, exp)) => {
                *exp = expiry(Some(ttl));
                true
            }
            None => false,
        })
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        // Check everything before writing anything.
        validate_ttl(ttl)?;
        for (k, v) in entries {
            validate_key(k, "key")?;
            check_value_size("value", k, v.len(), self.max_value_bytes)?;
        }
        let mut s = self.lock();
        for (k, v) in entries {
            s.keys.insert(k.clone(), (v.clone(), expiry(ttl)));
        }
        Ok(())
    }

    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        validate_key(channel, "channel")?;
        check_value_size(
            "message",
            channel,
            message.content.len(),
            self.max_value_bytes,
        )?;
        let mut s = self.lock();
        let mut stored = message.clone();
        if stored.id.is_empty() {
            s.next_id += 1;
            stored.id = format!("ck-{}", s.next_id);
        }
        if stored.timestamp_ms == 0 {
            stored.timestamp_ms = backplane_core::kit::time::now_ms();
        }
        let _ = s.channel(channel); // drops the channel if it has expired
        let ch = s.channels.entry(channel.to_string()).or_insert(Channel {
            messages: Vec::new(),
            expires: None,
        });
        if ch.messages.iter().any(|m| m.id == stored.id) {
            return Err(backplane_core::cache::message_taken(channel, &stored.id));
        }
        ch.messages.push(stored.clone());
        let extra = ch.messages.len().saturating_sub(self.limits.max_messages);
        ch.messages.drain(..extra);
        ch.expires = expiry(self.limits.ttl);
        Ok(stored)
    }

    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        validate_key(channel, "channel")?;
        let mut s = self.lock();
        let Some(ch) = s.channel(channel) else {
            return Ok(Vec::new());
        };
        let kept: Vec<&Message> = ch
            .messages
            .iter()
            .filter(|m| Some(m.id.as_str()) != exclude_id)
            .collect();
        let start = kept.len().saturating_sub(limit);
        Ok(kept[start..].iter().map(|m| (*m).clone()).collect())
    }

    fn remove_message(&self, channel: &str, id: &str) -> Result<bool> {
        validate_key(channel, "channel")?;
        let mut s = self.lock();
        let Some(ch) = s.channel(channel) else {
            return Ok(false);
        };
        let before = ch.messages.len();
        ch.messages.retain(|m| m.id != id);
        Ok(ch.messages.len() < before)
    }

    fn clear(&self, channel: &str) -> Result<u64> {
        validate_key(channel, "channel")?;
        let mut s = self.lock();
        let count = s.channel(channel).map_or(0, |c| c.messages.len() as u64);
        s.channels.remove(channel);
        Ok(count)
    }

    /// Listing channels lets `backplane migrate` and `backup` carry the
    /// conversations to another backend: name order, after `cursor`.
    fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ChannelInfo>> {
        check_limit(limit, "list_channels", "channel")?;
        let st = self.lock();
        let listed = page_of_map(
            &st.channels,
            |c| !expired(c.expires) && !c.messages.is_empty(),
            cursor,
            limit,
            |name, c| ChannelInfo {
                channel: name.to_string(),
                messages: c.messages.len() as u64,
                last_activity_ms: c.messages.last().map_or(0, |m| m.timestamp_ms),
            },
        );
        Ok(listed)
    }

    /// Scanning keys, with the time each has left, carries them too.
    fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Result<Page<CacheEntry>> {
        check_limit(limit, "scan_keys", "key")?;
        let st = self.lock();
        let now = Instant::now();
        let scanned = page_of_map(
            &st.keys,
            |(_, exp)| !expired(*exp),
            cursor,
            limit,
            |k, (v, exp)| CacheEntry {
                key: k.to_string(),
                value: v.clone(),
                ttl: exp.map(|e| e.saturating_duration_since(now)),
            },
        );
        Ok(scanned)
    }

    fn stats(&self) -> Result<CacheStats> {
        let s = self.lock();
        let now = Instant::now();
        let live_channels = || s.channels.values().filter(|c| !expired(c.expires));
        Ok(CacheStats {
            hits: s.hits,
            misses: s.misses,
            keys: s
                .keys
                .values()
                .filter(|(_, e)| e.is_none_or(|e| e > now))
                .count() as u64,
            channels: live_channels().filter(|c| !c.messages.is_empty()).count() as u64,
            messages: live_channels().map(|c| c.messages.len() as u64).sum(),
            memory_bytes: None,
        })
    }

    fn health(&self) -> Result<Health> {
        Ok(Health::ok(format!(
            "{}: custom-kv in memory",
            self.greeting
        )))
    }
}
