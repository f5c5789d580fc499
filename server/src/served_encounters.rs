//! Encounters as the server keeps them: the store under the data directory,
//! opened at start-up when its file exists, else at the first record (as
//! manifests are). Everything on the store blocks (SQLite, fsync) and runs
//! on the blocking pool, except queuing a port's record to an open store
//! (`if_open` then `enqueue_record`), which returns at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use facegate_core::clock::Clock;
use facegate_core::encounter::sqlite_store::FILE_NAME;
use facegate_core::encounter::store::Empty;
use facegate_core::encounter::{EncounterError, EncounterStore, SqliteEncounters};

/// The encounter store of the data directory, opened when first needed.
#[derive(Debug)]
pub struct ServedEncounters {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    opened: OnceLock<Arc<SqliteEncounters>>,
    /// Held while creating the store, so that two first records create one.
    creating: Mutex<()>,
}

impl ServedEncounters {
    /// The encounters under `dir/encounters`, opened now if their file
    /// exists. Blocking.
    pub fn open(
        data_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<ServedEncounters, EncounterError> {
        let served = ServedEncounters {
            dir: data_dir.join("encounters"),
            clock,
            opened: OnceLock::new(),
            creating: Mutex::new(()),
        };
        if served.dir.join(FILE_NAME).exists() {
            served.writable()?;
        }
        Ok(served)
    }

    /// The clock records are stamped with and "today" is read from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The store, created now if need be (for a write). Blocking.
    pub fn writable(&self) -> Result<&dyn EncounterStore, EncounterError> {
        if let Some(s) = self.opened.get() {
            return Ok(s.as_ref());
        }
        let _one = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = self.opened.get() {
            return Ok(s.as_ref());
        }
        let s = SqliteEncounters::open(&self.dir)?;
        Ok(self.opened.get_or_init(|| s).as_ref())
    }

    /// The store when it is open already: what a caller that must not
    /// block (an async worker) may queue a write to without creating it.
    pub fn if_open(&self) -> Option<&dyn EncounterStore> {
        self.opened.get().map(|s| s.as_ref() as &dyn EncounterStore)
    }

    /// The store for a read: empty while nothing was ever recorded (no
    /// file yet).
    pub fn readable(&self) -> &dyn EncounterStore {
        match self.opened.get() {
            Some(s) => s.as_ref(),
            None => &Empty,
        }
    }

    /// Writes answered and commits made so far, for metrics.
    pub fn commit_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.opened.get().map_or((0, 0), |s| {
            let c = s.commit_stats();
            (c.writes.load(Relaxed), c.commits.load(Relaxed))
        })
    }
}
