//! Prometheus metrics, served on their own HTTP listener at `/metrics`.
//!
//! Names and units follow Prometheus conventions; labels stay low
//! cardinality: RPC, gRPC status code, engine kind, and the port of entry,
//! which comes from clients and so is capped (see [`Metrics::port_label`]).
//! No subject id, request id or template ever becomes a label.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Distinct `port` label values kept before new ports are counted as "other".
pub const MAX_PORT_LABELS: usize = 1000;

/// Latency buckets, seconds: 0.5 ms to 5 s (the service budget is 2 s).
const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0,
];

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by RPC, port and final gRPC status code.
    pub requests: IntCounterVec,
    /// End-to-end request latency by RPC.
    pub request_seconds: HistogramVec,
    /// Time a search waited in the dispatcher queue before its batch started.
    pub queue_wait_seconds: Histogram,
    /// Time inside the engine, by engine kind (cpu, gpu).
    pub engine_seconds: HistogramVec,
    /// Probes per engine call.
    pub batch_size: Histogram,
    /// Requests being served.
    pub in_flight: IntGauge,
    /// Searches waiting in the dispatcher queue.
    pub queue_depth: IntGauge,
    /// Most probes the next batch may take: `--batch-max-size`, or fewer
    /// where the learned batch cost would overrun the batch time target. A
    /// batch size histogram at this limit means the engine is saturated.
    pub batch_limit: IntGauge,
    /// The dispatcher's learned batch cost (`facegate_batch_cost_seconds`),
    /// part `fixed`: seconds every batch pays. With the per-probe part it
    /// gives the engine's capacity at any batch size, and it is what
    /// admission and the batch limit are computed from.
    pub batch_cost_fixed: Gauge,
    /// The same, part `per_probe`: seconds each probe adds to a batch.
    pub batch_cost_per_probe: Gauge,
    /// Requests refused for load (load shedding).
    pub shed: IntCounter,
    /// Requests whose deadline passed while queued, dropped unsearched.
    pub queue_expired: IntCounter,
    /// Match and no-match decisions by RPC.
    pub decisions: IntCounterVec,
    /// Template rows in the gallery.
    pub gallery_rows: IntGauge,
    /// Subjects in the gallery.
    pub gallery_subjects: IntGauge,
    /// Size of the gallery file.
    pub gallery_bytes: IntGauge,
    /// 1, labelled with the gallery's generation, model tag and element type.
    pub gallery_info: IntGaugeVec,
    /// 1 for the engine answering 1:N, labelled with its name and kind.
    pub engine_info: IntGaugeVec,
    /// GPU memory held by the gallery rows.
    pub gpu_memory_bytes: IntGauge,
    /// 1 once the GPU engine has been given up for the CPU.
    pub engine_fallback: IntGauge,
    /// Online changes by kind (enroll, remove) and outcome (ok, or why not).
    pub gallery_changes: IntCounterVec,
    /// Templates enrolled online, not yet folded into the base by a rebuild.
    pub gallery_delta_rows: IntGauge,
    /// Base subjects removed or re-enrolled online (their base rows are masked).
    pub gallery_masked_subjects: IntGauge,
    /// Bytes in the change log (grows until the next rebuild and reload).
    pub change_log_bytes: IntGauge,
    /// Gallery generations adopted by a reload.
    pub gallery_reloads: IntCounter,
    /// Audit records made durable.
    pub audit_records: IntCounter,
    /// Audit records that could not be written (their searches were refused).
    pub audit_failures: IntCounter,
    /// Time to write and fsync one batch of audit records.
    pub audit_commit_seconds: Histogram,
    /// Calls refused for a missing or unknown API key, by listener.
    pub auth_failures: IntCounterVec,
    ports: Mutex<HashSet<String>>,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(r: &Registry, c: T) -> T {
    // Names are fixed and distinct, so registration cannot fail.
    r.register(Box::new(c.clone()))
        .expect("metric names are unique");
    c
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Arc<Metrics> {
        let r = Registry::new();
        let hist = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };
        let batch_cost = register(
            &r,
            GaugeVec::new(
                Opts::new(
                    "facegate_batch_cost_seconds",
                    "Learned engine time per batch: fixed part and time per probe.",
                ),
                &["part"],
            )
            .expect("valid"),
        );
        let m = Metrics {
            requests: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_requests_total",
                        "Requests by RPC, port of entry and gRPC status code.",
                    ),
                    &["rpc", "port", "code"],
                )
                .expect("valid"),
            ),
            request_seconds: register(
                &r,
                HistogramVec::new(
                    hist(
                        "facegate_request_duration_seconds",
                        "End-to-end request latency.",
                    ),
                    &["rpc"],
                )
                .expect("valid"),
            ),
            queue_wait_seconds: register(
                &r,
                Histogram::with_opts(hist(
                    "facegate_queue_wait_seconds",
                    "Time a search waited in the dispatcher queue before its batch started.",
                ))
                .expect("valid"),
            ),
            engine_seconds: register(
                &r,
                HistogramVec::new(
                    hist(
                        "facegate_engine_duration_seconds",
                        "Time inside the search engine.",
                    ),
                    &["kind"],
                )
                .expect("valid"),
            ),
            batch_size: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("facegate_batch_size", "Probes per engine call.").buckets(
                        vec![
                            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                        ],
                    ),
                )
                .expect("valid"),
            ),
            in_flight: register(
                &r,
                IntGauge::new("facegate_in_flight_requests", "Requests being served.")
                    .expect("valid"),
            ),
            queue_depth: register(
                &r,
                IntGauge::new(
                    "facegate_queue_depth",
                    "Searches waiting in the dispatcher queue.",
                )
                .expect("valid"),
            ),
            batch_limit: register(
                &r,
                IntGauge::new(
                    "facegate_batch_limit",
                    "Most probes the next batch may take (batch max size, or fewer to meet the batch time target).",
                )
                .expect("valid"),
            ),
            batch_cost_fixed: batch_cost.with_label_values(&["fixed"]),
            batch_cost_per_probe: batch_cost.with_label_values(&["per_probe"]),
            shed: register(
                &r,
                IntCounter::new("facegate_shed_requests_total", "Requests refused for load.")
                    .expect("valid"),
            ),
            queue_expired: register(
                &r,
                IntCounter::new(
                    "facegate_queue_expired_total",
                    "Searches whose deadline passed while queued; dropped before the engine.",
                )
                .expect("valid"),
            ),
            decisions: register(
                &r,
                IntCounterVec::new(
                    Opts::new("facegate_decisions_total", "Match and no-match decisions."),
                    &["rpc", "decision"],
                )
                .expect("valid"),
            ),
            gallery_rows: register(
                &r,
                IntGauge::new("facegate_gallery_rows", "Template rows in the gallery.")
                    .expect("valid"),
            ),
            gallery_subjects: register(
                &r,
                IntGauge::new("facegate_gallery_subjects", "Subjects in the gallery.")
                    .expect("valid"),
            ),
            gallery_bytes: register(
                &r,
                IntGauge::new("facegate_gallery_bytes", "Size of the gallery file.")
                    .expect("valid"),
            ),
            gallery_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "facegate_gallery_info",
                        "The gallery being served (value 1).",
                    ),
                    &["generation", "model_tag", "element_type"],
                )
                .expect("valid"),
            ),
            engine_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "facegate_engine_info",
                        "The engine answering 1:N searches (value 1).",
                    ),
                    &["engine", "kind"],
                )
                .expect("valid"),
            ),
            gpu_memory_bytes: register(
                &r,
                IntGauge::new(
                    "facegate_gpu_memory_bytes",
                    "GPU memory held by the gallery rows.",
                )
                .expect("valid"),
            ),
            engine_fallback: register(
                &r,
                IntGauge::new(
                    "facegate_engine_fallback",
                    "1 once the GPU engine has been given up for the CPU.",
                )
                .expect("valid"),
            ),
            gallery_changes: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_gallery_changes_total",
                        "Online gallery changes by kind and outcome.",
                    ),
                    &["kind", "outcome"],
                )
                .expect("valid"),
            ),
            gallery_delta_rows: register(
                &r,
                IntGauge::new(
                    "facegate_gallery_delta_rows",
                    "Templates enrolled online since the base gallery was built.",
                )
                .expect("valid"),
            ),
            gallery_masked_subjects: register(
                &r,
                IntGauge::new(
                    "facegate_gallery_masked_subjects",
                    "Base subjects removed or re-enrolled online.",
                )
                .expect("valid"),
            ),
            change_log_bytes: register(
                &r,
                IntGauge::new(
                    "facegate_change_log_bytes",
                    "Durable bytes in the change log of online changes.",
                )
                .expect("valid"),
            ),
            gallery_reloads: register(
                &r,
                IntCounter::new(
                    "facegate_gallery_reloads_total",
                    "Gallery generations adopted by a reload (Reload RPC or SIGHUP).",
                )
                .expect("valid"),
            ),
            audit_records: register(
                &r,
                IntCounter::new(
                    "facegate_audit_records_total",
                    "Audit records written and fsync'd.",
                )
                .expect("valid"),
            ),
            audit_failures: register(
                &r,
                IntCounter::new(
                    "facegate_audit_failures_total",
                    "Audit records that could not be made durable; their searches were refused.",
                )
                .expect("valid"),
            ),
            audit_commit_seconds: register(
                &r,
                Histogram::with_opts(hist(
                    "facegate_audit_commit_seconds",
                    "Time to write and fsync one group of audit records.",
                ))
                .expect("valid"),
            ),
            auth_failures: register(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_auth_failures_total",
                        "Calls refused for a missing or unknown API key, by listener (ports, admin).",
                    ),
                    &["listener"],
                )
                .expect("valid"),
            ),
            registry: r,
            ports: Mutex::new(HashSet::new()),
        };
        let build = register(
            &m.registry,
            IntGaugeVec::new(
                Opts::new("facegate_build_info", "Build of the server (value 1)."),
                &["version"],
            )
            .expect("valid"),
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        Arc::new(m)
    }

    /// The label for a client-given port id: "unknown" when absent,
    /// "invalid" when it is not a short printable token, "other" once
    /// [`MAX_PORT_LABELS`] distinct ports have been seen.
    pub fn port_label<'a>(&self, port: &'a str) -> std::borrow::Cow<'a, str> {
        if port.is_empty() {
            return "unknown".into();
        }
        if port.len() > 64
            || !port
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
        {
            return "invalid".into();
        }
        let mut seen = self.ports.lock().unwrap_or_else(|p| p.into_inner());
        // Allocate only the first time a port is seen.
        if seen.contains(port) {
            port.into()
        } else if seen.len() < MAX_PORT_LABELS {
            seen.insert(port.to_string());
            port.into()
        } else {
            "other".into()
        }
    }

    /// Records which engine answers 1:N now.
    pub fn set_engine(&self, name: &str) {
        self.engine_info.reset();
        let kind = name.split('/').next().unwrap_or("unknown");
        self.engine_info.with_label_values(&[name, kind]).set(1);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The canonical name of a gRPC status code, as gRPC documents it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Serves `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move { ([("content-type", "text/plain; version=0.0.4")], m.encode()) }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context;
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_labels_are_bounded() {
        let m = Metrics::new();
        assert_eq!(m.port_label(""), "unknown");
        assert_eq!(m.port_label("JFK-T4"), "JFK-T4");
        assert_eq!(m.port_label("bad port\\n"), "invalid");
        assert_eq!(m.port_label(&"x".repeat(65)), "invalid");
        for i in 0..MAX_PORT_LABELS {
            m.port_label(&format!("P{i}"));
        }
        assert_eq!(
            m.port_label("JFK-T4"),
            "JFK-T4",
            "a known port keeps its label"
        );
        assert_eq!(m.port_label("NEW-PORT"), "other");
    }

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new();
        m.requests
            .with_label_values(&["Identify", "JFK", "OK"])
            .inc();
        m.request_seconds
            .with_label_values(&["Identify"])
            .observe(0.01);
        m.set_engine("cpu/avx2");
        let text = m.encode();
        for name in [
            "facegate_requests_total",
            "facegate_request_duration_seconds_bucket",
            "facegate_engine_info",
            "facegate_build_info",
            "facegate_batch_cost_seconds{part=\"per_probe\"}",
            "facegate_batch_limit",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
