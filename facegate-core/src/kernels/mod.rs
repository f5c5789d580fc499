//! Dot-product kernels for the CPU scan, chosen once at run time.
//!
//! Each kernel scores one probe against a block of consecutive rows (one
//! indirect call per block rather than per row). The AVX2 versions are picked
//! when the processor has AVX2, FMA and F16C; the portable versions are the
//! reference they are tested against and the fallback everywhere else.
//! (AVX-512 VNNI would double the int8 rate again; it is not written yet
//! because no machine here has it to test on.)

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use half::f16;

/// int8 probe against int8 rows: exact integer dot products.
pub type I8Block = fn(probe: &[i8], rows: &[i8], stride: usize, out: &mut [i32]);
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
    /// int8 scan kernel.
    pub i8_block: I8Block,
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
    #[should_panic(expected = "rows slice too short")]
    fn short_rows_are_refused_not_read() {
        let k = Kernels::detect();
        let mut out = [0; 2];
        (k.i8_block)(&[1; 64], &[1; 100], 64, &mut out);
    }
}
