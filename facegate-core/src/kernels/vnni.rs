//! int8 batch kernels on VNNI (`vpdpbusd`) for x86-64: the 512-bit form of
//! AVX-512 VNNI, and the 256-bit form for processors that have only AVX-VNNI
//! (Intel Alder Lake and later client cores without AVX-512).
//!
//! `vpdpbusd` multiplies unsigned bytes by signed bytes and adds each group
//! of four products to a 32-bit lane in one instruction, with no 16-bit
//! intermediate: where AVX2 needs `maddubs` + `madd` + `add` for 32 bytes,
//! this does 64 (or 32) bytes in one. Like the AVX2 batch kernel (see
//! [`super::I8BatchBlock`]) the rows are made unsigned by flipping their sign
//! bit (`r ^ 0x80 = r + 128`) once per chunk for every probe of a
//! micro-kernel, and `dot(q, r) = dot(q, r + 128) - 128 * sum(q)` restores
//! the exact result. Since nothing is narrower than 32 bits, any 8-bit probe
//! (-128 included) and any row byte is exact: the 7-bit bound of
//! [`super::NarrowProbes`] is only needed by the AVX2 kernel.
//!
//! The 512-bit set hands batches of 16 probes or more to
//! [`super::vnni_lanes`], which puts one probe in each lane instead of one
//! row in each register: on an Intel core that issues two `vpdpbusd` a
//! cycle, 1.6-1.7x as fast in the scan at 256 probes (about 2x on a tile
//! held in L1). The 256-bit sets do the same with
//! [`super::vnni_lanes_ymm`] (1.4-1.6x at 64 and 256 probes on Zen 4).
//!
//! The other kernels (one probe, f16, f32) are the AVX2 ones: they are bound
//! by memory bandwidth or by `FMA`, which VNNI does not change.

use std::arch::x86_64::*;

use super::{Kernels, NarrowProbes, vnni_lanes, vnni_lanes_ymm, x86};

