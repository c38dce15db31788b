//! DuckDB's shared library, `libduckdb.so` 1.5.6, for the crates that link
//! against it (the duckdb plugin, and the benchmark's direct baseline).
//!
//! This crate has no code: its build script (see `build.rs`) fetches the
//! library, or takes it from `DUCKDB_LIB_DIR`, and puts its folder on the
//! link path of every crate that depends on it. Each of those adds the
//! folder to its own run path (`$ORIGIN/libduckdb` beside a plugin,
//! `$ORIGIN/../libduckdb` for binaries in `target/<profile>/deps`).
