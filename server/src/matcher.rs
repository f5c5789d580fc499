//! The `facegate.v1.Matcher` gRPC service.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::audit::{Auditor, Caller, not_audited};
use crate::deadline::RequestClock;
use crate::proto::matcher_server::Matcher;
use crate::proto::{self, GalleryInfo, GetGalleryInfoRequest, IdentifyRequest, IdentifyResponse};
use crate::state::ServingState;

/// Probes of one stream searched at once; more wait for a slot, which pushes
/// back on the client through flow control.
const STREAM_IN_FLIGHT: usize = 32;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct MatcherService {
    state: Arc<ServingState>,
    auditor: Arc<Auditor>,
}

impl MatcherService {
    /// A service over `state` whose answers are recorded by `auditor`.
    pub fn new(state: Arc<ServingState>, auditor: Arc<Auditor>) -> Self {
        MatcherService { state, auditor }
    }
}

async fn identify_one(
    state: &ServingState,
    r: IdentifyRequest,
    clock: RequestClock,
    port: &str,
) -> Result<IdentifyResponse, Status> {
    clock.check()?;
    let job = state.identify_job(&r)?;
    let budget_ms = clock
        .deadline
        .map(|d| d.saturating_duration_since(clock.arrived).as_millis() as u64);
    tracing::debug!(top_k = r.top_k, ?budget_ms, "identify");
    let ranked = state.search(&job, port, clock.deadline).await?;
    state.identify_response(r.request_id, &job, ranked, clock.arrived)
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

/// Counts a finished request by code, its latency and its decision.
fn count(
    state: &ServingState,
    rpc: &str,
    port: &str,
    arrived: Instant,
    code: tonic::Code,
    matched: Option<bool>,
) {
    let m = state.metrics();
    let port = m.port_label(port);
    m.requests
        .with_label_values(&[rpc, &port, crate::metrics::code_name(code)])
        .inc();
    m.request_seconds
        .with_label_values(&[rpc])
        .observe(arrived.elapsed().as_secs_f64());
    if let Some(matched) = matched {
        m.decisions
            .with_label_values(&[rpc, if matched { "match" } else { "no_match" }])
            .inc();
    }
}

/// What an answer decided and disclosed, for metrics and its audit record.
trait Answer {
    /// The decision.
    fn matched(&self) -> bool;
    /// The subjects the answer disclosed, and the generation that answered.
    fn disclosed(&self) -> (Vec<String>, u64);
}

impl Answer for IdentifyResponse {
    fn matched(&self) -> bool {
        self.r#match
    }
    fn disclosed(&self) -> (Vec<String>, u64) {
        let ids = self.candidates.iter().map(|c| c.subject_id.clone());
        (ids.collect(), self.gallery_generation)
    }
}

/// A Verify answer with the subject it was asked about.
struct Verified {
    response: proto::VerifyResponse,
    subject: String,
}

impl Answer for Verified {
    fn matched(&self) -> bool {
        self.response.r#match
    }
    fn disclosed(&self) -> (Vec<String>, u64) {
        (vec![self.subject.clone()], self.response.gallery_generation)
    }
}

/// Writes the request's audit record (when the trail is on), then counts
/// it; the answer leaves only once its record is durable (UNAVAILABLE when
/// it cannot be made so). `named` are the subjects the request itself
/// named, recorded when it failed.
async fn finish<T: Answer>(
    svc: &MatcherService,
    rpc: &str,
    caller: &Caller,
    result: Result<T, Status>,
    named: impl FnOnce() -> Vec<String>,
) -> Result<T, Status> {
    let result = if svc.auditor.is_enabled() {
        let event = match &result {
            Ok(v) => {
                let (subjects, generation) = v.disclosed();
                let matched = Some(v.matched());
                caller.event(rpc, tonic::Code::Ok, matched, subjects, generation)
            }
            Err(s) => caller.event(rpc, s.code(), None, named(), 0),
        };
        match svc.auditor.record(event).await {
            Ok(_) => result,
            Err(reason) => Err(not_audited(&reason)),
        }
    } else {
        result
    };
    let (code, matched) = match &result {
        Ok(v) => (tonic::Code::Ok, Some(v.matched())),
        Err(s) => (s.code(), None),
    };
    count(
        &svc.state,
        rpc,
        caller.port(),
        caller.arrived,
        code,
        matched,
    );
    result
}

#[tonic::async_trait]
impl Matcher for MatcherService {
    async fn identify(
        &self,
        mut req: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let clock = RequestClock::of(&req);
        let _live = InFlight::new(self.state.metrics());
        let capture = req.get_mut().capture.take();
        let caller = Caller::new(&req, &req.get_ref().request_id, capture, clock.arrived);
        let r = req.into_inner();
        let span =
            tracing::info_span!("identify", port = %caller.port(), request_id = %r.request_id);
        let result = async {
            caller.authorise()?;
            identify_one(&self.state, r, clock, caller.port()).await
        }
        .instrument(span)
        .await;
        finish(self, "Identify", &caller, result, Vec::new)
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
                    let _live = InFlight::new(svc.state.metrics());
                    let request_id = r.request_id.clone();
                    let caller = base.with(&r.request_id, r.capture.take(), clock.arrived);
                    let span = tracing::info_span!("identify_stream", port = %caller.port(), request_id = %r.request_id);
                    let result = async {
                        caller.authorise()?;
                        identify_one(&svc.state, r, clock, caller.port()).await
                    }
                    .instrument(span)
                    .await;
                    let result = finish(&svc, "IdentifyStream", &caller, result, Vec::new).await;
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
        let _live = InFlight::new(self.state.metrics());
        let capture = req.get_mut().capture.take();
        let caller = Caller::new(&req, &req.get_ref().request_id, capture, clock.arrived);
        let r = req.into_inner();
        let span = tracing::info_span!("verify", port = %caller.port(), request_id = %r.request_id);
        // A few hundred rows at most: answered inline, never queued behind a scan.
        let result = span.in_scope(|| {
            tracing::debug!("verify");
            caller
                .authorise()
                .and_then(|()| clock.check())
                .and_then(|()| self.state.verify(&r, clock.arrived))
        });
        let result = result.map(|response| Verified {
            response,
            subject: r.subject_id.clone(),
        });
        finish(self, "Verify", &caller, result, || vec![r.subject_id])
            .await
            .map(|v| Response::new(v.response))
    }

    async fn get_gallery_info(
        &self,
        _: Request<GetGalleryInfoRequest>,
    ) -> Result<Response<GalleryInfo>, Status> {
        Ok(Response::new(self.state.info()))
    }
}
