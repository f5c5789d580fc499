//! What both gRPC services call: the generation served (and its reload),
//! the dispatcher that batches 1:N searches, and the answers in domain
//! terms. Requests arrive checked (`crate::request`); answers leave as plain
//! Rust values that the wire layer (`crate::matcher`, `crate::admin`) turns
//! into proto messages; errors are mapped to gRPC statuses only there
//! (`crate::status`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate_core::live::CommitError;
use facegate_core::manifest::ScopeError;
use facegate_core::wal::Change;
use facegate_core::{Gallery, GalleryError, SearchError};

use crate::changes::{Committed, GalleryChanges};
use crate::config::Settings;
use crate::dispatch::{DispatchError, DispatchSettings, Dispatcher, Job, SearchAnswer};
use crate::engines::{FailoverEngine, OpenedGpu};
use crate::generation::{GalleryFacts, Generation};
use crate::metrics::Metrics;
use crate::reload::{Generations, ReloadError, Reloaded};
use crate::request::{CheckedIdentify, CheckedVerify, Limits, ManifestScope};
use crate::scoped::{self, ScopedError, ServedManifests};
use crate::served_encounters::ServedEncounters;
use crate::thresholds::DefaultThresholds;

/// The gallery served and the machinery that searches and changes it.
pub struct ServedGallery {
    /// The generation served, the change gate and the reload.
    generations: Arc<Generations>,
    /// Batches every 1:N search.
    dispatcher: Dispatcher,
    /// What requests are checked against besides the gallery.
    limits: Limits,
    /// The staged manifests, searched by scoped Identify requests.
    manifests: Arc<ServedManifests>,
    /// The recorded encounters.
    encounters: Arc<ServedEncounters>,
    metrics: Arc<Metrics>,
}

/// Which search answered an Identify, and the manifest it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnsweredBy {
    /// The whole gallery (1:N).
    National,
    /// The manifest's travellers alone.
    Manifest(String),
    /// The manifest gave no match; the whole gallery answered (fallback).
    ManifestThenNational(String),
}

impl AnsweredBy {
    /// The manifest the request named, if any.
    pub fn manifest_id(&self) -> Option<&str> {
        match self {
            AnsweredBy::National => None,
            AnsweredBy::Manifest(id) | AnsweredBy::ManifestThenNational(id) => Some(id),
        }
    }
}

/// A finished Identify, its candidates' ids resolved.
#[derive(Debug)]
pub struct Identified {
    /// Subject ids and scores, best first.
    pub candidates: Vec<(String, f32)>,
    /// Whether the best candidate reaches the threshold.
    pub matched: bool,
    /// The threshold applied.
    pub threshold: f32,
    /// Time queued before the batch started.
    pub queue_time: Duration,
    /// Time the engine took for the batch.
    pub engine_time: Duration,
    /// The gallery generation that answered.
    pub generation: u64,
    /// Which search answered.
    pub answered_by: AnsweredBy,
    /// Travellers of the manifest searched (0 for a national search): a
    /// router over shards sums them to pick the whole manifest's threshold.
    pub manifest_travellers: u32,
}

/// A finished Verify.
#[derive(Debug)]
pub struct Verified {
    /// Whether the best score reaches the threshold.
    pub matched: bool,
    /// The best exact score over the subject's templates.
    pub score: f32,
    /// The threshold applied.
    pub threshold: f32,
    /// Templates the probe was compared with.
    pub templates: usize,
    /// Time spent scoring.
    pub engine_time: Duration,
    /// The gallery generation that answered.
    pub generation: u64,
}

/// Why a Verify got no score.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The claimed subject is not in the gallery (never enrolled, or removed).
    #[error("no such subject in the gallery")]
    UnknownSubject,
    /// The scoring failed.
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// Why an Identify got no answer.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    /// The dispatcher refused, dropped or failed the search.
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    /// A candidate's id could not be read from the gallery.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// The manifest named could not be searched.
    #[error(transparent)]
    Scoped(#[from] ScopedError),
}

