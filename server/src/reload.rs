//! The generation served and how it is swapped: online changes commit to
//! the current generation under a shared gate; a reload (the Reload RPC or
//! SIGHUP) opens the gallery file again and, when a compaction has put a new
//! generation there, carries the change log over and swaps generations
//! between requests, holding the gate exclusively so that no change lands in
//! a log being retired. Requests in flight finish on the old generation.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use facegate_core::format::Header;
use facegate_core::live::{ChangeError, CommitError, LiveGallery};
use facegate_core::wal::Change;
use facegate_core::{Gallery, GalleryError};

use crate::changes::{Committed, GalleryChanges};
use crate::config::Settings;
use crate::engines::{FailoverEngine, open_gpu};
use crate::generation::{CurrentGeneration, Generation};
use crate::metrics::Metrics;
use crate::thresholds::DefaultThresholds;

/// Why a reload kept the generation served.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The gallery file could not be opened (missing, damaged).
    #[error("cannot open the gallery to reload: {0}")]
    Open(GalleryError),
    /// The new file holds templates of another model or dimension.
    #[error(
        "the new gallery holds {new_dim}-d templates of {new_model:?}, the served one {old_dim}-d of {old_model:?}: refusing to swap"
    )]
    Incompatible {
        /// The new file's dimension.
        new_dim: u32,
        /// The new file's model tag.
        new_model: String,
        /// The served gallery's dimension.
        old_dim: u32,
        /// The served gallery's model tag.
        old_model: String,
    },
    /// The new file folds in changes this generation's log never had.
    #[error(
        "the new gallery folds in change {through} of this generation's log, which has only {logged}"
    )]
    AheadOfLog {
        /// The last change the compaction folded in.
        through: u64,
        /// Changes this generation logged.
        logged: u64,
    },
    /// The new file was not compacted from the served generation, so the
    /// changes logged against it would be lost.
    #[error(
        "the new gallery was not compacted from generation {served:016x}: its {logged} logged changes would be lost; run facegate-index compact first"
    )]
    NotCompactedFromServed {
        /// The served generation.
        served: u64,
        /// Changes it logged.
        logged: u64,
    },
    /// The new file holds subjects of other shards than this server's
    /// (`--shard`): it is another shard's gallery, or a wrong split.
    #[error(
        "the new gallery holds {strangers} subjects of shards other than {this}: refusing to swap"
    )]
    NotThisShard {
        /// Its subjects that belong elsewhere.
        strangers: u64,
        /// This server's shard.
        this: facegate_core::shard::ShardSpec,
    },
    /// The GPU engine could not be opened over the new gallery.
    #[error("cannot open the GPU engine for the new gallery: {0}")]
    Gpu(String),
    /// Carrying the log over or swapping failed; the old generation stays.
    #[error("reload failed, the old generation stays: {0}")]
    Swap(String),
    /// A blocking task of the reload died.
    #[error("reload task failed: {0}")]
    Task(String),
}

/// What a reload did.
#[derive(Debug, Clone, Copy)]
pub struct Reloaded {
    /// Generation served before.
    pub previous: u64,
    /// Generation served now (equal to `previous` when the file had not changed).
    pub generation: u64,
    /// Changes carried over from the previous generation's log.
    pub carried_over: u64,
}

