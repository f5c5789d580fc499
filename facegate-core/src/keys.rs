//! API keys files: who may call a listener, by the hash of their token.
//!
//! A keys file has one line per key, `NAME SHA256`: the name of the caller
//! (a port id such as `JFK-T4` for `--port-keys`, a person or system for
//! `--admin-keys`) and the SHA-256 of its token in hex. The file holds no
//! secret: a token is shown once, by `facegate keygen`, and only its hash
//! is kept. A name may have several keys (rotation); `#` starts a comment.
//!
//! The parser lives here, apart from the server's gRPC glue, so that it can
//! be fuzzed (`fuzz/`, target `keys`) without building the server.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// Why a keys file was refused: the file and line are named, never a key.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// The file could not be read (or is not UTF-8).
    #[error("reading keys file {path}: {source}")]
    Read {
        /// The keys file.
        path: PathBuf,
        /// What the read said.
        source: std::io::Error,
    },
    /// A line is not `NAME SHA256`.
    #[error("line {line}: expected `NAME SHA256`")]
    Malformed {
        /// 1-based line number.
        line: usize,
    },
    /// The second field is not 64 hex digits.
    #[error("line {line}: the key hash must be 64 hex digits")]
    BadHash {
        /// 1-based line number.
        line: usize,
    },
    /// The same key hash appears twice (for one name or two).
    #[error("line {line}: this key is listed twice")]
    Duplicate {
        /// 1-based line number of the second listing.
        line: usize,
    },
    /// The file lists no key at all: a listener with it would refuse every
    /// call, which is never what was meant.
    #[error("keys file {path} lists no key")]
    Empty {
        /// The keys file.
        path: PathBuf,
    },
    /// A line error, with the file it is in.
    #[error("keys file {path}: {source}")]
    InFile {
        /// The keys file.
        path: PathBuf,
        /// The line's error.
        source: Box<KeysError>,
    },
}

/// The keys one listener accepts: token hash to caller name.
#[derive(Debug, Default)]
pub struct KeyRing {
    by_hash: HashMap<[u8; 32], Arc<str>>,
}

/// The SHA-256 of a token, as keys files list it.
fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    // Hex digits only: `from_str_radix` alone would also take a `+` sign
    // ("+a" as 10), letting a malformed hash through.
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl KeyRing {
    /// Reads a keys file; a malformed line, a key listed twice or a file
    /// with no key is an error naming the file (and the line).
    pub fn load(path: &Path) -> Result<KeyRing, KeysError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeysError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let ring = KeyRing::parse(&text).map_err(|e| KeysError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        if ring.by_hash.is_empty() {
            return Err(KeysError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(ring)
    }

    /// Parses the text of a keys file; [`KeyRing::load`] reads the file and
    /// adds that it must list a key. Public so that the parser can be
    /// fuzzed on arbitrary text.
    pub fn parse(text: &str) -> Result<KeyRing, KeysError> {
        let mut by_hash = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(name), Some(hash), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(KeysError::Malformed { line: line_no });
            };
            let hash = parse_hash(hash).ok_or(KeysError::BadHash { line: line_no })?;
            if by_hash.insert(hash, Arc::from(name)).is_some() {
                return Err(KeysError::Duplicate { line: line_no });
            }
        }
        Ok(KeyRing { by_hash })
    }

    /// The caller a token belongs to.
    pub fn identify(&self, token: &str) -> Option<&Arc<str>> {
        self.by_hash.get(&digest(token))
    }

    /// How many keys the ring holds (a reload logs it).
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the ring holds no key (only a parsed text can be empty).
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// A new random token for `name` and the keys-file line that accepts it.
pub fn new_key(name: &str) -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let token = hex(&bytes);
    let line = format!("{name} {}", hex(&digest(&token)));
    (token, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_accepted_and_names_its_owner() {
        let (token, line) = new_key("JFK-T4");
        let (other, other_line) = new_key("JFK-T4");
        let ring =
            KeyRing::parse(&format!("# ports\n{line}\n\n{other_line}  # rotated\n")).unwrap();
        assert_eq!(ring.identify(&token).map(|n| &**n), Some("JFK-T4"));
        assert_eq!(ring.identify(&other).map(|n| &**n), Some("JFK-T4"));
        assert_eq!(ring.identify("not a key"), None);
        assert_ne!(token, other);
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn malformed_lines_are_refused_by_line_number() {
        let (_, line) = new_key("A");
        for (text, want) in [
            (format!("{line}\nB\n"), "line 2: expected"),
            (format!("B 12ab\n{line}"), "line 1: the key hash"),
            (
                format!("{line}\nB {}\n", "+a".repeat(32)),
                "line 2: the key hash",
            ),
            (
                format!("{line}\n{line}\n"),
                "line 2: this key is listed twice",
            ),
        ] {
            let err = KeyRing::parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn a_file_without_keys_or_with_a_bad_line_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.keys");
        std::fs::write(&empty, "# nobody yet\n").unwrap();
        let err = KeyRing::load(&empty).unwrap_err().to_string();
        assert!(
            err.contains("lists no key") && err.contains("empty.keys"),
            "{err}"
        );
        let bad = dir.path().join("bad.keys");
        std::fs::write(&bad, "A\n").unwrap();
        let err = KeyRing::load(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.keys: line 1"), "{err}");
    }
}
