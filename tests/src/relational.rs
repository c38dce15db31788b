//! Relational cases.

use crate::{expect_err, Case, Scratch};
use backplane_host::traits::Relational;
use backplane_host::{params, ErrorKind, Migration, Params, RelationalStore, Statement, Value};

/// Every relational case.
pub fn cases() -> Vec<Case<RelationalStore>> {
    vec![
        ("types_round_trip", types_round_trip),
        ("positional_and_named_params", positional_and_named_params),
        ("params_not_in_literals", params_not_in_literals),
        ("empty_result", empty_result),
        ("transaction_rolls_back", transaction_rolls_back),
        ("execute_many", execute_many),
        ("migrations", migrations),
        ("tables_and_describe", tables_and_describe),
        ("backup_and_restore", backup_and_restore),
        ("bad_input", bad_input),
        ("health", health),
    ]
}

fn setup(db: &dyn Relational) {
    db.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, price REAL, data BLOB, active BOOLEAN, meta JSON)",
        &Params::None,
    )
    .unwrap();
}

fn types_round_trip(s: &RelationalStore) {
    let db = s.blocking();
    setup(db);
    let r = db
        .execute(
            "INSERT INTO items (name, price, data, active, meta) VALUES (?, ?, ?, ?, ?)",
            &params![
                "apple",
                1.5,
                vec![0u8, 1, 255],
                true,
                serde_json::json!({"a": [1, 2]})
            ],
        )
        .unwrap();
    assert_eq!(r.rows_affected, 1);
    assert_eq!(r.last_insert_id, Some(1));
    db.execute("INSERT INTO items (name) VALUES (?)", &params!["pear"])
        .unwrap();
    let rows = db
        .query(
            "SELECT id, name, price, data, active, meta FROM items ORDER BY id",
            &Params::None,
        )
        .unwrap();
    assert_eq!(
        *rows.columns,
        ["id", "name", "price", "data", "active", "meta"]
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows.rows[0][0], Value::Integer(1));
    assert_eq!(rows.rows[0][1], Value::Text("apple".into()));
    assert_eq!(rows.rows[0][2], Value::Real(1.5));
    assert_eq!(rows.rows[0][3], Value::Blob(vec![0, 1, 255]));
    assert_eq!(rows.rows[0][4].as_bool(), Some(true));
    let meta = match &rows.rows[0][5] {
        Value::Json(j) => j.clone(),
        Value::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("json column came back as {other:?}"),
    };
    assert_eq!(meta, serde_json::json!({"a": [1, 2]}));
    for i in 2..6 {
        assert!(
            rows.rows[1][i].is_null(),
            "column {i} of pear should be NULL"
        );
    }
}

fn positional_and_named_params(s: &RelationalStore) {
    let db = s.blocking();
    setup(db);
    db.execute(
        "INSERT INTO items (name, price) VALUES (?1, ?2)",
        &params!["a", 1.0],
    )
    .unwrap();
    db.execute(
        "INSERT INTO items (name, price) VALUES (:name, :price)",
        &Params::named([("name", Value::from("b")), (":price", Value::from(2.0))]),
    )
    .unwrap();
    let rows = db
        .query(
            "SELECT name FROM items WHERE price >= :min ORDER BY name",
            &Params::named([("min", 1.5)]),
        )
        .unwrap();
    assert_eq!(rows.rows, vec![vec![Value::Text("b".into())]]);
    let rows = db
        .query("SELECT count(*) FROM items WHERE price < ?", &params![10])
        .unwrap();
    assert_eq!(rows.scalar().unwrap(), &Value::Integer(2));
}

