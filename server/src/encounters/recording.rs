//! Recording an encounter on the request path: a port's Identify, Verify
//! or manifest search whose capture context asks for it (`record`) is
//! recorded durably before the answer leaves, and the answer carries the
//! record's id. The capture context is checked before any search, so a bad
//! one costs nothing; a record that cannot be made durable fails the
//! request with UNAVAILABLE (the port retries with the same
//! `encounter_id`, which is idempotent).

use std::sync::Arc;

use facegate_core::encounter::{
    CaptureContext, Decision, Encounter, EncounterError, EncounterStore, Method, StoredEncounter,
};
use facegate_core::manifest::Direction;
use tonic::Status;

use super::ServedEncounters;
use crate::audit::Caller;
use crate::proto;
use crate::served::{AnsweredBy, Identified, ServedGallery};

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
pub fn requested(caller: &Caller) -> Result<Option<CaptureContext>, Status> {
    let Some(c) = caller.capture.as_ref().filter(|c| c.record) else {
        return Ok(None);
    };
    let direction = match proto::Direction::try_from(c.direction) {
        Ok(proto::Direction::Entry) => Direction::Entry,
        Ok(proto::Direction::Exit) => Direction::Exit,
        _ => {
            return Err(Status::invalid_argument(
                "capture.record needs capture.direction DIRECTION_ENTRY or DIRECTION_EXIT",
            ));
        }
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
        .map_err(|e| Status::invalid_argument(format!("capture: {e}")))?;
    Ok(Some(context))
}

/// Records the encounter of `context` with `outcome` and returns what the
/// answer carries; waits (off the async workers) until the record is
/// durable. Counts it, and an exit whose subject had no open entry.
pub async fn record(
    state: &ServedGallery,
    caller: &Caller,
    context: CaptureContext,
    outcome: Outcome,
) -> Result<proto::EncounterRecord, Status> {
    let encounters = Arc::clone(state.encounters());
    let metrics = Arc::clone(state.metrics());
    let encounter = encounter(&encounters, caller, context, outcome);
    let port = metrics.port_label(caller.port()).into_owned();
    let recorded = tokio::task::spawn_blocking(move || {
        let store = encounters.writable()?;
        let recorded = store.record(encounter)?;
        let unmatched = recorded.newly_recorded && exit_without_entry(store, &recorded.stored)?;
        Ok::<_, EncounterError>((recorded, unmatched))
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "encounter recording task failed");
        Status::internal("the encounter could not be recorded")
    })?;
    let (recorded, unmatched) = recorded.map_err(|e| {
        if crate::status::is_server_side(&e) {
            metrics.encounter_failures.inc();
            tracing::error!(error = %e, "recording an encounter failed");
        }
        crate::status::encounter(&e)
    })?;
    if recorded.newly_recorded {
        let e = &recorded.stored.encounter;
        let labels = [e.context.direction.name(), port.as_str(), e.decision.name()];
        metrics.encounters.with_label_values(&labels).inc();
        if unmatched {
            metrics.unmatched_exits.with_label_values(&[&port]).inc();
        }
    }
    Ok(proto::EncounterRecord {
        record_id: recorded.stored.record_id,
        first_record: recorded.newly_recorded,
    })
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

/// Whether `stored` is a matched exit whose subject's movement before it is
/// not an entry (or who has none).
fn exit_without_entry(
    store: &dyn EncounterStore,
    stored: &StoredEncounter,
) -> Result<bool, EncounterError> {
    let e = &stored.encounter;
    let (Direction::Exit, Some(subject)) = (e.context.direction, &e.subject_id) else {
        return Ok(false);
    };
    let before = store.movements(subject, e.context.captured_at)?;
    Ok(before
        .last()
        .is_none_or(|m| m.direction != Direction::Entry))
}
