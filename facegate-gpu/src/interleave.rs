//! The second design's row layout, built when the gallery is uploaded (the
//! file keeps its plain row-major rows): rows in groups of
//! [`SCAN_GROUP_ROWS`], each row cut into 16-byte chunks, and chunk c of
//! row r stored at 16-byte unit `((r / 32) * chunks + c) * 32 + r % 32`.
//! A group is then one contiguous block, and the 32 rows' chunk c are 512
//! contiguous bytes: the scan kernel copies a group into workgroup memory
//! with fully coalesced loads, and each invocation then reads its row's
//! chunk c beside its neighbours' (no bank conflicts).

use crate::shared::SCAN_GROUP_ROWS;

const GROUP: usize = SCAN_GROUP_ROWS as usize;

/// 16-byte chunks of an int8 row of `dim` dimensions (zero-padded).
pub fn chunks_of(dim: usize) -> usize {
    dim.div_ceil(16)
}

/// The 16-byte unit that holds chunk `c` of row `r` (rows counted within
/// the buffer) when rows have `chunks` chunks.
pub fn unit(r: usize, c: usize, chunks: usize) -> usize {
    ((r / GROUP) * chunks + c) * GROUP + r % GROUP
}

/// Rows laid out for the scan kernel: the bytes, one scale per row (0 for
/// the padding rows of the last group), and how many rows are real.
#[derive(Debug, Clone, PartialEq)]
pub struct Interleaved {
    /// Row bytes in the layout, `groups * 32 * chunks * 16` of them.
    pub bytes: Vec<u8>,
    /// Scales, `groups * 32` of them.
    pub scales: Vec<f32>,
    /// Real rows (the rest of the last group is zeros).
    pub rows: usize,
    /// Groups of 32 rows.
    pub groups: usize,
}

/// Lays out the gallery rows `rows` (in that order) of int8 `data` (row
/// stride `stride` bytes, `dim` dimensions) with their `scales`.
pub fn interleave(
    data: &[i8],
    scales: &[f32],
    stride: usize,
    dim: usize,
    rows: &[usize],
) -> Interleaved {
    let chunks = chunks_of(dim);
    let groups = rows.len().div_ceil(GROUP);
    let mut bytes = vec![0u8; groups * GROUP * chunks * 16];
    let mut out_scales = vec![0f32; groups * GROUP];
    for (r, &src) in rows.iter().enumerate() {
        let row: &[u8] = bytemuck::cast_slice(&data[src * stride..src * stride + dim]);
        for (c, piece) in row.chunks(16).enumerate() {
            let at = unit(r, c, chunks) * 16;
            bytes[at..at + piece.len()].copy_from_slice(piece);
        }
        out_scales[r] = scales[src];
    }
    Interleaved {
        bytes,
        scales: out_scales,
        rows: rows.len(),
        groups,
    }
}

/// The gallery rows of the pilot's sample: whole groups of 32 consecutive
/// rows, `sample_groups` of them evenly spaced over the gallery's `rows`
/// (all of them when there are no more). Any subset gives a cut no higher
/// than the whole gallery's M-th best; spreading it makes the cut close.
pub fn sample_rows(rows: usize, sample_groups: usize) -> Vec<usize> {
    let groups = rows.div_ceil(GROUP);
    let take = sample_groups.min(groups).max(1);
    (0..take)
        .map(|k| k * groups / take)
        .flat_map(|g| g * GROUP..((g + 1) * GROUP).min(rows))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_byte_lands_where_the_kernel_reads_it() {
        let (dim, stride, n) = (40, 48, 70); // 3 chunks, the last padded; 3 groups
        let data: Vec<i8> = (0..n * stride).map(|i| (i % 251) as i8).collect();
        let scales: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let order: Vec<usize> = (0..n).collect();
        let l = interleave(&data, &scales, stride, dim, &order);
        assert_eq!((l.rows, l.groups, l.bytes.len()), (70, 3, 3 * 32 * 3 * 16));
        for r in 0..n {
            for d in 0..dim {
                let at = unit(r, d / 16, 3) * 16 + d % 16;
                assert_eq!(l.bytes[at] as i8, data[r * stride + d], "row {r} dim {d}");
            }
            assert_eq!(l.scales[r], r as f32);
        }
        // Padding: dims past dim and rows past n are zero, scales too.
        assert_eq!(l.bytes[unit(0, 2, 3) * 16 + 8], 0);
        assert!(l.scales[70..].iter().all(|&s| s == 0.0));
        // A group's chunk c of its 32 rows is 512 contiguous bytes.
        assert_eq!(unit(33, 1, 3), unit(32, 1, 3) + 1);
        assert_eq!(unit(32, 1, 3) * 16, (3 + 1) * 32 * 16);
    }

    #[test]
    fn the_sample_is_whole_groups_spread_over_the_gallery() {
        assert_eq!(sample_rows(70, 10), (0..70).collect::<Vec<_>>());
        let s = sample_rows(32 * 100, 4);
        assert_eq!(s.len(), 4 * 32);
        let starts: Vec<usize> = s.chunks(32).map(|g| g[0]).collect();
        assert_eq!(starts, [0, 25 * 32, 50 * 32, 75 * 32]);
        assert!(s.chunks(32).all(|g| g.windows(2).all(|w| w[1] == w[0] + 1)));
    }
}
