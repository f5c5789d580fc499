//! Rows of the shared database read back into records, each checked as a
//! write would have checked it: a row no write could have made is damage
//! (`error::damaged`), never trusted.

use std::collections::HashMap;

use postgres::{GenericClient, Row};

use crate::error::{Location, damaged, remote};
use facegate_core::clock::UnixMillis;
use facegate_core::encounter::{
    Admission, CaptureContext, Category, Change, Day, Decision, Encounter, EncounterError, Method,
    StayRule, StoredEncounter,
};
use facegate_core::manifest::Direction;

/// The columns [`encounter`] reads, in its order.
pub const COLUMNS: &str = "key, port, encounter_id, direction, lane, carrier, voyage, \
    manifest_id, captured_ms, recorded_ms, method, decision, subject_id, score, threshold, \
    principal, generation";

fn get<'a, T: postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    at: &Location,
) -> Result<T, EncounterError> {
    row.try_get(i).map_err(remote(at))
}

/// A direction by name.
pub fn direction(name: &str, at: &Location) -> Result<Direction, EncounterError> {
    Direction::from_name(name).ok_or_else(|| damaged(at, format!("unknown direction {name:?}")))
}

fn decision(name: &str, at: &Location) -> Result<Decision, EncounterError> {
    Decision::from_name(name).ok_or_else(|| damaged(at, format!("unknown decision {name:?}")))
}

/// A category by name.
pub fn category(name: &str, at: &Location) -> Result<Category, EncounterError> {
    Category::from_name(name).ok_or_else(|| damaged(at, format!("unknown category {name:?}")))
}

/// A row of [`COLUMNS`], without its changes.
pub fn encounter(row: &Row, at: &Location) -> Result<StoredEncounter, EncounterError> {
    let key: i64 = get(row, 0, at)?;
    let method: &str = get(row, 10, at)?;
    let generation: i64 = get(row, 16, at)?;
    let encounter = Encounter {
        context: CaptureContext {
            port: get(row, 1, at)?,
            encounter_id: get(row, 2, at)?,
            direction: direction(get(row, 3, at)?, at)?,
            lane: get(row, 4, at)?,
            carrier: get(row, 5, at)?,
            voyage: get(row, 6, at)?,
            captured_at: UnixMillis(get(row, 8, at)?),
        },
        manifest_id: get(row, 7, at)?,
        recorded_at: UnixMillis(get(row, 9, at)?),
        method: Method::from_name(method)
            .ok_or_else(|| damaged(at, format!("unknown method {method:?}")))?,
        decision: decision(get(row, 11, at)?, at)?,
        subject_id: get(row, 12, at)?,
        score: get(row, 13, at)?,
        threshold: get(row, 14, at)?,
        principal: get(row, 15, at)?,
        generation: u64::try_from(generation)
            .map_err(|_| damaged(at, format!("generation {generation}")))?,
    };
    encounter
        .validate()
        .map_err(|why| damaged(at, format!("encounter record {key}: {why}")))?;
    Ok(StoredEncounter {
        record_id: key as u64,
        encounter,
        changes: Vec::new(),
    })
}

/// A row of `encounter_changes` (from its `changed_ms` column on).
fn change(row: &Row, at: &Location) -> Result<Change, EncounterError> {
    Ok(Change {
        at: UnixMillis(get(row, 1, at)?),
        principal: get(row, 2, at)?,
        old_decision: decision(get(row, 3, at)?, at)?,
        old_subject_id: get(row, 4, at)?,
        new_decision: decision(get(row, 5, at)?, at)?,
        new_subject_id: get(row, 6, at)?,
        note: get(row, 7, at)?,
    })
}

/// Records of `sql` (which selects [`COLUMNS`] in the order wanted) with
/// their changes: two queries, however many records.
pub fn records(
    c: &mut impl GenericClient,
    at: &Location,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<StoredEncounter>, EncounterError> {
    let rows = c.query(sql, params).map_err(remote(at))?;
    let mut out = rows
        .iter()
        .map(|r| encounter(r, at))
        .collect::<Result<Vec<_>, _>>()?;
    with_changes(c, at, &mut out)?;
    Ok(out)
}

/// Fills in each record's changes, oldest first.
pub fn with_changes(
    c: &mut impl GenericClient,
    at: &Location,
    records: &mut [StoredEncounter],
) -> Result<(), EncounterError> {
    if records.is_empty() {
        return Ok(());
    }
    let keys: Vec<i64> = records.iter().map(|r| r.record_id as i64).collect();
    let rows = c
        .query(
            "SELECT encounter, changed_ms, principal, old_decision, old_subject_id, \
             new_decision, new_subject_id, note FROM encounter_changes \
             WHERE encounter = ANY($1) ORDER BY id",
            &[&keys],
        )
        .map_err(remote(at))?;
    let mut by_key: HashMap<i64, Vec<Change>> = HashMap::new();
    for row in &rows {
        by_key
            .entry(get(row, 0, at)?)
            .or_default()
            .push(change(row, at)?);
    }
    for r in records {
        r.changes = by_key.remove(&(r.record_id as i64)).unwrap_or_default();
    }
    Ok(())
}

/// The record with key `key`, with its changes.
pub fn by_key(
    c: &mut impl GenericClient,
    at: &Location,
    key: i64,
) -> Result<Option<StoredEncounter>, EncounterError> {
    let sql = format!("SELECT {COLUMNS} FROM encounters WHERE key = $1");
    Ok(records(c, at, &sql, &[&key])?.pop())
}

/// An admission row: day, class, port, rule, until_day.
pub fn admission(row: &Row, at: &Location) -> Result<Admission, EncounterError> {
    let rule: &str = get(row, 3, at)?;
    let until: Option<i32> = get(row, 4, at)?;
    let until = until.map(Day);
    Ok(Admission {
        day: Day(get(row, 0, at)?),
        class: get(row, 1, at)?,
        port: get(row, 2, at)?,
        rule: StayRule::from_name(rule, until)
            .ok_or_else(|| damaged(at, format!("bad stay rule {rule:?} until {until:?}")))?,
    })
}
