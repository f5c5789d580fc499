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

use facegate_core::encounter::EncounterError;
use facegate_core::live::{ChangeError, CommitError};
use facegate_core::manifest::{ManifestError, ScopeError, StoreError};
use facegate_core::sqlite::DbError;
use facegate_core::wal::WalError;
use facegate_core::{GalleryError, SearchError};
use tonic::Status;

use crate::auth::AuthError;
use crate::deadline::DeadlinePassed;
use crate::dispatch::DispatchError;
use crate::reload::ReloadError;
use crate::request::RequestError;
use crate::route_error::RouterError;
use crate::scoped::{ManifestOpError, ScopedError};
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
            DispatchError::Overloaded { retry_after, .. } => {
                let mut status = Status::resource_exhausted(e.to_string());
                facegate_api::pushback::attach(&mut status, retry_after);
                status
            }
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
            IdentifyError::Scoped(e) => e.into(),
        }
    }
}

/// A manifest that could not be searched: unknown NOT_FOUND; expired or
/// not yet valid FAILED_PRECONDITION (the request is right, the time is
/// not); another port's PERMISSION_DENIED.
impl From<ScopedError> for Status {
    fn from(e: ScopedError) -> Status {
        match e {
            ScopedError::Scope(ScopeError::BadId(_)) => Status::invalid_argument(e.to_string()),
            ScopedError::Scope(ScopeError::Unknown { .. }) => Status::not_found(e.to_string()),
            ScopedError::Scope(ScopeError::Expired { .. } | ScopeError::NotYetValid { .. }) => {
                Status::failed_precondition(e.to_string())
            }
            ScopedError::OtherPort { .. } => Status::permission_denied(e.to_string()),
            ScopedError::Search(e) => search(&e),
            ScopedError::Gallery(e) => gallery(&e),
            ScopedError::Task => Status::internal(e.to_string()),
        }
    }
}

/// A back-office operation on manifests that failed; nothing was changed.
impl From<ManifestOpError> for Status {
    fn from(e: ManifestOpError) -> Status {
        match e {
            ManifestOpError::Store(e) => store(&e),
            ManifestOpError::Gallery(e) => gallery(&e),
            ManifestOpError::Task => Status::internal(e.to_string()),
        }
    }
}

/// A manifest store's refusal or failure: a bad manifest INVALID_ARGUMENT
/// (one whose window has already ended FAILED_PRECONDITION), unknown
/// NOT_FOUND, a different manifest under the id ALREADY_EXISTS, an ended
/// one FAILED_PRECONDITION; a write that failed UNAVAILABLE (nothing was
/// stored: retry once the operator has mended the disk); a damaged or
/// foreign file INTERNAL.
pub fn store(e: &StoreError) -> Status {
    match e {
        StoreError::Invalid(ManifestError::AlreadyExpired { .. }) | StoreError::Expired { .. } => {
            Status::failed_precondition(e.to_string())
        }
        StoreError::Invalid(_) => Status::invalid_argument(e.to_string()),
        StoreError::NotFound { .. } => Status::not_found(e.to_string()),
        StoreError::Conflict { .. } => Status::already_exists(e.to_string()),
        StoreError::Db(db) => database("manifest", db),
    }
}

/// An encounter store's refusal or failure: a bad record or correction
/// INVALID_ARGUMENT, an unknown record NOT_FOUND; a write that could not
/// be made durable UNAVAILABLE (nothing was recorded: a retry with the
/// same encounter id is safe); a damaged or held file INTERNAL. A shared
/// database that cannot be reached, or whose commit's outcome is unknown,
/// UNAVAILABLE (a retry with the same encounter id returns the first
/// record if it was kept); one that refused a statement INTERNAL. The
/// message never carries the database's reason (the log has it).
pub fn encounter(e: &EncounterError) -> Status {
    match e {
        EncounterError::Invalid(_) => Status::invalid_argument(e.to_string()),
        EncounterError::NotFound { .. } => Status::not_found(e.to_string()),
        EncounterError::Db(db) => database("encounter", db),
        EncounterError::CommitFailed { .. } | EncounterError::Closed => Status::unavailable(
            "the encounter store could not make the record durable; nothing was recorded: \
             retry with the same encounter_id",
        ),
        EncounterError::Overloaded { .. } => Status::unavailable(
            "the encounter store is behind and took nothing: retry with the same encounter_id",
        ),
        EncounterError::Remote {
            transient: true, ..
        } => Status::unavailable(
            "the shared encounter database is unreachable or did not confirm the write: \
             retry with the same encounter_id",
        ),
        EncounterError::Remote { .. } => {
            Status::internal("the shared encounter database refused the operation; see the log")
        }
    }
}

/// A record the store did not confirm within `waited`: the request is
/// answered now, but the write may still land, so the port's retry (same
/// encounter id) is answered with that first record rather than a second.
pub fn record_unconfirmed(waited: std::time::Duration) -> Status {
    Status::unavailable(format!(
        "the encounter store did not confirm the record within {} ms; it may still be \
         written: retry with the same encounter_id",
        waited.as_millis()
    ))
}

/// Whether an encounter error is the server's (logged where it arises)
/// rather than the caller's.
pub fn is_server_side(e: &EncounterError) -> bool {
    !matches!(
        e,
        EncounterError::Invalid(_) | EncounterError::NotFound { .. }
    )
}

