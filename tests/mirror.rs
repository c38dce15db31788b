//! Mirrors: a store made of stores of one capability, any backends.
//!
//! - a mirror of PostgreSQL (the primary, a server of the test's own) and
//!   SQLite whose primary is stopped in the middle of a stream of writes
//!   and reads: no call fails, reads come from SQLite meanwhile, the
//!   primary catches up from its journal when it is back, and both members
//!   then hold the same rows;
//! - the journal outlives the process: a mirror closed while its primary
//!   is down catches up when it is opened again;
//! - writes whose ids the backend chooses (messages, nodes) reach every
//!   member with the same ids;
//! - each wrong mirror setting is one clear error.

use backplane_behavior::servers::PgServer;
use backplane_behavior::{plugins_toml, Scratch};
use backplane_host::{params, ErrorKind, Message, NewNode, Params, Storage, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn rows(storage: &Storage, store: &str) -> Vec<Vec<Value>> {
    storage
        .relational(store)
        .unwrap()
        .blocking()
        .query("SELECT id, v FROM t ORDER BY id", &Params::None)
        .unwrap_or_else(|e| panic!("{store}: {e}"))
        .rows
}

fn create_table(users: &backplane_host::RelationalStore) {
    users
        .blocking()
        .execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT NOT NULL)",
            &Params::None,
        )
        .unwrap();
}

