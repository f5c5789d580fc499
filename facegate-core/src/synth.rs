//! A synthetic population that behaves like face templates from a real model.
//!
//! Each subject has an identity direction; each capture of that subject is
//! the identity plus noise whose size depends on capture quality, so genuine
//! comparisons score high but not 1. Subjects belong to demographic groups;
//! members of a group share a component of their identity direction, and the
//! groups differ in how large that share is ("tightness"). Impostor scores
//! inside a tight group are therefore higher, and so is that group's false
//! match rate at a fixed threshold, as published evaluations of face
//! recognition found for real demographic groups.
//!
//! Everything is deterministic in the seed, and each subject and probe has its
//! own random stream, so any part can be regenerated alone (in parallel, and
//! without holding the population in memory).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use crate::error::{GalleryError, InputError};
use crate::format::RowSource;

/// One demographic group of the synthetic population.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// Label written to the ground truth.
    pub name: &'static str,
    /// Share of the population.
    pub share: f64,
    /// Weight of the group's common direction in each member's identity (0..1).
    pub tightness: f32,
}

/// The groups: shares sum to 1; tightness rises so error rates differ.
pub const GROUPS: [Group; 4] = [
    Group {
        name: "g0",
        share: 0.4,
        tightness: 0.15,
    },
    Group {
        name: "g1",
        share: 0.3,
        tightness: 0.30,
    },
    Group {
        name: "g2",
        share: 0.2,
        tightness: 0.42,
    },
    Group {
        name: "g3",
        share: 0.1,
        tightness: 0.55,
    },
];

/// Noise (relative to a unit identity) of enrolment captures: passport and
/// visa photos are taken under controlled conditions.
const ENROL_NOISE: (f32, f32) = (0.4, 0.7);
/// Noise of probe captures at ports: from a good kiosk (0.5) to a poor gate
/// camera at night (2.2); skewed so that most captures are good and a tail is poor.
const PROBE_NOISE: (f32, f32) = (0.5, 2.2);
/// Probability of 1..=5 enrolled templates per subject.
const TEMPLATE_COUNT_WEIGHTS: [f64; 5] = [0.30, 0.30, 0.20, 0.12, 0.08];

/// Parameters of a synthetic population.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    /// Enrolled subjects.
    pub subjects: usize,
    /// Probes to generate.
    pub probes: usize,
    /// Template dimension.
    pub dim: usize,
    /// Fraction of probes that are of an enrolled subject.
    pub mated_fraction: f64,
    /// Seed of every random stream.
    pub seed: u64,
}

/// Subjects of the demo population, whose gallery the server builds and
/// serves when it is given none. Defined here rather than in the server so
/// that clients (the load generator, the example client) can regenerate the
/// demo's captures without linking the server.
pub const DEMO_SUBJECTS: usize = 20_000;

/// Seed of the demo population (the same as `facegate-index demo`'s), here
/// for the same reason as [`DEMO_SUBJECTS`].
pub const DEMO_SEED: u64 = 1;

impl SynthConfig {
    /// The demo population: the server's built-in demo gallery holds its
    /// subjects, and clients draw captures from its probes, so a client that
    /// builds the same configuration (without the server) sends probes whose
    /// subjects the demo server knows.
    pub fn demo() -> SynthConfig {
        SynthConfig {
            subjects: DEMO_SUBJECTS,
            probes: 1_000,
            dim: 512,
            mated_fraction: 0.8,
            seed: DEMO_SEED,
        }
    }
}

/// One enrolled subject.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The subject's id.
    pub id: String,
    /// Index into [`GROUPS`].
    pub group: usize,
    /// Unit-length templates.
    pub templates: Vec<Vec<f32>>,
}

/// One probe and its ground truth.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Unit-length probe template.
    pub vector: Vec<f32>,
    /// The enrolled subject this probe is of, if mated.
    pub mate: Option<usize>,
    /// Index into [`GROUPS`] of the person photographed.
    pub group: usize,
    /// Capture noise (higher is worse quality).
    pub noise: f32,
}

