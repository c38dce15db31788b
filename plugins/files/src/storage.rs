//! Where the files live, through Apache OpenDAL: a local folder, an S3
//! bucket (or an S3-compatible server's) or an Azure Blob Storage
//! container, each under a prefix.
//!
//! - **Atomic files.** A local file is written to a temporary file in
//!   `<root>/.tmp/` and renamed over the old one (OpenDAL's
//!   `atomic_write_dir`); an object is replaced by one PUT. A reader, or a
//!   process killed during the write, sees the old file or the new one,
//!   never part of one. Temporary files a killed process left are removed
//!   at the next open.
//! - **One process per root.** A local root is locked with an OS file lock
//!   on `<root>/.lock`, released when the process ends however it ends. An
//!   object-store root holds a `.lock` object created only if absent (a
//!   conditional PUT), deleted when the store closes; a process that died
//!   without closing leaves it, and the next open names it.
//! - **Requests** on object stores go through a reqwest client with the
//!   section's connect and request timeouts, run on the plugin's own tokio
//!   runtime (one worker): nothing waits past `timeout_ms`.

use crate::config::{Location, Settings};
use backplane_core::kit::time::now_ms;
use backplane_core::{Error, Result};
use opendal::{ErrorKind as OdKind, OperationContext, Operator};
use std::path::PathBuf;

/// The lock file or object.
const LOCK: &str = ".lock";

/// How this store holds its root.
enum Lock {
    /// The locked `<root>/.lock` file (the OS releases it).
    File(#[allow(dead_code)] std::fs::File),
    /// The `.lock` object this store created, deleted on drop.
    Object,
}

/// A root's files.
pub(crate) struct Storage {
    op: Operator,
    rt: tokio::runtime::Runtime,
    /// The root as messages show it.
    shown: String,
    lock: Option<Lock>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("root", &self.shown)
            .finish()
    }
}

/// The reqwest client of object-store requests. rustls needs its crypto
/// provider chosen: ring, installed once for this library's copy of
/// rustls.
fn http_client(settings: &Settings) -> Result<reqwest::Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.timeout)
        .build()
        .map_err(|e| Error::backend(format!("cannot make the HTTP client: {e}")))
}

