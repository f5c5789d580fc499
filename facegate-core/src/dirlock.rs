//! One lock per data directory, so two servers can never share one.
//!
//! A data directory holds the change log, the audit trail, the manifests
//! and the encounter store. Each of those protects its own file, but two
//! servers on one directory would still interleave their change logs'
//! generations, their audit chains and their retention purges. The server
//! takes this lock first, before it opens any of them, and holds it for
//! its whole life: an exclusive advisory lock (`flock`) on
//! `DIR/facegate.lock`, which the OS releases when the process ends, even
//! on SIGKILL, so a crash never leaves a stale lock behind. The file holds
//! the owner's process id, only to name it in the refusal.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a locked directory.
pub const LOCK_FILE: &str = "facegate.lock";

/// A held lock on a data directory; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
    dir: PathBuf,
}

/// Why a directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DirLockError {
    /// Another process holds the lock.
    #[error(
        "{dir} is in use by another facegate process ({holder}); each server needs a data directory of its own"
    )]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// Who holds it, as its lock file says ("pid N"), or "unknown".
        holder: String,
    },
    /// The directory or its lock file could not be made or opened.
    #[error("{path}: {error}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
}

impl DirLock {
    /// Locks `dir` (created if missing) for this process, or says who
    /// holds it.
    pub fn acquire(dir: &Path) -> Result<DirLock, DirLockError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| DirLockError::Io { path, error }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(DirLockError::InUse {
                    dir: dir.to_path_buf(),
                    holder: holder(&mut file),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        // Ours now: say whose, for the next process that finds it held.
        file.set_len(0).map_err(io(&path))?;
        file.rewind().map_err(io(&path))?;
        writeln!(file, "pid {}", std::process::id()).map_err(io(&path))?;
        Ok(DirLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    /// The directory held.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What a held lock file says of its owner.
fn holder(file: &mut std::fs::File) -> String {
    let mut text = String::new();
    let read = file.read_to_string(&mut text);
    match read.ok().map(|_| text.trim()) {
        Some(t) if t.starts_with("pid ") && t.len() < 32 => t.to_string(),
        _ => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DirLock::acquire(&data).unwrap();
        assert_eq!(first.dir(), data);
        let err = DirLock::acquire(&data).unwrap_err();
        let said = err.to_string();
        assert!(matches!(err, DirLockError::InUse { .. }), "{said}");
        assert!(
            said.contains(&format!("pid {}", std::process::id())),
            "{said}"
        );
        assert!(said.contains(&data.display().to_string()), "{said}");
        drop(first);
        let again = DirLock::acquire(&data).unwrap();
        drop(again);
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let err = DirLock::acquire(&file.join("data")).unwrap_err();
        assert!(matches!(err, DirLockError::Io { .. }), "{err}");
        assert!(err.to_string().contains("a-file"), "{err}");
    }
}
