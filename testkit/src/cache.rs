//! Cache cases. Stores are opened with `max_messages = 5` and `ttl = "1s"`
//! (see `behavior.rs`), so the bound and the channel TTL are exercised.

use crate::{expect_err, Case};
use backplane_host::{CacheStore, ErrorKind, Message};
use std::thread::sleep;
use std::time::Duration;

/// Extra options every cache store of the suite gets: the three every
/// cache backend reads.
pub const OPTIONS: &str = "max_messages = 5\nttl = \"1s\"\nmax_value_bytes = 200000";

/// The suite's `max_value_bytes`.
const MAX_VALUE: usize = 200_000;

/// Every cache case.
pub fn cases() -> Vec<Case<CacheStore>> {
    vec![
        ("set_get_delete", set_get_delete),
        ("ttl_expiry", ttl_expiry),
        ("expire", expire),
        ("batch", batch),
        ("messages", messages),
        ("message_bound", message_bound),
        ("message_batches", message_batches),
        ("channel_ttl", channel_ttl),
        ("bad_input", bad_input),
        ("value_limit", value_limit),
        ("stats", stats),
        ("health", health),
    ]
}

fn set_get_delete(s: &CacheStore) {
    let c = s.blocking();
    assert_eq!(c.get("k").unwrap(), None);
    assert!(!c.exists("k").unwrap());
    c.set("k", b"v1", None).unwrap();
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"v1"[..]));
    c.set("k", b"", None).unwrap();
    assert_eq!(
        c.get("k").unwrap().as_deref(),
        Some(&b""[..]),
        "an empty value is a value"
    );
    assert!(c.exists("k").unwrap());
    assert!(c.delete("k").unwrap());
    assert!(!c.delete("k").unwrap());
    assert_eq!(c.get("k").unwrap(), None);
    let big = vec![7u8; 100_000];
    c.set("big", &big, None).unwrap();
    assert_eq!(c.get("big").unwrap().unwrap(), big);
}

fn ttl_expiry(s: &CacheStore) {
    let c = s.blocking();
    c.set("short", b"x", Some(Duration::from_millis(150)))
        .unwrap();
    c.set("long", b"y", Some(Duration::from_secs(60))).unwrap();
    assert!(c.exists("short").unwrap());
    sleep(Duration::from_millis(400));
    assert_eq!(c.get("short").unwrap(), None, "expired key must be gone");
    assert!(!c.exists("short").unwrap());
    assert_eq!(c.get("long").unwrap().as_deref(), Some(&b"y"[..]));
    // Setting again without a TTL makes the key persistent.
    c.set("long", b"z", None).unwrap();
    sleep(Duration::from_millis(50));
    assert!(c.exists("long").unwrap());
}

fn expire(s: &CacheStore) {
    let c = s.blocking();
    assert!(!c.expire("absent", Duration::from_secs(1)).unwrap());
    c.set("k", b"v", None).unwrap();
    assert!(c.expire("k", Duration::from_millis(150)).unwrap());
    sleep(Duration::from_millis(400));
    assert!(!c.exists("k").unwrap());
}

fn batch(s: &CacheStore) {
    let c = s.blocking();
    let entries: Vec<(String, Vec<u8>)> =
        (0..20).map(|i| (format!("k{i}"), vec![i as u8])).collect();
    c.set_many(&entries, None).unwrap();
    let keys: Vec<String> = vec!["k3".into(), "nope".into(), "k19".into()];
    assert_eq!(
        c.get_many(&keys).unwrap(),
        vec![Some(vec![3]), None, Some(vec![19])]
    );
    assert!(c.get_many(&[]).unwrap().is_empty());
    c.set_many(
        &[("t".into(), b"1".to_vec())],
        Some(Duration::from_millis(150)),
    )
    .unwrap();
    sleep(Duration::from_millis(400));
    assert_eq!(c.get_many(&["t".into()]).unwrap(), vec![None]);
}

