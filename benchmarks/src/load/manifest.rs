//! The manifest that scoped load searches: its travellers, drawn from the
//! synthetic population the served gallery was built from, with captures of
//! them to send; and its staging through `facegate.v1.Manifests` on the
//! server's back-office listener.
//!
//! The load generator stages the manifest itself (rather than leaving it to
//! a script) because only it knows which captures it will send: the
//! travellers are the subjects of those captures, so they must be chosen
//! together, from the same population.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use facegate_api::v1::manifests_client::ManifestsClient;
use facegate_api::v1::{
    Direction, GetManifestRequest, ManifestHeader, ManifestKind, StageManifestRequest,
};
use facegate_core::synth::{Synth, SynthConfig};
use tonic::Code;

use super::probes::Probes;

/// Probes drawn per traveller wanted before giving up: drawing `n` distinct
/// subjects out of many takes about `n` draws, so running out means the
/// population is too small for the manifest (coupon collecting).
const DRAWS_PER_TRAVELLER: usize = 8;

/// How long before now the staged window opens, so that a server whose
/// clock is a little behind the tool's can already search it.
const CLOCK_SLACK: Duration = Duration::from_secs(60);

/// A manifest's travellers and captures of them.
#[derive(Debug, Clone)]
pub struct Travellers {
    /// Their subject ids, distinct, in the order first drawn.
    pub subject_ids: Vec<String>,
    /// Port captures of them (at least one each), in the order drawn.
    pub captures: Probes,
}

impl Travellers {
    /// `n` distinct subjects of `population` (its `subjects`, `dim` and
    /// `seed`; its other fields are not used) and port captures of them: the
    /// subjects of the population's probes, in probe order, until `n`
    /// distinct ones are drawn. Probes pick their subject uniformly, so the
    /// travellers are spread over the whole gallery file, as a flight's
    /// are, and every capture is of someone on the manifest, as at a
    /// boarding gate.
    pub fn synthesise(population: &SynthConfig, n: usize) -> anyhow::Result<Travellers> {
        anyhow::ensure!(
            (1..=population.subjects).contains(&n),
            "a manifest of {n} travellers from a population of {} subjects",
            population.subjects
        );
        let synth = Synth::new(SynthConfig {
            mated_fraction: 1.0,
            ..population.clone()
        })
        .context("the travellers' population")?;
        let (mut subject_ids, mut seen, mut captures) = (Vec::new(), BTreeSet::new(), Vec::new());
        for j in 0..n.saturating_mul(DRAWS_PER_TRAVELLER) {
            let probe = synth.probe(j);
            let mate = probe
                .mate
                .context("a probe of a fully mated population has a mate")?;
            if seen.insert(mate) {
                subject_ids.push(Synth::subject_id(mate));
            }
            captures.push(probe.vector);
            if subject_ids.len() == n {
                let captures = Probes::from_vectors(captures, population.dim)?;
                return Ok(Travellers {
                    subject_ids,
                    captures,
                });
            }
        }
        anyhow::bail!(
            "{} draws gave only {} distinct travellers of the {n} asked: \
             the population of {} subjects is too small for this manifest",
            n * DRAWS_PER_TRAVELLER,
            subject_ids.len(),
            population.subjects
        )
    }
}

/// The manifest to stage for scoped load.
#[derive(Debug, Clone)]
pub struct ManifestPlan {
    /// `manifest_id`.
    pub id: String,
    /// The port whose captures search it.
    pub port_id: String,
    /// How long it stays searchable from now.
    pub valid_for: Duration,
    /// Its travellers' subject ids.
    pub subject_ids: Vec<String>,
}

/// How the staging went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    /// Travellers the server lists.
    pub travellers: u32,
    /// False when the same manifest was already staged (an earlier run).
    pub newly_staged: bool,
}

