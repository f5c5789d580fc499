//! The audit trail: one record for every search and every gallery change,
//! written and fsync'd before the answer leaves the server, so that each
//! answer a port received can be attributed afterwards.
//!
//! A directory of JSON Lines files, `audit-<first seq>-<opened ms>.jsonl`
//! (16 hex digits each, so names sort in trail order). Every start of the
//! server opens a new file, and a file is closed for a new one once it
//! passes [`ROTATE_BYTES`] or, at its next append, once it has been open
//! for [`ROTATE_AFTER_MS`] (a day: retention deletes whole files, so a
//! quiet server's records outlive their cutoff by at most about a day);
//! a file is never appended to after it was
//! closed, so a crash can leave an incomplete line only at the end of a
//! file, where [`verify_dir`] reports it. Records are numbered without gaps
//! and chained across files ([`record`]).
//!
//! [`AuditLog::append`] writes a batch of records in one `write` and one
//! `fdatasync`: the server's audit thread gathers the records of concurrent
//! requests into one batch (group commit).
//!
//! Retention deletes whole old files ([`AuditLog::expire_before`],
//! [`expire_dir`]) after recording what it dropped in a [`checkpoint`],
//! from which the verifier starts the chain ([`expiry`] says how that
//! survives a crash).

pub mod checkpoint;
pub mod expiry;
pub mod record;
pub mod seal;
pub mod seal_check;
#[cfg(test)]
mod seal_tests;
mod sealer;
pub mod signing;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use checkpoint::{CHECKPOINT_FILE, Checkpoint, Expiry};
pub use expiry::{ExpiryReport, expire_dir};
pub use record::{AuditEvent, AuditRecord, LineError};
pub use seal::{SEALS_FILE, Seal};
pub use seal_check::{SealFailure, SealReport, verify_seals};
pub use sealer::SealResume;
pub use signing::{AuditSigningKey, AuditVerifyingKey, KeyError, KeyId};

use crate::clock::{Clock, UnixMillis};

/// Size past which the current file is closed and a new one opened.
pub const ROTATE_BYTES: u64 = 64 << 20;

/// Age (on the log's clock) past which the current file is closed at its
/// next append and a new one opened: one day, the granularity at which
/// expiry, which deletes whole files, can follow the retention cutoff.
pub const ROTATE_AFTER_MS: i64 = 24 * 3_600_000;

/// What can go wrong with the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// Reading, writing or syncing failed (for example, the disk is full).
    #[error("audit trail {path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said: part of the message and not a
        /// `source()` as well, or a cause chain printed in full (`{:#}`)
        /// would say it twice.
        error: std::io::Error,
    },
    /// A complete line is not a valid record, or records are missing.
    #[error("audit trail {path}, line {line}: {reason}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Another process (a second server on the same directory) holds the
    /// trail: two writers would interleave records and break the chain.
    #[error("audit trail {0} is held by another process (is a second server using it?)")]
    Locked(PathBuf),
    /// An earlier failure could not be undone; nothing more is written.
    #[error("audit trail {0}: a failed write could not be rolled back; restart the server")]
    Broken(PathBuf),
    /// The checkpoint of expired records cannot be read, or does not fit
    /// the trail: the records it stands for cannot be told from missing
    /// ones.
    #[error("audit checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |error| AuditError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Makes the entries of `dir` (files created, renamed or deleted) durable.
fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    crate::durable_dir::sync(dir).map_err(io(dir))
}

/// Takes `dir`'s lock (`DIR/LOCK`, created if missing) for this process:
/// held while the returned file is open, it keeps a second writer (or an
/// offline expiry while the server runs) off the trail.
fn lock(dir: &Path) -> Result<File, AuditError> {
    let lock_path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    lock.try_lock().map_err(|e| match e {
        std::fs::TryLockError::WouldBlock => AuditError::Locked(dir.to_path_buf()),
        std::fs::TryLockError::Error(e) => io(&lock_path)(e),
    })?;
    Ok(lock)
}

