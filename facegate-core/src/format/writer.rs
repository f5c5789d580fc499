//! Builds a gallery file atomically from embeddings and subject ids.
//!
//! The file is laid out in a temporary file beside the target, filled through
//! a writable map, checksummed, fsync'd, and only then given its real name
//! (and the directory fsync'd), so a crash leaves either the old file or the
//! complete new one, never a half-written gallery under the real name.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use half::f16;
use memmap2::MmapMut;
use rayon::prelude::*;

use super::ElementType;
use super::layout::{
    HEADER_LEN, Header, Lineage, MAX_ROWS, MODEL_TAG_MAX, SectionEntry, SectionKind, align_section,
    checksum, row_stride,
};
use crate::error::{GalleryError, InputError};
use crate::quantize::{normalize_into, quantize_i8, to_f16};

/// Longest subject id, in bytes.
pub const MAX_SUBJECT_ID_LEN: usize = 256;

/// A sequential source of embedding rows (a .npy file, a generator, a slice).
pub trait RowSource {
    /// Elements per row.
    fn dim(&self) -> usize;
    /// Number of rows the source will yield.
    fn rows(&self) -> usize;
    /// Fills `out` with the next row (not yet normalised).
    fn next_row(&mut self, out: &mut [f32]) -> Result<(), GalleryError>;
    /// Names row `row` in error messages (e.g. "E.npy row 17").
    fn describe_row(&self, row: usize) -> String;
}

/// Rows held in memory, row-major.
pub struct SliceRows<'a> {
    data: &'a [f32],
    dim: usize,
    next: usize,
    name: String,
}

impl<'a> SliceRows<'a> {
    /// Wraps `data` (`rows * dim` floats); `name` appears in errors.
    pub fn new(data: &'a [f32], dim: usize, name: impl Into<String>) -> Result<Self, InputError> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(InputError::BadParameter(format!(
                "{} floats do not form rows of dimension {dim}",
                data.len()
            )));
        }
        Ok(SliceRows {
            data,
            dim,
            next: 0,
            name: name.into(),
        })
    }
}

impl RowSource for SliceRows<'_> {
    fn dim(&self) -> usize {
        self.dim
    }
    fn rows(&self) -> usize {
        self.data.len() / self.dim
    }
    fn next_row(&mut self, out: &mut [f32]) -> Result<(), GalleryError> {
        let start = self.next * self.dim;
        out.copy_from_slice(&self.data[start..start + self.dim]);
        self.next += 1;
        Ok(())
    }
    fn describe_row(&self, row: usize) -> String {
        format!("{} row {row}", self.name)
    }
}

/// How to build a gallery.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Element type of the scan rows; int8 also stores f16 rows for re-scoring.
    pub scan_type: ElementType,
    /// The embedding model that made the templates.
    pub model_tag: String,
    /// Replace an existing file at the output path.
    pub overwrite: bool,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// The header written.
    pub header: Header,
    /// Size of the file in bytes.
    pub file_bytes: u64,
}

/// Checks a subject id: non-empty, at most 256 bytes, no control characters
/// (they would break the line-based id files and CSV output).
pub fn validate_subject_id(id: &str, what: &dyn Fn() -> String) -> Result<(), InputError> {
    let reason = if id.is_empty() {
        "empty".to_string()
    } else if id.len() > MAX_SUBJECT_ID_LEN {
        format!("{} bytes, at most {MAX_SUBJECT_ID_LEN}", id.len())
    } else if id.chars().any(char::is_control) {
        "contains a control character".to_string()
    } else if id.trim() != id {
        "has leading or trailing whitespace".to_string()
    } else {
        return Ok(());
    };
    Err(InputError::BadId {
        what: what(),
        reason,
    })
}

