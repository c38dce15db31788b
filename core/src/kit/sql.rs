//! SQL text handling for the PostgreSQL-dialect backends (postgres, and
//! duckdb, whose parser is PostgreSQL's): rewriting Backplane's `?` / `?N` /
//! `:name` placeholders into `$n`, and the few facts about a statement a
//! plugin needs (its first keyword, an INSERT's target table).
//!
//! The scanner knows PostgreSQL's lexical rules for everything a
//! placeholder must not be found in: `'...'` literals (with `''`), `E'...'`
//! literals (with backslash escapes), `"..."` identifiers, dollar-quoted
//! strings (`$$...$$`, `$tag$...$tag$`), `-- ...` and nested `/* ... */`
//! comments. `::` is a cast, never a named parameter, and `??` stands for a
//! literal `?` (the jsonb operators `?`, `?|`, `?&`).

use crate::kit::text::snippet;
use crate::{Error, ParamsRef, Result, ValueRef};

/// A statement with its placeholders rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The SQL with `$n` placeholders.
    pub sql: String,
    /// For `:name` placeholders, the name of each `$n` in order (`names[0]`
    /// is `$1`). Empty when the statement has no named placeholders.
    pub names: Vec<String>,
}

/// Rewrite `?`, `?N` and `:name` placeholders to `$n`. A statement that
/// mixes `?` and `:name` is refused; `$n` written by hand is left alone.
pub fn rewrite(sql: &str) -> Result<Rewritten> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8);
    let mut names: Vec<String> = Vec::new();
    let mut next_positional = 0usize;
    let mut positional = false;
    let mut copied = 0usize; // bytes of `sql` already copied to `out`
    let mut i = 0usize;
    while i < b.len() {
        if let Some((end, _)) = skip_non_code(b, i) {
            i = end;
            continue;
        }
        match b[i] {
            b'?' => {
                if b.get(i + 1) == Some(&b'?') {
                    out.push_str(&sql[copied..i]);
                    out.push('?');
                    i += 2;
                    copied = i;
                    continue;
                }
                if !names.is_empty() {
                    return Err(mixed(sql));
                }
                positional = true;
                out.push_str(&sql[copied..i]);
                let digits = b[i + 1..].iter().take_while(|x| x.is_ascii_digit()).count();
                if digits > 0 {
                    // ?N keeps its number.
                    out.push('$');
                    out.push_str(&sql[i + 1..i + 1 + digits]);
                    i += 1 + digits;
                } else {
                    next_positional += 1;
                    out.push('$');
                    out.push_str(&next_positional.to_string());
                    i += 1;
                }
                copied = i;
            }
            b':' => {
                if b.get(i + 1) == Some(&b':') {
                    i += 2; // a cast
                    continue;
                }
                let starts_name = b
                    .get(i + 1)
                    .is_some_and(|&x| x.is_ascii_alphabetic() || x == b'_');
                // `a[lo:hi]` slices are not parameters: a name needs a
                // non-identifier byte before the colon.
                if !starts_name || ident_byte_before(b, i) {
                    i += 1;
                    continue;
                }
                if positional {
                    return Err(mixed(sql));
                }
                let len = b[i + 1..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphanumeric() || **x == b'_')
                    .count();
                let name = &sql[i + 1..i + 1 + len];
                let n = match names.iter().position(|x| x == name) {
                    Some(p) => p + 1,
                    None => {
                        names.push(name.to_string());
                        names.len()
                    }
                };
                out.push_str(&sql[copied..i]);
                out.push('$');
                out.push_str(&n.to_string());
                i += 1 + len;
                copied = i;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    Ok(Rewritten { sql: out, names })
}

fn mixed(sql: &str) -> Error {
    Error::invalid(format!(
        "`{}` mixes `?` and `:name` placeholders: use one style per statement",
        snippet(sql)
    ))
}

/// If a string literal, quoted identifier, comment or dollar-quoted
/// string starts at `i`, the index just past it, and whether it was a
/// comment. Placeholders and keywords are never looked for inside these.
fn skip_non_code(b: &[u8], i: usize) -> Option<(usize, bool)> {
    Some(match b[i] {
        b'\'' => {
            // E'...' strings take backslash escapes.
            let escapes =
                i > 0 && (b[i - 1] == b'e' || b[i - 1] == b'E') && !ident_byte_before(b, i - 1);
            (skip_quoted(b, i, b'\'', escapes), false)
        }
        b'"' => (skip_quoted(b, i, b'"', false), false),
        b'-' if b.get(i + 1) == Some(&b'-') => (line_end(b, i), true),
        b'/' if b.get(i + 1) == Some(&b'*') => (skip_block_comment(b, i), true),
        b'$' => (dollar_quote_end(b, i)?, false),
        _ => return None,
    })
}

/// The index just past the end of the line `i` is on.
fn line_end(b: &[u8], i: usize) -> usize {
    b[i..]
        .iter()
        .position(|&x| x == b'\n')
        .map_or(b.len(), |p| i + p + 1)
}

fn ident_byte_before(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] >= 0x80)
}

