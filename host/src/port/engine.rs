//! The copy loop shared by migrate, backup and restore: items streamed
//! page by page from a [`Source`] into a [`Sink`], their digests summed on
//! the way, progress saved in a [`State`] after every page, and the target
//! read back and compared at the end.

use super::record::{Digest, Kind, Records};
use super::{CopyOptions, Merge, Progress};
use backplane_core::{Error, ErrorKind, Result, TableSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What is copied as a unit: a table, a collection, a graph's nodes or
/// edges, a cache's keys or conversations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// What it holds.
    pub kind: Kind,
    /// The table's or collection's name; `nodes`, `edges`, `keys` or
    /// `messages` for the others.
    pub name: String,
    /// A table's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<TableSchema>,
    /// A collection's dimension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension: Option<u32>,
    /// A collection's distance (`cosine`, `dot`, `euclidean`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distance: Option<String>,
    /// The conversation channels copied (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<String>,
}

impl Item {
    /// An item without schema or collection settings.
    pub fn new(kind: Kind, name: impl Into<String>) -> Self {
        Item {
            kind,
            name: name.into(),
            schema: None,
            dimension: None,
            distance: None,
            channels: Vec::new(),
        }
    }
    /// How reports and progress bars name it.
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Table => format!("table {}", self.name),
            Kind::Collection => format!("collection {}", self.name),
            Kind::Nodes => "nodes".into(),
            Kind::Edges => "edges".into(),
            Kind::Keys => "keys".into(),
            Kind::Messages => "messages".into(),
        }
    }
    /// Its key in a state file.
    fn key(&self) -> String {
        format!("{:?}:{}", self.kind, self.name)
    }
}

/// Where records come from: a store, or an archive.
pub(crate) trait Source: Sync {
    /// How reports name it.
    fn label(&self) -> String;
    /// Its items, parents first; `only` keeps the named tables,
    /// collections or channels.
    fn items(&self, only: &[String]) -> Result<Vec<Item>>;
    /// How many records `item` holds, if cheap to know.
    fn total(&self, item: &Item) -> Result<Option<u64>>;
    /// Start reading (a snapshot, where the store has them).
    fn open(&self) -> Result<()> {
        Ok(())
    }
    /// Stop reading.
    fn close(&self) {}
    /// One page of `item` after `cursor`, and the cursor of the next.
    fn page(
        &self,
        item: &Item,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Records, Option<String>)>;
}

/// Where records go: a store, or an archive being written.
pub(crate) trait Sink {
    /// How reports name it.
    fn label(&self) -> String;
    /// Why each of `items` is not empty in the target (empty: all are).
    fn occupied(&self, items: &[Item]) -> Result<Vec<String>>;
    /// Refuse, before anything is written, what the target cannot hold.
    fn check(&self, items: &[Item], merge: Option<Merge>) -> Result<()>;
    /// Create what the items need (tables, collections). Idempotent.
    fn prepare(&self, items: &[Item]) -> Result<()>;
    /// Write one page; a record that exists already is kept (or replaced
    /// with `Merge::Overwrite`), so a replayed page changes nothing.
    fn write(&self, item: &Item, records: &Records, merge: Option<Merge>) -> Result<()>;
    /// After every item: what the target does last. Idempotent.
    fn finish(&self, items: &[Item]) -> Result<()>;
}

/// How far one item got.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ItemState {
    cursor: Option<String>,
    done: bool,
    digest: Digest,
}

