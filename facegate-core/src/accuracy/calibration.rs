//! The calibration sidecar: the threshold that meets a target FPIR on one
//! gallery generation (and on manifests of several sizes), written by
//! `facegate-index calibrate` beside the gallery as
//! `GALLERY.fgal.calibration.json` and read by the server for its default
//! threshold.
//!
//! A sidecar rather than a gallery section, because a calibration is made
//! after the gallery is built (it needs probes the build never sees) and
//! may be redone without rewriting a file of hundreds of gigabytes.
//!
//! The file is JSON (docs/gallery-format.md, "Calibration sidecar"). It
//! names the generation it was measured on: a sidecar of another
//! generation is *stale* (the gallery changed since: compaction,
//! enrolments) but still well formed; the server decides what to do with
//! it. A file that is not JSON, is cut short, is of another format
//! version, fails its checksum or holds impossible values is refused with
//! a [`CalibrationError`], never used.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use super::rate::Rate;

/// The format and version this build writes and reads. A reader refuses
/// any other, since a field's meaning may have changed with it.
pub const CALIBRATION_FORMAT: &str = "facegate-calibration/1";

/// Appended to the gallery file's name to name its sidecar.
pub const SIDECAR_SUFFIX: &str = ".calibration.json";

/// Manifest sizes calibrated by default: a small flight to a port-day.
pub const DEFAULT_MANIFEST_SIZES: [u64; 5] = [50, 100, 300, 1_000, 5_000];

/// Why a sidecar could not be read or written. Every variant names the
/// file, so that an operator knows which one to recalibrate or remove.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// Reading, writing or syncing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Not JSON, cut short, or missing or unknown fields.
    #[error("{path}: corrupt calibration file: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// Another format or version than [`CALIBRATION_FORMAT`].
    #[error("{path}: calibration format {found:?}, this build reads {CALIBRATION_FORMAT:?}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The format it declares.
        found: String,
    },
    /// The contents do not match the checksum written with them: the file
    /// was edited or damaged after `calibrate` wrote it.
    #[error(
        "{path}: checksum {found} does not match the contents ({expected}): the file was changed after calibrate wrote it"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The checksum of the contents.
        expected: String,
        /// The checksum the file carries.
        found: String,
    },
    /// Well-formed JSON holding values no calibration can have.
    #[error("{path}: invalid calibration: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which value is wrong.
        reason: String,
    },
}

/// A rate as counts and quotient, as written in the sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measured {
    /// Searches that erred.
    pub errors: u64,
    /// Searches made.
    pub trials: u64,
    /// `errors / trials`.
    pub rate: f64,
}

impl From<Rate> for Measured {
    fn from(r: Rate) -> Self {
        Measured {
            errors: r.errors as u64,
            trials: r.trials as u64,
            rate: r.value().unwrap_or(0.0),
        }
    }
}

/// The gallery a calibration was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedGallery {
    /// The gallery file's name (not its directory, so that the pair can move).
    pub file: String,
    /// Its generation as 16 hex digits (a u64 exceeds what JSON numbers
    /// hold exactly in many readers), as GalleryInfo and eval report it.
    pub generation: String,
    /// Template rows.
    pub rows: u64,
    /// Subjects.
    pub subjects: u64,
    /// The model that made its templates.
    pub model_tag: String,
}

/// A probe set, named and hashed so that a calibration can be redone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSet {
    /// The probes' .npy file name.
    pub file: String,
    /// xxh3-64 of its bytes, 16 hex digits.
    pub xxh3: String,
    /// The truth CSV's file name.
    pub truth_file: String,
    /// xxh3-64 of its bytes, 16 hex digits.
    pub truth_xxh3: String,
    /// Probes of enrolled people (they give FNIR).
    pub mated: u64,
    /// Probes of people not enrolled (they give FPIR).
    pub non_mated: u64,
}

