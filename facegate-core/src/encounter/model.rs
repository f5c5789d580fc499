//! What an encounter and a traveller are, and the checks every record
//! passes before it is stored.

use super::day::Day;
use crate::clock::UnixMillis;
use crate::format::validate_subject_id;
use crate::manifest::{Direction, validate_manifest_id};

/// Longest encounter id, port, lane, carrier, voyage, class of admission,
/// principal or officer note field, in bytes.
pub const MAX_FIELD_LEN: usize = 128;
/// Longest officer's note on a decision or correction, in bytes.
pub const MAX_NOTE_LEN: usize = 1_024;

/// Who a traveller is in law: it decides which stay rule applies and (the
/// retention issue) how long their records may be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// A citizen: no stay rule; photos discarded within 12 hours.
    Citizen,
    /// A lawful permanent resident: no stay limit.
    LawfulPermanentResident,
    /// Admitted on a non-immigrant visa, until a date or for the duration
    /// of a status.
    NonImmigrantVisa,
    /// Admitted without a visa, under the 90-in-180 rule.
    VisaExempt,
    /// Anyone else (refugees, diplomats, crew): the admission's rule applies.
    Other,
}

impl Category {
    /// Every category, for tests and for mapping from the wire.
    pub const ALL: [Category; 5] = [
        Category::Citizen,
        Category::LawfulPermanentResident,
        Category::NonImmigrantVisa,
        Category::VisaExempt,
        Category::Other,
    ];

    /// The name stored in the database and written in reports.
    pub fn name(self) -> &'static str {
        match self {
            Category::Citizen => "citizen",
            Category::LawfulPermanentResident => "lawful_permanent_resident",
            Category::NonImmigrantVisa => "non_immigrant_visa",
            Category::VisaExempt => "visa_exempt",
            Category::Other => "other",
        }
    }

    /// The category of a stored name.
    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether stays of this category are limited at all.
    pub fn has_stay_limit(self) -> bool {
        !matches!(self, Category::Citizen | Category::LawfulPermanentResident)
    }
}

/// How long an admission lets a traveller stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StayRule {
    /// Until the end of this day (an I-94 "admit until" date, a visa's
    /// authorised period).
    AdmittedUntil(Day),
    /// At most 90 days in any 180-day period, entry and exit days counted
    /// (the Schengen short-stay rule).
    NinetyIn180,
    /// For as long as a status lasts (a student, an exchange visitor): no
    /// date to overstay.
    DurationOfStatus,
}

impl StayRule {
    /// The name stored in the database (with the day apart, for
    /// `AdmittedUntil`).
    pub fn name(self) -> &'static str {
        match self {
            StayRule::AdmittedUntil(_) => "admitted_until",
            StayRule::NinetyIn180 => "90_in_180",
            StayRule::DurationOfStatus => "duration_of_status",
        }
    }

    /// The rule of a stored name and day.
    pub fn from_name(name: &str, until: Option<Day>) -> Option<StayRule> {
        match (name, until) {
            ("admitted_until", Some(d)) => Some(StayRule::AdmittedUntil(d)),
            ("90_in_180", None) => Some(StayRule::NinetyIn180),
            ("duration_of_status", None) => Some(StayRule::DurationOfStatus),
            _ => None,
        }
    }

    /// The day of an `AdmittedUntil` rule.
    pub fn until(self) -> Option<Day> {
        match self {
            StayRule::AdmittedUntil(d) => Some(d),
            _ => None,
        }
    }
}

/// One admission: the officer's grant of entry, with the rule of the stay
/// it begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Class of admission (a visa class such as "B2", or "visa-exempt").
    pub class: String,
    /// The port that admitted.
    pub port: String,
    /// The day of admission.
    pub day: Day,
    /// How long the stay may last.
    pub rule: StayRule,
}

/// A traveller's file: who they are in law and each admission granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traveller {
    /// The subject, in the gallery's id space.
    pub subject_id: String,
    /// Their category.
    pub category: Category,
    /// Admissions, oldest first.
    pub admissions: Vec<Admission>,
}

impl Traveller {
    /// Checks a traveller's file as every store does before writing it:
    /// a well-formed subject id and well-formed admissions.
    pub fn validate(&self) -> Result<(), RecordError> {
        check_subject(&self.subject_id)?;
        self.admissions.iter().try_for_each(Admission::validate)
    }
}

/// How the capture was compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// 1:N against the national gallery.
    Identify,
    /// 1:1 against the claimed subject (a document).
    Verify,
    /// 1:few against a staged manifest.
    Manifest,
}

impl Method {
    /// The name stored and reported.
    pub fn name(self) -> &'static str {
        match self {
            Method::Identify => "identify",
            Method::Verify => "verify",
            Method::Manifest => "manifest",
        }
    }

    /// The method of a stored name.
    pub fn from_name(name: &str) -> Option<Method> {
        [Method::Identify, Method::Verify, Method::Manifest]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// What came of the encounter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// The matcher matched the capture to `subject_id` at or above the
    /// threshold.
    Match,
    /// Nothing reached the threshold.
    NoMatch,
    /// An officer decided after a manual document check (the deployed
    /// system's fallback on no match), or corrected the matcher.
    OfficerOverride,
}

impl Decision {
    /// The name stored and reported.
    pub fn name(self) -> &'static str {
        match self {
            Decision::Match => "match",
            Decision::NoMatch => "no_match",
            Decision::OfficerOverride => "officer_override",
        }
    }

    /// The decision of a stored name.
    pub fn from_name(name: &str) -> Option<Decision> {
        [
            Decision::Match,
            Decision::NoMatch,
            Decision::OfficerOverride,
        ]
        .into_iter()
        .find(|d| d.name() == name)
    }
}

