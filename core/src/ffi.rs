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
use crate::rows::{JsonRef, ParamsRef, RowsWriter, ValueRef};
use crate::{Capability, Error, ErrorKind, Params, Plugin, PluginInfo, Result, StoreConfig, Value};
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

/// One SQL value, borrowed from the host for the length of a call: a tag
/// and either a number or a pointer and length. See [`ParamsRef`].
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug)]
pub struct FfiValue {
    /// Text, JSON text or blob bytes (null for numbers).
    pub ptr: *const u8,
    /// Their length; or the integer, bool (0/1), timestamp, or the bits of
    /// the real.
    pub word: u64,
    /// Which [`ValueRef`] variant (the `TAG_*` constants).
    pub tag: u8,
}

/// [`FfiValue::tag`] values.
pub const TAG_NULL: u8 = 0;
/// Integer.
pub const TAG_INTEGER: u8 = 1;
/// Real.
pub const TAG_REAL: u8 = 2;
/// Text.
pub const TAG_TEXT: u8 = 3;
/// Blob.
pub const TAG_BLOB: u8 = 4;
/// Bool.
pub const TAG_BOOL: u8 = 5;
/// JSON text.
pub const TAG_JSON: u8 = 6;
/// Timestamp.
pub const TAG_TIMESTAMP: u8 = 7;

impl FfiValue {
    fn num(tag: u8, int: i64, real: f64) -> Self {
        FfiValue {
            tag,
            word: if tag == TAG_REAL {
                real.to_bits()
            } else {
                int as u64
            },
            ptr: std::ptr::null(),
        }
    }
    fn bytes(tag: u8, b: &[u8]) -> Self {
        FfiValue {
            tag,
            word: b.len() as u64,
            ptr: b.as_ptr(),
        }
    }

    /// The borrowed value.
    ///
    /// # Safety
    /// `ptr` must be valid for `len` bytes for `'a`.
    #[inline]
    pub(crate) unsafe fn view<'a>(&self) -> ValueRef<'a> {
        let bytes = || -> &'a [u8] {
            if self.word == 0 || self.ptr.is_null() {
                &[]
            } else {
                // SAFETY: the caller guarantees ptr/len.
                unsafe { std::slice::from_raw_parts(self.ptr, self.word as usize) }
            }
        };
        let text = || {
            let b = bytes();
            if b.is_ascii() {
                // SAFETY: ASCII is UTF-8.
                unsafe { std::str::from_utf8_unchecked(b) }
            } else {
                std::str::from_utf8(b).unwrap_or("")
            }
        };
        match self.tag {
            TAG_INTEGER => ValueRef::Integer(self.word as i64),
            TAG_REAL => ValueRef::Real(f64::from_bits(self.word)),
            TAG_TEXT => ValueRef::Text(text()),
            TAG_BLOB => ValueRef::Blob(bytes()),
            TAG_BOOL => ValueRef::Bool(self.word != 0),
            TAG_JSON => ValueRef::Json(JsonRef::Text(text())),
            TAG_TIMESTAMP => ValueRef::Timestamp(self.word as i64),
            _ => ValueRef::Null,
        }
    }
}

/// A list that lives on the stack up to `N` items, then on the heap: one
/// statement's parameters cross the boundary without an allocation.
pub struct SmallList<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    heap: Vec<T>,
}

impl<T: Copy, const N: usize> SmallList<T, N> {
    fn new(fill: T, capacity: usize) -> Self {
        SmallList {
            inline: [fill; N],
            len: 0,
            heap: if capacity > N {
                Vec::with_capacity(capacity)
            } else {
                Vec::new()
            },
        }
    }
    /// Whether the items live in `heap` (decided by the capacity given to
    /// `new`, or by outgrowing `inline`).
    #[inline]
    fn on_heap(&self) -> bool {
        self.heap.capacity() != 0
    }
    #[inline]
    fn push(&mut self, v: T) {
        if self.on_heap() {
            self.heap.push(v);
        } else if self.len < N {
            self.inline[self.len] = v;
            self.len += 1;
        } else {
            self.heap.reserve(N * 2);
            self.heap.extend_from_slice(&self.inline[..self.len]);
            self.heap.push(v);
        }
    }
    /// The items.
    #[inline]
    pub fn as_slice(&self) -> &[T] {
        if self.on_heap() {
            &self.heap
        } else {
            &self.inline[..self.len]
        }
    }
    #[inline]
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn set(&mut self, i: usize, v: T) {
        if self.on_heap() {
            self.heap[i] = v;
        } else {
            self.inline[i] = v;
        }
    }
}

const NULL_VALUE: FfiValue = FfiValue {
    tag: TAG_NULL,
    word: 0,
    ptr: std::ptr::null(),
};

