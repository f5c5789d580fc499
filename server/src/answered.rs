//! The end of every search, served or routed: its audit record written
//! (and its encounter's record, when one was asked for) before the answer
//! leaves, then the request counted by code, latency, decision and best
//! score. The server's Matcher and the router's share it, so that both
//! audit and count an answer the same way.

use std::time::Instant;

use tonic::Status;

use crate::audit::{Auditor, Caller};
use crate::deadline::RequestClock;
use crate::encounters::recording::PendingRecord;
use crate::metrics::Metrics;
use crate::proto::{self, IdentifyResponse};
use crate::status::not_audited;

/// An answer, and the encounter record it waits for when the request
/// asked for one (written beside the answer's audit record; see
/// [`finish`]).
pub type Answered<T> = Result<(T, Option<PendingRecord>), Status>;

/// A search request that carries a capture context and a request id.
pub trait Captured {
    /// Moves the capture context out (the search does not need it).
    fn take_capture(&mut self) -> Option<proto::CaptureContext>;
    /// The client's id for the request.
    fn request_id(&self) -> &str;
}

impl Captured for proto::IdentifyRequest {
    fn take_capture(&mut self) -> Option<proto::CaptureContext> {
        self.capture.take()
    }
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

impl Captured for proto::VerifyRequest {
    fn take_capture(&mut self) -> Option<proto::CaptureContext> {
        self.capture.take()
    }
    fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// The start of every unary search: when it arrived and by when it must
/// be answered, and its caller (the capture context moved into it).
pub fn arrival<T: Captured>(req: &mut tonic::Request<T>) -> (RequestClock, Caller) {
    let clock = RequestClock::of(req);
    let capture = req.get_mut().take_capture();
    let caller = Caller::new(req, req.get_ref().request_id(), capture, clock.arrived);
    (clock, caller)
}

/// Where answers are audited and counted.
pub struct Books<'a> {
    /// The audit trail (perhaps off).
    pub auditor: &'a Auditor,
    /// The requests' counters.
    pub metrics: &'a Metrics,
}

/// Counts a request in flight for as long as it lives.
pub struct InFlight<'a>(&'a crate::metrics::Metrics);

