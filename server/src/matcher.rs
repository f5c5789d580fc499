//! The `facegate.v1.Matcher` gRPC service: the wire layer of searches. It
//! checks each request (`crate::request`), asks the serving state, builds the
//! proto response, audits and counts the answer; errors become statuses
//! through `crate::status`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::audit::{Auditor, Caller};
use crate::deadline::RequestClock;
use crate::encounters::recording::{self, Outcome, PendingRecord};
use crate::generation::GalleryFacts;
use crate::proto::matcher_server::Matcher;
use crate::proto::{self, GalleryInfo, GetGalleryInfoRequest, IdentifyRequest, IdentifyResponse};
use crate::served::{AnsweredBy, Identified, ServedGallery, Verified};
use crate::status::not_audited;
use crate::thresholds::ThresholdSource;
use crate::{auth, request};

/// Probes of one stream searched at once; more wait for a slot, which pushes
/// back on the client through flow control.
const STREAM_IN_FLIGHT: usize = 32;

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
}

/// An answer, and the encounter record it waits for when the request
/// asked for one (written beside the answer's audit record; see
/// [`finish`]).
type Answered<T> = Result<(T, Option<PendingRecord>), Status>;

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
    let pending = recording
        .map(|context| recording::start(state, caller, context, Outcome::of_identify(&found)));
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

/// Counts a request in flight for as long as it lives.
struct InFlight<'a>(&'a crate::metrics::Metrics);

