//! AVX2 + FMA + F16C kernels for x86-64.
//!
//! int8 uses the sign trick: `maddubs(|p|, sign(r, p))` multiplies unsigned
//! |p| by signed r·sign(p) into 16-bit pair sums. With |p|, |r| <= 127 a pair
//! sum is at most 2·127·128 < 32767, so nothing saturates (quantisation never
//! emits -128, and a corrupt -128 still cannot overflow).
//!
//! The int8 batch kernel is register blocked: a micro-kernel scores `P`
//! probes against `R` rows with `P * R` accumulators, so each 32-byte row
//! chunk is loaded and sign-flipped once for `P` probes and each probe chunk
//! is loaded once for `R` rows (see [`super::I8BatchBlock`] for the
//! arithmetic). The multiply pipes, not the loads, are the limit: `maddubs`
//! and `madd` share two pipes on Zen 3, so one probe-row pair costs at least
//! one cycle per 32 bytes, and blocking only has to keep those pipes fed.
//! On the 2-core Zen 3 development VM, 4 x 2, 6 x 2 and 3 x 3 measured alike
//! (within the machine's noise) and well ahead of 2 x 4, 3 x 4 and 8 x 1;
//! 4 x 2 also divides the usual batch sizes without a remainder.

use std::arch::x86_64::*;

use half::f16;

use super::{Kernels, NarrowProbes};

/// The AVX2 kernel set, if this processor has AVX2, FMA and F16C.
pub fn avx2() -> Option<Kernels> {
    (is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"))
    .then_some(Kernels {
        name: "avx2",
        wide_batch_probes: false,
        i8_block,
        i8_batch_block,
        f16_block,
        f32_block,
    })
}

// The safe wrappers below are only reachable through `avx2()`, which returns
// them only after the features were detected; `check_block` guarantees the
// bounds the unchecked loads rely on.

fn i8_block(probe: &[i8], rows: &[i8], stride: usize, out: &mut [i32]) {
    super::check_block(probe, rows, stride, out);
    for (j, o) in out.iter_mut().enumerate() {
        // SAFETY: features detected (see above); row j has probe.len() elements.
        *o = unsafe { dot_i8(probe, rows.as_ptr().add(j * stride)) };
    }
}

fn i8_batch_block(probes: &NarrowProbes, rows: &[i8], stride: usize, out: &mut [i32]) {
    let n = super::check_batch(probes, rows, stride, out);
    if n == 0 {
        return;
    }
    // SAFETY: features detected (see above); `check_batch` guarantees that
    // rows 0..n each have probes.dim() readable elements at `j * stride`, and
    // out has probes.len() * n elements.
    unsafe { batch_i8(probes, rows.as_ptr(), stride, n, out.as_mut_ptr()) }
}

fn f16_block(probe: &[f32], rows: &[f16], stride: usize, out: &mut [f32]) {
    super::check_block(probe, rows, stride, out);
    for (j, o) in out.iter_mut().enumerate() {
        // SAFETY: as above.
        *o = unsafe { dot_f16(probe, rows.as_ptr().add(j * stride)) };
    }
}

fn f32_block(probe: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    super::check_block(probe, rows, stride, out);
    for (j, o) in out.iter_mut().enumerate() {
        // SAFETY: as above.
        *o = unsafe { dot_f32(probe, rows.as_ptr().add(j * stride)) };
    }
}

#[target_feature(enable = "avx2")]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn hsum_f32(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0b01));
    _mm_cvtss_f32(s)
}

/// # Safety
/// AVX2 available; `row` points to at least `probe.len()` readable elements.
#[target_feature(enable = "avx2")]
unsafe fn dot_i8(probe: &[i8], row: *const i8) -> i32 {
    let n = probe.len();
    let p = probe.as_ptr();
    let ones = _mm256_set1_epi16(1);
    let (mut acc0, mut acc1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut i = 0;
    unsafe {
        while i + 64 <= n {
            let a0 = _mm256_loadu_si256(p.add(i).cast());
            let b0 = _mm256_loadu_si256(row.add(i).cast());
            let a1 = _mm256_loadu_si256(p.add(i + 32).cast());
            let b1 = _mm256_loadu_si256(row.add(i + 32).cast());
            let m0 = _mm256_maddubs_epi16(_mm256_sign_epi8(a0, a0), _mm256_sign_epi8(b0, a0));
            let m1 = _mm256_maddubs_epi16(_mm256_sign_epi8(a1, a1), _mm256_sign_epi8(b1, a1));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(m0, ones));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(m1, ones));
            i += 64;
        }
        while i + 32 <= n {
            let a = _mm256_loadu_si256(p.add(i).cast());
            let b = _mm256_loadu_si256(row.add(i).cast());
            let m = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(m, ones));
            i += 32;
        }
        let mut sum = hsum_i32(_mm256_add_epi32(acc0, acc1));
        while i < n {
            sum += i32::from(*p.add(i)) * i32::from(*row.add(i));
            i += 1;
        }
        sum
    }
}

