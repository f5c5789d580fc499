//! One audit line: the record as JSON, chained to the line before it. This
//! is the reference for the format (docs/audit.md describes it for people).
//!
//! ```text
//! {"seq":7,"time_unix_ms":...,"rpc":"Identify",...,"chain":"3f0c9a1be2d47e55"}\n
//! ```
//!
//! - `seq` counts records from 1 across every file of the directory, with no
//!   gaps.
//! - `chain` is the last field, 16 lower-case hex digits: the xxh3-64 of the
//!   line's bytes before `,"chain":`, seeded with the previous record's chain
//!   (0 before the first record). Editing, dropping, reordering or
//!   truncating records breaks it from that point on.
//!
//! The chain detects damage and careless edits, not forgery: it has no key,
//! so whoever can rewrite the files can recompute it. Tamper evidence
//! against the operator needs the files shipped off the host (see
//! docs/audit.md).

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The bytes that introduce the chain field, always the last one.
const CHAIN_FIELD: &str = ",\"chain\":\"";

/// What the server knows about one search or gallery change when it
/// answers: who asked, from where, what was asked, what they learnt.
///
/// Never a template: the audit trail proves who searched, not what face.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AuditEvent {
    /// When the answer was ready, Unix epoch milliseconds.
    pub time_unix_ms: u64,
    /// The RPC: Identify, IdentifyStream, Verify, Enroll, Remove, Reload.
    pub rpc: String,
    /// The gRPC status code name of the answer: "OK", "INVALID_ARGUMENT", ...
    pub code: String,
    /// The caller's network address as the server saw it.
    pub peer: String,
    /// The caller its API key names (the port, or the back-office user);
    /// empty when the listener takes no keys.
    #[serde(default)]
    pub principal: String,
    /// The client's request id.
    pub request_id: String,
    /// `capture.port_id`: the port the request says it comes from.
    pub port_id: String,
    /// `capture.lane`.
    pub lane: String,
    /// `capture.direction`: "entry", "exit" or "unspecified".
    pub direction: String,
    /// `capture.captured_at_unix_ms`.
    pub captured_at_unix_ms: i64,
    /// The decision, for searches that were answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<bool>,
    /// Subjects the request named or learnt about: the candidates an
    /// Identify returned, the claimed subject of a Verify, the subject an
    /// Enroll or Remove changed.
    pub subjects: Vec<String>,
    /// Gallery generation that answered (0 when the request failed before).
    pub generation: u64,
    /// Server time from arrival to answer, microseconds.
    pub latency_us: u64,
    /// The manifest a scoped search named, or a manifest RPC changed or
    /// read; absent otherwise (and in every record written before manifests
    /// existed, which still read as they did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_id: Option<String>,
}

/// A record as stored: its place in the trail and the event.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct AuditRecord {
    /// Position in the trail, from 1.
    pub seq: u64,
    /// What happened.
    #[serde(flatten)]
    pub event: AuditEvent,
}

/// The record's fields in the order they are written, seq first.
#[derive(serde::Serialize)]
struct Stored<'a> {
    seq: u64,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// Why a line is not a valid record.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// The line has no chain field where it must be.
    #[error("no chain field at the end of the line")]
    NoChain,
    /// The chain does not follow from the previous record and this line's bytes.
    #[error("chain mismatch: the line or one before it was changed, dropped or reordered")]
    Chain,
    /// The JSON does not decode to a record.
    #[error("not a record: {0}")]
    Json(String),
}

/// Appends `event` as record `seq` to `out` (one line, newline included)
/// and returns its chain value, the seed of the next record.
pub fn encode_line(seq: u64, event: &AuditEvent, prev_chain: u64, out: &mut Vec<u8>) -> u64 {
    let start = out.len();
    let record = Stored { seq, event };
    // Serialising plain strings and numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &record).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"{}");
    }
    out.pop(); // the closing brace
    let chain = xxh3_64_with_seed(&out[start..], prev_chain);
    out.extend_from_slice(format!("{CHAIN_FIELD}{chain:016x}\"}}\n").as_bytes());
    chain
}

/// A line split at its chain field: the record's JSON (closed again) and
/// the chain value it states, with where the field starts.
struct Parts {
    record: AuditRecord,
    chain_at: usize,
    chain: u64,
}

