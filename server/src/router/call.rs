//! One call to one shard: sent to its best replica ([`Fleet::choices`]),
//! again to the next one when a replica answers UNAVAILABLE or its
//! connection breaks (it is taken out of rotation), and, with hedging on, to a second replica when the
//! first is slow; the first answer wins and the other call is cancelled.
//! Every attempt carries the time left of the caller's deadline and the
//! caller's name ([`ON_BEHALF_OF`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tonic::{Code, Status};

use super::fleet::{Fleet, Replica};
use super::health::mark;
use super::metrics::RouterMetrics;
use crate::auth::ON_BEHALF_OF;
use crate::route_error::RouterError;

/// Why a shard gave no answer.
#[derive(Debug)]
pub enum ShardError {
    /// Every replica of the shard is down (or failed with UNAVAILABLE).
    Down(u32),
    /// A replica answered with this error (the request's fault, or the
    /// deadline): another replica would answer the same.
    Status(Status),
}

/// What every call of one routed request shares.
#[derive(Clone)]
pub struct Route {
    /// The shards and their replicas.
    pub fleet: Arc<Fleet>,
    /// Where calls are counted.
    pub metrics: Arc<RouterMetrics>,
    /// By when every shard must have answered.
    pub deadline: Instant,
    /// A second copy of a call after this long; `None`: no hedging.
    pub hedge_after: Option<Duration>,
    /// The caller the router authenticated, forwarded to the shards.
    pub on_behalf_of: Option<Arc<str>>,
}

type Attempt<T> = Pin<Box<dyn Future<Output = (Arc<Replica>, Result<T, Status>)> + Send>>;

impl Route {
    /// A request for one attempt: `message` with the time left and the
    /// caller's name.
    pub fn request<M>(&self, message: M) -> tonic::Request<M> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.deadline.saturating_duration_since(Instant::now()));
        if let Some(name) = &self.on_behalf_of
            && let Ok(value) = name.parse()
        {
            req.metadata_mut().insert(ON_BEHALF_OF, value);
        }
        req
    }

    /// Calls shard `shard` with `send` (given a replica, it makes the call
    /// on one of that replica's channels), retrying and hedging as the
    /// module says, within the deadline.
    pub async fn call<T, F, Fut>(&self, shard: u32, rpc: &str, send: F) -> Result<T, ShardError>
    where
        T: Send + 'static,
        F: Fn(Arc<Replica>) -> Fut,
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
    {
        let started = Instant::now();
        let left = self.deadline.saturating_duration_since(started);
        let result = match tokio::time::timeout(left, self.attempts(shard, &send)).await {
            Ok(r) => r,
            Err(_) => Err(ShardError::Status(RouterError::ShardLate { shard }.into())),
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ShardError::Down(_)) => "unavailable",
            Err(ShardError::Status(s)) if s.code() == Code::DeadlineExceeded => "deadline",
            Err(ShardError::Status(_)) => "error",
        };
        let label = shard.to_string();
        self.metrics
            .shard_calls
            .with_label_values(&[&label, rpc, outcome])
            .inc();
        if result.is_ok() {
            self.metrics
                .shard_seconds
                .with_label_values(&[&label])
                .observe(started.elapsed().as_secs_f64());
        }
        result
    }

    async fn attempts<T, F, Fut>(&self, shard: u32, send: &F) -> Result<T, ShardError>
    where
        T: Send + 'static,
        F: Fn(Arc<Replica>) -> Fut,
        Fut: Future<Output = Result<T, Status>> + Send + 'static,
    {
        let start = |replica: Arc<Replica>| -> Attempt<T> {
            let busy = replica.busy();
            let call = send(replica.clone());
            Box::pin(async move {
                let result = call.await;
                drop(busy);
                (replica, result)
            })
        };
        let mut choices = self.fleet.choices(shard).into_iter();
        let mut pending = FuturesUnordered::new();
        pending.push(start(choices.next().ok_or(ShardError::Down(shard))?));
        let mut hedged = self.hedge_after.is_none();
        let label = shard.to_string();
        loop {
            let finished = match (hedged, self.hedge_after) {
                (false, Some(after)) if choices.len() > 0 => tokio::select! {
                    f = pending.next() => f,
                    _ = tokio::time::sleep(after) => {
                        hedged = true;
                        if let Some(r) = choices.next() {
                            self.metrics.hedges.with_label_values(&[&label]).inc();
                            pending.push(start(r));
                        }
                        continue;
                    }
                },
                _ => pending.next().await,
            };
            let Some((replica, result)) = finished else {
                return Err(ShardError::Down(shard));
            };
            match result {
                Ok(answer) => return Ok(answer),
                Err(status) if replica_failed(&status) => {
                    tracing::debug!(shard, replica = %replica.url, %status, "replica unavailable");
                    mark(
                        &replica,
                        &self.metrics,
                        false,
                        "call failed: replica unavailable",
                    );
                    if let Some(next) = choices.next() {
                        self.metrics.retries.with_label_values(&[&label]).inc();
                        pending.push(start(next));
                    } else if pending.is_empty() {
                        return Err(ShardError::Down(shard));
                    }
                }
                Err(status) => return Err(ShardError::Status(status)),
            }
        }
    }
}

