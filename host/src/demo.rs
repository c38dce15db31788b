//! `backplane demo`: the usage pattern of a memory-backed chat assistant,
//! run against whatever the configured stores are.
//!
//! Users live in the relational store `user_data`, recent messages in the
//! cache `conversations`, memories in the vector store `memories` (searched
//! with a filter), and facts in the graph `knowledge` (walked and searched
//! for a path). Embeddings come from a toy hashing embedder so the demo needs
//! no model; swap in a real one in an application.

use crate::{
    Condition, Direction, Distance, Error, Filter, Message, Migration, NewEdge, NewNode, Params,
    Range, Result, SearchRequest, Storage, Value, VectorRecord,
};
use backplane_core::ErrorKind;
use serde_json::json;
use std::io::Write;

/// Dimension of the toy embedder.
pub const DEMO_DIMENSION: u32 = 64;

/// A deterministic bag-of-words embedding: each lower-cased word is hashed
/// into one of `dim` buckets, then the vector is normalised. Similar texts
/// share words and so score higher; it stands in for a real model.
pub fn toy_embed(text: &str, dim: u32) -> Vec<f32> {
    let mut v = vec![0f32; dim as usize];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
    {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in word.to_lowercase().bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        v[(h % dim as u64) as usize] += 1.0;
    }
    let n = backplane_core::vector::norm(&v);
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
    v
}

fn io(e: std::io::Error) -> Error {
    Error::backend(format!("cannot write the demo's output: {e}"))
}

