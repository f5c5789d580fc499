//! What one load step measured: OK latencies in an HDR histogram and every
//! answer counted by outcome, reduced to a serialisable [`RunStats`].

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

/// Largest latency the histogram resolves, in microseconds (one hour): far
/// beyond any deadline, so that no answer is clipped.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// The key under which [`Outcome::WrongScope`] answers are counted in
/// [`RunStats::errors`] (beside the gRPC code names).
pub const WRONG_SCOPE: &str = "WRONG_SCOPE";

/// Which search a class of requests asks for; one run records one class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// 1:N against the whole gallery, through the server's batching
    /// dispatcher (no `manifest_id`). Results written before classes
    /// existed are all national.
    #[default]
    National,
    /// 1:few in one manifest (`manifest_id` set), which the server searches
    /// on its blocking pool, outside the dispatcher's queue.
    Scoped,
}

impl Class {
    /// The name written in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Class::National => "national",
            Class::Scoped => "scoped",
        }
    }
}

/// How one request ended, as the load generator counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer.
    Ok,
    /// RESOURCE_EXHAUSTED: the server refused the request for load.
    Shed,
    /// DEADLINE_EXCEEDED from the server.
    Deadline,
    /// The client's own timer ran out before any answer came (tonic reports
    /// this as CANCELLED "Timeout expired"); a deadline miss as well.
    ClientTimeout,
    /// Any other status.
    Error(Code),
    /// An answer from another search than the one asked for (a scoped
    /// request answered by the national search, as a server that ignores
    /// `manifest_id` would): counted as an error, so that such a run cannot
    /// pass for a scoped one.
    WrongScope,
}

impl Outcome {
    /// Classifies a failed call.
    pub fn of_status(s: &Status) -> Outcome {
        match s.code() {
            Code::ResourceExhausted => Outcome::Shed,
            Code::DeadlineExceeded => Outcome::Deadline,
            Code::Cancelled if s.message() == tonic::TimeoutExpired(()).to_string() => {
                Outcome::ClientTimeout
            }
            c => Outcome::Error(c),
        }
    }
}

/// Collects one step's outcomes; shared by every request task behind a mutex
/// (one lock per answer is negligible next to a network round trip).
pub struct Recorder {
    ok_latency_us: Histogram<u64>,
    sent: u64,
    ok: u64,
    shed: u64,
    deadline: u64,
    client_timeout: u64,
    errors: BTreeMap<String, u64>,
    dropped: u64,
}

impl Recorder {
    /// An empty recorder: microseconds, 3 significant digits.
    pub fn new() -> anyhow::Result<Recorder> {
        Ok(Recorder {
            ok_latency_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
            sent: 0,
            ok: 0,
            shed: 0,
            deadline: 0,
            client_timeout: 0,
            errors: BTreeMap::new(),
            dropped: 0,
        })
    }

    /// Records one finished request and how long it took.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        self.sent += 1;
        match outcome {
            Outcome::Ok => {
                self.ok += 1;
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.ok_latency_us.saturating_record(us.max(1));
            }
            Outcome::Shed => self.shed += 1,
            Outcome::Deadline => self.deadline += 1,
            Outcome::ClientTimeout => self.client_timeout += 1,
            Outcome::Error(c) => *self.errors.entry(code_name(c).to_string()).or_default() += 1,
            Outcome::WrongScope => *self.errors.entry(WRONG_SCOPE.to_string()).or_default() += 1,
        }
    }

    /// Records an open-loop arrival that was never sent because
    /// `max_outstanding` requests were already in flight.
    pub fn record_dropped(&mut self) {
        self.dropped += 1;
    }

    /// The counts so far, for a progress line.
    pub fn progress_line(&self) -> String {
        format!(
            "answered {}  ok {}  shed {}  deadline {}  errors {}  dropped {}",
            self.sent,
            self.ok,
            self.shed,
            self.deadline + self.client_timeout,
            self.errors.values().sum::<u64>(),
            self.dropped
        )
    }

    /// Reduces the counts to the figures of one run.
    pub fn finish(&self, setup: RunSetup, measured: Duration) -> RunStats {
        let secs = measured.as_secs_f64();
        let frac = |n: u64| {
            if self.sent == 0 {
                0.0
            } else {
                n as f64 / self.sent as f64
            }
        };
        let h = &self.ok_latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let latency_ms = (self.ok > 0).then(|| LatencyMs {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        });
        let error_total: u64 = self.errors.values().sum();
        let deadline = self.deadline + self.client_timeout;
        RunStats {
            label: setup.label,
            class: setup.class,
            mode: setup.mode,
            ports: setup.ports,
            connections: setup.connections,
            offered_rate: setup.offered_rate,
            top_k: setup.top_k,
            deadline_ms: setup.deadline_ms,
            engine: setup.engine,
            gallery_rows: setup.gallery_rows,
            measured_s: secs,
            sent: self.sent,
            ok: self.ok,
            shed: self.shed,
            deadline,
            deadline_client_side: self.client_timeout,
            errors: self.errors.clone(),
            dropped: self.dropped,
            throughput: if secs > 0.0 {
                self.ok as f64 / secs
            } else {
                0.0
            },
            shed_fraction: frac(self.shed),
            deadline_fraction: frac(deadline),
            error_fraction: frac(error_total),
            latency_ms,
        }
    }
}

