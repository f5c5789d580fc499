//! The embedded encounter store: one SQLite file under the data directory,
//! written by one thread with group commit, read by a small pool of
//! read-only connections. See docs/encounters.md for the schema, the
//! indexes and the query plans.
//!
//! **Group commit.** Every write (a record, a correction, a traveller's
//! file) is sent to the writer thread, which takes whatever else is waiting
//! (up to [`MAX_GROUP`]), applies each inside one transaction, commits once
//! (one fsync of the WAL, `synchronous=FULL`), and only then answers each
//! caller. Under load, many ports' records share one fsync; alone, a record
//! costs one. A write that fails (a bad correction) rolls back only its own
//! changes: a write of several statements runs in its own savepoint, and a
//! record, one INSERT, is atomic as a statement. A port's request queues
//! its record ([`EncounterStore::enqueue_record`]) and is answered from
//! this thread, so no thread of the server waits on the commit.
//!
//! **Checkpoints** run on a thread of their own (`checkpointer`), not
//! in the commit that fills the WAL, so no record waits behind one; past
//! 16 MiB of WAL it holds the writer for one short last copy, so that the
//! WAL is started over rather than growing for as long as the load lasts.
//!
//! **Reads** never wait for the writer: WAL mode lets a reader see the last
//! committed state while a transaction is being written, so a long report
//! never holds up a port's request.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::checkpointer::{self, Checkpointer, CommitGate};
use super::store::{
    Change, Correction, EncounterError, EncounterStore, Erasure, Movement, Oldest, RecordReply,
    Recorded, StoredEncounter, SubjectPage, page_limit,
};
use super::writes;
use super::{Category, Day, Traveller};
use crate::clock::UnixMillis;
use crate::manifest::Direction;
use crate::sqlite::{self, DbError, Ownership};

/// The file's name under the data directory.
pub const FILE_NAME: &str = "encounters.db";
/// Most writes one group commit takes.
pub const MAX_GROUP: usize = 256;
/// Writes that may wait for the writer: a port's record past them is
/// refused at once (`Overloaded`); other writes wait for room.
const QUEUE: usize = 4_096;

/// The writer's page cache, in KiB: 8 MiB, not the 64 MiB of the other
/// connections ([`crate::sqlite`]). When a commit rebalances b-tree
/// pages, SQLite renumbers them through the number of the page that holds
/// the lock byte (262,145, at 1 GiB), and the commit's end then walks the
/// writer's whole page cache to drop pages past the end of a file smaller
/// than that: about 12 % of the writer's CPU with 64 MiB of cache
/// (docs/benchmarks.md, "The writer's own cost"). With 8 MiB the walk is
/// an eighth as long, and the pages it no longer keeps are read from the
/// kernel's cache. Measured with `facegate-record-cost` on 500,000
/// records, 4 rounds: 168 against 150 us of CPU per record (medians), and
/// 2.5 % against 1.8 % of records waiting over 1 ms.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

