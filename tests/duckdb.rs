//! The duckdb backend beyond the relational suite: DuckDB's own types read
//! back without losing a digit, bulk loads through the appender that leave
//! nothing behind when a row fails, the mistakes a user can make in its
//! section or file (one clear line each), and a database written through
//! the plugin read by DuckDB's own Python client.

use backplane_behavior::{in_ci, plugins_toml, Scratch};
use backplane_host::{params, ErrorKind, Params, Storage, Value};
use serde_json::json;

fn open(scratch: &Scratch, section: &str) -> backplane_host::Result<Storage> {
    Storage::open(plugins_toml(
        scratch,
        &["backplane_plugin_duckdb"],
        &format!("[relational.s]\nbackend = \"duckdb\"\n{section}"),
    ))
}

#[test]
fn duckdb_types_come_back_whole() {
    let scratch = Scratch::new();
    let storage = open(&scratch, "path = \"data/t.duckdb\"\n").unwrap();
    let s = storage.relational("s").unwrap();
    let db = s.blocking();
    db.execute(
        "CREATE TABLE t (h HUGEINT, d DECIMAL(38,10), small DECIMAL(6,2), l INTEGER[], st STRUCT(x INTEGER, y VARCHAR), \
         m MAP(VARCHAR, INTEGER), tz TIMESTAMPTZ, day DATE, u UUID, j JSON)",
        &Params::None,
    )
    .unwrap();
    db.execute(
        "INSERT INTO t VALUES (CAST(? AS HUGEINT), CAST(? AS DECIMAL(38,10)), ?, [1, 2, NULL], {'x': 7, 'y': 'q'}, \
         MAP {'a': 1}, ?, ?, ?, ?)",
        &params![
            "170141183460469231731687303715884105727",
            "1234567890123456789012345678.0123456789",
            12.5,
            Value::Timestamp(1_700_000_000_123_456),
            "2024-05-01",
            "550e8400-e29b-41d4-a716-446655440000",
            Value::Json(json!({"k": [1, "two"]}))
        ],
    )
    .unwrap();
    let rows = db.query("SELECT * FROM t", &Params::None).unwrap();
    let r = &rows.rows[0];
    assert_eq!(
        r[0],
        Value::Text("170141183460469231731687303715884105727".into()),
        "a HUGEINT past i64 keeps every digit"
    );
    assert_eq!(
        r[1],
        Value::Text("1234567890123456789012345678.0123456789".into())
    );
    assert_eq!(r[2], Value::Real(12.5));
    assert_eq!(r[3], Value::Json(json!([1, 2, null])));
    assert_eq!(r[4], Value::Json(json!({"x": 7, "y": "q"})));
    assert_eq!(r[5], Value::Json(json!({"a": 1})));
    assert_eq!(r[6], Value::Timestamp(1_700_000_000_123_456));
    assert_eq!(r[7], Value::Text("2024-05-01".into()));
    assert_eq!(
        r[8],
        Value::Text("550e8400-e29b-41d4-a716-446655440000".into())
    );
    assert_eq!(r[9], Value::Json(json!({"k": [1, "two"]})));
    // An analytical aggregate over decimals reads as a number.
    let sum = db
        .query("SELECT sum(small) AS s FROM t", &Params::None)
        .unwrap();
    assert_eq!(sum.get(0, "s"), Some(&Value::Real(12.5)));
}

