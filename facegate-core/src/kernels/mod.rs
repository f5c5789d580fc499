//! Dot-product kernels for the CPU scan, chosen once at run time.
//!
//! Each kernel scores one probe against a block of consecutive rows (one
//! indirect call per block rather than per row), except the int8 batch kernel
//! [`I8BatchBlock`], which scores every probe of a batch against the block so
//! that each loaded row chunk serves several probes and each probe chunk
//! several rows. [`Kernels::detect`] picks, fastest first: AVX-512 VNNI
//! (`vpdpbusd` on 512 bits for the int8 batch kernel, with one probe per
//! 32-bit lane from 16 probes on), AVX-VNNI (the same on 256 bits), AVX2
//! with FMA and F16C, and the portable kernels, which are the reference the
//! others are tested against bit for bit (int8) and the fallback everywhere
//! else. The environment variable `FACEGATE_KERNELS`
//! (see [`KERNELS_ENV`]) forces one of them, to compare them on one machine.

mod portable;
mod probe_lanes;
#[cfg(target_arch = "x86_64")]
mod vnni;
#[cfg(target_arch = "x86_64")]
mod vnni_lanes;
#[cfg(target_arch = "x86_64")]
mod vnni_lanes_ymm;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

use half::f16;

use probe_lanes::ProbeLanes;

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

/// Rows per call of the int8 batch kernel in the CPU engine's scan: every
/// probe of a batch is scored against one tile before the next, so the tile
/// (32 x 512 B = 16 KiB) stays in L1 while the probes stream from L2.
pub const BATCH_TILE_ROWS: usize = 32;

/// How many tiles ahead of the one being scored the int8 batch scan asks
/// for rows with [`prefetch`].
pub const PREFETCH_TILES: usize = 2;

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
    /// Whether `i8_batch_block` is exact for any 8-bit probe, not only the
    /// 7-bit ones [`NarrowProbes`] makes: true where no 16-bit intermediate
    /// can saturate (portable, VNNI), false for AVX2's `maddubs`. Tests check
    /// the wider contract where it is claimed.
    pub wide_batch_probes: bool,
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
    /// The fastest kernels this processor supports, unless the environment
    /// variable [`KERNELS_ENV`] names another set that it supports (to
    /// measure one against another on the same machine). A name that is
    /// unknown or not supported here is reported on stderr once and ignored:
    /// a process must not fail to search over a tuning switch.
    pub fn detect() -> Kernels {
        let best = Kernels::available()
            .pop()
            .expect("the portable kernels are always available");
        match std::env::var(KERNELS_ENV) {
            Ok(name) if !name.is_empty() => Kernels::by_name(&name).unwrap_or_else(|| {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    eprintln!(
                        "{KERNELS_ENV}={name:?}: not a kernel set this processor supports \
                         ({}); using {}",
                        Kernels::available()
                            .iter()
                            .map(|k| k.name)
                            .collect::<Vec<_>>()
                            .join(", "),
                        best.name
                    );
                });
                best
            }),
            _ => best,
        }
    }

    /// The kernel set called `name`, if this processor supports it.
    pub fn by_name(name: &str) -> Option<Kernels> {
        Kernels::available().into_iter().find(|k| k.name == name)
    }

    /// Plain Rust kernels: the reference, and the fallback on any processor.
    pub fn portable() -> Kernels {
        Kernels {
            name: "portable",
            wide_batch_probes: true,
            i8_block: portable::i8_block,
            i8_batch_block: portable::i8_batch_block,
            f16_block: portable::f16_block,
            f32_block: portable::f32_block,
        }
    }

    /// Every kernel set usable on this processor, slowest first (for tests,
    /// benchmarks and [`Kernels::detect`], which takes the last).
    pub fn available() -> Vec<Kernels> {
        let mut v = vec![Kernels::portable()];
        #[cfg(target_arch = "x86_64")]
        {
            v.extend(x86::avx2());
            v.extend(vnni::avx256());
            v.extend(vnni::avx512_ymm());
            v.extend(vnni::avx512());
        }
        v
    }

    /// One f32 · f16 dot product.
    pub fn dot_f16(&self, probe: &[f32], row: &[f16]) -> f32 {
        let mut out = [0.0];
        (self.f16_block)(probe, row, row.len(), &mut out);
        out[0]
    }
}

