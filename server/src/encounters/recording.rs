//! Recording an encounter on the request path: a port's Identify, Verify
//! or manifest search whose capture context asks for it (`record`) is
//! recorded durably before the answer leaves, and the answer carries the
//! record's id. The capture context is checked before any search, so a bad
//! one costs nothing; a record that cannot be made durable fails the
//! request with UNAVAILABLE (the port retries with the same
//! `encounter_id`, which is idempotent).

use std::sync::Arc;

use facegate_core::encounter::{
    CaptureContext, Decision, Encounter, EncounterError, Method, RecordReply, Recorded,
};
use facegate_core::manifest::Direction;
use tonic::Status;

use super::ServedEncounters;
use crate::audit::Caller;
use crate::metrics::Metrics;
use crate::proto;
use crate::request::RequestError;
use crate::served::{AnsweredBy, Identified};

/// What the matcher decided, in the terms an encounter records.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How the capture was compared.
    pub method: Method,
    /// The manifest searched, if any.
    pub manifest_id: Option<String>,
    /// Whether the best candidate reached the threshold.
    pub matched: bool,
    /// The best candidate and its score, when one was scored.
    pub best: Option<(String, f32)>,
    /// The threshold applied.
    pub threshold: f32,
    /// The gallery generation that answered.
    pub generation: u64,
}

impl Outcome {
    /// An Identify's outcome (national, manifest, or manifest then national).
    pub fn of_identify(found: &Identified) -> Outcome {
        let method = match found.answered_by {
            AnsweredBy::Manifest(_) => Method::Manifest,
            AnsweredBy::National | AnsweredBy::ManifestThenNational(_) => Method::Identify,
        };
        Outcome {
            method,
            manifest_id: found.answered_by.manifest_id().map(str::to_owned),
            matched: found.matched,
            best: found.candidates.first().cloned(),
            threshold: found.threshold,
            generation: found.generation,
        }
    }

    /// A routed Identify's outcome, from the merged answer (the router
    /// sees the whole answer; no shard does).
    pub fn of_answer(a: &proto::IdentifyResponse) -> Outcome {
        let scope = proto::SearchScope::try_from(a.answered_by);
        let method = match scope {
            Ok(proto::SearchScope::Manifest) => Method::Manifest,
            _ => Method::Identify,
        };
        Outcome {
            method,
            manifest_id: (!a.manifest_id.is_empty()).then(|| a.manifest_id.clone()),
            matched: a.r#match,
            best: a
                .candidates
                .first()
                .map(|c| (c.subject_id.clone(), c.score)),
            threshold: a.threshold,
            generation: a.gallery_generation,
        }
    }

    /// A Verify's outcome against the claimed `subject_id`.
    pub fn of_verify(v: &proto::VerifyResponse, subject_id: &str) -> Outcome {
        Outcome {
            method: Method::Verify,
            manifest_id: None,
            matched: v.r#match,
            best: Some((subject_id.to_string(), v.score)),
            threshold: v.threshold,
            generation: v.gallery_generation,
        }
    }
}

/// The capture to record, when the request asks for one (`record`), in
/// domain terms and checked; INVALID_ARGUMENT naming the field otherwise.
pub fn requested(caller: &Caller) -> Result<Option<CaptureContext>, RequestError> {
    let Some(c) = caller.capture.as_ref().filter(|c| c.record) else {
        return Ok(None);
    };
    let direction = match proto::Direction::try_from(c.direction) {
        Ok(proto::Direction::Entry) => Direction::Entry,
        Ok(proto::Direction::Exit) => Direction::Exit,
        _ => return Err(RequestError::CaptureDirection),
    };
    let context = CaptureContext {
        encounter_id: c.encounter_id.clone(),
        direction,
        port: c.port_id.clone(),
        lane: c.lane.clone(),
        carrier: c.carrier.clone(),
        voyage: c.voyage.clone(),
        captured_at: facegate_core::clock::UnixMillis(c.captured_at_unix_ms),
    };
    context
        .validate()
        .map_err(|e| RequestError::field("capture", e))?;
    Ok(Some(context))
}

/// An encounter's record on its way to disk: the write is under way (in
/// the store's writer, or on the blocking pool) from [`start`] on, so the
/// request's other durable write (its audit record) proceeds beside it and
/// the answer waits for the slower of the two, not their sum.
pub struct PendingRecord {
    write: Write,
    /// The longest the request waits for it ([`ServedEncounters::record_timeout`]).
    timeout: std::time::Duration,
    metrics: Arc<Metrics>,
    port: String,
}

/// Where a pending record's answer comes from.
enum Write {
    Queued(tokio::sync::oneshot::Receiver<Result<Recorded, EncounterError>>),
    Blocking(tokio::task::JoinHandle<Result<Recorded, EncounterError>>),
}

