//! The `facegate.v1.Matcher` gRPC service: the wire layer of searches. It
//! checks each request (`crate::request`), asks the serving state, builds the
//! proto response, audits and counts the answer; errors become statuses
//! through `crate::status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::answered::{self, Answered, Books, VerifyAnswer};
use crate::audit::{Auditor, Caller};
use crate::deadline::RequestClock;
use crate::encounters::recording::{self, Outcome};
use crate::generation::GalleryFacts;
use crate::proto::matcher_server::Matcher;
use crate::proto::{self, GalleryInfo, GetGalleryInfoRequest, IdentifyRequest, IdentifyResponse};
use crate::served::{AnsweredBy, Identified, ServedGallery, Verified};
use crate::thresholds::ThresholdSource;
use crate::{auth, request};

/// The service; cheap to clone.
#[derive(Clone)]
pub struct MatcherService {
    state: Arc<ServedGallery>,
    auditor: Arc<Auditor>,
}

impl MatcherService {
    /// A service over `state` whose answers are recorded by `auditor`.
    pub fn new(state: Arc<ServedGallery>, auditor: Arc<Auditor>) -> Self {
        MatcherService { state, auditor }
    }

    /// Where its answers are audited and counted.
    fn books(&self) -> Books<'_> {
        Books {
            auditor: &self.auditor,
            metrics: self.state.metrics(),
        }
    }
}

/// One Identify, unary or streamed: checked, searched (nationally, or in
/// the manifest it names), answered; its encounter's record started.
async fn identify_one(
    state: &ServedGallery,
    r: IdentifyRequest,
    clock: RequestClock,
    caller: &Caller,
) -> Answered<IdentifyResponse> {
    clock.check()?;
    let recording = recording::requested(caller)?;
    let job = request::identify(&r, state.gallery().header(), &state.limits())?;
    let budget_ms = clock
        .deadline
        .map(|d| d.saturating_duration_since(clock.arrived).as_millis() as u64);
    tracing::debug!(
        top_k = r.top_k,
        ?budget_ms,
        scoped = job.manifest.is_some(),
        "identify"
    );
    let (port, deadline) = (caller.port(), clock.deadline);
    let found = match &job.manifest {
        None => state.identify(&job, port, deadline).await?,
        Some(scope) => {
            let principal = caller.principal.as_deref();
            (state.identify_in_manifest(&job, scope, principal, port, deadline)).await?
        }
    };
    let pending = recording.map(|context| {
        let outcome = Outcome::of_identify(&found);
        recording::start(
            state.encounters(),
            state.metrics(),
            caller,
            context,
            outcome,
        )
    });
    Ok((
        identify_response(r.request_id, found, clock.arrived),
        pending,
    ))
}

/// The proto `answered_by` and `manifest_id` of an answer.
fn answered_by(by: &AnsweredBy) -> (proto::SearchScope, String) {
    let id = by.manifest_id().unwrap_or_default().to_string();
    let scope = match by {
        AnsweredBy::National => proto::SearchScope::National,
        AnsweredBy::Manifest(_) => proto::SearchScope::Manifest,
        AnsweredBy::ManifestThenNational(_) => proto::SearchScope::ManifestThenNational,
    };
    (scope, id)
}

/// The proto answer to a finished Identify.
fn identify_response(request_id: String, found: Identified, arrived: Instant) -> IdentifyResponse {
    let candidates = found
        .candidates
        .into_iter()
        .enumerate()
        .map(|(i, (subject_id, score))| proto::Candidate {
            subject_id,
            score,
            rank: i as u32 + 1,
        })
        .collect();
    let (scope, manifest_id) = answered_by(&found.answered_by);
    IdentifyResponse {
        r#match: found.matched,
        candidates,
        request_id,
        threshold: found.threshold,
        timing: Some(timing(
            found.queue_time,
            found.engine_time,
            arrived.elapsed(),
        )),
        gallery_generation: found.generation,
        error: None,
        answered_by: scope.into(),
        manifest_id,
        encounter: None,
        missing_shards: Vec::new(),
        manifest_travellers: found.manifest_travellers,
    }
}

/// One Verify: checked and scored inline (a few hundred rows at most, never
/// queued behind a scan).
fn verify_one(
    state: &ServedGallery,
    r: &proto::VerifyRequest,
    arrived: Instant,
) -> Result<proto::VerifyResponse, Status> {
    let job = request::verify(r, state.gallery().header(), &state.limits())?;
    let v: Verified = state.verify(&job)?;
    let total = arrived.elapsed();
    Ok(proto::VerifyResponse {
        r#match: v.matched,
        score: v.score,
        request_id: r.request_id.clone(),
        threshold: v.threshold,
        templates_compared: v.templates as u32,
        timing: Some(timing(
            total.saturating_sub(v.engine_time),
            v.engine_time,
            total,
        )),
        gallery_generation: v.generation,
        encounter: None,
    })
}

