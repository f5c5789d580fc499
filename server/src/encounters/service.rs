//! The `facegate.v1.Encounters` gRPC service, on the back office's listener
//! only: officers' decisions and corrections, travellers' files, travel
//! histories, stay status, overstays, irregular movements and manifest
//! reconciliation. Every call, reads included, is audited with the
//! subjects it named and disclosed (access to a travel history is itself
//! personal data, as the EU Entry/Exit System's access logs record). Logs
//! at info level name record ids and counts, never subject ids.

use std::sync::Arc;
use std::time::Instant;

use facegate_core::encounter::{
    Correction, Day, EncounterError, overstays, reconcile_manifest, stay_of,
};
use facegate_core::retention::{RetentionPolicy, scheduled_erasures};
use tonic::{Request, Response, Status};

use super::wire;
use crate::audit::{Auditor, Caller, Effect};
use crate::proto::encounters_server::Encounters;
use crate::proto::{self, EncounterView};
use crate::request::RequestError;
use crate::served::ServedGallery;
use crate::served_encounters::ServedEncounters;

/// Where the service finds the travellers a manifest lists, to reconcile
/// it: the server's own manifests, or, behind a router, every shard's part.
#[tonic::async_trait]
pub trait ManifestLists: Send + Sync + 'static {
    /// The subject ids manifest `id` lists; NOT_FOUND when none has it.
    async fn listed(&self, id: &str) -> Result<Vec<String>, Status>;
}

#[tonic::async_trait]
impl ManifestLists for ServedGallery {
    async fn listed(&self, id: &str) -> Result<Vec<String>, Status> {
        let manifest = self
            .manifests()
            .get(id)
            .map_err(|e| crate::status::store(&e))?;
        Ok(manifest.subject_ids.clone())
    }
}

/// The service; cheap to clone.
#[derive(Clone)]
pub struct EncountersService {
    encounters: Arc<ServedEncounters>,
    manifests: Arc<dyn ManifestLists>,
    auditor: Arc<Auditor>,
    /// The retention policy: which erasures are announced, and when.
    policy: Arc<RetentionPolicy>,
}

/// A request's audit facts: its request id and the subjects it named.
type Named = (String, Vec<String>);

impl EncountersService {
    /// A service over `encounters`, reconciling the manifests of
    /// `manifests`, its answers recorded by `auditor`, announcing the
    /// erasures `policy` schedules.
    pub fn new(
        encounters: Arc<ServedEncounters>,
        manifests: Arc<dyn ManifestLists>,
        auditor: Arc<Auditor>,
        policy: Arc<RetentionPolicy>,
    ) -> Self {
        EncountersService {
            encounters,
            manifests,
            auditor,
            policy,
        }
    }

    /// Runs `op` on the blocking pool against the encounters, logging a
    /// server-side failure once, here.
    async fn blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&ServedEncounters) -> Result<T, EncounterError> + Send + 'static,
    ) -> Result<T, Status> {
        let encounters = self.encounters.clone();
        let result = tokio::task::spawn_blocking(move || op(&encounters))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "encounter task failed");
                crate::status::task_failed("the encounter operation")
            })?;
        result.map_err(|e| {
            if crate::status::is_server_side(&e) {
                tracing::error!(error = %e, "encounter operation failed");
            }
            crate::status::encounter(&e)
        })
    }

    /// Answers `req` with `body` and records the answer in the audit trail
    /// with the subjects named and disclosed; a read whose record cannot be
    /// written is withheld ([`Auditor::settle`]).
    async fn audited<Req, Resp, Fut>(
        &self,
        rpc: &str,
        effect: Effect,
        req: Request<Req>,
        named: impl FnOnce(&Req) -> Named,
        body: impl FnOnce(Req) -> Fut,
        disclosed: impl FnOnce(&Resp) -> Vec<String>,
    ) -> Result<Response<Resp>, Status>
    where
        Fut: std::future::Future<Output = Result<Resp, Status>>,
    {
        let (request_id, mut subjects) = named(req.get_ref());
        let caller = Caller::new(&req, &request_id, None, Instant::now());
        let result = body(req.into_inner()).await;
        let event = match &result {
            Ok(r) => {
                subjects.extend(disclosed(r));
                caller.event(rpc, tonic::Code::Ok, None, subjects, 0)
            }
            Err(s) => caller.event(rpc, s.code(), None, subjects, 0),
        };
        let result = self.auditor.settle(rpc, effect, event, result).await;
        result.map(Response::new)
    }

    /// Today, by the server's clock (UTC).
    fn today(&self) -> Day {
        Day::of(self.encounters.clock().now())
    }
}

fn subject_of(v: &EncounterView) -> Vec<String> {
    (!v.subject_id.is_empty())
        .then(|| v.subject_id.clone())
        .into_iter()
        .collect()
}

