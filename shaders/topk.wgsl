// topk.wgsl: the best M (score, row) pairs of each segment of each probe's
// candidates, selected in workgroup memory. Used twice: on the score matrix of
// a chunk (rows numbered params.row_base + index), and to merge the partial
// lists that pass produced (rows read from in_rows), until one list of M per
// probe is left. Only those lists ever go back to the host.
//
// Order: higher score first, ties broken by the lower row; NaN never enters.
//
// Bindings (group 0):
//   0 in_scores   storage, read        array<f32>  probe p's inputs at p * params.in_stride + i, i < params.n_in
//   1 in_rows     storage, read        array<u32>  rows of the inputs (only when params.from_pairs == 1)
//   2 out_scores  storage, read_write  array<f32>  probe p, segment s: p * params.out_stride + params.out_base + s * params.m + j
//   3 out_rows    storage, read_write  array<u32>  same indexing; missing entries are (-inf, NO_ROW)
//   4 params      uniform              TopkParams
//   5 counts      storage, read        array<u32>  when params.counted == 1, probe p has only its
//                                                  first min(counts[p], n_in) inputs (the second
//                                                  design's candidate lists); else unread
// Workgroup layout: TOPK_WORKGROUP x 1 x 1; workgroup_id.x = segment of params.seg_len
// inputs, workgroup_id.y = probe. Each workgroup keeps its best K in the
// lower half of a 2K buffer (of TOPK_CAPACITY = 2 x TOPK_MAX_K entries): K
// is the smallest power of two that holds its segment's inputs, between
// params.k_least (at least TOPK_WORKGROUP and M) and params.k (at most
// TOPK_MAX_K), so that a long segment is folded rarely and a short or empty
// one sorts no more than it needs. Inputs strictly better than the current
// M-th best are appended to the upper half, and a bitonic sort of the whole
// buffer folds them in whenever the upper half could overflow, and once at
// the end.
// Names in capitals and TopkParams are declared by the prelude that
// facegate-gpu generates from src/shared.rs and puts before this file.

@group(0) @binding(0) var<storage, read> in_scores: array<f32>;
@group(0) @binding(1) var<storage, read> in_rows: array<u32>;
@group(0) @binding(2) var<storage, read_write> out_scores: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_rows: array<u32>;
@group(0) @binding(4) var<uniform> params: TopkParams;
@group(0) @binding(5) var<storage, read> counts: array<u32>;

var<workgroup> s_key: array<f32, TOPK_CAPACITY>;
var<workgroup> s_row: array<u32, TOPK_CAPACITY>;
var<workgroup> appended: atomic<u32>;
var<workgroup> appended_seen: u32;
var<workgroup> cut_key: f32;
var<workgroup> cut_row: u32;
var<workgroup> counted_in: u32;

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

// Whether (ka, ra) ranks strictly before (kb, rb).
fn before(ka: f32, ra: u32, kb: f32, rb: u32) -> bool {
    return ka > kb || (ka == kb && ra < rb);
}

// The K a workgroup whose segment holds `inputs` inputs keeps.
fn keep_for(inputs: u32) -> u32 {
    let want = clamp(inputs, 1u, params.k);
    // The smallest power of two >= want (want <= TOPK_MAX_K, so no overflow).
    let pow = 1u << (32u - countLeadingZeros(want - 1u));
    return clamp(pow, params.k_least, params.k);
}

// Sorts s_key/s_row[0 .. 2k) best first, then resets the upper half.
fn fold(lid: u32, k: u32) {
    let n = 2u * k;
    for (var size = 2u; size <= n; size = size << 1u) {
        for (var stride = size >> 1u; stride > 0u; stride = stride >> 1u) {
            for (var i = lid; i < n; i = i + TOPK_WORKGROUP) {
                let j = i ^ stride;
                if (j > i) {
                    let best_first = (i & size) == 0u;
                    let i_before = before(s_key[i], s_row[i], s_key[j], s_row[j]);
                    if (i_before != best_first) {
                        let tk = s_key[i];
                        let tr = s_row[i];
                        s_key[i] = s_key[j];
                        s_row[i] = s_row[j];
                        s_key[j] = tk;
                        s_row[j] = tr;
                    }
                }
            }
            workgroupBarrier();
        }
    }
    for (var i = k + lid; i < n; i = i + TOPK_WORKGROUP) {
        s_key[i] = neg_inf();
        s_row[i] = NO_ROW;
    }
    if (lid == 0u) {
        atomicStore(&appended, 0u);
        cut_key = s_key[params.m - 1u];
        cut_row = s_row[params.m - 1u];
    }
    workgroupBarrier();
}

@compute @workgroup_size(TOPK_WORKGROUP, 1, 1)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let lid = lid3.x;
    let seg = wid.x;
    let p = wid.y;
    if (lid == 0u) {
        atomicStore(&appended, 0u);
        cut_key = neg_inf();
        cut_row = NO_ROW;
        counted_in = params.n_in;
        if (params.counted == 1u) {
            counted_in = min(counts[p], params.n_in);
        }
    }
    // Uniform across the workgroup, as the loops' barriers need (and so
    // are the segment's bounds and K, made from it and the workgroup id).
    let n_in = workgroupUniformLoad(&counted_in);
    let start = seg * params.seg_len;
    let end = min(start + params.seg_len, n_in);
    let inputs = end - min(start, end);
    let k = keep_for(inputs);
    for (var i = lid; i < 2u * k; i = i + TOPK_WORKGROUP) {
        s_key[i] = neg_inf();
        s_row[i] = NO_ROW;
    }
    workgroupBarrier();
    let blocks = (inputs + TOPK_WORKGROUP - 1u) / TOPK_WORKGROUP;
    for (var b = 0u; b < blocks; b = b + 1u) {
        // Fold first if this block could overflow the upper half.
        if (lid == 0u) {
            appended_seen = atomicLoad(&appended);
        }
        let seen = workgroupUniformLoad(&appended_seen);
        if (seen + TOPK_WORKGROUP > k) {
            fold(lid, k);
        }
        let i = start + b * TOPK_WORKGROUP + lid;
        if (i < end) {
            let key = in_scores[p * params.in_stride + i];
            var row = params.row_base + i;
            if (params.from_pairs == 1u) {
                row = in_rows[p * params.in_stride + i];
            }
            if (row != NO_ROW && before(key, row, cut_key, cut_row)) {
                let slot = atomicAdd(&appended, 1u);
                s_key[k + slot] = key;
                s_row[k + slot] = row;
            }
        }
        workgroupBarrier();
    }
    fold(lid, k);
    for (var j = lid; j < params.m; j = j + TOPK_WORKGROUP) {
        let o = p * params.out_stride + params.out_base + seg * params.m + j;
        out_scores[o] = s_key[j];
        out_rows[o] = s_row[j];
    }
}
