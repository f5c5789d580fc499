//! The manifests' SQLite file: see the module documentation of
//! [`crate::manifest`] for its schema, durability and retention.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::model::{
    Amendment, Direction, MAX_TRAVELLERS, Manifest, ManifestError, ManifestHeader, ManifestKind,
    validate_manifest_id,
};
use crate::clock::UnixMillis;
use crate::sqlite::{self, DbError};

/// The file's name under the data directory.
pub const FILE_NAME: &str = "manifests.db";
/// Most manifests one page of a listing returns.
pub const MAX_PAGE: usize = 1_000;

/// The schema, one step per version: `PRAGMA user_version` is the number of
/// steps applied. A step is never edited once released; a change is a new
/// step appended here.
const MIGRATIONS: &[&str] = &[
    // 1: manifests and their travellers.
    "CREATE TABLE manifests (
         key            INTEGER PRIMARY KEY,
         id             TEXT NOT NULL UNIQUE,
         kind           TEXT NOT NULL
                        CHECK (kind IN ('flight', 'vessel', 'land_crossing', 'port_day')),
         carrier        TEXT NOT NULL,
         voyage         TEXT NOT NULL,
         port           TEXT NOT NULL,
         direction      TEXT NOT NULL CHECK (direction IN ('entry', 'exit')),
         scheduled_ms   INTEGER NOT NULL,
         valid_from_ms  INTEGER NOT NULL,
         valid_until_ms INTEGER NOT NULL,
         CHECK (valid_until_ms >= valid_from_ms)
     );
     CREATE INDEX manifests_by_expiry ON manifests (valid_until_ms);
     CREATE INDEX manifests_by_port ON manifests (port, id);
     CREATE TABLE manifest_subjects (
         manifest   INTEGER NOT NULL REFERENCES manifests (key),
         subject_id TEXT NOT NULL,
         PRIMARY KEY (manifest, subject_id)
     ) WITHOUT ROWID;
     CREATE INDEX manifest_subjects_by_subject ON manifest_subjects (subject_id);",
];

/// Why the store could not do what was asked; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The manifest or amendment is malformed.
    #[error(transparent)]
    Invalid(#[from] ManifestError),
    /// No manifest has this id (never staged, or purged).
    #[error("no manifest {id:?}")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// A different manifest is already staged under this id.
    #[error("manifest {id:?} is already staged with different contents")]
    Conflict {
        /// The id.
        id: String,
    },
    /// The manifest's window has ended: it can no longer be changed.
    #[error("manifest {id:?} expired at {until} (unix ms)", until = .valid_until.0)]
    Expired {
        /// The id.
        id: String,
        /// When it expired.
        valid_until: UnixMillis,
    },
    /// The database could not be opened or used (damage, contention, a
    /// full disk, a newer schema).
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A stage that succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staged {
    /// The manifest as stored (its subject ids sorted).
    pub manifest: Arc<Manifest>,
    /// False when the same manifest was already staged (a retry).
    pub newly_staged: bool,
}

/// What a listing asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this port's manifests, when given.
    pub port: Option<String>,
    /// Start after this manifest id: the `next` of the previous page.
    pub after: Option<String>,
    /// At most this many (0 or more than [`MAX_PAGE`] mean [`MAX_PAGE`]).
    pub limit: usize,
}

/// One manifest in a listing: its header and how many travellers it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSummary {
    /// Who, where, when.
    pub header: ManifestHeader,
    /// Travellers listed.
    pub travellers: usize,
}

/// One page of a listing, in manifest id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestPage {
    /// The manifests of this page.
    pub manifests: Vec<ManifestSummary>,
    /// The cursor for the next page (`ListQuery::after`); `None` at the end.
    pub next: Option<String>,
}

/// The durable store of manifests: one SQLite file, locked exclusively.
#[derive(Debug)]
pub struct ManifestStore {
    conn: Connection,
    path: PathBuf,
}

const HEADER_COLUMNS: &str = "key, id, kind, carrier, voyage, port, direction, scheduled_ms, \
                              valid_from_ms, valid_until_ms";