/// The AVX-512 VNNI kernel set (512-bit `vpdpbusd`), if this processor has
/// AVX-512 F, BW and VNNI as well as what the AVX2 set needs.
pub fn avx512() -> Option<Kernels> {
    let base = x86::avx2()?;
    (is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni"))
    .then_some(Kernels {
        name: "avx512vnni",
        wide_batch_probes: true,
        i8_batch_block: batch_zmm,
        ..base
    })
}

/// The 256-bit VNNI kernel set in its AVX-VNNI (VEX) encoding, for
/// processors that have AVX-VNNI but not AVX-512.
pub fn avx256() -> Option<Kernels> {
    let base = x86::avx2()?;
    is_x86_feature_detected!("avxvnni").then_some(Kernels {
        name: "avxvnni",
        wide_batch_probes: true,
        i8_batch_block: batch_ymm_vex,
        ..base
    })
}

/// The same 256-bit kernel in its AVX-512 VL (EVEX) encoding: identical
/// code but for the instruction's encoding, so that AVX-512 machines test
/// (and can measure) the 256-bit kernel that AVX-VNNI machines run.
pub fn avx512_ymm() -> Option<Kernels> {
    let base = x86::avx2()?;
    (is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")).then_some(
        Kernels {
            name: "avx512vnni-ymm",
            wide_batch_probes: true,
            i8_batch_block: batch_ymm_evex,
            ..base
        },
    )
}

// The safe wrappers below are reachable only through the constructors above,
// which return them after the features were detected; `check_batch`
// guarantees the bounds the unchecked loads rely on.

fn batch_zmm(probes: &NarrowProbes, rows: &[i8], stride: usize, out: &mut [i32]) {
    let n = super::check_batch(probes, rows, stride, out);
    // SAFETY: features detected (see above); rows 0..n each have probes.dim()
    // readable elements at j * stride, and out has probes.len() * n elements.
    unsafe {
        if probes.len() >= vnni_lanes::MIN_PROBES {
            vnni_lanes::batch(probes, rows.as_ptr(), stride, n, out.as_mut_ptr())
        } else {
            batch::<Zmm, ZMM_P, ZMM_R>(probes, rows.as_ptr(), stride, n, out.as_mut_ptr())
        }
    }
}

fn batch_ymm_vex(probes: &NarrowProbes, rows: &[i8], stride: usize, out: &mut [i32]) {
    let n = super::check_batch(probes, rows, stride, out);
    // SAFETY: as in `batch_zmm`.
    unsafe {
        if probes.len() >= vnni_lanes_ymm::MIN_PROBES {
            vnni_lanes_ymm::vex::batch(probes, rows.as_ptr(), stride, n, out.as_mut_ptr())
        } else {
            batch::<YmmVex, YMM_P, YMM_R>(probes, rows.as_ptr(), stride, n, out.as_mut_ptr())
        }
    }
}

fn batch_ymm_evex(probes: &NarrowProbes, rows: &[i8], stride: usize, out: &mut [i32]) {
    let n = super::check_batch(probes, rows, stride, out);
    // SAFETY: as in `batch_zmm`.
    unsafe {
        if probes.len() >= vnni_lanes_ymm::MIN_PROBES {
            vnni_lanes_ymm::evex::batch(probes, rows.as_ptr(), stride, n, out.as_mut_ptr())
        } else {
            batch::<YmmEvex, YMM_P, YMM_R>(probes, rows.as_ptr(), stride, n, out.as_mut_ptr())
        }
    }
}

/// Probes x rows per 512-bit micro-kernel call: 16 accumulators, 4 row
/// operands, a probe operand and the sign-flip constant use 22 of the 32
/// zmm registers.
const ZMM_P: usize = 4;
/// See [`ZMM_P`].
const ZMM_R: usize = 4;
/// Probes x rows per 256-bit micro-kernel call (16 ymm registers): as the
/// AVX2 kernel, 8 accumulators, 2 row operands, a probe and a constant.
const YMM_P: usize = 4;
/// See [`YMM_P`].
const YMM_R: usize = 2;

/// A micro-kernel: `dot(q_b, r_k + 128)` for `P` consecutive probes of `dim`
/// elements at `q` and `R` rows at `rows + k * stride`.
trait Micro {
    /// # Safety
    /// The kernel's features are available; `q` points to `P * dim` readable
    /// elements and each row to `dim`.
    unsafe fn dots<const P: usize, const R: usize>(
        q: *const i8,
        dim: usize,
        rows: *const i8,
        stride: usize,
    ) -> [[i32; R]; P];
}

/// The 512-bit AVX-512 VNNI micro-kernel.
struct Zmm;
/// The 256-bit micro-kernel, AVX-VNNI encoding.
struct YmmVex;
/// The 256-bit micro-kernel, AVX-512 VL encoding.
struct YmmEvex;

/// Each micro-kernel type calls its function, whose target features make it
/// one encoding or the other.
macro_rules! micro_impl {
    ($ty:ty, $f:ident) => {
        impl Micro for $ty {
            #[inline]
            unsafe fn dots<const P: usize, const R: usize>(
                q: *const i8,
                dim: usize,
                rows: *const i8,
                stride: usize,
            ) -> [[i32; R]; P] {
                // SAFETY: the trait's contract is the function's.
                unsafe { $f::<P, R>(q, dim, rows, stride) }
            }
        }
    };
}

micro_impl!(Zmm, micro_zmm);
micro_impl!(YmmVex, micro_ymm_vex);
micro_impl!(YmmEvex, micro_ymm_evex);

/// Every probe against rows `0..n`, `P` probes at a time and the remainder
/// of the batch in one smaller group.
///
/// # Safety
/// `M`'s features available; for `j < n`, `rows + j * stride` points to
/// `probes.dim()` readable elements; `out` to `probes.len() * n` writable.
unsafe fn batch<M: Micro, const P: usize, const R: usize>(
    probes: &NarrowProbes,
    rows: *const i8,
    stride: usize,
    n: usize,
    out: *mut i32,
) {
    let count = probes.len();
    let mut b = 0;
    // SAFETY: each group covers probes within the batch; rows and out as
    // this function's contract states.
    unsafe {
        while count - b >= P {
            group::<M, P, R>(probes, b, rows, stride, n, out);
            b += P;
        }
        while count - b >= 4 {
            group::<M, 4, R>(probes, b, rows, stride, n, out);
            b += 4;
        }
        // A single probe is memory bound: one row at a time, as in AVX2.
        match count - b {
            0 => {}
            1 => group::<M, 1, 1>(probes, b, rows, stride, n, out),
            2 => group::<M, 2, R>(probes, b, rows, stride, n, out),
            _ => group::<M, 3, R>(probes, b, rows, stride, n, out),
        }
    }
}

/// Probes `b0..b0 + P` against rows `0..n`, `R` rows per micro-kernel call
/// and the remainder one at a time; subtracts `128 * sum(q)` (wrapping: the
/// exact result fits in i32 whenever the true dot product does).
///
/// # Safety
/// As [`batch`], and `b0 + P <= probes.len()`.
unsafe fn group<M: Micro, const P: usize, const R: usize>(
    probes: &NarrowProbes,
    b0: usize,
    rows: *const i8,
    stride: usize,
    n: usize,
    out: *mut i32,
) {
    let dim = probes.dim();
    let q = probes.all()[b0 * dim..].as_ptr();
    let offsets: [i32; P] = std::array::from_fn(|b| probes.sum(b0 + b).wrapping_mul(128));
    let mut j = 0;
    // SAFETY: rows j..j + R (or j) are below n; q covers probes b0..b0 + P;
    // out indices are below probes.len() * n.
    unsafe {
        while j + R <= n {
            let dots = M::dots::<P, R>(q, dim, rows.add(j * stride), stride);
            for (b, (d, off)) in dots.iter().zip(&offsets).enumerate() {
                for (k, &x) in d.iter().enumerate() {
                    *out.add((b0 + b) * n + j + k) = x.wrapping_sub(*off);
                }
            }
            j += R;
        }
        while j < n {
            let dots = M::dots::<P, 1>(q, dim, rows.add(j * stride), stride);
            for (b, (d, off)) in dots.iter().zip(&offsets).enumerate() {
                *out.add((b0 + b) * n + j) = d[0].wrapping_sub(*off);
            }
            j += 1;
        }
    }
}

/// The 512-bit micro-kernel ([`Micro::dots`]). The last `dim % 64` bytes
/// are read with masked loads, which never touch the bytes masked off: a
/// masked probe byte is 0, so the row byte beside it adds nothing.
///
/// # Safety
/// AVX-512 F, BW and VNNI available; as [`Micro::dots`].
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn micro_zmm<const P: usize, const R: usize>(
    q: *const i8,
    dim: usize,
    rows: *const i8,
    stride: usize,
) -> [[i32; R]; P] {
    let flip = _mm512_set1_epi8(i8::MIN);
    let mut acc = [[_mm512_setzero_si512(); R]; P];
    let mut i = 0;
    // SAFETY: the plain loads read elements i..i + 64 <= dim of a row or
    // probe; the masked ones only elements below dim.
    unsafe {
        while i + 64 <= dim {
            step_zmm(&mut acc, !0, q.add(i), dim, rows.add(i), stride, flip);
            i += 64;
        }
        if i < dim {
            let mask = (1u64 << (dim - i)) - 1;
            step_zmm(&mut acc, mask, q.add(i), dim, rows.add(i), stride, flip);
        }
    }
    reduce_zmm(&acc)
}

/// One 64-byte step of [`micro_zmm`]: the bytes under `mask` of each row
/// (sign-flipped) times those of each probe, into the accumulators. With an
/// all-ones mask the compiler emits plain loads.
///
/// # Safety
/// AVX-512 F, BW and VNNI available; the masked bytes of `q + b * dim` and
/// `rows + k * stride` are readable for `b < P`, `k < R`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn step_zmm<const P: usize, const R: usize>(
    acc: &mut [[__m512i; R]; P],
    mask: __mmask64,
    q: *const i8,
    dim: usize,
    rows: *const i8,
    stride: usize,
    flip: __m512i,
) {
    // SAFETY: as the contract states.
    unsafe {
        let r: [__m512i; R] = std::array::from_fn(|k| {
            _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, rows.add(k * stride)), flip)
        });
        for (b, acc) in acc.iter_mut().enumerate() {
            let p = _mm512_maskz_loadu_epi8(mask, q.add(b * dim));
            for (a, &r) in acc.iter_mut().zip(&r) {
                *a = _mm512_dpbusd_epi32(*a, r, p);
            }
        }
    }
}