/// The generation served, the gate between changes and swaps, and the reload.
pub struct Generations {
    current: CurrentGeneration,
    /// The gallery file a reload opens again (a compaction renames the new
    /// generation over it).
    gallery_path: PathBuf,
    settings: Settings,
    metrics: Arc<Metrics>,
    /// The default thresholds in force, read again at each reload (the
    /// sidecar may have been recalibrated, or the generation changed).
    thresholds: RwLock<Arc<DefaultThresholds>>,
    /// Held shared by every change while it commits, and exclusively while a
    /// reload carries the log over and swaps generations.
    gate: RwLock<()>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl Generations {
    /// Serves `first`, read from `gallery_path`, with `thresholds`;
    /// publishes its figures.
    pub fn new(
        first: Generation,
        gallery_path: PathBuf,
        settings: Settings,
        metrics: Arc<Metrics>,
        thresholds: DefaultThresholds,
    ) -> Self {
        first.publish(&metrics);
        Generations {
            current: CurrentGeneration::new(first),
            gallery_path,
            settings,
            metrics,
            thresholds: RwLock::new(Arc::new(thresholds)),
            gate: RwLock::new(()),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The data directory (the change logs are under it).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.settings.data_dir
    }

    /// The gallery file served (a compaction writes its successor there).
    pub fn gallery_path(&self) -> &std::path::Path {
        &self.gallery_path
    }

    /// The slot the dispatcher loads each batch's generation from.
    pub fn current(&self) -> &CurrentGeneration {
        &self.current
    }

    /// The default thresholds in force.
    pub fn thresholds(&self) -> Arc<DefaultThresholds> {
        // The slot only ever holds a whole Arc: poison cannot tear it.
        self.thresholds
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the sidecar again for the generation of `header` and serves
    /// what it says (or keeps the thresholds in force; see
    /// `DefaultThresholds::reread`).
    fn reread_thresholds(&self, header: &Header) {
        let next = self.thresholds().reread(&self.gallery_path, header);
        *self.thresholds.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    }

    /// The shard of a split gallery this server serves (`--shard`).
    pub fn shard(&self) -> Option<facegate_core::shard::ShardSpec> {
        self.settings.shard
    }

    /// Commits one online change to the generation served now (blocking on
    /// its fsync); returns what it did and that generation's id.
    pub fn commit(&self, change: &Change) -> Result<(Committed, u64), CommitError> {
        if let (Some(this), Change::Enroll { subject_id, .. }) = (self.settings.shard, change)
            && !this.owns(subject_id)
        {
            let owner = facegate_core::shard::shard_of(subject_id, this.count);
            let (index, count) = (this.index, this.count);
            return Err(ChangeError::ForeignSubject {
                owner,
                index,
                count,
            }
            .into());
        }
        // Poison only means a change panicked; the gate guards no data.
        let _shared = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let g = self.current.load();
        let done = g.changes.commit(change)?;
        Ok((done, g.id()))
    }

    /// Opens the gallery file again and, when it holds a new generation
    /// compacted from the served one, serves it; none of the requests in
    /// flight fails.
    pub async fn reload(self: &Arc<Self>) -> Result<Reloaded, ReloadError> {
        let _one = self.reloading.lock().await;
        let old = self.current.load();
        let old_h = old.live().base().header().clone();
        let gallery = self.open_file().await?;
        let new_h = gallery.header();
        if new_h.generation == old_h.generation {
            self.reread_thresholds(new_h);
            return Ok(Reloaded {
                previous: old_h.generation,
                generation: old_h.generation,
                carried_over: 0,
            });
        }
        check_successor(&old_h, new_h, old.changes.logged_changes())?;
        self.check_shard(&gallery).await?;
        let live = Arc::new(LiveGallery::new(gallery.clone()));
        let gpu = open_gpu(&live, &self.settings)
            .await
            .map_err(|e| ReloadError::Gpu(format!("{e:#}")))?;
        let engines = Arc::new(FailoverEngine::new(live.clone(), gpu, self.metrics.clone()));
        let carried_over = self.swap(live, engines, old_h.clone()).await?;
        self.reread_thresholds(new_h);
        self.metrics.gallery_reloads.inc();
        let done = Reloaded {
            previous: old_h.generation,
            generation: new_h.generation,
            carried_over,
        };
        tracing::info!(
            previous = format!("{:016x}", done.previous),
            generation = format!("{:016x}", done.generation),
            carried_over = done.carried_over,
            "gallery generation swapped"
        );
        Ok(done)
    }

    /// Refuses a gallery with subjects of other shards than this server's
    /// (a full pass over its subject ids, off the async workers).
    async fn check_shard(&self, gallery: &Arc<Gallery>) -> Result<(), ReloadError> {
        let Some(this) = self.settings.shard else {
            return Ok(());
        };
        let g = gallery.clone();
        let strangers = tokio::task::spawn_blocking(move || this.strangers(&g))
            .await
            .map_err(task_died)?
            .map_err(ReloadError::Open)?;
        match strangers {
            0 => Ok(()),
            strangers => Err(ReloadError::NotThisShard { strangers, this }),
        }
    }

    /// The gallery file as it is now, opened off the async workers.
    async fn open_file(&self) -> Result<Arc<Gallery>, ReloadError> {
        let path = self.gallery_path.clone();
        let opened = tokio::task::spawn_blocking(move || Gallery::open(&path))
            .await
            .map_err(task_died)?;
        opened.map(Arc::new).map_err(ReloadError::Open)
    }

    /// With the gate held exclusively, checks again that the new gallery
    /// may replace the served one (`old_h`), carries the old log over into
    /// the new generation's and serves it; returns the changes carried
    /// over. The first check ran before the engines were opened, while
    /// changes could still commit: only under the gate is the served log's
    /// count final, and a change acknowledged in between is never dropped.
    async fn swap(
        self: &Arc<Self>,
        live: Arc<LiveGallery>,
        engines: Arc<FailoverEngine>,
        old_h: Header,
    ) -> Result<u64, ReloadError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let _exclusive = this.gate.write().unwrap_or_else(|p| p.into_inner());
            let served = this.current.load();
            let logged = served.changes.logged_changes();
            check_successor(&old_h, live.base().header(), logged)?;
            let data_dir = &this.settings.data_dir;
            let changes = GalleryChanges::open(live, data_dir, this.metrics.clone())
                .map(Arc::new)
                .map_err(|e| {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "reload failed; the old generation stays"
                    );
                    ReloadError::Swap(format!("{e:#}"))
                })?;
            let carried_over = changes.logged_changes();
            let next = Generation { engines, changes };
            next.publish(&this.metrics);
            this.current.swap(next);
            Ok(carried_over)
        })
        .await
        .map_err(task_died)?
    }
}

