//! The writer thread's work: a group of writes in one transaction, each in
//! its own savepoint, answered only after the commit is durable.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use std::sync::atomic::Ordering;

use super::sqlite_store::{BulkRecorded, CommitStats, Op, db, get_by_key};
use super::store::{Correction, EncounterError, RecordReply, Recorded, StoredEncounter};
use super::{Encounter, Traveller};
use crate::clock::UnixMillis;
use crate::manifest::Direction;

/// An answer held until the group's commit.
enum Pending {
    Record(RecordReply, Result<Recorded, EncounterError>),
    Correct(
        std::sync::mpsc::SyncSender<Result<StoredEncounter, EncounterError>>,
        Result<StoredEncounter, EncounterError>,
    ),
    Put(
        std::sync::mpsc::SyncSender<Result<(), EncounterError>>,
        Result<(), EncounterError>,
    ),
    Count(
        std::sync::mpsc::SyncSender<Result<u64, EncounterError>>,
        Result<u64, EncounterError>,
    ),
    /// A checkpoint, run once the group is committed.
    Checkpoint(std::sync::mpsc::SyncSender<Result<(), EncounterError>>),
    Many(
        std::sync::mpsc::SyncSender<Result<BulkRecorded, EncounterError>>,
        Result<BulkRecorded, EncounterError>,
    ),
}

/// Applies `group` in one transaction and answers each write once the
/// commit has returned (durable), or with the commit's error; counts the
/// commit in `stats` before anyone is answered.
pub(super) fn commit_group(
    conn: &mut Connection,
    path: &Path,
    group: Vec<Op>,
    stats: &CommitStats,
) {
    let tx = match conn.transaction() {
        Ok(tx) => tx,
        Err(e) => return fail_all(group, path, e),
    };
    let pending: Vec<Pending> = group.into_iter().map(|op| apply(&tx, path, op)).collect();
    let committed = tx.commit().map_err(|e| crate::sqlite::db_error(path, e));
    if committed.is_ok() {
        stats
            .writes
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        stats.commits.fetch_add(1, Ordering::Relaxed);
    }
    for p in pending {
        // A caller that gave up (its request was cancelled) is not waiting.
        let _ = match (p, &committed) {
            (Pending::Record(reply, r), Ok(())) => {
                reply(r);
                true
            }
            (Pending::Record(reply, _), Err(e)) => {
                reply(Err(again(e, path)));
                true
            }
            (Pending::Correct(a, r), Ok(())) => a.send(r).is_ok(),
            (Pending::Correct(a, _), Err(e)) => a.send(Err(again(e, path))).is_ok(),
            (Pending::Put(a, r), Ok(())) => a.send(r).is_ok(),
            (Pending::Put(a, _), Err(e)) => a.send(Err(again(e, path))).is_ok(),
            (Pending::Count(a, r), Ok(())) => a.send(r).is_ok(),
            (Pending::Count(a, _), Err(e)) => a.send(Err(again(e, path))).is_ok(),
            (Pending::Checkpoint(a), Ok(())) => {
                let done = crate::sqlite::checkpoint(conn, path).map_err(EncounterError::from);
                a.send(done).is_ok()
            }
            (Pending::Checkpoint(a), Err(e)) => a.send(Err(again(e, path))).is_ok(),
            (Pending::Many(a, r), Ok(())) => a.send(r).is_ok(),
            (Pending::Many(a, _), Err(e)) => a.send(Err(again(e, path))).is_ok(),
        };
    }
}

