//! The names of a store's Redis keys.
//!
//! Every key lives under the store's prefix `P` (`bp:<store>:` unless
//! configured):
//!
//! - `P kv:<key>`: a string, one per cache key; TTLs are Redis's own
//!   (`SET … PX`, `PEXPIRE`).
//! - `P chan:{<channel>}:list`: a list of the channel's messages as JSON
//!   objects (`id`, `role`, `content`, `timestamp_ms`, `metadata`), oldest
//!   first.
//! - `P chan:{<channel>}:ids`: a set of the ids in the list, for the
//!   duplicate check.
//!
//! The braces are a Redis Cluster hash tag: both keys of a channel hash to
//! the same slot, so the scripts that update them together stay valid in a
//! cluster. The channel name is escaped inside the tag (`%` → `%25`, `{` →
//! `%7B`, `}` → `%7D`) so the tag always ends where the plugin put its `}`
//! and is never empty; the prefix may not contain braces (the config
//! refuses them).

/// The names of a store's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Keys {
    prefix: String,
}

/// What a key under the prefix holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    /// A cache value.
    Value,
    /// A channel's message list.
    ChannelList,
    /// A channel's id set, or a key the plugin did not write.
    Other,
}

impl Keys {
    pub(crate) fn new(prefix: String) -> Keys {
        Keys { prefix }
    }

    /// The prefix every key starts with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis key of cache key `key`.
    pub(crate) fn kv(&self, key: &str) -> String {
        format!("{}kv:{key}", self.prefix)
    }

    /// The Redis keys of a channel's message list and id set; they share
    /// a hash tag, the escaped channel name.
    pub(crate) fn channel(&self, channel: &str) -> (String, String) {
        let base = format!("{}chan:{{{}}}", self.prefix, escape_tag(channel));
        (format!("{base}:list"), format!("{base}:ids"))
    }

    /// A `SCAN MATCH` pattern for every key under the prefix.
    pub(crate) fn scan_pattern(&self) -> String {
        let mut p = String::with_capacity(self.prefix.len() + 1);
        for ch in self.prefix.chars() {
            if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(ch);
        }
        p.push('*');
        p
    }

    /// What `key`, found by a scan, holds.
    pub(crate) fn classify(&self, key: &[u8]) -> KeyKind {
        let Some(rest) = key.strip_prefix(self.prefix.as_bytes()) else {
            return KeyKind::Other;
        };
        if rest.starts_with(b"kv:") {
            KeyKind::Value
        } else if rest.starts_with(b"chan:{") && rest.ends_with(b"}:list") {
            KeyKind::ChannelList
        } else {
            KeyKind::Other
        }
    }
}

/// The channel name as it appears inside the hash tag: `%`, `{` and `}`
/// percent-encoded, so the tag has no brace of its own.
impl Keys {
    /// The key of a `kv:` key, or `None` for any other key.
    pub(crate) fn kv_name(&self, key: &[u8]) -> Option<String> {
        let rest = key
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b"kv:")?;
        String::from_utf8(rest.to_vec()).ok()
    }

    /// The channel of a channel's list key, or `None` for any other key.
    pub(crate) fn channel_name(&self, key: &[u8]) -> Option<String> {
        let rest = key
            .strip_prefix(self.prefix.as_bytes())?
            .strip_prefix(b"chan:{")?
            .strip_suffix(b"}:list")?;
        unescape_tag(std::str::from_utf8(rest).ok()?)
    }
}

/// The channel name `escape_tag` was given.
fn unescape_tag(tag: &str) -> Option<String> {
    let mut out = String::with_capacity(tag.len());
    let mut rest = tag;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3)?;
        out.push(match code {
            "%25" => '%',
            "%7B" => '{',
            "%7D" => '}',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

fn escape_tag(channel: &str) -> String {
    let mut s = String::with_capacity(channel.len());
    for ch in channel.chars() {
        match ch {
            '%' => s.push_str("%25"),
            '{' => s.push_str("%7B"),
            '}' => s.push_str("%7D"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hash tag Redis Cluster hashes for `key`: the text between the
    /// first `{` and the next `}`, when not empty; else the whole key.
    fn hash_tag(key: &str) -> &str {
        if let Some(open) = key.find('{') {
            if let Some(len) = key[open + 1..].find('}') {
                if len > 0 {
                    return &key[open + 1..open + 1 + len];
                }
            }
        }
        key
    }

    #[test]
    fn key_names() {
        let k = Keys::new("bp:conv:".into());
        assert_eq!(k.kv("a"), "bp:conv:kv:a");
        let (list, ids) = k.channel("session-1");
        assert_eq!(list, "bp:conv:chan:{session-1}:list");
        assert_eq!(ids, "bp:conv:chan:{session-1}:ids");
        assert_eq!(k.classify(list.as_bytes()), KeyKind::ChannelList);
        assert_eq!(k.classify(ids.as_bytes()), KeyKind::Other);
        assert_eq!(k.classify(b"bp:conv:kv:chan:{x}:list"), KeyKind::Value);
        assert_eq!(k.classify(b"bp:other:kv:a"), KeyKind::Other);
    }

    #[test]
    fn a_channels_keys_share_one_nonempty_hash_tag() {
        let k = Keys::new("bp:conv:".into());
        for channel in ["plain", "a}b", "}", "{", "{x}", "%7D", "a{b}c", "ünï"] {
            let (list, ids) = k.channel(channel);
            let tag = hash_tag(&list);
            assert_eq!(tag, hash_tag(&ids), "{channel}");
            assert_ne!(tag, list, "{channel}: no tag");
            assert!(!tag.is_empty());
        }
        // Escaping is injective: different channels, different keys.
        assert_ne!(k.channel("}").0, k.channel("%7D").0);
        assert_ne!(k.channel("%").0, k.channel("%25").0);
    }

    #[test]
    fn names_come_back_from_keys() {
        let k = Keys::new("bp:conv:".into());
        for channel in ["plain", "a}b", "}", "{", "{x}", "%7D", "a{b}c", "ünï", "%"] {
            let (list, ids) = k.channel(channel);
            assert_eq!(k.channel_name(list.as_bytes()).as_deref(), Some(channel));
            assert_eq!(k.channel_name(ids.as_bytes()), None);
        }
        assert_eq!(k.kv_name(k.kv("a:b").as_bytes()).as_deref(), Some("a:b"));
        assert_eq!(k.kv_name(b"bp:conv:chan:{x}:list"), None);
    }

    #[test]
    fn scan_pattern_escapes_glob_characters() {
        assert_eq!(Keys::new("bp:c:".into()).scan_pattern(), "bp:c:*");
        assert_eq!(
            Keys::new("a*b?[c]\\:".into()).scan_pattern(),
            "a\\*b\\?\\[c\\]\\\\:*"
        );
    }
}
