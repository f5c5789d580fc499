//! What a batch costs: engine time as a function of batch size, learned
//! from the batches the dispatcher runs.
//!
//! One pass over the gallery serves a whole batch, so a batch of `b` probes
//! costs a fixed part (reading the rows: memory bound) plus a part per probe
//! (the arithmetic: compute bound once the batch is large enough). On a 2-core
//! CPU and a 1M x 512 int8 gallery that is about 18 ms + 5 ms per probe; a
//! single smoothed "time per batch" cannot tell a batch of 1 from one of 32,
//! which the dispatcher needs both to size batches against a latency target
//! and to estimate queue waits for admission.
//!
//! The model is `secs(b) = fixed + per_probe * b`, fitted by exponentially
//! weighted least squares over recent batches (so it follows a reload or a
//! change of machine load). While the batches seen so far are all about the
//! same size the slope cannot be told apart from noise; the model then keeps
//! the last slope it could fit (none at first: every batch is assumed to cost
//! the same), and learns it as soon as batch sizes vary, which they do as
//! load varies.
//!
//! A scan that pages the gallery in (the first after a start, the first
//! after a reload swaps in a new generation) can take seconds where the
//! next takes tens of milliseconds. Learned as it is, that one time made
//! every arrival's expected wait exceed its deadline while the engine was
//! busy, and a server restarted under load refused about 90 % of its
//! requests for 20 s (docs/benchmarks.md). So the first batch is forgotten
//! when the second runs in under a quarter of the time it predicted, and
//! later a batch over four times its prediction is held back until the
//! next one confirms it (`OUTLIER`): a machine that really became slower is
//! learned one batch later.

/// Weight of the newest batch in the fit (older ones decay by `1 - DECAY`
/// per batch: about the last 20 batches count).
const DECAY: f64 = 0.05;
/// Least weighted variance of the batch sizes (in probes²) for a slope fit:
/// below it the sizes seen are too alike to separate the two parts. Sizes
/// `L` and `L + 1` in a 4:1 mix (the dispatcher's exploration) give 0.16.
const MIN_SIZE_VARIANCE: f64 = 0.1;

/// How many times its prediction a batch's time must be for it to wait for
/// the next batch's confirmation before it is learned.
const OUTLIER: f64 = 4.0;

/// Engine time per batch size, learned online.
#[derive(Debug, Clone, Default)]
pub struct BatchCost {
    /// A batch far slower than predicted, waiting for the next to confirm it.
    held: Option<(usize, f64)>,
    /// Decayed sums of weights, sizes, sizes², times, sizes x times.
    w: f64,
    b: f64,
    bb: f64,
    t: f64,
    bt: f64,
    /// Last slope fitted from sizes that varied enough.
    per_probe: Option<f64>,
}

impl BatchCost {
    /// Whether any batch has been measured: before that nothing is predicted.
    pub fn is_known(&self) -> bool {
        self.w > 0.0
    }

    /// Records that a batch of `size` probes took `secs` on the engine.
    pub fn observe(&mut self, size: usize, secs: f64) {
        if !secs.is_finite() || secs < 0.0 || size == 0 {
            return;
        }
        if self.learned_once() && self.secs(size) > OUTLIER * secs {
            *self = BatchCost::default(); // the first batch was a cold scan
        }
        let outlier = self.is_known() && !self.learned_once() && secs > OUTLIER * self.secs(size);
        match (self.held.take(), outlier) {
            (None, true) => {
                self.held = Some((size, secs));
                return;
            }
            (Some((held_size, held_secs)), true) => self.learn(held_size, held_secs),
            _ => {}
        }
        self.learn(size, secs);
    }

    /// Whether exactly one batch has been learned: its weight is then exactly
    /// 1, and every later batch adds 1 to a decayed weight of at least 1.
    fn learned_once(&self) -> bool {
        self.w == 1.0
    }

    /// Adds a batch to the fit.
    fn learn(&mut self, size: usize, secs: f64) {
        let b = size as f64;
        let keep = if self.is_known() { 1.0 - DECAY } else { 0.0 };
        self.w = keep * self.w + 1.0;
        self.b = keep * self.b + b;
        self.bb = keep * self.bb + b * b;
        self.t = keep * self.t + secs;
        self.bt = keep * self.bt + b * secs;
        let mean_b = self.b / self.w;
        let var_b = self.bb / self.w - mean_b * mean_b;
        if var_b >= MIN_SIZE_VARIANCE {
            let cov = self.bt / self.w - mean_b * (self.t / self.w);
            // Time never falls as a batch grows; a negative fit is noise.
            self.per_probe = Some((cov / var_b).max(0.0));
        }
    }

    /// Seconds per probe beyond the fixed part (0 until sizes have varied).
    pub fn per_probe(&self) -> f64 {
        self.per_probe.unwrap_or(0.0)
    }