/// Applies one write in `tx` (in its own savepoint when it is more than
/// one statement); its answer waits for the commit.
fn apply(tx: &Transaction<'_>, path: &Path, op: Op) -> Pending {
    match op {
        // One INSERT, then reads: a statement is atomic on its own, so a
        // record needs no savepoint (three statements fewer per record).
        Op::Record(e, answer) => Pending::Record(answer, record(tx, path, e)),
        Op::Correct(c, answer) => {
            Pending::Correct(answer, in_savepoint(tx, path, |t| correct(t, path, &c)))
        }
        Op::PutTraveller(t, at, answer) => Pending::Put(
            answer,
            in_savepoint(tx, path, |s| put_traveller(s, path, &t, at)),
        ),
        Op::Erase(e, answer) => Pending::Count(
            answer,
            in_savepoint(tx, path, |s| super::erase::erase(s, path, &e)),
        ),
        Op::Checkpoint(answer) => Pending::Checkpoint(answer),
        Op::RecordMany(es, answer) => Pending::Many(
            answer,
            in_savepoint(tx, path, |t| record_many(t, path, &es)),
        ),
        Op::PutTravellers(ts, at, answer) => Pending::Put(
            answer,
            in_savepoint(tx, path, |s| {
                ts.iter().try_for_each(|t| put_traveller(s, path, t, at))
            }),
        ),
    }
}

