//! Finds the DuckDB shared library the plugin links against.
//!
//! - `DUCKDB_LIB_DIR` set: that folder's `libduckdb.so` (libduckdb-sys
//!   links it; this script only adds it to the plugin's run path).
//! - Otherwise, on x86_64 Linux: the library DuckDB publishes in its npm
//!   package `@duckdb/node-bindings-linux-x64` (a registry this build can
//!   reach, unlike GitHub's release downloads), fetched once into
//!   `target/<profile>/libduckdb/`, checked against its SHA-256 before it is
//!   unpacked. Its version must match the `duckdb` crate's (1.10506.x is
//!   DuckDB 1.5.6).
//!
//! Either way the folder goes on the link path of every crate that depends
//! on this one. The folder under `target/` has no `.so` extension, so the
//! host's plugin scan skips it.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

const PACKAGE: &str = "@duckdb/node-bindings-linux-x64";
const VERSION: &str = "1.5.6-r.1";
const TARBALL: &str =
    "https://registry.npmjs.org/@duckdb/node-bindings-linux-x64/-/node-bindings-linux-x64-1.5.6-r.1.tgz";
const TARBALL_SHA256: &str = "1b9f82478539bb9a1d1df44bd103121a12ae52142c07158dc52b97d2ec1d69ff";
const LIBRARY: &str = "libduckdb.so";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        println!("cargo:rustc-link-search=native={dir}");
        return;
    }
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" || arch != "x86_64" {
        panic!(
            "backplane-plugin-duckdb: no prebuilt libduckdb is fetched for {arch}-{os}: \
             download DuckDB 1.5.6's libduckdb for this platform and set DUCKDB_LIB_DIR to its folder"
        );
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let profile = out
        .ancestors()
        .nth(3)
        .expect("OUT_DIR is inside the target folder")
        .to_path_buf();
    let dir = profile.join("libduckdb");
    let lib = dir.join(LIBRARY);
    let stamp = dir.join("VERSION");
    let current = std::fs::read_to_string(&stamp).unwrap_or_default();
    if !lib.exists() || current.trim() != VERSION {
        if let Err(e) = fetch(&dir) {
            panic!(
                "backplane-plugin-duckdb: cannot fetch libduckdb ({PACKAGE} {VERSION}) from {TARBALL}: {e}. \
                 Without network access, put libduckdb.so 1.5.6 in a folder and set DUCKDB_LIB_DIR to it"
            );
        }
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
}

/// Download the npm package, check it, and unpack `libduckdb.so` into
/// `dir` (written under a temporary name, then renamed).
fn fetch(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // curl, not an HTTP crate: it trusts the system's certificate store,
    // which is what a proxy in front of the registry is signed by.
    let got = std::process::Command::new("curl")
        .args([
            "--fail",
            "--silent",
            "--show-error",
            "--location",
            "--retry",
            "3",
            TARBALL,
        ])
        .output()
        .map_err(|e| format!("cannot run curl ({e}); install curl"))?;
    if !got.status.success() {
        return Err(format!(
            "curl failed: {}",
            String::from_utf8_lossy(&got.stderr).trim()
        ));
    }
    let body = got.stdout;
    let sha = format!("{:x}", Sha256::digest(&body));
    if sha != TARBALL_SHA256 {
        return Err(format!(
            "the download's SHA-256 is {sha}, expected {TARBALL_SHA256}"
        ));
    }
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&body[..]));
    let tmp = dir.join(format!("{LIBRARY}.part"));
    let mut found = false;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        if path.file_name().is_some_and(|n| n == LIBRARY) {
            entry.unpack(&tmp).map_err(|e| e.to_string())?;
            found = true;
            break;
        }
    }
    if !found {
        return Err(format!("the package holds no {LIBRARY}"));
    }
    std::fs::rename(&tmp, dir.join(LIBRARY)).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("VERSION"), VERSION).map_err(|e| e.to_string())?;
    Ok(())
}
