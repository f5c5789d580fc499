//! What the server is serving: the live gallery (the mapped base plus online
//! changes), the engines over it, and the request semantics (validation,
//! thresholds, deadlines) shared by every RPC.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use facegate_core::live::{CommitError, LiveGallery};
use facegate_core::wal::Change;
use facegate_core::{Gallery, InputError, ProbeBatch, SearchError};
use tonic::Status;

use crate::changes::{Committed, GalleryChanges};
use crate::config::Settings;
use crate::dispatch::{DispatchSettings, Dispatcher, Job, Searched};
use crate::engines::{Accelerator, Engines, open_gpu};
use crate::generation::{CurrentGeneration, Generation};
use crate::metrics::Metrics;
use crate::proto;

/// The gallery and engines behind the API.
pub struct ServingState {
    /// The generation served; a reload swaps it.
    current: CurrentGeneration,
    /// Batches every 1:N search.
    dispatcher: Dispatcher,
    settings: Settings,
    metrics: Arc<Metrics>,
    /// The gallery file a reload opens again (a compaction renames the new
    /// generation over it).
    gallery_path: PathBuf,
    /// Held shared by every change while it commits, and exclusively while a
    /// reload carries the log over and swaps generations, so that no change
    /// lands in a log that is being retired.
    gate: RwLock<()>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

/// One validated 1:N request.
pub struct IdentifyJob {
    /// Shared with the engine thread without copying the prepared probe.
    probe: Arc<ProbeBatch>,
    top_k: usize,
    threshold: f32,
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

fn invalid(e: InputError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Publishes a generation's gallery figures.
fn publish_gallery(metrics: &Metrics, g: &Generation) {
    let live = g.live();
    let gallery = live.base();
    let h = gallery.header();
    let counts = live.counts();
    metrics.gallery_rows.set(counts.rows as i64);
    metrics.gallery_subjects.set(counts.subjects as i64);
    metrics.gallery_bytes.set(gallery.file_bytes() as i64);
    metrics.gallery_info.reset();
    metrics
        .gallery_info
        .with_label_values(&[
            &format!("{:016x}", h.generation),
            &h.model_tag,
            h.scan_type.name(),
        ])
        .set(1);
}

impl ServingState {
    /// Serves the live gallery of `changes` (loaded from `gallery_path`)
    /// with the CPU engine, and the GPU engine when given (it must mask the
    /// live gallery's tombstones); starts the dispatcher thread.
    pub fn new(
        changes: Arc<GalleryChanges>,
        gpu: Option<Accelerator>,
        settings: Settings,
        metrics: Arc<Metrics>,
        gallery_path: PathBuf,
    ) -> std::io::Result<ServingState> {
        let engines = Arc::new(Engines::new(changes.live().clone(), gpu, metrics.clone()));
        let first = Generation { engines, changes };
        publish_gallery(&metrics, &first);
        let current = CurrentGeneration::new(first);
        let source = current.clone();
        let dispatcher = Dispatcher::start(
            Arc::new(move || source.load().engines.clone()),
            DispatchSettings {
                max_batch: settings.batch_max_size,
                max_wait: Duration::from_micros(settings.batch_max_wait_us),
                batch_time_target: (settings.batch_time_target_ms > 0)
                    .then(|| Duration::from_millis(settings.batch_time_target_ms)),
                capacity: settings.queue_capacity,
                max_queue_wait: Duration::from_millis(settings.max_queue_wait_ms),
            },
            metrics.clone(),
        )?;
        Ok(ServingState {
            current,
            dispatcher,
            settings,
            metrics,
            gallery_path,
            gate: RwLock::new(()),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The metrics this state records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The generation served now; a request uses one throughout.
    pub fn generation(&self) -> Arc<Generation> {
        self.current.load()
    }

    /// The base gallery served now.
    pub fn gallery(&self) -> Arc<Gallery> {
        self.current.load().live().base().clone()
    }

    /// The name of the engine answering 1:N now.
    pub fn engine_name(&self) -> String {
        self.current.load().engines.engine_name()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Commits one online change to the generation served now (blocking on
    /// its fsync); returns what it did and that generation's id.
    pub fn commit(&self, change: &Change) -> Result<(Committed, u64), CommitError> {
        // Poison only means a change panicked; the gate guards no data.
        let _shared = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let g = self.current.load();
        let done = g.changes.commit(change)?;
        Ok((done, g.id()))
    }

    /// Opens the gallery file again and, when it holds a new generation,
    /// serves it: the changes logged since its compaction are carried over,
    /// then the generations are swapped between requests. Requests in
    /// flight finish on the old generation; none fails.
    pub async fn reload(self: &Arc<Self>) -> Result<Reloaded, Status> {
        let _one = self.reloading.lock().await;
        let old = self.current.load();
        let path = self.gallery_path.clone();
        let opened = tokio::task::spawn_blocking(move || Gallery::open(&path))
            .await
            .map_err(|e| Status::internal(format!("reload task failed: {e}")))?;
        let gallery = Arc::new(opened.map_err(|e| {
            Status::failed_precondition(format!("cannot open the gallery to reload: {e}"))
        })?);
        let (new_h, old_h) = (gallery.header(), old.live().base().header());
        if new_h.generation == old_h.generation {
            return Ok(Reloaded {
                previous: old_h.generation,
                generation: old_h.generation,
                carried_over: 0,
            });
        }
        if new_h.dim != old_h.dim || new_h.model_tag != old_h.model_tag {
            return Err(Status::failed_precondition(format!(
                "the new gallery holds {}-d templates of {:?}, the served one {}-d of {:?}: refusing to swap",
                new_h.dim, new_h.model_tag, old_h.dim, old_h.model_tag
            )));
        }
        let logged = old.changes.logged_changes();
        let from_old = new_h
            .lineage
            .filter(|l| l.parent_generation == old_h.generation);
        match from_old {
            Some(l) if l.through_sequence > logged => {
                return Err(Status::failed_precondition(format!(
                    "the new gallery folds in change {} of this generation's log, which has only {logged}",
                    l.through_sequence
                )));
            }
            None if logged > 0 => {
                return Err(Status::failed_precondition(format!(
                    "the new gallery was not compacted from generation {:016x}: its {logged} logged changes would be lost; run facegate-index compact first",
                    old_h.generation
                )));
            }
            _ => {}
        }
        let live = Arc::new(LiveGallery::new(gallery.clone()));
        let gpu = open_gpu(&live, &self.settings).await.map_err(|e| {
            Status::unavailable(format!(
                "cannot open the GPU engine for the new gallery: {e:#}"
            ))
        })?;
        let engines = Arc::new(Engines::new(live.clone(), gpu, self.metrics.clone()));
        let state = self.clone();
        let swapped = tokio::task::spawn_blocking(move || {
            let _exclusive = state.gate.write().unwrap_or_else(|p| p.into_inner());
            let changes = Arc::new(GalleryChanges::open(
                live,
                &state.settings.data_dir,
                state.metrics.clone(),
            )?);
            let carried_over = changes.logged_changes();
            let next = Generation { engines, changes };
            publish_gallery(&state.metrics, &next);
            state.current.swap(next);
            anyhow::Ok(carried_over)
        })
        .await
        .map_err(|e| Status::internal(format!("reload task failed: {e}")))?
        .map_err(|e| {
            tracing::error!(
                error = format!("{e:#}"),
                "reload failed; the old generation stays"
            );
            Status::unavailable(format!("reload failed, the old generation stays: {e:#}"))
        })?;
        self.metrics.gallery_reloads.inc();
        let done = Reloaded {
            previous: old_h.generation,
            generation: new_h.generation,
            carried_over: swapped,
        };
        tracing::info!(
            previous = format!("{:016x}", done.previous),
            generation = format!("{:016x}", done.generation),
            carried_over = done.carried_over,
            "gallery generation swapped"
        );
        Ok(done)
    }

    fn check_model(&self, tag: &str) -> Result<(), Status> {
        let gallery = self.gallery();
        let ours = &gallery.header().model_tag;
        if tag.is_empty() {
            return Err(Status::invalid_argument(format!(
                "model_tag is required: name the model that made the probe (this gallery: {ours:?})"
            )));
        }
        if tag != ours {
            return Err(Status::failed_precondition(format!(
                "probe made by model {tag:?}, gallery holds templates of {ours:?}: they cannot be compared"
            )));
        }
        Ok(())
    }

    fn threshold(&self, t: Option<f32>) -> Result<f32, Status> {
        match t {
            None => Ok(self.settings.default_threshold),
            Some(t) if (-1.0..=1.0).contains(&t) => Ok(t),
            Some(t) => Err(Status::invalid_argument(format!(
                "threshold must be within -1..=1, got {t}"
            ))),
        }
    }

    fn probe(&self, probe: &[f32]) -> Result<ProbeBatch, Status> {
        ProbeBatch::single(self.gallery().dim(), probe).map_err(invalid)
    }

    /// Validates an Identify request.
    pub fn identify_job(&self, r: &proto::IdentifyRequest) -> Result<IdentifyJob, Status> {
        self.check_model(&r.model_tag)?;
        let max = self.settings.max_top_k;
        if r.top_k == 0 || r.top_k > max {
            return Err(Status::invalid_argument(format!(
                "top_k must be within 1..={max}, got {}",
                r.top_k
            )));
        }
        Ok(IdentifyJob {
            probe: Arc::new(self.probe(&r.probe)?),
            top_k: r.top_k as usize,
            threshold: self.threshold(r.threshold)?,
        })
    }

    /// Queues a search from `port` with the dispatcher and waits for its
    /// batch, giving up at `deadline` (a late answer is never an OK).
    pub async fn search(
        &self,
        job: &IdentifyJob,
        port: &str,
        deadline: Option<Instant>,
    ) -> Result<Searched, Status> {
        let reply = self.dispatcher.submit(
            port,
            Job {
                probe: Arc::clone(&job.probe),
                top_k: job.top_k,
                deadline,
            },
        )?;
        let answer = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), reply)
                .await
                .map_err(|_| {
                    Status::deadline_exceeded("deadline passed before the search finished")
                })?,
            None => reply.await,
        };
        answer.map_err(|_| Status::unavailable("search dropped by the dispatcher; retry"))?
    }

    /// Builds the response to a finished Identify.
    pub fn identify_response(
        &self,
        request_id: String,
        job: &IdentifyJob,
        ranked: Searched,
        arrived: Instant,
    ) -> Result<proto::IdentifyResponse, Status> {
        let mut candidates = Vec::with_capacity(ranked.candidates.len());
        for (i, c) in ranked.candidates.iter().enumerate() {
            candidates.push(proto::Candidate {
                subject_id: ranked.live.subject_id(c.subject).map_err(gallery_status)?,
                score: c.score,
                rank: i as u32 + 1,
            });
        }
        let total = arrived.elapsed();
        Ok(proto::IdentifyResponse {
            r#match: ranked
                .candidates
                .first()
                .is_some_and(|c| c.score >= job.threshold),
            candidates,
            request_id,
            threshold: job.threshold,
            timing: Some(timing(ranked.queue_time, ranked.engine_time, total)),
            gallery_generation: ranked.live.base().header().generation,
            error: None,
        })
    }

    /// 1:1 verification: the probe against the claimed subject's templates.
    pub fn verify(
        &self,
        r: &proto::VerifyRequest,
        arrived: Instant,
    ) -> Result<proto::VerifyResponse, Status> {
        self.check_model(&r.model_tag)?;
        let threshold = self.threshold(r.threshold)?;
        let probe = self.probe(&r.probe)?;
        if r.subject_id.is_empty() {
            return Err(Status::invalid_argument("subject_id is required"));
        }
        let g = self.current.load();
        let t = Instant::now();
        let (best, templates) = g
            .live()
            .verify(&probe, 0, &r.subject_id)
            .map_err(search_status)?
            .ok_or_else(|| Status::not_found("no such subject in the gallery"))?;
        let engine_time = t.elapsed();
        let total = arrived.elapsed();
        Ok(proto::VerifyResponse {
            r#match: best.score >= threshold,
            score: best.score,
            request_id: r.request_id.clone(),
            threshold,
            templates_compared: templates as u32,
            timing: Some(timing(
                total.saturating_sub(engine_time),
                engine_time,
                total,
            )),
            gallery_generation: g.id(),
        })
    }

    /// GetGalleryInfo.
    pub fn info(&self) -> proto::GalleryInfo {
        let g = self.current.load();
        let h = g.live().base().header();
        let counts = g.live().counts();
        proto::GalleryInfo {
            rows: counts.rows,
            subjects: counts.subjects,
            dimension: h.dim,
            element_type: h.scan_type.name().into(),
            model_tag: h.model_tag.clone(),
            generation: h.generation,
            engine: g.engines.engine_name(),
            default_threshold: self.settings.default_threshold,
            max_top_k: self.settings.max_top_k,
            exact_rescore: h.has_rescore,
            gpu_memory_bytes: g.engines.gpu_memory_bytes(),
        }
    }
}

fn timing(queue: Duration, engine: Duration, total: Duration) -> proto::Timing {
    proto::Timing {
        queue_us: queue.as_micros() as u64,
        engine_us: engine.as_micros() as u64,
        total_us: total.as_micros() as u64,
    }
}

/// A damaged gallery is the operator's problem, not the client's: the details
/// go to the log, the client gets INTERNAL.
fn gallery_status(e: facegate_core::GalleryError) -> Status {
    tracing::error!(error = %e, "gallery read failed");
    Status::internal("gallery data error; the operator has been alerted")
}

/// The status a failed search answers with.
pub(crate) fn search_status(e: SearchError) -> Status {
    match e {
        SearchError::Input(e) => invalid(e),
        SearchError::Gallery(e) => gallery_status(e),
        SearchError::Unavailable(m) => {
            tracing::error!(error = %m, "engine failed");
            Status::unavailable("search engine unavailable; retry")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServeArgs, Settings};
    use crate::engines::GPU_STRIKES;
    use facegate_core::format::{BuildOptions, SliceRows, build_gallery};
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
        let gpu = Accelerator {
            engine: Arc::new(Broken),
            memory_bytes: 123,
        };
        let state = ServingState::new(
            changes,
            Some(gpu),
            Settings::resolve(ServeArgs::default()).unwrap(),
            metrics.clone(),
            path.clone(),
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
        let job = state.identify_job(&req).unwrap();
        for _ in 0..GPU_STRIKES {
            let err = state.search(&job, "p", None).await.err().unwrap();
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
                .search(&job, "p", None)
                .await
                .unwrap()
                .candidates
                .len(),
            3
        );
    }
}
