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

/// Buckets of the wait an answer has for its encounter record once the
/// rest of it is durable, seconds: 50 us to 100 ms, fine below the 1 ms
/// that recording may add to a request.
const RECORD_WAIT_BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.000_75, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// Score buckets of the best candidate (cosine, -1..1): fine around the
/// thresholds in use (0.3 to 0.5), coarse at the ends, so a shift of the
/// median by 0.05 shows.
const SCORE_BUCKETS: [f64; 16] = [
    0.0, 0.1, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0,
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
    /// Best candidate's score of each answered Identify and Verify, by RPC
    /// and port: a failing camera or a drifting model moves a port's
    /// distribution before its error rates can be measured.
    pub best_score: HistogramVec,
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
    /// Signed audit checkpoints written.
    pub audit_seals: IntCounter,
    /// Signed audit checkpoints that could not be written (their records
    /// stay pending, unsigned, until the next one succeeds).
    pub audit_seal_failures: IntCounter,
    /// Calls refused at authentication (no or unknown credential, or a
    /// role the service does not admit), by listener.
    pub auth_failures: IntCounterVec,
    /// TLS handshakes refused (an untrusted or expired client certificate,
    /// a timeout), by listener and reason.
    pub tls_handshake_failures: IntCounterVec,
    /// Reads of certificates, CA bundles and keys files (start-up, SIGHUP,
    /// the Reload RPC), by result: a failed re-read keeps the old file.
    pub credential_reloads: IntCounterVec,
    /// When each TLS listener's own certificate expires (Unix seconds):
    /// alert well before it.
    pub tls_certificate_expiry: IntGaugeVec,
    /// Manifests held (staged and not yet purged: not yet valid, valid, or
    /// ended and awaiting the next purge).
    pub manifests_live: IntGauge,
    /// Scoped (manifest) Identify requests by outcome.
    pub scoped_searches: IntCounterVec,
    /// Manifests purged because their window ended (or they were closed).
    pub manifest_expiries: IntCounter,
    /// Encounters recorded, by direction, port and the matcher's decision.
    pub encounters: IntCounterVec,
    /// Officers' decisions and corrections, by the decision they set.
    pub encounter_corrections: IntCounterVec,
    /// Exits recorded whose subject had no open entry, by port.
    pub unmatched_exits: IntCounterVec,
    /// Encounters that could not be made durable (their requests failed).
    pub encounter_failures: IntCounter,
    /// How long an answer that asked for a record waited for it after its
    /// audit record was durable: what recording adds to the request.
    pub encounter_record_wait_seconds: Histogram,
    /// Items erased by the retention purge, by store and kind.
    pub retention_erased: IntCounterVec,
    /// Scheduled compactions, by outcome (compacted, nothing_removed, error).
    pub compactions: IntCounterVec,
    /// Retention purges, by outcome.
    pub retention_runs: IntCounterVec,
    /// Age of the oldest item, by store and category, as of the last purge.
    pub retention_oldest_seconds: GaugeVec,
    /// The most an item of a period counted from its record may be aged,
    /// by store and category: its period plus the purge interval.
    pub retention_bound_seconds: GaugeVec,
    /// How far the oldest item of such a period is past its bound (0 when
    /// within): what the overdue alert watches.
    pub retention_overdue_seconds: GaugeVec,
    /// Overstays whose records the purge will erase within the notice
    /// period, as of the last purge this node led.
    pub retention_overstays_noticed: IntGauge,
    ports: Mutex<HashSet<String>>,
}

