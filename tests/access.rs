//! Access control on real stores: principals from plugins.toml with
//! tokens from files, handles bound to one refusing what their grants do
//! not allow (`PermissionDenied`) with nothing reaching the store, through
//! the blocking and the async API; mistakes in `[access]` one line each.

use backplane_behavior::{plugin_libraries, Scratch};
use backplane_host::{
    params, Capability, Distance, ErrorKind, Message, Migration, NewNode, NodeQuery, Params,
    SearchRequest, Storage, VectorRecord,
};
use serde_json::json;

fn open(scratch: &Scratch, access: &str) -> backplane_host::Result<Storage> {
    std::fs::write(scratch.path("reader.token"), "r-secret\n").unwrap();
    std::fs::write(scratch.path("writer.token"), "w-secret").unwrap();
    std::fs::write(scratch.path("ops.token"), "o-secret").unwrap();
    let body = format!(
        "[relational.users]\nbackend = \"sqlite\"\npath = \"{db}\"\n\n\
         [cache.chat]\nbackend = \"sqlite\"\npath = \"{cache}\"\n\n\
         [vector.mem]\nbackend = \"memory\"\n\n\
         [graph.kg]\nbackend = \"memory\"\n\n{access}",
        db = scratch.path("users.db").display(),
        cache = scratch.path("chat.db").display(),
    );
    let file = backplane_testkit::run::write_config(scratch, &plugin_libraries(), &body);
    Storage::open(&file)
}

const ACCESS: &str = "[access.principals.reader]\ntoken_file = \"reader.token\"\ngrants = { \"*\" = \"read\" }\n\n\
     [access.principals.writer]\ntoken_file = \"writer.token\"\ngrants = { \"cache.chat\" = \"write\", \"vector.*\" = \"write\", \"relational.users\" = \"read\" }\n\n\
     [access.principals.ops]\ntoken_file = \"ops.token\"\ngrants = { \"*\" = \"admin\" }\n";

fn denied<T: std::fmt::Debug>(r: backplane_host::Result<T>, says: &str) {
    let e = r.expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains(says), "'{says}' not in: {e}");
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
}

#[test]
fn grants_decide_every_call_before_the_store_sees_it() {
    let scratch = Scratch::new();
    let s = open(&scratch, ACCESS).unwrap();
    // The operator's Storage may do everything: set up some data.
    let users = s.relational("users").unwrap();
    users
        .blocking()
        .migrate(&[Migration::new(
            1,
            "users",
            "CREATE TABLE u (id INTEGER PRIMARY KEY, name TEXT)",
        )])
        .unwrap();
    users
        .blocking()
        .execute("INSERT INTO u (name) VALUES ('ann')", &Params::None)
        .unwrap();
    s.cache("chat")
        .unwrap()
        .blocking()
        .set("k", b"v", None)
        .unwrap();
    s.vector("mem")
        .unwrap()
        .blocking()
        .create_collection("c", 2, Distance::Cosine)
        .unwrap();
    s.graph("kg")
        .unwrap()
        .blocking()
        .create_nodes(&[NewNode::new("person", json!({"name": "Ann"})).with_id("ann")])
        .unwrap();

    // Tokens.
    denied(s.as_principal("reader", "w-secret"), "not its token");
    denied(s.as_principal("nobody", "x"), "no principal 'nobody'");
    let reader = s.as_principal("reader", "r-secret").unwrap();
    assert_eq!(reader.principal(), Some("reader"));

    // Read: reads pass, writes are refused and write nothing.
    let db = reader.relational("users").unwrap();
    let rows = db
        .blocking()
        .query("SELECT name FROM u", &Params::None)
        .unwrap();
    assert_eq!(rows.len(), 1);
    denied(
        db.blocking().execute("DELETE FROM u", &Params::None),
        "may read [relational.users] but execute needs write",
    );
    denied(
        db.blocking()
            .query("DELETE FROM u RETURNING id", &Params::None),
        "DELETE statement",
    );
    denied(
        db.blocking()
            .query("SELECT 1; DELETE FROM u", &Params::None),
        "more than one statement",
    );
    denied(
        db.blocking().query(
            "WITH d AS (DELETE FROM u RETURNING *) SELECT * FROM d",
            &Params::None,
        ),
        "uses DELETE",
    );
    denied(
        db.blocking()
            .migrate(&[Migration::new(2, "x", "DROP TABLE u")]),
        "needs admin",
    );
    let c = reader.cache("chat").unwrap();
    assert_eq!(c.blocking().get("k").unwrap().unwrap(), b"v");
    denied(c.blocking().set("k", b"changed", None), "set needs write");
    denied(
        c.blocking().add_message("ch", &Message::new("user", "hi")),
        "add_message needs write",
    );
    let g = reader.graph("kg").unwrap();
    assert_eq!(
        g.blocking()
            .find_nodes(&NodeQuery::default())
            .unwrap()
            .len(),
        1
    );
    denied(g.blocking().delete_node("ann"), "delete_node needs write");
    denied(
        reader.rekey(Capability::Cache, "chat", &mut |_| {}),
        "rekey needs admin",
    );
    // Nothing changed.
    assert_eq!(
        s.cache("chat")
            .unwrap()
            .blocking()
            .get("k")
            .unwrap()
            .unwrap(),
        b"v"
    );
    assert!(s
        .cache("chat")
        .unwrap()
        .blocking()
        .recent("ch", 10, None)
        .unwrap()
        .is_empty());
    assert_eq!(
        users
            .blocking()
            .query("SELECT count(*) FROM u", &Params::None)
            .unwrap()
            .rows[0][0],
        backplane_host::Value::Integer(1)
    );
    assert!(s
        .graph("kg")
        .unwrap()
        .blocking()
        .get_node("ann")
        .unwrap()
        .is_some());

    // Write on some stores, read on one, none on the graph.
    let writer = s.as_principal("writer", "w-secret").unwrap();
    let v = writer.vector("mem").unwrap();
    v.blocking()
        .upsert("c", &[VectorRecord::new("a", vec![1.0, 0.0])])
        .unwrap();
    assert_eq!(
        v.blocking()
            .search("c", &SearchRequest::new(vec![1.0, 0.0], 1))
            .unwrap()
            .len(),
        1
    );
    denied(
        v.blocking().drop_collection("c"),
        "drop_collection needs admin",
    );
    denied(
        writer
            .cache("chat")
            .unwrap()
            .blocking()
            .import_entries(&[], true),
        "import_entries needs admin",
    );
    denied(
        writer.graph("kg"),
        "principal 'writer' has no grant on [graph.kg]",
    );
    denied(
        writer
            .relational("users")
            .unwrap()
            .blocking()
            .execute("INSERT INTO u (name) VALUES ('eve')", &Params::None),
        "needs write",
    );

    // Admin may do everything.
    let ops = s.as_principal("ops", "o-secret").unwrap();
    ops.relational("users")
        .unwrap()
        .blocking()
        .execute("DELETE FROM u WHERE name = ?", &params!["nobody"])
        .unwrap();
    ops.vector("mem")
        .unwrap()
        .blocking()
        .drop_collection("c")
        .unwrap();
}