/// The generator.
pub struct Synth {
    cfg: SynthConfig,
    centers: Vec<Vec<f32>>,
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

fn gaussian_unit(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
    unit(&mut v);
    v
}

/// Stream ids: subjects use their index, probes and group centres live far above.
const PROBE_STREAM: u64 = 1 << 48;
const CENTER_STREAM: u64 = 1 << 56;

impl Synth {
    /// Checks the configuration and draws the group centres.
    pub fn new(cfg: SynthConfig) -> Result<Synth, InputError> {
        if cfg.subjects == 0 {
            return Err(InputError::BadParameter(
                "subjects must be at least 1".into(),
            ));
        }
        if cfg.dim < 8 || cfg.dim > crate::format::MAX_DIM {
            return Err(InputError::BadParameter(format!(
                "dimension {} outside 8..={}",
                cfg.dim,
                crate::format::MAX_DIM
            )));
        }
        if !(0.0..=1.0).contains(&cfg.mated_fraction) {
            return Err(InputError::BadParameter(
                "mated fraction must be within 0..=1".into(),
            ));
        }
        let centers = (0..GROUPS.len())
            .map(|g| {
                gaussian_unit(
                    &mut Self::stream(cfg.seed, CENTER_STREAM + g as u64),
                    cfg.dim,
                )
            })
            .collect();
        Ok(Synth { cfg, centers })
    }

    /// The configuration.
    pub fn config(&self) -> &SynthConfig {
        &self.cfg
    }

    fn stream(seed: u64, id: u64) -> ChaCha8Rng {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(id);
        r
    }

    fn pick_group(rng: &mut ChaCha8Rng) -> usize {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        for (i, g) in GROUPS.iter().enumerate() {
            acc += g.share;
            if u < acc {
                return i;
            }
        }
        GROUPS.len() - 1
    }

    fn pick_count(rng: &mut ChaCha8Rng) -> usize {
        let u: f64 = rng.random();
        let mut acc = 0.0;
        for (i, w) in TEMPLATE_COUNT_WEIGHTS.iter().enumerate() {
            acc += w;
            if u < acc {
                return i + 1;
            }
        }
        TEMPLATE_COUNT_WEIGHTS.len()
    }

    /// A person's identity direction, from their group's centre and their own.
    fn identity(&self, rng: &mut ChaCha8Rng, group: usize) -> Vec<f32> {
        let t = GROUPS[group].tightness;
        let own = gaussian_unit(rng, self.cfg.dim);
        let mut v: Vec<f32> = self.centers[group]
            .iter()
            .zip(&own)
            .map(|(c, o)| t * c + (1.0 - t * t).sqrt() * o)
            .collect();
        unit(&mut v);
        v
    }

    /// One capture of an identity with the given noise level.
    fn capture(&self, rng: &mut ChaCha8Rng, identity: &[f32], noise: f32) -> Vec<f32> {
        let n = gaussian_unit(rng, self.cfg.dim);
        let mut v: Vec<f32> = identity
            .iter()
            .zip(&n)
            .map(|(i, e)| i + noise * e)
            .collect();
        unit(&mut v);
        v
    }

    /// The id of subject `i`.
    pub fn subject_id(i: usize) -> String {
        format!("S{i:09}")
    }

    /// How many templates subject `i` has (cheap: no vectors drawn).
    pub fn template_count(&self, i: usize) -> usize {
        let mut rng = Self::stream(self.cfg.seed, i as u64);
        Self::pick_group(&mut rng);
        Self::pick_count(&mut rng)
    }

    /// Person `i`: group, template count and identity, drawn from stream `i`.
    fn person(&self, i: usize) -> (ChaCha8Rng, usize, usize, Vec<f32>) {
        let mut rng = Self::stream(self.cfg.seed, i as u64);
        let group = Self::pick_group(&mut rng);
        let count = Self::pick_count(&mut rng);
        let identity = self.identity(&mut rng, group);
        (rng, group, count, identity)
    }

    /// Enrolled subject `i` (or, for `i >= subjects`, a person never enrolled).
    pub fn subject(&self, i: usize) -> Subject {
        let (mut rng, group, count, identity) = self.person(i);
        let templates = (0..count)
            .map(|_| {
                let noise = rng.random_range(ENROL_NOISE.0..ENROL_NOISE.1);
                self.capture(&mut rng, &identity, noise)
            })
            .collect();
        Subject {
            id: Self::subject_id(i),
            group,
            templates,
        }
    }

    /// A port capture of person `person`, drawing noise from `rng`.
    fn port_capture(&self, rng: &mut ChaCha8Rng, person: usize) -> (Vec<f32>, usize, f32) {
        let (_, group, _, identity) = self.person(person);
        let u: f32 = rng.random();
        let noise = PROBE_NOISE.0 + (PROBE_NOISE.1 - PROBE_NOISE.0) * u * u;
        (self.capture(rng, &identity, noise), group, noise)
    }

