//! No secret is ever printed: passwords in connection URLs (with `@` and
//! `:` inside them), password keys, API keys and tokens given in the file,
//! through an environment variable or in a key file, for every plugin that
//! takes one (postgres, redis, qdrant, chroma, files on S3 and Azure Blob
//! Storage), through every way the host shows a configuration: the
//! parsed config's `Debug`, the errors of opening and checking the stores
//! (`Display` and `Debug`), and everything `backplane check` and
//! `backplane plugins` print with `BACKPLANE_LOG=trace` (the host's and the
//! plugins' log records included).
//!
//! The stores point at this machine's servers where they run (PostgreSQL
//! with trust authentication, which ignores the password, so the store
//! opens; Redis without a password, which refuses the one given) and at a
//! closed port for Qdrant, Chroma and the object stores: the secrets travel
//! both the success and the failure paths.

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
const CHROMA_URL_PASSWORD: &str = "ch:url@pwG";
const FILE_KEY: &str = "f1le-k3y-s3cretH";
/// An Azure account key (base64, as Azure's are).
const AZURE_KEY: &str = "YXp1cmUta2V5LXMzY3JldEk=";

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
        CHROMA_URL_PASSWORD,
        FILE_KEY,
        AZURE_KEY,
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

/// A listener that answers every request with Chroma's version, so the
/// chroma store's requests (its token header, its url's password) go out
/// on the wire and through the HTTP client's own logging; the port.
fn chroma_like_server() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut c in l.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 7\r\nconnection: close\r\n\r\n\"1.0.0\"",
                );
            }
        });
        port
    })
}

fn config(scratch: &Scratch) -> std::path::PathBuf {
    let file = scratch.path("plugins.toml");
    std::fs::write(scratch.path("key.txt"), format!("{FILE_KEY}\n")).unwrap();
    std::fs::write(scratch.path("azure.txt"), AZURE_KEY).unwrap();
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

[vector.ch]
backend = "chroma"
url = "http://user:{CHROMA_URL_PASSWORD}@127.0.0.1:{chroma_port}"
token_env = "BP_SECRETS_TEST_KEY"
connect_timeout_ms = 1000

[graph.s3]
backend = "files"
root = "s3://bucket/prefix"
endpoint = "http://127.0.0.1:1"
access_key_id_env = "BP_SECRETS_TEST_KEY"
secret_access_key_file = "key.txt"
connect_timeout_ms = 500
timeout_ms = 1000

[cache.azure]
backend = "files"
root = "azblob://container/prefix"
endpoint = "http://127.0.0.1:1/account"
account_name = "account"
account_key_file = "azure.txt"
connect_timeout_ms = 500
timeout_ms = 1000
"#,
            plugins = target_dir().display(),
            chroma_port = chroma_like_server(),
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
                ("vector ch", storage.vector("ch").map(|_| ())),
                ("graph s3", storage.graph("s3").map(|_| ())),
                ("cache azure", storage.cache("azure").map(|_| ())),
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
            for backend in ["qdrant", "files"] {
                assert!(text.contains(backend), "the {backend} stores fail: {text}");
            }
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
            for store in [
                "[relational.pg]",
                "[cache.rd]",
                "[vector.qd]",
                "[vector.ch]",
                "[graph.s3]",
                "[cache.azure]",
            ] {
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
