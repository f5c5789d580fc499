//! The shared database's schema: the embedded store's tables and indexes
//! (`facegate_core::encounter::sqlite_store`) in PostgreSQL's types, and
//! versioned migrations that several nodes may start at once.
//!
//! `facegate_schema.version` is the number of steps applied. A node takes
//! a transaction-scoped advisory lock before reading it, so when several
//! nodes start together one migrates and the others then find the schema
//! current. A database from a newer build is refused, not guessed at.

use postgres::Client;

use crate::error::{Location, remote};
use facegate_core::encounter::EncounterError;

/// The advisory lock key the migration holds ("fgschema" in ASCII).
const MIGRATION_LOCK: i64 = 0x6667_7363_6865_6d61;

/// Identifiers and subject ids compare byte for byte (`COLLATE "C"`), as
/// SQLite's do, so pages and orders are the same in both stores whatever
/// the database's locale.
const MIGRATIONS: &[&str] = &[
    // 1: encounters, their changes, travellers and admissions.
    r#"CREATE TABLE encounters (
         key          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         port         TEXT COLLATE "C" NOT NULL,
         encounter_id TEXT COLLATE "C" NOT NULL,
         direction    TEXT COLLATE "C" NOT NULL CHECK (direction IN ('entry', 'exit')),
         lane         TEXT NOT NULL,
         carrier      TEXT NOT NULL,
         voyage       TEXT NOT NULL,
         manifest_id  TEXT COLLATE "C",
         captured_ms  BIGINT NOT NULL,
         recorded_ms  BIGINT NOT NULL,
         method       TEXT NOT NULL CHECK (method IN ('identify', 'verify', 'manifest')),
         decision     TEXT NOT NULL
                      CHECK (decision IN ('match', 'no_match', 'officer_override')),
         subject_id   TEXT COLLATE "C",
         score        REAL,
         threshold    REAL NOT NULL,
         principal    TEXT NOT NULL,
         generation   BIGINT NOT NULL,
         UNIQUE (port, encounter_id)
     );
     CREATE INDEX encounters_by_subject ON encounters (subject_id, captured_ms, direction)
         WHERE subject_id IS NOT NULL;
     CREATE INDEX encounters_by_direction_time ON encounters (direction, captured_ms, subject_id);
     CREATE INDEX encounters_by_manifest ON encounters (manifest_id)
         WHERE manifest_id IS NOT NULL;
     CREATE TABLE encounter_changes (
         id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         encounter      BIGINT NOT NULL REFERENCES encounters (key),
         changed_ms     BIGINT NOT NULL,
         principal      TEXT NOT NULL,
         old_decision   TEXT NOT NULL,
         old_subject_id TEXT COLLATE "C",
         new_decision   TEXT NOT NULL,
         new_subject_id TEXT COLLATE "C",
         note           TEXT NOT NULL
     );
     CREATE INDEX encounter_changes_by_encounter ON encounter_changes (encounter);
     CREATE TABLE travellers (
         subject_id TEXT COLLATE "C" PRIMARY KEY,
         category   TEXT NOT NULL CHECK (category IN ('citizen', 'lawful_permanent_resident',
                        'non_immigrant_visa', 'visa_exempt', 'other')),
         updated_ms BIGINT NOT NULL
     );
     CREATE TABLE admissions (
         subject_id TEXT COLLATE "C" NOT NULL REFERENCES travellers (subject_id),
         day        INTEGER NOT NULL,
         class      TEXT NOT NULL,
         port       TEXT NOT NULL,
         rule       TEXT NOT NULL
                    CHECK (rule IN ('admitted_until', '90_in_180', 'duration_of_status')),
         until_day  INTEGER,
         PRIMARY KEY (subject_id, day)
     );"#,
];

/// Brings the schema up to date, in one transaction under the migration
/// lock.
pub fn migrate(client: &mut Client, at: &Location) -> Result<(), EncounterError> {
    let mut tx = client.transaction().map_err(remote(at))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(remote(at))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS facegate_schema (version INTEGER NOT NULL)")
        .map_err(remote(at))?;
    let found: Option<i32> = tx
        .query_opt("SELECT version FROM facegate_schema", &[])
        .map_err(remote(at))?
        .map(|r| r.get(0));
    let applied = found.unwrap_or(0);
    let known = MIGRATIONS.len() as i32;
    if applied > known {
        return Err(EncounterError::Remote {
            location: at.to_string(),
            reason: format!("schema version {applied}, this build reads at most {known}"),
            transient: false,
        });
    }
    for step in &MIGRATIONS[applied as usize..] {
        tx.batch_execute(step).map_err(remote(at))?;
    }
    if found.is_none() {
        tx.execute(
            "INSERT INTO facegate_schema (version) VALUES ($1)",
            &[&known],
        )
    } else {
        tx.execute("UPDATE facegate_schema SET version = $1", &[&known])
    }
    .map_err(remote(at))?;
    tx.commit().map_err(remote(at))
}