impl Metrics {
    /// Creates and registers every metric, group by group (each group's
    /// names and help are in its `register`).
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        let r = &registry;
        register_build_info(r);
        let requests = RequestMetrics::register(r);
        let queue = QueueMetrics::register(r);
        let batching = BatchMetrics::register(r);
        let gallery = GalleryMetrics::register(r);
        let changes = ChangeMetrics::register(r);
        let engine = EngineMetrics::register(r);
        let audit = AuditMetrics::register(r);
        let auth_failures = register_auth_failures(r);
        let security = SecurityMetrics::register(r);
        let manifests = ManifestMetrics::register(r);
        let encounters = EncounterMetrics::register(r);
        let retention = RetentionMetrics::register(r);
        Arc::new(Metrics {
            requests: requests.total,
            request_seconds: requests.seconds,
            in_flight: requests.in_flight,
            decisions: requests.decisions,
            best_score: requests.best_score,
            queue_wait_seconds: queue.wait_seconds,
            queue_depth: queue.depth,
            shed: queue.shed,
            queue_expired: queue.expired,
            batch_size: batching.size,
            batch_limit: batching.limit,
            batch_cost_fixed: batching.cost_fixed,
            batch_cost_per_probe: batching.cost_per_probe,
            gallery_rows: gallery.rows,
            gallery_subjects: gallery.subjects,
            gallery_bytes: gallery.bytes,
            gallery_info: gallery.info,
            gallery_reloads: gallery.reloads,
            gallery_changes: changes.total,
            gallery_delta_rows: changes.delta_rows,
            gallery_masked_subjects: changes.masked_subjects,
            change_log_bytes: changes.log_bytes,
            engine_seconds: engine.seconds,
            engine_info: engine.info,
            gpu_memory_bytes: engine.gpu_memory_bytes,
            engine_fallback: engine.fallback,
            audit_records: audit.records,
            audit_failures: audit.failures,
            audit_commit_seconds: audit.commit_seconds,
            audit_seals: audit.seals,
            audit_seal_failures: audit.seal_failures,
            auth_failures,
            tls_handshake_failures: security.handshake_failures,
            credential_reloads: security.reloads,
            tls_certificate_expiry: security.certificate_expiry,
            manifests_live: manifests.live,
            scoped_searches: manifests.scoped_searches,
            manifest_expiries: manifests.expiries,
            encounters: encounters.total,
            encounter_corrections: encounters.corrections,
            unmatched_exits: encounters.unmatched_exits,
            encounter_failures: encounters.failures,
            encounter_record_wait_seconds: encounters.record_wait,
            retention_erased: retention.erased,
            compactions: retention.compactions,
            retention_runs: retention.runs,
            retention_oldest_seconds: retention.oldest,
            retention_bound_seconds: retention.bound,
            retention_overdue_seconds: retention.overdue,
            retention_overstays_noticed: retention.noticed,
            registry,
            ports: Mutex::new(HashSet::new()),
        })
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

    /// The registry, for a component that exports series of its own (the
    /// router's) beside these.
    pub fn registry(&self) -> &Registry {
        &self.registry
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

/// Registers a metric with `r` and returns it. Names, labels and buckets
/// are fixed and distinct, so neither building nor registering can fail.
fn register<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    metric: prometheus::Result<T>,
) -> T {
    let metric = metric.expect("metric options are valid");
    r.register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

/// Options of a latency histogram ([`LATENCY_BUCKETS`]).
fn latency(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

/// Requests as the ports see them: how many, how long, what they decided.
struct RequestMetrics {
    total: IntCounterVec,
    seconds: HistogramVec,
    in_flight: IntGauge,
    decisions: IntCounterVec,
    best_score: HistogramVec,
}

impl RequestMetrics {
    fn register(r: &Registry) -> Self {
        RequestMetrics {
            total: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_requests_total",
                        "Requests by RPC, port of entry and gRPC status code.",
                    ),
                    &["rpc", "port", "code"],
                ),
            ),
            seconds: register(
                r,
                HistogramVec::new(
                    latency(
                        "facegate_request_duration_seconds",
                        "End-to-end request latency.",
                    ),
                    &["rpc"],
                ),
            ),
            in_flight: register(
                r,
                IntGauge::new("facegate_in_flight_requests", "Requests being served."),
            ),
            decisions: register(
                r,
                IntCounterVec::new(
                    Opts::new("facegate_decisions_total", "Match and no-match decisions."),
                    &["rpc", "decision"],
                ),
            ),
            best_score: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "facegate_best_score",
                        "Best candidate's score of each answered search, by RPC and port \
                         of entry (Verify: the claimed subject's score).",
                    )
                    .buckets(SCORE_BUCKETS.to_vec()),
                    &["rpc", "port"],
                ),
            ),
        }
    }
}

/// The dispatcher's queue: how long searches wait, and which never get in
/// or never get out.
struct QueueMetrics {
    wait_seconds: Histogram,
    depth: IntGauge,
    shed: IntCounter,
    expired: IntCounter,
}

impl QueueMetrics {
    fn register(r: &Registry) -> Self {
        QueueMetrics {
            wait_seconds: register(
                r,
                Histogram::with_opts(latency(
                    "facegate_queue_wait_seconds",
                    "Time a search waited in the dispatcher queue before its batch started.",
                )),
            ),
            depth: register(
                r,
                IntGauge::new(
                    "facegate_queue_depth",
                    "Searches waiting in the dispatcher queue.",
                ),
            ),
            shed: register(
                r,
                IntCounter::new("facegate_shed_requests_total", "Requests refused for load."),
            ),
            expired: register(
                r,
                IntCounter::new(
                    "facegate_queue_expired_total",
                    "Searches whose deadline passed while queued; dropped before the engine.",
                ),
            ),
        }
    }
}

