//! Tenants on real stores: a view bound to one tenant cannot read, count,
//! search, delete or migrate another tenant's records, in a cache (SQLite
//! and Redis), a vector store and a graph (SQLite), and relational stores
//! (a file per tenant on SQLite, a schema per tenant on PostgreSQL); a
//! principal bound to a tenant stays in it.

use backplane_behavior::{
    drop_postgres_schema, in_ci, namespace, plugin_libraries, postgres_server, redis_server,
    Scratch,
};
use backplane_host::{
    Distance, ErrorKind, Filter, Message, Migration, NewEdge, NewNode, NodeQuery, Params,
    SearchRequest, Storage, Value, VectorRecord,
};
use serde_json::json;

fn open(scratch: &Scratch, extra: &str) -> Storage {
    std::fs::write(scratch.path("acme.token"), "acme-secret").unwrap();
    let body = format!(
        "[relational.users]\nbackend = \"sqlite\"\npath = \"{db}\"\n\n\
         [cache.chat]\nbackend = \"sqlite\"\npath = \"{cache}\"\n\n\
         [vector.mem]\nbackend = \"sqlite\"\npath = \"{vec}\"\n\n\
         [graph.kg]\nbackend = \"sqlite\"\npath = \"{kg}\"\n\n\
         [access.principals.acme]\ntoken_file = \"acme.token\"\ntenant = \"acme\"\ngrants = {{ \"*\" = \"admin\" }}\n\n\
         [access.principals.viewer]\ntoken_file = \"acme.token\"\ngrants = {{ \"cache.chat\" = \"read\" }}\n\n{extra}",
        db = scratch.path("users.db").display(),
        cache = scratch.path("chat.db").display(),
        vec = scratch.path("mem.db").display(),
        kg = scratch.path("kg.db").display(),
    );
    let file = backplane_testkit::run::write_config(scratch, &plugin_libraries(), &body);
    Storage::open(&file).unwrap_or_else(|e| panic!("open: {e}"))
}

fn cache_apart(s: &Storage, store: &str) {
    let (a, b) = (
        s.for_tenant("acme").unwrap(),
        s.for_tenant("globex").unwrap(),
    );
    let (ca, cb) = (a.cache(store).unwrap(), b.cache(store).unwrap());
    let (ca, cb) = (ca.blocking(), cb.blocking());
    ca.set("plan", b"acme's plan", None).unwrap();
    cb.set("plan", b"globex's plan", None).unwrap();
    ca.add_message("support", &Message::new("user", "acme asks"))
        .unwrap();
    assert_eq!(ca.get("plan").unwrap().unwrap(), b"acme's plan");
    assert_eq!(cb.get("plan").unwrap().unwrap(), b"globex's plan");
    assert!(
        cb.recent("support", 10, None).unwrap().is_empty(),
        "globex reads acme's conversation"
    );
    assert_eq!(
        cb.clear("support").unwrap(),
        0,
        "globex clears acme's conversation"
    );
    assert!(!cb.delete("other").unwrap());
    let keys: Vec<String> = cb
        .scan_keys(None, 100)
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["plan"]);
    assert!(cb.list_channels(None, 100).unwrap().items.is_empty());
    let st = ca.stats().unwrap();
    assert_eq!((st.keys, st.channels, st.messages), (1, 1, 1));
    assert_eq!(ca.recent("support", 10, None).unwrap().len(), 1);
    // The operator's view sees both, prefixed.
    let all = s.cache(store).unwrap();
    assert_eq!(
        all.blocking().get("tenant:acme:plan").unwrap().unwrap(),
        b"acme's plan"
    );
}