/// # Safety
/// AVX2, FMA and F16C available; `row` points to at least `probe.len()` elements.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16(probe: &[f32], row: *const f16) -> f32 {
    let n = probe.len();
    let p = probe.as_ptr();
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    unsafe {
        while i + 16 <= n {
            let r0 = _mm256_cvtph_ps(_mm_loadu_si128(row.add(i).cast()));
            let r1 = _mm256_cvtph_ps(_mm_loadu_si128(row.add(i + 8).cast()));
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(i)), r0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(i + 8)), r1, acc1);
            i += 16;
        }
        let mut sum = hsum_f32(_mm256_add_ps(acc0, acc1));
        while i < n {
            sum += *p.add(i) * (*row.add(i)).to_f32();
            i += 1;
        }
        sum
    }
}

/// Probes per micro-kernel call in the batch kernel (with 2 rows per call:
/// 8 accumulators, 2 row operands, the probe operand and two constants fit
/// the 16 ymm registers).
const BATCH_P: usize = 4;

/// # Safety
/// AVX2 available; for `j < n`, `rows + j * stride` points to
/// `probes.dim()` readable elements; `out` points to `probes.len() * n`
/// writable elements.
#[target_feature(enable = "avx2")]
unsafe fn batch_i8(probes: &NarrowProbes, rows: *const i8, stride: usize, n: usize, out: *mut i32) {
    let count = probes.len();
    let mut b = 0;
    // SAFETY: each call covers probes b..b + P within the batch, and rows and
    // out as this function's contract states.
    unsafe {
        while count - b >= BATCH_P {
            probe_group::<BATCH_P, 2>(probes, b, rows, stride, n, out);
            b += BATCH_P;
        }
        // The remainder of the batch. A single probe is memory bound: one
        // row at a time (like the per-probe kernel) measured faster for it
        // than 2 or 4 rows at a time.
        match count - b {
            3 => probe_group::<3, 2>(probes, b, rows, stride, n, out),
            2 => probe_group::<2, 3>(probes, b, rows, stride, n, out),
            1 => probe_group::<1, 1>(probes, b, rows, stride, n, out),
            _ => {}
        }
    }
}

/// Probes `b0..b0 + P` against rows `0..n`, `R` rows per micro-kernel call
/// and the remainder one at a time.
///
/// # Safety
/// As [`batch_i8`], and `b0 + P <= probes.len()`.
#[target_feature(enable = "avx2")]
unsafe fn probe_group<const P: usize, const R: usize>(
    probes: &NarrowProbes,
    b0: usize,
    rows: *const i8,
    stride: usize,
    n: usize,
    out: *mut i32,
) {
    let dim = probes.dim();
    // From the whole batch, so that the pointer covers all P probes.
    let q = probes.all()[b0 * dim..].as_ptr();
    // dot(q, r) = dot(q, r + 128) - 128 * sum(q), in wrapping arithmetic: the
    // exact result fits in i32 whenever the true dot product does.
    let offsets: [i32; P] = std::array::from_fn(|b| probes.sum(b0 + b).wrapping_mul(128));
    let mut j = 0;
    // SAFETY: rows j..j + R (or j) are below n, so each has dim readable
    // elements; the q pointer covers probes b0..b0 + P (b0 + P <= count);
    // out indices are below count * n.
    unsafe {
        while j + R <= n {
            let dots = micro_i8::<P, R>(q, dim, rows.add(j * stride), stride);
            for (b, (d, off)) in dots.iter().zip(&offsets).enumerate() {
                for (k, &x) in d.iter().enumerate() {
                    *out.add((b0 + b) * n + j + k) = x.wrapping_sub(*off);
                }
            }
            j += R;
        }
        while j < n {
            let dots = micro_i8::<P, 1>(q, dim, rows.add(j * stride), stride);
            for (b, (d, off)) in dots.iter().zip(&offsets).enumerate() {
                *out.add((b0 + b) * n + j) = d[0].wrapping_sub(*off);
            }
            j += 1;
        }
    }
}

