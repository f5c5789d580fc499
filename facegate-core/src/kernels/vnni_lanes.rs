//! The AVX-512 VNNI batch kernel for batches of [`MIN_PROBES`] probes or
//! more: one probe in each 32-bit lane of a register, so that a `vpdpbusd`
//! scores 16 probes against one row and no horizontal sum is needed.
//!
//! The probes are laid out once per batch in groups of 16 lanes with their
//! sign bit flipped (`q ^ 0x80 = q + 128`, unsigned; [`ProbeLanes`]); a
//! row's next four bytes are broadcast to every lane (a load, no shuffle);
//! each lane ends holding `dot(q + 128, r) = dot(q, r) + 128 * sum(r)`, and
//! the row sums, taken once per call, restore the exact result for any
//! 8-bit probe and row byte, as in the row-per-register kernel
//! ([`super::vnni`]). Each 8 rows of a group are written through a
//! transpose, one 256-bit store a probe: the first version stored lane by
//! lane (128 scalar stores per 1,024 `vpdpbusd`) and was no faster than the
//! row-per-register kernel.
//!
//! Why: on the development VM's Intel Xeon (model 207), which issues two
//! 512-bit `vpdpbusd` a cycle from registers (`facegate-scan-bench`'s int8
//! peak), the row-per-register kernel reached 37-42 % of that rate in the
//! scan at 256 probes; this one 57-73 % (81-89 % on a tile held in L1;
//! docs/benchmarks.md). On Zen 4, which issues one a cycle, the
//! row-per-register kernel was already near that limit, and the two are
//! level (80-84 % of the peak at 256 probes). [`super::vnni_lanes_ymm`] is
//! the same design on 256 bits.

use std::arch::x86_64::*;

use super::NarrowProbes;
use super::probe_lanes::{LANES, ProbeLanes};

/// The smallest batch this kernel takes: below it most lanes would be idle,
/// and the row-per-register kernel is faster.
pub(super) const MIN_PROBES: usize = 16;
/// Probe groups per micro-kernel call.
const GROUPS: usize = 2;
/// Rows per micro-kernel call: `GROUPS * ROWS` accumulators, `GROUPS` probe
/// operands and up to `ROWS` broadcast rows fit the 32 zmm registers.
const ROWS: usize = 8;
/// Rows per call for a group alone (a batch of 16, or the odd group): 16
/// accumulators as with two groups, enough chains to keep both ports busy.
const SINGLE_ROWS: usize = 16;
/// Rows whose sums are taken at once (a stack array): the engine's tile.
const ROW_BLOCK: usize = 32;

/// Every probe against rows `0..n`.
///
/// # Safety
/// AVX-512 F, BW and VNNI available; for `j < n`, `rows + j * stride` points
/// to `probes.dim()` readable elements; `out` to `probes.len() * n` writable.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn batch(
    probes: &NarrowProbes,
    rows: *const i8,
    stride: usize,
    n: usize,
    out: *mut i32,
) {
    let lanes = probes.lanes();
    let groups = probes.len().div_ceil(LANES);
    let mut first = 0;
    while first < n {
        let len = ROW_BLOCK.min(n - first);
        let mut sums = [0i32; ROW_BLOCK];
        // SAFETY: rows first..first + len are below n (the contract).
        let block = unsafe { rows.add(first * stride) };
        for (k, s) in sums.iter_mut().take(len).enumerate() {
            // SAFETY: as above, row first + k has dim readable elements.
            *s = unsafe { row_sum(block.add(k * stride), probes.dim()) };
        }
        let (rows_at, out_at) = ((block, stride, len), (out, n, first));
        let mut g = 0;
        while g < groups {
            // SAFETY: the groups taken exist; rows and out as the contract.
            unsafe {
                if groups - g >= GROUPS {
                    rows_of::<GROUPS, ROWS>(probes, lanes, g, rows_at, &sums, out_at);
                    g += GROUPS;
                } else {
                    rows_of::<1, SINGLE_ROWS>(probes, lanes, g, rows_at, &sums, out_at);
                    g += 1;
                }
            }
        }
        first += len;
    }
}

