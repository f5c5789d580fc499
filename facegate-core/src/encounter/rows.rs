//! Rows of the encounter database read back into records, each checked as
//! a write would have checked it: a row no write could have made is
//! reported as damage, never trusted.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sqlite_store::{day_of, db, direction_of};
use super::store::{Change, EncounterError, Movement, StoredEncounter};
use super::{
    Admission, CaptureContext, Category, Decision, Encounter, Method, StayRule, Traveller,
};
use crate::clock::UnixMillis;
use crate::sqlite;

fn corrupt(path: &Path, what: String) -> EncounterError {
    EncounterError::Db(sqlite::corrupt(path, what))
}

fn decision_of(name: &str, path: &Path) -> Result<Decision, EncounterError> {
    Decision::from_name(name).ok_or_else(|| corrupt(path, format!("unknown decision {name:?}")))
}

/// A row of `sqlite_store::COLUMNS`, without its changes.
pub(super) fn encounter(row: &Row<'_>, path: &Path) -> Result<StoredEncounter, EncounterError> {
    let e = db(path);
    let key: i64 = row.get(0).map_err(&e)?;
    let direction: String = row.get(3).map_err(&e)?;
    let method: String = row.get(10).map_err(&e)?;
    let decision: String = row.get(11).map_err(&e)?;
    let generation: i64 = row.get(16).map_err(&e)?;
    let encounter = Encounter {
        context: CaptureContext {
            port: row.get(1).map_err(&e)?,
            encounter_id: row.get(2).map_err(&e)?,
            direction: direction_of(&direction, path)?,
            lane: row.get(4).map_err(&e)?,
            carrier: row.get(5).map_err(&e)?,
            voyage: row.get(6).map_err(&e)?,
            captured_at: UnixMillis(row.get(8).map_err(&e)?),
        },
        manifest_id: row.get(7).map_err(&e)?,
        recorded_at: UnixMillis(row.get(9).map_err(&e)?),
        method: Method::from_name(&method)
            .ok_or_else(|| corrupt(path, format!("unknown method {method:?}")))?,
        decision: decision_of(&decision, path)?,
        subject_id: row.get(12).map_err(&e)?,
        score: row.get::<_, Option<f64>>(13).map_err(&e)?.map(|v| v as f32),
        threshold: row.get::<_, f64>(14).map_err(&e)? as f32,
        principal: row.get(15).map_err(&e)?,
        generation: u64::try_from(generation).unwrap_or(0),
    };
    encounter
        .validate()
        .map_err(|why| corrupt(path, format!("encounter record {key}: {why}")))?;
    Ok(StoredEncounter {
        record_id: key as u64,
        encounter,
        changes: Vec::new(),
    })
}

/// A row of `encounter_changes`.
pub(super) fn change(row: &Row<'_>, path: &Path) -> Result<Change, EncounterError> {
    let e = db(path);
    let old: String = row.get(2).map_err(&e)?;
    let new: String = row.get(4).map_err(&e)?;
    Ok(Change {
        at: UnixMillis(row.get(0).map_err(&e)?),
        principal: row.get(1).map_err(&e)?,
        old_decision: decision_of(&old, path)?,
        old_subject_id: row.get(3).map_err(&e)?,
        new_decision: decision_of(&new, path)?,
        new_subject_id: row.get(5).map_err(&e)?,
        note: row.get(6).map_err(&e)?,
    })
}

/// A subject's entries and exits captured before `until`, in capture order.
pub(super) fn movements(
    c: &Connection,
    path: &Path,
    subject_id: &str,
    until: UnixMillis,
) -> Result<Vec<Movement>, EncounterError> {
    let mut stmt = c
        .prepare_cached(super::sqlite_store::MOVEMENTS_SQL)
        .map_err(db(path))?;
    let mut rows = stmt.query(params![subject_id, until.0]).map_err(db(path))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db(path))? {
        let direction: String = row.get(1).map_err(db(path))?;
        out.push(Movement {
            captured_at: UnixMillis(row.get(0).map_err(db(path))?),
            direction: direction_of(&direction, path)?,
        });
    }
    Ok(out)
}

/// A traveller's file with their admissions, oldest first.
pub(super) fn traveller(
    c: &Connection,
    path: &Path,
    subject_id: &str,
) -> Result<Option<Traveller>, EncounterError> {
    let category: Option<String> = c
        .prepare_cached(super::sqlite_store::TRAVELLER_SQL)
        .and_then(|mut s| s.query_row([subject_id], |r| r.get(0)).optional())
        .map_err(db(path))?;
    let Some(category) = category else {
        return Ok(None);
    };
    let category = Category::from_name(&category)
        .ok_or_else(|| corrupt(path, format!("unknown category {category:?}")))?;
    let mut stmt = c
        .prepare_cached(super::sqlite_store::ADMISSIONS_SQL)
        .map_err(db(path))?;
    let mut rows = stmt.query([subject_id]).map_err(db(path))?;
    let mut admissions = Vec::new();
    while let Some(row) = rows.next().map_err(db(path))? {
        admissions.push(admission(row, path)?);
    }
    Ok(Some(Traveller {
        subject_id: subject_id.to_string(),
        category,
        admissions,
    }))
}

fn admission(row: &Row<'_>, path: &Path) -> Result<Admission, EncounterError> {
    let e = db(path);
    let rule: String = row.get(3).map_err(&e)?;
    let until = match row.get::<_, Option<i64>>(4).map_err(&e)? {
        Some(d) => Some(day_of(d, path)?),
        None => None,
    };
    Ok(Admission {
        day: day_of(row.get(0).map_err(&e)?, path)?,
        class: row.get(1).map_err(&e)?,
        port: row.get(2).map_err(&e)?,
        rule: StayRule::from_name(&rule, until)
            .ok_or_else(|| corrupt(path, format!("bad stay rule {rule:?} until {until:?}")))?,
    })
}

/// The oldest encounter record time per category (by traveller file) and
/// of encounters naming nobody.
pub(super) fn oldest(c: &Connection, path: &Path) -> Result<super::store::Oldest, EncounterError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT t.category, MIN(e.recorded_ms) FROM encounters e \
             LEFT JOIN travellers t ON t.subject_id = e.subject_id \
             WHERE e.subject_id IS NOT NULL GROUP BY t.category",
        )
        .map_err(db(path))?;
    let rows: Vec<(Option<String>, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(Iterator::collect)
        .map_err(db(path))?;
    let mut by_category = Vec::with_capacity(rows.len());
    for (name, at) in rows {
        let category = match name {
            Some(n) => Some(
                Category::from_name(&n)
                    .ok_or_else(|| corrupt(path, format!("unknown category {n:?}")))?,
            ),
            None => None,
        };
        by_category.push((category, UnixMillis(at)));
    }
    let unnamed: Option<i64> = c
        .query_row(
            "SELECT MIN(recorded_ms) FROM encounters WHERE subject_id IS NULL",
            [],
            |r| r.get(0),
        )
        .map_err(db(path))?;
    Ok(super::store::Oldest {
        by_category,
        unnamed: unnamed.map(UnixMillis),
    })
}
