//! The byte layout of a gallery file, version 1.
//!
//! This module is the single definition of what is on disk; the reader and
//! the writer both go through it, and docs/gallery-format.md describes the same
//! layout for people. All integers are little-endian.
//!
//! ```text
//! offset  size  field
//! 0       8     magic "FGATEGAL"
//! 8       4     format version (1)
//! 12      4     header length in bytes (4096)
//! 16      4     template dimension d
//! 20      1     scan element type (1 = int8, 2 = f16, 3 = f32)
//! 21      1     has f16 re-score rows (0 or 1; 1 only with int8 scan rows)
//! 22      2     reserved, zero
//! 24      8     row count N
//! 32      8     subject count S
//! 40      8     generation id (random, chosen at build)
//! 48      8     created, seconds since the Unix epoch
//! 56      4     most templates any one subject has
//! 60      4     section count
//! 64      64    model tag, UTF-8, zero padded
//! 128     32*n  section table: kind u32, reserved u32, offset u64, length u64, xxh3-64 u64
//! 4072    8     parent generation: the gallery this one was compacted from (0: built from scratch)
//! 4080    8     last change-log sequence of the parent folded in by the compaction
//! 4088    8     xxh3-64 of header bytes 0..4088
//! ```
//!
//! Sections start on 4096-byte boundaries, so every row is 64-byte aligned
//! straight from the map and typed views need no copy.

use super::ElementType;

/// Identifies a facegate gallery file regardless of version.
pub const MAGIC: [u8; 8] = *b"FGATEGAL";
/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// The header occupies one page so that the first section is page aligned.
pub const HEADER_LEN: usize = 4096;
/// Every section starts on a page boundary.
pub const SECTION_ALIGN: usize = 4096;
/// Template rows are padded to this many bytes so each starts 64-byte aligned.
pub const ROW_ALIGN: usize = 64;
/// Longest model tag, in bytes.
pub const MODEL_TAG_MAX: usize = 64;
/// Largest dimension accepted; guards allocations against a corrupt header.
pub const MAX_DIM: usize = 8192;
/// Largest row count: rows are addressed by `u32` in the subject tables.
pub const MAX_ROWS: u64 = u32::MAX as u64;

const SECTION_TABLE_OFFSET: usize = 128;
const SECTION_ENTRY_LEN: usize = 32;
const HEADER_CHECKSUM_OFFSET: usize = HEADER_LEN - 8;
const LINEAGE_OFFSET: usize = HEADER_CHECKSUM_OFFSET - 16;
/// How many section entries fit between the table start and the lineage.
pub const MAX_SECTIONS: usize = (LINEAGE_OFFSET - SECTION_TABLE_OFFSET) / SECTION_ENTRY_LEN;

/// Where a compacted gallery came from: which changes of which change log
/// it already holds, so that a server adopting it replays only the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage {
    /// Generation of the gallery it was compacted from.
    pub parent_generation: u64,
    /// Last sequence number of the parent's change log folded in (0: none).
    pub through_sequence: u64,
}

/// The kinds of section a gallery holds; each appears at most once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// Rows scanned in 1:N search, in the scan element type, `row_stride` bytes each.
    ScanRows = 1,
    /// One f32 per row: the symmetric int8 quantisation scale (int8 scan only).
    RowScales = 2,
    /// f16 rows used to re-score scan candidates exactly (int8 scan only).
    RescoreRows = 3,
    /// One u32 per row: the index of the row's subject in the sorted subject table.
    RowSubjects = 4,
    /// S+1 u64 offsets into `SubjectIdBytes`; subject i is bytes `[off[i], off[i+1])`.
    SubjectIdOffsets = 5,
    /// Subject ids, UTF-8, concatenated in strictly ascending byte order.
    SubjectIdBytes = 6,
    /// S+1 u64 offsets into `SubjectRows`; subject i owns entries `[off[i], off[i+1])`.
    SubjectRowOffsets = 7,
    /// N u32 row numbers grouped by subject, ascending within a subject.
    SubjectRows = 8,
}

impl SectionKind {
    /// Every kind, in the order the writer lays sections out.
    pub const ALL: [SectionKind; 8] = [
        SectionKind::ScanRows,
        SectionKind::RowScales,
        SectionKind::RescoreRows,
        SectionKind::RowSubjects,
        SectionKind::SubjectIdOffsets,
        SectionKind::SubjectIdBytes,
        SectionKind::SubjectRowOffsets,
        SectionKind::SubjectRows,
    ];

    /// Decodes a kind from the section table.
    pub fn from_u32(v: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u32 == v)
    }

    /// A short name for messages and `info`.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::ScanRows => "scan_rows",
            SectionKind::RowScales => "row_scales",
            SectionKind::RescoreRows => "rescore_rows",
            SectionKind::RowSubjects => "row_subjects",
            SectionKind::SubjectIdOffsets => "subject_id_offsets",
            SectionKind::SubjectIdBytes => "subject_id_bytes",
            SectionKind::SubjectRowOffsets => "subject_row_offsets",
            SectionKind::SubjectRows => "subject_rows",
        }
    }
}