fn params_not_in_literals(s: &RelationalStore) {
    let db = s.blocking();
    setup(db);
    db.execute(
        "INSERT INTO items (name) VALUES ('what? :not_a_param')",
        &Params::None,
    )
    .unwrap();
    let rows = db
        .query(
            "SELECT name FROM items WHERE name = 'what? :not_a_param' AND id = ?",
            &params![1],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
}

fn empty_result(s: &RelationalStore) {
    let db = s.blocking();
    setup(db);
    let rows = db
        .query("SELECT id, name FROM items WHERE id = ?", &params![42])
        .unwrap();
    assert!(rows.is_empty());
    assert_eq!(*rows.columns, ["id", "name"]);
    expect_err(
        rows.scalar().map(|_| ()).map_err(|e| e.in_store("s", "x")),
        ErrorKind::NotFound,
    );
}

fn transaction_rolls_back(s: &RelationalStore) {
    let db = s.blocking();
    setup(db);
    let ok = db
        .transaction(&[
            Statement::new("INSERT INTO items (name) VALUES (?)", params!["one"]),
            Statement::new("UPDATE items SET price = 3 WHERE name = ?", params!["one"]),
        ])
        .unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(ok[1].rows_affected, 1);
    let e = expect_err(
        db.transaction(&[
            Statement::new("INSERT INTO items (name) VALUES (?)", params!["two"]),
            Statement::new("INSERT INTO items (name) VALUES (?)", params!["one"]),
        ]),
        ErrorKind::Conflict,
    );
    assert!(
        e.message().contains('1'),
        "error should say which statement failed: {e}"
    );
    let rows = db
        .query("SELECT name FROM items ORDER BY name", &Params::None)
        .unwrap();
    assert_eq!(
        rows.rows,
        vec![vec![Value::Text("one".into())]],
        "nothing of the failed transaction may remain"
    );
}

fn execute_many(s: &RelationalStore) {
    let db = s.blocking();
    setup(db);
    let sets: Vec<Params> = (0..50)
        .map(|i| params![format!("n{i}"), i as f64])
        .collect();
    let r = db
        .execute_many("INSERT INTO items (name, price) VALUES (?, ?)", &sets)
        .unwrap();
    assert_eq!(r.rows_affected, 50);
    // A failure in the batch leaves nothing behind.
    let bad = vec![params!["fresh", 1.0], params!["n3", 1.0]];
    expect_err(
        db.execute_many("INSERT INTO items (name, price) VALUES (?, ?)", &bad),
        ErrorKind::Conflict,
    );
    let n = db
        .query("SELECT count(*) FROM items", &Params::None)
        .unwrap();
    assert_eq!(n.scalar().unwrap(), &Value::Integer(50));
}

fn migrations(s: &RelationalStore) {
    let db = s.blocking();
    let m = vec![
        Migration::new(
            1,
            "create",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)",
        ),
        Migration::new(
            2,
            "index",
            "CREATE INDEX notes_body ON notes(body); INSERT INTO notes (body) VALUES ('seed');",
        ),
    ];
    let r = db.migrate(&m).unwrap();
    assert_eq!(r.applied, vec![1, 2]);
    let r = db.migrate(&m).unwrap();
    assert_eq!(r.applied, Vec::<i64>::new());
    assert_eq!(r.skipped, vec![1, 2]);
    let n = db
        .query("SELECT count(*) FROM notes", &Params::None)
        .unwrap();
    assert_eq!(
        n.scalar().unwrap(),
        &Value::Integer(1),
        "migration 2 ran once"
    );
    // An applied script that changed is a conflict, not a silent skip.
    let mut changed = m.clone();
    changed[0].sql.push_str(" -- edited");
    expect_err(db.migrate(&changed), ErrorKind::Conflict);
    // A failing script leaves nothing of itself behind.
    let failing = vec![Migration::new(
        3,
        "bad",
        "CREATE TABLE t3 (x); INSERT INTO nope VALUES (1);",
    )];
    assert!(db.migrate(&failing).is_err());
    assert!(
        !db.tables().unwrap().contains(&"t3".to_string()),
        "failed migration left a table"
    );
    expect_err(
        db.migrate(&[Migration::new(0, "zero", "SELECT 1")]),
        ErrorKind::InvalidInput,
    );
    expect_err(
        db.migrate(&[
            Migration::new(5, "a", "SELECT 1"),
            Migration::new(5, "b", "SELECT 1"),
        ]),
        ErrorKind::InvalidInput,
    );
}

fn tables_and_describe(s: &RelationalStore) {
    let db = s.blocking();
    setup(db);
    let t = db.tables().unwrap();
    assert!(t.contains(&"items".to_string()), "{t:?}");
    assert!(
        t.iter()
            .all(|n| !n.starts_with("sqlite_") && !n.starts_with("_bp_")),
        "{t:?}"
    );
    let d = db.describe("items").unwrap();
    assert_eq!(d.name, "items");
    let names: Vec<&str> = d.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "name", "price", "data", "active", "meta"]);
    assert!(d.columns[0].primary_key);
    assert!(!d.columns[1].nullable);
    expect_err(db.describe("no_such_table"), ErrorKind::NotFound);
}

fn backup_and_restore(s: &RelationalStore) {
    let db = s.blocking();
    setup(db);
    db.execute("INSERT INTO items (name) VALUES ('kept')", &Params::None)
        .unwrap();
    let scratch = Scratch::new();
    let file = scratch.path("sub/backup.db");
    db.backup(file.to_str().unwrap()).unwrap();
    assert!(file.exists());
    db.execute("DELETE FROM items", &Params::None).unwrap();
    db.execute("CREATE TABLE later (x)", &Params::None).unwrap();
    db.restore(file.to_str().unwrap()).unwrap();
    let rows = db.query("SELECT name FROM items", &Params::None).unwrap();
    assert_eq!(rows.rows, vec![vec![Value::Text("kept".into())]]);
    assert!(!db.tables().unwrap().contains(&"later".to_string()));
    expect_err(
        db.restore(scratch.path("missing.db").to_str().unwrap()),
        ErrorKind::NotFound,
    );
}

fn bad_input(s: &RelationalStore) {
    let db = s.blocking();
    setup(db);
    let e = expect_err(
        db.execute("INSERT INTO nowhere VALUES (1)", &Params::None),
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("nowhere"), "{e}");
    expect_err(db.query("SELEC 1", &Params::None), ErrorKind::InvalidInput);
    expect_err(
        db.execute("INSERT INTO items (name) VALUES (?)", &params!["a", "b"]),
        ErrorKind::InvalidInput,
    );
    let e = expect_err(
        db.execute(
            "INSERT INTO items (name) VALUES (:name)",
            &Params::named([("nam", "x")]),
        ),
        ErrorKind::InvalidInput,
    );
    assert!(e.message().contains("nam"), "{e}");
}

fn health(s: &RelationalStore) {
    let h = s.blocking().health().unwrap();
    assert!(h.healthy);
    assert!(!h.detail.is_empty());
}
