//! Dot-product kernels for the CPU scan, chosen once at run time.
//!
//! Each kernel scores one probe against a block of consecutive rows (one
//! indirect call per block rather than per row), except the int8 batch kernel
//! [`I8BatchBlock`], which scores every probe of a batch against the block so
//! that each loaded row chunk serves several probes and each probe chunk
//! several rows. The AVX2 versions are picked when the processor has AVX2,
//! FMA and F16C; the portable versions are the reference they are tested
//! against and the fallback everywhere else. (AVX-512 VNNI would double the
//! int8 rate again; it is not written yet because no machine here has it to
//! test on.)

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use half::f16;

/// Asks the processor to start loading `bytes` into its level-2 cache,
/// without waiting for them: the scan calls it for the rows a few tiles
/// ahead of those it scores.
///
/// The hardware prefetcher follows a plain stream well while the scan is
/// memory bound (one probe), but once a batch makes each tile take longer
/// to score than to load, measured here, memory and arithmetic stopped
/// overlapping: a batch of 2 to 4 probes cost the sum of both, twice one
/// probe's time. Loads requested ahead restore the overlap.
#[inline]
pub fn prefetch(bytes: &[i8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch never faults and changes no program state; the
        // address is within `bytes` anyway. SSE is part of x86-64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(line.as_ptr())
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// int8 probe against int8 rows: exact integer dot products.
pub type I8Block = fn(probe: &[i8], rows: &[i8], stride: usize, out: &mut [i32]);
/// Every probe of a [`NarrowProbes`] batch against int8 rows: exact integer
/// dot products, probe-major (`out[b * n + j]` is probe `b` against row `j`,
/// with `n = out.len() / probes.len()`).
///
/// This is the int8 scan of a batch (and of a single probe): without AVX-512
/// VNNI, an AVX2 int8 dot needs `maddubs` (u8 x i8) and a widening `madd`
/// per 32 bytes, and both compete for the same two multiply pipes. The
/// per-probe [`I8Block`] adds two `sign` operations per probe and row to make
/// the operands fit `maddubs`; the batch kernel instead flips the sign bit of
/// each row chunk once (`r ^ 0x80 = r + 128`, unsigned) for all the probes it
/// is held for, and uses probes narrowed to |q| <= 64 so that
/// `maddubs(r + 128, q)` pair sums (at most 2 * 255 * 64 = 32640) cannot
/// saturate. `dot(q, r) = dot(q, r + 128) - 128 * sum(q)` then restores the
/// exact integer result.
pub type I8BatchBlock = fn(probes: &NarrowProbes, rows: &[i8], stride: usize, out: &mut [i32]);
/// f32 probe against f16 rows, accumulated in f32.
pub type F16Block = fn(probe: &[f32], rows: &[f16], stride: usize, out: &mut [f32]);
/// f32 probe against f32 rows.
pub type F32Block = fn(probe: &[f32], rows: &[f32], stride: usize, out: &mut [f32]);

/// A set of kernels for one instruction set.
///
/// Contract of every kernel: `out.len()` rows start at `rows[j * stride]`,
/// each has at least `probe.len()` elements, and only the first `probe.len()`
/// elements enter the dot product.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Names the instruction set, for logs and `GalleryInfo`.
    pub name: &'static str,
    /// int8 kernel for one 8-bit probe: exact scores of int8 galleries
    /// without re-score rows, and their scan.
    pub i8_block: I8Block,
    /// int8 scan kernel for a batch of narrowed probes: the pre-selection
    /// scan of int8 galleries whose candidates are re-scored exactly.
    pub i8_batch_block: I8BatchBlock,
    /// f16 scan and re-score kernel.
    pub f16_block: F16Block,
    /// f32 scan kernel.
    pub f32_block: F32Block,
}

impl Kernels {
    /// The fastest kernels this processor supports.
    pub fn detect() -> Kernels {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = x86::avx2() {
            return k;
        }
        Kernels::portable()
    }

    /// Plain Rust kernels: the reference, and the fallback on any processor.
    pub fn portable() -> Kernels {
        Kernels {
            name: "portable",
            i8_block: portable::i8_block,
            i8_batch_block: portable::i8_batch_block,
            f16_block: portable::f16_block,
            f32_block: portable::f32_block,
        }
    }

    /// Every kernel set usable on this processor (for tests and benchmarks).
    pub fn available() -> Vec<Kernels> {
        let mut v = vec![Kernels::portable()];
        #[cfg(target_arch = "x86_64")]
        v.extend(x86::avx2());
        v
    }

    /// One f32 · f16 dot product.
    pub fn dot_f16(&self, probe: &[f32], row: &[f16]) -> f32 {
        let mut out = [0.0];
        (self.f16_block)(probe, row, row.len(), &mut out);
        out[0]
    }
}

/// Largest magnitude of a [`NarrowProbes`] element.
pub const NARROW_MAX: i8 = 64;

/// Probes quantised to |q| <= [`NARROW_MAX`] (7 bits) for [`I8BatchBlock`],
/// with the sum of each probe's elements that turns the kernel's
/// `dot(q, r + 128)` back into `dot(q, r)`.
///
/// Half the resolution of the 8-bit probe quantisation: the scan score error
/// grows about 1.6x (rms 2.5e-4 to 3.9e-4 on uniform-noise rows, about 5e-4
/// to 7e-4 on Gaussian ones, 512 dimensions), which is why the
/// engine uses these only to pre-select candidates that it then re-scores
/// exactly. Built only through [`NarrowProbes::quantize`], so the bound and
/// the sums the SIMD kernels rely on for exact results always hold.
#[derive(Debug, Clone)]
pub struct NarrowProbes {
    dim: usize,
    q: Vec<i8>,
    sums: Vec<i32>,
    scales: Vec<f32>,
}

impl NarrowProbes {
    /// Quantises each vector of `probes` (`dim` elements each, at least one
    /// vector, `dim >= 1`) with a symmetric scale: `v[i] ~= q[i] * scale`.
    /// A zero vector gives zeros and scale 0.
    pub fn quantize<'a>(dim: usize, probes: impl IntoIterator<Item = &'a [f32]>) -> NarrowProbes {
        assert!(dim >= 1, "probes need a dimension");
        let mut n = NarrowProbes {
            dim,
            q: Vec::new(),
            sums: Vec::new(),
            scales: Vec::new(),
        };
        let max_q = f32::from(NARROW_MAX);
        for v in probes {
            assert_eq!(v.len(), dim, "probe of the wrong dimension");
            let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            let (scale, inv) = if max > 0.0 && max.is_finite() {
                (max / max_q, max_q / max)
            } else {
                (0.0, 0.0)
            };
            let start = n.q.len();
            n.q.extend(
                v.iter()
                    .map(|&x| (x * inv).round().clamp(-max_q, max_q) as i8),
            );
            n.sums
                .push(n.q[start..].iter().map(|&x| i32::from(x)).sum());
            n.scales.push(scale);
        }
        assert!(!n.scales.is_empty(), "no probes to quantise");
        n
    }

    /// Number of probes.
    pub fn len(&self) -> usize {
        self.scales.len()
    }

    /// Whether there are no probes (never: `quantize` refuses that).
    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }

    /// Elements per probe.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Probe `b`'s elements.
    pub fn probe(&self, b: usize) -> &[i8] {
        &self.q[b * self.dim..(b + 1) * self.dim]
    }

    /// Every probe, probe-major.
    pub fn all(&self) -> &[i8] {
        &self.q
    }

    /// The sum of probe `b`'s elements.
    pub fn sum(&self, b: usize) -> i32 {
        self.sums[b]
    }

    /// Probe `b`'s scale: its score against an int8 row of scale `s` is
    /// `dot * self.scale(b) * s`.
    pub fn scale(&self, b: usize) -> f32 {
        self.scales[b]
    }
}

