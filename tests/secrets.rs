//! No secret is ever printed: passwords in connection URLs (with `@` and
//! `:` inside them), password keys, API keys given in the file and through
//! an environment variable, for every plugin that takes one (postgres,
//! redis, qdrant), through every way the host shows a configuration: the
//! parsed config's `Debug`, the errors of opening and checking the stores
//! (`Display` and `Debug`), and everything `backplane check` and
//! `backplane plugins` print with `BACKPLANE_LOG=trace` (the host's and the
//! plugins' log records included).
//!
//! The stores point at this machine's servers where they run (PostgreSQL
//! with trust authentication, which ignores the password, so the store
//! opens; Redis without a password, which refuses the one given) and at a
//! closed port for Qdrant: the secrets travel both the success and the
//! failure paths.

use backplane_behavior::{target_dir, Scratch};
use backplane_host::{Config, Storage};
use std::process::Command;

/// Secrets with the characters URL redaction gets wrong: `:` and `@`.
const PG_PASSWORD: &str = "pg:pa@ss-w0rdA";
const PG_KEY_PASSWORD: &str = "sw0rdfishB";
const REDIS_PASSWORD: &str = "r3d:is@pwC";
const QDRANT_URL_PASSWORD: &str = "qd:url@pwD";
const QDRANT_KEY: &str = "qdr4nt-k3y-s3cretE";
const ENV_KEY: &str = "env-k3y-s3cretF";

/// What must never be seen: each secret, and its tail after any `@` or
/// `:` (what a redaction that splits at the wrong place leaves showing).
fn fragments() -> Vec<String> {
    let mut out = Vec::new();
    for s in [
        PG_PASSWORD,
        PG_KEY_PASSWORD,
        REDIS_PASSWORD,
        QDRANT_URL_PASSWORD,
        QDRANT_KEY,
        ENV_KEY,
    ] {
        out.push(s.to_string());
        for sep in ['@', ':'] {
            if let Some((_, tail)) = s.rsplit_once(sep) {
                out.push(tail.to_string());
            }
        }
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    for f in fragments() {
        assert!(
            !text.contains(&f),
            "{what} shows the secret fragment {f:?}:\n{text}"
        );
    }
}

fn config(scratch: &Scratch) -> std::path::PathBuf {
    let file = scratch.path("plugins.toml");
    std::fs::write(
        &file,
        format!(
            r#"[plugins]
search_paths = ["{plugins}"]

[relational.pg]
backend = "postgres"
url = "postgres://postgres:{PG_PASSWORD}@127.0.0.1:5432/test?connect_timeout=2"
connect_timeout = "2s"

[graph.pg_key]
backend = "postgres"
url = "postgres://postgres@127.0.0.1:5432/test"
password = "{PG_KEY_PASSWORD}"
connect_timeout = "2s"

[cache.rd]
backend = "redis"
url = "redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"
connect_timeout_ms = 2000

[cache.rd_nodes]
backend = "redis"
nodes = ["redis://default:{REDIS_PASSWORD}@127.0.0.1:6379"]
password = "{REDIS_PASSWORD}"
connect_timeout_ms = 2000

[vector.qd]
backend = "qdrant"
url = "http://user:{QDRANT_URL_PASSWORD}@127.0.0.1:1"
api_key = "{QDRANT_KEY}"
connect_timeout_ms = 1000

[vector.qd_env]
backend = "qdrant"
url = "http://127.0.0.1:1"
api_key_env = "BP_SECRETS_TEST_KEY"
connect_timeout_ms = 1000
"#,
            plugins = target_dir().display()
        ),
    )
    .unwrap();
    file
}

#[test]
fn no_secret_is_shown_by_the_config_or_its_errors() {
    let scratch = Scratch::new();
    let file = config(&scratch);
    std::env::set_var("BP_SECRETS_TEST_KEY", ENV_KEY);
    let parsed = Config::load(&file).unwrap();
    assert_clean("the parsed config's Debug", &format!("{parsed:?}"));
    match Storage::open(&file) {
        Ok(storage) => {
            assert_clean(
                "the opened storage's config",
                &format!("{:?}", storage.config()),
            );
            for (name, result) in [
                ("relational pg", storage.relational("pg").map(|_| ())),
                ("graph pg_key", storage.graph("pg_key").map(|_| ())),
                ("cache rd", storage.cache("rd").map(|_| ())),
                ("cache rd_nodes", storage.cache("rd_nodes").map(|_| ())),
                ("vector qd", storage.vector("qd").map(|_| ())),
                ("vector qd_env", storage.vector("qd_env").map(|_| ())),
            ] {
                if let Err(e) = result {
                    assert_clean(name, &format!("{e} {e:?}"));
                }
            }
        }
        Err(e) => {
            // Stores that cannot be reached fail the open, each on a line
            // of its own.
            let text = format!("{e}\n{e:?}");
            assert!(text.contains("qdrant"), "the qdrant stores fail: {text}");
            assert_clean("the open's error", &text);
        }
    }
}

#[test]
fn no_secret_is_printed_by_the_cli_at_trace_level() {
    let scratch = Scratch::new();
    let file = config(&scratch);
    for args in [&["check"][..], &["plugins"][..]] {
        let out = Command::new(target_dir().join("backplane"))
            .arg("--config")
            .arg(&file)
            .args(args)
            .env("BACKPLANE_LOG", "trace")
            .env("BP_SECRETS_TEST_KEY", ENV_KEY)
            .output()
            .expect("run backplane");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "check" {
            // The check reached the stores: it names each, and the qdrant
            // ones failed (nothing listens on port 1).
            for store in ["[relational.pg]", "[cache.rd]", "[vector.qd]"] {
                assert!(text.contains(store), "check names {store}:\n{text}");
            }
            assert!(
                ["[INFO]", "[DEBUG]", "[TRACE]"]
                    .iter()
                    .any(|l| text.contains(l)),
                "log records below warnings were printed (BACKPLANE_LOG=trace):\n{text}"
            );
        }
        assert_clean(&format!("backplane {}", args.join(" ")), &text);
    }
}
