//! The 256-bit VNNI batch kernel for batches of [`MIN_PROBES`] probes or
//! more: [`super::vnni_lanes`]'s design (one probe in each 32-bit lane, a
//! row's four bytes broadcast to every lane, row sums restoring exact
//! scores) on the 16 ymm registers of AVX-VNNI, in both encodings.
//!
//! A 16-probe group of [`ProbeLanes`] is two halves of 8 lanes, the low and
//! high 32 bytes of each chunk, so the layout is the 512-bit kernel's. A call
//! scores one group against 4 rows: 8 accumulators (8 independent
//! `vpdpbusd` chains), two probe operands and a broadcast. Each half's 4 rows are written through a 4 x 8
//! transpose, one 128-bit store a probe. Six rows a call (12 chains, with a
//! 2-row store) measured the same on Zen 4, so the simpler form stays.
//!
//! Why: on Zen 4 (`facegate-scan-bench`, docs/benchmarks.md) the
//! row-per-register 256-bit kernel reached 40-48 % of its int8 peak at 256
//! probes, where the 512-bit lane kernel reached 80-84 % of the same peak;
//! the horizontal sums of one row per register were the difference. The
//! 256-bit sets serve processors with AVX-VNNI and no AVX-512.

/// The smallest batch this kernel takes: below it most lanes would be idle.
pub(super) const MIN_PROBES: usize = 16;
/// Rows per micro-kernel call.
const ROWS: usize = 4;
/// Rows whose sums are taken at once (a stack array): the engine's tile.
const ROW_BLOCK: usize = 32;
/// Probes per half group: the lanes of a 256-bit register.
const HALF: usize = 8;