/// A copy's progress, saved after every page so that a rerun continues.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct State {
    version: u32,
    source: String,
    target: String,
    started_at: String,
    finished_at: Option<String>,
    merge: Option<String>,
    items: BTreeMap<String, ItemState>,
    #[serde(skip)]
    path: Option<PathBuf>,
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl State {
    fn fresh(source: &str, target: &str, merge: Option<Merge>, path: Option<PathBuf>) -> Self {
        State {
            version: 1,
            source: source.into(),
            target: target.into(),
            started_at: now_rfc3339(),
            finished_at: None,
            merge: merge.map(|m| format!("{m:?}").to_lowercase()),
            items: BTreeMap::new(),
            path,
        }
    }

    /// The state at `path`, if a copy between the same two ends left one.
    fn load(path: &Path, source: &str, target: &str) -> Result<Option<State>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::unavailable(format!(
                    "cannot read the copy's state file {}: {e}",
                    path.display()
                )))
            }
        };
        let mut st: State = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(format!(
                "the copy's state file {} is damaged ({e}): delete it and empty the target to start over",
                path.display()
            ))
        })?;
        if st.source != source || st.target != target {
            return Err(Error::invalid(format!(
                "the state file {} belongs to a copy from {} to {}: give this copy its own with --state",
                path.display(),
                st.source,
                st.target
            )));
        }
        st.path = Some(path.to_path_buf());
        Ok(Some(st))
    }

    /// Write the state (a temporary file renamed over the old one, so a
    /// kill leaves the old state or the new, never half of one). `durable`
    /// also waits for the disk.
    fn save(&self, durable: bool) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text = serde_json::to_vec_pretty(self)?;
        if durable {
            backplane_core::kit::fs::write_bytes(path, "copy's state", &text)
        } else {
            backplane_core::kit::fs::write_bytes_unsynced(path, "copy's state", &text)
        }
    }
}

/// The outcome of one item.
#[derive(Clone, Debug, Serialize)]
pub struct ItemReport {
    /// Which item (`table users`, `collection memories`, `nodes`, …).
    pub item: String,
    /// Records read from the source.
    pub records: u64,
    /// The source's digest.
    pub source: Digest,
    /// The target's digest read back, when verified.
    pub target: Option<Digest>,
    /// Whether the target holds exactly what was copied.
    pub verified: bool,
    /// What went wrong or what was skipped, if anything.
    pub note: Option<String>,
    /// Seconds spent copying it (this run).
    pub seconds: f64,
}

/// The outcome of a migration, a restore, or a backup of one store.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Where the records came from.
    pub source: String,
    /// Where they went.
    pub target: String,
    /// Whether nothing was written (a dry run).
    pub dry_run: bool,
    /// Whether this run continued an earlier one.
    pub resumed: bool,
    /// Whether an earlier run had finished already (nothing was copied).
    pub already_done: bool,
    /// One line per item.
    pub items: Vec<ItemReport>,
    /// The items, as the source described them.
    #[serde(skip)]
    pub(crate) plan: Vec<Item>,
}

impl Report {
    /// Whether every item arrived intact.
    pub fn ok(&self) -> bool {
        self.dry_run || self.items.iter().all(|i| i.verified)
    }
    /// Records copied, over all items.
    pub fn records(&self) -> u64 {
        self.items.iter().map(|i| i.records).sum()
    }
}

/// Where a copy from `source` to `target` (store references or an
/// archive's name) keeps its state by default: under `.backplane/copies/`
/// in `base`, named after both ends and a hash of their full labels.
pub(crate) fn default_state_path(base: &Path, source: &str, target: &str, labels: &str) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let h = xxhash_rust::xxh3::xxh3_64(labels.as_bytes());
    base.join(".backplane").join("copies").join(format!(
        "{}-to-{}-{h:016x}.json",
        clean(source),
        clean(target)
    ))
}

