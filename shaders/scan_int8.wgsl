// scan_int8.wgsl: the second design's int8 scan. One workgroup scores one
// group of SCAN_GROUP_ROWS interleaved rows against every probe of the batch:
// it reads the group from memory once (a contiguous block: the layout puts
// chunk c of the group's rows side by side), keeps it in workgroup memory,
// and brings the probes through in tiles of SCAN_PROBE_TILE. So the gallery
// is read once per batch, whatever the batch size. No score matrix is
// written, except by the pilot (dense = 1, over a small sample of groups):
// each score at or above its probe's cut (the pilot's M-th best, never above
// the whole gallery's M-th best) is appended to that probe's bounded list.
//
// Bindings (group 0): declared by scan_common.wgsl, which facegate-gpu puts
// before this file with the probe tile (s_probes, next_probe_tile), dot16
// and emit.
// Workgroup layout: SCAN_WORKGROUP x 1 x 1; the group is workgroup_id.y *
// num_workgroups.x + workgroup_id.x (two dimensions: more groups than one
// dimension allows). Invocation i scores row i % SCAN_GROUP_ROWS against
// probes SCAN_THREAD_PROBES * (i / SCAN_GROUP_ROWS) .. + SCAN_THREAD_PROBES
// of each tile.
// Score = f32(dot) * probe scale * row scale, as the CPU engine computes it,
// so the scores are bit-identical and both engines rank alike.
// Names in capitals and ScanParams are declared by the prelude that
// facegate-gpu generates from src/shared.rs and puts before this file;
// SCAN_CHUNKS (the gallery's chunks per row), SCAN_THREAD_PROBES and
// SCAN_PROBE_TILE come from the pipeline's ScanShape, so every loop below
// has a constant trip count and the compiler can unroll it and keep the
// accumulators in registers.

var<workgroup> s_rows: array<vec4<u32>, SCAN_GROUP_ROWS * SCAN_CHUNKS>;

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
    // The group's rows, read by all once the first tile's first barrier
    // (in next_probe_tile) has passed.
    const UNITS = SCAN_GROUP_ROWS * SCAN_CHUNKS;
    for (var i = lid; i < UNITS; i = i + SCAN_WORKGROUP) {
        s_rows[i] = rows[group * UNITS + i];
    }
    let r = lid % SCAN_GROUP_ROWS;
    let first = (lid / SCAN_GROUP_ROWS) * SCAN_THREAD_PROBES;
    let local_row = group * SCAN_GROUP_ROWS + r;
    let row_scale = scales[local_row];
    let tiles = (params.probes + SCAN_PROBE_TILE - 1u) / SCAN_PROBE_TILE;
    for (var tile = 0u; tile < tiles; tile = tile + 1u) {
        let p0 = next_probe_tile(lid, tile);
        var acc: array<i32, SCAN_THREAD_PROBES>;
        for (var c = 0u; c < SCAN_CHUNKS; c = c + 1u) {
            let w = s_rows[c * SCAN_GROUP_ROWS + r];
            for (var j = 0u; j < SCAN_THREAD_PROBES; j = j + 1u) {
                acc[j] = acc[j] + dot16(w, s_probes[(first + j) * SCAN_CHUNKS + c]);
            }
        }
        if (local_row < params.rows) {
            for (var j = 0u; j < SCAN_THREAD_PROBES; j = j + 1u) {
                let q = p0 + first + j;
                if (q < params.probes) {
                    emit(q, local_row, f32(acc[j]) * pscales[q] * row_scale);
                }
            }
        }
    }
}
