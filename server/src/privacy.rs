//! The `facegate.v1.Privacy` gRPC service, on the back office's listener
//! only: erasure of a subject from every store on request. Each step is
//! durable before the next; a failed step fails the call, and a retry
//! redoes only what is left (every step is idempotent). Audited with the
//! subject and the reason.

use std::sync::Arc;
use std::time::Instant;

use facegate_core::format::validate_subject_id;
use facegate_core::live::{ChangeError, CommitError};
use facegate_core::wal::Change;
use tonic::{Request, Response, Status};

use crate::audit::{Auditor, Caller};
use crate::proto::privacy_server::Privacy;
use crate::proto::{EraseSubjectRequest, EraseSubjectResponse};
use crate::request::RequestError;
use crate::served::ServedGallery;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct PrivacyService {
    state: Arc<ServedGallery>,
    auditor: Arc<Auditor>,
}

impl PrivacyService {
    /// A service over every store of `state`, its answers recorded by
    /// `auditor`.
    pub fn new(state: Arc<ServedGallery>, auditor: Arc<Auditor>) -> Self {
        PrivacyService { state, auditor }
    }

    /// Removes the subject from the gallery; false when it held none.
    async fn erase_from_gallery(&self, subject_id: &str) -> Result<bool, Status> {
        let state = self.state.clone();
        let change = Change::Remove {
            subject_id: subject_id.to_string(),
        };
        let done = tokio::task::spawn_blocking(move || state.commit(&change))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "erasure task failed");
                crate::status::erasure_failed()
            })?;
        match done {
            Ok(_) => Ok(true),
            Err(CommitError::Change(ChangeError::UnknownSubject)) => Ok(false),
            Err(e) => Err(crate::status::commit(&e)),
        }
    }

    /// Drops the subject from every manifest and erases their encounters.
    async fn erase_from_records(&self, subject_id: &str) -> Result<(Vec<String>, u64), Status> {
        let (state, id) = (self.state.clone(), subject_id.to_string());
        tokio::task::spawn_blocking(move || {
            let manifests = state
                .manifests()
                .erase_subject(&id)
                .map_err(|e| crate::status::store(&e))?;
            let encounters = state.encounters().readable();
            let erase = facegate_core::encounter::Erasure::Subject { subject_id: id };
            let rows = encounters
                .erase(erase)
                .and_then(|n| encounters.checkpoint().map(|()| n))
                .map_err(|e| {
                    if crate::status::is_server_side(&e) {
                        tracing::error!(error = %e, "erasing encounters failed");
                    }
                    crate::status::encounter(&e)
                })?;
            Ok::<_, Status>((manifests, rows))
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "erasure task failed");
            crate::status::erasure_failed()
        })?
    }

    async fn erase(&self, r: EraseSubjectRequest) -> Result<EraseSubjectResponse, Status> {
        validate_subject_id(&r.subject_id, &|| "subject_id".into())
            .map_err(RequestError::SubjectId)?;
        if r.reason.trim().is_empty() {
            return Err(RequestError::Unspecified {
                field: "reason",
                allowed: "the legal basis or case of the erasure",
            }
            .into());
        }
        let removed = self.erase_from_gallery(&r.subject_id).await?;
        let (manifests, rows) = self.erase_from_records(&r.subject_id).await?;
        tracing::info!(
            request_id = %r.request_id,
            removed_from_gallery = removed,
            manifests = manifests.len(),
            encounter_rows = rows,
            "subject erased"
        );
        Ok(EraseSubjectResponse {
            removed_from_gallery: removed,
            manifests,
            encounter_rows_erased: rows,
            gallery_bytes_pending_compaction: removed,
            request_id: r.request_id,
        })
    }
}

#[tonic::async_trait]
impl Privacy for PrivacyService {
    async fn erase_subject(
        &self,
        req: Request<EraseSubjectRequest>,
    ) -> Result<Response<EraseSubjectResponse>, Status> {
        let r = req.get_ref();
        let (request_id, subject) = (r.request_id.clone(), r.subject_id.clone());
        let caller = Caller::new(&req, &request_id, None, Instant::now());
        let result = self.erase(req.into_inner()).await;
        let generation = self.state.generation().id();
        let code = result
            .as_ref()
            .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        let event = caller.event(
            "Privacy/EraseSubject",
            code,
            None,
            vec![subject],
            generation,
        );
        if let Err(reason) = self.auditor.record(event).await {
            tracing::error!(%reason, "an erasure was answered without its audit record");
        }
        result.map(Response::new)
    }
}
