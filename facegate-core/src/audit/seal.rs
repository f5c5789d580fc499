//! Signed checkpoints ("seals"): Ed25519 signatures over a SHA-256 of the
//! trail's record lines, so that a forger who can recompute the xxh3 chain
//! but lacks the private key is still found. Not to be confused with
//! `checkpoint.json` ([`super::checkpoint`]), which records what retention
//! expired. docs/audit.md describes them for people; this is the reference.
//!
//! One JSON line per seal, appended and fsync'd to
//! `DIR/signed-checkpoints.jsonl` ([`SEALS_FILE`]):
//!
//! ```text
//! {"format":1,"first_seq":1,"last_seq":100,"records_sha256":"<64 hex>",
//!  "prev_sha256":"<64 hex>","time_unix_ms":...,"key_id":"<16 hex>","signature":"<128 hex>"}
//! ```
//!
//! - `records_sha256` is the SHA-256 of the record lines
//!   `first_seq..=last_seq` exactly as they are in the trail's files, each
//!   **with** its terminating newline, concatenated in order.
//! - `prev_sha256` is the [`Seal::digest`] of the seal before it (32 zero
//!   bytes for the first), so that a deleted or reordered seal is found.
//! - `signature` is Ed25519 over [`Seal::message`], a fixed byte layout
//!   (not the JSON, whose field order or spacing might change):
//!
//! ```text
//! "facegate-audit-seal\n"   20 bytes, ASCII (domain separation)
//! format                    u32 big-endian (1)
//! first_seq, last_seq       u64 big-endian each
//! records_sha256            32 bytes
//! prev_sha256               32 bytes
//! time_unix_ms              i64 big-endian
//! key_id                    8 bytes
//! ```
//!
//! and a seal's digest is SHA-256 of that message followed by the 64
//! signature bytes.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::signing::{AuditSigningKey, AuditVerifyingKey, KeyId, hex};

/// The seals' file name in the trail's directory.
pub const SEALS_FILE: &str = "signed-checkpoints.jsonl";

/// The format this code writes and reads.
pub const SEAL_FORMAT: u32 = 1;

/// Opens every signed message, so that a seal's signature can never be
/// taken for a signature over anything else.
const DOMAIN: &[u8; 20] = b"facegate-audit-seal\n";

/// Where the seals of the trail in `dir` are.
pub fn seals_path(dir: &Path) -> PathBuf {
    dir.join(SEALS_FILE)
}

/// One signed checkpoint: records `first_seq..=last_seq` hash to
/// `records_sha256`, after the seal whose digest is `prev_sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seal {
    /// [`SEAL_FORMAT`].
    pub format: u32,
    /// The first record covered.
    pub first_seq: u64,
    /// The last record covered.
    pub last_seq: u64,
    /// SHA-256 of those record lines, newlines included.
    pub records_sha256: [u8; 32],
    /// The previous seal's [`Seal::digest`]; zeros for the first.
    pub prev_sha256: [u8; 32],
    /// When it was made (the server's injected clock, as records are
    /// stamped).
    pub time_unix_ms: i64,
    /// The signing key's id.
    pub key_id: KeyId,
    /// Ed25519 over [`Seal::message`].
    pub signature: [u8; 64],
}

/// The seal as a JSON line: hashes and signature in hex.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    format: u32,
    first_seq: u64,
    last_seq: u64,
    records_sha256: String,
    prev_sha256: String,
    time_unix_ms: i64,
    key_id: String,
    signature: String,
}

impl Seal {
    /// Makes and signs the seal of records `first_seq..=last_seq` whose
    /// lines hash to `records_sha256`, after the seal of digest `prev`.
    pub fn sign(
        key: &AuditSigningKey,
        first_seq: u64,
        last_seq: u64,
        records_sha256: [u8; 32],
        prev_sha256: [u8; 32],
        time_unix_ms: i64,
    ) -> Seal {
        let mut seal = Seal {
            format: SEAL_FORMAT,
            first_seq,
            last_seq,
            records_sha256,
            prev_sha256,
            time_unix_ms,
            key_id: key.id(),
            signature: [0; 64],
        };
        seal.signature = key.sign(&seal.message());
        seal
    }

    /// The canonical bytes the signature covers (module docs).
    pub fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(DOMAIN.len() + 4 + 16 + 64 + 8 + 8);
        m.extend_from_slice(DOMAIN);
        m.extend_from_slice(&self.format.to_be_bytes());
        m.extend_from_slice(&self.first_seq.to_be_bytes());
        m.extend_from_slice(&self.last_seq.to_be_bytes());
        m.extend_from_slice(&self.records_sha256);
        m.extend_from_slice(&self.prev_sha256);
        m.extend_from_slice(&self.time_unix_ms.to_be_bytes());
        m.extend_from_slice(&self.key_id.0);
        m
    }

    /// What the next seal names as `prev_sha256`: SHA-256 of the message
    /// and the signature, independent of how the JSON line is spelt.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.message());
        h.update(self.signature);
        h.finalize().into()
    }

    /// Whether `key` signed this seal (its id must match too).
    pub fn verify(&self, key: &AuditVerifyingKey) -> bool {
        self.key_id == key.id() && key.verify(&self.message(), &self.signature)
    }

    /// The seal as one JSON line, without its newline.
    pub fn to_line(&self) -> String {
        let stored = Stored {
            format: self.format,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            records_sha256: hex(&self.records_sha256),
            prev_sha256: hex(&self.prev_sha256),
            time_unix_ms: self.time_unix_ms,
            key_id: self.key_id.to_string(),
            signature: hex(&self.signature),
        };
        // Numbers and hex strings always serialise.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Reads a seal's line (without its newline); says why it is not one.
    pub fn from_line(line: &[u8]) -> Result<Seal, String> {
        let s: Stored = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        if s.format != SEAL_FORMAT {
            return Err(format!(
                "format {} (this verifier reads {SEAL_FORMAT})",
                s.format
            ));
        }
        Ok(Seal {
            format: s.format,
            first_seq: s.first_seq,
            last_seq: s.last_seq,
            records_sha256: unhex(&s.records_sha256, "records_sha256")?,
            prev_sha256: unhex(&s.prev_sha256, "prev_sha256")?,
            time_unix_ms: s.time_unix_ms,
            key_id: KeyId(unhex(&s.key_id, "key_id")?),
            signature: unhex(&s.signature, "signature")?,
        })
    }
}

