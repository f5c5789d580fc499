//! Opens a gallery file by mapping it, and verifies it in full on request.

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use half::f16;
use memmap2::Mmap;

use super::ElementType;
use super::layout::{HEADER_LEN, Header, HeaderError, SectionKind, checksum, row_stride};
use crate::error::GalleryError;

/// An open, memory-mapped gallery.
///
/// Rows are read straight from the map: the operating system pages them in on
/// first use and may share them between processes. All accessors are bounds
/// checked, so a file that passed [`Gallery::open`] but is damaged inside a
/// section yields a [`GalleryError::Corrupt`], never a panic.
pub struct Gallery {
    path: PathBuf,
    map: Mmap,
    header: Header,
    ranges: [Range<usize>; SectionKind::ALL.len()],
}

/// The scan rows in their stored element type; `stride` is in elements.
#[derive(Clone, Copy)]
pub enum ScanRows<'a> {
    /// int8 rows with one scale per row.
    Int8 {
        /// `rows * stride` quantised elements.
        data: &'a [i8],
        /// One scale per row.
        scales: &'a [f32],
        /// Elements between row starts.
        stride: usize,
    },
    /// f16 rows.
    F16 {
        /// `rows * stride` elements.
        data: &'a [f16],
        /// Elements between row starts.
        stride: usize,
    },
    /// f32 rows.
    F32 {
        /// `rows * stride` elements.
        data: &'a [f32],
        /// Elements between row starts.
        stride: usize,
    },
}

/// What a full verification looked at.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Sections whose checksum matched.
    pub sections_checked: usize,
    /// Bytes hashed.
    pub bytes_checked: u64,
}

