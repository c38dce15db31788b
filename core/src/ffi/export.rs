//! The plugin library's side of the FFI: the exported root module, and
//! [`FfiStore`]s made from the plugin's trait objects, whose functions run
//! the [boundary](crate::boundary)'s dispatchers.

use super::{catch, to_ffi, FfiDone, FfiResult, FfiSql, FfiStore, LogFn, PluginMod, PluginModRef};
use crate::boundary::{self, relational::SqlCall, Answer};
use crate::{Capability, Error, Plugin, PluginInfo, Result, StoreConfig};
use abi_stable::{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    std_types::{RResult, RSlice, RVec},
};
use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

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
pub(crate) fn open_store(plugin: &dyn Plugin, config: &StoreConfig) -> Result<OpenedStore> {
    catch("open", || {
        Ok(match config.capability {
            Capability::Relational => OpenedStore::Relational(plugin.open_relational(config)?),
            Capability::Vector => OpenedStore::Vector(plugin.open_vector(config)?),
            Capability::Cache => OpenedStore::Cache(plugin.open_cache(config)?),
            Capability::Graph => OpenedStore::Graph(plugin.open_graph(config)?),
        })
    })
}

/// The host's side of one started call: calls `done` exactly once, with
/// the result, or with an error when dropped unanswered.
struct Completion {
    ctx: *mut c_void,
    done: FfiDone,
    fired: bool,
}

// SAFETY: `ctx` belongs to the host's callback, which may run on any
// thread (`call_async`'s contract).
unsafe impl Send for Completion {}

impl Completion {
    fn fire(mut self, r: FfiResult) {
        self.fired = true;
        // SAFETY: `done` and `ctx` come from the host's `call_async` call;
        // `fired` makes this the only call.
        unsafe { (self.done.func)(self.ctx, r) }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.fired {
            self.fired = true;
            // Dropped while unwinding: the plugin panicked with the call
            // in hand (while starting it, or on the thread answering it).
            let e = if std::thread::panicking() {
                let at = super::PANICKED_AT
                    .with(|c| c.take())
                    .map(|at| format!(" (at {at})"))
                    .unwrap_or_default();
                Error::new(
                    crate::ErrorKind::Panicked,
                    format!("the plugin panicked in a started call{at}; the host caught it and keeps running, report this to the plugin's author"),
                )
            } else {
                Error::backend(
                    "the plugin dropped a started call without answering it (its runtime stopped): retry",
                )
            };
            // SAFETY: as in `fire`; not fired before.
            unsafe { (self.done.func)(self.ctx, to_ffi(Err(e))) }
        }
    }
}

