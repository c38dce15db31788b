//! The host's side of the FFI: loading a plugin library (or taking a plugin
//! linked into the program), opening stores on it, and the [`Remote`]
//! handle through which the boundary's clients run calls.

use super::export::{open_store, plugin_info, OpenedStore};
use super::{decode_with, FfiDone, FfiResult, FfiSql, FfiStore, LogFn, PluginModRef};
use crate::boundary::relational::{RawParams, RelationalClient};
use crate::boundary::{self, cache::CacheClient, graph::GraphClient, vector::VectorClient};
use crate::cache::Done;
use crate::{Capability, Error, Plugin, PluginInfo, Result, StoreConfig};
use abi_stable::library::{lib_header_from_raw_library, LibraryError, RawLibrary};
use abi_stable::std_types::{RSlice, RStr};
use serde::{de::DeserializeOwned, Serialize};
use std::ffi::c_void;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

/// A plugin the host can open stores on: a library loaded from disk, or a
/// plugin linked into the program. Either way, every call crosses the same
/// boundary. Libraries are never unloaded: their code may still run.
#[derive(Clone)]
pub struct Library {
    kind: Kind,
    info: PluginInfo,
}

#[derive(Clone)]
enum Kind {
    Linked(Arc<dyn Plugin>),
    Loaded(PluginModRef),
}

impl fmt::Debug for Library {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Library").field("info", &self.info).finish()
    }
}

/// Why a library could not be used: one line, saying what is wrong and
/// what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError(String);