/// Where and how a capture was taken: what a port sends with a search it
/// wants recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureContext {
    /// The port's id for this crossing; a retry with the same id is
    /// answered with the first record.
    pub encounter_id: String,
    /// Entry or exit.
    pub direction: Direction,
    /// The port.
    pub port: String,
    /// The lane, gate or booth; may be empty.
    pub lane: String,
    /// The carrier; may be empty (a pedestrian at a land border).
    pub carrier: String,
    /// The flight, voyage or service; may be empty.
    pub voyage: String,
    /// When the photo was taken (the port's clock).
    pub captured_at: UnixMillis,
}

/// One recorded crossing: the capture's context and what the matcher (or
/// an officer) decided. No template or photo is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Encounter {
    /// Where, when, which way.
    pub context: CaptureContext,
    /// The manifest searched, for a manifest search.
    pub manifest_id: Option<String>,
    /// How the capture was compared.
    pub method: Method,
    /// What was decided.
    pub decision: Decision,
    /// Who the traveller is, when the decision names someone.
    pub subject_id: Option<String>,
    /// The matched subject's score, when the matcher scored one.
    pub score: Option<f32>,
    /// The threshold the decision was taken at.
    pub threshold: f32,
    /// The port principal (API key name, or certificate) that asked.
    pub principal: String,
    /// The gallery generation that answered.
    pub generation: u64,
    /// When facegate recorded it (its clock, not the port's).
    pub recorded_at: UnixMillis,
}

/// The largest score magnitude a record accepts: a cosine similarity is
/// within -1..=1, and rounding (the f16 rows of the exact re-score) can
/// pass 1 by a few units in the last place; more is a broken score.
pub const SCORE_BOUND: f32 = 1.001;

/// Why an encounter or traveller record was refused; nothing was stored.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// A text field is missing, too long or has control characters.
    #[error("{field}: {reason}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A subject id is malformed.
    #[error("subject_id: {0}")]
    BadSubjectId(String),
    /// A manifest id is malformed.
    #[error("manifest_id: {0}")]
    BadManifestId(String),
    /// A match names no subject, or a no-match names one.
    #[error("decision {decision} {reason}")]
    DecisionMismatch {
        /// The decision's name.
        decision: &'static str,
        /// What is inconsistent.
        reason: &'static str,
    },
    /// A score or threshold is not a number within -1..=1 (give or take
    /// rounding: [`SCORE_BOUND`]).
    #[error("{field} {value} is not within -1..=1")]
    BadScore {
        /// Which one.
        field: &'static str,
        /// The value.
        value: f32,
    },
}

/// A text field checked by [`crate::text::field_problem`].
pub(crate) fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), RecordError> {
    match crate::text::field_problem(value, max, required) {
        Some(reason) => Err(RecordError::BadField { field, reason }),
        None => Ok(()),
    }
}

/// Checks a subject id as the gallery does.
pub(crate) fn check_subject(id: &str) -> Result<(), RecordError> {
    validate_subject_id(id, &|| "subject_id".into())
        .map_err(|e| RecordError::BadSubjectId(e.to_string()))
}

/// The latest capture time accepted: the last millisecond of the year
/// 9999 (a time beyond it is a port's clock gone wrong, and would not print
/// as a date).
pub const MAX_CAPTURED_AT: UnixMillis = UnixMillis(253_402_300_799_999);

impl CaptureContext {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), RecordError> {
        if !(0..=MAX_CAPTURED_AT.0).contains(&self.captured_at.0) {
            return Err(RecordError::BadField {
                field: "captured_at_unix_ms",
                reason: format!(
                    "{} is not between 1970 and the end of 9999",
                    self.captured_at.0
                ),
            });
        }
        check_text("encounter_id", &self.encounter_id, MAX_FIELD_LEN, true)?;
        check_text("port", &self.port, MAX_FIELD_LEN, true)?;
        check_text("lane", &self.lane, MAX_FIELD_LEN, false)?;
        check_text("carrier", &self.carrier, MAX_FIELD_LEN, false)?;
        check_text("voyage", &self.voyage, MAX_FIELD_LEN, false)
    }
}

impl Encounter {
    /// Checks every field, and that the decision and subject agree.
    pub fn validate(&self) -> Result<(), RecordError> {
        self.context.validate()?;
        if let Some(m) = &self.manifest_id {
            validate_manifest_id(m).map_err(|e| RecordError::BadManifestId(e.to_string()))?;
        }
        if let Some(s) = &self.subject_id {
            check_subject(s)?;
        }
        check_text("principal", &self.principal, MAX_FIELD_LEN, false)?;
        match (self.decision, &self.subject_id) {
            (Decision::Match, None) => Err(RecordError::DecisionMismatch {
                decision: "match",
                reason: "names no subject",
            }),
            (Decision::NoMatch, Some(_)) => Err(RecordError::DecisionMismatch {
                decision: "no_match",
                reason: "names a subject",
            }),
            _ => Ok(()),
        }?;
        for (field, v) in [("score", self.score), ("threshold", Some(self.threshold))] {
            if let Some(value) = v
                && !(-SCORE_BOUND..=SCORE_BOUND).contains(&value)
            {
                return Err(RecordError::BadScore { field, value });
            }
        }
        Ok(())
    }
}

impl Admission {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), RecordError> {
        check_text("class", &self.class, MAX_FIELD_LEN, true)?;
        check_text("port", &self.port, MAX_FIELD_LEN, true)?;
        if let StayRule::AdmittedUntil(until) = self.rule
            && until < self.day
        {
            return Err(RecordError::BadField {
                field: "admitted_until",
                reason: format!("{until} is before the admission day {}", self.day),
            });
        }
        Ok(())
    }
}