    /// Probe `j`: a new capture of an enrolled subject (mated) or of a person
    /// who is not enrolled.
    pub fn probe(&self, j: usize) -> Probe {
        let mut rng = Self::stream(self.cfg.seed, PROBE_STREAM + j as u64);
        let mated = rng.random::<f64>() < self.cfg.mated_fraction;
        let person = if mated {
            rng.random_range(0..self.cfg.subjects)
        } else {
            self.cfg.subjects + j
        };
        let (vector, group, noise) = self.port_capture(&mut rng, person);
        Probe {
            vector,
            mate: mated.then_some(person),
            group,
            noise,
        }
    }

    /// The subject id of every gallery row, in the order [`Synth::gallery_rows`] yields them.
    pub fn gallery_ids(&self) -> Vec<String> {
        (0..self.cfg.subjects)
            .flat_map(|i| std::iter::repeat_n(Self::subject_id(i), self.template_count(i)))
            .collect()
    }

    /// All gallery rows as a [`RowSource`], subjects in order, generated in
    /// parallel blocks; also collects the row ids.
    pub fn gallery_rows(&self) -> SynthRows<'_> {
        let rows = (0..self.cfg.subjects)
            .into_par_iter()
            .map(|i| self.template_count(i))
            .sum();
        SynthRows {
            synth: self,
            rows,
            next_subject: 0,
            buffer: Vec::new(),
            pos: 0,
            ids: Vec::with_capacity(rows),
        }
    }
}

/// Streams the synthetic gallery row by row.
pub struct SynthRows<'a> {
    synth: &'a Synth,
    rows: usize,
    next_subject: usize,
    buffer: Vec<(String, Vec<f32>)>,
    pos: usize,
    ids: Vec<String>,
}

impl SynthRows<'_> {
    /// The ids of the rows yielded so far.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Takes the ids collected so far.
    pub fn into_ids(self) -> Vec<String> {
        self.ids
    }

    /// Yields the next row and its subject id, or `None` at the end.
    pub fn next_with_id(&mut self) -> Option<(&str, &[f32])> {
        if self.pos == self.buffer.len() {
            const BLOCK: usize = 2048;
            let end = (self.next_subject + BLOCK).min(self.synth.cfg.subjects);
            if self.next_subject == end {
                return None;
            }
            self.buffer = (self.next_subject..end)
                .into_par_iter()
                .flat_map_iter(|i| {
                    let s = self.synth.subject(i);
                    let id = s.id;
                    s.templates.into_iter().map(move |t| (id.clone(), t))
                })
                .collect();
            self.next_subject = end;
            self.pos = 0;
        }
        let (id, row) = &self.buffer[self.pos];
        self.pos += 1;
        self.ids.push(id.clone());
        Some((id, row))
    }
}

impl RowSource for SynthRows<'_> {
    fn dim(&self) -> usize {
        self.synth.cfg.dim
    }
    fn rows(&self) -> usize {
        self.rows
    }
    fn next_row(&mut self, out: &mut [f32]) -> Result<(), GalleryError> {
        let (_, row) = self
            .next_with_id()
            .ok_or_else(|| InputError::BadParameter("synthetic gallery exhausted".into()))?;
        out.copy_from_slice(row);
        Ok(())
    }
    fn describe_row(&self, row: usize) -> String {
        format!("synthetic row {row}")
    }
}

/// Summary of a sample of scores.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScoreSummary {
    /// Number of scores.
    pub count: usize,
    /// Mean.
    pub mean: f32,
    /// Standard deviation.
    pub std: f32,
    /// Percentiles 1, 50, 99, 99.9.
    pub p1: f32,
    /// Median.
    pub p50: f32,
    /// 99th percentile.
    pub p99: f32,
    /// 99.9th percentile.
    pub p999: f32,
}

impl ScoreSummary {
    /// Summarises a sample (sorted in place).
    pub fn of(scores: &mut [f32]) -> ScoreSummary {
        scores.sort_unstable_by(f32::total_cmp);
        let n = scores.len();
        let q = |p: f64| {
            if n == 0 {
                f32::NAN
            } else {
                scores[((p * (n - 1) as f64).round() as usize).min(n - 1)]
            }
        };
        let mean = scores.iter().sum::<f32>() / n.max(1) as f32;
        let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f32>() / n.max(1) as f32;
        ScoreSummary {
            count: n,
            mean,
            std: var.sqrt(),
            p1: q(0.01),
            p50: q(0.5),
            p99: q(0.99),
            p999: q(0.999),
        }
    }
}