impl ServedGallery {
    /// Serves the live gallery of `changes` (loaded from `gallery_path`)
    /// with the CPU engine, and the GPU engine when given (built from the
    /// live gallery's scan target), and `manifests` for scoped searches;
    /// finds the default thresholds (a configured one, else the gallery's
    /// calibration sidecar, which must be sound); starts the dispatcher
    /// thread.
    pub fn new(
        changes: Arc<GalleryChanges>,
        gpu: Option<OpenedGpu>,
        settings: Settings,
        metrics: Arc<Metrics>,
        gallery_path: PathBuf,
        manifests: Arc<ServedManifests>,
        encounters: Arc<ServedEncounters>,
    ) -> anyhow::Result<ServedGallery> {
        let thresholds = DefaultThresholds::at_start(
            settings.default_threshold,
            &gallery_path,
            changes.live().base().header(),
        )?;
        let engines = Arc::new(FailoverEngine::new(
            changes.live().clone(),
            gpu,
            metrics.clone(),
        ));
        let first = Generation { engines, changes };
        let limits = Limits {
            default_threshold: thresholds.national,
            max_top_k: settings.max_top_k,
        };
        let dispatch = dispatch_settings(&settings);
        let generations = Arc::new(Generations::new(
            first,
            gallery_path,
            settings,
            metrics.clone(),
            thresholds,
        ));
        let source = generations.current().clone();
        let dispatcher = Dispatcher::start(
            Arc::new(move || source.load().engines.clone()),
            dispatch,
            metrics.clone(),
        )?;
        metrics.manifests_live.set(manifests.len() as i64);
        Ok(ServedGallery {
            generations,
            dispatcher,
            limits,
            manifests,
            encounters,
            metrics,
        })
    }

    /// The staged manifests.
    pub fn manifests(&self) -> &Arc<ServedManifests> {
        &self.manifests
    }

    /// The recorded encounters.
    pub fn encounters(&self) -> &Arc<ServedEncounters> {
        &self.encounters
    }

    /// The metrics this state records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The generation served now; a request uses one throughout.
    pub fn generation(&self) -> Arc<Generation> {
        self.generations.current().load()
    }

    /// The base gallery served now.
    pub fn gallery(&self) -> Arc<Gallery> {
        self.generation().live().base().clone()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.generations.data_dir()
    }

    /// The gallery file served, which a compaction replaces.
    pub fn gallery_path(&self) -> &std::path::Path {
        self.generations.gallery_path()
    }

    /// What requests are checked against besides the gallery, with the
    /// national default threshold in force now.
    pub fn limits(&self) -> Limits {
        Limits {
            default_threshold: self.generations.thresholds().national,
            ..self.limits
        }
    }

    /// The default thresholds in force (national and per manifest size).
    pub fn thresholds(&self) -> std::sync::Arc<DefaultThresholds> {
        self.generations.thresholds()
    }

    /// Commits one online change to the generation served now (blocking on
    /// its fsync); returns what it did and that generation's id.
    pub fn commit(&self, change: &Change) -> Result<(Committed, u64), CommitError> {
        self.generations.commit(change)
    }

