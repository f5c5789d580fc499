//! The gallery as it is now: the immutable mapped base plus what changed
//! since it was built (enrolments in a delta segment, removals as
//! tombstones), kept in step with the write-ahead change log.
//!
//! Subjects are numbered as in the base (`0..S`, the base's sorted subject
//! table); a subject first enrolled online gets the next free number
//! (`S, S+1, ...`, in the order of enrolment, which replay of the log
//! repeats). An enrolment is the subject's whole current record: it masks
//! the subject's base rows and replaces any delta rows it had. A removal
//! masks both. Engines are built from this gallery's [`ScanTarget`] (the base
//! with the tombstones as its mask); [`LiveGallery::search`] runs one over
//! the base, searches the delta exactly, and merges the two answers by
//! subject, so that every engine answers over the gallery as it is now.
//!
//! [`LiveGallery::commit`] is the only way a change is made while serving:
//! it checks the change against the current state, makes it durable in the
//! log, then applies it, all under a lock striped by subject id, so that
//! changes to one subject are applied in log order (replay after a crash
//! rebuilds the same state) while changes to different subjects still share
//! log fsyncs.

mod compact;
mod delta;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use compact::{CompactReport, compact, write_merged, write_subset};

use crate::error::{GalleryError, InputError};
use crate::format::{Gallery, validate_subject_id};
use crate::kernels::Kernels;
use crate::quantize::normalize_into;
use crate::search::{
    Candidate, ProbeBatch, Refiner, ScanTarget, SearchEngine, SearchError, Tombstones, sort_ranked,
};
use crate::wal::{Change, ChangeLog, WalError};
use delta::Delta;

/// Most templates one enrolment may carry.
pub const MAX_TEMPLATES_PER_SUBJECT: usize = 64;
/// Locks that serialise changes to the same subject.
const STRIPES: usize = 256;

/// Why a change was refused; nothing was written or applied.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// A template or the subject id is malformed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// An enrolment without templates.
    #[error("an enrolment needs at least one template")]
    NoTemplates,
    /// An enrolment with more templates than a subject may have.
    #[error("{count} templates: at most {MAX_TEMPLATES_PER_SUBJECT} per subject")]
    TooManyTemplates {
        /// Templates given.
        count: usize,
    },
    /// A removal of a subject the gallery does not hold (never enrolled, or
    /// already removed).
    #[error("no such subject in the gallery")]
    UnknownSubject,
    /// The base gallery could not be read.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// An enrolment of a subject another shard holds, sent to this one: the
    /// request is right, the server is not (`facegate_core::shard`).
    #[error("subject belongs to shard {owner}/{count}; this server is shard {index}/{count}")]
    ForeignSubject {
        /// The shard that holds the subject.
        owner: u32,
        /// This server's shard.
        index: u32,
        /// Shards in all.
        count: u32,
    },
}

/// Why [`LiveGallery::commit`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The change itself is wrong.
    #[error(transparent)]
    Change(#[from] ChangeError),
    /// The log could not make it durable (a full disk, an I/O error); the
    /// change was not applied.
    #[error(transparent)]
    Log(#[from] WalError),
}

/// Sizes of the live gallery, for GalleryInfo and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LiveCounts {
    /// Rows held: every base row (masked ones included: they stay in the
    /// file until a rebuild) plus the live delta rows.
    pub rows: u64,
    /// Subjects that can be returned.
    pub subjects: u64,
    /// Base subjects masked (removed or re-enrolled).
    pub masked_base_subjects: u64,
    /// Rows in the delta segment.
    pub delta_rows: u64,
    /// Subjects with rows in the delta segment.
    pub delta_subjects: u64,
}

/// The answer of a scoped (1:few) search: a manifest's travellers only.
#[derive(Debug, Clone, PartialEq)]
pub struct ScopedAnswer {
    /// The best `top_k` distinct subjects, best first, ranked as 1:N ranks
    /// (score, then row).
    pub candidates: Vec<Candidate>,
    /// Distinct listed subjects that were live and scored.
    pub searched: usize,
    /// Distinct listed ids not live now (removed, or never enrolled): the
    /// response reports them, they are not an error.
    pub not_found: usize,
}

