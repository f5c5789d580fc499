//! A routed search: one Identify sent to every shard, each shard's best
//! `k` merged into the best `k` of the whole gallery, the threshold the
//! whole gallery's answer applies, and the manifest-then-national fallback
//! decided on the merged answer. Never silently partial: a shard with no
//! replica up fails the search with UNAVAILABLE naming it, unless the
//! request accepts a partial answer, which then names the missing shards.

use std::time::Instant;

use futures_util::future::join_all;
use tonic::Status;

use super::call::{Route, ShardError};
use super::merge;
use crate::proto::matcher_client::MatcherClient;
use crate::proto::{self, IdentifyRequest, IdentifyResponse, SearchScope};
use crate::route_error::RouterError;

/// Every shard's answer to one Identify, and the shards that gave none.
struct Gathered {
    answers: Vec<(u32, IdentifyResponse)>,
    missing: Vec<u32>,
}

/// Searches every shard for `r` (its capture, if any, with recording off)
/// and answers as one server over the whole gallery would.
pub async fn identify(
    route: &Route,
    r: &IdentifyRequest,
    capture: Option<proto::CaptureContext>,
    arrived: Instant,
) -> Result<IdentifyResponse, Status> {
    if r.fallback && r.manifest_id.is_empty() {
        return Err(crate::request::RequestError::FallbackWithoutManifest.into());
    }
    let shard_request = IdentifyRequest {
        fallback: false,
        accept_partial: false,
        capture: capture.map(|c| proto::CaptureContext { record: false, ..c }),
        ..r.clone()
    };
    let first = gather(route, &shard_request, r.accept_partial).await?;
    let scoped = !r.manifest_id.is_empty();
    let mut answer = merged(route, r, &first, scoped);
    if scoped && !answer.r#match && r.fallback {
        let national = IdentifyRequest {
            manifest_id: String::new(),
            ..shard_request
        };
        let second = gather(route, &national, r.accept_partial).await?;
        let people = answer.manifest_travellers;
        answer = merged(route, r, &second, false);
        answer.answered_by = SearchScope::ManifestThenNational.into();
        answer.manifest_id = r.manifest_id.clone();
        answer.manifest_travellers = people;
        answer.missing_shards = union(&first.missing, &second.missing);
    }
    answer.timing = Some(proto::Timing {
        total_us: arrived.elapsed().as_micros() as u64,
        ..answer.timing.unwrap_or_default()
    });
    Ok(answer)
}

/// Sends `r` to every shard at once.
async fn gather(
    route: &Route,
    r: &IdentifyRequest,
    accept_partial: bool,
) -> Result<Gathered, Status> {
    let shards = route.fleet.shard_count();
    let calls = (0..shards).map(|shard| {
        route.call(shard, "Identify", |replica| {
            let mut client = MatcherClient::new(replica.ports.clone());
            let req = route.request(r.clone());
            async move { client.identify(req).await.map(|a| a.into_inner()) }
        })
    });
    let mut gathered = Gathered {
        answers: Vec::new(),
        missing: Vec::new(),
    };
    for (shard, result) in (0..shards).zip(join_all(calls).await) {
        match result {
            Ok(answer) => gathered.answers.push((shard, answer)),
            Err(ShardError::Down(k)) => gathered.missing.push(k),
            Err(ShardError::Status(status)) => return Err(status),
        }
    }
    let action = if accept_partial && !gathered.answers.is_empty() {
        "partial"
    } else {
        "refused"
    };
    for k in &gathered.missing {
        let m = &route.metrics.shard_missing;
        m.with_label_values(&[&k.to_string(), action]).inc();
    }
    match (gathered.missing.is_empty(), action) {
        (true, _) | (false, "partial") => Ok(gathered),
        _ => Err(unavailable(&gathered.missing, shards)),
    }
}

/// UNAVAILABLE naming the shards with no replica up.
pub fn unavailable(missing: &[u32], shards: u32) -> Status {
    RouterError::ShardsDown {
        missing: missing.to_vec(),
        shards,
    }
    .into()
}

/// The shards' answers as one: merged candidates, the threshold the whole
/// gallery's search applies, and the decision.
fn merged(route: &Route, r: &IdentifyRequest, g: &Gathered, scoped: bool) -> IdentifyResponse {
    let by_shard: Vec<(u32, &[proto::Candidate])> = g
        .answers
        .iter()
        .map(|(shard, a)| (*shard, a.candidates.as_slice()))
        .collect();
    let candidates = merge::top_k(&by_shard, r.top_k as usize);
    let people: u32 = g.answers.iter().map(|(_, a)| a.manifest_travellers).sum();
    let shard_threshold = g.answers.first().map_or(0.0, |(_, a)| a.threshold);
    let threshold = match (r.threshold, scoped) {
        (Some(t), _) => t,
        (None, true) => route.fleet.first_info().map_or(shard_threshold, |info| {
            merge::manifest_threshold(&info, u64::from(people))
        }),
        (None, false) => shard_threshold,
    };
    let generations: Vec<(u32, u64)> = g
        .answers
        .iter()
        .map(|(shard, a)| (*shard, a.gallery_generation))
        .collect();
    let slowest = |f: fn(&proto::Timing) -> u64| {
        g.answers
            .iter()
            .filter_map(|(_, a)| a.timing.as_ref().map(f))
            .max()
            .unwrap_or(0)
    };
    IdentifyResponse {
        r#match: candidates.first().is_some_and(|c| c.score >= threshold),
        candidates,
        request_id: r.request_id.clone(),
        threshold,
        timing: Some(proto::Timing {
            queue_us: slowest(|t| t.queue_us),
            engine_us: slowest(|t| t.engine_us),
            total_us: 0,
        }),
        gallery_generation: facegate_core::shard::combined_generation(&generations),
        answered_by: match scoped {
            true => SearchScope::Manifest.into(),
            false => SearchScope::National.into(),
        },
        manifest_id: r.manifest_id.clone(),
        missing_shards: g.missing.clone(),
        manifest_travellers: people,
        ..Default::default()
    }
}

fn union(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut all: Vec<u32> = a.iter().chain(b).copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}
