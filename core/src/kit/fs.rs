//! Writing files and folders so that a failure never leaves half of one
//! under its final name.
//!
//! [`replace_file`] and [`write_file`] write to a temporary file beside the
//! destination (`.<name>.backplane-tmp`), flush it to disk, and rename it
//! over the destination: a reader sees the old file or the new one, never
//! a mix, and a failed write leaves the old file as it was and no
//! temporary file behind. [`build_dir`] does the same for a folder that
//! must not exist yet.
//!
//! Errors name the path the caller gave and say what to do; `what` names
//! the file in them (`"backup"`, `"collection description"`).

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The suffix of temporary files; a leftover one (after a crash) is
/// removed by the next write to the same destination.
pub const TEMP_SUFFIX: &str = ".backplane-tmp";

/// The temporary file [`replace_file`] writes for `dest`.
pub fn temp_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    dest.with_file_name(format!(".{name}{TEMP_SUFFIX}"))
}

/// Check `dest` and create its folder: the checks every write does first.
fn prepare(dest: &Path, what: &str) -> Result<()> {
    let shown = dest.display();
    if dest.as_os_str().to_string_lossy().trim().is_empty() {
        return Err(Error::invalid(format!(
            "{what} path is empty: give a file to write"
        )));
    }
    if dest.file_name().is_none() {
        return Err(Error::invalid(format!(
            "{what} path '{shown}' names no file: end it with a file name"
        )));
    }
    if dest.is_dir() {
        return Err(Error::invalid(format!(
            "{what} path '{shown}' is a folder: give a file name inside it"
        )));
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::invalid(format!(
                "cannot create the folder {} for the {what}: {e}",
                parent.display()
            ))
        })?;
    }
    Ok(())
}

/// The error for an I/O failure while writing the `what` for `dest`, as
/// the functions of this module report it.
pub fn io_error(what: &str, dest: &Path, e: io::Error) -> Error {
    let message = format!("cannot write the {what} to {}: {e}", dest.display());
    match e.kind() {
        io::ErrorKind::StorageFull => {
            Error::unavailable(format!("{message}: free space and retry"))
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            Error::invalid(format!("{message}: check the folder's permissions"))
        }
        _ => Error::backend(message),
    }
}

/// Flush a file's data to disk.
fn sync(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Make a rename in `dir` durable (best effort: not every platform can
/// open a folder for this).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Move the finished temporary file over `dest`.
fn finish(tmp: &Path, dest: &Path, what: &str) -> Result<()> {
    std::fs::rename(tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        Error::backend(format!(
            "the {what} was written but could not replace {} ({e}): check the folder's permissions; the old file is unchanged",
            dest.display()
        ))
    })?;
    sync_dir(dest.parent().unwrap_or(Path::new("")));
    Ok(())
}

/// Replace the file at `dest` with what `write` writes to the path it is
/// given (a temporary file beside `dest`, which `write` creates: a tool
/// that writes by path, such as a database's backup API, fits here).
///
/// The folders up to `dest` are created. When `write` fails, or the file
/// cannot be flushed or renamed, the temporary file is removed and `dest`
/// is left as it was.
pub fn replace_file<T>(
    dest: impl AsRef<Path>,
    what: &str,
    write: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let dest = dest.as_ref();
    prepare(dest, what)?;
    let tmp = temp_path(dest);
    let _ = std::fs::remove_file(&tmp);
    let result = write(&tmp).and_then(|out| {
        sync(&tmp).map_err(|e| io_error(what, dest, e))?;
        Ok(out)
    });
    match result {
        Ok(out) => {
            finish(&tmp, dest, what)?;
            Ok(out)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Replace the file at `dest` with what `write` writes to the buffered
/// file it is given; otherwise as [`replace_file`]. `write` may return an
/// I/O error as [`Error`] through [`io_error`], or its own.
pub fn write_file<T>(
    dest: impl AsRef<Path>,
    what: &str,
    write: impl FnOnce(&mut BufWriter<File>) -> Result<T>,
) -> Result<T> {
    let dest = dest.as_ref();
    replace_file(dest, what, |tmp| {
        let file = File::create(tmp).map_err(|e| {
            Error::invalid(format!(
                "cannot write the {what} to {}: creating {} failed: {e}",
                dest.display(),
                tmp.display()
            ))
        })?;
        let mut out = BufWriter::new(file);
        let value = write(&mut out)?;
        out.flush().map_err(|e| io_error(what, dest, e))?;
        Ok(value)
    })
}

/// Replace the file at `dest` with `bytes`; as [`write_file`].
pub fn write_bytes(dest: impl AsRef<Path>, what: &str, bytes: &[u8]) -> Result<()> {
    let dest = dest.as_ref();
    write_file(dest, what, |out| {
        out.write_all(bytes).map_err(|e| io_error(what, dest, e))
    })
}

/// Replace the file at `dest` with `bytes` without waiting for the disk:
/// a killed process leaves the old file or the new one, never a mix, but
/// after a power cut either may be lost. For progress records written
/// often, whose loss only repeats work.
pub fn write_bytes_unsynced(dest: impl AsRef<Path>, what: &str, bytes: &[u8]) -> Result<()> {
    let dest = dest.as_ref();
    prepare(dest, what)?;
    let tmp = temp_path(dest);
    std::fs::write(&tmp, bytes).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(what, dest, e)
    })?;
    std::fs::rename(&tmp, dest).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_error(what, dest, e)
    })
}

