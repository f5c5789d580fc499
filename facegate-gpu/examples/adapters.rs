//! Lists every Vulkan adapter wgpu sees, with the features and cooperative
//! matrix configurations that decide which score kernels an adapter could
//! run: the first thing to look at on a new GPU machine, before a benchmark.
//!
//!     cargo run -p facegate-gpu --example adapters
//!     VK_ICD_FILENAMES=/path/to/icd.json cargo run -p facegate-gpu --example adapters

fn main() {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::VULKAN;
    let instance = wgpu::Instance::new(desc);
    for a in pollster::block_on(instance.enumerate_adapters(wgpu::Backends::VULKAN)) {
        let info = a.get_info();
        let f = a.features();
        println!(
            "{} ({}, {:?})",
            info.name, info.driver_info, info.device_type
        );
        println!("  SHADER_F16: {}", f.contains(wgpu::Features::SHADER_F16));
        println!(
            "  COOPERATIVE_MATRIX: {}",
            f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
        );
        println!("  SUBGROUP: {}", f.contains(wgpu::Features::SUBGROUP));
        for p in a.cooperative_matrix_properties() {
            println!(
                "  coop {}x{}x{} ab={:?} cr={:?} sat={}",
                p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type, p.saturating_accumulation
            );
        }
        let l = a.limits();
        println!(
            "  max_storage_buffer_binding_size {} max_buffer_size {}",
            l.max_storage_buffer_binding_size, l.max_buffer_size
        );
    }
}
