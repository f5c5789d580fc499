// scan_common.wgsl: what every scan kernel (scan_int8.wgsl,
// scan_int8_direct.wgsl, scan_int8_rows.wgsl, scan_f16_coop.wgsl) shares,
// put by facegate-gpu after the prelude and the pipeline's ScanShape
// constants and before the kernel's own file: the bindings, the 16-byte
// int8 dot product, and how a score is written (the pilot) or appended
// (the scan). The int8 kernels also get scan_probe_tile.wgsl.
//
// Bindings (group 0):
//   0 rows        storage, read        array<vec4<u32>>  interleaved: unit (g * SCAN_CHUNKS + c) * 32 + r % 32
//   1 scales      storage, read        array<f32>        per row of the buffer, padded to whole groups
//   2 probes      storage, read        array<vec4<u32>>  probe q's chunk c at q * SCAN_CHUNKS + c
//   3 pscales     storage, read        array<f32>        per probe
//   4 cuts        storage, read        array<f32>        probe q's cut at q * cut_stride + cut_index
//   5 counts      storage, read_write  array<atomic<u32>> appended per probe (may pass out_stride: overflow)
//   6 out_scores  storage, read_write  array<f32>        dense: q * out_stride + row; lists: q * out_stride + slot
//   7 out_rows    storage, read_write  array<u32>        lists only: gallery row of each entry
//   8 params      uniform              ScanParams
// Workgroup layout: each kernel's own (its file says).
// Score = f32(dot) * probe scale * row scale, as the CPU engine computes it,
// so the scores are bit-identical and both engines rank alike.

@group(0) @binding(0) var<storage, read> rows: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> scales: array<f32>;
@group(0) @binding(2) var<storage, read> probes: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> pscales: array<f32>;
@group(0) @binding(4) var<storage, read> cuts: array<f32>;
@group(0) @binding(5) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(6) var<storage, read_write> out_scores: array<f32>;
@group(0) @binding(7) var<storage, read_write> out_rows: array<u32>;
@group(0) @binding(8) var<uniform> params: ScanParams;

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
