//! The write-ahead change log: enrolments and removals made while the server
//! runs, durable before they are acknowledged.
//!
//! A change is acknowledged only after its frame is written and the file is
//! fsync'd. Concurrent appends share fsyncs (group commit): the first caller
//! to find no write in progress becomes the leader, writes every frame
//! queued so far in one `write` and one `fdatasync`, and wakes the others;
//! callers that queued while it wrote form the next group. One fsync per
//! change is available for comparison ([`CommitMode::EachChange`]).
//!
//! Opening replays the log. A frame that is incomplete or fails its
//! checksum ends the valid log: it and everything after it are cut (the file
//! is truncated and fsync'd), never applied. Only the tail can be torn by a
//! crash, since frames are appended in order and acknowledged after fsync;
//! the number of bytes cut is reported so that the operator sees it.
//!
//! A failed write (a full disk, an I/O error) fails every change of its
//! group, and the file is truncated back to its last durable length, so the
//! log never holds a half-written frame that a later frame would follow.

pub mod record;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

pub use record::Change;
use record::{DecodeError, HEADER_LEN};

/// What can go wrong with the change log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// Reading, writing or syncing failed (for example, the disk is full).
    #[error("change log {path}: {error}")]
    Io {
        /// The log file.
        path: PathBuf,
        /// What the operating system said: part of the message and not a
        /// `source()` as well, or a cause chain printed in full (`{:#}`)
        /// would say it twice.
        error: std::io::Error,
    },
    /// The file is not a change log for this gallery.
    #[error("change log {path}: {reason}")]
    Mismatch {
        /// The log file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// The change breaks the log's limits (checked before anything is written).
    #[error("change refused: {0}")]
    Refused(String),
    /// An earlier write failed and the file could not be restored to its
    /// last durable length; no more changes are taken until a restart
    /// replays (and repairs) the log.
    #[error("change log {0} is out of service after a failed write; restart to repair")]
    Broken(PathBuf),
}

/// How appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Concurrent appends share one write and one fsync.
    Group,
    /// Every change gets its own write and fsync (the baseline group commit
    /// is measured against).
    EachChange,
}

/// The changes found in a log when it was opened.
#[derive(Debug, Default)]
pub struct Replay {
    /// Valid changes, in log order, with their sequence numbers.
    pub changes: Vec<(u64, Change)>,
    /// Bytes cut from the end: a torn or damaged tail (0 normally).
    pub cut_bytes: u64,
    /// Why the tail was cut, when it was.
    pub cut_reason: Option<String>,
}

struct State {
    file: File,
    /// Length of the file up to the last fsync'd frame.
    durable_len: u64,
    /// Frames queued for the next group, and the first and last seq among
    /// them.
    pending: Vec<u8>,
    pending_first: u64,
    pending_last: u64,
    next_seq: u64,
    /// Highest seq known durable.
    durable_seq: u64,
    writing: bool,
    broken: bool,
    /// fsyncs done by appends (group commit makes this fewer than changes).
    syncs: u64,
    /// Outcomes of failed groups, claimed by their waiters.
    failures: HashMap<u64, String>,
    scratch: Vec<u8>,
}

