//! Helpers shared by the fuzz targets.

use std::path::PathBuf;

/// A per-process scratch file for parsers that read only from a path (the
/// memory-mapped gallery, the .npy reader): on tmpfs (`/dev/shm`) when the
/// machine has it, so that each execution costs no disk write.
pub fn scratch_path(name: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("facegate-fuzz-{}-{name}", std::process::id()))
}

/// Writes `data` to the scratch file `name` and returns its path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_path(name);
    std::fs::write(&path, data).expect("write the fuzz scratch file");
    path
}
