//! Reading and writing the `.npy` float32 matrices data engineers exchange.
//!
//! The header is parsed by `npyz`; rows are then read in bulk once the header
//! says they are little-endian float32 in C order, so a multi-GiB embedding
//! file streams at disk speed without being held in memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek};
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;

use crate::error::{GalleryError, InputError};
use crate::format::RowSource;

/// A float32 `[N, d]` .npy file, read one row at a time.
pub struct NpyRows {
    path: PathBuf,
    reader: BufReader<File>,
    rows: usize,
    dim: usize,
}

fn bad(path: &Path, reason: impl Into<String>) -> GalleryError {
    InputError::BadFile {
        what: path.display().to_string(),
        reason: reason.into(),
    }
    .into()
}

/// The deepest bracket nesting accepted in a header's dictionary. A float32
/// matrix's header nests two levels (`{... 'shape': (N, d)}`); the header
/// parser `npyz` uses takes time exponential in the nesting (found by
/// fuzzing: 60 `[` held it for minutes), so deeper headers are refused
/// before it sees them.
const MAX_HEADER_NESTING: usize = 8;

/// Why [`check_header_nesting`] refused a header.
#[derive(Debug, thiserror::Error)]
enum NestingError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("header nests brackets too deeply")]
    TooDeep,
}

