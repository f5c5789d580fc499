// scan_int8_direct.wgsl: the second design's scan with the rows in
// registers instead of workgroup memory; a variant to measure beside
// scan_int8.wgsl (`ScanOptions::direct`), with the same bindings, dispatch
// (one workgroup per group of SCAN_GROUP_ROWS interleaved rows), cut and
// appends. The workgroup's SCAN_WORKGROUP / SCAN_GROUP_ROWS slices of
// invocations each load a contiguous share of the group's chunks straight
// into registers (one subgroup's loads of a chunk are 512 contiguous bytes),
// all issued before the first barrier; each slice scores its share against
// the probe tile, and the slices' partial sums meet in workgroup memory,
// where the first slice adds them up and emits. So no row passes through
// workgroup memory, and one barrier, not two, stands between a group's
// loads and its first scores.
//
// Bindings (group 0): declared by scan_common.wgsl, which facegate-gpu puts
// before this file with the probe tile (s_probes, next_probe_tile), dot16
// and emit.
// Workgroup layout: SCAN_WORKGROUP x 1 x 1; the group is workgroup_id.y *
// num_workgroups.x + workgroup_id.x. Invocation i loads chunks
// SLICE_CHUNKS * (i / SCAN_GROUP_ROWS) .. + SLICE_CHUNKS of row i % SCAN_GROUP_ROWS.
// Score = f32(dot) * probe scale * row scale, as the CPU engine computes it
// (the integer dot is exact whatever the order of its partial sums).
// Names in capitals and ScanParams are declared by the prelude that
// facegate-gpu generates from src/shared.rs and puts before this file;
// SCAN_CHUNKS, SCAN_THREAD_PROBES and SCAN_PROBE_TILE come from the
// pipeline's ScanShape.

const SLICES: u32 = SCAN_WORKGROUP / SCAN_GROUP_ROWS;
const SLICE_CHUNKS: u32 = (SCAN_CHUNKS + SLICES - 1u) / SLICES;

// Slice s's partial dot of row r and tile probe q at (s * SCAN_GROUP_ROWS + r) * SCAN_PROBE_TILE + q.
var<workgroup> s_part: array<i32, SCAN_WORKGROUP * SCAN_PROBE_TILE>;

@compute @workgroup_size(SCAN_WORKGROUP, 1, 1)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let group = wid.y * nwg.x + wid.x;
    if (group >= params.groups) {
        return;
    }
    let r = lid % SCAN_GROUP_ROWS;
    let slice = lid / SCAN_GROUP_ROWS;
    let c0 = slice * SLICE_CHUNKS;
    // The row's share, loaded before anything waits (a share past the last
    // chunk, when SLICES does not divide SCAN_CHUNKS, stays zero).
    var w: array<vec4<u32>, SLICE_CHUNKS>;
    for (var c = 0u; c < SLICE_CHUNKS; c = c + 1u) {
        if (c0 + c < SCAN_CHUNKS) {
            w[c] = rows[(group * SCAN_CHUNKS + c0 + c) * SCAN_GROUP_ROWS + r];
        }
    }
    let local_row = group * SCAN_GROUP_ROWS + r;
    let tiles = (params.probes + SCAN_PROBE_TILE - 1u) / SCAN_PROBE_TILE;
    for (var tile = 0u; tile < tiles; tile = tile + 1u) {
        let p0 = next_probe_tile(lid, tile);
        for (var q = 0u; q < SCAN_PROBE_TILE; q = q + 1u) {
            var acc = 0;
            for (var c = 0u; c < SLICE_CHUNKS; c = c + 1u) {
                if (c0 + c < SCAN_CHUNKS) {
                    acc = acc + dot16(w[c], s_probes[q * SCAN_CHUNKS + c0 + c]);
                }
            }
            s_part[lid * SCAN_PROBE_TILE + q] = acc;
        }
        workgroupBarrier();
        if (slice == 0u && local_row < params.rows) {
            let row_scale = scales[local_row];
            for (var q = 0u; q < SCAN_PROBE_TILE; q = q + 1u) {
                if (p0 + q < params.probes) {
                    var dot = 0;
                    for (var s = 0u; s < SLICES; s = s + 1u) {
                        dot = dot + s_part[(s * SCAN_GROUP_ROWS + r) * SCAN_PROBE_TILE + q];
                    }
                    emit(p0 + q, local_row, f32(dot) * pscales[p0 + q] * row_scale);
                }
            }
        }
    }
}
