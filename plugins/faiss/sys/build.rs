//! Compiles `shim/shim.cpp` against FAISS's headers and links FAISS's
//! static library with what it needs (BLAS, LAPACK, OpenMP).
//!
//! FAISS is found under `FAISS_DIR` (holding `include/faiss/` and
//! `lib/libfaiss.a`) or, by default, where Debian's `libfaiss-dev` puts it
//! (`/usr/include/faiss`, `/usr/lib/x86_64-linux-gnu/libfaiss.a`). Without
//! it the build stops with one line that says what to install.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=shim/shim.cpp");
    println!("cargo:rerun-if-env-changed=FAISS_DIR");
    let (include, lib) = match std::env::var_os("FAISS_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            (dir.join("include"), dir.join("lib"))
        }
        None => (
            PathBuf::from("/usr/include"),
            PathBuf::from("/usr/lib/x86_64-linux-gnu"),
        ),
    };
    if !include.join("faiss/IndexIDMap.h").is_file() || !lib.join("libfaiss.a").is_file() {
        panic!(
            "\n\nthe faiss plugin needs FAISS 1.7 (headers in {}/faiss, {}/libfaiss.a): \
             install it with `apt-get install libfaiss-dev` (Debian, Ubuntu), \
             or set FAISS_DIR to a folder holding include/faiss and lib/libfaiss.a\n\n",
            include.display(),
            lib.display()
        );
    }
    cc::Build::new()
        .cpp(true)
        .file("shim/shim.cpp")
        .include(&include)
        .flag("-std=c++17")
        .flag("-fopenmp")
        .warnings(false)
        .compile("backplane_faiss_shim");
    link(&lib);
}

fn link(lib: &Path) {
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=static=faiss");
    for l in ["lapack", "blas", "gomp", "stdc++"] {
        println!("cargo:rustc-link-lib=dylib={l}");
    }
}