/// Whether `status` says the replica failed, not the request: UNAVAILABLE
/// (refused connection, draining, a store that cannot write), or the
/// connection lost mid-call. A replica killed with the request in flight
/// shows as UNKNOWN (the connection reset) or as CANCELLED (hyper drops a
/// request queued on a connection that just closed: "operation was
/// canceled"); tonic makes both from the transport's error and keeps that
/// error as the status's source, where a status a server sent has none.
/// The searches the router retries read only, so sending one again is
/// safe.
fn replica_failed(status: &Status) -> bool {
    use std::error::Error;
    match status.code() {
        Code::Unavailable => true,
        Code::Unknown | Code::Cancelled => status.source().is_some(),
        _ => false,
    }
}

impl Route {
    /// Sends a change to every replica of `shard` at once (each replica
    /// keeps its own change log, so each must take it), each replica's
    /// result in order. Refused with UNAVAILABLE, before anything is sent,
    /// when a replica of the shard is down: a change that reached only
    /// some replicas would make them answer differently. Changes are
    /// idempotent (enrolment replaces, staging again is a no-op), so a
    /// caller retries one that failed part-way.
    pub async fn on_every_replica<T, F, Fut>(
        &self,
        shard: u32,
        send: F,
    ) -> Result<Vec<Result<T, Status>>, Status>
    where
        F: Fn(Arc<Replica>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let replicas = self.fleet.shard(shard);
        if let Some(down) = replicas.iter().find(|r| !r.is_up()) {
            return Err(RouterError::ReplicaDown {
                replica: down.url.to_string(),
                shard,
            }
            .into());
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        let calls = replicas.iter().map(|r| send(r.clone()));
        tokio::time::timeout(left, futures_util::future::join_all(calls))
            .await
            .map_err(|_| RouterError::ReplicasLate { shard }.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport's error carrying the status tonic finds in it, as
    /// hyper's errors reach tonic's client.
    #[derive(Debug, thiserror::Error)]
    #[error("transport")]
    struct Transport(#[source] Status);

    fn from_transport(status: Status) -> Status {
        Status::from_error(Box::new(Transport(status)))
    }

    #[test]
    fn a_lost_connection_is_the_replicas_failure_and_a_sent_status_is_not() {
        let lost = from_transport(Status::cancelled("operation was canceled"));
        assert_eq!(lost.code(), Code::Cancelled);
        assert!(replica_failed(&lost), "a connection closed under the call");
        assert!(replica_failed(&from_transport(Status::unknown("reset"))));
        assert!(replica_failed(&Status::unavailable("draining")));

        assert!(!replica_failed(&Status::cancelled("the caller gave up")));
        assert!(!replica_failed(&Status::unknown("a handler's error")));
        assert!(!replica_failed(&Status::invalid_argument("bad probe")));
        let sent_late = from_transport(Status::deadline_exceeded("late"));
        assert!(!replica_failed(&sent_late), "another replica is as late");
    }
}