    /// Serves the gallery file's new generation, if a compaction put one
    /// there (see `crate::reload`).
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.generations.reload().await
    }

    /// Searches a checked Identify from `port` in the next batch, giving up
    /// at `deadline`, and resolves its candidates' ids in the generation
    /// that searched (a reload may have swapped it since).
    pub async fn identify(
        &self,
        job: &CheckedIdentify,
        port: &str,
        deadline: Option<Instant>,
    ) -> Result<Identified, IdentifyError> {
        let job_for_batch = Job {
            probe: Arc::clone(&job.probe),
            top_k: job.top_k,
            deadline,
        };
        let answer: SearchAnswer = self.dispatcher.search(port, job_for_batch).await?;
        let mut candidates = Vec::with_capacity(answer.candidates.len());
        for c in &answer.candidates {
            candidates.push((answer.gallery.subject_id(c.subject)?, c.score));
        }
        Ok(Identified {
            matched: answer
                .candidates
                .first()
                .is_some_and(|c| c.score >= job.threshold),
            candidates,
            threshold: job.threshold,
            queue_time: answer.queue_time,
            engine_time: answer.engine_time,
            generation: answer.gallery.base().header().generation,
            answered_by: AnsweredBy::National,
            manifest_travellers: 0,
        })
    }

    /// Searches a checked Identify in the manifest `scope` names, on the
    /// blocking pool (never queued behind a national batch), for a caller
    /// whose key names `principal` (`None`: keys are off); with
    /// `scope.fallback` and no match, the national 1:N search answers.
    /// Counts the outcome (`facegate_scoped_searches_total`).
    pub async fn identify_in_manifest(
        &self,
        job: &CheckedIdentify,
        scope: &ManifestScope,
        principal: Option<&str>,
        port: &str,
        deadline: Option<Instant>,
    ) -> Result<Identified, IdentifyError> {
        let result = self
            .scoped_then_national(job, scope, principal, port, deadline)
            .await;
        self.metrics
            .scoped_searches
            .with_label_values(&[scoped_outcome(&result)])
            .inc();
        result
    }

    async fn scoped_then_national(
        &self,
        job: &CheckedIdentify,
        scope: &ManifestScope,
        principal: Option<&str>,
        port: &str,
        deadline: Option<Instant>,
    ) -> Result<Identified, IdentifyError> {
        let now = self.manifests.clock().now();
        let manifest = self
            .manifests
            .scope(&scope.id, now)
            .map_err(ScopedError::from)?;
        if !crate::auth::may_search_manifest(principal, &manifest.header.port) {
            let id = scope.id.clone();
            return Err(ScopedError::OtherPort { id }.into());
        }
        let (g, probe, top_k) = (self.generation(), job.probe.clone(), job.top_k);
        let people = manifest.subject_ids.len();
        let found = tokio::task::spawn_blocking(move || {
            scoped::search_manifest(&g, &manifest, &probe, top_k)
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "manifest search task failed");
            Err(ScopedError::Task)
        })
        .inspect_err(|e| tracing::error!(error = %e, "manifest search failed"))?;
        let threshold = match job.threshold_asked {
            true => job.threshold,
            false => self.thresholds().for_manifest(people),
        };
        let matched = found.candidates.first().is_some_and(|c| c.1 >= threshold);
        if !matched && scope.fallback {
            let mut national = self.identify(job, port, deadline).await?;
            national.engine_time += found.engine_time;
            national.answered_by = AnsweredBy::ManifestThenNational(scope.id.clone());
            national.manifest_travellers = people as u32;
            return Ok(national);
        }
        Ok(Identified {
            candidates: found.candidates,
            matched,
            threshold,
            queue_time: Duration::ZERO,
            engine_time: found.engine_time,
            generation: found.generation,
            answered_by: AnsweredBy::Manifest(scope.id.clone()),
            manifest_travellers: people as u32,
        })
    }

    /// 1:1 verification: the probe against the claimed subject's live
    /// templates, exactly, inline (a few rows: never queued behind a scan).
    pub fn verify(&self, job: &CheckedVerify) -> Result<Verified, VerifyError> {
        let g = self.generation();
        let started = Instant::now();
        let found = g.live().verify(&job.probe, 0, &job.subject_id);
        if let Err(e) = &found {
            tracing::error!(error = %e, "verify failed");
        }
        let (best, templates) = found?.ok_or(VerifyError::UnknownSubject)?;
        Ok(Verified {
            matched: best.score >= job.threshold,
            score: best.score,
            threshold: job.threshold,
            templates,
            engine_time: started.elapsed(),
            generation: g.id(),
        })
    }

    /// What GetGalleryInfo reports.
    pub fn info(&self) -> GalleryFacts {
        self.generation().facts(
            &self.limits(),
            &self.generations.thresholds(),
            self.generations.shard(),
        )
    }
}

/// The `outcome` label of a scoped search.
fn scoped_outcome(result: &Result<Identified, IdentifyError>) -> &'static str {
    match result {
        Ok(found) => match (&found.answered_by, found.matched) {
            (AnsweredBy::ManifestThenNational(_), true) => "fallback_match",
            (AnsweredBy::ManifestThenNational(_), false) => "fallback_no_match",
            (_, true) => "match",
            (_, false) => "no_match",
        },
        Err(IdentifyError::Scoped(e)) => match e {
            ScopedError::Scope(ScopeError::Unknown { .. }) => "unknown",
            ScopedError::Scope(ScopeError::Expired { .. }) => "expired",
            ScopedError::Scope(ScopeError::NotYetValid { .. }) => "not_yet_valid",
            ScopedError::Scope(ScopeError::BadId(_)) => "invalid",
            ScopedError::OtherPort { .. } => "denied",
            _ => "error",
        },
        Err(_) => "error",
    }
}

