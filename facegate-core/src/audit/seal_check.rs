//! The verifier's side of signed checkpoints ([`super::seal`]): every seal's
//! signature, the chain of seals (`prev_sha256`), the contiguity of their
//! ranges, and each range's SHA-256 recomputed from the record lines.
//!
//! Retention interplay: records up to the expiry checkpoint's `last_seq`
//! (`checkpoint.json`) are gone. A seal covering only such records is
//! reported as "signature valid, records expired", one straddling the first
//! remaining record as partial (its hash cannot be recomputed); neither is
//! a failure. A gap between two seals is accepted only where every record
//! in it was expired (sealing resumed after the records it had not sealed
//! were expired).

use std::path::Path;

use sha2::{Digest, Sha256};

use super::seal::{self, Seal};
use super::signing::AuditVerifyingKey;
use super::{AuditError, checkpoint, complete_len, io, record, trail_files};

/// Why one seal does not hold (the first reason found).
#[derive(Debug, Clone, PartialEq)]
pub struct SealFailure {
    /// Its 1-based line in `signed-checkpoints.jsonl`.
    pub line: usize,
    /// The records it says it covers (`None` when the line does not read).
    pub range: Option<(u64, u64)>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for SealFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "signed checkpoint at line {}", self.line)?;
        if let Some((a, b)) = self.range {
            write!(f, " (records {a}..={b})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// What [`verify_seals`] found: enough for the operator to know what is
/// protected by a signature and what is not yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SealReport {
    /// Whether `signed-checkpoints.jsonl` exists.
    pub file_present: bool,
    /// Seals read.
    pub seals: usize,
    /// Records whose hash was recomputed and matched a valid seal.
    pub records_verified: u64,
    /// Seals whose signature is valid but whose records were all expired.
    pub expired: Vec<(u64, u64)>,
    /// Seals whose first records were expired: signature valid, hash not
    /// recomputable; with the records of theirs that remain.
    pub partial: Vec<(u64, u64)>,
    /// Remaining records before the first seal (sealing started later).
    pub unsealed_before: Option<(u64, u64)>,
    /// Records after the last seal: not yet signed, the exposure window.
    pub unsealed_after: Option<(u64, u64)>,
    /// The time of the last seal.
    pub last_seal_unix_ms: Option<i64>,
    /// Bytes of an incomplete last line (a crash while a seal was written).
    pub incomplete_tail: u64,
    /// Every seal that does not hold, in file order.
    pub failures: Vec<SealFailure>,
}

/// One seal as read, with its first failure if any.
struct Entry {
    line: usize,
    seal: Option<Seal>,
    failure: Option<String>,
    /// Recomputation state: hash of the lines seen, the next seq expected.
    hasher: Sha256,
    next: Option<u64>,
    partial: bool,
}

/// Verifies the seals of the trail in `dir` against `keys` (any of them
/// may have signed a seal: keys rotate). Damage to the trail's files
/// beyond what the seals cover is [`super::read_dir`]'s to find; this
/// reads the lines' numbers only.
pub fn verify_seals(dir: &Path, keys: &[AuditVerifyingKey]) -> Result<SealReport, AuditError> {
    let mut report = SealReport::default();
    let Some(lines) = seal::read_lines(dir)? else {
        return Ok(report);
    };
    report.file_present = true;
    report.incomplete_tail = lines.incomplete_tail;
    let expired_through = checkpoint::read(dir)?.map_or(0, |c| c.last_seq);
    let mut entries = check_seals(&lines.lines, keys, expired_through);
    report.seals = entries.len();
    report.last_seal_unix_ms = entries
        .iter()
        .rev()
        .find_map(|e| e.seal.as_ref().map(|s| s.time_unix_ms));
    recompute(dir, &mut entries, expired_through, &mut report)?;
    for e in entries {
        let range = e.seal.as_ref().map(|s| (s.first_seq, s.last_seq));
        if let Some(reason) = e.failure {
            report.failures.push(SealFailure {
                line: e.line,
                range,
                reason,
            });
        }
    }
    Ok(report)
}

/// Reads every seal and checks what needs no record: the line, the
/// signature, the link to the seal before, the contiguity of the ranges.
fn check_seals(lines: &[Vec<u8>], keys: &[AuditVerifyingKey], expired_through: u64) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let mut entry = Entry {
            line: i + 1,
            seal: None,
            failure: None,
            hasher: Sha256::new(),
            next: None,
            partial: false,
        };
        match Seal::from_line(line) {
            Ok(s) => {
                entry.failure = seal_fault(&s, entries.last(), keys, expired_through);
                entry.seal = Some(s);
            }
            Err(e) => entry.failure = Some(format!("not a signed checkpoint: {e}")),
        }
        entries.push(entry);
    }
    entries
}

