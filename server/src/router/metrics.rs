//! The router's own series, exported beside the request, audit and
//! security series it shares with the server: each replica's health, each
//! shard's call latency, retries, hedges, and the answers that could not
//! be complete.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::fleet::Replica;

/// Shard call latency buckets, seconds: 0.5 ms to 5 s.
const SHARD_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0,
];

/// The router's series.
pub struct RouterMetrics {
    /// 1 while a replica is in rotation, by shard and replica URL.
    pub replica_up: IntGaugeVec,
    /// Calls to shards by shard, RPC and outcome (ok, unavailable, error,
    /// deadline).
    pub shard_calls: IntCounterVec,
    /// Latency of one shard's answer (the successful attempt), by shard.
    pub shard_seconds: HistogramVec,
    /// Calls sent again to another replica after UNAVAILABLE, by shard.
    pub retries: IntCounterVec,
    /// Second copies sent to another replica of a slow shard, by shard.
    pub hedges: IntCounterVec,
    /// Searches that found every replica of a shard down, by shard and
    /// what the router did: "refused" (UNAVAILABLE) or "partial".
    pub shard_missing: IntCounterVec,
}

impl RouterMetrics {
    /// Registers the router's series in `registry`.
    pub fn register(registry: &Registry) -> anyhow::Result<RouterMetrics> {
        let gauge = |name: &str, help: &str, labels: &[&str]| -> anyhow::Result<IntGaugeVec> {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| -> anyhow::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let opts = HistogramOpts::new(
            "facegate_router_shard_seconds",
            "Latency of a shard's answer to the router, by shard.",
        )
        .buckets(SHARD_BUCKETS.to_vec());
        let shard_seconds = HistogramVec::new(opts, &["shard"])?;
        registry.register(Box::new(shard_seconds.clone()))?;
        Ok(RouterMetrics {
            replica_up: gauge(
                "facegate_router_replica_up",
                "1 while the replica is in the router's rotation (health SERVING), else 0.",
                &["shard", "replica"],
            )?,
            shard_calls: counter(
                "facegate_router_shard_calls_total",
                "Calls from the router to a shard, by shard, RPC and outcome.",
                &["shard", "rpc", "outcome"],
            )?,
            shard_seconds,
            retries: counter(
                "facegate_router_retries_total",
                "Calls sent again to another replica after UNAVAILABLE, by shard.",
                &["shard"],
            )?,
            hedges: counter(
                "facegate_router_hedges_total",
                "Second copies of a slow call sent to another replica, by shard.",
                &["shard"],
            )?,
            shard_missing: counter(
                "facegate_router_shard_missing_total",
                "Searches that found every replica of a shard down, by shard and action (refused, partial).",
                &["shard", "action"],
            )?,
        })
    }

    /// Creates every per-shard series at zero, so that dashboards and
    /// alerts see a series (and a rate of 0) before the first event.
    pub fn init_shards(&self, shards: u32) {
        for shard in (0..shards).map(|k| k.to_string()) {
            self.retries.with_label_values(&[&shard]);
            self.hedges.with_label_values(&[&shard]);
            for action in ["refused", "partial"] {
                self.shard_missing.with_label_values(&[&shard, action]);
            }
            for outcome in ["ok", "unavailable", "error", "deadline"] {
                self.shard_calls
                    .with_label_values(&[&shard, "Identify", outcome]);
            }
        }
    }

    /// Records whether `replica` is in rotation.
    pub fn set_replica_up(&self, replica: &Replica, up: bool) {
        self.replica_up
            .with_label_values(&[&replica.shard.to_string(), &replica.url])
            .set(i64::from(up));
    }
}
