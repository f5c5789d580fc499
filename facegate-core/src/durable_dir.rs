//! Directories created durably. A file whose records are acknowledged as
//! durable is only as durable as the directory entries leading to it:
//! POSIX makes a new entry survive a crash only once the directory holding
//! it is fsync'd. `std::fs::create_dir_all` does not do that, so a store
//! created in a fresh data directory could acknowledge its first record and
//! still lose its whole directory to a power cut. The same holds for a
//! file created, renamed or removed in an existing directory: [`sync`] and
//! [`sync_parent`] are the one place the stores fsync a directory.

use std::path::Path;

/// fsyncs `dir`, so that the entries created, renamed or removed in it are
/// durable.
pub fn sync(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// fsyncs the directory holding `path` (the working directory for a bare
/// file name).
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    sync(dir)
}

/// Creates `dir` and any missing parents, fsyncing the parent of each
/// directory it created, from the top down, so that each new entry is
/// durable before anything is written under it. Nothing is done when
/// `dir` exists already.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
    std::fs::create_dir_all(dir)?;
    for created in missing.iter().rev() {
        sync_parent(created)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_parents_are_created_and_an_existing_directory_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        std::fs::write(deep.join("f"), b"x").unwrap();
        create_dir_all(&deep).unwrap();
        assert_eq!(std::fs::read(deep.join("f")).unwrap(), b"x");
    }

    #[test]
    fn a_file_in_the_way_is_an_error_not_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(create_dir_all(&file.join("d")).is_err());
    }
}