/// Where one section lies in the file and what its bytes hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    /// What the section holds.
    pub kind: SectionKind,
    /// Byte offset from the start of the file.
    pub offset: u64,
    /// Length in bytes (padding after it is not included).
    pub length: u64,
    /// xxh3-64 of the section's bytes.
    pub checksum: u64,
}

/// The decoded fixed header of a gallery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Template dimension.
    pub dim: u32,
    /// Element type of the rows the scan reads.
    pub scan_type: ElementType,
    /// Whether f16 re-score rows accompany int8 scan rows.
    pub has_rescore: bool,
    /// Number of template rows.
    pub rows: u64,
    /// Number of distinct subjects.
    pub subjects: u64,
    /// Random id of this build; a server reports it so operators see which gallery is live.
    pub generation: u64,
    /// Build time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Most templates one subject has; bounds candidate pools.
    pub max_templates_per_subject: u32,
    /// The embedding model that made the templates; probes from another model are refused.
    pub model_tag: String,
    /// Set when the gallery was compacted from another gallery and its log.
    pub lineage: Option<Lineage>,
    /// The section table.
    pub sections: Vec<SectionEntry>,
}

/// Why header bytes could not be decoded; the reader adds the path.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a gallery at all, or a version this build does not read.
    NotAGallery(String),
    /// A gallery whose header is damaged or inconsistent.
    Corrupt(String),
}

/// Bytes per row of `dim` elements of `ty`, padded to [`ROW_ALIGN`].
pub fn row_stride(ty: ElementType, dim: usize) -> usize {
    (dim * ty.size()).div_ceil(ROW_ALIGN) * ROW_ALIGN
}

/// Rounds an offset up to the next section boundary.
pub fn align_section(offset: u64) -> u64 {
    offset.div_ceil(SECTION_ALIGN as u64) * SECTION_ALIGN as u64
}

/// The checksum used for the header and for every section.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

