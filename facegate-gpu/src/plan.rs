//! The second design's search plan for one batch: how big its scratch is
//! and what each step moves through device memory. The engine sizes its
//! buffers from it, the benchmark prints it, and its tests check, without
//! a GPU, the design's two promises: the gallery is read once per batch,
//! and no buffer grows with batch x gallery.
//!
//! One batch is one submission:
//! 1. the pilot: the scan kernel over a sample of row groups, writing a
//!    batch x sample score matrix, reduced by the top-k kernel to each
//!    probe's best M of the sample; the M-th is the probe's cut, no higher
//!    than the whole gallery's M-th best (the sample is a subset);
//! 2. the scan over every row group once, appending each row at or above
//!    its probe's cut to the probe's list (capacity [`ScanPlan::capacity`]);
//! 3. the top-k kernel over each probe's list (its count says how much of
//!    it is filled; a count past the capacity is an overflow, and that probe
//!    is answered by the exact CPU scan): a workgroup per segment of
//!    [`SEG_LEN`] entries, then merges, so a long list is not one
//!    workgroup's work;
//! 4. one read-back: each probe's best M and its count.
//!
//! When the gallery is no larger than the sample, the pilot is the whole
//! gallery and its best M are the answer (steps 2 and 3 are skipped).

use crate::shared::SCAN_GROUP_ROWS;

/// Row groups the pilot samples by default (16,384 rows).
pub const SAMPLE_GROUPS: u64 = 512;
/// Scores or entries one top-k workgroup reduces in a first pass (the
/// pilot's, and a segmented selection's); topk.rs records its passes with it.
pub const SEG_LEN: u64 = 4096;

/// The largest batch whose final selection is split into segments. On an
/// H200 over 10 million rows (docs/benchmarks.md), segments cut the
/// selection from 1.97 to 0.36 ms at 1 probe and from 2.27 to 1.65 ms at
/// 64, but raised it from 2.6 to 5.9 ms at 256 and from 9.5 to 23 ms at
/// 1,024.
pub const SEGMENTED_SELECT_MAX_PROBES: u64 = 64;

/// The plan of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanPlan {
    /// Probes in the batch.
    pub probes: u64,
    /// Candidate rows kept per probe (M).
    pub m: u64,
    /// 16-byte chunks per row.
    pub chunks: u64,
    /// Rows of the gallery.
    pub gallery_rows: u64,
    /// Rows of the pilot's sample.
    pub sample_rows: u64,
    /// Entries of each probe's candidate list.
    pub capacity: u64,
}

fn padded(rows: u64) -> u64 {
    rows.div_ceil(u64::from(SCAN_GROUP_ROWS)) * u64::from(SCAN_GROUP_ROWS)
}

impl ScanPlan {
    /// The plan for `probes` probes keeping `m` candidates over a gallery of
    /// `gallery_rows` rows of `dim` int8 dimensions, sampling
    /// `sample_groups` groups, with lists of `capacity` entries (default:
    /// [`ScanPlan::default_capacity`]).
    pub fn new(
        gallery_rows: u64,
        dim: u64,
        probes: u64,
        m: u64,
        sample_groups: u64,
        capacity: Option<u64>,
    ) -> ScanPlan {
        let group = u64::from(SCAN_GROUP_ROWS);
        let sample_rows = (sample_groups * group).min(gallery_rows).max(1);
        ScanPlan {
            probes,
            m,
            chunks: dim.div_ceil(16),
            gallery_rows,
            sample_rows,
            capacity: capacity
                .unwrap_or_else(|| Self::default_capacity(m, gallery_rows, sample_rows)),
        }
    }

    /// A list holds 8 times the rows expected at or above the cut (the
    /// sample's M-th best is about the gallery's M x rows / sample-th), at
    /// least 1,024 and M, at most 2^20.
    pub fn default_capacity(m: u64, gallery_rows: u64, sample_rows: u64) -> u64 {
        let expected = m * gallery_rows.div_ceil(sample_rows.max(1));
        (8 * expected)
            .next_power_of_two()
            .clamp(1024.max(m.next_power_of_two()), 1 << 20)
    }

    /// Whether the sample is the whole gallery, so that the pilot's best M
    /// are the answer.
    pub fn pilot_is_exact(&self) -> bool {
        self.sample_rows >= self.gallery_rows
    }

    /// Bytes of one row in the layout, and of its scale.
    fn row_bytes(&self) -> u64 {
        self.chunks * 16 + 4
    }

    /// Lists of M the pilot's first reduction writes per probe.
    pub fn pilot_segments(&self) -> u64 {
        self.sample_rows.div_ceil(SEG_LEN)
    }

