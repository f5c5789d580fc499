//! A run of ports' records in a group commit, written with a few
//! statements whatever its length (each statement is a round trip to the
//! server, which a record at a time would pay per record):
//!
//! 1. one `INSERT ... SELECT FROM unnest(...) ON CONFLICT (port,
//!    encounter_id) DO NOTHING RETURNING`: the new records and their keys;
//! 2. for retries (a port's encounter id already stored, by this node or
//!    another), one read of the first records;
//! 3. for new matched exits, one read of each subject's movement before
//!    it: an exit whose previous movement is not an entry is flagged.
//!
//! A retry within the run itself is answered like any retry: the first
//! occurrence is written and the later ones get its record.

use std::collections::HashMap;

use postgres::Transaction;

use crate::error::{Location, remote};
use crate::group::{Pending, again, copy, in_savepoint};
use crate::rows::{self, COLUMNS};
use facegate_core::encounter::{Encounter, EncounterError, RecordReply, Recorded, StoredEncounter};
use facegate_core::manifest::Direction;

/// A port's encounter id: what makes a record idempotent.
type Id<'a> = (&'a str, &'a str);

fn id_of(e: &Encounter) -> Id<'_> {
    (&e.context.port, &e.context.encounter_id)
}

/// Writes `run` in its own savepoint; each caller's answer waits for the
/// commit. If the run fails, every record of it is answered with why and
/// nothing of it stays.
pub fn write_run(
    tx: &mut Transaction<'_>,
    at: &Location,
    run: Vec<(Encounter, RecordReply)>,
) -> Vec<Pending> {
    if run.is_empty() {
        return Vec::new();
    }
    let (encounters, replies): (Vec<Encounter>, Vec<RecordReply>) = run.into_iter().unzip();
    match in_savepoint(tx, at, |t| write(t, at, encounters)) {
        Ok(done) => replies
            .into_iter()
            .zip(done)
            .map(|(reply, r)| held(reply, Ok(r)))
            .collect(),
        // The run's savepoint is rolled back: none of it was written.
        Err(e) => replies
            .into_iter()
            .map(|reply| held(reply, Err(copy(&e, "not written"))))
            .collect(),
    }
}

/// Holds a record's answer until the commit.
fn held(reply: RecordReply, result: Result<Recorded, EncounterError>) -> Pending {
    Box::new(move |failed| {
        reply(match failed {
            None => result,
            Some(e) => Err(again(e)),
        })
    })
}

/// The records of `run`, in its order.
fn write(
    tx: &mut Transaction<'_>,
    at: &Location,
    run: Vec<Encounter>,
) -> Result<Vec<Recorded>, EncounterError> {
    let mut first: HashMap<Id<'_>, usize> = HashMap::new();
    let mut fresh: Vec<&Encounter> = run
        .iter()
        .enumerate()
        .filter(|(i, e)| *first.entry(id_of(e)).or_insert(*i) == *i)
        .map(|(_, e)| e)
        .collect();
    // Every node inserts in one order, so two nodes' runs sharing encounter
    // ids wait for each other instead of deadlocking.
    fresh.sort_by(|a, b| id_of(a).cmp(&id_of(b)));
    let keys = insert(tx, at, &fresh)?;
    let is_new = |i: usize, e: &Encounter| first[&id_of(e)] == i && keys.contains_key(&id_of(e));
    let retried: Vec<&Encounter> = run
        .iter()
        .enumerate()
        .filter(|&(i, e)| !is_new(i, e))
        .map(|(_, e)| e)
        .collect();
    let stored = stored(tx, at, &retried)?;
    let new_exits: Vec<&Encounter> = run
        .iter()
        .enumerate()
        .filter(|&(i, e)| is_new(i, e) && is_matched_exit(e))
        .map(|(_, e)| e)
        .collect();
    let flagged = exits_without_entry(tx, at, &new_exits)?;
    let mut out = Vec::with_capacity(run.len());
    for (i, e) in run.iter().enumerate() {
        out.push(if is_new(i, e) {
            Recorded {
                exit_without_entry: flagged.get(&id_of(e)).copied().unwrap_or(false),
                stored: StoredEncounter {
                    record_id: keys[&id_of(e)] as u64,
                    encounter: e.clone(),
                    changes: Vec::new(),
                },
                newly_recorded: true,
            }
        } else {
            let first = stored.get(&id_of(e)).cloned().ok_or_else(|| {
                crate::error::damaged(at, "a record vanished within its transaction".into())
            })?;
            Recorded {
                stored: first,
                newly_recorded: false,
                exit_without_entry: false,
            }
        });
    }
    Ok(out)
}

fn is_matched_exit(e: &Encounter) -> bool {
    e.context.direction == Direction::Exit && e.subject_id.is_some()
}

