//! Loading plugins, for a host: [`Library::load`] a plugin library from a
//! file (or take the plugins linked into the program with
//! [`Library::linked`]), read its [`info`](Library::info), [`open`](Library::open)
//! stores on it, and [`shutdown`](Library::shutdown) its background work.
//! A library that cannot be used is one [`LoadError`] line that says why
//! and what to do. The stores come back as the capability traits; nothing
//! of the FFI underneath shows.

pub use crate::ffi::export::OpenedStore;
pub use crate::ffi::load::{compatible_versions, Library, LoadError};
