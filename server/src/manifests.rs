//! The `facegate.v1.Manifests` gRPC service, on the back office's listener
//! only: the wire layer of manifest galleries. It checks each request
//! (`crate::request`), runs the operation on the blocking pool (each change
//! is fsync'd by the store before the reply: `crate::scoped`), builds the
//! proto response, and records the answer in the audit trail, as
//! GalleryAdmin does. Logs name manifests and counts, never subject ids.

use std::sync::Arc;
use std::time::Instant;

use facegate_core::manifest::{Direction, Manifest, ManifestHeader, ManifestKind};
use tonic::{Request, Response, Status};

use crate::audit::{Auditor, Caller, Effect};
use crate::proto::manifests_server::Manifests as ManifestsRpc;
use crate::proto::{self, AmendManifestRequest, AmendManifestResponse};
use crate::proto::{CloseManifestRequest, CloseManifestResponse, GetManifestRequest};
use crate::proto::{GetManifestResponse, ListManifestsRequest, ListManifestsResponse};
use crate::proto::{StageManifestRequest, StageManifestResponse};
use crate::request;
use crate::scoped::{self, ManifestOpError};
use crate::served::ServedGallery;

/// The service; cheap to clone.
#[derive(Clone)]
pub struct ManifestsService {
    state: Arc<ServedGallery>,
    auditor: Arc<Auditor>,
}

impl ManifestsService {
    /// A service over the manifests of `state`, its answers recorded by
    /// `auditor`.
    pub fn new(state: Arc<ServedGallery>, auditor: Arc<Auditor>) -> Self {
        ManifestsService { state, auditor }
    }

    /// Runs `op` on the blocking pool (the store fsyncs), logging a store
    /// failure once, here, where it arose; updates the live-manifests gauge.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&ServedGallery) -> Result<T, ManifestOpError> + Send + 'static,
    ) -> Result<T, Status> {
        let state = self.state.clone();
        let result = tokio::task::spawn_blocking(move || op(&state))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "manifest task failed");
                Err(ManifestOpError::Task)
            });
        if let Err(e) = &result
            && is_server_side(e)
        {
            tracing::error!(error = %e, "manifest operation failed");
        }
        let live = self.state.manifests().len() as i64;
        self.state.metrics().manifests_live.set(live);
        result.map_err(Status::from)
    }

    /// Records the answer of `rpc` in the audit trail: the request id, the
    /// manifest and the subjects the request named (`named`), plus those
    /// the answer disclosed (`disclosed`). A change is already durable
    /// when it is answered, so a record that cannot be written is counted
    /// and logged, not allowed to undo it (as for GalleryAdmin); a read's
    /// answer is withheld instead ([`Auditor::settle`]).
    async fn audited<Req, Resp, Fut>(
        &self,
        rpc: &str,
        effect: Effect,
        req: Request<Req>,
        named: impl FnOnce(&Req) -> (String, String, Vec<String>),
        body: impl FnOnce(Req) -> Fut,
        disclosed: impl FnOnce(&Resp) -> Vec<String>,
    ) -> Result<Response<Resp>, Status>
    where
        Fut: std::future::Future<Output = Result<Resp, Status>>,
    {
        let (request_id, manifest_id, mut subjects) = named(req.get_ref());
        let caller = Caller::new(&req, &request_id, None, Instant::now());
        let result = body(req.into_inner()).await;
        let generation = self.state.generation().id();
        let mut event = match &result {
            Ok(r) => {
                subjects.extend(disclosed(r));
                caller.event(rpc, tonic::Code::Ok, None, subjects, generation)
            }
            Err(s) => caller.event(rpc, s.code(), None, subjects, 0),
        };
        event.manifest_id = (!manifest_id.is_empty()).then_some(manifest_id);
        let result = self.auditor.settle(rpc, effect, event, result).await;
        result.map(Response::new)
    }
}

/// Whether an error is the server's (logged here, INTERNAL or UNAVAILABLE
/// on the wire) rather than the caller's.
fn is_server_side(e: &ManifestOpError) -> bool {
    use facegate_core::manifest::StoreError as E;
    match e {
        ManifestOpError::Store(e) => matches!(e, E::Db(_)),
        ManifestOpError::Gallery(_) | ManifestOpError::Task => true,
    }
}

/// The proto header of a manifest.
fn header(h: &ManifestHeader) -> proto::ManifestHeader {
    let kind = match h.kind {
        ManifestKind::Flight => proto::ManifestKind::Flight,
        ManifestKind::Vessel => proto::ManifestKind::Vessel,
        ManifestKind::LandCrossing => proto::ManifestKind::LandCrossing,
        ManifestKind::PortDay => proto::ManifestKind::PortDay,
    };
    let direction = match h.direction {
        Direction::Entry => proto::Direction::Entry,
        Direction::Exit => proto::Direction::Exit,
    };
    proto::ManifestHeader {
        manifest_id: h.id.clone(),
        kind: kind.into(),
        carrier: h.carrier.clone(),
        voyage: h.voyage.clone(),
        port_id: h.port.clone(),
        direction: direction.into(),
        scheduled_unix_ms: h.scheduled.0,
        valid_from_unix_ms: h.valid_from.0,
        valid_until_unix_ms: h.valid_until.0,
    }
}

fn travellers(m: &Manifest) -> u32 {
    m.subject_ids.len() as u32
}

