//! Manifest galleries as the server serves them, in domain types: the
//! scoped 1:few search of one manifest's travellers, and the back office's
//! operations on manifests (stage, amend, close, get, list), each reporting
//! what the gallery does not hold.
//!
//! Everything here blocks (exact scoring on the calling thread, SQLite
//! fsyncs): callers run it on the blocking pool, never on an async worker
//! and never through the 1:N dispatcher, so that a scoped search does not
//! wait behind a national batch.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use facegate_core::clock::Clock;
use facegate_core::manifest::{
    Amendment, FILE_NAME, ListQuery, Manifest, ManifestPage, Manifests, ScopeError, Staged,
    StoreError, validate_manifest_id,
};
use facegate_core::{GalleryError, ProbeBatch, SearchError};

use crate::generation::Generation;

/// The manifests of the data directory, their store opened at start-up
/// when `manifests.db` exists and otherwise at the first staging: a server
/// that is never given a manifest writes no manifest file (nor takes its
/// lock), so that its data directory holds only what it uses. Until then
/// every manifest is unknown and listings are empty.
#[derive(Debug)]
pub struct ServedManifests {
    dir: PathBuf,
    clock: Arc<dyn Clock>,
    opened: OnceLock<Manifests>,
    /// Held while creating the store, so that two first stagings create one.
    creating: Mutex<()>,
}

impl ServedManifests {
    /// The manifests under `dir`, opened (and purged of what ended while
    /// the server was down) if their file exists. Blocking.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<ServedManifests, StoreError> {
        let served = ServedManifests {
            dir: dir.to_path_buf(),
            clock,
            opened: OnceLock::new(),
            creating: Mutex::new(()),
        };
        if dir.join(FILE_NAME).exists() {
            served.store()?;
        }
        Ok(served)
    }

    /// The store, opened (created if need be) now. Blocking.
    fn store(&self) -> Result<&Manifests, StoreError> {
        if let Some(m) = self.opened.get() {
            return Ok(m);
        }
        let _one = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = self.opened.get() {
            return Ok(m);
        }
        let m = Manifests::open(&self.dir, self.clock.clone())?;
        Ok(self.opened.get_or_init(|| m))
    }

    /// The clock manifests' windows are judged by.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// See [`Manifests::scope`]; every id is unknown before the first staging.
    pub fn scope(
        &self,
        id: &str,
        now: facegate_core::clock::UnixMillis,
    ) -> Result<Arc<Manifest>, ScopeError> {
        match self.opened.get() {
            Some(m) => m.scope(id, now),
            None => {
                validate_manifest_id(id)?;
                Err(ScopeError::Unknown { id: id.into() })
            }
        }
    }

    /// See [`Manifests::stage`]; creates the store at the first staging.
    pub fn stage(&self, manifest: Manifest) -> Result<Staged, StoreError> {
        manifest.validate()?;
        self.store()?.stage(manifest)
    }

    /// The opened store, or NOT_FOUND for `id` (nothing staged yet).
    fn holding(&self, id: &str) -> Result<&Manifests, StoreError> {
        validate_manifest_id(id)?;
        self.opened
            .get()
            .ok_or_else(|| StoreError::NotFound { id: id.into() })
    }

    /// See [`Manifests::amend`].
    pub fn amend(&self, id: &str, amendment: &Amendment) -> Result<Arc<Manifest>, StoreError> {
        self.holding(id)?.amend(id, amendment)
    }

    /// See [`Manifests::close`].
    pub fn close(&self, id: &str) -> Result<Arc<Manifest>, StoreError> {
        self.holding(id)?.close(id)
    }

    /// See [`Manifests::get`].
    pub fn get(&self, id: &str) -> Result<Arc<Manifest>, StoreError> {
        self.holding(id)?.get(id)
    }

    /// See [`Manifests::list`]; empty before the first staging.
    pub fn list(&self, query: &ListQuery) -> Result<ManifestPage, StoreError> {
        match self.opened.get() {
            Some(m) => m.list(query),
            None => Ok(ManifestPage {
                manifests: Vec::new(),
                next: None,
            }),
        }
    }

    /// See [`Manifests::erase_subject`]; nothing before the first staging.
    pub fn erase_subject(&self, subject_id: &str) -> Result<Vec<String>, StoreError> {
        self.opened
            .get()
            .map_or(Ok(Vec::new()), |m| m.erase_subject(subject_id))
    }

    /// See [`Manifests::purge_expired`]; nothing before the first staging.
    pub fn purge_expired(&self) -> Result<Vec<String>, StoreError> {
        self.opened
            .get()
            .map_or(Ok(Vec::new()), Manifests::purge_expired)
    }

    /// Manifests held, for metrics.
    pub fn len(&self) -> usize {
        self.opened.get().map_or(0, Manifests::len)
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A scoped search's answer, its candidates' ids resolved.
#[derive(Debug)]
pub struct ScopedFound {
    /// Subject ids and exact scores, best first.
    pub candidates: Vec<(String, f32)>,
    /// Time spent scoring.
    pub engine_time: Duration,
    /// The gallery generation that answered.
    pub generation: u64,
}

/// Why a scoped Identify got no answer. Each is its own status: see
/// `crate::status`.
#[derive(Debug, thiserror::Error)]
pub enum ScopedError {
    /// The manifest is unknown, expired or not yet valid (or its id is bad).
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// The caller's port key is not the manifest's port.
    #[error("manifest {id:?} belongs to another port than this API key's")]
    OtherPort {
        /// The manifest asked for.
        id: String,
    },
    /// Scoring failed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// A candidate's id could not be read from the gallery.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// The blocking task running the search did not finish (it panicked).
    #[error("the manifest search did not complete")]
    Task,
}

/// Why a back-office operation on manifests failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestOpError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gallery could not be read to report missing travellers (the
    /// change itself is durable).
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// The blocking task did not finish (it panicked).
    #[error("the manifest operation did not complete; it may not have been applied")]
    Task,
}

