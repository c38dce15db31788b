//! The cache's encryption layer: values and message contents.

use super::{probe, rekey_pages, Opened, Rekey, RekeyReport, Sealer};
use crate::layer::forward;
use backplane_core::{
    check_value_size, Cache, CacheEntry, CacheStats, ChannelInfo, Health, Message, Page, Result,
};
use std::sync::Arc;
use std::time::Duration;

/// Where `rekey` keeps a conversation while it rewrites it, so an
/// interrupted rewrite loses nothing: the next run finishes it.
const REKEY_PREFIX: &str = "backplane.rekey.";
/// Records per page while scanning.
const PAGE: usize = 256;
/// A limit past any conversation's length (every backend caps one).
const ALL: usize = 1 << 30;

/// A cache whose values and message contents are encrypted.
pub(crate) struct CryptCache {
    inner: Arc<dyn Cache>,
    seal: Sealer,
    /// The configured `max_value_bytes`, held to the plaintext (the
    /// backend's limit allows for what encryption adds).
    max_value_bytes: usize,
}

impl CryptCache {
    /// Wrap `inner`; fails when what it holds is under a key not
    /// configured.
    pub(crate) fn new(
        inner: Arc<dyn Cache>,
        seal: Sealer,
        max_value_bytes: usize,
    ) -> Result<CryptCache> {
        let c = CryptCache {
            inner,
            seal,
            max_value_bytes,
        };
        probe(|| {
            for e in c.inner.scan_keys(None, 8)?.items {
                c.value(&e.key, e.value)?;
            }
            for ch in c.inner.list_channels(None, 4)?.items {
                for m in c.inner.recent(&ch.channel, 2, None)? {
                    c.message(&ch.channel, m)?;
                }
            }
            Ok(())
        })?;
        Ok(c)
    }

    /// `value` for `key`, encrypted, once it is within the limit.
    fn seal_value(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        check_value_size("value", key, value.len(), self.max_value_bytes)
            .map_err(|e| self.seal.named(e))?;
        Ok(self.seal.seal_bytes(value))
    }

    fn value(&self, key: &str, stored: Vec<u8>) -> Result<Opened<Vec<u8>>> {
        self.seal
            .open_bytes(stored, &|| format!("the value of key '{key}'"))
    }

    fn opened(&self, key: &str, stored: Option<Vec<u8>>) -> Result<Option<Vec<u8>>> {
        stored.map(|v| Ok(self.value(key, v)?.value)).transpose()
    }

    fn message(&self, channel: &str, mut m: Message) -> Result<Opened<Message>> {
        let o = self.seal.open_text(std::mem::take(&mut m.content), &|| {
            format!("message '{}' of conversation '{channel}'", m.id)
        })?;
        m.content = o.value;
        Ok(Opened {
            value: m,
            stale: o.stale,
        })
    }

    fn messages(&self, channel: &str, list: Vec<Message>) -> Result<Vec<Message>> {
        list.into_iter()
            .map(|m| Ok(self.message(channel, m)?.value))
            .collect()
    }

    /// `m` with its content encrypted, once the content is within the
    /// limit and the conversation is not one `rekey` keeps.
    fn sealed(&self, channel: &str, m: &Message) -> Result<Message> {
        if channel.starts_with(REKEY_PREFIX) {
            return Err(self.seal.named(backplane_core::Error::invalid(format!(
                "conversation names starting with '{REKEY_PREFIX}' are kept for rekey's side copies: name '{channel}' otherwise"
            ))));
        }
        check_value_size("message", channel, m.content.len(), self.max_value_bytes)
            .map_err(|e| self.seal.named(e))?;
        Ok(self.seal_message(m.clone()))
    }

    /// `m` with its content encrypted under the current key.
    fn seal_message(&self, m: Message) -> Message {
        Message {
            content: self.seal.seal_text(&m.content),
            ..m
        }
    }

    fn sealed_all(&self, channel: &str, list: &[Message]) -> Result<Vec<Message>> {
        list.iter().map(|m| self.sealed(channel, m)).collect()
    }

    /// Rewrite one conversation under the current key: the new contents
    /// go to a side conversation first, then replace the conversation's,
    /// then the side one is cleared (a run interrupted anywhere is
    /// finished by the next).
    fn rekey_channel(&self, channel: &str, report: &mut RekeyReport) -> Result<()> {
        let side = format!("{REKEY_PREFIX}{channel}");
        let pending = self.inner.recent(&side, ALL, None)?;
        let list = if pending.is_empty() {
            let all = self.inner.recent(channel, ALL, None)?;
            report.examined += all.len() as u64;
            let mut stale = false;
            let mut sealed = Vec::with_capacity(all.len());
            for m in all {
                let o = self.message(channel, m)?;
                stale |= o.stale;
                sealed.push(self.seal_message(o.value));
            }
            if !stale {
                return Ok(());
            }
            self.inner.import_messages(&side, &sealed)?;
            sealed
        } else {
            pending
        };
        self.inner.clear(channel)?;
        self.inner.import_messages(channel, &list)?;
        self.inner.clear(&side)?;
        report.rewritten += list.len() as u64;
        Ok(())
    }
}

