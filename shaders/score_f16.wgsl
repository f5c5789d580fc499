// score_f16.wgsl: cosine scores of a batch of f32 probes against a chunk of
// f16 gallery rows. Rows are read as u32 words holding two halves and widened
// with unpack2x16float, so no SHADER_F16 feature is needed; accumulation is f32.
//
// Bindings (group 0):
//   0 rows     storage, read        array<u32>        2 f16 per word; row r starts at word r * params.stride_words
//   1 unused   storage, read        array<f32>        (kept so all score kernels share one layout)
//   2 probes   storage, read        array<vec2<f32>>  probe p starts at p * params.dim_words
//   3 unused   storage, read        array<f32>
//   4 scores   storage, read_write  array<f32>        probe-major: scores[p * params.rows + r]
//   5 params   uniform              ScoreParams       dim_words = ceil(dim / 2); row and probe padding is zero
// Workgroup layout: SCORE_WORKGROUP x 1 x 1; x = row within the chunk, y = tile of PROBE_TILE probes.
// Names in capitals and ScoreParams are declared by the prelude that
// facegate-gpu generates from src/shared.rs and puts before this file.


@group(0) @binding(0) var<storage, read> rows: array<u32>;
@group(0) @binding(1) var<storage, read> unused_a: array<f32>;
@group(0) @binding(2) var<storage, read> probes: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read> unused_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<uniform> params: ScoreParams;

@compute @workgroup_size(SCORE_WORKGROUP, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= params.rows) {
        return;
    }
    let p0 = gid.y * PROBE_TILE;
    var acc: array<f32, PROBE_TILE>;
    let base = r * params.stride_words;
    for (var i = 0u; i < params.dim_words; i = i + 1u) {
        let w = unpack2x16float(rows[base + i]);
        for (var t = 0u; t < PROBE_TILE; t = t + 1u) {
            let p = min(p0 + t, params.probes - 1u);
            acc[t] = acc[t] + dot(w, probes[p * params.dim_words + i]);
        }
    }
    for (var t = 0u; t < PROBE_TILE; t = t + 1u) {
        let p = p0 + t;
        if (p < params.probes) {
            scores[p * params.rows + r] = acc[t];
        }
    }
    // Touch the unused bindings so that they stay in the pipeline layout.
    if (params.rows == 0xffffffffu) {
        scores[0] = unused_a[0] + unused_b[0];
    }
}
