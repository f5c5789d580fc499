//! The `facegate.v1.GalleryAdmin` gRPC service: online enrolments and
//! removals for the enrolment back office (never for ports), and Reload,
//! which reads the listeners' credentials again and adopts a gallery
//! generation compacted offline.
//!
//! Each change is validated, written to the change log and fsync'd (shared
//! with concurrent changes by group commit), then applied to the live
//! gallery, all before the reply; the fsync runs on the blocking pool, not
//! on the async workers. The audit log line names the request and the log
//! sequence, never the subject or a template.

use std::sync::Arc;
use std::time::Instant;

use facegate_core::live::{ChangeError, CommitError};
use facegate_core::wal::{Change, WalError};
use tonic::{Request, Response, Status};

use crate::audit::{Auditor, Caller};
use crate::changes::Committed;
use crate::credentials::Credentials;
use crate::proto::gallery_admin_server::GalleryAdmin;
use crate::proto::{
    EnrollRequest, EnrollResponse, ReloadRequest, ReloadResponse, RemoveRequest, RemoveResponse,
};
use crate::served::ServedGallery;
use crate::{request, status};

/// The service; cheap to clone.
#[derive(Clone)]
pub struct AdminService {
    state: Arc<ServedGallery>,
    auditor: Arc<Auditor>,
    /// Re-read by Reload, as by SIGHUP.
    credentials: Arc<Credentials>,
}

impl AdminService {
    /// A service changing what `state` serves, its answers recorded by
    /// `auditor`; Reload also re-reads `credentials`.
    pub fn new(
        state: Arc<ServedGallery>,
        auditor: Arc<Auditor>,
        credentials: Arc<Credentials>,
    ) -> Self {
        AdminService {
            state,
            auditor,
            credentials,
        }
    }

    /// Commits on the blocking pool and counts the outcome; returns what
    /// the change did and the generation it was made to.
    async fn commit(&self, kind: &'static str, change: Change) -> Result<(Committed, u64), Status> {
        let state = self.state.clone();
        let result = tokio::task::spawn_blocking(move || state.commit(&change))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "change task failed");
                crate::status::change_unknown()
            })?;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(CommitError::Change(ChangeError::UnknownSubject)) => "not_found",
            Err(CommitError::Change(ChangeError::ForeignSubject { .. })) => "wrong_shard",
            Err(e @ CommitError::Change(ChangeError::Gallery(_))) => {
                tracing::error!(error = %e, "gallery read failed during a change");
                "invalid"
            }
            Err(CommitError::Change(_)) | Err(CommitError::Log(WalError::Refused(_))) => "invalid",
            Err(e @ CommitError::Log(_)) => {
                tracing::error!(error = %e, "change log write failed");
                "log_error"
            }
        };
        self.state
            .metrics()
            .gallery_changes
            .with_label_values(&[kind, outcome])
            .inc();
        result.map_err(|e| status::commit(&e))
    }
}

/// The body of each RPC, without its audit record.
impl AdminService {
    async fn enroll_change(&self, r: EnrollRequest) -> Result<Response<EnrollResponse>, Status> {
        let templates = request::enrolment_templates(&r, self.state.gallery().header())?;
        let count = r.templates.len() as u32;
        let (done, generation) = self
            .commit(
                "enroll",
                Change::Enroll {
                    subject_id: r.subject_id,
                    templates,
                },
            )
            .await?;
        tracing::info!(
            rpc = "Enroll",
            request_id = %r.request_id,
            sequence = done.sequence,
            templates = count,
            replaced = done.replaced,
            "gallery change committed"
        );
        Ok(Response::new(EnrollResponse {
            sequence: done.sequence,
            replaced: done.replaced,
            templates: count,
            request_id: r.request_id,
            gallery_generation: generation,
        }))
    }

