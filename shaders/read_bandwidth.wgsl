// read_bandwidth.wgsl: the device's read bandwidth, the physical limit of a
// scan that reads every gallery row once per batch. Each invocation reads
// 16-byte units i, i + stride, i + 2 stride, ... of `src` (stride = every
// invocation of the dispatch, so a subgroup's loads are contiguous), four
// per iteration to keep several loads in flight, XOR-folds them and writes
// one word, so that no read can be dropped by the compiler.
//
// Bindings (group 0):
//   0 src   storage, read        array<vec4<u32>>  the bytes to read (any length)
//   1 sink  storage, read_write  array<u32>        one word per invocation of the dispatch
// Workgroup layout: BANDWIDTH_WORKGROUP x 1 x 1, one-dimensional dispatch.
// Names in capitals are declared by the prelude that facegate-gpu generates
// from src/shared.rs and puts before this file.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> sink: array<u32>;

@compute @workgroup_size(BANDWIDTH_WORKGROUP, 1, 1)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let stride = nwg.x * BANDWIDTH_WORKGROUP;
    let n = arrayLength(&src);
    var acc = vec4<u32>(0u);
    var i = gid.x;
    for (; i + 3u * stride < n; i = i + 4u * stride) {
        acc = acc ^ src[i] ^ src[i + stride] ^ src[i + 2u * stride] ^ src[i + 3u * stride];
    }
    for (; i < n; i = i + stride) {
        acc = acc ^ src[i];
    }
    sink[gid.x] = acc.x ^ acc.y ^ acc.z ^ acc.w;
}
