//! Portability: every store moves to every other backend of its
//! capability with every record intact, by migration and by backup and
//! restore; a migration killed at random points finishes on a rerun with
//! nothing missing and nothing twice; and every bad input is one clear
//! error with nothing half-written.

use backplane_behavior::port::{self, assert_same, fill, fill_with, store_ref};
use backplane_behavior::{backends_for, open_with, store_options, Scratch};
use backplane_host::{Capability, CopyOptions, ErrorKind, Merge, Quiet, Storage};
use std::path::Path;

/// The store options every dataset store gets.
fn extra(cap: Capability) -> &'static str {
    if cap == Capability::Cache {
        "max_messages = 100"
    } else {
        ""
    }
}

/// Backends of `cap` that run here (a backend whose server is missing is
/// skipped outside CI, a failure in it).
fn backends_here(cap: Capability) -> Vec<String> {
    let probe = Scratch::new();
    backends_for(cap)
        .into_iter()
        .filter(|b| b != "panicking")
        .filter(|b| store_options(b, cap, &probe, extra(cap)).is_some())
        .collect()
}

/// A fresh store `s` of `cap` on `backend`, under `scratch`.
fn fresh(backend: &str, cap: Capability, scratch: &Scratch) -> Storage {
    let opts = store_options(backend, cap, scratch, extra(cap)).expect("the backend runs here");
    open_with(backend, cap, scratch, &opts)
}

fn open(backend: &str, cap: Capability, scratch: &Scratch, opts: &str) -> Storage {
    open_with(backend, cap, scratch, opts)
}

