//! The cache capability: keys with expiry and conversation channels.
//!
//! ```sql
//! _bp_cache_kv(key PRIMARY KEY, value BLOB, expires_at INTEGER NULL)      -- ms since epoch
//! _bp_cache_channels(channel PRIMARY KEY, expires_at INTEGER NULL)
//! _bp_cache_messages(channel, seq, id, role, content, timestamp_ms, metadata TEXT,
//!                    PRIMARY KEY(channel, id))
//! ```
//!
//! Expiry is enforced here: an expired key or channel reads as absent the
//! moment it expires, is deleted when next touched, and every expired row
//! is purged at most once a minute on a write.

use backplane_core::kit::page::{check_limit, fetch_count, page_of};
use backplane_core::{
    check_batch_ids, check_value_size, validate_key, validate_ttl, Cache, CacheEntry, CacheStats,
    ChannelInfo, Error, Health, Message, Page, Result,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use backplane_core::kit::id::new_id;
use backplane_core::kit::time::now_ms;
use backplane_sqlite_engine::db::{sql_error, write_tx, Db};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _bp_cache_kv (
    key        TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS _bp_cache_kv_expiry ON _bp_cache_kv(expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS _bp_cache_channels (
    channel    TEXT PRIMARY KEY,
    expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS _bp_cache_messages (
    channel      TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    id           TEXT NOT NULL,
    role         TEXT NOT NULL,
    content      TEXT NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    metadata     TEXT,
    PRIMARY KEY (channel, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS _bp_cache_messages_seq ON _bp_cache_messages(channel, seq);";

/// How often expired rows are swept, at most.
const PURGE_EVERY_MS: i64 = 60_000;

/// A cache store on one SQLite database.
pub(crate) struct SqliteCache {
    db: Db,
    max_messages: usize,
    max_value_bytes: usize,
    channel_ttl: Option<Duration>,
    hits: AtomicU64,
    misses: AtomicU64,
    last_purge_ms: AtomicI64,
}

/// `now + ttl` in milliseconds, rounding a sub-millisecond rest up so a
/// positive TTL never expires at once.
fn expiry(now: i64, ttl: Duration) -> i64 {
    let ms = ttl.as_nanos().div_ceil(1_000_000).min(i64::MAX as u128) as i64;
    now.saturating_add(ms)
}

#[inline]
fn live(expires_at: Option<i64>, now: i64) -> bool {
    expires_at.is_none_or(|t| t > now)
}

impl SqliteCache {
    /// The cache store on `db`, its tables created if missing.
    pub(crate) fn open(
        db: Db,
        max_messages: usize,
        max_value_bytes: usize,
        channel_ttl: Option<Duration>,
    ) -> Result<Self> {
        db.create_tables(SCHEMA)?;
        let cache = SqliteCache {
            db,
            max_messages,
            max_value_bytes,
            channel_ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            last_purge_ms: AtomicI64::new(0),
        };
        cache.maybe_purge(&cache.db.lock(), now_ms());
        Ok(cache)
    }

    /// Sweep expired keys and channels, at most once per [`PURGE_EVERY_MS`].
    /// Best effort: a failure (say, another writer holds the lock) is logged
    /// and retried on a later write.
    fn maybe_purge(&self, conn: &Connection, now: i64) {
        let last = self.last_purge_ms.load(Ordering::Relaxed);
        if now - last < PURGE_EVERY_MS {
            return;
        }
        self.last_purge_ms.store(now, Ordering::Relaxed);
        const SQL: &str = "
            DELETE FROM _bp_cache_kv WHERE expires_at IS NOT NULL AND expires_at <= ?1;
            DELETE FROM _bp_cache_messages WHERE channel IN
                (SELECT channel FROM _bp_cache_channels WHERE expires_at IS NOT NULL AND expires_at <= ?1);
            DELETE FROM _bp_cache_channels WHERE expires_at IS NOT NULL AND expires_at <= ?1;";
        let run = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            for stmt in SQL.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                tx.prepare_cached(stmt)?.execute([now])?;
            }
            tx.commit()
        };
        if conn.is_autocommit() {
            if let Err(e) = run() {
                log::warn!(
                    "sqlite cache {}: purging expired entries failed: {e}",
                    self.db.path
                );
            }
        }
    }

    /// Whether `channel` is live. An expired channel's messages are deleted
    /// (best effort: it reads as empty either way).
    fn channel_live(conn: &Connection, channel: &str, now: i64) -> Result<bool> {
        const SQL: &str = "SELECT expires_at FROM _bp_cache_channels WHERE channel = ?1";
        let exp: Option<Option<i64>> = conn
            .prepare_cached(SQL)
            .and_then(|mut s| s.query_row([channel], |r| r.get(0)).optional())
            .map_err(|e| sql_error(e, SQL))?;
        match exp {
            Some(Some(t)) if t <= now => {
                if let Err(e) = drop_channel(conn, channel) {
                    log::debug!("sqlite cache: deleting expired channel '{channel}' failed: {e}");
                }
                Ok(false)
            }
            _ => Ok(true),
        }
    }
}

/// Delete a channel's messages and its row; returns how many messages.
fn drop_channel(conn: &Connection, channel: &str) -> Result<u64> {
    const MSGS: &str = "DELETE FROM _bp_cache_messages WHERE channel = ?1";
    const CHAN: &str = "DELETE FROM _bp_cache_channels WHERE channel = ?1";
    let n = conn
        .prepare_cached(MSGS)
        .and_then(|mut s| s.execute([channel]))
        .map_err(|e| sql_error(e, MSGS))?;
    conn.prepare_cached(CHAN)
        .and_then(|mut s| s.execute([channel]))
        .map_err(|e| sql_error(e, CHAN))?;
    Ok(n as u64)
}

fn set_one(conn: &Connection, key: &str, value: &[u8], expires_at: Option<i64>) -> Result<()> {
    const SQL: &str = "INSERT INTO _bp_cache_kv (key, value, expires_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";
    conn.prepare_cached(SQL)
        .and_then(|mut s| s.execute(params![key, value, expires_at]))
        .map_err(|e| sql_error(e, SQL))?;
    Ok(())
}

fn read_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Message, Option<String>)> {
    Ok((
        Message {
            id: r.get(0)?,
            role: r.get(1)?,
            content: r.get(2)?,
            timestamp_ms: r.get(3)?,
            metadata: serde_json::Value::Null,
        },
        r.get(4)?,
    ))
}

fn with_metadata((mut m, meta): (Message, Option<String>)) -> Result<Message> {
    if let Some(t) = meta {
        m.metadata = serde_json::from_str(&t).map_err(|e| {
            Error::backend(format!(
                "message '{}' has metadata that is not JSON: {e}",
                m.id
            ))
        })?;
    }
    Ok(m)
}

impl SqliteCache {
    fn get_locked(&self, conn: &Connection, key: &str, now: i64) -> Result<Option<Vec<u8>>> {
        const SQL: &str = "SELECT value, expires_at FROM _bp_cache_kv WHERE key = ?1";
        const DEL: &str = "DELETE FROM _bp_cache_kv WHERE key = ?1 AND expires_at <= ?2";
        validate_key(key, "key")?;
        let row: Option<(Vec<u8>, Option<i64>)> = conn
            .prepare_cached(SQL)
            .and_then(|mut s| {
                s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| sql_error(e, SQL))?;
        match row {
            Some((value, exp)) if live(exp, now) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(Some(value))
            }
            Some(_) => {
                // Expired: gone for the caller now; delete it lazily.
                let _ = conn
                    .prepare_cached(DEL)
                    .and_then(|mut s| s.execute(params![key, now]));
                self.misses.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }
}

impl Cache for SqliteCache {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let conn = self.db.lock();
        self.get_locked(&conn, key, now_ms())
    }

    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        validate_key(key, "key")?;
        validate_ttl(ttl)?;
        check_value_size("value", key, value.len(), self.max_value_bytes)?;
        let now = now_ms();
        let conn = self.db.lock();
        set_one(&conn, key, value, ttl.map(|t| expiry(now, t)))?;
        self.maybe_purge(&conn, now);
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<bool> {
        const SQL: &str = "DELETE FROM _bp_cache_kv WHERE key = ?1 RETURNING expires_at";
        validate_key(key, "key")?;
        let now = now_ms();
        let conn = self.db.lock();
        let exp: Option<Option<i64>> = conn
            .prepare_cached(SQL)
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| sql_error(e, SQL))?;
        Ok(exp.is_some_and(|e| live(e, now)))
    }

    fn exists(&self, key: &str) -> Result<bool> {
        const SQL: &str = "SELECT 1 FROM _bp_cache_kv WHERE key = ?1 \
             AND (expires_at IS NULL OR expires_at > ?2)";
        validate_key(key, "key")?;
        let now = now_ms();
        let conn = self.db.lock();
        conn.prepare_cached(SQL)
            .and_then(|mut s| s.exists(params![key, now]))
            .map_err(|e| sql_error(e, SQL))
    }

    fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        const SQL: &str = "UPDATE _bp_cache_kv SET expires_at = ?2 WHERE key = ?1 \
             AND (expires_at IS NULL OR expires_at > ?3)";
        validate_key(key, "key")?;
        validate_ttl(Some(ttl))?;
        let now = now_ms();
        let conn = self.db.lock();
        let n = conn
            .prepare_cached(SQL)
            .and_then(|mut s| s.execute(params![key, expiry(now, ttl), now]))
            .map_err(|e| sql_error(e, SQL))?;
        Ok(n > 0)
    }

    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        for k in keys {
            validate_key(k, "key")?;
        }
        let now = now_ms();
        let conn = self.db.lock();
        keys.iter()
            .map(|k| self.get_locked(&conn, k, now))
            .collect()
    }

    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        for (k, v) in entries {
            validate_key(k, "key")?;
            check_value_size("value", k, v.len(), self.max_value_bytes)?;
        }
        validate_ttl(ttl)?;
        if entries.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let expires_at = ttl.map(|t| expiry(now, t));
        let conn = self.db.lock();
        write_tx(&conn, |tx| {
            for (k, v) in entries {
                set_one(tx, k, v, expires_at)?;
            }
            Ok(())
        })?;
        self.maybe_purge(&conn, now);
        Ok(())
    }

    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        let mut stored = self.add_messages(channel, std::slice::from_ref(message))?;
        Ok(stored.remove(0))
    }

    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        validate_key(channel, "channel")?;
        for m in messages {
            if !m.id.is_empty() {
                validate_key(&m.id, "message id")?;
            }
            check_value_size("message", channel, m.content.len(), self.max_value_bytes)?;
        }
        check_batch_ids(messages)?;
        const EXISTS: &str = "SELECT 1 FROM _bp_cache_messages WHERE channel = ?1 AND id = ?2";
        const SEQ: &str =
            "SELECT coalesce(max(seq), 0) + 1 FROM _bp_cache_messages WHERE channel = ?1";
        const INSERT: &str = "INSERT INTO _bp_cache_messages \
             (channel, seq, id, role, content, timestamp_ms, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
        const TOUCH: &str = "INSERT INTO _bp_cache_channels (channel, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (channel) DO UPDATE SET expires_at = excluded.expires_at";
        // Keep the newest `max_messages`: delete everything older than the
        // max_messages-th newest (nothing when there are fewer).
        const TRIM: &str = "DELETE FROM _bp_cache_messages WHERE channel = ?1 AND seq < \
             (SELECT seq FROM _bp_cache_messages WHERE channel = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)";

        let now = now_ms();
        let expires_at = self.channel_ttl.map(|t| expiry(now, t));
        let keep = (self.max_messages - 1).min(i64::MAX as usize) as i64;
        let mut out: Vec<Message> = Vec::with_capacity(messages.len());

        let conn = self.db.lock();
        // One transaction: a refused message rolls back the whole batch.
        write_tx(&conn, |tx| {
            Self::channel_live(tx, channel, now)?;
            let first: i64 = tx
                .prepare_cached(SEQ)
                .and_then(|mut s| s.query_row([channel], |r| r.get(0)))
                .map_err(|e| sql_error(e, SEQ))?;
            for (seq, message) in (first..).zip(messages) {
                let mut stored = message.clone();
                if stored.id.is_empty() {
                    stored.id = new_id("m");
                }
                if stored.timestamp_ms == 0 {
                    stored.timestamp_ms = now;
                }
                let taken = tx
                    .prepare_cached(EXISTS)
                    .and_then(|mut s| s.exists([channel, &stored.id]))
                    .map_err(|e| sql_error(e, EXISTS))?;
                if taken {
                    return Err(Error::already_exists(format!(
                        "message '{}' exists in channel '{channel}': give a new id, or leave it empty to have one assigned",
                        stored.id
                    )));
                }
                let metadata = (!stored.metadata.is_null()).then(|| stored.metadata.to_string());
                tx.prepare_cached(INSERT)
                    .and_then(|mut s| {
                        s.execute(params![
                            channel,
                            seq,
                            stored.id,
                            stored.role,
                            stored.content,
                            stored.timestamp_ms,
                            metadata
                        ])
                    })
                    .map_err(|e| sql_error(e, INSERT))?;
                out.push(stored);
            }
            tx.prepare_cached(TOUCH)
                .and_then(|mut s| s.execute(params![channel, expires_at]))
                .map_err(|e| sql_error(e, TOUCH))?;
            tx.prepare_cached(TRIM)
                .and_then(|mut s| s.execute(params![channel, keep]))
                .map_err(|e| sql_error(e, TRIM))?;
            Ok(())
        })?;
        self.maybe_purge(&conn, now);
        Ok(out)
    }

    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        const SQL: &str =
            "SELECT id, role, content, timestamp_ms, metadata FROM _bp_cache_messages \
             WHERE channel = ?1 AND id IS NOT ?2 ORDER BY seq DESC LIMIT ?3";
        validate_key(channel, "channel")?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let conn = self.db.lock();
        if !Self::channel_live(&conn, channel, now)? {
            return Ok(Vec::new());
        }
        let limit = limit.min(i64::MAX as usize) as i64;
        let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
        let rows = stmt
            .query_map(params![channel, exclude_id, limit], read_message)
            .map_err(|e| sql_error(e, SQL))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(with_metadata(r.map_err(|e| sql_error(e, SQL))?)?);
        }
        out.reverse();
        Ok(out)
    }

    fn remove_message(&self, channel: &str, id: &str) -> Result<bool> {
        const SQL: &str = "DELETE FROM _bp_cache_messages WHERE channel = ?1 AND id = ?2";
        validate_key(channel, "channel")?;
        let now = now_ms();
        let conn = self.db.lock();
        if !Self::channel_live(&conn, channel, now)? {
            return Ok(false);
        }
        let n = conn
            .prepare_cached(SQL)
            .and_then(|mut s| s.execute([channel, id]))
            .map_err(|e| sql_error(e, SQL))?;
        Ok(n > 0)
    }

    fn clear(&self, channel: &str) -> Result<u64> {
        validate_key(channel, "channel")?;
        let now = now_ms();
        let conn = self.db.lock();
        write_tx(&conn, |tx| {
            if !Self::channel_live(tx, channel, now)? {
                return Ok(0);
            }
            drop_channel(tx, channel)
        })
    }

    fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Result<Page<ChannelInfo>> {
        const SQL: &str =
            "SELECT m.channel, count(*), max(m.timestamp_ms) FROM _bp_cache_messages m \
             LEFT JOIN _bp_cache_channels c ON c.channel = m.channel \
             WHERE (c.expires_at IS NULL OR c.expires_at > ?1) AND m.channel > ?2 \
             GROUP BY m.channel ORDER BY m.channel LIMIT ?3";
        check_limit(limit, "list_channels", "channel")?;
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
        let items = stmt
            .query_map(
                params![now_ms(), cursor.unwrap_or(""), fetch_count(limit)],
                |r| {
                    Ok(ChannelInfo {
                        channel: r.get(0)?,
                        messages: r.get(1)?,
                        last_activity_ms: r.get(2)?,
                    })
                },
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sql_error(e, SQL))?;
        Ok(page_of(items, limit, |c| c.channel.as_str()))
    }

    fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Result<Page<CacheEntry>> {
        const SQL: &str = "SELECT key, value, expires_at FROM _bp_cache_kv \
             WHERE (expires_at IS NULL OR expires_at > ?1) AND key > ?2 ORDER BY key LIMIT ?3";
        check_limit(limit, "scan_keys", "key")?;
        let now = now_ms();
        let conn = self.db.lock();
        let mut stmt = conn.prepare_cached(SQL).map_err(|e| sql_error(e, SQL))?;
        let items = stmt
            .query_map(
                params![now, cursor.unwrap_or(""), fetch_count(limit)],
                |r| {
                    let expires: Option<i64> = r.get(2)?;
                    Ok(CacheEntry {
                        key: r.get(0)?,
                        value: r.get(1)?,
                        ttl: expires
                            .map(|t| Duration::from_millis(t.saturating_sub(now).max(1) as u64)),
                    })
                },
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| sql_error(e, SQL))?;
        Ok(page_of(items, limit, |e| e.key.as_str()))
    }

    fn stats(&self) -> Result<CacheStats> {
        const KEYS: &str =
            "SELECT count(*) FROM _bp_cache_kv WHERE expires_at IS NULL OR expires_at > ?1";
        const MSGS: &str = "SELECT count(DISTINCT m.channel), count(*) FROM _bp_cache_messages m \
             LEFT JOIN _bp_cache_channels c ON c.channel = m.channel \
             WHERE c.expires_at IS NULL OR c.expires_at > ?1";
        const SIZE: &str =
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()";
        let now = now_ms();
        let conn = self.db.lock();
        let keys: u64 = conn
            .prepare_cached(KEYS)
            .and_then(|mut s| s.query_row([now], |r| r.get(0)))
            .map_err(|e| sql_error(e, KEYS))?;
        let (channels, messages): (u64, u64) = conn
            .prepare_cached(MSGS)
            .and_then(|mut s| s.query_row([now], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(|e| sql_error(e, MSGS))?;
        let bytes: u64 = conn
            .prepare_cached(SIZE)
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| sql_error(e, SIZE))?;
        Ok(CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            keys,
            channels,
            messages,
            memory_bytes: Some(bytes),
        })
    }

    fn health(&self) -> Result<Health> {
        self.db.health()
    }
}