/// Probe groups `g0..g0 + G` against the `len` rows at `block`, `R` (a
/// multiple of 8) at a time and the remainder one by one; results go to
/// columns `first..` of `out` (`n` a probe).
///
/// # Safety
/// As [`batch`]; groups `g0..g0 + G` exist; `len <= ROW_BLOCK`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn rows_of<const G: usize, const R: usize>(
    probes: &NarrowProbes,
    lanes: &ProbeLanes,
    g0: usize,
    (block, stride, len): (*const i8, usize, usize),
    sums: &[i32; ROW_BLOCK],
    (out, n, first): (*mut i32, usize, usize),
) {
    let groups: [&[u8]; G] = std::array::from_fn(|g| lanes.group(g0 + g));
    let mut k = 0;
    // SAFETY: rows k..k + R (or k) are below len; the stores stay within
    // the batch's probes and the n columns.
    unsafe {
        while k + R <= len {
            let acc = micro::<G, R>(&groups, probes.dim(), block.add(k * stride), stride);
            for (g, acc) in acc.iter().enumerate() {
                let (eights, _) = acc.as_chunks::<8>();
                for (h, eight) in eights.iter().enumerate() {
                    let at = k + 8 * h;
                    store8(
                        probes,
                        g0 + g,
                        eight,
                        &sums[at..at + 8],
                        (out, n, first + at),
                    );
                }
            }
            k += R;
        }
        while k < len {
            let acc = micro::<G, 1>(&groups, probes.dim(), block.add(k * stride), stride);
            store(probes, g0, &acc, &sums[k..k + 1], (out, n, first + k));
            k += 1;
        }
    }
}

/// `dot(q + 128, r)` for the 16 lanes of each of `G` groups and `R` rows.
///
/// # Safety
/// AVX-512 F and VNNI available; each group holds `dim.div_ceil(4)` chunks;
/// each of the `R` rows at `rows + k * stride` has `dim` readable elements.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
unsafe fn micro<const G: usize, const R: usize>(
    groups: &[&[u8]; G],
    dim: usize,
    rows: *const i8,
    stride: usize,
) -> [[__m512i; R]; G] {
    let mut acc = [[_mm512_setzero_si512(); R]; G];
    let whole = dim / 4;
    for c in 0..whole {
        // SAFETY: chunk c < dim.div_ceil(4) of each group; bytes 4c..4c + 4
        // of each row are below dim.
        unsafe {
            let p: [__m512i; G] =
                std::array::from_fn(|g| _mm512_loadu_si512(groups[g].as_ptr().add(c * 64).cast()));
            for k in 0..R {
                let word = rows.add(k * stride + c * 4).cast::<i32>().read_unaligned();
                let r = _mm512_set1_epi32(word);
                for (acc, p) in acc.iter_mut().zip(&p) {
                    acc[k] = _mm512_dpbusd_epi32(acc[k], *p, r);
                }
            }
        }
    }
    if whole * 4 < dim {
        // The last chunk's row bytes past dim are read as 0.
        // SAFETY: as above, and only bytes below dim are read.
        unsafe {
            let p: [__m512i; G] = std::array::from_fn(|g| {
                _mm512_loadu_si512(groups[g].as_ptr().add(whole * 64).cast())
            });
            for k in 0..R {
                let mut word = [0u8; 4];
                let tail = rows.add(k * stride + whole * 4).cast::<u8>();
                std::ptr::copy_nonoverlapping(tail, word.as_mut_ptr(), dim - whole * 4);
                let r = _mm512_set1_epi32(i32::from_le_bytes(word));
                for (acc, p) in acc.iter_mut().zip(&p) {
                    acc[k] = _mm512_dpbusd_epi32(acc[k], *p, r);
                }
            }
        }
    }
    acc
}

/// Subtracts `128 * sum(r)` from each accumulator (wrapping: the exact
/// result fits in i32 whenever the true dot product does) and stores lane
/// `l` of group `g0 + g`, row `k` at `out[(probe) * n + col + k]` for the
/// batch's probes only.
///
/// # Safety
/// AVX-512 F available; `out` has `probes.len() * n` elements and
/// `col + R <= n`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store<const G: usize, const R: usize>(
    probes: &NarrowProbes,
    g0: usize,
    acc: &[[__m512i; R]; G],
    sums: &[i32],
    (out, n, col): (*mut i32, usize, usize),
) {
    for (g, acc) in acc.iter().enumerate() {
        let b0 = (g0 + g) * LANES;
        let live = LANES.min(probes.len() - b0);
        for (k, (&a, &s)) in acc.iter().zip(sums).enumerate() {
            let v = _mm512_sub_epi32(a, _mm512_set1_epi32(s.wrapping_mul(128)));
            let mut lanes = [0i32; LANES];
            // SAFETY: lanes is 64 writable bytes.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), v) };
            for (l, &x) in lanes.iter().take(live).enumerate() {
                // SAFETY: probe b0 + l < probes.len() and col + k < n.
                unsafe { *out.add((b0 + l) * n + col + k) = x };
            }
        }
    }
}