    async fn remove_change(&self, r: RemoveRequest) -> Result<Response<RemoveResponse>, Status> {
        let (done, generation) = self
            .commit(
                "remove",
                Change::Remove {
                    subject_id: r.subject_id,
                },
            )
            .await?;
        tracing::info!(
            rpc = "Remove",
            request_id = %r.request_id,
            sequence = done.sequence,
            "gallery change committed"
        );
        Ok(Response::new(RemoveResponse {
            sequence: done.sequence,
            request_id: r.request_id,
            gallery_generation: generation,
        }))
    }

    async fn reload_generation(
        &self,
        r: ReloadRequest,
    ) -> Result<Response<ReloadResponse>, Status> {
        let credentials = self.credentials.clone();
        let refused = tokio::task::spawn_blocking(move || credentials.reload())
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "credential reload task failed");
                crate::status::task_failed("the credential reload")
            })?;
        let done = self.state.reload().await?;
        tracing::info!(
            rpc = "Reload",
            request_id = %r.request_id,
            previous = format!("{:016x}", done.previous),
            generation = format!("{:016x}", done.generation),
            carried_over = done.carried_over,
            "reload done"
        );
        Ok(Response::new(ReloadResponse {
            credential_errors: refused.into_iter().map(|f| f.error).collect(),
            previous_generation: done.previous,
            generation: done.generation,
            carried_over_changes: done.carried_over,
            request_id: r.request_id,
        }))
    }

    /// Runs `body` on the request and records its answer in the audit
    /// trail, with the request id and subjects `named` takes from the
    /// request. A change is already durable in the change log when it is
    /// answered, so a record that cannot be written neither undoes nor
    /// hides it: the failure is counted (`facegate_audit_failures_total`)
    /// and logged for the operator.
    async fn audited<Req, Resp, Fut>(
        &self,
        rpc: &str,
        req: Request<Req>,
        named: impl FnOnce(&Req) -> (String, Vec<String>),
        body: impl FnOnce(Req) -> Fut,
        generation: impl FnOnce(&Resp) -> u64,
    ) -> Result<Response<Resp>, Status>
    where
        Fut: std::future::Future<Output = Result<Response<Resp>, Status>>,
    {
        let (request_id, subjects) = named(req.get_ref());
        let caller = Caller::new(&req, &request_id, None, Instant::now());
        let result = body(req.into_inner()).await;
        let event = match &result {
            Ok(r) => caller.event(
                rpc,
                tonic::Code::Ok,
                None,
                subjects,
                generation(r.get_ref()),
            ),
            Err(s) => caller.event(rpc, s.code(), None, subjects, 0),
        };
        if let Err(reason) = self.auditor.record(event).await {
            tracing::error!(rpc, %reason, "a gallery change was answered without its audit record");
        }
        result
    }
}

#[tonic::async_trait]
impl GalleryAdmin for AdminService {
    async fn enroll(
        &self,
        req: Request<EnrollRequest>,
    ) -> Result<Response<EnrollResponse>, Status> {
        let named = |r: &EnrollRequest| (r.request_id.clone(), vec![r.subject_id.clone()]);
        self.audited(
            "Enroll",
            req,
            named,
            |r| self.enroll_change(r),
            |r| r.gallery_generation,
        )
        .await
    }

    async fn remove(
        &self,
        req: Request<RemoveRequest>,
    ) -> Result<Response<RemoveResponse>, Status> {
        let named = |r: &RemoveRequest| (r.request_id.clone(), vec![r.subject_id.clone()]);
        self.audited(
            "Remove",
            req,
            named,
            |r| self.remove_change(r),
            |r| r.gallery_generation,
        )
        .await
    }

    async fn reload(
        &self,
        req: Request<ReloadRequest>,
    ) -> Result<Response<ReloadResponse>, Status> {
        let named = |r: &ReloadRequest| (r.request_id.clone(), Vec::new());
        self.audited(
            "Reload",
            req,
            named,
            |r| self.reload_generation(r),
            |r| r.generation,
        )
        .await
    }
}