fn wait_in_sync(storage: &Storage, store: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = storage.relational(store).unwrap().blocking().health();
        if h.as_ref().is_ok_and(|h| h.healthy) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the mirror did not get back in sync within 20 s: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn mirror_config(s: &Scratch, url: &str) -> PathBuf {
    plugins_toml(
        s,
        &["backplane_plugin_postgres", "backplane_plugin_sqlite"],
        &format!(
            "[relational.users]\nmirror = [\"users_pg\", \"users_local\"]\njournal = \"journal\"\n\n\
             [relational.users_pg]\nbackend = \"postgres\"\nurl = \"{url}\"\nconnect_timeout = \"1s\"\ntimeout = \"2s\"\n\n\
             [relational.users_local]\nbackend = \"sqlite\"\npath = \"users.db\"\n"
        ),
    )
}

#[test]
fn the_primary_stopped_mid_stream_loses_nothing_and_catches_up() {
    let Some(server) = PgServer::start("mirror failover", None) else {
        return;
    };
    let s = Scratch::new();
    let file = mirror_config(&s, &server.url());
    let storage = Storage::open(&file).unwrap();
    let users = storage.relational("users").unwrap();
    create_table(&users);
    let write_and_read = |i: i64| {
        users
            .blocking()
            .execute(
                "INSERT INTO t (id, v) VALUES (?, ?)",
                &params![i, format!("v{i}")],
            )
            .unwrap_or_else(|e| panic!("write {i} failed: {e}"));
        let got = users
            .blocking()
            .query("SELECT v FROM t WHERE id = ?", &params![i])
            .unwrap_or_else(|e| panic!("read {i} failed: {e}"));
        assert_eq!(
            got.rows,
            vec![vec![Value::Text(format!("v{i}"))]],
            "read {i}"
        );
    };
    for i in 0..30 {
        write_and_read(i);
    }
    server.stop();
    for i in 30..60 {
        write_and_read(i);
    }
    let h = users.blocking().health().unwrap();
    assert!(!h.healthy, "{h:?}");
    assert!(
        h.detail.contains("users_pg") && h.detail.contains("behind by"),
        "{h:?}"
    );
    assert_eq!(rows(&storage, "users_local").len(), 60);
    server.start_again();
    wait_in_sync(&storage, "users");
    for i in 60..70 {
        write_and_read(i);
    }
    let pg = rows(&storage, "users_pg");
    assert_eq!(pg.len(), 70, "the primary holds every write");
    assert_eq!(
        pg,
        rows(&storage, "users_local"),
        "both members hold the same rows"
    );
}

#[test]
fn the_journal_outlives_the_process() {
    let Some(server) = PgServer::start("mirror journal", None) else {
        return;
    };
    let s = Scratch::new();
    let file = mirror_config(&s, &server.url());
    {
        let storage = Storage::open(&file).unwrap();
        let users = storage.relational("users").unwrap();
        create_table(&users);
        server.stop();
        for i in 0..20 {
            users
                .blocking()
                .execute("INSERT INTO t (id, v) VALUES (?, ?)", &params![i, "x"])
                .unwrap();
        }
    }
    let journal = s.path("journal");
    let files: Vec<_> = std::fs::read_dir(&journal)
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(
        files.iter().any(|f| f.metadata().unwrap().len() > 100),
        "the primary's writes wait on disk in {}",
        journal.display()
    );
    server.start_again();
    let storage = Storage::open(&file).unwrap();
    wait_in_sync(&storage, "users");
    assert_eq!(rows(&storage, "users_pg").len(), 20);
    assert_eq!(rows(&storage, "users_pg"), rows(&storage, "users_local"));
}

#[test]
fn ids_the_backend_chooses_are_the_same_on_every_member() {
    let s = Scratch::new();
    let file = plugins_toml(
        &s,
        &["backplane_plugin_memory", "backplane_plugin_sqlite"],
        "[cache.chat]\nmirror = [\"chat_mem\", \"chat_file\"]\njournal = \"j\"\n\
         [cache.chat_mem]\nbackend = \"memory\"\n[cache.chat_file]\nbackend = \"sqlite\"\npath = \"chat.db\"\n\n\
         [graph.kg]\nmirror = [\"kg_file\", \"kg_mem\"]\njournal = \"j\"\n\
         [graph.kg_mem]\nbackend = \"memory\"\n[graph.kg_file]\nbackend = \"sqlite\"\npath = \"kg.db\"\n",
    );
    let storage = Storage::open(&file).unwrap();
    let chat = storage.cache("chat").unwrap();
    let m = chat
        .blocking()
        .add_message("c1", &Message::new("user", "hello"))
        .unwrap();
    chat.blocking()
        .add_messages(
            "c1",
            &[Message::new("assistant", "hi"), Message::new("user", "bye")],
        )
        .unwrap();
    let a = storage
        .cache("chat_mem")
        .unwrap()
        .blocking()
        .recent("c1", 10, None)
        .unwrap();
    let b = storage
        .cache("chat_file")
        .unwrap()
        .blocking()
        .recent("c1", 10, None)
        .unwrap();
    assert_eq!(a.len(), 3);
    assert!(a.iter().any(|x| x.id == m.id));
    assert_eq!(a, b, "the same messages, ids and times included");

    let kg = storage.graph("kg").unwrap();
    let nodes = kg
        .blocking()
        .create_nodes(&[NewNode::new("person", serde_json::json!({"name": "ada"}))])
        .unwrap();
    let id = &nodes[0].id;
    let on_mem = storage
        .graph("kg_mem")
        .unwrap()
        .blocking()
        .get_node(id)
        .unwrap();
    assert_eq!(
        on_mem.as_ref(),
        Some(&nodes[0]),
        "the node under the same id"
    );
    assert!(kg.blocking().health().unwrap().healthy);
}

#[test]
fn each_wrong_mirror_setting_is_one_clear_error() {
    let s = Scratch::new();
    let members = "[cache.a]\nbackend = \"memory\"\n[cache.b]\nbackend = \"memory\"\n[graph.g]\nbackend = \"memory\"\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "[cache.m]\nmirror = [\"a\", \"g\"]\n",
            &["member 'g' is [graph.g], not a cache store"],
        ),
        (
            "[cache.m]\nmirror = [\"a\", \"nope\"]\n",
            &["member 'nope' is not configured", "a, b"],
        ),
        ("[cache.m]\nmirror = [\"a\"]\n", &["two members or more"]),
        ("[cache.m]\nmirror = [\"a\", \"a\"]\n", &["'a' twice"]),
        ("[cache.m]\nmirror = [\"a\", \"m\"]\n", &["its own member"]),
        (
            "[cache.m]\nbackend = \"memory\"\nmirror = [\"a\", \"b\"]\n",
            &["no backend of its own"],
        ),
        (
            "[cache.m]\nmirror = [\"a\", \"b\"]\nttl = \"1m\"\n",
            &["mirror, journal and layers only, not 'ttl'"],
        ),
        ("[cache.m]\nmirror = \"a\"\n", &["mirror lists store names"]),
    ];
    for (extra, wants) in cases {
        let file = plugins_toml(
            &s,
            &["backplane_plugin_memory"],
            &format!("{members}{extra}"),
        );
        let e = Storage::open(&file).expect_err("the mirror is wrong");
        assert_eq!(e.kind(), ErrorKind::Config, "{e}");
        let text = e.to_string();
        assert!(!text.contains('\n'), "one line: {text}");
        assert!(text.contains("[cache.m]"), "{text}");
        for w in *wants {
            assert!(text.contains(w), "{extra:?}: says {w:?}: {text}");
        }
    }
}
