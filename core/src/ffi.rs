//! The FFI-safe side of the boundary, built on `abi_stable`. Nothing here is
//! needed by plugin authors or application code: plugins call
//! [`export_plugin!`](crate::export_plugin) and the host wraps these types in
//! its own `Foreign*` handles.
//!
//! A plugin library exports one root module, [`PluginMod`], whose layout and
//! version `abi_stable` checks at load time. Calls cross as bytes: the host
//! encodes a [`proto`](crate::proto) call, the store's `call` function runs
//! it and returns the encoded result or error. Panics are caught on the
//! plugin's side and returned as errors of kind `Panicked`.

use crate::proto::{self, decode, encode};
use crate::{Capability, Error, ErrorKind, Plugin, PluginInfo, Result, StoreConfig};
use abi_stable::{
    export_root_module,
    library::RootModule,
    package_version_strings,
    prefix_type::PrefixTypeTrait,
    sabi_types::VersionStrings,
    std_types::{RResult, RSlice, RStr, RVec},
    StableAbi,
};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// The log callback the host hands to a plugin at init.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct LogFn {
    /// `(level 1=error..5=trace, target, message)`.
    pub log: extern "C" fn(level: u8, target: RStr<'_>, message: RStr<'_>),
}

/// Encoded `Result` crossing the boundary: `Ok` holds the encoded value,
/// `Err` an encoded [`Error`].
pub type FfiResult = RResult<RVec<u8>, RVec<u8>>;

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// [`crate::ABI_VERSION`] of the core the plugin was built with.
    pub abi_version: u32,
    /// The encoded [`PluginInfo`].
    pub info: extern "C" fn() -> FfiResult,
    /// Hand the plugin the host's log callback and maximum level.
    pub init: extern "C" fn(log: LogFn, max_level: u8),
    /// Open a store from an encoded [`StoreConfig`].
    pub open: extern "C" fn(config: RSlice<'_, u8>) -> RResult<FfiStore, RVec<u8>>,
    /// Stop the plugin's background work.
    #[sabi(last_prefix_field)]
    pub shutdown: extern "C" fn(),
}

impl RootModule for PluginModRef {
    abi_stable::declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "backplane_plugin";
    const NAME: &'static str = "backplane plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// An open store on the plugin's side: an opaque object and the function
/// that runs encoded calls on it.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiStore {
    /// The capability `call` dispatches for (a `Capability` code).
    pub capability: u8,
    /// The plugin's object.
    pub object: *mut c_void,
    /// Run one encoded call.
    pub call: unsafe extern "C" fn(object: *const c_void, request: RSlice<'_, u8>) -> FfiResult,
    /// Free the object.
    pub drop: unsafe extern "C" fn(object: *mut c_void),
}

// SAFETY: the object behind `FfiStore` is a `Box<dyn Relational|Vector|…>`,
// and all four traits require `Send + Sync`.
unsafe impl Send for FfiStore {}
unsafe impl Sync for FfiStore {}

impl FfiStore {
    /// Run one encoded call on the store.
    pub fn call_raw(&self, request: &[u8]) -> FfiResult {
        // SAFETY: `object` stays valid until `drop` runs in `Drop`.
        unsafe { (self.call)(self.object, RSlice::from_slice(request)) }
    }

    /// Encode `call`, run it, decode the result as `T`.
    pub fn call<T: serde::de::DeserializeOwned>(&self, call: &impl serde::Serialize) -> Result<T> {
        let req = encode(call);
        match self.call_raw(&req) {
            RResult::ROk(bytes) => decode(&bytes),
            RResult::RErr(bytes) => Err(decode(&bytes)?),
        }
    }
}

impl Drop for FfiStore {
    fn drop(&mut self) {
        // SAFETY: created by `into_ffi`; dropped once.
        unsafe { (self.drop)(self.object) }
    }
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}

/// Run `f`, turning a panic into an error of kind `Panicked`.
pub fn catch<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(Error::new(
            ErrorKind::Panicked,
            format!(
                "the plugin panicked in {what}: {}; the host caught it and keeps running, report this to the plugin's author",
                panic_message(p)
            ),
        ))
    })
}

fn to_ffi(r: Result<Vec<u8>>) -> FfiResult {
    match r {
        Ok(v) => RResult::ROk(RVec::from(v)),
        Err(e) => RResult::RErr(RVec::from(encode(&e))),
    }
}

macro_rules! store_fns {
    ($call:ident, $drop:ident, $tr:path, $dispatch:path, $what:literal) => {
        unsafe extern "C" fn $call(object: *const c_void, request: RSlice<'_, u8>) -> FfiResult {
            // SAFETY: `object` is the `Box<dyn Trait>` made in `into_ffi`.
            let store: &dyn $tr = unsafe { &**(object as *const Box<dyn $tr>) };
            to_ffi(catch($what, || $dispatch(store, request.as_slice())))
        }
        unsafe extern "C" fn $drop(object: *mut c_void) {
            // SAFETY: made by `Box::into_raw` in `into_ffi`, dropped once.
            let b = unsafe { Box::from_raw(object as *mut Box<dyn $tr>) };
            let _ = catch_unwind(AssertUnwindSafe(move || drop(b)));
        }
    };
}
store_fns!(
    call_relational,
    drop_relational,
    crate::Relational,
    proto::dispatch_relational,
    "a relational call"
);
store_fns!(
    call_vector,
    drop_vector,
    crate::Vector,
    proto::dispatch_vector,
    "a vector call"
);
store_fns!(
    call_cache,
    drop_cache,
    crate::Cache,
    proto::dispatch_cache,
    "a cache call"
);
store_fns!(
    call_graph,
    drop_graph,
    crate::Graph,
    proto::dispatch_graph,
    "a graph call"
);

