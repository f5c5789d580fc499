//! The checkpoint: what retention has expired from the front of the trail,
//! so that what remains still verifies. docs/audit.md describes it for
//! people; this is the reference.
//!
//! One JSON file, `DIR/checkpoint.json`, replaced whole (written to
//! `checkpoint.json.tmp`, fsync'd, renamed over the old one, directory
//! fsync'd) by each expiry:
//!
//! ```text
//! {
//!   "format": 1,
//!   "last_seq": 41234,            // records 1..=41234 are expired
//!   "chain": "3f0c9a1be2d47e55",  // record 41234's chain: record 41235's seed
//!   "expiries": [                 // every expiry so far, oldest first
//!     { "at_unix_ms": ..., "cutoff_unix_ms": ..., "first_seq": 1,
//!       "last_seq": 41234, "chain": "3f0c9a1be2d47e55",
//!       "newest_record_unix_ms": ..., "files": ["audit-...jsonl", ...] }
//!   ]
//! }
//! ```
//!
//! The verifier starts the chain at `last_seq` and `chain` instead of at
//! record 0 and seed 0. The checkpoint is accepted only when the first
//! remaining record is record `last_seq + 1` and chains from `chain`: a
//! file deleted without a checkpoint is still a gap, and a checkpoint
//! edited (or written) to cover a gap does not match the chain. Like the
//! chain, it has no key: it detects damage and careless hands, not a
//! forger who can recompute xxh3.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{AuditError, io, sync_dir};

/// The checkpoint's file name in the trail's directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.json";

/// Where a new checkpoint is written before it replaces the old one.
const TMP_FILE: &str = "checkpoint.json.tmp";

/// The format this code writes and reads: a reader refuses any other
/// rather than misread what was expired.
pub const FORMAT: u32 = 1;

/// What has been expired from the front of the trail: where the remaining
/// records' numbering and chain start, and the history of every expiry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// [`FORMAT`].
    pub format: u32,
    /// The last expired record: records `1..=last_seq` are gone, the trail
    /// goes on at `last_seq + 1`.
    pub last_seq: u64,
    /// That record's chain value, the seed of record `last_seq + 1`.
    #[serde(with = "hex16")]
    pub chain: u64,
    /// Every expiry so far, oldest first: what an auditor asks ("when was
    /// what dropped, under which cutoff").
    pub expiries: Vec<Expiry>,
}

/// One expiry: the whole files it deleted and the records they held.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Expiry {
    /// When it ran (the injected clock's time).
    pub at_unix_ms: i64,
    /// The cutoff it was given: every record it dropped is older.
    pub cutoff_unix_ms: i64,
    /// The first record it dropped.
    pub first_seq: u64,
    /// The last record it dropped.
    pub last_seq: u64,
    /// The chain value of `last_seq`, to compare with copies kept off the
    /// host.
    #[serde(with = "hex16")]
    pub chain: u64,
    /// The newest time among the records it dropped.
    pub newest_record_unix_ms: u64,
    /// The names of the files it deleted, oldest first.
    pub files: Vec<String>,
}

impl Expiry {
    /// How many records it dropped.
    pub fn records(&self) -> u64 {
        self.last_seq + 1 - self.first_seq
    }
}

impl Checkpoint {
    /// The checkpoint after `previous` (none before the first expiry) and
    /// one more expiry.
    pub fn after(previous: Option<&Checkpoint>, expiry: Expiry) -> Checkpoint {
        let mut expiries = previous.map(|c| c.expiries.clone()).unwrap_or_default();
        let (last_seq, chain) = (expiry.last_seq, expiry.chain);
        expiries.push(expiry);
        Checkpoint {
            format: FORMAT,
            last_seq,
            chain,
            expiries,
        }
    }

    /// How many files expiries have deleted in all.
    pub fn files(&self) -> usize {
        self.expiries.iter().map(|e| e.files.len()).sum()
    }

    /// Whether the history adds up: expiries numbered from record 1
    /// without gaps or overlaps, the last one ending where the checkpoint
    /// says the trail goes on.
    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {} (this facegate reads {FORMAT})",
                self.format
            ));
        }
        let mut next = 1;
        for e in &self.expiries {
            if e.first_seq != next || e.last_seq < e.first_seq {
                return Err(format!(
                    "an expiry of records {}..={} where record {next} was next",
                    e.first_seq, e.last_seq
                ));
            }
            // A hostile or damaged file can say u64::MAX: no record can
            // follow that (and `Expiry::records` would overflow on it).
            next = e.last_seq.checked_add(1).ok_or_else(|| {
                format!(
                    "an expiry of records {}..={}, beyond the last record number",
                    e.first_seq, e.last_seq
                )
            })?;
        }
        match self.expiries.last() {
            Some(e) if e.last_seq == self.last_seq && e.chain == self.chain => Ok(()),
            Some(_) => Err("its last expiry does not end at last_seq and chain".into()),
            None => Err("it lists no expiry".into()),
        }
    }
}