/// The schema, one step per version (see [`crate::sqlite`]).
const MIGRATIONS: &[&str] = &[
    // 1: encounters, their changes, travellers and admissions.
    "CREATE TABLE encounters (
         key          INTEGER PRIMARY KEY,
         port         TEXT NOT NULL,
         encounter_id TEXT NOT NULL,
         direction    TEXT NOT NULL CHECK (direction IN ('entry', 'exit')),
         lane         TEXT NOT NULL,
         carrier      TEXT NOT NULL,
         voyage       TEXT NOT NULL,
         manifest_id  TEXT,
         captured_ms  INTEGER NOT NULL,
         recorded_ms  INTEGER NOT NULL,
         method       TEXT NOT NULL CHECK (method IN ('identify', 'verify', 'manifest')),
         decision     TEXT NOT NULL
                      CHECK (decision IN ('match', 'no_match', 'officer_override')),
         subject_id   TEXT,
         score        REAL,
         threshold    REAL NOT NULL,
         principal    TEXT NOT NULL,
         generation   INTEGER NOT NULL,
         UNIQUE (port, encounter_id)
     );
     CREATE INDEX encounters_by_subject ON encounters (subject_id, captured_ms, direction)
         WHERE subject_id IS NOT NULL;
     CREATE INDEX encounters_by_time ON encounters (captured_ms, direction);
     CREATE INDEX encounters_by_manifest ON encounters (manifest_id)
         WHERE manifest_id IS NOT NULL;
     CREATE TABLE encounter_changes (
         encounter      INTEGER NOT NULL REFERENCES encounters (key),
         changed_ms     INTEGER NOT NULL,
         principal      TEXT NOT NULL,
         old_decision   TEXT NOT NULL,
         old_subject_id TEXT,
         new_decision   TEXT NOT NULL,
         new_subject_id TEXT,
         note           TEXT NOT NULL
     );
     CREATE INDEX encounter_changes_by_encounter ON encounter_changes (encounter);
     CREATE TABLE travellers (
         subject_id TEXT PRIMARY KEY,
         category   TEXT NOT NULL CHECK (category IN ('citizen', 'lawful_permanent_resident',
                        'non_immigrant_visa', 'visa_exempt', 'other')),
         updated_ms INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE admissions (
         subject_id TEXT NOT NULL REFERENCES travellers (subject_id),
         day        INTEGER NOT NULL,
         class      TEXT NOT NULL,
         port       TEXT NOT NULL,
         rule       TEXT NOT NULL
                    CHECK (rule IN ('admitted_until', '90_in_180', 'duration_of_status')),
         until_day  INTEGER,
         PRIMARY KEY (subject_id, day)
     ) WITHOUT ROWID;",
    // 2: the irregular-movement reads find a period's exits (or entries)
    // and their subjects from the index alone: direction first, so only
    // that direction's rows are read, and the subject in it, so no row of
    // the table is (on 10 million records, looking up a month's 136,000
    // exits row by row took 1.4 to 2.7 s; from this index, 60 ms).
    "DROP INDEX encounters_by_time;
     CREATE INDEX encounters_by_direction_time ON encounters (direction, captured_ms, subject_id);",
];

/// The columns [`read_encounter`] reads, in its order.
pub(super) const COLUMNS: &str = "key, port, encounter_id, direction, lane, carrier, voyage, \
    manifest_id, captured_ms, recorded_ms, method, decision, subject_id, score, threshold, \
    principal, generation";

/// A write, with where to send its answer.
pub(super) enum Op {
    Record(super::Encounter, RecordReply),
    Correct(
        Correction,
        SyncSender<Result<StoredEncounter, EncounterError>>,
    ),
    PutTraveller(
        Traveller,
        UnixMillis,
        SyncSender<Result<(), EncounterError>>,
    ),
    Erase(Erasure, SyncSender<Result<u64, EncounterError>>),
    /// Runs after the group's commit, outside any transaction.
    Checkpoint(SyncSender<Result<(), EncounterError>>),
    RecordMany(
        Vec<super::Encounter>,
        SyncSender<Result<BulkRecorded, EncounterError>>,
    ),
    PutTravellers(
        Vec<Traveller>,
        UnixMillis,
        SyncSender<Result<(), EncounterError>>,
    ),
}

/// What [`SqliteEncounters::record_many`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkRecorded {
    /// Records written.
    pub recorded: usize,
    /// Records whose port and encounter id were already stored: skipped,
    /// the first record stands (as a retry of `record` is answered).
    pub duplicates: usize,
}

/// Counts of the writer's work, for metrics: their ratio is the mean
/// group size.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Writes answered (records, corrections, travellers' files).
    pub writes: AtomicU64,
    /// Transactions committed (each one fsync).
    pub commits: AtomicU64,
}

/// The SQLite encounter store.
#[derive(Debug)]
pub struct SqliteEncounters {
    path: PathBuf,
    stats: Arc<CommitStats>,
    writes: Mutex<Option<SyncSender<Op>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Checkpointer,
    readers: Mutex<Vec<Connection>>,
    _lock: std::fs::File,
}

