//! The core's int8 multiply-add peak, per kernel set: the instructions a
//! kernel set's batch kernel issues for each group of byte products, run with
//! operands in registers and enough independent chains that only the
//! execution ports limit them. This is the ceiling the compute-bound batch
//! scan is read against ("toward the core's int8 peak"), measured in the
//! same run as the scan, because the rate differs by processor: Zen 4 runs
//! a 512-bit `vpdpbusd` as two 256-bit halves, Intel server cores have one
//! or two 512-bit ports, and a hypervisor hides the clock.
//!
//! Each loop is chosen only after its features are detected, as the
//! engine's kernels are, so the safe [`PeakLoop::run`] never reaches an
//! instruction the processor lacks.

use std::time::Instant;

/// A register-only loop of one kernel set's int8 instructions.
#[derive(Clone, Copy)]
pub struct PeakLoop {
    run: fn(u64, u8, i8) -> i64,
    ops_per_iter: u64,
}

impl PeakLoop {
    /// The loop for the kernel set called `kernels` (as `Kernels::name`), if
    /// this processor runs it; `None` for the portable set, which has no
    /// single instruction sequence to stand for.
    pub fn for_kernels(kernels: &str) -> Option<PeakLoop> {
        #[cfg(target_arch = "x86_64")]
        {
            x86::for_kernels(kernels)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = kernels;
            None
        }
    }

    /// Runs `iters` iterations with every row byte `r` (unsigned) and probe
    /// byte `q` (signed) and returns the sum of every accumulator lane (as
    /// i64, each lane's 32-bit sum wrapping as the instruction's does), so
    /// that a test can check the loop did its arithmetic.
    pub fn run(&self, iters: u64, r: u8, q: i8) -> i64 {
        (self.run)(iters, r, q)
    }

    /// int8 operations (a multiply and an add each: 2 per byte product) in
    /// one iteration, counted as the scan benchmark counts them.
    pub fn ops_per_iter(&self) -> u64 {
        self.ops_per_iter
    }

