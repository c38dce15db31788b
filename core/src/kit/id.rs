//! Unique ids for records a caller creates without giving one (graph nodes
//! and edges, conversation messages, temporary folders).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A new unique id: `prefix`, then the time in microseconds (13 hex
/// digits), a random salt drawn once per process (8 hex digits) and a
/// per-process counter (6 hex digits, wrapping): `n0006153a1c2e4f9a3b1c7d000002`.
///
/// Ids are unique across processes (the salt) and within one (the counter),
/// are safe in file names, keys and SQL identifiers, and ids made later in a
/// process sort after earlier ones (while the clock does not go back).
pub fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = crate::kit::time::now_us() as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff;
    format!("{prefix}{micros:013x}{:08x}{n:06x}", process_salt())
}

/// [`new_id`], drawn again while `taken` says the id is in use (an id a
/// caller chose may look like a generated one).
pub fn new_id_unless(prefix: &str, taken: impl Fn(&str) -> bool) -> String {
    loop {
        let id = new_id(prefix);
        if !taken(&id) {
            return id;
        }
    }
}

/// A random number, new on every call: the standard library's randomly
/// keyed hasher over the process id, the time and a counter. Not for
/// cryptography.
pub fn random_u64() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_i64(crate::kit::time::now_us());
    h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A random number drawn once per process.
pub fn process_salt() -> u32 {
    static SALT: OnceLock<u32> = OnceLock::new();
    *SALT.get_or_init(|| {
        let x = random_u64();
        (x ^ (x >> 32)) as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_sorted_within_a_process() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id("n")).collect();
        assert!(ids.iter().all(|i| i.len() == 1 + 13 + 8 + 6), "{}", ids[0]);
        assert!(ids.iter().all(|i| i.starts_with('n')));
        assert!(ids
            .iter()
            .all(|i| i.bytes().all(|b| b.is_ascii_alphanumeric())));
        let set: HashSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        // The salt is the same for the whole process.
        assert!(ids.iter().all(|i| i[14..22] == ids[0][14..22]));
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let all: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| (0..2000).map(|_| new_id("e")).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let set: HashSet<&String> = all.iter().collect();
        assert_eq!(set.len(), 16_000);
    }

    #[test]
    fn taken_ids_are_skipped() {
        let first = new_id("m");
        let taken: HashSet<String> = (0..3).map(|_| new_id("m")).collect();
        let id = new_id_unless("m", |id| taken.contains(id) || id == first);
        assert!(!taken.contains(&id) && id != first);
    }

    #[test]
    fn random_numbers_differ() {
        let set: HashSet<u64> = (0..1000).map(|_| random_u64()).collect();
        assert_eq!(set.len(), 1000);
    }
}
