//! The back office's services as the router serves them: a gallery change
//! or an erasure goes to the shard that owns its subject, a manifest is split by shard
//! (each shard holds and searches its own travellers), and every change
//! reaches every replica of its shard ([`Route::on_every_replica`]). The
//! shards audit each change under the caller the router names.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::join_all;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

use super::call::{Route, ShardError};
use super::matcher::Router;
use crate::auth::Principal;
use crate::credentials::Credentials;
use crate::deadline::RequestClock;
use crate::proto::gallery_admin_client::GalleryAdminClient;
use crate::proto::gallery_admin_server::GalleryAdmin;
use crate::proto::manifests_client::ManifestsClient;
use crate::proto::manifests_server::Manifests;
use crate::proto::privacy_client::PrivacyClient;
use crate::proto::privacy_server::Privacy;
use crate::proto::{self, ManifestHeader};
use crate::route_error::RouterError;
use facegate_core::shard::shard_of;

/// GalleryAdmin and Manifests in front of the shards.
#[derive(Clone)]
pub struct RouterBackOffice {
    router: Arc<Router>,
    /// The router's own files, which Reload re-reads before the replicas'.
    credentials: Arc<Credentials>,
}

impl RouterBackOffice {
    /// The services over `router`, whose own `credentials` Reload
    /// re-reads.
    pub fn new(router: Arc<Router>, credentials: Arc<Credentials>) -> Self {
        RouterBackOffice {
            router,
            credentials,
        }
    }

    fn route<T>(&self, req: &Request<T>) -> Route {
        let principal = req.extensions().get::<Principal>().map(|p| p.0.clone());
        self.router.route(&RequestClock::of(req), principal)
    }

