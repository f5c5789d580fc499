//! Online gallery changes: the change log under `--data-dir`, replayed at
//! start-up and appended by the GalleryAdmin service.
//!
//! The log is `DATA_DIR/changes/<generation>.wal`, one per base gallery
//! generation, so a server started on another gallery never replays changes
//! meant for a different base. It is created by the first change, so a
//! server that is only searched writes nothing.
//!
//! A gallery made by `facegate-index compact` records its parent generation
//! and the last change of the parent's log it holds. When such a gallery has
//! no log of its own yet (at a reload, or at a start after a crash between
//! the compaction and the reload), the changes logged after that point are
//! carried over from the parent's log into a new log, fsync'd, and only then
//! is the parent's log deleted: an acknowledged change is always in exactly
//! the log of the gallery that will be served.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use facegate_core::format::Lineage;
use facegate_core::live::{CommitError, LiveGallery};
use facegate_core::wal::{Change, ChangeLog, CommitMode};

use crate::metrics::Metrics;

/// What a committed change did.
pub struct Committed {
    /// Its sequence number in the log.
    pub sequence: u64,
    /// Whether the subject had a live record before.
    pub replaced: bool,
}

/// The change log and the live gallery it keeps up to date.
pub struct GalleryChanges {
    live: Arc<LiveGallery>,
    path: PathBuf,
    /// Opened (created) on the first change when no log existed.
    log: Mutex<Option<Arc<ChangeLog>>>,
    metrics: Arc<Metrics>,
}

/// The log of a base gallery generation under `data_dir`.
pub fn log_path(data_dir: &Path, generation: u64) -> PathBuf {
    data_dir
        .join("changes")
        .join(format!("{generation:016x}.wal"))
}

