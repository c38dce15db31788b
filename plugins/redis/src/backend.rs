//! [`RedisCache`], the cache capability: the `Cache` calls and the
//! non-blocking `get`/`set` of [`AsyncCache`], each checked before anything
//! is sent.
//!
//! # Atomicity
//!
//! `add_message` and `add_messages` are one Lua script ([`Scripts`]): the
//! duplicate checks, the pushes, the trim to `max_messages` (with the
//! trimmed ids removed from the set) and the `PEXPIRE` of both keys when a
//! channel TTL is configured all happen at once, and the script checks
//! everything it can fail on before it writes. `remove_message` finds the
//! stored JSON of the id and removes it with a script (`LREM` + `SREM`);
//! `clear` is a script too (`LLEN`, `DEL`). `set_many` is one `MULTI` of
//! `SET`s on a single server; on a cluster its keys live in different
//! slots, so it is a pipeline per node, each `SET` atomic on its own.

use crate::client::Client;
use crate::codec::{self, info_field, ttl_ms};
use crate::config::RedisConfig;
use crate::keys::{KeyKind, Keys};
use crate::scripts::Scripts;
use backplane_core::kit::id::new_id;
use backplane_core::kit::page::{check_limit, page_of};
use backplane_core::kit::time::now_ms;
use backplane_core::{
    check_batch_ids, validate_key, validate_ttl, AsyncCache, Cache, CacheEntry, CacheStats,
    ChannelInfo, ChannelLimits, Done, Error, Health, Message, Page, Result,
};
use std::collections::HashSet;
use std::time::Duration;

/// Keys asked for per `SCAN` call, and commands per pipeline in `stats`.
const SCAN_COUNT: usize = 1000;

/// Tries at a fresh id when a generated one is taken (which takes two
/// processes drawing the same random salt in the same microsecond, or a
/// caller that chose an id shaped like a generated one).
const ID_ATTEMPTS: usize = 3;

/// A cache store on a Redis (or Valkey) server, or a Redis Cluster.
pub(crate) struct RedisCache {
    client: Client,
    keys: Keys,
    limits: ChannelLimits,
    max_value_bytes: usize,
    scripts: Scripts,
}

impl RedisCache {
    /// A store for the settings in `config`, its keys under the prefix for
    /// store `store`. Parses the URL but does not connect: the first call
    /// does. A URL that does not parse is a `Config` error.
    pub(crate) fn new(config: &RedisConfig, store: &str) -> Result<RedisCache> {
        let keys = Keys::new(config.prefix(store));
        let client = Client::new(config, keys.prefix())?;
        Ok(RedisCache {
            client,
            keys,
            limits: config.channel_limits()?,
            max_value_bytes: config.max_value_bytes,
            scripts: Scripts::new(),
        })
    }

    /// The key prefix of this store.
    pub(crate) fn prefix(&self) -> &str {
        self.keys.prefix()
    }

    /// `host:port` of the server (or its socket path), or the seed nodes.
    pub(crate) fn addr(&self) -> &str {
        self.client.addr()
    }

    fn check_value(&self, what: &str, name: &str, len: usize) -> Result<()> {
        backplane_core::check_value_size(what, name, len, self.max_value_bytes)
    }

    /// The checks of `set`, before anything is sent.
    fn check_set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        validate_key(key, "key")?;
        validate_ttl(ttl)?;
        self.check_value("value", key, value.len())
    }

    /// `SET key value [PX ttl]` for cache key `key`.
    fn set_cmd(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> redis::Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.keys.kv(key)).arg(value);
        if let Some(t) = ttl {
            cmd.arg("PX").arg(ttl_ms(t));
        }
        cmd
    }

    /// Call `what`: command `name` on cache key `key`, once the key is
    /// checked.
    fn on_key<T: redis::FromRedisValue>(&self, what: &str, name: &str, key: &str) -> Result<T> {
        validate_key(key, "key")?;
        let k = self.keys.kv(key);
        self.client
            .run(what, |c| redis::cmd(name).arg(k).query(c.like()))
    }

    fn count(&self, hits: u64, misses: u64) {
        self.client.shared().count(hits, misses)
    }
}