/// Batching: the batches run, the limit on the next, and the learned cost
/// the limit comes from.
struct BatchMetrics {
    size: Histogram,
    limit: IntGauge,
    cost_fixed: Gauge,
    cost_per_probe: Gauge,
}

impl BatchMetrics {
    fn register(r: &Registry) -> Self {
        let cost = register(
            r,
            GaugeVec::new(
                Opts::new(
                    "facegate_batch_cost_seconds",
                    "Learned engine time per batch: fixed part and time per probe.",
                ),
                &["part"],
            ),
        );
        BatchMetrics {
            size: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("facegate_batch_size", "Probes per engine call.").buckets(
                        vec![
                            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                        ],
                    ),
                ),
            ),
            limit: register(
                r,
                IntGauge::new(
                    "facegate_batch_limit",
                    "Most probes the next batch may take (batch max size, or fewer to meet the batch time target).",
                ),
            ),
            cost_fixed: cost.with_label_values(&["fixed"]),
            cost_per_probe: cost.with_label_values(&["per_probe"]),
        }
    }
}

/// The gallery being served, and its reloads.
struct GalleryMetrics {
    rows: IntGauge,
    subjects: IntGauge,
    bytes: IntGauge,
    info: IntGaugeVec,
    reloads: IntCounter,
}

impl GalleryMetrics {
    fn register(r: &Registry) -> Self {
        GalleryMetrics {
            rows: register(
                r,
                IntGauge::new("facegate_gallery_rows", "Template rows in the gallery."),
            ),
            subjects: register(
                r,
                IntGauge::new("facegate_gallery_subjects", "Subjects in the gallery."),
            ),
            bytes: register(
                r,
                IntGauge::new("facegate_gallery_bytes", "Size of the gallery file."),
            ),
            info: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "facegate_gallery_info",
                        "The gallery being served (value 1).",
                    ),
                    &["generation", "model_tag", "element_type"],
                ),
            ),
            reloads: register(
                r,
                IntCounter::new(
                    "facegate_gallery_reloads_total",
                    "Gallery generations adopted by a reload (Reload RPC or SIGHUP).",
                ),
            ),
        }
    }
}

/// Online changes to the gallery, and what they have added up to since the
/// base was built.
struct ChangeMetrics {
    total: IntCounterVec,
    delta_rows: IntGauge,
    masked_subjects: IntGauge,
    log_bytes: IntGauge,
}

impl ChangeMetrics {
    fn register(r: &Registry) -> Self {
        ChangeMetrics {
            total: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_gallery_changes_total",
                        "Online gallery changes by kind and outcome.",
                    ),
                    &["kind", "outcome"],
                ),
            ),
            delta_rows: register(
                r,
                IntGauge::new(
                    "facegate_gallery_delta_rows",
                    "Templates enrolled online since the base gallery was built.",
                ),
            ),
            masked_subjects: register(
                r,
                IntGauge::new(
                    "facegate_gallery_masked_subjects",
                    "Base subjects removed or re-enrolled online.",
                ),
            ),
            log_bytes: register(
                r,
                IntGauge::new(
                    "facegate_change_log_bytes",
                    "Durable bytes in the change log of online changes.",
                ),
            ),
        }
    }
}

/// The engine answering 1:N: which one, how long it takes, what GPU memory
/// it holds, and whether the GPU has been given up.
struct EngineMetrics {
    seconds: HistogramVec,
    info: IntGaugeVec,
    gpu_memory_bytes: IntGauge,
    fallback: IntGauge,
}

impl EngineMetrics {
    fn register(r: &Registry) -> Self {
        EngineMetrics {
            seconds: register(
                r,
                HistogramVec::new(
                    latency(
                        "facegate_engine_duration_seconds",
                        "Time inside the search engine.",
                    ),
                    &["kind"],
                ),
            ),
            info: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "facegate_engine_info",
                        "The engine answering 1:N searches (value 1).",
                    ),
                    &["engine", "kind"],
                ),
            ),
            gpu_memory_bytes: register(
                r,
                IntGauge::new(
                    "facegate_gpu_memory_bytes",
                    "GPU memory held by the gallery rows.",
                ),
            ),
            fallback: register(
                r,
                IntGauge::new(
                    "facegate_engine_fallback",
                    "1 once the GPU engine has been given up for the CPU.",
                ),
            ),
        }
    }
}