/// A database failure: a write or read that failed UNAVAILABLE (nothing was
/// changed: retry once the operator has mended the disk); a damaged,
/// foreign or held file INTERNAL. The message names the store, never the
/// path (the log has it).
pub fn database(store: &str, e: &DbError) -> Status {
    match e {
        DbError::Io { .. } | DbError::Database { .. } => Status::unavailable(format!(
            "the {store} store could not be written or read; nothing was changed: retry later"
        )),
        DbError::CheckpointBusy { .. } => Status::unavailable(format!(
            "the {store} store is busy with a long read; what was done stands: retry later"
        )),
        DbError::InUse { .. } | DbError::Corrupt { .. } | DbError::NewerSchema { .. } => {
            Status::internal(format!(
                "{store} store error; the operator has been alerted"
            ))
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
            | ReloadError::NotCompactedFromServed { .. }
            | ReloadError::NotThisShard { .. } => Status::failed_precondition(e.to_string()),
            ReloadError::Gpu(_) | ReloadError::Swap(_) => Status::unavailable(e.to_string()),
            ReloadError::Task(_) => task_failed("the reload"),
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
        CommitError::Change(e @ ChangeError::ForeignSubject { .. }) => {
            Status::failed_precondition(e.to_string())
        }
        CommitError::Change(e) => Status::invalid_argument(e.to_string()),
        CommitError::Log(WalError::Refused(m)) => Status::invalid_argument(m.clone()),
        // A write that failed (a full disk): a retry may succeed once the
        // operator has made room. The path and the OS error are logged
        // where the commit failed (admin.rs), not sent.
        CommitError::Log(WalError::Io { .. }) => Status::unavailable(
            "the change could not be made durable and was not applied; retry later",
        ),
        // A log that no longer matches its gallery, or is out of service
        // after a failed write: no retry cures it before a restart.
        CommitError::Log(WalError::Mismatch { .. } | WalError::Broken(_)) => {
            Status::internal("the change log is out of service; the change was not applied")
        }
    }
}

/// A search whose audit record could not be made durable: its result is
/// withheld, and the client may retry once the operator has mended the
/// trail. The reason (a path, an OS error) is logged by the audit thread,
/// not sent to the port.
pub fn not_audited() -> Status {
    Status::unavailable("the request could not be audited, so its result is withheld; retry later")
}

/// A blocking task of a service that died (a panic): INTERNAL with no
/// detail; the caller logs what it was.
pub fn task_failed(what: &str) -> Status {
    Status::internal(format!("{what} did not complete"))
}

/// An erasure whose task died: INTERNAL, and the erasure is to be retried
/// (every step of it is idempotent: docs/privacy.md).
pub fn erasure_failed() -> Status {
    Status::internal("the erasure did not complete; retry it")
}

/// A gallery change whose task died after it may have reached the log:
/// INTERNAL, and the client must read the gallery before retrying.
pub fn change_unknown() -> Status {
    Status::internal("the change did not complete; it may not have been applied")
}

/// A request whose deadline passed before it was served.
impl From<DeadlinePassed> for Status {
    fn from(e: DeadlinePassed) -> Status {
        Status::deadline_exceeded(e.to_string())
    }
}

/// A caller the listener did not let in: who it is not known
/// UNAUTHENTICATED, what it may not do PERMISSION_DENIED.
impl From<AuthError> for Status {
    fn from(e: AuthError) -> Status {
        match e {
            AuthError::RoleRefused { .. } | AuthError::OtherPort => {
                Status::permission_denied(e.to_string())
            }
            AuthError::KeyRequired
            | AuthError::UnknownKey
            | AuthError::Certificate(_)
            | AuthError::CertificateRequired
            | AuthError::CredentialRequired => Status::unauthenticated(e.to_string()),
        }
    }
}

/// A routed request the router itself refused or could not complete
/// (a shard's own answer is passed on as it came).
impl From<RouterError> for Status {
    fn from(e: RouterError) -> Status {
        match e {
            RouterError::NoEncounterStore => Status::failed_precondition(e.to_string()),
            RouterError::RecordPartial => Status::invalid_argument(e.to_string()),
            RouterError::ShardsDown { .. } | RouterError::ReplicaDown { .. } => {
                Status::unavailable(e.to_string())
            }
            RouterError::ShardLate { .. } | RouterError::ReplicasLate { .. } => {
                Status::deadline_exceeded(e.to_string())
            }
            RouterError::NoReplicas | RouterError::NoShards => Status::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn shards_down_names_them_in_number() {
        let one = Status::from(RouterError::ShardsDown {
            missing: vec![2],
            shards: 4,
        });
        assert_eq!(one.code(), Code::Unavailable);
        assert!(one.message().starts_with("shard 2 of 4 is unavailable"));
        let two = Status::from(RouterError::ShardsDown {
            missing: vec![0, 3],
            shards: 4,
        });
        assert!(
            two.message()
                .starts_with("shards 0, 3 of 4 are unavailable")
        );
    }

    #[test]
    fn who_is_unknown_and_what_is_refused_differ() {
        for e in [AuthError::KeyRequired, AuthError::CredentialRequired] {
            assert_eq!(Status::from(e).code(), Code::Unauthenticated);
        }
        let refused = AuthError::RoleRefused {
            role: "port",
            service: "GalleryAdmin",
        };
        let status = Status::from(refused);
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "a port may not call GalleryAdmin");
        assert_eq!(
            Status::from(AuthError::OtherPort).code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn a_bad_field_is_named_and_the_router_late_is_a_deadline() {
        let status = Status::from(RequestError::field("admissions[1].day", "not a date"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "admissions[1].day: not a date");
        let late = Status::from(RouterError::ShardLate { shard: 1 });
        assert_eq!(late.code(), Code::DeadlineExceeded);
    }
}
