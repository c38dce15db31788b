//! The cache capability in memory: a key/value map with expiry, and
//! conversation channels.
//!
//! Expiry is lazy: an expired key or channel reads as absent and is removed
//! when it is touched. So that keys nobody reads again do not pile up, every
//! write counts towards a sweep that removes everything expired; the sweep
//! runs once the count reaches the number of entries (at least 1024), which
//! keeps its cost constant per write on average.
//!
//! One mutex guards the state; every operation is a few map lookups, so the
//! lock is held briefly. Hit and miss counters are atomics outside it.

use backplane_core::kit::id::new_id_unless;
use backplane_core::kit::page::{check_limit, page_of_map};
use backplane_core::kit::time::now_ms;
use backplane_core::{
    check_batch_ids, validate_key, validate_ttl, Cache, CacheEntry, CacheStats, ChannelInfo,
    ChannelLimits, Health, Message, Page, Result,
};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Writes between two sweeps of expired entries, at the least.
const MIN_SWEEP_INTERVAL: usize = 1024;

/// A cache held in process memory.
pub struct MemoryCache {
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    limits: ChannelLimits,
    max_value_bytes: usize,
}

#[derive(Default)]
struct State {
    keys: HashMap<String, Item>,
    channels: HashMap<String, Channel>,
    writes_since_sweep: usize,
}

struct Item {
    value: Vec<u8>,
    expires: Option<Instant>,
}

struct Channel {
    messages: VecDeque<Message>,
    expires: Option<Instant>,
}

fn live(expires: Option<Instant>, now: Instant) -> bool {
    expires.is_none_or(|e| e > now)
}

/// `now + ttl`; a TTL too large to represent never expires.
fn deadline(now: Instant, ttl: Option<Duration>) -> Option<Instant> {
    ttl.and_then(|t| now.checked_add(t))
}

/// A rough size of a JSON value as text, without serialising it.
fn json_size(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Null => 4,
        serde_json::Value::Bool(_) => 5,
        serde_json::Value::Number(_) => 8,
        serde_json::Value::String(s) => s.len() + 2,
        serde_json::Value::Array(a) => 2 + a.iter().map(|x| json_size(x) + 1).sum::<usize>(),
        serde_json::Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() + 4 + json_size(x))
                .sum::<usize>()
        }
    }
}

fn message_size(m: &Message) -> usize {
    m.id.len() + m.role.len() + m.content.len() + 8 + json_size(&m.metadata)
}

impl State {
    /// Count a write; sweep expired entries when enough have happened.
    fn wrote(&mut self, now: Instant) {
        self.writes_since_sweep += 1;
        let entries = self.keys.len() + self.channels.len();
        if self.writes_since_sweep >= entries.max(MIN_SWEEP_INTERVAL) {
            self.keys.retain(|_, it| live(it.expires, now));
            self.channels
                .retain(|_, c| live(c.expires, now) && !c.messages.is_empty());
            self.writes_since_sweep = 0;
        }
    }

    /// The live item at `key`, dropping it if it has expired.
    fn item(&mut self, key: &str, now: Instant) -> Option<&mut Item> {
        if self.keys.get(key).is_some_and(|it| !live(it.expires, now)) {
            self.keys.remove(key);
        }
        self.keys.get_mut(key)
    }

    /// The live channel `name`, dropping it if it has expired.
    fn channel(&mut self, name: &str, now: Instant) -> Option<&mut Channel> {
        if self
            .channels
            .get(name)
            .is_some_and(|c| !live(c.expires, now))
        {
            self.channels.remove(name);
        }
        self.channels.get_mut(name)
    }
}

impl MemoryCache {
    /// An empty cache with a channel bound and TTL, refusing values larger
    /// than `max_value_bytes`.
    pub fn new(limits: ChannelLimits, max_value_bytes: usize) -> Self {
        MemoryCache {
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            limits: ChannelLimits {
                max_messages: limits.max_messages.max(1),
                ttl: limits.ttl,
            },
            max_value_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_value(&self, key: &str, len: usize) -> Result<()> {
        backplane_core::check_value_size("value", key, len, self.max_value_bytes)
    }

    fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        MemoryCache::new(
            ChannelLimits::default(),
            backplane_core::DEFAULT_MAX_VALUE_BYTES,
        )
    }
}

impl Cache for MemoryCache {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        validate_key(key, "key")?;
        let value = self
            .lock()
            .item(key, Instant::now())
            .map(|it| it.value.clone());
        self.count(value.is_some());
        Ok(value)
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        validate_key(key, "key")?;
        validate_ttl(ttl)?;
        self.check_value(key, value.len())?;
        let now = Instant::now();
        let mut s = self.lock();
        s.keys.insert(
            key.to_string(),
            Item {
                value: value.to_vec(),
                expires: deadline(now, ttl),
            },
        );
        s.wrote(now);
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool> {
        validate_key(key, "key")?;
        let now = Instant::now();
        let mut s = self.lock();
        Ok(s.keys.remove(key).is_some_and(|it| live(it.expires, now)))
    }

