//! Servers the tests start for themselves on loopback ports, and stop when
//! dropped: a plain `redis-server`, one that speaks only TLS (certificates
//! made with the `openssl` command), and a Redis Cluster of several masters
//! made from `redis-server --cluster-enabled yes` and
//! `redis-cli --cluster create`; a PostgreSQL server of a test's own
//! ([`PgServer`], to stop, freeze or restart); and Qdrant servers, single
//! or a cluster, from the `qdrant` binary `BACKPLANE_QDRANT_BIN` names.

use crate::{in_ci, Scratch};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `redis-server` (and, for a cluster, `redis-cli`) can be run.
/// Outside CI a missing binary prints that `what` is skipped and why; in
/// CI it is a failure.
pub fn redis_binaries_available(what: &str) -> bool {
    let runs = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ok = runs("redis-server") && runs("redis-cli");
    if !ok {
        assert!(
            !in_ci(),
            "redis-server and redis-cli are required in CI for {what} (.ci/run installs them)"
        );
        println!("skip {what}: redis-server or redis-cli is not on PATH; install redis-server (it brings redis-cli) to run it");
    }
    ok
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Send one inline command to `127.0.0.1:port` and return the raw reply,
/// or `None` when nothing answers.
pub fn raw_command(port: u16, command: &str) -> Option<String> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    c.write_all(format!("{command}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = c.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// A `redis-server` child process, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl RedisServer {
    /// Start a server on `port` with nothing kept on disk, and wait until it
    /// answers `PING`.
    pub fn start(port: u16) -> RedisServer {
        RedisServer::start_with(port, &[])
    }

    /// Start a server with extra command-line arguments.
    pub fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        let port_s = port.to_string();
        let s = RedisServer::spawn(port, &[&["--port", &port_s], extra].concat());
        s.wait_ready();
        s
    }

    /// Spawn `redis-server` on loopback with nothing kept on disk and
    /// `args` (which say the port), not waiting for it.
    fn spawn(port: u16, args: &[&str]) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        RedisServer {
            child: Some(child),
            port,
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // A server with a password answers, but refuses PING.
            if raw_command(self.port, "PING")
                .is_some_and(|r| r.starts_with("+PONG") || r.starts_with("-NOAUTH"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis-server on port {} did not answer within 10 s",
            self.port
        );
    }

    /// The process id, for signals.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kill the server and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Redis Cluster of masters without replicas on loopback ports, its
/// nodes' files in a scratch folder; every node is killed when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: Scratch,
}

impl RedisCluster {
    /// Start `masters` nodes, join them with `redis-cli --cluster create`
    /// (slots spread evenly), and wait until every node reports
    /// `cluster_state:ok`.
    pub fn start(masters: usize) -> RedisCluster {
        let dir = Scratch::new();
        let ports = cluster_ports(masters);
        let nodes: Vec<RedisServer> = ports
            .iter()
            .map(|&p| {
                let conf = dir.path(&format!("nodes-{p}.conf"));
                let conf = conf.to_str().expect("utf-8 temp path");
                let dir = dir.0.to_str().expect("utf-8 temp path");
                RedisServer::start_with(
                    p,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        conf,
                        "--cluster-node-timeout",
                        "2000",
                        "--dir",
                        dir,
                    ],
                )
            })
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for p in &ports {
            create.arg(format!("127.0.0.1:{p}"));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = ports.iter().all(|&p| {
                raw_command(p, "CLUSTER INFO").is_some_and(|r| r.contains("cluster_state:ok"))
            });
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster on ports {ports:?} did not reach cluster_state:ok within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes, _dir: dir }
    }

    /// The nodes' URLs, for `nodes = [...]` in plugins.toml.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }
}

/// `n` ports free on loopback whose cluster bus ports (port + 10000) are
/// free too.
fn cluster_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::with_capacity(n);
    let mut tries = 0;
    while ports.len() < n {
        tries += 1;
        assert!(tries < 1000, "no free port pairs for a Redis Cluster");
        let p = free_port();
        if p > 55535 || ports.contains(&p) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            ports.push(p);
        }
    }
    ports
}

