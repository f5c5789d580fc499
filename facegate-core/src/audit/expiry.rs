//! Expiry: deleting whole old files of the trail under the retention
//! policy, so that what remains still verifies from a [`Checkpoint`].
//!
//! The order of operations, each step durable before the next:
//!
//! 0. Under the directory's lock (the server's [`AuditLog`], or
//!    [`expire_dir`]'s), a `checkpoint.json.tmp` left by a crash is
//!    removed: it was never in force.
//! 1. **Finish an interrupted expiry**: the leading files the checkpoint in
//!    force already covers (every record in them numbered at most its
//!    `last_seq`) are deleted, oldest first, and the directory fsync'd.
//! 2. **Plan**: the longest run of leading files whose records are all
//!    older than the cutoff, stopping before the newest file that holds a
//!    record (so the checkpoint is always matched by a record, and a
//!    restart always has one to go on from) and before the file being
//!    written. A file ending in an incomplete line, or holding no record,
//!    also needs the next file to have been opened before the cutoff (that
//!    bounds when its bytes were written). Each planned file is read and
//!    checked, numbering and chain, from the checkpoint in force, and so is
//!    the first kept file holding a record, which must chain from where the
//!    plan ends: damage refuses the expiry, which never launders a broken
//!    chain into a checkpoint.
//! 3. **Checkpoint**: the new checkpoint (the old history and this expiry)
//!    is written to `checkpoint.json.tmp`, fsync'd, renamed over
//!    `checkpoint.json`, and the directory fsync'd.
//! 4. **Delete** the planned files, oldest first, then fsync the directory.
//!
//! A crash at any point leaves a trail that verifies:
//! - before the rename in 3, the old checkpoint (or none) and every file
//!   are in place: the trail is as it was (the verifier ignores the
//!   temporary file);
//! - between the rename and its directory fsync, either checkpoint may be
//!   the one found after the crash, and no file is deleted yet: both
//!   verify, the old one as before, the new one as below;
//! - from then on, through 4, the new checkpoint is durable and any subset
//!   of the planned files may be gone (deletions are not durable until the
//!   final fsync). The verifier passes over leading files the checkpoint
//!   covers, lists them as left by an interrupted expiry, and starts the
//!   chain at the checkpoint, which step 2 checked the first kept record
//!   against. Step 1 of the next expiry deletes them.
//!
//! Deleting a file without a checkpoint is still a gap, and a checkpoint
//! that does not match the first kept record is damage ([`super::read_dir`]).

use std::path::{Path, PathBuf};

use super::checkpoint::{self, Checkpoint, Expiry};
use super::{
    AuditError, TrailSummary, check_file, complete_len, io, last_with_record, lock, record,
    sync_dir, trail_files,
};
use crate::clock::{Clock, UnixMillis};

#[cfg(doc)]
use super::AuditLog;

/// What an expiry did, for the operator's output and the server's log.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiryReport {
    /// Files an earlier expiry covered in the checkpoint but did not
    /// delete (a crash), deleted now, oldest first.
    pub finished: Vec<PathBuf>,
    /// What this call expired (also the last entry of `checkpoint`'s
    /// history); `None` when no file was old enough.
    pub expiry: Option<Expiry>,
    /// The checkpoint in force now; `None` when nothing was ever expired.
    pub checkpoint: Option<Checkpoint>,
}

impl ExpiryReport {
    /// Records this call expired (0 when nothing was old enough).
    pub fn records(&self) -> u64 {
        self.expiry.as_ref().map_or(0, Expiry::records)
    }
}

/// Expires the trail in `dir` for an operator while the server is stopped
/// (`facegate-index audit --expire-before`): like
/// [`AuditLog::expire_before`], with no file being written, so only the
/// file of the newest record is kept. Takes the directory's lock first, so
/// it fails with [`AuditError::Locked`] while a server holds the trail:
/// the server must expire its own trail (between its appends).
pub fn expire_dir(
    dir: &Path,
    cutoff: UnixMillis,
    clock: &dyn Clock,
) -> Result<ExpiryReport, AuditError> {
    let _lock = lock(dir)?;
    expire(dir, None, cutoff, clock)
}

/// The expiry in `dir` (locked by the caller), never deleting `current`,
/// the file being written; the steps in the module docs.
pub(super) fn expire(
    dir: &Path,
    current: Option<&Path>,
    cutoff: UnixMillis,
    clock: &dyn Clock,
) -> Result<ExpiryReport, AuditError> {
    checkpoint::remove_unfinished(dir)?;
    let before = checkpoint::read(dir)?;
    let files = trail_files(dir)?;
    let kept = kept_from(&files, current)?;
    let finished = finish_interrupted(dir, &files, kept, before.as_ref())?;
    let files = &files[finished.len()..];
    let Some(plan) = plan(files, kept - finished.len(), before.as_ref(), cutoff)? else {
        return Ok(ExpiryReport {
            finished,
            expiry: None,
            checkpoint: before,
        });
    };
    let expiry = Expiry {
        at_unix_ms: clock.now().0,
        cutoff_unix_ms: cutoff.0,
        first_seq: before.as_ref().map_or(0, |c| c.last_seq) + 1,
        last_seq: plan.last_seq,
        chain: plan.chain,
        newest_record_unix_ms: plan.newest,
        files: plan.files.iter().map(|f| name(f).to_string()).collect(),
    };
    let after = Checkpoint::after(before.as_ref(), expiry.clone());
    checkpoint::write(dir, &after)?;
    delete(dir, &plan.files)?;
    Ok(ExpiryReport {
        finished,
        expiry: Some(expiry),
        checkpoint: Some(after),
    })
}

