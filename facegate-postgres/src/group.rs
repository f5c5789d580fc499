//! What a group commit's writes share: answers held until the commit,
//! the commit's failure told to each waiting caller, and savepoints, so
//! that one write that fails takes nothing else with it. Used by the
//! writer (`writer`) and by runs of records (`records`).

use std::sync::mpsc::SyncSender;

use postgres::Transaction;

use crate::error::{Location, remote};
use facegate_core::encounter::EncounterError;

/// Where a write's answer goes.
pub type Answer<T> = SyncSender<Result<T, EncounterError>>;

/// An answer held until the group's commit: called with `None` once it is
/// durable, or with the commit's failure.
pub type Pending = Box<dyn FnOnce(Option<&EncounterError>) + Send>;

/// Holds `result` for `answer` until the commit.
pub fn hold<T: Send + 'static>(answer: Answer<T>, result: Result<T, EncounterError>) -> Pending {
    Box::new(move |failed| {
        // A caller that gave up (its request was cancelled) is not waiting.
        let _ = answer.send(match failed {
            None => result,
            Some(e) => Err(again(e)),
        });
    })
}

/// The commit's failure, once per waiting caller. A commit whose answer
/// was lost may have been kept: the caller is told so, and a retry with
/// the same encounter id is answered with the first record if it was.
pub fn again(e: &EncounterError) -> EncounterError {
    copy(e, "commit not confirmed, the write may or may not be kept")
}

/// `e` for another caller, its reason prefixed by `what`.
pub fn copy(e: &EncounterError, what: &str) -> EncounterError {
    let (location, reason, transient) = match e {
        EncounterError::Remote {
            location,
            reason,
            transient,
        } => (location.clone(), reason.clone(), *transient),
        other => (String::new(), other.to_string(), true),
    };
    EncounterError::Remote {
        location,
        reason: format!("{what}: {reason}"),
        transient,
    }
}

/// Runs `write` in a savepoint: its changes stay only if it succeeds.
pub fn in_savepoint<T>(
    tx: &mut Transaction<'_>,
    at: &Location,
    write: impl FnOnce(&mut Transaction<'_>) -> Result<T, EncounterError>,
) -> Result<T, EncounterError> {
    let mut sp = tx.savepoint("one").map_err(remote(at))?;
    let out = write(&mut sp)?;
    sp.commit().map_err(remote(at))?;
    Ok(out)
}
