//! The server's side of the audit trail ([`facegate_core::audit`]): one
//! thread owns the trail and commits the records of concurrent requests in
//! one write and one fsync; each request waits for its own record before
//! its answer leaves (a search whose record cannot be made durable is
//! refused, never answered unaudited). The same thread runs the retention
//! policy's expiry of old files ([`Auditor::expire_before`]), between two
//! groups of records, since it owns the trail and its lock.
//!
//! Given a signing key ([`Sealing`]), the thread also writes signed
//! checkpoints ([`facegate_core::audit::seal`]) after a group once
//! `every_records` records are pending or the oldest pending one has waited
//! `every` on the injected clock (it wakes to check while idle), and at the
//! end when the last sender is gone. Each is also logged at info level with
//! the target [`SEAL_LOG_TARGET`], for a log shipper to carry off the host.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use facegate_core::audit::{AuditEvent, AuditLog, AuditSigningKey, ExpiryReport};
use facegate_core::clock::{Clock, UnixMillis};
use tokio::sync::oneshot;

use crate::metrics::{Metrics, code_name};
use crate::proto;

/// Records committed together at most: bounds one write.
const MAX_GROUP: usize = 1024;

/// The tracing target of the line logged for each signed checkpoint (its
/// JSON line in the field `checkpoint`; hashes only, no subject id), fixed
/// so that a log shipper can select it.
pub const SEAL_LOG_TARGET: &str = "facegate::audit_seal";

/// The longest the idle audit thread sleeps before checking whether a
/// time-based checkpoint is due.
const MAX_SEAL_POLL: Duration = Duration::from_secs(1);

/// How the audit thread signs checkpoints of the trail.
pub struct Sealing {
    /// The private key.
    pub key: AuditSigningKey,
    /// A checkpoint once this many records are pending.
    pub every_records: u64,
    /// A checkpoint once the oldest pending record has waited this long.
    pub every: Duration,
    /// The clock checkpoints are dated and timed by (the server's).
    pub clock: Arc<dyn Clock>,
}

impl Sealing {
    /// The sealing the settings ask for: their key, loaded now so that a
    /// malformed or unreadable key fails start-up; `None`, with a warning
    /// that the trail is not signed, when they give no key.
    pub fn from_settings(
        settings: &crate::config::Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Option<Sealing>> {
        let every = Duration::from_millis(settings.audit_seal_interval_ms);
        let key = settings.audit_signing_key.as_deref();
        Sealing::load(key, settings.audit_seal_records, every, clock)
    }

    /// The sealing with the key at `path` (loaded now), a checkpoint every
    /// `every_records` records or `every`; `None`, with a warning that the
    /// trail is not signed, without a key. The server's and the router's
    /// settings both come here.
    pub fn load(
        path: Option<&std::path::Path>,
        every_records: u64,
        every: Duration,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Option<Sealing>> {
        let Some(path) = path else {
            tracing::warn!(
                "no --audit-signing-key: the audit trail is not signed (its xxh3 chain detects \
                 damage, not a forger; docs/audit.md#signed-checkpoints)"
            );
            return Ok(None);
        };
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    key = %path.display(),
                    "the audit signing key is readable by others than its owner: whoever can \
                     read it can sign forged checkpoints (chmod 600 it)"
                );
            }
        }
        let key = AuditSigningKey::load(path).with_context(|| {
            format!(
                "loading the audit signing key (--audit-signing-key {})",
                path.display()
            )
        })?;
        Ok(Some(Sealing {
            key,
            every_records: every_records.max(1),
            every,
            clock,
        }))
    }
}

/// One record waiting for the audit thread.
struct Pending {
    event: AuditEvent,
    done: oneshot::Sender<Result<u64, String>>,
}

/// An expiry waiting for the audit thread.
struct PendingExpiry {
    cutoff: UnixMillis,
    clock: Arc<dyn Clock>,
    done: oneshot::Sender<Result<ExpiryReport, String>>,
}

