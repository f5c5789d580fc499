//! Encounters as a node keeps them: either the embedded store under the
//! data directory, opened at start-up when its file exists, else at the
//! first record (as manifests are); or a shared store (PostgreSQL, for
//! several nodes) given at start-up with `--encounter-store`. Everything on
//! a store blocks (disk, fsync, network) and runs on the blocking pool,
//! except queuing a port's record to an open store (`if_open` then
//! `enqueue_record`), which returns at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use facegate_core::clock::Clock;
use facegate_core::encounter::sqlite_store::FILE_NAME;
use facegate_core::encounter::store::Empty;
use facegate_core::encounter::{EncounterError, EncounterStore, SqliteEncounters};
use facegate_postgres::{PgEncounters, StoreTls};

/// How long a request waits for its record to be confirmed durable before
/// it is answered UNAVAILABLE, unless configured: far longer than a
/// working store's commit (about a millisecond here, a reconnect to the
/// shared database tens of them), short enough that a port falls back to
/// its manual check rather than holding a traveller at the booth while a
/// disk or database hangs.
pub const DEFAULT_RECORD_TIMEOUT: Duration = Duration::from_secs(5);

/// A node's encounter store, opened when first needed.
#[derive(Debug)]
pub struct ServedEncounters {
    /// Where the embedded store's file goes; `None` for a shared store,
    /// open from the start.
    dir: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    /// The longest a request waits for its record (see
    /// [`DEFAULT_RECORD_TIMEOUT`]).
    record_timeout: Duration,
    /// The shared PostgreSQL store, when that is the store: its TLS files
    /// are reloaded with the listeners' credentials.
    postgres: Option<Arc<PgEncounters>>,
    opened: OnceLock<Arc<dyn EncounterStore>>,
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
        let dir = data_dir.join("encounters");
        let exists = dir.join(FILE_NAME).exists();
        let served = ServedEncounters {
            dir: Some(dir),
            clock,
            record_timeout: DEFAULT_RECORD_TIMEOUT,
            postgres: None,
            opened: OnceLock::new(),
            creating: Mutex::new(()),
        };
        if exists {
            served.writable()?;
        }
        Ok(served)
    }

    /// A store shared with other nodes (open already).
    pub fn shared(store: Arc<dyn EncounterStore>, clock: Arc<dyn Clock>) -> ServedEncounters {
        ServedEncounters {
            dir: None,
            clock,
            record_timeout: DEFAULT_RECORD_TIMEOUT,
            postgres: None,
            opened: OnceLock::from(store),
            creating: Mutex::new(()),
        }
    }

    /// Connects to the shared PostgreSQL store at `url`, secured as `tls`
    /// says, bringing its schema up to date. Blocking.
    pub fn connect(
        url: &str,
        tls: &StoreTls,
        clock: Arc<dyn Clock>,
    ) -> Result<ServedEncounters, EncounterError> {
        let store = facegate_postgres::PgEncounters::open_tls(url, tls)?;
        tracing::info!(
            database = %store.location(),
            tls = tls.is_on(),
            "shared encounter store open"
        );
        let postgres = Some(Arc::clone(&store));
        Ok(ServedEncounters {
            postgres,
            ..ServedEncounters::shared(store, clock)
        })
    }

    /// The shared PostgreSQL store, when the node was given one.
    pub fn postgres(&self) -> Option<&Arc<PgEncounters>> {
        self.postgres.as_ref()
    }

    /// The same store, whose requests wait at most `timeout` for their
    /// records (`--encounter-record-timeout-ms`).
    pub fn with_record_timeout(mut self, timeout: Duration) -> ServedEncounters {
        self.record_timeout = timeout;
        self
    }

    /// The longest a request waits for its record to be confirmed: past
    /// it the request fails UNAVAILABLE and the record may still be
    /// written, so the port retries with the same encounter id.
    pub fn record_timeout(&self) -> Duration {
        self.record_timeout
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
        // A shared store is open from the start; only the embedded one is made here.
        let dir = self.dir.as_ref().ok_or(EncounterError::Closed)?;
        let s: Arc<dyn EncounterStore> = SqliteEncounters::open(dir)?;
        Ok(self.opened.get_or_init(|| s).as_ref())
    }

    /// The store when it is open already: what a caller that must not
    /// block (an async worker) may queue a write to without creating it.
    pub fn if_open(&self) -> Option<&dyn EncounterStore> {
        self.opened.get().map(|s| s.as_ref())
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
        self.opened.get().map_or((0, 0), |s| s.commit_counts())
    }
}

/// Refuses TLS files for a shared store that is not given: they would
/// secure nothing, and their presence says the operator meant a database.
/// (Their own rules are checked when the store is opened.)
pub fn check_store_tls(url: Option<&str>, tls: &StoreTls) -> anyhow::Result<()> {
    let given = tls.ca.is_some() || tls.client_cert.is_some() || tls.client_key.is_some();
    if given && url.is_none() {
        anyhow::bail!(
            "encounter_store_ca, _cert and _key secure the shared encounter store: \
             give encounter_store too (the embedded store needs no TLS)"
        );
    }
    Ok(())
}
