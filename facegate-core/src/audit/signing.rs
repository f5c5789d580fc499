//! The keys of signed audit checkpoints ([`super::seal`]): Ed25519, so
//! that whoever verifies holds only the public key and cannot forge a
//! checkpoint (an HMAC key shared with verifiers would let them).
//!
//! Keys are files in the standard formats `openssl pkey` reads and writes:
//! the private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the
//! public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`). A key is named in
//! checkpoints by its [`KeyId`]: the first 8 bytes (16 hex digits) of the
//! SHA-256 of the 32 raw public key bytes.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// The private key's file name, as `facegate-index audit-key` writes it.
pub const PRIVATE_KEY_FILE: &str = "audit-signing.key.pem";
/// The public key's file name, next to it.
pub const PUBLIC_KEY_FILE: &str = "audit-signing.pub.pem";

/// What can go wrong with a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read or written.
    #[error("audit signing key {path}: {error}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        error: std::io::Error,
    },
    /// The file is not an Ed25519 key in the expected PEM format.
    #[error("audit signing key {path}: not an Ed25519 {expected} PEM file: {reason}")]
    Format {
        /// The key file.
        path: PathBuf,
        /// "PKCS#8 private key" or "SPKI public key".
        expected: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// Key generation refuses to replace a key: checkpoints signed with it
    /// would no longer verify against a new public key.
    #[error("audit signing key {0} exists already; refusing to overwrite it")]
    Exists(PathBuf),
    /// The system's random source failed.
    #[error("no randomness for a new key: {0}")]
    Random(String),
}

/// The short name of a public key written in every checkpoint, so that a
/// verifier holding several keys (after a rotation) knows which to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `key`: the first 8 bytes of SHA-256 of its raw bytes.
    fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Lower-case hex of `bytes`: how checkpoints write hashes and signatures.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The server's private key: signs checkpoints. Cloned only to be handed
/// to the audit thread (the copy is wiped when dropped, as the original).
#[derive(Clone)]
pub struct AuditSigningKey {
    key: SigningKey,
    id: KeyId,
}

impl std::fmt::Debug for AuditSigningKey {
    /// The id only: a private key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditSigningKey({})", self.id)
    }
}

impl AuditSigningKey {
    /// A new random key, from the operating system's random source.
    pub fn generate() -> Result<AuditSigningKey, KeyError> {
        use rand::TryRngCore;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(AuditSigningKey::from_key(SigningKey::from_bytes(&seed)))
    }

    fn from_key(key: SigningKey) -> AuditSigningKey {
        let id = KeyId::of(&key.verifying_key());
        AuditSigningKey { key, id }
    }

    /// Reads a PKCS#8 PEM private key (as `openssl genpkey -algorithm
    /// ed25519` or [`write_new_pair`] writes it).
    pub fn load(path: &Path) -> Result<AuditSigningKey, KeyError> {
        let text = read_pem(path)?;
        let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| KeyError::Format {
            path: path.to_path_buf(),
            expected: "PKCS#8 private key",
            reason: e.to_string(),
        })?;
        Ok(AuditSigningKey::from_key(key))
    }

    /// The key's id, written in every checkpoint it signs.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The public half, which verifiers are given.
    pub fn verifying_key(&self) -> AuditVerifyingKey {
        AuditVerifyingKey {
            key: self.key.verifying_key(),
            id: self.id,
        }
    }

    /// Signs `message` (a checkpoint's canonical bytes).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// A public key: verifies checkpoints, cannot make them.
#[derive(Debug, Clone)]
pub struct AuditVerifyingKey {
    key: VerifyingKey,
    id: KeyId,
}

impl AuditVerifyingKey {
    /// Reads an SPKI PEM public key (as `openssl pkey -pubout` or
    /// [`write_new_pair`] writes it).
    pub fn load(path: &Path) -> Result<AuditVerifyingKey, KeyError> {
        let text = read_pem(path)?;
        let key = VerifyingKey::from_public_key_pem(&text).map_err(|e| KeyError::Format {
            path: path.to_path_buf(),
            expected: "SPKI public key",
            reason: e.to_string(),
        })?;
        Ok(AuditVerifyingKey {
            id: KeyId::of(&key),
            key,
        })
    }

    /// The key's id, as checkpoints name it.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Whether `signature` is this key's over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.key
            .verify(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

fn read_pem(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|error| KeyError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// Writes a new key pair into `dir` (created if missing):
/// [`PRIVATE_KEY_FILE`] with mode 0600 and [`PUBLIC_KEY_FILE`], refusing
/// to replace either; returns the key and both paths.
pub fn write_new_pair(dir: &Path) -> Result<(AuditSigningKey, PathBuf, PathBuf), KeyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| KeyError::Io { path, error }
    };
    crate::durable_dir::create_dir_all(dir).map_err(io(dir))?;
    let (private, public) = (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
    for path in [&private, &public] {
        if path.exists() {
            return Err(KeyError::Exists(path.clone()));
        }
    }
    let key = AuditSigningKey::generate()?;
    let encode = |e: ed25519_dalek::pkcs8::Error| KeyError::Random(e.to_string());
    // PKCS#8 v1 (no embedded public key), as `openssl genpkey` writes it.
    let private_pem = KeypairBytes {
        secret_key: key.key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(encode)?;
    let public_pem = key
        .key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Random(e.to_string()))?;
    write_new(&private, private_pem.as_bytes(), 0o600).map_err(io(&private))?;
    write_new(&public, public_pem.as_bytes(), 0o644).map_err(io(&public))?;
    Ok((key, private, public))
}

/// Creates `path` (never replacing it) with `mode`, and makes it durable.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_pair_loads_back_with_the_same_id_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (key, private, public) = write_new_pair(dir.path()).unwrap();
        let loaded = AuditSigningKey::load(&private).unwrap();
        let public_key = AuditVerifyingKey::load(&public).unwrap();
        assert_eq!(loaded.id(), key.id());
        assert_eq!(public_key.id(), key.id());
        let signature = loaded.sign(b"m");
        assert!(public_key.verify(b"m", &signature));
        assert!(!public_key.verify(b"n", &signature));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            write_new_pair(dir.path()),
            Err(KeyError::Exists(_))
        ));
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_malformed_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "not a key").unwrap();
        let err = AuditSigningKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("PKCS#8"), "{err}");
        let err = AuditVerifyingKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("SPKI"), "{err}");
        let err = AuditSigningKey::load(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, KeyError::Io { .. }));
    }
}
