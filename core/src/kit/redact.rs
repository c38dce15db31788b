//! Keeping secrets out of messages, logs and `Debug` output.
//!
//! - [`redact_url`]: a connection string with its password masked, for
//!   error messages and health lines.
//! - [`redact_options`]: a store's JSON options with secret-looking keys
//!   and the passwords of URLs masked, for logs and `Debug`.
//! - [`Secret`]: a config field that deserializes as its plain value and
//!   prints as `***`.
//!
//! The mask is always [`MASK`]; what surrounds it (user, hosts, database,
//! other parameters) stays, so a message still says where a call went.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// Whether an option or parameter named `key` holds a secret: its name
/// contains `password`, `passwd`, `pwd`, `secret`, `token`, `api_key`,
/// `apikey`, `api-key`, `access_key`, `private_key` or `credential`
/// (case-insensitive), so `sslpassword`, `auth_token` and `API_KEY` count.
pub fn is_secret_key(key: &str) -> bool {
    const WORDS: [&str; 11] = [
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "api-key",
        "access_key",
        "private_key",
        "credential",
    ];
    let k = key.to_ascii_lowercase();
    WORDS.iter().any(|w| k.contains(w))
}

/// `s` with every password in it replaced by `***`. Understands:
///
/// - URLs: `scheme://user:pass@host/…` → `scheme://user:***@host/…`. The
///   user info ends at the last `@` before the query, so a password holding
///   `@`, `:` or `/` is masked whole; `redis://:pass@host` (password
///   only) and multi-host `postgres://u:p@h1:5432,h2:5433/db` work the same
///   way.
/// - Query parameters whose name looks secret ([`is_secret_key`]):
///   `?password=…`, `&sslpassword=…`, `api_key`, `token`, ….
/// - PostgreSQL `key=value` strings (`host=x password='a b' user=y`), with
///   libpq's quoting: the value of a secret-looking key becomes `***`.
///
/// Anything else (a path, a plain word) is returned as it is.
pub fn redact_url(s: &str) -> String {
    match authority_start(s) {
        Some(start) => redact_uri(s, start),
        None if s.contains('=') => redact_conninfo(s),
        None => s.to_string(),
    }
}

/// The user info of a URL (`user:password` in `scheme://user:password@host`),
/// taken up to the last `@` before the hosts, so a password holding `@` or
/// `:` is whole. `None` when `s` is not a URL or has none.
pub fn userinfo(s: &str) -> Option<&str> {
    let start = authority_start(s)?;
    let rest = &s[start..];
    userinfo_end(rest).map(|at| &rest[..at])
}

/// `s` with the reserved characters of its user info (`@`, `/`, `?`, `#`)
/// percent-encoded, so that a URL parser that splits at the first `@`
/// reads the same user and password as [`redact_url`] and [`userinfo`] do
/// (`postgres://u:p@ss@h/db` → `postgres://u:p%40ss@h/db`). Drivers decode
/// the user info, so the password they send is unchanged.
pub fn encode_userinfo(s: &str) -> std::borrow::Cow<'_, str> {
    let Some(info) = userinfo(s) else {
        return std::borrow::Cow::Borrowed(s);
    };
    if !info.contains(['@', '/', '?', '#']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let start = authority_start(s).unwrap_or(0);
    let encoded = info
        .replace('@', "%40")
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('#', "%23");
    std::borrow::Cow::Owned(format!(
        "{}{encoded}{}",
        &s[..start],
        &s[start + info.len()..]
    ))
}

/// `text` with every occurrence of each of `secrets` (empty ones skipped)
/// replaced by `***`: for a message that quotes what a library said about
/// a connection string it was given.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        out = out.replace(s, MASK);
    }
    out
}

/// Where the part after `scheme://` starts, when `s` is a URL.
fn authority_start(s: &str) -> Option<usize> {
    let i = s.find("://")?;
    let scheme = s[..i].trim_start();
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(i + 3)
}

