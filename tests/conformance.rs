//! `backplane conformance`, run as an author runs it: the built command,
//! from a folder outside the workspace, on built plugin libraries. Every
//! shipped plugin (and the custom example) passes with its own
//! `conformance.toml`; plugins that are wrong on purpose fail with a
//! report that names the case and what was expected.

use backplane_behavior::{
    chroma_server, library, plugin_libraries, server_answers, shipped_settings, target_dir, Scratch,
};
use std::path::Path;
use std::process::{Command, Output};

fn conformance(cwd: &Path, args: &[&std::ffi::OsStr]) -> Output {
    conformance_with(cwd, args, &[])
}

/// [`conformance`] with environment variables set for it.
fn conformance_with(cwd: &Path, args: &[&std::ffi::OsStr], env: &[(&str, String)]) -> Output {
    Command::new(target_dir().join("backplane"))
        .arg("conformance")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .output()
        .expect("run backplane conformance")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn every_shipped_plugin_passes() {
    let outside = Scratch::new();
    let mut runs = Vec::new();
    for lib in plugin_libraries() {
        let backends = backplane_testkit::run::backends_of(std::slice::from_ref(&lib))
            .unwrap_or_else(|e| panic!("{e}"));
        for d in backends.into_iter().map(|b| b.descriptor) {
            let Some((file, _)) = shipped_settings().get(&d.name) else {
                panic!(
                    "{}: backend '{}' has no conformance.toml in the workspace",
                    lib.display(),
                    d.name
                );
            };
            let caps: Vec<&str> = d.capabilities.iter().map(|c| c.as_str()).collect();
            if !server_answers(&d.name, caps.join(", ")) {
                continue;
            }
            // The Chroma server this process started has a port of its own.
            let env: Vec<(&str, String)> = match d.name.as_str() {
                "chroma" => chroma_server()
                    .map(|url| vec![("BACKPLANE_CHROMA_URL", url)])
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let (lib, file, cwd) = (lib.clone(), file.clone(), outside.0.clone());
            runs.push((
                d.name.clone(),
                std::thread::spawn(move || {
                    conformance_with(
                        &cwd,
                        &[lib.as_os_str(), "--config".as_ref(), file.as_os_str()],
                        &env,
                    )
                }),
            ));
        }
    }
    assert!(runs.len() >= 3, "too few plugins ran: {}", runs.len());
    let mut failed = Vec::new();
    for (backend, run) in runs {
        let out = run.join().expect("the conformance thread");
        let (stdout, stderr) = text(&out);
        println!("== {backend}\n{stdout}{stderr}");
        let summary = stdout.lines().last().unwrap_or_default().to_string();
        if !out.status.success() || !summary.contains(" passed, 0 failed") {
            failed.push(format!("{backend}: {summary} {stderr}"));
        }
    }
    assert!(
        failed.is_empty(),
        "conformance failed:\n{}",
        failed.join("\n")
    );
}

/// `backplane conformance` on one backend of the fixture library, with
/// settings that name it; prints and returns what it said.
fn fixture_backend(outside: &Scratch, backend: &str) -> (Output, String, String) {
    let lib = library("backplane_fixture_wrong");
    let settings = outside.path(&format!("{backend}.toml"));
    std::fs::write(
        &settings,
        format!("[conformance]\nbackend = \"{backend}\"\n"),
    )
    .unwrap();
    let out = conformance(
        &outside.0,
        &[lib.as_os_str(), "--config".as_ref(), settings.as_os_str()],
    );
    let (stdout, stderr) = text(&out);
    println!("== {backend}\n{stdout}{stderr}");
    (out, stdout, stderr)
}

#[test]
fn wrong_plugins_fail_with_a_readable_report() {
    let outside = Scratch::new();
    for (backend, case, expected) in [
        (
            "forgetful-ttl",
            "cache::ttl_expiry",
            "expired key must be gone",
        ),
        ("drops-filters", "vector::filter_operators", "left:"),
        ("wrong-order", "vector::search_cosine", "left:"),
    ] {
        let (out, stdout, stderr) = fixture_backend(&outside, backend);
        assert_eq!(out.status.code(), Some(1), "{backend}: {stdout}{stderr}");
        let line = stdout
            .lines()
            .find(|l| l.starts_with("  FAIL") && l.contains(case))
            .unwrap_or_else(|| panic!("{backend}: no FAIL line for {case}:\n{stdout}"));
        assert!(line.contains(backend), "{line}");
        assert!(
            line.contains(expected),
            "{backend}: the line does not say what was expected: {line}"
        );
        assert!(
            line.contains("(at "),
            "{backend}: the line does not say where: {line}"
        );
        let summary = stdout.lines().last().unwrap_or_default();
        assert!(
            summary.contains(" failed") && !summary.contains(" 0 failed"),
            "{summary}"
        );
        // The other cases still ran.
        assert!(stdout.lines().any(|l| l.starts_with("  ok")), "{stdout}");
    }
}

/// Backends that declare little pass the whole suite because the host
/// makes up the difference: `no-ttl` is `forgetful-ttl`'s store declaring
/// `native_ttl = false` (declared native, the same store fails the TTL
/// cases above); `match-only` refuses every filter operator but `match`
/// and every batch over 2, and the filter, count, delete and batch cases
/// pass through the host's evaluation and splitting.
#[test]
fn backends_declaring_little_pass_through_the_host() {
    let outside = Scratch::new();
    for backend in ["no-ttl", "match-only"] {
        let (out, stdout, stderr) = fixture_backend(&outside, backend);
        assert!(out.status.success(), "{backend}: {stdout}{stderr}");
        assert!(
            stdout
                .lines()
                .last()
                .unwrap_or_default()
                .contains(" passed, 0 failed"),
            "{backend}: {stdout}"
        );
    }
}

#[test]
fn mistakes_are_one_line() {
    let outside = Scratch::new();
    let missing = outside.path("libnothing.so");
    let out = conformance(&outside.0, &[missing.as_os_str()]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is not a file"), "{stderr}");

    // Settings that do not fit: each one line on stderr, exit 1.
    let lib = library("backplane_fixture_wrong");
    let settings = outside.path("other.toml");
    for (text_of_settings, says) in [
        ("[conformance]\nbackend = \"sqlite\"\n", "backend 'sqlite'"),
        ("[stores]\npath = \"x\"\n", "unknown section [stores]"),
    ] {
        std::fs::write(&settings, text_of_settings).unwrap();
        let out = conformance(
            &outside.0,
            &[lib.as_os_str(), "--config".as_ref(), settings.as_os_str()],
        );
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// `backplane new-plugin` with every capability, outside the workspace:
/// the crate builds without a warning, loads, passes the cache cases and
/// reports every stub case as not written yet. (The README's guide, the
/// cache-only path to a passing run, is run as written by CI.)
#[test]
fn scaffold_with_every_capability_builds_and_reports_its_stubs() {
    let outside = Scratch::new();
    let out = Command::new(target_dir().join("backplane"))
        .args([
            "new-plugin",
            "every-cap",
            "--capabilities",
            "cache,vector,relational,graph",
        ])
        .current_dir(&outside.0)
        .output()
        .expect("run backplane new-plugin");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    let krate = outside.path("backplane-plugin-every-cap");
    assert!(krate.join("conformance.toml").is_file(), "{stdout}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .args(["build", "--quiet"])
        .current_dir(&krate)
        // Shared with abi_evolution.rs: the dependencies build once.
        .env("CARGO_TARGET_DIR", target_dir().join("scaffolds"))
        .output()
        .expect("run cargo build");
    let (bout, berr) = text(&build);
    assert!(
        build.status.success(),
        "the scaffold does not build:\n{bout}{berr}"
    );
    assert!(
        !berr.contains("warning"),
        "the scaffold builds with warnings:\n{berr}"
    );
    let lib = target_dir().join(format!(
        "scaffolds/debug/{}backplane_plugin_every_cap.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    ));
    let out = conformance(&krate, &[lib.as_os_str()]);
    let (stdout, stderr) = text(&out);
    println!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1), "stubs fail their cases");
    for line in stdout.lines().filter(|l| l.contains("cache::")) {
        assert!(
            line.starts_with("  ok"),
            "the scaffold's cache fails: {line}"
        );
    }
    for cap in ["vector::", "relational::", "graph::"] {
        assert!(
            stdout.lines().any(|l| l.starts_with("  FAIL")
                && l.contains(cap)
                && l.contains("not written yet")),
            "no stub failure reported for {cap}:\n{stdout}"
        );
    }
}