/// Builds a gallery at `out` from `rows` and one subject id per row.
///
/// `ids_name` names the ids in errors; `progress` is called with the number of
/// rows written so far.
pub fn build_gallery(
    out: &Path,
    rows: &mut dyn RowSource,
    ids: &[String],
    ids_name: &str,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<BuildReport, GalleryError> {
    build_gallery_with_lineage(out, rows, ids, ids_name, opts, None, progress)
}

/// [`build_gallery`] for a compaction: the header records the gallery and
/// the change-log position the rows came from.
pub fn build_gallery_with_lineage(
    out: &Path,
    rows: &mut dyn RowSource,
    ids: &[String],
    ids_name: &str,
    opts: &BuildOptions,
    lineage: Option<Lineage>,
    progress: &mut dyn FnMut(u64),
) -> Result<BuildReport, GalleryError> {
    let n = rows.rows();
    let dim = rows.dim();
    check_inputs(n, dim, ids, ids_name, opts)?;
    if !opts.overwrite && out.exists() {
        return Err(GalleryError::OutputExists(out.to_path_buf()));
    }
    let table = SubjectTable::new(ids);
    let mut header = Header {
        dim: dim as u32,
        scan_type: opts.scan_type,
        has_rescore: opts.scan_type == ElementType::Int8,
        rows: n as u64,
        subjects: table.sorted_ids.len() as u64,
        generation: new_generation(),
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        max_templates_per_subject: table.max_templates,
        model_tag: opts.model_tag.clone(),
        lineage,
        sections: Vec::new(),
    };
    let id_bytes: u64 = table.sorted_ids.iter().map(|s| s.len() as u64).sum();
    let mut offset = HEADER_LEN as u64;
    let mut file_len = offset;
    for (kind, len) in header.expected_sections(Some(id_bytes)) {
        let length = len.unwrap_or(0);
        header.sections.push(SectionEntry {
            kind,
            offset,
            length,
            checksum: 0,
        });
        // The file ends exactly where its last section does.
        file_len = offset + length;
        offset = align_section(file_len);
    }

    let tmp = TempFile::create(out)?;
    tmp.file
        .set_len(file_len)
        .map_err(|e| GalleryError::io(&tmp.path, e))?;
    // SAFETY: the temporary file is ours alone (created exclusively) and is not
    // truncated while mapped.
    let mut map =
        unsafe { MmapMut::map_mut(&tmp.file) }.map_err(|e| GalleryError::io(&tmp.path, e))?;

    write_rows(&mut map, &header, rows, progress)?;
    write_tables(&mut map, &header, &table);
    for s in &mut header.sections {
        s.checksum = checksum(&map[s.offset as usize..(s.offset + s.length) as usize]);
    }
    map[..HEADER_LEN].copy_from_slice(&header.encode());
    map.flush().map_err(|e| GalleryError::io(&tmp.path, e))?;
    drop(map);
    tmp.persist(out, opts.overwrite)?;
    Ok(BuildReport {
        header,
        file_bytes: file_len,
    })
}

fn check_inputs(
    n: usize,
    dim: usize,
    ids: &[String],
    ids_name: &str,
    opts: &BuildOptions,
) -> Result<(), GalleryError> {
    if n == 0 {
        return Err(InputError::Empty("embeddings".into()).into());
    }
    if ids.len() != n {
        return Err(InputError::IdCountMismatch {
            ids_file: ids_name.into(),
            ids: ids.len(),
            rows: n,
        }
        .into());
    }
    if dim == 0 || dim > super::MAX_DIM {
        return Err(InputError::BadParameter(format!(
            "dimension {dim} outside 1..={}",
            super::MAX_DIM
        ))
        .into());
    }
    if n as u64 > MAX_ROWS {
        return Err(InputError::BadParameter(format!("{n} rows; at most {MAX_ROWS}")).into());
    }
    if opts.model_tag.len() > MODEL_TAG_MAX || opts.model_tag.contains('\0') {
        return Err(InputError::BadParameter(format!(
            "model tag must be at most {MODEL_TAG_MAX} bytes without NUL"
        ))
        .into());
    }
    for (i, id) in ids.iter().enumerate() {
        validate_subject_id(id, &|| format!("{ids_name} line {}", i + 1))?;
    }
    Ok(())
}

/// Subjects sorted by id, with each row's subject index and each subject's rows.
struct SubjectTable<'a> {
    sorted_ids: Vec<&'a str>,
    row_subject: Vec<u32>,
    max_templates: u32,
}

impl<'a> SubjectTable<'a> {
    fn new(ids: &'a [String]) -> Self {
        let mut sorted_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        sorted_ids.sort_unstable();
        sorted_ids.dedup();
        let index: HashMap<&str, u32> = sorted_ids
            .iter()
            .enumerate()
            .map(|(i, s)| (*s, i as u32))
            .collect();
        let row_subject: Vec<u32> = ids.iter().map(|id| index[id.as_str()]).collect();
        let mut counts = vec![0u32; sorted_ids.len()];
        for &s in &row_subject {
            counts[s as usize] += 1;
        }
        let max_templates = counts.iter().copied().max().unwrap_or(0);
        SubjectTable {
            sorted_ids,
            row_subject,
            max_templates,
        }
    }
}