/// Panics unless the batch kernel's arguments satisfy its contract; returns
/// the number of rows. The SIMD kernels rely on it for their unchecked loads.
fn check_batch(probes: &NarrowProbes, rows: &[i8], stride: usize, out: &[i32]) -> usize {
    assert!(
        out.len().is_multiple_of(probes.len()),
        "output not a whole number of rows per probe"
    );
    let n = out.len() / probes.len();
    assert!(
        probes.dim() <= stride || n <= 1,
        "probe longer than the row stride"
    );
    if let Some(last) = n.checked_sub(1) {
        assert!(
            last * stride + probes.dim() <= rows.len(),
            "rows slice too short for {n} rows of stride {stride}"
        );
    }
    n
}

/// Panics unless the block arguments satisfy the kernel contract; the SIMD
/// kernels rely on it for their unchecked loads.
fn check_block<P, R, O>(probe: &[P], rows: &[R], stride: usize, out: &[O]) {
    assert!(
        probe.len() <= stride || out.len() <= 1,
        "probe longer than the row stride"
    );
    if let Some(last) = out.len().checked_sub(1) {
        assert!(
            last * stride + probe.len() <= rows.len(),
            "rows slice too short for {} rows of stride {stride}",
            out.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn every_kernel_set_matches_portable_on_odd_sizes() {
        let mut r = rng();
        let reference = Kernels::portable();
        for k in Kernels::available() {
            for dim in [1usize, 3, 31, 32, 33, 64, 100, 512, 515] {
                let stride = dim.div_ceil(64) * 64;
                let n = 5;
                let pi: Vec<i8> = (0..dim).map(|_| r.random_range(-127..=127)).collect();
                let ri: Vec<i8> = (0..n * stride)
                    .map(|_| r.random_range(-127..=127))
                    .collect();
                let (mut a, mut b) = (vec![0i32; n], vec![0i32; n]);
                (k.i8_block)(&pi, &ri, stride, &mut a);
                (reference.i8_block)(&pi, &ri, stride, &mut b);
                assert_eq!(a, b, "{} i8 dim {dim}", k.name);

                let pf: Vec<f32> = (0..dim).map(|_| r.random_range(-1.0..1.0)).collect();
                let rf: Vec<f32> = (0..n * stride).map(|_| r.random_range(-1.0..1.0)).collect();
                let rh: Vec<f16> = rf.iter().map(|&x| f16::from_f32(x)).collect();
                let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                (k.f32_block)(&pf, &rf, stride, &mut a);
                (reference.f32_block)(&pf, &rf, stride, &mut b);
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-4, "{} f32 dim {dim}: {x} vs {y}", k.name);
                }
                (k.f16_block)(&pf, &rh, stride, &mut a);
                (reference.f16_block)(&pf, &rh, stride, &mut b);
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 1e-4, "{} f16 dim {dim}: {x} vs {y}", k.name);
                }
            }
        }
    }

    #[test]
    fn int8_extremes_do_not_saturate() {
        let dim = 512;
        let p = vec![-127i8; dim];
        let row = vec![-127i8; dim];
        for k in Kernels::available() {
            let mut out = [0];
            (k.i8_block)(&p, &row, dim, &mut out);
            assert_eq!(out[0], 127 * 127 * dim as i32, "{}", k.name);
        }
    }

    #[test]
    fn batch_kernels_match_portable_on_odd_sizes() {
        let mut r = rng();
        let reference = Kernels::portable();
        for k in Kernels::available() {
            for dim in [1usize, 31, 33, 100, 512, 515] {
                let stride = dim.div_ceil(64) * 64;
                for count in 1..=9 {
                    // Row counts that are not multiples of any micro-kernel's rows.
                    for n in [1usize, 2, 3, 5, 7, 32] {
                        let raw: Vec<f32> = (0..count * dim)
                            .map(|_| r.random_range(-1.0..1.0))
                            .collect();
                        let probes = NarrowProbes::quantize(dim, raw.chunks_exact(dim));
                        // Exactly as long as the contract needs: no padding after the last row.
                        let rows: Vec<i8> = (0..(n - 1) * stride + dim)
                            .map(|_| r.random_range(-127..=127))
                            .collect();
                        let (mut a, mut b) = (vec![0i32; count * n], vec![0i32; count * n]);
                        (k.i8_batch_block)(&probes, &rows, stride, &mut a);
                        (reference.i8_batch_block)(&probes, &rows, stride, &mut b);
                        assert_eq!(a, b, "{} dim {dim} probes {count} rows {n}", k.name);
                        for (bi, out) in b.chunks_exact(n).enumerate() {
                            for (j, &o) in out.iter().enumerate() {
                                let want: i32 = probes
                                    .probe(bi)
                                    .iter()
                                    .zip(&rows[j * stride..j * stride + dim])
                                    .map(|(&x, &y)| i32::from(x) * i32::from(y))
                                    .sum();
                                assert_eq!(o, want);
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn batch_kernel_extremes_do_not_saturate() {
        // |q| = 64 against r = +-127 (r + 128 = 255 or 1): every maddubs pair
        // sum reaches +-2 * 255 * 64 = +-32640, the largest the kernel allows.
        let dim = 515;
        let signs = [1.0f32, -1.0];
        let raw: Vec<f32> = signs
            .iter()
            .flat_map(|&s| vec![s; dim])
            .chain((0..dim).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }))
            .collect();
        let probes = NarrowProbes::quantize(dim, raw.chunks_exact(dim));
        assert!(probes.all().iter().all(|&x| x.abs() == NARROW_MAX));
        let rows: Vec<i8> = [127i8, -127]
            .iter()
            .flat_map(|&x| vec![x; dim])
            .chain((0..dim).map(|i| if i % 2 == 0 { 127 } else { -127 }))
            .collect();
        let n = 3;
        for k in Kernels::available() {
            let mut out = vec![0i32; probes.len() * n];
            (k.i8_batch_block)(&probes, &rows, dim, &mut out);
            for (b, out) in out.chunks_exact(n).enumerate() {
                for (j, &o) in out.iter().enumerate() {
                    let want: i32 = probes
                        .probe(b)
                        .iter()
                        .zip(&rows[j * dim..(j + 1) * dim])
                        .map(|(&x, &y)| i32::from(x) * i32::from(y))
                        .sum();
                    assert_eq!(o, want, "{} probe {b} row {j}", k.name);
                }
            }
            assert_eq!(out[0], 64 * 127 * dim as i32, "{}", k.name);
            assert_eq!(out[1], -64 * 127 * dim as i32, "{}", k.name);
        }
    }

    #[test]
    fn narrow_quantisation_uses_the_full_7_bit_range() {
        let v = [0.5f32, -0.25, 0.125, -0.5, 0.0];
        let p = NarrowProbes::quantize(5, [&v[..], &[0.0; 5][..]]);
        assert_eq!(p.probe(0), [64, -32, 16, -64, 0]);
        assert_eq!(p.sum(0), -16);
        for (x, &q) in v.iter().zip(p.probe(0)) {
            assert!((x - f32::from(q) * p.scale(0)).abs() <= p.scale(0) / 2.0 + 1e-7);
        }
        assert_eq!(p.probe(1), [0; 5]);
        assert_eq!(p.scale(1), 0.0);
    }

    #[test]
    #[should_panic(expected = "rows slice too short")]
    fn short_rows_are_refused_not_read_by_the_batch_kernel() {
        let k = Kernels::detect();
        let probes = NarrowProbes::quantize(64, [&[0.5; 64][..]]);
        let mut out = [0; 2];
        (k.i8_batch_block)(&probes, &[1; 100], 64, &mut out);
    }

    #[test]
    #[should_panic(expected = "rows slice too short")]
    fn short_rows_are_refused_not_read() {
        let k = Kernels::detect();
        let mut out = [0; 2];
        (k.i8_block)(&[1; 64], &[1; 100], 64, &mut out);
    }
}