/// The horizontal sums of `P * R` 512-bit accumulators, sixteen at a time
/// through [`sum16`] (42 shuffles and adds for sixteen sums, where sixteen
/// separate reductions take about 130): a 512-byte row is only 8 chunks
/// long, so the reduction is a sizeable part of a micro-kernel call.
#[target_feature(enable = "avx512f")]
fn reduce_zmm<const P: usize, const R: usize>(acc: &[[__m512i; R]; P]) -> [[i32; R]; P] {
    let mut sums = [[0i32; R]; P];
    let mut k = 0;
    while k < P * R {
        let v: [__m512i; 16] = std::array::from_fn(|m| {
            let s = k + m;
            if s < P * R {
                acc[s / R][s % R]
            } else {
                _mm512_setzero_si512()
            }
        });
        let s16 = sum16(v);
        for (m, &x) in s16.iter().enumerate().take(P * R - k) {
            sums[(k + m) / R][(k + m) % R] = x;
        }
        k += 16;
    }
    sums
}

/// The sums of the 16 lanes of each of 16 vectors, in order. Two rounds of
/// 128-bit block shuffles leave block `k` of vector `i` holding four partial
/// sums of source `4i + k`; a 4 x 4 transpose-and-add within blocks then
/// leaves lane `4k + m` holding the sum of source `4m + k`.
#[target_feature(enable = "avx512f")]
fn sum16(v: [__m512i; 16]) -> [i32; 16] {
    // [a0 + a2, a1 + a3, b0 + b2, b1 + b3] (128-bit blocks).
    let a: [__m512i; 8] = std::array::from_fn(|i| {
        let (x, y) = (v[2 * i], v[2 * i + 1]);
        _mm512_add_epi32(
            _mm512_shuffle_i64x2::<0x44>(x, y),
            _mm512_shuffle_i64x2::<0xEE>(x, y),
        )
    });
    // [c0 + c1, c2 + c3, d0 + d1, d2 + d3]: block k is source 4i + k.
    let b: [__m512i; 4] = std::array::from_fn(|i| {
        let (x, y) = (a[2 * i], a[2 * i + 1]);
        _mm512_add_epi32(
            _mm512_shuffle_i64x2::<0x88>(x, y),
            _mm512_shuffle_i64x2::<0xDD>(x, y),
        )
    });
    let t0 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(b[0], b[1]),
        _mm512_unpackhi_epi32(b[0], b[1]),
    );
    let t1 = _mm512_add_epi32(
        _mm512_unpacklo_epi32(b[2], b[3]),
        _mm512_unpackhi_epi32(b[2], b[3]),
    );
    let s = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
    let mut lanes = [0i32; 16];
    // SAFETY: `lanes` has room for the 64 bytes stored.
    unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), s) };
    std::array::from_fn(|src| lanes[4 * (src % 4) + src / 4])
}