/// The audit trail: records made durable, records lost (their searches
/// refused), and the time each group commit takes.
struct AuditMetrics {
    records: IntCounter,
    failures: IntCounter,
    commit_seconds: Histogram,
    seals: IntCounter,
    seal_failures: IntCounter,
}

impl AuditMetrics {
    fn register(r: &Registry) -> Self {
        AuditMetrics {
            records: register(
                r,
                IntCounter::new(
                    "facegate_audit_records_total",
                    "Audit records written and fsync'd.",
                ),
            ),
            failures: register(
                r,
                IntCounter::new(
                    "facegate_audit_failures_total",
                    "Audit records that could not be made durable; their searches were refused.",
                ),
            ),
            commit_seconds: register(
                r,
                Histogram::with_opts(latency(
                    "facegate_audit_commit_seconds",
                    "Time to write and fsync one group of audit records.",
                )),
            ),
            seals: register(
                r,
                IntCounter::new(
                    "facegate_audit_seals_total",
                    "Signed audit checkpoints written.",
                ),
            ),
            seal_failures: register(
                r,
                IntCounter::new(
                    "facegate_audit_seal_failures_total",
                    "Signed audit checkpoints that could not be written; their records stay unsigned.",
                ),
            ),
        }
    }
}

/// Every `outcome` of `facegate_scoped_searches_total`, each series
/// created at zero at start so that rates and dashboards see the series
/// before the first scoped search (the server's `scoped_outcome` returns
/// only these).
pub const SCOPED_OUTCOMES: [&str; 10] = [
    "match",
    "no_match",
    "fallback_match",
    "fallback_no_match",
    "unknown",
    "expired",
    "not_yet_valid",
    "denied",
    "invalid",
    "error",
];

/// Manifest galleries: how many are held, how scoped searches end, and
/// how many windows have ended and been purged.
struct ManifestMetrics {
    live: IntGauge,
    scoped_searches: IntCounterVec,
    expiries: IntCounter,
}

impl ManifestMetrics {
    fn register(r: &Registry) -> Self {
        let metrics = ManifestMetrics {
            live: register(
                r,
                IntGauge::new(
                    "facegate_manifests_live",
                    "Manifests held: staged and not yet purged.",
                ),
            ),
            scoped_searches: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_scoped_searches_total",
                        "Identify requests scoped to a manifest, by outcome.",
                    ),
                    &["outcome"],
                ),
            ),
            expiries: register(
                r,
                IntCounter::new(
                    "facegate_manifest_expiries_total",
                    "Manifests purged from memory and disk because their window ended.",
                ),
            ),
        };
        for outcome in SCOPED_OUTCOMES {
            metrics.scoped_searches.with_label_values(&[outcome]);
        }
        metrics
    }
}

/// Encounters: what ports record (the technical match rate per port, as
/// public audits of the deployed system report it, is matches over all),
/// officers' corrections (with matches, the confirmation rate), exits with
/// no open entry, and records that could not be made durable.
struct EncounterMetrics {
    total: IntCounterVec,
    corrections: IntCounterVec,
    unmatched_exits: IntCounterVec,
    failures: IntCounter,
    record_wait: Histogram,
}

impl EncounterMetrics {
    fn register(r: &Registry) -> Self {
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(r, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let metrics = EncounterMetrics {
            total: counter_vec(
                "facegate_encounters_total",
                "Encounters recorded, by direction, port and the matcher's decision.",
                &["direction", "port", "decision"],
            ),
            corrections: counter_vec(
                "facegate_encounter_corrections_total",
                "Officers' decisions and corrections of encounters, by the decision set.",
                &["decision"],
            ),
            unmatched_exits: counter_vec(
                "facegate_unmatched_exits_total",
                "Exits recorded whose subject had no open entry (a missed entry capture, or an impostor), by port.",
                &["port"],
            ),
            failures: register(
                r,
                IntCounter::new(
                    "facegate_encounter_record_failures_total",
                    "Encounters that could not be made durable; their requests failed with UNAVAILABLE.",
                ),
            ),
            record_wait: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "facegate_encounter_record_wait_seconds",
                        "How long an answer that asked for an encounter record waited for it after its audit record was durable: what recording adds to the request.",
                    )
                    .buckets(RECORD_WAIT_BUCKETS.to_vec()),
                ),
            ),
        };
        for decision in ["match", "no_match", "officer_override"] {
            metrics.corrections.with_label_values(&[decision]);
        }
        metrics
    }
}

