//! Who is calling: API keys for the ports and for the back office, so that
//! every search is authorised and its audit record names a caller the
//! server checked rather than one the request claims.
//!
//! A keys file has one line per key, `NAME SHA256`: the name of the caller
//! (a port id such as `JFK-T4` for `--port-keys`, a person or system for
//! `--admin-keys`) and the SHA-256 of its token in hex. The file holds no
//! secret: a token is shown once, by `facegate keygen`, and only its hash
//! is kept. A name may have several keys (rotation); `#` starts a comment.
//! Clients send `authorization: Bearer TOKEN`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

/// The caller a request's key belongs to, set on the request by
/// [`KeyRing::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal(pub Arc<str>);

/// The keys one listener accepts.
#[derive(Debug, Default)]
pub struct KeyRing {
    by_hash: HashMap<[u8; 32], Arc<str>>,
}

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
    /// Reads a keys file; a malformed line or a key listed twice is an
    /// error naming the line.
    pub fn load(path: &Path) -> anyhow::Result<KeyRing> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading keys file {}", path.display()))?;
        let ring =
            KeyRing::parse(&text).with_context(|| format!("keys file {}", path.display()))?;
        if ring.by_hash.is_empty() {
            anyhow::bail!("keys file {} lists no key", path.display());
        }
        Ok(ring)
    }

    /// Parses the text of a keys file; [`KeyRing::load`] reads the file and
    /// adds that it must list a key. Public so that the parser can be
    /// fuzzed on arbitrary text.
    pub fn parse(text: &str) -> anyhow::Result<KeyRing> {
        let mut by_hash = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(name), Some(hash), None) = (fields.next(), fields.next(), fields.next())
            else {
                anyhow::bail!("line {}: expected `NAME SHA256`", i + 1);
            };
            let hash = parse_hash(hash)
                .with_context(|| format!("line {}: the key hash must be 64 hex digits", i + 1))?;
            if by_hash.insert(hash, Arc::from(name)).is_some() {
                anyhow::bail!("line {}: this key is listed twice", i + 1);
            }
        }
        Ok(KeyRing { by_hash })
    }

    /// The caller a token belongs to.
    pub fn identify(&self, token: &str) -> Option<&Arc<str>> {
        self.by_hash.get(&digest(token))
    }

    /// Checks the request's bearer token and records its [`Principal`] on
    /// the request; UNAUTHENTICATED when there is none or it is unknown.
    pub fn authenticate<T>(&self, req: &mut Request<T>) -> Result<(), Status> {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "an API key is required: send `authorization: Bearer TOKEN`",
                )
            })?;
        let name = self
            .identify(token.trim())
            .ok_or_else(|| Status::unauthenticated("unknown API key"))?;
        req.extensions_mut().insert(Principal(name.clone()));
        Ok(())
    }
}

/// Refuses a request whose claimed port (`capture.port_id`) is not the port
/// its key belongs to (`principal`): a key authorises searches for its own
/// port only. Requests without a key (the listener takes none) or without a
/// claimed port pass.
pub fn authorise(principal: Option<&str>, claimed_port: &str) -> Result<(), Status> {
    match principal {
        Some(p) if !claimed_port.is_empty() && claimed_port != p => Err(Status::permission_denied(
            "capture.port_id is not the port this API key belongs to",
        )),
        _ => Ok(()),
    }
}

/// Whether a caller whose key names `principal` may search a manifest
/// staged for `manifest_port`: a port key searches only its own port's
/// manifests. Without keys (`None`) the port is not authenticated, so
/// there is nothing to check it against, and every manifest may be
/// searched, as every port may search the gallery.
pub fn may_search_manifest(principal: Option<&str>, manifest_port: &str) -> bool {
    principal.is_none_or(|p| p == manifest_port)
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

        let mut req = Request::new(());
        assert_eq!(
            ring.authenticate(&mut req).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        ring.authenticate(&mut req).unwrap();
        assert_eq!(
            req.extensions().get::<Principal>(),
            Some(&Principal(Arc::from("JFK-T4")))
        );
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
            let err = format!("{:#}", KeyRing::parse(&text).unwrap_err());
            assert!(err.contains(want), "{err}");
        }
    }
}
