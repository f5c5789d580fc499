//! The `facegate.v1.Matcher` gRPC service.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

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
}

impl MatcherService {
    /// A service over `state`.
    pub fn new(state: Arc<ServingState>) -> Self {
        MatcherService { state }
    }
}

async fn identify_one(
    state: &ServingState,
    r: IdentifyRequest,
    clock: RequestClock,
) -> Result<IdentifyResponse, Status> {
    clock.check()?;
    let job = state.identify_job(&r)?;
    let budget_ms = clock
        .deadline
        .map(|d| d.saturating_duration_since(clock.arrived).as_millis() as u64);
    tracing::debug!(top_k = r.top_k, ?budget_ms, "identify");
    let port = port_of(r.capture.as_ref());
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

fn port_of(capture: Option<&proto::CaptureContext>) -> &str {
    capture.map(|c| c.port_id.as_str()).unwrap_or("")
}

/// Records a finished request: count by code, latency, and the decision.
fn record(
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

fn outcome<T>(r: &Result<T, Status>, matched: impl Fn(&T) -> bool) -> (tonic::Code, Option<bool>) {
    match r {
        Ok(v) => (tonic::Code::Ok, Some(matched(v))),
        Err(s) => (s.code(), None),
    }
}

#[tonic::async_trait]
impl Matcher for MatcherService {
    async fn identify(
        &self,
        req: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let clock = RequestClock::of(&req);
        let _live = InFlight::new(self.state.metrics());
        let r = req.into_inner();
        let port = port_of(r.capture.as_ref()).to_string();
        let span = tracing::info_span!("identify", port = %port, request_id = %r.request_id);
        let result = identify_one(&self.state, r, clock).instrument(span).await;
        let (code, matched) = outcome(&result, |v| v.r#match);
        record(&self.state, "Identify", &port, clock.arrived, code, matched);
        result.map(Response::new)
    }

    type IdentifyStreamStream = ReceiverStream<Result<IdentifyResponse, Status>>;

    async fn identify_stream(
        &self,
        req: Request<Streaming<IdentifyRequest>>,
    ) -> Result<Response<Self::IdentifyStreamStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_IN_FLIGHT);
        let state = self.state.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(STREAM_IN_FLIGHT));
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => break, // the client went away: stop reading
                    m = inbound.message() => m,
                };
                let r = match next {
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
                let (state, tx) = (state.clone(), tx.clone());
                tokio::spawn(async move {
                    if tx.is_closed() {
                        return; // cancelled before it started: do no work
                    }
                    let clock = RequestClock {
                        arrived: Instant::now(),
                        deadline: None,
                    };
                    let _live = InFlight::new(state.metrics());
                    let request_id = r.request_id.clone();
                    let port = port_of(r.capture.as_ref()).to_string();
                    let span = tracing::info_span!("identify_stream", port = %port, request_id = %r.request_id);
                    let result = identify_one(&state, r, clock).instrument(span).await;
                    let (code, matched) = outcome(&result, |v| v.r#match);
                    record(
                        &state,
                        "IdentifyStream",
                        &port,
                        clock.arrived,
                        code,
                        matched,
                    );
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
        req: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let clock = RequestClock::of(&req);
        let _live = InFlight::new(self.state.metrics());
        let r = req.into_inner();
        let port = port_of(r.capture.as_ref());
        let span = tracing::info_span!("verify", port, request_id = %r.request_id);
        // A few hundred rows at most: answered inline, never queued behind a scan.
        let result = span.in_scope(|| {
            tracing::debug!("verify");
            clock
                .check()
                .and_then(|()| self.state.verify(&r, clock.arrived))
        });
        let (code, matched) = outcome(&result, |v| v.r#match);
        record(&self.state, "Verify", port, clock.arrived, code, matched);
        result.map(Response::new)
    }

    async fn get_gallery_info(
        &self,
        _: Request<GetGalleryInfoRequest>,
    ) -> Result<Response<GalleryInfo>, Status> {
        Ok(Response::new(self.state.info()))
    }
}
