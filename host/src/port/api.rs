//! The [`Storage`] methods that move data: [`Storage::migrate`],
//! [`Storage::backup`], [`Storage::restore`] and [`Storage::count`], and
//! [`verify_archive`].

use super::archive::{self, ArchiveSink, ArchiveSource, ItemEntry, Manifest, StoreEntry};
use super::engine::{self, digest_of, Report, Source};
use super::store::{Handle, StoreEnd};
use super::{ArchiveReport, CopyOptions, Progress, StoreRef};
use crate::storage::Storage;
use backplane_core::{Capability, Error, ErrorKind, Result};
use std::path::{Path, PathBuf};

/// Check every data file of the archive at `dir` against its manifest
/// (checksums, that every record parses, record counts and digests).
pub fn verify_archive(dir: impl AsRef<Path>, progress: &dyn Progress) -> Result<ArchiveReport> {
    archive::verify(dir.as_ref(), progress)
}

fn config_name(s: &Storage) -> String {
    s.config()
        .file
        .as_ref()
        .map(|f| {
            f.canonicalize()
                .unwrap_or_else(|_| f.clone())
                .display()
                .to_string()
        })
        .unwrap_or_else(|| "(config built in code)".into())
}

impl Storage {
    /// The store `r` as the copy engine sees it.
    pub(crate) fn store_end(&self, r: &StoreRef) -> Result<StoreEnd> {
        let entry = self
            .config()
            .stores
            .iter()
            .find(|s| s.capability == r.capability && s.name == r.name);
        let backend = entry.map_or("?", |e| e.backend.as_str());
        let label = format!("{r} ({backend}) of {}", config_name(self));
        let max_messages = entry
            .and_then(|e| e.options.get("max_messages"))
            .and_then(|v| v.as_u64())
            .or((r.capability == Capability::Cache)
                .then_some(backplane_core::ChannelLimits::default().max_messages as u64));
        let handle = match r.capability {
            Capability::Relational => Handle::Relational(self.relational(&r.name)?),
            Capability::Vector => Handle::Vector(self.vector(&r.name)?),
            Capability::Cache => Handle::Cache(self.cache(&r.name)?),
            Capability::Graph => Handle::Graph(self.graph(&r.name)?),
        };
        Ok(StoreEnd::new(label, handle, max_messages))
    }

    /// Copy every record of the store `from` into the store `to` of
    /// `target` (this storage, or one opened from another plugins.toml),
    /// any backend to any backend of the same capability; see
    /// [`CopyOptions`]. The copy streams page by page, is resumable (run it
    /// again after a crash and it continues), and ends by reading the
    /// target back and comparing every record's checksum.
    pub fn migrate(
        &self,
        from: &StoreRef,
        target: &Storage,
        to: &StoreRef,
        opts: &CopyOptions,
        progress: &dyn Progress,
    ) -> Result<Report> {
        if from.capability != to.capability {
            return Err(Error::invalid(format!(
                "{from} is a {} store and {to} a {} store: a migration copies between stores of one capability",
                from.capability, to.capability
            )));
        }
        if from == to && config_name(self) == config_name(target) {
            return Err(Error::invalid(format!(
                "{from} is both the source and the target: name another store, or another config with --to-config"
            )));
        }
        let src = self.store_end(from)?;
        let dst = target.store_end(to)?;
        let state = opts.state.clone().unwrap_or_else(|| {
            engine::default_state_path(
                &target.config().base_dir,
                &from.to_string(),
                &to.to_string(),
                &format!("{}\n{}", Source::label(&src), Source::label(&dst)),
            )
        });
        engine::copy(&src, &dst, Some(&dst), opts, Some(state), progress)
    }

    /// Every configured store that opened, as references.
    pub fn store_refs(&self) -> Vec<StoreRef> {
        self.config()
            .stores
            .iter()
            .map(|s| StoreRef::new(s.capability, s.name.clone()))
            .filter(|r| self.store_end(r).is_ok())
            .collect()
    }