    /// Seconds of the part every batch pays whatever its size.
    pub fn fixed(&self) -> f64 {
        if !self.is_known() {
            return 0.0;
        }
        let mean_b = self.b / self.w;
        (self.t / self.w - self.per_probe() * mean_b).max(0.0)
    }

    /// Predicted engine seconds for a batch of `size` probes (0 before any
    /// batch was measured).
    pub fn secs(&self, size: usize) -> f64 {
        if !self.is_known() {
            return 0.0;
        }
        self.fixed() + self.per_probe() * size as f64
    }

    /// The largest batch, from 1 to `max`, predicted to finish within
    /// `budget_secs`; 1 when even that would not (a request is never held
    /// back for being late: admission control is what keeps queues short).
    pub fn largest_within(&self, budget_secs: f64, max: usize) -> usize {
        let per = self.per_probe();
        if per <= 0.0 {
            return max;
        }
        let fits = ((budget_secs - self.fixed()) / per).floor();
        if fits.is_nan() || fits < 1.0 {
            1
        } else if fits >= max as f64 {
            max
        } else {
            fits as usize
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_predicted_before_the_first_batch() {
        let c = BatchCost::default();
        assert!(!c.is_known());
        assert_eq!(c.secs(32), 0.0);
        assert_eq!(c.largest_within(0.05, 32), 32);
    }

    #[test]
    fn a_linear_cost_is_recovered_from_varied_sizes() {
        let mut c = BatchCost::default();
        for i in 0..200 {
            let size = 1 + i % 16;
            c.observe(size, 0.018 + 0.005 * size as f64);
        }
        assert!((c.fixed() - 0.018).abs() < 1e-9, "{c:?}");
        assert!((c.per_probe() - 0.005).abs() < 1e-9, "{c:?}");
        assert!((c.secs(32) - 0.178).abs() < 1e-9);
        // 18 ms + 5 ms x 6 = 48 ms fits 50 ms; 7 probes (53 ms) do not.
        assert_eq!(c.largest_within(0.050, 32), 6);
        assert_eq!(c.largest_within(10.0, 32), 32);
        // Not even one probe fits: one is still searched.
        assert_eq!(c.largest_within(0.010, 32), 1);
    }

    #[test]
    fn identical_sizes_keep_the_last_slope_and_follow_the_level() {
        let mut c = BatchCost::default();
        for _ in 0..50 {
            c.observe(1, 0.020);
        }
        // No size variety: no slope, every batch costs the mean.
        assert_eq!(c.per_probe(), 0.0);
        assert!((c.secs(8) - 0.020).abs() < 1e-9);
        assert_eq!(c.largest_within(0.001, 32), 32);
        for i in 0..100 {
            c.observe(1 + (i % 2) * 7, if i % 2 == 0 { 0.020 } else { 0.055 });
        }
        assert!((c.per_probe() - 0.005).abs() < 1e-6, "{c:?}");
        // Back to single probes on a machine now twice as slow: the level
        // follows, and a slope (fitted while the old sizes still varied
        // enough) is kept instead of falling back to none.
        for _ in 0..400 {
            c.observe(1, 0.040);
        }
        assert!((c.secs(1) - 0.040).abs() < 1e-3, "{c:?}");
        assert!(c.per_probe() > 0.001, "{c:?}");
    }

    #[test]
    fn a_cold_first_scan_stands_only_until_the_next_batch() {
        let mut c = BatchCost::default();
        c.observe(1, 5.0);
        assert!((c.secs(1) - 5.0).abs() < 1e-9, "{c:?}");
        c.observe(1, 0.020);
        assert!((c.secs(1) - 0.020).abs() < 1e-9, "{c:?}");
        assert_eq!(c.largest_within(0.100, 32), 32);
    }

    #[test]
    fn one_slow_batch_waits_for_the_next_and_two_are_learned() {
        let mut c = BatchCost::default();
        for _ in 0..50 {
            c.observe(8, 0.050);
        }
        // A reload's cold scan: held, then dropped by a batch as before.
        c.observe(8, 3.0);
        assert!((c.secs(8) - 0.050).abs() < 1e-9, "{c:?}");
        c.observe(8, 0.050);
        assert!((c.secs(8) - 0.050).abs() < 1e-9, "{c:?}");
        // The machine really became slower: the second slow batch confirms
        // the first, and both are learned.
        c.observe(8, 1.0);
        c.observe(8, 1.0);
        assert!(c.secs(8) > 0.1, "{c:?}");
        for _ in 0..200 {
            c.observe(8, 1.0);
        }
        assert!((c.secs(8) - 1.0).abs() < 1e-3, "{c:?}");
    }

    #[test]
    fn nonsense_measurements_are_ignored() {
        let mut c = BatchCost::default();
        c.observe(4, f64::NAN);
        c.observe(0, 1.0);
        c.observe(4, -1.0);
        assert!(!c.is_known());
        // Noise that would fit a falling cost gives a flat one.
        c.observe(1, 0.030);
        c.observe(8, 0.010);
        assert_eq!(c.per_probe(), 0.0);
    }
}
