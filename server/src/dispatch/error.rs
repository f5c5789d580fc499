//! Why the dispatcher did not answer a search; the wire layer maps each case
//! to a gRPC status (`crate::status`), so the dispatcher knows nothing of gRPC.

use std::sync::Arc;
use std::time::Duration;

use facegate_core::SearchError;

/// A search the dispatcher refused, dropped or could not run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DispatchError {
    /// Refused on arrival or evicted from a full queue: the server is
    /// overloaded and the client should retry after `retry_after` (the
    /// queue wait that made it refuse; sent as gRPC's retry pushback).
    #[error("server overloaded: {reason}; retry in {} ms", retry_after.as_millis())]
    Overloaded {
        /// Why it was refused.
        reason: &'static str,
        /// How long the queue ahead was expected to take.
        retry_after: Duration,
    },
    /// The dispatcher is stopping and takes no more work.
    #[error("server shutting down")]
    ShuttingDown,
    /// The request's deadline passed while it waited; it was never searched.
    #[error("deadline passed while queued; not searched")]
    ExpiredInQueue,
    /// The request's deadline passed while its batch was on the engine.
    #[error("deadline passed before the search finished")]
    DeadlineExceeded,
    /// The dispatcher dropped the request without an answer (it stopped
    /// mid-batch); the search may be retried.
    #[error("search dropped by the dispatcher; retry")]
    Dropped,
    /// The engine failed the whole batch; shared by every request in it.
    #[error("search failed: {0}")]
    Search(Arc<SearchError>),
    /// The engine answered a different number of probes than it was given.
    #[error("search engine answered inconsistently")]
    Inconsistent,
}