/// A report's items, one line each, for a failure message.
fn notes(r: &backplane_host::Report) -> String {
    r.items
        .iter()
        .map(|i| {
            format!(
                "{}: {} records, verified {}, {}",
                i.item,
                i.records,
                i.verified,
                i.note.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Run one case of a matrix: print its outcome, collect its failure.
fn case(label: String, failures: &mut Vec<String>, f: impl FnOnce()) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(()) => println!("  ok    {label}"),
        Err(p) => {
            let msg = panic_text(p);
            println!("  FAIL  {label}: {msg}");
            failures.push(format!("{label}: {msg}"));
        }
    }
}

/// Every pair (source, target) of distinct backends of `cap`: fill the
/// source, migrate, and compare both through the public API.
fn migration_matrix(cap: Capability) {
    let backends = backends_here(cap);
    assert!(
        backends.len() >= 2,
        "{cap}: fewer than two backends run here: {backends:?}"
    );
    let mut failures = Vec::new();
    for from in &backends {
        for to in backends.iter().filter(|t| *t != from) {
            if refuses_cascade(cap, from, to) {
                case(
                    format!("{cap} {from} -> {to}: a cascading foreign key is refused"),
                    &mut failures,
                    || {
                        let scratch = Scratch::new();
                        let (src, dst) = (fresh(from, cap, &scratch), fresh(to, cap, &scratch));
                        fill_with(&src, cap, from, true);
                        let refused = src.migrate(
                            &store_ref(cap),
                            &dst,
                            &store_ref(cap),
                            &CopyOptions::default(),
                            &Quiet,
                        );
                        assert_cascade_refused(refused.map(|_| ()), &dst);
                    },
                );
            }
            let scratch = Scratch::new();
            let (src, dst) = (fresh(from, cap, &scratch), fresh(to, cap, &scratch));
            case(format!("{cap} {from} -> {to}"), &mut failures, || {
                // DuckDB's foreign keys take no ON DELETE action: the
                // dataset moving to or from it has none.
                fill_with(&src, cap, from, from != "duckdb" && to != "duckdb");
                let migrate = || {
                    src.migrate(
                        &store_ref(cap),
                        &dst,
                        &store_ref(cap),
                        &CopyOptions::default(),
                        &Quiet,
                    )
                    .unwrap_or_else(|e| panic!("migrate: {e}"))
                };
                let report = migrate();
                assert!(
                    report.ok(),
                    "the migration's own verification: {}",
                    notes(&report)
                );
                assert!(report.records() > 0);
                // Run again: done already, read back and still equal.
                let again = migrate();
                assert!(again.already_done && again.ok(), "{}", notes(&again));
                assert_same(&src, &dst, cap);
            });
        }
    }
    assert!(
        failures.is_empty(),
        "{cap} migrations failed:\n{}",
        failures.join("\n")
    );
}

/// Whether moving the relational dataset from `from` to `to` meets a
/// foreign key with `ON DELETE CASCADE` that the target cannot hold.
fn refuses_cascade(cap: Capability, from: &str, to: &str) -> bool {
    cap == Capability::Relational && to == "duckdb" && from != "duckdb"
}

/// A move of the cascading dataset into duckdb fails with one line that
/// names the foreign key and its action, and leaves the target empty.
fn assert_cascade_refused(result: backplane_host::Result<()>, dst: &Storage) {
    let e = result.expect_err("a cascading foreign key cannot move into duckdb");
    let msg = e.to_string();
    assert!(
        msg.contains("ON DELETE CASCADE") && msg.contains("books"),
        "the refusal names the table and the action: {msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
    let tables = dst.relational("s").unwrap().blocking().tables().unwrap();
    assert!(
        tables.is_empty(),
        "nothing created in the target: {tables:?}"
    );
}

#[test]
fn relational_migrates_between_every_pair_of_backends() {
    migration_matrix(Capability::Relational);
}

#[test]
fn vectors_migrate_between_every_pair_of_backends() {
    migration_matrix(Capability::Vector);
}

#[test]
fn graphs_migrate_between_every_pair_of_backends() {
    migration_matrix(Capability::Graph);
}

#[test]
fn caches_migrate_between_every_pair_of_backends() {
    migration_matrix(Capability::Cache);
}

/// A backup taken on each backend restores into each other backend.
fn backup_matrix(cap: Capability) {
    let backends = backends_here(cap);
    let mut failures = Vec::new();
    for from in &backends {
        let scratch = Scratch::new();
        let src = fresh(from, cap, &scratch);
        fill(&src, cap, from);
        let dir = scratch.path("archive");
        let written = src.backup(&dir, &[store_ref(cap)], &Quiet).unwrap();
        assert!(written.ok, "{written:?}");
        let checked = backplane_host::verify_archive(&dir, &Quiet).unwrap();
        assert!(checked.ok, "{checked:?}");
        for to in backends.iter().filter(|t| *t != from) {
            let dst = fresh(to, cap, &scratch);
            if refuses_cascade(cap, from, to) {
                case(
                    format!("{cap} backup on {from}, restore on {to}: a cascading foreign key is refused"),
                    &mut failures,
                    || {
                        let refused = dst.restore(&dir, &[], &CopyOptions::default(), &Quiet);
                        assert_cascade_refused(refused.map(|_| ()), &dst);
                    },
                );
                continue;
            }
            case(
                format!("{cap} backup on {from}, restore on {to}"),
                &mut failures,
                || {
                    let reports = dst
                        .restore(&dir, &[], &CopyOptions::default(), &Quiet)
                        .unwrap_or_else(|e| panic!("restore: {e}"));
                    assert_eq!(reports.len(), 1);
                    assert!(reports[0].ok(), "{}", notes(&reports[0]));
                    assert_same(&src, &dst, cap);
                },
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{cap} restores failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn relational_backups_restore_on_every_other_backend() {
    backup_matrix(Capability::Relational);
}

#[test]
fn vector_backups_restore_on_every_other_backend() {
    backup_matrix(Capability::Vector);
}

#[test]
fn graph_backups_restore_on_every_other_backend() {
    backup_matrix(Capability::Graph);
}

#[test]
fn cache_backups_restore_on_every_other_backend() {
    backup_matrix(Capability::Cache);
}

/// A sqlite store with the relational dataset, backed up into `dir`.
fn sqlite_backup(scratch: &Scratch, dir: &Path) -> Storage {
    let src = fresh("sqlite", Capability::Relational, scratch);
    fill(&src, Capability::Relational, "sqlite");
    assert!(src.backup(dir, &[], &Quiet).unwrap().ok);
    src
}

fn fresh_sqlite(scratch: &Scratch) -> Storage {
    fresh("sqlite", Capability::Relational, scratch)
}

fn assert_no_tables(s: &Storage) {
    let tables = s.relational("s").unwrap().blocking().tables().unwrap();
    assert!(
        tables.iter().all(|t| t == "_backplane_migrations"),
        "nothing was written: {tables:?}"
    );
}

#[test]
fn a_tampered_archive_is_refused_before_anything_is_written() {
    let scratch = Scratch::new();
    let dir = scratch.path("archive");
    sqlite_backup(&scratch, &dir);
    let file = dir.join("relational.s/books.jsonl.zst");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, &bytes).unwrap();
    let dst = fresh_sqlite(&scratch);
    let e = dst
        .restore(&dir, &[], &CopyOptions::default(), &Quiet)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("books.jsonl.zst"), "{e}");
    assert!(e.message().contains("checksum does not match"), "{e}");
    assert_no_tables(&dst);
    let v = backplane_host::verify_archive(&dir, &Quiet).unwrap();
    assert!(!v.ok && v.problems.len() == 1, "{v:?}");
}

#[test]
fn a_truncated_data_file_is_refused() {
    let scratch = Scratch::new();
    let dir = scratch.path("archive");
    sqlite_backup(&scratch, &dir);
    let file = dir.join("relational.s/authors.jsonl.zst");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let dst = fresh_sqlite(&scratch);
    let e = dst
        .restore(&dir, &[], &CopyOptions::default(), &Quiet)
        .unwrap_err();
    assert!(e.message().contains("authors.jsonl.zst"), "{e}");
    assert!(e.message().contains("cut short"), "{e}");
    assert_no_tables(&dst);
}

#[test]
fn an_archive_of_a_newer_format_is_refused() {
    let scratch = Scratch::new();
    let dir = scratch.path("archive");
    sqlite_backup(&scratch, &dir);
    let manifest = dir.join("manifest.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"format_version\": 1", "\"format_version\": 2");
    std::fs::write(&manifest, text).unwrap();
    let dst = fresh_sqlite(&scratch);
    let e = dst
        .restore(&dir, &[], &CopyOptions::default(), &Quiet)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Incompatible, "{e}");
    assert!(e.message().contains("archive format 2"), "{e}");
    assert!(e.message().contains("newer"), "{e}");
    let e = backplane_host::verify_archive(&dir, &Quiet).unwrap_err();
    assert!(e.message().contains("newer"), "{e}");
    assert_no_tables(&dst);
}

#[test]
fn a_target_that_is_not_empty_is_refused_unless_told_how_to_merge() {
    let scratch = Scratch::new();
    let dir = scratch.path("archive");
    let src = sqlite_backup(&scratch, &dir);
    let dst = fresh_sqlite(&scratch);
    dst.relational("s")
        .unwrap()
        .blocking()
        .execute("CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, born TIMESTAMP, bio TEXT, big INTEGER)", &backplane_host::Params::None)
        .unwrap();
    dst.relational("s")
        .unwrap()
        .blocking()
        .execute(
            "INSERT INTO authors (id, name) VALUES (9, 'mine')",
            &backplane_host::Params::None,
        )
        .unwrap();
    let e = dst
        .restore(&dir, &[], &CopyOptions::default(), &Quiet)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.message().contains("table 'authors' holds 1 rows"), "{e}");
    assert!(e.message().contains("--merge keep"), "{e}");
    let tables = dst.relational("s").unwrap().blocking().tables().unwrap();
    assert_eq!(tables, ["authors"], "nothing else was written");
    // Told to keep the target's records: the source's arrive beside them.
    let opts = CopyOptions {
        merge: Some(Merge::Keep),
        ..Default::default()
    };
    let e = src
        .migrate(
            &store_ref(Capability::Relational),
            &dst,
            &store_ref(Capability::Relational),
            &opts,
            &Quiet,
        )
        .unwrap();
    let authors = port::read_relational(&dst.relational("s").unwrap());
    assert_eq!(authors[0].1.len(), 4, "three copied beside the one kept");
    // The target holds more than was copied: the report says so.
    assert!(
        !e.ok(),
        "a merged target does not compare equal: {}",
        notes(&e)
    );
}

#[test]
fn a_collection_of_another_dimension_is_refused() {
    let scratch = Scratch::new();
    let a = fresh("sqlite", Capability::Vector, &scratch);
    let b = fresh("sqlite", Capability::Vector, &scratch);
    port::fill_vector(&a.vector("s").unwrap());
    b.vector("s")
        .unwrap()
        .blocking()
        .create_collection("dot", 8, backplane_host::Distance::Dot)
        .unwrap();
    let e = a
        .migrate(
            &store_ref(Capability::Vector),
            &b,
            &store_ref(Capability::Vector),
            &CopyOptions::default(),
            &Quiet,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("collection 'dot'"), "{e}");
    assert!(e.message().contains("dimension 8"), "{e}");
    let names: Vec<String> = b
        .vector("s")
        .unwrap()
        .blocking()
        .list_collections()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["dot"], "nothing was written");
}

#[test]
fn a_column_type_without_a_portable_mapping_is_refused() {
    let scratch = Scratch::new();
    let Some(pg) = store_options("postgres", Capability::Relational, &scratch, "") else {
        return;
    };
    let src = open("postgres", Capability::Relational, &scratch, &pg);
    let db = src.relational("s").unwrap();
    db.blocking()
        .execute(
            "CREATE TABLE places (id BIGINT PRIMARY KEY, spot POINT)",
            &backplane_host::Params::None,
        )
        .unwrap();
    let dst = fresh_sqlite(&scratch);
    let e = src
        .migrate(
            &store_ref(Capability::Relational),
            &dst,
            &store_ref(Capability::Relational),
            &CopyOptions::default(),
            &Quiet,
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.message().contains("column 'spot'"), "{e}");
    assert!(e.message().contains("point"), "{e}");
    assert!(e.message().contains("--tables"), "{e}");
    assert_no_tables(&dst);
}

/// A relational export reads one snapshot on the backends that have them
/// (sqlite, postgres, duckdb): rows written after it began stay out of it, across
/// tables, while a read without the snapshot sees them.
#[test]
fn relational_exports_read_one_snapshot() {
    for backend in ["sqlite", "postgres", "duckdb"] {
        let scratch = Scratch::new();
        let Some(opts) = store_options(backend, Capability::Relational, &scratch, "") else {
            continue;
        };
        let s = open(backend, Capability::Relational, &scratch, &opts);
        fill(&s, Capability::Relational, backend);
        let db = s.relational("s").unwrap();
        let db = db.blocking();
        let snap = db
            .export_snapshot()
            .unwrap()
            .unwrap_or_else(|| panic!("{backend} has export snapshots"));
        db.execute(
            "INSERT INTO authors (id, name) VALUES (?, ?)",
            &backplane_host::params![100, "written after"],
        )
        .unwrap();
        db.execute("DELETE FROM tags", &backplane_host::Params::None)
            .unwrap();
        let in_snapshot = |table: &str| {
            db.export_rows(Some(&snap), table, None, 100)
                .unwrap()
                .items
                .len()
        };
        let now = |table: &str| db.export_rows(None, table, None, 100).unwrap().items.len();
        assert_eq!(
            (in_snapshot("authors"), now("authors")),
            (3, 4),
            "{backend}"
        );
        assert_eq!((in_snapshot("tags"), now("tags")), (3, 0), "{backend}");
        // Pages of two, in the snapshot, add up to the whole table.
        let mut cursor: Option<String> = None;
        let mut n = 0;
        loop {
            let p = db
                .export_rows(Some(&snap), "authors", cursor.as_deref(), 2)
                .unwrap();
            n += p.items.len();
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(n, 3, "{backend}");
        db.release_snapshot(&snap).unwrap();
        let e = db
            .export_rows(Some(&snap), "authors", None, 10)
            .unwrap_err();
        assert!(e.message().contains("is not open"), "{backend}: {e}");
        println!("  ok    {backend}: exports read one snapshot");
    }
}

/// The command line: `backup`, `verify`, `restore --dry-run` and `count`
/// with `--json` for scripts, a dry run that writes nothing, a refused
/// restore that exits 1 with one line, and shell completions.
#[test]
fn the_cli_moves_data_and_reports_json() {
    use std::process::Command;
    let scratch = Scratch::new();
    let src = fresh("sqlite", Capability::Relational, &scratch);
    fill(&src, Capability::Relational, "sqlite");
    let src_cfg = src.config().file.clone().unwrap();
    drop(src);
    let dst = fresh("sqlite", Capability::Relational, &scratch);
    let dst_cfg = dst.config().file.clone().unwrap();
    drop(dst);
    let bp = |cfg: &Path, args: &[&str]| {
        let out = Command::new(backplane_behavior::target_dir().join("backplane"))
            .arg("--config")
            .arg(cfg)
            .args(args)
            .output()
            .expect("run backplane");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let dir = scratch.path("cli-archive");
    let dir_s = dir.to_str().unwrap();
    let (code, out, err) = bp(&src_cfg, &["backup", dir_s, "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("backup --json is JSON");
    assert_eq!(report["ok"], true, "{report}");
    let (code, out, _) = bp(&src_cfg, &["verify", dir_s, "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);

    // A dry run says what it would copy and writes nothing.
    let (code, out, err) = bp(&dst_cfg, &["restore", dir_s, "--dry-run", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r[0]["dry_run"], true, "{r}");
    let authors = r[0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["item"] == "table authors")
        .expect("authors listed");
    assert_eq!(authors["records"], 3);
    let (_, out, _) = bp(&dst_cfg, &["count", "--json"]);
    let counts: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        counts[0]["records"], 0,
        "the dry run wrote nothing: {counts}"
    );

    // The real restore, then a second one into the now full target: the
    // first reports verified items, the second is finished already.
    let (code, out, err) = bp(&dst_cfg, &["restore", dir_s]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("verified") && out.contains("ok: "), "{out}");
    let (_, out, _) = bp(&dst_cfg, &["count", "--json"]);
    let counts: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(counts[0]["records"], 9, "{counts}");

    // A store that is not in the archive: exit 1, one line.
    let (code, _, err) = bp(
        &dst_cfg,
        &["restore", dir_s, "--into", "relational.nope=relational.s"],
    );
    assert_eq!(code, Some(1));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("the archive has no store relational.nope"),
        "{err}"
    );

    let (code, out, _) = bp(&dst_cfg, &["completions", "bash"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("migrate") && out.contains("restore"),
        "a completion script"
    );
}
