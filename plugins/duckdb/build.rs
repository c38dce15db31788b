//! The plugin's run path: DuckDB's library is found in `libduckdb/` beside
//! the plugin (where the build puts it, see `libduckdb/build.rs`, and where
//! a deployment copies it), in `../libduckdb` (for test binaries in
//! `target/<profile>/deps`), or in `DUCKDB_LIB_DIR` when the build was given
//! one.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    let mut paths = "$ORIGIN/libduckdb:$ORIGIN/../libduckdb".to_string();
    if let Ok(dir) = std::env::var("DUCKDB_LIB_DIR") {
        paths.push(':');
        paths.push_str(&dir);
    }
    println!("cargo:rustc-link-arg=-Wl,-rpath,{paths}");
}
