//! The host's loading behaviour, with real libraries: good plugins, a file
//! that is not a library, a library that is not a plugin, a plugin built
//! against another core, a plugin that panics, two plugins claiming one
//! backend, a third-party plugin added without rebuilding the host, and
//! pinned libraries.

use backplane_behavior::{library, target_dir, Scratch};
use backplane_host::{ErrorKind, Message, Storage};
use std::path::Path;
use std::process::Command;

const MEMORY: &str = "backplane_plugin_memory";
const SQLITE: &str = "backplane_plugin_sqlite";

fn copy_lib(crate_name: &str, dir: &Path, as_name: &str) {
    std::fs::copy(library(crate_name), dir.join(as_name)).unwrap();
}

fn so(name: &str) -> String {
    format!("{name}.{}", std::env::consts::DLL_EXTENSION)
}

fn write_config(scratch: &Scratch, body: &str) -> std::path::PathBuf {
    let file = scratch.path("plugins.toml");
    std::fs::write(&file, body).unwrap();
    file
}

/// A plugin folder with memory and sqlite plus every kind of broken library.
fn broken_folder(scratch: &Scratch) -> std::path::PathBuf {
    let dir = scratch.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    copy_lib(MEMORY, &dir, &so("libbackplane_plugin_memory"));
    copy_lib(SQLITE, &dir, &so("libbackplane_plugin_sqlite"));
    std::fs::write(dir.join(so("bogus")), b"this is not an ELF file at all").unwrap();
    copy_lib(
        "backplane_fixture_not_a_plugin",
        &dir,
        &so("libnot_a_plugin"),
    );
    copy_lib("backplane_fixture_old_core", &dir, &so("libold_core"));
    copy_lib("backplane_fixture_new_core", &dir, &so("libnew_core"));
    std::fs::write(dir.join("README.txt"), b"not a library, ignored").unwrap();
    dir
}

#[test]
fn broken_libraries_are_reported_and_the_rest_loads() {
    let scratch = Scratch::new();
    let dir = broken_folder(&scratch);
    let cfg = write_config(
        &scratch,
        &format!(
            "[plugins]\nsearch_paths = [\"{}\"]\n\n[cache.c]\nbackend = \"memory\"\n\n[relational.r]\nbackend = \"sqlite\"\npath = \"r.db\"\n",
            dir.display()
        ),
    );
    let storage = Storage::open(&cfg).expect("good plugins load despite broken neighbours");
    let failures = storage.plugin_failures();
    assert_eq!(failures.len(), 4, "{failures:#?}");
    let line = |name: &str| {
        failures
            .iter()
            .find(|f| {
                f.path
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(name)
            })
            .unwrap_or_else(|| panic!("no failure for {name}: {failures:#?}"))
            .to_string()
    };
    for f in failures {
        assert!(!f.reason.contains('\n'), "one line each: {f}");
    }
    assert!(
        line("bogus").contains("cannot be loaded as a shared library"),
        "{}",
        line("bogus")
    );
    assert!(
        line("libnot_a_plugin").contains("not a Backplane plugin"),
        "{}",
        line("libnot_a_plugin")
    );
    let old = line("libold_core");
    assert!(old.contains("built against backplane-core 0.0.1"), "{old}");
    assert!(
        old.contains(&format!("host has {}", backplane_host::CORE_VERSION)),
        "{old}"
    );
    assert!(old.contains("rebuild"), "{old}");
    let new = line("libnew_core");
    assert!(
        new.contains("built against backplane-core 0.2.0, newer than this host's")
            && new.contains(backplane_host::CORE_VERSION)
            && new.contains("rebuild the plugin against backplane-core 0.1"),
        "{new}"
    );
    assert!(
        new.len() < 250,
        "one short line, not a layout report: {new}"
    );

    // The good ones work.
    let c = storage.cache("c").unwrap();
    c.blocking().set("k", b"v", None).unwrap();
    assert_eq!(c.blocking().get("k").unwrap().unwrap(), b"v");
    let r = storage.relational("r").unwrap();
    r.blocking()
        .execute("CREATE TABLE t (x)", &Default::default())
        .unwrap();
    assert!(
        scratch.path("r.db").exists(),
        "relative paths resolve against the config's folder"
    );
    let names: Vec<String> = storage
        .backends()
        .into_iter()
        .map(|b| b.descriptor.name)
        .collect();
    assert!(
        names.contains(&"memory".into()) && names.contains(&"sqlite".into()),
        "{names:?}"
    );
}