/// A reload's blocking task that died (a panic), logged here: its status
/// carries no detail ([`crate::status::task_failed`]).
fn task_died(e: tokio::task::JoinError) -> ReloadError {
    tracing::error!(error = %e, "a reload task failed; the old generation stays");
    ReloadError::Task(e.to_string())
}

/// Whether the gallery `new` may replace `old`, whose log holds `logged`
/// changes: same model and dimension, and compacted from `old` through no
/// more than its log holds (or `old` logged nothing to lose).
fn check_successor(old: &Header, new: &Header, logged: u64) -> Result<(), ReloadError> {
    if new.dim != old.dim || new.model_tag != old.model_tag {
        return Err(ReloadError::Incompatible {
            new_dim: new.dim,
            new_model: new.model_tag.clone(),
            old_dim: old.dim,
            old_model: old.model_tag.clone(),
        });
    }
    let from_old = new
        .lineage
        .filter(|l| l.parent_generation == old.generation);
    match from_old {
        Some(l) if l.through_sequence > logged => Err(ReloadError::AheadOfLog {
            through: l.through_sequence,
            logged,
        }),
        None if logged > 0 => Err(ReloadError::NotCompactedFromServed {
            served: old.generation,
            logged,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thresholds::DefaultThresholds;
    use facegate_core::format::{BuildOptions, SliceRows, build_gallery};

    /// A 4-d gallery of 10 subjects at `path`, a generation of its own.
    fn gallery(path: &std::path::Path, seed: usize) -> Arc<LiveGallery> {
        let data: Vec<f32> = (0..40).map(|i| ((i + seed) % 7) as f32 - 3.0).collect();
        let ids: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let opts = BuildOptions {
            scan_type: facegate_core::ElementType::Int8,
            model_tag: "m".into(),
            overwrite: true,
        };
        let mut rows = SliceRows::new(&data, 4, "t").unwrap();
        build_gallery(path, &mut rows, &ids, "ids", &opts, &mut |_| {}).unwrap();
        Arc::new(LiveGallery::new(Arc::new(Gallery::open(path).unwrap())))
    }

    #[tokio::test]
    async fn a_change_committed_after_the_first_check_makes_the_swap_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::defaults().resolve().unwrap();
        settings.data_dir = dir.path().join("data");
        let metrics = Metrics::new();
        let path = dir.path().join("g.fgal");
        let live = gallery(&path, 0);
        let header = live.base().header().clone();
        let changes = Arc::new(
            GalleryChanges::open(live.clone(), &settings.data_dir, metrics.clone()).unwrap(),
        );
        let engines = Arc::new(FailoverEngine::new(live, None, metrics.clone()));
        let thresholds = DefaultThresholds::at_start(None, &path, &header).unwrap();
        let first = Generation { engines, changes };
        let gens = Arc::new(Generations::new(
            first,
            path,
            settings,
            metrics.clone(),
            thresholds,
        ));
        // A gallery built afresh (no lineage): the first check passes while
        // the served generation has logged nothing...
        let other = gallery(&dir.path().join("other.fgal"), 3);
        assert!(check_successor(&header, other.base().header(), 0).is_ok());
        // ...then a change is acknowledged before the swap.
        let change = Change::Enroll {
            subject_id: "late".into(),
            templates: vec![1.0, 0.0, 0.0, 0.0],
        };
        gens.commit(&change).unwrap();
        let other_engines = Arc::new(FailoverEngine::new(other.clone(), None, metrics));
        let refused = gens.swap(other, other_engines, header.clone()).await;
        assert!(
            matches!(
                refused,
                Err(ReloadError::NotCompactedFromServed { logged: 1, .. })
            ),
            "{refused:?}"
        );
        assert_eq!(gens.current().load().id(), header.generation);
        assert_eq!(gens.current().load().changes.logged_changes(), 1);
    }
}
