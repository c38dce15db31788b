//! Encryption at rest on real stores: the cache, vector and graph suites
//! through the encryption layer; the bytes of SQLite files and Redis
//! values hold no plaintext; a wrong key is one error at open; a rotation
//! with `rekey`; filters on encrypted fields refused; and the README's
//! encrypted demo (plugins.toml's `encrypted` profile, run by the
//! `backplane` command) leaves its conversations unreadable on disk and in
//! Redis.

use backplane_behavior::{
    cache, graph, in_ci, namespace, plugin_libraries, redis_server, run_cases, store_options,
    target_dir, vector, Case, Scratch,
};
use backplane_host::{
    Capability, ErrorKind, Filter, Message, NewNode, NodeQuery, SearchRequest, Storage,
    VectorRecord,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K2: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";

/// A key file in the scratch folder.
fn key_file(scratch: &Scratch, name: &str, key: &str) -> PathBuf {
    let p = scratch.path(name);
    std::fs::write(&p, format!("{key}\n")).unwrap();
    p
}

/// Every file under `dir` (a store's files: a database and its WAL, a
/// folder of segments), read whole.
fn bytes_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    if dir.is_file() {
        return vec![(dir.to_path_buf(), std::fs::read(dir).unwrap())];
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Fails if any file under `dir` holds `text`.
fn assert_absent(dir: &Path, text: &str) {
    let files = bytes_under(dir);
    assert!(!files.is_empty(), "no file under {}", dir.display());
    for (p, b) in files {
        assert!(
            !b.windows(text.len()).any(|w| w == text.as_bytes()),
            "{} holds the plaintext '{text}'",
            p.display()
        );
    }
}

fn open(scratch: &Scratch, body: &str) -> backplane_host::Result<Storage> {
    let file = backplane_testkit::run::write_config(scratch, &plugin_libraries(), body);
    Storage::open(&file)
}

/// The suites through the layer: what an application sees is unchanged.
fn suite<S: 'static>(
    cap: Capability,
    backends: &[&str],
    cases: &[Case<S>],
    handle: backplane_testkit::run::Handle<S>,
    extra: &str,
    encryption: &str,
) {
    for backend in backends {
        let (ran, failures) = run_cases(backend, cap, cases, handle, |scratch| {
            let key = key_file(scratch, "key", K1);
            store_options(
                backend,
                cap,
                scratch,
                &format!(
                    "{extra}\nencryption = {{ key_file = \"{}\"{encryption} }}",
                    key.display()
                ),
            )
        });
        assert!(
            failures.is_empty(),
            "{} {cap} cases failed on encrypted {backend}:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert!(ran > 0 || !in_ci(), "no {cap} case ran on {backend}");
    }
}

#[test]
fn cache_suite_encrypted() {
    suite(
        Capability::Cache,
        &["memory", "sqlite", "redis"],
        &cache::cases(),
        |s| s.cache("s"),
        cache::OPTIONS,
        "",
    );
}

#[test]
fn vector_suite_encrypted() {
    // Documents, and a payload field the suite's filters never compare.
    suite(
        Capability::Vector,
        &["memory", "sqlite"],
        &vector::cases(),
        |s| s.vector("s"),
        "",
        ", fields = [\"i\"]",
    );
}

#[test]
fn graph_suite_encrypted() {
    // `name` is what the suite's text searches look for.
    suite(
        Capability::Graph,
        &["memory", "sqlite"],
        &graph::cases(),
        |s| s.graph("s"),
        "",
        ", fields = [\"name\", \"city\"]",
    );
}

#[test]
fn cache_on_sqlite_holds_ciphertext_and_rotates() {
    let scratch = Scratch::new();
    let k1 = key_file(&scratch, "k1", K1);
    let k2 = key_file(&scratch, "k2", K2);
    let section = |enc: &str| {
        format!(
            "[cache.c]\nbackend = \"sqlite\"\npath = \"{}\"\n{enc}\n",
            scratch.path("db/cache.db").display()
        )
    };
    let with = |key: &Path, old: Option<&Path>| {
        section(&format!(
            "encryption = {{ key_file = \"{}\"{} }}",
            key.display(),
            old.map(|o| format!(", old_key_files = [\"{}\"]", o.display()))
                .unwrap_or_default()
        ))
    };

    // Written before encryption was turned on: read as it is, then
    // encrypted by rekey.
    {
        let s = open(&scratch, &section("")).unwrap();
        s.cache("c")
            .unwrap()
            .blocking()
            .set("early", b"written in the clear", None)
            .unwrap();
    }
    let s = open(&scratch, &with(&k1, None)).unwrap();
    let c = s.cache("c").unwrap();
    let c = c.blocking();
    assert_eq!(c.get("early").unwrap().unwrap(), b"written in the clear");
    c.set("k", b"the launch code is 0451", None).unwrap();
    c.set_many(&[("m".into(), b"batch secret".to_vec())], None)
        .unwrap();
    c.add_messages(
        "chat",
        &[
            Message::new("user", "my doctor said the biopsy was clear"),
            Message::new("assistant", "that is good news"),
        ],
    )
    .unwrap();
    assert_eq!(c.get("k").unwrap().unwrap(), b"the launch code is 0451");
    let recent = c.recent("chat", 10, None).unwrap();
    assert_eq!(recent[0].content, "my doctor said the biopsy was clear");
    let r = s.rekey(Capability::Cache, "c", &mut |_| {}).unwrap();
    assert_eq!(r.rewritten, 1, "only the value written in the clear: {r:?}");
    drop(s);
    for text in ["the launch code", "batch secret", "biopsy", "good news"] {
        assert_absent(&scratch.path("db"), text);
    }

    // Without the layer the store holds marked ciphertext only.
    let raw = open(&scratch, &section("")).unwrap();
    let rc = raw.cache("c").unwrap();
    assert!(rc
        .blocking()
        .get("k")
        .unwrap()
        .unwrap()
        .starts_with(b"BPE1"));
    assert!(rc
        .blocking()
        .get("early")
        .unwrap()
        .unwrap()
        .starts_with(b"BPE1"));
    assert!(rc.blocking().recent("chat", 10, None).unwrap()[0]
        .content
        .starts_with("bpenc1:"));
    drop(raw);

    // A wrong key: one error at open, naming both key ids.
    let e = open(&scratch, &with(&k2, None)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("encryption:") && msg.contains("which is not configured"),
        "{msg}"
    );
    assert!(
        !msg.contains(K1) && !msg.contains(K2),
        "a key printed: {msg}"
    );
    assert_eq!(
        msg.lines().count(),
        2,
        "the open error and the store's line: {msg}"
    );

    // A rotation: the new key with the old one, rekey, then the new key alone.
    let s = open(&scratch, &with(&k2, Some(&k1))).unwrap();
    assert_eq!(
        s.cache("c").unwrap().blocking().get("m").unwrap().unwrap(),
        b"batch secret"
    );
    let mut seen = 0;
    let r = s.rekey(Capability::Cache, "c", &mut |n| seen = n).unwrap();
    assert_eq!(
        (r.examined, r.rewritten),
        (5, 5),
        "3 values and 2 messages: {r:?}"
    );
    assert!(seen >= 3);
    let again = s.rekey(Capability::Cache, "c", &mut |_| {}).unwrap();
    assert_eq!(
        again.rewritten, 0,
        "a second run has nothing left: {again:?}"
    );
    drop(s);
    let s = open(&scratch, &with(&k2, None)).unwrap();
    let c = s.cache("c").unwrap();
    assert_eq!(
        c.blocking().get("k").unwrap().unwrap(),
        b"the launch code is 0451"
    );
    let msgs = c.blocking().recent("chat", 10, None).unwrap();
    assert_eq!(
        msgs.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
        ["my doctor said the biopsy was clear", "that is good news"],
        "the conversation keeps its order"
    );
    // Damaged ciphertext is an error, never garbage.
    drop(s);
    let raw = open(&scratch, &section("")).unwrap();
    let mut v = raw
        .cache("c")
        .unwrap()
        .blocking()
        .get("k")
        .unwrap()
        .unwrap();
    let last = v.len() - 1;
    v[last] ^= 1;
    raw.cache("c")
        .unwrap()
        .blocking()
        .set("k", &v, None)
        .unwrap();
    drop(raw);
    let s = open(&scratch, &with(&k2, None));
    let e = match s {
        Ok(s) => s.cache("c").unwrap().blocking().get("k").unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("changed or damaged"), "{e}");
}

#[test]
fn vector_and_graph_on_sqlite_hold_ciphertext_and_refuse_filters_on_it() {
    let scratch = Scratch::new();
    let k = key_file(&scratch, "k", K1);
    let body = format!(
        "[vector.v]\nbackend = \"sqlite\"\npath = \"{v}\"\nencryption = {{ key_file = \"{k}\", fields = [\"diagnosis\", \"who.email\"] }}\n\n\
         [graph.g]\nbackend = \"sqlite\"\npath = \"{g}\"\nencryption = {{ key_file = \"{k}\", fields = [\"note\"] }}\n",
        v = scratch.path("db/vectors.db").display(),
        g = scratch.path("db/graph.db").display(),
        k = k.display()
    );
    let s = open(&scratch, &body).unwrap();
    let v = s.vector("v").unwrap();
    let v = v.blocking();
    v.create_collection("mem", 3, backplane_host::Distance::Cosine)
        .unwrap();
    v.upsert(
        "mem",
        &[VectorRecord::new("r1", vec![1.0, 0.0, 0.0])
            .with_document("Alice's hernia operation is on Tuesday")
            .with_payload(json!({"user": "alice", "diagnosis": {"code": "K40", "severity": 2}, "who": {"email": "alice@example.org", "age": 41}}))],
    )
    .unwrap();
    let hits = v
        .search(
            "mem",
            &SearchRequest::new(vec![1.0, 0.1, 0.0], 3)
                .with_filter(Filter::parse_str(r#"{"must":[{"key":"user","match":"alice"},{"key":"who.age","range":{"gte":40}},{"key":"diagnosis","exists":true}]}"#).unwrap()),
        )
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].document.as_deref(),
        Some("Alice's hernia operation is on Tuesday")
    );
    assert_eq!(
        hits[0].payload["diagnosis"],
        json!({"code": "K40", "severity": 2})
    );
    assert_eq!(hits[0].payload["who"]["email"], "alice@example.org");
    let e = v
        .count(
            "mem",
            Some(
                &Filter::parse_str(r#"{"must":[{"key":"diagnosis.code","match":"K40"}]}"#).unwrap(),
            ),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains("'diagnosis' is encrypted"), "{e}");

    let g = s.graph("g").unwrap();
    let g = g.blocking();
    g.create_nodes(&[
        NewNode::new(
            "person",
            json!({"name": "Bob", "note": "owes money to the casino"}),
        )
        .with_id("bob"),
        NewNode::new("person", json!({"name": "Eve", "note": "plays chess"})).with_id("eve"),
    ])
    .unwrap();
    let found = g
        .find_nodes(&NodeQuery {
            text: Some("CASINO".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        found.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
    assert_eq!(found[0].properties["note"], "owes money to the casino");
    let e = g
        .find_nodes(&NodeQuery {
            filter: Some(
                Filter::parse_str(r#"{"must":[{"key":"note","match":"plays chess"}]}"#).unwrap(),
            ),
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    drop(s);
    for text in ["hernia", "K40", "alice@example.org", "casino", "chess"] {
        assert_absent(&scratch.path("db"), text);
    }

    // A rotation: both stores rewritten in place under the new key.
    let k2 = key_file(&scratch, "k2", K2);
    let rotated = body.replace(
        &format!("key_file = \"{}\"", k.display()),
        &format!(
            "key_file = \"{}\", old_key_files = [\"{}\"]",
            k2.display(),
            k.display()
        ),
    );
    let s = open(&scratch, &rotated).unwrap();
    let r = s.rekey(Capability::Vector, "v", &mut |_| {}).unwrap();
    assert_eq!((r.examined, r.rewritten), (1, 1), "{r:?}");
    let r = s.rekey(Capability::Graph, "g", &mut |_| {}).unwrap();
    assert_eq!((r.examined, r.rewritten), (2, 2), "{r:?}");
    drop(s);
    let s = open(
        &scratch,
        &body.replace(&k.display().to_string(), &k2.display().to_string()),
    )
    .unwrap();
    let bob = s
        .graph("g")
        .unwrap()
        .blocking()
        .get_node("bob")
        .unwrap()
        .unwrap();
    assert_eq!(
        bob.properties,
        json!({"name": "Bob", "note": "owes money to the casino"})
    );
    let r1 = s
        .vector("v")
        .unwrap()
        .blocking()
        .get("mem", &["r1".into()])
        .unwrap();
    assert_eq!(r1[0].payload["who"]["email"], "alice@example.org");
}

#[test]
fn limits_hold_the_plaintext_and_rekey_keeps_its_conversations() {
    let scratch = Scratch::new();
    let k = key_file(&scratch, "k", K1);
    let s = open(
        &scratch,
        &format!(
            "[cache.c]\nbackend = \"sqlite\"\npath = \"{}\"\nmax_value_bytes = 1000\nencryption = {{ key_file = \"{}\" }}\n",
            scratch.path("c.db").display(),
            k.display()
        ),
    )
    .unwrap();
    let c = s.cache("c").unwrap();
    let c = c.blocking();
    c.set("v", &[7u8; 1000], None).unwrap();
    c.add_message("ch", &Message::new("user", "x".repeat(1000)))
        .unwrap();
    assert_eq!(
        c.set("v", &[7u8; 1001], None).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    let e = c
        .add_message("ch", &Message::new("user", "x".repeat(1001)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("1001 bytes"), "{e}");
    let e = c
        .add_message("backplane.rekey.ch", &Message::new("user", "hi"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn section_mistakes_are_one_line_each() {
    let scratch = Scratch::new();
    for (enc, expect) in [
        ("encryption = { }", "no key: add key_env"),
        (
            "encryption = { key_env = \"BP_TEST_UNSET_KEY_VARIABLE\" }",
            "BP_TEST_UNSET_KEY_VARIABLE that should hold the encryption key is not set",
        ),
        (
            "encryption = { key_file = \"nope.key\" }",
            "cannot read the encryption key file",
        ),
        (
            "encryption = { key_file = \"k\", fields = [\"x\"] }",
            "a cache encrypts every value",
        ),
        (
            "encryption = { key_file = \"k\", cipher = \"aes\" }",
            "cipher",
        ),
        ("encryption = \"on\"", "encryption must be a table"),
    ] {
        std::fs::write(scratch.path("k"), "too short\n").unwrap();
        let e = open(
            &scratch,
            &format!("[cache.c]\nbackend = \"memory\"\n{enc}\n"),
        )
        .unwrap_err();
        assert!(e.to_string().contains(expect), "{enc}: {e}");
        assert_eq!(
            e.to_string().lines().count(),
            if e.to_string().contains("could not be opened") {
                2
            } else {
                1
            },
            "{e}"
        );
    }
    let e = open(
        &scratch,
        "[cache.c]\nbackend = \"memory\"\nencryption = { key_file = \"k\" }\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("does not hold a key") && !e.to_string().contains("too short"),
        "{e}"
    );
    let e = open(&scratch, "[relational.r]\nbackend = \"sqlite\"\npath = \"r.db\"\nencryption = { key_file = \"k\" }\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("encryption covers cache, vector and graph"),
        "{e}"
    );
    let e = open(&scratch, "[graph.g]\nbackend = \"memory\"\nencryption = { key_file = \"k\", fields = [\"_tenant\"] }\n").unwrap_err();
    assert!(e.to_string().contains("holds a record's tenant"), "{e}");
    // A mirror of an encrypted member: its journal would hold plaintext.
    std::fs::write(scratch.path("k"), format!("{K1}\n")).unwrap();
    let e = open(
        &scratch,
        "[cache.a]\nbackend = \"memory\"\nencryption = { key_file = \"k\" }\n\n[cache.b]\nbackend = \"memory\"\n\n[cache.m]\nmirror = [\"a\", \"b\"]\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("member 'a' is encrypted"), "{e}");
}

/// The README's encrypted demo: plugins.toml's `encrypted` profile, with
/// the key in BACKPLANE_KEY, run by the `backplane` command; then the same
/// with the conversations on Redis.
#[test]
fn the_encrypted_demo_leaves_no_conversation_readable() {
    let scratch = Scratch::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let config = scratch.path("plugins.toml");
    std::fs::copy(root.join("plugins.toml"), &config).unwrap();
    let demo = |env: &[(&str, String)]| {
        let out = Command::new(target_dir().join("backplane"))
            .arg("--config")
            .arg(&config)
            .arg("--plugin-dir")
            .arg(target_dir())
            .arg("demo")
            .env("BACKPLANE_PROFILE", "encrypted")
            .env("BACKPLANE_KEY", K1)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && text.contains("every store answered"),
            "the encrypted demo failed:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // What the application sees is the plaintext.
        assert!(text.contains("I just moved to Lisbon"), "{text}");
        assert!(
            text.contains("places serving a flat white: [\"cafe-rio\"]"),
            "{text}"
        );
    };
    demo(&[]);
    let data = scratch.path("data/encrypted");
    for text in ["moved to Lisbon", "good flat white", "How can I help"] {
        assert_absent(&data, text);
    }
    assert_absent(&data.join("knowledge.db"), "Cafe Rio");

    // The conversations on Redis: the server holds ciphertext.
    let (url, shown, down) = redis_server();
    if let Some(why) = down {
        assert!(!in_ci(), "Redis at {shown} does not answer in CI: {why}");
        println!("skip the Redis half: Redis at {shown} does not answer ({why})");
        return;
    }
    let prefix = format!("bp-test:{}:", namespace());
    demo(&[
        ("BACKPLANE_CACHE_CONVERSATIONS_BACKEND", "redis".into()),
        ("BACKPLANE_CACHE_CONVERSATIONS_URL", url.clone()),
        ("BACKPLANE_CACHE_CONVERSATIONS_PREFIX", prefix.clone()),
    ]);
    let raw = open(
        &scratch,
        &format!("[cache.c]\nbackend = \"redis\"\nurl = \"{url}\"\nprefix = \"{prefix}\"\n"),
    )
    .unwrap();
    let c = raw.cache("c").unwrap();
    let c = c.blocking();
    let channels = c.list_channels(None, 10).unwrap().items;
    assert_eq!(channels.len(), 1, "{channels:?}");
    let msgs = c.recent(&channels[0].channel, 10, None).unwrap();
    assert_eq!(msgs.len(), 3);
    for m in &msgs {
        assert!(
            m.content.starts_with("bpenc1:") && !m.content.contains("Lisbon"),
            "{m:?}"
        );
    }
    for e in c.scan_keys(None, 10).unwrap().items {
        assert!(e.value.starts_with(b"BPE1"), "{}", e.key);
    }
    for ch in channels {
        c.clear(&ch.channel).unwrap();
    }
    for e in c.scan_keys(None, 10).unwrap().items {
        c.delete(&e.key).unwrap();
    }
}
