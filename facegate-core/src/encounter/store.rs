//! The encounter store's interface: what the server and the reports need
//! of any store, so that a central PostgreSQL (for several nodes) can stand
//! where the embedded SQLite file stands now ([`super::sqlite_store`]).
//!
//! Every method but [`EncounterStore::enqueue_record`] blocks (on disk, and
//! on fsync for writes): the server calls them off its async workers.

use super::day::Day;
use super::model::{
    Admission, Category, Decision, Encounter, MAX_FIELD_LEN, MAX_NOTE_LEN, RecordError, Traveller,
    check_subject, check_text,
};
use crate::clock::UnixMillis;
use crate::sqlite::DbError;

/// Most records one page of a listing returns.
pub const MAX_PAGE: usize = 1_000;

/// An encounter as stored: facegate's record id, and the encounter as it
/// now stands (after any officer's decision or correction).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEncounter {
    /// facegate's id of the record (what a decision or correction names).
    pub record_id: u64,
    /// The encounter, with its current decision and subject.
    pub encounter: Encounter,
    /// Officers' decisions and corrections, oldest first.
    pub changes: Vec<Change>,
}

/// Where a queued record's answer goes ([`EncounterStore::enqueue_record`]).
pub type RecordReply = Box<dyn FnOnce(Result<Recorded, EncounterError>) + Send>;

/// Answers a record that a store's writer queue (of `waiting` writes) did
/// not take, at once: `Overloaded` when the queue is full, `Closed` when
/// the writer is gone. `reply_of` finds the record's reply in the op
/// handed back (each store has its own op type). One rule for every
/// queueing store's [`EncounterStore::enqueue_record`].
pub fn answer_unqueued<Op>(
    refused: std::sync::mpsc::TrySendError<Op>,
    waiting: usize,
    reply_of: impl FnOnce(Op) -> Option<RecordReply>,
) {
    use std::sync::mpsc::TrySendError;
    let (why, op) = match refused {
        TrySendError::Full(op) => (EncounterError::Overloaded { waiting }, op),
        TrySendError::Disconnected(op) => (EncounterError::Closed, op),
    };
    if let Some(reply) = reply_of(op) {
        reply(Err(why));
    }
}

/// What `record` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// The record (the first one, for a retry).
    pub stored: StoredEncounter,
    /// False when this port had already recorded this encounter id: the
    /// first record is returned and nothing is written.
    pub newly_recorded: bool,
    /// A newly recorded matched exit whose subject's movement before it
    /// is not an entry, or who has none: a possible impostor, or an entry
    /// that was never captured. Found in the record's own transaction, so
    /// the request path needs no second read. False otherwise.
    pub exit_without_entry: bool,
}

/// An officer's decision after a manual check, or a correction of a record
/// (rectification): the encounter's decision and subject as they should
/// stand. The record keeps what it was before, with who changed it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    /// The record to change.
    pub record_id: u64,
    /// The decision as it should stand.
    pub decision: Decision,
    /// The subject as it should stand (`None` for no match).
    pub subject_id: Option<String>,
    /// Who decided (the back-office principal).
    pub principal: String,
    /// Why (the officer's note); required.
    pub note: String,
    /// When (facegate's clock).
    pub at: UnixMillis,
}

impl Correction {
    /// Checks a correction as every store does before writing it: the
    /// note is required, and the decision and subject must agree.
    pub fn validate(&self) -> Result<(), EncounterError> {
        let c = self;
        check_text("principal", &c.principal, MAX_FIELD_LEN, false)?;
        check_text("note", &c.note, MAX_NOTE_LEN, true)?;
        if let Some(s) = &c.subject_id {
            check_subject(s)?;
        }
        if c.decision != Decision::NoMatch && c.subject_id.is_none() {
            return Err(RecordError::DecisionMismatch {
                decision: c.decision.name(),
                reason: "names no subject",
            }
            .into());
        }
        if c.decision == Decision::NoMatch && c.subject_id.is_some() {
            return Err(RecordError::DecisionMismatch {
                decision: "no_match",
                reason: "names a subject",
            }
            .into());
        }
        Ok(())
    }
}

/// One past change of an encounter's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// When.
    pub at: UnixMillis,
    /// Who.
    pub principal: String,
    /// The decision before.
    pub old_decision: Decision,
    /// The subject before.
    pub old_subject_id: Option<String>,
    /// The decision after.
    pub new_decision: Decision,
    /// The subject after.
    pub new_subject_id: Option<String>,
    /// Why.
    pub note: String,
}

