//! A migration killed with SIGKILL at random points, run again until it
//! finishes, leaves the target equal to the source: nothing missing,
//! nothing twice. The `backplane` command is the process killed.

use backplane_behavior::port;
use backplane_behavior::{plugin_libraries, store_options, target_dir, Scratch};
use backplane_host::{params, Capability, Params, Storage, VectorRecord};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A small xorshift generator: the kill times, from a seed printed first.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const ROWS: i64 = 60_000;
const VECTORS: usize = 10_000;

fn fill_big(storage: &Storage, cap: Capability) {
    match cap {
        Capability::Relational => {
            let db = storage.relational("src").unwrap();
            let db = db.blocking();
            db.execute(
                "CREATE TABLE events (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, kind TEXT, body JSON, at TIMESTAMP)",
                &Params::None,
            )
            .unwrap();
            for chunk in (0..ROWS).collect::<Vec<_>>().chunks(2_000) {
                let rows: Vec<Params> = chunk
                    .iter()
                    .map(|&i| {
                        params![
                            i + 1,
                            i % 97,
                            format!("kind-{} é", i % 7),
                            backplane_host::Value::Json(serde_json::json!({"i": i, "x": [i % 3]})),
                            backplane_host::Value::Timestamp(i * 1_000_003)
                        ]
                    })
                    .collect();
                db.execute_many(
                    "INSERT INTO events (id, user_id, kind, body, at) VALUES (?, ?, ?, ?, ?)",
                    &rows,
                )
                .unwrap();
            }
        }
        Capability::Vector => {
            let v = storage.vector("src").unwrap();
            let v = v.blocking();
            v.create_collection("mem", 16, backplane_host::Distance::Cosine)
                .unwrap();
            let records: Vec<VectorRecord> = (0..VECTORS)
                .map(|i| {
                    let vector = (0..16)
                        .map(|j| ((i * 31 + j * 7) % 101) as f32 / 101.0 - 0.5 + 1e-7)
                        .collect();
                    VectorRecord::new(format!("v{i}"), vector)
                        .with_payload(serde_json::json!({"i": i}))
                })
                .collect();
            for c in records.chunks(500) {
                v.upsert("mem", c).unwrap();
            }
        }
        _ => unreachable!(),
    }
}

fn config(
    scratch: &Scratch,
    name: &str,
    cap: Capability,
    sections: &[(&str, &str, String)],
) -> std::path::PathBuf {
    let libs: Vec<String> = plugin_libraries()
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    let mut text = format!("[plugins]\nload = [{}]\n", libs.join(", "));
    for (store, backend, opts) in sections {
        text.push_str(&format!(
            "\n[{cap}.{store}]\nbackend = \"{backend}\"\n{opts}\n"
        ));
    }
    let file = scratch.path(name);
    std::fs::write(&file, text).unwrap();
    file
}

/// How many records the copy's state file under `dir` says were copied,
/// while the copy is not finished.
fn copied(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir.join(".backplane/copies")) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .filter(|state| state["finished_at"].is_null())
        .map(|state| {
            state["items"]
                .as_object()
                .map(|items| {
                    items
                        .values()
                        .filter_map(|i| i["digest"]["records"].as_u64())
                        .sum::<u64>()
                })
                .unwrap_or(0)
        })
        .sum()
}

/// Kill `backplane migrate` (SIGKILL) at random points of the copy,
/// `kills` times, each once the state file shows a random number of
/// records copied past the last kill and then a random few milliseconds
/// more (to land inside a page as well as between pages); then let it
/// finish. Returns the records copied at each kill.
fn kill_until_done(
    cfg: &std::path::Path,
    cap: Capability,
    total: u64,
    kills: u32,
    rng: &mut Rng,
) -> Vec<u64> {
    let dir = cfg.parent().unwrap();
    let mut points = Vec::new();
    for run in 0..=kills {
        let mut child = Command::new(target_dir().join("backplane"))
            .arg("--config")
            .arg(cfg)
            .args([
                "migrate",
                &format!("{cap}.src"),
                &format!("{cap}.dst"),
                "--batch",
                "100",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run backplane");
        let last = points.last().copied().unwrap_or(0);
        let left = total.saturating_sub(last).max(2);
        let at = last
            + 1
            + rng
                .below(left / (u64::from(kills - run.min(kills)) + 1))
                .max(1);
        let extra = Duration::from_millis(rng.below(20));
        let started = Instant::now();
        let mut reached: Option<Instant> = None;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    status.success(),
                    "run {run} failed: {text}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(text.contains("verified"), "{text}");
                if run < kills {
                    // Finished before this kill point: fewer kills.
                    println!("  {cap}: run {run} finished before its kill point {at}");
                }
                return points;
            }
            if run < kills {
                if reached.is_none() && copied(dir) >= at {
                    reached = Some(Instant::now());
                }
                if reached.is_some_and(|r| r.elapsed() >= extra) {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    let now = copied(dir);
                    println!("  {cap}: killed run {run} with {now} of {total} records copied");
                    points.push(now);
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "{cap}: run {run} did not finish in 300 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    unreachable!("the last run is never killed")
}

fn resume_case(cap: Capability, from: &str, to: &str, rng: &mut Rng) {
    let scratch = Scratch::new();
    let Some(src_opts) = store_options(from, cap, &scratch, "") else {
        return;
    };
    let Some(dst_opts) = store_options(to, cap, &scratch, "") else {
        return;
    };
    let cfg = config(
        &scratch,
        "plugins.toml",
        cap,
        &[
            ("src", from, src_opts.clone()),
            ("dst", to, dst_opts.clone()),
        ],
    );
    {
        // Closed again before the command opens the same stores.
        let storage = Storage::open(&cfg).unwrap();
        fill_big(&storage, cap);
    }
    let total = if cap == Capability::Relational {
        ROWS as u64
    } else {
        VECTORS as u64
    };
    let points = kill_until_done(&cfg, cap, total, 4, rng);
    assert!(
        points.iter().filter(|&&p| p > 0 && p < total).count() >= 2,
        "{cap}: fewer than two kills landed in the middle of the copy: {points:?}"
    );
    let storage = Storage::open(&cfg).unwrap();
    match cap {
        Capability::Relational => {
            let read = |name: &str| {
                storage
                    .relational(name)
                    .unwrap()
                    .blocking()
                    .query("SELECT * FROM events ORDER BY id", &Params::None)
                    .unwrap()
                    .rows
            };
            let (x, y) = (read("src"), read("dst"));
            assert_eq!(x.len() as i64, ROWS);
            assert_eq!(x, y, "every row once, equal");
        }
        _ => {
            let (x, y) = (
                port::read_vector(&storage.vector("src").unwrap()),
                port::read_vector(&storage.vector("dst").unwrap()),
            );
            assert_eq!(x[0].3.len(), VECTORS);
            port::assert_same_vectors(&x, &y);
        }
    }
}

#[test]
fn a_migration_killed_at_random_points_finishes_equal() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill-point seed {seed}");
    let mut rng = Rng(seed);
    resume_case(Capability::Relational, "sqlite", "postgres", &mut rng);
    resume_case(Capability::Vector, "qdrant-edge", "sqlite", &mut rng);
    // Into a Qdrant server, when one is given (BACKPLANE_QDRANT_URL).
    resume_case(Capability::Vector, "sqlite", "qdrant", &mut rng);
}