impl AsyncCache for RedisCache {
    fn get(&self, key: &str, done: Done<Option<Vec<u8>>>) {
        if let Err(e) = validate_key(key, "key") {
            return done(Err(e));
        }
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.keys.kv(key));
        let shared = self.client.shared().clone();
        self.client
            .query("get", cmd, move |r: Result<Option<Vec<u8>>>| {
                if let Ok(v) = &r {
                    shared.count(v.is_some() as u64, v.is_none() as u64);
                }
                done(r)
            })
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>, done: Done<()>) {
        if let Err(e) = self.check_set(key, value, ttl) {
            return done(Err(e));
        }
        let cmd = self.set_cmd(key, value, ttl);
        self.client.query("set", cmd, done)
    }
}

impl Cache for RedisCache {
    fn as_async(&self) -> Option<&dyn AsyncCache> {
        self.client.has_async().then_some(self as &dyn AsyncCache)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let v: Option<Vec<u8>> = self.on_key("get", "GET", key)?;
        self.count(v.is_some() as u64, v.is_none() as u64);
        Ok(v)
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.check_set(key, value, ttl)?;
        let cmd = self.set_cmd(key, value, ttl);
        self.client.run("set", |c| cmd.query(c.like()))
    }

    fn delete(&self, key: &str) -> Result<bool> {
        let n: u64 = self.on_key("delete", "DEL", key)?;
        Ok(n > 0)
    }