/// Defines a 256-bit micro-kernel ([`Micro::dots`]) for one encoding of
/// 256-bit `vpdpbusd`: the VEX form needs AVX-VNNI, the EVEX form AVX-512
/// VNNI and VL. The body is the same, so one macro keeps them identical.
macro_rules! micro_ymm {
    ($name:ident, $features:literal, $dpbusd:ident) => {
        /// The 256-bit micro-kernel ([`Micro::dots`]); the last `dim % 32`
        /// bytes are scored in scalar code (AVX-VNNI has no masked loads).
        ///
        /// # Safety
        #[doc = concat!("`", $features, "` available; as [`Micro::dots`].")]
        #[target_feature(enable = $features)]
        unsafe fn $name<const P: usize, const R: usize>(
            q: *const i8,
            dim: usize,
            rows: *const i8,
            stride: usize,
        ) -> [[i32; R]; P] {
            let flip = _mm256_set1_epi8(i8::MIN);
            let mut acc = [[_mm256_setzero_si256(); R]; P];
            let mut i = 0;
            // SAFETY: every load reads elements i..i + 32 <= dim (or
            // element i < dim) of a row or probe.
            unsafe {
                while i + 32 <= dim {
                    let r: [__m256i; R] = std::array::from_fn(|k| {
                        let row = _mm256_loadu_si256(rows.add(k * stride + i).cast());
                        _mm256_xor_si256(row, flip)
                    });
                    for (b, acc) in acc.iter_mut().enumerate() {
                        let p = _mm256_loadu_si256(q.add(b * dim + i).cast());
                        for (a, &r) in acc.iter_mut().zip(&r) {
                            *a = $dpbusd(*a, r, p);
                        }
                    }
                    i += 32;
                }
                let mut dots = x86::reduce::<P, R>(&acc);
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
    };
}

micro_ymm!(micro_ymm_vex, "avx2,avxvnni", _mm256_dpbusd_avx_epi32);
micro_ymm!(
    micro_ymm_evex,
    "avx2,avx512vnni,avx512vl",
    _mm256_dpbusd_epi32
);
