//! One collection's FAISS index ([`CollIndex`]): built from `records.db`,
//! kept in step with it on every write, written to `<collection>.faiss`
//! now and then, and checked against `records.db` when it is read back.
//!
//! The index file starts with a header of [`HEADER_LEN`] bytes:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | `BPFAISS1` |
//! | 32 | the collection's token (`_bp_faiss_collections.token`) |
//! | 48 | the index's FAISS description (`Flat`, `HNSW32`, `IVF256,Flat`) |
//! | 8 | the highest `fid` `records.db` had handed out when the file was written (i64 LE) |
//!
//! then FAISS's own serialisation of an `IndexIDMap2` whose ids are `fid`s.
//!
//! A file is a cache of `records.db`: writes are durable when `records.db`
//! commits, and an index file behind it (the process was killed before it
//! was written again) is brought up to date when it is read: `fid`s missing
//! from it are added, `fid`s no longer in `records.db` removed. A file that
//! cannot be such a cache (another collection's token, a `fid` newer than
//! `records.db` knows, another dimension or metric, unreadable) is refused
//! with the repair: delete it, and it is rebuilt from `records.db`.
//!
//! Vectors go into FAISS as stored for `dot` and `euclidean` (inner product
//! and L2 metrics) and normalised for `cosine` (inner product of unit
//! vectors). Only flat indexes remove vectors: in HNSW and IVF indexes a
//! replaced or deleted record's vector stays as a dead entry, skipped when
//! found, and the index is rebuilt when dead entries outnumber
//! `max(1000, live)`.

use crate::config::{Kind, Tuning};
use crate::records::{self, Meta};
use backplane_core::kit::fs::replace_file;
use backplane_core::vector::norm;
use backplane_core::{Distance, Error, Result};
use backplane_faiss_sys::{Index, Metric};
use rusqlite::Connection;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Bytes before FAISS's serialisation in an index file.
pub(crate) const HEADER_LEN: usize = 96;
const MAGIC: &[u8; 8] = b"BPFAISS1";

/// The FAISS metric of a distance.
fn metric(distance: Distance) -> Metric {
    match distance {
        Distance::Euclidean => Metric::L2,
        Distance::Cosine | Distance::Dot => Metric::InnerProduct,
    }
}

/// `v` as FAISS holds it for `distance`.
pub(crate) fn prepared(distance: Distance, v: &[f32]) -> Vec<f32> {
    let mut out = v.to_vec();
    if distance == Distance::Cosine {
        let n = norm(v);
        if n > 0.0 {
            out.iter_mut().for_each(|x| *x /= n);
        }
    }
    out
}

fn padded<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let b = s.as_bytes();
    out[..b.len().min(N)].copy_from_slice(&b[..b.len().min(N)]);
    out
}