impl SqliteEncounters {
    /// Opens (creating when absent) `dir/encounters.db` for this process
    /// alone, brings its schema up to date and starts its writer thread.
    pub fn open(dir: &Path) -> Result<Arc<SqliteEncounters>, EncounterError> {
        let path = dir.join(FILE_NAME);
        crate::durable_dir::create_dir_all(dir).map_err(|error| DbError::Io {
            path: dir.to_path_buf(),
            error,
        })?;
        let lock = sqlite::lock_file(&path)?;
        let conn = sqlite::open_owned(&path, MIGRATIONS, Ownership::LockFile)?;
        // Checkpoints run on the checkpointer's thread, never in a commit.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(|e| sqlite::db_error(&path, e))?;
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)
            .map_err(|e| sqlite::db_error(&path, e))?;
        let (tx, rx) = sync_channel(QUEUE);
        let writer_path = path.clone();
        let stats = Arc::new(CommitStats::default());
        let counted = Arc::clone(&stats);
        let gate = CommitGate::default();
        let checkpointer = Checkpointer::start(
            &path,
            move || counted.commits.load(Ordering::Relaxed),
            Arc::clone(&gate),
            checkpointer::RESTART_FRAMES,
        )?;
        let writer_stats = Arc::clone(&stats);
        let writer = std::thread::Builder::new()
            .name("encounter-writer".into())
            .spawn(move || write_loop(conn, &writer_path, &rx, &writer_stats, &gate))
            .map_err(|error| DbError::Io {
                path: path.clone(),
                error,
            })?;
        Ok(Arc::new(SqliteEncounters {
            path,
            stats,
            writes: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            checkpointer,
            readers: Mutex::new(Vec::new()),
            _lock: lock,
        }))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The writer's counts so far.
    pub fn commit_stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Sends a write to the writer and waits for its answer.
    fn write<T>(
        &self,
        op: impl FnOnce(SyncSender<Result<T, EncounterError>>) -> Op,
    ) -> Result<T, EncounterError> {
        let (answer, result) = sync_channel(1);
        let sender = self
            .writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(EncounterError::Closed)?;
        sender
            .send(op(answer))
            .map_err(|_| EncounterError::Closed)?;
        result.recv().map_err(|_| EncounterError::Closed)?
    }

    /// Runs `read` on a pooled read-only connection.
    fn read<T>(
        &self,
        read: impl FnOnce(&Connection, &Path) -> Result<T, EncounterError>,
    ) -> Result<T, EncounterError> {
        let pooled = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => sqlite::open_reader(&self.path)?,
        };
        let out = read(&conn, &self.path);
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(conn);
        out
    }

    /// Records a batch of encounters in one transaction, durable when it
    /// returns: the bulk path for loading histories (a migration from
    /// another system, the synthetic generator), where one `record` each
    /// would cost an fsync and a read-back per record. Every record is
    /// checked as `record` checks it before anything is sent, and the
    /// first malformed one refuses the whole batch; a port's encounter id
    /// already stored is skipped, as a retry is. The batch goes through
    /// the same writer thread as every write, in its own savepoint of a
    /// group commit, so it may run beside a serving store; a batch of
    /// 10,000 to 100,000 keeps ports' records from waiting long behind it.
    pub fn record_many(
        &self,
        encounters: Vec<super::Encounter>,
    ) -> Result<BulkRecorded, EncounterError> {
        for e in &encounters {
            e.validate()?;
        }
        self.write(|answer| Op::RecordMany(encounters, answer))
    }

    /// Sets many travellers' files in one transaction (the bulk path of
    /// `put_traveller`, checked the same way, all before any is written).
    pub fn put_travellers(
        &self,
        travellers: Vec<Traveller>,
        at: UnixMillis,
    ) -> Result<(), EncounterError> {
        for t in &travellers {
            t.validate()?;
        }
        self.write(|answer| Op::PutTravellers(travellers, at, answer))
    }

    /// SQLite's plan for each of [`REPORT_QUERIES`] on this file, as
    /// `EXPLAIN QUERY PLAN` gives it: one line per step, indented by depth.
    pub fn query_plans(&self) -> Result<Vec<(&'static str, Vec<String>)>, EncounterError> {
        self.read(|c, path| {
            REPORT_QUERIES
                .iter()
                .map(|&(name, sql)| Ok((name, explain(c, path, sql)?)))
                .collect()
        })
    }

    /// Stops the writer after the writes already sent, and waits for it,
    /// then the checkpointer after a last checkpoint.
    pub fn close(&self) {
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            // A panic in the writer has already answered nobody; nothing to add.
            let _ = w.join();
        }
        self.checkpointer.stop();
    }
}

impl Drop for SqliteEncounters {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread: one group commit per wake-up, each inside `gate`,
/// until every sender is gone.
fn write_loop(
    mut conn: Connection,
    path: &Path,
    ops: &Receiver<Op>,
    stats: &CommitStats,
    gate: &CommitGate,
) {
    while let Ok(first) = ops.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        let _no_restart_now = gate.lock().unwrap_or_else(|p| p.into_inner());
        writes::commit_group(&mut conn, path, group, stats);
    }
}

