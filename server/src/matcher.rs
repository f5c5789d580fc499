//! The `facegate.v1.Matcher` gRPC service.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

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
    let port = r.capture.as_ref().map(|c| c.port_id.as_str()).unwrap_or("");
    let budget_ms = clock
        .deadline
        .map(|d| d.saturating_duration_since(clock.arrived).as_millis() as u64);
    tracing::debug!(request_id = %r.request_id, port, top_k = r.top_k, ?budget_ms, "identify");
    let ranked = state.search(&job, clock.deadline).await?;
    state.identify_response(r.request_id, &job, ranked, clock.arrived)
}

#[tonic::async_trait]
impl Matcher for MatcherService {
    async fn identify(
        &self,
        req: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let clock = RequestClock::of(&req);
        identify_one(&self.state, req.into_inner(), clock)
            .await
            .map(Response::new)
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
                    let request_id = r.request_id.clone();
                    let resp =
                        identify_one(&state, r, clock)
                            .await
                            .unwrap_or_else(|s| IdentifyResponse {
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
        clock.check()?;
        let r = req.into_inner();
        let port = r.capture.as_ref().map(|c| c.port_id.as_str()).unwrap_or("");
        tracing::debug!(request_id = %r.request_id, port, "verify");
        // A few hundred rows at most: answered inline, never queued behind a scan.
        self.state.verify(&r, clock.arrived).map(Response::new)
    }

    async fn get_gallery_info(
        &self,
        _: Request<GetGalleryInfoRequest>,
    ) -> Result<Response<GalleryInfo>, Status> {
        Ok(Response::new(self.state.info()))
    }
}