#[test]
fn a_tenant_never_sees_another_tenants_records() {
    let scratch = Scratch::new();
    let s = open(&scratch, "");
    let a = s.for_tenant("acme").unwrap();
    let b = s.for_tenant("globex").unwrap();
    assert_eq!(a.tenant(), Some("acme"));

    cache_apart(&s, "chat");

    // Vector: one shared collection.
    s.vector("mem")
        .unwrap()
        .blocking()
        .create_collection("m", 2, Distance::Cosine)
        .unwrap();
    let (va, vb) = (a.vector("mem").unwrap(), b.vector("mem").unwrap());
    let (va, vb) = (va.blocking(), vb.blocking());
    va.upsert(
        "m",
        &[VectorRecord::new("r1", vec![1.0, 0.0])
            .with_document("acme secret")
            .with_payload(json!({"k": 1}))],
    )
    .unwrap();
    vb.upsert(
        "m",
        &[VectorRecord::new("r1", vec![1.0, 0.1])
            .with_document("globex secret")
            .with_payload(json!({"k": 1}))],
    )
    .unwrap();
    vb.upsert("m", &[VectorRecord::new("r2", vec![0.0, 1.0])])
        .unwrap();
    assert_eq!(va.count("m", None).unwrap(), 1);
    assert_eq!(vb.count("m", None).unwrap(), 2);
    assert_eq!(va.collection_info("m").unwrap().count, 1);
    let hits = va
        .search("m", &SearchRequest::new(vec![1.0, 0.0], 10))
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (hits[0].id.as_str(), hits[0].document.as_deref()),
        ("r1", Some("acme secret"))
    );
    assert_eq!(
        hits[0].payload,
        json!({"k": 1}),
        "the tenant field is the host's"
    );
    assert!(
        va.get("m", &["r2".into()]).unwrap().is_empty(),
        "acme gets globex's record"
    );
    assert_eq!(
        va.delete("m", &["r2".into()]).unwrap(),
        0,
        "acme deletes globex's record"
    );
    assert_eq!(
        va.delete_where(
            "m",
            &Filter::parse_str(r#"{"must":[{"key":"k","match":1}]}"#).unwrap()
        )
        .unwrap(),
        1
    );
    assert_eq!(
        vb.count("m", None).unwrap(),
        2,
        "globex's records survive acme's delete_where"
    );
    let scrolled = vb.scroll("m", None, 10).unwrap().records;
    assert_eq!(scrolled.len(), 2);
    assert!(scrolled.iter().all(|r| r.payload.get("_tenant").is_none()));
    let e = va
        .upsert(
            "m",
            &[VectorRecord::new("x", vec![1.0, 0.0]).with_payload(json!({"_tenant": "globex"}))],
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = vb
        .count(
            "m",
            Some(&Filter::parse_str(r#"{"must":[{"key":"_tenant","match":"acme"}]}"#).unwrap()),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let e = va.drop_collection("m").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");

    // Graph.
    let (ga, gb) = (a.graph("kg").unwrap(), b.graph("kg").unwrap());
    let (ga, gb) = (ga.blocking(), gb.blocking());
    ga.create_nodes(&[
        NewNode::new("person", json!({"name": "Ann"})).with_id("ann"),
        NewNode::new("city", json!({"name": "Oslo"})).with_id("oslo"),
    ])
    .unwrap();
    let made = ga
        .create_edges(&[NewEdge::new("ann", "oslo", "lives_in")])
        .unwrap();
    assert_eq!(
        (made[0].from.as_str(), made[0].to.as_str()),
        ("ann", "oslo")
    );
    gb.create_nodes(&[NewNode::new("person", json!({"name": "Bob"})).with_id("ann")])
        .unwrap();
    assert_eq!(
        ga.get_node("ann").unwrap().unwrap().properties,
        json!({"name": "Ann"})
    );
    assert_eq!(
        gb.get_node("ann").unwrap().unwrap().properties,
        json!({"name": "Bob"})
    );
    assert!(gb.get_node("oslo").unwrap().is_none());
    assert_eq!(
        gb.find_nodes(&NodeQuery {
            text: Some("oslo".into()),
            ..Default::default()
        })
        .unwrap()
        .len(),
        0
    );
    assert_eq!(ga.find_nodes(&NodeQuery::default()).unwrap().len(), 2);
    assert_eq!(
        ga.neighbors("ann", backplane_host::Direction::Outgoing, &[], 2)
            .unwrap()
            .len(),
        1
    );
    assert!(gb
        .neighbors("ann", backplane_host::Direction::Outgoing, &[], 2)
        .unwrap()
        .is_empty());
    assert!(!gb.delete_node("oslo").unwrap());
    assert_eq!(gb.export_nodes(None, 100).unwrap().items.len(), 1);
    assert!(ga.shortest_path("ann", "oslo", 3).unwrap().is_some());

    // Relational: a file per tenant; migrations apart.
    let (ra, rb) = (
        a.relational("users").unwrap(),
        b.relational("users").unwrap(),
    );
    ra.blocking()
        .migrate(&[Migration::new(1, "t", "CREATE TABLE t (x TEXT)")])
        .unwrap();
    ra.blocking()
        .execute("INSERT INTO t (x) VALUES ('acme row')", &Params::None)
        .unwrap();
    assert!(
        rb.blocking().tables().unwrap().is_empty(),
        "globex sees acme's table"
    );
    let e = rb
        .blocking()
        .query("SELECT * FROM t", &Params::None)
        .unwrap_err();
    assert!(e.to_string().contains("no such table"), "{e}");
    let r = rb
        .blocking()
        .migrate(&[Migration::new(1, "t", "CREATE TABLE t (y INTEGER)")])
        .unwrap();
    assert_eq!(r.applied, [1], "globex's migration 1 is its own");
    assert!(scratch.path("users.acme.db").exists() && scratch.path("users.globex.db").exists());
    assert!(s
        .relational("users")
        .unwrap()
        .blocking()
        .tables()
        .unwrap()
        .is_empty());

    // A principal bound to a tenant stays in it.
    let p = s.as_principal("acme", "acme-secret").unwrap();
    assert_eq!(p.tenant(), Some("acme"));
    assert_eq!(
        p.cache("chat")
            .unwrap()
            .blocking()
            .get("plan")
            .unwrap()
            .unwrap(),
        b"acme's plan"
    );
    let e = p
        .rekey(backplane_host::Capability::Cache, "chat", &mut |_| {})
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    let e = p.for_tenant("globex").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    // A caller with no grant on a store opens nothing for a tenant.
    let viewer = s.as_principal("viewer", "acme-secret").unwrap();
    let e = viewer
        .for_tenant("zeta")
        .unwrap()
        .relational("users")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(
        !scratch.path("users.zeta.db").exists(),
        "a refused caller created a tenant's file"
    );
    let e = s.for_tenant("Globex").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn a_schema_per_tenant_on_postgres_and_a_namespace_on_redis() {
    let scratch = Scratch::new();
    let (url, shown, pg_down) = postgres_server();
    let (rurl, rshown, redis_down) = redis_server();
    for (what, shown, down) in [
        ("PostgreSQL", &shown, &pg_down),
        ("Redis", &rshown, &redis_down),
    ] {
        if let Some(why) = down {
            assert!(!in_ci(), "{what} at {shown} does not answer in CI: {why}");
            println!("skip: {what} at {shown} does not answer ({why})");
            return;
        }
    }
    let ns = namespace().to_ascii_lowercase().replace('-', "_");
    let schema = format!("bp_{ns}");
    for t in ["acme", "globex"] {
        let (u, s) = (url.clone(), format!("{schema}__{t}"));
        scratch.on_drop(move || drop_postgres_schema(&u, &s));
    }
    let s = open(
        &scratch,
        &format!(
            "[relational.pg]\nbackend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\n\n\
             [cache.r]\nbackend = \"redis\"\nurl = \"{rurl}\"\nprefix = \"bp-test:{ns}:\"\n"
        ),
    );
    let (a, b) = (
        s.for_tenant("acme").unwrap(),
        s.for_tenant("globex").unwrap(),
    );
    let (pa, pb) = (a.relational("pg").unwrap(), b.relational("pg").unwrap());
    pa.blocking()
        .migrate(&[Migration::new(1, "t", "CREATE TABLE t (x TEXT)")])
        .unwrap();
    pa.blocking()
        .execute("INSERT INTO t (x) VALUES ('acme row')", &Params::None)
        .unwrap();
    pb.blocking()
        .migrate(&[Migration::new(1, "t", "CREATE TABLE t (x TEXT)")])
        .unwrap();
    let n = pb
        .blocking()
        .query("SELECT count(*) FROM t", &Params::None)
        .unwrap();
    assert_eq!(n.rows[0][0], Value::Integer(0), "globex counts acme's rows");
    assert_eq!(
        pa.blocking()
            .query("SELECT x FROM t", &Params::None)
            .unwrap()
            .rows[0][0],
        Value::Text("acme row".into())
    );
    assert_eq!(pa.blocking().describe("t").unwrap().name, "t");

    cache_apart(&s, "r");
    for t in [&a, &b] {
        let c = t.cache("r").unwrap();
        for e in c.blocking().scan_keys(None, 100).unwrap().items {
            c.blocking().delete(&e.key).unwrap();
        }
        for ch in c.blocking().list_channels(None, 100).unwrap().items {
            c.blocking().clear(&ch.channel).unwrap();
        }
    }
}