pub(super) fn db(path: &Path) -> impl Fn(rusqlite::Error) -> EncounterError + '_ {
    move |e| EncounterError::Db(sqlite::db_error(path, e))
}

/// A row of [`COLUMNS`], without its changes.
pub(super) fn read_encounter(
    row: &Row<'_>,
    path: &Path,
) -> Result<StoredEncounter, EncounterError> {
    super::rows::encounter(row, path)
}

/// The changes of record `key`, oldest first.
pub(super) fn changes_of(
    c: &Connection,
    path: &Path,
    key: i64,
) -> Result<Vec<Change>, EncounterError> {
    let mut stmt = c
        .prepare_cached(
            "SELECT changed_ms, principal, old_decision, old_subject_id, new_decision, \
             new_subject_id, note FROM encounter_changes WHERE encounter = ?1 ORDER BY rowid",
        )
        .map_err(db(path))?;
    let mut rows = stmt.query([key]).map_err(db(path))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(db(path))? {
        out.push(super::rows::change(row, path)?);
    }
    Ok(out)
}

/// The record with key `key`, with its changes.
pub(super) fn get_by_key(
    c: &Connection,
    path: &Path,
    key: i64,
) -> Result<Option<StoredEncounter>, EncounterError> {
    let sql = format!("SELECT {COLUMNS} FROM encounters WHERE key = ?1");
    let mut stmt = c.prepare_cached(&sql).map_err(db(path))?;
    let found = stmt
        .query_row([key], |row| Ok(read_encounter(row, path)))
        .optional()
        .map_err(db(path))?;
    let Some(found) = found else {
        return Ok(None);
    };
    let mut stored = found?;
    stored.changes = changes_of(c, path, key)?;
    Ok(Some(stored))
}

/// Records (with their changes) of a query whose first column is the key.
fn records(
    c: &Connection,
    path: &Path,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<StoredEncounter>, EncounterError> {
    let keys: Vec<i64> = {
        let mut stmt = c.prepare_cached(sql).map_err(db(path))?;
        stmt.query_map(params, |r| r.get(0))
            .and_then(Iterator::collect)
            .map_err(db(path))?
    };
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(e) = get_by_key(c, path, key)? {
            out.push(e);
        }
    }
    Ok(out)
}

impl EncounterStore for SqliteEncounters {
    fn record(&self, encounter: super::Encounter) -> Result<Recorded, EncounterError> {
        encounter.validate()?;
        self.write(|answer| {
            Op::Record(
                encounter,
                Box::new(move |r| {
                    // A caller that gave up (its request was cancelled) is not waiting.
                    let _ = answer.send(r);
                }),
            )
        })
    }

    fn enqueue_record(
        &self,
        encounter: super::Encounter,
        reply: RecordReply,
    ) -> Result<(), Box<super::Encounter>> {
        if let Err(e) = encounter.validate() {
            reply(Err(e.into()));
            return Ok(());
        }
        let sender = self
            .writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(sender) = sender else {
            reply(Err(EncounterError::Closed));
            return Ok(());
        };
        if let Err(refused) = sender.try_send(Op::Record(encounter, reply)) {
            // The op handed back is the one sent: a record.
            super::answer_unqueued(refused, QUEUE, |op| match op {
                Op::Record(_, reply) => Some(reply),
                _ => None,
            });
        }
        Ok(())
    }

    fn correct(&self, correction: Correction) -> Result<StoredEncounter, EncounterError> {
        correction.validate()?;
        self.write(|answer| Op::Correct(correction, answer))
    }

    fn put_traveller(&self, traveller: &Traveller, at: UnixMillis) -> Result<(), EncounterError> {
        traveller.validate()?;
        let t = traveller.clone();
        self.write(|answer| Op::PutTraveller(t, at, answer))
    }

    fn get(&self, record_id: u64) -> Result<Option<StoredEncounter>, EncounterError> {
        let Ok(key) = i64::try_from(record_id) else {
            return Ok(None);
        };
        self.read(|c, path| get_by_key(c, path, key))
    }

    fn history(&self, subject_id: &str) -> Result<Vec<StoredEncounter>, EncounterError> {
        self.read(|c, path| records(c, path, HISTORY_SQL, [subject_id]))
    }

