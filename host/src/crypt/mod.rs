//! Encryption at rest: a layer on any cache, vector or graph store that
//! encrypts what it writes and decrypts what it reads, so the backend (a
//! SQLite file, a Redis server, a Qdrant or Chroma server, JSON files on
//! S3) only ever holds ciphertext for the parts that are encrypted.
//!
//! ```toml
//! [cache.conversations.encryption]
//! key_env = "BACKPLANE_KEY"            # or key_file = "/run/secrets/backplane.key"
//! old_keys_env = ["BACKPLANE_OLD_KEY"] # keys that still decrypt, during a rotation
//!
//! [vector.memories.encryption]
//! key_env = "BACKPLANE_KEY"
//! fields = ["text", "source.url"]     # payload fields (dotted paths); documents too
//!
//! [graph.knowledge.encryption]
//! key_env = "BACKPLANE_KEY"
//! fields = ["note"]                   # node and edge properties
//! ```
//!
//! # What is encrypted
//!
//! - **cache**: every value (`get`/`set`, batches, scans, imports) and the
//!   content of every message. Keys, channel names, message ids, roles,
//!   timestamps and message metadata stay readable: the backend needs them
//!   to find, order and expire things.
//! - **vector**: the document of every record (unless `documents = false`)
//!   and the payload fields named in `fields`. Vectors are not encrypted:
//!   the backend must compute distances on them. Ids stay readable.
//! - **graph**: the node and edge properties named in `fields`. Ids,
//!   labels, edge types and the structure stay readable.
//! - **relational**: not covered; a relational section with `encryption`
//!   is refused at load (the statements are SQL the host does not parse).
//!
//! A filter condition (`match`, `in`, `range`) on an encrypted field is
//! refused with an error naming the field: the backend cannot compare
//! ciphertext. `exists` still works (an encrypted value is present; `null`
//! is not encrypted). A graph text search (`NodeQuery::text`) still finds
//! text in encrypted properties: the layer asks the backend without the
//! text and searches the decrypted nodes itself, so it reads every node
//! that passes the label and filter.
//!
//! # The ciphertext
//!
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`), a random 192-bit
//! nonce per value. Every ciphertext starts with `BPE1` and the key's id
//! (the first 8 bytes of SHA-256 over a fixed label and the key), which is
//! also authenticated: bytes as `BPE1 | key id | nonce | ciphertext+tag`
//! (52 bytes more than the plaintext), and text (documents, message
//! contents, JSON fields) as `bpenc1:` and that in unpadded base64url. A
//! JSON field is encrypted as its JSON text, so a number or an object comes
//! back as it went in.
//!
//! A value read without the `BPE1` / `bpenc1:` mark is returned as it is:
//! that is data written before encryption was turned on, and `backplane
//! rekey` encrypts it. A value with the mark that does not authenticate is
//! an error (`Conflict`: changed or damaged), never garbage.
//!
//! # Keys
//!
//! A key is 32 random bytes, written as 64 hex digits or in base64
//! (`backplane key` prints a new one), in an environment variable or a
//! file — never in plugins.toml itself. When the store opens, the layer
//! reads a few records and checks their key id: data written under a key
//! that is not configured is one clear error at open (naming both key
//! ids), not garbage at the first read. To rotate: put the new key in
//! `key_env`/`key_file`, the old one in `old_keys_env`/`old_key_files`, run
//! `backplane rekey` (rewrites everything not under the new key, in place;
//! run again after an interruption, it skips what is done), then remove
//! the old key.
//!
//! # Layout
//!
//! - this file: the settings ([`EncryptionSpec`]), the keys and the
//!   envelope, the [`Rekey`] report;
//! - `cache`, `vector`, `graph`: the layer of each capability.

mod cache;
mod graph;
mod vector;

pub(crate) use cache::CryptCache;
pub(crate) use graph::CryptGraph;
pub(crate) use vector::CryptVector;

pub use crate::config::SecretSource;
use backplane_core::{Capability, Condition, Error, ErrorKind, Filter, Result};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::Deserialize;
use serde_json::Value as Json;
use sha2::Digest;
use std::path::Path;

