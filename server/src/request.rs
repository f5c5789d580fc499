//! Requests checked in one place: a proto request in, a checked job out (or
//! a [`RequestError`] saying what is wrong), before anything is queued,
//! searched or written. The rules that depend on the gallery (model tag,
//! dimension) are checked against the generation that will serve the
//! request.

use std::sync::Arc;

use facegate_core::clock::UnixMillis;
use facegate_core::format::Header as GalleryHeader;
use facegate_core::manifest::{
    Amendment, Direction, ListQuery, Manifest, ManifestError, ManifestHeader, ManifestKind,
    validate_manifest_id,
};
use facegate_core::{InputError, ProbeBatch};

use crate::proto;

/// Why a request was refused before any work was done.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request does not name the model that made its templates.
    #[error("model_tag is required: name the model that made the {what} (this gallery: {ours:?})")]
    ModelTagMissing {
        /// What the request carries ("probe", "templates").
        what: &'static str,
        /// The gallery's model tag.
        ours: String,
    },
    /// Templates of another model cannot be compared with the gallery's.
    #[error(
        "{what} made by model {theirs:?}, the gallery holds templates of {ours:?}: they cannot be compared"
    )]
    ModelMismatch {
        /// What the request carries ("probe", "templates").
        what: &'static str,
        /// The request's model tag.
        theirs: String,
        /// The gallery's model tag.
        ours: String,
    },
    /// `top_k` outside `1..=max`.
    #[error("top_k must be within 1..={max}, got {got}")]
    TopK {
        /// The largest `top_k` the server allows.
        max: u32,
        /// What the request asked for.
        got: u32,
    },
    /// A threshold outside the range of cosine similarity.
    #[error("threshold must be within -1..=1, got {0}")]
    Threshold(f32),
    /// Verify without the claimed subject.
    #[error("subject_id is required")]
    SubjectIdMissing,
    /// An enrolment template of the wrong dimension.
    #[error("template {index}: expected dimension {expected}, got {got}")]
    TemplateDimension {
        /// The template's position in the request.
        index: usize,
        /// The gallery's dimension.
        expected: usize,
        /// The template's length.
        got: usize,
    },
    /// A probe that cannot be searched (dimension, non-finite, zero norm).
    #[error(transparent)]
    Probe(#[from] InputError),
    /// `fallback` asks for the national search when a manifest gives no
    /// match: without a manifest it means nothing, and is refused rather
    /// than ignored.
    #[error("fallback applies only to a manifest search: set manifest_id, or unset fallback")]
    FallbackWithoutManifest,
    /// A manifest (or its id, or an amendment) that cannot be staged.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A manifest without its header.
    #[error("header is required")]
    ManifestHeaderMissing,
    /// A manifest kind or direction left unspecified (or unknown to this
    /// server): every manifest is of one kind and one direction.
    #[error("{field} is required: {allowed}")]
    Unspecified {
        /// The field.
        field: &'static str,
        /// The values it may take.
        allowed: &'static str,
    },
    /// A field that cannot be read as what it holds (a malformed day, an
    /// enum left unspecified, a capture that fails its checks), named by
    /// its path in the request.
    #[error("{field}: {reason}")]
    Field {
        /// The field's path, e.g. `admissions[2].day`.
        field: String,
        /// What is wrong with it, or what it may hold.
        reason: String,
    },
    /// A message the call cannot go without.
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A period whose end is not after its start.
    #[error("until_unix_ms ({until}) must be after from_unix_ms ({from})")]
    EmptyPeriod {
        /// The period's start.
        from: i64,
        /// The period's end.
        until: i64,
    },
    /// A capture to be recorded must say whether it is an entry or an exit.
    #[error("capture.record needs capture.direction DIRECTION_ENTRY or DIRECTION_EXIT")]
    CaptureDirection,
    /// A subject id that cannot name a subject (empty, too long, control
    /// characters).
    #[error(transparent)]
    SubjectId(InputError),
}