impl Header {
    /// Encodes the header into its fixed page, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.sections.len() <= MAX_SECTIONS, "too many sections");
        assert!(self.model_tag.len() <= MODEL_TAG_MAX, "model tag too long");
        let mut b = vec![0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..20].copy_from_slice(&self.dim.to_le_bytes());
        b[20] = self.scan_type as u8;
        b[21] = u8::from(self.has_rescore);
        b[24..32].copy_from_slice(&self.rows.to_le_bytes());
        b[32..40].copy_from_slice(&self.subjects.to_le_bytes());
        b[40..48].copy_from_slice(&self.generation.to_le_bytes());
        b[48..56].copy_from_slice(&self.created_unix.to_le_bytes());
        b[56..60].copy_from_slice(&self.max_templates_per_subject.to_le_bytes());
        b[60..64].copy_from_slice(&(self.sections.len() as u32).to_le_bytes());
        b[64..64 + self.model_tag.len()].copy_from_slice(self.model_tag.as_bytes());
        for (i, s) in self.sections.iter().enumerate() {
            let o = SECTION_TABLE_OFFSET + i * SECTION_ENTRY_LEN;
            b[o..o + 4].copy_from_slice(&(s.kind as u32).to_le_bytes());
            b[o + 8..o + 16].copy_from_slice(&s.offset.to_le_bytes());
            b[o + 16..o + 24].copy_from_slice(&s.length.to_le_bytes());
            b[o + 24..o + 32].copy_from_slice(&s.checksum.to_le_bytes());
        }
        if let Some(l) = self.lineage {
            b[LINEAGE_OFFSET..LINEAGE_OFFSET + 8]
                .copy_from_slice(&l.parent_generation.to_le_bytes());
            b[LINEAGE_OFFSET + 8..HEADER_CHECKSUM_OFFSET]
                .copy_from_slice(&l.through_sequence.to_le_bytes());
        }
        let sum = checksum(&b[..HEADER_CHECKSUM_OFFSET]);
        b[HEADER_CHECKSUM_OFFSET..].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// Decodes and checks a header page: magic, version, checksum and field ranges.
    ///
    /// Section extents are checked against the file by the reader, which knows its size.
    pub fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.len() < HEADER_LEN {
            return Err(if b.len() >= 8 && b[0..8] == MAGIC {
                HeaderError::Corrupt(format!(
                    "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
                    b.len()
                ))
            } else {
                HeaderError::NotAGallery(format!("{} bytes, no gallery header", b.len()))
            });
        }
        if b[0..8] != MAGIC {
            return Err(HeaderError::NotAGallery("bad magic".into()));
        }
        let version = u32_at(b, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::NotAGallery(format!(
                "format version {version}, this build reads version {FORMAT_VERSION}"
            )));
        }
        let stored = u64_at(b, HEADER_CHECKSUM_OFFSET);
        if checksum(&b[..HEADER_CHECKSUM_OFFSET]) != stored {
            return Err(HeaderError::Corrupt("header checksum mismatch".into()));
        }
        let corrupt = |m: String| Err(HeaderError::Corrupt(m));
        if u32_at(b, 12) as usize != HEADER_LEN {
            return corrupt(format!("header length {}", u32_at(b, 12)));
        }
        let dim = u32_at(b, 16);
        if dim == 0 || dim as usize > MAX_DIM {
            return corrupt(format!("dimension {dim} outside 1..={MAX_DIM}"));
        }
        let Some(scan_type) = ElementType::from_u8(b[20]) else {
            return corrupt(format!("unknown element type {}", b[20]));
        };
        let has_rescore = match b[21] {
            0 => false,
            1 => true,
            v => return corrupt(format!("re-score flag {v}")),
        };
        let rows = u64_at(b, 24);
        let subjects = u64_at(b, 32);
        if rows == 0 || rows > MAX_ROWS || subjects == 0 || subjects > rows {
            return corrupt(format!("{rows} rows for {subjects} subjects"));
        }
        let count = u32_at(b, 60) as usize;
        if count > MAX_SECTIONS {
            return corrupt(format!("{count} sections"));
        }
        let tag_bytes = &b[64..64 + MODEL_TAG_MAX];
        let tag_len = tag_bytes
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(MODEL_TAG_MAX);
        let Ok(model_tag) = std::str::from_utf8(&tag_bytes[..tag_len]) else {
            return corrupt("model tag is not UTF-8".into());
        };
        let mut sections = Vec::with_capacity(count);
        for i in 0..count {
            let o = SECTION_TABLE_OFFSET + i * SECTION_ENTRY_LEN;
            let Some(kind) = SectionKind::from_u32(u32_at(b, o)) else {
                return corrupt(format!("unknown section kind {}", u32_at(b, o)));
            };
            if sections.iter().any(|s: &SectionEntry| s.kind == kind) {
                return corrupt(format!("section {} appears twice", kind.name()));
            }
            sections.push(SectionEntry {
                kind,
                offset: u64_at(b, o + 8),
                length: u64_at(b, o + 16),
                checksum: u64_at(b, o + 24),
            });
        }
        Ok(Header {
            dim,
            scan_type,
            has_rescore,
            rows,
            subjects,
            generation: u64_at(b, 40),
            created_unix: u64_at(b, 48),
            max_templates_per_subject: u32_at(b, 56),
            model_tag: model_tag.to_owned(),
            lineage: match u64_at(b, LINEAGE_OFFSET) {
                0 => None,
                parent_generation => Some(Lineage {
                    parent_generation,
                    through_sequence: u64_at(b, LINEAGE_OFFSET + 8),
                }),
            },
            sections,
        })
    }

    /// The entry of one section, if present.
    pub fn section(&self, kind: SectionKind) -> Option<&SectionEntry> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// The sections this header's element types require, with their exact byte lengths.
    ///
    /// The reader checks the table against this list; the writer lays out exactly it.
    pub fn expected_sections(&self, id_bytes_len: Option<u64>) -> Vec<(SectionKind, Option<u64>)> {
        let n = self.rows;
        let s = self.subjects;
        let d = self.dim as usize;
        let mut v = vec![(
            SectionKind::ScanRows,
            Some(n * row_stride(self.scan_type, d) as u64),
        )];
        if self.scan_type == ElementType::Int8 {
            v.push((SectionKind::RowScales, Some(n * 4)));
        }
        if self.has_rescore {
            v.push((
                SectionKind::RescoreRows,
                Some(n * row_stride(ElementType::F16, d) as u64),
            ));
        }
        v.extend([
            (SectionKind::RowSubjects, Some(n * 4)),
            (SectionKind::SubjectIdOffsets, Some((s + 1) * 8)),
            (SectionKind::SubjectIdBytes, id_bytes_len),
            (SectionKind::SubjectRowOffsets, Some((s + 1) * 8)),
            (SectionKind::SubjectRows, Some(n * 4)),
        ]);
        v
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            dim: 512,
            scan_type: ElementType::Int8,
            has_rescore: true,
            rows: 10,
            subjects: 4,
            generation: 0xfeed,
            created_unix: 1_700_000_000,
            max_templates_per_subject: 5,
            model_tag: "arcface-r100@2".into(),
            lineage: Some(Lineage {
                parent_generation: 0xbeef,
                through_sequence: 77,
            }),
            sections: vec![SectionEntry {
                kind: SectionKind::ScanRows,
                offset: 4096,
                length: 5120,
                checksum: 42,
            }],
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample();
        assert_eq!(Header::decode(&h.encode()), Ok(h));
    }

    #[test]
    fn any_flipped_header_byte_is_refused() {
        let bytes = sample().encode();
        for i in [0usize, 9, 17, 30, 70, 140, 4000, 4090] {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(Header::decode(&b).is_err(), "flip at {i} accepted");
        }
    }

    #[test]
    fn stride_is_64_byte_aligned() {
        assert_eq!(row_stride(ElementType::Int8, 512), 512);
        assert_eq!(row_stride(ElementType::Int8, 100), 128);
        assert_eq!(row_stride(ElementType::F16, 100), 256);
        assert_eq!(row_stride(ElementType::F32, 3), 64);
    }
}