impl GalleryChanges {
    /// Replays the log of `live`'s base generation, if there is one, into
    /// `live`. A torn or damaged tail is cut (and logged); a change that no
    /// longer applies is skipped with a warning.
    pub fn open(
        live: Arc<LiveGallery>,
        data_dir: &Path,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<GalleryChanges> {
        let generation = live.base().header().generation;
        let path = log_path(data_dir, generation);
        let changes = GalleryChanges {
            live,
            path,
            log: Mutex::new(None),
            metrics,
        };
        if changes.path.exists() {
            let log = changes.open_log()?;
            *changes.lock() = Some(log);
            // This log exists only once a carry-over finished: a parent log
            // still there was left by a crash before its deletion.
            if let Some(lineage) = changes.live.base().header().lineage {
                remove_log(&log_path(data_dir, lineage.parent_generation))?;
            }
        } else if let Some(lineage) = changes.live.base().header().lineage {
            changes.carry_over(data_dir, lineage)?;
        }
        changes.publish();
        Ok(changes)
    }

    /// Moves the changes the parent's log holds after `lineage`'s point into
    /// this generation's log, then deletes the parent's log.
    ///
    /// The new log is written under a temporary name, fsync'd and renamed
    /// into place, so it exists only complete: a crash mid-way leaves the
    /// parent's log, and the next start carries over again.
    fn carry_over(&self, data_dir: &Path, lineage: Lineage) -> anyhow::Result<()> {
        let parent = log_path(data_dir, lineage.parent_generation);
        let replay = ChangeLog::read(&parent, self.live.dim(), lineage.parent_generation)
            .with_context(|| format!("reading the parent change log {}", parent.display()))?;
        let tail: Vec<&Change> = replay
            .changes
            .iter()
            .filter(|(seq, _)| *seq > lineage.through_sequence)
            .map(|(_, c)| c)
            .collect();
        if !tail.is_empty() {
            let dir = self.path.parent().unwrap_or(Path::new("."));
            facegate_core::durable_dir::create_dir_all(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            let partial = self.path.with_extension("wal.partial");
            let _ = std::fs::remove_file(&partial);
            let base = self.live.base();
            {
                let (log, _) = ChangeLog::open(
                    &partial,
                    base.dim(),
                    base.header().generation,
                    CommitMode::Group,
                )?;
                for change in &tail {
                    log.append(change)
                        .context("carrying a change over from the parent log")?;
                }
            }
            std::fs::rename(&partial, &self.path)
                .with_context(|| format!("renaming {}", partial.display()))?;
            // Replays (applies) what was just written.
            let adopted = sync_dir(&self.path).and_then(|()| self.open_log());
            match adopted {
                Ok(log) => *self.lock() = Some(log),
                Err(e) => return Err(self.undo_carry_over(&parent, e)),
            }
        }
        if let Err(e) = remove_log(&parent) {
            return Err(self.undo_carry_over(&parent, e));
        }
        tracing::info!(
            parent = format!("{:016x}", lineage.parent_generation),
            folded_in_through = lineage.through_sequence,
            carried_over = tail.len(),
            "adopted a compacted gallery"
        );
        Ok(())
    }

    /// After a carry-over failed past the rename (the reload or start fails
    /// with `e`, returned): while the parent's log is still there, the
    /// served generation goes on logging to it, so the new log must go, or
    /// the next reload or start would find it, take it as complete and
    /// delete the parent's log with every change made since. Best effort:
    /// a failure to remove it is logged beside `e`.
    fn undo_carry_over(&self, parent: &Path, e: anyhow::Error) -> anyhow::Error {
        if parent.exists() {
            *self.lock() = None;
            if let Err(undo) = std::fs::remove_file(&self.path)
                .map_err(anyhow::Error::from)
                .and_then(|()| sync_dir(&self.path))
            {
                tracing::error!(
                    log = %self.path.display(),
                    error = format!("{undo:#}"),
                    "a failed carry-over's log could not be removed: remove it before the next reload"
                );
            }
        }
        e
    }

    /// Changes logged against this generation so far (durable ones).
    pub fn logged_changes(&self) -> u64 {
        self.lock().as_ref().map_or(0, |l| l.last_sequence())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<ChangeLog>>> {
        // The guarded value is only ever replaced whole.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens (creating) the log and applies what it holds.
    fn open_log(&self) -> anyhow::Result<Arc<ChangeLog>> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        facegate_core::durable_dir::create_dir_all(dir)
            .with_context(|| format!("creating the change log directory {}", dir.display()))?;
        let base = self.live.base();
        let (log, replay) = ChangeLog::open(
            &self.path,
            base.dim(),
            base.header().generation,
            CommitMode::Group,
        )
        .with_context(|| format!("opening change log {}", self.path.display()))?;
        if replay.cut_bytes > 0 {
            tracing::warn!(
                log = %self.path.display(),
                cut_bytes = replay.cut_bytes,
                reason = replay.cut_reason.as_deref().unwrap_or(""),
                "change log had a torn or damaged tail (a crash mid-write): cut, never applied"
            );
        }
        let mut skipped = 0usize;
        for (seq, change) in &replay.changes {
            if let Err(e) = self.live.apply(change) {
                skipped += 1;
                tracing::warn!(seq, error = %e, "change in the log no longer applies: skipped");
            }
        }
        tracing::info!(
            log = %self.path.display(),
            changes = replay.changes.len(),
            skipped,
            "change log replayed"
        );
        Ok(Arc::new(log))
    }

    /// The live gallery.
    pub fn live(&self) -> &Arc<LiveGallery> {
        &self.live
    }

    /// Checks, logs durably, and applies one change; blocks on the fsync.
    pub fn commit(&self, change: &Change) -> Result<Committed, CommitError> {
        let log = {
            let mut slot = self.lock();
            match &*slot {
                Some(l) => l.clone(),
                None => {
                    // Refuse bad changes before creating anything.
                    self.live.check(change)?;
                    let l = self.open_log().map_err(|e| {
                        CommitError::Log(facegate_core::wal::WalError::Io {
                            path: self.path.clone(),
                            error: std::io::Error::other(format!("{e:#}")),
                        })
                    })?;
                    *slot = Some(l.clone());
                    l
                }
            }
        };
        let (sequence, replaced) = self.live.commit(&log, change)?;
        self.publish();
        Ok(Committed { sequence, replaced })
    }

    /// Publishes the gallery's size and the log's.
    fn publish(&self) {
        let c = self.live.counts();
        let m = &self.metrics;
        m.gallery_rows.set(c.rows as i64);
        m.gallery_subjects.set(c.subjects as i64);
        m.gallery_delta_rows.set(c.delta_rows as i64);
        m.gallery_masked_subjects.set(c.masked_base_subjects as i64);
        if let Some(log) = &*self.lock() {
            m.change_log_bytes.set(log.durable_len() as i64);
        }
    }
}

/// fsyncs the directory holding `path`, so a rename or removal in it is durable.
fn sync_dir(path: &Path) -> anyhow::Result<()> {
    facegate_core::durable_dir::sync_parent(path)
        .with_context(|| format!("syncing the directory of {}", path.display()))
}

/// Deletes a retired change log (its changes are in the new generation or
/// its log), durably; nothing to do when it is gone already.
fn remove_log(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("removing the retired change log {}", path.display()))
        }
    }
}