    fn movements(
        &self,
        subject_id: &str,
        until: UnixMillis,
    ) -> Result<Vec<Movement>, EncounterError> {
        self.read(|c, path| super::rows::movements(c, path, subject_id, until))
    }

    fn traveller(&self, subject_id: &str) -> Result<Option<Traveller>, EncounterError> {
        self.read(|c, path| super::rows::traveller(c, path, subject_id))
    }

    fn present_subjects(
        &self,
        until: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubjectPage, EncounterError> {
        let limit = page_limit(limit);
        self.read(|c, path| {
            let mut stmt = c.prepare_cached(PRESENT_SQL).map_err(db(path))?;
            let ids: Vec<String> = stmt
                .query_map(params![after.unwrap_or(""), until.0, limit + 1], |r| {
                    r.get(0)
                })
                .and_then(Iterator::collect)
                .map_err(db(path))?;
            Ok(SubjectPage::from_fetch(ids, limit))
        })
    }

    fn exits_without_entry(
        &self,
        from: UnixMillis,
        until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredEncounter>, EncounterError> {
        let limit = page_limit(limit);
        self.read(|c, path| {
            records(
                c,
                path,
                EXITS_WITHOUT_ENTRY_SQL,
                params![from.0, until.0, limit],
            )
        })
    }

    fn entries_without_exit(
        &self,
        from: UnixMillis,
        until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredEncounter>, EncounterError> {
        let limit = page_limit(limit);
        self.read(|c, path| {
            records(
                c,
                path,
                ENTRIES_WITHOUT_EXIT_SQL,
                params![from.0, until.0, limit],
            )
        })
    }

    fn manifest_encounters(
        &self,
        manifest_id: &str,
    ) -> Result<Vec<StoredEncounter>, EncounterError> {
        self.read(|c, path| {
            records(
                c,
                path,
                "SELECT key FROM encounters WHERE manifest_id = ?1 ORDER BY captured_ms, direction, key",
                [manifest_id],
            )
        })
    }

    fn erase(&self, erasure: Erasure) -> Result<u64, EncounterError> {
        self.write(|answer| Op::Erase(erasure, answer))
    }

    fn subjects_before(
        &self,
        before: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubjectPage, EncounterError> {
        let limit = page_limit(limit);
        self.read(|c, path| {
            let mut stmt = c.prepare_cached(SUBJECTS_BEFORE_SQL).map_err(db(path))?;
            let ids: Vec<String> = stmt
                .query_map(params![after.unwrap_or(""), before.0, limit + 1], |r| {
                    r.get(0)
                })
                .and_then(Iterator::collect)
                .map_err(db(path))?;
            Ok(SubjectPage::from_fetch(ids, limit))
        })
    }

    fn oldest(&self) -> Result<Oldest, EncounterError> {
        self.read(super::rows::oldest)
    }

    fn travellers_set_before(
        &self,
        category: Category,
        updated_before: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubjectPage, EncounterError> {
        let limit = page_limit(limit);
        self.read(|c, path| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT subject_id FROM travellers WHERE subject_id > ?1 AND category = ?2 \
                     AND updated_ms < ?3 ORDER BY subject_id LIMIT ?4",
                )
                .map_err(db(path))?;
            let args = params![
                after.unwrap_or(""),
                category.name(),
                updated_before.0,
                limit + 1
            ];
            let ids: Vec<String> = stmt
                .query_map(args, |r| r.get(0))
                .and_then(Iterator::collect)
                .map_err(db(path))?;
            Ok(SubjectPage::from_fetch(ids, limit))
        })
    }

    fn checkpoint(&self) -> Result<(), EncounterError> {
        self.write(Op::Checkpoint)
    }

    fn commit_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.stats.writes.load(Relaxed),
            self.stats.commits.load(Relaxed),
        )
    }
}

/// Subjects after `?1` named by an encounter captured before `?2`, or with
/// a traveller file: the covering index of encounters by subject, then the
/// travellers' primary key.
const SUBJECTS_BEFORE_SQL: &str = "SELECT subject_id FROM (
         SELECT DISTINCT subject_id FROM encounters
         WHERE subject_id IS NOT NULL AND subject_id > ?1 AND captured_ms < ?2
         UNION
         SELECT subject_id FROM travellers WHERE subject_id > ?1
     ) ORDER BY subject_id LIMIT ?3";