fn section_bytes<'m>(map: &'m mut [u8], header: &Header, kind: SectionKind) -> &'m mut [u8] {
    let s = header
        .section(kind)
        .expect("writer lays out every expected section");
    &mut map[s.offset as usize..(s.offset + s.length) as usize]
}

/// Bytes of source rows read between two parallel encodings: every core
/// gets work, and memory stays bounded whatever the dimension.
const BLOCK_BYTES: usize = 16 << 20;

/// Where one row's encodings go: the scan section, the int8 scales, the
/// f16 re-score rows (the last two only where the gallery has them).
struct RowSlots<'a> {
    scan: &'a mut [u8],
    scale: Option<&'a mut [u8]>,
    rescore: Option<&'a mut [u8]>,
}

/// Reads the rows from the source in order, a block at a time, and
/// encodes each block on every core (normalise, quantise or widen, write
/// into the map): the source is sequential, the encoding and the page
/// faults of a fresh map are not.
fn write_rows(
    map: &mut MmapMut,
    header: &Header,
    rows: &mut dyn RowSource,
    progress: &mut dyn FnMut(u64),
) -> Result<(), GalleryError> {
    let dim = header.dim as usize;
    let n = header.rows as usize;
    let block_rows = (BLOCK_BYTES / (4 * dim)).max(1);
    let mut raw = vec![0f32; block_rows.min(n) * dim];
    for first in (0..n).step_by(block_rows) {
        let count = block_rows.min(n - first);
        let block = &mut raw[..count * dim];
        for row in block.chunks_exact_mut(dim) {
            rows.next_row(row)?;
        }
        if let Some(bad) = encode_block(map, header, first, block) {
            // Normalise the row again to say why, naming it as the source does.
            let mut unit = vec![0f32; dim];
            let row = &block[bad * dim..(bad + 1) * dim];
            normalize_into(row, &mut unit, &|| rows.describe_row(first + bad))?;
        }
        progress((first + count) as u64);
    }
    Ok(())
}

/// Encodes `block` (rows `first ..`) into the map in parallel; the index
/// within the block of the first row that cannot be normalised, if any.
fn encode_block(map: &mut [u8], header: &Header, first: usize, block: &[f32]) -> Option<usize> {
    let dim = header.dim as usize;
    let count = block.len() / dim;
    let slots = row_slots(map, header, first, count);
    let bad = AtomicUsize::new(usize::MAX);
    let scratch = || (vec![0f32; dim], vec![0i8; dim], vec![f16::ZERO; dim]);
    slots
        .into_par_iter()
        .zip(block.par_chunks_exact(dim))
        .enumerate()
        .for_each_init(scratch, |(unit, q, h), (i, (slot, raw))| {
            if normalize_into(raw, unit, &String::new).is_err() {
                bad.fetch_min(i, Ordering::Relaxed);
                return;
            }
            match header.scan_type {
                ElementType::Int8 => {
                    let scale = quantize_i8(unit, q);
                    slot.scan[..dim].copy_from_slice(bytemuck::cast_slice(&q[..]));
                    if let Some(dst) = slot.scale {
                        dst.copy_from_slice(&scale.to_le_bytes());
                    }
                }
                ElementType::F16 => {
                    to_f16(unit, h);
                    slot.scan[..2 * dim].copy_from_slice(bytemuck::cast_slice(&h[..]));
                }
                ElementType::F32 => {
                    slot.scan[..4 * dim].copy_from_slice(bytemuck::cast_slice(&unit[..]))
                }
            }
            if let Some(dst) = slot.rescore {
                to_f16(unit, h);
                dst[..2 * dim].copy_from_slice(bytemuck::cast_slice(&h[..]));
            }
        });
    let bad = bad.into_inner();
    (bad != usize::MAX).then_some(bad)
}

