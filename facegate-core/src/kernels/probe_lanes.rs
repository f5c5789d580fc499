//! The probes of a batch laid out one probe per 32-bit lane, in groups of
//! [`LANES`], for the kernels that score 16 probes against one row with each
//! instruction ([`super::vnni_lanes`]; [`super::vnni_lanes_ymm`] reads each
//! group as two halves of 8). Portable code: the layout is built
//! once per batch, the first time a kernel asks for it.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::NarrowProbes;

/// Probes per group: one in each 32-bit lane of a 512-bit register.
pub(super) const LANES: usize = 16;

/// The probes of a batch laid out for the lane kernels: for group `g` of 16
/// probes and 4-byte chunk `c` of the dimension, 64 bytes holding lane `l`'s
/// bytes `4c..4c + 4` at `l * 4`, sign-flipped to unsigned. Lanes past the
/// batch and bytes past the dimension hold a flipped 0 (their products are
/// never stored, or meet a row byte of 0).
#[derive(Debug, Clone)]
pub(super) struct ProbeLanes {
    chunks: usize,
    bytes: Vec<u8>,
}

impl ProbeLanes {
    /// Lays out `probes`.
    pub(super) fn new(probes: &NarrowProbes) -> ProbeLanes {
        let (dim, count) = (probes.dim(), probes.len());
        let chunks = dim.div_ceil(4);
        let groups = count.div_ceil(LANES);
        let mut bytes = vec![0x80u8; groups * chunks * 64];
        for b in 0..count {
            let (g, l) = (b / LANES, b % LANES);
            for (i, &x) in probes.probe(b).iter().enumerate() {
                bytes[(g * chunks + i / 4) * 64 + l * 4 + i % 4] = (x as u8) ^ 0x80;
            }
        }
        ProbeLanes { chunks, bytes }
    }

    /// Group `g`'s bytes.
    pub(super) fn group(&self, g: usize) -> &[u8] {
        &self.bytes[g * self.chunks * 64..(g + 1) * self.chunks * 64]
    }
}