    /// Lists of M the final selection's first pass writes per probe. For
    /// batches of up to [`SEGMENTED_SELECT_MAX_PROBES`], one per [`SEG_LEN`]
    /// entries of the probe's list, so that many workgroups share a long
    /// list; for larger ones, one (a workgroup per probe is parallel enough,
    /// and merging many mostly empty segments costs more).
    pub fn select_segments(&self) -> u64 {
        match self.probes <= SEGMENTED_SELECT_MAX_PROBES {
            true => self.capacity.div_ceil(SEG_LEN),
            false => 1,
        }
    }

    /// The scratch buffers and their bytes. None depends on the gallery's
    /// size except through the list capacity, which is bounded.
    pub fn scratch(&self) -> Vec<(&'static str, u64)> {
        let (b, m) = (self.probes, self.m);
        let mut out = vec![
            ("probes", b * (self.chunks * 16 + 4)),
            ("pilot scores", b * self.sample_rows * 4),
            ("pilot lists", 2 * b * m * self.pilot_segments() * 8),
            ("pilot best", b * m * 8),
            ("read-back", b * (m * 8 + 4)),
        ];
        if !self.pilot_is_exact() {
            out.push(("counts", b * 4));
            out.push(("candidate lists", b * self.capacity * 8));
            out.push(("select lists", 2 * b * m * self.select_segments() * 8));
            out.push(("best", b * m * 8));
        }
        out
    }

    /// What each step reads and writes in device memory, in order, at most
    /// (appends depend on the scores: the lists' capacity bounds them).
    pub fn traffic(&self) -> Vec<(&'static str, u64)> {
        let (b, m) = (self.probes, self.m);
        let mut out = vec![
            ("upload probes", b * (self.chunks * 16 + 4)),
            (
                "pilot: sample rows read",
                padded(self.sample_rows) * self.row_bytes(),
            ),
            ("pilot: scores written", b * self.sample_rows * 4),
            ("pilot: scores selected", b * self.sample_rows * 4),
        ];
        if !self.pilot_is_exact() {
            out.push((
                "scan: gallery rows read",
                padded(self.gallery_rows) * self.row_bytes(),
            ));
            out.push(("scan: candidates appended (at most)", b * self.capacity * 8));
            out.push(("select: candidates read (at most)", b * self.capacity * 8));
            out.push((
                "select: segment lists written and merged (at most)",
                2 * b * m * self.select_segments() * 8,
            ));
        }
        out.push(("read back", b * (m * 8 + 4)));
        out
    }

    /// Bytes of gallery rows the batch reads: the scan's pass, or the
    /// pilot's when the sample is the whole gallery; once either way.
    pub fn gallery_bytes_read(&self) -> u64 {
        self.traffic()
            .iter()
            .filter(|(what, _)| {
                *what == "scan: gallery rows read"
                    || (self.pilot_is_exact() && *what == "pilot: sample rows read")
            })
            .map(|&(_, bytes)| bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gallery_is_read_once_per_batch_whatever_the_batch() {
        for probes in [1, 7, 64, 256, 1024] {
            let p = ScanPlan::new(10_000_000, 512, probes, 40, SAMPLE_GROUPS, None);
            assert_eq!(
                p.gallery_bytes_read(),
                10_000_000 * (512 + 4),
                "B = {probes}"
            );
            let small = ScanPlan::new(5_000, 512, probes, 40, SAMPLE_GROUPS, None);
            assert!(small.pilot_is_exact());
            assert_eq!(small.gallery_bytes_read(), 5_024 * (512 + 4));
        }
    }

    #[test]
    fn no_buffer_grows_with_batch_times_gallery() {
        for probes in [1, 64, 256, 1024] {
            let at = |rows: u64| ScanPlan::new(rows, 512, probes, 40, SAMPLE_GROUPS, Some(65_536));
            // Ten times the gallery, the same scratch.
            assert_eq!(at(10_000_000).scratch(), at(100_000_000).scratch());
            let total: u64 = at(100_000_000).scratch().iter().map(|(_, b)| b).sum();
            assert!(
                total < probes * 100_000_000 * 4 / 100,
                "B = {probes}: {total} bytes"
            );
        }
        // The default capacity is bounded too.
        let huge = ScanPlan::new(1 << 40, 512, 1024, 1024, SAMPLE_GROUPS, None);
        assert_eq!(huge.capacity, 1 << 20);
    }

    #[test]
    fn the_default_capacity_is_eight_times_the_expected_count() {
        // M = 40, 10M rows, 16,384 sampled: about 24,400 rows per probe pass the cut.
        let p = ScanPlan::new(10_000_000, 512, 256, 40, SAMPLE_GROUPS, None);
        assert_eq!(p.sample_rows, 16_384);
        assert_eq!(p.capacity, 262_144);
    }
}
