//! What the server is serving: the live gallery (the mapped base plus online
//! changes), the engines over it, and the request semantics (validation,
//! thresholds, deadlines) shared by every RPC.

use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate_core::live::LiveGallery;
use facegate_core::{Gallery, InputError, ProbeBatch, SearchError};
use tonic::Status;

use crate::config::Settings;
use crate::dispatch::{DispatchSettings, Dispatcher, Job, Searched};
use crate::engines::{Accelerator, Engines};
use crate::metrics::Metrics;
use crate::proto;

/// The gallery and engines behind the API.
pub struct ServingState {
    live: Arc<LiveGallery>,
    engines: Arc<Engines>,
    /// Batches every 1:N search.
    dispatcher: Dispatcher,
    settings: Settings,
    metrics: Arc<Metrics>,
}

/// One validated 1:N request.
pub struct IdentifyJob {
    /// Shared with the engine thread without copying the prepared probe.
    probe: Arc<ProbeBatch>,
    top_k: usize,
    threshold: f32,
}

fn invalid(e: InputError) -> Status {
    Status::invalid_argument(e.to_string())
}

impl ServingState {
    /// Serves `live` with the CPU engine, and the GPU engine when given (it
    /// must mask `live`'s tombstones); starts the dispatcher thread.
    pub fn new(
        live: Arc<LiveGallery>,
        gpu: Option<Accelerator>,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<ServingState> {
        let gallery = live.base();
        let h = gallery.header();
        let counts = live.counts();
        metrics.gallery_rows.set(counts.rows as i64);
        metrics.gallery_subjects.set(counts.subjects as i64);
        metrics.gallery_bytes.set(gallery.file_bytes() as i64);
        metrics
            .gallery_info
            .with_label_values(&[
                &format!("{:016x}", h.generation),
                &h.model_tag,
                h.scan_type.name(),
            ])
            .set(1);
        let engines = Arc::new(Engines::new(live.clone(), gpu, metrics.clone()));
        let dispatcher = Dispatcher::start(
            engines.clone(),
            DispatchSettings {
                max_batch: settings.batch_max_size,
                max_wait: Duration::from_micros(settings.batch_max_wait_us),
                capacity: settings.queue_capacity,
                max_queue_wait: Duration::from_millis(settings.max_queue_wait_ms),
            },
            metrics.clone(),
        )?;
        Ok(ServingState {
            live,
            engines,
            dispatcher,
            settings,
            metrics,
        })
    }

    /// The metrics this state records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The base gallery served.
    pub fn gallery(&self) -> &Gallery {
        self.live.base()
    }

    /// The gallery as searches see it: base plus online changes.
    pub fn live(&self) -> &Arc<LiveGallery> {
        &self.live
    }

    /// The name of the engine answering 1:N now.
    pub fn engine_name(&self) -> String {
        self.engines.engine_name()
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn check_model(&self, tag: &str) -> Result<(), Status> {
        let ours = &self.gallery().header().model_tag;
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
                subject_id: self.live.subject_id(c.subject).map_err(gallery_status)?,
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
            gallery_generation: self.gallery().header().generation,
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
        let t = Instant::now();
        let (best, templates) = self
            .live
            .verify(self.engines.cpu(), &probe, 0, &r.subject_id)
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
            gallery_generation: self.gallery().header().generation,
        })
    }

    /// GetGalleryInfo.
    pub fn info(&self) -> proto::GalleryInfo {
        let h = self.gallery().header();
        let counts = self.live.counts();
        proto::GalleryInfo {
            rows: counts.rows,
            subjects: counts.subjects,
            dimension: h.dim,
            element_type: h.scan_type.name().into(),
            model_tag: h.model_tag.clone(),
            generation: h.generation,
            engine: self.engine_name(),
            default_threshold: self.settings.default_threshold,
            max_top_k: self.settings.max_top_k,
            exact_rescore: h.has_rescore,
            gpu_memory_bytes: self.engines.gpu_memory_bytes(),
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
        let gallery = Arc::new(LiveGallery::new(Arc::new(Gallery::open(&path).unwrap())));
        let gpu = Accelerator {
            engine: Arc::new(Broken),
            memory_bytes: 123,
        };
        let metrics = Metrics::new();
        let state = ServingState::new(
            gallery,
            Some(gpu),
            Settings::resolve(ServeArgs::default()).unwrap(),
            metrics.clone(),
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