/// Each of rows `first .. first + count`'s slots in the map: disjoint
/// slices of the scan, scale and re-score sections, each a whole stride
/// (its padding past the row's values stays zero, as the file was made).
fn row_slots<'a>(
    map: &'a mut [u8],
    header: &Header,
    first: usize,
    count: usize,
) -> Vec<RowSlots<'a>> {
    let dim = header.dim as usize;
    let strides = [
        (SectionKind::ScanRows, row_stride(header.scan_type, dim)),
        (SectionKind::RowScales, 4),
        (SectionKind::RescoreRows, row_stride(ElementType::F16, dim)),
    ];
    let ranges = strides.map(|(kind, stride)| {
        header.section(kind).map(|s| {
            let start = s.offset as usize + first * stride;
            (start..start + count * stride, stride)
        })
    });
    let [scan, scales, rescore] = disjoint(map, ranges.clone().map(|r| r.map(|(r, _)| r)));
    let chunks = |slice: Option<&'a mut [u8]>, i: usize| -> Vec<Option<&'a mut [u8]>> {
        match (slice, &ranges[i]) {
            (Some(s), Some((_, stride))) => s.chunks_exact_mut(*stride).map(Some).collect(),
            _ => (0..count).map(|_| None).collect(),
        }
    };
    let scan = chunks(scan, 0);
    let scales = chunks(scales, 1);
    let rescore = chunks(rescore, 2);
    scan.into_iter()
        .zip(scales)
        .zip(rescore)
        .map(|((scan, scale), rescore)| RowSlots {
            // The writer lays out a scan section for every gallery.
            scan: scan.expect("scan section"),
            scale,
            rescore,
        })
        .collect()
}

/// Disjoint mutable slices of `map` for non-overlapping `ranges` (`None`
/// where a range is absent), in the order the ranges were given.
fn disjoint<const N: usize>(
    map: &mut [u8],
    ranges: [Option<Range<usize>>; N],
) -> [Option<&mut [u8]>; N] {
    let mut order: Vec<usize> = (0..N).filter(|&i| ranges[i].is_some()).collect();
    order.sort_by_key(|&i| ranges[i].as_ref().map(|r| r.start));
    let mut out: [Option<&mut [u8]>; N] = std::array::from_fn(|_| None);
    let (mut rest, mut base) = (map, 0);
    for i in order {
        let Some(r) = &ranges[i] else { continue };
        let (_, tail) = rest.split_at_mut(r.start - base);
        let (mine, tail) = tail.split_at_mut(r.len());
        out[i] = Some(mine);
        (rest, base) = (tail, r.end);
    }
    out
}

fn write_tables(map: &mut MmapMut, header: &Header, table: &SubjectTable) {
    let put_u32s = |dst: &mut [u8], v: &[u32]| dst.copy_from_slice(bytemuck::cast_slice(v));
    put_u32s(
        section_bytes(map, header, SectionKind::RowSubjects),
        &table.row_subject,
    );

    let mut id_offsets = Vec::with_capacity(table.sorted_ids.len() + 1);
    let mut acc = 0u64;
    id_offsets.push(0u64);
    for id in &table.sorted_ids {
        acc += id.len() as u64;
        id_offsets.push(acc);
    }
    section_bytes(map, header, SectionKind::SubjectIdOffsets)
        .copy_from_slice(bytemuck::cast_slice(&id_offsets));
    let bytes = section_bytes(map, header, SectionKind::SubjectIdBytes);
    for (id, w) in table.sorted_ids.iter().zip(id_offsets.windows(2)) {
        bytes[w[0] as usize..w[1] as usize].copy_from_slice(id.as_bytes());
    }

    // Counting sort of rows by subject; rows stay ascending within a subject.
    let s = table.sorted_ids.len();
    let mut row_offsets = vec![0u64; s + 1];
    for &subj in &table.row_subject {
        row_offsets[subj as usize + 1] += 1;
    }
    for i in 0..s {
        row_offsets[i + 1] += row_offsets[i];
    }
    let mut fill: Vec<u64> = row_offsets[..s].to_vec();
    let mut subject_rows = vec![0u32; table.row_subject.len()];
    for (row, &subj) in table.row_subject.iter().enumerate() {
        subject_rows[fill[subj as usize] as usize] = row as u32;
        fill[subj as usize] += 1;
    }
    section_bytes(map, header, SectionKind::SubjectRowOffsets)
        .copy_from_slice(bytemuck::cast_slice(&row_offsets));
    put_u32s(
        section_bytes(map, header, SectionKind::SubjectRows),
        &subject_rows,
    );
}

fn new_generation() -> u64 {
    use rand::RngCore;
    rand::rng().next_u64()
}

