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
// Bindings (group 0): as scan_int8.wgsl.
//   0 rows        storage, read        array<vec4<u32>>  interleaved: unit (g * SCAN_CHUNKS + c) * 32 + r % 32
//   1 scales      storage, read        array<f32>        per row of the buffer, padded to whole groups
//   2 probes      storage, read        array<vec4<u32>>  probe q's chunk c at q * SCAN_CHUNKS + c
//   3 pscales     storage, read        array<f32>        per probe
//   4 cuts        storage, read        array<f32>        probe q's cut at q * cut_stride + cut_index
//   5 counts      storage, read_write  array<atomic<u32>> appended per probe (may pass out_stride: overflow)
//   6 out_scores  storage, read_write  array<f32>        dense: q * out_stride + row; lists: q * out_stride + slot
//   7 out_rows    storage, read_write  array<u32>        lists only: gallery row of each entry
//   8 params      uniform              ScanParams
// Workgroup layout: SCAN_WORKGROUP x 1 x 1; workgroup w = workgroup_id.y *
// num_workgroups.x + workgroup_id.x scores groups SLICES * w .. + SLICES
// (SLICES = SCAN_WORKGROUP / SCAN_GROUP_ROWS); invocation i scores row
// i % SCAN_GROUP_ROWS of group SLICES * w + i / SCAN_GROUP_ROWS.
// Score = f32(dot) * probe scale * row scale, as the CPU engine computes it.
// Names in capitals and ScanParams are declared by the prelude that
// facegate-gpu generates from src/shared.rs and puts before this file;
// SCAN_CHUNKS and SCAN_PROBE_TILE come from the pipeline's ScanShape.

@group(0) @binding(0) var<storage, read> rows: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<f32>;
@group(0) @binding(2) var<storage, read> probes: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> pscales: array<f32>;
@group(0) @binding(4) var<storage, read> cuts: array<f32>;
@group(0) @binding(5) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> out_scores: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_rows: array<u32>;
@group(0) @binding(8) var<uniform> params: ScanParams;

const SLICES: u32 = SCAN_WORKGROUP / SCAN_GROUP_ROWS;

var<workgroup> s_probes: array<vec4<u32>, SCAN_PROBE_TILE * SCAN_CHUNKS>;

fn dot16(a: vec4<u32>, b: vec4<u32>) -> i32 {
    return dot4I8Packed(a.x, b.x) + dot4I8Packed(a.y, b.y) + dot4I8Packed(a.z, b.z)
        + dot4I8Packed(a.w, b.w);
}

// Writes (dense) or appends (at or above the cut) probe q's score of a row.
fn emit(q: u32, local_row: u32, s: f32) {
    if (params.dense == 1u) {
        out_scores[q * params.out_stride + local_row] = s;
        return;
    }
    if (s >= cuts[q * params.cut_stride + params.cut_index]) {
        let slot = atomicAdd(&counts[q], 1u);
        if (slot < params.out_stride) {
            out_scores[q * params.out_stride + slot] = s;
            out_rows[q * params.out_stride + slot] = params.row_base + local_row;
        }
    }
}

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
        // The last tile's scores have been read from the probes.
        workgroupBarrier();
        let p0 = tile * SCAN_PROBE_TILE;
        for (var i = lid; i < SCAN_PROBE_TILE * SCAN_CHUNKS; i = i + SCAN_WORKGROUP) {
            // Probes past the batch repeat the last one; their scores are not emitted.
            let q = min(p0 + i / SCAN_CHUNKS, params.probes - 1u);
            s_probes[i] = probes[q * SCAN_CHUNKS + i % SCAN_CHUNKS];
        }
        workgroupBarrier();
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