/// Where the user info of `rest` (a URL after `scheme://`) ends: the `@`
/// that separates it from the hosts, if there is one.
fn userinfo_end(rest: &str) -> Option<usize> {
    // `scheme:///path`: no hosts, no user info (Unix sockets).
    if rest.starts_with('/') {
        return None;
    }
    let head_end = rest.find(['?', '#']).unwrap_or(rest.len());
    if let Some(at) = rest[..head_end].rfind('@') {
        return Some(at);
    }
    // A password holding `?` or `#` puts them before the `@`: `u:pa?ss@h`.
    // A host and port (`h:5432?x=a@b`) are not taken for user info.
    let head = &rest[..head_end];
    let (_, after_colon) = head.split_once(':')?;
    let looks_like_port = after_colon
        .split(',')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if head.contains('/') || looks_like_port {
        return None;
    }
    let tail = &rest[head_end..];
    let upto = tail.find('/').unwrap_or(tail.len());
    tail[..upto].rfind('@').map(|at| head_end + at)
}

fn redact_uri(s: &str, start: usize) -> String {
    let rest = &s[start..];
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..start]);
    let after = match userinfo_end(rest) {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..=colon]);
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    let Some(q) = after.find('?') else {
        out.push_str(after);
        return out;
    };
    out.push_str(&after[..=q]);
    let query = &after[q + 1..];
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, _)) if is_secret_key(k) => {
                out.push_str(k);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
    out
}

/// A libpq `key = value` string, secret values masked; the rest (spacing
/// included) unchanged.
fn redact_conninfo(s: &str) -> String {
    let b = s.as_bytes();
    let n = b.len();
    let ws = |c: u8| c.is_ascii_whitespace();
    // One character on from byte `i`, which starts a character.
    let next_char = |mut i: usize| {
        i += 1;
        while i < n && !s.is_char_boundary(i) {
            i += 1;
        }
        i
    };
    let mut out = String::with_capacity(n);
    let mut i = 0;
    while i < n {
        let start = i;
        while i < n && ws(b[i]) {
            i += 1;
        }
        out.push_str(&s[start..i]);
        if i == n {
            break;
        }
        let key_start = i;
        while i < n && !ws(b[i]) && b[i] != b'=' {
            i = next_char(i);
        }
        let key = &s[key_start..i];
        while i < n && ws(b[i]) {
            i += 1;
        }
        if i == n || b[i] != b'=' {
            // A word without `=`: kept as it is.
            out.push_str(&s[key_start..i]);
            continue;
        }
        i += 1;
        while i < n && ws(b[i]) {
            i += 1;
        }
        out.push_str(&s[key_start..i]);
        // The value: up to white space outside single quotes; a backslash
        // takes the next character as it is.
        let value_start = i;
        let mut quoted = false;
        while i < n {
            match b[i] {
                b'\\' => i = if i + 1 < n { next_char(i + 1) } else { n },
                b'\'' => {
                    quoted = !quoted;
                    i += 1;
                }
                c if ws(c) && !quoted => break,
                _ => i = next_char(i),
            }
        }
        if is_secret_key(key) {
            out.push_str(MASK);
        } else {
            out.push_str(&s[value_start..i]);
        }
    }
    out
}

/// `options` (a store's section as JSON) with secrets masked, for logs and
/// `Debug`: the value of every key that looks secret ([`is_secret_key`]) is
/// `"***"`, and every string, in objects and arrays at any depth, goes
/// through [`redact_url`].
pub fn redact_options(options: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match options {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String(MASK.into())
                    } else {
                        redact_options(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact_options).collect()),
        Value::String(s) => Value::String(redact_url(s)),
        other => other.clone(),
    }
}

