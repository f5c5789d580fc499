//! The naive references: no sorting tricks, no partition points, no
//! shared code with the module under test.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::super::{BootstrapConfig, Ranked, Search};

/// The list reduced to one entry per subject, best first, ties in input
/// order: repeated selection of the best remaining entry.
pub fn collapse(c: &[Ranked]) -> Vec<Ranked> {
    let mut taken = vec![false; c.len()];
    let mut out: Vec<Ranked> = Vec::new();
    loop {
        let mut pick: Option<usize> = None;
        for i in 0..c.len() {
            if !taken[i] && pick.is_none_or(|p| c[i].score > c[p].score) {
                pick = Some(i);
            }
        }
        let Some(p) = pick else { return out };
        taken[p] = true;
        if !out.iter().any(|o| o.subject == c[p].subject) {
            out.push(c[p]);
        }
    }
}

/// The best score, −∞ for an empty list.
pub fn best(s: &Search) -> f32 {
    let mut b = f32::NEG_INFINITY;
    for c in &s.candidates {
        if c.score > b {
            b = c.score;
        }
    }
    b
}

/// Whether mated search `s` is a miss at rank 1 at `t`.
pub fn miss(s: &Search, t: f32) -> bool {
    let list = collapse(&s.candidates);
    !(list
        .first()
        .is_some_and(|c| Some(c.subject) == s.mate && c.score >= t))
}

/// (errors, trials) of FPIR at `t`.
pub fn fpir(all: &[Search], t: f32) -> (usize, usize) {
    let mut e = (0, 0);
    for s in all.iter().filter(|s| s.mate.is_none()) {
        e.1 += 1;
        if best(s) >= t {
            e.0 += 1;
        }
    }
    e
}

/// (errors, trials) of rank-1 FNIR at `t`.
pub fn fnir(all: &[Search], t: f32) -> (usize, usize) {
    let mut e = (0, 0);
    for s in all.iter().filter(|s| s.mate.is_some()) {
        e.1 += 1;
        if miss(s, t) {
            e.0 += 1;
        }
    }
    e
}

/// The lowest threshold with FPIR ≤ target, tried over every non-mated
/// best score, the value just above each, and the lowest finite f32; `None`
/// when a single false positive would already exceed the target.
pub fn threshold(all: &[Search], target: f64) -> Option<f32> {
    let n = all.iter().filter(|s| s.mate.is_none()).count();
    if 1.0 / n as f64 > target {
        return None;
    }
    let mut tries = vec![f32::MIN];
    for s in all.iter().filter(|s| s.mate.is_none()) {
        tries.push(best(s));
        tries.push(best(s).next_up());
    }
    let mut lowest: Option<f32> = None;
    for t in tries {
        let (e, n) = fpir(all, t);
        if e as f64 / n as f64 <= target && lowest.is_none_or(|l| t < l) {
            lowest = Some(t);
        }
    }
    lowest
}

/// (misses, mated) at each rank `1..=max`.
pub fn cmc(all: &[Search], max: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for r in 1..=max {
        let mut e = (0, 0);
        for s in all.iter().filter(|s| s.mate.is_some()) {
            e.1 += 1;
            let list = collapse(&s.candidates);
            let within = list.iter().take(r).any(|c| Some(c.subject) == s.mate);
            if !within {
                e.0 += 1;
            }
        }
        out.push(e);
    }
    out
}

/// The per-group errors at `t`: (mated misses, non-mated false positives)
/// as one flag per search, groups in label order.
pub fn group_flags(all: &[Search], t: f32) -> Vec<(String, Vec<bool>, Vec<bool>)> {
    let mut names: Vec<String> = all.iter().map(|s| s.group.clone()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|g| {
            let of = all.iter().filter(|s| s.group == g);
            let mated: Vec<bool> = of
                .clone()
                .filter(|s| s.mate.is_some())
                .map(|s| miss(s, t))
                .collect();
            let non: Vec<bool> = of
                .filter(|s| s.mate.is_none())
                .map(|s| best(s) >= t)
                .collect();
            (g, mated, non)
        })
        .collect()
}

/// The bootstrap as documented: resample set `stream`, `resamples` times
/// `n` draws `rng.random_range(0..n)`.
pub fn bootstrap(flags: &[bool], cfg: &BootstrapConfig, stream: u64) -> Vec<f64> {
    let mut rng: ChaCha8Rng = cfg.rng(stream);
    let mut out = Vec::new();
    for _ in 0..cfg.resamples {
        let mut hits = 0;
        for _ in 0..flags.len() {
            if flags[rng.random_range(0..flags.len())] {
                hits += 1;
            }
        }
        out.push(hits as f64 / flags.len() as f64);
    }
    out
}

/// FMR and FNMR counts at every distinct score and just above the top:
/// (threshold, false matches, false non-matches).
pub fn sweep(genuine: &[f32], impostor: &[f32]) -> Vec<(f32, usize, usize)> {
    let mut ts: Vec<f32> = Vec::new();
    for &s in genuine.iter().chain(impostor) {
        if !ts.contains(&s) {
            ts.push(s);
        }
    }
    ts.sort_by(f32::total_cmp);
    let top = ts[ts.len() - 1];
    ts.push(top.next_up());
    ts.into_iter()
        .map(|t| {
            let fm = impostor.iter().filter(|&&s| s >= t).count();
            let fnm = genuine.iter().filter(|&&s| s < t).count();
            (t, fm, fnm)
        })
        .collect()
}

/// The EER as documented, from the naive sweep.
pub fn eer(genuine: &[f32], impostor: &[f32]) -> f64 {
    let sw = sweep(genuine, impostor);
    let (ng, ni) = (genuine.len() as f64, impostor.len() as f64);
    for i in 0..sw.len() {
        let (fmr, fnmr) = (sw[i].1 as f64 / ni, sw[i].2 as f64 / ng);
        if fnmr >= fmr {
            if i == 0 {
                return (fmr + fnmr) / 2.0;
            }
            let (f0, n0) = (sw[i - 1].1 as f64 / ni, sw[i - 1].2 as f64 / ng);
            let a = (f0 - n0) / ((f0 - n0) - (fmr - fnmr));
            return f0 + a * (fmr - f0);
        }
    }
    unreachable!("the last point has FNMR = 1 and FMR = 0")
}
