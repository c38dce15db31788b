//! A collection's folder: `backplane.json` ([`Meta`]), how a folder is
//! built and removed, and the leftovers of both.
//!
//! ```text
//! <path>/<collection>/backplane.json     dimension, distance, payload shape (ours)
//! <path>/<collection>/edge_config.json   qdrant-edge's configuration
//! <path>/<collection>/segments/, wal/    qdrant-edge's data
//! ```
//!
//! A collection is built in `<path>/.creating-<name>-…` and renamed into
//! place when complete, and renamed to `<path>/.dropped-<name>-…` before
//! its files are deleted, so a crash never leaves half a collection under
//! its name. Leftovers are removed when a store opens.

use crate::config::Tuning;
use crate::shard::{caught, edge_config, engine};
use backplane_core::{kit, Distance, Error, ErrorKind, Result};
use backplane_qdrant_common::collection::{described, exists};
use backplane_qdrant_common::point::PayloadShape;
use qdrant_edge::EdgeShard;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Our file in each collection's folder.
const META_FILE: &str = "backplane.json";
/// Prefix of a collection folder being built.
const CREATING: &str = ".creating-";
/// Prefix of a collection folder being deleted.
const DROPPED: &str = ".dropped-";

/// An I/O error met while doing `what`.
pub(crate) fn io(what: String, e: std::io::Error) -> Error {
    Error::backend(format!("{what}: {e}"))
}

/// What `backplane.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// Format of this file.
    format: u32,
    pub(crate) dimension: u32,
    pub(crate) distance: Distance,
    /// See [`PayloadShape`]; only ever turns on.
    #[serde(default)]
    dotted_keys: bool,
    #[serde(default)]
    empty_arrays: bool,
}

impl Meta {
    fn new(dimension: u32, distance: Distance) -> Meta {
        Meta {
            format: 1,
            dimension,
            distance,
            dotted_keys: false,
            empty_arrays: false,
        }
    }

    pub(crate) fn shape(&self) -> PayloadShape {
        PayloadShape {
            dotted_keys: self.dotted_keys,
            empty_arrays: self.empty_arrays,
        }
    }

    /// This description with the payloads of `shape` added.
    pub(crate) fn with_shape(&self, shape: PayloadShape) -> Meta {
        let joined = self.shape().join(shape);
        Meta {
            dotted_keys: joined.dotted_keys,
            empty_arrays: joined.empty_arrays,
            ..self.clone()
        }
    }

    pub(crate) fn load(dir: &Path) -> Result<Meta> {
        let file = dir.join(META_FILE);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| io(format!("cannot read {}", file.display()), e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::backend(format!(
                "{} is not a collection description this plugin wrote ({e}): restore it from a backup, or move the folder away",
                file.display()
            ))
        })
    }

    /// Write atomically: a temporary file renamed over the old one.
    pub(crate) fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("Meta serialises");
        kit::fs::write_bytes(
            dir.join(META_FILE),
            "collection description",
            text.as_bytes(),
        )
    }
}

/// Whether `dir` holds a collection.
pub(crate) fn is_collection(dir: &Path) -> bool {
    dir.join(META_FILE).is_file()
}

/// Build collection `name` in its folder under `root`: a new shard and its
/// `backplane.json`, in a temporary folder renamed into place. The caller
/// keeps other stores of the process from building it at the same time.
pub(crate) fn create(
    root: &Path,
    name: &str,
    dimension: u32,
    distance: Distance,
    tuning: &Tuning,
) -> Result<()> {
    let dir = root.join(name);
    let taken = |dir: &Path| {
        match Meta::load(dir) {
        Ok(m) => exists(name, &described(m.dimension, m.distance)),
        Err(_) => Error::already_exists(format!(
            "collection '{name}': the folder {} exists already and is not a collection: move it away, or pick another name",
            dir.display()
        )),
    }
    };
    if dir.exists() {
        return Err(taken(&dir));
    }
    let tmp = root.join(format!("{CREATING}{}", unique_suffix(name)));
    let built = kit::fs::build_dir(&tmp, &dir, "collection", |tmp| {
        let shard = EdgeShard::new(tmp, edge_config(dimension, distance, tuning))
            .map_err(|e| engine("creating the collection", e))?;
        caught("writing the new collection", || drop(shard))?;
        Meta::new(dimension, distance).save(tmp)
    });
    match built {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(taken(&dir)),
        other => other,
    }
}

/// Move the folder `dir` of collection `name` out of the way, under a name
/// no collection has; its files are deleted by [`delete`].
pub(crate) fn rename_away(root: &Path, name: &str, dir: &Path) -> Result<PathBuf> {
    let gone = root.join(format!("{DROPPED}{}", unique_suffix(name)));
    std::fs::rename(dir, &gone).map_err(|e| {
        io(
            format!("cannot remove collection '{name}' ({})", dir.display()),
            e,
        )
    })?;
    Ok(gone)
}

/// Delete the files of dropped collection `name`, renamed to `gone`; what
/// fails is left for the next store that opens the folder.
pub(crate) fn delete(name: &str, gone: &Path) {
    if let Err(e) = std::fs::remove_dir_all(gone) {
        log::warn!(
            "qdrant-edge: collection '{name}' is dropped, but deleting its files in {} failed ({e}); they are removed when a store next opens this path",
            gone.display()
        );
    }
}

/// Remove `.dropped-*` folders, and `.creating-*` folders older than an
/// hour (a creation interrupted by a crash).
pub(crate) fn remove_leftovers(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = || {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600))
        };
        if name.starts_with(DROPPED) || (name.starts_with(CREATING) && old()) {
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                log::warn!(
                    "qdrant-edge: cannot remove the leftover folder {}: {err}",
                    e.path().display()
                );
            }
        }
    }
}

/// `<name>-<unique id>`, for the temporary names of a collection's folder.
fn unique_suffix(name: &str) -> String {
    kit::id::new_id(&format!("{name}-"))
}