/// Create the folder `dest`, which must not exist, by building it as `tmp`
/// (created empty here, then filled by `build`) and renaming it into
/// place: `dest` appears complete or not at all.
///
/// `tmp` must be in the same folder as `dest`; name it so that leftovers
/// of a crash can be recognised and removed. When `build` or the rename
/// fails, `tmp` is removed. A `dest` that exists by the time of the rename
/// is `AlreadyExists`.
pub fn build_dir<T>(
    tmp: &Path,
    dest: &Path,
    what: &str,
    build: impl FnOnce(&Path) -> Result<T>,
) -> Result<T> {
    let result = (|| {
        std::fs::create_dir(tmp).map_err(|e| {
            Error::backend(format!("cannot create the folder {}: {e}", tmp.display()))
        })?;
        let value = build(tmp)?;
        if dest.exists() {
            return Err(Error::already_exists(format!(
                "{} exists already: pick another {what} name, or remove it first",
                dest.display()
            )));
        }
        std::fs::rename(tmp, dest).map_err(|e| {
            if dest.exists() {
                Error::already_exists(format!(
                    "{} exists already: pick another {what} name, or remove it first",
                    dest.display()
                ))
            } else {
                Error::backend(format!(
                    "cannot move the new {what} to {} ({e}): check the folder's permissions",
                    dest.display()
                ))
            }
        })?;
        Ok(value)
    })();
    match result {
        Ok(value) => {
            sync_dir(dest.parent().unwrap_or(Path::new("")));
            Ok(value)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// A fresh folder under the system's temporary folder, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let p = std::env::temp_dir().join(crate::kit::id::new_id(&format!("bp-kit-{name}-")));
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_and_replaces() {
        let s = Scratch::new("write");
        let dest = s.0.join("sub/dir/out.txt");
        write_bytes(&dest, "backup", b"one").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"one");
        let n = write_file(&dest, "backup", |w| {
            w.write_all(b"two")
                .map_err(|e| io_error("backup", &dest, e))?;
            Ok(3)
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        replace_file(&dest, "backup", |tmp| {
            assert_eq!(tmp, temp_path(&dest));
            std::fs::write(tmp, b"three").map_err(|e| io_error("backup", &dest, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"three");
        assert_eq!(entries(dest.parent().unwrap()), vec!["out.txt"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let s = Scratch::new("fail");
        let dest = s.0.join("keep.db");
        std::fs::write(&dest, b"old").unwrap();
        let e = write_file(&dest, "backup", |w| {
            w.write_all(b"half of it").unwrap();
            Err::<(), _>(Error::unavailable("the server went away"))
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        let e = replace_file(&dest, "backup", |tmp| {
            std::fs::write(tmp, b"partial").unwrap();
            Err::<(), _>(Error::backend("boom"))
        })
        .unwrap_err();
        assert_eq!(e.message(), "boom");
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
        assert_eq!(entries(&s.0), vec!["keep.db"]);
        // A writer that never created its file.
        let e = replace_file(&dest, "backup", |_| Ok(())).unwrap_err();
        assert!(e.message().contains("keep.db"), "{e}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    }

    #[test]
    fn a_leftover_temporary_file_is_replaced() {
        let s = Scratch::new("leftover");
        let dest = s.0.join("f");
        std::fs::write(temp_path(&dest), b"crashed").unwrap();
        write_bytes(&dest, "backup", b"new").unwrap();
        assert_eq!(entries(&s.0), vec!["f"]);
    }

    #[test]
    fn bad_paths_say_what_is_wrong() {
        let s = Scratch::new("paths");
        let file = s.0.join("plain");
        std::fs::write(&file, b"x").unwrap();
        for (dest, needle) in [
            (PathBuf::from(""), "backup path is empty"),
            (PathBuf::from("  "), "backup path is empty"),
            (PathBuf::from("/"), "names no file"),
            (s.0.clone(), "is a folder"),
            (file.join("below"), "cannot create the folder"),
        ] {
            let e = write_bytes(&dest, "backup", b"x").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{dest:?}: {e}");
            assert!(e.message().contains(needle), "{dest:?}: {e}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_unwritable_folder_is_reported_with_the_path() {
        use std::os::unix::fs::PermissionsExt;
        let s = Scratch::new("ro");
        let dir = s.0.join("ro");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("f"), b"old").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        // Root may write anyway; then there is nothing to check.
        if std::fs::write(dir.join("probe"), b"").is_err() {
            let e = write_bytes(dir.join("f"), "backup", b"new").unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert!(e.message().contains("backup"), "{e}");
            assert_eq!(std::fs::read(dir.join("f")).unwrap(), b"old");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn folders_appear_whole() {
        let s = Scratch::new("dir");
        let dest = s.0.join("coll");
        let tmp = s.0.join(".creating-coll");
        let n = build_dir(&tmp, &dest, "collection", |d| {
            std::fs::write(d.join("meta.json"), b"{}").map_err(|e| io_error("collection", d, e))?;
            Ok(7)
        })
        .unwrap();
        assert_eq!(n, 7);
        assert!(dest.join("meta.json").is_file());
        assert_eq!(entries(&s.0), vec!["coll"]);

        // A failed build leaves nothing.
        let other = s.0.join("other");
        let e = build_dir(&tmp, &other, "collection", |d| {
            std::fs::write(d.join("half"), b"x").unwrap();
            Err::<(), _>(Error::backend("engine failed"))
        })
        .unwrap_err();
        assert_eq!(e.message(), "engine failed");
        assert_eq!(entries(&s.0), vec!["coll"]);

        // The destination appeared meanwhile.
        let e = build_dir(&tmp, &dest, "collection", |_| Ok(())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        assert!(dest.join("meta.json").is_file());
        assert_eq!(entries(&s.0), vec!["coll"]);
    }
}
