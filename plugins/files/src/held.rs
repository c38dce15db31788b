//! A store's state held in memory and kept in its files ([`Held`]), and
//! the JSON files themselves ([`parse`], [`to_bytes`]).
//!
//! Reads are served from memory. A write holds the state exclusively while
//! it applies the change in memory (where it is checked whole first, so a
//! refused change changes nothing) and writes the files it touched, so no
//! read sees a change before its files hold it. When writing the files
//! fails, the state in memory is dropped and read again from the files at
//! the next call, so memory never holds what the files do not; until the
//! files can be read again, every call is that error.

use crate::storage::Storage;
use backplane_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::{Arc, RwLock};

/// The format version written in every file.
pub(crate) const FORMAT: u32 = 1;

/// How a state is read from its files.
type Load<T> = Box<dyn Fn(&Storage) -> Result<T> + Send + Sync>;

/// A state `T` loaded from the files of a [`Storage`].
pub(crate) struct Held<T> {
    pub(crate) storage: Storage,
    state: RwLock<Option<Arc<T>>>,
    /// Reads share it; a write holds it alone until its files are written.
    gate: RwLock<()>,
    load: Load<T>,
}

impl<T> Held<T> {
    /// Load the state from `storage` now (an error here is an error at
    /// open).
    pub(crate) fn open(
        storage: Storage,
        load: impl Fn(&Storage) -> Result<T> + Send + Sync + 'static,
    ) -> Result<Held<T>> {
        let state = load(&storage)?;
        Ok(Held {
            storage,
            state: RwLock::new(Some(Arc::new(state))),
            gate: RwLock::new(()),
            load: Box::new(load),
        })
    }

    /// Run `read` on the state, never while a write is in progress.
    pub(crate) fn read<R>(&self, read: impl FnOnce(&T) -> Result<R>) -> Result<R> {
        let _shared = self.gate.read().unwrap_or_else(|p| p.into_inner());
        read(&*self.current()?)
    }

    /// The state, read again from the files if a write failed.
    fn current(&self) -> Result<Arc<T>> {
        if let Some(s) = self
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Ok(s.clone());
        }
        let mut slot = self.state.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(s.clone());
        }
        let s = Arc::new((self.load)(&self.storage)?);
        *slot = Some(s.clone());
        log::info!(
            "files: read {} again after a failed write",
            self.storage.shown()
        );
        Ok(s)
    }

    /// Apply `change` to the state, then `save` what it touched; one write
    /// at a time. A change that fails changes nothing, unless it is
    /// `partial` (it may stop part way, as an import at a conflict): the
    /// state is then read again from the files, which it never reached.
    pub(crate) fn write<R>(
        &self,
        partial: bool,
        change: impl FnOnce(&T) -> Result<R>,
        save: impl FnOnce(&T, &Storage) -> Result<()>,
    ) -> Result<R> {
        let _alone = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let state = self.current()?;
        let r = match change(&state) {
            Ok(r) => r,
            Err(e) => {
                if partial {
                    *self.state.write().unwrap_or_else(|p| p.into_inner()) = None;
                }
                return Err(e);
            }
        };
        if let Err(e) = save(&state, &self.storage) {
            *self.state.write().unwrap_or_else(|p| p.into_inner()) = None;
            return Err(e);
        }
        Ok(r)
    }
}

/// `value` as the bytes of a JSON file, indented when `pretty`.
pub(crate) fn to_bytes(value: &impl Serialize, pretty: bool) -> Vec<u8> {
    let mut out = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    }
    .expect("plain JSON values serialize");
    out.push(b'\n');
    out
}

/// Parse the file `path` (as the storage shows it) holding `bytes`: a
/// syntax error or a wrong shape is one `Config` error with the path, line
/// and column.
pub(crate) fn parse<T: DeserializeOwned>(storage: &Storage, path: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = e.to_string();
        let what = what
            .rsplit_once(" at line ")
            .map_or(what.as_str(), |(w, _)| w)
            .to_string();
        Error::config(format!(
            "{}:{}:{}: {what}: fix the file (it is JSON), or restore it from a backup",
            storage.path_of(path),
            e.line(),
            e.column()
        ))
    })
}

/// Refuse a file of a format this plugin does not know.
pub(crate) fn check_format(storage: &Storage, path: &str, format: u32) -> Result<()> {
    if format == FORMAT {
        return Ok(());
    }
    Err(Error::incompatible(format!(
        "{} has format {format}, and this plugin reads format {FORMAT}: open it with the plugin release that wrote it",
        storage.path_of(path)
    )))
}