/// `dot(q_b, r_k + 128)` for `P` consecutive probes of `dim` elements at `q`
/// and `R` rows at `rows + k * stride`. The loops over `P` and `R` have
/// constant bounds, so the compiler unrolls them and keeps the accumulators
/// in registers.
///
/// The results are exact only if every |element| of the probes is at most 64
/// (as [`NarrowProbes`] guarantees); larger ones saturate `maddubs`.
///
/// # Safety
/// AVX2 available; `q` points to `P * dim` readable elements; each row
/// points to `dim` readable elements.
#[target_feature(enable = "avx2")]
unsafe fn micro_i8<const P: usize, const R: usize>(
    q: *const i8,
    dim: usize,
    rows: *const i8,
    stride: usize,
) -> [[i32; R]; P] {
    let flip = _mm256_set1_epi8(i8::MIN);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); R]; P];
    let mut i = 0;
    // SAFETY: every load reads elements i..i + 32 <= dim (or element i < dim)
    // of a row or probe, within what the contract makes readable.
    unsafe {
        while i + 32 <= dim {
            let r: [__m256i; R] = std::array::from_fn(|k| {
                _mm256_xor_si256(_mm256_loadu_si256(rows.add(k * stride + i).cast()), flip)
            });
            for (b, acc) in acc.iter_mut().enumerate() {
                let p = _mm256_loadu_si256(q.add(b * dim + i).cast());
                for (a, &r) in acc.iter_mut().zip(&r) {
                    // u8 (r + 128) x i8 (|q| <= 64): pair sums <= 32640, exact.
                    let pairs = _mm256_maddubs_epi16(r, p);
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(pairs, ones));
                }
            }
            i += 32;
        }
        let mut dots = reduce::<P, R>(&acc);
        for i in i..dim {
            for (b, d) in dots.iter_mut().enumerate() {
                let p = i32::from(*q.add(b * dim + i));
                for (k, d) in d.iter_mut().enumerate() {
                    let r = i32::from(*rows.add(k * stride + i)) + 128;
                    *d = d.wrapping_add(p * r);
                }
            }
        }
        dots
    }
}

/// The horizontal sums of `P * R` accumulators, four at a time through a
/// `hadd` tree (3 `hadd`, an extract and an add for four sums, where four
/// separate horizontal sums take 24 operations): a 512-byte row is only 16
/// chunks long, so the reduction is not negligible.
#[target_feature(enable = "avx2")]
pub(super) fn reduce<const P: usize, const R: usize>(acc: &[[__m256i; R]; P]) -> [[i32; R]; P] {
    let at = |k: usize| acc[k / R][k % R];
    let mut sums = [[0i32; R]; P];
    let mut k = 0;
    while k + 4 <= P * R {
        let h01 = _mm256_hadd_epi32(at(k), at(k + 1));
        let h23 = _mm256_hadd_epi32(at(k + 2), at(k + 3));
        let h = _mm256_hadd_epi32(h01, h23);
        let s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        let mut four = [0i32; 4];
        // SAFETY: `four` has room for the 16 bytes stored.
        unsafe { _mm_storeu_si128(four.as_mut_ptr().cast(), s) };
        for (m, &x) in four.iter().enumerate() {
            sums[(k + m) / R][(k + m) % R] = x;
        }
        k += 4;
    }
    while k < P * R {
        // SAFETY: AVX2 is enabled in this function.
        sums[k / R][k % R] = unsafe { hsum_i32(at(k)) };
        k += 1;
    }
    sums
}

/// # Safety
/// AVX2 and FMA available; `row` points to at least `probe.len()` elements.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_f32(probe: &[f32], row: *const f32) -> f32 {
    let n = probe.len();
    let p = probe.as_ptr();
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    unsafe {
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(i)), _mm256_loadu_ps(row.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(p.add(i + 8)),
                _mm256_loadu_ps(row.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        let mut sum = hsum_f32(_mm256_add_ps(acc0, acc1));
        while i < n {
            sum += *p.add(i) * *row.add(i);
            i += 1;
        }
        sum
    }
}
