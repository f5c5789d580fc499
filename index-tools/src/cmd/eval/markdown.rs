//! report.md: the report for people, in Markdown tables, and the short
//! summary printed at the end of a run.

use std::fmt::Write;

use facegate_core::accuracy::{GroupMetric, Interval, Rate, Ratio};

use super::report::Report;

/// The ranks the CMC table shows (those within the searched depth).
const CMC_RANKS: [usize; 5] = [1, 5, 10, 20, 50];

/// The whole Markdown report.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    header(&mut s, r);
    identification(&mut s, r);
    cmc(&mut s, r);
    verification(&mut s, r);
    groups(&mut s, r);
    s
}

/// A few lines for the terminal.
pub fn summary(r: &Report) -> String {
    let at = &r.identification.at_operating_threshold;
    let rank1 = r.cmc.first().map(|c| rate(&c.fnir)).unwrap_or_default();
    format!(
        "threshold {} ({})\nFPIR {}, FNIR {} (rank 1, at the threshold)\nCMC FNIR at rank 1 {rank1}\nEER {:.4}",
        r.threshold.value,
        r.threshold.rule,
        rate(&at.fpir),
        rate(&at.fnir),
        r.verification.eer.eer
    )
}

/// `0.0123 (12/975)`, or `n/a (0/0)`.
fn rate(r: &Rate) -> String {
    match r.value() {
        Some(v) => format!("{v:.4} ({}/{})", r.errors, r.trials),
        None => "n/a (0/0)".into(),
    }
}

fn ratio(r: &Ratio) -> String {
    match r {
        Ratio::Finite(v) => format!("{v:.2}"),
        Ratio::Unbounded => "unbounded".into(),
    }
}

fn header(s: &mut String, r: &Report) {
    let g = &r.gallery;
    let _ = writeln!(s, "# Accuracy report\n");
    let _ = writeln!(
        s,
        "Gallery `{}`: generation `{}`, {} rows, {} subjects, dim {}, {} (model `{}`).  ",
        g.path, g.generation, g.rows, g.subjects, g.dim, g.scan_type, g.model_tag
    );
    let p = &r.probes;
    let _ = writeln!(
        s,
        "Probes `{}` ({} mated, {} non-mated), truth `{}`.  ",
        p.file, p.mated, p.non_mated, p.truth
    );
    let _ = writeln!(
        s,
        "Engine {} ({}), top {} candidates.  ",
        r.engine.name, r.engine.note, r.engine.top_k
    );
    let _ = writeln!(
        s,
        "Operating threshold **{}**: {}.\n\nA score equal to a threshold is a match. Definitions: docs/accuracy.md.\n",
        r.threshold.value, r.threshold.rule
    );
}

fn identification(s: &mut String, r: &Report) {
    let _ = writeln!(s, "## Identification (rank 1, with a threshold)\n");
    let _ = writeln!(
        s,
        "| target FPIR | threshold | FPIR | FNIR |\n|---|---|---|---|"
    );
    for p in &r.identification.fnir_at_fpir {
        match &p.at {
            Some(at) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    p.target_fpir,
                    at.threshold,
                    rate(&at.fpir),
                    rate(&at.fnir)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "| {} | not estimable: below 1/{} | | |",
                    p.target_fpir,
                    (1.0 / p.resolution).round()
                );
            }
        }
    }
    let at = &r.identification.at_operating_threshold;
    let _ = writeln!(
        s,
        "\nAt the operating threshold {}: FPIR {}, FNIR {}.\n",
        at.threshold,
        rate(&at.fpir),
        rate(&at.fnir)
    );
}

fn cmc(s: &mut String, r: &Report) {
    let _ = writeln!(s, "## Investigation (CMC, no threshold)\n");
    let _ = writeln!(s, "| rank | FNIR | identification rate |\n|---|---|---|");
    for c in r.cmc.iter().filter(|c| CMC_RANKS.contains(&c.rank)) {
        let hit = c.fnir.value().map_or(f64::NAN, |v| 1.0 - v);
        let _ = writeln!(s, "| {} | {} | {hit:.4} |", c.rank, rate(&c.fnir));
    }
    s.push('\n');
}

fn verification(s: &mut String, r: &Report) {
    let v = &r.verification;
    let _ = writeln!(s, "## Verification (1:1)\n");
    let _ = writeln!(
        s,
        "{} genuine and {} impostor pairs ({}).\n",
        v.genuine_pairs, v.impostor_pairs, v.pairs
    );
    let _ = writeln!(
        s,
        "| EER | at threshold | FMR | FNMR |\n|---|---|---|---|\n| {:.4} | {} | {} | {} |\n",
        v.eer.eer,
        v.at_operating_threshold.threshold,
        rate(&v.at_operating_threshold.fmr),
        rate(&v.at_operating_threshold.fnmr)
    );
}

fn groups(s: &mut String, r: &Report) {
    let t = &r.groups;
    let _ = writeln!(s, "## Per group at threshold {}\n", t.threshold);
    let _ = writeln!(
        s,
        "Ratios are to the lowest rate (FPIR: {}, FNIR: {}); a ratio over a rate of 0 is unbounded. \
         Intervals: {:.0} % percentile bootstrap, {} resamples of each group's mated and non-mated \
         probes, seed {}.\n",
        t.fpir_reference.as_deref().unwrap_or("none"),
        t.fnir_reference.as_deref().unwrap_or("none"),
        t.bootstrap.confidence * 100.0,
        t.bootstrap.resamples,
        t.bootstrap.seed
    );
    let _ = writeln!(
        s,
        "| group | FPIR | CI | ratio | ratio CI | FNIR | CI | ratio | ratio CI |\n|---|---|---|---|---|---|---|---|---|"
    );
    for g in &t.groups {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            g.group,
            cells(&g.fpir),
            cells(&g.fnir)
        );
    }
}

/// Rate, interval, ratio, ratio interval: four table cells.
fn cells(m: &GroupMetric) -> String {
    let ci = |i: &Option<Interval<f64>>| {
        i.map(|i| format!("{:.4}–{:.4}", i.low, i.high))
            .unwrap_or_default()
    };
    let rci = |i: &Option<Interval<Ratio>>| {
        i.map(|i| format!("{}–{}", ratio(&i.low), ratio(&i.high)))
            .unwrap_or_default()
    };
    format!(
        "{} | {} | {} | {}",
        rate(&m.rate),
        ci(&m.ci),
        m.ratio.as_ref().map(ratio).unwrap_or_default(),
        rci(&m.ratio_ci)
    )
}