/// Probe 0 of `probe` against the travellers of `manifest`, exactly, on the
/// generation `g` (every template of each, online enrolments included;
/// removed subjects are skipped), the best `top_k` first.
pub fn search_manifest(
    g: &Generation,
    manifest: &Manifest,
    probe: &ProbeBatch,
    top_k: usize,
) -> Result<ScopedFound, ScopedError> {
    let started = Instant::now();
    let live = g.live();
    let answer = live.search_subjects(probe, 0, &manifest.subject_ids, top_k)?;
    let engine_time = started.elapsed();
    let mut candidates = Vec::with_capacity(answer.candidates.len());
    for c in &answer.candidates {
        candidates.push((live.subject_id(c.subject)?, c.score));
    }
    Ok(ScopedFound {
        candidates,
        engine_time,
        generation: g.id(),
    })
}

/// A staging done, with the listed ids the gallery does not hold now.
#[derive(Debug)]
pub struct StagedReport {
    /// What the store holds.
    pub staged: Staged,
    /// Listed ids not live in the gallery served (staged all the same).
    pub not_in_gallery: Vec<String>,
}

/// Stages `manifest` durably, then reports which travellers `g` lacks.
pub fn stage(
    manifests: &ServedManifests,
    g: &Generation,
    manifest: Manifest,
) -> Result<StagedReport, ManifestOpError> {
    let staged = manifests.stage(manifest)?;
    let not_in_gallery = missing(g, &staged.manifest.subject_ids)?;
    Ok(StagedReport {
        staged,
        not_in_gallery,
    })
}

/// An amendment done: the manifest as it now is, and the added ids the
/// gallery does not hold now.
#[derive(Debug)]
pub struct AmendedReport {
    /// The manifest after the amendment.
    pub manifest: Arc<Manifest>,
    /// Added ids not live in the gallery served.
    pub not_in_gallery: Vec<String>,
}

/// Amends manifest `id` durably, then reports which added travellers `g`
/// lacks.
pub fn amend(
    manifests: &ServedManifests,
    g: &Generation,
    id: &str,
    amendment: &Amendment,
) -> Result<AmendedReport, ManifestOpError> {
    let manifest = manifests.amend(id, amendment)?;
    let not_in_gallery = missing(g, &amendment.add)?;
    Ok(AmendedReport {
        manifest,
        not_in_gallery,
    })
}

/// Closes manifest `id` now (durably).
pub fn close(manifests: &ServedManifests, id: &str) -> Result<Arc<Manifest>, ManifestOpError> {
    Ok(manifests.close(id)?)
}

/// The manifest held under `id`.
pub fn get(manifests: &ServedManifests, id: &str) -> Result<Arc<Manifest>, ManifestOpError> {
    Ok(manifests.get(id)?)
}

/// One page of the stored manifests.
pub fn list(
    manifests: &ServedManifests,
    query: &ListQuery,
) -> Result<ManifestPage, ManifestOpError> {
    Ok(manifests.list(query)?)
}

fn missing(g: &Generation, ids: &[String]) -> Result<Vec<String>, GalleryError> {
    Ok(g.live()
        .missing_subjects(ids)?
        .into_iter()
        .map(str::to_owned)
        .collect())
}