/// The mark that starts every binary ciphertext.
const MAGIC: &[u8; 4] = b"BPE1";
/// The mark that starts every text ciphertext.
const TEXT_MARK: &str = "bpenc1:";
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = MAGIC.len() + KEY_ID_LEN;
/// What encryption adds to a binary value: the mark, the key id, the
/// nonce and the tag.
pub(crate) const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// How much larger than `max` plaintext bytes their ciphertext can be
/// (as text, the larger form: the mark and base64), so a store's limits
/// under the layer allow for it while the layer holds the plaintext to
/// `max`.
pub(crate) fn growth(max: usize) -> usize {
    let sealed = max.saturating_add(OVERHEAD);
    let text = TEXT_MARK.len() + sealed.saturating_mul(4).div_ceil(3);
    text.saturating_sub(max)
}
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A store's `encryption` table, parsed and checked (the keys themselves
/// are read when the store opens).
#[derive(Clone, Debug, PartialEq)]
pub struct EncryptionSpec {
    /// Where the current key is: the one new values are encrypted with.
    pub key: SecretSource,
    /// Keys that still decrypt (a rotation in progress).
    pub old_keys: Vec<SecretSource>,
    /// Vector payload fields / graph properties encrypted (dotted paths).
    pub fields: Vec<String>,
    /// Vector: whether documents are encrypted.
    pub documents: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    key_env: Option<String>,
    key_file: Option<String>,
    #[serde(default)]
    old_keys_env: Vec<String>,
    #[serde(default)]
    old_key_files: Vec<String>,
    #[serde(default)]
    fields: Vec<String>,
    documents: Option<bool>,
}

impl EncryptionSpec {
    /// Parse a store's `encryption` table; `base_dir` resolves relative
    /// key files. Errors are one line, without the section's name.
    pub fn parse(cap: Capability, v: &Json, base_dir: &Path) -> std::result::Result<Self, String> {
        let raw: RawSpec = serde_json::from_value(v.clone()).map_err(|e| {
            backplane_core::kit::text::plain_serde(&e.to_string())
                + " (the keys are key_env, key_file, old_keys_env, old_key_files, fields, documents)"
        })?;
        if cap == Capability::Relational {
            return Err("encryption covers cache, vector and graph stores; a relational store's statements are SQL the host does not rewrite: encrypt those columns in the application, or remove the table".into());
        }
        let key = match (raw.key_env, raw.key_file) {
            (Some(_), Some(_)) => {
                return Err("give the key once: key_env or key_file, not both".into())
            }
            (Some(e), None) if !e.is_empty() => SecretSource::Env(e),
            (None, Some(f)) if !f.is_empty() => {
                SecretSource::File(backplane_core::resolve_path(base_dir, &f))
            }
            _ => return Err(
                "no key: add key_env = \"BACKPLANE_KEY\" (a variable holding the key) or key_file = \"/path/to/key\"; `backplane key` prints a new key"
                    .into(),
            ),
        };
        let mut old_keys: Vec<SecretSource> = raw
            .old_keys_env
            .into_iter()
            .map(SecretSource::Env)
            .collect();
        old_keys.extend(
            raw.old_key_files
                .iter()
                .map(|f| SecretSource::File(backplane_core::resolve_path(base_dir, f))),
        );
        match cap {
            Capability::Cache if !raw.fields.is_empty() => {
                return Err(
                    "a cache encrypts every value and message content: remove fields".into(),
                )
            }
            Capability::Cache | Capability::Graph if raw.documents.is_some() => {
                return Err("documents is a vector store's setting: remove it".into())
            }
            _ => {}
        }
        match cap {
            Capability::Graph if raw.fields.is_empty() => {
                return Err("a graph encrypts the properties named in fields: add fields = [\"note\"] (the properties to encrypt)".into())
            }
            Capability::Vector if raw.fields.is_empty() && raw.documents == Some(false) => {
                return Err("nothing to encrypt: documents = false and no fields: name payload fields in fields, or remove the table".into())
            }
            _ => {}
        }
        if raw.fields.iter().any(|f| f == crate::tenant::TENANT_FIELD) {
            return Err(format!(
                "'{}' holds a record's tenant, which every tenant's filter compares: it cannot be encrypted",
                crate::tenant::TENANT_FIELD
            ));
        }
        if let Some(f) = raw
            .fields
            .iter()
            .find(|f| f.is_empty() || f.split('.').any(str::is_empty))
        {
            return Err(format!(
                "fields lists payload paths like \"text\" or \"source.url\", not \"{f}\""
            ));
        }
        Ok(EncryptionSpec {
            key,
            old_keys,
            fields: raw.fields,
            documents: raw.documents.unwrap_or(true),
        })
    }
}