/// What the audit thread is asked to do, in order of arrival.
#[expect(
    clippy::large_enum_variant,
    reason = "records are the hot path and were sent by value before; boxing them would \
              allocate per record to shrink a message sent once a day"
)]
enum Job {
    /// Make a record durable (grouped with others).
    Record(Pending),
    /// Run an expiry after the group before it.
    Expire(PendingExpiry),
}

/// The audit trail as the services use it; cheap to share.
pub struct Auditor {
    /// `None` when the server was started without an audit directory.
    tx: Option<mpsc::Sender<Job>>,
    /// The audit thread, joined on drop so that its last checkpoint is
    /// written before the process goes on to exit.
    thread: Option<std::thread::JoinHandle<()>>,
    /// Stamps each record's time, so that retention (which expires records
    /// by it) runs on the same clock as every other rule.
    clock: Arc<dyn Clock>,
}

/// What a back-office call does, which decides its answer when its audit
/// record cannot be written ([`Auditor::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// It only discloses records: without its audit record the disclosure
    /// is withheld (UNAVAILABLE), as a search's is.
    Reads,
    /// It changed durable state before it was answered: the change stands,
    /// and the missing record is counted and logged.
    Writes,
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
            // Stamped by `Auditor::record`, on the server's clock.
            time_unix_ms: 0,
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
        Auditor {
            tx: None,
            thread: None,
            clock: Arc::new(facegate_core::clock::SystemClock),
        }
    }

    /// Opens the trail in `dir` (checking its newest records) and starts
    /// the audit thread; records and new files are dated by `clock`, the
    /// server's, as retention's cutoffs are. Blocking: call it from a
    /// blocking context.
    pub fn open(
        dir: &Path,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Auditor> {
        Auditor::open_sealed(dir, metrics, None, clock)
    }

    /// As [`Auditor::open`], the thread also writing signed checkpoints
    /// when `sealing` is given.
    pub fn open_sealed(
        dir: &Path,
        metrics: Arc<Metrics>,
        sealing: Option<Sealing>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Auditor> {
        let (mut log, summary) = AuditLog::open_with_clock(dir, clock.clone())
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
        let sealer = match sealing {
            Some(s) => Some(Sealer::start(&mut log, s, dir)?),
            None => None,
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("facegate-audit".into())
            .spawn(move || commit_loop(log, rx, &metrics, sealer))
            .context("starting the audit thread")?;
        Ok(Auditor {
            tx: Some(tx),
            thread: Some(thread),
            clock,
        })
    }

    /// Whether requests are audited.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Records `event`, the audit record of the back-office answer
    /// `result`, and returns the answer; for a call that only reads, an
    /// answer whose record could not be written is withheld instead
    /// (UNAVAILABLE, [`crate::status::not_audited`]).
    pub async fn settle<T>(
        &self,
        rpc: &str,
        effect: Effect,
        event: AuditEvent,
        result: Result<T, tonic::Status>,
    ) -> Result<T, tonic::Status> {
        let Err(reason) = self.record(event).await else {
            return result;
        };
        if effect == Effect::Reads && result.is_ok() {
            tracing::error!(rpc, %reason, "a back-office read was withheld: its audit record could not be written");
            return Err(crate::status::not_audited());
        }
        tracing::error!(rpc, %reason, "a back-office request was answered without its audit record");
        result
    }

    /// Makes `event` durable, stamped with the auditor's clock; returns its
    /// sequence number (`None` when auditing is off) or why it could not be
    /// recorded.
    pub async fn record(&self, mut event: AuditEvent) -> Result<Option<u64>, String> {
        let Some(tx) = &self.tx else {
            return Ok(None);
        };
        event.time_unix_ms = u64::try_from(self.clock.now().0).unwrap_or(0);
        let (done, wait) = oneshot::channel();
        tx.send(Job::Record(Pending { event, done }))
            .map_err(|_| "the audit thread has stopped".to_string())?;
        match wait.await {
            Ok(result) => result.map(Some),
            Err(_) => Err("the audit thread has stopped".to_string()),
        }
    }

    /// Expires, under the retention policy, the trail's files whose
    /// records are all older than `cutoff`, behind a checkpoint that keeps
    /// the rest verifiable ([`AuditLog::expire_before`]); `clock` dates it
    /// in the checkpoint. For the retention scheduler: it runs on the
    /// audit thread, after the records queued before it, and records
    /// queued meanwhile wait for it (it reads each file it deletes).
    /// `Ok(None)` when auditing is off. The policy's cutoff is
    /// `clock.now().minus(policy.longest_encounter_keep() + policy.audit.keep)`,
    /// as `retention-report` judges the trail.
    pub async fn expire_before(
        &self,
        cutoff: UnixMillis,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<ExpiryReport>, String> {
        let Some(tx) = &self.tx else {
            return Ok(None);
        };
        let (done, wait) = oneshot::channel();
        tx.send(Job::Expire(PendingExpiry {
            cutoff,
            clock,
            done,
        }))
        .map_err(|_| "the audit thread has stopped".to_string())?;
        match wait.await {
            Ok(result) => result.map(Some),
            Err(_) => Err("the audit thread has stopped".to_string()),
        }
    }
}

impl Drop for Auditor {
    /// Closes the queue and waits for the thread to commit what is queued
    /// and write its last checkpoint.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The audit thread's sealing: when the next checkpoint is due.
struct Sealer {
    sealing: Sealing,
    /// When the oldest pending record was stamped (the clock records are
    /// stamped by, which the server gives the sealing too).
    pending_since: Option<UnixMillis>,
}

impl Sealer {
    /// Starts sealing `log` (restoring the records pending since the last
    /// checkpoint) and says where it goes on.
    fn start(log: &mut AuditLog, sealing: Sealing, dir: &Path) -> anyhow::Result<Sealer> {
        let resume = log
            .start_sealing(sealing.key.clone())
            .with_context(|| format!("resuming the signed checkpoints in {}", dir.display()))?;
        if resume.cut_tail_bytes > 0 {
            tracing::warn!(
                bytes = resume.cut_tail_bytes,
                "the signed checkpoints file ended in an incomplete line (a crash while one was \
                 written); it was cut off and its records stay pending"
            );
        }
        tracing::info!(
            key_id = %sealing.key.id(),
            last_sealed_seq = resume.last.as_ref().map_or(0, |s| s.last_seq),
            pending = resume.pending,
            every_records = sealing.every_records,
            every_ms = sealing.every.as_millis() as u64,
            "audit trail signed: checkpoints go on"
        );
        let pending_since = (resume.pending > 0).then(|| sealing.clock.now());
        Ok(Sealer {
            sealing,
            pending_since,
        })
    }

    /// Notes when the oldest pending record was stamped, if none was
    /// pending: `first` is the first of a group about to be committed.
    fn note_pending(&mut self, first: &AuditEvent) {
        let stamped = UnixMillis(i64::try_from(first.time_unix_ms).unwrap_or(i64::MAX));
        self.pending_since.get_or_insert(stamped);
    }

    /// How long the idle thread may wait for a job.
    fn poll(&self) -> Duration {
        self.sealing.every.min(MAX_SEAL_POLL)
    }

    /// Writes a checkpoint when one is due (or, `at_end`, when any record
    /// is pending); a failure is logged and the records stay pending.
    fn seal_if_due(&mut self, log: &mut AuditLog, metrics: &Metrics, at_end: bool) {
        let now = self.sealing.clock.now();
        let pending = log.unsealed();
        if pending == 0 {
            self.pending_since = None;
            return;
        }
        let since = *self.pending_since.get_or_insert(now);
        let waited = u64::try_from(now.0.saturating_sub(since.0)).unwrap_or(0);
        let due = at_end
            || pending >= self.sealing.every_records
            || waited >= self.sealing.every.as_millis() as u64;
        if !due {
            return;
        }
        let result = log.seal(now);
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &result {
            Ok(Some(s)) => tracing::info!(
                target: SEAL_LOG_TARGET,
                checkpoint = %s.to_line(),
                first_seq = s.first_seq,
                last_seq = s.last_seq,
                "signed audit checkpoint"
            ),
            Ok(None) => {}
            Err(e) => tracing::error!(
                error = %e, pending,
                "writing a signed audit checkpoint failed; its records stay pending"
            ),
        }));
        match result {
            Ok(Some(_)) => {
                metrics.audit_seals.inc();
                self.pending_since = None;
            }
            Ok(None) => self.pending_since = None,
            Err(_) => metrics.audit_seal_failures.inc(),
        }
    }
}

/// Commits whatever is queued, a group at a time, until every sender is
/// gone; an expiry ends a group and runs after it. With `sealer`, writes
/// checkpoints when due: after a group, or when the idle wait times out.
fn commit_loop(
    mut log: AuditLog,
    rx: mpsc::Receiver<Job>,
    metrics: &Metrics,
    mut sealer: Option<Sealer>,
) {
    let mut events = Vec::with_capacity(MAX_GROUP);
    let mut waiters = Vec::with_capacity(MAX_GROUP);
    loop {
        let first = match &mut sealer {
            None => rx.recv().ok(),
            Some(s) => match rx.recv_timeout(s.poll()) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    s.seal_if_due(&mut log, metrics, false);
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        let mut expiry = None;
        while let Some(job) = next {
            match job {
                Job::Record(p) => {
                    events.push(p.event);
                    waiters.push(p.done);
                }
                Job::Expire(e) => {
                    expiry = Some(e);
                    break;
                }
            }
            next = if events.len() < MAX_GROUP {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !events.is_empty() {
            if let Some(s) = &mut sealer {
                s.note_pending(&events[0]);
            }
            commit(&mut log, &mut events, &mut waiters, metrics);
            if let Some(s) = &mut sealer {
                s.seal_if_due(&mut log, metrics, false);
            }
        }
        if let Some(e) = expiry {
            expire(&mut log, e);
        }
    }
    if let Some(s) = &mut sealer {
        s.seal_if_due(&mut log, metrics, true);
    }
}

/// Writes one group of records and answers their waiters.
fn commit(
    log: &mut AuditLog,
    events: &mut Vec<AuditEvent>,
    waiters: &mut Vec<oneshot::Sender<Result<u64, String>>>,
    metrics: &Metrics,
) {
    let started = Instant::now();
    let result = log.append(events);
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

/// Runs one expiry, answers its caller, then logs what it did (counts and
/// sequence numbers only: no subject id), a panic there contained as for
/// a failed write.
fn expire(log: &mut AuditLog, job: PendingExpiry) {
    let result = log
        .expire_before(job.cutoff, job.clock.as_ref())
        .map_err(|e| e.to_string());
    let outcome = result.as_ref().map(summary).map_err(String::clone);
    let _ = job.done.send(result);
    let cutoff_unix_ms = job.cutoff.0;
    let _ = std::panic::catch_unwind(|| match outcome {
        Ok([records, first_seq, last_seq, files, finished]) => tracing::info!(
            cutoff_unix_ms,
            records,
            first_seq,
            last_seq,
            files,
            finished,
            "audit trail expiry: old files deleted behind a checkpoint"
        ),
        Err(error) => tracing::error!(
            cutoff_unix_ms, %error,
            "audit trail expiry failed; nothing more was deleted"
        ),
    });
}

/// An expiry's numbers for the log: records and their first and last
/// sequence numbers, files deleted, files of an interrupted expiry.
fn summary(r: &ExpiryReport) -> [u64; 5] {
    let (first, last, files) = r.expiry.as_ref().map_or((0, 0, 0), |e| {
        (e.first_seq, e.last_seq, e.files.len() as u64)
    });
    [r.records(), first, last, files, r.finished.len() as u64]
}

#[cfg(test)]
mod tests {
    use super::*;
    use facegate_core::audit::verify_dir;
    use facegate_core::clock::ManualClock;

    fn event(time_unix_ms: u64) -> AuditEvent {
        AuditEvent {
            time_unix_ms,
            rpc: "Identify".into(),
            code: "OK".into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_audit_thread_expires_old_files_between_records() {
        let dir = tempfile::tempdir().unwrap();
        for t in [1_000, 2_000] {
            let (mut log, _) = AuditLog::open(dir.path()).unwrap();
            log.append(&[event(t)]).unwrap();
        }
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(UnixMillis(10_000)));
        let auditor = Auditor::open(dir.path(), Metrics::new(), clock.clone()).unwrap();
        assert_eq!(auditor.record(event(3_000)).await, Ok(Some(3)));

        let (report, third) = tokio::join!(
            auditor.expire_before(UnixMillis(2_500), clock.clone()),
            auditor.record(event(3_001)),
        );
        let report = report.unwrap().unwrap();
        assert_eq!(report.records(), 2);
        assert_eq!(report.expiry.unwrap().at_unix_ms, 10_000);
        assert_eq!(third, Ok(Some(4)));
        assert_eq!(auditor.record(event(3_002)).await, Ok(Some(5)));
        let s = verify_dir(dir.path()).unwrap();
        assert_eq!((s.checkpoint.unwrap().last_seq, s.records), (2, 3));

        let again = auditor
            .expire_before(UnixMillis(2_500), clock.clone())
            .await;
        assert_eq!(again.unwrap().unwrap().records(), 0);
        let off = Auditor::disabled();
        assert_eq!(off.expire_before(UnixMillis(2_500), clock).await, Ok(None));
    }

    /// The seals' ranges and times in `dir`.
    fn seals(dir: &Path) -> Vec<(u64, u64, i64)> {
        std::fs::read_to_string(dir.join(facegate_core::audit::SEALS_FILE))
            .unwrap()
            .lines()
            .map(|l| {
                let s = facegate_core::audit::Seal::from_line(l.as_bytes()).unwrap();
                (s.first_seq, s.last_seq, s.time_unix_ms)
            })
            .collect()
    }

    #[tokio::test]
    async fn checkpoints_are_signed_every_n_records_after_t_on_the_clock_and_at_the_end() {
        use facegate_core::audit::{AuditVerifyingKey, signing, verify_seals};
        let dir = tempfile::tempdir().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (key, _, public) = signing::write_new_pair(keys.path()).unwrap();
        let public = AuditVerifyingKey::load(&public).unwrap();
        let clock = Arc::new(ManualClock::new(UnixMillis(10_000)));
        let sealing = Sealing {
            key,
            every_records: 3,
            every: Duration::from_secs(60),
            clock: clock.clone(),
        };
        let auditor =
            Auditor::open_sealed(dir.path(), Metrics::new(), Some(sealing), clock.clone()).unwrap();
        // A record's answer may come before the checkpoint after it.
        let wait_for = |n: usize| {
            let by = Instant::now() + Duration::from_secs(10);
            while seals(dir.path()).len() < n && Instant::now() < by {
                std::thread::sleep(Duration::from_millis(20));
            }
            seals(dir.path())
        };
        for t in 0..4 {
            auditor.record(event(t)).await.unwrap();
        }
        assert_eq!(wait_for(1), [(1, 3, 10_000)], "by count");
        // Record 4 waits; once a minute has passed on the injected clock,
        // the idle thread wakes and seals it.
        clock.advance(Duration::from_secs(59));
        std::thread::sleep(MAX_SEAL_POLL + Duration::from_millis(200));
        assert_eq!(seals(dir.path()).len(), 1, "not yet due");
        clock.advance(Duration::from_secs(2));
        assert_eq!(wait_for(2)[1], (4, 4, 71_000), "by time");
        auditor.record(event(5)).await.unwrap();
        drop(auditor);
        assert_eq!(seals(dir.path())[2], (5, 5, 71_000), "at the end");
        let r = verify_seals(dir.path(), &[public]).unwrap();
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert_eq!((r.records_verified, r.unsealed_after), (5, None));
    }
}
