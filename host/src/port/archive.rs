//! The portable archive: a folder with a `manifest.json` and, per store, one
//! JSON Lines file compressed with zstd per item (see
//! `docs/archive-format.md`). [`ArchiveSink`] writes a store's items into
//! it; [`ArchiveSource`] reads them back for a restore; [`verify`] checks a
//! whole archive against its manifest.

use super::engine::{Item, Sink, Source};
use super::record::{bad_line, from_lines, to_lines, Digest, Kind, Records};
use super::{Merge, Progress};
use backplane_core::{Capability, Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The archive format version this Backplane writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's `format` field.
const FORMAT: &str = "backplane-archive";
/// The manifest's file name.
pub(crate) const MANIFEST: &str = "manifest.json";

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub backplane_version: String,
    pub created_at: String,
    pub stores: Vec<StoreEntry>,
}

/// One store of an archive.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoreEntry {
    pub capability: Capability,
    pub name: String,
    pub backend: String,
    /// What the backup of this store is consistent with (see the format's
    /// documentation).
    pub consistency: String,
    pub items: Vec<ItemEntry>,
}

/// One item of a store, with its data file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ItemEntry {
    #[serde(flatten)]
    pub item: Item,
    /// The data file, relative to the archive's folder.
    pub file: String,
    /// Records in it.
    pub records: u64,
    /// SHA-256 of the file's bytes, as 64 hex digits.
    pub sha256: String,
    /// The records' digest (count and checksum sum).
    pub digest: Digest,
}

/// A store as an archive holds it, for reports.
#[derive(Clone, Debug, Serialize)]
pub struct ArchiveStore {
    /// `<capability>.<name>`.
    pub store: String,
    /// The backend it was backed up from.
    pub backend: String,
    /// Its items: (label, records, whether it checked out).
    pub items: Vec<(String, u64, bool)>,
}

/// What `backup` wrote or `verify` found.
#[derive(Clone, Debug, Serialize)]
pub struct ArchiveReport {
    /// The archive's folder.
    pub dir: PathBuf,
    /// When it was created.
    pub created_at: String,
    /// Its stores.
    pub stores: Vec<ArchiveStore>,
    /// Whether every data file matches its checksum and its records their
    /// digest.
    pub ok: bool,
    /// What did not check out, one line each.
    pub problems: Vec<String>,
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A file name safe on every platform for `name`, or `fallback`.
fn file_stem(name: &str, fallback: &str) -> String {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if ok {
        name.to_string()
    } else {
        fallback.to_string()
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

type Encoder = zstd::stream::write::Encoder<'static, Hashing<BufWriter<File>>>;

/// One store's items being written into an archive folder.
pub(crate) struct ArchiveSink {
    label: String,
    root: PathBuf,
    dir: String,
    open: Mutex<BTreeMap<String, (String, Encoder)>>,
    done: Mutex<Vec<(String, String, String)>>,
}

impl ArchiveSink {
    /// Write the store `capability.name` under `root`.
    pub(crate) fn new(root: &Path, capability: Capability, name: &str, index: usize) -> Self {
        let dir = file_stem(
            &format!("{capability}.{name}"),
            &format!("{capability}.store-{index}"),
        );
        ArchiveSink {
            label: format!("the archive {}", root.display()),
            root: root.to_path_buf(),
            dir,
            open: Mutex::new(BTreeMap::new()),
            done: Mutex::new(Vec::new()),
        }
    }

    /// The data files written, by item key: (file, sha256).
    pub(crate) fn files(&self) -> BTreeMap<String, (String, String)> {
        self.done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, f, h)| (k.clone(), (f.clone(), h.clone())))
            .collect()
    }

    fn io(&self, path: &Path, e: std::io::Error) -> Error {
        backplane_core::kit::fs::io_error("archive", path, e)
    }

    fn start(&self, item: &Item, index: usize) -> Result<()> {
        let stem = match item.kind {
            Kind::Table => file_stem(&item.name, &format!("table-{index}")),
            Kind::Collection => file_stem(&item.name, &format!("collection-{index}")),
            _ => item.name.clone(),
        };
        let rel = format!("{}/{stem}.jsonl.zst", self.dir);
        let path = self.root.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| self.io(parent, e))?;
        }
        let file = File::create(&path).map_err(|e| self.io(&path, e))?;
        let w = Hashing {
            inner: BufWriter::new(file),
            hash: Sha256::new(),
        };
        let enc = Encoder::new(w, 3).map_err(|e| self.io(&path, e))?;
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(item_key(item), (rel, enc));
        Ok(())
    }
}

pub(crate) fn item_key(item: &Item) -> String {
    format!("{:?}:{}", item.kind, item.name)
}

