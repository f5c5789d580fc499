//! AVX2 + FMA + F16C kernels for x86-64.
//!
//! int8 uses the sign trick: `maddubs(|p|, sign(r, p))` multiplies unsigned
//! |p| by signed r·sign(p) into 16-bit pair sums. With |p|, |r| <= 127 a pair
//! sum is at most 2·127·128 < 32767, so nothing saturates (quantisation never
//! emits -128, and a corrupt -128 still cannot overflow).

use std::arch::x86_64::*;

use half::f16;

use super::Kernels;

/// The AVX2 kernel set, if this processor has AVX2, FMA and F16C.
pub fn avx2() -> Option<Kernels> {
    (is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c"))
    .then_some(Kernels {
        name: "avx2",
        i8_block,
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