/// The `call`, `call_async` and `drop` functions of one capability's stores.
macro_rules! store_fns {
    ($call:ident, $call_async:ident, $drop:ident, $tr:path, $module:ident, $what:literal) => {
        unsafe extern "C" fn $call(object: *const c_void, request: RSlice<'_, u8>) -> FfiResult {
            // SAFETY: `object` is the `Box<dyn Trait>` made in `into_ffi`.
            let store: &dyn $tr = unsafe { &**(object as *const Box<dyn $tr>) };
            to_ffi(catch($what, || {
                boundary::$module::dispatch(store, request.as_slice())
            }))
        }
        unsafe extern "C" fn $call_async(
            object: *const c_void,
            request: RSlice<'_, u8>,
            ctx: *mut c_void,
            done: FfiDone,
        ) -> bool {
            // SAFETY: `object` is the `Box<dyn Trait>` made in `into_ffi`.
            let store: &dyn $tr = unsafe { &**(object as *const Box<dyn $tr>) };
            let made = Cell::new(false);
            // Once a completion is made, `done` is owed exactly once: the
            // completion answers it, or its drop does (also when the plugin
            // panics).
            let mut answer = || -> Answer {
                made.set(true);
                let c = Completion {
                    ctx,
                    done,
                    fired: false,
                };
                Box::new(move |r| c.fire(to_ffi(r)))
            };
            let started = catch_unwind(AssertUnwindSafe(|| {
                boundary::$module::start(store, request.as_slice(), &mut answer)
            }));
            // After a panic: if the completion was made, its drop has
            // answered; if not, nothing was started and the host uses `call`.
            started.unwrap_or(made.get())
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
    call_async_relational,
    drop_relational,
    crate::Relational,
    relational,
    "a relational call"
);
store_fns!(
    call_vector,
    call_async_vector,
    drop_vector,
    crate::Vector,
    vector,
    "a vector call"
);
store_fns!(
    call_cache,
    call_async_cache,
    drop_cache,
    crate::Cache,
    cache,
    "a cache call"
);
store_fns!(
    call_graph,
    call_async_graph,
    drop_graph,
    crate::Graph,
    graph,
    "a graph call"
);

unsafe extern "C" fn call_sql_relational(object: *const c_void, call: &FfiSql<'_>) -> FfiResult {
    // SAFETY: `object` is the `Box<dyn Relational>` made in `into_ffi`.
    let store: &dyn crate::Relational = unsafe { &**(object as *const Box<dyn crate::Relational>) };
    to_ffi(catch("a relational call", || {
        let call = SqlCall {
            op: call.op,
            sql: call.sql.as_str(),
            values: call.values.as_slice(),
            names: call.names.as_slice(),
            set_lens: call.set_lens.as_slice(),
        };
        boundary::relational::run_sql(store, &call)
    }))
}

unsafe extern "C" fn call_sql_unsupported(_: *const c_void, _: &FfiSql<'_>) -> FfiResult {
    to_ffi(Err(Error::unsupported("this store is not relational")))
}

impl OpenedStore {
    /// Wrap in the FFI-safe form.
    pub(crate) fn into_ffi(self) -> FfiStore {
        fn raw<T: ?Sized>(b: Box<T>) -> *mut c_void {
            Box::into_raw(Box::new(b)) as *mut c_void
        }
        macro_rules! ffi {
            ($s:ident, $cap:ident, $module:ident, $call:ident, $call_async:ident, $sql:ident, $drop:ident) => {
                FfiStore {
                    capability: Capability::$cap.code(),
                    has_async: boundary::$module::has_async(&*$s),
                    object: raw($s),
                    call: $call,
                    call_sql: $sql,
                    call_async: $call_async,
                    drop: $drop,
                }
            };
        }
        match self {
            OpenedStore::Relational(s) => ffi!(
                s,
                Relational,
                relational,
                call_relational,
                call_async_relational,
                call_sql_relational,
                drop_relational
            ),
            OpenedStore::Vector(s) => ffi!(
                s,
                Vector,
                vector,
                call_vector,
                call_async_vector,
                call_sql_unsupported,
                drop_vector
            ),
            OpenedStore::Cache(s) => ffi!(
                s,
                Cache,
                cache,
                call_cache,
                call_async_cache,
                call_sql_unsupported,
                drop_cache
            ),
            OpenedStore::Graph(s) => ffi!(
                s,
                Graph,
                graph,
                call_graph,
                call_async_graph,
                call_sql_unsupported,
                drop_graph
            ),
        }
    }
}

/// The one plugin this library registers.
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

/// What a plugin reports about itself.
pub(crate) fn plugin_info(p: &dyn Plugin) -> PluginInfo {
    PluginInfo {
        name: p.name().to_string(),
        version: p.version().to_string(),
        core_version: crate::CORE_VERSION.to_string(),
        backends: p.backends(),
    }
}

extern "C" fn mod_info() -> FfiResult {
    to_ffi(catch("info", || {
        Ok(boundary::encode(&plugin_info(the_plugin()?)))
    }))
}

extern "C" fn mod_open(config: RSlice<'_, u8>) -> RResult<FfiStore, RVec<u8>> {
    let r = catch("open", || {
        let cfg: StoreConfig = boundary::decode(config.as_slice())?;
        open_store(the_plugin()?, &cfg)
    });
    match r {
        Ok(s) => RResult::ROk(s.into_ffi()),
        Err(e) => RResult::RErr(RVec::from(boundary::encode(&e))),
    }
}

extern "C" fn mod_shutdown() {
    let _ = catch("shutdown", || {
        the_plugin()?.shutdown();
        Ok(())
    });
}

extern "C" fn mod_init(logger: LogFn, max_level: u8) {
    let _ = catch("init", || {
        super::log::forward_to(logger, max_level);
        super::log_panics();
        Ok(())
    });
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

/// [`crate::WIRE_FINGERPRINT`], exported by name from every plugin library
/// (since backplane-core 0.1.1), for the host to compare with its own.
/// A symbol of its own rather than a root-module field: a field added to
/// the root module fails abi_stable's layout check for every plugin built
/// before it, which is what docs/abi.md promises not to do within a series.
#[no_mangle]
#[used]
pub static BACKPLANE_WIRE_FINGERPRINT: u64 = crate::WIRE_FINGERPRINT;
