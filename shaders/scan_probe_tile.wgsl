// scan_probe_tile.wgsl: the int8 scan kernels' probe tile in workgroup
// memory and its loading, put by facegate-gpu after scan_common.wgsl
// before scan_int8.wgsl, scan_int8_direct.wgsl and scan_int8_rows.wgsl (the
// coop kernel stages its probes in f16 instead).

// The probe tile every kernel scores its rows against: probe p0 + q's
// chunk c at q * SCAN_CHUNKS + c.
var<workgroup> s_probes: array<vec4<u32>, SCAN_PROBE_TILE * SCAN_CHUNKS>;

// Loads tile `tile` of the batch's probes into s_probes, between barriers
// (before: whatever read the last tile is done; after: the tile is in);
// returns the tile's first probe. Called by every invocation, in uniform
// control flow. Probes past the batch repeat the last one; their scores are
// not emitted.
fn next_probe_tile(lid: u32, tile: u32) -> u32 {
    workgroupBarrier();
    let p0 = tile * SCAN_PROBE_TILE;
    for (var i = lid; i < SCAN_PROBE_TILE * SCAN_CHUNKS; i = i + SCAN_WORKGROUP) {
        let q = min(p0 + i / SCAN_CHUNKS, params.probes - 1u);
        s_probes[i] = probes[q * SCAN_CHUNKS + i % SCAN_CHUNKS];
    }
    workgroupBarrier();
    return p0;
}
