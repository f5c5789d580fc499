//! The SQLite files facegate owns (manifests, encounters): opened one way,
//! so that each is durable, exclusively held, checked and migrated alike.
//!
//! - **Durability**: WAL mode with `synchronous=FULL`: a transaction's WAL
//!   frames are fsync'd before its commit returns.
//! - **Ownership**: one server per file, a second one refused with
//!   [`DbError::InUse`]: either SQLite's `locking_mode=EXCLUSIVE`, taken
//!   before WAL mode (one connection), or a lock file beside the database
//!   (a writer and readers in this process); see [`Ownership`].
//! - **Erasure**: `secure_delete=ON`: deleted rows are overwritten with
//!   zeros, so a purged record leaves the file (and the WAL once
//!   checkpointed).
//! - **Plans**: the query planner stability guarantee (QPSG) on every
//!   connection, so that a statement's plan never depends on the values
//!   bound to it; see [`stable_plans`].
//! - **Damage**: `PRAGMA quick_check` at open; a failure is
//!   [`DbError::Corrupt`], naming the file.
//! - **Migrations**: `PRAGMA user_version` is the number of steps applied;
//!   each missing step runs with its version bump in one transaction. A file
//!   from a newer build is refused, not guessed at.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode};

/// Why a database could not be opened or used; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The directory or file could not be created or read.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// Another process (or store in this one) holds the file.
    #[error("{path}: in use by another process (the store locks its file exclusively)")]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// The WAL could not be checkpointed and truncated in time: a long read
    /// or another connection's checkpoint held it. What was committed
    /// stands; erased rows' zeroed bytes leave the WAL at the next
    /// checkpoint, so the caller retries.
    #[error(
        "{path}: the WAL could not be checkpointed within {} s (a long read or another checkpoint held it); retry",
        waited.as_secs()
    )]
    CheckpointBusy {
        /// The file.
        path: PathBuf,
        /// How long it was retried.
        waited: std::time::Duration,
    },
    /// The file is not a database of this kind, or its contents are damaged.
    #[error("{path}: corrupt database: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The file was written by a newer build, with a schema this one does
    /// not know.
    #[error("{path}: schema version {found}, this build reads at most {supported}")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        supported: usize,
    },
    /// SQLite failed (a full disk, an I/O error).
    #[error("{path}: {error}")]
    Database {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        error: rusqlite::Error,
    },
}

/// Classifies SQLite's error for the file at `path`: damage and contention
/// get their own variants, so the server answers each with its own status.
pub fn db_error(path: &Path, error: rusqlite::Error) -> DbError {
    let path = path.to_path_buf();
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => DbError::Corrupt {
            path,
            reason: error.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => DbError::InUse { path },
        _ => DbError::Database { path, error },
    }
}

/// A damaged row: what the file holds is not what a write could have put.
pub fn corrupt(path: &Path, reason: impl Into<String>) -> DbError {
    DbError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// How a file is kept to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// SQLite's own exclusive lock: one connection, the simplest, for a
    /// store whose reads are short (manifests).
    ExclusiveConnection,
    /// A `LOCK` file beside the database, held by [`lock_file`], and
    /// SQLite's normal locking: this process may open read connections
    /// beside the writer, so that a long report never holds up a write
    /// (encounters).
    LockFile,
}

