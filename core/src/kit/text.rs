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

/// What a panic said: its message when it carried one (a `&str` or a
/// `String`, as `panic!` makes), otherwise "no message".
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// A serde or TOML message in the words of whoever wrote the file: Rust
/// type names become what they mean (`usize` → "a whole number, 0 or
/// more", `struct RawStore` → "a table of settings"), "field" becomes
/// "key", and an unknown key close to a known one gets "did you mean".
pub fn plain_serde(msg: &str) -> String {
    const NAMES: [(&str, &str); 14] = [
        ("usize", "a whole number, 0 or more"),
        ("u64", "a whole number, 0 or more"),
        ("u32", "a whole number, 0 or more"),
        ("u16", "a whole number, 0 or more"),
        ("u8", "a whole number, 0 or more"),
        ("isize", "a whole number"),
        ("i64", "a whole number"),
        ("i32", "a whole number"),
        ("i16", "a whole number"),
        ("i8", "a whole number"),
        ("f64", "a number"),
        ("f32", "a number"),
        ("a borrowed string", "a string"),
        ("unit", "nothing"),
    ];
    let mut out = msg.replace('\n', " ");
    for (rust, plain) in NAMES {
        out = out.replace(&format!("expected {rust}"), &format!("expected {plain}"));
    }
    // `expected struct RawStore` / `expected struct CustomConfig`.
    while let Some(i) = out.find("expected struct ") {
        let rest = &out[i + "expected struct ".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        out = format!("{}expected a table of settings{}", &out[..i], &rest[end..]);
    }
    if let Some(rest) = out.strip_prefix("unknown field `") {
        if let Some((key, known)) = rest.split_once("`, expected ") {
            let names: Vec<&str> = known
                .trim_start_matches("one of ")
                .split(", ")
                .map(|k| k.trim_matches('`'))
                .collect();
            let near = names
                .iter()
                .filter(|k| edits(key, k) <= 2)
                .min_by_key(|k| edits(key, k));
            return match near {
                Some(k) => format!(
                    "unknown key '{key}': did you mean '{k}'? (the keys are {})",
                    names.join(", ")
                ),
                None => format!("unknown key '{key}' (the keys are {})", names.join(", ")),
            };
        }
    }
    out.replace("missing field", "missing key")
}

/// Levenshtein distance, for "did you mean".
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_in_plain_words() {
        assert_eq!(
            plain_serde("invalid value: integer `-1`, expected usize"),
            "invalid value: integer `-1`, expected a whole number, 0 or more"
        );
        assert_eq!(
            plain_serde("invalid type: integer `3`, expected struct RawStore"),
            "invalid type: integer `3`, expected a table of settings"
        );
        assert_eq!(
            plain_serde("unknown field `max_mesages`, expected one of `max_messages`, `ttl`"),
            "unknown key 'max_mesages': did you mean 'max_messages'? (the keys are max_messages, ttl)"
        );
        assert_eq!(
            plain_serde("unknown field `zzz`, expected `ttl`"),
            "unknown key 'zzz' (the keys are ttl)"
        );
        assert_eq!(plain_serde("missing field `url`"), "missing key `url`");
    }

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