/// Copy `source` into `sink`, resumably, then read the target back
/// through `readback` and compare digests. `state` is where progress is
/// kept (`None`: not resumable, for archives being written).
pub(crate) fn copy(
    source: &dyn Source,
    sink: &dyn Sink,
    readback: Option<&dyn Source>,
    opts: &CopyOptions,
    state_path: Option<PathBuf>,
    progress: &dyn Progress,
) -> Result<Report> {
    let (src_label, dst_label) = (source.label(), sink.label());
    let mut state = match &state_path {
        Some(p) => State::load(p, &src_label, &dst_label)?,
        None => None,
    };
    let resumed = state.is_some();
    let items = source.items(&opts.only)?;
    if !opts.only.is_empty() && items.is_empty() {
        return Err(Error::not_found(format!(
            "{src_label} has none of {}: check the names",
            opts.only.join(", ")
        )));
    }
    if let Some(st) = &state {
        if st.finished_at.is_some() {
            // Done before: read the target back and report again.
            let mut report = Report {
                source: src_label,
                target: dst_label,
                dry_run: opts.dry_run,
                resumed: true,
                already_done: true,
                items: Vec::new(),
                plan: items.clone(),
            };
            let stale = |why: String| {
                format!(
                    "{why}; an earlier run finished this copy (its state file is {}): delete the state file to copy again",
                    state_path.as_deref().map_or("?".into(), |p| p.display().to_string())
                )
            };
            for item in &items {
                let s = st.items.get(&item.key()).cloned().unwrap_or_default();
                let mut r = match verify_item(item, s.digest, readback, opts.batch, 0.0, progress) {
                    Ok(r) => r,
                    Err(e) => ItemReport {
                        item: item.label(),
                        records: s.digest.records,
                        source: s.digest,
                        target: None,
                        verified: false,
                        note: Some(format!("the target cannot be read back ({})", e.message())),
                        seconds: 0.0,
                    },
                };
                if !r.verified {
                    r.note = Some(stale(r.note.take().unwrap_or_default()));
                }
                report.items.push(r);
            }
            return Ok(report);
        }
    }
    // A fresh copy refuses an occupied target unless told how to merge; a
    // resumed one wrote what is there itself.
    let merge = if resumed {
        state
            .as_ref()
            .and_then(|s| s.merge.as_deref())
            .map(|m| {
                if m == "overwrite" {
                    Merge::Overwrite
                } else {
                    Merge::Keep
                }
            })
            .or(opts.merge)
    } else {
        opts.merge
    };
    if !resumed && merge.is_none() {
        let occupied = sink.occupied(&items)?;
        if !occupied.is_empty() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{dst_label} is not empty ({}): empty it, or say how to merge with --merge keep (the target's records win) or --merge overwrite (the source's win)",
                    occupied.join("; ")
                ),
            ));
        }
    }
    sink.check(&items, merge)?;
    if opts.dry_run {
        let mut report = Report {
            source: src_label,
            target: dst_label,
            dry_run: true,
            resumed,
            already_done: false,
            items: Vec::new(),
            plan: items.clone(),
        };
        for item in &items {
            let total = source.total(item)?;
            report.items.push(ItemReport {
                item: item.label(),
                records: total.unwrap_or(0),
                source: Digest::default(),
                target: None,
                verified: false,
                note: Some(match total {
                    Some(n) => format!("would copy {n} records"),
                    None => "would copy every record".into(),
                }),
                seconds: 0.0,
            });
        }
        return Ok(report);
    }
    let mut state = match state.take() {
        Some(s) => s,
        None => {
            let s = State::fresh(&src_label, &dst_label, merge, state_path);
            s.save(true)?;
            s
        }
    };
    sink.prepare(&items)?;
    source.open()?;
    let copied = copy_items(
        source, sink, &items, &mut state, merge, opts.batch, progress,
    );
    source.close();
    let seconds = copied?;
    sink.finish(&items)?;
    let mut report = Report {
        source: src_label,
        target: dst_label,
        dry_run: false,
        resumed,
        already_done: false,
        items: Vec::new(),
        plan: items.clone(),
    };
    for (item, secs) in items.iter().zip(seconds) {
        let digest = state
            .items
            .get(&item.key())
            .cloned()
            .unwrap_or_default()
            .digest;
        report.items.push(verify_item(
            item, digest, readback, opts.batch, secs, progress,
        )?);
    }
    if report.ok() {
        state.finished_at = Some(now_rfc3339());
        state.save(true)?;
    }
    Ok(report)
}

