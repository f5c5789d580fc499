// scan_f16_coop.wgsl: the second design's scan on cooperative matrices
// (tensor cores), for large batches. A workgroup scores WARPS interleaved
// row groups (ROWS rows) against every probe of the batch, a tile of
// SCAN_PROBE_TILE probes at a time, as a matrix product: for each K slice
// of COOP_SLICE dimensions it widens the tile's probes and its rows from
// int8 to f16 in workgroup memory, and each 32 invocations (a "warp": one
// subgroup on the H200, several identical ones where subgroups are
// smaller) multiply the tile's probes by their own group's 32 rows in
// COOP_TILE x COOP_TILE blocks with f32 accumulators. Every int8 product
// and every sum of up to 512 of them is an integer below 2^24, exact in f16
// inputs and f32 sums, so each accumulator is f32(dot) exactly and the
// scores are bit-identical to the int8 kernels' and the CPU engine's. The
// scores then pass through workgroup memory, one block row of probes at a
// time, to be written (pilot) or appended at or above the cut (scan) by
// `emit`, as the int8 kernels do.
//
// Bindings (group 0): declared by scan_common.wgsl, which facegate-gpu puts
// before this file with dot16 and emit (not the int8 probe tile).
// Workgroup layout: SCAN_WORKGROUP x 1 x 1; workgroup w = workgroup_id.y *
// num_workgroups.x + workgroup_id.x scores groups WARPS * w .. + WARPS;
// invocations 32 * k .. 32 * k + 31 (warp k) multiply group WARPS * w + k
// and emit its row lid % 32. The cooperative operations are
// subgroup-scoped: the engine runs this kernel only where subgroups are of
// at most 32 invocations and divide 32, so a subgroup never spans two
// warps, and the warps' identical subgroups store identical values.
// Names in capitals, CoopA/B/C and ScanParams are declared by the prelude
// and the pipeline's ScanShape (COOP_TILE, the cooperative matrices' side,
// is what the device offers: 16 or 8).

const WARPS: u32 = SCAN_WORKGROUP / SCAN_GROUP_ROWS;
const ROWS: u32 = WARPS * SCAN_GROUP_ROWS;
const SLICE_CHUNKS: u32 = COOP_SLICE / 16u;
const SLICES: u32 = (SCAN_CHUNKS + SLICE_CHUNKS - 1u) / SLICE_CHUNKS;
const M_TILES: u32 = SCAN_PROBE_TILE / COOP_TILE;
const N_TILES: u32 = SCAN_GROUP_ROWS / COOP_TILE;

// Slice s of the tile's probes (probe m's dimension k at m * COOP_STRIDE +
// k), then of the workgroup's rows (row n's at B_BASE + n * COOP_STRIDE +
// k), in f16, four to an element: the widening writes 8 bytes at a time,
// and the cooperative loads count their strides in these elements.
const B_BASE: u32 = SCAN_PROBE_TILE * COOP_STRIDE;
const VSTRIDE: u32 = COOP_STRIDE / 4u;
var<workgroup> s_ab: array<vec4<f16>, (SCAN_PROBE_TILE + ROWS) * COOP_STRIDE / 4u>;
// Each warp's scores of one block row of probes: probe i against its row j
// at warp * COOP_TILE * 32 + i * 32 + j.
var<workgroup> s_c: array<f32, ROWS * COOP_TILE>;

// Writes the 16 int8 values of `w` as f16 from f16 `at` of s_ab on (a
// multiple of 16).
fn widen(at: u32, w: vec4<u32>) {
    for (var j = 0u; j < 4u; j = j + 1u) {
        s_ab[at / 4u + j] = vec4<f16>(unpack4xI8(w[j]));
    }
}