/// The dispatcher's settings, from the server's.
fn dispatch_settings(settings: &Settings) -> DispatchSettings {
    DispatchSettings {
        max_batch: settings.batch_max_size,
        max_wait: Duration::from_micros(settings.batch_max_wait_us),
        batch_time_target: (settings.batch_time_target_ms > 0)
            .then(|| Duration::from_millis(settings.batch_time_target_ms)),
        capacity: settings.queue_capacity,
        max_queue_wait: Duration::from_millis(settings.max_queue_wait_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::engines::GPU_STRIKES;
    use crate::proto;
    use facegate_core::ProbeBatch;
    use facegate_core::format::{BuildOptions, SliceRows, build_gallery};
    use facegate_core::live::LiveGallery;
    use facegate_core::{Candidate, SearchEngine};

    /// An engine that always fails, like a GPU in trouble.
    struct Broken;

    impl SearchEngine for Broken {
        fn describe(&self) -> String {
            "gpu/broken".into()
        }
        fn search(&self, _: &ProbeBatch, _: usize) -> Result<Vec<Vec<Candidate>>, SearchError> {
            Err(SearchError::Unavailable("simulated GPU fault".into()))
        }
    }

    #[tokio::test]
    async fn repeated_gpu_failures_answer_unavailable_then_the_cpu_takes_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.fgal");
        let data: Vec<f32> = (0..40).map(|i| (i % 7) as f32 - 3.0).collect();
        let ids: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
        let opts = BuildOptions {
            scan_type: facegate_core::ElementType::Int8,
            model_tag: "m".into(),
            overwrite: false,
        };
        build_gallery(
            &path,
            &mut SliceRows::new(&data, 4, "t").unwrap(),
            &ids,
            "ids",
            &opts,
            &mut |_| {},
        )
        .unwrap();
        let live = Arc::new(LiveGallery::new(Arc::new(Gallery::open(&path).unwrap())));
        let metrics = Metrics::new();
        let changes = Arc::new(
            GalleryChanges::open(live, &dir.path().join("data"), metrics.clone()).unwrap(),
        );
        let gpu = OpenedGpu {
            engine: Arc::new(Broken),
            memory_bytes: 123,
        };
        let state = ServedGallery::new(
            changes,
            Some(gpu),
            Settings::defaults().resolve().unwrap(),
            metrics.clone(),
            path.clone(),
            Arc::new(
                ServedManifests::open(
                    &dir.path().join("data"),
                    Arc::new(facegate_core::clock::SystemClock),
                )
                .unwrap(),
            ),
            Arc::new(
                ServedEncounters::open(
                    &dir.path().join("data"),
                    Arc::new(facegate_core::clock::SystemClock),
                )
                .unwrap(),
            ),
        )
        .unwrap();
        assert_eq!(metrics.gpu_memory_bytes.get(), 123);
        assert_eq!(state.info().engine, "gpu/broken");
        assert_eq!(state.info().gpu_memory_bytes, 123);
        let req = proto::IdentifyRequest {
            probe: vec![1.0, 0.0, 0.0, 0.0],
            top_k: 3,
            model_tag: "m".into(),
            ..Default::default()
        };
        let job =
            crate::request::identify(&req, state.gallery().header(), &state.limits()).unwrap();
        for _ in 0..GPU_STRIKES {
            let err = tonic::Status::from(state.identify(&job, "p", None).await.err().unwrap());
            assert_eq!(err.code(), tonic::Code::Unavailable);
        }
        assert!(
            state.info().engine.starts_with("cpu/"),
            "{}",
            state.info().engine
        );
        assert_eq!(state.info().gpu_memory_bytes, 0);
        assert_eq!(
            state
                .identify(&job, "p", None)
                .await
                .unwrap()
                .candidates
                .len(),
            3
        );
    }
}