/// A throwaway certificate authority and a server certificate it signed for
/// 127.0.0.1 and localhost, made with the `openssl` command in a scratch
/// folder.
pub struct TestCerts {
    dir: Scratch,
}

impl TestCerts {
    /// Whether the `openssl` command runs; outside CI a missing one prints
    /// that `what` is skipped, in CI it fails.
    pub fn available(what: &str) -> bool {
        let ok = Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            assert!(!in_ci(), "the openssl command is required in CI for {what}");
            println!("skip {what}: the openssl command is not on PATH; install openssl to run it");
        }
        ok
    }

    /// Make the CA and the server certificate.
    pub fn generate() -> TestCerts {
        let dir = Scratch::new();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir.0)
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::write(
            dir.path("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=backplane test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        TestCerts { dir }
    }

    /// A file of the set: `ca.crt`, `server.crt`, `server.key`.
    pub fn path(&self, name: &str) -> String {
        self.dir
            .path(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }
}

impl RedisServer {
    /// Start a server that speaks only TLS on `port`, with `certs`' server
    /// certificate, not asking clients for one.
    pub fn start_tls(port: u16, certs: &TestCerts) -> RedisServer {
        let (cert, key, ca) = (
            certs.path("server.crt"),
            certs.path("server.key"),
            certs.path("ca.crt"),
        );
        let port_s = port.to_string();
        let s = RedisServer::spawn(
            port,
            &[
                "--port",
                "0",
                "--tls-port",
                &port_s,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
            ],
        );
        // Ready when redis-cli gets PONG over TLS.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = Command::new("redis-cli")
                .args(["--tls", "--cacert", &ca, "-p", &port_s, "ping"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"));
            if pong {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server with TLS on port {port} did not answer within 10 s (is it built with TLS?)"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The Qdrant server binary `BACKPLANE_QDRANT_BIN` names, for tests that
/// start their own servers (a restart, an API key, a cluster). Qdrant is
/// not installable from this project's package registries, so without the
/// variable such a test prints that `what` is skipped and why, in CI too.
pub fn qdrant_binary(what: &str) -> Option<std::path::PathBuf> {
    match std::env::var_os("BACKPLANE_QDRANT_BIN").filter(|v| !v.is_empty()) {
        Some(bin) => {
            let bin = std::path::PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "BACKPLANE_QDRANT_BIN is {}, which is not a file: give the path of a `qdrant` server binary, or unset it",
                bin.display()
            );
            Some(bin)
        }
        None => {
            println!("skip {what}: BACKPLANE_QDRANT_BIN is not set (no Qdrant server is installed with the project's tools); set it to a `qdrant` binary to run it");
            None
        }
    }
}

/// GET `path` from the HTTP server on `127.0.0.1:port`: the status code
/// and the body, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    c.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Some((status, body.to_string()))
}

/// A Qdrant server (`qdrant` binary) on loopback ports, its storage in a
/// folder that outlives restarts; killed when dropped.
pub struct QdrantServer {
    child: Option<Child>,
    bin: std::path::PathBuf,
    env: Vec<(String, String)>,
    args: Vec<String>,
    dir: std::path::PathBuf,
    /// The REST port.
    pub http_port: u16,
    /// The gRPC port (the one the `qdrant` backend speaks to).
    pub grpc_port: u16,
}

impl QdrantServer {
    /// Start a single server keeping its data under `dir`, requiring
    /// `api_key` when given, and wait until it is ready.
    pub fn start(bin: &std::path::Path, dir: &std::path::Path, api_key: Option<&str>) -> Self {
        let mut env = Vec::new();
        if let Some(k) = api_key {
            env.push(("QDRANT__SERVICE__API_KEY".to_string(), k.to_string()));
        }
        let mut s = QdrantServer::new(bin, dir, env, Vec::new());
        s.restart();
        s
    }

    fn new(
        bin: &std::path::Path,
        dir: &std::path::Path,
        mut env: Vec<(String, String)>,
        args: Vec<String>,
    ) -> Self {
        let (http_port, grpc_port) = (free_port(), free_port());
        std::fs::create_dir_all(dir).expect("qdrant data folder");
        for (k, v) in [
            ("QDRANT__SERVICE__HOST", "127.0.0.1".to_string()),
            ("QDRANT__SERVICE__HTTP_PORT", http_port.to_string()),
            ("QDRANT__SERVICE__GRPC_PORT", grpc_port.to_string()),
            (
                "QDRANT__STORAGE__STORAGE_PATH",
                dir.join("storage").display().to_string(),
            ),
            (
                "QDRANT__STORAGE__SNAPSHOTS_PATH",
                dir.join("snapshots").display().to_string(),
            ),
            ("QDRANT__TELEMETRY_DISABLED", "true".to_string()),
            ("QDRANT__LOG_LEVEL", "WARN".to_string()),
        ] {
            env.push((k.to_string(), v));
        }
        QdrantServer {
            child: None,
            bin: bin.to_path_buf(),
            env,
            args,
            dir: dir.to_path_buf(),
            http_port,
            grpc_port,
        }
    }

    /// The `url` of the `qdrant` backend for this server.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// (Re)start the server on the same ports and data, and wait until it
    /// reports ready.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.join("qdrant.log")).expect("qdrant log file");
        let child = Command::new(&self.bin)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if http_get(self.http_port, "/readyz").is_some_and(|(s, _)| s == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "qdrant on ports {}/{} was not ready within 60 s; its log: {}",
            self.http_port,
            self.grpc_port,
            std::fs::read_to_string(self.dir.join("qdrant.log")).unwrap_or_default()
        );
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kill the server and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start a cluster of `n` nodes (Qdrant's distributed mode, peers
    /// joined through the first node's p2p port), each keeping its data
    /// under `dir/node-<i>`, and wait until the first node sees all `n`
    /// peers.
    pub fn start_cluster(bin: &std::path::Path, dir: &std::path::Path, n: usize) -> Vec<Self> {
        let p2p: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let nodes: Vec<QdrantServer> = (0..n)
            .map(|i| {
                let env = vec![
                    ("QDRANT__CLUSTER__ENABLED".to_string(), "true".to_string()),
                    ("QDRANT__CLUSTER__P2P__PORT".to_string(), p2p[i].to_string()),
                ];
                let mut args = vec!["--uri".to_string(), format!("http://127.0.0.1:{}", p2p[i])];
                if i > 0 {
                    args.extend([
                        "--bootstrap".to_string(),
                        format!("http://127.0.0.1:{}", p2p[0]),
                    ]);
                }
                let mut node = QdrantServer::new(bin, &dir.join(format!("node-{i}")), env, args);
                node.restart();
                node
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let peers = http_get(nodes[0].http_port, "/cluster")
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|v| v["result"]["peers"].as_object().map(|p| p.len()));
            if peers == Some(n) {
                return nodes;
            }
            assert!(
                Instant::now() < deadline,
                "the Qdrant cluster did not reach {n} peers within 60 s (seen: {peers:?})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for QdrantServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of its own, started by a test on a free loopback
/// port from the installed server programs (`/usr/lib/postgresql/*/bin`,
/// run as the `postgres` system user, since they refuse root), in a
/// scratch folder, and stopped when dropped. Trusts local logins unless it
/// is given a password. A test that stops, freezes or restarts a server
/// uses one of these, so the suite's shared server is never disturbed.
pub struct PgServer {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: Scratch,
}

impl PgServer {
    /// `None` (with the reason printed, `what` being the skipped test)
    /// when the server programs or the `postgres` user are missing; in CI
    /// that fails instead.
    pub fn start(what: &str, password: Option<&str>) -> Option<PgServer> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).max())
            .filter(|b| b.join("initdb").exists());
        let has_user = Command::new("id")
            .arg("postgres")
            .output()
            .is_ok_and(|o| o.status.success());
        let (Some(bin), true) = (bin, has_user) else {
            assert!(
                !in_ci(),
                "{what} needs PostgreSQL's server programs (/usr/lib/postgresql/*/bin/initdb) and the postgres user in CI"
            );
            println!("skip {what}: no /usr/lib/postgresql/*/bin/initdb or no postgres user to start a server of its own");
            return None;
        };
        let dir = Scratch::new();
        let data = dir.path("data");
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir.0)
            .status()
            .unwrap();
        assert!(chown.success(), "chown the scratch folder to postgres");
        let server = PgServer {
            bin,
            data,
            port: free_port(),
            dir,
        };
        let data_s = server.data.to_str().unwrap().to_string();
        match password {
            Some(pw) => {
                let pwfile = server.dir.path("pw");
                std::fs::write(&pwfile, pw).unwrap();
                let _ = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&pwfile)
                    .status();
                server.as_postgres(
                    "initdb",
                    &[
                        "-D",
                        &data_s,
                        "-U",
                        "postgres",
                        "--auth=scram-sha-256",
                        "--pwfile",
                        pwfile.to_str().unwrap(),
                    ],
                );
            }
            None => {
                server.as_postgres("initdb", &["-D", &data_s, "-U", "postgres", "--auth=trust"])
            }
        }
        server.start_again();
        Some(server)
    }

    fn as_postgres(&self, program: &str, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .output()
            .expect("run as postgres");
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A URL for database `postgres` as user `postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Start it (again, after [`PgServer::stop`]), waiting until it answers.
    pub fn start_again(&self) {
        let data_s = self.data.to_str().unwrap();
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.dir.0.display()
        );
        self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                data_s,
                "-o",
                &opts,
                "-l",
                &format!("{data_s}.log"),
                "-w",
                "start",
            ],
        );
    }

    /// Stop it at once (connections are cut, as in a crash).
    pub fn stop(&self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }

    /// Send `signal` (`-STOP`, `-CONT`) to the server and every process
    /// it started, so a stopped server holds its sockets open and answers
    /// nothing, as a frozen machine would.
    pub fn signal(&self, signal: &str) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
            .expect("the server is running");
        let children = Command::new("pgrep")
            .args(["-P", &pid])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let mut pids: Vec<&str> = children.split_whitespace().collect();
        pids.push(&pid);
        let ok = Command::new("kill")
            .arg(signal)
            .args(&pids)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {signal} {pids:?}");
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self.signal_quietly("-CONT");
        self.stop();
    }
}

impl PgServer {
    fn signal_quietly(&self, signal: &str) -> Option<()> {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        let pid = pid.lines().next()?;
        let _ = Command::new("pkill").args([signal, "-P", pid]).status();
        let _ = Command::new("kill").args([signal, pid]).status();
        Some(())
    }
}

/// The Python program that runs a Chroma server (PyPI's `chromadb`: its
/// `chromadb_rust_bindings` module is the server) on `argv[2]` with its
/// data in `argv[1]`, and exits when the process that started it is gone
/// (so a test process that ends without dropping it leaves no server),
/// removing the folder `argv[3]` if given.
const CHROMA_RUNNER: &str = r#"
import os, shutil, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    if len(sys.argv) > 3:
        shutil.rmtree(sys.argv[3], ignore_errors=True)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
import chromadb_rust_bindings as chroma
chroma.cli(["chroma", "run", "--path", sys.argv[1], "--host", "127.0.0.1", "--port", sys.argv[2]])
"#;

/// Whether a Chroma server can be started here: `python3` with PyPI's
/// `chromadb` package. Outside CI its absence prints that `what` is skipped
/// and why; in CI it is a failure.
pub fn chroma_available(what: &str) -> bool {
    command_runs(
        Command::new("python3").args(["-c", "import chromadb_rust_bindings"]),
        what,
        "python3 cannot import chromadb",
        "python3 -m pip install --no-deps chromadb==1.5.9",
    )
}

/// Whether `command` runs and succeeds; outside CI a failure prints that
/// `what` is skipped because `missing`, and how to `install` it; in CI it
/// fails the test (.ci/run installs it).
fn command_runs(command: &mut Command, what: &str, missing: &str, install: &str) -> bool {
    let ok = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !in_ci(),
            "{what} needs what is missing here ({missing}); .ci/run installs it: {install}"
        );
        println!("skip {what}: {missing}; install it ({install}) to run it");
    }
    ok
}

/// A Chroma server on a loopback port, its data in a folder that outlives
/// restarts; killed when dropped.
pub struct ChromaServer {
    child: Option<Child>,
    dir: std::path::PathBuf,
    /// Remove `dir` when the test process is gone.
    owns_dir: bool,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
}

impl ChromaServer {
    /// Start a server keeping its data under `dir`, and wait until it
    /// answers its heartbeat.
    pub fn start(dir: &std::path::Path) -> ChromaServer {
        ChromaServer::start_in(dir, false)
    }

    /// A server for the rest of the test process, its data in a folder of
    /// its own under the system's temporary folder, which goes with it.
    pub fn start_for_process() -> ChromaServer {
        let dir = std::env::temp_dir().join(format!("backplane-chroma-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ChromaServer::start_in(&dir, true)
    }

    fn start_in(dir: &std::path::Path, owns_dir: bool) -> ChromaServer {
        std::fs::create_dir_all(dir).expect("chroma data folder");
        let mut s = ChromaServer {
            child: None,
            dir: dir.to_path_buf(),
            owns_dir,
            port: free_port(),
        };
        s.restart();
        s
    }

    /// The `url` of the `chroma` backend for this server.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)start the server on the same port and data, and wait until it
    /// answers.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.join("chroma.log")).expect("chroma log file");
        let child = Command::new("python3")
            .args(["-c", CHROMA_RUNNER])
            .arg(self.dir.join("data"))
            .arg(self.port.to_string())
            .args(self.owns_dir.then_some(&self.dir))
            .env("NO_COLOR", "1")
            .stdout(log.try_clone().expect("chroma log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start a Chroma server with python3: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if http_get(self.port, "/api/v2/heartbeat").is_some_and(|(s, _)| s == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "Chroma on port {} did not answer within 60 s; its log: {}",
            self.port,
            std::fs::read_to_string(self.dir.join("chroma.log")).unwrap_or_default()
        );
    }

    /// Kill the server and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChromaServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Send `method path` with an empty body to the HTTP server on
/// `127.0.0.1:port`, with extra header lines; the status code, or `None`
/// when nothing answers.
pub fn http_request(port: u16, method: &str, path: &str, headers: &[String]) -> Option<u16> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    c.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    let _ = c.read_to_string(&mut text);
    text.split(' ').nth(1)?.parse().ok()
}

/// Whether `program --help` runs (see [`command_runs`]).
fn program_available(program: &str, what: &str, install: &str) -> bool {
    command_runs(
        Command::new(program).arg("--help"),
        what,
        &format!("{program} is not on PATH"),
        install,
    )
}

/// An object-store server a test starts on a loopback port: moto's S3
/// server (PyPI's `moto[server]`, data in memory) or Azurite's blob
/// service (npm's `azurite`, data in a folder that outlives restarts).
/// Killed when dropped.
pub struct ObjectServer {
    child: Option<Child>,
    kind: ObjectKind,
    dir: std::path::PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// Which object store an [`ObjectServer`] serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// moto's S3.
    S3,
    /// Azurite's Azure Blob Storage.
    Azure,
}

/// Azurite's well-known development account and key (public, the same
/// in every Azurite).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// See [`AZURITE_ACCOUNT`].
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl ObjectServer {
    /// Whether the server of `kind` can be started here.
    pub fn available(kind: ObjectKind, what: &str) -> bool {
        match kind {
            ObjectKind::S3 => {
                program_available("moto_server", what, "python3 -m pip install 'moto[server]'")
            }
            ObjectKind::Azure => {
                program_available("azurite-blob", what, "npm install -g azurite@3.35.0")
            }
        }
    }

    /// Start a server of `kind` keeping its data under `dir`, and wait
    /// until it answers.
    pub fn start(kind: ObjectKind, dir: &std::path::Path) -> ObjectServer {
        std::fs::create_dir_all(dir).expect("object store folder");
        let mut s = ObjectServer {
            child: None,
            kind,
            dir: dir.to_path_buf(),
            port: free_port(),
        };
        s.restart();
        s
    }

    /// The endpoint the `files` backend is given.
    pub fn endpoint(&self) -> String {
        match self.kind {
            ObjectKind::S3 => format!("http://127.0.0.1:{}", self.port),
            ObjectKind::Azure => format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port),
        }
    }

    /// (Re)start the server on the same port and data, and wait until it
    /// answers.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.join("server.log")).expect("server log file");
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            ObjectKind::S3 => {
                let mut c = Command::new("moto_server");
                c.args(["-H", "127.0.0.1", "-p", &port]);
                c
            }
            ObjectKind::Azure => {
                let mut c = Command::new("azurite-blob");
                c.args(["--blobHost", "127.0.0.1", "--blobPort", &port, "--location"])
                    .arg(self.dir.join("data"))
                    .args(["--skipApiVersionCheck", "--silent"]);
                c
            }
        };
        let child = cmd
            .stdout(log.try_clone().expect("server log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {:?} server: {e}", self.kind));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if http_request(self.port, "GET", "/", &[]).is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the {:?} server on port {} did not answer within 60 s; its log: {}",
            self.kind,
            self.port,
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// Create bucket or container `name` (the plugin never creates them).
    pub fn create_bucket(&self, name: &str) {
        let status = match self.kind {
            ObjectKind::S3 => http_request(self.port, "PUT", &format!("/{name}"), &[]),
            ObjectKind::Azure => self.create_container(name),
        };
        assert!(
            status.is_some_and(|s| (200..300).contains(&s)),
            "creating {name} on the {:?} server answered {status:?}",
            self.kind
        );
    }

    /// Azure's Create Container, signed with the account key (SharedKey),
    /// by Python's standard library (the test crate has no HMAC).
    fn create_container(&self, name: &str) -> Option<u16> {
        const SIGN: &str = r#"
import base64, hashlib, hmac, sys, urllib.request
from email.utils import formatdate
port, account, key, name = sys.argv[1:5]
date = formatdate(usegmt=True)
version = "2021-08-06"
headers = "x-ms-date:%s\nx-ms-version:%s" % (date, version)
resource = "/%s/%s/%s\nrestype:container" % (account, account, name)
ctype = "application/octet-stream"
# VERB, then Content-Encoding, -Language, -Length ("" for 0), -MD5, -Type,
# Date, If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since, Range.
to_sign = "PUT\n\n\n\n\n" + ctype + "\n\n\n\n\n\n\n" + headers + "\n" + resource
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request("http://127.0.0.1:%s/%s/%s?restype=container" % (port, account, name), method="PUT", data=b"",
    headers={"x-ms-date": date, "x-ms-version": version, "Content-Type": ctype, "Authorization": "SharedKey %s:%s" % (account, sig)})
try:
    print(urllib.request.urlopen(req).status)
except urllib.error.HTTPError as e:
    print(e.code)
"#;
        let out = Command::new("python3")
            .args([
                "-c",
                SIGN,
                &self.port.to_string(),
                AZURITE_ACCOUNT,
                AZURITE_KEY,
                name,
            ])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    /// Stop the server and wait for it to exit: Azurite with SIGTERM
    /// (it writes its data out on the way; SIGKILL loses its last
    /// seconds), moto with SIGKILL (it keeps nothing).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.kind == ObjectKind::Azure {
                let _ = Command::new("kill")
                    .args(["-TERM", &c.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if c.try_wait().ok().flatten().is_some() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ObjectServer {
    fn drop(&mut self) {
        self.stop();
    }
}
