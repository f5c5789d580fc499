//! What a manifest is, and the checks every manifest passes before it is
//! stored or served.

use crate::clock::UnixMillis;
use crate::error::InputError;
use crate::format::validate_subject_id;

/// Most travellers one manifest may list. The largest gallery of the
/// deployed mode (NISTIR 8381's airport-day gallery) has 42,000 people; the
/// limit leaves room above it while keeping one scoped search (an exact score
/// per template, on one thread) within tens of milliseconds.
pub const MAX_TRAVELLERS: usize = 50_000;
/// Longest manifest id, in bytes: enough for a carrier, a voyage and a date.
pub const MAX_MANIFEST_ID_LEN: usize = 128;
/// Longest carrier, voyage or port code, in bytes.
pub const MAX_FIELD_LEN: usize = 64;

/// What a manifest lists the travellers of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ManifestKind {
    /// An aircraft's passenger manifest.
    Flight,
    /// A ship's passenger and crew list.
    Vessel,
    /// The expected travellers of a land crossing (a bus, a train).
    LandCrossing,
    /// Everyone expected at one port on one day.
    PortDay,
}

impl ManifestKind {
    /// Every kind, for tests and for mapping from the wire.
    pub const ALL: [ManifestKind; 4] = [
        ManifestKind::Flight,
        ManifestKind::Vessel,
        ManifestKind::LandCrossing,
        ManifestKind::PortDay,
    ];

    /// The name stored in the database and written in logs.
    pub fn name(self) -> &'static str {
        match self {
            ManifestKind::Flight => "flight",
            ManifestKind::Vessel => "vessel",
            ManifestKind::LandCrossing => "land_crossing",
            ManifestKind::PortDay => "port_day",
        }
    }

    /// The kind of a stored name.
    pub fn from_name(name: &str) -> Option<ManifestKind> {
        ManifestKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Whether the travellers are arriving or leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Arriving in the country.
    Entry,
    /// Leaving the country.
    Exit,
}

impl Direction {
    /// The name stored in the database and written in logs.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Entry => "entry",
            Direction::Exit => "exit",
        }
    }

    /// The direction of a stored name.
    pub fn from_name(name: &str) -> Option<Direction> {
        [Direction::Entry, Direction::Exit]
            .into_iter()
            .find(|d| d.name() == name)
    }
}

/// Everything about a manifest but its travellers: what a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestHeader {
    /// The back office's id for it, unique among stored manifests.
    pub id: String,
    /// Flight, vessel, land crossing or port-day.
    pub kind: ManifestKind,
    /// The carrier (airline, shipping line, bus company); may be empty for a
    /// port-day manifest.
    pub carrier: String,
    /// The flight number, voyage or service; may be empty.
    pub voyage: String,
    /// The port whose captures may search it (a port key searches only its
    /// own port's manifests).
    pub port: String,
    /// Entry or exit.
    pub direction: Direction,
    /// The scheduled departure or arrival, for the officers and reports.
    pub scheduled: UnixMillis,
    /// From this instant on the manifest may be searched.
    pub valid_from: UnixMillis,
    /// From this instant on it may not, and it is purged from memory and disk.
    pub valid_until: UnixMillis,
}

/// A manifest: its header and the subject ids of its travellers. It holds
/// references to subjects, never templates, so that a removal or a
/// re-enrolment in the gallery applies to every manifest at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Who, where, when.
    pub header: ManifestHeader,
    /// The travellers' subject ids, in the gallery's id space. Stored and
    /// returned sorted (their order means nothing); no duplicates.
    pub subject_ids: Vec<String>,
}

