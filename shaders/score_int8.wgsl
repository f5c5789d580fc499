// score_int8.wgsl: cosine scores of a batch of int8 probes against a chunk of
// int8 gallery rows, with the packed 4 x int8 dot product (dot4I8Packed).
//
// Bindings (group 0):
//   0 rows     storage, read        array<u32>  4 int8 per word; row r starts at word r * params.stride_words
//   1 scales   storage, read        array<f32>  one symmetric scale per row of the chunk
//   2 probes   storage, read        array<u32>  4 int8 per word; probe p starts at word p * params.dim_words
//   3 pscales  storage, read        array<f32>  one scale per probe
//   4 scores   storage, read_write  array<f32>  probe-major: scores[p * params.rows + r]
//   5 params   uniform              ScoreParams  dim_words = ceil(dim / 4); row and probe padding is zero
// Workgroup layout: SCORE_WORKGROUP x 1 x 1. global_invocation_id.x is the row within the
// chunk; global_invocation_id.y selects a tile of PROBE_TILE probes, so each
// row word read from memory serves PROBE_TILE probes.
// Score = f32(dot) * probe scale * row scale, the same operations in the same
// order as the CPU engine, so both rank int8 candidates identically.
// Names in capitals and ScoreParams are declared by the prelude that
// facegate-gpu generates from src/shared.rs and puts before this file.


@group(0) @binding(0) var<storage, read> rows: array<u32>;
@group(0) @binding(1) var<storage, read> scales: array<f32>;
@group(0) @binding(2) var<storage, read> probes: array<u32>;
@group(0) @binding(3) var<storage, read> pscales: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<uniform> params: ScoreParams;

@compute @workgroup_size(SCORE_WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= params.rows) {
        return;
    }
    let p0 = gid.y * PROBE_TILE;
    var acc: array<i32, PROBE_TILE>;
    let base = r * params.stride_words;
    for (var i = 0u; i < params.dim_words; i = i + 1u) {
        let w = rows[base + i];
        for (var t = 0u; t < PROBE_TILE; t = t + 1u) {
            // Probes past the batch repeat the last one; their scores are not written.
            let p = min(p0 + t, params.probes - 1u);
            acc[t] = acc[t] + dot4I8Packed(w, probes[p * params.dim_words + i]);
        }
    }
    let s = scales[r];
    for (var t = 0u; t < PROBE_TILE; t = t + 1u) {
        let p = p0 + t;
        if (p < params.probes) {
            scores[p * params.rows + r] = f32(acc[t]) * pscales[p] * s;
        }
    }
}
