//! The cache capability across the boundary: its method list, the plugin
//! side's dispatcher and non-blocking start, and the host side's client.
//! See the [parent module](super) for the list's syntax.

use super::generate;
use crate::ffi::Remote;
use crate::{AsyncCache, Cache};

/// The cache capability's methods, for everything generated from them.
/// Expands `$then!` with `($args)` followed by the list.
#[doc(hidden)]
#[macro_export]
macro_rules! cache_methods {
    ($($then:ident)::+ ! ($($args:tt)*)) => {
        $($then)::+! { ($($args)*)
            trait Cache;
            async AsyncCache.as_async;
            1 start fn get(key: &str => String) -> Option<Vec<u8>>;
            2 start fn set(key: &str => String, value: &[u8] => Vec<u8>, ttl: Option<::std::time::Duration>) -> ();
            3 call fn delete(key: &str => String) -> bool;
            4 call fn exists(key: &str => String) -> bool;
            5 call fn expire(key: &str => String, ttl: ::std::time::Duration) -> bool;
            6 call fn get_many(keys: &[String] => Vec<String>) -> Vec<Option<Vec<u8>>>;
            7 call fn set_many(entries: &[(String, Vec<u8>)] => Vec<(String, Vec<u8>)>, ttl: Option<::std::time::Duration>) -> ();
            8 call fn add_message(channel: &str => String, message: &$crate::Message => $crate::Message) -> $crate::Message;
            9 call fn recent(channel: &str => String, limit: usize, exclude_id: Option<&str> as Option<String>) -> Vec<$crate::Message>;
            10 call fn remove_message(channel: &str => String, id: &str => String) -> bool;
            11 call fn clear(channel: &str => String) -> u64;
            12 call fn stats() -> $crate::CacheStats;
            13 call fn add_messages(channel: &str => String, messages: &[$crate::Message] => Vec<$crate::Message>) -> Vec<$crate::Message>;
            14 call fn list_channels(cursor: Option<&str> as Option<String>, limit: usize) -> $crate::Page<$crate::ChannelInfo>;
            15 call fn scan_keys(cursor: Option<&str> as Option<String>, limit: usize) -> $crate::Page<$crate::CacheEntry>;
            16 call fn import_entries(entries: &[$crate::CacheEntry] => Vec<$crate::CacheEntry>, overwrite: bool) -> u64;
            17 call fn import_messages(channel: &str => String, messages: &[$crate::Message] => Vec<$crate::Message>) -> u64;
        }
    };
}

/// A cache store in a plugin, seen from the host.
pub(crate) struct CacheClient(pub(crate) Remote);

impl CacheClient {
    fn remote(&self) -> &Remote {
        &self.0
    }
}

cache_methods!(generate!(CacheClient {
    fn as_async(&self) -> Option<&dyn AsyncCache> {
        self.0.has_async().then_some(self as &dyn AsyncCache)
    }
}));