    /// A gallery change sent to every replica of the shard that owns its
    /// subject (`subject_of` the message): each replica's result.
    async fn to_owner<M, T, F, Fut>(
        &self,
        req: Request<M>,
        subject_of: impl Fn(&M) -> &str,
        send: F,
    ) -> Result<Vec<Result<T, Status>>, Status>
    where
        M: Clone,
        F: Fn(&Channel, Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<T>, Status>>,
    {
        let route = self.route(&req);
        let message = req.into_inner();
        let owner = shard_of(subject_of(&message), route.fleet.shard_count());
        route
            .on_every_replica(owner, |replica| {
                let call = send(&replica.admin, route.request(message.clone()));
                async move { call.await.map(Response::into_inner) }
            })
            .await
    }

    /// A manifest read answered by one replica of every shard: the
    /// request's message, and the answers by shard.
    async fn read<M, T, F, Fut>(&self, req: Request<M>, send: F) -> Result<(M, Vec<T>), Status>
    where
        M: Clone,
        T: Send + 'static,
        F: Fn(ManifestsClient<Channel>, Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<Response<T>, Status>> + Send + 'static,
    {
        let route = self.route(&req);
        let message = req.into_inner();
        let answers = read_every_shard(&route, message.clone(), send).await?;
        Ok((message, answers))
    }
}

fn admin(channel: &Channel) -> GalleryAdminClient<Channel> {
    GalleryAdminClient::new(channel.clone()).max_decoding_message_size(64 << 20)
}

fn manifests(channel: &Channel) -> ManifestsClient<Channel> {
    ManifestsClient::new(channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

/// The first replica's answer when every replica took the change; the
/// first error otherwise.
fn all_took<T>(results: Vec<Result<T, Status>>) -> Result<T, Status> {
    let mut first = None;
    for r in results {
        let answer = r?;
        first.get_or_insert(answer);
    }
    first.ok_or_else(|| RouterError::NoReplicas.into())
}

#[tonic::async_trait]
impl GalleryAdmin for RouterBackOffice {
    async fn enroll(
        &self,
        req: Request<proto::EnrollRequest>,
    ) -> Result<Response<proto::EnrollResponse>, Status> {
        let send = |ch: &Channel, q| {
            let mut c = admin(ch);
            async move { c.enroll(q).await }
        };
        let results = self.to_owner(req, |r| &r.subject_id, send).await?;
        all_took(results).map(Response::new)
    }

    async fn remove(
        &self,
        req: Request<proto::RemoveRequest>,
    ) -> Result<Response<proto::RemoveResponse>, Status> {
        let send = |ch: &Channel, q| {
            let mut c = admin(ch);
            async move { c.remove(q).await }
        };
        let results = self.to_owner(req, |r| &r.subject_id, send).await?;
        // A retry of a removal that reached some replicas finds the
        // subject gone there: NOT_FOUND from those is the change done.
        let removed = results.iter().any(|r| r.is_ok());
        let results = results
            .into_iter()
            .filter(|r| !(removed && matches!(r, Err(s) if s.code() == Code::NotFound)));
        all_took(results.collect()).map(Response::new)
    }

    async fn reload(
        &self,
        req: Request<proto::ReloadRequest>,
    ) -> Result<Response<proto::ReloadResponse>, Status> {
        let route = self.route(&req);
        let r = req.into_inner();
        // The router's own files first, as SIGHUP re-reads them.
        let credentials = Arc::clone(&self.credentials);
        let own = tokio::task::spawn_blocking(move || credentials.reload())
            .await
            .map_err(|_| crate::status::task_failed("the credential reload"))?;
        let mut answers = Vec::new();
        for shard in 0..route.fleet.shard_count() {
            let results = route
                .on_every_replica(shard, |replica| {
                    let mut client = admin(&replica.admin);
                    let req = route.request(r.clone());
                    async move { client.reload(req).await.map(|a| a.into_inner()) }
                })
                .await?;
            for result in results {
                answers.push(result?);
            }
        }
        let mut merged = merge_reloads(answers).ok_or(RouterError::NoShards)?;
        let own = own.into_iter().map(|f| format!("router: {}", f.error));
        merged.credential_errors.splice(0..0, own);
        Ok(Response::new(merged))
    }
}

/// Every replica's reload as one answer: the last replica's generations,
/// with the credential errors of all of them (each names its file).
fn merge_reloads(answers: Vec<proto::ReloadResponse>) -> Option<proto::ReloadResponse> {
    let errors: Vec<String> = answers
        .iter()
        .flat_map(|a| a.credential_errors.iter().cloned())
        .collect();
    answers
        .into_iter()
        .last()
        .map(|last| proto::ReloadResponse {
            credential_errors: errors,
            ..last
        })
}

/// Each shard's part of a list of subject ids, by shard.
fn by_shard(ids: &[String], shards: u32) -> Vec<Vec<String>> {
    let mut parts = vec![Vec::new(); shards as usize];
    for id in ids {
        parts[shard_of(id, shards) as usize].push(id.clone());
    }
    parts
}

/// Calls every replica of every shard with that shard's request (from
/// `request_of`), each shard's first answer by shard.
async fn every_shard<M, T, F, Fut>(
    route: &Route,
    request_of: impl Fn(u32) -> M,
    send: F,
) -> Result<Vec<T>, Status>
where
    M: Clone,
    F: Fn(ManifestsClient<Channel>, Request<M>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>>,
{
    let shards = route.fleet.shard_count();
    let calls = (0..shards).map(|shard| {
        let message = request_of(shard);
        let send = &send;
        async move {
            route
                .on_every_replica(shard, |replica| {
                    let call = send(manifests(&replica.admin), route.request(message.clone()));
                    async move { call.await.map(Response::into_inner) }
                })
                .await
                .and_then(all_took)
        }
    });
    join_all(calls).await.into_iter().collect()
}

/// One replica of every shard answers a read, by shard.
async fn read_every_shard<M, T, F, Fut>(
    route: &Route,
    message: M,
    send: F,
) -> Result<Vec<T>, Status>
where
    M: Clone,
    T: Send + 'static,
    F: Fn(ManifestsClient<Channel>, Request<M>) -> Fut,
    Fut: std::future::Future<Output = Result<Response<T>, Status>> + Send + 'static,
{
    let shards = route.fleet.shard_count();
    let calls = (0..shards).map(|shard| {
        route.call(shard, "Manifests", |replica| {
            let call = send(manifests(&replica.admin), route.request(message.clone()));
            async move { call.await.map(Response::into_inner) }
        })
    });
    let mut answers = Vec::new();
    for result in join_all(calls).await {
        match result {
            Ok(a) => answers.push(a),
            Err(ShardError::Down(k)) => return Err(super::search::unavailable(&[k], shards)),
            Err(ShardError::Status(s)) => return Err(s),
        }
    }
    Ok(answers)
}

fn sorted_union(lists: impl Iterator<Item = Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = lists.flatten().collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[tonic::async_trait]
impl Manifests for RouterBackOffice {
    async fn stage(
        &self,
        req: Request<proto::StageManifestRequest>,
    ) -> Result<Response<proto::StageManifestResponse>, Status> {
        let route = self.route(&req);
        let r = req.into_inner();
        let parts = by_shard(&r.subject_ids, route.fleet.shard_count());
        let request_of = |shard: u32| proto::StageManifestRequest {
            subject_ids: parts[shard as usize].clone(),
            ..r.clone()
        };
        let answers = every_shard(&route, request_of, |mut c, req| async move {
            c.stage(req).await
        })
        .await?;
        Ok(Response::new(proto::StageManifestResponse {
            header: answers.first().and_then(|a| a.header.clone()),
            travellers: answers.iter().map(|a| a.travellers).sum(),
            not_in_gallery: sorted_union(answers.iter().map(|a| a.not_in_gallery.clone())),
            newly_staged: answers.iter().any(|a| a.newly_staged),
            request_id: r.request_id,
        }))
    }

    async fn amend(
        &self,
        req: Request<proto::AmendManifestRequest>,
    ) -> Result<Response<proto::AmendManifestResponse>, Status> {
        let route = self.route(&req);
        let r = req.into_inner();
        let shards = route.fleet.shard_count();
        let (add, drop) = (by_shard(&r.add, shards), by_shard(&r.drop, shards));
        let request_of = |shard: u32| proto::AmendManifestRequest {
            add: add[shard as usize].clone(),
            drop: drop[shard as usize].clone(),
            ..r.clone()
        };
        let answers = every_shard(&route, request_of, |mut c, req| async move {
            c.amend(req).await
        })
        .await?;
        Ok(Response::new(proto::AmendManifestResponse {
            header: answers.first().and_then(|a| a.header.clone()),
            travellers: answers.iter().map(|a| a.travellers).sum(),
            not_in_gallery: sorted_union(answers.iter().map(|a| a.not_in_gallery.clone())),
            request_id: r.request_id,
        }))
    }

    async fn close(
        &self,
        req: Request<proto::CloseManifestRequest>,
    ) -> Result<Response<proto::CloseManifestResponse>, Status> {
        let route = self.route(&req);
        let r = req.into_inner();
        let answers = every_shard(
            &route,
            |_| r.clone(),
            |mut c, req| async move { c.close(req).await },
        )
        .await?;
        let first = answers.into_iter().next();
        Ok(Response::new(proto::CloseManifestResponse {
            header: first.and_then(|a| a.header),
            request_id: r.request_id,
        }))
    }

    async fn get(
        &self,
        req: Request<proto::GetManifestRequest>,
    ) -> Result<Response<proto::GetManifestResponse>, Status> {
        let (r, answers) = self
            .read(req, |mut c, q| async move { c.get(q).await })
            .await?;
        Ok(Response::new(proto::GetManifestResponse {
            header: answers.first().and_then(|a| a.header.clone()),
            subject_ids: sorted_union(answers.iter().map(|a| a.subject_ids.clone())),
            request_id: r.request_id,
        }))
    }

    async fn list(
        &self,
        req: Request<proto::ListManifestsRequest>,
    ) -> Result<Response<proto::ListManifestsResponse>, Status> {
        let (r, answers) = self
            .read(req, |mut c, q| async move { c.list(q).await })
            .await?;
        // Every shard holds every manifest (its own travellers of it), so
        // the shards' pages list the same ids; travellers are summed.
        let mut merged: BTreeMap<String, (Option<ManifestHeader>, u32)> = BTreeMap::new();
        for a in &answers {
            for m in &a.manifests {
                let id = m
                    .header
                    .as_ref()
                    .map(|h| h.manifest_id.clone())
                    .unwrap_or_default();
                let entry = merged.entry(id).or_insert((m.header.clone(), 0));
                entry.1 += m.travellers;
            }
        }
        Ok(Response::new(proto::ListManifestsResponse {
            manifests: merged
                .into_values()
                .map(|(header, travellers)| proto::ManifestSummary { header, travellers })
                .collect(),
            next_page_token: answers
                .first()
                .map(|a| a.next_page_token.clone())
                .unwrap_or_default(),
            request_id: r.request_id,
        }))
    }
}

#[tonic::async_trait]
impl Privacy for RouterBackOffice {
    /// Erases the subject on every replica of its shard: its templates, the
    /// manifests' entries (a manifest is split by subject, so they are on
    /// the same shard) and any encounters that shard recorded.
    async fn erase_subject(
        &self,
        req: Request<proto::EraseSubjectRequest>,
    ) -> Result<Response<proto::EraseSubjectResponse>, Status> {
        let request_id = req.get_ref().request_id.clone();
        let send = |ch: &Channel, q| {
            let mut c = PrivacyClient::new(ch.clone());
            async move { c.erase_subject(q).await }
        };
        let results = self.to_owner(req, |r| &r.subject_id, send).await?;
        let answers = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(proto::EraseSubjectResponse {
            removed_from_gallery: answers.iter().any(|a| a.removed_from_gallery),
            manifests: sorted_union(answers.iter().map(|a| a.manifests.clone())),
            encounter_rows_erased: answers
                .iter()
                .map(|a| a.encounter_rows_erased)
                .max()
                .unwrap_or(0),
            gallery_bytes_pending_compaction: answers
                .iter()
                .any(|a| a.gallery_bytes_pending_compaction),
            request_id,
        }))
    }
}

/// A manifest's travellers for reconciliation: the union of every shard's
/// part, as `Manifests.Get` through the router answers it.
#[tonic::async_trait]
impl crate::encounters::service::ManifestLists for RouterBackOffice {
    async fn listed(&self, id: &str) -> Result<Vec<String>, Status> {
        let req = Request::new(proto::GetManifestRequest {
            manifest_id: id.to_string(),
            request_id: String::new(),
        });
        Manifests::get(self, req)
            .await
            .map(|r| r.into_inner().subject_ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_replicas_credential_errors_reach_the_answer() {
        let answer = |generation: u64, errors: &[&str]| proto::ReloadResponse {
            generation,
            credential_errors: errors.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        };
        let merged = merge_reloads(vec![
            answer(1, &["shard 0: keys file"]),
            answer(2, &[]),
            answer(3, &["shard 2: certificate"]),
        ])
        .unwrap();
        assert_eq!(
            merged.credential_errors,
            ["shard 0: keys file", "shard 2: certificate"]
        );
        assert_eq!(merged.generation, 3);
        assert!(merge_reloads(Vec::new()).is_none());
    }
}