/// One key: its id and its cipher. The key bytes live only inside the
/// cipher (which zeroes them when dropped).
struct Key {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

/// A key's id: what a ciphertext names it by.
fn key_id(key: &[u8; 32]) -> [u8; KEY_ID_LEN] {
    let mut h = sha2::Sha256::new();
    h.update(b"backplane encryption key id\0");
    h.update(key);
    let d = h.finalize();
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&d[..KEY_ID_LEN]);
    id
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A key's text: 64 hex digits, or base64 of 32 bytes; a file may also
/// hold the 32 bytes themselves. Never echoes the key.
fn parse_key(bytes: &[u8], from: &SecretSource) -> Result<[u8; 32]> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        let t = text.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut k = [0u8; 32];
            for (i, k) in k.iter_mut().enumerate() {
                *k = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).expect("hex digits");
            }
            return Ok(k);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
            .or_else(|_| B64.decode(t));
        if let Ok(d) = decoded {
            if let Ok(k) = <[u8; 32]>::try_from(d.as_slice()) {
                return Ok(k);
            }
        }
    }
    if matches!(from, SecretSource::File(_)) && bytes.len() == 32 {
        return Ok(bytes.try_into().expect("32 bytes"));
    }
    Err(Error::config(format!(
        "the {from} does not hold a key: a key is 32 random bytes written as 64 hex digits or in base64 (it holds {} bytes); `backplane key` prints a new one",
        bytes.len()
    )))
}

fn read_key(from: &SecretSource) -> Result<Key> {
    let bytes = from.read("encryption key")?;
    let key = parse_key(&bytes, from)?;
    Ok(Key {
        id: key_id(&key),
        cipher: XChaCha20Poly1305::new(&key.into()),
    })
}

/// A new random key, as 64 hex digits (what `backplane key` prints).
pub fn new_key_hex() -> String {
    hex(&XChaCha20Poly1305::generate_key(&mut OsRng))
}

/// A value as read: plaintext of a ciphertext, or a value written before
/// encryption was turned on.
#[derive(Debug)]
pub(crate) struct Opened<T> {
    pub(crate) value: T,
    /// Not under the current key (plaintext, or an old key): `rekey`
    /// rewrites it.
    pub(crate) stale: bool,
}

/// The keys of one store and what it encrypts.
pub(crate) struct Sealer {
    /// The store's name and backend, which every error names.
    store: (String, String),
    current: Key,
    old: Vec<Key>,
    fields: Vec<String>,
    documents: bool,
}

impl Sealer {
    /// Read the keys of `spec` for the store `name` on `backend`.
    pub(crate) fn open(name: &str, backend: &str, spec: &EncryptionSpec) -> Result<Sealer> {
        let wrap = |e: Error| Error::new(e.kind(), format!("encryption: {}", e.message()));
        let current = read_key(&spec.key).map_err(wrap)?;
        let mut old = Vec::new();
        for s in &spec.old_keys {
            let k = read_key(s).map_err(wrap)?;
            if k.id != current.id && !old.iter().any(|o: &Key| o.id == k.id) {
                old.push(k);
            }
        }
        Ok(Sealer {
            store: (name.to_string(), backend.to_string()),
            current,
            old,
            fields: spec.fields.clone(),
            documents: spec.documents,
        })
    }