/// Removes the temporary files a crashed writer of `target` left beside it
/// (`.NAME.tmp-PID-N`): each is a whole gallery in the making, with
/// templates a later erasure or compaction removed from the gallery itself,
/// so none may outlive its writer. A writer holds an exclusive lock on its
/// file from creation to rename; a file nobody holds locked
/// is a crashed writer's, whatever its PID says (a restarted container's
/// server has the same PID as the one that crashed). Returns what it
/// removed; a file another cleaner removed meanwhile is not an error.
pub fn remove_stale_temp_files(target: &Path) -> Result<Vec<PathBuf>, GalleryError> {
    let dir = parent_dir(target);
    let prefix = format!(".{}.tmp-", target_name(target));
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| GalleryError::io(&dir, e))? {
        let entry = entry.map_err(|e| GalleryError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.strip_prefix(&prefix).is_some_and(is_temp_suffix) {
            continue;
        }
        let path = entry.path();
        if remove_if_unlocked(&path)? {
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        crate::durable_dir::sync(&dir).map_err(|e| GalleryError::io(&dir, e))?;
    }
    Ok(removed)
}

/// Whether `rest` is what [`TempFile::create`] puts after `.NAME.tmp-`:
/// decimal digits, `-`, hex digits, and nothing else.
fn is_temp_suffix(rest: &str) -> bool {
    rest.split_once('-').is_some_and(|(pid, n)| {
        !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Removes the plain file at `path` unless a writer holds it locked;
/// whether it did. Gone already: false.
fn remove_if_unlocked(path: &Path) -> Result<bool, GalleryError> {
    let file = match OpenOptions::new().read(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(GalleryError::io(path, e)),
    };
    let is_file = file
        .metadata()
        .map_err(|e| GalleryError::io(path, e))?
        .is_file();
    if !is_file || file.try_lock().is_err() {
        return Ok(false);
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(GalleryError::io(path, e)),
    }
}

fn target_name(target: &Path) -> String {
    target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "gallery".into())
}

/// A temporary file beside the target, removed unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    /// A new temporary file beside `target`, locked exclusively for as
    /// long as it lives, so that [`remove_stale_temp_files`] leaves it
    /// alone; a crashed writer's files are removed first (best effort: a
    /// failure there is logged, and this write goes on).
    fn create(target: &Path) -> Result<Self, GalleryError> {
        if let Err(e) = remove_stale_temp_files(target) {
            tracing::warn!(error = %e, "a crashed writer's temporary gallery stays");
        }
        let dir = parent_dir(target);
        let name = target_name(target);
        loop {
            let path = dir.join(format!(
                ".{name}.tmp-{}-{:x}",
                std::process::id(),
                new_generation()
            ));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| GalleryError::io(&path, e))?;
            file.lock().map_err(|e| GalleryError::io(&path, e))?;
            // A cleaner may have taken the file for a dead writer's between
            // its creation and the lock: then it is no longer at `path`.
            if still_at(&file, &path) {
                return Ok(TempFile {
                    path,
                    file,
                    persisted: false,
                });
            }
        }
    }

    /// fsyncs the file, gives it its real name, and fsyncs the directory.
    fn persist(mut self, target: &Path, overwrite: bool) -> Result<(), GalleryError> {
        self.file
            .sync_all()
            .map_err(|e| GalleryError::io(&self.path, e))?;
        if overwrite {
            std::fs::rename(&self.path, target).map_err(|e| GalleryError::io(target, e))?;
        } else {
            // A hard link fails if the target appeared meanwhile: never clobber it.
            std::fs::hard_link(&self.path, target).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    GalleryError::OutputExists(target.to_path_buf())
                } else {
                    GalleryError::io(target, e)
                }
            })?;
            std::fs::remove_file(&self.path).map_err(|e| GalleryError::io(&self.path, e))?;
        }
        self.persisted = true;
        let dir = parent_dir(target);
        crate::durable_dir::sync(&dir).map_err(|e| GalleryError::io(&dir, e))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` still names `file` (the same inode on the same device).
#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(named)) => held.ino() == named.ino() && held.dev() == named.dev(),
        _ => false,
    }
}

/// Elsewhere: whether `path` still exists.
#[cfg(not(unix))]
fn still_at(_: &File, path: &Path) -> bool {
    path.exists()
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
