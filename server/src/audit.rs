//! The server's side of the audit trail ([`facegate_core::audit`]): one
//! thread owns the trail and commits the records of concurrent requests in
//! one write and one fsync; each request waits for its own record before
//! its answer leaves (a search whose record cannot be made durable is
//! refused, never answered unaudited).

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use facegate_core::audit::{AuditEvent, AuditLog};
use tokio::sync::oneshot;

use crate::metrics::{Metrics, code_name};
use crate::proto;

/// Records committed together at most: bounds one write.
const MAX_GROUP: usize = 1024;

/// One record waiting for the audit thread.
struct Pending {
    event: AuditEvent,
    done: oneshot::Sender<Result<u64, String>>,
}

/// The audit trail as the services use it; cheap to share.
pub struct Auditor {
    /// `None` when the server was started without an audit directory.
    tx: Option<mpsc::Sender<Pending>>,
}

/// Who made a request and in what context: taken from the request before
/// it is consumed, and written into its audit record.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The caller's address as the server saw it.
    pub peer: Option<std::net::SocketAddr>,
    /// The caller its API key names, when the listener takes keys.
    pub principal: Option<Arc<str>>,
    /// The client's request id.
    pub request_id: String,
    /// The capture context the request carried.
    pub capture: Option<proto::CaptureContext>,
    /// When the request arrived.
    pub arrived: Instant,
}

impl Caller {
    /// The context of `req`, which arrived at `arrived` and names
    /// `request_id` and `capture` (moved out of the request: the search
    /// does not need it).
    pub fn new<T>(
        req: &tonic::Request<T>,
        request_id: &str,
        capture: Option<proto::CaptureContext>,
        arrived: Instant,
    ) -> Caller {
        Caller {
            peer: req.remote_addr(),
            principal: req
                .extensions()
                .get::<crate::auth::Principal>()
                .map(|p| p.0.clone()),
            request_id: request_id.to_string(),
            capture,
            arrived,
        }
    }

    /// The context of one message of a stream opened by this caller.
    pub fn with(
        &self,
        request_id: &str,
        capture: Option<proto::CaptureContext>,
        arrived: Instant,
    ) -> Caller {
        Caller {
            peer: self.peer,
            principal: self.principal.clone(),
            request_id: request_id.to_string(),
            capture,
            arrived,
        }
    }

    /// The port the request comes from: the one its key names when ports
    /// are authenticated, else the one it says ("" when it gives none).
    pub fn port(&self) -> &str {
        match &self.principal {
            Some(p) => p,
            None => self.claimed_port(),
        }
    }

    /// The port the request says it comes from (`capture.port_id`, "" when
    /// it gives none), which `crate::auth::authorise` checks against its key.
    pub fn claimed_port(&self) -> &str {
        self.capture.as_ref().map_or("", |c| c.port_id.as_str())
    }

    /// The audit record of this request's answer.
    pub fn event(
        &self,
        rpc: &str,
        code: tonic::Code,
        matched: Option<bool>,
        subjects: Vec<String>,
        generation: u64,
    ) -> AuditEvent {
        let c = self.capture.clone().unwrap_or_default();
        let direction = match proto::Direction::try_from(c.direction) {
            Ok(proto::Direction::Entry) => "entry",
            Ok(proto::Direction::Exit) => "exit",
            _ => "unspecified",
        };
        AuditEvent {
            time_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            rpc: rpc.to_string(),
            code: code_name(code).to_string(),
            peer: self.peer.map(|a| a.to_string()).unwrap_or_default(),
            principal: self.principal.as_deref().unwrap_or_default().to_string(),
            request_id: self.request_id.clone(),
            port_id: c.port_id,
            lane: c.lane,
            direction: direction.to_string(),
            captured_at_unix_ms: c.captured_at_unix_ms,
            matched,
            subjects,
            generation,
            latency_us: self.arrived.elapsed().as_micros() as u64,
            manifest_id: None,
        }
    }
}

impl Auditor {
    /// An auditor that records nothing (no audit directory configured).
    pub fn disabled() -> Auditor {
        Auditor { tx: None }
    }

    /// Opens the trail in `dir` (checking its newest records) and starts
    /// the audit thread. Blocking: call it from a blocking context.
    pub fn open(dir: &Path, metrics: Arc<Metrics>) -> anyhow::Result<Auditor> {
        let (log, summary) = AuditLog::open(dir)
            .with_context(|| format!("opening the audit trail in {}", dir.display()))?;
        for (path, bytes) in &summary.incomplete_tails {
            tracing::warn!(
                file = %path.display(),
                bytes,
                "audit file ends in an incomplete record (a crash during a write; that request was not answered)"
            );
        }
        tracing::info!(
            dir = %dir.display(),
            last_seq = summary.last_seq,
            checked_records = summary.records,
            file = %log.path().display(),
            "audit trail open: newest records checked, going on in a new file"
        );
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("facegate-audit".into())
            .spawn(move || commit_loop(log, rx, &metrics))
            .context("starting the audit thread")?;
        Ok(Auditor { tx: Some(tx) })
    }

    /// Whether requests are audited.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Makes `event` durable; returns its sequence number (`None` when
    /// auditing is off) or why it could not be recorded.
    pub async fn record(&self, event: AuditEvent) -> Result<Option<u64>, String> {
        let Some(tx) = &self.tx else {
            return Ok(None);
        };
        let (done, wait) = oneshot::channel();
        tx.send(Pending { event, done })
            .map_err(|_| "the audit thread has stopped".to_string())?;
        match wait.await {
            Ok(result) => result.map(Some),
            Err(_) => Err("the audit thread has stopped".to_string()),
        }
    }
}

/// Commits whatever is queued, a group at a time, until every sender is gone.
fn commit_loop(mut log: AuditLog, rx: mpsc::Receiver<Pending>, metrics: &Metrics) {
    let mut events = Vec::with_capacity(MAX_GROUP);
    let mut waiters = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(p) = next {
            events.push(p.event);
            waiters.push(p.done);
            next = if events.len() < MAX_GROUP {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        let started = Instant::now();
        let result = log.append(&events);
        metrics
            .audit_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(seqs) => {
                metrics.audit_records.inc_by(events.len() as u64);
                for (done, seq) in waiters.drain(..).zip(seqs) {
                    let _ = done.send(Ok(seq));
                }
            }
            Err(e) => {
                metrics.audit_failures.inc_by(events.len() as u64);
                let reason = e.to_string();
                for done in waiters.drain(..) {
                    let _ = done.send(Err(reason.clone()));
                }
                // Logged last, and a panic there contained: when stderr is
                // on the same full disk, the log's fallback (`eprintln!`)
                // panics, and that must neither keep the waiters from their
                // answer nor stop this thread.
                let records = events.len();
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    tracing::error!(error = %e, records, "audit trail write failed; those requests are refused");
                }));
            }
        }
        events.clear();
    }
}