/// The checkpoint's path in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE)
}

/// The checkpoint in force in `dir`, `None` when nothing was ever expired.
/// A checkpoint that cannot be read, is not JSON of [`FORMAT`], or whose
/// history does not add up is an error, never ignored: ignoring it would
/// report the expired records as missing, or hide what replaced it.
pub fn read(dir: &Path) -> Result<Option<Checkpoint>, AuditError> {
    let path = path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    parse(&path, &bytes).map(Some)
}

/// Decodes and checks the bytes of a checkpoint file (`path` names it in
/// errors), as [`read`] does: public so that the parser can be fuzzed on
/// arbitrary bytes without a directory.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Checkpoint, AuditError> {
    let bad = |reason: String| AuditError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let checkpoint: Checkpoint =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not a checkpoint: {e}")))?;
    checkpoint.check().map_err(bad)?;
    Ok(checkpoint)
}

/// Makes `checkpoint` the one in force in `dir`, durably: when this
/// returns, a crash leaves it (and never a partial file) in place. Before
/// it returns, a crash leaves the previous one.
pub fn write(dir: &Path, checkpoint: &Checkpoint) -> Result<(), AuditError> {
    let tmp = dir.join(TMP_FILE);
    let mut bytes = serde_json::to_vec_pretty(checkpoint).map_err(|e| AuditError::Checkpoint {
        path: tmp.clone(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    let mut options = OpenOptions::new();
    options.create(true).truncate(true).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .map_err(io(&tmp))?;
    let path = path(dir);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(dir)
}

/// Removes a new checkpoint a crash left unrenamed: it was never in force.
pub fn remove_unfinished(dir: &Path) -> Result<(), AuditError> {
    let tmp = dir.join(TMP_FILE);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&tmp)(e)),
        _ => Ok(()),
    }
}

/// A chain value as the records write it: 16 lower-case hex digits.
mod hex16 {
    /// Writes `v` as 16 hex digits.
    pub fn serialize<S: serde::Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    /// Reads 16 hex digits.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        if text.len() != 16 {
            return Err(serde::de::Error::custom("a chain value is 16 hex digits"));
        }
        u64::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expiry(first_seq: u64, last_seq: u64, chain: u64) -> Expiry {
        Expiry {
            at_unix_ms: 5_000,
            cutoff_unix_ms: 4_000,
            first_seq,
            last_seq,
            chain,
            newest_record_unix_ms: 3_999,
            files: vec!["audit-a.jsonl".into()],
        }
    }

    #[test]
    fn a_checkpoint_round_trips_and_its_history_must_add_up() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let one = Checkpoint::after(None, expiry(1, 10, 0xab));
        let two = Checkpoint::after(Some(&one), expiry(11, 12, 0xcd));
        write(dir.path(), &two).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(two.clone()));
        assert_eq!((two.last_seq, two.chain, two.files()), (12, 0xcd, 2));
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(text.contains("\"chain\": \"00000000000000cd\""), "{text}");

        for bad in [
            Checkpoint {
                last_seq: 11,
                ..two.clone()
            },
            Checkpoint::after(Some(&one), expiry(12, 12, 0xcd)),
            Checkpoint {
                format: 2,
                ..two.clone()
            },
            Checkpoint {
                expiries: vec![],
                ..two.clone()
            },
        ] {
            write(dir.path(), &bad).unwrap();
            assert!(
                matches!(read(dir.path()), Err(AuditError::Checkpoint { .. })),
                "{bad:?}"
            );
        }
        std::fs::write(path(dir.path()), text.replace("00000000000000cd", "cd")).unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(AuditError::Checkpoint { .. })
        ));
    }

    /// Found by fuzzing (fuzz/corpus/audit/crash-checkpoint-last-seq-max):
    /// an expiry ending at record u64::MAX overflowed the numbering check.
    #[test]
    fn an_expiry_ending_at_the_last_record_number_is_refused_not_a_panic() {
        let text = br#"{"format":1,"last_seq":18446744073709551615,"chain":"00000000000000ab",
            "expiries":[{"at_unix_ms":5000,"cutoff_unix_ms":4000,"first_seq":1,
            "last_seq":18446744073709551615,"chain":"00000000000000ab",
            "newest_record_unix_ms":3999,"files":[]}]}"#;
        let err = parse(Path::new("checkpoint.json"), text).unwrap_err();
        assert!(
            err.to_string().contains("beyond the last record number"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), text).unwrap();
        assert!(matches!(
            read(dir.path()),
            Err(AuditError::Checkpoint { .. })
        ));
    }
}
