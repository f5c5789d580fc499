//! Compute pipelines, and bind groups for them.

use facegate_core::ElementType;

use crate::shaders::Kernel;
use crate::shared::{ScanKernel, ScanShape};

/// The first design's score pipeline for the gallery's element type.
pub struct Pipelines {
    /// Scores a probe batch against a chunk of rows.
    pub score: wgpu::ComputePipeline,
}

/// Compiles `kernel` (the shared prelude, then its file) into a pipeline whose
/// bind group layout is derived from the shader; with naga's runtime checks
/// unless `runtime_checks` is false ([`module`]).
fn pipeline(device: &wgpu::Device, kernel: Kernel, runtime_checks: bool) -> wgpu::ComputePipeline {
    let label = kernel.file_name();
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
    };
    let module = module(device, desc, runtime_checks);
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// The read-bandwidth kernel ([`crate::bandwidth`]).
pub fn read_bandwidth(device: &wgpu::Device) -> wgpu::ComputePipeline {
    pipeline(device, Kernel::ReadBandwidth, true)
}

/// The top-k kernel (both designs). With `runtime_checks` false the module
/// is trusted: naga adds no bounds clamps or loop guards, which holds
/// because its workgroup indices stay below 2K <= `TOPK_CAPACITY` (the
/// host never passes a K above `TOPK_MAX_K`, and a block is folded in
/// before its appends could pass K), its buffer indices are bounded by the
/// buffers the host sizes from the same parameters (topk.rs), M is at
/// least 1, and its loops have uniform bounds.
pub fn topk(device: &wgpu::Device, runtime_checks: bool) -> wgpu::ComputePipeline {
    pipeline(device, Kernel::Topk, runtime_checks)
}

/// Compiles `desc`, with naga's runtime checks or, when `runtime_checks` is
/// false, as a trusted module; the caller's doc says why its kernel may be
/// trusted.
fn module(
    device: &wgpu::Device,
    desc: wgpu::ShaderModuleDescriptor,
    runtime_checks: bool,
) -> wgpu::ShaderModule {
    if runtime_checks {
        return device.create_shader_module(desc);
    }
    // SAFETY: the only callers are kernels whose indices are in bounds by
    // construction and whose loops terminate (their docs say why).
    unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
}

/// The second design's scan kernel, compiled once per [`ScanShape`] the
/// engine may pick, all sharing one bind group layout so that the bind
/// groups made once per scratch serve every shape.
pub struct ScanPipelines {
    /// The layout every shape's bind groups are made for.
    pub layout: wgpu::BindGroupLayout,
    /// The pipelines, by increasing `thread_probes`.
    pub by_shape: Vec<(ScanShape, wgpu::ComputePipeline)>,
    /// The kernel they all run (its dispatch depends on it).
    pub kernel: ScanKernel,
}

/// The most probes an invocation scores when the engine picks the shape:
/// on an H200, 8 ran 1.5 times slower than 4 at every batch size (its
/// larger probe tile holds fewer workgroups per core; docs/benchmarks.md).
pub const AUTO_MAX_THREAD_PROBES: u32 = 4;

/// The scan kernel's bindings, in its order: five read-only storage buffers
/// (rows, scales, probes, probe scales, cuts), three read-write (counts,
/// scores, rows out), the parameters.
fn scan_layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
    let entries: Vec<_> = (0..9)
        .map(|b| match b {
            0..=4 => entry(b, storage(true)),
            5..=7 => entry(b, storage(false)),
            _ => entry(b, wgpu::BufferBindingType::Uniform),
        })
        .collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("scan bindings"),
        entries: &entries,
    })
}

impl ScanPipelines {
    /// Compiles `kernel` for rows of `chunks` 16-byte chunks and each of
    /// `thread_probes` (the coop kernel for cooperative matrices of side
    /// `coop_tile`). With
    /// `runtime_checks` false the module is trusted:
    /// naga adds no bounds clamps, loop guards or division checks, which
    /// holds because every index the kernel forms is bounded by the buffer
    /// sizes the engine makes from the same plan (scan.rs), its loops have
    /// constant or uniform bounds, and it divides only by constants.
    pub fn new(
        device: &wgpu::Device,
        chunks: u32,
        thread_probes: &[u32],
        kernel: ScanKernel,
        coop_tile: u32,
        runtime_checks: bool,
    ) -> ScanPipelines {
        let layout = scan_layout(device);
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("scan"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let by_shape = thread_probes
            .iter()
            .map(|&tp| {
                let shape = ScanShape {
                    chunks,
                    thread_probes: tp,
                    kernel,
                    coop_tile,
                };
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some("scan kernel"),
                    source: wgpu::ShaderSource::Wgsl(Kernel::scan_source(shape).into()),
                };
                let module = module(device, desc, runtime_checks);
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some("scan kernel"),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                });
                (shape, pipeline)
            })
            .collect();
        ScanPipelines {
            layout,
            by_shape,
            kernel,
        }
    }

    /// The pipeline for a batch of `probes`: the smallest probe tile that
    /// holds the batch (so that small batches score no padding), up to
    /// [`AUTO_MAX_THREAD_PROBES`] probes an invocation; `forced` picks by
    /// `thread_probes` instead when compiled.
    pub fn for_batch(&self, probes: u32, forced: Option<u32>) -> &wgpu::ComputePipeline {
        let auto = || {
            let mut usable = self
                .by_shape
                .iter()
                .filter(|(s, _)| s.thread_probes <= AUTO_MAX_THREAD_PROBES);
            let largest = usable.clone().next_back();
            usable.find(|(s, _)| s.probe_tile() >= probes).or(largest)
        };
        let pick = forced
            .and_then(|tp| self.by_shape.iter().find(|(s, _)| s.thread_probes == tp))
            .or_else(auto)
            .or(self.by_shape.last());
        // by_shape is never empty: ScanDesign compiles at least one shape.
        &pick.expect("at least one scan shape").1
    }
}

impl Pipelines {
    /// Compiles the pipelines (validation errors surface through the caller's error scope).
    pub fn new(device: &wgpu::Device, ty: ElementType) -> Pipelines {
        Pipelines {
            score: pipeline(device, Kernel::score(ty), true),
        }
    }
}

/// A bind group giving `buffers` to `pipeline`'s bindings 0, 1, ... in order.
pub fn bind(
    device: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    bind_layout(device, &pipeline.get_bind_group_layout(0), buffers)
}

/// A bind group giving `buffers` to `layout`'s bindings 0, 1, ... in order.
pub fn bind_layout(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &entries,
    })
}