/// The copy proper: every item, page by page, the state saved after each.
/// Returns the seconds each item took.
fn copy_items(
    source: &dyn Source,
    sink: &dyn Sink,
    items: &[Item],
    state: &mut State,
    merge: Option<Merge>,
    batch: usize,
    progress: &dyn Progress,
) -> Result<Vec<f64>> {
    let mut seconds = Vec::with_capacity(items.len());
    for item in items {
        let started = Instant::now();
        let key = item.key();
        let mut st = state.items.get(&key).cloned().unwrap_or_default();
        if st.done {
            seconds.push(0.0);
            continue;
        }
        progress.start(&item.label(), source.total(item)?);
        progress.advance(st.digest.records);
        // The source is read one page ahead, on a thread of its own, while
        // the target writes the page before: each page's checksums are
        // summed there too. The state still moves only after a write.
        let from = st.cursor.clone();
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<Result<(Records, Digest, Option<String>)>>(1);
            let reader = scope.spawn(move || {
                let mut cursor = from;
                loop {
                    let page =
                        source
                            .page(item, cursor.as_deref(), batch.max(1))
                            .map(|(r, next)| {
                                let mut d = Digest::default();
                                d.add(&r);
                                (r, d, next)
                            });
                    let next = match &page {
                        Ok((_, _, next)) => next.clone(),
                        Err(_) => None,
                    };
                    let last = next.is_none();
                    if tx.send(page).is_err() || last {
                        return;
                    }
                    cursor = next;
                }
            });
            let written = (|| -> Result<()> {
                for page in rx.iter() {
                    let (records, digest, next) = page?;
                    if !records.is_empty() {
                        sink.write(item, &records, merge)?;
                        st.digest.records += digest.records;
                        st.digest.sum = st.digest.sum.wrapping_add(digest.sum);
                        progress.advance(records.len() as u64);
                    }
                    st.cursor = next;
                    st.done = st.cursor.is_none();
                    state.items.insert(key.clone(), st.clone());
                    state.save(st.done)?;
                    if st.done {
                        break;
                    }
                }
                Ok(())
            })();
            // A failed write drops the receiver: the reader stops at its
            // next send.
            drop(rx);
            let _ = reader.join();
            written
        })?;
        progress.finish();
        seconds.push(started.elapsed().as_secs_f64());
    }
    Ok(seconds)
}

/// The digest of `item` as `source` holds it, read page by page.
pub(crate) fn digest_of(
    source: &dyn Source,
    item: &Item,
    batch: usize,
    progress: &dyn Progress,
) -> Result<Digest> {
    let mut d = Digest::default();
    let mut cursor: Option<String> = None;
    loop {
        let (records, next) = source.page(item, cursor.as_deref(), batch)?;
        d.add(&records);
        progress.advance(records.len() as u64);
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(d),
        }
    }
}

fn verify_item(
    item: &Item,
    copied: Digest,
    readback: Option<&dyn Source>,
    batch: usize,
    seconds: f64,
    progress: &dyn Progress,
) -> Result<ItemReport> {
    let Some(target) = readback else {
        return Ok(ItemReport {
            item: item.label(),
            records: copied.records,
            source: copied,
            target: None,
            verified: true,
            note: None,
            seconds,
        });
    };
    progress.start(&format!("verify {}", item.label()), Some(copied.records));
    // Read back in one snapshot where the target has them.
    target.open()?;
    let got = digest_of(target, item, batch.max(1), progress);
    target.close();
    let got = got?;
    progress.finish();
    let verified = got == copied;
    let note = (!verified).then(|| {
        if got.records != copied.records {
            format!(
                "the target holds {} records, {} were copied",
                got.records, copied.records
            )
        } else {
            "the target holds as many records as were copied, but some differ".to_string()
        }
    });
    Ok(ItemReport {
        item: item.label(),
        records: copied.records,
        source: copied,
        target: Some(got),
        verified,
        note,
        seconds,
    })
}