/// The commit's error, once per waiting caller (`DbError` is not `Clone`,
/// so each gets its message).
fn again(e: &crate::sqlite::DbError, path: &Path) -> EncounterError {
    EncounterError::CommitFailed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

fn fail_all(group: Vec<Op>, path: &Path, e: rusqlite::Error) {
    let e = crate::sqlite::db_error(path, e);
    for op in group {
        let _ = match op {
            Op::Record(_, reply) => {
                reply(Err(again(&e, path)));
                true
            }
            Op::Correct(_, a) => a.send(Err(again(&e, path))).is_ok(),
            Op::Erase(_, a) => a.send(Err(again(&e, path))).is_ok(),
            Op::Checkpoint(a) => a.send(Err(again(&e, path))).is_ok(),
            Op::PutTraveller(_, _, a) | Op::PutTravellers(_, _, a) => {
                a.send(Err(again(&e, path))).is_ok()
            }
            Op::RecordMany(_, a) => a.send(Err(again(&e, path))).is_ok(),
        };
    }
}

/// Runs `write` in a savepoint: its changes stay only if it succeeds.
fn in_savepoint<T>(
    tx: &Transaction<'_>,
    path: &Path,
    write: impl FnOnce(&Transaction<'_>) -> Result<T, EncounterError>,
) -> Result<T, EncounterError> {
    tx.execute_batch("SAVEPOINT one").map_err(db(path))?;
    match write(tx) {
        Ok(v) => {
            tx.execute_batch("RELEASE one").map_err(db(path))?;
            Ok(v)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO one; RELEASE one")
                .map_err(db(path))?;
            Err(e)
        }
    }
}

fn record(tx: &Transaction<'_>, path: &Path, e: Encounter) -> Result<Recorded, EncounterError> {
    if insert(tx, path, &e)? {
        // New: the row is what was given (no read-back on the hot path).
        let exit_without_entry = exit_without_entry(tx, path, &e)?;
        return Ok(Recorded {
            exit_without_entry,
            stored: StoredEncounter {
                record_id: tx.last_insert_rowid() as u64,
                encounter: e,
                changes: Vec::new(),
            },
            newly_recorded: true,
        });
    }
    // A retry: the first record stands, as stored.
    let c = &e.context;
    let key: i64 = tx
        .query_row(
            "SELECT key FROM encounters WHERE port = ?1 AND encounter_id = ?2",
            params![c.port, c.encounter_id],
            |r| r.get(0),
        )
        .map_err(db(path))?;
    let stored = get_by_key(tx, path, key)?.ok_or_else(|| {
        EncounterError::Db(crate::sqlite::corrupt(
            path,
            "a record vanished within its transaction",
        ))
    })?;
    Ok(Recorded {
        stored,
        newly_recorded: false,
        exit_without_entry: false,
    })
}

/// Whether `e` is a matched exit whose subject's last movement captured
/// before it is not an entry (or who has none).
fn exit_without_entry(
    tx: &Transaction<'_>,
    path: &Path,
    e: &Encounter,
) -> Result<bool, EncounterError> {
    let (Direction::Exit, Some(subject)) = (e.context.direction, &e.subject_id) else {
        return Ok(false);
    };
    let before: Option<String> = tx
        .prepare_cached(MOVEMENT_BEFORE_SQL)
        .and_then(|mut s| {
            s.query_row(params![subject, e.context.captured_at.0], |r| r.get(0))
                .optional()
        })
        .map_err(db(path))?;
    Ok(before.as_deref() != Some(Direction::Entry.name()))
}

/// The direction of subject `?1`'s last movement captured before `?2`.
pub(super) const MOVEMENT_BEFORE_SQL: &str = "SELECT direction FROM encounters WHERE subject_id = ?1 AND captured_ms < ?2 \
     ORDER BY captured_ms DESC, direction DESC, key DESC LIMIT 1";

/// Inserts each of `es` (no read-back): the bulk path.
fn record_many(
    tx: &Transaction<'_>,
    path: &Path,
    es: &[Encounter],
) -> Result<BulkRecorded, EncounterError> {
    let mut done = BulkRecorded::default();
    for e in es {
        if insert(tx, path, e)? {
            done.recorded += 1;
        } else {
            done.duplicates += 1;
        }
    }
    Ok(done)
}

/// Inserts `e` unless its port's encounter id is stored; whether it was.
fn insert(tx: &Transaction<'_>, path: &Path, e: &Encounter) -> Result<bool, EncounterError> {
    let c = &e.context;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO encounters (port, encounter_id, direction, lane, carrier, voyage, \
             manifest_id, captured_ms, recorded_ms, method, decision, subject_id, score, \
             threshold, principal, generation) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
             ON CONFLICT (port, encounter_id) DO NOTHING",
        )
        .and_then(|mut s| {
            s.execute(params![
                c.port,
                c.encounter_id,
                c.direction.name(),
                c.lane,
                c.carrier,
                c.voyage,
                e.manifest_id,
                c.captured_at.0,
                e.recorded_at.0,
                e.method.name(),
                e.decision.name(),
                e.subject_id,
                e.score.map(f64::from),
                f64::from(e.threshold),
                e.principal,
                i64::try_from(e.generation).unwrap_or(i64::MAX),
            ])
        })
        .map_err(db(path))?;
    Ok(inserted == 1)
}

fn correct(
    tx: &Transaction<'_>,
    path: &Path,
    c: &Correction,
) -> Result<StoredEncounter, EncounterError> {
    let not_found = EncounterError::NotFound {
        record_id: c.record_id,
    };
    let key = i64::try_from(c.record_id).map_err(|_| EncounterError::NotFound {
        record_id: c.record_id,
    })?;
    let before: Option<(String, Option<String>)> = tx
        .query_row(
            "SELECT decision, subject_id FROM encounters WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db(path))?;
    let (old_decision, old_subject) = before.ok_or(not_found)?;
    tx.execute(
        "INSERT INTO encounter_changes (encounter, changed_ms, principal, old_decision, \
         old_subject_id, new_decision, new_subject_id, note) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            key,
            c.at.0,
            c.principal,
            old_decision,
            old_subject,
            c.decision.name(),
            c.subject_id,
            c.note
        ],
    )
    .map_err(db(path))?;
    tx.execute(
        "UPDATE encounters SET decision = ?2, subject_id = ?3 WHERE key = ?1",
        params![key, c.decision.name(), c.subject_id],
    )
    .map_err(db(path))?;
    get_by_key(tx, path, key)?.ok_or(EncounterError::NotFound {
        record_id: c.record_id,
    })
}

fn put_traveller(
    tx: &Transaction<'_>,
    path: &Path,
    t: &Traveller,
    at: UnixMillis,
) -> Result<(), EncounterError> {
    tx.execute(
        "INSERT INTO travellers (subject_id, category, updated_ms) VALUES (?1, ?2, ?3) \
         ON CONFLICT (subject_id) DO UPDATE SET category = excluded.category, \
         updated_ms = excluded.updated_ms",
        params![t.subject_id, t.category.name(), at.0],
    )
    .map_err(db(path))?;
    let mut put = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO admissions (subject_id, day, class, port, rule, until_day) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(db(path))?;
    for a in &t.admissions {
        put.execute(params![
            t.subject_id,
            a.day.0,
            a.class,
            a.port,
            a.rule.name(),
            a.rule.until().map(|d| d.0)
        ])
        .map_err(db(path))?;
    }
    Ok(())
}
