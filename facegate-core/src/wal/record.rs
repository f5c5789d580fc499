//! The change log's bytes: a file header, then one checksummed frame per
//! change. This is the reference for the format (docs/gallery-format.md
//! describes it for people).
//!
//! ```text
//! header (32 bytes)
//!   0  magic "FGATEWAL"
//!   8  u32 version (1)
//!  12  u32 dim: floats per template
//!  16  u64 base generation: the gallery generation the changes apply to
//!  24  u64 xxh3-64 of bytes 0..24
//! frame, repeated
//!   0  u32 payload length L (at most MAX_PAYLOAD)
//!   4  u64 xxh3-64 of the length field and the payload
//!  12  payload: u64 seq | u8 op | u16 id length | id bytes (UTF-8)
//!      op 1 (enroll): u16 template count T | T x dim f32
//!      op 2 (remove): nothing more
//! ```
//! All integers and floats are little-endian. A frame is valid only whole and
//! with its checksum; replay stops at the first frame that is not.

use xxhash_rust::xxh3::xxh3_64;

/// File magic.
pub const MAGIC: &[u8; 8] = b"FGATEWAL";
/// Format version written and read.
pub const VERSION: u32 = 1;
/// Bytes of the file header.
pub const HEADER_LEN: usize = 32;
/// Bytes of a frame before its payload.
pub const FRAME_HEAD: usize = 12;
/// Largest payload accepted: 64 templates of 8192 floats fit easily; a
/// larger length field can only be damage.
pub const MAX_PAYLOAD: usize = 4 << 20;

const OP_ENROLL: u8 = 1;
const OP_REMOVE: u8 = 2;

/// One change to the gallery.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Adds a subject's templates (replacing any it had: an enrol is the
    /// subject's full current record).
    Enroll {
        /// The subject.
        subject_id: String,
        /// Row-major, `dim` floats per template.
        templates: Vec<f32>,
    },
    /// Removes a subject and all its templates.
    Remove {
        /// The subject.
        subject_id: String,
    },
}

impl Change {
    /// The subject the change is about.
    pub fn subject_id(&self) -> &str {
        match self {
            Change::Enroll { subject_id, .. } | Change::Remove { subject_id } => subject_id,
        }
    }
}

/// Why bytes are not a valid header or frame.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// Fewer bytes than the structure needs: a torn write at the end.
    #[error("truncated")]
    Truncated,
    /// The bytes are whole but wrong.
    #[error("{0}")]
    Invalid(String),
}

/// The file header.
pub fn encode_header(dim: u32, base_generation: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&dim.to_le_bytes());
    h[16..24].copy_from_slice(&base_generation.to_le_bytes());
    let sum = xxh3_64(&h[0..24]);
    h[24..32].copy_from_slice(&sum.to_le_bytes());
    h
}

/// Reads a header: (dim, base generation).
pub fn decode_header(b: &[u8]) -> Result<(u32, u64), DecodeError> {
    if b.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    if &b[0..8] != MAGIC {
        return Err(DecodeError::Invalid("not a facegate change log".into()));
    }
    if u64::from_le_bytes(b[24..32].try_into().expect("8 bytes")) != xxh3_64(&b[0..24]) {
        return Err(DecodeError::Invalid("header checksum mismatch".into()));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(DecodeError::Invalid(format!(
            "version {version}, this build reads {VERSION}"
        )));
    }
    Ok((
        u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
        u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
    ))
}

