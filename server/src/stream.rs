//! IdentifyStream's loop, for the server's Matcher and the router's: reads
//! a port's requests, answers up to [`STREAM_IN_FLIGHT`] at once, sends each
//! response as soon as it is ready (out of order; a failure as a response
//! with `error` set, the stream staying open), and stops reading when the
//! client goes away.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::proto::{self, IdentifyRequest, IdentifyResponse};

/// Probes of one stream searched at once; more wait for a slot, which pushes
/// back on the client through flow control.
pub const STREAM_IN_FLIGHT: usize = 32;

/// The responses to `inbound`, each request answered by `answer`.
pub fn identify_stream<F, Fut>(
    mut inbound: Streaming<IdentifyRequest>,
    answer: F,
) -> ReceiverStream<Result<IdentifyResponse, Status>>
where
    F: Fn(IdentifyRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<IdentifyResponse, Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(STREAM_IN_FLIGHT);
    let answer = Arc::new(answer);
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
            let (tx, answer) = (tx.clone(), answer.clone());
            tokio::spawn(async move {
                if tx.is_closed() {
                    return; // cancelled before it started: do no work
                }
                let request_id = r.request_id.clone();
                let resp = answer(r).await.unwrap_or_else(|s| IdentifyResponse {
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
    ReceiverStream::new(rx)
}