#[test]
fn cli_plugins_lists_backends_and_one_line_per_failure() {
    let scratch = Scratch::new();
    let dir = broken_folder(&scratch);
    let cfg = write_config(&scratch, "[plugins]\nsearch_paths = []\n");
    let out = Command::new(target_dir().join("backplane"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--plugin-dir",
            dir.to_str().unwrap(),
            "plugins",
        ])
        .output()
        .expect("run the backplane binary (cargo build --workspace builds it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backend_line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{text}"))
            .to_string()
    };
    assert!(
        backend_line("memory").contains("vector, cache, graph"),
        "{text}"
    );
    assert!(
        backend_line("sqlite").contains("relational, vector, cache, graph"),
        "{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains("bogus")).count(),
        1,
        "{text}"
    );
    for lib in ["libold_core", "libnew_core"] {
        assert_eq!(
            text.lines().filter(|l| l.contains(lib)).count(),
            1,
            "{text}"
        );
    }
    assert!(text.contains("failed to load:"), "{text}");

    let out = Command::new(target_dir().join("backplane"))
        .args(["frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unrecognized subcommand 'frobnicate'"),
        "{err}"
    );
}

#[test]
fn a_panicking_plugin_does_not_take_the_host_down() {
    let scratch = Scratch::new();
    let lib = library("backplane_fixture_panicking");
    let cfg = write_config(
        &scratch,
        &format!(
            "[plugins]\nload = [\"{}\"]\n\n[cache.boom]\nbackend = \"panicking\"\n\n[cache.bad_open]\nbackend = \"panicking\"\npanic_on_open = true\n",
            lib.display()
        ),
    );
    let e = Storage::open(&cfg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
    assert!(e.message().contains("[cache.bad_open]"), "{e}");
    assert!(e.message().contains("panic_on_open was set"), "{e}");

    let storage = Storage::builder()
        .config(&cfg)
        .lenient(true)
        .open()
        .unwrap();
    assert_eq!(
        storage.cache("bad_open").unwrap_err().kind(),
        ErrorKind::Panicked
    );
    let c = storage.cache("boom").unwrap();
    for _ in 0..3 {
        let e = c.blocking().get("k").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
        assert!(e.message().contains("boom in get(k)"), "{e}");
        assert!(
            e.message()
                .contains("(at tests/fixtures/panicking/src/lib.rs:"),
            "the error says where the plugin panicked: {e}"
        );
        assert_eq!(e.store(), Some("boom"));
    }
    let e = c
        .blocking()
        .add_message("ch", &Message::new("user", "x"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Panicked);
    assert!(
        c.blocking().health().unwrap().healthy,
        "the plugin still answers after panicking"
    );
}

#[test]
fn two_plugins_claiming_one_backend_in_one_folder() {
    let scratch = Scratch::new();
    let dir = scratch.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    copy_lib(MEMORY, &dir, &so("liba_memory"));
    copy_lib(MEMORY, &dir, &so("libb_memory"));
    let cfg = write_config(
        &scratch,
        &format!(
            "[plugins]\nsearch_paths = [\"{}\"]\n[cache.c]\nbackend = \"memory\"\n",
            dir.display()
        ),
    );
    let storage = Storage::open(&cfg).unwrap();
    let f = storage.plugin_failures();
    assert_eq!(f.len(), 1, "{f:#?}");
    assert!(f[0].path.ends_with(so("libb_memory")));
    assert!(f[0].reason.contains("claims backend 'memory'"), "{}", f[0]);
    assert!(f[0].reason.contains("liba_memory"), "{}", f[0]);
    storage
        .cache("c")
        .unwrap()
        .blocking()
        .set("k", b"v", None)
        .unwrap();
}

#[test]
fn custom_plugin_is_usable_without_rebuilding_the_host() {
    let scratch = Scratch::new();
    let dir = scratch.path("third-party");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = write_config(
        &scratch,
        "[plugins]\nsearch_paths = [\"third-party\"]\n\n[cache.notes]\nbackend = \"custom-kv\"\ngreeting = \"hi from plugins.toml\"\n",
    );
    // Before the library is dropped in, the backend is unknown.
    let e = Storage::open(&cfg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.message()
            .contains("no plugin provides backend 'custom-kv'"),
        "{e}"
    );
    // Drop the example's library into the folder; same host binary.
    copy_lib("backplane_plugin_custom_example", &dir, &so("libcustom"));
    let storage = Storage::open(&cfg).unwrap();
    let c = storage.cache("notes").unwrap();
    c.blocking().set("k", b"v", None).unwrap();
    assert_eq!(c.blocking().get("k").unwrap().unwrap(), b"v");
    assert!(c
        .blocking()
        .health()
        .unwrap()
        .detail
        .contains("hi from plugins.toml"));
}

/// `backplane check` on configurations that hold nothing to check, or whose
/// plugins cannot be found, and with an environment override that names no
/// store: one line each that says what is wrong, and exit 1.
#[test]
fn check_says_what_is_missing() {
    let scratch = Scratch::new();
    let check = |body: &str, env: &[(&str, &str)]| {
        let cfg = write_config(&scratch, body);
        let out = Command::new(target_dir().join("backplane"))
            .arg("--config")
            .arg(&cfg)
            .arg("check")
            .envs(env.iter().copied())
            .output()
            .expect("run backplane check");
        assert_eq!(out.status.code(), Some(1), "{body}");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    let text = check("", &[]);
    assert!(text.contains("no stores in"), "{text}");
    let text = check(
        "[plugins]\nsearch_paths = [\"/nonexistent/plugins\"]\n\n[relational.users]\nbackend = \"sqlite\"\npath = \"u.db\"\n",
        &[],
    );
    assert!(
        text.contains("the plugin folder /nonexistent/plugins does not exist")
            && text.contains("search_paths"),
        "{text}"
    );
    let text = check(
        &format!(
            "[plugins]\nload = [\"{}\"]\n\n[cache.conversations]\nbackend = \"memory\"\n",
            library(MEMORY).display()
        ),
        &[("BACKPLANE_CACHE_CONVRESATIONS_TTL", "1h")],
    );
    assert!(
        text.contains("BACKPLANE_CACHE_CONVRESATIONS_TTL names no cache store")
            && text.contains("conversations"),
        "{text}"
    );
}

#[test]
fn config_mistakes_are_clear_errors() {
    let scratch = Scratch::new();
    let libs = format!(
        "load = [\"{}\", \"{}\", \"{}\"]",
        library(MEMORY).display(),
        library(SQLITE).display(),
        library("backplane_plugin_custom_example").display()
    );
    let open = |body: &str| {
        Storage::open(write_config(
            &scratch,
            &format!("[plugins]\n{libs}\n{body}"),
        ))
    };

    let e = open("[cache.c]\nbackend = \"memory\"\nmax_mesages = 3\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(
        e.message().contains("max_mesages") && e.message().contains("[cache.c]"),
        "{e}"
    );
    assert!(
        e.message().contains("plugins.toml:5"),
        "names the file and the key's line, not the section's: {e}"
    );
    assert_eq!(
        e.message().matches("[cache.c]").count(),
        1,
        "the section is named once: {e}"
    );
    assert!(e.message().contains("did you mean 'max_messages'"), "{e}");

    // Values of the wrong kind, in the words of the file, not of Rust.
    let e = open("[cache.c]\nbackend = \"memory\"\nttl = \"1s\"\nmax_messages = -1\n").unwrap_err();
    assert!(
        e.message().contains("plugins.toml:6")
            && e.message().contains("key 'max_messages'")
            && e.message().contains("expected a whole number, 0 or more")
            && !e.message().contains("usize"),
        "{e}"
    );
    let e = open("[cache]\nc = 3\n").unwrap_err();
    assert!(
        e.message().contains("a table of settings") && !e.message().contains("struct"),
        "{e}"
    );

    let e = open("[cache.c]\nbackend = \"nosuch\"\n").unwrap_err();
    assert!(
        e.message().contains("no plugin provides backend 'nosuch'")
            && e.message().contains("memory"),
        "{e}"
    );

    let e = open("[vector.v]\nbackend = \"custom-kv\"\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert!(
        e.message()
            .contains("backend 'custom-kv' does not serve the vector capability (it serves cache)"),
        "{e}"
    );

    let e = open("[vector.v]\nbackend = \"memory\"\nfallback = \"sqlite\"\n").unwrap_err();
    assert!(
        e.message()
            .contains("fallback is supported for cache stores only"),
        "{e}"
    );

    let e = open("[cache.c]\nbackend = \"memory\"\nfallback = \"nosuch\"\n").unwrap_err();
    assert!(
        e.message().contains("fallback 'nosuch'")
            && e.message().contains("no plugin provides backend 'nosuch'"),
        "{e}"
    );

    let e = open("[cache.c]\nbackend = \"memory\"\nttl = \"10 parsecs\"\n").unwrap_err();
    assert!(e.message().contains("10 parsecs"), "{e}");

    let e = open("[cache.c\nbackend = \"memory\"\n").unwrap_err();
    assert!(e.message().contains("plugins.toml:3:"), "{e}");

    let e = open("[cache.c]\nbackend = \"memory\"\nurl = \"${BACKPLANE_TEST_UNSET_VAR}\"\n")
        .unwrap_err();
    assert!(
        e.message().contains("BACKPLANE_TEST_UNSET_VAR is not set"),
        "{e}"
    );

    let e = Storage::open(scratch.path("nope.toml")).unwrap_err();
    assert!(e.message().contains("nope.toml does not exist"), "{e}");

    let e = open("[plugins.more]\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");

    let s = open("[cache.c]\nbackend = \"memory\"\n").unwrap();
    let e = s.vector("c").unwrap_err();
    assert!(e.message().contains("[cache.c]"), "says what 'c' is: {e}");
    let e = s.cache("other").unwrap_err();
    assert!(e.message().contains("no cache store named 'other'"), "{e}");

    let missing = scratch.path("gone.so");
    let s = Storage::open(write_config(
        &scratch,
        &format!("[plugins]\nload = [\"{}\"]\n", missing.display()),
    ))
    .unwrap();
    assert!(
        s.plugin_failures()[0].reason.contains("file missing"),
        "{:?}",
        s.plugin_failures()
    );
}

/// Odd entries of a plugin folder, and of `load = [...]`, are each one
/// honest line: a symbolic link that loops, one that leads nowhere, a
/// folder named like a library; the libraries beside them still load.
#[cfg(unix)]
#[test]
fn odd_folder_entries_are_each_named() {
    use std::os::unix::fs::symlink;
    let scratch = Scratch::new();
    let dir = scratch.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    copy_lib(MEMORY, &dir, &so("libbackplane_plugin_memory"));
    symlink(dir.join(so("loop")), dir.join(so("loop"))).unwrap();
    symlink(dir.join(so("nowhere")), dir.join(so("dangling"))).unwrap();
    std::fs::create_dir_all(dir.join(so("folder"))).unwrap();
    let elsewhere = scratch.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let listed_loop = elsewhere.join(so("listed"));
    symlink(&listed_loop, &listed_loop).unwrap();
    let cfg = write_config(
        &scratch,
        &format!(
            "[plugins]\nsearch_paths = [\"{}\"]\nload = [\"{}\", \"{}\"]\n\n[cache.c]\nbackend = \"memory\"\n",
            dir.display(),
            listed_loop.display(),
            elsewhere.join(so("absent")).display()
        ),
    );
    let storage = Storage::open(&cfg).expect("the memory plugin loads beside odd entries");
    let failures = storage.plugin_failures();
    let line = |name: &str| {
        failures
            .iter()
            .find(|f| f.path.file_name().and_then(|n| n.to_str()) == Some(so(name).as_str()))
            .unwrap_or_else(|| panic!("no line for {name}: {failures:#?}"))
            .to_string()
    };
    for (name, says) in [
        ("loop", "loops back on itself".to_string()),
        ("listed", "loops back on itself".to_string()),
        ("dangling", "does not exist".to_string()),
        ("dangling", so("nowhere")),
        ("folder", "is a folder".to_string()),
        ("absent", "file missing".to_string()),
    ] {
        assert!(line(name).contains(&says), "{name}: {}", line(name));
    }
    assert_eq!(failures.len(), 5, "{failures:#?}");
    for f in failures {
        assert!(!f.to_string().contains('\n'), "{f}");
    }
    storage
        .cache("c")
        .unwrap()
        .blocking()
        .set("k", b"v", None)
        .unwrap();
}

/// `[plugins.pins]`: with pins set, only pinned libraries load, each
/// checked before it is loaded; `backplane plugins --pin` prints pins that,
/// pasted into plugins.toml, let exactly today's libraries load.
#[test]
fn pinned_plugins_load_and_others_are_refused() {
    let scratch = Scratch::new();
    let dir = scratch.path("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let (mem, sql) = (
        so("libbackplane_plugin_memory"),
        so("libbackplane_plugin_sqlite"),
    );
    copy_lib(MEMORY, &dir, &mem);
    copy_lib(SQLITE, &dir, &sql);
    let head = format!("[plugins]\nsearch_paths = [\"{}\"]\n", dir.display());
    let stores = "\n[cache.c]\nbackend = \"memory\"\n\n[relational.r]\nbackend = \"sqlite\"\npath = \"r.db\"\n";
    let cfg = write_config(&scratch, &format!("{head}{stores}"));

    let out = Command::new(target_dir().join("backplane"))
        .args(["plugins", "--pin", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pins = String::from_utf8(out.stdout).unwrap();
    assert!(
        pins.contains("[plugins.pins]") && pins.contains(&mem) && pins.contains(&sql),
        "{pins}"
    );
    let pins = pins.replace("[plugins.pins]\n", "");
    let pinned = format!("{head}[plugins.pins]\n{pins}{stores}");
    write_config(&scratch, &pinned);
    let storage = Storage::open(&cfg).expect("every library is pinned");
    assert!(storage.plugin_failures().is_empty());
    drop(storage);

    // Only the memory plugin pinned: sqlite is refused, named, with its hash.
    let only_mem: String = pins
        .lines()
        .filter(|l| !l.contains(&sql))
        .map(|l| format!("{l}\n"))
        .collect();
    write_config(
        &scratch,
        &format!("{head}[plugins.pins]\n{only_mem}\n[cache.c]\nbackend = \"memory\"\n"),
    );
    let storage = Storage::open(&cfg).unwrap();
    let f = &storage.plugin_failures()[0];
    assert!(f.path.ends_with(&sql), "{f}");
    let found = backplane_host::sha256_file(&dir.join(&sql)).unwrap();
    assert!(
        f.reason.contains("is not pinned") && f.reason.contains(&found),
        "{f}"
    );
    drop(storage);

    // A pinned library changed on disk is refused before it is loaded.
    write_config(&scratch, &pinned);
    // (A new file renamed over the old one: the old one is mapped into
    // this process, and rewriting it in place would pull it from under it.)
    let mut bytes = std::fs::read(dir.join(&sql)).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::write(scratch.path("tampered.so"), bytes).unwrap();
    std::fs::rename(scratch.path("tampered.so"), dir.join(&sql)).unwrap();
    let e = Storage::open(&cfg).expect_err("the relational store's backend is refused");
    assert!(
        e.message().contains("has changed since it was pinned"),
        "{e}"
    );

    // A pin written wrong is one line.
    write_config(
        &scratch,
        &format!("{head}[plugins.pins]\n\"{mem}\" = \"md5:abc\"\n"),
    );
    let e = Storage::open(&cfg).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    assert!(e.message().contains("64 hex digits"), "{e}");
}