/// A subject's movement: what stay rules need of an encounter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Movement {
    /// The capture time.
    pub captured_at: UnixMillis,
    /// Entry or exit.
    pub direction: crate::manifest::Direction,
}

/// The rows a page of `limit` takes (0, or more than [`MAX_PAGE`]: a
/// whole page), as every store's query binds it.
pub fn page_limit(limit: usize) -> i64 {
    if limit == 0 || limit > MAX_PAGE {
        MAX_PAGE as i64
    } else {
        limit as i64
    }
}

impl SubjectPage {
    /// A page of `limit` from a fetch of `limit + 1` ids: the extra one,
    /// when there, only says that a next page exists.
    pub fn from_fetch(mut ids: Vec<String>, limit: i64) -> SubjectPage {
        let limit = usize::try_from(limit).unwrap_or(0);
        let next = (ids.len() > limit).then(|| {
            ids.truncate(limit);
            ids.last().cloned().unwrap_or_default()
        });
        SubjectPage {
            subject_ids: ids,
            next,
        }
    }
}

/// One page of subject ids, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPage {
    /// The subjects of this page.
    pub subject_ids: Vec<String>,
    /// The cursor for the next page; `None` at the end.
    pub next: Option<String>,
}

/// What an erasure removes: the retention purge's and the erasure on
/// request's one write. Each is durable when `erase` returns; the bytes
/// leave the file (zeroed by `secure_delete`) and, after
/// [`EncounterStore::checkpoint`], the WAL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// Everything about a subject: their encounters (with the corrections
    /// of those), their traveller file and admissions, and their id in
    /// other encounters' corrections (erasure on request).
    Subject {
        /// The subject.
        subject_id: String,
    },
    /// A subject's encounters captured at or before `up_to` (a period
    /// counted from an exit).
    CapturedUpTo {
        /// The subject.
        subject_id: String,
        /// The last capture time erased.
        up_to: UnixMillis,
    },
    /// A subject's encounters recorded before `before` (a period counted
    /// from the record, such as a citizen's 12 hours).
    RecordedBefore {
        /// The subject.
        subject_id: String,
        /// The first record time kept.
        before: UnixMillis,
    },
    /// Encounters that name nobody, recorded before `before`.
    UnnamedRecordedBefore {
        /// The first record time kept.
        before: UnixMillis,
    },
    /// A traveller's file, when none of their encounters remains and it
    /// was last set before `updated_before`.
    UnusedTraveller {
        /// The subject.
        subject_id: String,
        /// The first update time kept.
        updated_before: UnixMillis,
    },
}

/// Why the store could not do what was asked; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum EncounterError {
    /// The record is malformed.
    #[error(transparent)]
    Invalid(#[from] RecordError),
    /// No record has this id.
    #[error("no encounter record {record_id}")]
    NotFound {
        /// The id asked for.
        record_id: u64,
    },
    /// The database failed or is damaged.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The transaction that held this write could not be committed (a full
    /// disk, an I/O error): nothing of it was stored.
    #[error("{path}: commit failed, nothing was written: {reason}")]
    CommitFailed {
        /// The database file.
        path: std::path::PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// The store's writer has stopped (the server is shutting down).
    #[error("the encounter store is closed")]
    Closed,
    /// The writer's queue is full (it is far behind, or its disk or
    /// database does not answer): the write was refused at once rather
    /// than left to block its caller, and nothing of it is stored.
    #[error(
        "the encounter store is behind: {waiting} writes are waiting, so this one was not taken"
    )]
    Overloaded {
        /// The writes queued ahead of it.
        waiting: usize,
    },
    /// A shared database server (PostgreSQL, for several nodes) could not
    /// be reached, refused a statement, or holds a row no write could have
    /// made.
    #[error("encounter database {location}: {reason}")]
    Remote {
        /// Where the database is (host, port and database; never a password).
        location: String,
        /// What went wrong, and for a write whether it may have been kept.
        reason: String,
        /// True when trying again may succeed (the server is unreachable or
        /// restarting, a commit's outcome is unknown): callers answer
        /// UNAVAILABLE, and a port retries with the same encounter id.
        transient: bool,
    },
}

/// The encounter store: durable records of crossings, travellers' files,
/// and the reads reconciliation needs. Implementations are shared between
/// request handlers (`Send + Sync`) and make each write durable before it
/// returns.
pub trait EncounterStore: Send + Sync + std::fmt::Debug {
    /// Records an encounter, durably before returning; a retry of the same
    /// port's encounter id returns the first record.
    fn record(&self, encounter: Encounter) -> Result<Recorded, EncounterError>;