/// Inserts each of `es` whose port's encounter id is not stored; the keys
/// of those inserted.
fn insert<'a>(
    tx: &mut Transaction<'_>,
    at: &Location,
    es: &[&'a Encounter],
) -> Result<HashMap<Id<'a>, i64>, EncounterError> {
    // A deadlock with another node's transaction (runs of one group are
    // each sorted, not the group as a whole) aborts only this statement's
    // savepoint; by then the other node has its rows, and the retry finds
    // them stored.
    let mut attempt = 0;
    let rows = loop {
        let mut sp = tx.savepoint("insert").map_err(remote(at))?;
        match insert_rows(&mut sp, es) {
            Ok(rows) => {
                sp.commit().map_err(remote(at))?;
                break rows;
            }
            Err(e) if attempt < 3 && crate::error::is_lock_conflict(&e) => attempt += 1,
            Err(e) => return Err(remote(at)(e)),
        }
    };
    let by_id: HashMap<Id<'a>, &'a Encounter> = es.iter().map(|e| (id_of(e), *e)).collect();
    let mut keys = HashMap::with_capacity(rows.len());
    for row in &rows {
        let (port, id): (&str, &str) = (row.get(1), row.get(2));
        if let Some(e) = by_id.get(&(port, id)) {
            keys.insert(id_of(e), row.get::<_, i64>(0));
        }
    }
    Ok(keys)
}

/// The INSERT of `es`: the rows it inserted (key, port, encounter id).
fn insert_rows(
    tx: &mut Transaction<'_>,
    es: &[&Encounter],
) -> Result<Vec<postgres::Row>, postgres::Error> {
    let text = |f: fn(&Encounter) -> &str| es.iter().map(|e| f(e)).collect::<Vec<&str>>();
    tx.query(
        "INSERT INTO encounters (port, encounter_id, direction, lane, carrier, voyage, \
             manifest_id, captured_ms, recorded_ms, method, decision, subject_id, score, \
             threshold, principal, generation) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::int8[], $9::int8[], $10::text[], $11::text[], \
             $12::text[], $13::float4[], $14::float4[], $15::text[], $16::int8[]) \
             ON CONFLICT (port, encounter_id) DO NOTHING RETURNING key, port, encounter_id",
        &[
            &text(|e| &e.context.port),
            &text(|e| &e.context.encounter_id),
            &text(|e| e.context.direction.name()),
            &text(|e| &e.context.lane),
            &text(|e| &e.context.carrier),
            &text(|e| &e.context.voyage),
            &es.iter()
                .map(|e| e.manifest_id.as_deref())
                .collect::<Vec<_>>(),
            &es.iter()
                .map(|e| e.context.captured_at.0)
                .collect::<Vec<_>>(),
            &es.iter().map(|e| e.recorded_at.0).collect::<Vec<_>>(),
            &text(|e| e.method.name()),
            &text(|e| e.decision.name()),
            &es.iter()
                .map(|e| e.subject_id.as_deref())
                .collect::<Vec<_>>(),
            &es.iter().map(|e| e.score).collect::<Vec<_>>(),
            &es.iter().map(|e| e.threshold).collect::<Vec<_>>(),
            &text(|e| &e.principal),
            &es.iter()
                .map(|e| i64::try_from(e.generation).unwrap_or(i64::MAX))
                .collect::<Vec<_>>(),
        ],
    )
}

/// The stored first records of `es`' port encounter ids.
fn stored<'a>(
    tx: &mut Transaction<'_>,
    at: &Location,
    es: &[&'a Encounter],
) -> Result<HashMap<Id<'a>, StoredEncounter>, EncounterError> {
    if es.is_empty() {
        return Ok(HashMap::new());
    }
    let ports: Vec<&str> = es.iter().map(|e| e.context.port.as_str()).collect();
    let ids: Vec<&str> = es.iter().map(|e| e.context.encounter_id.as_str()).collect();
    let sql = format!(
        "SELECT {COLUMNS} FROM encounters WHERE (port, encounter_id) IN \
         (SELECT * FROM unnest($1::text[], $2::text[]))"
    );
    let found = rows::records(tx, at, &sql, &[&ports, &ids])?;
    let by_id: HashMap<(String, String), StoredEncounter> = found
        .into_iter()
        .map(|s| {
            let c = &s.encounter.context;
            ((c.port.clone(), c.encounter_id.clone()), s)
        })
        .collect();
    Ok(es
        .iter()
        .filter_map(|e| {
            let key = (e.context.port.clone(), e.context.encounter_id.clone());
            by_id.get(&key).map(|s| (id_of(e), s.clone()))
        })
        .collect())
}

/// Which of `exits` (new, matched) follow no entry: their subject's last
/// movement captured before them is an exit, or they have none.
fn exits_without_entry<'a>(
    tx: &mut Transaction<'_>,
    at: &Location,
    exits: &[&'a Encounter],
) -> Result<HashMap<Id<'a>, bool>, EncounterError> {
    if exits.is_empty() {
        return Ok(HashMap::new());
    }
    let subjects: Vec<&str> = exits
        .iter()
        .map(|e| e.subject_id.as_deref().unwrap_or_default())
        .collect();
    let times: Vec<i64> = exits.iter().map(|e| e.context.captured_at.0).collect();
    let rows = tx
        .query(
            "SELECT COALESCE((SELECT p.direction FROM encounters p \
                 WHERE p.subject_id = x.subject AND p.captured_ms < x.captured \
                 ORDER BY p.captured_ms DESC, p.direction DESC, p.key DESC LIMIT 1), 'exit') \
                 = 'exit' \
             FROM unnest($1::text[], $2::int8[]) WITH ORDINALITY AS x(subject, captured, i) \
             ORDER BY x.i",
            &[&subjects, &times],
        )
        .map_err(remote(at))?;
    Ok(exits
        .iter()
        .zip(&rows)
        .map(|(e, r)| (id_of(e), r.get::<_, bool>(0)))
        .collect())
}
