//! Accuracy and fairness of a matcher, measured on searches whose truth is
//! known (issue 18): pure computations on scores, no I/O.
//!
//! The terms are those of ISO/IEC 19795-1 and NIST's Face Recognition
//! Technology Evaluation (FRTE), so that figures can be set beside
//! published ones:
//!
//! - identification with a threshold ([`identification`]): FPIR and rank-1
//!   FNIR at a threshold, and FNIR at the thresholds that meet target FPIRs;
//! - investigation without a threshold ([`cmc`]): FNIR by rank, the CMC;
//! - verification, 1:1 ([`verification`]): FMR, FNMR, the DET curve, EER;
//! - calibration ([`calibration`]): the threshold meeting a target FPIR
//!   for one gallery and for manifests of several sizes, kept in a JSON
//!   sidecar beside the gallery that the server reads;
//! - demographic differentials ([`groups`]): both identification rates per
//!   group, their ratios to the best group's, and bootstrap intervals
//!   ([`bootstrap`]).
//!
//! Every rate is kept as counts ([`Rate`]), every score must be finite,
//! and a score equal to a threshold is a match. The evaluation command
//! (`facegate-index eval`) and docs/accuracy.md are built on this module.

pub mod bootstrap;
pub mod calibration;
pub mod cmc;
mod error;
pub mod groups;
pub mod identification;
mod input;
mod rate;
pub mod verification;

#[cfg(test)]
mod tests;

pub use bootstrap::{BootstrapConfig, Interval};
pub use calibration::{Calibration, CalibrationError};
pub use cmc::{CmcPoint, DEFAULT_CMC_RANKS};
pub use error::AccuracyError;
pub use groups::{GroupMetric, GroupRates, GroupTable, Ratio, per_group};
pub use identification::{AtThreshold, DEFAULT_TARGET_FPIRS, OperatingPoint, fpir_threshold};
pub use input::{Outcome, Ranked, Search, Searches};
pub use rate::Rate;
pub use verification::{DEFAULT_DET_POINTS, DetPoint, Eer, Verification};
