//! The Lua scripts that keep a channel's list and id set in step, and
//! their calls.
//!
//! Each script runs atomically on the server (EVALSHA, the script loaded
//! on every master when the server does not know it). Both keys of a
//! channel share a hash tag, so a script touches one slot and stays valid
//! on a cluster.

use crate::codec;
use backplane_core::{Message, Result};
use redis::{Script, ScriptInvocation};

/// `add_messages`. KEYS: list, ids. ARGV: max_messages, channel TTL in ms
/// (0: none), then an id and a message JSON per message. Returns 0 when
/// all were added, else the (1-based) position of the first message whose
/// id is taken, and adds nothing. Everything that can fail is checked
/// before the first write.
const ADD_SCRIPT: &str = r#"
local n = (#ARGV - 2) / 2
for i = 1, n do
  if redis.call('SISMEMBER', KEYS[2], ARGV[1 + 2 * i]) == 1 then
    return i
  end
end
local max = tonumber(ARGV[1])
local drop = redis.call('LLEN', KEYS[1]) + n - max
local gone = {}
if drop > 0 then
  local old = redis.call('LRANGE', KEYS[1], 0, drop - 1)
  for i, raw in ipairs(old) do
    local ok, m = pcall(cjson.decode, raw)
    if not ok or type(m) ~= 'table' or type(m.id) ~= 'string' then
      return redis.error_reply('BACKPLANE ' .. KEYS[1] .. ' holds an element that is not a Backplane message; delete the key')
    end
    gone[i] = m.id
  end
end
for i = 1, n do
  redis.call('RPUSH', KEYS[1], ARGV[2 + 2 * i])
  redis.call('SADD', KEYS[2], ARGV[1 + 2 * i])
end
if drop > 0 then
  redis.call('LTRIM', KEYS[1], drop, -1)
  for _, id in ipairs(gone) do
    redis.call('SREM', KEYS[2], id)
  end
  -- Messages of this batch trimmed at once never were in the list.
  for i = 1, n do
    if i <= drop - #gone then
      redis.call('SREM', KEYS[2], ARGV[1 + 2 * i])
    end
  end
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return 0
"#;

/// `remove_message`. KEYS: list, ids. ARGV: id, the message's stored JSON.
/// Returns how many elements were removed (0 or 1).
const REMOVE_SCRIPT: &str = r#"
local n = redis.call('LREM', KEYS[1], 1, ARGV[2])
if n > 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return n
"#;

/// `clear`. KEYS: list, ids. Returns the list's length before.
const CLEAR_SCRIPT: &str = r#"
local n = redis.call('LLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2])
return n
"#;

/// A store's scripts (each knows its SHA1 for EVALSHA).
pub(crate) struct Scripts {
    add: Script,
    remove: Script,
    clear: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            add: Script::new(ADD_SCRIPT),
            remove: Script::new(REMOVE_SCRIPT),
            clear: Script::new(CLEAR_SCRIPT),
        }
    }

    /// Append `messages` to the channel whose keys are `list` and `ids`,
    /// trim it to `max_messages`, and when `ttl_ms` is not 0 make both
    /// keys expire that many milliseconds later. Replies 0, or the 1-based
    /// position of the first message whose id is taken (nothing added).
    pub(crate) fn add(
        &self,
        list: &str,
        ids: &str,
        max_messages: usize,
        ttl_ms: u64,
        messages: &[Message],
    ) -> Result<ScriptInvocation<'_>> {
        let mut call = self.add.key(list);
        call.key(ids).arg(max_messages).arg(ttl_ms);
        for m in messages {
            call.arg(&m.id).arg(codec::encode(m)?);
        }
        Ok(call)
    }

    /// Remove the message `id`, stored as `json`, from the channel whose
    /// keys are `list` and `ids`. Replies how many were removed (0 or 1).
    pub(crate) fn remove(
        &self,
        list: &str,
        ids: &str,
        id: &str,
        json: Vec<u8>,
    ) -> ScriptInvocation<'_> {
        let mut call = self.remove.key(list);
        call.key(ids).arg(id).arg(json);
        call
    }

    /// Delete the channel whose keys are `list` and `ids`. Replies how
    /// many messages it held.
    pub(crate) fn clear(&self, list: &str, ids: &str) -> ScriptInvocation<'_> {
        let mut call = self.clear.key(list);
        call.key(ids);
        call
    }
}