/// Parameters laid out for the boundary: the host keeps `json` alive
/// (JSON documents rendered to text) while the views point into it.
pub struct FfiParams<'a> {
    /// One value per parameter, all parameter sets one after another.
    pub values: SmallList<FfiValue, 4>,
    /// Names, parallel to `values`, when the sets are named.
    pub names: Vec<FfiValue>,
    /// The number of values in each set.
    pub set_lens: SmallList<u32, 1>,
    json: Vec<String>,
    borrows: std::marker::PhantomData<&'a Params>,
}

impl<'a> FfiParams<'a> {
    /// Lay out `sets`, borrowing from them.
    pub fn new(sets: &'a [Params]) -> Self {
        let (count, total) = (sets.len(), sets.iter().map(Params::len).sum());
        let mut out = FfiParams {
            values: SmallList::new(NULL_VALUE, total),
            names: Vec::new(),
            set_lens: SmallList::new(0, count),
            json: Vec::new(),
            borrows: std::marker::PhantomData,
        };
        // Indexes into `values` of JSON documents, rendered to text after
        // the loop so that no view points into a growing Vec.
        let mut json_at: Vec<(usize, &serde_json::Value)> = Vec::new();
        let mut named = false;
        for p in sets {
            out.set_lens.push(p.len() as u32);
            let mut push = |out: &mut FfiParams, v: &'a Value| {
                let fv = match v {
                    Value::Null => FfiValue::num(TAG_NULL, 0, 0.0),
                    Value::Integer(i) => FfiValue::num(TAG_INTEGER, *i, 0.0),
                    Value::Real(f) => FfiValue::num(TAG_REAL, 0, *f),
                    Value::Text(t) => FfiValue::bytes(TAG_TEXT, t.as_bytes()),
                    Value::Blob(b) => FfiValue::bytes(TAG_BLOB, b),
                    Value::Bool(b) => FfiValue::num(TAG_BOOL, *b as i64, 0.0),
                    Value::Json(j) => {
                        json_at.push((out.values.len(), j));
                        FfiValue::num(TAG_NULL, 0, 0.0)
                    }
                    Value::Timestamp(t) => FfiValue::num(TAG_TIMESTAMP, *t, 0.0),
                };
                out.values.push(fv);
            };
            match p {
                Params::None => {}
                Params::Positional(vs) => {
                    if named {
                        // A positional set among named ones: empty names.
                        vs.iter()
                            .for_each(|_| out.names.push(FfiValue::bytes(TAG_TEXT, b"")));
                    }
                    vs.iter().for_each(|v| push(&mut out, v));
                }
                Params::Named(pairs) => {
                    if !named {
                        // Earlier positional sets get empty names.
                        named = true;
                        let before = out.values.len();
                        (0..before).for_each(|_| out.names.push(FfiValue::bytes(TAG_TEXT, b"")));
                    }
                    for (name, v) in pairs {
                        out.names.push(FfiValue::bytes(TAG_TEXT, name.as_bytes()));
                        push(&mut out, v);
                    }
                }
            }
        }
        if !json_at.is_empty() {
            out.json = json_at.iter().map(|(_, j)| j.to_string()).collect();
            for ((at, _), text) in json_at.iter().zip(&out.json) {
                out.values
                    .set(*at, FfiValue::bytes(TAG_JSON, text.as_bytes()));
            }
        }
        out
    }
}

/// The relational fast path's call: `execute`, `execute_many` or `query`,
/// with parameters as borrowed values instead of encoded ones.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiSql<'a> {
    /// `SQL_EXECUTE`, `SQL_EXECUTE_MANY` or `SQL_QUERY`.
    pub op: u8,
    /// The statement.
    pub sql: RStr<'a>,
    /// All values of all parameter sets.
    pub values: RSlice<'a, FfiValue>,
    /// Names parallel to `values`, or empty for positional parameters.
    pub names: RSlice<'a, FfiValue>,
    /// Values per set (one set for execute and query).
    pub set_lens: RSlice<'a, u32>,
}