impl ManifestStore {
    /// Opens (creating when absent) `dir/manifests.db`: takes the exclusive
    /// lock, checks the file's structure, and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<ManifestStore, StoreError> {
        let path = dir.join(FILE_NAME);
        let conn = sqlite::open(&path, MIGRATIONS)?;
        Ok(ManifestStore { conn, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a new manifest, durably when this returns. Staging the same
    /// manifest again (a retry) succeeds and changes nothing; staging a
    /// different one under a stored id is a [`StoreError::Conflict`].
    pub fn stage(&mut self, manifest: Manifest) -> Result<Staged, StoreError> {
        let m = manifest.normalized()?;
        let path = self.path.clone();
        let e = |e| db_error(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        if let Some(existing) = read_manifest(&tx, &path, &m.header.id)? {
            if existing != m {
                return Err(StoreError::Conflict { id: m.header.id });
            }
            return Ok(Staged {
                manifest: Arc::new(existing),
                newly_staged: false,
            });
        }
        let h = &m.header;
        tx.execute(
            "INSERT INTO manifests (id, kind, carrier, voyage, port, direction, scheduled_ms, \
             valid_from_ms, valid_until_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                h.id,
                h.kind.name(),
                h.carrier,
                h.voyage,
                h.port,
                h.direction.name(),
                h.scheduled.0,
                h.valid_from.0,
                h.valid_until.0
            ],
        )
        .map_err(e)?;
        let key = tx.last_insert_rowid();
        {
            let mut insert = tx
                .prepare("INSERT INTO manifest_subjects (manifest, subject_id) VALUES (?1, ?2)")
                .map_err(e)?;
            for id in &m.subject_ids {
                insert.execute(params![key, id]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(Staged {
            manifest: Arc::new(m),
            newly_staged: true,
        })
    }

    /// Adds and drops travellers in one transaction, and returns the
    /// manifest as it now is. Refused whole if the result would list more
    /// than [`MAX_TRAVELLERS`].
    pub fn amend(&mut self, id: &str, amendment: &Amendment) -> Result<Manifest, StoreError> {
        validate_manifest_id(id)?;
        amendment.validate()?;
        let path = self.path.clone();
        let e = |e| db_error(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        let key = key_of(&tx, &path, id)?;
        {
            let mut drop = tx
                .prepare("DELETE FROM manifest_subjects WHERE manifest = ?1 AND subject_id = ?2")
                .map_err(e)?;
            for s in &amendment.drop {
                drop.execute(params![key, s]).map_err(e)?;
            }
            let mut add = tx
                .prepare(
                    "INSERT OR IGNORE INTO manifest_subjects (manifest, subject_id) \
                     VALUES (?1, ?2)",
                )
                .map_err(e)?;
            for s in &amendment.add {
                add.execute(params![key, s]).map_err(e)?;
            }
        }
        let count: i64 = tx
            .query_row(
                "SELECT count(*) FROM manifest_subjects WHERE manifest = ?1",
                [key],
                |r| r.get(0),
            )
            .map_err(e)?;
        if count as usize > MAX_TRAVELLERS {
            // Dropping `tx` rolls the amendment back.
            return Err(ManifestError::TooManyTravellers {
                count: count as usize,
            }
            .into());
        }
        let m = read_manifest(&tx, &path, id)?.ok_or_else(|| not_found(id))?;
        tx.commit().map_err(e)?;
        Ok(m)
    }

    /// Ends the manifest's window at `now` (close early: the vessel has
    /// docked, the flight has boarded); a window that has not begun becomes
    /// empty. One already ended is left as it is.
    pub fn close(&mut self, id: &str, now: UnixMillis) -> Result<Manifest, StoreError> {
        validate_manifest_id(id)?;
        let path = self.path.clone();
        let e = |e| db_error(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute(
            "UPDATE manifests SET valid_until_ms = ?2, valid_from_ms = min(valid_from_ms, ?2) \
             WHERE id = ?1 AND valid_until_ms > ?2",
            params![id, now.0],
        )
        .map_err(e)?;
        let m = read_manifest(&tx, &path, id)?.ok_or_else(|| not_found(id))?;
        tx.commit().map_err(e)?;
        Ok(m)
    }

    /// The manifest with this id, if stored (expired ones included until
    /// they are purged).
    pub fn get(&self, id: &str) -> Result<Option<Manifest>, StoreError> {
        validate_manifest_id(id)?;
        read_manifest(&self.conn, &self.path, id)
    }

    /// One page of manifests in id order, optionally of one port.
    pub fn list(&self, q: &ListQuery) -> Result<ManifestPage, StoreError> {
        let limit = if q.limit == 0 {
            MAX_PAGE
        } else {
            q.limit.min(MAX_PAGE)
        };
        let e = |e| db_error(&self.path, e);
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {HEADER_COLUMNS}, \
                 (SELECT count(*) FROM manifest_subjects s WHERE s.manifest = m.key) \
                 FROM manifests m WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR port = ?2) \
                 ORDER BY id LIMIT ?3"
            ))
            .map_err(e)?;
        let mut rows = stmt
            .query(params![q.after, q.port, (limit + 1) as i64])
            .map_err(e)?;
        let mut manifests = Vec::new();
        while let Some(row) = rows.next().map_err(e)? {
            let (_, header) = read_header(row, &self.path)?;
            let travellers: i64 = row.get(10).map_err(e)?;
            manifests.push(ManifestSummary {
                header,
                travellers: travellers as usize,
            });
        }
        let next = (manifests.len() > limit).then(|| {
            manifests.truncate(limit);
            manifests[limit - 1].header.id.clone()
        });
        Ok(ManifestPage { manifests, next })
    }

    /// Every stored manifest (for the registry at start-up), each checked
    /// as it is read: a row that no stage could have written is corruption.
    pub fn load_all(&self) -> Result<Vec<Manifest>, StoreError> {
        let e = |e| db_error(&self.path, e);
        let mut subjects: HashMap<i64, Vec<String>> = HashMap::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT manifest, subject_id FROM manifest_subjects ORDER BY manifest, subject_id",
            )
            .map_err(e)?;
        let mut rows = stmt.query([]).map_err(e)?;
        while let Some(row) = rows.next().map_err(e)? {
            let key: i64 = row.get(0).map_err(e)?;
            subjects
                .entry(key)
                .or_default()
                .push(row.get(1).map_err(e)?);
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {HEADER_COLUMNS} FROM manifests ORDER BY id"
            ))
            .map_err(e)?;
        let mut rows = stmt.query([]).map_err(e)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(e)? {
            let (key, header) = read_header(row, &self.path)?;
            let m = Manifest {
                header,
                subject_ids: subjects.remove(&key).unwrap_or_default(),
            };
            check_stored(&m, &self.path)?;
            out.push(m);
        }
        Ok(out)
    }

    /// Deletes every manifest whose window ended at or before `now`, with
    /// its travellers, and returns their ids. The deleted bytes are zeroed
    /// (`secure_delete`) and the WAL is checkpointed and truncated, so no
    /// purged subject id is left in either file.
    pub fn purge_expired(&mut self, now: UnixMillis) -> Result<Vec<String>, StoreError> {
        let path = self.path.clone();
        let e = |e| db_error(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        let expired: Vec<(i64, String)> = {
            let mut stmt = tx
                .prepare("SELECT key, id FROM manifests WHERE valid_until_ms <= ?1 ORDER BY id")
                .map_err(e)?;
            stmt.query_map([now.0], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(Iterator::collect)
                .map_err(e)?
        };
        if expired.is_empty() {
            return Ok(Vec::new());
        }
        {
            let mut subjects = tx
                .prepare("DELETE FROM manifest_subjects WHERE manifest = ?1")
                .map_err(e)?;
            let mut manifests = tx
                .prepare("DELETE FROM manifests WHERE key = ?1")
                .map_err(e)?;
            for (key, _) in &expired {
                subjects.execute([key]).map_err(e)?;
                manifests.execute([key]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        self.checkpoint()?;
        Ok(expired.into_iter().map(|(_, id)| id).collect())
    }

    /// Drops `subject_id` from every manifest that lists it (erasure on
    /// request), durably, with the freed bytes zeroed and the WAL
    /// truncated; the ids of the manifests it was dropped from.
    pub fn erase_subject(&mut self, subject_id: &str) -> Result<Vec<String>, StoreError> {
        let path = self.path.clone();
        let e = |e| db_error(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        let ids: Vec<String> = {
            let mut stmt = tx
                .prepare(
                    "SELECT m.id FROM manifest_subjects s JOIN manifests m ON m.key = s.manifest \
                     WHERE s.subject_id = ?1 ORDER BY m.id",
                )
                .map_err(e)?;
            stmt.query_map([subject_id], |r| r.get(0))
                .and_then(Iterator::collect)
                .map_err(e)?
        };
        tx.execute(
            "DELETE FROM manifest_subjects WHERE subject_id = ?1",
            [subject_id],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        self.checkpoint()?;
        Ok(ids)
    }

    /// Copies the WAL into the database and truncates it to zero bytes.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(sqlite::checkpoint(&self.conn, &self.path)?)
    }
}

fn not_found(id: &str) -> StoreError {
    StoreError::NotFound { id: id.to_string() }
}

/// SQLite's errors, with damage and locking told apart from the rest.
fn db_error(path: &Path, error: rusqlite::Error) -> StoreError {
    sqlite::db_error(path, error).into()
}

/// The row key of manifest `id`.
fn key_of(conn: &Connection, path: &Path, id: &str) -> Result<i64, StoreError> {
    conn.query_row("SELECT key FROM manifests WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .optional()
    .map_err(|e| db_error(path, e))?
    .ok_or_else(|| not_found(id))
}

/// A row of [`HEADER_COLUMNS`]: its key and header.
fn read_header(row: &Row<'_>, path: &Path) -> Result<(i64, ManifestHeader), StoreError> {
    let e = |e| db_error(path, e);
    let corrupt = |reason: String| StoreError::from(sqlite::corrupt(path, reason));
    let kind: String = row.get(2).map_err(e)?;
    let direction: String = row.get(6).map_err(e)?;
    let header = ManifestHeader {
        id: row.get(1).map_err(e)?,
        kind: ManifestKind::from_name(&kind)
            .ok_or_else(|| corrupt(format!("unknown manifest kind {kind:?}")))?,
        carrier: row.get(3).map_err(e)?,
        voyage: row.get(4).map_err(e)?,
        port: row.get(5).map_err(e)?,
        direction: Direction::from_name(&direction)
            .ok_or_else(|| corrupt(format!("unknown direction {direction:?}")))?,
        scheduled: UnixMillis(row.get(7).map_err(e)?),
        valid_from: UnixMillis(row.get(8).map_err(e)?),
        valid_until: UnixMillis(row.get(9).map_err(e)?),
    };
    Ok((row.get(0).map_err(e)?, header))
}

/// Manifest `id` with its travellers, if stored.
fn read_manifest(conn: &Connection, path: &Path, id: &str) -> Result<Option<Manifest>, StoreError> {
    let e = |e| db_error(path, e);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {HEADER_COLUMNS} FROM manifests WHERE id = ?1"
        ))
        .map_err(e)?;
    let mut rows = stmt.query([id]).map_err(e)?;
    let Some(row) = rows.next().map_err(e)? else {
        return Ok(None);
    };
    let (key, header) = read_header(row, path)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT subject_id FROM manifest_subjects WHERE manifest = ?1 ORDER BY subject_id",
        )
        .map_err(e)?;
    let subject_ids = stmt
        .query_map([key], |r| r.get(0))
        .and_then(Iterator::collect)
        .map_err(e)?;
    let m = Manifest {
        header,
        subject_ids,
    };
    check_stored(&m, path)?;
    Ok(Some(m))
}

/// A stored manifest passes the checks a stage made, except that a closed
/// one may have an empty window; anything else is damage.
fn check_stored(m: &Manifest, path: &Path) -> Result<(), StoreError> {
    let mut probe = m.header.clone();
    if probe.valid_until == probe.valid_from {
        probe.valid_until = UnixMillis(probe.valid_from.0.saturating_add(1));
    }
    let checked = Manifest {
        header: probe,
        subject_ids: Vec::new(),
    };
    checked
        .validate()
        .and_then(|()| super::model::validate_subject_ids(&m.subject_ids))
        .map_err(|error| {
            // The reason goes to the operator's log: never a traveller's id.
            let reason = match error {
                ManifestError::DuplicateSubject { .. } => {
                    "a traveller is listed more than once".to_string()
                }
                other => other.to_string(),
            };
            sqlite::corrupt(path, format!("manifest {:?}: {reason}", m.header.id)).into()
        })
}