/// Run the demo against `storage`, printing what each store did to `out`.
pub fn run_demo(storage: &Storage, out: &mut dyn Write) -> Result<()> {
    macro_rules! say { ($($t:tt)*) => { writeln!(out, $($t)*).map_err(io)? } }

    // 1. Users, in the relational store.
    let users = storage.relational("user_data")?;
    let db = users.blocking();
    say!("== relational '{}' ({})", users.name(), users.backend());
    let report = db.migrate(&[
        Migration::new(1, "users", "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL)"),
        Migration::new(2, "user preferences", "ALTER TABLE users ADD COLUMN preferences TEXT"),
    ])?;
    say!(
        "   migrations applied now: {:?}, already applied: {:?}",
        report.applied,
        report.skipped
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    for (email, name, prefs) in [
        (
            "alice@example.com",
            "Alice",
            json!({"language": "en", "tone": "friendly"}),
        ),
        (
            "bob@example.com",
            "Bob",
            json!({"language": "pt", "tone": "brief"}),
        ),
    ] {
        db.execute(
            "INSERT INTO users (email, name, created_at, preferences) VALUES (:email, :name, :now, :prefs) \
             ON CONFLICT(email) DO UPDATE SET name = excluded.name, preferences = excluded.preferences",
            &Params::named([
                ("email", Value::from(email)),
                ("name", Value::from(name)),
                ("now", Value::from(now)),
                ("prefs", Value::Text(prefs.to_string())),
            ]),
        )?;
    }
    let rows = db.query(
        "SELECT id, name, preferences FROM users WHERE email = ?",
        &crate::params!["alice@example.com"],
    )?;
    let alice_id = rows.get(0, "id").and_then(Value::as_i64).unwrap_or(0);
    say!(
        "   user alice: id={alice_id}, name={}, preferences={}",
        rows.get(0, "name")
            .map(|v| v.to_string())
            .unwrap_or_default(),
        rows.get(0, "preferences")
            .map(|v| v.to_string())
            .unwrap_or_default()
    );
    let count = db.query("SELECT count(*) AS n FROM users", &Params::None)?;
    say!("   users in table: {}", count.scalar()?);

    // 2. Recent messages, in the cache.
    let cache = storage.cache("conversations")?;
    let c = cache.blocking();
    say!("== cache '{}' ({})", cache.name(), cache.backend());
    let channel = format!("user:{alice_id}:chat");
    c.clear(&channel)?;
    let turns = [
        ("user", "Hi! I just moved to Lisbon."),
        ("assistant", "Welcome to Lisbon! How can I help?"),
        ("user", "Where can I get a good flat white near the river?"),
    ];
    // The history so far in one call, then the newest turn.
    c.add_messages(
        &channel,
        &turns[..2]
            .iter()
            .map(|(role, text)| Message::new(*role, *text))
            .collect::<Vec<_>>(),
    )?;
    let (role, text) = turns[2];
    let last_id = c.add_message(&channel, &Message::new(role, text))?.id;
    let context = c.recent(&channel, 10, Some(&last_id))?;
    say!(
        "   {} messages in '{channel}'; context for the reply (newest excluded):",
        turns.len()
    );
    for m in &context {
        say!("     {:>9}: {}", m.role, m.content);
    }
    c.set(
        &format!("user:{alice_id}:last_seen"),
        now.to_string().as_bytes(),
        Some(std::time::Duration::from_secs(1800)),
    )?;
    let stats = c.stats()?;
    say!(
        "   stats: keys={} channels={} messages={}",
        stats.keys,
        stats.channels,
        stats.messages
    );
    if cache.backend() != "redis" {
        say!(
            "   (to keep conversations on a Redis server instead, change [cache.{}] in plugins.toml to backend = \"redis\" and url = \"redis://127.0.0.1:6379/0\"; nothing else changes)",
            cache.name()
        );
    }

    // 3. Long-term memories, in the vector store.
    let memories = storage.vector("memories")?;
    let v = memories.blocking();
    say!("== vector '{}' ({})", memories.name(), memories.backend());
    let collection = "memories";
    match v.create_collection(collection, DEMO_DIMENSION, Distance::Cosine) {
        Ok(()) => {
            say!("   created collection '{collection}' ({DEMO_DIMENSION} dimensions, cosine)")
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let facts = [
        (
            "m1",
            "alice",
            "Alice drinks her coffee as a flat white with oat milk",
            0.9,
        ),
        ("m2", "alice", "Alice moved to Lisbon in spring", 0.8),
        (
            "m3",
            "alice",
            "Alice once mentioned she dislikes crowded cafes",
            0.4,
        ),
        (
            "m4",
            "bob",
            "Bob drinks espresso, no milk, and loves coffee roasters",
            0.9,
        ),
        (
            "m5",
            "alice",
            "Alice works as a marine biologist near the river",
            0.7,
        ),
    ];
    let records: Vec<VectorRecord> = facts
        .iter()
        .map(|(id, user, text, importance)| {
            VectorRecord::new(*id, toy_embed(text, DEMO_DIMENSION))
                .with_document(*text)
                .with_payload(json!({"user": user, "importance": importance}))
        })
        .collect();
    v.upsert(collection, &records)?;
    say!(
        "   upserted {} memories; collection holds {}",
        records.len(),
        v.count(collection, None)?
    );
    let question = "where does alice like her coffee with milk";
    let filter = Filter::must([
        Condition::matches("user", "alice")?,
        Condition::range(
            "importance",
            Range {
                gte: Some(0.5),
                ..Range::default()
            },
        ),
    ]);
    let hits = v.search(
        collection,
        &SearchRequest::new(toy_embed(question, DEMO_DIMENSION), 3).with_filter(filter.clone()),
    )?;
    say!(
        "   search \"{question}\"\n     filter {}:",
        filter.to_json()
    );
    for h in &hits {
        say!(
            "     {:.3}  {}  {}",
            h.score,
            h.id,
            h.document.as_deref().unwrap_or("")
        );
    }

    // 4. Facts, in the graph.
    let knowledge = storage.graph("knowledge")?;
    let g = knowledge.blocking();
    say!("== graph '{}' ({})", knowledge.name(), knowledge.backend());
    for id in ["alice", "bob", "lisbon", "flat-white", "cafe-rio"] {
        g.delete_node(id)?;
    }
    g.create_nodes(&[
        NewNode::new("person", json!({"name": "Alice"})).with_id("alice"),
        NewNode::new("person", json!({"name": "Bob"})).with_id("bob"),
        NewNode::new("city", json!({"name": "Lisbon", "country": "Portugal"})).with_id("lisbon"),
        NewNode::new("drink", json!({"name": "Flat white"})).with_id("flat-white"),
        NewNode::new(
            "place",
            json!({"name": "Cafe Rio", "serves": ["flat white", "espresso"]}),
        )
        .with_id("cafe-rio"),
    ])?;
    g.create_edges(&[
        NewEdge::new("alice", "lisbon", "lives_in"),
        NewEdge::new("alice", "flat-white", "likes"),
        NewEdge::new("alice", "bob", "knows").with_properties(json!({"since": 2019})),
        NewEdge::new("cafe-rio", "lisbon", "located_in"),
        NewEdge::new("cafe-rio", "flat-white", "serves"),
    ])?;
    let near = g.neighbors("alice", Direction::Both, &[], 2)?;
    say!("   within 2 hops of alice:");
    for n in &near {
        say!("     depth {}  {} ({})", n.depth, n.node.id, n.node.label);
    }
    let places = g.find_nodes(&backplane_core::NodeQuery {
        label: Some("place".into()),
        text: Some("flat white".into()),
        ..Default::default()
    })?;
    say!(
        "   places serving a flat white: {:?}",
        places.iter().map(|n| n.id.as_str()).collect::<Vec<_>>()
    );
    for (from, to) in [("alice", "lisbon"), ("bob", "lisbon")] {
        match g.shortest_path(from, to, 4)? {
            Some(p) => {
                let ids: Vec<&str> = p.nodes.iter().map(|n| n.id.as_str()).collect();
                say!(
                    "   path {from} -> {to}: {} ({} edge(s))",
                    ids.join(" -> "),
                    p.edges.len()
                );
            }
            None => say!("   path {from} -> {to}: none within 4 hops along outgoing edges"),
        }
    }
    say!("== done: every store answered");
    Ok(())
}