/// The trail's files in order.
fn trail_files(dir: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("audit-") && name.ends_with(".jsonl") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Where a file's complete lines end: the bytes after the last newline are
/// an incomplete line left by a crash.
fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// What [`verify_dir`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrailSummary {
    /// Files read and checked.
    pub files: usize,
    /// Valid records.
    pub records: u64,
    /// Sequence of the last valid record (the checkpoint's when no record
    /// follows it; 0 when there is neither).
    pub last_seq: u64,
    /// Chain value of the last valid record, the seed of the next.
    pub last_chain: u64,
    /// Time of the first and last record.
    pub first_time_unix_ms: Option<u64>,
    /// Time of the last record.
    pub last_time_unix_ms: Option<u64>,
    /// Files ending in an incomplete line (a crash during a write; that
    /// record's request was never answered), with the bytes of that line.
    pub incomplete_tails: Vec<(PathBuf, u64)>,
    /// The checkpoint the chain started from: records `1..=last_seq` of it
    /// were expired under the retention policy, not lost.
    pub checkpoint: Option<Checkpoint>,
    /// Files the checkpoint already covers, left by an expiry that
    /// stopped (a crash) before deleting them, with the complete lines in
    /// each: not checked (what chained them is gone), still on disk until
    /// the next expiry deletes them, which a retention report must count.
    pub expired_files_left: Vec<(PathBuf, u64)>,
}

impl TrailSummary {
    /// The state before the first remaining record: the checkpoint's
    /// numbering and chain, or record 0 and seed 0 when nothing was
    /// expired.
    fn starting_at(checkpoint: Option<Checkpoint>) -> TrailSummary {
        TrailSummary {
            last_seq: checkpoint.as_ref().map_or(0, |c| c.last_seq),
            last_chain: checkpoint.as_ref().map_or(0, |c| c.chain),
            checkpoint,
            ..TrailSummary::default()
        }
    }

    /// Whether the next record is the first after the checkpoint, where a
    /// break means the checkpoint does not belong to what follows it.
    fn at_checkpoint(&self) -> bool {
        self.checkpoint
            .as_ref()
            .is_some_and(|c| self.records == 0 && self.last_seq == c.last_seq)
    }

    /// A checkpoint must be matched by a record that chains from it (the
    /// trail never expires its newest record): one that nothing follows
    /// would let the deletion of every file pass for an expiry.
    fn require_checkpoint_matched(&self, dir: &Path) -> Result<(), AuditError> {
        match &self.checkpoint {
            Some(c) if self.records == 0 => Err(AuditError::Checkpoint {
                path: checkpoint::path(dir),
                reason: format!(
                    "no record follows it (it expired records 1..={}): the files after it were removed",
                    c.last_seq
                ),
            }),
            _ => Ok(()),
        }
    }
}

