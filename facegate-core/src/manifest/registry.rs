//! The manifests in memory, in front of their store: what a scoped search
//! reads (no disk access on the search path), changed only through the
//! store so that memory never holds what the disk does not.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::model::{Amendment, Manifest, ManifestError, validate_manifest_id};
use super::store::{ListQuery, ManifestPage, ManifestStore, Staged, StoreError};
use crate::clock::{Clock, UnixMillis};

/// How long the id of a purged manifest is remembered (in memory only), so
/// that a port still asking for it is told "expired", not "unknown".
pub const REMEMBER_PURGED: Duration = Duration::from_secs(24 * 3600);

/// Why a manifest cannot be searched now; each is its own status on the wire.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ScopeError {
    /// The id is malformed.
    #[error(transparent)]
    BadId(#[from] ManifestError),
    /// No manifest has this id (never staged, or purged long ago).
    #[error("no manifest {id:?}")]
    Unknown {
        /// The id asked for.
        id: String,
    },
    /// Its window has ended (closed early, or past `valid_until`).
    #[error("manifest {id:?} expired at {until} (unix ms)", until = .valid_until.0)]
    Expired {
        /// The id.
        id: String,
        /// When it ended.
        valid_until: UnixMillis,
    },
    /// Its window has not begun.
    #[error("manifest {id:?} is valid only from {from} (unix ms)", from = .valid_from.0)]
    NotYetValid {
        /// The id.
        id: String,
        /// When it begins.
        valid_from: UnixMillis,
    },
}

#[derive(Debug, Default)]
struct Held {
    /// Every stored manifest: live, not yet valid, or ended but not purged.
    by_id: HashMap<String, Arc<Manifest>>,
    /// Purged manifests' ends, by id, for [`REMEMBER_PURGED`].
    purged: HashMap<String, UnixMillis>,
}

/// The stored manifests, held in memory for searches, with the clock that
/// decides which are valid. Methods that change manifests write the store
/// first (durably, blocking on fsync: call them off the async runtime's
/// workers) and apply to memory only what the store accepted.
#[derive(Debug)]
pub struct Manifests {
    store: Mutex<ManifestStore>,
    held: RwLock<Held>,
    clock: Arc<dyn Clock>,
}

