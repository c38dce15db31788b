//! Faults: a real Redis server stopped and restarted in the middle of a
//! stream of operations. Without a fallback, calls fail fast with
//! `Unavailable` while it is down and the store reconnects by itself after;
//! with `fallback = "memory"`, no call fails at all. The same holds on the
//! async API's non-blocking path; a frozen server fails calls within the
//! timeout (on the async path each within its own); a wrong or missing
//! password is one clear `Config` error.
//!
//! The test starts its own `redis-server` on a free loopback port and stops
//! it after. Without a `redis-server` binary it prints that it skipped, or
//! fails under `CI=true`.

use backplane_behavior::servers::{
    free_port, raw_command, redis_binaries_available, RedisServer as Server,
};
use backplane_behavior::{async_runtime, library, namespace, signal, Scratch};
use backplane_host::{ErrorKind, Storage};
use std::time::{Duration, Instant};

fn redis_server_available() -> bool {
    redis_binaries_available("faults")
}

/// GET `key` straight from the server.
fn raw_get(port: u16, key: &str) -> Option<String> {
    let reply = raw_command(port, &format!("GET {key}"))?;
    // "$<len>\r\n<value>\r\n", or "$-1\r\n" when absent.
    reply
        .split("\r\n")
        .nth(1)
        .filter(|_| !reply.starts_with("$-1"))
        .map(str::to_string)
}

fn open(scratch: &Scratch, port: u16, prefix: &str, fallback: bool) -> Storage {
    open_with_timeout(scratch, port, prefix, fallback, 300)
}

/// [`open`] with the store's `timeout_ms` (and `connect_timeout_ms`).
fn open_with_timeout(
    scratch: &Scratch,
    port: u16,
    prefix: &str,
    fallback: bool,
    timeout_ms: u64,
) -> Storage {
    let file = scratch.path("plugins.toml");
    std::fs::write(
        &file,
        format!(
            "[plugins]\nload = [\"{}\", \"{}\"]\n\n[cache.c]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}/0\"\nprefix = \"{prefix}\"\nconnect_timeout_ms = {timeout_ms}\ntimeout_ms = {timeout_ms}\nmax_messages = 50\n{}",
            library("backplane_plugin_redis").display(),
            library("backplane_plugin_memory").display(),
            if fallback { "fallback = \"memory\"\n" } else { "" }
        ),
    )
    .unwrap();
    Storage::open(&file).expect("opening does not need the server")
}

/// Send `sig` (`-STOP`, `-CONT`) to process `pid`.
/// One operation of the stream: a set then a get of the same key.
fn op(storage: &Storage, i: usize) -> backplane_host::Result<()> {
    let c = storage.cache("c").unwrap();
    let key = format!("k{i}");
    c.blocking().set(&key, key.as_bytes(), None)?;
    let got = c.blocking().get(&key)?;
    assert_eq!(
        got.as_deref(),
        Some(key.as_bytes()),
        "a value just written reads back"
    );
    Ok(())
}