fn unpadded(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// A collection's index and what the plugin knows about it.
pub(crate) struct CollIndex {
    pub(crate) name: String,
    pub(crate) meta: Meta,
    tuning: Tuning,
    file: PathBuf,
    index: Index,
    /// The FAISS description `index` was made from.
    description: String,
    /// Records in `records.db` (each in the index, but after a failure).
    pub(crate) live: u64,
    /// Entries of the index that are no record (HNSW's replaced vectors).
    pub(crate) dead: u64,
    /// Changes since the file was last written.
    changed: u64,
    /// Set when an index update failed after `records.db` committed: the
    /// index is rebuilt before it is used again.
    pub(crate) broken: bool,
}

/// The repair every refusal names.
fn repair(file: &Path) -> String {
    format!(
        "delete {} and open the store again: the index is rebuilt from records.db",
        file.display()
    )
}

impl CollIndex {
    /// The index file of `collection` in the store's folder.
    pub(crate) fn file_of(folder: &Path, collection: &str) -> PathBuf {
        folder.join(format!("{collection}.faiss"))
    }

    /// The description the tuning asks for, given the live records.
    fn wanted(&self) -> String {
        if self.tuning.kind == Kind::Ivf && self.live < self.tuning.ivf_train_at {
            "Flat".to_string()
        } else {
            self.tuning.description()
        }
    }

    /// The index of a collection holding `live` records, empty until it is
    /// read or built.
    fn blank(folder: &Path, name: &str, meta: Meta, tuning: Tuning, live: u64) -> Result<Self> {
        Ok(CollIndex {
            name: name.to_string(),
            index: Index::new("Flat", meta.dimension, metric(meta.distance))?,
            description: "Flat".to_string(),
            meta,
            tuning,
            file: Self::file_of(folder, name),
            live,
            dead: 0,
            changed: 0,
            broken: false,
        })
    }

    /// A new, empty index for a collection just created (any leftover file
    /// of an earlier collection of that name is removed).
    pub(crate) fn create(folder: &Path, name: &str, meta: Meta, tuning: Tuning) -> Result<Self> {
        let mut ix = Self::blank(folder, name, meta, tuning, 0)?;
        remove_file(&ix.file)?;
        let wanted = ix.wanted();
        ix.index = ix.fresh(&wanted)?;
        ix.description = wanted;
        Ok(ix)
    }

    /// An empty index of `description`, tuned.
    fn fresh(&self, description: &str) -> Result<Index> {
        let mut index = Index::new(description, self.meta.dimension, metric(self.meta.distance))?;
        index.tune(
            self.tuning.hnsw_ef_construction as usize,
            self.tuning.hnsw_ef_search as usize,
            self.tuning.ivf_probe as usize,
        );
        Ok(index)
    }

    /// Open a collection's index: read its file and bring it up to date
    /// with `records.db`, or build it when there is no file.
    pub(crate) fn open(
        conn: &Connection,
        folder: &Path,
        name: &str,
        meta: Meta,
        tuning: Tuning,
    ) -> Result<Self> {
        let live = records::count(conn, name)?;
        let mut ix = Self::blank(folder, name, meta, tuning, live)?;
        if !ix.file.exists() {
            log::info!(
                "faiss: building the index of collection '{name}' from records.db ({live} records)"
            );
            ix.rebuild(conn)?;
            ix.save(conn)?;
            return Ok(ix);
        }
        let mut header = [0u8; HEADER_LEN];
        let index = Index::read(&ix.file, &mut header).map_err(|e| {
            Error::backend(format!(
                "the index file of collection '{name}' cannot be read ({}): {}",
                e.message(),
                repair(&ix.file)
            ))
        })?;
        let refuse = |why: String| {
            Error::backend(format!(
                "the index file {} does not match records.db: {why}; {}",
                ix.file.display(),
                repair(&ix.file)
            ))
        };
        if &header[..8] != MAGIC {
            return Err(refuse("it was not written by the faiss plugin".into()));
        }
        let token = unpadded(&header[8..40]);
        if token != ix.meta.token {
            return Err(refuse(format!(
                "it was built for another collection '{name}' (token {token}, records.db has {})",
                ix.meta.token
            )));
        }
        let saved_max = i64::from_le_bytes(header[88..96].try_into().expect("8 bytes"));
        let db_max = records::max_fid(conn)?;
        if saved_max > db_max {
            return Err(refuse(format!(
                "it holds writes up to record number {saved_max} but records.db only up to {db_max} \
                 (records.db was restored from an older copy, or replaced)"
            )));
        }
        if index.dimension() != ix.meta.dimension as usize
            || index.metric() != Some(metric(ix.meta.distance))
        {
            return Err(refuse(format!(
                "it holds {}-dimensional vectors for another distance than the collection's {} dims, {}",
                index.dimension(),
                ix.meta.dimension,
                ix.meta.distance.as_str()
            )));
        }
        let description = unpadded(&header[40..88]);
        let keep_trained_ivf =
            ix.tuning.kind == Kind::Ivf && description == ix.tuning.description();
        if description != ix.wanted() && !keep_trained_ivf {
            log::info!(
                "faiss: collection '{name}' has a '{description}' index, the config asks for '{}': rebuilding it",
                ix.wanted()
            );
            ix.rebuild(conn)?;
            ix.save(conn)?;
            return Ok(ix);
        }
        ix.index = index;
        ix.index.tune(
            ix.tuning.hnsw_ef_construction as usize,
            ix.tuning.hnsw_ef_search as usize,
            ix.tuning.ivf_probe as usize,
        );
        ix.description = description;
        ix.reconcile(conn)?;
        Ok(ix)
    }

    /// Add what `records.db` has and the index lacks; remove (or count as
    /// dead) what the index has and `records.db` does not.
    fn reconcile(&mut self, conn: &Connection) -> Result<()> {
        let in_db: HashSet<i64> = records::all_fids(conn, &self.name)?.into_iter().collect();
        let in_index: HashSet<i64> = self.index.ids().into_iter().collect();
        let stale: Vec<i64> = in_index.difference(&in_db).copied().collect();
        let missing: HashSet<i64> = in_db.difference(&in_index).copied().collect();
        if !missing.is_empty() {
            let vectors: Vec<(i64, Vec<f32>)> =
                records::all_vectors(conn, &self.name, self.meta.dimension)?
                    .into_iter()
                    .filter(|(fid, _)| missing.contains(fid))
                    .collect();
            self.add(&vectors)?;
        }
        self.dead = 0;
        self.remove(&stale)?;
        if !missing.is_empty() || !stale.is_empty() {
            log::info!(
                "faiss: collection '{}': index file brought up to date with records.db ({} added, {} stale)",
                self.name,
                missing.len(),
                stale.len()
            );
        }
        self.maintain(conn)?;
        // Written now, so the next open finds it up to date.
        self.save(conn)
    }

    /// Build the index again from every record of `records.db`.
    pub(crate) fn rebuild(&mut self, conn: &Connection) -> Result<()> {
        let vectors = records::all_vectors(conn, &self.name, self.meta.dimension)?;
        self.live = vectors.len() as u64;
        let description = self.wanted();
        let mut index = self.fresh(&description)?;
        if !index.is_trained() {
            let flat: Vec<f32> = vectors
                .iter()
                .flat_map(|(_, v)| prepared(self.meta.distance, v))
                .collect();
            index.train(&flat)?;
        }
        self.index = index;
        self.description = description;
        self.dead = 0;
        self.add(&vectors)?;
        self.changed = self.changed.max(1);
        self.broken = false;
        Ok(())
    }

    fn add(&mut self, vectors: &[(i64, Vec<f32>)]) -> Result<()> {
        let mut flat = Vec::with_capacity(vectors.len() * self.meta.dimension as usize);
        let mut ids = Vec::with_capacity(vectors.len());
        for (fid, v) in vectors {
            flat.extend(prepared(self.meta.distance, v));
            ids.push(*fid);
        }
        self.index.add(&flat, &ids)?;
        self.changed += ids.len() as u64;
        Ok(())
    }

    fn remove(&mut self, fids: &[i64]) -> Result<()> {
        if self.index.can_remove() {
            self.index.remove(fids)?;
        } else {
            self.dead += fids.len() as u64;
        }
        self.changed += fids.len() as u64;
        Ok(())
    }

    /// Follow a committed write: `added` records are new (with their new
    /// `fid`s), `removed` `fid`s are gone. On failure the index is marked
    /// for a rebuild (the records are safe in `records.db`).
    pub(crate) fn apply(
        &mut self,
        conn: &Connection,
        added: &[(i64, Vec<f32>)],
        removed: &[i64],
    ) -> Result<()> {
        self.live = (self.live + added.len() as u64).saturating_sub(removed.len() as u64);
        let result = if self.broken {
            self.rebuild(conn)
        } else {
            self.remove(removed)
                .and_then(|_| self.add(added))
                .and_then(|_| self.maintain(conn))
        };
        if let Err(e) = &result {
            self.broken = true;
            log::warn!(
                "faiss: collection '{}': updating the index failed ({}); the records are saved and the index is rebuilt before its next use",
                self.name,
                e.message()
            );
        }
        result
    }

    /// Train IVF once enough records exist, rebuild an HNSW graph full of
    /// dead entries, and write the file when enough has changed.
    fn maintain(&mut self, conn: &Connection) -> Result<()> {
        let ivf_due = self.tuning.kind == Kind::Ivf
            && self.description != self.tuning.description()
            && self.live >= self.tuning.ivf_train_at;
        if ivf_due {
            log::info!(
                "faiss: collection '{}' reached {} records: training its IVF index",
                self.name,
                self.live
            );
        }
        if ivf_due || self.dead > self.live.max(1000) {
            self.rebuild(conn)?;
        }
        if self.changed >= self.tuning.save_every {
            self.save(conn)?;
        }
        Ok(())
    }

    /// Write the index file (atomically: the old file or the new one).
    pub(crate) fn save(&mut self, conn: &Connection) -> Result<()> {
        if self.changed == 0 {
            return Ok(());
        }
        if self.broken {
            self.rebuild(conn)?;
        }
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..40].copy_from_slice(&padded::<32>(&self.meta.token));
        header[40..88].copy_from_slice(&padded::<48>(&self.description));
        header[88..96].copy_from_slice(&records::max_fid(conn)?.to_le_bytes());
        let index = &self.index;
        replace_file(&self.file, "index file", |tmp| index.write(tmp, &header))?;
        self.changed = 0;
        Ok(())
    }

    /// The `n` nearest entries to the prepared query: `(fid, FAISS
    /// distance)`, fewer when the index holds fewer.
    pub(crate) fn nearest(&self, query: &[f32], n: usize) -> Result<Vec<i64>> {
        let n = n.min(self.index.len());
        if n == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .index
            .search(query, n)?
            .into_iter()
            .filter_map(|(_, fid)| (fid >= 0).then_some(fid))
            .collect())
    }

    /// Entries in the index (live and dead).
    pub(crate) fn entries(&self) -> usize {
        self.index.len()
    }

    /// Whether a search of `n ≥ entries()` returns every entry (an exact
    /// index), so nothing is missed.
    pub(crate) fn exhaustive(&self) -> bool {
        self.description == "Flat"
    }

    /// The index's description, for health.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }
}

/// Remove `file` if it exists.
pub(crate) fn remove_file(file: &Path) -> Result<()> {
    match std::fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::backend(format!(
            "cannot remove the index file {}: {e}; check the folder's permissions",
            file.display()
        ))),
    }
}