/// Genuine and impostor score distributions of one group.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupScores {
    /// Group label.
    pub group: &'static str,
    /// Probe against the best template of its own subject.
    pub genuine: ScoreSummary,
    /// Probe against the best template of another subject of the same group.
    pub impostor_same_group: ScoreSummary,
    /// Fraction of genuine comparisons below the threshold.
    pub fnmr: f32,
    /// Fraction of same-group impostor comparisons at or above the threshold.
    pub fmr: f32,
}

/// Score distributions per group, and error rates at one threshold.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScoreReport {
    /// Threshold at which `fmr` and `fnmr` are given.
    pub threshold: f32,
    /// One entry per group.
    pub groups: Vec<GroupScores>,
}

fn cosine_best(probe: &[f32], templates: &[Vec<f32>]) -> f32 {
    templates
        .iter()
        .map(|t| t.iter().zip(probe).map(|(a, b)| a * b).sum::<f32>())
        .fold(f32::NEG_INFINITY, f32::max)
}

impl Synth {
    /// Samples genuine and same-group impostor scores (`samples` of each per
    /// group) and the error rates at `threshold`.
    pub fn score_report(&self, samples: usize, threshold: f32) -> ScoreReport {
        let groups = (0..GROUPS.len())
            .into_par_iter()
            .map(|g| {
                let mut rng = Self::stream(self.cfg.seed ^ 0x5c0e, g as u64);
                let mut genuine = Vec::with_capacity(samples);
                let mut impostor = Vec::with_capacity(samples);
                // Fresh people of group g, outside the enrolled range.
                let mut person = self.cfg.subjects + self.cfg.probes + g * 10 * samples;
                while genuine.len() < samples || impostor.len() < samples {
                    let a = self.subject(person);
                    let b = self.subject(person + 1);
                    if a.group == g {
                        let (probe, _, _) = self.port_capture(&mut rng, person);
                        if genuine.len() < samples {
                            genuine.push(cosine_best(&probe, &a.templates));
                        }
                        if impostor.len() < samples && b.group == g {
                            impostor.push(cosine_best(&probe, &b.templates));
                        }
                    }
                    person += 2;
                }
                let fnmr =
                    genuine.iter().filter(|&&s| s < threshold).count() as f32 / samples as f32;
                let fmr =
                    impostor.iter().filter(|&&s| s >= threshold).count() as f32 / samples as f32;
                GroupScores {
                    group: GROUPS[g].name,
                    genuine: ScoreSummary::of(&mut genuine),
                    impostor_same_group: ScoreSummary::of(&mut impostor),
                    fnmr,
                    fmr,
                }
            })
            .collect();
        ScoreReport { threshold, groups }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synth() -> Synth {
        Synth::new(SynthConfig {
            subjects: 200,
            probes: 50,
            dim: 128,
            mated_fraction: 0.8,
            seed: 3,
        })
        .unwrap()
    }

    #[test]
    fn deterministic_and_consistent() {
        let s = synth();
        let a = s.subject(17);
        let b = s.subject(17);
        assert_eq!(a.templates, b.templates);
        assert_eq!(a.templates.len(), s.template_count(17));
        let mut rows = s.gallery_rows();
        let n = rows.rows();
        let mut buf = vec![0.0; 128];
        for _ in 0..n {
            rows.next_row(&mut buf).unwrap();
        }
        assert!(rows.next_with_id().is_none());
        assert_eq!(rows.ids(), s.gallery_ids());
    }

    #[test]
    fn genuine_scores_separate_from_impostors_and_groups_differ() {
        let s = Synth::new(SynthConfig {
            dim: 512,
            ..synth().cfg
        })
        .unwrap();
        let r = s.score_report(400, 0.3);
        for g in &r.groups {
            assert!(g.genuine.mean > 0.45 && g.genuine.mean < 0.85, "{g:?}");
            assert!(g.impostor_same_group.mean < 0.25, "{g:?}");
            assert!(g.genuine.p50 > g.impostor_same_group.p999, "{g:?}");
        }
        // Tighter groups have higher impostor scores.
        assert!(r.groups[3].impostor_same_group.mean > r.groups[0].impostor_same_group.mean + 0.1);
        assert!(r.groups[3].fmr > r.groups[0].fmr);
    }
}