/// Retention: what the purge erased, whether it ran, and the oldest item
/// of each category beside its bound (the alert compares them).
struct RetentionMetrics {
    erased: IntCounterVec,
    compactions: IntCounterVec,
    runs: IntCounterVec,
    oldest: GaugeVec,
    bound: GaugeVec,
    overdue: GaugeVec,
    noticed: IntGauge,
}

impl RetentionMetrics {
    fn register(r: &Registry) -> Self {
        let metrics = RetentionMetrics {
            erased: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_retention_erased_total",
                        "Items erased by the retention purge, by store and kind.",
                    ),
                    &["store", "kind"],
                ),
            ),
            compactions: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_compactions_total",
                        "Scheduled compactions (removed subjects folded out of the gallery file and change log), by outcome.",
                    ),
                    &["outcome"],
                ),
            ),
            runs: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_retention_runs_total",
                        "Retention purges, by outcome (ok, error).",
                    ),
                    &["outcome"],
                ),
            ),
            oldest: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "facegate_retention_oldest_seconds",
                        "Age of the oldest item by store and category, as of the last purge.",
                    ),
                    &["store", "category"],
                ),
            ),
            bound: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "facegate_retention_bound_seconds",
                        "Oldest an item whose period counts from its record may be: its period plus the purge interval.",
                    ),
                    &["store", "category"],
                ),
            ),
            overdue: register(
                r,
                GaugeVec::new(
                    Opts::new(
                        "facegate_retention_overdue_seconds",
                        "How far the oldest item whose period counts from its record is past its bound (0 when within).",
                    ),
                    &["store", "category"],
                ),
            ),
            noticed: register(
                r,
                IntGauge::new(
                    "facegate_retention_overstays_noticed",
                    "Overstays whose records the purge will erase within the policy's notice period (Encounters/ListScheduledErasures lists them), as of the last purge this node led.",
                ),
            ),
        };
        metrics.export_zeros();
        metrics
    }

    /// Makes every outcome and kind a series at 0 from the start, so that
    /// rates and alerts see them before the first event.
    fn export_zeros(&self) {
        for outcome in ["ok", "error"] {
            self.runs.with_label_values(&[outcome]);
        }
        for outcome in ["compacted", "nothing_removed", "error"] {
            self.compactions.with_label_values(&[outcome]);
        }
        for kind in ["encounter", "traveller"] {
            self.erased.with_label_values(&["encounters", kind]);
        }
        self.erased
            .with_label_values(&["gallery", "citizen_subject"]);
        self.erased.with_label_values(&["audit", "record"]);
    }
}

/// Authentication: calls refused for a missing or unknown API key, by
/// listener.
fn register_auth_failures(r: &Registry) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(
            Opts::new(
                "facegate_auth_failures_total",
                "Calls refused at authentication (no or unknown credential, or a role \
                 the service does not admit), by listener (ports, admin).",
            ),
            &["listener"],
        ),
    )
}

/// TLS and credentials: refused handshakes, reloads, certificate expiry.
struct SecurityMetrics {
    handshake_failures: IntCounterVec,
    reloads: IntCounterVec,
    certificate_expiry: IntGaugeVec,
}

impl SecurityMetrics {
    fn register(r: &Registry) -> Self {
        SecurityMetrics {
            handshake_failures: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_tls_handshake_failures_total",
                        "TLS handshakes refused, by listener and reason (expired, \
                         unknown_issuer, revoked, bad_certificate, timeout, other).",
                    ),
                    &["listener", "reason"],
                ),
            ),
            reloads: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "facegate_credential_reloads_total",
                        "Reads of certificates, CA bundles and keys files (start-up, SIGHUP, \
                         Reload), by result (ok, failed: the old file is kept).",
                    ),
                    &["result"],
                ),
            ),
            certificate_expiry: register(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "facegate_tls_certificate_expiry_timestamp_seconds",
                        "When the listener's own TLS certificate expires (Unix seconds); listener=\"encounter_store\": this node's client certificate for the shared encounter store.",
                    ),
                    &["listener"],
                ),
            ),
        }
    }
}

/// The build: 1, labelled with the server's version.
fn register_build_info(r: &Registry) {
    let build = register(
        r,
        IntGaugeVec::new(
            Opts::new("facegate_build_info", "Build of the server (value 1)."),
            &["version"],
        ),
    );
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
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
            "facegate_manifests_live",
            "facegate_manifest_expiries_total",
            "facegate_scoped_searches_total{outcome=\"fallback_no_match\"} 0",
            "facegate_encounter_corrections_total{decision=\"officer_override\"} 0",
            "facegate_encounter_record_failures_total 0",
            "facegate_encounter_record_wait_seconds_count 0",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }
}