fn messages(s: &CacheStore) {
    let c = s.blocking();
    assert!(
        c.recent("chan", 10, None).unwrap().is_empty(),
        "an unknown channel is empty"
    );
    let a = c.add_message("chan", &Message::new("user", "one")).unwrap();
    assert!(!a.id.is_empty(), "an id is assigned");
    assert!(a.timestamp_ms > 0, "a timestamp is assigned");
    let b = c
        .add_message(
            "chan",
            &Message::new("assistant", "two").with_metadata(serde_json::json!({"model": "m"})),
        )
        .unwrap();
    let third = c
        .add_message("chan", &Message::new("user", "three").with_id("my-id"))
        .unwrap();
    assert_eq!(third.id, "my-id");
    expect_err(
        c.add_message("chan", &Message::new("user", "again").with_id("my-id")),
        ErrorKind::AlreadyExists,
    );
    c.add_message("other", &Message::new("user", "elsewhere"))
        .unwrap();

    let all: Vec<String> = c
        .recent("chan", 10, None)
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(all, ["one", "two", "three"], "oldest first");
    let last2: Vec<String> = c
        .recent("chan", 2, None)
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(last2, ["two", "three"]);
    let excl: Vec<String> = c
        .recent("chan", 2, Some("my-id"))
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(
        excl,
        ["one", "two"],
        "the excluded message does not count toward the limit"
    );
    let m = c.recent("chan", 10, None).unwrap();
    assert_eq!(m[1].metadata["model"], "m");
    assert_eq!(m[1].id, b.id);
    assert_eq!(m[1].role, "assistant");

    assert!(c.remove_message("chan", &a.id).unwrap());
    assert!(!c.remove_message("chan", &a.id).unwrap());
    assert_eq!(c.recent("chan", 10, None).unwrap().len(), 2);
    assert_eq!(c.clear("chan").unwrap(), 2);
    assert!(c.recent("chan", 10, None).unwrap().is_empty());
    assert_eq!(
        c.recent("other", 10, None).unwrap().len(),
        1,
        "channels are separate"
    );
    assert_eq!(c.clear("never-used").unwrap(), 0);
}

fn message_bound(s: &CacheStore) {
    let c = s.blocking();
    for i in 0..8 {
        c.add_message("b", &Message::new("user", format!("m{i}")))
            .unwrap();
    }
    let kept: Vec<String> = c
        .recent("b", 100, None)
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(
        kept,
        ["m3", "m4", "m5", "m6", "m7"],
        "max_messages = 5 keeps the newest five"
    );
}

fn message_batches(s: &CacheStore) {
    let c = s.blocking();
    let ids = |ms: &[Message]| ms.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    assert!(c.add_messages("b", &[]).unwrap().is_empty());
    let stored = c
        .add_messages(
            "b",
            &[
                Message::new("user", "one").with_id("b1"),
                Message::new("assistant", "two"),
                Message::new("user", "three").with_id("b3"),
            ],
        )
        .unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0].id, "b1");
    assert!(!stored[1].id.is_empty(), "an empty id is assigned");
    assert!(stored.iter().all(|m| m.timestamp_ms > 0));
    assert_eq!(ids(&c.recent("b", 10, None).unwrap()), ids(&stored));
    // All or nothing: one taken id refuses the whole batch.
    let e = expect_err(
        c.add_messages(
            "b",
            &[
                Message::new("user", "four").with_id("b4"),
                Message::new("user", "again").with_id("b3"),
            ],
        ),
        ErrorKind::AlreadyExists,
    );
    assert!(e.message().contains("b3"), "{e}");
    // An id given twice in one batch.
    expect_err(
        c.add_messages(
            "b",
            &[
                Message::new("user", "x").with_id("d"),
                Message::new("user", "y").with_id("d"),
            ],
        ),
        ErrorKind::InvalidInput,
    );
    assert_eq!(
        ids(&c.recent("b", 10, None).unwrap()),
        ids(&stored),
        "a refused batch adds nothing"
    );
    // A batch longer than the bound (5) keeps only its newest messages,
    // and a trimmed id can be used again.
    let many: Vec<Message> = (0..7)
        .map(|i| Message::new("user", format!("m{i}")).with_id(format!("n{i}")))
        .collect();
    c.add_messages("b", &many).unwrap();
    assert_eq!(
        ids(&c.recent("b", 10, None).unwrap()),
        vec!["n2", "n3", "n4", "n5", "n6"]
    );
    c.add_message("b", &Message::new("user", "back").with_id("n0"))
        .unwrap();
    c.add_message("b", &Message::new("user", "back").with_id("b1"))
        .unwrap();
}

