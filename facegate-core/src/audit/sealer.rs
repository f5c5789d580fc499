//! The writer's side of signed checkpoints ([`super::seal`]): the running
//! SHA-256 of the record lines written since the last seal, restored from
//! the files at open, and the append of each new seal.
//!
//! At open ([`Sealer::resume`]): an incomplete last line of the seals file
//! (a crash while a seal was written: it was never durable, so never
//! shipped either) is cut off; the last complete seal says where sealing
//! goes on, and the record lines after it are read back into the running
//! digest, so that the next seal covers everything since the last. With no
//! seals file yet, sealing starts at the next record: records before it are
//! reported by the verifier as not covered.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::seal::{self, Seal};
use super::signing::AuditSigningKey;
use super::{AuditError, complete_len, io, record, trail_files};
use crate::clock::UnixMillis;

/// Where sealing went on at open, for the server's start-up log.
#[derive(Debug, Clone, PartialEq)]
pub struct SealResume {
    /// The last seal in the file, if any.
    pub last: Option<Seal>,
    /// Bytes of an incomplete last line cut off the seals file.
    pub cut_tail_bytes: u64,
    /// Records written since the last seal, read back into the digest.
    pub pending: u64,
}

/// The running state of sealing, owned by the [`super::AuditLog`].
pub(super) struct Sealer {
    key: AuditSigningKey,
    path: PathBuf,
    file: File,
    /// Bytes of the seals file known durable.
    len: u64,
    hasher: Sha256,
    /// The first record of the next seal.
    first_seq: u64,
    /// Records hashed since the last seal.
    pending: u64,
    prev: [u8; 32],
}

impl Sealer {
    /// Opens the seals file of the trail in `dir` (created if missing),
    /// whose next record will be `next_seq`, and restores the digest of the
    /// records since the last seal. A last seal past the trail's end is
    /// refused: records it covers were removed.
    pub(super) fn resume(
        dir: &Path,
        key: AuditSigningKey,
        next_seq: u64,
    ) -> Result<(Sealer, SealResume), AuditError> {
        let path = seal::seals_path(dir);
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(io(&path))?;
        let lines = seal::read_lines(dir)?.unwrap_or(seal::SealLines {
            lines: Vec::new(),
            incomplete_tail: 0,
        });
        let len = file.metadata().map_err(io(&path))?.len() - lines.incomplete_tail;
        if lines.incomplete_tail > 0 {
            file.set_len(len)
                .and_then(|()| file.sync_all())
                .map_err(io(&path))?;
        }
        super::sync_dir(dir)?;
        let damaged = |reason: String| AuditError::Damaged {
            path: path.clone(),
            line: lines.lines.len(),
            reason,
        };
        let last = match lines.lines.last() {
            Some(l) => Some(Seal::from_line(l).map_err(damaged)?),
            None => None,
        };
        let mut sealer = Sealer {
            key,
            path: path.clone(),
            file,
            len,
            hasher: Sha256::new(),
            first_seq: next_seq,
            pending: 0,
            prev: last.as_ref().map_or([0; 32], Seal::digest),
        };
        if let Some(last) = &last {
            if last.last_seq >= next_seq {
                return Err(damaged(format!(
                    "the last signed checkpoint covers records up to {}, but the trail ends at record {}: sealed records were removed",
                    last.last_seq,
                    next_seq - 1
                )));
            }
            sealer.first_seq = last.last_seq + 1;
            sealer.read_back(dir, next_seq)?;
        }
        let resume = SealResume {
            last,
            cut_tail_bytes: lines.incomplete_tail,
            pending: sealer.pending,
        };
        Ok((sealer, resume))
    }

    /// Hashes the record lines from `first_seq` on (to `next_seq - 1`),
    /// reading only the files that can hold them. Records before the first
    /// remaining one were expired: sealing goes on from that one.
    fn read_back(&mut self, dir: &Path, next_seq: u64) -> Result<(), AuditError> {
        let files = trail_files(dir)?;
        // The last file that starts at or before the first wanted record.
        let start = files
            .iter()
            .rposition(|f| first_seq_of(f).is_some_and(|s| s <= self.first_seq))
            .unwrap_or(0);
        let mut expected = None;
        for path in &files[start..] {
            let bytes = std::fs::read(path).map_err(io(path))?;
            for (i, line) in bytes[..complete_len(&bytes)]
                .split_inclusive(|&b| b == b'\n')
                .enumerate()
            {
                let (seq, _) =
                    record::stated(&line[..line.len() - 1]).map_err(|e| AuditError::Damaged {
                        path: path.clone(),
                        line: i + 1,
                        reason: e.to_string(),
                    })?;
                if seq < self.first_seq {
                    continue;
                }
                if expected.is_none() {
                    // The first remaining record after the last seal.
                    self.first_seq = seq;
                } else if expected != Some(seq) {
                    return Err(AuditError::Damaged {
                        path: path.clone(),
                        line: i + 1,
                        reason: format!("record {seq} follows record {}", seq - 1),
                    });
                }
                expected = Some(seq + 1);
                self.hasher.update(line);
                self.pending += 1;
            }
        }
        match expected {
            None => self.first_seq = next_seq,
            Some(e) if e != next_seq => {
                return Err(AuditError::Damaged {
                    path: files.last().cloned().unwrap_or_default(),
                    line: 0,
                    reason: format!(
                        "the records after the last signed checkpoint end at {}, not {}",
                        e - 1,
                        next_seq - 1
                    ),
                });
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Adds durable record lines (newlines included) to the digest.
    pub(super) fn add(&mut self, lines: &[u8], records: u64) {
        self.hasher.update(lines);
        self.pending += records;
    }

    /// Records since the last seal.
    pub(super) fn pending(&self) -> u64 {
        self.pending
    }

    /// Signs and appends the seal of the pending records, stamped `now`;
    /// `None` when none is pending. On failure the file is cut back to its
    /// durable length and the records stay pending.
    pub(super) fn seal(&mut self, now: UnixMillis) -> Result<Option<Seal>, AuditError> {
        if self.pending == 0 {
            return Ok(None);
        }
        let digest: [u8; 32] = self.hasher.clone().finalize().into();
        let last_seq = self.first_seq + self.pending - 1;
        let s = Seal::sign(
            &self.key,
            self.first_seq,
            last_seq,
            digest,
            self.prev,
            now.0,
        );
        let line = format!("{}\n", s.to_line());
        let written = self
            .file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let _ = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_all());
            return Err(io(&self.path)(e));
        }
        self.len += line.len() as u64;
        self.hasher = Sha256::new();
        self.first_seq = last_seq + 1;
        self.pending = 0;
        self.prev = s.digest();
        Ok(Some(s))
    }
}

/// The first record number a trail file's name states
/// (`audit-<first seq>-<opened ms>.jsonl`).
pub(super) fn first_seq_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_prefix("audit-")?.get(..16)?;
    u64::from_str_radix(hex, 16).ok()
}