/// The body of each RPC, without its audit record.
impl ManifestsService {
    async fn stage_manifest(
        &self,
        r: StageManifestRequest,
    ) -> Result<StageManifestResponse, Status> {
        let manifest = request::manifest(&r)?;
        let done = self
            .blocking(move |s| scoped::stage(s.manifests(), &s.generation(), manifest))
            .await?;
        let m = &done.staged.manifest;
        tracing::info!(
            rpc = "Stage",
            request_id = %r.request_id,
            manifest_id = %m.header.id,
            port = %m.header.port,
            travellers = m.subject_ids.len(),
            not_in_gallery = done.not_in_gallery.len(),
            newly_staged = done.staged.newly_staged,
            "manifest staged"
        );
        Ok(StageManifestResponse {
            header: Some(header(&m.header)),
            travellers: travellers(m),
            not_in_gallery: done.not_in_gallery,
            newly_staged: done.staged.newly_staged,
            request_id: r.request_id,
        })
    }

    async fn amend_manifest(
        &self,
        r: AmendManifestRequest,
    ) -> Result<AmendManifestResponse, Status> {
        let (id, amendment) = request::amendment(&r)?;
        let done = self
            .blocking(move |s| scoped::amend(s.manifests(), &s.generation(), &id, &amendment))
            .await?;
        let m = &done.manifest;
        tracing::info!(
            rpc = "Amend",
            request_id = %r.request_id,
            manifest_id = %m.header.id,
            added = r.add.len(),
            dropped = r.drop.len(),
            travellers = m.subject_ids.len(),
            "manifest amended"
        );
        Ok(AmendManifestResponse {
            header: Some(header(&m.header)),
            travellers: travellers(m),
            not_in_gallery: done.not_in_gallery,
            request_id: r.request_id,
        })
    }

    async fn close_manifest(
        &self,
        r: CloseManifestRequest,
    ) -> Result<CloseManifestResponse, Status> {
        let id = r.manifest_id.clone();
        let m = self
            .blocking(move |s| scoped::close(s.manifests(), &id))
            .await?;
        tracing::info!(rpc = "Close", request_id = %r.request_id, manifest_id = %m.header.id, "manifest closed");
        Ok(CloseManifestResponse {
            header: Some(header(&m.header)),
            request_id: r.request_id,
        })
    }

    async fn get_manifest(&self, r: GetManifestRequest) -> Result<GetManifestResponse, Status> {
        let id = r.manifest_id.clone();
        let m = self
            .blocking(move |s| scoped::get(s.manifests(), &id))
            .await?;
        Ok(GetManifestResponse {
            header: Some(header(&m.header)),
            subject_ids: m.subject_ids.clone(),
            request_id: r.request_id,
        })
    }

    async fn list_manifests(
        &self,
        r: ListManifestsRequest,
    ) -> Result<ListManifestsResponse, Status> {
        let query = request::list_query(&r);
        let page = self
            .blocking(move |s| scoped::list(s.manifests(), &query))
            .await?;
        let manifests = page
            .manifests
            .iter()
            .map(|m| proto::ManifestSummary {
                header: Some(header(&m.header)),
                travellers: m.travellers as u32,
            })
            .collect();
        Ok(ListManifestsResponse {
            manifests,
            next_page_token: page.next.unwrap_or_default(),
            request_id: r.request_id,
        })
    }
}

#[tonic::async_trait]
impl ManifestsRpc for ManifestsService {
    async fn stage(
        &self,
        req: Request<StageManifestRequest>,
    ) -> Result<Response<StageManifestResponse>, Status> {
        let named = |r: &StageManifestRequest| {
            let id = r.header.as_ref().map(|h| h.manifest_id.clone());
            (
                r.request_id.clone(),
                id.unwrap_or_default(),
                r.subject_ids.clone(),
            )
        };
        self.audited(
            "StageManifest",
            Effect::Writes,
            req,
            named,
            |r| self.stage_manifest(r),
            |_| Vec::new(),
        )
        .await
    }

    async fn amend(
        &self,
        req: Request<AmendManifestRequest>,
    ) -> Result<Response<AmendManifestResponse>, Status> {
        let named = |r: &AmendManifestRequest| {
            let subjects = r.add.iter().chain(&r.drop).cloned().collect();
            (r.request_id.clone(), r.manifest_id.clone(), subjects)
        };
        self.audited(
            "AmendManifest",
            Effect::Writes,
            req,
            named,
            |r| self.amend_manifest(r),
            |_| Vec::new(),
        )
        .await
    }

    async fn close(
        &self,
        req: Request<CloseManifestRequest>,
    ) -> Result<Response<CloseManifestResponse>, Status> {
        let named =
            |r: &CloseManifestRequest| (r.request_id.clone(), r.manifest_id.clone(), Vec::new());
        self.audited(
            "CloseManifest",
            Effect::Writes,
            req,
            named,
            |r| self.close_manifest(r),
            |_| Vec::new(),
        )
        .await
    }

    async fn get(
        &self,
        req: Request<GetManifestRequest>,
    ) -> Result<Response<GetManifestResponse>, Status> {
        let named =
            |r: &GetManifestRequest| (r.request_id.clone(), r.manifest_id.clone(), Vec::new());
        let disclosed = |r: &GetManifestResponse| r.subject_ids.clone();
        self.audited(
            "GetManifest",
            Effect::Reads,
            req,
            named,
            |r| self.get_manifest(r),
            disclosed,
        )
        .await
    }

    async fn list(
        &self,
        req: Request<ListManifestsRequest>,
    ) -> Result<Response<ListManifestsResponse>, Status> {
        let named = |r: &ListManifestsRequest| (r.request_id.clone(), String::new(), Vec::new());
        self.audited(
            "ListManifests",
            Effect::Reads,
            req,
            named,
            |r| self.list_manifests(r),
            |_| Vec::new(),
        )
        .await
    }
}
