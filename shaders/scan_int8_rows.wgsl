// scan_int8_rows.wgsl: the second design's scan with one row per
// invocation; a variant for small batches, to measure beside
// scan_int8.wgsl (`ScanKernel::Rows`), with the same bindings, cut and
// appends. A workgroup scores SCAN_WORKGROUP / SCAN_GROUP_ROWS groups of
// interleaved rows, one per subgroup-sized slice of invocations, each
// invocation its own row: it reads the row's chunks straight from memory
// (for each chunk, a slice's loads are 512 contiguous bytes) and scores
// each against the whole probe tile, held in workgroup memory. No row
// passes through workgroup memory, no partial sums meet there, and the only
// barriers are those around each probe tile's load (one pair for a batch
// that fits one tile). Batches of more probes than a tile read the rows
// again for each tile, so the staged kernel serves large batches.
//
// Bindings (group 0): declared by scan_common.wgsl, which facegate-gpu puts
// before this file with the probe tile (s_probes, next_probe_tile), dot16
// and emit.
// Workgroup layout: SCAN_WORKGROUP x 1 x 1; workgroup w = workgroup_id.y *
// num_workgroups.x + workgroup_id.x scores groups SLICES * w .. + SLICES
// (SLICES = SCAN_WORKGROUP / SCAN_GROUP_ROWS); invocation i scores row
// i % SCAN_GROUP_ROWS of group SLICES * w + i / SCAN_GROUP_ROWS.
// Score = f32(dot) * probe scale * row scale, as the CPU engine computes it.
// Names in capitals and ScanParams are declared by the prelude that
// facegate-gpu generates from src/shared.rs and puts before this file;
// SCAN_CHUNKS and SCAN_PROBE_TILE come from the pipeline's ScanShape.

const SLICES: u32 = SCAN_WORKGROUP / SCAN_GROUP_ROWS;


@compute @workgroup_size(SCAN_WORKGROUP, 1, 1)
fn main(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    // Every invocation reaches every barrier; those past the last group
    // load and emit nothing.
    let group = (wid.y * nwg.x + wid.x) * SLICES + lid / SCAN_GROUP_ROWS;
    let r = lid % SCAN_GROUP_ROWS;
    let local_row = group * SCAN_GROUP_ROWS + r;
    let scores_row = group < params.groups && local_row < params.rows;
    var row_scale = 0.0;
    if (scores_row) {
        row_scale = scales[local_row];
    }
    let tiles = (params.probes + SCAN_PROBE_TILE - 1u) / SCAN_PROBE_TILE;
    for (var tile = 0u; tile < tiles; tile = tile + 1u) {
        let p0 = next_probe_tile(lid, tile);
        if (scores_row) {
            var acc: array<i32, SCAN_PROBE_TILE>;
            for (var c = 0u; c < SCAN_CHUNKS; c = c + 1u) {
                let w = rows[(group * SCAN_CHUNKS + c) * SCAN_GROUP_ROWS + r];
                for (var q = 0u; q < SCAN_PROBE_TILE; q = q + 1u) {
                    acc[q] = acc[q] + dot16(w, s_probes[q * SCAN_CHUNKS + c]);
                }
            }
            for (var q = 0u; q < SCAN_PROBE_TILE; q = q + 1u) {
                if (p0 + q < params.probes) {
                    emit(p0 + q, local_row, f32(acc[q]) * pscales[p0 + q] * row_scale);
                }
            }
        }
    }
}
