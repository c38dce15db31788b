//! Every network backend bounds connecting by its configured timeouts:
//! pointed at a listener that accepts connections and says nothing, or
//! that speaks another protocol, opening a store (or its first call, for a
//! backend that connects lazily) fails with one clear error within a few
//! times its timeouts, never hangs.

use backplane_behavior::{open_with_result, Scratch};
use backplane_host::{Capability, ErrorKind};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// What a fake server does with each connection it accepts.
#[derive(Clone, Copy)]
enum Fake {
    /// Reads and never answers.
    Silent,
    /// Answers every read with a line of another protocol, keeps the
    /// connection open.
    WrongProtocol,
}

/// A listener on a free loopback port that plays `fake` until the test
/// ends; returns its port.
fn listener(fake: Fake) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if let Fake::WrongProtocol = fake {
                        let _ =
                            s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                    }
                }
            });
        }
    });
    port
}

/// Open a store of `cap` on `backend` with `opts`, and run `first` on it
/// (the first call, for a backend that connects lazily); the error, and
/// how long it took.
fn attempt(backend: &str, cap: Capability, opts: &str) -> (backplane_host::Error, Duration) {
    let scratch = Scratch::new();
    let started = Instant::now();
    let e = match open_with_result(backend, cap, &scratch, opts) {
        Err(e) => e,
        Ok(storage) => match cap {
            Capability::Cache => storage.cache("s").unwrap().blocking().get("k").unwrap_err(),
            _ => panic!("{backend}: the store opened against a fake server"),
        },
    };
    (e, started.elapsed())
}

/// A backend, its capability, and its store section for a server's port.
type Case = (&'static str, Capability, Box<dyn Fn(u16) -> String>);

#[test]
fn postgres_redis_and_qdrant_never_hang_on_a_server_that_does_not_answer() {
    let cases: Vec<Case> = vec![
        (
            "postgres",
            Capability::Relational,
            Box::new(|p| {
                format!("url = \"postgres://postgres@127.0.0.1:{p}/test\"\nconnect_timeout = \"1s\"\ntimeout = \"2s\"")
            }),
        ),
        (
            "redis",
            Capability::Cache,
            Box::new(|p| {
                format!("url = \"redis://127.0.0.1:{p}/0\"\nconnect_timeout_ms = 1000\ntimeout_ms = 2000")
            }),
        ),
        (
            "qdrant",
            Capability::Vector,
            Box::new(|p| {
                format!(
                    "url = \"http://127.0.0.1:{p}\"\nconnect_timeout_ms = 1000\ntimeout_ms = 2000"
                )
            }),
        ),
    ];
    let mut failures = Vec::new();
    for (backend, cap, opts) in &cases {
        for (fake, what) in [
            (Fake::Silent, "a silent listener"),
            (Fake::WrongProtocol, "a wrong-protocol listener"),
        ] {
            let port = listener(fake);
            let (e, took) = attempt(backend, *cap, &opts(port));
            let line = format!(
                "{backend} against {what}: {:?} after {:.1} s: {}",
                e.kind(),
                took.as_secs_f64(),
                e.message()
            );
            println!("  {line}");
            // Timeouts of 1 s and 2 s: a few of them at the most.
            if took > Duration::from_secs(15) {
                failures.push(format!("took too long: {line}"));
            }
            if !matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Config) {
                failures.push(format!("not Unavailable or Config: {line}"));
            }
            // The store's own line (the last: opening several stores
            // lists each under a summary) names the server.
            let own = e.message().lines().last().unwrap_or("");
            if !own.contains(&format!("127.0.0.1:{port}")) {
                failures.push(format!("does not name the server: {line}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
