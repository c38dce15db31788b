//! The wire fingerprint: a hash of everything whose shape crosses the
//! plugin boundary, so a host refuses a plugin built against a core whose
//! wire types changed without a version change (see docs/abi.md).
//!
//! What is hashed, from `src/`: every struct and enum that derives serde's
//! `Serialize` or `Deserialize` (its attributes, fields and variants), the
//! `#[repr(C)]` items (the FFI's own types, `RawValue`), and the lines of
//! the boundary's method lists (tag, mode, name, types). Comments and
//! layout are left out, so documentation and formatting never change it;
//! function bodies are left out, so fixing a helper never does.
//! Written to `$OUT_DIR/wire.rs` as `WIRE_FINGERPRINT`; the items hashed
//! are listed in `$OUT_DIR/wire-items.txt`.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=src");
    let mut files = Vec::new();
    collect(Path::new("src"), &mut files);
    files.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut listed = String::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read a source file");
        for item in wire_items(&text) {
            listed.push_str(&format!("{}: {item}\n", f.display()));
            for b in item.bytes().chain(std::iter::once(b'\n')) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // What was hashed, to see why two cores differ.
    std::fs::write(out.join("wire-items.txt"), listed).expect("write wire-items.txt");
    std::fs::write(
        out.join("wire.rs"),
        format!("/// A hash of the wire types this core was built with.\npub const WIRE_FINGERPRINT: u64 = {hash:#018x};\n"),
    )
    .expect("write wire.rs");
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("tests.rs") {
            out.push(p);
        }
    }
}

/// The source lines without comments, trimmed, empty ones dropped, up to
/// the file's test module.
fn code_lines(text: &str) -> Vec<String> {
    text.lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The wire-shaped items of one file, each as one normalised string.
fn wire_items(text: &str) -> Vec<String> {
    let lines = code_lines(text);
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        // A boundary method-list line: `<tag> <mode> fn name(...) -> T;`.
        if l.split_whitespace()
            .next()
            .is_some_and(|t| t.parse::<u16>().is_ok())
            && l.contains(" fn ")
        {
            items.push(l.clone());
            i += 1;
            continue;
        }
        let wire_attr = l.starts_with("#[derive(")
            && (l.contains("Serialize") || l.contains("Deserialize"))
            || l.starts_with("#[repr(C");
        if !wire_attr {
            i += 1;
            continue;
        }
        // The attributes, then the item up to its end.
        let mut item = String::new();
        let mut depth = 0i32;
        let mut opened = false;
        while i < lines.len() {
            let l = &lines[i];
            item.push_str(l);
            item.push(' ');
            i += 1;
            if l.starts_with("#[")
                && !opened
                && depth == 0
                && !l.contains("struct ")
                && !l.contains("enum ")
            {
                continue;
            }
            for c in l.chars() {
                match c {
                    '{' | '(' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' | ')' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth <= 0 && (l.ends_with('}') || l.ends_with(';')) {
                break;
            }
        }
        items.push(item);
    }
    items
}