/// [`FfiSql::op`]: `execute`.
pub const SQL_EXECUTE: u8 = 0;
/// [`FfiSql::op`]: `execute_many`.
pub const SQL_EXECUTE_MANY: u8 = 1;
/// [`FfiSql::op`]: `query`.
pub const SQL_QUERY: u8 = 2;

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
    /// Run a relational fast-path call (other capabilities answer
    /// `Unsupported`).
    pub call_sql: unsafe extern "C" fn(object: *const c_void, call: &FfiSql<'_>) -> FfiResult,
    /// Start one encoded call without blocking: a cache `get` or `set` on a
    /// store whose [`Cache::as_async`](crate::Cache::as_async) is `Some`.
    /// Returns true when started; `done(ctx, result)` is then called
    /// exactly once, from any thread (also when the plugin drops the call,
    /// with an error). Returns false, never calling `done`, for any other
    /// call; the host then uses `call`.
    pub call_async: unsafe extern "C" fn(
        object: *const c_void,
        request: RSlice<'_, u8>,
        ctx: *mut c_void,
        done: FfiDone,
    ) -> bool,
    /// Whether `call_async` serves this store's `get` and `set`.
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

impl FfiStore {
    /// Run one encoded call on the store.
    pub fn call_raw(&self, request: &[u8]) -> FfiResult {
        // SAFETY: `object` stays valid until `drop` runs in `Drop`.
        unsafe { (self.call)(self.object, RSlice::from_slice(request)) }
    }

    /// Encode `call`, run it, decode the result as `T`.
    pub fn call<T: serde::de::DeserializeOwned>(&self, call: &impl serde::Serialize) -> Result<T> {
        let req = encode(call);
        decode_result(self.call_raw(&req))
    }

    /// Start one encoded call without blocking (see
    /// [`FfiStore::call_async`]): true when started, and then `done` is
    /// called exactly once with `ctx`.
    ///
    /// # Safety
    ///
    /// `ctx` must stay valid until `done` is called with it, and `done`
    /// must be safe to call from any thread.
    pub unsafe fn call_async_raw(&self, request: &[u8], ctx: *mut c_void, done: FfiDone) -> bool {
        // SAFETY: `object` stays valid until `drop` runs in `Drop`; the
        // caller vouches for `ctx` and `done`.
        unsafe { (self.call_async)(self.object, RSlice::from_slice(request), ctx, done) }
    }
}

/// Decode a call's result: the encoded value, or the encoded error.
pub fn decode_result<T: serde::de::DeserializeOwned>(r: FfiResult) -> Result<T> {
    match r {
        RResult::ROk(bytes) => decode(&bytes),
        RResult::RErr(bytes) => Err(decode(&bytes)?),
    }
}

impl FfiStore {
    /// Run `op` with `sql` and parameter sets through the fast path,
    /// decoding the result with `decode_ok`.
    pub fn call_sql<T>(
        &self,
        op: u8,
        sql: &str,
        params: &FfiParams<'_>,
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
        match unsafe { (self.call_sql)(self.object, &call) } {
            RResult::ROk(bytes) => decode_ok(&bytes),
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
    fn answer<T: serde::Serialize>(self, r: Result<T>) {
        self.fire(to_ffi(r.map(|v| encode(&v))))
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.fired {
            self.fired = true;
            let e = Error::backend(
                "the plugin dropped a started call without answering it (its runtime stopped, or it panicked): retry",
            );
            // SAFETY: as in `fire`; not fired before.
            unsafe { (self.done.func)(self.ctx, to_ffi(Err(e))) }
        }
    }
}

unsafe extern "C" fn call_async_cache(
    object: *const c_void,
    request: RSlice<'_, u8>,
    ctx: *mut c_void,
    done: FfiDone,
) -> bool {
    // SAFETY: `object` is the `Box<dyn Cache>` made in `into_ffi`.
    let store: &dyn crate::Cache = unsafe { &**(object as *const Box<dyn crate::Cache>) };
    let made = std::cell::Cell::new(false);
    let started = catch_unwind(AssertUnwindSafe(|| {
        let Some(a) = store.as_async() else {
            return false;
        };
        let Ok(call) = decode::<proto::CacheCall<'_>>(request.as_slice()) else {
            return false;
        };
        // Once a completion is made, `done` is owed exactly once: the
        // completion answers it, or its drop does (also when the plugin
        // panics).
        let completion = || {
            made.set(true);
            Completion {
                ctx,
                done,
                fired: false,
            }
        };
        match call {
            proto::CacheCall::Get(key) => {
                let c = completion();
                a.get(&key, Box::new(move |r| c.answer(r)));
            }
            proto::CacheCall::Set { key, value, ttl_ms } => {
                let c = completion();
                a.set(
                    &key,
                    &value,
                    ttl_ms.map(std::time::Duration::from_millis),
                    Box::new(move |r| c.answer(r)),
                );
            }
            _ => return false,
        }
        true
    }));
    // After a panic: if the completion was made, its drop has answered;
    // if not, nothing was started and the host uses `call`.
    started.unwrap_or(made.get())
}

unsafe extern "C" fn call_async_none(
    _: *const c_void,
    _: RSlice<'_, u8>,
    _: *mut c_void,
    _: FfiDone,
) -> bool {
    false
}

unsafe extern "C" fn call_sql_relational(object: *const c_void, call: &FfiSql<'_>) -> FfiResult {
    // SAFETY: `object` is the `Box<dyn Relational>` made in `into_ffi`.
    let store: &dyn crate::Relational = unsafe { &**(object as *const Box<dyn crate::Relational>) };
    to_ffi(catch("a relational call", || {
        let sql = call.sql.as_str();
        let values = call.values.as_slice();
        let names = call.names.as_slice();
        let named = !names.is_empty();
        if named && names.len() != values.len() {
            return Err(Error::incompatible(
                "malformed parameter names across the boundary",
            ));
        }
        let lens = call.set_lens.as_slice();
        if lens.iter().map(|&n| n as usize).sum::<usize>() != values.len() {
            return Err(Error::incompatible(
                "malformed parameter sets across the boundary",
            ));
        }
        let set = |at: usize, end: usize| {
            // SAFETY: the host keeps the values alive for the call, and the
            // lengths were checked above.
            unsafe {
                ParamsRef::from_ffi(&values[at..end], if named { &names[at..end] } else { &[] })
            }
        };
        let one = || {
            if lens.len() == 1 {
                Ok(set(0, values.len()))
            } else {
                Err(Error::incompatible(
                    "a statement call needs exactly one parameter set",
                ))
            }
        };
        match call.op {
            SQL_EXECUTE => Ok(encode(&store.execute_ref(sql, one()?)?)),
            SQL_EXECUTE_MANY => {
                let mut sets = Vec::with_capacity(lens.len());
                let mut at = 0usize;
                for &n in lens {
                    sets.push(set(at, at + n as usize));
                    at += n as usize;
                }
                Ok(encode(&store.execute_many_ref(sql, &sets)?))
            }
            SQL_QUERY => {
                let mut w = RowsWriter::new();
                store.query_into(sql, one()?, &mut w)?;
                Ok(w.finish())
            }
            other => Err(Error::incompatible(format!("unknown SQL call {other}"))),
        }
    }))
}

unsafe extern "C" fn call_sql_unsupported(_: *const c_void, _: &FfiSql<'_>) -> FfiResult {
    to_ffi(Err(Error::unsupported("this store is not relational")))
}

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
        type Call = unsafe extern "C" fn(*const c_void, RSlice<'_, u8>) -> FfiResult;
        type Sql = unsafe extern "C" fn(*const c_void, &FfiSql<'_>) -> FfiResult;
        type Drop = unsafe extern "C" fn(*mut c_void);
        type Async =
            unsafe extern "C" fn(*const c_void, RSlice<'_, u8>, *mut c_void, FfiDone) -> bool;
        let has_async = matches!(&self, OpenedStore::Cache(s) if s.as_async().is_some());
        let call_async: Async = if has_async {
            call_async_cache
        } else {
            call_async_none
        };
        let (capability, object, call, call_sql, drop): (Capability, *mut c_void, Call, Sql, Drop) =
            match self {
                OpenedStore::Relational(s) => (
                    Capability::Relational,
                    raw(s),
                    call_relational,
                    call_sql_relational,
                    drop_relational,
                ),
                OpenedStore::Vector(s) => (
                    Capability::Vector,
                    raw(s),
                    call_vector,
                    call_sql_unsupported,
                    drop_vector,
                ),
                OpenedStore::Cache(s) => (
                    Capability::Cache,
                    raw(s),
                    call_cache,
                    call_sql_unsupported,
                    drop_cache,
                ),
                OpenedStore::Graph(s) => (
                    Capability::Graph,
                    raw(s),
                    call_graph,
                    call_sql_unsupported,
                    drop_graph,
                ),
            };
        FfiStore {
            capability: capability.code(),
            object,
            call,
            call_sql,
            call_async,
            has_async,
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

/// Log targets (prefixes) whose records are forwarded at debug level at
/// most; see [`demote_log_target`].
static DEMOTED: std::sync::RwLock<Vec<&'static str>> = std::sync::RwLock::new(Vec::new());

/// Forward the log records of targets starting with `prefix` at debug
/// level at most, for a dependency that warns about things that are not
/// the user's concern. Affects only the calling plugin's library.
pub fn demote_log_target(prefix: &'static str) {
    let mut d = DEMOTED.write().unwrap_or_else(|p| p.into_inner());
    if !d.contains(&prefix) {
        d.push(prefix);
    }
}

impl log::Log for ForwardLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut level = record.level();
        if level < log::Level::Debug
            && DEMOTED
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|p| record.target().starts_with(p))
        {
            if log::max_level() < log::LevelFilter::Debug {
                return;
            }
            level = log::Level::Debug;
        }
        let msg = record.args().to_string();
        (self.0.log)(
            level as u8,
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