impl LoadError {
    /// The line.
    pub fn reason(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// The first 300 characters of `s`, its lines joined into one.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(300)
        .collect()
}

/// Whether a plugin built against backplane-core `plugin` may load in a
/// host built against `host` (docs/abi.md): the same major version, and
/// for 0.x the same minor; patch levels mix in both directions. `Err` is
/// the one line that says which is newer and what to do.
pub fn compatible_versions(plugin: &str, host: &str) -> std::result::Result<(), String> {
    let parse = |v: &str| -> Option<(u64, u64, u64)> {
        let core = v.split(['-', '+']).next()?;
        let mut it = core.split('.').map(|n| n.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    let (Some(p), Some(h)) = (parse(plugin), parse(host)) else {
        return Err(format!(
            "reports backplane-core version '{plugin}', which is not a version (host has {host}): rebuild the plugin against backplane-core {host}"
        ));
    };
    let series = |v: (u64, u64, u64)| if v.0 == 0 { (0, v.1) } else { (v.0, 0) };
    if series(p) == series(h) {
        return Ok(());
    }
    let (hs, ps) = (series(h), series(p));
    let host_series = if hs.0 == 0 {
        format!("0.{}", hs.1)
    } else {
        hs.0.to_string()
    };
    if ps > hs {
        Err(format!(
            "built against backplane-core {plugin}, newer than this host's {host}: use a host built on backplane-core {}, or rebuild the plugin against backplane-core {host_series}",
            if ps.0 == 0 { format!("0.{}", ps.1) } else { ps.0.to_string() }
        ))
    } else {
        Err(format!(
            "built against backplane-core {plugin}, host has {host}: rebuild the plugin against backplane-core {host_series} (the host cannot load plugins of an older series)"
        ))
    }
}

fn library_error(e: LibraryError) -> LoadError {
    let core = crate::CORE_VERSION;
    LoadError(match e {
        LibraryError::OpenError { err, .. } => format!(
            "cannot be loaded as a shared library ({}): remove it from the plugin folder, or rebuild it for this platform",
            one_line(&err.to_string())
        ),
        LibraryError::GetSymbolError { .. } => {
            "not a Backplane plugin (it exports no Backplane root module): remove it from the plugin folder".into()
        }
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => format!(
            "built against backplane-core {actual_version}, host has {core}: rebuild the plugin against backplane-core {core}"
        ),
        LibraryError::AbiInstability(e) => format!(
            "its backplane-core types do not match the host's ({}): rebuild the plugin against backplane-core {core}",
            one_line(&e.to_string())
        ),
        LibraryError::RootModule { err, .. } => format!(
            "its root module failed to initialise ({}): fix or rebuild the plugin",
            one_line(&err.to_string())
        ),
        other => format!(
            "cannot be used as a Backplane plugin ({}): rebuild it against backplane-core {core}",
            one_line(&other.to_string())
        ),
    })
}

impl Library {
    /// Load the plugin library at `path`: check that it is a Backplane
    /// plugin built against this core, hand it the host's logger, and ask
    /// what it provides.
    pub fn load(path: &Path) -> std::result::Result<Library, LoadError> {
        let raw = RawLibrary::load_at(path).map_err(library_error)?;
        // SAFETY: abi_stable reads the library's header; its layout is
        // checked before the root module is used.
        let header = unsafe { lib_header_from_raw_library(&raw) }.map_err(library_error)?;
        let lib_version = header.version_strings();
        // Versions first, by the policy of docs/abi.md, so a mismatch is
        // one line naming both rather than abi_stable's layout report.
        compatible_versions(lib_version.version.as_str(), crate::CORE_VERSION)
            .map_err(LoadError)?;
        let module = header
            .init_root_module::<PluginModRef>()
            .map_err(|e| match e {
                // A core with another version string fails the version
                // check first; name both versions.
                LibraryError::IncompatibleVersionNumber { .. } => LoadError(format!(
                    "built against backplane-core {}, host has {}: rebuild the plugin against backplane-core {}",
                    lib_version.version,
                    crate::CORE_VERSION,
                    crate::CORE_VERSION
                )),
                other => library_error(other),
            })?;
        // SAFETY: the symbol, where present, is the u64 static that
        // backplane-core exports from every plugin library.
        // The symbol's address is the static's: read the u64 behind it.
        let fingerprint = unsafe { raw.get::<*const u64>(b"BACKPLANE_WIRE_FINGERPRINT\0") }
            .ok()
            .map(|s| unsafe { **s });
        // Libraries are never unloaded: their code may still be referenced.
        std::mem::forget(raw);
        if module.abi_version() != crate::ABI_VERSION {
            return Err(LoadError(format!(
                "speaks Backplane wire format {}, host speaks {}: rebuild the plugin against backplane-core {}",
                module.abi_version(),
                crate::ABI_VERSION,
                crate::CORE_VERSION
            )));
        }
        // The fingerprint tells apart two cores of one version string
        // (docs/abi.md, rule 3). Across patch levels of a series it is
        // expected to differ: a patch release may add method lines on new
        // tags, which old plugins answer with "does not know call N", and
        // the series check above stands for the rest. Plugins built on
        // 0.1.0 carry no fingerprint.
        if let Some(fp) =
            fingerprint.filter(|_| lib_version.version.as_str() == crate::CORE_VERSION)
        {
            if fp != crate::WIRE_FINGERPRINT {
                return Err(LoadError(format!(
                    "built against a backplane-core {} whose wire types differ from this host's {} (fingerprint {fp:016x}, host {:016x}): a type that crosses the boundary changed without a version change; rebuild the plugin against the host's backplane-core {}",
                    lib_version.version,
                    crate::CORE_VERSION,
                    crate::WIRE_FINGERPRINT,
                    crate::CORE_VERSION
                )));
            }
        }
        (module.init())(
            LogFn {
                log: super::log::host_log,
            },
            super::log::filter_code(log::max_level()),
        );
        let info = decode_with((module.info())(), boundary::decode_owned)
            .map_err(|e| LoadError(one_line(e.message())))?;
        Ok(Library {
            kind: Kind::Loaded(module),
            info,
        })
    }

    /// The plugins linked into this program (registered with
    /// [`export_plugin!`](crate::export_plugin)), each or why it failed.
    pub fn linked() -> Vec<std::result::Result<Library, LoadError>> {
        crate::registered_plugins()
            .map(|r| {
                let p: Arc<dyn Plugin> = super::catch("construction", || Ok(r.make()))
                    .map_err(|e| LoadError(one_line(e.message())))?
                    .into();
                Ok(Library {
                    info: plugin_info(&*p),
                    kind: Kind::Linked(p),
                })
            })
            .collect()
    }

    /// What the plugin reported: name, version, backends.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Whether the plugin is linked into the program rather than loaded.
    pub fn is_linked(&self) -> bool {
        matches!(self.kind, Kind::Linked(_))
    }

    /// Open the store `config` describes. Errors of calls on it name the
    /// store and the backend.
    pub fn open(&self, config: &StoreConfig) -> Result<OpenedStore> {
        let ffi = match &self.kind {
            Kind::Linked(p) => open_store(&**p, config)?.into_ffi(),
            Kind::Loaded(m) => {
                let req = boundary::encode(config);
                match (m.open())(RSlice::from_slice(&req)) {
                    abi_stable::std_types::RResult::ROk(s) => s,
                    abi_stable::std_types::RResult::RErr(b) => {
                        return Err(boundary::decode(&b)?);
                    }
                }
            }
        };
        if Capability::from_code(ffi.capability) != Some(config.capability) {
            return Err(Error::incompatible(
                "the plugin returned a store of another capability: report this to the plugin's author",
            ));
        }
        let remote = Remote {
            ffi,
            store: config.store.as_str().into(),
            backend: config.backend.as_str().into(),
        };
        Ok(match config.capability {
            Capability::Relational => {
                OpenedStore::Relational(Box::new(RelationalClient(remote, Default::default())))
            }
            Capability::Vector => OpenedStore::Vector(Box::new(VectorClient(remote))),
            Capability::Cache => OpenedStore::Cache(Box::new(CacheClient(remote))),
            Capability::Graph => OpenedStore::Graph(Box::new(GraphClient(remote))),
        })
    }

    /// Stop the plugin's background work (runtimes, pools).
    pub fn shutdown(&self) {
        match &self.kind {
            Kind::Linked(p) => {
                let _ = super::catch("shutdown", || {
                    p.shutdown();
                    Ok(())
                });
            }
            Kind::Loaded(m) => (m.shutdown())(),
        }
    }
}

/// What the host hands a plugin as `ctx` of a started call: the callback
/// that decodes the result and completes the caller's future.
type Callback = Box<dyn FnOnce(FfiResult) + Send>;

/// The host's completion function for started calls; `ctx` is a boxed
/// [`Callback`], freed here.
unsafe extern "C" fn host_done(ctx: *mut c_void, r: FfiResult) {
    // SAFETY: made by `Box::into_raw` in `Remote::start`; the plugin calls
    // this once per started call.
    let cb = unsafe { Box::from_raw(ctx as *mut Callback) };
    let _ = catch_unwind(AssertUnwindSafe(move || cb(r)));
}

/// A store opened in a plugin, as the boundary's clients call it: runs
/// encoded calls and decodes their results, adding the store's and the
/// backend's names to errors.
pub(crate) struct Remote {
    ffi: FfiStore,
    store: Arc<str>,
    backend: Arc<str>,
}

impl Remote {
    /// Whether the store serves its non-blocking calls without blocking.
    pub(crate) fn has_async(&self) -> bool {
        self.ffi.has_async
    }

    fn raw(&self, req: &[u8]) -> FfiResult {
        // SAFETY: `object` stays valid until `drop` runs in `Drop`.
        unsafe { (self.ffi.call)(self.ffi.object, RSlice::from_slice(req)) }
    }

    /// Run call `tag` with `args` (a tuple of wire forms), decode the result.
    #[inline]
    pub(crate) fn call<T: DeserializeOwned>(&self, tag: u16, args: &impl Serialize) -> Result<T> {
        let req = boundary::request(tag, args);
        decode_with(self.raw(&req), boundary::decode_owned)
            .map_err(|e| e.in_store(&self.store, &self.backend))
    }

    /// Run a relational fast-path call, decoding the result with `decode_ok`.
    #[inline]
    pub(crate) fn call_sql<T>(
        &self,
        op: u8,
        sql: &str,
        params: &RawParams<'_>,
        decode_ok: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let call = FfiSql {
            op,
            sql: RStr::from_str(sql),
            values: RSlice::from_slice(params.values.as_slice()),
            names: RSlice::from_slice(&params.names),
            set_lens: RSlice::from_slice(params.set_lens.as_slice()),
        };
        // SAFETY: `object` stays valid until `drop`; the views in `call`
        // borrow `params` and `sql`, which outlive the call.
        let r = unsafe { (self.ffi.call_sql)(self.ffi.object, &call) };
        decode_with(r, decode_ok).map_err(|e| e.in_store(&self.store, &self.backend))
    }

    /// Start call `tag` without blocking; `done` gets the decoded result
    /// (run here, blocking, if the plugin did not start it).
    pub(crate) fn start<T: DeserializeOwned + 'static>(
        &self,
        tag: u16,
        args: &impl Serialize,
        done: Done<T>,
    ) {
        self.start_with(tag, args, boundary::decode_owned, done)
    }

    /// [`start`](Self::start), the reply decoded by `decode_ok`.
    pub(crate) fn start_with<T: 'static>(
        &self,
        tag: u16,
        args: &impl Serialize,
        decode_ok: impl FnOnce(&[u8]) -> Result<T> + Send + 'static,
        done: Done<T>,
    ) {
        let req = boundary::request(tag, args);
        let (store, backend) = (self.store.clone(), self.backend.clone());
        let cb: Callback = Box::new(move |r| {
            done(decode_with(r, decode_ok).map_err(|e| e.in_store(&store, &backend)))
        });
        let ctx = Box::into_raw(Box::new(cb)) as *mut c_void;
        // SAFETY: `object` stays valid until `drop`; `ctx` lives until
        // `host_done` frees it, which may run on any thread.
        let started = unsafe {
            (self.ffi.call_async)(
                self.ffi.object,
                RSlice::from_slice(&req),
                ctx,
                FfiDone { func: host_done },
            )
        };
        if !started {
            // SAFETY: not started, so the plugin never saw `ctx`.
            let cb = unsafe { Box::from_raw(ctx as *mut Callback) };
            cb(self.raw(&req));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compatible_versions;

    #[test]
    fn versions_load_together_by_series() {
        assert!(compatible_versions("0.1.0", "0.1.1").is_ok());
        assert!(compatible_versions("0.1.7", "0.1.1").is_ok());
        assert!(compatible_versions("1.4.0", "1.0.2").is_ok());
        let newer = compatible_versions("0.2.0", "0.1.1").unwrap_err();
        assert!(
            newer.contains("0.2.0") && newer.contains("newer than this host's 0.1.1"),
            "{newer}"
        );
        let older = compatible_versions("0.0.1", "0.1.1").unwrap_err();
        assert!(
            older.contains("0.0.1") && older.contains("host has 0.1.1"),
            "{older}"
        );
        assert!(compatible_versions("2.0.0", "1.3.0")
            .unwrap_err()
            .contains("newer"));
        assert!(compatible_versions("banana", "0.1.1")
            .unwrap_err()
            .contains("not a version"));
    }
}