#[test]
fn server_restart_without_fallback() {
    if !redis_server_available() {
        return;
    }
    let scratch = Scratch::new();
    let port = free_port();
    let mut server = Server::start(port);
    let storage = open(&scratch, port, &format!("bp-fault:{}:", namespace()), false);
    for i in 0..20 {
        op(&storage, i).expect("server up");
    }
    server.stop();
    let mut down_errors = 0;
    for i in 20..40 {
        let t = Instant::now();
        match op(&storage, i) {
            Ok(()) => panic!("operation {i} succeeded while the server was down"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
                assert!(
                    e.message().to_lowercase().contains("retr"),
                    "says it can be retried: {e}"
                );
                down_errors += 1;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "a call hung {:?} while the server was down (timeouts are 300 ms)",
            t.elapsed()
        );
    }
    assert_eq!(down_errors, 20);
    let health = storage.cache("c").unwrap().blocking().health();
    assert_eq!(health.unwrap_err().kind(), ErrorKind::Unavailable);
    let _server = Server::start(port);
    // The first call after the restart may still meet the dead connection.
    let _ = op(&storage, 40);
    for i in 41..60 {
        op(&storage, i).unwrap_or_else(|e| panic!("operation {i} after the restart failed: {e}"));
    }
}

#[test]
fn server_restart_with_fallback_loses_no_call() {
    if !redis_server_available() {
        return;
    }
    let scratch = Scratch::new();
    let port = free_port();
    let mut server = Server::start(port);
    let prefix = format!("bp-fault:{}:", namespace());
    let storage = open(&scratch, port, &prefix, true);
    let c = storage.cache("c").unwrap();
    for i in 0..20 {
        op(&storage, i).expect("server up");
    }
    assert!(c.blocking().health().unwrap().healthy);
    server.stop();
    for i in 20..60 {
        op(&storage, i)
            .unwrap_or_else(|e| panic!("operation {i} failed despite the fallback: {e}"));
    }
    let h = c.blocking().health().unwrap();
    assert!(
        !h.healthy && h.detail.contains("fallback 'memory'"),
        "{h:?}"
    );
    let _server = Server::start(port);
    // Calls go back to Redis once a probe finds it answering: a value
    // written through the store then shows up in the server itself.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut i = 60;
    loop {
        op(&storage, i).unwrap_or_else(|e| panic!("operation {i} failed after the restart: {e}"));
        if raw_get(port, &format!("{prefix}kv:k{i}")).as_deref() == Some(format!("k{i}").as_str()) {
            break;
        }
        i += 1;
        assert!(
            Instant::now() < deadline,
            "calls did not return to Redis within 5 s of its restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.blocking().health().unwrap().healthy);
}

#[test]
fn a_frozen_server_fails_within_the_timeout() {
    if !redis_server_available() {
        return;
    }
    let scratch = Scratch::new();
    let port = free_port();
    let server = Server::start(port);
    let storage = open(&scratch, port, &format!("bp-fault:{}:", namespace()), false);
    op(&storage, 0).expect("server up");
    let pid = server.pid().unwrap().to_string();
    let signal = |sig: &str| signal(&pid, sig);
    // A stopped process keeps its socket open but never answers: only the
    // read timeout (300 ms) can end the call.
    signal("STOP");
    let t = Instant::now();
    let e = op(&storage, 1).unwrap_err();
    let took = t.elapsed();
    signal("CONT");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(
        took < Duration::from_secs(2),
        "the call hung {took:?} (timeout_ms = 300)"
    );
    let _ = op(&storage, 2);
    for i in 3..10 {
        op(&storage, i)
            .unwrap_or_else(|e| panic!("operation {i} after the server resumed failed: {e}"));
    }
}

/// On the async API's non-blocking path, calls started while an earlier
/// batch of commands waits on a frozen server are not held behind it:
/// each fails within its own timeout, counted from when it started.
#[test]
fn a_frozen_server_fails_queued_async_calls_within_their_own_timeout() {
    if !redis_server_available() {
        return;
    }
    let rt = async_runtime();
    let scratch = Scratch::new();
    let port = free_port();
    let server = Server::start(port);
    let storage = open_with_timeout(
        &scratch,
        port,
        &format!("bp-fault:{}:", namespace()),
        false,
        1000,
    );
    let c = storage.cache("c").unwrap();
    assert!(c.blocking().as_async().is_some());
    rt.block_on(c.set("k".to_string(), b"v".to_vec(), None))
        .expect("server up");
    let pid = server.pid().unwrap().to_string();
    let signal = |sig: &str| signal(&pid, sig);
    signal("STOP");
    // Calls started 0, 100, …, 700 ms after the server froze: behind the
    // first call's batch, the later ones would wait up to twice the
    // timeout.
    let took = rt.block_on(async {
        let calls: Vec<_> = (0..8u64)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(100 * i)).await;
                    let t = Instant::now();
                    let e = c.get(format!("k{i}")).await.unwrap_err();
                    (i, t.elapsed(), e)
                })
            })
            .collect();
        let mut took = Vec::new();
        for call in calls {
            took.push(call.await.unwrap());
        }
        took
    });
    signal("CONT");
    for (i, took, e) in took {
        assert_eq!(e.kind(), ErrorKind::Unavailable, "call {i}: {e}");
        assert!(
            took < Duration::from_millis(1600),
            "call {i} took {took:?} with timeout_ms = 1000: it waited behind an earlier call"
        );
    }
    rt.block_on(c.set("k".to_string(), b"v".to_vec(), None))
        .expect("the server answers again");
}

