//! ABI evolution (docs/abi.md), with real plugins built outside the
//! workspace by `backplane new-plugin` and cargo:
//!
//! - a plugin built against the previous backplane-core (0.1.0, vendored
//!   in `fixtures/previous_core/` as the registry's package) loads in this
//!   host and passes its conformance cases;
//! - a plugin built against a copy of this core whose wire types were
//!   changed without a version change is refused with one line.
//!
//! (A plugin built against a newer or an older core series is refused
//! with one line naming both versions: `loading.rs`, with the
//! `new_core` and `old_core` fixtures.)

use backplane_behavior::{target_dir, Scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// One cargo build at a time in this file: they share a target folder, so
/// the dependencies are compiled once.
static BUILD: Mutex<()> = Mutex::new(());

fn shared_target() -> PathBuf {
    // Shared with conformance.rs's scaffold test: dependencies build once.
    target_dir().join("scaffolds")
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Unpack a `.crate` package into `into`; returns the crate's folder.
fn unpack(package: &Path, into: &Path) -> PathBuf {
    run(
        Command::new("tar")
            .arg("xzf")
            .arg(package)
            .arg("-C")
            .arg(into),
        "tar (unpacking a crate package)",
    );
    let name = package.file_name().unwrap().to_str().unwrap();
    into.join(name.trim_end_matches(".crate"))
}

/// A plugin `name` scaffolded against the core in `core`, built; returns
/// its library.
fn plugin_on(core: &Path, name: &str, scratch: &Scratch) -> PathBuf {
    run(
        Command::new(target_dir().join("backplane"))
            .args(["new-plugin", name, "--core"])
            .arg(core)
            .arg("--dir")
            .arg(&scratch.0),
        "backplane new-plugin",
    );
    let krate = scratch.path(&format!("backplane-plugin-{name}"));
    let _one = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet"])
            .current_dir(&krate)
            .env("CARGO_TARGET_DIR", shared_target()),
        &format!("cargo build of the {name} plugin"),
    );
    shared_target().join(format!(
        "debug/{}backplane_plugin_{}.{}",
        std::env::consts::DLL_PREFIX,
        name.replace('-', "_"),
        std::env::consts::DLL_EXTENSION
    ))
}

fn conformance(lib: &Path, cwd: &Path) -> (Output, String, String) {
    let out = Command::new(target_dir().join("backplane"))
        .arg("conformance")
        .arg(lib)
        .current_dir(cwd)
        .output()
        .expect("run backplane conformance");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    println!("{stdout}{stderr}");
    (out, stdout, stderr)
}

#[test]
fn a_plugin_built_on_the_previous_core_loads_and_runs() {
    let scratch = Scratch::new();
    let package = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/previous_core/backplane-core-0.1.0.crate");
    let core = unpack(&package, &scratch.0);
    let lib = plugin_on(&core, "prev-kv", &scratch);
    let (out, stdout, stderr) = conformance(&lib, &scratch.path("backplane-plugin-prev-kv"));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("built on backplane-core 0.1.0"),
        "the plugin reports the core it was built on:\n{stdout}"
    );
    assert!(backplane_host::CORE_VERSION != "0.1.0", "the host is newer");
    assert!(stdout.contains("11 passed, 0 failed"), "{stdout}");
}

#[test]
fn wire_types_changed_without_a_version_change_are_refused() {
    let scratch = Scratch::new();
    // This core, packaged as a registry would serve it, then changed: a
    // field added to a type that crosses the boundary, the version kept.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "package",
                "-p",
                "backplane-core",
                "--no-verify",
                "--allow-dirty",
                "--quiet",
            ])
            .arg("--target-dir")
            .arg(scratch.path("package"))
            .current_dir(workspace),
        "cargo package -p backplane-core",
    );
    let package = scratch.path(&format!(
        "package/package/backplane-core-{}.crate",
        backplane_host::CORE_VERSION
    ));
    let core = unpack(&package, &scratch.0);
    let vector_rs = core.join("src/vector.rs");
    let text = std::fs::read_to_string(&vector_rs).unwrap();
    let changed = text.replacen(
        "pub struct CollectionInfo {",
        "pub struct CollectionInfo {\n    /// Added without a version change.\n    pub shards: u32,",
        1,
    );
    assert_ne!(text, changed, "CollectionInfo is where the test expects it");
    std::fs::write(&vector_rs, changed).unwrap();

    let lib = plugin_on(&core, "drifted-kv", &scratch);
    let (out, stdout, stderr) = conformance(&lib, &scratch.0);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.contains("wire types differ")
            && stderr.contains(&format!("host's {}", backplane_host::CORE_VERSION))
            && stderr.contains("rebuild the plugin"),
        "{stderr}"
    );
}