fn channel_ttl(s: &CacheStore) {
    let c = s.blocking();
    c.add_message("ttl", &Message::new("user", "soon gone"))
        .unwrap();
    assert_eq!(c.recent("ttl", 10, None).unwrap().len(), 1);
    sleep(Duration::from_millis(1600));
    assert!(
        c.recent("ttl", 10, None).unwrap().is_empty(),
        "ttl = 1s expires the channel"
    );
}

fn bad_input(s: &CacheStore) {
    let c = s.blocking();
    expect_err(c.set("", b"v", None), ErrorKind::InvalidInput);
    expect_err(c.get(""), ErrorKind::InvalidInput);
    expect_err(
        c.set("k", b"v", Some(Duration::ZERO)),
        ErrorKind::InvalidInput,
    );
    expect_err(c.expire("k", Duration::ZERO), ErrorKind::InvalidInput);
    expect_err(
        c.set(&"k".repeat(5000), b"v", None),
        ErrorKind::InvalidInput,
    );
    expect_err(
        c.add_message("", &Message::new("user", "x")),
        ErrorKind::InvalidInput,
    );
    assert_eq!(
        c.get("k").unwrap(),
        None,
        "nothing written by rejected calls"
    );
}

/// `max_value_bytes` is one contract on every backend: a value or message
/// of that size is kept, one byte more is refused and nothing is written.
fn value_limit(s: &CacheStore) {
    let c = s.blocking();
    let at_limit = vec![1u8; MAX_VALUE];
    c.set("fits", &at_limit, None).unwrap();
    assert_eq!(c.get("fits").unwrap().map(|v| v.len()), Some(MAX_VALUE));
    let over = vec![2u8; MAX_VALUE + 1];
    let e = expect_err(c.set("over", &over, None), ErrorKind::InvalidInput);
    assert!(e.message().contains("max_value_bytes"), "{e}");
    expect_err(
        c.set_many(
            &[("a".into(), b"x".to_vec()), ("b".into(), over.clone())],
            None,
        ),
        ErrorKind::InvalidInput,
    );
    assert_eq!(c.get("over").unwrap(), None);
    assert_eq!(c.get("a").unwrap(), None, "a refused batch writes nothing");
    let long = "x".repeat(MAX_VALUE + 1);
    expect_err(
        c.add_message("ch", &Message::new("user", long)),
        ErrorKind::InvalidInput,
    );
    assert!(c.recent("ch", 10, None).unwrap().is_empty());
}

fn stats(s: &CacheStore) {
    let c = s.blocking();
    let before = c.stats().unwrap();
    c.set("a", b"1", None).unwrap();
    c.set("b", b"2", None).unwrap();
    c.get("a").unwrap();
    c.get("missing").unwrap();
    c.add_message("ch", &Message::new("user", "x")).unwrap();
    let st = c.stats().unwrap();
    assert_eq!(st.hits, before.hits + 1);
    assert_eq!(st.misses, before.misses + 1);
    assert_eq!(st.keys, 2);
    assert_eq!(st.channels, 1);
    assert_eq!(st.messages, 1);
}

fn health(s: &CacheStore) {
    assert!(s.blocking().health().unwrap().healthy);
}