/// A secret config value: deserializes as the plain value (`password =
/// "…"` in plugins.toml), and prints as `***` through `Debug` and
/// `Display`, so a config struct can derive `Debug`. Read it with
/// [`expose`](Self::expose) where it is used.
///
/// It has no `Serialize`: writing a config back out never writes the
/// secret by accident.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wrap a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value, unwrapped.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn userinfo_with_at_and_colon_is_whole() {
        assert_eq!(userinfo("postgres://u:p:a@ss@h:5432/db"), Some("u:p:a@ss"));
        assert_eq!(userinfo("http://h:6334"), None);
        assert_eq!(
            encode_userinfo("postgres://u:p:a@ss@h:5432/db"),
            "postgres://u:p:a%40ss@h:5432/db"
        );
        assert_eq!(encode_userinfo("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            scrub("failed at http://u:p@ss@h/", &["u:p@ss", ""]),
            "failed at http://***@h/"
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn urls() {
        for (url, shown) in [
            // Nothing to hide.
            ("redis://h:6379/0", "redis://h:6379/0"),
            ("redis://user@h", "redis://user@h"),
            (
                "redis+unix:///tmp/r.sock?db=1",
                "redis+unix:///tmp/r.sock?db=1",
            ),
            ("http://127.0.0.1:6334", "http://127.0.0.1:6334"),
            ("not a url", "not a url"),
            ("data/users.db", "data/users.db"),
            ("", ""),
            // User and password.
            (
                "redis://alice:s3cret@h:6379/0",
                "redis://alice:***@h:6379/0",
            ),
            (
                "postgres://app:hunter2@h:5432/db",
                "postgres://app:***@h:5432/db",
            ),
            ("https://u:p@h", "https://u:***@h"),
            // Password only (Redis).
            ("redis://:pw@h:6379", "redis://:***@h:6379"),
            ("rediss://:pw@h", "rediss://:***@h"),
            // Passwords holding `@`, `:`, `/`, `?`, `#`.
            ("redis://u:p@ss@h/1?x=y", "redis://u:***@h/1?x=y"),
            ("postgres://u:a@b@c@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u:pa:ss@h/db", "postgres://u:***@h/db"),
            ("redis://:a:b@c@h", "redis://:***@h"),
            (
                "postgres://u:ab/c+d==@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            (
                "postgres://u:pa?ss@h:5432/db?sslmode=disable",
                "postgres://u:***@h:5432/db?sslmode=disable",
            ),
            ("postgres://u:pa#ss@h/db", "postgres://u:***@h/db"),
            // Several hosts.
            (
                "postgres://u:p@h1:5432,h2:5433/db?target_session_attrs=read-write",
                "postgres://u:***@h1:5432,h2:5433/db?target_session_attrs=read-write",
            ),
            (
                "postgresql://u:p@ss@h1,h2/db",
                "postgresql://u:***@h1,h2/db",
            ),
            // Secrets in the query.
            (
                "postgres://app:hunter2@h:5432/db?password=x&a=b",
                "postgres://app:***@h:5432/db?password=***&a=b",
            ),
            (
                "postgres://u@h/db?sslpassword=k&sslmode=disable",
                "postgres://u@h/db?sslpassword=***&sslmode=disable",
            ),
            (
                "http://h:6334/?api_key=abc&timeout=3",
                "http://h:6334/?api_key=***&timeout=3",
            ),
            ("https://h/x?token=t#frag", "https://h/x?token=***#frag"),
            (
                "https://h/x?Auth_Token=t&API-KEY=k",
                "https://h/x?Auth_Token=***&API-KEY=***",
            ),
            // An `@` in the query is not user info.
            (
                "postgres://h/db?application_name=a@b",
                "postgres://h/db?application_name=a@b",
            ),
            (
                "postgres://h:5432?application_name=a@b",
                "postgres://h:5432?application_name=a@b",
            ),
            ("  redis://u:p@h", "  redis://u:***@h"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn conninfo_strings() {
        for (s, shown) in [
            (
                "host=h password=hunter2 user=u",
                "host=h password=*** user=u",
            ),
            ("host=x password='a b' user=y", "host=x password=*** user=y"),
            (
                "host=x password = 'it''s' user=y",
                "host=x password = *** user=y",
            ),
            (r"password='a\' b' host=h", "password=*** host=h"),
            (r"password=a\ b host=h", "password=*** host=h"),
            (
                "host=h1,h2 dbname=app sslpassword=k",
                "host=h1,h2 dbname=app sslpassword=***",
            ),
            ("PASSWORD=x", "PASSWORD=***"),
            ("password='unterminated host=h", "password=***"),
            ("password=", "password=***"),
            ("password=pässwörd host=ü", "password=*** host=ü"),
            (r"password='\é' host=h", "password=*** host=h"),
            ("host=h user=u", "host=h user=u"),
            ("word password", "word password"),
        ] {
            assert_eq!(redact_url(s), shown, "{s}");
        }
    }

    #[test]
    fn secrets_never_survive() {
        let secret = "Zq9@x:y/z?w#v";
        for url in [
            format!("redis://u:{secret}@h:6379/0"),
            format!("redis://:{secret}@h"),
            format!("postgres://u:{secret}@h1:1,h2:2/db"),
            format!("postgres://u@h/db?password={secret}"),
            format!("host=h password='{secret}'"),
        ] {
            let shown = redact_url(&url);
            assert!(!shown.contains("Zq9"), "{url} -> {shown}");
        }
    }

    #[test]
    fn options() {
        let o = json!({
            "url": "redis://u:hunter2@h:1",
            "nodes": ["redis://:n0de@a:7000", "redis://b:7001"],
            "password": "hunter2",
            "api_key": 12345,
            "tls": {"key_file": "k.pem", "client_secret": "s"},
            "pool_size": 4,
            "path": "data/x.db",
        });
        let r = redact_options(&o);
        let text = r.to_string();
        for leaked in ["hunter2", "n0de", "12345", "\"s\""] {
            assert!(!text.contains(leaked), "{text}");
        }
        assert_eq!(r["url"], "redis://u:***@h:1");
        assert_eq!(r["nodes"][0], "redis://:***@a:7000");
        assert_eq!(r["nodes"][1], "redis://b:7001");
        assert_eq!(r["password"], "***");
        assert_eq!(r["api_key"], "***");
        assert_eq!(r["tls"]["key_file"], "k.pem");
        assert_eq!(r["tls"]["client_secret"], "***");
        assert_eq!(r["pool_size"], 4);
        assert_eq!(r["path"], "data/x.db");
        assert_eq!(redact_options(&json!(null)), json!(null));
    }

    #[test]
    fn secret_keys() {
        for k in [
            "password",
            "sslpassword",
            "PASSWORD",
            "api_key",
            "apiKey",
            "auth_token",
            "client_secret",
            "credentials",
            "pwd",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["url", "user", "host", "key_file", "prefix", "timeout_ms"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn secret_values() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Cfg {
            user: String,
            password: Option<Secret<String>>,
        }
        let c: Cfg = serde_json::from_value(json!({"user": "u", "password": "hunter2"})).unwrap();
        assert_eq!(
            c.password.as_ref().map(|s| s.expose().as_str()),
            Some("hunter2")
        );
        let shown = format!("{c:?} {}", c.password.as_ref().unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(shown, "Cfg { user: \"u\", password: Some(***) } ***");
        let c: Cfg = serde_json::from_value(json!({"user": "u"})).unwrap();
        assert_eq!(c.password, None);
        let e = serde_json::from_value::<Cfg>(json!({"user": "u", "password": 3})).unwrap_err();
        assert!(e.to_string().contains("expected a string"), "{e}");
        assert_eq!(Secret::new(5).into_inner(), 5);
        assert_eq!(Secret::from("x"), Secret::new("x"));
    }
}