/// Why a manifest (or an amendment to one) was refused; nothing was stored.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ManifestError {
    /// The manifest id is empty.
    #[error("manifest id is empty")]
    EmptyId,
    /// The manifest id is longer than [`MAX_MANIFEST_ID_LEN`].
    #[error("manifest id is {len} bytes, at most {MAX_MANIFEST_ID_LEN}")]
    IdTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A text field (the id, carrier, voyage, port) has characters that
    /// break logs and reports, or is missing where required.
    #[error("{field}: {reason}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The validity window is empty or reversed.
    #[error("valid_until ({until}) must be after valid_from ({from})", until = .valid_until.0, from = .valid_from.0)]
    EmptyWindow {
        /// Start of the window.
        valid_from: UnixMillis,
        /// End of the window.
        valid_until: UnixMillis,
    },
    /// The window has already ended: the manifest could never be searched.
    #[error("valid_until ({until}) is not after now ({now}): the manifest would never be searchable", until = .valid_until.0, now = .now.0)]
    AlreadyExpired {
        /// End of the window.
        valid_until: UnixMillis,
        /// The time of the request.
        now: UnixMillis,
    },
    /// More travellers than [`MAX_TRAVELLERS`].
    #[error("{count} travellers: at most {MAX_TRAVELLERS} per manifest")]
    TooManyTravellers {
        /// Travellers the manifest would have.
        count: usize,
    },
    /// A subject id is malformed.
    #[error("traveller {index}: {error}")]
    BadSubjectId {
        /// Its position in the list given.
        index: usize,
        /// What is wrong with it.
        error: InputError,
    },
    /// A subject id is listed twice.
    #[error("traveller {id:?} is listed more than once")]
    DuplicateSubject {
        /// The id.
        id: String,
    },
    /// An amendment both adds and drops the same traveller.
    #[error("traveller {id:?} is both added and dropped")]
    AddedAndDropped {
        /// The id.
        id: String,
    },
}

/// A text field checked by [`crate::text::field_problem`].
fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), ManifestError> {
    match crate::text::field_problem(value, max, required) {
        Some(reason) => Err(ManifestError::BadField { field, reason }),
        None => Ok(()),
    }
}

/// Checks a manifest id alone (staging, and the id of a lookup or amendment).
pub fn validate_manifest_id(id: &str) -> Result<(), ManifestError> {
    if id.is_empty() {
        return Err(ManifestError::EmptyId);
    }
    if id.len() > MAX_MANIFEST_ID_LEN {
        return Err(ManifestError::IdTooLong { len: id.len() });
    }
    check_text("manifest id", id, MAX_MANIFEST_ID_LEN, true)
}

/// Checks a list of subject ids: each well formed, none twice. `offset`
/// numbers them in errors (their position in the caller's list).
pub(crate) fn validate_subject_ids<'a>(
    ids: impl IntoIterator<Item = &'a String>,
) -> Result<(), ManifestError> {
    let mut seen = std::collections::HashSet::new();
    for (index, id) in ids.into_iter().enumerate() {
        validate_subject_id(id, &|| "subject_id".into())
            .map_err(|error| ManifestError::BadSubjectId { index, error })?;
        if !seen.insert(id.as_str()) {
            return Err(ManifestError::DuplicateSubject { id: id.clone() });
        }
    }
    Ok(())
}

impl ManifestHeader {
    /// Checks every field of the header.
    pub fn validate(&self) -> Result<(), ManifestError> {
        validate_manifest_id(&self.id)?;
        check_text("carrier", &self.carrier, MAX_FIELD_LEN, false)?;
        check_text("voyage", &self.voyage, MAX_FIELD_LEN, false)?;
        check_text("port", &self.port, MAX_FIELD_LEN, true)?;
        if self.valid_until <= self.valid_from {
            return Err(ManifestError::EmptyWindow {
                valid_from: self.valid_from,
                valid_until: self.valid_until,
            });
        }
        Ok(())
    }

    /// Whether the manifest may be searched at `now`: `valid_from <= now <
    /// valid_until`.
    pub fn is_valid_at(&self, now: UnixMillis) -> bool {
        self.valid_from <= now && now < self.valid_until
    }
}

impl Manifest {
    /// Checks every field: the header, the travellers' count, each id, and
    /// that none is listed twice.
    pub fn validate(&self) -> Result<(), ManifestError> {
        self.header.validate()?;
        if self.subject_ids.len() > MAX_TRAVELLERS {
            return Err(ManifestError::TooManyTravellers {
                count: self.subject_ids.len(),
            });
        }
        validate_subject_ids(&self.subject_ids)
    }

    /// The manifest as stored: checked, its subject ids sorted.
    pub fn normalized(mut self) -> Result<Manifest, ManifestError> {
        self.validate()?;
        self.subject_ids.sort_unstable();
        Ok(self)
    }
}

/// Travellers to add to and drop from a manifest, applied together or not
/// at all. Adding one already listed, or dropping one not listed, changes
/// nothing (a retried amendment is harmless).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amendment {
    /// Late bookings.
    pub add: Vec<String>,
    /// No-boards and cancellations.
    pub drop: Vec<String>,
}