#[test]
fn the_async_api_is_refused_the_same_way() {
    let scratch = Scratch::new();
    let s = open(&scratch, ACCESS).unwrap();
    let reader = s.as_principal("reader", "r-secret\n").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reader.cache("chat").unwrap();
        denied(c.set("k", b"v".to_vec(), None).await, "set needs write");
        assert_eq!(c.get("k").await.unwrap(), None);
        let db = reader.relational("users").unwrap();
        denied(
            db.execute("CREATE TABLE t (x INTEGER)", ()).await,
            "execute needs write",
        );
        assert!(db.tables().await.unwrap().is_empty());
    });
}

#[test]
fn access_mistakes_are_one_line_each() {
    let scratch = Scratch::new();
    std::fs::write(scratch.path("empty.token"), " \n").unwrap();
    for (access, says) in [
        ("[access.principals.a]\ngrants = { \"*\" = \"read\" }\n", "principals.a: no token: add token_env = \"A_TOKEN\""),
        ("[access.principals.a]\ntoken_file = \"reader.token\"\n", "no grants"),
        ("[access.principals.a]\ntoken_file = \"reader.token\"\ngrants = { \"*\" = \"owner\" }\n", "a level is read, write or admin"),
        ("[access.principals.a]\ntoken_file = \"reader.token\"\ngrants = { \"cache.chats\" = \"read\" }\n", "configures no [cache.chats]"),
        ("[access.principals.a]\ntoken_file = \"reader.token\"\ngrants = { \"caches.*\" = \"read\" }\n", "'caches' is not a capability"),
        ("[access.principals.a]\ntoken_file = \"reader.token\"\ngrants = { \"chat\" = \"read\" }\n", "a grant names \"*\""),
        ("[access.principals.a]\ntoken_file = \"missing.token\"\ngrants = { \"*\" = \"read\" }\n", "cannot read the token file"),
        ("[access.principals.a]\ntoken_env = \"BP_TEST_UNSET_TOKEN\"\ngrants = { \"*\" = \"read\" }\n", "BP_TEST_UNSET_TOKEN that should hold the token is not set"),
        ("[access]\nusers = 1\n", "unknown key 'users'"),
        ("[access.principals.a]\ntoken_file = \"empty.token\"\ngrants = { \"*\" = \"read\" }\n", "holds an empty token"),
    ] {
        let e = open(&scratch, access).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{access}: {e}");
        assert!(e.to_string().contains(says), "{access}: '{says}' not in: {e}");
        assert_eq!(e.to_string().lines().count(), 1, "{e}");
    }
}