impl Manifests {
    /// Opens the store under `dir` (see [`ManifestStore::open`]), purges
    /// what expired while the server was down, and loads the rest.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Manifests, StoreError> {
        let mut store = ManifestStore::open(dir)?;
        store.purge_expired(clock.now())?;
        let by_id = store
            .load_all()?
            .into_iter()
            .map(|m| (m.header.id.clone(), Arc::new(m)))
            .collect();
        Ok(Manifests {
            store: Mutex::new(store),
            held: RwLock::new(Held {
                by_id,
                purged: HashMap::new(),
            }),
            clock,
        })
    }

    /// The clock expiry is decided by (the server reads "now" once per
    /// request from it and passes it to [`Manifests::scope`]).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    // Poison means a panic elsewhere mid-call; the store's transactions and
    // the map's single-call updates leave neither torn.
    fn store(&self) -> MutexGuard<'_, ManifestStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, Held> {
        self.held.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Held> {
        self.held.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The manifest to search for a request at `now`, or why there is none.
    pub fn scope(&self, id: &str, now: UnixMillis) -> Result<Arc<Manifest>, ScopeError> {
        validate_manifest_id(id)?;
        let held = self.read();
        let Some(m) = held.by_id.get(id) else {
            return Err(match held.purged.get(id) {
                Some(&valid_until) => ScopeError::Expired {
                    id: id.into(),
                    valid_until,
                },
                None => ScopeError::Unknown { id: id.into() },
            });
        };
        let h = &m.header;
        if now >= h.valid_until {
            return Err(ScopeError::Expired {
                id: id.into(),
                valid_until: h.valid_until,
            });
        }
        if now < h.valid_from {
            return Err(ScopeError::NotYetValid {
                id: id.into(),
                valid_from: h.valid_from,
            });
        }
        Ok(Arc::clone(m))
    }

    /// Stages a manifest: durable when this returns, searchable from its
    /// `valid_from`. A window already ended is refused; a retry of the same
    /// stage succeeds with `newly_staged` false.
    pub fn stage(&self, manifest: Manifest) -> Result<Staged, StoreError> {
        let now = self.clock.now();
        if manifest.header.valid_until <= now {
            manifest.header.validate()?;
            return Err(ManifestError::AlreadyExpired {
                valid_until: manifest.header.valid_until,
                now,
            }
            .into());
        }
        let mut store = self.store();
        let staged = store.stage(manifest)?;
        let mut held = self.write();
        let id = &staged.manifest.header.id;
        held.purged.remove(id);
        held.by_id.insert(id.clone(), Arc::clone(&staged.manifest));
        Ok(staged)
    }

    /// The manifest held under `id` for a change: one whose window has
    /// ended can no longer be changed.
    fn changeable(&self, id: &str, now: UnixMillis) -> Result<(), StoreError> {
        match self.scope(id, now) {
            Ok(_) | Err(ScopeError::NotYetValid { .. }) => Ok(()),
            Err(ScopeError::BadId(e)) => Err(e.into()),
            Err(ScopeError::Unknown { id }) => Err(StoreError::NotFound { id }),
            Err(ScopeError::Expired { id, valid_until }) => {
                Err(StoreError::Expired { id, valid_until })
            }
        }
    }

    /// Adds and drops travellers at once (late bookings, no-boards); the
    /// manifest as it now is. Refused whole on any error.
    pub fn amend(&self, id: &str, amendment: &Amendment) -> Result<Arc<Manifest>, StoreError> {
        let mut store = self.store();
        self.changeable(id, self.clock.now())?;
        let m = Arc::new(store.amend(id, amendment)?);
        self.write().by_id.insert(id.to_string(), Arc::clone(&m));
        Ok(m)
    }

    /// Ends the manifest's window now (close early); closing one already
    /// ended changes nothing. It is purged at the next
    /// [`Manifests::purge_expired`].
    pub fn close(&self, id: &str) -> Result<Arc<Manifest>, StoreError> {
        let mut store = self.store();
        let now = self.clock.now();
        match self.changeable(id, now) {
            Ok(()) => {}
            // Ended already: held until purged (answered as it is), or
            // purged (still expired).
            Err(StoreError::Expired { id, valid_until }) => {
                let held = self.read().by_id.get(&id).cloned();
                return held.ok_or(StoreError::Expired { id, valid_until });
            }
            Err(e) => return Err(e),
        }
        let m = Arc::new(store.close(id, now)?);
        self.write().by_id.insert(id.to_string(), Arc::clone(&m));
        Ok(m)
    }

    /// The manifest held under `id`, whatever its window (for GetManifest).
    pub fn get(&self, id: &str) -> Result<Arc<Manifest>, StoreError> {
        validate_manifest_id(id)?;
        let held = self.read();
        if let Some(m) = held.by_id.get(id) {
            return Ok(Arc::clone(m));
        }
        Err(match held.purged.get(id) {
            Some(&valid_until) => StoreError::Expired {
                id: id.into(),
                valid_until,
            },
            None => StoreError::NotFound { id: id.into() },
        })
    }

    /// One page of the stored manifests (see [`ManifestStore::list`]).
    pub fn list(&self, query: &ListQuery) -> Result<ManifestPage, StoreError> {
        self.store().list(query)
    }

    /// Purges every manifest whose window has ended by the clock's now,
    /// from disk then memory, and returns their ids: the server calls it on
    /// a timer (and tests after advancing a `ManualClock`).
    pub fn purge_expired(&self) -> Result<Vec<String>, StoreError> {
        let mut store = self.store();
        let now = self.clock.now();
        let purged = store.purge_expired(now)?;
        let mut held = self.write();
        for id in &purged {
            if let Some(m) = held.by_id.remove(id) {
                held.purged.insert(id.clone(), m.header.valid_until);
            }
        }
        let forget_before = now.minus(REMEMBER_PURGED);
        held.purged.retain(|_, &mut until| until > forget_before);
        Ok(purged)
    }

    /// Drops `subject_id` from every manifest (erasure on request): from
    /// disk first, then from the manifests held; the ids of the manifests
    /// it was dropped from.
    pub fn erase_subject(&self, subject_id: &str) -> Result<Vec<String>, StoreError> {
        super::model::validate_subject_ids([&subject_id.to_string()])?;
        let mut store = self.store();
        let ids = store.erase_subject(subject_id)?;
        let mut held = self.write();
        for id in &ids {
            if let Some(m) = held.by_id.get_mut(id) {
                let mut without = Manifest::clone(m);
                without.subject_ids.retain(|s| s != subject_id);
                *m = Arc::new(without);
            }
        }
        Ok(ids)
    }

    /// Manifests held (live, not yet valid, or ended and awaiting purge),
    /// for metrics.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