/// The index just past a quoted run starting at `start` (`quote` at
/// `b[start]`); a doubled quote is an escaped quote.
fn skip_quoted(b: &[u8], start: usize, quote: u8, backslash: bool) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if backslash && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn skip_block_comment(b: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < b.len() {
        if b[i] == b'/' && b[i + 1] == b'*' {
            depth += 1;
            i += 2;
        } else if b[i] == b'*' && b[i + 1] == b'/' {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    b.len()
}

/// If a dollar quote (`$$` or `$tag$`) opens at `start`, the index just
/// past its closing delimiter.
fn dollar_quote_end(b: &[u8], start: usize) -> Option<usize> {
    // `$1` is a parameter; a tag cannot start with a digit, and `a$b` is
    // part of an identifier.
    if ident_byte_before(b, start) {
        return None;
    }
    let tag_len = b[start + 1..]
        .iter()
        .take_while(|x| x.is_ascii_alphanumeric() || **x == b'_' || **x >= 0x80)
        .count();
    if b.get(start + 1).is_some_and(|x| x.is_ascii_digit()) {
        return None;
    }
    if b.get(start + 1 + tag_len) != Some(&b'$') {
        return None;
    }
    let delim = &b[start..start + tag_len + 2];
    let body = start + delim.len();
    let end = b[body..]
        .windows(delim.len())
        .position(|w| w == delim)
        .map_or(b.len(), |p| body + p + delim.len());
    Some(end)
}

/// The statement's first keyword, upper-cased (`SELECT`, `INSERT`, …),
/// after comments and opening parentheses.
pub fn first_keyword(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'(') {
            i += 1;
        }
        if b[i..].starts_with(b"--") {
            i = line_end(b, i);
        } else if b[i..].starts_with(b"/*") {
            i = skip_block_comment(b, i);
        } else {
            break;
        }
    }
    let len = b[i..]
        .iter()
        .take_while(|x| x.is_ascii_alphabetic())
        .count();
    sql[i..i + len].to_ascii_uppercase()
}

/// Whether a statement may change the schema (so kept statements and
/// table facts are to be forgotten).
pub fn is_ddl(sql: &str) -> bool {
    matches!(
        first_keyword(sql).as_str(),
        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "COMMENT" | "GRANT" | "REVOKE" | "DO" | "CALL"
    )
}

/// Keywords that make a statement change something (or take a lock);
/// `INTO` is PostgreSQL's `SELECT … INTO new_table`.
const WRITING: [&str; 33] = [
    "INSERT",
    "UPDATE",
    "DELETE",
    "MERGE",
    "UPSERT",
    "REPLACE",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "ATTACH",
    "DETACH",
    "PRAGMA",
    "COPY",
    "CALL",
    "DO",
    "VACUUM",
    "REINDEX",
    "ANALYZE",
    "LOCK",
    "SET",
    "RESET",
    "INTO",
    "COMMENT",
    "LOAD",
    "INSTALL",
    "EXPORT",
    "IMPORT",
    "CHECKPOINT",
    "NOTIFY",
    "REFRESH",
];

/// Functions that change something or reach outside the database
/// (files, other servers, session settings), in the dialects the shipped
/// plugins speak.
const SIDE_EFFECTS: [&str; 26] = [
    "SET_CONFIG",
    "NEXTVAL",
    "SETVAL",
    "PG_READ_FILE",
    "PG_READ_BINARY_FILE",
    "PG_LS_DIR",
    "PG_STAT_FILE",
    "PG_TERMINATE_BACKEND",
    "PG_CANCEL_BACKEND",
    "PG_RELOAD_CONF",
    "LO_IMPORT",
    "LO_EXPORT",
    "DBLINK",
    "DBLINK_EXEC",
    "READ_TEXT",
    "READ_BLOB",
    "READ_CSV",
    "READ_CSV_AUTO",
    "READ_JSON",
    "READ_JSON_AUTO",
    "READ_PARQUET",
    "GLOB",
    "LOAD_EXTENSION",
    "READFILE",
    "WRITEFILE",
    "QUERY_TABLE",
];

