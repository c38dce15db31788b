//! The FFI layer, built on `abi_stable`: the only module that names its
//! types. Swapping it (for `stabby`, or plain `#[repr(C)]`) touches this
//! folder only; the [boundary](crate::boundary) above it deals in bytes.
//!
//! A plugin library exports one root module, [`PluginMod`], whose layout
//! and version `abi_stable` checks at load time. Each open store crosses as
//! an [`FfiStore`]: an opaque object and the functions that run encoded
//! calls on it. Panics are caught on the plugin's side and returned as
//! errors of kind `Panicked`.
//!
//! - this file: the types that cross, and panic catching;
//! - [`export`]: the plugin library's side (the root module, stores made
//!   from the plugin's trait objects);
//! - [`load`]: the host's side (loading a library, opening stores, the
//!   [`Remote`] handle the boundary's clients call through);
//! - [`log`]: plugins' log records forwarded to the host.

use crate::{Error, ErrorKind, Result};
use abi_stable::{
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RSlice, RStr, RVec},
    StableAbi,
};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

pub(crate) mod export;
pub(crate) mod load;
pub(crate) mod log;

pub use export::backplane_root_module;
pub(crate) use load::Remote;

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
    /// The encoded [`PluginInfo`](crate::PluginInfo).
    pub info: extern "C" fn() -> FfiResult,
    /// Hand the plugin the host's log callback and maximum level.
    pub init: extern "C" fn(log: LogFn, max_level: u8),
    /// Open a store from an encoded [`StoreConfig`](crate::StoreConfig).
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

/// The relational fast path's call: `execute`, `execute_many` or `query`,
/// with parameters as borrowed views instead of encoded ones.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiSql<'a> {
    /// The boundary's `SQL_*` operation.
    pub op: u8,
    /// The statement.
    pub sql: RStr<'a>,
    /// All values of all parameter sets. The element layout is the
    /// boundary's (`RawValue`), versioned by `ABI_VERSION`.
    #[sabi(unsafe_opaque_field)]
    pub values: RSlice<'a, crate::rows::RawValue>,
    /// Names parallel to `values`, or empty for positional parameters.
    #[sabi(unsafe_opaque_field)]
    pub names: RSlice<'a, crate::rows::RawValue>,
    /// Values per set (one set for execute and query).
    pub set_lens: RSlice<'a, u32>,
}

/// An open store on the plugin's side: an opaque object and the functions
/// that run calls on it.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiStore {
    /// The capability the functions dispatch for (a `Capability` code).
    pub capability: u8,
    /// The plugin's object.
    pub object: *mut c_void,
    /// Run one encoded call.
    pub call: unsafe extern "C" fn(object: *const c_void, request: RSlice<'_, u8>) -> FfiResult,
    /// Run a relational fast-path call (other capabilities answer
    /// `Unsupported`).
    pub call_sql: unsafe extern "C" fn(object: *const c_void, call: &FfiSql<'_>) -> FfiResult,
    /// Start one encoded call without blocking. Returns true when started;
    /// `done(ctx, result)` is then called exactly once, from any thread
    /// (also when the plugin drops the call, with an error). Returns false,
    /// never calling `done`, for a call it cannot start; the host then uses
    /// `call`.
    pub call_async: unsafe extern "C" fn(
        object: *const c_void,
        request: RSlice<'_, u8>,
        ctx: *mut c_void,
        done: FfiDone,
    ) -> bool,
    /// Whether `call_async` serves this store's non-blocking calls.
    pub has_async: bool,
    /// Free the object.
    pub drop: unsafe extern "C" fn(object: *mut c_void),
}

/// The host's completion callback for [`FfiStore::call_async`].
#[repr(transparent)]
#[derive(StableAbi, Clone, Copy)]
pub struct FfiDone {
    /// Called once with the call's result and the host's `ctx`.
    pub func: unsafe extern "C" fn(ctx: *mut c_void, result: FfiResult),
}

// SAFETY: the object behind `FfiStore` is a `Box<dyn Relational|Vector|…>`,
// and all four traits require `Send + Sync`.
unsafe impl Send for FfiStore {}
unsafe impl Sync for FfiStore {}

impl Drop for FfiStore {
    fn drop(&mut self) {
        // SAFETY: created by `export::into_ffi`; dropped once.
        unsafe { (self.drop)(self.object) }
    }
}

std::thread_local! {
    /// Where the last panic on this thread happened, when the plugin's own
    /// panic hook saw it.
    static PANICKED_AT: std::cell::Cell<Option<String>> = const { std::cell::Cell::new(None) };
}

/// In a plugin library (which has a panic hook of its own, apart from the
/// host's): a panic is no longer printed on stderr from whatever thread
/// made the call, but logged through the host's logger (a warning, target
/// `backplane::plugin`), and its place is kept for the `Panicked` error
/// that [`catch`] returns.
pub(crate) fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_else(|| "an unknown place".into());
        let msg = crate::kit::text::panic_text(info.payload());
        ::log::warn!(target: "backplane::plugin", "the plugin panicked at {at}: {msg}; the call returns a Panicked error, and a Mutex held at the time is now poisoned");
        PANICKED_AT.with(|c| c.set(Some(at)));
    }));
}

/// Run `f`, turning a panic into an error of kind `Panicked`.
pub(crate) fn catch<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    PANICKED_AT.with(|c| c.set(None));
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let at = PANICKED_AT
            .with(|c| c.take())
            .map(|at| format!(" (at {at})"))
            .unwrap_or_default();
        Err(Error::new(
            ErrorKind::Panicked,
            format!(
                "the plugin panicked in {what}: {}{at}; the host caught it and keeps running, report this to the plugin's author",
                crate::kit::text::panic_text(&*p)
            ),
        ))
    })
}

/// An encoded result for the wire.
fn to_ffi(r: Result<Vec<u8>>) -> FfiResult {
    match r {
        Ok(v) => RResult::ROk(RVec::from(v)),
        Err(e) => RResult::RErr(RVec::from(crate::boundary::encode(&e))),
    }
}

/// Decode a result from the wire with `decode_ok`.
fn decode_with<T>(r: FfiResult, decode_ok: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
    match r {
        RResult::ROk(bytes) => decode_ok(&bytes),
        RResult::RErr(bytes) => Err(crate::boundary::decode(&bytes)?),
    }
}
