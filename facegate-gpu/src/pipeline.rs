//! Compute pipelines, and bind groups for them.

use facegate_core::ElementType;

use crate::shaders::Kernel;

/// The first design's score pipeline for the gallery's element type.
pub struct Pipelines {
    /// Scores a probe batch against a chunk of rows.
    pub score: wgpu::ComputePipeline,
}

/// Compiles `kernel` (the shared prelude, then its file) into a pipeline whose
/// bind group layout is derived from the shader.
fn pipeline(device: &wgpu::Device, kernel: Kernel) -> wgpu::ComputePipeline {
    let label = kernel.file_name();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    })
}

/// The top-k kernel (both designs).
pub fn topk(device: &wgpu::Device) -> wgpu::ComputePipeline {
    pipeline(device, Kernel::Topk)
}

/// The second design's scan kernel (int8).
pub fn scan(device: &wgpu::Device) -> wgpu::ComputePipeline {
    pipeline(device, Kernel::ScanInt8)
}

impl Pipelines {
    /// Compiles the pipelines (validation errors surface through the caller's error scope).
    pub fn new(device: &wgpu::Device, ty: ElementType) -> Pipelines {
        Pipelines {
            score: pipeline(device, Kernel::score(ty)),
        }
    }
}

/// A bind group giving `buffers` to `pipeline`'s bindings 0, 1, ... in order.
pub fn bind(
    device: &wgpu::Device,
    pipeline: &wgpu::ComputePipeline,
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
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}