    fn exists(&self, key: &str) -> Result<bool> {
        let n: u64 = self.on_key("exists", "EXISTS", key)?;
        Ok(n > 0)
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        validate_key(key, "key")?;
        validate_ttl(Some(ttl))?;
        let k = self.keys.kv(key);
        let n: u64 = self.client.run("expire", |c| {
            redis::cmd("PEXPIRE")
                .arg(k)
                .arg(ttl_ms(ttl))
                .query(c.like())
        })?;
        Ok(n > 0)
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        for k in keys {
            validate_key(k, "key")?;
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for k in keys {
            cmd.arg(self.keys.kv(k));
        }
        let values: Vec<Option<Vec<u8>>> = self.client.run("get_many", |c| cmd.query(c.like()))?;
        if values.len() != keys.len() {
            return Err(Error::backend(format!(
                "get_many: redis at {} answered {} values for {} keys",
                self.addr(),
                values.len(),
                keys.len()
            )));
        }
        let hits = values.iter().filter(|v| v.is_some()).count() as u64;
        self.count(hits, values.len() as u64 - hits);
        Ok(values)
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        validate_ttl(ttl)?;
        for (k, v) in entries {
            validate_key(k, "key")?;
            self.check_value("value", k, v.len())?;
        }
        if entries.is_empty() {
            return Ok(());
        }
        let cmds: Vec<redis::Cmd> = entries
            .iter()
            .map(|(k, v)| self.set_cmd(k, v, ttl))
            .collect();
        self.client.run("set_many", |c| c.pipeline(cmds, true))
    }

    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        let mut stored = self.add_messages(channel, std::slice::from_ref(message))?;
        Ok(stored.remove(0))
    }

    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        validate_key(channel, "channel")?;
        check_batch_ids(messages)?;
        for m in messages {
            self.check_value("message", channel, m.content.len())?;
        }
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (list, ids) = self.keys.channel(channel);
        let ttl = self.limits.ttl.map_or(0, ttl_ms);
        let now = now_ms();
        let mut stored: Vec<Message> = messages
            .iter()
            .map(|m| {
                let mut s = m.clone();
                if s.id.is_empty() {
                    s.id = new_id("m");
                }
                if s.timestamp_ms == 0 {
                    s.timestamp_ms = now;
                }
                s
            })
            .collect();
        for _ in 0..ID_ATTEMPTS {
            let call = self
                .scripts
                .add(&list, &ids, self.limits.max_messages, ttl, &stored)?;
            let taken: usize = self.client.run("add_message", |c| call.invoke(c.like()))?;
            if taken == 0 {
                return Ok(stored);
            }
            let i = taken - 1;
            if i >= stored.len() || !messages[i].id.is_empty() {
                return Err(backplane_core::cache::message_taken(
                    channel,
                    stored.get(i).map_or("", |m| m.id.as_str()),
                ));
            }
            // A generated id was taken: draw fresh ones and try again.
            for (s, m) in stored.iter_mut().zip(messages) {
                if m.id.is_empty() {
                    s.id = new_id("m");
                }
            }
        }
        Err(Error::backend(format!(
            "add_message: {ID_ATTEMPTS} generated ids for channel '{channel}' were all taken: retry"
        )))
    }

    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        validate_key(channel, "channel")?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (list, _) = self.keys.channel(channel);
        // Ids are unique, so one extra element covers the excluded one.
        let want = if exclude_id.is_some() {
            limit.saturating_add(1)
        } else {
            limit
        };
        let start = -(want.min(i64::MAX as usize) as i64);
        let raw: Vec<Vec<u8>> = self.client.run("recent", |c| {
            redis::cmd("LRANGE")
                .arg(&list)
                .arg(start)
                .arg(-1)
                .query(c.like())
        })?;
        let mut out = raw
            .iter()
            .map(|r| codec::decode(r, &list))
            .collect::<Result<Vec<Message>>>()?;
        if let Some(x) = exclude_id {
            out.retain(|m| m.id != x);
        }
        let extra = out.len().saturating_sub(limit);
        out.drain(..extra);
        Ok(out)
    }

    fn remove_message(&self, channel: &str, id: &str) -> Result<bool> {
        validate_key(channel, "channel")?;
        let (list, ids) = self.keys.channel(channel);
        self.client.run("remove_message", |c| {
            let known: bool = redis::cmd("SISMEMBER").arg(&ids).arg(id).query(c.like())?;
            if !known {
                return Ok(false);
            }
            let raw: Vec<Vec<u8>> = redis::cmd("LRANGE")
                .arg(&list)
                .arg(0)
                .arg(-1)
                .query(c.like())?;
            let found = raw.into_iter().find(|r| codec::has_id(r, id));
            let Some(json) = found else {
                // The set knew an id the list does not hold: repair it.
                redis::cmd("SREM").arg(&ids).arg(id).exec(c.like())?;
                return Ok(false);
            };
            let n: i64 = self
                .scripts
                .remove(&list, &ids, id, json)
                .invoke(c.like())?;
            Ok(n > 0)
        })
    }

    fn clear(&self, channel: &str) -> Result<u64> {
        validate_key(channel, "channel")?;
        let (list, ids) = self.keys.channel(channel);
        self.client.run("clear", |c| {
            self.scripts.clear(&list, &ids).invoke(c.like())
        })
    }

    /// Channels in name order: every call scans the store's channel keys
    /// (on every master of a cluster), as `stats` does, and returns the page
    /// after `cursor`, with `LLEN` and the newest message of each.
    fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ChannelInfo>> {
        check_limit(limit, "list_channels", "channel")?;
        let pattern = self.keys.scan_pattern();
        let mut names: Vec<String> = self.client.run("list_channels", |c| {
            let mut names = Vec::new();
            for node in c.nodes()? {
                let mut at: u64 = 0;
                loop {
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(at)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT);
                    let (next, batch): (u64, Vec<Vec<u8>>) = c.query_on(node.as_ref(), &scan)?;
                    names.extend(batch.iter().filter_map(|k| self.keys.channel_name(k)));
                    if next == 0 {
                        break;
                    }
                    at = next;
                }
            }
            Ok(names)
        })?;
        names.sort();
        names.dedup();
        let after = names.partition_point(|n| cursor.is_some_and(|c| n.as_str() <= c));
        let mut page: Vec<String> = names.split_off(after);
        page.truncate(limit.saturating_add(1));
        if page.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: None,
            });
        }
        let lists: Vec<String> = page.iter().map(|n| self.keys.channel(n).0).collect();
        let (lens, last): (Vec<u64>, Vec<Option<Vec<u8>>>) =
            self.client.run("list_channels", |c| {
                let lens: Vec<u64> = c.pipeline(
                    lists.iter().map(|l| {
                        let mut cmd = redis::cmd("LLEN");
                        cmd.arg(l);
                        cmd
                    }),
                    false,
                )?;
                let last: Vec<Option<Vec<u8>>> = c.pipeline(
                    lists.iter().map(|l| {
                        let mut cmd = redis::cmd("LINDEX");
                        cmd.arg(l).arg(-1);
                        cmd
                    }),
                    false,
                )?;
                Ok((lens, last))
            })?;
        let mut items = Vec::with_capacity(page.len());
        for ((name, list), (n, newest)) in
            page.into_iter().zip(&lists).zip(lens.into_iter().zip(last))
        {
            let Some(newest) = newest.filter(|_| n > 0) else {
                continue;
            };
            items.push(ChannelInfo {
                channel: name,
                messages: n,
                last_activity_ms: codec::decode(&newest, list)?.timestamp_ms,
            });
        }
        Ok(page_of(items, limit, |c| c.channel.as_str()))
    }

    /// Keys page by page with `SCAN` (node by node on a cluster); the
    /// cursor is `<node>:<scan cursor>`. As `SCAN` guarantees, a key that
    /// exists for the whole scan is returned; one written meanwhile may be
    /// missed or returned twice.
    fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Result<Page<CacheEntry>> {
        check_limit(limit, "scan_keys", "key")?;
        let (mut node, mut at) = match cursor {
            None => (0usize, 0u64),
            Some(c) => c
                .split_once(':')
                .and_then(|(n, a)| Some((n.parse().ok()?, a.parse().ok()?)))
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "'{c}' is not a cursor scan_keys gave: pass the next_cursor of the previous page, or none for the first"
                    ))
                })?,
        };
        let pattern = self.keys.scan_pattern();
        let (keys, next) = self.client.run("scan_keys", |c| {
            let nodes = c.nodes()?;
            let mut keys: Vec<Vec<u8>> = Vec::new();
            while node < nodes.len() && keys.len() < limit {
                let mut scan = redis::cmd("SCAN");
                scan.arg(at)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(limit.min(SCAN_COUNT));
                let (next, batch): (u64, Vec<Vec<u8>>) = c.query_on(nodes[node].as_ref(), &scan)?;
                keys.extend(
                    batch
                        .into_iter()
                        .filter(|k| self.keys.classify(k) == KeyKind::Value),
                );
                if next == 0 {
                    node += 1;
                    at = 0;
                } else {
                    at = next;
                }
            }
            let next = (node < nodes.len()).then(|| format!("{node}:{at}"));
            Ok((keys, next))
        })?;
        if keys.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next_cursor: next,
            });
        }
        let (values, ttls): (Vec<Option<Vec<u8>>>, Vec<i64>) =
            self.client.run("scan_keys", |c| {
                let values: Vec<Option<Vec<u8>>> = c.pipeline(
                    keys.iter().map(|k| {
                        let mut cmd = redis::cmd("GET");
                        cmd.arg(k);
                        cmd
                    }),
                    false,
                )?;
                let ttls: Vec<i64> = c.pipeline(
                    keys.iter().map(|k| {
                        let mut cmd = redis::cmd("PTTL");
                        cmd.arg(k);
                        cmd
                    }),
                    false,
                )?;
                Ok((values, ttls))
            })?;
        let mut items = Vec::with_capacity(keys.len());
        for ((key, value), ttl) in keys.iter().zip(values).zip(ttls) {
            // A key that expired or was deleted since the scan saw it.
            let (Some(value), Some(name)) = (value, self.keys.kv_name(key)) else {
                continue;
            };
            let ttl = match ttl {
                -2 => continue,
                t if t > 0 => Some(Duration::from_millis(t as u64)),
                _ => None,
            };
            items.push(CacheEntry {
                key: name,
                value,
                ttl,
            });
        }
        Ok(Page {
            items,
            next_cursor: next,
        })
    }

    fn stats(&self) -> Result<CacheStats> {
        let pattern = self.keys.scan_pattern();
        let (keys, channels, messages, memory) = self.client.run("stats", |c| {
            let mut kv: HashSet<Vec<u8>> = HashSet::new();
            let mut lists: HashSet<Vec<u8>> = HashSet::new();
            let mut memory: Option<u64> = None;
            // SCAN and INFO on the one server, or on every master.
            for node in c.nodes()? {
                let mut cursor: u64 = 0;
                loop {
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT);
                    let (next, batch): (u64, Vec<Vec<u8>>) = c.query_on(node.as_ref(), &scan)?;
                    for key in batch {
                        match self.keys.classify(&key) {
                            KeyKind::Value => {
                                kv.insert(key);
                            }
                            KeyKind::ChannelList => {
                                lists.insert(key);
                            }
                            KeyKind::Other => {}
                        }
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                let mut info = redis::cmd("INFO");
                info.arg("memory");
                let info: String = c.query_on(node.as_ref(), &info)?;
                if let Some(m) =
                    info_field(&info, "used_memory").and_then(|v| v.parse::<u64>().ok())
                {
                    *memory.get_or_insert(0) += m;
                }
            }
            let lists: Vec<Vec<u8>> = lists.into_iter().collect();
            let (mut channels, mut messages) = (0u64, 0u64);
            for chunk in lists.chunks(SCAN_COUNT) {
                let llen = chunk.iter().map(|key| {
                    let mut cmd = redis::cmd("LLEN");
                    cmd.arg(key);
                    cmd
                });
                let lens: Vec<u64> = c.pipeline(llen, false)?;
                for n in lens.into_iter().filter(|&n| n > 0) {
                    channels += 1;
                    messages += n;
                }
            }
            Ok((kv.len() as u64, channels, messages, memory))
        })?;
        let (hits, misses) = self.client.shared().counts();
        Ok(CacheStats {
            hits,
            misses,
            keys,
            channels,
            messages,
            memory_bytes: memory,
        })
    }

    fn health(&self) -> Result<Health> {
        let (info, cluster) = self.client.run("health", |c| {
            redis::cmd("PING").exec(c.like())?;
            // INFO of one server; on a cluster, of its first master (a
            // plain INFO would answer one reply per node).
            let nodes = c.nodes()?;
            let mut cmd = redis::cmd("INFO");
            cmd.arg("server");
            let info: String = c.query_on(nodes[0].as_ref(), &cmd)?;
            let cluster = c.cluster_state(&nodes)?;
            Ok((info, cluster))
        })?;
        let name = info_field(&info, "server_name").unwrap_or("redis");
        let version = info_field(&info, &format!("{name}_version"))
            .or_else(|| info_field(&info, "redis_version"))
            .unwrap_or("(unknown version)");
        let db = match self.client.shared().db {
            0 => String::new(),
            n => format!("db {n}, "),
        };
        Ok(match cluster {
            None => Health::ok(format!(
                "{name} {version} at {} ({db}prefix {})",
                self.addr(), self.prefix()
            )),
            // A cluster answers PING while some slots have no master:
            // healthy only when it says it serves them all.
            Some((masters, state)) => Health {
                healthy: state == "ok",
                detail: format!(
                    "{name} {version} cluster of {masters} masters, state {state}, via {} (prefix {})",
                    self.addr(), self.prefix()
                ),
            },
        })
    }
}