/// The environment variable that makes [`Kernels::detect`] choose a kernel
/// set by name (`portable`, `avx2`, `avxvnni`, `avx512vnni-ymm`,
/// `avx512vnni`) instead of the fastest: `FACEGATE_KERNELS=avx2` measures
/// the AVX2 path on a VNNI machine.
pub const KERNELS_ENV: &str = "FACEGATE_KERNELS";

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
    /// The same probes one per 32-bit lane, built for the lane kernel the
    /// first time it scores this batch (then shared by every tile).
    lanes: OnceLock<ProbeLanes>,
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
            lanes: OnceLock::new(),
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

    /// The probes laid out one per 32-bit lane, built on first use.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn lanes(&self) -> &ProbeLanes {
        self.lanes.get_or_init(|| ProbeLanes::new(self))
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
                // 1..=9 cover the row-per-register kernels' probe groups;
                // from 16 the lane kernel takes over (one group of 16, partial
                // groups, an odd number of groups).
                for count in (1..=9).chain([16, 17, 33, 50]) {
                    // Row counts that are not multiples of any micro-kernel's
                    // rows, and more than the lane kernel's block of 32.
                    for n in [1usize, 2, 3, 5, 7, 9, 32, 41] {
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

    /// Probes with given elements, bypassing the 7-bit quantisation, to test
    /// kernels that claim `wide_batch_probes` with full 8-bit probes.
    fn raw_probes(dim: usize, q: Vec<i8>) -> NarrowProbes {
        let sums = q
            .chunks_exact(dim)
            .map(|p| p.iter().map(|&x| i32::from(x)).sum())
            .collect();
        let scales = vec![1.0; q.len() / dim];
        NarrowProbes {
            dim,
            q,
            sums,
            scales,
            lanes: OnceLock::new(),
        }
    }

    /// Exact dot products, probe-major, in i64 (the definition, not a kernel).
    fn exact_dots(probes: &NarrowProbes, rows: &[i8], stride: usize, n: usize) -> Vec<i32> {
        let dim = probes.dim();
        (0..probes.len())
            .flat_map(|b| {
                (0..n).map(move |j| {
                    let d: i64 = probes
                        .probe(b)
                        .iter()
                        .zip(&rows[j * stride..j * stride + dim])
                        .map(|(&x, &y)| i64::from(x) * i64::from(y))
                        .sum();
                    i32::try_from(d).expect("fits")
                })
            })
            .collect()
    }

    /// Row patterns at the ends of the int8 range: all +127, all -128, both
    /// alternating, and uniform over every byte.
    fn extreme_rows(r: &mut impl Rng, n: usize, stride: usize, dim: usize) -> Vec<Vec<i8>> {
        let len = (n - 1) * stride + dim;
        vec![
            vec![127; len],
            vec![-128; len],
            (0..len)
                .map(|i| if i % 2 == 0 { 127 } else { -128 })
                .collect(),
            (0..len).map(|_| r.random::<i8>()).collect(),
        ]
    }

    /// Probe patterns: each extreme, alternating, and uniform, in the range
    /// `lo..=hi` (7-bit: -64..=64; 8-bit: -128..=127).
    fn extreme_probes(r: &mut impl Rng, count: usize, dim: usize, lo: i8, hi: i8) -> Vec<Vec<i8>> {
        vec![
            vec![hi; count * dim],
            vec![lo; count * dim],
            (0..count * dim)
                .map(|i| if i % 3 == 0 { lo } else { hi })
                .collect(),
            (0..count * dim).map(|_| r.random_range(lo..=hi)).collect(),
        ]
    }

    #[test]
    fn batch_kernels_match_portable_bit_for_bit_on_extremes() {
        let kernels = Kernels::available();
        let names: Vec<_> = kernels.iter().map(|k| k.name).collect();
        if !names.iter().any(|n| n.contains("vnni")) {
            eprintln!(
                "no VNNI on this processor: VNNI batch kernels skipped, testing {}",
                names.join(", ")
            );
        } else {
            eprintln!("batch kernels compared with portable: {}", names.join(", "));
        }
        let mut r = rng();
        let reference = Kernels::portable();
        for dim in [1usize, 31, 63, 64, 65, 100, 515] {
            let stride = dim.div_ceil(64) * 64 + 64 * (dim % 2);
            // 1..=9 probes cover every remainder of the 4-probe groups; the
            // row counts every remainder of the 2- and 4-row micro-kernels.
            // From 16 probes the lane kernel: whole and partial groups of
            // 16, its 8- and 16-row micro-kernels, single rows and row
            // blocks of 32.
            for (count, n) in [
                (1, 1),
                (2, 7),
                (3, 5),
                (5, 9),
                (7, 3),
                (9, 33),
                (16, 8),
                (16, 21),
                (17, 11),
                (33, 41),
            ] {
                for rows in extreme_rows(&mut r, n, stride, dim) {
                    for (bits, lo, hi) in [(7, -NARROW_MAX, NARROW_MAX), (8, i8::MIN, i8::MAX)] {
                        for q in extreme_probes(&mut r, count, dim, lo, hi) {
                            let probes = raw_probes(dim, q);
                            let want = exact_dots(&probes, &rows, stride, n);
                            let mut got = vec![0i32; count * n];
                            (reference.i8_batch_block)(&probes, &rows, stride, &mut got);
                            assert_eq!(got, want, "portable dim {dim} {bits}-bit");
                            for k in kernels.iter().filter(|k| bits == 7 || k.wide_batch_probes) {
                                got.fill(0);
                                (k.i8_batch_block)(&probes, &rows, stride, &mut got);
                                assert_eq!(
                                    got, want,
                                    "{} dim {dim} probes {count} rows {n} {bits}-bit probes",
                                    k.name
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn single_probe_kernels_match_portable_on_extremes() {
        // 8-bit probes, -128 included. Rows of -128 only with non-negative
        // probes: the AVX2 kernel's `sign` trick cannot negate -128, and the
        // gallery reader refuses int8 rows holding it.
        let mut r = rng();
        let reference = Kernels::portable();
        for dim in [1usize, 33, 64, 515] {
            let stride = dim.div_ceil(64) * 64;
            let n = 3;
            let rows_all = extreme_rows(&mut r, n, stride, dim);
            for (ri, rows) in rows_all.iter().enumerate() {
                let lo = if rows.contains(&i8::MIN) { 0 } else { i8::MIN };
                for q in extreme_probes(&mut r, 1, dim, lo, i8::MAX) {
                    let (mut a, mut b) = (vec![0i32; n], vec![0i32; n]);
                    (reference.i8_block)(&q, rows, stride, &mut b);
                    let want = exact_dots(&raw_probes(dim, q.clone()), rows, stride, n);
                    assert_eq!(b, want, "portable dim {dim} rows {ri}");
                    for k in Kernels::available() {
                        (k.i8_block)(&q, rows, stride, &mut a);
                        assert_eq!(a, b, "{} i8 dim {dim} rows {ri}", k.name);
                    }
                }
            }
        }
    }

    #[test]
    fn forced_kernel_names_are_found() {
        for k in Kernels::available() {
            assert_eq!(Kernels::by_name(k.name).map(|x| x.name), Some(k.name));
        }
        assert!(Kernels::by_name("no-such-kernels").is_none());
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