/// Stages `plan` through the back office at `admin_addr` (a URL such as
/// `http://127.0.0.1:50052`): a flight at `plan.port_id`, searchable from a
/// minute ago for `plan.valid_for`.
///
/// A manifest already staged under the id (by an earlier run against the
/// same server, whose window differs) is used as it is when it lists the
/// same travellers and is searchable now; otherwise this fails rather than
/// measure another manifest. It fails too when a traveller is not in the
/// served gallery: the population does not describe the gallery, and the
/// captures would find no one.
pub async fn stage_manifest(admin_addr: &str, plan: &ManifestPlan) -> anyhow::Result<Staged> {
    let mut client = ManifestsClient::connect(admin_addr.to_string())
        .await
        .with_context(|| format!("connecting to the back office at {admin_addr}"))?;
    let now = unix_ms(SystemTime::now())?;
    let from = now - millis(CLOCK_SLACK)?;
    let header = ManifestHeader {
        manifest_id: plan.id.clone(),
        kind: ManifestKind::Flight.into(),
        carrier: "LOAD".into(),
        voyage: "LOAD1".into(),
        port_id: plan.port_id.clone(),
        direction: Direction::Entry.into(),
        scheduled_unix_ms: now,
        valid_from_unix_ms: from,
        valid_until_unix_ms: now + millis(plan.valid_for)?,
    };
    let request = StageManifestRequest {
        header: Some(header),
        subject_ids: plan.subject_ids.clone(),
        request_id: format!("facegate-load-stage-{}", plan.id),
    };
    let staged = match client.stage(request).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::AlreadyExists => {
            return reuse_staged(&mut client, plan, now).await;
        }
        Err(s) => return Err(s).with_context(|| format!("staging manifest {:?}", plan.id)),
    };
    anyhow::ensure!(
        staged.not_in_gallery.is_empty(),
        "{} of the {} travellers are not in the served gallery (first: {}): \
         --synth-subjects and --synth-seed must describe the population it was built from",
        staged.not_in_gallery.len(),
        plan.subject_ids.len(),
        staged.not_in_gallery[0]
    );
    Ok(Staged {
        travellers: staged.travellers,
        newly_staged: staged.newly_staged,
    })
}

/// The manifest already staged under `plan.id`, when it is `plan`'s
/// (same travellers, same port) and searchable at `now`.
async fn reuse_staged(
    client: &mut ManifestsClient<tonic::transport::Channel>,
    plan: &ManifestPlan,
    now: i64,
) -> anyhow::Result<Staged> {
    let got = client
        .get(GetManifestRequest {
            manifest_id: plan.id.clone(),
            request_id: format!("facegate-load-get-{}", plan.id),
        })
        .await
        .with_context(|| format!("reading the manifest {:?} already staged", plan.id))?
        .into_inner();
    let header = got.header.unwrap_or_default();
    let wanted: BTreeSet<&String> = plan.subject_ids.iter().collect();
    let listed: BTreeSet<&String> = got.subject_ids.iter().collect();
    anyhow::ensure!(
        wanted == listed && header.port_id == plan.port_id,
        "another manifest is staged under {:?} (other travellers or port): \
         give another --manifest-id",
        plan.id
    );
    anyhow::ensure!(
        header.valid_from_unix_ms <= now && now < header.valid_until_unix_ms,
        "the manifest {:?} already staged is not searchable now: give another --manifest-id",
        plan.id
    );
    Ok(Staged {
        travellers: got.subject_ids.len() as u32,
        newly_staged: false,
    })
}

fn unix_ms(t: SystemTime) -> anyhow::Result<i64> {
    let d = t
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?;
    millis(d)
}

fn millis(d: Duration) -> anyhow::Result<i64> {
    i64::try_from(d.as_millis()).context("a duration beyond i64 milliseconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn population(subjects: usize) -> SynthConfig {
        SynthConfig {
            subjects,
            probes: 0,
            dim: 16,
            mated_fraction: 0.0,
            seed: 9,
        }
    }

    #[test]
    fn travellers_are_distinct_and_every_capture_is_of_one() {
        let t = Travellers::synthesise(&population(1000), 50).unwrap();
        assert_eq!(t.subject_ids.len(), 50);
        let distinct: BTreeSet<_> = t.subject_ids.iter().collect();
        assert_eq!(distinct.len(), 50);
        assert!(t.captures.len() >= 50);
        let synth = Synth::new(SynthConfig {
            mated_fraction: 1.0,
            ..population(1000)
        })
        .unwrap();
        for j in 0..t.captures.len() {
            let p = synth.probe(j);
            assert_eq!(t.captures.cycle(j as u64), p.vector.as_slice());
            let mate = Synth::subject_id(p.mate.unwrap());
            assert!(distinct.contains(&mate), "capture {j} is of {mate}");
        }
    }

    #[test]
    fn a_manifest_larger_than_the_population_is_refused() {
        assert!(Travellers::synthesise(&population(10), 11).is_err());
        assert!(Travellers::synthesise(&population(10), 0).is_err());
    }
}