    /// Queues an encounter's record and returns at once; `reply` is called
    /// with what [`EncounterStore::record`] would return, once the record is
    /// durable (from the store's own thread). This is the request path's
    /// way in: an async caller awaits the reply without holding a thread
    /// of its own while the commit is written, which on a busy machine is
    /// two thread wake-ups fewer per request. A store whose queue is full
    /// calls `reply` at once with [`EncounterError::Overloaded`], so that
    /// a writer that has stopped answering (a hung disk or database) holds
    /// no caller's thread. A store that cannot queue at all hands the
    /// encounter back and drops `reply` uncalled, and the caller falls back
    /// to `record` off its async workers.
    fn enqueue_record(
        &self,
        encounter: Encounter,
        reply: RecordReply,
    ) -> Result<(), Box<Encounter>> {
        drop(reply);
        Err(Box::new(encounter))
    }

    /// Applies an officer's decision or a correction; the record as it now
    /// stands.
    fn correct(&self, correction: Correction) -> Result<StoredEncounter, EncounterError>;

    /// Sets a traveller's category and records their admissions (an
    /// admission on a day already recorded replaces it).
    fn put_traveller(&self, traveller: &Traveller, at: UnixMillis) -> Result<(), EncounterError>;

    /// The record with this id.
    fn get(&self, record_id: u64) -> Result<Option<StoredEncounter>, EncounterError>;

    /// A subject's encounters, in capture order: their travel history.
    fn history(&self, subject_id: &str) -> Result<Vec<StoredEncounter>, EncounterError>;

    /// A subject's entries and exits captured before `until`, in capture
    /// order (what stay rules read).
    fn movements(
        &self,
        subject_id: &str,
        until: UnixMillis,
    ) -> Result<Vec<Movement>, EncounterError>;

    /// A traveller's file, when one was recorded.
    fn traveller(&self, subject_id: &str) -> Result<Option<Traveller>, EncounterError>;

