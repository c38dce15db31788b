//! Quickstart: the storage of a memory-backed chat assistant, through the
//! async API. Run from the repository root after `cargo build --release`:
//!
//! ```text
//! cargo run --release -p backplane-host --example quickstart
//! ```
//!
//! It opens the stores of `./plugins.toml` (or `$BACKPLANE_CONFIG`), so the
//! same code runs on SQLite files on a laptop or on servers in production:
//! only plugins.toml changes.

use backplane_host::{
    params, Condition, Direction, Distance, ErrorKind, Filter, Message, Migration, NewEdge,
    NewNode, SearchRequest, Storage, VectorRecord,
};
use serde_json::json;

/// Stand-in for a real embedding model: hashes words into 64 buckets.
fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; 64];
    for w in text.split_whitespace() {
        let h = w
            .to_lowercase()
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        v[(h % 64) as usize] += 1.0;
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.into_iter().map(|x| x / n).collect()
}

#[tokio::main]
async fn main() -> backplane_host::Result<()> {
    let storage = Storage::open_default()?;

    // Users: SQL with migrations and parameters. Migration versions belong
    // to the store: `backplane demo` uses 1 and 2 on this same store, so
    // this program numbers its own from 100.
    let users = storage.relational("user_data")?;
    users
        .migrate(vec![Migration::new(
            100,
            "quickstart users",
            "CREATE TABLE IF NOT EXISTS qs_users (id INTEGER PRIMARY KEY, name TEXT UNIQUE)",
        )])
        .await?;
    users
        .execute(
            "INSERT OR IGNORE INTO qs_users (name) VALUES (?)",
            params!["ada"],
        )
        .await?;
    let rows = users
        .query("SELECT id FROM qs_users WHERE name = ?", params!["ada"])
        .await?;
    let user_id = rows.scalar()?.as_i64().unwrap_or_default();

    // Recent messages: a bounded list per conversation.
    let conversations = storage.cache("conversations")?;
    let channel = format!("qs:{user_id}");
    conversations
        .add_message(
            channel.clone(),
            Message::new("user", "I prefer tea in the morning"),
        )
        .await?;
    let context = conversations.recent(channel, 20, None).await?;
    println!("{} message(s) of context", context.len());

    // Memories: embeddings with payloads, searched with a filter.
    let memories = storage.vector("memories")?;
    match memories
        .create_collection("qs_memories", 64, Distance::Cosine)
        .await
    {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    memories
        .upsert(
            "qs_memories",
            vec![
                VectorRecord::new("pref-1", embed("prefers tea in the morning"))
                    .with_document("prefers tea in the morning")
                    .with_payload(json!({"user": user_id})),
            ],
        )
        .await?;
    let hits = memories
        .search(
            "qs_memories",
            SearchRequest::new(embed("what does ada drink in the morning"), 3)
                .with_filter(Filter::must([Condition::matches("user", user_id)?])),
        )
        .await?;
    for h in &hits {
        println!("memory {} ({:.2}): {:?}", h.id, h.score, h.document);
    }

    // Facts: a small graph and a traversal.
    let knowledge = storage.graph("knowledge")?;
    knowledge.delete_node("qs-ada").await?;
    knowledge.delete_node("qs-tea").await?;
    knowledge
        .create_nodes(vec![
            NewNode::new("person", json!({"name": "Ada"})).with_id("qs-ada"),
            NewNode::new("drink", json!({"name": "tea"})).with_id("qs-tea"),
        ])
        .await?;
    knowledge
        .create_edges(vec![NewEdge::new("qs-ada", "qs-tea", "likes")])
        .await?;
    let likes = knowledge
        .neighbors("qs-ada", Direction::Outgoing, vec!["likes".to_string()], 1)
        .await?;
    println!(
        "ada likes: {:?}",
        likes
            .iter()
            .map(|n| &n.node.properties["name"])
            .collect::<Vec<_>>()
    );
    Ok(())
}