#[tonic::async_trait]
impl Encounters for EncountersService {
    async fn correct(
        &self,
        req: Request<proto::CorrectEncounterRequest>,
    ) -> Result<Response<EncounterView>, Status> {
        let principal = Caller::new(&req, "", None, Instant::now())
            .principal
            .as_deref()
            .unwrap_or("back-office")
            .to_string();
        let named = |r: &proto::CorrectEncounterRequest| {
            let s = (!r.subject_id.is_empty()).then(|| r.subject_id.clone());
            (r.request_id.clone(), s.into_iter().collect())
        };
        let body = |r: proto::CorrectEncounterRequest| async move {
            let correction = Correction {
                record_id: r.record_id,
                decision: wire::decision_from(r.decision)?,
                subject_id: (!r.subject_id.is_empty()).then_some(r.subject_id),
                principal,
                note: r.note,
                at: self.encounters.clock().now(),
            };
            let fixed = self
                .blocking(move |s| s.writable()?.correct(correction))
                .await?;
            tracing::info!(
                record_id = fixed.record_id,
                changes = fixed.changes.len(),
                "encounter corrected"
            );
            Ok(wire::view(&fixed))
        };
        self.audited(
            "Encounters/Correct",
            Effect::Writes,
            req,
            named,
            body,
            subject_of,
        )
        .await
    }

    async fn get(
        &self,
        req: Request<proto::GetEncounterRequest>,
    ) -> Result<Response<EncounterView>, Status> {
        let body = |r: proto::GetEncounterRequest| async move {
            let id = r.record_id;
            let found = self.blocking(move |s| s.readable().get(id)).await?;
            let found = found.ok_or_else(|| {
                crate::status::encounter(&EncounterError::NotFound { record_id: id })
            })?;
            Ok(wire::view(&found))
        };
        self.audited(
            "Encounters/Get",
            Effect::Reads,
            req,
            |_| (String::new(), Vec::new()),
            body,
            subject_of,
        )
        .await
    }

    async fn put_traveller(
        &self,
        req: Request<proto::PutTravellerRequest>,
    ) -> Result<Response<proto::PutTravellerResponse>, Status> {
        let named = |r: &proto::PutTravellerRequest| {
            let s = r.traveller.as_ref().map(|t| t.subject_id.clone());
            (r.request_id.clone(), s.into_iter().collect())
        };
        let body = |r: proto::PutTravellerRequest| async move {
            let t = wire::traveller_from(r.traveller.as_ref())?;
            let now = self.encounters.clock().now();
            let stored = self
                .blocking(move |s| {
                    let store = s.writable()?;
                    store.put_traveller(&t, now)?;
                    store.traveller(&t.subject_id)
                })
                .await?;
            tracing::info!(
                admissions = stored.as_ref().map_or(0, |t| t.admissions.len()),
                "traveller file recorded"
            );
            Ok(proto::PutTravellerResponse {
                traveller: stored.as_ref().map(wire::traveller),
            })
        };
        self.audited(
            "Encounters/PutTraveller",
            Effect::Writes,
            req,
            named,
            body,
            |_| Vec::new(),
        )
        .await
    }

    async fn travel_history(
        &self,
        req: Request<proto::TravelHistoryRequest>,
    ) -> Result<Response<proto::TravelHistoryResponse>, Status> {
        let named = |r: &proto::TravelHistoryRequest| (String::new(), vec![r.subject_id.clone()]);
        let body = |r: proto::TravelHistoryRequest| async move {
            let id = r.subject_id;
            let (traveller, history) = self
                .blocking(move |s| {
                    let store = s.readable();
                    Ok((store.traveller(&id)?, store.history(&id)?))
                })
                .await?;
            Ok(proto::TravelHistoryResponse {
                traveller: traveller.as_ref().map(wire::traveller),
                encounters: history.iter().map(wire::view).collect(),
            })
        };
        self.audited(
            "Encounters/TravelHistory",
            Effect::Reads,
            req,
            named,
            body,
            |_| Vec::new(),
        )
        .await
    }

    async fn stay_status(
        &self,
        req: Request<proto::StayStatusRequest>,
    ) -> Result<Response<proto::StayStatusResponse>, Status> {
        let named = |r: &proto::StayStatusRequest| (String::new(), vec![r.subject_id.clone()]);
        let today = self.today();
        let body = |r: proto::StayStatusRequest| async move {
            let as_of = wire::day_or_today(&r.as_of, "as_of", today)?;
            let id = r.subject_id;
            let report = self
                .blocking(move |s| stay_of(s.readable(), &id, as_of))
                .await?;
            Ok(wire::stay(&report))
        };
        self.audited(
            "Encounters/StayStatus",
            Effect::Reads,
            req,
            named,
            body,
            |_| Vec::new(),
        )
        .await
    }