    fn seal_raw(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.current.id);
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &out[..HEADER_LEN],
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any length this process can hold");
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// `stored` decrypted, or as it is when it carries no mark.
    fn open_raw(&self, stored: &[u8], what: &dyn Fn() -> String) -> Result<Opened<Vec<u8>>> {
        if !stored.starts_with(MAGIC) {
            return Ok(Opened {
                value: stored.to_vec(),
                stale: true,
            });
        }
        if stored.len() < HEADER_LEN + NONCE_LEN + TAG_LEN {
            return Err(self.damaged(what));
        }
        let id = &stored[MAGIC.len()..HEADER_LEN];
        let key = std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
            .ok_or_else(|| self.unknown_key(id, what))?;
        let nonce = XNonce::from_slice(&stored[HEADER_LEN..HEADER_LEN + NONCE_LEN]);
        let plain = key
            .cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &stored[HEADER_LEN + NONCE_LEN..],
                    aad: &stored[..HEADER_LEN],
                },
            )
            .map_err(|_| self.damaged(what))?;
        Ok(Opened {
            value: plain,
            stale: key.id != self.current.id,
        })
    }

    fn unknown_key(&self, id: &[u8], what: &dyn Fn() -> String) -> Error {
        let mut configured = vec![format!("{} (the current key)", hex(&self.current.id))];
        configured.extend(self.old.iter().map(|k| hex(&k.id)));
        self.named(Error::config(format!(
            "encryption: {} was encrypted with the key whose id is {}, which is not configured (configured: {}): set key_env/key_file to that key, or add it to old_keys_env/old_key_files",
            what(),
            hex(id),
            configured.join(", ")
        )))
    }

    /// `e`, naming the store.
    pub(crate) fn named(&self, e: Error) -> Error {
        e.in_store(&self.store.0, &self.store.1)
    }

    fn damaged(&self, what: &dyn Fn() -> String) -> Error {
        self.named(Error::conflict(format!(
            "encryption: {} does not decrypt: its ciphertext was changed or damaged in the store (restore it from a backup, or delete it)",
            what()
        )))
    }

    /// Bytes to store for `plain`.
    pub(crate) fn seal_bytes(&self, plain: &[u8]) -> Vec<u8> {
        self.seal_raw(plain)
    }

    /// The bytes a stored value holds.
    pub(crate) fn open_bytes(
        &self,
        stored: Vec<u8>,
        what: &dyn Fn() -> String,
    ) -> Result<Opened<Vec<u8>>> {
        if !stored.starts_with(MAGIC) {
            return Ok(Opened {
                value: stored,
                stale: true,
            });
        }
        self.open_raw(&stored, what)
    }

    /// Text to store for `plain`.
    pub(crate) fn seal_text(&self, plain: &str) -> String {
        let mut s = String::from(TEXT_MARK);
        B64.encode_string(self.seal_raw(plain.as_bytes()), &mut s);
        s
    }

    /// The text a stored text holds.
    pub(crate) fn open_text(
        &self,
        stored: String,
        what: &dyn Fn() -> String,
    ) -> Result<Opened<String>> {
        let Some(b64) = stored.strip_prefix(TEXT_MARK) else {
            return Ok(Opened {
                value: stored,
                stale: true,
            });
        };
        let raw = B64.decode(b64).map_err(|_| self.damaged(what))?;
        let opened = self.open_raw(&raw, what)?;
        let value = String::from_utf8(opened.value).map_err(|_| self.damaged(what))?;
        Ok(Opened {
            value,
            stale: opened.stale,
        })
    }

    /// Whether any part is encrypted in a JSON document (the configured
    /// fields).
    pub(crate) fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    /// Whether vector documents are encrypted.
    pub(crate) fn documents(&self) -> bool {
        self.documents
    }

    /// `doc` with the configured fields encrypted (each as its JSON text).
    /// `null` stays `null`, so `exists` keeps its meaning.
    pub(crate) fn seal_fields(&self, doc: &Json) -> Json {
        if self.fields.is_empty() || !doc.is_object() {
            return doc.clone();
        }
        let mut out = doc.clone();
        for f in &self.fields {
            if let Some(v) = field_mut(&mut out, f) {
                if !v.is_null() {
                    let text = serde_json::to_string(v).expect("JSON values serialise");
                    *v = Json::String(self.seal_text(&text));
                }
            }
        }
        out
    }

    /// `doc` with the configured fields decrypted; `stale` is set when
    /// one is not under the current key.
    pub(crate) fn open_fields(
        &self,
        mut doc: Json,
        what: &dyn Fn() -> String,
    ) -> Result<Opened<Json>> {
        let mut stale = false;
        for f in &self.fields {
            let Some(v) = field_mut(&mut doc, f) else {
                continue;
            };
            if v.is_null() {
                continue;
            }
            match v {
                Json::String(s) if s.starts_with(TEXT_MARK) => {
                    let field_what = || format!("field '{f}' of {}", what());
                    let opened = self.open_text(std::mem::take(s), &field_what)?;
                    stale |= opened.stale;
                    *v = serde_json::from_str(&opened.value)
                        .map_err(|_| self.damaged(&field_what))?;
                }
                _ => stale = true,
            }
        }
        Ok(Opened { value: doc, stale })
    }

    /// Refuse a filter that compares an encrypted field.
    pub(crate) fn check_filter(&self, filter: &Filter) -> Result<()> {
        for c in filter
            .must
            .iter()
            .chain(&filter.should)
            .chain(&filter.must_not)
        {
            let key = match c {
                Condition::Nested(f) => {
                    self.check_filter(f)?;
                    continue;
                }
                Condition::Exists { .. } => continue,
                Condition::Match { key, .. }
                | Condition::In { key, .. }
                | Condition::Range { key, .. } => key,
            };
            if let Some(f) = self.fields.iter().find(|f| {
                key == *f
                    || key
                        .strip_prefix(f.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            }) {
                return Err(self.named(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "encryption: the filter compares '{key}', and '{f}' is encrypted: the store holds only its ciphertext, so it cannot be filtered on (filter on a field that is not encrypted, or remove '{f}' from fields)"
                    ),
                )));
            }
        }
        Ok(())
    }
}