    /// The rate on every rayon thread at once, in G int8 operations per
    /// second: the iteration count doubles until one pass takes at least
    /// `min_secs`, then the best of `passes` such passes.
    pub fn measure(&self, min_secs: f64, passes: usize) -> f64 {
        let threads = rayon::current_num_threads() as u64;
        let pass = |iters: u64| {
            let t = Instant::now();
            let sums = rayon::broadcast(|_| {
                self.run(
                    std::hint::black_box(iters),
                    std::hint::black_box(1),
                    std::hint::black_box(1),
                )
            });
            std::hint::black_box(sums);
            t.elapsed().as_secs_f64()
        };
        let mut iters = 1 << 14;
        while pass(iters) < min_secs && iters < 1 << 40 {
            iters *= 2;
        }
        let best = (0..passes.max(1))
            .map(|_| pass(iters))
            .fold(f64::INFINITY, f64::min);
        (threads * iters * self.ops_per_iter) as f64 / best / 1e9
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The loops. Chain counts: a chain's next instruction waits for its
    //! last (`vpdpbusd` and `vpmaddubsw` have a latency of about 5 cycles),
    //! so a port issuing one a cycle needs about 5 chains in flight, two
    //! ports about 10; each loop keeps as many as its registers allow.

    use std::arch::x86_64::*;

    use super::PeakLoop;

    /// Byte products per 512-bit or 256-bit `vpdpbusd`, and per 256-bit
    /// `vpmaddubsw`.
    const ZMM_MACS: u64 = 64;
    const YMM_MACS: u64 = 32;
    /// 16 accumulators and 2 operands of 32 zmm (or EVEX ymm) registers.
    const WIDE_CHAINS: usize = 16;
    /// 12 accumulators and 2 operands of the 16 ymm registers VEX reaches.
    const VEX_CHAINS: usize = 12;
    /// AVX2 keeps two registers a chain (its 16-bit pairs and its sums).
    const AVX2_CHAINS: usize = 6;

    pub(super) fn for_kernels(kernels: &str) -> Option<PeakLoop> {
        let has = |f: &[bool]| f.iter().all(|&x| x);
        let (run, ops_per_iter): (fn(u64, u8, i8) -> i64, u64) = match kernels {
            "avx512vnni"
                if has(&[
                    is_x86_feature_detected!("avx512f"),
                    is_x86_feature_detected!("avx512bw"),
                    is_x86_feature_detected!("avx512vnni"),
                ]) =>
            {
                (zmm, WIDE_CHAINS as u64 * ZMM_MACS * 2)
            }
            "avx512vnni-ymm"
                if has(&[
                    is_x86_feature_detected!("avx512vnni"),
                    is_x86_feature_detected!("avx512vl"),
                ]) =>
            {
                (ymm_evex, WIDE_CHAINS as u64 * YMM_MACS * 2)
            }
            "avxvnni"
                if has(&[
                    is_x86_feature_detected!("avx2"),
                    is_x86_feature_detected!("avxvnni"),
                ]) =>
            {
                (ymm_vex, VEX_CHAINS as u64 * YMM_MACS * 2)
            }
            "avx2" if is_x86_feature_detected!("avx2") => (avx2, AVX2_CHAINS as u64 * YMM_MACS * 2),
            _ => return None,
        };
        Some(PeakLoop { run, ops_per_iter })
    }

    // The safe wrappers are reachable only through `for_kernels`, which
    // returns them after their features were detected.

    fn zmm(iters: u64, r: u8, q: i8) -> i64 {
        // SAFETY: AVX-512 F, BW and VNNI detected (`for_kernels`).
        unsafe { dpbusd_zmm(iters, r, q) }
    }

    fn ymm_evex(iters: u64, r: u8, q: i8) -> i64 {
        // SAFETY: AVX-512 VNNI and VL detected (`for_kernels`).
        unsafe { dpbusd_ymm_evex(iters, r, q) }
    }

    fn ymm_vex(iters: u64, r: u8, q: i8) -> i64 {
        // SAFETY: AVX2 and AVX-VNNI detected (`for_kernels`).
        unsafe { dpbusd_ymm_vex(iters, r, q) }
    }

    fn avx2(iters: u64, r: u8, q: i8) -> i64 {
        // SAFETY: AVX2 detected (`for_kernels`).
        unsafe { maddubs_avx2(iters, r, q) }
    }

    /// The sum of every 32-bit lane of `v`, widened.
    fn lanes_sum<T: Copy, const N: usize>(v: &[T]) -> i64 {
        assert_eq!(size_of::<T>(), N * 4, "a vector of {N} i32 lanes");
        v.iter()
            .map(|x| {
                // SAFETY: T is N i32 lanes wide (checked above), and any
                // bits are a valid i32.
                let lanes: [i32; N] = unsafe { std::mem::transmute_copy(x) };
                lanes.iter().map(|&l| i64::from(l)).sum::<i64>()
            })
            .sum()
    }

    /// A `vpdpbusd` loop: `$chains` accumulators of `$lanes` lanes, each
    /// fed every iteration by the same unsigned and signed operands.
    macro_rules! dpbusd_loop {
        ($name:ident, $features:literal, $set1:ident, $zero:ident, $dpbusd:ident,
         $chains:expr, $lanes:literal) => {
            #[target_feature(enable = $features)]
            fn $name(iters: u64, r: u8, q: i8) -> i64 {
                let (r, q) = ($set1(r as i8), $set1(q));
                let mut acc = [$zero(); $chains];
                for _ in 0..iters {
                    for a in &mut acc {
                        *a = $dpbusd(*a, r, q);
                    }
                }
                lanes_sum::<_, $lanes>(&acc)
            }
        };
    }

    dpbusd_loop!(
        dpbusd_zmm,
        "avx512f,avx512bw,avx512vnni",
        _mm512_set1_epi8,
        _mm512_setzero_si512,
        _mm512_dpbusd_epi32,
        WIDE_CHAINS,
        16
    );
    dpbusd_loop!(
        dpbusd_ymm_evex,
        "avx512vnni,avx512vl",
        _mm256_set1_epi8,
        _mm256_setzero_si256,
        _mm256_dpbusd_epi32,
        WIDE_CHAINS,
        8
    );
    dpbusd_loop!(
        dpbusd_ymm_vex,
        "avx2,avxvnni",
        _mm256_set1_epi8,
        _mm256_setzero_si256,
        _mm256_dpbusd_avx_epi32,
        VEX_CHAINS,
        8
    );

    /// AVX2's sequence per 32 byte products, as its batch kernel issues it:
    /// `vpmaddubsw` into 16-bit pair sums, `vpmaddwd` by ones into 32-bit,
    /// `vpaddd` into the sums. Each chain feeds its pair sums back in as the
    /// next unsigned operand, so the compiler cannot hoist the multiply out
    /// of the loop (the values saturate, which costs nothing).
    #[target_feature(enable = "avx2")]
    fn maddubs_avx2(iters: u64, r: u8, q: i8) -> i64 {
        let q = _mm256_set1_epi8(q);
        let ones = _mm256_set1_epi16(1);
        let mut pairs = [_mm256_set1_epi8(r as i8); AVX2_CHAINS];
        let mut acc = [_mm256_setzero_si256(); AVX2_CHAINS];
        for _ in 0..iters {
            for (p, a) in pairs.iter_mut().zip(&mut acc) {
                *p = _mm256_maddubs_epi16(*p, q);
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(*p, ones));
            }
        }
        lanes_sum::<_, 8>(&acc)
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// `vpmaddubsw` on one byte pair: the saturated sum of unsigned `lo` and
    /// `hi`, each times the signed `q`.
    fn maddubs(lo: u8, hi: u8, q: i8) -> i16 {
        let sum = (i32::from(lo) + i32::from(hi)) * i32::from(q);
        sum.clamp(i16::MIN.into(), i16::MAX.into()) as i16
    }

    #[test]
    fn each_loop_does_the_arithmetic_it_is_counted_for() {
        let mut checked = 0;
        for (name, lanes, chains, per_lane) in [
            ("avx512vnni", 16, 16, 4),
            ("avx512vnni-ymm", 8, 16, 4),
            ("avxvnni", 8, 12, 4),
        ] {
            let Some(l) = PeakLoop::for_kernels(name) else {
                println!("{name}: not on this processor, not checked");
                continue;
            };
            for (r, q, iters) in [(1u8, 1i8, 1000u64), (255, -128, 37), (3, -5, 0)] {
                // Each lane adds `per_lane` products r * q an iteration.
                let want = lanes * chains * per_lane * i64::from(r) * i64::from(q) * iters as i64;
                assert_eq!(
                    l.run(iters, r, q),
                    want,
                    "{name}, r {r}, q {q}, {iters} iterations"
                );
            }
            // Ops counted: 2 per byte product, every lane's 4 products.
            assert_eq!(
                l.ops_per_iter(),
                (lanes * chains * per_lane * 2) as u64,
                "{name}"
            );
            checked += 1;
        }
        if let Some(l) = PeakLoop::for_kernels("avx2") {
            for (r, q, iters) in [(3u8, -5i8, 1u64), (3, -5, 4), (200, 100, 3), (1, 1, 10)] {
                // The pair sums are fed back as bytes: each 16-bit sum
                // splits into its low and high byte, both read unsigned.
                let mut pair = [r, r];
                let mut acc = 0i64;
                for _ in 0..iters {
                    let sum = maddubs(pair[0], pair[1], q);
                    pair = sum.to_le_bytes();
                    // vpmaddwd by ones: two pair sums per 32-bit lane.
                    acc += 2 * i64::from(sum);
                }
                // 8 lanes a register, 6 chains.
                assert_eq!(
                    l.run(iters, r, q),
                    acc * 8 * 6,
                    "avx2, r {r}, q {q}, {iters}"
                );
            }
            assert_eq!(l.ops_per_iter(), 6 * 32 * 2);
            checked += 1;
        }
        println!("{checked} loops checked");
        assert!(PeakLoop::for_kernels("portable").is_none());
    }
}