/// Checks one file's records against what `summary` says came before
/// them (numbering and chain), adds them to it, and calls `each` with each.
fn check_file(
    path: &Path,
    bytes: &[u8],
    summary: &mut TrailSummary,
    each: &mut dyn FnMut(&AuditRecord),
) -> Result<(), AuditError> {
    let complete = complete_len(bytes);
    if complete < bytes.len() {
        summary
            .incomplete_tails
            .push((path.to_path_buf(), (bytes.len() - complete) as u64));
    }
    for (i, line) in bytes[..complete]
        .split_inclusive(|&b| b == b'\n')
        .enumerate()
    {
        let line = &line[..line.len() - 1];
        let damaged = |reason: String| AuditError::Damaged {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let (record, chain) = next_record(line, summary).map_err(damaged)?;
        summary
            .first_time_unix_ms
            .get_or_insert(record.event.time_unix_ms);
        summary.last_time_unix_ms = Some(record.event.time_unix_ms);
        summary.last_seq = record.seq;
        summary.last_chain = chain;
        summary.records += 1;
        each(&record);
    }
    summary.files += 1;
    Ok(())
}

/// Decodes `line` as the record after what `summary` has read: the next
/// number, chained from the last value. A record out of numbering is named
/// as records missing (even where its chain breaks too: that is the
/// cause), and a break right after the checkpoint names the checkpoint.
fn next_record(line: &[u8], summary: &TrailSummary) -> Result<(AuditRecord, u64), String> {
    let after_checkpoint = summary.at_checkpoint();
    let decoded = record::decode_line(line, summary.last_chain);
    let seq = match &decoded {
        Ok((record, _)) => Some(record.seq),
        Err(_) => record::stated(line).ok().map(|(seq, _)| seq),
    };
    if let Some(seq) = seq.filter(|&s| s != summary.last_seq + 1) {
        let before = if after_checkpoint {
            format!("the checkpoint's last expired record {}", summary.last_seq)
        } else {
            format!("record {}", summary.last_seq)
        };
        return Err(format!(
            "record {seq} follows {before}: records are missing"
        ));
    }
    decoded.map_err(|e| match e {
        LineError::Chain if after_checkpoint => "chain mismatch: the first record after the \
            checkpoint does not chain from the checkpoint's value (the checkpoint, or this \
            line, was changed)"
            .to_string(),
        e => e.to_string(),
    })
}

/// Reads every file of the trail in `dir`, checking that records are
/// numbered without gaps from 1, or from the [`checkpoint`] of expired
/// records, and that the chain holds throughout (from the checkpoint's
/// value); calls `each` with every record. Files the checkpoint covers
/// that an interrupted expiry left are passed over and listed. The first
/// damage found is the error.
pub fn read_dir(
    dir: &Path,
    each: &mut dyn FnMut(&AuditRecord),
) -> Result<TrailSummary, AuditError> {
    let mut summary = TrailSummary::starting_at(checkpoint::read(dir)?);
    let mut leading = true;
    for path in trail_files(dir)? {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        if let Some(c) = summary.checkpoint.as_ref().filter(|_| leading)
            && expiry::covered(&path, &bytes, c)
        {
            let lines = bytes[..complete_len(&bytes)]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            summary.expired_files_left.push((path, lines as u64));
            continue;
        }
        leading = false;
        check_file(&path, &bytes, &mut summary, &mut *each)?;
    }
    summary.require_checkpoint_matched(dir)?;
    Ok(summary)
}

/// Checks the newest records, where a restart goes on: the newest file
/// holding a complete record, chained from the last record of the file
/// before it. Closed files are never written again, so this is what a
/// crash or a careless hand can have changed since the last full check
/// ([`read_dir`], `facegate-index audit`), and it takes the same time
/// however long the trail has grown. When the files before it were
/// expired (or are covered by the checkpoint, left by an interrupted
/// expiry), it is chained from the checkpoint. `records` and `files`
/// count the checked file only.
pub fn check_newest(dir: &Path) -> Result<TrailSummary, AuditError> {
    let files = trail_files(dir)?;
    let mut summary = TrailSummary::starting_at(checkpoint::read(dir)?);
    let Some((newest, bytes)) = last_with_record(&files)? else {
        summary.require_checkpoint_matched(dir)?;
        return Ok(summary);
    };
    if let Some((before, earlier)) = last_with_record(&files[..newest])? {
        let complete = &earlier[..complete_len(&earlier) - 1];
        let last = complete.rsplit(|&b| b == b'\n').next().unwrap_or_default();
        let (seq, chain) = record::stated(last).map_err(|e| AuditError::Damaged {
            path: files[before].clone(),
            line: complete.split(|&b| b == b'\n').count(),
            reason: e.to_string(),
        })?;
        // A file the checkpoint covers (left by an interrupted expiry)
        // is not where the newest file goes on from: the checkpoint is.
        if summary.checkpoint.is_none() || seq > summary.last_seq {
            summary.last_seq = seq;
            summary.last_chain = chain;
        }
    }
    check_file(&files[newest], &bytes, &mut summary, &mut |_| {})?;
    Ok(summary)
}

/// The last of `files` holding a complete record, with its bytes.
fn last_with_record(files: &[PathBuf]) -> Result<Option<(usize, Vec<u8>)>, AuditError> {
    for (i, path) in files.iter().enumerate().rev() {
        let bytes = std::fs::read(path).map_err(io(path))?;
        if complete_len(&bytes) > 0 {
            return Ok(Some((i, bytes)));
        }
    }
    Ok(None)
}

/// Checks the whole trail in `dir` (see [`read_dir`]).
pub fn verify_dir(dir: &Path) -> Result<TrailSummary, AuditError> {
    read_dir(dir, &mut |_| {})
}

/// The open trail, appended by one thread.
pub struct AuditLog {
    /// Held locked while open: one writer per directory.
    _lock: File,
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Bytes of the current file known durable.
    len: u64,
    next_seq: u64,
    chain: u64,
    broken: bool,
    scratch: Vec<u8>,
    /// Signed checkpoints, once [`AuditLog::start_sealing`] gave a key.
    sealer: Option<sealer::Sealer>,
    /// Dates each new file's name, which expiry reads as the time the file
    /// was opened: the same clock as the cutoff's.
    clock: Arc<dyn Clock>,
    /// When the current file was opened, on `clock`.
    opened: UnixMillis,
}

impl AuditLog {
    /// Opens the trail in `dir` (created if missing) for this process
    /// alone: checks its newest records ([`check_newest`]), then starts a
    /// new file that continues their numbering and chain. Damage there is
    /// refused: the operator must look at the trail before more records are
    /// added. New files are dated by the system clock.
    pub fn open(dir: &Path) -> Result<(AuditLog, TrailSummary), AuditError> {
        AuditLog::open_with_clock(dir, Arc::new(crate::clock::SystemClock))
    }

    /// As [`AuditLog::open`], new files dated by `clock` (the server's, so
    /// that expiry compares an opening time and a cutoff on one clock).
    pub fn open_with_clock(
        dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<(AuditLog, TrailSummary), AuditError> {
        crate::durable_dir::create_dir_all(dir).map_err(io(dir))?;
        let lock = lock(dir)?;
        let summary = check_newest(dir)?;
        let mut log = AuditLog {
            _lock: lock,
            dir: dir.to_path_buf(),
            path: PathBuf::new(),
            file: File::open(dir).map_err(io(dir))?,
            len: 0,
            next_seq: summary.last_seq + 1,
            chain: summary.last_chain,
            broken: false,
            scratch: Vec::new(),
            sealer: None,
            clock,
            opened: UnixMillis(0),
        };
        log.start_file()?;
        Ok((log, summary))
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signs checkpoints of the records with `key` from now on
    /// ([`seal`]): opens the seals file and restores the digest of the
    /// records written since its last seal, so that the next seal covers
    /// them too.
    pub fn start_sealing(&mut self, key: AuditSigningKey) -> Result<SealResume, AuditError> {
        let (sealer, resume) = sealer::Sealer::resume(&self.dir, key, self.next_seq)?;
        self.sealer = Some(sealer);
        Ok(resume)
    }

    /// Records written since the last seal (0 when not sealing): what a
    /// forger without the key could still change undetected.
    pub fn unsealed(&self) -> u64 {
        self.sealer.as_ref().map_or(0, sealer::Sealer::pending)
    }

    /// Signs and appends a seal of the records since the last one, dated
    /// `now`; `None` when not sealing or nothing is pending.
    pub fn seal(&mut self, now: UnixMillis) -> Result<Option<Seal>, AuditError> {
        match &mut self.sealer {
            Some(s) => s.seal(now),
            None => Ok(None),
        }
    }

    /// Opens a new file named after the next record and the time, and makes
    /// its directory entry durable.
    fn start_file(&mut self) -> Result<(), AuditError> {
        let now = self.clock.now();
        let mut ms = u64::try_from(now.0).unwrap_or(0);
        let mut options = OpenOptions::new();
        options.create_new(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // A file of the same first record opened in the same millisecond
        // (a start with no record since): the next millisecond's name still
        // sorts after it.
        let (path, file) = loop {
            let path = self
                .dir
                .join(format!("audit-{:016x}-{ms:016x}.jsonl", self.next_seq));
            match options.open(&path) {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => ms += 1,
                Err(e) => return Err(io(&path)(e)),
            }
        };
        sync_dir(&self.dir)?;
        self.file = file;
        self.path = path;
        self.len = 0;
        self.opened = now;
        Ok(())
    }

    /// Whether the current file is done with: past [`ROTATE_BYTES`], or
    /// holding records and open for [`ROTATE_AFTER_MS`], or opened after
    /// now (the clock was set back: one new file, dated on the clock as it
    /// is now, rather than no rotation until it passes the old date).
    fn due_to_rotate(&self) -> bool {
        let age = self.clock.now().0.saturating_sub(self.opened.0);
        self.len >= ROTATE_BYTES || (self.len > 0 && !(0..ROTATE_AFTER_MS).contains(&age))
    }

    /// Expires, under the retention policy, the whole files whose records
    /// are all older than `cutoff`, never the file being written nor the
    /// newest record: makes a checkpoint of what it drops durable, then
    /// deletes them (see [`expiry`] for the order and why a crash is safe). `clock` dates the expiry in the checkpoint. Called by
    /// the thread that owns the log (the server's audit thread), between
    /// two appends; it reads every file it deletes, so it takes a while
    /// once a year of files is due, and appends wait meanwhile.
    pub fn expire_before(
        &mut self,
        cutoff: UnixMillis,
        clock: &dyn Clock,
    ) -> Result<ExpiryReport, AuditError> {
        if self.broken {
            return Err(AuditError::Broken(self.path.clone()));
        }
        expiry::expire(&self.dir, Some(&self.path), cutoff, clock)
    }

    /// Writes `events` as the next records, durably; returns their sequence
    /// numbers. On failure nothing of the batch stays in the file and the
    /// numbering is unchanged.
    pub fn append(&mut self, events: &[AuditEvent]) -> Result<RangeInclusive<u64>, AuditError> {
        if self.broken {
            return Err(AuditError::Broken(self.path.clone()));
        }
        if self.due_to_rotate() {
            self.start_file()?;
        }
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let mut chain = self.chain;
        for (i, e) in events.iter().enumerate() {
            chain = record::encode_line(self.next_seq + i as u64, e, chain, &mut buf);
        }
        let result = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        let written = buf.len() as u64;
        self.scratch = buf;
        if let Err(e) = result {
            // Cut the file back to its durable length, so that no partial
            // line sits before later records.
            let len = self.len;
            if self
                .file
                .set_len(len)
                .and_then(|()| self.file.seek(SeekFrom::Start(len)).map(|_| ()))
                .and_then(|()| self.file.sync_all())
                .is_err()
            {
                self.broken = true;
            }
            return Err(io(&self.path)(e));
        }
        self.len += written;
        if let Some(s) = &mut self.sealer {
            s.add(&self.scratch, events.len() as u64);
        }
        let first = self.next_seq;
        self.next_seq += events.len() as u64;
        self.chain = chain;
        Ok(first..=self.next_seq - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u64) -> AuditEvent {
        AuditEvent {
            time_unix_ms: 1_000 + i,
            rpc: "Identify".into(),
            code: "OK".into(),
            request_id: format!("r{i}"),
            port_id: "JFK-T4".into(),
            subjects: vec![format!("S{i}")],
            ..Default::default()
        }
    }

    fn all(dir: &Path) -> Vec<AuditRecord> {
        let mut v = Vec::new();
        read_dir(dir, &mut |r| v.push(r.clone())).unwrap();
        v
    }

    #[test]
    fn files_are_dated_by_the_given_clock_so_an_empty_one_expires_on_it() {
        use crate::clock::ManualClock;
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(UnixMillis(1_000)));
        let files = |dir: &Path| {
            std::fs::read_dir(dir)
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_string_lossy().ends_with(".jsonl")
                })
                .count()
        };
        let (mut log, _) = AuditLog::open_with_clock(dir.path(), clock.clone()).unwrap();
        log.append(&[event(1)]).unwrap();
        drop(log);
        // A start with no request: an empty file, opened at 2,000.
        clock.set(UnixMillis(2_000));
        drop(AuditLog::open_with_clock(dir.path(), clock.clone()).unwrap());
        for (opened, i) in [(3_000, 2_001), (5_000, 4_001)] {
            clock.set(UnixMillis(opened));
            let (mut log, _) = AuditLog::open_with_clock(dir.path(), clock.clone()).unwrap();
            log.append(&[event(i)]).unwrap();
        }
        assert_eq!(files(dir.path()), 4);
        // The empty file's successor was opened at 3,000 on this clock,
        // before the cutoff, so nothing can have been written to the empty
        // one after it: it goes with the files before and after it. The
        // last file holds the newest record and stays.
        clock.set(UnixMillis(20_000));
        let report = expire_dir(dir.path(), UnixMillis(10_000), &*clock).unwrap();
        assert_eq!(report.records(), 2);
        assert_eq!(files(dir.path()), 1, "the first three files expire");
    }

    #[test]
    fn a_file_open_for_a_day_is_closed_at_its_next_append_so_it_can_expire() {
        use crate::clock::ManualClock;
        let dir = tempfile::tempdir().unwrap();
        let day = ROTATE_AFTER_MS;
        let clock = Arc::new(ManualClock::new(UnixMillis(1_000)));
        let (mut log, _) = AuditLog::open_with_clock(dir.path(), clock.clone()).unwrap();
        // Each record dated by the clock: event(i) is at 1,000 + i.
        log.append(&[event(0)]).unwrap();
        let first = log.path().to_path_buf();
        clock.set(UnixMillis(1_000 + day - 1));
        log.append(&[event(day as u64 - 1)]).unwrap();
        assert_eq!(log.path(), first, "not a day old yet");
        clock.set(UnixMillis(1_000 + day));
        log.append(&[event(day as u64)]).unwrap();
        assert_ne!(log.path(), first, "a day old: a new file");
        let second = log.path().to_path_buf();
        // Without the rotation the one file would hold the newest record
        // and never expire; with it, the day's file goes once past the
        // cutoff, behind a checkpoint, and the trail still verifies.
        clock.set(UnixMillis(10 * day));
        let report = log.expire_before(UnixMillis(2 * day), &*clock).unwrap();
        assert_eq!(report.records(), 2);
        assert!(!first.exists());
        assert_eq!(verify_dir(dir.path()).unwrap().last_seq, 3);
        // A clock set back (from a wrong future date) rotates once, not
        // again until the old date plus a day.
        clock.set(UnixMillis(1_000 + day / 2));
        log.append(&[event(4)]).unwrap();
        let third = log.path().to_path_buf();
        assert_ne!(third, second, "a clock set back: a new file");
        log.append(&[event(5)]).unwrap();
        assert_eq!(log.path(), third, "and then no file per append");
    }

    #[test]
    fn records_continue_numbering_and_chain_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, s) = AuditLog::open(dir.path()).unwrap();
        assert_eq!(s.records, 0);
        assert_eq!(log.append(&[event(1), event(2)]).unwrap(), 1..=2);
        assert_eq!(log.append(&[event(3)]).unwrap(), 3..=3);
        drop(log);
        let (mut log, s) = AuditLog::open(dir.path()).unwrap();
        assert_eq!((s.records, s.last_seq, s.files), (3, 3, 1));
        assert_eq!(log.append(&[event(4)]).unwrap(), 4..=4);
        let records = all(dir.path());
        assert_eq!(records.len(), 4);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1);
            assert_eq!(r.event, event(i as u64 + 1));
        }
        assert_eq!(verify_dir(dir.path()).unwrap().files, 2);
    }

    #[test]
    fn an_incomplete_last_line_is_reported_and_the_next_start_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = AuditLog::open(dir.path()).unwrap();
        log.append(&[event(1), event(2)]).unwrap();
        let path = log.path().to_path_buf();
        drop(log);
        // A crash in the middle of writing record 3.
        let mut line = Vec::new();
        record::encode_line(3, &event(3), 0, &mut line);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&line[..line.len() / 2]).unwrap();
        let s = verify_dir(dir.path()).unwrap();
        assert_eq!(s.records, 2);
        assert_eq!(s.incomplete_tails, vec![(path, (line.len() / 2) as u64)]);
        let (mut log, _) = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.append(&[event(3)]).unwrap(), 3..=3);
        assert_eq!(all(dir.path()).len(), 3);
    }

    #[test]
    fn edited_or_dropped_records_are_found_and_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = AuditLog::open(dir.path()).unwrap();
        log.append(&[event(1), event(2), event(3)]).unwrap();
        let path = log.path().to_path_buf();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();

        std::fs::write(&path, text.replace("\"S2\"", "\"S9\"")).unwrap();
        match AuditLog::open(dir.path()) {
            Err(AuditError::Damaged { line, reason, .. }) => {
                assert_eq!(line, 2);
                assert!(reason.contains("chain"), "{reason}");
            }
            other => panic!("expected damage, got {:?}", other.map(|(_, s)| s)),
        }

        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        match verify_dir(dir.path()) {
            Err(AuditError::Damaged { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn open_checks_the_newest_file_and_the_full_check_finds_older_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = AuditLog::open(dir.path()).unwrap();
        log.append(&[event(1), event(2)]).unwrap();
        let old = log.path().to_path_buf();
        drop(log);
        let (mut log, s) = AuditLog::open(dir.path()).unwrap();
        assert_eq!((s.last_seq, s.records), (2, 2));
        log.append(&[event(3)]).unwrap();
        drop(log);
        // An empty newest file (a start with no record) is passed over.
        drop(AuditLog::open(dir.path()).unwrap());
        let (log, s) = AuditLog::open(dir.path()).unwrap();
        assert_eq!((s.last_seq, s.records, s.files), (3, 1, 1));
        drop(log);

        let text = std::fs::read_to_string(&old).unwrap();
        std::fs::write(&old, text.replace("\"S1\"", "\"S7\"")).unwrap();
        let (mut log, s) = AuditLog::open(dir.path()).unwrap();
        assert_eq!(s.last_seq, 3);
        assert_eq!(log.append(&[event(4)]).unwrap(), 4..=4);
        match verify_dir(dir.path()) {
            Err(AuditError::Damaged { path, line, .. }) => assert_eq!((path, line), (old, 1)),
            other => panic!("expected damage, got {other:?}"),
        }
    }

    #[test]
    fn a_second_writer_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = AuditLog::open(dir.path()).unwrap();
        assert!(matches!(
            AuditLog::open(dir.path()),
            Err(AuditError::Locked(_))
        ));
        drop(log);
        AuditLog::open(dir.path()).unwrap();
    }

    #[test]
    fn a_full_file_is_closed_for_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = AuditLog::open(dir.path()).unwrap();
        log.append(&[event(1)]).unwrap();
        let first = log.path().to_path_buf();
        log.len = ROTATE_BYTES;
        log.append(&[event(2)]).unwrap();
        assert_ne!(log.path(), first);
        let s = verify_dir(dir.path()).unwrap();
        assert_eq!((s.files, s.records), (2, 2));
    }
}