/// Why `sql` is not a statement that only reads, or `None` when it is:
/// one statement, starting with `SELECT`, `WITH` or `VALUES`, naming no
/// keyword that writes and no function with side effects (outside
/// literals, quoted identifiers and comments). Conservative, so that no
/// dialect reads the text differently from this scanner: block comments
/// (SQLite does not nest them, PostgreSQL does), `[` and backquotes
/// (SQLite's identifier quotes), backslashes (a string's end depends on
/// PostgreSQL's settings) and dollar quotes are refused too, and so is a
/// word like `set` used as a bare identifier. Functions of extensions
/// are not known here: a database role restricts those.
pub fn writes(sql: &str) -> Option<String> {
    for (what, found) in [
        ("a block comment (/* */)", sql.contains("/*")),
        ("'[' or '`'", sql.contains(['[', '`'])),
        ("a backslash", sql.contains('\\')),
        ("a '$' outside a $1 parameter", {
            let b = sql.as_bytes();
            (0..b.len()).any(|i| b[i] == b'$' && !b.get(i + 1).is_some_and(u8::is_ascii_digit))
        }),
    ] {
        if found {
            return Some(format!(
                "it holds {what}, which a read-only statement may not (SQL dialects read it differently)"
            ));
        }
    }
    let first = first_keyword(sql);
    if !matches!(first.as_str(), "SELECT" | "WITH" | "VALUES") {
        return Some(if first.is_empty() {
            "it does not start with SELECT, WITH or VALUES".to_string()
        } else {
            format!("it is a {first} statement, not a SELECT")
        });
    }
    // A `;` in code before the statement's end starts another statement.
    let b = &sql.as_bytes()[..statement_end(sql)];
    let mut i = 0;
    let mut more = false;
    while i < b.len() {
        if let Some((e, _)) = skip_non_code(b, i) {
            i = e;
            continue;
        }
        more |= b[i] == b';';
        i += 1;
    }
    if more {
        return Some("it holds more than one statement".to_string());
    }
    top_level_words(sql)
        .into_iter()
        .find(|(w, _)| {
            WRITING
                .iter()
                .chain(&SIDE_EFFECTS)
                .any(|k| w.eq_ignore_ascii_case(k))
        })
        .map(|(w, _)| format!("it uses {}", w.to_ascii_uppercase()))
}

/// For an `INSERT INTO <table> …` without a `RETURNING` clause: the table
/// as written (`items`, `"Items"`, `s.items`), and the statement's length
/// without a trailing `;` and comments (where a `RETURNING` can go).
pub fn insert_target(sql: &str) -> Option<(String, usize)> {
    if first_keyword(sql) != "INSERT" {
        return None;
    }
    let words = top_level_words(sql);
    if words
        .iter()
        .any(|(w, _)| w.eq_ignore_ascii_case("RETURNING"))
    {
        return None;
    }
    let into = words
        .iter()
        .position(|(w, _)| w.eq_ignore_ascii_case("INTO"))?;
    let start = words[into].1 + 4;
    // The table name: identifiers and quoted identifiers joined by dots.
    let b = sql.as_bytes();
    let mut i = start;
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    let name_start = i;
    loop {
        if i < b.len() && b[i] == b'"' {
            i = skip_quoted(b, i, b'"', false);
        } else {
            let n = b[i..]
                .iter()
                .take_while(|x| {
                    x.is_ascii_alphanumeric() || **x == b'_' || **x == b'$' || **x >= 0x80
                })
                .count();
            if n == 0 {
                return None;
            }
            i += n;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
        } else {
            break;
        }
    }
    let table = sql[name_start..i].to_string();
    Some((table, statement_end(sql)))
}

/// Words outside literals, identifiers and comments, with their offsets.
fn top_level_words(sql: &str) -> Vec<(&str, usize)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if let Some((end, _)) = skip_non_code(b, i) {
            i = end;
            continue;
        }
        match b[i] {
            x if x.is_ascii_alphabetic() || x == b'_' => {
                let n = b[i..]
                    .iter()
                    .take_while(|x| x.is_ascii_alphanumeric() || **x == b'_' || **x == b'$')
                    .count();
                out.push((&sql[i..i + n], i));
                i += n;
            }
            _ => i += 1,
        }
    }
    out
}