/// Subjects enrolled online, and the delta segment.
#[derive(Debug)]
struct Overlay {
    delta: Delta,
    /// Ids of subjects first enrolled online; subject `S + i` is `new_ids[i]`.
    new_ids: Vec<String>,
    new_index: HashMap<String, u32>,
}

/// The base gallery with the changes made since it was built.
pub struct LiveGallery {
    /// The base and its mask (the tombstones), with the exact scoring that
    /// Verify and the delta merge share with the engines.
    refiner: Refiner,
    overlay: RwLock<Overlay>,
    stripes: Vec<Mutex<()>>,
    stripe_hash: RandomState,
}

impl std::fmt::Debug for LiveGallery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveGallery")
            .field("base", &self.base().path())
            .field("counts", &self.counts())
            .finish()
    }
}

/// A template set checked and normalised.
struct Prepared {
    units: Vec<f32>,
}

impl LiveGallery {
    /// `base` as built, with nothing changed yet.
    pub fn new(base: Arc<Gallery>) -> Self {
        let dim = base.dim();
        LiveGallery {
            refiner: Refiner::new(ScanTarget::whole(base), Kernels::detect()),
            overlay: RwLock::new(Overlay {
                delta: Delta::new(dim),
                new_ids: Vec::new(),
                new_index: HashMap::new(),
            }),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            stripe_hash: RandomState::new(),
        }
    }

    /// The mapped base gallery.
    pub fn base(&self) -> &Arc<Gallery> {
        self.refiner.target().gallery()
    }

    /// The base with this gallery's mask: what every engine that serves it
    /// must be built from, so that removals apply to its scans at once.
    pub fn scan_target(&self) -> &ScanTarget {
        self.refiner.target()
    }

    /// The base subjects masked (removed or re-enrolled).
    fn tombstones(&self) -> &Tombstones {
        self.refiner.target().mask()
    }

    /// Template dimension.
    pub fn dim(&self) -> usize {
        self.base().dim()
    }

