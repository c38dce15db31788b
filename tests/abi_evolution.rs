//! ABI evolution (docs/abi.md), with real plugins built outside the
//! workspace by `backplane new-plugin` and cargo:
//!
//! - a plugin written for the previous backplane-core (the custom example
//!   as it was at 0.1.0), built against that core (vendored in
//!   `fixtures/previous_core/` as the registry's package), loads in this
//!   host and serves its store;
//! - a plugin built against this core's next patch release, which adds a
//!   capability method on a new tag, loads and passes the conformance
//!   suite;
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

/// Unpack a `.crate` package (or a `.tar.gz` of a crate folder) into
/// `into`; returns the crate's folder.
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
    into.join(name.trim_end_matches(".crate").trim_end_matches(".tar.gz"))
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
    build(&scratch.path(&format!("backplane-plugin-{name}")), name)
}

/// Build the plugin crate in `krate`, whose package is
/// `backplane-plugin-{name}`; returns its library.
fn build(krate: &Path, name: &str) -> PathBuf {
    let _one = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--quiet"])
            .current_dir(krate)
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

/// The custom example as it was written for backplane-core 0.1.0 (its
/// source vendored beside the core), built against that core outside the
/// workspace, then loaded and used by this host.
#[test]
fn a_plugin_built_on_the_previous_core_loads_and_runs() {
    let scratch = Scratch::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/previous_core");
    let core = unpack(&fixtures.join("backplane-core-0.1.0.crate"), &scratch.0);
    let plugin = unpack(&fixtures.join("custom-example-0.1.0.tar.gz"), &scratch.0);
    // Its Cargo.toml inherited from the workspace it lived in: one of its
    // own, depending on the vendored core.
    std::fs::write(
        plugin.join("Cargo.toml"),
        format!(
            "[package]\nname = \"backplane-plugin-prev-example\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nbackplane-core = {{ path = {:?} }}\nserde = {{ version = \"1\", features = [\"derive\"] }}\n\n[workspace]\n",
            core.display().to_string()
        ),
    )
    .unwrap();
    let lib = build(&plugin, "prev-example");

    // `backplane plugins` names the core it was built on.
    let cfg = scratch.path("plugins.toml");
    std::fs::write(
        &cfg,
        format!(
            "[plugins]\nload = [{:?}]\n\n[cache.scratch]\nbackend = \"custom-kv\"\nmax_messages = 2\n",
            lib.display().to_string()
        ),
    )
    .unwrap();
    let out = run(
        Command::new(target_dir().join("backplane"))
            .arg("--config")
            .arg(&cfg)
            .arg("plugins"),
        "backplane plugins",
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("custom-kv") && listed.contains("(core 0.1.0)"),
        "{listed}"
    );
    assert!(backplane_host::CORE_VERSION != "0.1.0", "the host is newer");

    // And it serves this host: keys, expiry, bounded conversations.
    let storage = backplane_host::Storage::open(&cfg).expect("the 0.1.0 plugin opens its store");
    let c = storage.cache("scratch").unwrap();
    let c = c.blocking();
    c.set("k", b"from 0.1.0", Some(std::time::Duration::from_secs(60)))
        .unwrap();
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&b"from 0.1.0"[..]));
    for text in ["one", "two", "three"] {
        c.add_message("ch", &backplane_host::Message::new("user", text))
            .unwrap();
    }
    let kept: Vec<String> = c
        .recent("ch", 10, None)
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect();
    assert_eq!(kept, ["two", "three"]);
    assert!(c.health().unwrap().healthy);
}

/// This core, packaged as a registry would serve it and unpacked into
/// `scratch`; returns its folder.
fn packaged_core(scratch: &Scratch) -> PathBuf {
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
    unpack(&package, &scratch.0)
}

/// Replace the first `from` in the file at `path` with `to`, checking it
/// was there.
fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let changed = text.replacen(from, to, 1);
    assert_ne!(text, changed, "{} holds {from:?}", path.display());
    std::fs::write(path, changed).unwrap();
}

/// A plugin built on the next patch release of this core, which adds a
/// capability method on a new tag (docs/abi.md: a compatible change),
/// loads in this host and passes the conformance suite. Its wire
/// fingerprint differs from the host's, as it may across patch levels.
#[test]
fn a_plugin_built_on_the_next_patch_release_loads_and_passes() {
    let scratch = Scratch::new();
    let core = packaged_core(&scratch);
    let host = backplane_host::CORE_VERSION;
    let (series, patch) = host.rsplit_once('.').unwrap();
    let next = format!("{series}.{}", patch.parse::<u64>().unwrap() + 1);
    edit(
        &core.join("Cargo.toml"),
        &format!("version = \"{host}\""),
        &format!("version = \"{next}\""),
    );
    // The added method: a line on a new tag, and the trait method with a
    // default body, so plugins written before it still compile.
    edit(
        &core.join("src/boundary/cache.rs"),
        "17 call fn import_messages(",
        "18 call fn touch(key: &str => String) -> bool;\n            17 call fn import_messages(",
    );
    edit(
        &core.join("src/cache.rs"),
        "    fn exists(&self, key: &str) -> Result<bool>;\n",
        "    fn exists(&self, key: &str) -> Result<bool>;\n    /// Added in a patch release.\n    fn touch(&self, key: &str) -> Result<bool> {\n        self.exists(key)\n    }\n",
    );

    let lib = plugin_on(&core, "next-kv", &scratch);
    let (out, stdout, stderr) = conformance(&lib, &scratch.0);
    assert!(
        stdout.contains(&format!("built on backplane-core {next}")),
        "{stdout}{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn wire_types_changed_without_a_version_change_are_refused() {
    let scratch = Scratch::new();
    // This core, packaged, then changed: a field added to a type that
    // crosses the boundary, the version kept.
    let core = packaged_core(&scratch);
    edit(
        &core.join("src/vector.rs"),
        "pub struct CollectionInfo {",
        "pub struct CollectionInfo {\n    /// Added without a version change.\n    pub shards: u32,",
    );

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
