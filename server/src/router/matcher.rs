//! `facegate.v1.Matcher` as the router serves it: the ports' API unchanged,
//! each call authorised by the router's own gate, answered from the shards
//! ([`search`] for Identify; the owning shard for Verify; every shard for
//! GetGalleryInfo), then audited and counted as the server does
//! ([`crate::answered`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::call::{Route, ShardError};
use super::fleet::Fleet;
use super::metrics::RouterMetrics;
use super::{merge, search};
use crate::answered::{self, Books, InFlight, VerifyAnswer};
use crate::audit::{Auditor, Caller};
use crate::auth;
use crate::deadline::RequestClock;
use crate::encounters::ServedEncounters;
use crate::encounters::recording::{self, Outcome};
use crate::metrics::Metrics;
use crate::proto::matcher_client::MatcherClient;
use crate::proto::matcher_server::Matcher;
use crate::proto::{self, GalleryInfo, GetGalleryInfoRequest, IdentifyRequest, IdentifyResponse};
use crate::route_error::RouterError;
use facegate_core::encounter::CaptureContext;

/// What the router's services share.
pub struct Router {
    /// The shards and their replicas.
    pub fleet: Arc<Fleet>,
    /// Request, audit and security series (shared with the server's kinds).
    pub metrics: Arc<Metrics>,
    /// The router's own series.
    pub router_metrics: Arc<RouterMetrics>,
    /// Where every answer is recorded.
    pub auditor: Arc<Auditor>,
    /// A shard's budget when the caller sets no deadline.
    pub shard_timeout: Duration,
    /// Hedging delay, if on.
    pub hedge_after: Option<Duration>,
    /// The shared encounter store, when the router records encounters.
    pub encounters: Option<Arc<ServedEncounters>>,
    /// The retention policy (its trail's expiry, the erasures the
    /// Encounters back office announces).
    pub policy: Arc<facegate_core::retention::RetentionPolicy>,
}

impl Router {
    /// The calls of one request that arrived on `clock`, for `principal`.
    pub fn route(&self, clock: &RequestClock, principal: Option<Arc<str>>) -> Route {
        Route {
            fleet: self.fleet.clone(),
            metrics: self.router_metrics.clone(),
            deadline: clock.deadline.unwrap_or(clock.arrived + self.shard_timeout),
            hedge_after: self.hedge_after,
            on_behalf_of: principal,
        }
    }

    fn books(&self) -> Books<'_> {
        Books {
            auditor: &self.auditor,
            metrics: &self.metrics,
        }
    }
}

/// The router's Matcher; cheap to clone.
#[derive(Clone)]
pub struct RouterMatcher {
    router: Arc<Router>,
}

impl RouterMatcher {
    /// The service over `router`.
    pub fn new(router: Arc<Router>) -> Self {
        RouterMatcher { router }
    }
}

/// The capture to record, when the request asks for one: the router
/// records it (a shard sees only its own part of the answer), in the
/// shared store. Refused when the router has none, and for a request that
/// accepts a partial answer, whose decision may miss a shard's match.
fn to_record<'a>(
    router: &'a Router,
    caller: &Caller,
    accept_partial: bool,
) -> Result<Option<(CaptureContext, &'a Arc<ServedEncounters>)>, Status> {
    let Some(context) = recording::requested(caller)? else {
        return Ok(None);
    };
    let Some(encounters) = &router.encounters else {
        return Err(RouterError::NoEncounterStore.into());
    };
    if accept_partial {
        return Err(RouterError::RecordPartial.into());
    }
    Ok(Some((context, encounters)))
}

async fn identify_one(
    router: &Router,
    r: IdentifyRequest,
    clock: RequestClock,
    caller: &Caller,
) -> answered::Answered<IdentifyResponse> {
    auth::authorise(caller.principal.as_deref(), caller.claimed_port())?;
    clock.check()?;
    let recording = to_record(router, caller, r.accept_partial)?;
    let route = router.route(&clock, caller.principal.clone());
    let answer = search::identify(&route, &r, caller.capture.clone(), clock.arrived).await?;
    let pending = recording.map(|(context, encounters)| {
        let outcome = Outcome::of_answer(&answer);
        recording::start(encounters, &router.metrics, caller, context, outcome)
    });
    Ok((answer, pending))
}

fn named_manifest(r: &IdentifyRequest) -> Option<String> {
    (!r.manifest_id.is_empty()).then(|| r.manifest_id.clone())
}

#[tonic::async_trait]
impl Matcher for RouterMatcher {
    async fn identify(
        &self,
        mut req: Request<IdentifyRequest>,
    ) -> Result<Response<IdentifyResponse>, Status> {
        let (clock, caller) = answered::arrival(&mut req);
        let _in_flight = InFlight::new(&self.router.metrics);
        let r = req.into_inner();
        let manifest = named_manifest(&r);
        let span = tracing::info_span!("route_identify", port = %caller.port(), request_id = %r.request_id);
        let result = identify_one(&self.router, r, clock, &caller)
            .instrument(span)
            .await;
        answered::finish(
            &self.router.books(),
            "Identify",
            &caller,
            result,
            Vec::new,
            manifest,
        )
        .await
        .map(Response::new)
    }