impl<'a> InFlight<'a> {
    fn new(m: &'a crate::metrics::Metrics) -> Self {
        m.in_flight.inc();
        InFlight(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Counts a finished request by code, its latency, its decision and its
/// best score.
fn count(
    state: &ServedGallery,
    rpc: &str,
    port: &str,
    arrived: Instant,
    code: tonic::Code,
    answer: Option<(bool, Option<f32>)>,
) {
    let m = state.metrics();
    let port = m.port_label(port);
    m.requests
        .with_label_values(&[rpc, &port, crate::metrics::code_name(code)])
        .inc();
    m.request_seconds
        .with_label_values(&[rpc])
        .observe(arrived.elapsed().as_secs_f64());
    if let Some((matched, best)) = answer {
        m.decisions
            .with_label_values(&[rpc, if matched { "match" } else { "no_match" }])
            .inc();
        if let Some(score) = best {
            m.best_score
                .with_label_values(&[rpc, &port])
                .observe(f64::from(score));
        }
    }
}

/// What an answer decided and disclosed, for metrics and its audit record.
trait Answer {
    /// The decision.
    fn matched(&self) -> bool;
    /// The best candidate's score, when one was scored.
    fn best_score(&self) -> Option<f32>;
    /// Adds the encounter record the answer carries.
    fn set_encounter(&mut self, record: proto::EncounterRecord);
    /// The subjects the answer disclosed, and the generation that answered.
    fn disclosed(&self) -> (Vec<String>, u64);
}

impl Answer for IdentifyResponse {
    fn matched(&self) -> bool {
        self.r#match
    }
    fn set_encounter(&mut self, record: proto::EncounterRecord) {
        self.encounter = Some(record);
    }
    fn best_score(&self) -> Option<f32> {
        self.candidates.first().map(|c| c.score)
    }
    fn disclosed(&self) -> (Vec<String>, u64) {
        let ids = self.candidates.iter().map(|c| c.subject_id.clone());
        (ids.collect(), self.gallery_generation)
    }
}

/// A Verify answer with the subject it was asked about.
struct VerifyAnswer {
    response: proto::VerifyResponse,
    subject: String,
}

impl Answer for VerifyAnswer {
    fn matched(&self) -> bool {
        self.response.r#match
    }
    fn set_encounter(&mut self, record: proto::EncounterRecord) {
        self.response.encounter = Some(record);
    }
    fn best_score(&self) -> Option<f32> {
        Some(self.response.score)
    }
    fn disclosed(&self) -> (Vec<String>, u64) {
        (vec![self.subject.clone()], self.response.gallery_generation)
    }
}

/// Writes the request's audit record (when the trail is on) while its
/// encounter's record (when it asked for one) is written too, then counts
/// it; the answer leaves only once both are durable (UNAVAILABLE when
/// either cannot be made so). An encounter that fails after the audit
/// record said the answer was given is followed in the trail by a record
/// of the failure, so the trail never claims an answer that was withheld.
/// `named` are the subjects the request itself named, recorded when it
/// failed; `manifest` the manifest it named (recorded either way).
async fn finish<T: Answer>(
    svc: &MatcherService,
    rpc: &str,
    caller: &Caller,
    answered: Answered<T>,
    named: impl FnOnce() -> Vec<String>,
    manifest: Option<String>,
) -> Result<T, Status> {
    let (result, pending) = match answered {
        Ok((answer, pending)) => (Ok(answer), pending),
        Err(status) => (Err(status), None),
    };
    let result = audit(svc, rpc, caller, result, named, manifest.clone()).await;
    let result = match (result, pending) {
        (Ok(mut answer), Some(pending)) => match pending.durable().await {
            Ok(record) => {
                answer.set_encounter(record);
                Ok(answer)
            }
            Err(status) => Err(withheld(svc, rpc, caller, status, manifest).await),
        },
        // A record under way when the audit failed is still written: the
        // port's retry (same encounter id) is answered with it.
        (result, _) => result,
    };
    let (code, answer) = match &result {
        Ok(v) => (tonic::Code::Ok, Some((v.matched(), v.best_score()))),
        Err(s) => (s.code(), None),
    };
    count(&svc.state, rpc, caller.port(), caller.arrived, code, answer);
    result
}

/// The audit record of an answer that was given but whose encounter
/// could not be recorded: the answer is withheld with `status`.
async fn withheld(
    svc: &MatcherService,
    rpc: &str,
    caller: &Caller,
    status: Status,
    manifest: Option<String>,
) -> Status {
    if !svc.auditor.is_enabled() {
        return status;
    }
    let mut event = caller.event(rpc, status.code(), None, Vec::new(), 0);
    event.manifest_id = manifest;
    match svc.auditor.record(event).await {
        Ok(_) => status,
        Err(reason) => not_audited(&reason),
    }
}

/// Writes the audit record of `result` (when the trail is on); the
/// result, or UNAVAILABLE when the record cannot be made durable.
async fn audit<T: Answer>(
    svc: &MatcherService,
    rpc: &str,
    caller: &Caller,
    result: Result<T, Status>,
    named: impl FnOnce() -> Vec<String>,
    manifest: Option<String>,
) -> Result<T, Status> {
    if svc.auditor.is_enabled() {
        let mut event = match &result {
            Ok(v) => {
                let (subjects, generation) = v.disclosed();
                let matched = Some(v.matched());
                caller.event(rpc, tonic::Code::Ok, matched, subjects, generation)
            }
            Err(s) => caller.event(rpc, s.code(), None, named(), 0),
        };
        event.manifest_id = manifest;
        match svc.auditor.record(event).await {
            Ok(_) => result,
            Err(reason) => Err(not_audited(&reason)),
        }
    } else {
        result
    }
}

#[tonic::async_trait]
impl Matcher for MatcherService {
    async fn identify(
        &self,
        mut req: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let clock = RequestClock::of(&req);
        let _in_flight = InFlight::new(self.state.metrics());
        let capture = req.get_mut().capture.take();
        let caller = Caller::new(&req, &req.get_ref().request_id, capture, clock.arrived);
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
        finish(self, "Identify", &caller, result, Vec::new, manifest)
            .await
            .map(Response::new)
    }

    type IdentifyStreamStream = ReceiverStream<Result<IdentifyResponse, Status>>;

    async fn identify_stream(
        &self,
        req: Request<Streaming<IdentifyRequest>>,
    ) -> Result<Response<Self::IdentifyStreamStream>, Status> {
        let base = Caller::new(&req, "", None, Instant::now());
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_IN_FLIGHT);
        let svc = self.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(STREAM_IN_FLIGHT));
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => break, // the client went away: stop reading
                    m = inbound.message() => m,
                };
                let mut r = match next {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, "identify stream ended by transport error");
                        break;
                    }
                };
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let (svc, tx, base) = (svc.clone(), tx.clone(), base.clone());
                tokio::spawn(async move {
                    if tx.is_closed() {
                        return; // cancelled before it started: do no work
                    }
                    let clock = RequestClock {
                        arrived: Instant::now(),
                        deadline: None,
                    };
                    let _in_flight = InFlight::new(svc.state.metrics());
                    let request_id = r.request_id.clone();
                    let manifest = named_manifest(&r);
                    let caller = base.with(&r.request_id, r.capture.take(), clock.arrived);
                    let span = tracing::info_span!("identify_stream", port = %caller.port(), request_id = %r.request_id);
                    let result = async {
                        auth::authorise(caller.principal.as_deref(), caller.claimed_port())?;
                        identify_one(&svc.state, r, clock, &caller).await
                    }
                    .instrument(span)
                    .await;
                    let result =
                        finish(&svc, "IdentifyStream", &caller, result, Vec::new, manifest).await;
                    let resp = result.unwrap_or_else(|s| IdentifyResponse {
                        request_id,
                        error: Some(proto::RequestError {
                            code: s.code() as i32,
                            message: s.message().to_string(),
                        }),
                        ..Default::default()
                    });
                    let _ = tx.send(Ok(resp)).await;
                    drop(slot);
                });
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn verify(
        &self,
        mut req: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let clock = RequestClock::of(&req);
        let _in_flight = InFlight::new(self.state.metrics());
        let capture = req.get_mut().capture.take();
        let caller = Caller::new(&req, &req.get_ref().request_id, capture, clock.arrived);
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
                recording::start(&self.state, &caller, context, outcome)
            });
            Ok((response, pending))
        }
        .instrument(span)
        .await;
        let result = result.map(|(response, pending)| {
            let subject = r.subject_id.clone();
            (VerifyAnswer { response, subject }, pending)
        });
        finish(self, "Verify", &caller, result, || vec![r.subject_id], None)
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