// Stages K slice `s` of the probe tile starting at p0 and of the rows of
// groups g0 .. g0 + WARPS, between barriers. Chunks past the row's and
// groups past the binding's are zeros; probes past the batch repeat the
// last one (their scores are not emitted).
fn stage_slice(lid: u32, s: u32, p0: u32, g0: u32) {
    workgroupBarrier();
    for (var i = lid; i < SCAN_PROBE_TILE * SLICE_CHUNKS; i = i + SCAN_WORKGROUP) {
        let m = i / SLICE_CHUNKS;
        let c = i % SLICE_CHUNKS;
        let chunk = s * SLICE_CHUNKS + c;
        var w = vec4<u32>();
        if (chunk < SCAN_CHUNKS) {
            w = probes[min(p0 + m, params.probes - 1u) * SCAN_CHUNKS + chunk];
        }
        widen(m * COOP_STRIDE + c * 16u, w);
    }
    // Consecutive invocations read consecutive 16-byte units of a chunk's
    // 32 rows (512 contiguous bytes).
    for (var i = lid; i < ROWS * SLICE_CHUNKS; i = i + SCAN_WORKGROUP) {
        let warp = i / (SLICE_CHUNKS * SCAN_GROUP_ROWS);
        let c = (i / SCAN_GROUP_ROWS) % SLICE_CHUNKS;
        let r = i % SCAN_GROUP_ROWS;
        let group = g0 + warp;
        let chunk = s * SLICE_CHUNKS + c;
        var w = vec4<u32>();
        if (group < params.groups && chunk < SCAN_CHUNKS) {
            w = rows[(group * SCAN_CHUNKS + chunk) * SCAN_GROUP_ROWS + r];
        }
        widen(B_BASE + (warp * SCAN_GROUP_ROWS + r) * COOP_STRIDE + c * 16u, w);
    }
    workgroupBarrier();
}

@compute @workgroup_size(SCAN_WORKGROUP, 1, 1)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Every invocation reaches every barrier; a warp past the last group
    // multiplies zeros and emits nothing.
    let g0 = (wid.y * nwg.x + wid.x) * WARPS;
    let warp = lid / SCAN_GROUP_ROWS;
    let r = lid % SCAN_GROUP_ROWS;
    let group = g0 + warp;
    let local_row = group * SCAN_GROUP_ROWS + r;
    let scores_row = group < params.groups && local_row < params.rows;
    var row_scale = 0.0;
    if (scores_row) {
        row_scale = scales[local_row];
    }
    let b0 = B_BASE + warp * SCAN_GROUP_ROWS * COOP_STRIDE;
    let tiles = (params.probes + SCAN_PROBE_TILE - 1u) / SCAN_PROBE_TILE;
    for (var tile = 0u; tile < tiles; tile = tile + 1u) {
        let p0 = tile * SCAN_PROBE_TILE;
        // Probe block m against row block n at m * N_TILES + n.
        var acc: array<CoopC, M_TILES * N_TILES>;
        for (var s = 0u; s < SLICES; s = s + 1u) {
            stage_slice(lid, s, p0, g0);
            // Each block of the warp's rows and of the tile's probes is
            // loaded from workgroup memory once per K step: the warp's row
            // blocks first (N_TILES held), then each probe block against
            // all of them.
            for (var k = 0u; k < COOP_SLICE; k = k + COOP_TILE) {
                var b: array<CoopB, N_TILES>;
                for (var n = 0u; n < N_TILES; n = n + 1u) {
                    b[n] = coopLoad<CoopB>(&s_ab[(b0 + n * COOP_TILE * COOP_STRIDE + k) / 4u], VSTRIDE);
                }
                for (var m = 0u; m < M_TILES; m = m + 1u) {
                    let a = coopLoadT<CoopA>(&s_ab[(m * COOP_TILE * COOP_STRIDE + k) / 4u], VSTRIDE);
                    for (var n = 0u; n < N_TILES; n = n + 1u) {
                        acc[m * N_TILES + n] = coopMultiplyAdd(a, b[n], acc[m * N_TILES + n]);
                    }
                }
            }
        }
        let c0 = warp * COOP_TILE * SCAN_GROUP_ROWS;
        for (var m = 0u; m < M_TILES; m = m + 1u) {
            workgroupBarrier();
            for (var n = 0u; n < N_TILES; n = n + 1u) {
                coopStoreT(acc[m * N_TILES + n], &s_c[c0 + n * COOP_TILE], SCAN_GROUP_ROWS);
            }
            workgroupBarrier();
            if (scores_row) {
                for (var i = 0u; i < COOP_TILE; i = i + 1u) {
                    let q = p0 + m * COOP_TILE + i;
                    if (q < params.probes) {
                        let dot = s_c[c0 + i * SCAN_GROUP_ROWS + r];
                        emit(q, local_row, dot * pscales[q] * row_scale);
                    }
                }
            }
        }
    }
}