    async fn list_overstays(
        &self,
        req: Request<proto::ListOverstaysRequest>,
    ) -> Result<Response<proto::ListOverstaysResponse>, Status> {
        let today = self.today();
        let body = |r: proto::ListOverstaysRequest| async move {
            let as_of = wire::day_or_today(&r.as_of, "as_of", today)?;
            let after = (!r.page_token.is_empty()).then_some(r.page_token);
            let limit = r.page_size as usize;
            let page = self
                .blocking(move |s| overstays(s.readable(), as_of, after.as_deref(), limit))
                .await?;
            tracing::info!(as_of = %as_of, overstays = page.overstays.len(), "overstays listed");
            Ok(proto::ListOverstaysResponse {
                overstays: page.overstays.iter().map(wire::stay).collect(),
                next_page_token: page.next.unwrap_or_default(),
            })
        };
        let disclosed = |r: &proto::ListOverstaysResponse| {
            r.overstays.iter().map(|o| o.subject_id.clone()).collect()
        };
        self.audited(
            "Encounters/ListOverstays",
            Effect::Reads,
            req,
            |_| Default::default(),
            body,
            disclosed,
        )
        .await
    }

    async fn list_scheduled_erasures(
        &self,
        req: Request<proto::ListScheduledErasuresRequest>,
    ) -> Result<Response<proto::ListScheduledErasuresResponse>, Status> {
        let policy = self.policy.clone();
        let body = |r: proto::ListScheduledErasuresRequest| async move {
            let after = (!r.page_token.is_empty()).then_some(r.page_token);
            let limit = r.page_size as usize;
            let notice_seconds = policy.notices.overstayer_erasure.as_secs();
            let page = self
                .blocking(move |s| {
                    let now = s.clock().now();
                    scheduled_erasures(s.readable(), &policy, now, after.as_deref(), limit)
                })
                .await?;
            tracing::info!(erasures = page.erasures.len(), "scheduled erasures listed");
            Ok(proto::ListScheduledErasuresResponse {
                erasures: page.erasures.iter().map(wire::scheduled_erasure).collect(),
                next_page_token: page.next.unwrap_or_default(),
                notice_seconds,
            })
        };
        let disclosed = |r: &proto::ListScheduledErasuresResponse| {
            let mut ids: Vec<String> = r.erasures.iter().map(|e| e.subject_id.clone()).collect();
            ids.dedup(); // a subject with several overstays is listed in a row
            ids
        };
        self.audited(
            "Encounters/ListScheduledErasures",
            Effect::Reads,
            req,
            |_| Default::default(),
            body,
            disclosed,
        )
        .await
    }

    async fn list_irregular(
        &self,
        req: Request<proto::ListIrregularRequest>,
    ) -> Result<Response<proto::ListIrregularResponse>, Status> {
        let body = |r: proto::ListIrregularRequest| async move {
            let (from, until) = wire::period(r.from_unix_ms, r.until_unix_ms)?;
            let kind = proto::IrregularKind::try_from(r.kind)
                .ok()
                .filter(|k| *k != proto::IrregularKind::Unspecified)
                .ok_or_else(|| {
                    RequestError::field("kind", "give EXIT_WITHOUT_ENTRY or ENTRY_WITHOUT_EXIT")
                })?;
            let limit = r.limit as usize;
            let found = self
                .blocking(move |s| {
                    let store = s.readable();
                    match kind {
                        proto::IrregularKind::EntryWithoutExit => {
                            store.entries_without_exit(from, until, limit)
                        }
                        _ => store.exits_without_entry(from, until, limit),
                    }
                })
                .await?;
            Ok(proto::ListIrregularResponse {
                encounters: found.iter().map(wire::view).collect(),
            })
        };
        let disclosed =
            |r: &proto::ListIrregularResponse| r.encounters.iter().flat_map(subject_of).collect();
        self.audited(
            "Encounters/ListIrregular",
            Effect::Reads,
            req,
            |_| Default::default(),
            body,
            disclosed,
        )
        .await
    }

    async fn reconcile_manifest(
        &self,
        req: Request<proto::ReconcileManifestRequest>,
    ) -> Result<Response<proto::ReconcileManifestResponse>, Status> {
        let body = |r: proto::ReconcileManifestRequest| async move {
            let id = r.manifest_id.clone();
            let listed = self.manifests.listed(&id).await?;
            let travellers = listed.len() as u32;
            let done = self
                .blocking(move |s| reconcile_manifest(s.readable(), &id, &listed))
                .await?;
            Ok(proto::ReconcileManifestResponse {
                manifest_id: r.manifest_id,
                matched: done.matched,
                no_show: done.no_show,
                not_matched: done.not_matched.iter().map(wire::view).collect(),
                travellers,
            })
        };
        let disclosed = |r: &proto::ReconcileManifestResponse| {
            let strangers = r.not_matched.iter().flat_map(subject_of);
            r.matched
                .iter()
                .chain(&r.no_show)
                .cloned()
                .chain(strangers)
                .collect()
        };
        self.audited(
            "Encounters/ReconcileManifest",
            Effect::Reads,
            req,
            |_| Default::default(),
            body,
            disclosed,
        )
        .await
    }
}