/// What a run was, copied into its [`RunStats`] so that a JSON file
/// describes itself and two files can be compared.
#[derive(Debug, Clone)]
pub struct RunSetup {
    /// `--label`.
    pub label: String,
    /// What the requests searched.
    pub class: Class,
    /// `"closed"` or `"open"`.
    pub mode: String,
    /// Simulated ports.
    pub ports: usize,
    /// gRPC connections shared by the ports.
    pub connections: usize,
    /// Offered arrival rate (open loop), requests/s.
    pub offered_rate: Option<f64>,
    /// Candidates asked for.
    pub top_k: u32,
    /// Per-request deadline.
    pub deadline_ms: u64,
    /// The server's engine, from GetGalleryInfo.
    pub engine: String,
    /// The gallery's templates, from GetGalleryInfo.
    pub gallery_rows: u64,
}

/// OK-answer latencies, in milliseconds, from the histogram (each value is
/// the top of its 3-significant-digit bucket, so they stay ordered).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest OK answer.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The figures of one load step (one row of the table, one JSON object).
///
/// Every request is attributed to the step by the time it was sent (open
/// loop: its scheduled arrival), so requests still in flight when the window
/// closes are waited for and counted, and warm-up requests never are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// `--label`, to tell runs apart when comparing files.
    pub label: String,
    /// What the requests searched: a step with scoped traffic beside
    /// national load gives one run of each class.
    #[serde(default)]
    pub class: Class,
    /// `"closed"` or `"open"`.
    pub mode: String,
    /// Simulated ports (distinct `port_id`s).
    pub ports: usize,
    /// gRPC connections the ports share.
    pub connections: usize,
    /// Open loop: offered arrival rate, requests/s; closed loop: none.
    pub offered_rate: Option<f64>,
    /// Candidates asked for per request.
    pub top_k: u32,
    /// Per-request gRPC deadline.
    pub deadline_ms: u64,
    /// The engine the server reported at start.
    pub engine: String,
    /// Templates in the served gallery.
    pub gallery_rows: u64,
    /// Length of the measured window, seconds.
    pub measured_s: f64,
    /// Requests sent in the window (every one has an outcome below).
    pub sent: u64,
    /// OK answers.
    pub ok: u64,
    /// RESOURCE_EXHAUSTED answers (load shedding).
    pub shed: u64,
    /// Deadline misses: DEADLINE_EXCEEDED answers plus client-side timeouts.
    pub deadline: u64,
    /// Of `deadline`, those where the client's timer fired first.
    pub deadline_client_side: u64,
    /// Other failures by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    /// Open loop: arrivals not sent because `max_outstanding` were in flight.
    pub dropped: u64,
    /// OK answers per second of the measured window.
    pub throughput: f64,
    /// `shed / sent`.
    pub shed_fraction: f64,
    /// `deadline / sent`.
    pub deadline_fraction: f64,
    /// Other errors `/ sent`.
    pub error_fraction: f64,
    /// OK latencies; none when there was no OK answer.
    pub latency_ms: Option<LatencyMs>,
}

impl RunStats {
    /// Requests that failed for a reason other than shedding or deadlines.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// The canonical upper-case name of a gRPC code, as the server's metrics use.
pub fn code_name(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> RunSetup {
        RunSetup {
            label: "t".into(),
            class: Class::National,
            mode: "closed".into(),
            ports: 1,
            connections: 1,
            offered_rate: None,
            top_k: 10,
            deadline_ms: 1000,
            engine: "cpu".into(),
            gallery_rows: 1,
        }
    }

    #[test]
    fn outcomes_are_counted_apart_and_percentiles_ordered() {
        let mut r = Recorder::new().unwrap();
        for i in 1..=1000u64 {
            r.record(Outcome::Ok, Duration::from_micros(i * 10));
        }
        r.record(
            Outcome::of_status(&Status::resource_exhausted("x")),
            Duration::ZERO,
        );
        r.record(
            Outcome::of_status(&Status::deadline_exceeded("x")),
            Duration::ZERO,
        );
        r.record(
            Outcome::of_status(&Status::cancelled("Timeout expired")),
            Duration::ZERO,
        );
        r.record(
            Outcome::of_status(&Status::unavailable("x")),
            Duration::ZERO,
        );
        r.record_dropped();
        let s = r.finish(setup(), Duration::from_secs(2));
        assert_eq!((s.sent, s.ok, s.shed, s.deadline), (1004, 1000, 1, 2));
        assert_eq!(s.deadline_client_side, 1);
        assert_eq!(s.errors.get("UNAVAILABLE"), Some(&1));
        assert_eq!(s.dropped, 1);
        assert_eq!(s.throughput, 500.0);
        let l = s.latency_ms.unwrap();
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.max - 10.0).abs() < 0.01, "{l:?}");
    }

    #[test]
    fn no_answers_give_no_latency_and_zero_fractions() {
        let s = Recorder::new()
            .unwrap()
            .finish(setup(), Duration::from_secs(1));
        assert_eq!(s.latency_ms, None);
        assert_eq!(s.shed_fraction, 0.0);
    }

    #[test]
    fn answers_from_another_search_are_errors_not_latencies() {
        let mut r = Recorder::new().unwrap();
        r.record(Outcome::WrongScope, Duration::from_millis(1));
        let s = r.finish(setup(), Duration::from_secs(1));
        assert_eq!((s.sent, s.ok, s.error_count()), (1, 0, 1));
        assert_eq!(s.errors.get(WRONG_SCOPE), Some(&1));
        assert_eq!(s.latency_ms, None);
    }

    #[test]
    fn results_written_before_classes_read_as_national() {
        let s = Recorder::new()
            .unwrap()
            .finish(setup(), Duration::from_secs(1));
        let mut json = serde_json::to_value(&s).unwrap();
        json.as_object_mut().unwrap().remove("class");
        let back: RunStats = serde_json::from_value(json).unwrap();
        assert_eq!(back.class, Class::National);
        assert_eq!(serde_json::to_value(Class::Scoped).unwrap(), "scoped");
    }
}