/// [`store`] for one group and 8 rows, through a transpose: 16 lanes by 8
/// rows become 16 runs of 8 scores, one 256-bit store a probe, where
/// storing lane by lane took 128 scalar stores (measured: about a third of
/// the kernel's time at 256 probes).
///
/// # Safety
/// As [`store`], for `R = 8`; group `g` exists.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store8(
    probes: &NarrowProbes,
    g: usize,
    acc: &[__m512i; 8],
    sums: &[i32],
    (out, n, col): (*mut i32, usize, usize),
) {
    let v: [__m512i; 8] = std::array::from_fn(|k| {
        _mm512_sub_epi32(acc[k], _mm512_set1_epi32(sums[k].wrapping_mul(128)))
    });
    // Within each 128-bit block b: u[m] holds rows 0..4 of lane 4b + m,
    // u[4 + m] rows 4..8.
    let t: [__m512i; 8] = std::array::from_fn(|i| {
        let (x, y) = (v[2 * (i / 2)], v[2 * (i / 2) + 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(x, y)
        } else {
            _mm512_unpackhi_epi32(x, y)
        }
    });
    let u: [__m512i; 8] = std::array::from_fn(|i| {
        // i = 4h + m: rows 4h..4h + 4; lane m within each block.
        let (h, m) = (i / 4, i % 4);
        let (x, y) = (t[4 * h + m / 2], t[4 * h + 2 + m / 2]);
        if m % 2 == 0 {
            _mm512_unpacklo_epi64(x, y)
        } else {
            _mm512_unpackhi_epi64(x, y)
        }
    });
    let b0 = g * LANES;
    let live = LANES.min(probes.len() - b0);
    for m in 0..4 {
        let (lo, hi) = (u[m], u[4 + m]);
        // [lo0, hi0, lo1, hi1] and [lo2, hi2, lo3, hi3]: lanes m, 4 + m,
        // then 8 + m, 12 + m, each as its 8 rows in order.
        let first = _mm512_shuffle_i32x4::<0b11_01_10_00>(
            _mm512_shuffle_i32x4::<0b01_00_01_00>(lo, hi),
            _mm512_shuffle_i32x4::<0b01_00_01_00>(lo, hi),
        );
        let second = _mm512_shuffle_i32x4::<0b11_01_10_00>(
            _mm512_shuffle_i32x4::<0b11_10_11_10>(lo, hi),
            _mm512_shuffle_i32x4::<0b11_10_11_10>(lo, hi),
        );
        for (l, run) in [
            (m, _mm512_castsi512_si256(first)),
            (4 + m, _mm512_extracti64x4_epi64::<1>(first)),
            (8 + m, _mm512_castsi512_si256(second)),
            (12 + m, _mm512_extracti64x4_epi64::<1>(second)),
        ] {
            if l < live {
                // SAFETY: probe b0 + l < probes.len() and col + 8 <= n.
                unsafe { _mm256_storeu_si256(out.add((b0 + l) * n + col).cast(), run) };
            }
        }
    }
}

/// The sum of a row's `dim` bytes, signed: `vpdpbusd` of ones by the row,
/// masked loads for the last `dim % 64` bytes.
///
/// # Safety
/// AVX-512 F, BW and VNNI available; `row` has `dim` readable elements.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn row_sum(row: *const i8, dim: usize) -> i32 {
    let ones = _mm512_set1_epi8(1);
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    // SAFETY: the loads read bytes i..i + 64 <= dim, the masked one only
    // bytes below dim.
    unsafe {
        while i + 64 <= dim {
            acc = _mm512_dpbusd_epi32(acc, ones, _mm512_loadu_si512(row.add(i).cast()));
            i += 64;
        }
        if i < dim {
            let mask = (1u64 << (dim - i)) - 1;
            acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(mask, row.add(i)));
        }
    }
    _mm512_reduce_add_epi32(acc)
}