#[test]
fn a_bulk_load_is_all_or_nothing() {
    let scratch = Scratch::new();
    let storage = open(&scratch, "path = \":memory:\"\n").unwrap();
    let s = storage.relational("s").unwrap();
    let db = s.blocking();
    db.execute(
        "CREATE TABLE runs (id BIGINT PRIMARY KEY, cost DOUBLE)",
        &Params::None,
    )
    .unwrap();
    let sets: Vec<Params> = (0..10_000).map(|i| params![i, i as f64 / 2.0]).collect();
    let r = db
        .execute_many("INSERT INTO runs (id, cost) VALUES (?, ?)", &sets)
        .unwrap();
    assert_eq!(r.rows_affected, 10_000);
    // A duplicate key in the middle of a batch: nothing of it stays.
    let bad = vec![params![20_000, 1.0], params![5, 1.0], params![20_001, 1.0]];
    let e = db
        .execute_many("INSERT INTO runs (id, cost) VALUES (?, ?)", &bad)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.message().contains("nothing was written"), "{e}");
    assert!(!e.message().contains('\n'), "{e}");
    let n = db
        .query("SELECT count(*), max(id) FROM runs", &Params::None)
        .unwrap();
    assert_eq!(
        n.rows[0],
        vec![Value::Integer(10_000), Value::Integer(9_999)]
    );
    // A value of the wrong type for its column.
    let e = db
        .execute_many(
            "INSERT INTO runs (id, cost) VALUES (?, ?)",
            &[params!["not a number", 1.0]],
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn the_sections_settings_reach_duckdb() {
    let scratch = Scratch::new();
    let storage = open(
        &scratch,
        "path = \"s.duckdb\"\nthreads = 1\nmemory_limit = \"512MB\"\ncheckpoint_threshold = \"4MB\"\n",
    )
    .unwrap();
    let rows = storage
        .relational("s")
        .unwrap()
        .blocking()
        .query(
            "SELECT current_setting('threads'), current_setting('memory_limit'), \
             current_setting('checkpoint_threshold')",
            &Params::None,
        )
        .unwrap();
    // DuckDB shows amounts in binary units: 512 MB is 488.2 MiB, 4 MB 3.8 MiB.
    assert_eq!(
        rows.rows[0],
        vec![
            Value::Integer(1),
            Value::Text("488.2 MiB".into()),
            Value::Text("3.8 MiB".into())
        ]
    );
    // Once the log has passed the threshold, the next commit checkpoints
    // it into the file.
    let db = storage.relational("s").unwrap();
    let db = db.blocking();
    db.execute("CREATE TABLE notes (id BIGINT, body TEXT)", &Params::None)
        .unwrap();
    let body = "x".repeat(400);
    let sets: Vec<_> = (0..20_000i64).map(|i| params![i, body.clone()]).collect();
    db.execute_many("INSERT INTO notes (id, body) VALUES (?, ?)", &sets)
        .unwrap();
    db.execute("INSERT INTO notes VALUES (-1, 'last')", &Params::None)
        .unwrap();
    let wal = std::fs::metadata(scratch.path("s.duckdb.wal")).map_or(0, |m| m.len());
    let file = std::fs::metadata(scratch.path("s.duckdb")).unwrap().len();
    assert!(
        wal < 1_000_000 && file > 100_000,
        "8 MB written, checkpointed into the file (DuckDB compresses it): log {wal} bytes, file {file} bytes"
    );
}

#[test]
fn mistakes_are_one_clear_line() {
    let scratch = Scratch::new();
    std::fs::write(
        scratch.path("not.duckdb"),
        "this is a text file, not a database\n",
    )
    .unwrap();
    for (section, says) in [
        (
            "path = \"not.duckdb\"\n",
            "exists but is not a DuckDB database",
        ),
        ("", "missing key `path`"),
        ("path = \"\"\n", "path is empty"),
        ("path = \":memory:\"\nthreads = 0\n", "threads = 0"),
        (
            "path = \":memory:\"\nmemory_limit = \"lots\"\n",
            "memory_limit = \"lots\"",
        ),
        (
            "path = \":memory:\"\ncheckpoint_threshold = \"-4MB\"\n",
            "checkpoint_threshold = \"-4MB\" is not an amount of memory",
        ),
        ("path = \":memory:\"\npool = 3\n", "pool"),
    ] {
        let e = open(&scratch, section)
            .and_then(|s| s.relational("s").map(|_| ()))
            .expect_err(section);
        // The host lists each store that failed on a line of its own.
        let msg = e.to_string();
        assert!(msg.lines().any(|l| l.contains(says)), "{section:?}: {msg}");
    }
    let e = Storage::open(plugins_toml(
        &scratch,
        &["backplane_plugin_duckdb"],
        "[vector.v]\nbackend = \"duckdb\"\npath = \"v.duckdb\"\n",
    ))
    .and_then(|s| s.vector("v").map(|_| ()))
    .expect_err("duckdb serves no vector stores");
    assert!(e.to_string().contains("vector"), "{e}");
    // A second process cannot open the file while this one has it.
    let storage = open(&scratch, "path = \"held.duckdb\"\n").unwrap();
    storage.relational("s").unwrap();
    let held = scratch.path("held.duckdb");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, duckdb; duckdb.connect(sys.argv[1])",
            held.to_str().unwrap(),
        ])
        .output();
    if let Ok(out) = out {
        if out.status.success() {
            panic!("a second process opened a DuckDB file the store holds");
        }
    }
}

/// The DuckDB Python client (PyPI's `duckdb`, installed by CI), if here.
fn python_duckdb(what: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !in_ci(),
            "{what}: python3 with the duckdb module is missing (pip install duckdb)"
        );
        println!("skipped {what}: python3 with the duckdb module is missing (pip install duckdb)");
    }
    ok
}

#[test]
fn the_file_and_its_backup_open_in_duckdbs_own_client() {
    if !python_duckdb("reading the file with DuckDB's own client") {
        return;
    }
    let scratch = Scratch::new();
    let path = scratch.path("data/p.duckdb");
    {
        let storage = open(&scratch, "path = \"data/p.duckdb\"\n").unwrap();
        let s = storage.relational("s").unwrap();
        let db = s.blocking();
        db.execute(
            "CREATE TABLE notes (id BIGINT PRIMARY KEY, body VARCHAR, written TIMESTAMP)",
            &Params::None,
        )
        .unwrap();
        db.execute_many(
            "INSERT INTO notes VALUES (?, ?, ?)",
            &[
                params![1, "héllo", Value::Timestamp(0)],
                params![2, "world", Value::Null],
            ],
        )
        .unwrap();
        db.backup(scratch.path("backup.duckdb").to_str().unwrap())
            .unwrap();
    }
    for file in [path, scratch.path("backup.duckdb")] {
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys, duckdb; c = duckdb.connect(sys.argv[1], read_only=True); \
                 print(c.sql('SELECT string_agg(body, \\',\\' ORDER BY id), count(written) FROM notes').fetchone())",
                file.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), "('héllo,world', 1)", "{}", file.display());
    }
}
