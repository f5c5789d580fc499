//! Watches each replica: every interval, a gRPC health check of its
//! Matcher and, when it is serving, its GalleryInfo (kept for the router's
//! GetGalleryInfo and thresholds). A replica that stops answering, answers
//! NOT_SERVING (draining), or fails a call with UNAVAILABLE is taken out of
//! rotation until a check finds it serving again.

use std::sync::Arc;
use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::fleet::{Fleet, Replica};
use super::metrics::RouterMetrics;
use crate::proto::GetGalleryInfoRequest;
use crate::proto::matcher_client::MatcherClient;

/// The service whose health decides whether a replica takes searches.
const WATCHED: &str = "facegate.v1.Matcher";

/// Checks every replica once (so that the router starts knowing which are
/// up), then keeps checking each on its own task in `tasks` every
/// `interval`.
pub async fn watch(
    fleet: &Arc<Fleet>,
    metrics: &Arc<RouterMetrics>,
    interval: Duration,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let first = fleet
        .replicas()
        .map(|r| check_and_mark(r.clone(), metrics.clone(), interval));
    for check in first.collect::<Vec<_>>() {
        check.await;
    }
    for r in fleet.replicas() {
        tasks.spawn(keep_watching(r.clone(), metrics.clone(), interval));
    }
}

async fn keep_watching(replica: Arc<Replica>, metrics: Arc<RouterMetrics>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        check_and_mark(replica.clone(), metrics.clone(), interval).await;
    }
}

async fn check_and_mark(replica: Arc<Replica>, metrics: Arc<RouterMetrics>, interval: Duration) {
    // A check may take the whole interval, but not less than a slow
    // replica's ordinary answer.
    let budget = interval.max(Duration::from_millis(500));
    let serving = tokio::time::timeout(budget, serving(&replica))
        .await
        .unwrap_or(false);
    mark(&replica, &metrics, serving, "health check");
    if serving && let Ok(Ok(info)) = tokio::time::timeout(budget, gallery_info(&replica)).await {
        replica.set_info(info);
    }
}

/// Takes `replica` in or out of rotation, logging and counting a change.
pub fn mark(replica: &Replica, metrics: &RouterMetrics, up: bool, why: &str) {
    metrics.set_replica_up(replica, up);
    if replica.set_up(up) {
        match up {
            true => {
                tracing::info!(shard = replica.shard, replica = %replica.url, "replica up ({why})")
            }
            false => {
                tracing::warn!(shard = replica.shard, replica = %replica.url, "replica down ({why})")
            }
        }
    }
}

async fn serving(replica: &Replica) -> bool {
    let mut client = HealthClient::new(replica.ports.clone());
    let request = HealthCheckRequest {
        service: WATCHED.to_string(),
    };
    match client.check(request).await {
        Ok(r) => r.into_inner().status == ServingStatus::Serving as i32,
        Err(_) => false,
    }
}

async fn gallery_info(replica: &Replica) -> Result<crate::proto::GalleryInfo, tonic::Status> {
    let mut client = MatcherClient::new(replica.ports.clone());
    Ok(client
        .get_gallery_info(GetGalleryInfoRequest {})
        .await?
        .into_inner())
}
