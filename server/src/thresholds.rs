//! The default thresholds: what a request that gives no threshold is
//! judged by, and where that value came from (issue 18).
//!
//! In order of precedence:
//!
//! 1. **configured**: `--default-threshold` (or its variable, or the config
//!    file) was given; an operator's explicit choice wins, and the sidecar
//!    is not read;
//! 2. **calibrated**: the gallery's calibration sidecar
//!    (`GALLERY.fgal.calibration.json`, `facegate-index calibrate`), with a
//!    threshold of its own for each calibrated manifest size;
//! 3. **built-in**: [`BUILT_IN_THRESHOLD`], logged at warn: nothing says it
//!    meets any FPIR on this gallery.
//!
//! A sidecar made on another generation (the gallery was compacted or
//! rebuilt since) is still used, since it is the best measurement there
//! is, but is reported stale (logged at warn and in GalleryInfo) until the
//! gallery is recalibrated. A sidecar that cannot be trusted (corrupt, cut
//! short, another format version, a failed checksum, another model) stops
//! start-up; at a reload it is logged as an error and the thresholds in
//! force stay, so that a bad file never blocks a compaction's reload.

use std::path::Path;
use std::sync::Arc;

use facegate_core::accuracy::{Calibration, CalibrationError};
use facegate_core::format::Header;

/// Used when neither a configured threshold nor a sidecar gives one.
pub const BUILT_IN_THRESHOLD: f32 = 0.35;

/// Where the default threshold came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdSource {
    /// Given on the command line, in the environment or the config file.
    Configured,
    /// Read from the gallery's calibration sidecar.
    Calibrated,
    /// The built-in value: not calibrated.
    BuiltIn,
}

impl ThresholdSource {
    /// The name logs and docs use.
    pub fn name(self) -> &'static str {
        match self {
            ThresholdSource::Configured => "configured",
            ThresholdSource::Calibrated => "calibrated",
            ThresholdSource::BuiltIn => "built-in",
        }
    }
}

/// Why the sidecar was not used.
#[derive(Debug, thiserror::Error)]
pub enum ThresholdError {
    /// The sidecar exists but cannot be trusted.
    #[error(
        "{0}; recalibrate (facegate-index calibrate --force), remove the file, or give --default-threshold"
    )]
    Sidecar(#[from] CalibrationError),
    /// The sidecar was measured with templates of another model.
    #[error(
        "{path}: calibrated on templates of {theirs:?}, the gallery holds {ours:?}; recalibrate or remove it"
    )]
    Model {
        /// The sidecar.
        path: String,
        /// Its model tag.
        theirs: String,
        /// The gallery's.
        ours: String,
    },
}

/// The default thresholds in force, with their source.
#[derive(Debug, Clone)]
pub struct DefaultThresholds {
    /// Where they came from.
    pub source: ThresholdSource,
    /// The threshold of a national (whole-gallery) search.
    pub national: f32,
    /// The calibration they came from, when calibrated.
    pub calibration: Option<Arc<Calibration>>,
}

impl DefaultThresholds {
    /// The thresholds at start-up for the gallery at `gallery` (whose
    /// header is `header`): `configured` when given, else its sidecar, else
    /// the built-in value. A sidecar that cannot be trusted is an error.
    pub fn at_start(
        configured: Option<f32>,
        gallery: &Path,
        header: &Header,
    ) -> Result<DefaultThresholds, ThresholdError> {
        if let Some(t) = configured {
            return Ok(DefaultThresholds {
                source: ThresholdSource::Configured,
                national: t,
                calibration: None,
            });
        }
        let found = match read_sidecar(gallery, header)? {
            Some(c) => DefaultThresholds {
                source: ThresholdSource::Calibrated,
                national: c.threshold,
                calibration: Some(Arc::new(c)),
            },
            None => DefaultThresholds {
                source: ThresholdSource::BuiltIn,
                national: BUILT_IN_THRESHOLD,
                calibration: None,
            },
        };
        found.log(gallery, header.generation);
        Ok(found)
    }

    /// The thresholds after a reload to `header`'s generation: the sidecar
    /// read again (it may have been recalibrated, or have become stale);
    /// when it cannot be trusted, an error is logged and these stay.
    pub fn reread(&self, gallery: &Path, header: &Header) -> DefaultThresholds {
        if self.source == ThresholdSource::Configured {
            return self.clone();
        }
        match Self::at_start(None, gallery, header) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "calibration sidecar refused at reload; the thresholds in force stay"
                );
                self.clone()
            }
        }
    }

    /// The threshold of a scoped search of a manifest of `people`: the
    /// calibrated one for the smallest size at least `people`, else (beyond
    /// the largest size, or uncalibrated) the national threshold.
    pub fn for_manifest(&self, people: usize) -> f32 {
        match &self.calibration {
            Some(c) => c.manifest_threshold(people as u64),
            None => self.national,
        }
    }

    /// Whether the calibration in force was measured on another generation
    /// than `served` (false when not calibrated).
    pub fn is_stale_for(&self, served: u64) -> bool {
        self.calibration
            .as_ref()
            .is_some_and(|c| c.is_stale_for(served))
    }

    /// Logs where the thresholds came from: warn when built-in or stale.
    fn log(&self, gallery: &Path, served: u64) {
        let sidecar = Calibration::sidecar_path(gallery);
        match &self.calibration {
            None => tracing::warn!(
                threshold = self.national,
                sidecar = %sidecar.display(),
                "default threshold is the built-in value, not calibrated for this gallery: run facegate-index calibrate"
            ),
            Some(c) if c.is_stale_for(served) => tracing::warn!(
                threshold = self.national,
                calibrated_generation = %c.gallery.generation,
                served_generation = format!("{served:016x}"),
                "calibration sidecar is stale (made on another gallery generation); using it until recalibrated"
            ),
            Some(c) => tracing::info!(
                threshold = self.national,
                target_fpir = c.target_fpir,
                "default threshold calibrated"
            ),
        }
    }
}

/// The sidecar of `gallery`, checked against its model.
fn read_sidecar(gallery: &Path, header: &Header) -> Result<Option<Calibration>, ThresholdError> {
    let path = Calibration::sidecar_path(gallery);
    let Some(c) = Calibration::read(&path)? else {
        return Ok(None);
    };
    if c.gallery.model_tag != header.model_tag {
        return Err(ThresholdError::Model {
            path: path.display().to_string(),
            theirs: c.gallery.model_tag,
            ours: header.model_tag.clone(),
        });
    }
    Ok(Some(c))
}