fn split(line: &[u8]) -> Result<Parts, LineError> {
    let text = std::str::from_utf8(line).map_err(|e| LineError::Json(e.to_string()))?;
    let chain_at = text.rfind(CHAIN_FIELD).ok_or(LineError::NoChain)?;
    let hex = text[chain_at + CHAIN_FIELD.len()..]
        .strip_suffix("\"}")
        .filter(|h| h.len() == 16)
        .ok_or(LineError::NoChain)?;
    let chain = u64::from_str_radix(hex, 16).map_err(|_| LineError::NoChain)?;
    let record = serde_json::from_str(&format!("{}}}", &text[..chain_at]))
        .map_err(|e| LineError::Json(json_reason(&e)))?;
    Ok(Parts {
        record,
        chain_at,
        chain,
    })
}

/// Where and how a line's JSON failed, without serde_json's own message,
/// which quotes the offending value: in a damaged line that can be a
/// subject id, and this reason reaches the server's log.
fn json_reason(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "malformed JSON",
        serde_json::error::Category::Data => "a field of the wrong type or missing",
        serde_json::error::Category::Eof => "JSON cut short",
    };
    format!("{kind} at column {}", e.column())
}

/// The sequence number and chain value a line states, without checking
/// the chain (whose seed is in the line before): where a new file goes on.
pub fn stated(line: &[u8]) -> Result<(u64, u64), LineError> {
    let p = split(line)?;
    Ok((p.record.seq, p.chain))
}

/// Decodes one line (without its newline) that must follow a record whose
/// chain was `prev_chain`; returns the record and its chain value.
pub fn decode_line(line: &[u8], prev_chain: u64) -> Result<(AuditRecord, u64), LineError> {
    let p = split(line)?;
    if xxh3_64_with_seed(&line[..p.chain_at], prev_chain) != p.chain {
        return Err(LineError::Chain);
    }
    Ok((p.record, p.chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(rpc: &str) -> AuditEvent {
        AuditEvent {
            time_unix_ms: 1_700_000_000_000,
            rpc: rpc.into(),
            code: "OK".into(),
            port_id: "JFK-T4".into(),
            request_id: "r\"1,\"chain\":\"".into(),
            subjects: vec!["S1".into(), "S2".into()],
            matched: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn a_line_decodes_to_what_was_encoded_and_chains_from_the_previous() {
        let mut out = Vec::new();
        let c1 = encode_line(1, &event("Identify"), 0, &mut out);
        let first_len = out.len();
        let c2 = encode_line(2, &event("Verify"), c1, &mut out);
        let lines: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let (r1, d1) = decode_line(lines[0], 0).unwrap();
        let (r2, d2) = decode_line(lines[1], d1).unwrap();
        assert_eq!((d1, d2), (c1, c2));
        assert_eq!((r1.seq, r1.event), (1, event("Identify")));
        assert_eq!((r2.seq, r2.event.rpc.as_str()), (2, "Verify"));
        assert_eq!(out[first_len - 1], b'\n');
        // Out of order, or after another line, the chain does not hold.
        assert_eq!(decode_line(lines[1], 0), Err(LineError::Chain));
        assert_eq!(decode_line(lines[0], c2), Err(LineError::Chain));
    }

    #[test]
    fn any_edit_breaks_the_chain() {
        let mut out = Vec::new();
        encode_line(1, &event("Identify"), 0, &mut out);
        out.pop();
        let edited = String::from_utf8(out.clone()).unwrap().replace("S2", "S3");
        assert_eq!(decode_line(edited.as_bytes(), 0), Err(LineError::Chain));
        let cut = &out[..out.len() - 3];
        assert_eq!(decode_line(cut, 0), Err(LineError::NoChain));
        assert!(decode_line(b"{\"seq\":1}", 0).is_err());
    }

    #[test]
    fn a_damaged_field_is_described_without_its_value() {
        let mut out = Vec::new();
        encode_line(1, &event("Identify"), 0, &mut out);
        out.pop();
        // A subject list turned into a number's place: serde_json's message
        // would quote "S1".
        let damaged = String::from_utf8(out)
            .unwrap()
            .replace("\"seq\":1", "\"seq\":\"S1\"");
        let Err(LineError::Json(reason)) = decode_line(damaged.as_bytes(), 0) else {
            panic!("a damaged line decoded");
        };
        assert!(!reason.contains("S1"), "{reason}");
        assert!(reason.starts_with("a field of the wrong type"), "{reason}");
    }
}