impl Storage {
    /// Open the root `settings` names and take its lock.
    pub(crate) fn open(settings: &Settings) -> Result<Storage> {
        let shown = settings.location.shown();
        let rt = backplane_core::kit::runtime::runtime("files")?;
        let config =
            |e: opendal::Error| Error::config(format!("the root {shown} cannot be used: {e}"));
        let (op, folder): (Operator, Option<PathBuf>) = match &settings.location {
            Location::Folder(path) => {
                std::fs::create_dir_all(path.join(".tmp")).map_err(|e| {
                    Error::config(format!(
                        "cannot create the folder {}: {e}: check the path and its permissions",
                        path.display()
                    ))
                })?;
                let root = path.display().to_string();
                let tmp = path.join(".tmp").display().to_string();
                let builder = opendal::services::Fs::default()
                    .root(&root)
                    .atomic_write_dir(&tmp);
                (Operator::new(builder).map_err(config)?, Some(path.clone()))
            }
            Location::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                access_key_id,
                secret_access_key,
                anonymous,
            } => {
                let mut b = opendal::services::S3::default()
                    .bucket(bucket)
                    .root(&format!("/{prefix}"))
                    .region(region)
                    .disable_ec2_metadata();
                if let Some(e) = endpoint {
                    b = b.endpoint(e);
                }
                b = match (access_key_id, secret_access_key) {
                    (Some(id), Some(key)) => b
                        .access_key_id(id.expose())
                        .secret_access_key(key.expose())
                        .disable_config_load(),
                    _ if *anonymous => b.skip_signature(),
                    // No keys given: AWS's own chain (its environment
                    // variables, profile, web identity).
                    _ => b,
                };
                (Operator::new(b).map_err(config)?, None)
            }
            Location::Azblob {
                container,
                prefix,
                endpoint,
                account_name,
                account_key,
            } => {
                let mut b = opendal::services::Azblob::default()
                    .container(container)
                    .root(&format!("/{prefix}"))
                    .endpoint(endpoint)
                    .account_name(account_name);
                if let Some(k) = account_key {
                    b = b.account_key(k.expose());
                }
                (Operator::new(b).map_err(config)?, None)
            }
        };
        let op = match folder {
            Some(_) => op,
            None => {
                let transport = opendal::HttpTransporter::new(
                    opendal_http_transport_reqwest::ReqwestTransport::new(http_client(settings)?),
                );
                op.with_context(OperationContext::new().with_http_transport(transport))
            }
        };
        let mut storage = Storage {
            op,
            rt,
            shown,
            lock: None,
        };
        storage.lock = Some(match &folder {
            Some(path) => storage.lock_folder(path)?,
            None => storage.lock_object()?,
        });
        if let Some(path) = folder {
            // Temporary files a killed process left behind: nobody else
            // writes here while this store holds the lock.
            for entry in std::fs::read_dir(path.join(".tmp"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(storage)
    }

    /// Take the OS lock of `<folder>/.lock`.
    fn lock_folder(&self, folder: &std::path::Path) -> Result<Lock> {
        let path = folder.join(LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                Error::config(format!(
                    "cannot create the lock file {}: {e}: check the folder's permissions",
                    path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Lock::File(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::unavailable(format!(
                "another store or process has {} open (it holds {}): close it first; two writers would overwrite each other's files",
                self.shown,
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::backend(format!(
                "cannot lock {}: {e}",
                path.display()
            ))),
        }
    }

    /// Create the `.lock` object, only if absent.
    fn lock_object(&self) -> Result<Lock> {
        let body = format!(
            "{{\"pid\": {}, \"since_ms\": {}}}\n",
            std::process::id(),
            now_ms()
        );
        let written = self
            .rt
            .block_on(async { self.op.write_with(LOCK, body).if_not_exists(true).await });
        match written {
            Ok(_) => Ok(Lock::Object),
            Err(e) if e.kind() == OdKind::ConditionNotMatch => {
                let holder = self
                    .read(LOCK)
                    .ok()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).trim().to_string())
                    .unwrap_or_default();
                Err(Error::unavailable(format!(
                    "another store or process has {} open (its lock object {}{LOCK} says {holder}): close it first; if that process is gone, delete the object",
                    self.shown,
                    self.prefix_shown()
                )))
            }
            Err(e) => Err(self.error(e, "taking the lock")),
        }
    }

    /// The root with a trailing `/`, for naming objects in messages.
    fn prefix_shown(&self) -> String {
        if self.shown.ends_with('/') {
            self.shown.clone()
        } else {
            format!("{}/", self.shown)
        }
    }

    /// The root as messages show it.
    pub(crate) fn shown(&self) -> &str {
        &self.shown
    }

    /// The error for `e` while `what`, in Backplane's kinds.
    fn error(&self, e: opendal::Error, what: &str) -> Error {
        let text = e.to_string();
        match e.kind() {
            OdKind::NotFound => Error::config(format!(
                "{what}: {} does not exist ({text}): create the bucket or container first, or fix `root`",
                self.shown
            )),
            OdKind::PermissionDenied => Error::config(format!(
                "{what}: {} refused the credentials ({text}): check the keys the environment gives",
                self.shown
            )),
            OdKind::ConfigInvalid => Error::config(format!("{what}: {text}")),
            _ if e.is_temporary() || e.kind() == OdKind::RateLimited => {
                Error::unavailable(format!(
                    "{what}: {} did not answer ({text}): the call can be retried",
                    self.shown
                ))
            }
            _ => Error::backend(format!("{what} in {}: {text}", self.shown)),
        }
    }

    /// The bytes of `path`, `None` when it does not exist.
    pub(crate) fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match self.rt.block_on(self.op.read(path)) {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(e) if e.kind() == OdKind::NotFound => Ok(None),
            Err(e) => Err(self.error(e, &format!("reading {path}"))),
        }
    }

    /// Replace `path` with `bytes`, whole.
    pub(crate) fn write(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.rt
            .block_on(self.op.write(path, bytes))
            .map(drop)
            .map_err(|e| self.error(e, &format!("writing {path}")))
    }

    /// Remove `path` (absent is fine).
    pub(crate) fn delete(&self, path: &str) -> Result<()> {
        self.rt
            .block_on(self.op.delete(path))
            .map_err(|e| self.error(e, &format!("deleting {path}")))
    }

    /// The names of the files directly in folder `dir` (`channels/`).
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<String>> {
        match self.rt.block_on(self.op.list(dir)) {
            Ok(entries) => Ok(entries
                .into_iter()
                .filter(|e| e.metadata().is_file())
                .map(|e| e.name().to_string())
                .collect()),
            Err(e) if e.kind() == OdKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(self.error(e, &format!("listing {dir}"))),
        }
    }

    /// The path of `file` as a person finds it: `<root>/<file>`.
    pub(crate) fn path_of(&self, file: &str) -> String {
        format!("{}{file}", self.prefix_shown())
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(Lock::Object) = self.lock {
            if let Err(e) = self.rt.block_on(self.op.delete(LOCK)) {
                log::warn!(
                    "files: could not delete the lock object {}{LOCK}: {e}; delete it before the next open",
                    self.prefix_shown()
                );
            }
        }
    }
}