/// The proto GalleryInfo.
fn gallery_info(f: GalleryFacts) -> GalleryInfo {
    GalleryInfo {
        rows: f.rows,
        subjects: f.subjects,
        dimension: f.dimension,
        element_type: f.element_type.into(),
        model_tag: f.model_tag,
        generation: f.generation,
        engine: f.engine,
        default_threshold: f.default_threshold,
        max_top_k: f.max_top_k,
        exact_rescore: f.exact_rescore,
        gpu_memory_bytes: f.gpu_memory_bytes,
        threshold_source: threshold_source(f.threshold_source).into(),
        target_fpir: f.target_fpir.unwrap_or(0.0),
        calibrated_generation: f.calibrated_generation.unwrap_or(0),
        calibration_stale: f.calibration_stale,
        manifest_thresholds: f
            .manifest_thresholds
            .iter()
            .map(|&(people, threshold)| proto::ManifestThreshold { people, threshold })
            .collect(),
        shard_index: f.shard.map_or(0, |s| s.index),
        shard_count: f.shard.map_or(0, |s| s.count),
    }
}

fn threshold_source(s: ThresholdSource) -> proto::ThresholdSource {
    match s {
        ThresholdSource::Configured => proto::ThresholdSource::Configured,
        ThresholdSource::Calibrated => proto::ThresholdSource::Calibrated,
        ThresholdSource::BuiltIn => proto::ThresholdSource::BuiltIn,
    }
}

fn timing(queue: Duration, engine: Duration, total: Duration) -> proto::Timing {
    proto::Timing {
        queue_us: queue.as_micros() as u64,
        engine_us: engine.as_micros() as u64,
        total_us: total.as_micros() as u64,
    }
}

/// The manifest an Identify names, for its audit record.
fn named_manifest(r: &IdentifyRequest) -> Option<String> {
    (!r.manifest_id.is_empty()).then(|| r.manifest_id.clone())
}

#[tonic::async_trait]
impl Matcher for MatcherService {
    async fn identify(
        &self,
        mut req: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let (clock, caller) = answered::arrival(&mut req);
        let _in_flight = answered::InFlight::new(self.state.metrics());
        let r = req.into_inner();
        let manifest = named_manifest(&r);
        let span =
            tracing::info_span!("identify", port = %caller.port(), request_id = %r.request_id);
        let result = async {
            auth::authorise(caller.principal.as_deref(), caller.claimed_port())?;
            identify_one(&self.state, r, clock, &caller).await
        }
        .instrument(span)
        .await;
        answered::finish(
            &self.books(),
            "Identify",
            &caller,
            result,
            Vec::new,
            manifest,
        )
        .await
        .map(Response::new)
    }

    type IdentifyStreamStream = ReceiverStream<Result<IdentifyResponse, Status>>;

    async fn identify_stream(
        &self,
        req: Request<Streaming<IdentifyRequest>>,
    ) -> Result<Response<Self::IdentifyStreamStream>, Status> {
        let base = Caller::new(&req, "", None, Instant::now());
        let svc = self.clone();
        let answer = move |mut r: IdentifyRequest| {
            let (svc, base) = (svc.clone(), base.clone());
            async move {
                let clock = RequestClock {
                    arrived: Instant::now(),
                    deadline: None,
                };
                let _in_flight = answered::InFlight::new(svc.state.metrics());
                let manifest = named_manifest(&r);
                let caller = base.with(&r.request_id, r.capture.take(), clock.arrived);
                let span = tracing::info_span!("identify_stream", port = %caller.port(), request_id = %r.request_id);
                let result = async {
                    auth::authorise(caller.principal.as_deref(), caller.claimed_port())?;
                    identify_one(&svc.state, r, clock, &caller).await
                }
                .instrument(span)
                .await;
                answered::finish(
                    &svc.books(),
                    "IdentifyStream",
                    &caller,
                    result,
                    Vec::new,
                    manifest,
                )
                .await
            }
        };
        Ok(Response::new(crate::stream::identify_stream(
            req.into_inner(),
            answer,
        )))
    }

    async fn verify(
        &self,
        mut req: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let (clock, caller) = answered::arrival(&mut req);
        let _in_flight = answered::InFlight::new(self.state.metrics());
        let r = req.into_inner();
        let span = tracing::info_span!("verify", port = %caller.port(), request_id = %r.request_id);
        let result = async {
            tracing::debug!("verify");
            auth::authorise(caller.principal.as_deref(), caller.claimed_port())?;
            clock.check()?;
            let recording = recording::requested(&caller)?;
            let response = verify_one(&self.state, &r, clock.arrived)?;
            let pending = recording.map(|context| {
                let outcome = Outcome::of_verify(&response, &r.subject_id);
                let state = &self.state;
                recording::start(
                    state.encounters(),
                    state.metrics(),
                    &caller,
                    context,
                    outcome,
                )
            });
            Ok((response, pending))
        }
        .instrument(span)
        .await;
        let result = result.map(|(response, pending)| {
            let subject = r.subject_id.clone();
            (VerifyAnswer { response, subject }, pending)
        });
        answered::finish(
            &self.books(),
            "Verify",
            &caller,
            result,
            || vec![r.subject_id],
            None,
        )
        .await
        .map(|v| Response::new(v.response))
    }

    async fn get_gallery_info(
        &self,
        _: Request<GetGalleryInfoRequest>,
    ) -> Result<Response<GalleryInfo>, Status> {
        Ok(Response::new(gallery_info(self.state.info())))
    }
}