/// The threshold for scoped searches of manifests of up to `people`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestThreshold {
    /// The manifest size calibrated.
    pub people: u64,
    /// The lowest threshold meeting the target FPIR at that size.
    pub threshold: f32,
    /// FPIR measured at it over the sampled manifests.
    pub fpir: Measured,
}

/// One calibration: the sidecar's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Always [`CALIBRATION_FORMAT`].
    pub format: String,
    /// The gallery measured.
    pub gallery: CalibratedGallery,
    /// The FPIR the threshold is to meet.
    pub target_fpir: f64,
    /// The lowest threshold with FPIR ≤ target on the whole gallery.
    pub threshold: f32,
    /// FPIR measured at `threshold` (trials: the non-mated searches).
    pub fpir: Measured,
    /// Rank-1 FNIR at `threshold`, when mated probes were given.
    pub fnir: Option<Measured>,
    /// Manifest thresholds, by increasing size.
    pub manifests: Vec<ManifestThreshold>,
    /// The probes used.
    pub probes: ProbeSet,
    /// Seed of the manifest draws.
    pub seed: u64,
    /// When it was made, Unix epoch milliseconds.
    pub made_unix_ms: u64,
    /// The tool and version that made it.
    pub tool: String,
    /// `xxh3:` and 16 hex digits: xxh3-64 of the file's compact JSON with
    /// this field empty, so that a damaged or hand-edited file is refused.
    pub checksum: String,
}

impl Calibration {
    /// The sidecar path of the gallery at `gallery`: its file name with
    /// [`SIDECAR_SUFFIX`] appended, in the same directory.
    pub fn sidecar_path(gallery: &Path) -> PathBuf {
        let mut name = gallery.as_os_str().to_owned();
        name.push(SIDECAR_SUFFIX);
        PathBuf::from(name)
    }

    /// The generation measured, as a number.
    pub fn generation(&self) -> Option<u64> {
        let g = &self.gallery.generation;
        (g.len() == 16).then(|| u64::from_str_radix(g, 16).ok())?
    }

    /// Whether this calibration was measured on another generation than
    /// `served`: the gallery has changed since, and should be recalibrated.
    pub fn is_stale_for(&self, served: u64) -> bool {
        self.generation() != Some(served)
    }

    /// The threshold for a scoped search of a manifest of `people`: that of
    /// the smallest calibrated size at least `people`, or the national
    /// threshold beyond the largest (FPIR grows with the people searched,
    /// so a larger size's threshold is the safe side).
    pub fn manifest_threshold(&self, people: u64) -> f32 {
        self.manifests
            .iter()
            .find(|m| m.people >= people)
            .map_or(self.threshold, |m| m.threshold)
    }

    /// The checksum of the contents (the `checksum` field aside).
    fn contents_checksum(&self) -> String {
        let mut body = self.clone();
        body.checksum.clear();
        // Serialising plain data with string keys cannot fail.
        let json = serde_json::to_vec(&body).unwrap_or_default();
        format!("xxh3:{:016x}", xxh3_64(&json))
    }

    /// Sets `checksum` from the contents; done last, before writing.
    pub fn seal(mut self) -> Self {
        self.checksum = self.contents_checksum();
        self
    }

    /// Checks every value a calibration can hold (not the checksum).
    pub fn validate(&self) -> Result<(), String> {
        if self.format != CALIBRATION_FORMAT {
            return Err(format!("format {:?}", self.format));
        }
        if self.generation().is_none() {
            return Err(format!(
                "gallery.generation {:?} is not 16 hex digits",
                self.gallery.generation
            ));
        }
        if !(self.target_fpir > 0.0 && self.target_fpir < 1.0) {
            return Err(format!(
                "target_fpir {} is not within (0, 1)",
                self.target_fpir
            ));
        }
        check_threshold("threshold", self.threshold)?;
        check_measured("fpir", &self.fpir, Some(self.target_fpir))?;
        if let Some(f) = &self.fnir {
            check_measured("fnir", f, None)?;
        }
        let mut last = 0;
        for m in &self.manifests {
            if m.people <= last {
                return Err(format!("manifests: size {} after {last}", m.people));
            }
            last = m.people;
            check_threshold("manifest threshold", m.threshold)?;
            check_measured("manifest fpir", &m.fpir, Some(self.target_fpir))?;
        }
        Ok(())
    }

