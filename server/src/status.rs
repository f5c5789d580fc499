//! Every error the services answer with, mapped to its gRPC status in one
//! place, so that a code means the same thing whichever path produced it.
//!
//! The rule: the client's mistakes are INVALID_ARGUMENT (or
//! FAILED_PRECONDITION when the request is well formed but cannot apply to
//! this gallery), NOT_FOUND for an unknown subject, RESOURCE_EXHAUSTED and
//! UNAVAILABLE for what a retry may cure, DEADLINE_EXCEEDED for time run
//! out, and INTERNAL for damage the operator must mend; INTERNAL messages
//! carry no detail (the detail is logged where the error arose).
//! Mapping logs nothing: each error is logged once, at its origin.

use facegate_core::live::{ChangeError, CommitError};
use facegate_core::wal::WalError;
use facegate_core::{GalleryError, SearchError};
use tonic::Status;

use crate::dispatch::DispatchError;
use crate::reload::ReloadError;
use crate::request::RequestError;
use crate::served::{IdentifyError, VerifyError};

/// The message of every INTERNAL answer caused by a damaged gallery.
const GALLERY_DAMAGED: &str = "gallery data error; the operator has been alerted";

/// A refused request.
impl From<RequestError> for Status {
    fn from(e: RequestError) -> Status {
        match e {
            RequestError::ModelMismatch { .. } => Status::failed_precondition(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        }
    }
}

/// A search the dispatcher did not answer.
impl From<DispatchError> for Status {
    fn from(e: DispatchError) -> Status {
        match e {
            DispatchError::Overloaded(_) => Status::resource_exhausted(e.to_string()),
            DispatchError::ShuttingDown | DispatchError::Dropped => {
                Status::unavailable(e.to_string())
            }
            DispatchError::ExpiredInQueue | DispatchError::DeadlineExceeded => {
                Status::deadline_exceeded(e.to_string())
            }
            DispatchError::Search(e) => search(&e),
            DispatchError::Inconsistent => Status::internal(e.to_string()),
        }
    }
}

/// An Identify that got no answer.
impl From<IdentifyError> for Status {
    fn from(e: IdentifyError) -> Status {
        match e {
            IdentifyError::Dispatch(e) => e.into(),
            IdentifyError::Gallery(e) => gallery(&e),
        }
    }
}

/// A Verify that got no score.
impl From<VerifyError> for Status {
    fn from(e: VerifyError) -> Status {
        match e {
            VerifyError::UnknownSubject => Status::not_found(e.to_string()),
            VerifyError::Search(e) => search(&e),
        }
    }
}

/// A failed reload: the generation served stays.
impl From<ReloadError> for Status {
    fn from(e: ReloadError) -> Status {
        match e {
            ReloadError::Open(_)
            | ReloadError::Incompatible { .. }
            | ReloadError::AheadOfLog { .. }
            | ReloadError::NotCompactedFromServed { .. } => {
                Status::failed_precondition(e.to_string())
            }
            ReloadError::Gpu(_) | ReloadError::Swap(_) => Status::unavailable(e.to_string()),
            ReloadError::Task(_) => Status::internal(e.to_string()),
        }
    }
}

/// A failed search (1:N or 1:1).
pub fn search(e: &SearchError) -> Status {
    match e {
        SearchError::Input(e) => Status::invalid_argument(e.to_string()),
        SearchError::Gallery(_) => Status::internal(GALLERY_DAMAGED),
        SearchError::Unavailable(_) => Status::unavailable("search engine unavailable; retry"),
    }
}

/// A gallery read that failed while answering (resolving ids): the
/// operator's problem, not the client's.
pub fn gallery(_: &GalleryError) -> Status {
    Status::internal(GALLERY_DAMAGED)
}

/// A refused change. Log failures are the operator's to fix (a full disk);
/// nothing was applied, so the client may retry later.
pub fn commit(e: &CommitError) -> Status {
    match e {
        CommitError::Change(ChangeError::UnknownSubject) => {
            Status::not_found("no such subject in the gallery")
        }
        CommitError::Change(ChangeError::Gallery(_)) => Status::internal(GALLERY_DAMAGED),
        CommitError::Change(e) => Status::invalid_argument(e.to_string()),
        CommitError::Log(WalError::Refused(m)) => Status::invalid_argument(m.clone()),
        CommitError::Log(e) => Status::unavailable(format!(
            "the change could not be made durable and was not applied: {e}"
        )),
    }
}

/// A search whose audit record could not be made durable: its result is
/// withheld, and the client may retry once the operator has mended the trail.
pub fn not_audited(reason: &str) -> Status {
    Status::unavailable(format!(
        "the request could not be audited, so its result is withheld: {reason}"
    ))
}