impl<'a> InFlight<'a> {
    /// Counts one more request in flight, until dropped.
    pub fn new(m: &'a crate::metrics::Metrics) -> Self {
        m.in_flight.inc();
        InFlight(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Counts a finished request by code, its latency, its decision and its
/// best score.
fn count(
    m: &Metrics,
    rpc: &str,
    port: &str,
    arrived: Instant,
    code: tonic::Code,
    answer: Option<(bool, Option<f32>)>,
) {
    let port = m.port_label(port);
    m.requests
        .with_label_values(&[rpc, &port, crate::metrics::code_name(code)])
        .inc();
    m.request_seconds
        .with_label_values(&[rpc])
        .observe(arrived.elapsed().as_secs_f64());
    if let Some((matched, best)) = answer {
        m.decisions
            .with_label_values(&[rpc, if matched { "match" } else { "no_match" }])
            .inc();
        if let Some(score) = best {
            m.best_score
                .with_label_values(&[rpc, &port])
                .observe(f64::from(score));
        }
    }
}

/// What an answer decided and disclosed, for metrics and its audit record.
pub trait Answer {
    /// The decision.
    fn matched(&self) -> bool;
    /// The best candidate's score, when one was scored.
    fn best_score(&self) -> Option<f32>;
    /// Adds the encounter record the answer carries.
    fn set_encounter(&mut self, record: proto::EncounterRecord);
    /// The subjects the answer disclosed, and the generation that answered.
    fn disclosed(&self) -> (Vec<String>, u64);
}

impl Answer for IdentifyResponse {
    fn matched(&self) -> bool {
        self.r#match
    }
    fn set_encounter(&mut self, record: proto::EncounterRecord) {
        self.encounter = Some(record);
    }
    fn best_score(&self) -> Option<f32> {
        self.candidates.first().map(|c| c.score)
    }
    fn disclosed(&self) -> (Vec<String>, u64) {
        let ids = self.candidates.iter().map(|c| c.subject_id.clone());
        (ids.collect(), self.gallery_generation)
    }
}

/// A Verify answer with the subject it was asked about.
pub struct VerifyAnswer {
    /// The answer.
    pub response: proto::VerifyResponse,
    /// The subject the request claimed.
    pub subject: String,
}

impl Answer for VerifyAnswer {
    fn matched(&self) -> bool {
        self.response.r#match
    }
    fn set_encounter(&mut self, record: proto::EncounterRecord) {
        self.response.encounter = Some(record);
    }
    fn best_score(&self) -> Option<f32> {
        Some(self.response.score)
    }
    fn disclosed(&self) -> (Vec<String>, u64) {
        (vec![self.subject.clone()], self.response.gallery_generation)
    }
}

/// Writes the request's audit record (when the trail is on) while its
/// encounter's record (when it asked for one) is written too, then counts
/// it; the answer leaves only once both are durable (UNAVAILABLE when
/// either cannot be made so). An encounter that fails after the audit
/// record said the answer was given is followed in the trail by a record
/// of the failure, so the trail never claims an answer that was withheld.
/// `named` are the subjects the request itself named, recorded when it
/// failed; `manifest` the manifest it named (recorded either way).
pub async fn finish<T: Answer>(
    books: &Books<'_>,
    rpc: &str,
    caller: &Caller,
    answered: Answered<T>,
    named: impl FnOnce() -> Vec<String>,
    manifest: Option<String>,
) -> Result<T, Status> {
    let (result, pending) = match answered {
        Ok((answer, pending)) => (Ok(answer), pending),
        Err(status) => (Err(status), None),
    };
    let result = audit(books, rpc, caller, result, named, manifest.clone()).await;
    let result = match (result, pending) {
        (Ok(mut answer), Some(pending)) => match pending.durable().await {
            Ok(record) => {
                answer.set_encounter(record);
                Ok(answer)
            }
            Err(status) => Err(withheld(books, rpc, caller, status, manifest).await),
        },
        // A record under way when the audit failed is still written: the
        // port's retry (same encounter id) is answered with it.
        (result, _) => result,
    };
    let (code, answer) = match &result {
        Ok(v) => (tonic::Code::Ok, Some((v.matched(), v.best_score()))),
        Err(s) => (s.code(), None),
    };
    count(
        books.metrics,
        rpc,
        caller.port(),
        caller.arrived,
        code,
        answer,
    );
    result
}

/// The audit record of an answer that was given but whose encounter
/// could not be recorded: the answer is withheld with `status`.
async fn withheld(
    books: &Books<'_>,
    rpc: &str,
    caller: &Caller,
    status: Status,
    manifest: Option<String>,
) -> Status {
    if !books.auditor.is_enabled() {
        return status;
    }
    let mut event = caller.event(rpc, status.code(), None, Vec::new(), 0);
    event.manifest_id = manifest;
    match books.auditor.record(event).await {
        Ok(_) => status,
        Err(_) => not_audited(),
    }
}

/// Writes the audit record of `result` (when the trail is on); the
/// result, or UNAVAILABLE when the record cannot be made durable.
async fn audit<T: Answer>(
    books: &Books<'_>,
    rpc: &str,
    caller: &Caller,
    result: Result<T, Status>,
    named: impl FnOnce() -> Vec<String>,
    manifest: Option<String>,
) -> Result<T, Status> {
    if books.auditor.is_enabled() {
        let mut event = match &result {
            Ok(v) => {
                let (subjects, generation) = v.disclosed();
                let matched = Some(v.matched());
                caller.event(rpc, tonic::Code::Ok, matched, subjects, generation)
            }
            Err(s) => caller.event(rpc, s.code(), None, named(), 0),
        };
        event.manifest_id = manifest;
        match books.auditor.record(event).await {
            Ok(_) => result,
            Err(_) => Err(not_audited()),
        }
    } else {
        result
    }
}