/// The length of `sql` without trailing whitespace, comments and `;`.
fn statement_end(sql: &str) -> usize {
    let b = sql.as_bytes();
    // The end of the last token that is not a comment, whitespace or `;`.
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        if let Some((end, comment)) = skip_non_code(b, i) {
            i = end;
            if !comment {
                last = i;
            }
            continue;
        }
        match b[i] {
            x if x.is_ascii_whitespace() || x == b';' => i += 1,
            _ => {
                i += 1;
                last = i;
            }
        }
    }
    last
}

/// `name` as a quoted identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `s` as a quoted string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The values for a rewritten statement's placeholders, in `$n` order:
/// `names` is [`Rewritten::names`] (empty for positional placeholders),
/// `expected` the number of placeholders the database found. Named values
/// are matched to their names; a missing, unknown or repeated name, a
/// count that does not match, or a mix of styles is one clear error.
pub fn in_placeholder_order<'a>(
    names: &[String],
    expected: usize,
    params: ParamsRef<'a>,
    sql: &str,
) -> Result<Vec<ValueRef<'a>>> {
    if params.is_named() {
        if names.is_empty() {
            return Err(Error::invalid(format!(
                "`{}` has no :name placeholders but named values were given: pass Params::Positional, or write :name in the SQL",
                snippet(sql)
            )));
        }
        let mut out: Vec<Option<ValueRef<'a>>> = (0..expected).map(|_| None).collect();
        for i in 0..params.len() {
            let name = params.name(i).unwrap_or("");
            let idx = names.iter().position(|n| n == name).ok_or_else(|| {
                Error::invalid(format!(
                    "`{}` has no parameter :{name}; it has {}: check the name",
                    snippet(sql),
                    names
                        .iter()
                        .map(|n| format!(":{n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if out[idx].is_some() {
                return Err(Error::invalid(format!(
                    "parameter :{name} is given twice for `{}`: give each name once",
                    snippet(sql)
                )));
            }
            out[idx] = Some(params.value(i));
        }
        let missing: Vec<String> = out
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_none())
            .map(|(i, _)| format!(":{}", names.get(i).map_or("?", |s| s.as_str())))
            .collect();
        if !missing.is_empty() {
            return Err(Error::invalid(format!(
                "`{}` has {expected} parameter(s) but {} value(s) were given; missing: {}",
                snippet(sql),
                params.len(),
                missing.join(", ")
            )));
        }
        return Ok(out.into_iter().flatten().collect());
    }
    if !names.is_empty() && !params.is_empty() {
        return Err(Error::invalid(format!(
            "`{}` uses :name placeholders but positional values were given: pass Params::Named",
            snippet(sql)
        )));
    }
    if params.len() != expected {
        return Err(Error::invalid(format!(
            "`{}` has {expected} parameter(s) but {} value(s) were given: pass one value per placeholder",
            snippet(sql),
            params.len()
        )));
    }
    Ok((0..params.len()).map(|i| params.value(i)).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reading_statements_are_told_apart() {
        for sql in [
            "SELECT * FROM t WHERE note = 'delete me; drop table t'",
            "  -- a comment\n(SELECT 1)",
            "WITH x AS (SELECT 1) SELECT * FROM x;",
            "select \"update\" from t -- insert\n ;  ",
            "VALUES (1), (2)",
            "SELECT * FROM t WHERE id = $1 AND name = ?",
        ] {
            assert_eq!(super::writes(sql), None, "{sql}");
        }
        for (sql, why) in [
            ("DELETE FROM t", "DELETE statement"),
            ("SELECT 1; DELETE FROM t", "more than one statement"),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "uses DELETE",
            ),
            ("SELECT * INTO t2 FROM t", "uses INTO"),
            ("SELECT * FROM t FOR UPDATE", "uses UPDATE"),
            ("/* /* */ DELETE FROM users -- */ SELECT 1", "block comment"),
            (
                "SELECT 1 /* /* */ ; DELETE FROM users -- */",
                "block comment",
            ),
            (
                "WITH a AS (SELECT 1 AS [']) DELETE FROM users -- '",
                "'[' or '`'",
            ),
            (
                "SELECT set_config('standard_conforming_strings','off',false)",
                "uses SET_CONFIG",
            ),
            (
                "WITH x AS (SELECT '\\'' AS q) SELECT q FROM x -- '",
                "backslash",
            ),
            ("SELECT $a$; DELETE FROM t; $a$", "'$'"),
            (
                "SELECT content FROM read_text('/run/secrets/key')",
                "uses READ_TEXT",
            ),
            ("SELECT nextval('s')", "uses NEXTVAL"),
            ("", "does not start"),
        ] {
            assert!(
                super::writes(sql).is_some_and(|w| w.contains(why)),
                "{sql}: {:?}",
                super::writes(sql)
            );
        }
    }

    use super::*;

    fn rw(sql: &str) -> String {
        rewrite(sql).unwrap().sql
    }

    #[test]
    fn positional() {
        assert_eq!(rw("SELECT ?, ?"), "SELECT $1, $2");
        assert_eq!(rw("SELECT ?2, ?1"), "SELECT $2, $1");
        assert_eq!(rw("SELECT $1"), "SELECT $1");
    }

    #[test]
    fn named() {
        let r = rewrite("SELECT :a, :b_2, :a").unwrap();
        assert_eq!(r.sql, "SELECT $1, $2, $1");
        assert_eq!(r.names, ["a", "b_2"]);
        assert_eq!(rw("SELECT x::text, :v::int"), "SELECT x::text, $1::int");
        assert_eq!(rw("SELECT a[1:2], a[lo:hi]"), "SELECT a[1:2], a[lo:hi]");
        assert_eq!(
            rw("WHERE x=:v AND y IN (:a,:b)"),
            "WHERE x=$1 AND y IN ($2,$3)"
        );
        assert!(rewrite("SELECT ?, :a").is_err());
        assert!(rewrite("SELECT :a, ?").is_err());
    }

    #[test]
    fn never_inside_literals_identifiers_or_comments() {
        for sql in [
            "SELECT 'what? :not_a_param'",
            "SELECT 'it''s ? :x'",
            "SELECT E'it\\'s ? :x'",
            "SELECT \"odd?col:x\" FROM t",
            "SELECT 1 -- what? :x\n",
            "SELECT 1 /* ? /* :x */ ? */",
            "SELECT $$ ? :x $$",
            "SELECT $fn$ ? :x $fn$",
            "SELECT U&'d\\0061t\\+000061 ?'",
        ] {
            let r = rewrite(sql).unwrap();
            assert_eq!(r.sql, sql, "{sql}");
            assert!(r.names.is_empty(), "{sql}");
        }
        assert_eq!(
            rw("SELECT 'a?' || ? -- ?\n, :: /* x */"),
            "SELECT 'a?' || $1 -- ?\n, :: /* x */"
        );
        assert_eq!(rw("SELECT $$?$$, ?"), "SELECT $$?$$, $1");
        assert_eq!(rw("SELECT d ?? 'k', ?"), "SELECT d ? 'k', $1");
        assert_eq!(rw("SELECT $1, $a$ ? $a$"), "SELECT $1, $a$ ? $a$");
    }

    #[test]
    fn statement_facts() {
        assert_eq!(first_keyword("  -- c\n /* x */ (select 1)"), "SELECT");
        assert!(is_ddl("create table t (x int)"));
        assert!(!is_ddl("insert into t values (1)"));
        assert_eq!(
            insert_target("INSERT INTO items (a) VALUES ($1); -- done"),
            Some(("items".into(), "INSERT INTO items (a) VALUES ($1)".len()))
        );
        assert_eq!(
            insert_target("insert into \"My T\".x values (1)")
                .unwrap()
                .0,
            "\"My T\".x"
        );
        assert_eq!(insert_target("INSERT INTO t VALUES (1) RETURNING id"), None);
        assert_eq!(
            insert_target("INSERT INTO t VALUES ('returning')")
                .unwrap()
                .0,
            "t"
        );
        assert_eq!(insert_target("SELECT 1"), None);
        // A typed literal whose type name ends in `e` is no E'' string: its
        // backslash is a plain character.
        assert_eq!(
            insert_target("INSERT INTO t (n) VALUES (name'C:\\'); -- x"),
            Some(("t".into(), "INSERT INTO t (n) VALUES (name'C:\\')".len()))
        );
    }
}
