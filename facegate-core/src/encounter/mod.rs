//! Encounters: every recorded crossing of a non-citizen, entry or exit, and
//! what the agency derives from them: travel histories, stays against the
//! rule of each admission, overstays, exits with no entry.
//!
//! * [`day`]: UTC calendar days, the unit stay rules count in;
//! * [`model`]: travellers, admissions, encounters, and their checks.

pub mod day;
pub mod model;

pub use day::{BadDay, Day};
pub use model::{
    Admission, CaptureContext, Category, Decision, Encounter, Method, RecordError, StayRule,
    Traveller,
};
