//! Errors of the gallery format and the search engines.
//!
//! Every error names what it is about (a file, a row, a section) so that an
//! operator can act on it without a debugger: a corrupt gallery is refused
//! with the section that failed, a bad embedding with its row.

use std::path::PathBuf;

/// Why a gallery could not be opened, built or verified.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// The file could not be read, written or mapped.
    #[error("{path}: {error}")]
    Io {
        /// The file the operation was on.
        path: PathBuf,
        /// What the operating system said: part of the message and not a
        /// `source()` as well, or a cause chain printed in full (`{:#}`)
        /// would say it twice. Not named `source`, which thiserror makes
        /// the source.
        error: std::io::Error,
    },
    /// The file is not a facegate gallery, or not one this build can read.
    #[error("{path}: not a facegate gallery: {reason}")]
    NotAGallery {
        /// The file that was opened.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The file is a gallery but its contents contradict its header or checksums.
    #[error("{path}: corrupt gallery: {reason}")]
    Corrupt {
        /// The file that was opened.
        path: PathBuf,
        /// Which structure failed and how.
        reason: String,
    },
    /// The input to a build is unusable (shape, values, ids).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The output exists and the caller did not ask to replace it.
    #[error("{0}: output exists; pass --force to replace it")]
    OutputExists(PathBuf),
}

/// A problem with embeddings, ids or probes handed to facegate.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InputError {
    /// A vector has the wrong number of elements.
    #[error("{what}: expected dimension {expected}, got {actual}")]
    Dimension {
        /// The vector or file concerned.
        what: String,
        /// The dimension the gallery or file declares.
        expected: usize,
        /// The dimension that was given.
        actual: usize,
    },
    /// A vector holds NaN or infinity.
    #[error("{what}: element {index} is not finite ({value})")]
    NotFinite {
        /// The vector concerned (file and row, or probe).
        what: String,
        /// The element index within the vector.
        index: usize,
        /// The offending value.
        value: f32,
    },
    /// A vector has zero length and so no direction to compare.
    #[error("{what}: vector has zero norm")]
    ZeroVector {
        /// The vector concerned.
        what: String,
    },
    /// The number of ids differs from the number of embeddings.
    #[error("{ids_file}: {ids} ids for {rows} embedding rows")]
    IdCountMismatch {
        /// The ids file.
        ids_file: String,
        /// Ids found.
        ids: usize,
        /// Embedding rows found.
        rows: usize,
    },
    /// A subject id is empty, too long or has characters that break the formats we write.
    #[error("{what}: invalid subject id: {reason}")]
    BadId {
        /// Where the id came from (file and line).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// There is nothing to build from.
    #[error("{0}: no rows")]
    Empty(String),
    /// A file is not what its name claims (e.g. not a float32 2-D .npy).
    #[error("{what}: {reason}")]
    BadFile {
        /// The file concerned.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A parameter is out of its valid range.
    #[error("{0}")]
    BadParameter(String),
}

impl GalleryError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        GalleryError::Io {
            path: path.into(),
            error: source,
        }
    }
}
