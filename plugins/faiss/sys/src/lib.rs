//! FAISS for Rust, as the faiss plugin uses it: an index as a Rust value
//! ([`Index`]), over the C functions of `shim/shim.cpp`, which `build.rs`
//! compiles against the system's FAISS and links with FAISS's static
//! library. Every FAISS failure (a C++ exception inside the shim) becomes a
//! `Backend` error carrying FAISS's message.
//!
//! It is a plain library and registers no plugin, so the benchmark calls
//! FAISS through it directly, beside the plugin. (The `faiss` crate binds
//! FAISS's C API, whose library Debian's `libfaiss-dev` does not ship;
//! the shim covers the calls the plugin makes over the C++ API.)
//!
//! Layout: `build.rs` (finding FAISS, compiling the shim), `shim/shim.cpp`
//! (the C functions), this file (their declarations and the safe `Index`).

use backplane_core::{Error, Result};
use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};
use std::path::Path;

extern "C" {
    fn bp_faiss_new(
        description: *const c_char,
        dimension: c_int,
        metric: c_int,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut c_void;
    fn bp_faiss_free(index: *mut c_void);
    fn bp_faiss_tune(index: *mut c_void, ef_construction: c_int, ef_search: c_int, nprobe: c_int);
    fn bp_faiss_can_remove(index: *mut c_void) -> c_int;
    fn bp_faiss_is_trained(index: *mut c_void) -> c_int;
    fn bp_faiss_train(
        index: *mut c_void,
        n: c_long,
        x: *const f32,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn bp_faiss_add(
        index: *mut c_void,
        n: c_long,
        x: *const f32,
        ids: *const c_long,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn bp_faiss_remove(
        index: *mut c_void,
        n: c_long,
        ids: *const c_long,
        err: *mut c_char,
        errlen: usize,
    ) -> c_long;
    fn bp_faiss_search(
        index: *mut c_void,
        n: c_long,
        x: *const f32,
        k: c_long,
        distances: *mut f32,
        labels: *mut c_long,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn bp_faiss_ntotal(index: *mut c_void) -> c_long;
    fn bp_faiss_dimension(index: *mut c_void) -> c_int;
    fn bp_faiss_metric(index: *mut c_void) -> c_int;
    fn bp_faiss_ids(index: *mut c_void, out: *mut c_long);
    fn bp_faiss_write(
        index: *mut c_void,
        path: *const c_char,
        header: *const u8,
        header_len: usize,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    fn bp_faiss_read(
        path: *const c_char,
        header: *mut u8,
        header_len: usize,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut c_void;
}

/// How FAISS compares vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Inner product (cosine on normalised vectors, and dot).
    InnerProduct,
    /// Squared euclidean distance.
    L2,
}

/// A buffer FAISS's message is copied into.
struct ErrBuf([u8; 512]);

impl ErrBuf {
    fn new() -> Self {
        ErrBuf([0; 512])
    }
    fn ptr(&mut self) -> (*mut c_char, usize) {
        (self.0.as_mut_ptr().cast(), self.0.len())
    }
    fn error(&self, what: &str) -> Error {
        let msg = CStr::from_bytes_until_nul(&self.0)
            .map(|m| m.to_string_lossy().into_owned())
            .unwrap_or_default();
        Error::backend(format!("faiss: {what} failed: {}", msg.trim()))
    }
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        Error::invalid(format!(
            "the path {} holds a NUL character: choose another `path`",
            path.display()
        ))
    })
}

/// An `IndexIDMap2` over the index FAISS's factory made: vectors with
/// 64-bit ids.
pub struct Index {
    raw: *mut c_void,
}

// SAFETY: FAISS indexes may be moved between threads; searches (const
// methods) may run concurrently, and the plugin takes a write lock for
// every mutating call (`&mut self` here).
unsafe impl Send for Index {}
unsafe impl Sync for Index {}

impl Drop for Index {
    fn drop(&mut self) {
        // SAFETY: `raw` came from bp_faiss_new/bp_faiss_read and is freed once.
        unsafe { bp_faiss_free(self.raw) }
    }
}

impl Index {
    /// An empty index: `description` in FAISS's factory language
    /// (`Flat`, `HNSW32`, `IVF256,Flat`).
    pub fn new(description: &str, dimension: u32, metric: Metric) -> Result<Index> {
        let d = CString::new(description).expect("descriptions are made by the plugin");
        let mut err = ErrBuf::new();
        let (e, n) = err.ptr();
        let m = match metric {
            Metric::InnerProduct => 0,
            Metric::L2 => 1,
        };
        // SAFETY: valid C string and error buffer.
        let raw = unsafe { bp_faiss_new(d.as_ptr(), dimension as c_int, m, e, n) };
        if raw.is_null() {
            return Err(err.error(&format!("creating a '{description}' index")));
        }
        Ok(Index { raw })
    }

    /// Read an index file: its header, then the index.
    pub fn read(path: &Path, header: &mut [u8]) -> Result<Index> {
        let p = c_path(path)?;
        let mut err = ErrBuf::new();
        let (e, n) = err.ptr();
        // SAFETY: valid C string, header buffer of the given length.
        let raw = unsafe { bp_faiss_read(p.as_ptr(), header.as_mut_ptr(), header.len(), e, n) };
        if raw.is_null() {
            return Err(err.error(&format!("reading {}", path.display())));
        }
        Ok(Index { raw })
    }

    /// Write `header` and the index to `path` (flushed to disk).
    pub fn write(&self, path: &Path, header: &[u8]) -> Result<()> {
        let p = c_path(path)?;
        let mut err = ErrBuf::new();
        let (e, n) = err.ptr();
        // SAFETY: valid pointers; the index is not mutated.
        let rc =
            unsafe { bp_faiss_write(self.raw, p.as_ptr(), header.as_ptr(), header.len(), e, n) };
        if rc != 0 {
            return Err(err.error(&format!("writing {}", path.display())));
        }
        Ok(())
    }

    /// Set HNSW's build and search breadth and IVF's lists probed (each
    /// ignored where the index has none; 0 leaves one as it is).
    pub fn tune(&mut self, ef_construction: usize, ef_search: usize, nprobe: usize) {
        let c = |v: usize| v.min(c_int::MAX as usize) as c_int;
        // SAFETY: valid index, exclusive access.
        unsafe { bp_faiss_tune(self.raw, c(ef_construction), c(ef_search), c(nprobe)) }
    }

    /// Whether `remove` works (flat indexes; see the shim for why not IVF).
    pub fn can_remove(&self) -> bool {
        // SAFETY: valid index.
        unsafe { bp_faiss_can_remove(self.raw) != 0 }
    }

    /// Whether the index is trained (always, but for IVF before `train`).
    pub fn is_trained(&self) -> bool {
        // SAFETY: valid index.
        unsafe { bp_faiss_is_trained(self.raw) != 0 }
    }

    /// Train on `vectors` (concatenated, `dimension` each).
    pub fn train(&mut self, vectors: &[f32]) -> Result<()> {
        let n = vectors.len() / self.dimension();
        let mut err = ErrBuf::new();
        let (e, len) = err.ptr();
        // SAFETY: `vectors` holds n * d floats.
        let rc = unsafe { bp_faiss_train(self.raw, n as c_long, vectors.as_ptr(), e, len) };
        if rc != 0 {
            return Err(err.error("training the index"));
        }
        Ok(())
    }

    /// Add `vectors` (concatenated) under `ids`.
    pub fn add(&mut self, vectors: &[f32], ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        assert_eq!(vectors.len(), ids.len() * self.dimension());
        let mut err = ErrBuf::new();
        let (e, len) = err.ptr();
        // SAFETY: `vectors` holds ids.len() * d floats; c_long is i64 here.
        let rc = unsafe {
            bp_faiss_add(
                self.raw,
                ids.len() as c_long,
                vectors.as_ptr(),
                ids.as_ptr(),
                e,
                len,
            )
        };
        if rc != 0 {
            return Err(err.error("adding vectors"));
        }
        Ok(())
    }

    /// Remove `ids`; how many were there.
    pub fn remove(&mut self, ids: &[i64]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut err = ErrBuf::new();
        let (e, len) = err.ptr();
        // SAFETY: valid ids slice.
        let n = unsafe { bp_faiss_remove(self.raw, ids.len() as c_long, ids.as_ptr(), e, len) };
        if n < 0 {
            return Err(err.error("removing vectors"));
        }
        Ok(n as u64)
    }

    /// The `k` nearest ids of one query with FAISS's distances; ids are -1
    /// where FAISS found fewer than `k`.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(f32, i64)>> {
        let mut distances = vec![0f32; k];
        let mut labels = vec![-1i64; k];
        let mut err = ErrBuf::new();
        let (e, len) = err.ptr();
        // SAFETY: one query of d floats; output buffers of k entries.
        let rc = unsafe {
            bp_faiss_search(
                self.raw,
                1,
                query.as_ptr(),
                k as c_long,
                distances.as_mut_ptr(),
                labels.as_mut_ptr(),
                e,
                len,
            )
        };
        if rc != 0 {
            return Err(err.error("searching"));
        }
        Ok(distances.into_iter().zip(labels).collect())
    }

    /// Vectors held (removed ones excluded; HNSW's replaced ones included).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        // SAFETY: valid index.
        unsafe { bp_faiss_ntotal(self.raw) as usize }
    }

    /// The vectors' dimension.
    pub fn dimension(&self) -> usize {
        // SAFETY: valid index.
        unsafe { bp_faiss_dimension(self.raw) as usize }
    }

    /// The metric, or `None` for one the plugin never makes.
    pub fn metric(&self) -> Option<Metric> {
        // SAFETY: valid index.
        match unsafe { bp_faiss_metric(self.raw) } {
            0 => Some(Metric::InnerProduct),
            1 => Some(Metric::L2),
            _ => None,
        }
    }

    /// Every id held.
    pub fn ids(&self) -> Vec<i64> {
        let mut out = vec![0i64; self.len()];
        // SAFETY: `out` has ntotal entries.
        unsafe { bp_faiss_ids(self.raw, out.as_mut_ptr()) };
        out
    }
}