/// Starts recording the encounter of `context` with `outcome` in
/// `encounters`, counted in `metrics`; what the answer carries comes from
/// [`PendingRecord::durable`].
pub fn start(
    encounters: &Arc<ServedEncounters>,
    metrics: &Arc<Metrics>,
    caller: &Caller,
    context: CaptureContext,
    outcome: Outcome,
) -> PendingRecord {
    let (encounters, metrics) = (Arc::clone(encounters), Arc::clone(metrics));
    let encounter = encounter(&encounters, caller, context, outcome);
    let port = metrics.port_label(caller.port()).into_owned();
    PendingRecord {
        timeout: encounters.record_timeout(),
        write: write(encounters, encounter),
        metrics,
        port,
    }
}

/// Queues `encounter` to the store's writer (a full queue answers at
/// once), or, when the store is not open yet or is one that does not
/// queue, records it on the blocking pool.
fn write(encounters: Arc<ServedEncounters>, encounter: Encounter) -> Write {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let reply: RecordReply = Box::new(move |r| {
        // A request that was cancelled is no longer waiting.
        let _ = answer.send(r);
    });
    let not_queued = match encounters.if_open() {
        Some(store) => store.enqueue_record(encounter, reply).err().map(|e| *e),
        None => Some(encounter),
    };
    match not_queued {
        None => Write::Queued(answered),
        Some(encounter) => Write::Blocking(tokio::task::spawn_blocking(move || {
            encounters.writable()?.record(encounter)
        })),
    }
}

impl PendingRecord {
    /// Waits until the record is durable, or at most its timeout; what
    /// the answer carries. Counts it, an exit whose subject had no open
    /// entry, and the wait itself (called once the audit record is
    /// durable, so the wait is what recording adds to the request). A
    /// record that lands after its request gave up is still counted, when
    /// it lands.
    pub async fn durable(mut self) -> Result<proto::EncounterRecord, Status> {
        let waiting = std::time::Instant::now();
        let recorded = tokio::time::timeout(self.timeout, self.write.answer()).await;
        let metrics = &self.metrics;
        metrics
            .encounter_record_wait_seconds
            .observe(waiting.elapsed().as_secs_f64());
        let Ok(recorded) = recorded else {
            metrics.encounter_failures.inc();
            tracing::error!(
                waited_ms = self.timeout.as_millis() as u64,
                "the encounter store did not confirm a record in time"
            );
            let (metrics, port, mut write) = (Arc::clone(&self.metrics), self.port, self.write);
            tokio::spawn(async move {
                if let Ok(late) = write.answer().await {
                    count(&metrics, &port, &late);
                }
            });
            return Err(crate::status::record_unconfirmed(self.timeout));
        };
        let recorded = recorded.map_err(|e| {
            if crate::status::is_server_side(&e) {
                metrics.encounter_failures.inc();
                tracing::error!(error = %e, "recording an encounter failed");
            }
            crate::status::encounter(&e)
        })?;
        count(metrics, &self.port, &recorded);
        Ok(proto::EncounterRecord {
            record_id: recorded.stored.record_id,
            first_record: recorded.newly_recorded,
        })
    }
}

/// Counts a record new to the store, by direction, port and decision, and
/// an exit whose subject had no open entry.
fn count(metrics: &Metrics, port: &str, recorded: &Recorded) {
    if !recorded.newly_recorded {
        return;
    }
    let e = &recorded.stored.encounter;
    let labels = [e.context.direction.name(), port, e.decision.name()];
    metrics.encounters.with_label_values(&labels).inc();
    if recorded.exit_without_entry {
        metrics.unmatched_exits.with_label_values(&[port]).inc();
    }
}

impl Write {
    /// The store's answer. A record whose wait is given up (its timeout)
    /// is still written by the store: the port's retry finds it.
    /// Awaited by reference (the receiver and the task handle are
    /// `Unpin`), so that no allocation pins it, and one given up on can be
    /// awaited again.
    async fn answer(&mut self) -> Result<Recorded, EncounterError> {
        match self {
            Write::Queued(answered) => answered.await.unwrap_or(Err(EncounterError::Closed)),
            Write::Blocking(task) => task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "encounter recording task failed");
                Err(EncounterError::Closed)
            }),
        }
    }
}

/// The encounter to record.
fn encounter(
    encounters: &ServedEncounters,
    caller: &Caller,
    context: CaptureContext,
    outcome: Outcome,
) -> Encounter {
    Encounter {
        context,
        manifest_id: outcome.manifest_id,
        method: outcome.method,
        decision: if outcome.matched {
            Decision::Match
        } else {
            Decision::NoMatch
        },
        subject_id: outcome
            .best
            .as_ref()
            .filter(|_| outcome.matched)
            .map(|(id, _)| id.clone()),
        score: outcome.best.map(|(_, score)| score),
        threshold: outcome.threshold,
        principal: caller.principal.as_deref().unwrap_or_default().to_string(),
        generation: outcome.generation,
        recorded_at: encounters.clock().now(),
    }
}