/// Appends the frame of change `seq` to `out`.
///
/// Panics if the change breaks the limits the caller must check first
/// (id of at most 65535 bytes, at most 65535 templates, payload within
/// [`MAX_PAYLOAD`]); see [`check_limits`].
pub fn encode_frame(seq: u64, change: &Change, dim: usize, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEAD]);
    out.extend_from_slice(&seq.to_le_bytes());
    let id = change.subject_id().as_bytes();
    match change {
        Change::Enroll { .. } => out.push(OP_ENROLL),
        Change::Remove { .. } => out.push(OP_REMOVE),
    }
    out.extend_from_slice(&(id.len() as u16).to_le_bytes());
    out.extend_from_slice(id);
    if let Change::Enroll { templates, .. } = change {
        let count = templates.len() / dim;
        out.extend_from_slice(&(count as u16).to_le_bytes());
        for x in templates {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    let len = out.len() - start - FRAME_HEAD;
    assert!(len <= MAX_PAYLOAD, "payload over MAX_PAYLOAD");
    out[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    let sum = frame_sum(&out[start..start + 4], &out[start + FRAME_HEAD..]);
    out[start + 4..start + FRAME_HEAD].copy_from_slice(&sum.to_le_bytes());
}

/// Length of the first whole frame in `b` (a buffer of frames this
/// process encoded).
pub fn frame_len(b: &[u8]) -> usize {
    FRAME_HEAD + u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")) as usize
}

/// Sequence number of the first frame in `b` (a buffer of frames this
/// process encoded).
pub fn frame_seq(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[FRAME_HEAD..FRAME_HEAD + 8].try_into().expect("8 bytes"))
}

/// Checks what [`encode_frame`] requires, for a log of `dim`-float templates.
pub fn check_limits(change: &Change, dim: usize) -> Result<(), String> {
    let id = change.subject_id().len();
    if id == 0 || id > u16::MAX as usize {
        return Err(format!("subject id of {id} bytes (1..=65535 allowed)"));
    }
    if let Change::Enroll { templates, .. } = change {
        if dim == 0 || templates.is_empty() || !templates.len().is_multiple_of(dim) {
            return Err(format!(
                "{} floats are not a whole number of {dim}-float templates",
                templates.len()
            ));
        }
        let n = templates.len() / dim;
        let payload = 8 + 1 + 2 + id + 2 + templates.len() * 4;
        if n > u16::MAX as usize || payload > MAX_PAYLOAD {
            return Err(format!("{n} templates are too many for one change"));
        }
    }
    Ok(())
}

fn frame_sum(len_field: &[u8], payload: &[u8]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(len_field);
    h.update(payload);
    h.digest()
}

/// Reads the frame at the start of `b`: (seq, change, frame length).
pub fn decode_frame(b: &[u8], dim: usize) -> Result<(u64, Change, usize), DecodeError> {
    if b.len() < FRAME_HEAD {
        return Err(DecodeError::Truncated);
    }
    let len = u32::from_le_bytes(b[0..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Err(DecodeError::Invalid(format!("frame length {len}")));
    }
    if b.len() < FRAME_HEAD + len {
        return Err(DecodeError::Truncated);
    }
    let payload = &b[FRAME_HEAD..FRAME_HEAD + len];
    let sum = u64::from_le_bytes(b[4..FRAME_HEAD].try_into().expect("8 bytes"));
    if sum != frame_sum(&b[0..4], payload) {
        return Err(DecodeError::Invalid("frame checksum mismatch".into()));
    }
    let bad = |m: &str| DecodeError::Invalid(m.to_string());
    let mut p = Reader(payload);
    let seq = u64::from_le_bytes(
        p.take(8)
            .ok_or_else(|| bad("short payload"))?
            .try_into()
            .expect("8"),
    );
    let op = p.take(1).ok_or_else(|| bad("short payload"))?[0];
    let id_len = u16::from_le_bytes(
        p.take(2)
            .ok_or_else(|| bad("short payload"))?
            .try_into()
            .expect("2"),
    );
    let id = p
        .take(id_len as usize)
        .ok_or_else(|| bad("short payload"))?;
    let subject_id = std::str::from_utf8(id)
        .map_err(|_| bad("subject id is not UTF-8"))?
        .to_string();
    let change = match op {
        OP_ENROLL => {
            let n = u16::from_le_bytes(
                p.take(2)
                    .ok_or_else(|| bad("short payload"))?
                    .try_into()
                    .expect("2"),
            );
            let bytes = p
                .take(n as usize * dim * 4)
                .ok_or_else(|| bad("short templates"))?;
            let templates = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
                .collect();
            Change::Enroll {
                subject_id,
                templates,
            }
        }
        OP_REMOVE => Change::Remove { subject_id },
        other => return Err(DecodeError::Invalid(format!("unknown operation {other}"))),
    };
    if !p.0.is_empty() {
        return Err(bad("trailing bytes in payload"));
    }
    Ok((seq, change, FRAME_HEAD + len))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
}
