//! The conformance settings file: how to make a fresh store of each
//! capability on the backend under test.
//!
//! ```toml
//! [conformance]
//! backend = "sqlite"        # which backend of the library (default: all)
//! case_timeout = "60s"      # a case that takes longer fails (default 120s)
//!
//! [store]                   # plugins.toml keys for every store
//! path = "{scratch}/{ns}.db"
//!
//! [cache]                   # keys for cache stores only, over [store]
//! # ...
//! ```
//!
//! `{scratch}` in a string becomes the case's own empty folder and `{ns}`
//! a name no other case uses (for a prefix, schema or collection prefix on
//! a shared server). `${VAR}` and `${VAR:-default}` are read from the
//! environment, as in plugins.toml. The keys are the store section's keys,
//! exactly as the plugin's README documents them.

use crate::Scratch;
use backplane_host::Capability;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// What a settings file says.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The backend to test (`None`: every backend the library provides).
    pub backend: Option<String>,
    /// How long one case may take.
    pub case_timeout: Option<Duration>,
    store: toml::Table,
    per_capability: BTreeMap<Capability, toml::Table>,
}

const SECTIONS: &str = "[conformance], [store], [relational], [vector], [cache] or [graph]";

impl Settings {
    /// Read a settings file. The error is one line naming the file.
    pub fn load(path: &Path) -> Result<Settings, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the conformance settings {}: {e}",
                path.display()
            )
        })?;
        Settings::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parse a settings file's text.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().lines().collect::<Vec<_>>().join(": ");
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            }
        })?;
        let mut s = Settings::default();
        for (key, value) in doc {
            let table = match value {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(format!(
                        "'{key}' must be a section ({SECTIONS}), not a value at the top"
                    ))
                }
            };
            if key == "conformance" {
                for (k, v) in table {
                    match (k.as_str(), v) {
                        ("backend", toml::Value::String(b)) => s.backend = Some(b),
                        ("case_timeout", toml::Value::String(t)) => {
                            s.case_timeout = Some(humantime::parse_duration(&t).map_err(|_| {
                                format!("[conformance] case_timeout = \"{t}\" is not a duration: write e.g. \"60s\" or \"2m\"")
                            })?)
                        }
                        ("backend" | "case_timeout", _) => {
                            return Err(format!("[conformance] {k} must be a string"))
                        }
                        _ => {
                            return Err(format!(
                                "[conformance] has no key '{k}': it takes backend and case_timeout"
                            ))
                        }
                    }
                }
            } else if key == "store" {
                s.store = table;
            } else if let Some(cap) = Capability::parse(&key) {
                s.per_capability.insert(cap, table);
            } else {
                return Err(format!("unknown section [{key}]: expected {SECTIONS}"));
            }
        }
        Ok(s)
    }

    /// The store section's lines (without the `backend` line) for a fresh
    /// store of `cap`: `[store]`, then the capability's own section, then
    /// `suite` (options the cases rely on, which win), with `{scratch}` and
    /// `{ns}` filled in.
    pub fn options(&self, cap: Capability, suite: &str, scratch: &Scratch, ns: &str) -> String {
        let mut t = self.store.clone();
        if let Some(own) = self.per_capability.get(&cap) {
            t.extend(own.clone());
        }
        if let Ok(suite) = suite.parse::<toml::Table>() {
            t.extend(suite);
        }
        t.remove("backend");
        let folder = scratch.0.display().to_string();
        fill(&mut t, &folder, ns);
        // One `key = value` line each, a table as an inline table, so the
        // lines stay inside the store's section.
        t.iter()
            .map(|(k, v)| {
                let bare = !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if bare {
                    format!("{k} = {v}\n")
                } else {
                    format!("{} = {v}\n", toml::Value::String(k.clone()))
                }
            })
            .collect()
    }
}

fn fill(t: &mut toml::Table, scratch: &str, ns: &str) {
    for (_, v) in t.iter_mut() {
        fill_value(v, scratch, ns);
    }
}

fn fill_value(v: &mut toml::Value, scratch: &str, ns: &str) {
    match v {
        toml::Value::String(s) => *s = s.replace("{scratch}", scratch).replace("{ns}", ns),
        toml::Value::Array(a) => a.iter_mut().for_each(|v| fill_value(v, scratch, ns)),
        toml::Value::Table(t) => fill(t, scratch, ns),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_merge_and_placeholders_fill() {
        let s = Settings::parse(
            "[conformance]\nbackend = \"x\"\ncase_timeout = \"5s\"\n[store]\npath = \"{scratch}/{ns}.db\"\nttl = \"9s\"\nencryption = { key_file = \"{scratch}/k\" }\n[cache]\nprefix = \"p:{ns}:\"\n",
        )
        .unwrap();
        assert_eq!(s.backend.as_deref(), Some("x"));
        assert_eq!(s.case_timeout, Some(Duration::from_secs(5)));
        let scratch = Scratch::new();
        let o = s.options(Capability::Cache, "ttl = \"1s\"", &scratch, "n1");
        let t: toml::Table = o.parse().unwrap();
        assert_eq!(t["prefix"].as_str(), Some("p:n1:"));
        assert_eq!(t["ttl"].as_str(), Some("1s"), "the suite's options win");
        assert!(t["path"].as_str().unwrap().ends_with("/n1.db"));
        assert!(t["encryption"]["key_file"]
            .as_str()
            .unwrap()
            .ends_with("/k"));
        assert!(
            !o.lines().any(|l| l.starts_with('[')),
            "lines of one section: {o}"
        );
        let v: toml::Table = s
            .options(Capability::Vector, "", &scratch, "n2")
            .parse()
            .unwrap();
        assert!(!v.contains_key("prefix"));
    }

    #[test]
    fn mistakes_are_one_line() {
        for (text, says) in [
            ("[stores]\n", "unknown section [stores]"),
            ("path = 1\n", "must be a section"),
            ("[conformance]\nbackends = \"x\"\n", "has no key 'backends'"),
            ("[conformance]\ncase_timeout = \"soon\"\n", "not a duration"),
            ("[store\n", "line 1"),
            ("[store]\na = 1\n[cache\n", "line 3"),
        ] {
            let e = Settings::parse(text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
