//! Text shown in messages.

/// The longest statement text [`snippet`] keeps, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// A statement as error messages show it: whitespace runs (line breaks
/// included) folded to one space, and cut after [`SNIPPET_CHARS`]
/// characters with `…`.
pub fn snippet(sql: &str) -> String {
    let one_line: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(SNIPPET_CHARS) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_and_cuts() {
        assert_eq!(
            snippet("SELECT *\n  FROM t\tWHERE x = 1;\n"),
            "SELECT * FROM t WHERE x = 1;"
        );
        assert_eq!(snippet(""), "");
        let long = "é".repeat(SNIPPET_CHARS + 5);
        let s = snippet(&long);
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
        assert!(s.ends_with('…'));
        let exact = "x".repeat(SNIPPET_CHARS);
        assert_eq!(snippet(&exact), exact);
    }
}