/// The async API's non-blocking path (one multiplexed connection on the
/// plugin's runtime) under the same stop and restart.
#[test]
fn server_restart_on_the_async_path() {
    if !redis_server_available() {
        return;
    }
    let rt = async_runtime();
    let scratch = Scratch::new();
    let port = free_port();
    let mut server = Server::start(port);
    let storage = open(&scratch, port, &format!("bp-fault:{}:", namespace()), false);
    let c = storage.cache("c").unwrap();
    assert!(
        c.blocking().as_async().is_some(),
        "redis has a non-blocking form"
    );
    let op = |i: usize| {
        let c = c.clone();
        rt.block_on(async move {
            let k = format!("k{i}");
            c.set(k.clone(), k.clone().into_bytes(), None).await?;
            assert_eq!(c.get(k.clone()).await?, Some(k.into_bytes()));
            Ok::<(), backplane_host::Error>(())
        })
    };
    for i in 0..20 {
        op(i).expect("server up");
    }
    server.stop();
    for i in 20..30 {
        let t = Instant::now();
        let e = op(i).expect_err("the server is down");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "an async call hung {:?} while the server was down (timeouts are 300 ms)",
            t.elapsed()
        );
    }
    let _server = Server::start(port);
    let _ = op(30);
    for i in 31..50 {
        op(i).unwrap_or_else(|e| panic!("async operation {i} after the restart failed: {e}"));
    }
}

/// A server that wants a password: a wrong or missing one is one clear
/// `Config` error that never shows the password; the right one works.
#[test]
fn wrong_password_is_a_clear_config_error() {
    if !redis_server_available() {
        return;
    }
    let port = free_port();
    let _server = Server::start_with(port, &["--requirepass", "right-s3cret"]);
    let scratch = Scratch::new();
    let open_with = |password: Option<&str>| {
        let file = scratch.path(&format!("plugins-{}.toml", namespace()));
        std::fs::write(
            &file,
            format!(
                "[plugins]\nload = [\"{}\"]\n\n[cache.c]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:{port}/0\"\nprefix = \"bp-auth:\"\n{}",
                library("backplane_plugin_redis").display(),
                password.map_or(String::new(), |p| format!("password = \"{p}\"\n"))
            ),
        )
        .unwrap();
        Storage::open(&file).unwrap()
    };
    for (password, what) in [(Some("wrong-s3cret"), "wrong"), (None, "missing")] {
        let storage = open_with(password);
        let e = storage
            .cache("c")
            .unwrap()
            .blocking()
            .set("k", b"v", None)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config, "{what} password: {e}");
        assert!(
            e.message().contains("password"),
            "{what}: says what to fix: {e}"
        );
        assert!(
            !e.to_string().contains("s3cret"),
            "{what}: shows no password: {e}"
        );
    }
    let storage = open_with(Some("right-s3cret"));
    let c = storage.cache("c").unwrap();
    c.blocking().set("k", b"v", None).unwrap();
    assert_eq!(c.blocking().get("k").unwrap().as_deref(), Some(&b"v"[..]));
}