/// The value at `path` in `doc`: a top-level key spelled with dots first,
/// then the dotted path (as the filter language looks keys up).
fn field_mut<'a>(doc: &'a mut Json, path: &str) -> Option<&'a mut Json> {
    if doc.get(path).is_some() {
        return doc.get_mut(path);
    }
    let mut cur = doc;
    for part in path.split('.') {
        cur = cur.get_mut(part)?;
    }
    Some(cur)
}

/// What `backplane rekey` did to one store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RekeyReport {
    /// Records (values, messages, vector records, nodes, edges) read.
    pub examined: u64,
    /// Those rewritten under the current key (they were plaintext or under
    /// an old key).
    pub rewritten: u64,
}

/// One paged listing rewritten under the current key: each page read
/// with `page(cursor)`, each record opened with `open`, the stale ones
/// sealed again with `seal` and written back with `write`.
pub(crate) fn rekey_pages<T>(
    report: &mut RekeyReport,
    progress: &mut dyn FnMut(u64),
    page: impl Fn(Option<&str>) -> Result<(Vec<T>, Option<String>)>,
    open: impl Fn(T) -> Result<Opened<T>>,
    seal: impl Fn(T) -> T,
    write: impl Fn(&[T]) -> Result<()>,
) -> Result<()> {
    let mut cursor: Option<String> = None;
    loop {
        let (items, next) = page(cursor.as_deref())?;
        let mut stale = Vec::new();
        for item in items {
            report.examined += 1;
            let o = open(item)?;
            if o.stale {
                stale.push(seal(o.value));
            }
        }
        if !stale.is_empty() {
            write(&stale)?;
            report.rewritten += stale.len() as u64;
        }
        progress(report.examined);
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(()),
        }
    }
}

/// A store's encryption layer, as `backplane rekey` drives it.
pub(crate) trait Rekey: Send + Sync {
    /// Rewrite everything not under the current key, in place. Needs the
    /// store to itself (stop the application): a value written while it
    /// runs may be overwritten with the one read a moment before.
    /// `progress` gets the records examined so far.
    fn rekey(&self, progress: &mut dyn FnMut(u64)) -> Result<RekeyReport>;
}

/// Whether `e` is the layer's own refusal at open (a key problem), which
/// the open check reports; other errors (a server down) are left to the
/// calls that meet them.
pub(crate) fn is_key_error(e: &Error) -> bool {
    e.kind() == ErrorKind::Config || e.kind() == ErrorKind::Conflict
}