/// `N` bytes from exactly `2 * N` hex digits.
fn unhex<const N: usize>(text: &str, field: &str) -> Result<[u8; N], String> {
    let bad = || format!("{field} is not {} hex digits", 2 * N);
    if text.len() != 2 * N {
        return Err(bad());
    }
    let mut out = [0; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16)
            .map_err(|_| bad())?;
    }
    Ok(out)
}

/// The seals file's complete lines (without newlines), with their 1-based
/// numbers, and the length of an incomplete last line (a crash while one
/// was written: never a seal, as for the trail's files).
pub struct SealLines {
    /// Complete lines.
    pub lines: Vec<Vec<u8>>,
    /// Bytes after the last newline.
    pub incomplete_tail: u64,
}

/// Reads `DIR/signed-checkpoints.jsonl`; `None` when there is none.
pub fn read_lines(dir: &Path) -> Result<Option<SealLines>, super::AuditError> {
    let path = seals_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(super::io(&path)(e)),
    };
    let complete = super::complete_len(&bytes);
    Ok(Some(SealLines {
        lines: bytes[..complete]
            .split_inclusive(|&b| b == b'\n')
            .map(|l| l[..l.len() - 1].to_vec())
            .collect(),
        incomplete_tail: (bytes.len() - complete) as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &AuditSigningKey) -> Seal {
        Seal::sign(key, 5, 9, [7; 32], [3; 32], 1_700_000_000_000)
    }

    #[test]
    fn the_message_is_the_documented_layout() {
        let key = AuditSigningKey::generate().unwrap();
        let m = seal(&key).message();
        assert_eq!(m.len(), 20 + 4 + 8 + 8 + 32 + 32 + 8 + 8);
        assert_eq!(&m[..20], b"facegate-audit-seal\n");
        assert_eq!(&m[20..24], &[0, 0, 0, 1]);
        assert_eq!(&m[24..32], &5u64.to_be_bytes());
        assert_eq!(&m[32..40], &9u64.to_be_bytes());
        assert_eq!(&m[40..72], &[7; 32]);
        assert_eq!(&m[72..104], &[3; 32]);
        assert_eq!(&m[104..112], &1_700_000_000_000i64.to_be_bytes());
        assert_eq!(&m[112..], &key.id().0);
    }

    #[test]
    fn a_line_reads_back_and_verifies_only_with_its_key_and_unchanged() {
        let key = AuditSigningKey::generate().unwrap();
        let other = AuditSigningKey::generate().unwrap();
        let s = seal(&key);
        let back = Seal::from_line(s.to_line().as_bytes()).unwrap();
        assert_eq!(back, s);
        assert!(back.verify(&key.verifying_key()));
        assert!(!back.verify(&other.verifying_key()), "wrong key refused");
        // The same id with another key's signature is refused too.
        let mut forged = Seal::sign(&other, 5, 9, [7; 32], [3; 32], 1_700_000_000_000);
        forged.key_id = key.id();
        assert!(!forged.verify(&key.verifying_key()));
        // Any bit flipped in a signed field or the signature is refused.
        for flip in 0..8 {
            let mut b = s.clone();
            match flip {
                0 => b.first_seq ^= 1,
                1 => b.last_seq ^= 1,
                2 => b.records_sha256[31] ^= 1,
                3 => b.prev_sha256[0] ^= 0x80,
                4 => b.time_unix_ms ^= 1,
                5 => b.signature[10] ^= 4,
                6 => b.format ^= 2,
                _ => b.key_id.0[7] ^= 1,
            }
            assert!(!b.verify(&key.verifying_key()), "flip {flip} refused");
            assert_ne!(b.digest(), s.digest());
        }
    }

    #[test]
    fn malformed_lines_say_why() {
        let key = AuditSigningKey::generate().unwrap();
        let line = seal(&key).to_line();
        let short = line.replace("\"key_id\":\"", "\"key_id\":\"0");
        assert!(
            Seal::from_line(short.as_bytes())
                .unwrap_err()
                .contains("key_id")
        );
        let other = line.replace("\"format\":1", "\"format\":2");
        assert!(
            Seal::from_line(other.as_bytes())
                .unwrap_err()
                .contains("format 2")
        );
        assert!(Seal::from_line(b"{\"format\":1}").is_err());
    }
}
