//! How data crosses to Redis and back: messages as the JSON objects a
//! channel list holds, TTLs as whole milliseconds, fields of `INFO`
//! replies.

use backplane_core::{Error, Message, Result};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The longest TTL sent to Redis, in milliseconds (about 285,000 years): a
/// larger one is clamped so `now + ttl` cannot overflow on the server.
const MAX_TTL_MS: u64 = 1 << 53;

/// A TTL in whole milliseconds for `PX` / `PEXPIRE`: rounded up (so a
/// sub-millisecond TTL is 1 ms, never 0) and clamped to [`MAX_TTL_MS`].
pub(crate) fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_nanos().div_ceil(1_000_000).min(MAX_TTL_MS as u128) as u64
}

/// The value of `field` in an `INFO` reply (`field:value` lines).
pub(crate) fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// A message as stored in a channel list.
#[derive(Serialize)]
struct StoredRef<'a> {
    id: &'a str,
    role: &'a str,
    content: &'a str,
    timestamp_ms: i64,
    metadata: &'a serde_json::Value,
}

/// A stored message read back.
#[derive(Deserialize)]
struct Stored {
    id: String,
    role: String,
    content: String,
    timestamp_ms: i64,
    #[serde(default)]
    metadata: serde_json::Value,
}

/// Just the id of a stored message.
#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// `m` as a channel list holds it:
/// `{"id","role","content","timestamp_ms","metadata"}`.
pub(crate) fn encode(m: &Message) -> Result<Vec<u8>> {
    serde_json::to_vec(&StoredRef {
        id: &m.id,
        role: &m.role,
        content: &m.content,
        timestamp_ms: m.timestamp_ms,
        metadata: &m.metadata,
    })
    .map_err(|e| Error::invalid(format!("the message cannot be encoded as JSON: {e}")))
}

/// The message stored as `raw` in `list`.
pub(crate) fn decode(raw: &[u8], list: &str) -> Result<Message> {
    let s: Stored = serde_json::from_slice(raw).map_err(|e| {
        Error::backend(format!(
            "{list} holds an element that is not a Backplane message ({e}): delete the key"
        ))
    })?;
    Ok(Message {
        id: s.id,
        role: s.role,
        content: s.content,
        timestamp_ms: s.timestamp_ms,
        metadata: s.metadata,
    })
}

/// Whether `raw` is a stored message with id `id`.
pub(crate) fn has_id(raw: &[u8], id: &str) -> bool {
    serde_json::from_slice::<IdOnly>(raw).is_ok_and(|m| m.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;

    #[test]
    fn ttl_in_milliseconds() {
        assert_eq!(ttl_ms(Duration::from_micros(1)), 1);
        assert_eq!(ttl_ms(Duration::from_millis(150)), 150);
        assert_eq!(ttl_ms(Duration::from_micros(1500)), 2);
        assert_eq!(ttl_ms(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn messages_round_trip() {
        let m = Message::new("assistant", "hi \"there\"")
            .with_id("x1")
            .with_metadata(serde_json::json!({"model": "m", "n": [1, 2]}));
        let raw = encode(&m).unwrap();
        assert!(raw.starts_with(br#"{"id":"x1","#));
        assert_eq!(decode(&raw, "l").unwrap(), m);
        assert!(has_id(&raw, "x1") && !has_id(&raw, "x2"));
        let e = decode(b"not json", "l").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(!has_id(b"not json", "x1"));
    }

    #[test]
    fn info_fields() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(info_field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(info_field(info, "redis"), None);
        assert_eq!(info_field(info, "used_memory"), None);
    }
}
