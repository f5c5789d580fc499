//! The SQL of each [`Erasure`], run by the writer inside its transaction
//! like every write: corrections go with their encounters, and an erasure
//! on request also clears the subject's id from other encounters'
//! corrections, so that no row anywhere still names them.

use postgres::Transaction;
use postgres::types::ToSql;

use crate::error::{Location, remote};
use facegate_core::encounter::{EncounterError, Erasure};

/// Deletes the encounters `condition` (over `encounters`, with `$1`, `$2`
/// bound to `params`) selects, their corrections first; the encounters
/// deleted.
fn delete_encounters(
    tx: &mut Transaction<'_>,
    at: &Location,
    condition: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, EncounterError> {
    let changes = format!(
        "DELETE FROM encounter_changes WHERE encounter IN \
         (SELECT key FROM encounters WHERE {condition})"
    );
    tx.execute(&changes, params).map_err(remote(at))?;
    let encounters = format!("DELETE FROM encounters WHERE {condition}");
    tx.execute(&encounters, params).map_err(remote(at))
}

/// Applies one erasure; the rows it removed.
pub fn erase(tx: &mut Transaction<'_>, at: &Location, e: &Erasure) -> Result<u64, EncounterError> {
    match e {
        Erasure::Subject { subject_id } => erase_subject(tx, at, subject_id),
        Erasure::CapturedUpTo { subject_id, up_to } => delete_encounters(
            tx,
            at,
            "subject_id = $1 AND captured_ms <= $2",
            &[subject_id, &up_to.0],
        ),
        Erasure::RecordedBefore { subject_id, before } => delete_encounters(
            tx,
            at,
            "subject_id = $1 AND recorded_ms < $2",
            &[subject_id, &before.0],
        ),
        Erasure::UnnamedRecordedBefore { before } => delete_encounters(
            tx,
            at,
            "subject_id IS NULL AND recorded_ms < $1",
            &[&before.0],
        ),
        Erasure::UnusedTraveller {
            subject_id,
            updated_before,
        } => erase_unused_traveller(tx, at, subject_id, updated_before.0),
    }
}

fn erase_subject(
    tx: &mut Transaction<'_>,
    at: &Location,
    subject: &String,
) -> Result<u64, EncounterError> {
    let n = delete_encounters(tx, at, "subject_id = $1", &[subject])?;
    for column in ["old_subject_id", "new_subject_id"] {
        let sql = format!("UPDATE encounter_changes SET {column} = NULL WHERE {column} = $1");
        tx.execute(&sql, &[subject]).map_err(remote(at))?;
    }
    tx.execute("DELETE FROM admissions WHERE subject_id = $1", &[subject])
        .map_err(remote(at))?;
    let files = tx
        .execute("DELETE FROM travellers WHERE subject_id = $1", &[subject])
        .map_err(remote(at))?;
    Ok(n + files)
}

fn erase_unused_traveller(
    tx: &mut Transaction<'_>,
    at: &Location,
    subject: &String,
    updated_before: i64,
) -> Result<u64, EncounterError> {
    let unused: bool = tx
        .query_one(
            "SELECT NOT EXISTS (SELECT 1 FROM encounters WHERE subject_id = $1) \
             AND EXISTS (SELECT 1 FROM travellers WHERE subject_id = $1 AND updated_ms < $2)",
            &[subject, &updated_before],
        )
        .map_err(remote(at))?
        .get(0);
    if !unused {
        return Ok(0);
    }
    tx.execute("DELETE FROM admissions WHERE subject_id = $1", &[subject])
        .map_err(remote(at))?;
    tx.execute("DELETE FROM travellers WHERE subject_id = $1", &[subject])
        .map_err(remote(at))?;
    Ok(1)
}