/// The first thing wrong with `s` after `before`, if anything.
fn seal_fault(
    s: &Seal,
    before: Option<&Entry>,
    keys: &[AuditVerifyingKey],
    expired_through: u64,
) -> Option<String> {
    let Some(key) = keys.iter().find(|k| k.id() == s.key_id) else {
        return Some(format!(
            "signed by key {}, which is not among the public keys given",
            s.key_id
        ));
    };
    if !s.verify(key) {
        return Some("signature invalid: the checkpoint was changed or forged".into());
    }
    if s.first_seq == 0 || s.first_seq > s.last_seq {
        return Some(format!("empty range {}..={}", s.first_seq, s.last_seq));
    }
    let Some(before) = before else {
        return (s.prev_sha256 != [0; 32]).then(|| {
            "it names a previous checkpoint, but it is the first in the file: checkpoints \
             before it were removed"
                .to_string()
        });
    };
    // An unreadable seal before it has its own failure; its link cannot be
    // checked.
    let prev = before.seal.as_ref()?;
    if s.prev_sha256 != prev.digest() {
        return Some(format!(
            "its prev_sha256 does not match the checkpoint before it (line {}): a checkpoint \
             between them was removed, or one was changed or reordered",
            before.line
        ));
    }
    let gap_expired = s.first_seq > prev.last_seq + 1 && s.first_seq - 1 <= expired_through;
    if s.first_seq != prev.last_seq + 1 && !gap_expired {
        return Some(format!(
            "it starts at record {}, but the checkpoint before it ended at record {}",
            s.first_seq, prev.last_seq
        ));
    }
    None
}

/// Reads the remaining record lines in order and feeds each to the seal
/// covering it; then judges each seal's range.
fn recompute(
    dir: &Path,
    entries: &mut [Entry],
    expired_through: u64,
    report: &mut SealReport,
) -> Result<(), AuditError> {
    let ranges: Vec<Option<(u64, u64)>> = entries
        .iter()
        .map(|e| e.seal.as_ref().map(|s| (s.first_seq, s.last_seq)))
        .collect();
    let first_seal = ranges.iter().flatten().map(|r| r.0).min();
    let last_seal = ranges.iter().flatten().map(|r| r.1).max();
    let mut last_seen = None;
    let mut cursor = 0;
    for path in trail_files(dir)? {
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        for line in bytes[..complete_len(&bytes)].split_inclusive(|&b| b == b'\n') {
            // A line that does not read is taken to be the next record:
            // the hash of its seal fails, and read_dir names the line.
            let seq = record::stated(&line[..line.len() - 1])
                .map(|(s, _)| s)
                .unwrap_or_else(|_| last_seen.map_or(1, |s: u64| s + 1));
            if seq <= expired_through {
                continue;
            }
            last_seen = Some(seq);
            if first_seal.is_none_or(|f| seq < f) {
                widen(&mut report.unsealed_before, seq);
            } else if last_seal.is_some_and(|l| seq > l) {
                widen(&mut report.unsealed_after, seq);
            } else if let Some(i) = covering(&ranges, &mut cursor, seq) {
                feed(&mut entries[i], seq, line, expired_through);
            }
        }
    }
    for e in entries.iter_mut() {
        judge(e, expired_through, report);
    }
    Ok(())
}

/// The seal whose range holds `seq`: the one at `cursor` or the next
/// (lines come in order), else any; moves `cursor` to it.
fn covering(ranges: &[Option<(u64, u64)>], cursor: &mut usize, seq: u64) -> Option<usize> {
    let holds = |i: usize| {
        ranges
            .get(i)
            .copied()
            .flatten()
            .is_some_and(|(a, b)| (a..=b).contains(&seq))
    };
    let i = [*cursor, *cursor + 1]
        .into_iter()
        .find(|&i| holds(i))
        .or_else(|| (0..ranges.len()).find(|&i| holds(i)))?;
    *cursor = i;
    Some(i)
}

/// Adds record `seq`'s line to its seal's hash, checking it is the next.
fn feed(e: &mut Entry, seq: u64, line: &[u8], expired_through: u64) {
    let Some(s) = &e.seal else { return };
    let expected = e.next.unwrap_or(s.first_seq);
    if e.next.is_none() && seq != expected && s.first_seq <= expired_through {
        // Its first records were expired: the hash cannot be recomputed.
        e.partial = true;
    } else if seq != expected && e.failure.is_none() && !e.partial {
        e.failure = Some(format!(
            "record {seq} follows record {}: records in its range are missing",
            expected - 1
        ));
    }
    e.hasher.update(line);
    e.next = Some(seq + 1);
}

/// Judges one seal once every line was fed.
fn judge(e: &mut Entry, expired_through: u64, report: &mut SealReport) {
    let Some(s) = &e.seal else { return };
    if e.failure.is_some() {
        return;
    }
    let range = (s.first_seq, s.last_seq);
    match e.next {
        None if s.last_seq <= expired_through => report.expired.push(range),
        None => {
            e.failure = Some(
                "none of its records is in the trail: the files holding them were removed".into(),
            )
        }
        Some(next) if next <= s.last_seq => {
            e.failure = Some(format!(
                "records {next}..={} are missing: the trail was cut after it was signed",
                s.last_seq
            ))
        }
        Some(_) if e.partial => report.partial.push(range),
        Some(_) => {
            let digest: [u8; 32] = std::mem::take(&mut e.hasher).finalize().into();
            if digest == s.records_sha256 {
                report.records_verified += s.last_seq - s.first_seq + 1;
            } else {
                e.failure = Some(
                    "the SHA-256 of its records does not match: a record in its range was \
                     changed, added or removed"
                        .into(),
                );
            }
        }
    }
}

/// Extends `range` to `seq`.
fn widen(range: &mut Option<(u64, u64)>, seq: u64) {
    *range = Some(range.map_or((seq, seq), |(a, _)| (a, seq)));
}