impl Rekey for CryptCache {
    fn rekey(&self, progress: &mut dyn FnMut(u64)) -> Result<RekeyReport> {
        let mut report = RekeyReport::default();
        rekey_pages(
            &mut report,
            progress,
            |c| {
                self.inner
                    .scan_keys(c, PAGE)
                    .map(|p| (p.items, p.next_cursor))
            },
            |mut e| {
                let o = self.value(&e.key, std::mem::take(&mut e.value))?;
                e.value = o.value;
                Ok(Opened {
                    value: e,
                    stale: o.stale,
                })
            },
            |e| CacheEntry {
                value: self.seal.seal_bytes(&e.value),
                ..e
            },
            // Each with the time it had left.
            |stale| self.inner.import_entries(stale, true).map(drop),
        )?;
        // Side conversations of an interrupted run first, then the rest.
        let mut channels = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self.inner.list_channels(cursor.as_deref(), PAGE)?;
            channels.extend(page.items.into_iter().map(|c| c.channel));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let (side, own): (Vec<String>, Vec<String>) = channels
            .into_iter()
            .partition(|c| c.starts_with(REKEY_PREFIX));
        for s in side {
            let channel = &s[REKEY_PREFIX.len()..];
            self.rekey_channel(channel, &mut report)?;
        }
        for c in own {
            self.rekey_channel(&c, &mut report)?;
            progress(report.examined);
        }
        Ok(report)
    }
}

impl Cache for CryptCache {
    forward! {
        fn delete(&self, key: &str) -> bool;
        fn exists(&self, key: &str) -> bool;
        fn expire(&self, key: &str, ttl: Duration) -> bool;
        fn remove_message(&self, channel: &str, id: &str) -> bool;
        fn clear(&self, channel: &str) -> u64;
        fn stats(&self) -> CacheStats;
        fn list_channels(&self, cursor: Option<&str>, limit: usize) -> Page<ChannelInfo>;
        fn health(&self) -> Health;
    }
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let v = self.inner.get(key)?;
        self.opened(key, v)
    }
    fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        self.inner.set(key, &self.seal_value(key, value)?, ttl)
    }
    fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner
            .get_many(keys)?
            .into_iter()
            .zip(keys)
            .map(|(v, k)| self.opened(k, v))
            .collect()
    }
    fn set_many(&self, entries: &[(String, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        let sealed: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| Ok((k.clone(), self.seal_value(k, v)?)))
            .collect::<Result<_>>()?;
        self.inner.set_many(&sealed, ttl)
    }
    fn add_message(&self, channel: &str, message: &Message) -> Result<Message> {
        let stored = self
            .inner
            .add_message(channel, &self.sealed(channel, message)?)?;
        Ok(self.message(channel, stored)?.value)
    }
    fn add_messages(&self, channel: &str, messages: &[Message]) -> Result<Vec<Message>> {
        let sealed = self.sealed_all(channel, messages)?;
        let stored = self.inner.add_messages(channel, &sealed)?;
        self.messages(channel, stored)
    }
    fn recent(
        &self,
        channel: &str,
        limit: usize,
        exclude_id: Option<&str>,
    ) -> Result<Vec<Message>> {
        let list = self.inner.recent(channel, limit, exclude_id)?;
        self.messages(channel, list)
    }
    fn scan_keys(&self, cursor: Option<&str>, limit: usize) -> Result<Page<CacheEntry>> {
        let page = self.inner.scan_keys(cursor, limit)?;
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|mut e| {
                    e.value = self.value(&e.key, std::mem::take(&mut e.value))?.value;
                    Ok(e)
                })
                .collect::<Result<_>>()?,
            next_cursor: page.next_cursor,
        })
    }
    fn import_entries(&self, entries: &[CacheEntry], overwrite: bool) -> Result<u64> {
        let sealed: Vec<CacheEntry> = entries
            .iter()
            .map(|e| {
                Ok(CacheEntry {
                    value: self.seal_value(&e.key, &e.value)?,
                    ..e.clone()
                })
            })
            .collect::<Result<_>>()?;
        self.inner.import_entries(&sealed, overwrite)
    }
    fn import_messages(&self, channel: &str, messages: &[Message]) -> Result<u64> {
        let sealed = self.sealed_all(channel, messages)?;
        self.inner.import_messages(channel, &sealed)
    }
}
