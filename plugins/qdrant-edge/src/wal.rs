//! Keeping qdrant-edge's write-ahead log bounded.
//!
//! qdrant-edge 0.7.2 appends every update to the log in a collection's
//! `wal/` folder but never acknowledges it (it has no call for that) and
//! never replays it when a shard is loaded: what survives is what `flush`
//! wrote to the segments, and the plugin flushes every write (see
//! [`collection`](crate::collection)). So under a steady stream of
//! updates the log grows without end: on disk, one full file
//! (`wal_segment_mb`) after another, and in memory, where the log keeps an
//! index of every entry of every file it holds (measured in the soak
//! benchmark: about 25 bytes of the process's memory per upsert, and 1
//! MiB of disk a minute, on a collection of 5,000 points that never grew).
//!
//! The plugin trims the log itself, as Qdrant's server does when it
//! acknowledges a flushed log: the files of the log that are closed
//! (`closed-<first entry>`) are deleted, all but the newest. The newest is
//! kept because the log numbers its next entry from the closed files, and
//! the numbers are the points' versions: a log that started again from 0
//! would make qdrant-edge ignore later updates of existing points as
//! stale. Trimming happens
//!
//! - before a shard is loaded (nothing has the log open then), and
//! - after a write that leaves two closed files or more, once the closed
//!   files hold at least as many bytes as the collection's segments: the
//!   shard is closed (which flushes it), trimmed and loaded again. Loading
//!   costs time in proportion to the data, and waiting until the log is
//!   as large as the data keeps that cost in proportion to what was
//!   written since; so the log stays within about the data's size plus
//!   two files, and
//! - after an index build that ran, once two files or more are closed:
//!   the build flushed everything, and the reload is small beside the
//!   build, so after a bulk load and its index the log is back to two
//!   files at most instead of a copy of every vector loaded.
//!
//! Neither happens while an index build runs (it holds the shard).
//!
//! Nothing in the trimmed files is needed: every write was flushed to the
//! segments before its call returned.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The folder of a collection's log.
pub(crate) fn folder(collection: &Path) -> PathBuf {
    collection.join("wal")
}

/// The log's closed files, oldest first, with their bytes on disk.
fn closed(wal: &Path) -> Vec<(u64, PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(wal) else {
        return Vec::new();
    };
    let mut files: Vec<(u64, PathBuf, u64)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let first: u64 = e
                .file_name()
                .to_str()?
                .strip_prefix("closed-")?
                .parse()
                .ok()?;
            Some((first, e.path(), on_disk(&e.metadata().ok()?)))
        })
        .collect();
    files.sort_unstable_by_key(|f| f.0);
    files
}

/// Whether the log of the collection in `collection` should be trimmed
/// now: two closed files or more, holding at least as many bytes as the
/// segments. Called after every write, so the segments (a tree of files)
/// are measured only when a file has closed since the last answer:
/// `seen` holds the number of closed files the last "no" was given for
/// (the log grows by whole files, so nothing else can change the answer
/// but the segments shrinking, which the next closed file catches).
pub(crate) fn grown(collection: &Path, seen: &AtomicUsize) -> bool {
    let files = closed(&folder(collection));
    if files.len() < 2 || files.len() == seen.load(Ordering::Relaxed) {
        return false;
    }
    let log: u64 = files.iter().map(|f| f.2).sum();
    let due = log >= bytes_under(&collection.join("segments"));
    seen.store(if due { 0 } else { files.len() }, Ordering::Relaxed);
    due
}

/// Whether trimming would delete anything: two closed files or more.
pub(crate) fn trimmable(collection: &Path) -> bool {
    closed(&folder(collection)).len() >= 2
}

/// Delete the log's closed files but the newest; how many were deleted.
/// Nothing is deleted while a shard has the log open, in this process or
/// another: qdrant-edge holds an exclusive `flock` on the folder while a
/// shard is loaded, and this takes the same lock first.
pub(crate) fn trim(collection: &Path) -> std::io::Result<usize> {
    let wal = folder(collection);
    let Ok(dir) = std::fs::File::open(&wal) else {
        return Ok(0);
    };
    if dir.try_lock().is_err() {
        return Ok(0);
    }
    let files = closed(&wal);
    let Some((_, old)) = files.split_last() else {
        return Ok(0);
    };
    for (_, path, _) in old {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(old.len())
}

/// The bytes a file takes on disk: qdrant-edge's storage files are
/// created large and sparse (32 MiB for a few thousand vectors), so their
/// length says little about the data.
fn on_disk(m: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        std::os::unix::fs::MetadataExt::blocks(m) * 512
    }
    #[cfg(not(unix))]
    {
        m.len()
    }
}

/// The bytes on disk of the files under `dir`, at any depth.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| on_disk(&m)),
            Err(_) => 0,
        })
        .sum()
}