/// An open change log, appendable from many threads.
pub struct ChangeLog {
    path: PathBuf,
    dim: usize,
    mode: CommitMode,
    state: Mutex<State>,
    done: Condvar,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> WalError + '_ {
    move |error| WalError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Checks a log's header and decodes its frames up to the first that is
/// incomplete, damaged or out of order; returns them and the length of the
/// valid prefix.
fn parse(
    path: &Path,
    bytes: &[u8],
    dim: usize,
    base_generation: u64,
) -> Result<(Replay, usize), WalError> {
    let mismatch = |reason: String| WalError::Mismatch {
        path: path.to_path_buf(),
        reason,
    };
    let (file_dim, file_gen) = record::decode_header(bytes).map_err(|e| mismatch(e.to_string()))?;
    if file_dim as usize != dim {
        return Err(mismatch(format!(
            "written for dimension {file_dim}, the gallery has {dim}"
        )));
    }
    if file_gen != base_generation {
        return Err(mismatch(format!(
            "written for gallery generation {file_gen:016x}, the gallery is {base_generation:016x}"
        )));
    }
    let mut replay = Replay::default();
    let mut at = HEADER_LEN;
    let mut last_seq = 0;
    while at < bytes.len() {
        match record::decode_frame(&bytes[at..], dim) {
            Ok((seq, change, len)) if seq > last_seq => {
                replay.changes.push((seq, change));
                last_seq = seq;
                at += len;
            }
            Ok((seq, ..)) => {
                replay.cut_reason = Some(format!("sequence {seq} after {last_seq}"));
                break;
            }
            Err(DecodeError::Truncated) => {
                replay.cut_reason = Some("incomplete last frame".into());
                break;
            }
            Err(DecodeError::Invalid(r)) => {
                replay.cut_reason = Some(r);
                break;
            }
        }
    }
    replay.cut_bytes = (bytes.len() - at) as u64;
    Ok((replay, at))
}

impl ChangeLog {
    /// Opens (creating if absent) the log at `path` for a gallery of `dim`
    /// floats per template and generation `base_generation`, replays it, and
    /// cuts a torn tail. A log written for another gallery generation or
    /// dimension is refused.
    pub fn open(
        path: &Path,
        dim: usize,
        base_generation: u64,
        mode: CommitMode,
    ) -> Result<(ChangeLog, Replay), WalError> {
        let err = io(path);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(&err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(&err)?;
        if created || bytes.len() < HEADER_LEN {
            // New, or torn before its header was complete (nothing can have
            // been acknowledged): start it afresh.
            file.set_len(0).map_err(&err)?;
            file.seek(SeekFrom::Start(0)).map_err(&err)?;
            file.write_all(&record::encode_header(dim as u32, base_generation))
                .map_err(&err)?;
            file.sync_all().map_err(&err)?;
            crate::durable_dir::sync_parent(path).map_err(&err)?;
            bytes = record::encode_header(dim as u32, base_generation).to_vec();
        }
        let (replay, at) = parse(path, &bytes, dim, base_generation)?;
        let last_seq = replay.changes.last().map_or(0, |(seq, _)| *seq);
        if replay.cut_bytes > 0 {
            file.set_len(at as u64).map_err(&err)?;
            file.sync_all().map_err(&err)?;
        }
        file.seek(SeekFrom::Start(at as u64)).map_err(&err)?;
        let log = ChangeLog {
            path: path.to_path_buf(),
            dim,
            mode,
            state: Mutex::new(State {
                file,
                durable_len: at as u64,
                pending: Vec::new(),
                pending_first: 0,
                pending_last: last_seq,
                next_seq: last_seq + 1,
                durable_seq: last_seq,
                writing: false,
                broken: false,
                syncs: 0,
                failures: HashMap::new(),
                scratch: Vec::new(),
            }),
            done: Condvar::new(),
        };
        Ok((log, replay))
    }

    /// Reads the changes of the log at `path` without changing the file:
    /// for offline tools that read a log a server may still be appending to
    /// (an incomplete last frame is then a write in progress; it is
    /// reported in `cut_bytes` but left alone). A missing file is an empty log.
    pub fn read(path: &Path, dim: usize, base_generation: u64) -> Result<Replay, WalError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replay::default()),
            Err(e) => return Err(io(path)(e)),
        };
        ChangeLog::read_bytes(path, &bytes, dim, base_generation)
    }

    /// Decodes the bytes of a log read by [`ChangeLog::read`] (`path`
    /// names them in errors): the same checks, public so that the frame
    /// reader can be fuzzed on arbitrary bytes without a file.
    pub fn read_bytes(
        path: &Path,
        bytes: &[u8],
        dim: usize,
        base_generation: u64,
    ) -> Result<Replay, WalError> {
        if bytes.len() < HEADER_LEN {
            return Ok(Replay {
                cut_bytes: bytes.len() as u64,
                cut_reason: Some("incomplete header".into()),
                ..Replay::default()
            });
        }
        Ok(parse(path, bytes, dim, base_generation)?.0)
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sequence number of the last durable change (0: none yet).
    pub fn last_sequence(&self) -> u64 {
        self.lock().durable_seq
    }

    /// Bytes of the log that are durable.
    pub fn durable_len(&self) -> u64 {
        self.lock().durable_len
    }

    /// fsyncs the appends have done so far: with group commit, fewer than
    /// the changes appended when they came concurrently.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a change and returns its sequence number once it is durable.
    pub fn append(&self, change: &Change) -> Result<u64, WalError> {
        record::check_limits(change, self.dim).map_err(WalError::Refused)?;
        let mut s = self.lock();
        if s.broken {
            return Err(WalError::Broken(self.path.clone()));
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        if s.pending.is_empty() {
            s.pending_first = seq;
        }
        let State { pending, .. } = &mut *s;
        record::encode_frame(seq, change, self.dim, pending);
        s.pending_last = seq;
        loop {
            if let Some(reason) = s.failures.remove(&seq) {
                return Err(WalError::Io {
                    path: self.path.clone(),
                    error: std::io::Error::other(reason),
                });
            }
            if s.durable_seq >= seq {
                return Ok(seq);
            }
            if s.broken {
                return Err(WalError::Broken(self.path.clone()));
            }
            if !s.writing {
                s = self.lead(s);
                continue;
            }
            s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Writes and syncs everything queued (in [`CommitMode::EachChange`]
    /// only the oldest queued frame), with the lock released during the I/O.
    fn lead<'a>(&'a self, mut s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        s.writing = true;
        let mut batch = std::mem::take(&mut s.scratch);
        batch.clear();
        let (first, last) = match self.mode {
            CommitMode::Group => {
                std::mem::swap(&mut batch, &mut s.pending);
                (s.pending_first, s.pending_last)
            }
            CommitMode::EachChange => {
                let len = record::frame_len(&s.pending);
                batch.extend_from_slice(&s.pending[..len]);
                s.pending.drain(..len);
                let seq = record::frame_seq(&batch);
                if !s.pending.is_empty() {
                    s.pending_first = record::frame_seq(&s.pending);
                }
                (seq, seq)
            }
        };
        // A second handle on the same open file (same offset), so that the
        // write runs without the lock and new changes queue meanwhile.
        let file = s.file.try_clone();
        let durable_len = s.durable_len;
        drop(s);
        let result = file.and_then(|mut f| {
            f.write_all(&batch)?;
            f.sync_data()
        });
        let mut s = self.lock();
        match result {
            Ok(()) => {
                s.syncs += 1;
                s.durable_len = durable_len + batch.len() as u64;
                s.durable_seq = s.durable_seq.max(last);
            }
            Err(e) => {
                // Put the file back to its last durable length, so that no
                // torn frame sits before later ones.
                let restored = s.file.set_len(durable_len).and_then(|()| {
                    s.file.seek(SeekFrom::Start(durable_len))?;
                    s.file.sync_all()
                });
                if restored.is_err() {
                    s.broken = true;
                }
                for seq in first..=last {
                    s.failures.insert(seq, e.to_string());
                }
            }
        }
        batch.clear();
        s.scratch = batch;
        s.writing = false;
        self.done.notify_all();
        s
    }
}