impl RequestError {
    /// A [`RequestError::Field`] for `field`, saying `reason`.
    pub fn field(field: impl Into<String>, reason: impl ToString) -> RequestError {
        RequestError::Field {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

/// The limits a request is checked against besides the gallery.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The threshold used when a national search or a Verify gives none
    /// (manifest searches have their own; see `crate::thresholds`).
    pub default_threshold: f32,
    /// The largest `top_k` allowed.
    pub max_top_k: u32,
}

/// A checked Identify: ready for the dispatcher.
#[derive(Debug, Clone)]
pub struct CheckedIdentify {
    /// The prepared probe, shared with the engine thread without copying.
    pub probe: Arc<ProbeBatch>,
    /// Candidates wanted.
    pub top_k: usize,
    /// The score at or above which the best candidate is a match: the
    /// request's, else the national default.
    pub threshold: f32,
    /// Whether the request gave `threshold`: it then wins over a manifest
    /// search's calibrated default too.
    pub threshold_asked: bool,
    /// The manifest to search instead of the whole gallery, when one is named.
    pub manifest: Option<ManifestScope>,
}

/// The manifest a scoped Identify searches, and what to do without a match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestScope {
    /// The manifest's id (well formed; whether it exists is decided when
    /// it is searched).
    pub id: String,
    /// On no match in the manifest, answer with the national 1:N search.
    pub fallback: bool,
}

/// A checked Verify.
#[derive(Debug, Clone)]
pub struct CheckedVerify {
    /// The prepared probe.
    pub probe: ProbeBatch,
    /// The subject the traveller claims to be.
    pub subject_id: String,
    /// The score at or above which the claim is confirmed.
    pub threshold: f32,
}

/// Checks that templates of model `theirs` can be compared with the gallery's.
pub fn check_model(
    header: &GalleryHeader,
    what: &'static str,
    theirs: &str,
) -> Result<(), RequestError> {
    let ours = &header.model_tag;
    if theirs.is_empty() {
        return Err(RequestError::ModelTagMissing {
            what,
            ours: ours.clone(),
        });
    }
    if theirs != ours {
        return Err(RequestError::ModelMismatch {
            what,
            theirs: theirs.to_owned(),
            ours: ours.clone(),
        });
    }
    Ok(())
}

fn threshold(limits: &Limits, asked: Option<f32>) -> Result<f32, RequestError> {
    match asked {
        None => Ok(limits.default_threshold),
        Some(t) if (-1.0..=1.0).contains(&t) => Ok(t),
        Some(t) => Err(RequestError::Threshold(t)),
    }
}

/// Checks an Identify against the gallery that will search it.
pub fn identify(
    r: &proto::IdentifyRequest,
    header: &GalleryHeader,
    limits: &Limits,
) -> Result<CheckedIdentify, RequestError> {
    check_model(header, "probe", &r.model_tag)?;
    if r.top_k == 0 || r.top_k > limits.max_top_k {
        return Err(RequestError::TopK {
            max: limits.max_top_k,
            got: r.top_k,
        });
    }
    Ok(CheckedIdentify {
        probe: Arc::new(ProbeBatch::single(header.dim as usize, &r.probe)?),
        top_k: r.top_k as usize,
        threshold: threshold(limits, r.threshold)?,
        threshold_asked: r.threshold.is_some(),
        manifest: manifest_scope(r)?,
    })
}

/// The manifest an Identify names, checked: a well-formed id, and no
/// `fallback` without one.
fn manifest_scope(r: &proto::IdentifyRequest) -> Result<Option<ManifestScope>, RequestError> {
    if r.manifest_id.is_empty() {
        return match r.fallback {
            true => Err(RequestError::FallbackWithoutManifest),
            false => Ok(None),
        };
    }
    validate_manifest_id(&r.manifest_id)?;
    Ok(Some(ManifestScope {
        id: r.manifest_id.clone(),
        fallback: r.fallback,
    }))
}

/// A manifest to stage, from its proto: the kind and direction mapped, then
/// every field checked and the travellers sorted (`Manifest::normalized`).
pub fn manifest(r: &proto::StageManifestRequest) -> Result<Manifest, RequestError> {
    let h = r
        .header
        .as_ref()
        .ok_or(RequestError::ManifestHeaderMissing)?;
    let manifest = Manifest {
        header: ManifestHeader {
            id: h.manifest_id.clone(),
            kind: manifest_kind(h.kind)?,
            carrier: h.carrier.clone(),
            voyage: h.voyage.clone(),
            port: h.port_id.clone(),
            direction: direction(h.direction)?,
            scheduled: UnixMillis(h.scheduled_unix_ms),
            valid_from: UnixMillis(h.valid_from_unix_ms),
            valid_until: UnixMillis(h.valid_until_unix_ms),
        },
        subject_ids: r.subject_ids.clone(),
    };
    Ok(manifest.normalized()?)
}

fn manifest_kind(kind: i32) -> Result<ManifestKind, RequestError> {
    use proto::ManifestKind as K;
    match K::try_from(kind) {
        Ok(K::Flight) => Ok(ManifestKind::Flight),
        Ok(K::Vessel) => Ok(ManifestKind::Vessel),
        Ok(K::LandCrossing) => Ok(ManifestKind::LandCrossing),
        Ok(K::PortDay) => Ok(ManifestKind::PortDay),
        Ok(K::Unspecified) | Err(_) => Err(RequestError::Unspecified {
            field: "header.kind",
            allowed: "FLIGHT, VESSEL, LAND_CROSSING or PORT_DAY",
        }),
    }
}

fn direction(direction: i32) -> Result<Direction, RequestError> {
    match proto::Direction::try_from(direction) {
        Ok(proto::Direction::Entry) => Ok(Direction::Entry),
        Ok(proto::Direction::Exit) => Ok(Direction::Exit),
        Ok(proto::Direction::Unspecified) | Err(_) => Err(RequestError::Unspecified {
            field: "header.direction",
            allowed: "DIRECTION_ENTRY or DIRECTION_EXIT",
        }),
    }
}

/// An amendment, checked (ids well formed, none twice, none both added and
/// dropped), with the manifest id it applies to.
pub fn amendment(r: &proto::AmendManifestRequest) -> Result<(String, Amendment), RequestError> {
    validate_manifest_id(&r.manifest_id)?;
    let amendment = Amendment {
        add: r.add.clone(),
        drop: r.drop.clone(),
    };
    amendment.validate()?;
    Ok((r.manifest_id.clone(), amendment))
}

/// A listing's query: the port filter, the page token as the cursor.
pub fn list_query(r: &proto::ListManifestsRequest) -> ListQuery {
    let given = |s: &str| (!s.is_empty()).then(|| s.to_string());
    ListQuery {
        port: given(&r.port_id),
        after: given(&r.page_token),
        limit: r.page_size as usize,
    }
}

/// Checks a Verify against the gallery that will answer it.
pub fn verify(
    r: &proto::VerifyRequest,
    header: &GalleryHeader,
    limits: &Limits,
) -> Result<CheckedVerify, RequestError> {
    check_model(header, "probe", &r.model_tag)?;
    let threshold = threshold(limits, r.threshold)?;
    let probe = ProbeBatch::single(header.dim as usize, &r.probe)?;
    if r.subject_id.is_empty() {
        return Err(RequestError::SubjectIdMissing);
    }
    Ok(CheckedVerify {
        probe,
        subject_id: r.subject_id.clone(),
        threshold,
    })
}

/// Checks an enrolment's model and template dimensions and flattens its
/// templates; the live gallery checks the rest (values, count, subject id)
/// when the change commits.
pub fn enrolment_templates(
    r: &proto::EnrollRequest,
    header: &GalleryHeader,
) -> Result<Vec<f32>, RequestError> {
    check_model(header, "templates", &r.model_tag)?;
    let dim = header.dim as usize;
    let mut templates = Vec::with_capacity(r.templates.len() * dim);
    for (index, t) in r.templates.iter().enumerate() {
        if t.values.len() != dim {
            return Err(RequestError::TemplateDimension {
                index,
                expected: dim,
                got: t.values.len(),
            });
        }
        templates.extend_from_slice(&t.values);
    }
    Ok(templates)
}