impl Gallery {
    /// Maps `path` and validates its header and section table against the
    /// file's size; does not read the rows.
    pub fn open(path: impl AsRef<Path>) -> Result<Gallery, GalleryError> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| GalleryError::io(&path, e))?;
        // SAFETY: galleries are immutable once built (the writer renames a new
        // file into place rather than changing one), so the mapping is not
        // modified underneath us by facegate itself.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| GalleryError::io(&path, e))?;
        let header = Header::decode(&map).map_err(|e| match e {
            HeaderError::NotAGallery(reason) => GalleryError::NotAGallery {
                path: path.clone(),
                reason,
            },
            HeaderError::Corrupt(reason) => GalleryError::Corrupt {
                path: path.clone(),
                reason,
            },
        })?;
        let ranges =
            section_ranges(&header, map.len() as u64).map_err(|reason| GalleryError::Corrupt {
                path: path.clone(),
                reason,
            })?;
        let g = Gallery {
            path,
            map,
            header,
            ranges,
        };
        g.check_table_ends()?;
        Ok(g)
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file this gallery was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Template dimension.
    pub fn dim(&self) -> usize {
        self.header.dim as usize
    }

    /// Number of template rows.
    pub fn rows(&self) -> usize {
        self.header.rows as usize
    }

    /// Number of distinct subjects.
    pub fn subjects(&self) -> usize {
        self.header.subjects as usize
    }

    /// Size of the mapped file.
    pub fn file_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    fn bytes(&self, kind: SectionKind) -> &[u8] {
        &self.map[self.ranges[kind as usize - 1].clone()]
    }

    fn corrupt(&self, reason: impl Into<String>) -> GalleryError {
        GalleryError::Corrupt {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    fn u32s(&self, kind: SectionKind) -> &[u32] {
        // Sections are page aligned and their lengths were checked at open.
        bytemuck::cast_slice(self.bytes(kind))
    }

    fn u64s(&self, kind: SectionKind) -> &[u64] {
        bytemuck::cast_slice(self.bytes(kind))
    }

    /// The rows the 1:N scan reads.
    pub fn scan_rows(&self) -> ScanRows<'_> {
        let stride_bytes = row_stride(self.header.scan_type, self.dim());
        let bytes = self.bytes(SectionKind::ScanRows);
        match self.header.scan_type {
            ElementType::Int8 => ScanRows::Int8 {
                data: bytemuck::cast_slice(bytes),
                scales: bytemuck::cast_slice(self.bytes(SectionKind::RowScales)),
                stride: stride_bytes,
            },
            ElementType::F16 => ScanRows::F16 {
                data: bytemuck::cast_slice(bytes),
                stride: stride_bytes / 2,
            },
            ElementType::F32 => ScanRows::F32 {
                data: bytemuck::cast_slice(bytes),
                stride: stride_bytes / 4,
            },
        }
    }

    /// The f16 re-score rows and their stride in elements, for int8 galleries.
    pub fn rescore_rows(&self) -> Option<(&[f16], usize)> {
        self.header.has_rescore.then(|| {
            (
                bytemuck::cast_slice(self.bytes(SectionKind::RescoreRows)),
                row_stride(ElementType::F16, self.dim()) / 2,
            )
        })
    }

    /// The subject index of a row.
    pub fn row_subject(&self, row: usize) -> Result<u32, GalleryError> {
        let s = *self
            .u32s(SectionKind::RowSubjects)
            .get(row)
            .ok_or_else(|| self.corrupt(format!("row {row} out of range")))?;
        if s as u64 >= self.header.subjects {
            return Err(self.corrupt(format!("row {row} names subject {s}, beyond the table")));
        }
        Ok(s)
    }

    /// The id of subject `index`.
    pub fn subject_id(&self, index: u32) -> Result<&str, GalleryError> {
        let offs = self.u64s(SectionKind::SubjectIdOffsets);
        let i = index as usize;
        let (Some(&a), Some(&b)) = (offs.get(i), offs.get(i + 1)) else {
            return Err(self.corrupt(format!("subject {index} out of range")));
        };
        let bytes = self.bytes(SectionKind::SubjectIdBytes);
        let raw = (a <= b)
            .then(|| bytes.get(a as usize..b as usize))
            .flatten()
            .ok_or_else(|| self.corrupt(format!("subject {index} id offsets {a}..{b}")))?;
        std::str::from_utf8(raw)
            .map_err(|_| self.corrupt(format!("subject {index} id is not UTF-8")))
    }

    /// Finds a subject by id (binary search over the sorted id table).
    pub fn find_subject(&self, id: &str) -> Result<Option<u32>, GalleryError> {
        let (mut lo, mut hi) = (0usize, self.subjects());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.subject_id(mid as u32)?.cmp(id) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Some(mid as u32)),
            }
        }
        Ok(None)
    }

    /// The rows (templates) of subject `index`, ascending.
    pub fn subject_rows(&self, index: u32) -> Result<&[u32], GalleryError> {
        let offs = self.u64s(SectionKind::SubjectRowOffsets);
        let i = index as usize;
        let (Some(&a), Some(&b)) = (offs.get(i), offs.get(i + 1)) else {
            return Err(self.corrupt(format!("subject {index} out of range")));
        };
        let rows = self.u32s(SectionKind::SubjectRows);
        let out = (a <= b)
            .then(|| rows.get(a as usize..b as usize))
            .flatten()
            .ok_or_else(|| self.corrupt(format!("subject {index} row offsets {a}..{b}")))?;
        if let Some(&bad) = out.iter().find(|&&r| r as u64 >= self.header.rows) {
            return Err(self.corrupt(format!("subject {index} names row {bad}, beyond the table")));
        }
        Ok(out)
    }

    /// The ends of both offset tables must match their data; O(1), done at open.
    fn check_table_ends(&self) -> Result<(), GalleryError> {
        let s = self.subjects();
        let id_offs = self.u64s(SectionKind::SubjectIdOffsets);
        let id_len = self.bytes(SectionKind::SubjectIdBytes).len() as u64;
        if id_offs[0] != 0 || id_offs[s] != id_len {
            return Err(self.corrupt("subject id offsets do not span the id bytes"));
        }
        let row_offs = self.u64s(SectionKind::SubjectRowOffsets);
        if row_offs[0] != 0 || row_offs[s] != self.header.rows {
            return Err(self.corrupt("subject row offsets do not span the rows"));
        }
        Ok(())
    }

    /// Reads every byte: section checksums, then the structure of the tables
    /// (ids sorted and unique, every row owned by exactly its subject, scales
    /// finite and positive, no -128 in int8 rows).
    pub fn verify(&self, progress: &mut dyn FnMut(u64)) -> Result<VerifyReport, GalleryError> {
        let mut done = HEADER_LEN as u64;
        for s in &self.header.sections {
            let bytes = self.bytes(s.kind);
            if checksum(bytes) != s.checksum {
                return Err(self.corrupt(format!("section {} checksum mismatch", s.kind.name())));
            }
            done += bytes.len() as u64;
            progress(done);
        }
        self.verify_structure()?;
        Ok(VerifyReport {
            sections_checked: self.header.sections.len(),
            bytes_checked: done,
        })
    }

    fn verify_structure(&self) -> Result<(), GalleryError> {
        let s = self.subjects() as u32;
        let mut prev: Option<&str> = None;
        let mut max_templates = 0usize;
        for i in 0..s {
            let id = self.subject_id(i)?;
            if prev.is_some_and(|p| p >= id) {
                return Err(self.corrupt(format!("subject ids not strictly ascending at {i}")));
            }
            prev = Some(id);
            let rows = self.subject_rows(i)?;
            if rows.is_empty() {
                return Err(self.corrupt(format!("subject {i} has no rows")));
            }
            max_templates = max_templates.max(rows.len());
            for w in rows.windows(2) {
                if w[0] >= w[1] {
                    return Err(self.corrupt(format!("subject {i} rows not ascending")));
                }
            }
            for &r in rows {
                if self.row_subject(r as usize)? != i {
                    return Err(self.corrupt(format!(
                        "row {r} listed under subject {i} but owned by another"
                    )));
                }
            }
        }
        if max_templates as u32 != self.header.max_templates_per_subject {
            return Err(self.corrupt("max templates per subject disagrees with the tables"));
        }
        if let ScanRows::Int8 { data, scales, .. } = self.scan_rows() {
            if let Some(r) = scales.iter().position(|x| !x.is_finite() || *x <= 0.0) {
                return Err(self.corrupt(format!("row {r} has scale {}", scales[r])));
            }
            if let Some(p) = data.iter().position(|&x| x == i8::MIN) {
                return Err(self.corrupt(format!("int8 element -128 at byte {p} of the scan rows")));
            }
        }
        Ok(())
    }
}