impl Amendment {
    /// Checks each id, none twice within a list, none both added and dropped.
    pub fn validate(&self) -> Result<(), ManifestError> {
        validate_subject_ids(&self.add)?;
        validate_subject_ids(&self.drop)?;
        let added: std::collections::HashSet<&str> = self.add.iter().map(String::as_str).collect();
        match self.drop.iter().find(|id| added.contains(id.as_str())) {
            Some(id) => Err(ManifestError::AddedAndDropped { id: id.clone() }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(id: &str, subjects: &[&str]) -> Manifest {
        Manifest {
            header: ManifestHeader {
                id: id.into(),
                kind: ManifestKind::Flight,
                carrier: "XA".into(),
                voyage: "XA123".into(),
                port: "JFK".into(),
                direction: Direction::Entry,
                scheduled: UnixMillis(5_000),
                valid_from: UnixMillis(1_000),
                valid_until: UnixMillis(10_000),
            },
            subject_ids: subjects.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn names_round_trip() {
        for k in ManifestKind::ALL {
            assert_eq!(ManifestKind::from_name(k.name()), Some(k));
        }
        for d in [Direction::Entry, Direction::Exit] {
            assert_eq!(Direction::from_name(d.name()), Some(d));
        }
        assert_eq!(ManifestKind::from_name("bus"), None);
    }

    #[test]
    fn every_field_is_checked_with_a_specific_error() {
        let ok = sample("M1", &["b", "a"]);
        assert_eq!(ok.clone().normalized().unwrap().subject_ids, ["a", "b"]);
        let with = |f: &dyn Fn(&mut Manifest)| {
            let mut m = ok.clone();
            f(&mut m);
            m.validate().unwrap_err()
        };
        assert_eq!(with(&|m| m.header.id.clear()), ManifestError::EmptyId);
        assert_eq!(
            with(&|m| m.header.id = "x".repeat(129)),
            ManifestError::IdTooLong { len: 129 }
        );
        let e = with(&|m| m.header.id = "a\nb".into());
        assert!(
            e.to_string().contains("manifest id: contains a control"),
            "{e}"
        );
        let e = with(&|m| m.header.port.clear());
        assert!(e.to_string().contains("port: is empty"), "{e}");
        let e = with(&|m| m.header.carrier = " XA".into());
        assert!(e.to_string().contains("carrier: has leading"), "{e}");
        let e = with(&|m| m.header.voyage = "v".repeat(65));
        assert!(e.to_string().contains("voyage: is 65 bytes"), "{e}");
        let e = with(&|m| m.header.valid_until = m.header.valid_from);
        assert!(matches!(e, ManifestError::EmptyWindow { .. }), "{e}");
        let e = with(&|m| m.subject_ids = vec!["ok".into(), String::new()]);
        assert!(e.to_string().starts_with("traveller 1: "), "{e}");
        assert!(matches!(e, ManifestError::BadSubjectId { index: 1, .. }));
        let e = with(&|m| m.subject_ids = vec!["a".into(), "b".into(), "a".into()]);
        assert_eq!(e, ManifestError::DuplicateSubject { id: "a".into() });
        let e = with(&|m| m.subject_ids = (0..=MAX_TRAVELLERS).map(|i| i.to_string()).collect());
        assert_eq!(
            e,
            ManifestError::TooManyTravellers {
                count: MAX_TRAVELLERS + 1
            }
        );
        // Empty carrier and voyage are allowed (a port-day manifest).
        let mut m = ok.clone();
        m.header.carrier.clear();
        m.header.voyage.clear();
        m.validate().unwrap();
    }

    #[test]
    fn amendments_are_checked() {
        let a = |add: &[&str], drop: &[&str]| Amendment {
            add: add.iter().map(|s| s.to_string()).collect(),
            drop: drop.iter().map(|s| s.to_string()).collect(),
        };
        a(&["x"], &["y"]).validate().unwrap();
        assert_eq!(
            a(&["x"], &["x"]).validate().unwrap_err(),
            ManifestError::AddedAndDropped { id: "x".into() }
        );
        assert!(matches!(
            a(&["x", "x"], &[]).validate().unwrap_err(),
            ManifestError::DuplicateSubject { .. }
        ));
        assert!(matches!(
            a(&[], &["\t"]).validate().unwrap_err(),
            ManifestError::BadSubjectId { index: 0, .. }
        ));
    }

    #[test]
    fn the_window_is_half_open() {
        let h = sample("M", &[]).header;
        assert!(!h.is_valid_at(UnixMillis(999)));
        assert!(h.is_valid_at(UnixMillis(1_000)));
        assert!(h.is_valid_at(UnixMillis(9_999)));
        assert!(!h.is_valid_at(UnixMillis(10_000)));
    }
}
