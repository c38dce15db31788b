//! The benchmark links DuckDB's shared library (its direct baseline):
//! binaries in `target/<profile>/deps` find it in `../libduckdb`, where
//! `backplane-libduckdb`'s build puts it, or in `DUCKDB_LIB_DIR`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    let mut paths = "$ORIGIN/../libduckdb".to_string();
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        paths.push(':');
        paths.push_str(&dir);
    }
    println!("cargo:rustc-link-arg-benches=-Wl,-rpath,{paths}");
    println!("cargo:rustc-link-arg-tests=-Wl,-rpath,{paths}");
}