/// An opened store, as a plugin returns it.
pub enum OpenedStore {
    /// Relational.
    Relational(Box<dyn crate::Relational>),
    /// Vector.
    Vector(Box<dyn crate::Vector>),
    /// Cache.
    Cache(Box<dyn crate::Cache>),
    /// Graph.
    Graph(Box<dyn crate::Graph>),
}

/// Open the store `config` asks for on `plugin`, catching panics.
pub fn open_store(plugin: &dyn Plugin, config: &StoreConfig) -> Result<OpenedStore> {
    catch("open", || {
        Ok(match config.capability {
            Capability::Relational => OpenedStore::Relational(plugin.open_relational(config)?),
            Capability::Vector => OpenedStore::Vector(plugin.open_vector(config)?),
            Capability::Cache => OpenedStore::Cache(plugin.open_cache(config)?),
            Capability::Graph => OpenedStore::Graph(plugin.open_graph(config)?),
        })
    })
}

impl OpenedStore {
    /// Wrap in the FFI-safe form.
    pub fn into_ffi(self) -> FfiStore {
        fn raw<T: ?Sized>(b: Box<T>) -> *mut c_void {
            Box::into_raw(Box::new(b)) as *mut c_void
        }
        let (capability, object, call, drop): (Capability, *mut c_void, _, _) = match self {
            OpenedStore::Relational(s) => (
                Capability::Relational,
                raw(s),
                call_relational as _,
                drop_relational as _,
            ),
            OpenedStore::Vector(s) => (
                Capability::Vector,
                raw(s),
                call_vector as _,
                drop_vector as _,
            ),
            OpenedStore::Cache(s) => (Capability::Cache, raw(s), call_cache as _, drop_cache as _),
            OpenedStore::Graph(s) => (Capability::Graph, raw(s), call_graph as _, drop_graph as _),
        };
        FfiStore {
            capability: capability.code(),
            object,
            call,
            drop,
        }
    }
}

// ---- the plugin library's side: the root module and its functions ----

fn the_plugin() -> Result<&'static dyn Plugin> {
    static PLUGIN: OnceLock<std::result::Result<Box<dyn Plugin>, Error>> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let mut regs = crate::registered_plugins();
            let first = regs.next().ok_or_else(|| {
                Error::incompatible(
                    "this library links backplane-core but registers no plugin: call backplane_core::export_plugin! once",
                )
            })?;
            if regs.next().is_some() {
                return Err(Error::incompatible(
                    "this library registers more than one plugin: a plugin library exports exactly one (it may serve several backends)",
                ));
            }
            catch("construction", || Ok(first.make()))
        })
        .as_ref()
        .map(|b| &**b)
        .map_err(Clone::clone)
}

extern "C" fn mod_info() -> FfiResult {
    to_ffi(catch("info", || {
        let p = the_plugin()?;
        Ok(encode(&PluginInfo {
            name: p.name().to_string(),
            version: p.version().to_string(),
            core_version: crate::CORE_VERSION.to_string(),
            backends: p.backends(),
        }))
    }))
}

extern "C" fn mod_open(config: RSlice<'_, u8>) -> RResult<FfiStore, RVec<u8>> {
    let r = catch("open", || {
        let cfg: StoreConfig = decode(config.as_slice())?;
        open_store(the_plugin()?, &cfg)
    });
    match r {
        Ok(s) => RResult::ROk(s.into_ffi()),
        Err(e) => RResult::RErr(RVec::from(encode(&e))),
    }
}

extern "C" fn mod_shutdown() {
    let _ = catch("shutdown", || {
        the_plugin()?.shutdown();
        Ok(())
    });
}

struct ForwardLogger(LogFn);

impl log::Log for ForwardLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let msg = record.args().to_string();
        (self.0.log)(
            record.level() as u8,
            RStr::from_str(record.target()),
            RStr::from_str(&msg),
        );
    }
    fn flush(&self) {}
}

extern "C" fn mod_init(logger: LogFn, max_level: u8) {
    let _ = catch("init", || {
        if log::set_boxed_logger(Box::new(ForwardLogger(logger))).is_ok() {
            log::set_max_level(level_filter(max_level));
        }
        Ok(())
    });
}

/// The `log` level filter for a level code (0 = off … 5 = trace).
pub fn level_filter(code: u8) -> log::LevelFilter {
    match code {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

mod root {
    // The attribute generates an undocumented static.
    #![allow(missing_docs)]
    use super::*;

    /// The root module of a plugin library. It is exported from every cdylib
    /// that links backplane-core and serves the one plugin that library
    /// registers with [`export_plugin!`](crate::export_plugin).
    #[export_root_module]
    pub fn backplane_root_module() -> PluginModRef {
        PluginMod {
            abi_version: crate::ABI_VERSION,
            info: mod_info,
            init: mod_init,
            open: mod_open,
            shutdown: mod_shutdown,
        }
        .leak_into_prefix()
    }
}
pub use root::backplane_root_module;

/// Decode an encoded [`PluginInfo`] result.
pub fn decode_info(r: FfiResult) -> Result<PluginInfo> {
    match r {
        RResult::ROk(b) => decode(&b),
        RResult::RErr(b) => Err(decode(&b)?),
    }
}

/// Decode an `open` result.
pub fn decode_open(r: RResult<FfiStore, RVec<u8>>) -> Result<FfiStore> {
    match r {
        RResult::ROk(s) => Ok(s),
        RResult::RErr(b) => Err(decode(&b)?),
    }
}

/// The capability of an [`FfiStore`].
pub fn store_capability(s: &FfiStore) -> Option<Capability> {
    Capability::from_code(s.capability)
}