    /// Reads and checks the sidecar at `path`; `Ok(None)` when there is
    /// none. A file that exists but cannot be trusted is an error.
    pub fn read(path: &Path) -> Result<Option<Calibration>, CalibrationError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                let path = path.to_path_buf();
                return Err(CalibrationError::Io { path, source });
            }
        };
        Self::parse(path, &bytes).map(Some)
    }

    /// Parses and checks the bytes of the sidecar at `path` (named in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Calibration, CalibrationError> {
        let corrupt = |e: serde_json::Error| CalibrationError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        /// Only the format, read first so that another version is named as
        /// such rather than as a missing field.
        #[derive(Deserialize)]
        struct Format {
            format: String,
        }
        let format: Format = serde_json::from_slice(bytes).map_err(corrupt)?;
        if format.format != CALIBRATION_FORMAT {
            let path = path.to_path_buf();
            return Err(CalibrationError::Version {
                path,
                found: format.format,
            });
        }
        let c: Calibration = serde_json::from_slice(bytes).map_err(corrupt)?;
        let expected = c.contents_checksum();
        if c.checksum != expected {
            let (path, found) = (path.to_path_buf(), c.checksum);
            return Err(CalibrationError::Checksum {
                path,
                expected,
                found,
            });
        }
        c.validate().map_err(|reason| CalibrationError::Invalid {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(c)
    }

    /// Writes the sidecar at `path` atomically (see `write_atomically`).
    /// It is [sealed](Self::seal) on the way, so what is written always
    /// passes its own checksum; invalid values are refused, not written.
    pub fn write(&self, path: &Path) -> Result<(), CalibrationError> {
        let sealed = self.clone().seal();
        let invalid = |reason| CalibrationError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        sealed.validate().map_err(invalid)?;
        let mut json = serde_json::to_vec_pretty(&sealed).map_err(|e| invalid(e.to_string()))?;
        json.push(b'\n');
        write_atomically(path, &json).map_err(|source| CalibrationError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Writes `bytes` at `path` so that a crash leaves the old file or the
/// new one, never a part: `PATH.tmp` beside it, fsync'd, renamed over
/// `path`, the directory fsync'd (so that the rename itself is durable).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    crate::durable_dir::sync_parent(path)
}

/// xxh3-64 of the bytes of the file at `path`, as 16 hex digits: how a
/// sidecar names the probe set it was measured with, so that a later run
/// can tell whether it has the same probes.
pub fn file_xxh3(path: &Path) -> Result<String, CalibrationError> {
    let io = |source| CalibrationError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(io)?;
        if n == 0 {
            return Ok(format!("{:016x}", h.digest()));
        }
        h.update(&buf[..n]);
    }
}

fn check_threshold(what: &str, t: f32) -> Result<(), String> {
    match (-1.0..=1.0).contains(&t) {
        true => Ok(()),
        false => Err(format!("{what} {t} is not within -1..=1")),
    }
}

/// Counts consistent with the quotient, and at most `target` when given.
fn check_measured(what: &str, m: &Measured, target: Option<f64>) -> Result<(), String> {
    if m.trials == 0 || m.errors > m.trials {
        return Err(format!(
            "{what}: {} errors in {} trials",
            m.errors, m.trials
        ));
    }
    if m.rate != m.errors as f64 / m.trials as f64 {
        return Err(format!(
            "{what}: rate {} is not {}/{}",
            m.rate, m.errors, m.trials
        ));
    }
    match target {
        Some(t) if m.rate > t => Err(format!("{what} {} exceeds the target {t}", m.rate)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