    /// Write `stores` (every store when empty) into a new archive folder
    /// `dir`. The folder appears only when the backup is complete and has
    /// been read back and checked; a failed backup leaves nothing under
    /// that name.
    pub fn backup(
        &self,
        dir: impl AsRef<Path>,
        stores: &[StoreRef],
        progress: &dyn Progress,
    ) -> Result<ArchiveReport> {
        let dir = dir.as_ref();
        if dir.exists() {
            let empty = std::fs::read_dir(dir)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not empty: back up into a new folder",
                        dir.display()
                    ),
                ));
            }
        }
        let stores: Vec<StoreRef> = if stores.is_empty() {
            self.store_refs()
        } else {
            stores.to_vec()
        };
        if stores.is_empty() {
            return Err(Error::config(
                "no store to back up: the config has none that opened",
            ));
        }
        let name = dir
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{} names no folder", dir.display())))?
            .to_string_lossy()
            .to_string();
        let partial = dir.with_file_name(format!(".{name}.backplane-partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial)
            .map_err(|e| backplane_core::kit::fs::io_error("archive", &partial, e))?;
        let result = (|| {
            let mut manifest = Manifest {
                format: "backplane-archive".into(),
                format_version: archive::FORMAT_VERSION,
                backplane_version: env!("CARGO_PKG_VERSION").into(),
                created_at: archive::now_rfc3339(),
                stores: Vec::new(),
            };
            for (i, r) in stores.iter().enumerate() {
                let src = self.store_end(r)?;
                let sink = ArchiveSink::new(&partial, r.capability, &r.name, i + 1);
                let opts = CopyOptions::default();
                let report = engine::copy(&src, &sink, None, &opts, None, progress)?;
                let files = sink.files();
                let items = report
                    .plan
                    .iter()
                    .zip(&report.items)
                    .map(|(item, rep)| {
                        let (file, sha256) = files
                            .get(&archive::item_key(item))
                            .cloned()
                            .ok_or_else(|| {
                                Error::backend(format!("{} wrote no data file", item.label()))
                            })?;
                        Ok(ItemEntry {
                            item: item.clone(),
                            file,
                            records: rep.records,
                            sha256,
                            digest: rep.source,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                manifest.stores.push(StoreEntry {
                    capability: r.capability,
                    name: r.name.clone(),
                    backend: self
                        .config()
                        .stores
                        .iter()
                        .find(|s| s.capability == r.capability && s.name == r.name)
                        .map_or_else(String::new, |s| s.backend.clone()),
                    consistency: src.consistency(),
                    items,
                });
            }
            archive::write_manifest(&partial, &manifest)?;
            let check = archive::verify(&partial, progress)?;
            if !check.ok {
                return Err(Error::backend(format!(
                    "the archive did not read back as written: {}",
                    check.problems.join("; ")
                )));
            }
            if dir.exists() {
                std::fs::remove_dir(dir)
                    .map_err(|e| backplane_core::kit::fs::io_error("archive", dir, e))?;
            }
            std::fs::rename(&partial, dir)
                .map_err(|e| backplane_core::kit::fs::io_error("archive", dir, e))?;
            Ok(ArchiveReport {
                dir: dir.to_path_buf(),
                ..check
            })
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        result
    }

    /// Restore the archive at `dir` into this storage's stores: every store
    /// of the archive into the store of the same name (or, with `into`,
    /// only the listed ones, each `(archive store, target store)`). Every
    /// selected data file is checked against its checksum before anything
    /// is written; then each store is copied as [`migrate`](Self::migrate)
    /// copies (resumable, verified), one report each.
    pub fn restore(
        &self,
        dir: impl AsRef<Path>,
        into: &[(StoreRef, StoreRef)],
        opts: &CopyOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<Report>> {
        let dir = dir.as_ref();
        let manifest = archive::read_manifest(dir)?;
        let pairs: Vec<(StoreRef, StoreRef)> = if into.is_empty() {
            manifest
                .stores
                .iter()
                .map(|s| {
                    let r = StoreRef::new(s.capability, s.name.clone());
                    (r.clone(), r)
                })
                .collect()
        } else {
            into.to_vec()
        };
        let mut plan = Vec::new();
        for (from, to) in &pairs {
            let entry = manifest
                .stores
                .iter()
                .find(|s| s.capability == from.capability && s.name == from.name)
                .ok_or_else(|| {
                    let have: Vec<String> = manifest
                        .stores
                        .iter()
                        .map(|s| format!("{}.{}", s.capability, s.name))
                        .collect();
                    Error::not_found(format!(
                        "the archive has no store {from} (it has {}): name one of those",
                        have.join(", ")
                    ))
                })?;
            if from.capability != to.capability {
                return Err(Error::invalid(format!(
                    "{from} is a {} store and {to} a {} store: restore into a store of the same capability",
                    from.capability, to.capability
                )));
            }
            let dst = self.store_end(to)?;
            let src = ArchiveSource::new(dir, entry.clone());
            src.check_files()?;
            plan.push((from.clone(), to.clone(), src, dst));
        }
        let archive_name = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string();
        let mut reports = Vec::new();
        for (from, to, src, dst) in &plan {
            let state = opts
                .state
                .clone()
                .map(|p| suffixed(&p, to))
                .unwrap_or_else(|| {
                    engine::default_state_path(
                        &self.config().base_dir,
                        &format!("archive.{from}"),
                        &to.to_string(),
                        &format!("{archive_name}\n{}", Source::label(dst)),
                    )
                });
            reports.push(engine::copy(
                src,
                dst,
                Some(dst),
                opts,
                Some(state),
                progress,
            )?);
        }
        Ok(reports)
    }

    /// How many records each item of the store `r` holds (tables,
    /// collections, nodes and edges, keys and messages).
    pub fn count(&self, r: &StoreRef) -> Result<Vec<(String, u64)>> {
        let end = self.store_end(r)?;
        let mut out = Vec::new();
        for item in Source::items(&end, &[])? {
            let n = match Source::total(&end, &item)? {
                Some(n) => n,
                None => digest_of(&end, &item, 1000, &super::Quiet)?.records,
            };
            out.push((item.label(), n));
        }
        Ok(out)
    }
}

/// `path` with the target store's name added, when one state file is
/// given for a restore of several stores.
fn suffixed(path: &Path, to: &StoreRef) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{name}.{to}"))
}