    /// Subjects of a category with a stay limit whose last movement
    /// captured before `until` is an entry: everyone who may be in the
    /// country then, one page at a time (`after` is the previous page's
    /// `next`).
    fn present_subjects(
        &self,
        until: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubjectPage, EncounterError>;

    /// Exits captured in `[from, until)` whose subject's previous movement
    /// is not an entry (or who has none): possible impostors at exit, or
    /// missed entry captures.
    fn exits_without_entry(
        &self,
        from: UnixMillis,
        until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredEncounter>, EncounterError>;

    /// Entries captured in `[from, until)` followed by another entry of the
    /// same subject with no exit between: missed exit captures.
    fn entries_without_exit(
        &self,
        from: UnixMillis,
        until: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredEncounter>, EncounterError>;

    /// The encounters recorded against a manifest, in capture order.
    fn manifest_encounters(
        &self,
        manifest_id: &str,
    ) -> Result<Vec<StoredEncounter>, EncounterError>;

    /// Removes what `erasure` names, durably; the rows removed (encounters,
    /// or 1 for a traveller's file).
    fn erase(&self, erasure: Erasure) -> Result<u64, EncounterError>;

    /// Subjects named by an encounter captured before `before`, or with a
    /// traveller file, in id order after `after`: the candidates of a
    /// retention purge, a page at a time.
    fn subjects_before(
        &self,
        before: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubjectPage, EncounterError>;

    /// Subjects whose traveller file says `category` and was last set
    /// before `updated_before`, in id order after `after`, a page at a time
    /// (the citizens whose gallery templates the policy removes).
    fn travellers_set_before(
        &self,
        category: Category,
        updated_before: UnixMillis,
        after: Option<&str>,
        limit: usize,
    ) -> Result<SubjectPage, EncounterError>;

    /// The oldest item of each kind the store holds, for the retention
    /// report: per category (`None`: no traveller file), the earliest
    /// record time of an encounter naming such a subject; and of encounters
    /// naming nobody.
    fn oldest(&self) -> Result<Oldest, EncounterError>;

    /// Copies the WAL into the database and truncates it, so erased rows'
    /// bytes leave the WAL file too.
    fn checkpoint(&self) -> Result<(), EncounterError>;

    /// Writes answered and transactions committed so far (their ratio is
    /// the mean group size), for metrics; zeros for a store that keeps no
    /// counts.
    fn commit_counts(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Leadership of the retention purge: `Some` (held until dropped) when
    /// this node may purge now, `None` when another node is purging the
    /// same store. A store that only this process writes always answers
    /// `Some`; a shared one takes a lock that every node sharing it sees,
    /// so two nodes never purge the same rows at once.
    fn lead_purge(&self) -> Result<Option<PurgeLead>, EncounterError> {
        Ok(Some(PurgeLead(Box::new(()))))
    }
}

/// Held while this node purges a store ([`EncounterStore::lead_purge`]);
/// dropping it lets another node lead.
pub struct PurgeLead(pub Box<dyn Send>);

impl std::fmt::Debug for PurgeLead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PurgeLead")
    }
}

/// The oldest records of a store, for the retention report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Oldest {
    /// Per category (`None`: subjects with no traveller file): the earliest
    /// record time of an encounter naming such a subject.
    pub by_category: Vec<(Option<Category>, UnixMillis)>,
    /// The earliest record time of an encounter naming nobody.
    pub unnamed: Option<UnixMillis>,
}

/// A traveller with no admission yet: the file a category alone creates.
pub fn traveller_of(subject_id: &str, category: Category) -> Traveller {
    Traveller {
        subject_id: subject_id.to_string(),
        category,
        admissions: Vec::<Admission>::new(),
    }
}

/// The instant after the last moment of `day`: "as of a day" includes the
/// whole day.
pub fn end_of(day: Day) -> UnixMillis {
    day.plus(1).start()
}

/// The store of a server that has recorded nothing yet: every read is
/// empty, every write refused. It lets readers run before the first record
/// creates the database file (a server that never records writes no file).
#[derive(Debug, Clone, Copy, Default)]
pub struct Empty;

impl EncounterStore for Empty {
    fn record(&self, _: Encounter) -> Result<Recorded, EncounterError> {
        Err(EncounterError::Closed)
    }
    fn correct(&self, c: Correction) -> Result<StoredEncounter, EncounterError> {
        Err(EncounterError::NotFound {
            record_id: c.record_id,
        })
    }
    fn put_traveller(&self, _: &Traveller, _: UnixMillis) -> Result<(), EncounterError> {
        Err(EncounterError::Closed)
    }
    fn get(&self, _: u64) -> Result<Option<StoredEncounter>, EncounterError> {
        Ok(None)
    }
    fn history(&self, _: &str) -> Result<Vec<StoredEncounter>, EncounterError> {
        Ok(Vec::new())
    }
    fn movements(&self, _: &str, _: UnixMillis) -> Result<Vec<Movement>, EncounterError> {
        Ok(Vec::new())
    }
    fn traveller(&self, _: &str) -> Result<Option<Traveller>, EncounterError> {
        Ok(None)
    }
    fn present_subjects(
        &self,
        _: UnixMillis,
        _: Option<&str>,
        _: usize,
    ) -> Result<SubjectPage, EncounterError> {
        Ok(SubjectPage {
            subject_ids: Vec::new(),
            next: None,
        })
    }
    fn exits_without_entry(
        &self,
        _: UnixMillis,
        _: UnixMillis,
        _: usize,
    ) -> Result<Vec<StoredEncounter>, EncounterError> {
        Ok(Vec::new())
    }
    fn entries_without_exit(
        &self,
        _: UnixMillis,
        _: UnixMillis,
        _: usize,
    ) -> Result<Vec<StoredEncounter>, EncounterError> {
        Ok(Vec::new())
    }
    fn manifest_encounters(&self, _: &str) -> Result<Vec<StoredEncounter>, EncounterError> {
        Ok(Vec::new())
    }
    fn erase(&self, _: Erasure) -> Result<u64, EncounterError> {
        Ok(0)
    }
    fn subjects_before(
        &self,
        _: UnixMillis,
        _: Option<&str>,
        _: usize,
    ) -> Result<SubjectPage, EncounterError> {
        Ok(SubjectPage {
            subject_ids: Vec::new(),
            next: None,
        })
    }
    fn oldest(&self) -> Result<Oldest, EncounterError> {
        Ok(Oldest::default())
    }
    fn travellers_set_before(
        &self,
        _: Category,
        _: UnixMillis,
        _: Option<&str>,
        _: usize,
    ) -> Result<SubjectPage, EncounterError> {
        Ok(SubjectPage {
            subject_ids: Vec::new(),
            next: None,
        })
    }
    fn checkpoint(&self) -> Result<(), EncounterError> {
        Ok(())
    }
}