    fn exists(&self, key: &str) -> Result<bool> {
        validate_key(key, "key")?;
        Ok(self.lock().item(key, Instant::now()).is_some())
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        validate_key(key, "key")?;
        validate_ttl(Some(ttl))?;
        let now = Instant::now();
        Ok(match self.lock().item(key, now) {
            Some(it) => {
                it.expires = deadline(now, Some(ttl));
                true
            }
            None => false,
        })
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        for k in keys {
            validate_key(k, "key")?;
        }
        let now = Instant::now();
        let values: Vec<Option<Vec<u8>>> = {
            let mut s = self.lock();
            keys.iter()
                .map(|k| s.item(k, now).map(|it| it.value.clone()))
                .collect()
        };
        let hits = values.iter().filter(|v| v.is_some()).count() as u64;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses
            .fetch_add(values.len() as u64 - hits, Ordering::Relaxed);
        Ok(values)
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        validate_ttl(ttl)?;
        for (k, v) in entries {
            validate_key(k, "key")?;
            self.check_value(k, v.len())?;
        }
        let now = Instant::now();
        let expires = deadline(now, ttl);
        let mut s = self.lock();
        for (k, v) in entries {
            s.keys.insert(
                k.clone(),
                Item {
                    value: v.clone(),
                    expires,
                },
            );
            s.wrote(now);
        }
        Ok(())
    }

    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        let mut stored = self.add_messages(channel, std::slice::from_ref(message))?;
        Ok(stored.remove(0))
    }

    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        validate_key(channel, "channel")?;
        check_batch_ids(messages)?;
        for m in messages {
            backplane_core::check_value_size(
                "message",
                channel,
                m.content.len(),
                self.max_value_bytes,
            )?;
        }
        let now = Instant::now();
        let mut s = self.lock();
        // Drop the channel if it has expired: it starts afresh.
        let _ = s.channel(channel, now);
        let ch = s
            .channels
            .entry(channel.to_string())
            .or_insert_with(|| Channel {
                messages: VecDeque::new(),
                expires: None,
            });
        // Every check before the first write: all or nothing.
        if let Some(m) = messages
            .iter()
            .find(|m| !m.id.is_empty() && ch.messages.iter().any(|x| x.id == m.id))
        {
            return Err(backplane_core::cache::message_taken(channel, &m.id));
        }
        let mut out = Vec::with_capacity(messages.len());
        for message in messages {
            let mut stored = message.clone();
            if stored.id.is_empty() {
                stored.id = new_id_unless("m", |id| {
                    ch.messages.iter().any(|m| m.id == id) || messages.iter().any(|m| m.id == id)
                });
            }
            if stored.timestamp_ms == 0 {
                stored.timestamp_ms = now_ms();
            }
            ch.messages.push_back(stored.clone());
            out.push(stored);
        }
        while ch.messages.len() > self.limits.max_messages {
            ch.messages.pop_front();
        }
        ch.expires = deadline(now, self.limits.ttl);
        s.wrote(now);
        Ok(out)
    }

    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        validate_key(channel, "channel")?;
        let mut s = self.lock();
        let Some(ch) = s.channel(channel, Instant::now()) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<Message> = ch
            .messages
            .iter()
            .rev()
            .filter(|m| exclude_id != Some(m.id.as_str()))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        Ok(out)
    }

    fn remove_message(&self, channel: &str, id: &str) -> Result<bool> {
        validate_key(channel, "channel")?;
        let mut s = self.lock();
        let Some(ch) = s.channel(channel, Instant::now()) else {
            return Ok(false);
        };
        let Some(pos) = ch.messages.iter().position(|m| m.id == id) else {
            return Ok(false);
        };
        ch.messages.remove(pos);
        if ch.messages.is_empty() {
            s.channels.remove(channel);
        }
        Ok(true)
    }

    fn clear(&self, channel: &str) -> Result<u64> {
        validate_key(channel, "channel")?;
        let now = Instant::now();
        let mut s = self.lock();
        Ok(s.channels
            .remove(channel)
            .filter(|c| live(c.expires, now))
            .map_or(0, |c| c.messages.len() as u64))
    }

    fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ChannelInfo>> {
        check_limit(limit, "list_channels", "channel")?;
        let now = Instant::now();
        let st = self.lock();
        Ok(page_of_map(
            &st.channels,
            |c| live(c.expires, now) && !c.messages.is_empty(),
            cursor,
            limit,
            |name, c| ChannelInfo {
                channel: name.to_string(),
                messages: c.messages.len() as u64,
                last_activity_ms: c.messages.back().map_or(0, |m| m.timestamp_ms),
            },
        ))
    }

    fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Result<Page<CacheEntry>> {
        check_limit(limit, "scan_keys", "key")?;
        let now = Instant::now();
        let st = self.lock();
        Ok(page_of_map(
            &st.keys,
            |it| live(it.expires, now),
            cursor,
            limit,
            |k, it| CacheEntry {
                key: k.to_string(),
                value: it.value.clone(),
                ttl: it.expires.map(|e| e.saturating_duration_since(now)),
            },
        ))
    }

    fn stats(&self) -> Result<CacheStats> {
        let now = Instant::now();
        let s = self.lock();
        let mut stats = CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            ..CacheStats::default()
        };
        let mut bytes = 0usize;
        for (k, it) in s.keys.iter().filter(|(_, it)| live(it.expires, now)) {
            stats.keys += 1;
            bytes += k.len() + it.value.len();
        }
        for (name, c) in s.channels.iter().filter(|(_, c)| live(c.expires, now)) {
            if c.messages.is_empty() {
                continue;
            }
            stats.channels += 1;
            stats.messages += c.messages.len() as u64;
            bytes += name.len() + c.messages.iter().map(message_size).sum::<usize>();
        }
        stats.memory_bytes = Some(bytes as u64);
        Ok(stats)
    }

    fn health(&self) -> Result<Health> {
        Ok(Health::ok("in-memory"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;
    use std::thread::sleep;

    fn cache(max_messages: usize, ttl: Option<Duration>) -> MemoryCache {
        MemoryCache::new(ChannelLimits { max_messages, ttl }, 64)
    }

    #[test]
    fn set_get_delete_and_counters() {
        let c = MemoryCache::default();
        assert_eq!(c.get("a").unwrap(), None);
        c.set("a", b"1", None).unwrap();
        assert_eq!(c.get("a").unwrap(), Some(b"1".to_vec()));
        assert!(c.exists("a").unwrap());
        assert!(c.delete("a").unwrap());
        assert!(!c.delete("a").unwrap());
        assert!(!c.exists("a").unwrap());
        let st = c.stats().unwrap();
        assert_eq!((st.hits, st.misses, st.keys), (1, 1, 0));
    }

    #[test]
    fn ttl_and_expire() {
        let c = MemoryCache::default();
        c.set("t", b"x", Some(Duration::from_millis(30))).unwrap();
        assert!(c.exists("t").unwrap());
        sleep(Duration::from_millis(60));
        assert_eq!(c.get("t").unwrap(), None);
        assert!(!c.expire("t", Duration::from_secs(1)).unwrap());
        c.set("k", b"x", None).unwrap();
        assert!(c.expire("k", Duration::from_millis(30)).unwrap());
        sleep(Duration::from_millis(60));
        assert!(!c.exists("k").unwrap());
        assert!(!c.delete("k").unwrap());
        // A TTL longer than any backend can keep is refused, not wrapped;
        // the longest one is kept.
        assert!(c.set("h", b"x", Some(Duration::MAX)).is_err());
        c.set("h", b"x", Some(Duration::from_millis(i64::MAX as u64)))
            .unwrap();
        assert!(c.exists("h").unwrap());
    }

    #[test]
    fn validation() {
        let c = cache(10, None);
        let kind = |r: Result<()>| r.unwrap_err().kind();
        assert_eq!(kind(c.set("", b"x", None)), ErrorKind::InvalidInput);
        assert_eq!(
            kind(c.set("a", b"x", Some(Duration::ZERO))),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind(c.set("a", &[0u8; 65], None)), ErrorKind::InvalidInput);
        assert_eq!(
            c.expire("a", Duration::ZERO).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        // set_many is all or nothing.
        let entries = vec![
            ("ok".to_string(), b"1".to_vec()),
            ("big".to_string(), vec![0u8; 65]),
        ];
        assert_eq!(kind(c.set_many(&entries, None)), ErrorKind::InvalidInput);
        assert!(!c.exists("ok").unwrap());
    }

    #[test]
    fn batches() {
        let c = MemoryCache::default();
        c.set_many(
            &[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())],
            None,
        )
        .unwrap();
        let got = c.get_many(&["a".into(), "x".into(), "b".into()]).unwrap();
        assert_eq!(got, vec![Some(b"1".to_vec()), None, Some(b"2".to_vec())]);
        let st = c.stats().unwrap();
        assert_eq!((st.hits, st.misses, st.keys), (2, 1, 2));
        assert_eq!(st.memory_bytes, Some(4));
    }

    #[test]
    fn messages_bounded_and_ordered() {
        let c = cache(3, None);
        let mut ids = Vec::new();
        for i in 0..5 {
            let m = c
                .add_message("ch", &Message::new("user", format!("m{i}")))
                .unwrap();
            assert!(!m.id.is_empty());
            assert!(m.timestamp_ms > 0);
            ids.push(m.id);
        }
        let r = c.recent("ch", 10, None).unwrap();
        let contents: Vec<_> = r.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["m2", "m3", "m4"]);
        let r = c.recent("ch", 2, Some(&ids[4])).unwrap();
        let contents: Vec<_> = r.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(contents, ["m2", "m3"]);
        assert!(c.recent("ch", 0, None).unwrap().is_empty());
        assert!(c.remove_message("ch", &ids[3]).unwrap());
        assert!(!c.remove_message("ch", &ids[3]).unwrap());
        let st = c.stats().unwrap();
        assert_eq!((st.channels, st.messages), (1, 2));
        assert_eq!(c.clear("ch").unwrap(), 2);
        assert_eq!(c.clear("ch").unwrap(), 0);
        assert!(c.recent("ch", 10, None).unwrap().is_empty());
    }

    #[test]
    fn message_ids_and_timestamps() {
        let c = cache(10, None);
        let m = c
            .add_message("ch", &Message::new("user", "hi").with_id("x1"))
            .unwrap();
        assert_eq!(m.id, "x1");
        let e = c
            .add_message("ch", &Message::new("user", "again").with_id("x1"))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        // The same id in another channel is fine.
        c.add_message("other", &Message::new("user", "hi").with_id("x1"))
            .unwrap();
        let mut m = Message::new("user", "old");
        m.timestamp_ms = 42;
        assert_eq!(c.add_message("ch", &m).unwrap().timestamp_ms, 42);
        let e = c.add_message("", &Message::new("user", "x")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        let e = c
            .add_message("ch", &Message::new("user", "x".repeat(65)))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn channel_ttl_refreshes_on_add() {
        let c = cache(10, Some(Duration::from_millis(80)));
        c.add_message("ch", &Message::new("user", "a")).unwrap();
        sleep(Duration::from_millis(50));
        c.add_message("ch", &Message::new("user", "b")).unwrap();
        sleep(Duration::from_millis(50));
        assert_eq!(c.recent("ch", 10, None).unwrap().len(), 2);
        sleep(Duration::from_millis(100));
        assert!(c.recent("ch", 10, None).unwrap().is_empty());
        assert_eq!(c.clear("ch").unwrap(), 0);
        assert_eq!(c.stats().unwrap().channels, 0);
    }

    #[test]
    fn sweep_removes_expired_keys() {
        let c = MemoryCache::default();
        for i in 0..100 {
            c.set(&format!("k{i}"), b"x", Some(Duration::from_millis(1)))
                .unwrap();
        }
        sleep(Duration::from_millis(5));
        for i in 0..MIN_SWEEP_INTERVAL {
            c.set(&format!("live{i}"), b"x", None).unwrap();
        }
        let s = c.lock();
        assert!(s.keys.len() <= MIN_SWEEP_INTERVAL, "{}", s.keys.len());
    }
}