/// Checks the section table against the required sections and the file size,
/// returning each section's byte range indexed by `kind - 1`.
fn section_ranges(h: &Header, file_len: u64) -> Result<[Range<usize>; 8], String> {
    if h.has_rescore && h.scan_type != ElementType::Int8 {
        return Err("re-score rows are only valid with int8 scan rows".into());
    }
    let expected = h.expected_sections(None);
    if h.sections.len() != expected.len() {
        return Err(format!(
            "{} sections, expected {} for {} rows{}",
            h.sections.len(),
            expected.len(),
            h.scan_type,
            if h.has_rescore {
                " with re-score rows"
            } else {
                ""
            }
        ));
    }
    let mut ranges: [Range<usize>; 8] = Default::default();
    for (kind, len) in expected {
        let s = h
            .section(kind)
            .ok_or_else(|| format!("section {} missing", kind.name()))?;
        if let Some(len) = len
            && s.length != len
        {
            return Err(format!(
                "section {} is {} bytes, expected {len}",
                kind.name(),
                s.length
            ));
        }
        let end = s
            .offset
            .checked_add(s.length)
            .ok_or("section extent overflows")?;
        if s.offset < HEADER_LEN as u64 || s.offset % super::layout::SECTION_ALIGN as u64 != 0 {
            return Err(format!(
                "section {} at misaligned offset {}",
                kind.name(),
                s.offset
            ));
        }
        if end > file_len {
            return Err(format!(
                "truncated: section {} ends at byte {end}, file has {file_len}",
                kind.name()
            ));
        }
        ranges[kind as usize - 1] = s.offset as usize..end as usize;
    }
    let end = h
        .sections
        .iter()
        .map(|s| s.offset + s.length)
        .max()
        .unwrap_or(0);
    if end != file_len {
        return Err(format!(
            "{} trailing bytes after the last section",
            file_len - end
        ));
    }
    let mut sorted: Vec<_> = ranges.iter().filter(|r| !r.is_empty()).collect();
    sorted.sort_by_key(|r| r.start);
    if sorted.windows(2).any(|w| w[0].end > w[1].start) {
        return Err("sections overlap".into());
    }
    Ok(ranges)
}