/// The kernel, once per encoding: the AVX-VNNI (VEX) and AVX-512 VL (EVEX)
/// forms of `vpdpbusd` need different target features, the body is the
/// same.
macro_rules! lane_kernel {
    ($name:ident, $features:literal, $dpbusd:ident) => {
        /// The lane kernel in one encoding of `vpdpbusd`.
        pub(super) mod $name {
            use std::arch::x86_64::*;

            use super::super::NarrowProbes;
            use super::super::probe_lanes::LANES;
            use super::{HALF, ROW_BLOCK, ROWS};

            /// Every probe against rows `0..n`.
            ///
            /// # Safety
            #[doc = concat!("`", $features, "` available;")]
            /// for `j < n`, `rows + j * stride` points to `probes.dim()`
            /// readable elements; `out` to `probes.len() * n` writable.
            #[target_feature(enable = $features)]
            pub(in super::super) unsafe fn batch(
                probes: &NarrowProbes,
                rows: *const i8,
                stride: usize,
                n: usize,
                out: *mut i32,
            ) {
                let lanes = probes.lanes();
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
                    for g in 0..probes.len().div_ceil(LANES) {
                        let group = (lanes.group(g), g);
                        // SAFETY: group g exists; rows and out as the contract.
                        unsafe {
                            rows_of(probes, group, (block, stride, len), &sums, (out, n, first))
                        };
                    }
                    first += len;
                }
            }

            /// Group `g` against the `len` rows at `block`, [`ROWS`] at a
            /// time and the remainder one by one; results go to columns
            /// `first..` of `out` (`n` a probe).
            ///
            /// # Safety
            /// As [`batch`]; `len <= ROW_BLOCK`.
            #[target_feature(enable = $features)]
            unsafe fn rows_of(
                probes: &NarrowProbes,
                (group, g): (&[u8], usize),
                (block, stride, len): (*const i8, usize, usize),
                sums: &[i32; ROW_BLOCK],
                (out, n, first): (*mut i32, usize, usize),
            ) {
                let dim = probes.dim();
                let mut k = 0;
                // SAFETY: rows k..k + ROWS (or k) are below len; the stores
                // stay within the batch's probes and the n columns.
                unsafe {
                    while k + ROWS <= len {
                        let acc = micro::<ROWS>(group, dim, block.add(k * stride), stride);
                        let at = (out, n, first + k);
                        for (h, acc) in acc.iter().enumerate() {
                            store4(probes, g * LANES + h * HALF, acc, &sums[k..k + ROWS], at);
                        }
                        k += ROWS;
                    }
                    while k < len {
                        let acc = micro::<1>(group, dim, block.add(k * stride), stride);
                        let at = (out, n, first + k);
                        for (h, acc) in acc.iter().enumerate() {
                            store(probes, g * LANES + h * HALF, acc, sums[k], at);
                        }
                        k += 1;
                    }
                }
            }

            /// `dot(q + 128, r)` for the 8 lanes of each half of a group
            /// and `R` rows.
            ///
            /// # Safety
            /// The features available; the group holds `dim.div_ceil(4)`
            /// chunks; each of the `R` rows at `rows + k * stride` has
            /// `dim` readable elements.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn micro<const R: usize>(
                group: &[u8],
                dim: usize,
                rows: *const i8,
                stride: usize,
            ) -> [[__m256i; R]; 2] {
                let mut acc = [[_mm256_setzero_si256(); R]; 2];
                let whole = dim / 4;
                for c in 0..whole {
                    // SAFETY: chunk c < dim.div_ceil(4) of the group; row
                    // bytes 4c..4c + 4 are below dim.
                    unsafe {
                        let p = halves(group, c);
                        for k in 0..R {
                            let word = rows.add(k * stride + c * 4).cast::<i32>().read_unaligned();
                            let r = _mm256_set1_epi32(word);
                            for (acc, p) in acc.iter_mut().zip(&p) {
                                acc[k] = $dpbusd(acc[k], *p, r);
                            }
                        }
                    }
                }
                if whole * 4 < dim {
                    // The last chunk's row bytes past dim are read as 0.
                    // SAFETY: as above, and only bytes below dim are read.
                    unsafe {
                        let p = halves(group, whole);
                        for k in 0..R {
                            let mut word = [0u8; 4];
                            let tail = rows.add(k * stride + whole * 4).cast::<u8>();
                            std::ptr::copy_nonoverlapping(tail, word.as_mut_ptr(), dim - whole * 4);
                            let r = _mm256_set1_epi32(i32::from_le_bytes(word));
                            for (acc, p) in acc.iter_mut().zip(&p) {
                                acc[k] = $dpbusd(acc[k], *p, r);
                            }
                        }
                    }
                }
                acc
            }

            /// Chunk `c` of a group: its low 8 lanes and its high 8.
            ///
            /// # Safety
            /// The features available; the group has chunk `c`.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn halves(group: &[u8], c: usize) -> [__m256i; 2] {
                // SAFETY: chunk c is 64 readable bytes.
                unsafe {
                    let at = group.as_ptr().add(c * 64);
                    [
                        _mm256_loadu_si256(at.cast()),
                        _mm256_loadu_si256(at.add(32).cast()),
                    ]
                }
            }

            /// One row's 8 lanes for probes `b0..`, less `128 * sum` (wrapping:
            /// the exact result fits in i32 whenever the true dot does), at
            /// column `col` of `out`, for the batch's probes only.
            ///
            /// # Safety
            /// As [`batch`]; `col < n`.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn store(
                probes: &NarrowProbes,
                b0: usize,
                acc: &[__m256i; 1],
                sum: i32,
                (out, n, col): (*mut i32, usize, usize),
            ) {
                let v = _mm256_sub_epi32(acc[0], _mm256_set1_epi32(sum.wrapping_mul(128)));
                let mut lanes = [0i32; HALF];
                // SAFETY: lanes is 32 writable bytes.
                unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), v) };
                let live = HALF.min(probes.len().saturating_sub(b0));
                for (l, &x) in lanes.iter().take(live).enumerate() {
                    // SAFETY: probe b0 + l < probes.len() and col < n.
                    unsafe { *out.add((b0 + l) * n + col) = x };
                }
            }

            /// [`store`] for 4 rows, through a transpose: 8 lanes by 4 rows
            /// become 8 runs of 4 scores, one 128-bit store a probe.
            ///
            /// # Safety
            /// As [`batch`]; `col + 4 <= n`.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn store4(
                probes: &NarrowProbes,
                b0: usize,
                acc: &[__m256i; ROWS],
                sums: &[i32],
                (out, n, col): (*mut i32, usize, usize),
            ) {
                let v: [__m256i; ROWS] = std::array::from_fn(|k| {
                    _mm256_sub_epi32(acc[k], _mm256_set1_epi32(sums[k].wrapping_mul(128)))
                });
                // Per 128-bit half: t0 = rows 0, 1 of lanes 0, 1; t1 of
                // lanes 2, 3; t2, t3 the same for rows 2, 3.
                let t0 = _mm256_unpacklo_epi32(v[0], v[1]);
                let t1 = _mm256_unpackhi_epi32(v[0], v[1]);
                let t2 = _mm256_unpacklo_epi32(v[2], v[3]);
                let t3 = _mm256_unpackhi_epi32(v[2], v[3]);
                // w[m]: rows 0..4 of lane m (low half) and of lane 4 + m.
                let w = [
                    _mm256_unpacklo_epi64(t0, t2),
                    _mm256_unpackhi_epi64(t0, t2),
                    _mm256_unpacklo_epi64(t1, t3),
                    _mm256_unpackhi_epi64(t1, t3),
                ];
                let live = HALF.min(probes.len().saturating_sub(b0));
                for (m, w) in w.iter().enumerate() {
                    for (l, run) in [
                        (m, _mm256_castsi256_si128(*w)),
                        (4 + m, _mm256_extracti128_si256::<1>(*w)),
                    ] {
                        if l < live {
                            // SAFETY: probe b0 + l < probes.len() and col + 4 <= n.
                            unsafe { _mm_storeu_si128(out.add((b0 + l) * n + col).cast(), run) };
                        }
                    }
                }
            }

            /// The sum of a row's `dim` bytes, signed: `vpdpbusd` of ones by
            /// the row, the last `dim % 32` bytes in scalar code (no masked
            /// loads without AVX-512).
            ///
            /// # Safety
            /// The features available; `row` has `dim` readable elements.
            #[target_feature(enable = $features)]
            unsafe fn row_sum(row: *const i8, dim: usize) -> i32 {
                let ones = _mm256_set1_epi8(1);
                let mut acc = _mm256_setzero_si256();
                let mut i = 0;
                // SAFETY: the loads read bytes i..i + 32 <= dim, then i < dim.
                unsafe {
                    while i + 32 <= dim {
                        acc = $dpbusd(acc, ones, _mm256_loadu_si256(row.add(i).cast()));
                        i += 32;
                    }
                    let s = _mm_add_epi32(
                        _mm256_castsi256_si128(acc),
                        _mm256_extracti128_si256::<1>(acc),
                    );
                    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
                    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
                    (i..dim).fold(_mm_cvtsi128_si32(s), |sum, i| sum + i32::from(*row.add(i)))
                }
            }
        }
    };
}

lane_kernel!(vex, "avx2,avxvnni", _mm256_dpbusd_avx_epi32);
lane_kernel!(evex, "avx2,avx512vnni,avx512vl", _mm256_dpbusd_epi32);