/// Reads the header dictionary of an .npy file (magic, version, length,
/// text) and refuses nesting beyond [`MAX_HEADER_NESTING`]. Anything else
/// unusual (no magic, an unknown version, a short file) is left for `npyz`
/// to name. Reads at most the header's length, which is bounded by the
/// file's size.
fn check_header_nesting(file: &mut File, file_len: u64) -> Result<(), NestingError> {
    let mut pre = [0u8; 12];
    let have = pre
        .len()
        .min(usize::try_from(file_len).unwrap_or(usize::MAX));
    file.read_exact(&mut pre[..have])?;
    if have < 10 || &pre[..6] != b"\x93NUMPY" {
        return Ok(());
    }
    let (start, len) = match pre[6] {
        1 => (10u64, u64::from(u16::from_le_bytes([pre[8], pre[9]]))),
        2 | 3 if have == 12 => (
            12,
            u64::from(u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]])),
        ),
        _ => return Ok(()),
    };
    let len = len.min(file_len.saturating_sub(start));
    let mut text = Vec::new();
    file.seek(std::io::SeekFrom::Start(start))?;
    file.take(len).read_to_end(&mut text)?;
    let mut depth = 0usize;
    for &c in &text {
        match c {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_HEADER_NESTING {
                    return Err(NestingError::TooDeep);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

impl NpyRows {
    /// Opens `path` and checks that it is a non-empty float32 2-D C-order
    /// array whose data is all present.
    pub fn open(path: impl AsRef<Path>) -> Result<NpyRows, GalleryError> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path).map_err(|e| GalleryError::io(&path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| GalleryError::io(&path, e))?
            .len();
        check_header_nesting(&mut file, file_len).map_err(|e| match e {
            NestingError::Io(e) => GalleryError::io(&path, e),
            NestingError::TooDeep => bad(
                &path,
                format!("header nests brackets deeper than {MAX_HEADER_NESTING}"),
            ),
        })?;
        file.rewind().map_err(|e| GalleryError::io(&path, e))?;
        let npy = npyz::NpyFile::new(BufReader::new(file))
            .map_err(|e| bad(&path, format!("not a readable .npy file: {e}")))?;
        let dtype = npy.dtype();
        if dtype != npyz::DType::Plain("<f4".parse().expect("valid type string")) {
            return Err(bad(
                &path,
                format!("dtype {}, expected float32 ('<f4')", dtype.descr()),
            ));
        }
        if npy.order() != npyz::Order::C {
            return Err(bad(
                &path,
                "Fortran order; save it in C order (np.ascontiguousarray)",
            ));
        }
        let shape = npy.shape().to_vec();
        let [rows, dim] = shape[..] else {
            return Err(bad(
                &path,
                format!("shape {shape:?}, expected 2 dimensions [N, d]"),
            ));
        };
        if rows == 0 {
            return Err(InputError::Empty(path.display().to_string()).into());
        }
        if dim == 0 || dim > crate::format::MAX_DIM as u64 {
            return Err(bad(
                &path,
                format!("dimension {dim} outside 1..={}", crate::format::MAX_DIM),
            ));
        }
        let mut reader = npy.into_inner();
        let data_start = reader
            .stream_position()
            .map_err(|e| GalleryError::io(&path, e))?;
        let needed = rows
            .checked_mul(dim)
            .and_then(|x| x.checked_mul(4))
            .and_then(|x| x.checked_add(data_start))
            .ok_or_else(|| bad(&path, "shape overflows"))?;
        if needed > file_len {
            let complete = (file_len.saturating_sub(data_start)) / (dim * 4);
            return Err(bad(
                &path,
                format!(
                    "truncated: header promises {rows} rows, file holds {complete} complete rows"
                ),
            ));
        }
        Ok(NpyRows {
            path,
            reader,
            rows: rows as usize,
            dim: dim as usize,
        })
    }

    /// Reads every remaining row into memory (for probe files).
    pub fn read_all(mut self) -> Result<(Vec<f32>, usize), GalleryError> {
        let mut data = vec![0f32; self.rows * self.dim];
        self.read_into(&mut data)?;
        Ok((data, self.dim))
    }

    fn read_into(&mut self, out: &mut [f32]) -> Result<(), GalleryError> {
        self.reader
            .read_exact(bytemuck::cast_slice_mut(out))
            .map_err(|e| GalleryError::io(&self.path, e))?;
        if cfg!(target_endian = "big") {
            for x in out.iter_mut() {
                *x = f32::from_bits(u32::from_le(x.to_bits()));
            }
        }
        Ok(())
    }
}

impl RowSource for NpyRows {
    fn dim(&self) -> usize {
        self.dim
    }
    fn rows(&self) -> usize {
        self.rows
    }
    fn next_row(&mut self, out: &mut [f32]) -> Result<(), GalleryError> {
        self.read_into(out)
    }
    fn describe_row(&self, row: usize) -> String {
        format!("{} row {row}", self.path.display())
    }
}

/// Streams float32 rows into a new `[rows, dim]` .npy file.
pub struct NpyWriter {
    path: PathBuf,
    inner: npyz::NpyWriter<f32, BufWriter<File>>,
}

impl NpyWriter {
    /// Creates `path` (replacing it) for `rows` rows of `dim` floats.
    pub fn create(
        path: impl AsRef<Path>,
        rows: usize,
        dim: usize,
    ) -> Result<NpyWriter, GalleryError> {
        let path = path.as_ref().to_path_buf();
        let file = File::create(&path).map_err(|e| GalleryError::io(&path, e))?;
        let inner = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[rows as u64, dim as u64])
            .writer(BufWriter::new(file))
            .begin_nd()
            .map_err(|e| GalleryError::io(&path, e))?;
        Ok(NpyWriter { path, inner })
    }

    /// Appends one row.
    pub fn push_row(&mut self, row: &[f32]) -> Result<(), GalleryError> {
        self.inner
            .extend(row.iter().copied())
            .map_err(|e| GalleryError::io(&self.path, e))
    }

    /// Completes the file; errors if fewer rows were pushed than announced.
    pub fn finish(self) -> Result<(), GalleryError> {
        self.inner
            .finish()
            .map_err(|e| GalleryError::io(&self.path, e))
    }
}

/// Writes a whole matrix.
pub fn write_matrix(path: impl AsRef<Path>, data: &[f32], dim: usize) -> Result<(), GalleryError> {
    let mut w = NpyWriter::create(&path, data.len() / dim, dim)?;
    for row in data.chunks_exact(dim) {
        w.push_row(row)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.npy");
        let data: Vec<f32> = (0..12).map(|x| x as f32).collect();
        write_matrix(&p, &data, 4).unwrap();
        let r = NpyRows::open(&p).unwrap();
        assert_eq!((r.rows(), r.dim()), (3, 4));
        assert_eq!(r.read_all().unwrap(), (data, 4));

        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        let err = NpyRows::open(&p).err().unwrap().to_string();
        assert!(
            err.contains("truncated") && err.contains("2 complete rows"),
            "{err}"
        );
    }

    /// Found by fuzzing (fuzz/corpus/npy/crash-nested-brackets): a header
    /// of nested `[` held npyz's header parser for minutes.
    #[test]
    fn a_deeply_nested_header_is_refused_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.npy");
        let dict = format!("{{'descr': '<f4', 'shape': (3, 3), {}}}", "[".repeat(100));
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
        bytes.extend_from_slice(dict.as_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let start = std::time::Instant::now();
        let err = NpyRows::open(&p).err().unwrap().to_string();
        assert!(err.contains("nests brackets deeper"), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn wrong_dtype_and_shape_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.npy");
        npyz::to_file_1d(&p, vec![1i32, 2, 3]).unwrap();
        let err = NpyRows::open(&p).err().unwrap().to_string();
        assert!(err.contains("expected float32"), "{err}");
        let p = dir.path().join("v.npy");
        npyz::to_file_1d(&p, vec![1f32, 2.0]).unwrap();
        let err = NpyRows::open(&p).err().unwrap().to_string();
        assert!(err.contains("expected 2 dimensions"), "{err}");
        std::fs::write(&p, b"not numpy").unwrap();
        let err = NpyRows::open(&p).err().unwrap().to_string();
        assert!(err.contains("not a readable .npy"), "{err}");
    }
}