/// A subject's records in capture order (entry before exit at one
/// instant): read from `encounters_by_subject`, then each row by key.
const HISTORY_SQL: &str =
    "SELECT key FROM encounters WHERE subject_id = ?1 ORDER BY captured_ms, direction, key";

/// A subject's movements before `?2`, in the order stay rules take them.
pub(super) const MOVEMENTS_SQL: &str = "SELECT captured_ms, direction FROM encounters \
     WHERE subject_id = ?1 AND captured_ms < ?2 ORDER BY captured_ms, direction, key";

/// A traveller's category.
pub(super) const TRAVELLER_SQL: &str = "SELECT category FROM travellers WHERE subject_id = ?1";

/// A traveller's admissions, oldest first.
pub(super) const ADMISSIONS_SQL: &str = "SELECT day, class, port, rule, until_day FROM admissions \
     WHERE subject_id = ?1 ORDER BY day";

/// The store's report reads by name, as the reports run them: what
/// [`SqliteEncounters::query_plans`] explains (the benchmark and
/// docs/benchmarks.md show the plans, so a change of index or query shows
/// up as a change of plan).
pub const REPORT_QUERIES: [(&str, &str); 7] = [
    ("present_subjects", PRESENT_SQL),
    ("exits_without_entry", EXITS_WITHOUT_ENTRY_SQL),
    ("entries_without_exit", ENTRIES_WITHOUT_EXIT_SQL),
    ("history", HISTORY_SQL),
    ("movements", MOVEMENTS_SQL),
    ("traveller", TRAVELLER_SQL),
    ("admissions", ADMISSIONS_SQL),
];

/// Subjects whose last movement before `?2` is an entry, after `?1`, not of
/// a category without a stay limit. Movements are ordered as stay rules
/// order them (capture time, then entry before exit at the same instant):
/// `captured_ms * 2 + is_exit` is that order as one number, so its maximum
/// per subject is the last movement, and it is an entry when even. The
/// query reads only the covering index `encounters_by_subject`, in subject
/// order, and groups as it goes: the conditions are on the group
/// (`HAVING`), so the rows come out in index order with no sort and the
/// scan stops at the page's last subject. (Filtering a grouped subquery
/// instead made SQLite group every subject after the cursor and sort them
/// for each page: 65 s for the 84 pages of a 10-million-record store, 1.3 s
/// now; docs/benchmarks.md.)
const PRESENT_SQL: &str = "SELECT subject_id FROM encounters
     WHERE subject_id IS NOT NULL AND subject_id > ?1 AND captured_ms < ?2
     GROUP BY subject_id
     HAVING MAX(captured_ms * 2 + (direction = 'exit')) % 2 = 0 AND NOT EXISTS (
         SELECT 1 FROM travellers t WHERE t.subject_id = encounters.subject_id
         AND t.category IN ('citizen', 'lawful_permanent_resident'))
     ORDER BY subject_id LIMIT ?3";

/// Exits in `[?1, ?2)` whose subject's previous movement (in the order
/// stay rules take them: capture time, entry before exit, then record) is
/// not an entry, or who has none. The period's exits come from the
/// covering index `encounters_by_direction_time` in capture order, and
/// each one's previous movement is one step back in `encounters_by_subject`;
/// only ties of capture time are sorted, so the scan stops at the page's
/// end. (Windowing every movement of every subject with an exit in the
/// period, as before, took 2.7 s for a month of 10 million records, 0.5 s
/// now; docs/benchmarks.md.)
const EXITS_WITHOUT_ENTRY_SQL: &str = "SELECT e.key FROM encounters e
     WHERE e.direction = 'exit' AND e.captured_ms >= ?1 AND e.captured_ms < ?2
       AND e.subject_id IS NOT NULL
       AND COALESCE((SELECT p.direction FROM encounters p
                     WHERE p.subject_id = e.subject_id
                       AND (p.captured_ms, p.direction, p.key) < (e.captured_ms, e.direction, e.key)
                     ORDER BY p.captured_ms DESC, p.direction DESC, p.key DESC LIMIT 1),
                    'exit') = 'exit'
     ORDER BY e.captured_ms, e.direction, e.key LIMIT ?3";