/// Run the open check's reads; a key problem fails the open, anything
/// else (no scan support, a server down) is left for later calls.
pub(crate) fn probe(check: impl FnOnce() -> Result<()>) -> Result<()> {
    match check() {
        Err(e) if is_key_error(&e) => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(key: &str, old: &[&str]) -> Sealer {
        let k = |s: &str| {
            let b = parse_key(s.as_bytes(), &SecretSource::Env("K".into())).unwrap();
            Key {
                id: key_id(&b),
                cipher: XChaCha20Poly1305::new(&b.into()),
            }
        };
        Sealer {
            store: ("c".into(), "memory".into()),
            current: k(key),
            old: old.iter().map(|s| k(s)).collect(),
            fields: vec!["text".into(), "a.b".into()],
            documents: true,
        }
    }
    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    #[test]
    fn round_trips_and_names_keys() {
        let s = sealer(K1, &[]);
        let what = || "the value of 'k'".to_string();
        let c = s.seal_bytes(b"hello");
        assert_eq!(c.len(), 5 + 52);
        assert!(!c.windows(5).any(|w| w == b"hello"));
        let o = s.open_bytes(c.clone(), &what).unwrap();
        assert_eq!(o.value, b"hello");
        assert!(!o.stale);
        // Another key: one clear error naming both ids.
        let other = sealer(K2, &[]);
        let e = other.open_bytes(c.clone(), &what).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.message().contains(&hex(&key_id(
                &parse_key(K1.as_bytes(), &SecretSource::Env("K".into())).unwrap()
            ))),
            "{e}"
        );
        // Rotated: the old key decrypts, the value is stale.
        let rotated = sealer(K2, &[K1]);
        let o = rotated.open_bytes(c.clone(), &what).unwrap();
        assert_eq!(o.value, b"hello");
        assert!(o.stale);
        // A flipped bit is refused.
        let mut bad = c.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(
            s.open_bytes(bad, &what).unwrap_err().kind(),
            ErrorKind::Conflict
        );
        // Plaintext passes, stale.
        assert!(s.open_bytes(b"plain".to_vec(), &what).unwrap().stale);
        let t = s.seal_text("héllo");
        assert!(t.starts_with(TEXT_MARK));
        assert_eq!(s.open_text(t, &what).unwrap().value, "héllo");
    }

    #[test]
    fn fields_and_filters() {
        let s = sealer(K1, &[]);
        let doc =
            serde_json::json!({"text": "secret", "a": {"b": 7, "c": 1}, "n": null, "keep": "x"});
        let sealed = s.seal_fields(&doc);
        assert!(sealed["text"].as_str().unwrap().starts_with(TEXT_MARK));
        assert!(sealed["a"]["b"].as_str().unwrap().starts_with(TEXT_MARK));
        assert_eq!(sealed["a"]["c"], 1);
        assert_eq!(sealed["keep"], "x");
        let opened = s.open_fields(sealed, &|| "record 1".into()).unwrap();
        assert_eq!(opened.value, doc);
        assert!(!opened.stale);
        let f = Filter::parse_str(r#"{"must":[{"key":"a.b","match":7}]}"#).unwrap();
        assert!(s
            .check_filter(&f)
            .unwrap_err()
            .message()
            .contains("'a.b' is encrypted"));
        let f =
            Filter::parse_str(r#"{"must":[{"key":"text","exists":true},{"key":"a.c","match":1}]}"#)
                .unwrap();
        s.check_filter(&f).unwrap();
        let f =
            Filter::parse_str(r#"{"should":[{"must":[{"key":"text.x","match":"y"}]}]}"#).unwrap();
        assert!(s.check_filter(&f).is_err());
    }

    /// A method added to a capability later would reach the backend
    /// through the trait's default body, past the layer: each layer names
    /// every method of its list.
    #[test]
    fn layers_implement_every_method() {
        for (layer, list) in [
            (
                include_str!("cache.rs"),
                include_str!("../../../core/src/boundary/cache.rs"),
            ),
            (
                include_str!("vector.rs"),
                include_str!("../../../core/src/boundary/vector.rs"),
            ),
            (
                include_str!("graph.rs"),
                include_str!("../../../core/src/boundary/graph.rs"),
            ),
        ] {
            crate::layer::assert_every_method(
                layer,
                &[list],
                "an encryption layer does not implement it: add it to host/src/crypt/",
            );
        }
    }

    #[test]
    fn key_text_is_checked_and_never_echoed() {
        let from = SecretSource::Env("K".into());
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_key(b64.as_bytes(), &from).unwrap(), [7u8; 32]);
        let e = parse_key(b"correct horse battery staple", &from).unwrap_err();
        assert!(!e.message().contains("horse"), "{e}");
        assert!(e.message().contains("64 hex digits"), "{e}");
        assert_eq!(new_key_hex().len(), 64);
    }
}