    type IdentifyStreamStream = ReceiverStream<Result<IdentifyResponse, Status>>;

    async fn identify_stream(
        &self,
        req: Request<Streaming<IdentifyRequest>>,
    ) -> Result<Response<Self::IdentifyStreamStream>, Status> {
        let base = Caller::new(&req, "", None, Instant::now());
        let deadline = RequestClock::of(&req).deadline;
        let router = self.router.clone();
        let answer = move |mut r: IdentifyRequest| {
            let (router, base) = (router.clone(), base.clone());
            async move {
                let clock = RequestClock {
                    arrived: Instant::now(),
                    deadline,
                };
                let _in_flight = InFlight::new(&router.metrics);
                let manifest = named_manifest(&r);
                let caller = base.with(&r.request_id, r.capture.take(), clock.arrived);
                let result = identify_one(&router, r, clock, &caller).await;
                let books = router.books();
                answered::finish(
                    &books,
                    "IdentifyStream",
                    &caller,
                    result,
                    Vec::new,
                    manifest,
                )
                .await
            }
        };
        Ok(Response::new(crate::stream::identify_stream(
            req.into_inner(),
            answer,
        )))
    }

    async fn verify(
        &self,
        mut req: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        let (clock, caller) = answered::arrival(&mut req);
        let _in_flight = InFlight::new(&self.router.metrics);
        let r = req.into_inner();
        let span =
            tracing::info_span!("route_verify", port = %caller.port(), request_id = %r.request_id);
        let result = verify_one(&self.router, &r, clock, &caller)
            .instrument(span)
            .await
            .map(|(response, pending)| {
                let subject = r.subject_id.clone();
                (VerifyAnswer { response, subject }, pending)
            });
        let named = || vec![r.subject_id.clone()];
        answered::finish(&self.router.books(), "Verify", &caller, result, named, None)
            .await
            .map(|v| Response::new(v.response))
    }

    async fn get_gallery_info(
        &self,
        req: Request<GetGalleryInfoRequest>,
    ) -> Result<Response<GalleryInfo>, Status> {
        let clock = RequestClock::of(&req);
        let route = self.router.route(&clock, None);
        gallery_info(&route).await.map(Response::new)
    }
}

/// Verify on the shard that holds the claimed subject.
async fn verify_one(
    router: &Router,
    r: &proto::VerifyRequest,
    clock: RequestClock,
    caller: &Caller,
) -> answered::Answered<proto::VerifyResponse> {
    auth::authorise(caller.principal.as_deref(), caller.claimed_port())?;
    clock.check()?;
    let recording = to_record(router, caller, false)?;
    let route = router.route(&clock, caller.principal.clone());
    let shards = route.fleet.shard_count();
    let owner = facegate_core::shard::shard_of(&r.subject_id, shards);
    let shard_request = proto::VerifyRequest {
        capture: caller
            .capture
            .clone()
            .map(|c| proto::CaptureContext { record: false, ..c }),
        ..r.clone()
    };
    let result = route
        .call(owner, "Verify", |replica| {
            let mut client = MatcherClient::new(replica.ports.clone());
            let req = route.request(shard_request.clone());
            async move { client.verify(req).await.map(|a| a.into_inner()) }
        })
        .await;
    let mut response = match result {
        Ok(v) => v,
        Err(ShardError::Down(k)) => return Err(search::unavailable(&[k], shards)),
        Err(ShardError::Status(s)) => return Err(s),
    };
    if let Some(t) = response.timing.as_mut() {
        t.total_us = clock.arrived.elapsed().as_micros() as u64;
    }
    let pending = recording.map(|(context, encounters)| {
        let outcome = Outcome::of_verify(&response, &r.subject_id);
        recording::start(encounters, &router.metrics, caller, context, outcome)
    });
    Ok((response, pending))
}

/// Every shard's GalleryInfo, summed into the whole gallery's.
pub async fn gallery_info(route: &Route) -> Result<GalleryInfo, Status> {
    let shards = route.fleet.shard_count();
    let calls = (0..shards).map(|shard| {
        route.call(shard, "GetGalleryInfo", |replica| {
            let mut client = MatcherClient::new(replica.ports.clone());
            let req = route.request(GetGalleryInfoRequest {});
            async move { client.get_gallery_info(req).await.map(|a| a.into_inner()) }
        })
    });
    let mut infos = Vec::new();
    let mut missing = Vec::new();
    for result in join_all(calls).await {
        match result {
            Ok(info) => infos.push(info),
            Err(ShardError::Down(k)) => missing.push(k),
            Err(ShardError::Status(s)) => return Err(s),
        }
    }
    if !missing.is_empty() {
        return Err(search::unavailable(&missing, shards));
    }
    if let Some(why) = merge::disagreement(&infos) {
        tracing::warn!("the shards are not alike: {why}");
    }
    Ok(merge::gallery_info(&infos))
}