impl Sink for ArchiveSink {
    fn label(&self) -> String {
        self.label.clone()
    }
    fn occupied(&self, _: &[Item]) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn check(&self, _: &[Item], _: Option<Merge>) -> Result<()> {
        Ok(())
    }
    fn prepare(&self, items: &[Item]) -> Result<()> {
        for (i, item) in items.iter().enumerate() {
            self.start(item, i + 1)?;
        }
        Ok(())
    }
    fn write(&self, item: &Item, records: &Records, _: Option<Merge>) -> Result<()> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (rel, enc) = open
            .get_mut(&item_key(item))
            .ok_or_else(|| Error::backend(format!("{} was not started", item.label())))?;
        let path = self.root.join(&*rel);
        for line in to_lines(records) {
            serde_json::to_writer(&mut *enc, &line)?;
            enc.write_all(b"\n").map_err(|e| self.io(&path, e))?;
        }
        Ok(())
    }
    fn finish(&self, _: &[Item]) -> Result<()> {
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|p| p.into_inner()));
        for (key, (rel, enc)) in open {
            let path = self.root.join(&rel);
            let mut w = enc.finish().map_err(|e| self.io(&path, e))?;
            w.flush().map_err(|e| self.io(&path, e))?;
            w.inner
                .get_ref()
                .sync_all()
                .map_err(|e| self.io(&path, e))?;
            let sha = hex(&w.hash.finalize());
            self.done
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((key, rel, sha));
        }
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Read the manifest of the archive at `dir`, refusing one this Backplane
/// cannot read.
pub(crate) fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(format!(
                "{} has no {MANIFEST}: it is not a Backplane archive, or the backup did not finish",
                dir.display()
            ))
        } else {
            Error::unavailable(format!("cannot read {}: {e}", path.display()))
        }
    })?;
    let head: Json = serde_json::from_str(&text).map_err(|e| {
        Error::invalid(format!(
            "{} is not valid JSON ({e}): the archive is damaged",
            path.display()
        ))
    })?;
    if head.get("format").and_then(Json::as_str) != Some(FORMAT) {
        return Err(Error::invalid(format!(
            "{} is not a Backplane archive manifest (no \"format\": \"{FORMAT}\")",
            path.display()
        )));
    }
    let version = head
        .get("format_version")
        .and_then(Json::as_u64)
        .unwrap_or(0);
    if version > FORMAT_VERSION as u64 {
        return Err(Error::new(
            backplane_core::ErrorKind::Incompatible,
            format!(
                "{} is archive format {version}, newer than this Backplane reads ({FORMAT_VERSION}): restore it with a newer backplane",
                dir.display()
            ),
        ));
    }
    serde_json::from_value(head).map_err(|e| {
        Error::invalid(format!(
            "{} does not describe an archive ({e}): the archive is damaged",
            path.display()
        ))
    })
}

/// Write `manifest` into `dir`.
pub(crate) fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let text = serde_json::to_vec_pretty(manifest)?;
    backplane_core::kit::fs::write_bytes(dir.join(MANIFEST), "archive manifest", &text)
}

/// The SHA-256 of the file at `path`.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Check one data file's checksum: one clear error if it does not match.
pub(crate) fn check_file(dir: &Path, entry: &ItemEntry) -> Result<()> {
    let path = dir.join(&entry.file);
    let got = sha256_file(&path).map_err(|e| {
        Error::invalid(format!(
            "{}: cannot read it ({e}): the archive is incomplete",
            path.display()
        ))
    })?;
    if got != entry.sha256 {
        return Err(Error::invalid(format!(
            "{}: its checksum does not match the manifest's (the file was changed or cut short): take the backup again, or restore without this store",
            path.display()
        )));
    }
    Ok(())
}

/// Lines of one data file, read in order.
struct Lines {
    file: String,
    next: u64,
    reader: BufReader<zstd::stream::read::Decoder<'static, BufReader<File>>>,
}

impl Lines {
    fn open(dir: &Path, entry: &ItemEntry) -> Result<Lines> {
        let path = dir.join(&entry.file);
        let f = File::open(&path).map_err(|e| {
            Error::invalid(format!(
                "{}: cannot open it ({e}): the archive is incomplete",
                path.display()
            ))
        })?;
        let dec = zstd::stream::read::Decoder::new(f)
            .map_err(|e| Error::invalid(format!("{}: not zstd data ({e})", path.display())))?;
        Ok(Lines {
            file: entry.file.clone(),
            next: 0,
            reader: BufReader::new(dec),
        })
    }

    /// Up to `n` lines, parsed.
    fn take(&mut self, n: usize) -> Result<Vec<Json>> {
        let mut out = Vec::with_capacity(n.min(4096));
        let mut line = String::new();
        while out.len() < n {
            line.clear();
            let read = self.reader.read_line(&mut line).map_err(|e| {
                bad_line(&self.file, self.next + 1, &format!("cannot be read ({e})"))
            })?;
            if read == 0 {
                break;
            }
            self.next += 1;
            let j: Json = serde_json::from_str(line.trim_end())
                .map_err(|e| bad_line(&self.file, self.next, &format!("is not JSON ({e})")))?;
            out.push(j);
        }
        Ok(out)
    }
}

/// One store of an archive as the engine's source.
pub(crate) struct ArchiveSource {
    dir: PathBuf,
    store: StoreEntry,
    reading: Mutex<Option<(String, Lines)>>,
}