/// Entries in `[?1, ?2)` whose subject's next movement is another entry,
/// found as exits without entry are (one step forward).
const ENTRIES_WITHOUT_EXIT_SQL: &str = "SELECT e.key FROM encounters e
     WHERE e.direction = 'entry' AND e.captured_ms >= ?1 AND e.captured_ms < ?2
       AND e.subject_id IS NOT NULL
       AND (SELECT n.direction FROM encounters n
            WHERE n.subject_id = e.subject_id
              AND (n.captured_ms, n.direction, n.key) > (e.captured_ms, e.direction, e.key)
            ORDER BY n.captured_ms, n.direction, n.key LIMIT 1) = 'entry'
     ORDER BY e.captured_ms, e.direction, e.key LIMIT ?3";

/// `EXPLAIN QUERY PLAN` of `sql`, its parameters bound to NULL (the plan
/// is chosen when the statement is prepared, not from their values).
fn explain(c: &Connection, path: &Path, sql: &str) -> Result<Vec<String>, EncounterError> {
    let mut stmt = c
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .map_err(db(path))?;
    let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
    let steps: Vec<(i64, i64, String)> = stmt
        .query_map(rusqlite::params_from_iter(nulls), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(3)?))
        })
        .and_then(Iterator::collect)
        .map_err(db(path))?;
    let mut depth: std::collections::HashMap<i64, usize> = std::collections::HashMap::new();
    let mut lines = Vec::with_capacity(steps.len());
    for (id, parent, detail) in steps {
        let d = depth.get(&parent).map_or(0, |d| d + 1);
        depth.insert(id, d);
        lines.push(format!("{}{detail}", "  ".repeat(d)));
    }
    Ok(lines)
}

/// The day column of an admission, checked.
pub(super) fn day_of(v: i64, path: &Path) -> Result<Day, EncounterError> {
    i32::try_from(v)
        .map(Day)
        .map_err(|_| sqlite::corrupt(path, format!("day {v} out of range")).into())
}

/// Reads a direction name.
pub(super) fn direction_of(name: &str, path: &Path) -> Result<Direction, EncounterError> {
    Direction::from_name(name)
        .ok_or_else(|| sqlite::corrupt(path, format!("unknown direction {name:?}")).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encounter::store::EncounterStore;

    #[test]
    fn a_first_version_file_is_migrated_and_keeps_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        {
            let c = sqlite::open_owned(&path, &MIGRATIONS[..1], Ownership::ExclusiveConnection)
                .unwrap();
            c.execute(
                "INSERT INTO encounters (port, encounter_id, direction, lane, carrier, voyage, \
                 captured_ms, recorded_ms, method, decision, subject_id, score, threshold, \
                 principal, generation) VALUES ('JFK', 'e1', 'exit', '', '', '', 5, 6, \
                 'identify', 'match', 'S1', 0.7, 0.35, 'p', 1)",
                [],
            )
            .unwrap();
        }
        let store = SqliteEncounters::open(dir.path()).unwrap();
        let found = store
            .exits_without_entry(UnixMillis(0), UnixMillis(10), 0)
            .unwrap();
        assert_eq!(found.len(), 1);
        let plans = store.query_plans().unwrap();
        let (_, exits) = plans
            .iter()
            .find(|(n, _)| *n == "exits_without_entry")
            .unwrap();
        assert!(
            exits.join("\n").contains("encounters_by_direction_time"),
            "{exits:?}"
        );
    }

    #[test]
    fn a_cached_statement_is_not_planned_again_for_each_value_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // As the store opens it: the lock file, so a reader may open beside.
        let _lock = sqlite::lock_file(&path).unwrap();
        let c = sqlite::open_owned(&path, MIGRATIONS, Ownership::LockFile).unwrap();
        let reader = sqlite::open_reader(&path).unwrap();
        for c in [&c, &reader] {
            for (subject, at) in [("S1", 5), ("S2", 6), ("S3", 7)] {
                // As the writer does: taken from rusqlite's statement cache,
                // which clears the bindings when it takes the statement back.
                let mut stmt = c
                    .prepare_cached(super::writes::MOVEMENT_BEFORE_SQL)
                    .unwrap();
                let _: Option<String> = stmt
                    .query_row(params![subject, at], |r| r.get(0))
                    .optional()
                    .unwrap();
                assert_eq!(
                    stmt.get_status(rusqlite::StatementStatus::RePrepare),
                    0,
                    "{subject}: the statement was parsed and planned again"
                );
            }
        }
    }
}