    // A poisoned lock means a panic mid-change elsewhere; the overlay's
    // fields are each updated by single calls that cannot leave them torn.
    fn read(&self) -> RwLockReadGuard<'_, Overlay> {
        self.overlay.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Overlay> {
        self.overlay.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The subject number of `id` (live or not), if it was ever known.
    fn index_of(&self, overlay: &Overlay, id: &str) -> Result<Option<u32>, GalleryError> {
        if let Some(i) = self.base().find_subject(id)? {
            return Ok(Some(i));
        }
        Ok(overlay.new_index.get(id).copied())
    }

    fn is_live(&self, overlay: &Overlay, subject: u32) -> bool {
        overlay.delta.rows_of(subject).is_some()
            || ((subject as usize) < self.base().subjects()
                && !self.tombstones().is_removed(subject))
    }

    /// The number of `id` when it can be returned by a search now.
    pub fn find_live(&self, id: &str) -> Result<Option<u32>, GalleryError> {
        let o = self.read();
        Ok(self.index_of(&o, id)?.filter(|&s| self.is_live(&o, s)))
    }

    /// The id of subject number `subject` (base or enrolled online).
    pub fn subject_id(&self, subject: u32) -> Result<String, GalleryError> {
        self.subject_id_in(&self.read(), subject)
    }

    fn subject_id_in(&self, o: &Overlay, subject: u32) -> Result<String, GalleryError> {
        let s = subject as usize;
        if s < self.base().subjects() {
            return Ok(self.base().subject_id(subject)?.to_owned());
        }
        o.new_ids
            .get(s - self.base().subjects())
            .cloned()
            .ok_or_else(|| GalleryError::Corrupt {
                path: self.base().path().to_path_buf(),
                reason: format!("subject number {subject} is not in the gallery or its delta"),
            })
    }

    fn prepare(&self, subject_id: &str, templates: &[f32]) -> Result<Prepared, ChangeError> {
        validate_subject_id(subject_id, &|| "subject_id".into())?;
        let dim = self.dim();
        if templates.is_empty() {
            return Err(ChangeError::NoTemplates);
        }
        if !templates.len().is_multiple_of(dim) {
            return Err(InputError::Dimension {
                what: "template".into(),
                expected: dim,
                actual: templates.len() % dim,
            }
            .into());
        }
        let count = templates.len() / dim;
        if count > MAX_TEMPLATES_PER_SUBJECT {
            return Err(ChangeError::TooManyTemplates { count });
        }
        let mut units = vec![0f32; templates.len()];
        for (i, (src, dst)) in templates
            .chunks_exact(dim)
            .zip(units.chunks_exact_mut(dim))
            .enumerate()
        {
            normalize_into(src, dst, &|| format!("template {i}"))?;
        }
        Ok(Prepared { units })
    }

    /// Checks a change against the gallery as it is now, without applying it.
    pub fn check(&self, change: &Change) -> Result<(), ChangeError> {
        match change {
            Change::Enroll {
                subject_id,
                templates,
            } => self.prepare(subject_id, templates).map(|_| ()),
            Change::Remove { subject_id } => {
                validate_subject_id(subject_id, &|| "subject_id".into())?;
                match self.find_live(subject_id)? {
                    Some(_) => Ok(()),
                    None => Err(ChangeError::UnknownSubject),
                }
            }
        }
    }

    /// Applies a change (replaying the log, or after it is durable); true
    /// when the subject had a live record before (an enrolment replaced it).
    pub fn apply(&self, change: &Change) -> Result<bool, ChangeError> {
        match change {
            Change::Enroll {
                subject_id,
                templates,
            } => {
                let p = self.prepare(subject_id, templates)?;
                let mut o = self.write();
                let mut replaced = false;
                let subject = match self.index_of(&o, subject_id)? {
                    Some(s) => {
                        replaced = self.is_live(&o, s);
                        s
                    }
                    None => {
                        let s = (self.base().subjects() + o.new_ids.len()) as u32;
                        o.new_ids.push(subject_id.clone());
                        o.new_index.insert(subject_id.clone(), s);
                        s
                    }
                };
                // New rows first, then the mask: a search running across
                // the change sees the subject at least once, never not at all.
                o.delta.set(subject, &p.units);
                self.tombstones().remove(subject);
                Ok(replaced)
            }
            Change::Remove { subject_id } => {
                let mut o = self.write();
                let subject = self
                    .index_of(&o, subject_id)?
                    .filter(|&s| self.is_live(&o, s))
                    .ok_or(ChangeError::UnknownSubject)?;
                self.tombstones().remove(subject);
                o.delta.clear(subject);
                Ok(true)
            }
        }
    }

    /// Checks `change`, appends it to `log` (durable when this returns), and
    /// applies it; returns its log sequence number and whether the subject
    /// had a live record before. Nothing is applied when the check or the
    /// log fails.
    pub fn commit(&self, log: &ChangeLog, change: &Change) -> Result<(u64, bool), CommitError> {
        let stripe = self.stripe_hash.hash_one(change.subject_id()) as usize % STRIPES;
        // Poison only means another change to a subject of this stripe
        // panicked; the guard protects ordering, not data.
        let _ordered = self.stripes[stripe]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.check(change)?;
        let seq = log.append(change)?;
        let replaced = self.apply(change)?;
        Ok((seq, replaced))
    }

    /// Sizes now.
    pub fn counts(&self) -> LiveCounts {
        let o = self.read();
        let masked = self.tombstones().count();
        let delta_subjects = o.delta.subjects() as u64;
        // A re-enrolled base subject is masked in the base and counted in
        // the delta: once in all.
        LiveCounts {
            rows: self.base().rows() as u64 + o.delta.rows() as u64,
            subjects: self.base().subjects() as u64 - masked + delta_subjects,
            masked_base_subjects: masked,
            delta_rows: o.delta.rows() as u64,
            delta_subjects,
        }
    }

    /// 1:N over the gallery as it is now: `engine` (built from
    /// [`LiveGallery::scan_target`]) searches the masked base, the delta is
    /// searched exactly, and the answers are merged per probe.
    pub fn search(
        &self,
        engine: &dyn SearchEngine,
        probes: &ProbeBatch,
        top_k: usize,
    ) -> Result<Vec<Vec<Candidate>>, SearchError> {
        let base = engine.search(probes, top_k)?;
        Ok(self.merge_delta(probes, base, top_k))
    }

    /// Merges the engine's answers over the base with the delta's, per
    /// probe: the best `top_k` distinct subjects of both, best first. Base
    /// candidates masked since the engine ran are dropped.
    fn merge_delta(
        &self,
        probes: &ProbeBatch,
        mut base: Vec<Vec<Candidate>>,
        top_k: usize,
    ) -> Vec<Vec<Candidate>> {
        let o = self.read();
        if o.delta.rows() == 0 {
            // Nothing enrolled online: the base answer stands, less any
            // subject masked while the engine ran (no copy, no re-sort).
            if !self.tombstones().is_empty() {
                for list in &mut base {
                    list.retain(|c| !self.tombstones().is_removed(c.subject));
                }
            }
            return base;
        }
        let first_row = self.base().rows() as u32;
        let delta = o
            .delta
            .search(self.refiner.kernels(), probes, top_k, first_row);
        base.into_iter()
            .zip(delta)
            .map(|(mut all, delta)| {
                all.retain(|c| !self.tombstones().is_removed(c.subject));
                for c in delta {
                    match all.iter_mut().find(|e| e.subject == c.subject) {
                        Some(e) if c.ranks_before(e) => *e = c,
                        Some(_) => {}
                        None => all.push(c),
                    }
                }
                sort_ranked(&mut all);
                all.truncate(top_k);
                all
            })
            .collect()
    }

    /// 1:1: the probe's best exact score over the live templates of `id`,
    /// and how many templates it has; `None` when the subject is not live.
    pub fn verify(
        &self,
        probes: &ProbeBatch,
        b: usize,
        id: &str,
    ) -> Result<Option<(Candidate, usize)>, SearchError> {
        let o = self.read();
        let Some(subject) = self.index_of(&o, id)? else {
            return Ok(None);
        };
        if let Some(rows) = o.delta.rows_of(subject) {
            let first_row = self.base().rows() as u32;
            let best =
                o.delta
                    .score_subject(self.refiner.kernels(), probes.unit(b), subject, first_row);
            return Ok(best.map(|c| (c, rows.len())));
        }
        if !self.is_live(&o, subject) {
            return Ok(None);
        }
        drop(o);
        let templates = self.base().subject_rows(subject)?.len();
        Ok(Some((
            self.refiner.score_subject(probes, b, subject)?,
            templates,
        )))
    }

    /// 1:few: probe `b` scored exactly against every live template of each
    /// listed subject (a manifest's travellers), the best `top_k` distinct
    /// subjects first. Ids are resolved now, through [`LiveGallery::verify`]
    /// (base rows through the `Refiner`, online enrolments through the
    /// delta), so a removal or re-enrolment is reflected at once; an id
    /// listed twice is scored once.
    pub fn search_subjects(
        &self,
        probes: &ProbeBatch,
        b: usize,
        subject_ids: &[String],
        top_k: usize,
    ) -> Result<ScopedAnswer, SearchError> {
        if top_k == 0 {
            return Err(InputError::BadParameter("top_k must be at least 1".into()).into());
        }
        self.refiner.check_probes(probes)?;
        if b >= probes.len() {
            let n = probes.len();
            return Err(InputError::BadParameter(format!("probe {b} of a batch of {n}")).into());
        }
        let mut seen = HashSet::with_capacity(subject_ids.len());
        let mut scored = Vec::with_capacity(subject_ids.len());
        let mut not_found = 0;
        for id in subject_ids {
            if !seen.insert(id.as_str()) {
                continue;
            }
            match self.verify(probes, b, id)? {
                Some((best, _templates)) => scored.push(best),
                None => not_found += 1,
            }
        }
        let searched = scored.len();
        // As in SubjectTopK: a NaN (only from a damaged file) never ranks.
        scored.retain(|c| !c.score.is_nan());
        sort_ranked(&mut scored);
        scored.truncate(top_k);
        Ok(ScopedAnswer {
            candidates: scored,
            searched,
            not_found,
        })
    }

    /// The ids of `subject_ids` not live now, in the order given: what a
    /// staging response reports back (staging them is not an error).
    pub fn missing_subjects<'a>(
        &self,
        subject_ids: &'a [String],
    ) -> Result<Vec<&'a str>, GalleryError> {
        let mut missing = Vec::new();
        for id in subject_ids {
            if self.find_live(id)?.is_none() {
                missing.push(id.as_str());
            }
        }
        Ok(missing)
    }
}
