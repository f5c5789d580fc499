//! The SQL of each [`Erasure`]: run by the writer thread inside its
//! transaction, like every write. Corrections go with their encounters; an
//! erasure on request also clears the subject's id from other encounters'
//! corrections, so that no row anywhere still names them.

use std::path::Path;

use rusqlite::{Transaction, params};

use super::sqlite_store::db;
use super::store::{EncounterError, Erasure};

/// Deletes the encounters that `condition` (an SQL boolean over
/// `encounters`, with `?1`, `?2` bound to `a`, `b`) selects, their
/// corrections first; the encounters deleted.
fn delete_encounters(
    tx: &Transaction<'_>,
    path: &Path,
    condition: &str,
    a: &dyn rusqlite::ToSql,
    b: &dyn rusqlite::ToSql,
) -> Result<u64, EncounterError> {
    let changes = format!(
        "DELETE FROM encounter_changes WHERE encounter IN \
         (SELECT key FROM encounters WHERE {condition})"
    );
    let encounters = format!("DELETE FROM encounters WHERE {condition}");
    tx.execute(&changes, params![a, b]).map_err(db(path))?;
    let n = tx.execute(&encounters, params![a, b]).map_err(db(path))?;
    Ok(n as u64)
}

/// Applies one erasure; the rows it removed.
pub(super) fn erase(tx: &Transaction<'_>, path: &Path, e: &Erasure) -> Result<u64, EncounterError> {
    match e {
        Erasure::Subject { subject_id } => erase_subject(tx, path, subject_id),
        Erasure::CapturedUpTo { subject_id, up_to } => delete_encounters(
            tx,
            path,
            "subject_id = ?1 AND captured_ms <= ?2",
            subject_id,
            &up_to.0,
        ),
        Erasure::RecordedBefore { subject_id, before } => delete_encounters(
            tx,
            path,
            "subject_id = ?1 AND recorded_ms < ?2",
            subject_id,
            &before.0,
        ),
        Erasure::UnnamedRecordedBefore { before } => delete_encounters(
            tx,
            path,
            "subject_id IS NULL AND recorded_ms < ?1 AND ?2 = ?2",
            &before.0,
            &0,
        ),
        Erasure::UnusedTraveller {
            subject_id,
            updated_before,
        } => erase_unused_traveller(tx, path, subject_id, updated_before.0),
    }
}

fn erase_subject(tx: &Transaction<'_>, path: &Path, subject: &str) -> Result<u64, EncounterError> {
    let n = delete_encounters(tx, path, "subject_id = ?1 AND ?2 = ?2", &subject, &0)?;
    for column in ["old_subject_id", "new_subject_id"] {
        let sql = format!("UPDATE encounter_changes SET {column} = NULL WHERE {column} = ?1");
        tx.execute(&sql, [subject]).map_err(db(path))?;
    }
    tx.execute("DELETE FROM admissions WHERE subject_id = ?1", [subject])
        .map_err(db(path))?;
    let files = tx
        .execute("DELETE FROM travellers WHERE subject_id = ?1", [subject])
        .map_err(db(path))?;
    Ok(n + files as u64)
}

fn erase_unused_traveller(
    tx: &Transaction<'_>,
    path: &Path,
    subject: &str,
    updated_before: i64,
) -> Result<u64, EncounterError> {
    let unused: bool = tx
        .query_row(
            "SELECT NOT EXISTS (SELECT 1 FROM encounters WHERE subject_id = ?1) \
             AND EXISTS (SELECT 1 FROM travellers WHERE subject_id = ?1 AND updated_ms < ?2)",
            params![subject, updated_before],
            |r| r.get(0),
        )
        .map_err(db(path))?;
    if !unused {
        return Ok(0);
    }
    tx.execute("DELETE FROM admissions WHERE subject_id = ?1", [subject])
        .map_err(db(path))?;
    tx.execute("DELETE FROM travellers WHERE subject_id = ?1", [subject])
        .map_err(db(path))?;
    Ok(1)
}