/// Takes the lock that keeps the database at `path` to this process: an
/// exclusive advisory lock on `<path>.lock`, held while the returned file
/// is open, released by the OS even if the process is killed.
pub fn lock_file(path: &Path) -> Result<std::fs::File, DbError> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let io = |error| DbError::Io {
        path: lock_path.clone(),
        error,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(DbError::InUse {
            path: path.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Opens another connection to a database this process owns (opened with
/// [`Ownership::LockFile`]), for reads only.
pub fn open_reader(path: &Path) -> Result<Connection, DbError> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(path, flags).map_err(|e| db_error(path, e))?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| db_error(path, e))?;
    stable_plans(&c, path)?;
    Ok(c)
}

/// Turns on SQLite's query planner stability guarantee: a statement's plan
/// is chosen once, whatever values are later bound to it. Without it, the
/// planner marks a parameter it looked at while planning (an equality
/// such as `subject_id = ?1` is enough), and `sqlite3_clear_bindings`,
/// which rusqlite's statement cache calls whenever a statement goes back
/// to it, then expires the statement: every use of such a cached statement
/// parsed and planned it again (about a tenth of the encounter writer's
/// CPU per exit recorded). facegate keeps no statistics tables, so no plan
/// could have gained from the values.
pub fn stable_plans(c: &Connection, path: &Path) -> Result<(), DbError> {
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map(drop)
    .map_err(|e| db_error(path, e))
}

/// Opens (creating when absent) the database at `path`, its directory
/// included: takes the exclusive lock, sets durability and erasure, checks
/// the structure, and applies the `migrations` the file has not had.
pub fn open(path: &Path, migrations: &[&str]) -> Result<Connection, DbError> {
    open_owned(path, migrations, Ownership::ExclusiveConnection)
}

/// [`open`], with the file kept to this process as `ownership` says (for
/// [`Ownership::LockFile`], hold [`lock_file`] first).
pub fn open_owned(
    path: &Path,
    migrations: &[&str],
    ownership: Ownership,
) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent() {
        crate::durable_dir::create_dir_all(dir).map_err(|error| DbError::Io {
            path: dir.to_path_buf(),
            error,
        })?;
    }
    let mut conn = Connection::open(path).map_err(|e| db_error(path, e))?;
    configure(&conn, path, ownership)?;
    check_structure(&conn, path)?;
    migrate(&mut conn, path, migrations)?;
    Ok(conn)
}

/// Per-connection settings (all but WAL mode are not stored in the file).
fn configure(c: &Connection, path: &Path, ownership: Ownership) -> Result<(), DbError> {
    let e = |e| db_error(path, e);
    stable_plans(c, path)?;
    if ownership == Ownership::ExclusiveConnection {
        c.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(e)?;
    }
    let mode: String = c
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(e)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(corrupt(
            path,
            format!("journal mode {mode:?} could not be set to WAL"),
        ));
    }
    c.pragma_update(None, "synchronous", "FULL").map_err(e)?;
    // 64 MiB of page cache (SQLite's default is 2 MiB): indexes on random
    // keys (subject ids) are written in random places, and a cache smaller
    // than their working set turns each insert into reads.
    c.pragma_update(None, "cache_size", -65_536).map_err(e)?;
    c.pragma_update(None, "secure_delete", "ON").map_err(e)?;
    c.pragma_update(None, "foreign_keys", "ON").map_err(e)
}

/// `PRAGMA quick_check`: every page and b-tree well formed (it does not
/// check that indexes match their tables, which `integrity_check` does at a
/// cost proportional to the file).
fn check_structure(c: &Connection, path: &Path) -> Result<(), DbError> {
    let mut stmt = c
        .prepare("PRAGMA quick_check")
        .map_err(|e| db_error(path, e))?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(Iterator::collect)
        .map_err(|e| db_error(path, e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(corrupt(path, problems.join("; ")))
}

/// Applies the steps the file has not had, each with its version bump in
/// one transaction.
fn migrate(c: &mut Connection, path: &Path, migrations: &[&str]) -> Result<(), DbError> {
    let e = |e| db_error(path, e);
    let version: i64 = c
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(e)?;
    if version < 0 || version as usize > migrations.len() {
        return Err(DbError::NewerSchema {
            path: path.to_path_buf(),
            found: version,
            supported: migrations.len(),
        });
    }
    for (i, step) in migrations.iter().enumerate().skip(version as usize) {
        let tx = c.transaction().map_err(e)?;
        tx.execute_batch(step).map_err(e)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(e)?;
        tx.commit().map_err(e)?;
    }
    Ok(())
}

/// How long [`checkpoint`] retries while another connection checkpoints.
const CHECKPOINT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Copies the WAL into the database and truncates it to zero bytes, so
/// that deleted rows' bytes (zeroed by `secure_delete`) leave the WAL too.
/// While another connection runs a checkpoint (the encounter store's
/// checkpoint thread) SQLite answers busy at once, without calling the
/// busy handler that waits out readers; that checkpoint ends within
/// milliseconds, so this retries for up to `CHECKPOINT_PATIENCE` (5 s).
pub fn checkpoint(c: &Connection, path: &Path) -> Result<(), DbError> {
    let deadline = std::time::Instant::now() + CHECKPOINT_PATIENCE;
    loop {
        let busy = match c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        }) {
            Ok(busy) => busy != 0,
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::DatabaseBusy => true,
            Err(e) => return Err(db_error(path, e)),
        };
        if !busy {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(DbError::CheckpointBusy {
                path: path.to_path_buf(),
                waited: CHECKPOINT_PATIENCE,
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_checkpoint_refused_at_once_is_retried_until_the_reader_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let table = "CREATE TABLE t (v INTEGER)";
        let conn = open_owned(&path, &[table], Ownership::LockFile).unwrap();
        // No busy handler: SQLite answers busy at once, as it does to every
        // connection while another one holds the checkpoint lock.
        conn.busy_timeout(Duration::ZERO).unwrap();
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let seen: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 1);
        conn.execute("INSERT INTO t VALUES (2)", []).unwrap();
        let read_ends = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            reader.execute_batch("COMMIT").unwrap();
        });
        let started = Instant::now();
        checkpoint(&conn, &path).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150), "it waited");
        read_ends.join().unwrap();
        let wal = std::fs::metadata(dir.path().join("t.db-wal")).unwrap();
        assert_eq!(wal.len(), 0, "truncated");
    }
}