/// The index of the first file never to delete: the newest holding a
/// complete record, or `current` if it comes first.
fn kept_from(files: &[PathBuf], current: Option<&Path>) -> Result<usize, AuditError> {
    let newest = last_with_record(files)?.map_or(0, |(i, _)| i);
    let current = current
        .and_then(|c| files.iter().position(|f| name(f) == name(c)))
        .unwrap_or(files.len());
    Ok(newest.min(current))
}

/// Deletes the leading files, among the first `kept` of `files`, that the
/// checkpoint in force already covers, once the first record after them
/// is known to chain from it (files made to look covered by an edit are
/// damage to report, not to delete).
fn finish_interrupted(
    dir: &Path,
    files: &[PathBuf],
    kept: usize,
    checkpoint: Option<&Checkpoint>,
) -> Result<Vec<PathBuf>, AuditError> {
    let Some(checkpoint) = checkpoint else {
        return Ok(Vec::new());
    };
    let mut covered_files = Vec::new();
    for path in &files[..kept] {
        let bytes = std::fs::read(path).map_err(io(path))?;
        if !covered(path, &bytes, checkpoint) {
            break;
        }
        covered_files.push(path.clone());
    }
    if covered_files.is_empty() {
        return Ok(covered_files);
    }
    let from_checkpoint = TrailSummary::starting_at(Some(checkpoint.clone()));
    check_first_kept(&files[covered_files.len()..], from_checkpoint)?;
    delete(dir, &covered_files)?;
    Ok(covered_files)
}

/// Whether every record of a file (`bytes`, at `path`) is one the
/// checkpoint expired, by the numbers its first and last records state (a
/// file without a record: by the first number in its name). Such a file
/// is one an interrupted expiry did not delete.
pub(super) fn covered(path: &Path, bytes: &[u8], checkpoint: &Checkpoint) -> bool {
    let complete = &bytes[..complete_len(bytes)];
    let Some(body) = complete.strip_suffix(b"\n") else {
        return named(path).is_some_and(|(seq, _)| seq <= checkpoint.last_seq);
    };
    let seq = |line: Option<&[u8]>| line.and_then(|l| record::stated(l).ok()).map(|s| s.0);
    let first = seq(body.split(|&b| b == b'\n').next());
    let last = seq(body.rsplit(|&b| b == b'\n').next());
    matches!((first, last), (Some(a), Some(b)) if a <= b && b <= checkpoint.last_seq)
}

/// The files to expire and where the trail stands after them.
struct Plan {
    files: Vec<PathBuf>,
    last_seq: u64,
    chain: u64,
    newest: u64,
}

/// The leading files, among the first `kept` of `files`, old enough to
/// expire, each checked from `checkpoint`; `None` when they hold no record.
fn plan(
    files: &[PathBuf],
    kept: usize,
    checkpoint: Option<&Checkpoint>,
    cutoff: UnixMillis,
) -> Result<Option<Plan>, AuditError> {
    let mut state = TrailSummary::starting_at(checkpoint.cloned());
    let (mut taken, mut empty) = (Vec::new(), Vec::new());
    let mut newest = None;
    let mut i = 0;
    while i < kept {
        let path = &files[i];
        let bytes = std::fs::read(path).map_err(io(path))?;
        let mut next = state.clone();
        let mut file_newest = None;
        check_file(path, &bytes, &mut next, &mut |r| {
            file_newest = file_newest.max(Some(r.event.time_unix_ms));
        })?;
        if !old_enough(file_newest, &bytes, &files[i + 1], cutoff) {
            break;
        }
        state = next;
        // A file without a record goes only with a later one that has.
        empty.push(path.clone());
        if file_newest.is_some() {
            taken.append(&mut empty);
            newest = newest.max(file_newest);
        }
        i += 1;
    }
    let Some(newest) = newest else {
        return Ok(None);
    };
    check_first_kept(&files[i..], state.clone())?;
    Ok(Some(Plan {
        files: taken,
        last_seq: state.last_seq,
        chain: state.last_chain,
        newest,
    }))
}

/// Whether a file whose newest record is `newest` (`None`: it has none)
/// and whose `bytes` may end in an incomplete line is all older than
/// `cutoff`. Bytes after its last record were written before `next`, the
/// file after it, was opened.
fn old_enough(newest: Option<u64>, bytes: &[u8], next: &Path, cutoff: UnixMillis) -> bool {
    let before = |t: u64| i128::from(t) < i128::from(cutoff.0);
    let unbounded = newest.is_none() || complete_len(bytes) < bytes.len();
    newest.is_none_or(before)
        && (!unbounded || named(next).is_some_and(|(_, opened)| before(opened)))
}

/// Checks `files` from `state` (where the files to delete end) up to the
/// first holding a record: the checkpoint must be matched by it.
fn check_first_kept(files: &[PathBuf], mut state: TrailSummary) -> Result<(), AuditError> {
    let records = state.records;
    for path in files {
        let bytes = std::fs::read(path).map_err(io(path))?;
        check_file(path, &bytes, &mut state, &mut |_| {})?;
        if state.records > records {
            break;
        }
    }
    Ok(())
}

/// Deletes `files`, oldest first, and makes the deletions durable.
fn delete(dir: &Path, files: &[PathBuf]) -> Result<(), AuditError> {
    if files.is_empty() {
        return Ok(());
    }
    for path in files {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(path)(e)),
            _ => {}
        }
    }
    sync_dir(dir)
}

/// A file's name ("" when it has none).
fn name(path: &Path) -> &str {
    path.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

/// The first record and opening time (Unix ms) a trail file's name states.
fn named(path: &Path) -> Option<(u64, u64)> {
    let stem = name(path).strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    let (seq, opened) = stem.split_once('-')?;
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(opened, 16).ok()?,
    ))
}