impl ArchiveSource {
    pub(crate) fn new(dir: &Path, store: StoreEntry) -> Self {
        ArchiveSource {
            dir: dir.to_path_buf(),
            store,
            reading: Mutex::new(None),
        }
    }

    fn entry(&self, item: &Item) -> Result<&ItemEntry> {
        self.store
            .items
            .iter()
            .find(|e| e.item.kind == item.kind && e.item.name == item.name)
            .ok_or_else(|| Error::not_found(format!("the archive has no {}", item.label())))
    }

    /// Check every data file of this store against the manifest.
    pub(crate) fn check_files(&self) -> Result<()> {
        for e in &self.store.items {
            check_file(&self.dir, e)?;
        }
        Ok(())
    }
}

impl Source for ArchiveSource {
    fn label(&self) -> String {
        format!(
            "{}.{} in the archive {}",
            self.store.capability,
            self.store.name,
            self.dir.display()
        )
    }

    fn items(&self, only: &[String]) -> Result<Vec<Item>> {
        let wanted = |n: &str| only.is_empty() || only.iter().any(|o| o == n);
        Ok(self
            .store
            .items
            .iter()
            .map(|e| e.item.clone())
            .filter_map(|mut i| match i.kind {
                Kind::Table | Kind::Collection => wanted(&i.name).then_some(i),
                Kind::Keys => only.is_empty().then_some(i),
                Kind::Messages => {
                    i.channels = only.to_vec();
                    Some(i)
                }
                Kind::Nodes | Kind::Edges => Some(i),
            })
            .collect())
    }

    fn total(&self, item: &Item) -> Result<Option<u64>> {
        Ok(Some(self.entry(item)?.records))
    }

    fn page(
        &self,
        item: &Item,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Records, Option<String>)> {
        let entry = self.entry(item)?;
        let at: u64 = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| {
                Error::invalid(format!("'{c}' is not a line number of {}", entry.file))
            })?,
        };
        let mut reading = self.reading.lock().unwrap_or_else(|p| p.into_inner());
        let key = item_key(item);
        let reuse = matches!(&*reading, Some((k, l)) if *k == key && l.next == at);
        if !reuse {
            let mut lines = Lines::open(&self.dir, entry)?;
            while lines.next < at {
                let skipped = lines.take((at - lines.next).min(10_000) as usize)?;
                if skipped.is_empty() {
                    break;
                }
            }
            *reading = Some((key, lines));
        }
        let (_, lines) = reading.as_mut().expect("opened above");
        let first = lines.next;
        let got = lines.take(limit)?;
        let n = got.len();
        let mut records =
            from_lines(item.kind, &got).map_err(|why| bad_line(&entry.file, first + 1, &why))?;
        if let Records::Messages(m) = &mut records {
            if !item.channels.is_empty() {
                m.retain(|(c, _)| item.channels.contains(c));
            }
        }
        let next = (n == limit).then(|| lines.next.to_string());
        if next.is_none() && lines.next != entry.records {
            return Err(Error::invalid(format!(
                "{}: it holds {} records, the manifest says {}: the archive is damaged",
                entry.file, lines.next, entry.records
            )));
        }
        Ok((records, next))
    }
}

/// Check every data file of the archive at `dir`: its checksum, that every
/// line parses, and that its records add up to the manifest's digest.
pub fn verify(dir: &Path, progress: &dyn Progress) -> Result<ArchiveReport> {
    let manifest = read_manifest(dir)?;
    let mut report = ArchiveReport {
        dir: dir.to_path_buf(),
        created_at: manifest.created_at.clone(),
        stores: Vec::new(),
        ok: true,
        problems: Vec::new(),
    };
    for store in &manifest.stores {
        let mut summary = ArchiveStore {
            store: format!("{}.{}", store.capability, store.name),
            backend: store.backend.clone(),
            items: Vec::new(),
        };
        for e in &store.items {
            let label = e.item.label();
            progress.start(&format!("{} {label}", summary.store), Some(e.records));
            let result = check_file(dir, e).and_then(|()| {
                let mut lines = Lines::open(dir, e)?;
                let mut d = Digest::default();
                loop {
                    let first = lines.next;
                    let got = lines.take(1000)?;
                    if got.is_empty() {
                        break;
                    }
                    let records = super::record::from_lines_all(e.item.kind, &got)
                        .map_err(|why| bad_line(&e.file, first + 1, &why))?;
                    d.add(&records);
                    progress.advance(got.len() as u64);
                }
                if d != e.digest || d.records != e.records {
                    return Err(Error::invalid(format!(
                        "{}: its {} records do not add up to the manifest's digest ({} records): the archive is damaged",
                        e.file, d.records, e.records
                    )));
                }
                Ok(())
            });
            progress.finish();
            let ok = match result {
                Ok(()) => true,
                Err(err) => {
                    report.problems.push(err.message().to_string());
                    false
                }
            };
            report.ok &= ok;
            summary.items.push((label, e.records, ok));
        }
        report.stores.push(summary);
    }
    Ok(report)
}
