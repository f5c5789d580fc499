//! Every WGSL kernel (the shared prelude, then its file) parses and validates
//! with naga, and its file documents its layout; and what the prelude
//! declares agrees with the Rust side: constants, uniform struct layouts,
//! which struct and workgroup width each kernel uses, and the top-k kernel's
//! workgroup memory.

use facegate_gpu::shaders::Kernel;
use facegate_gpu::shared::{
    BANDWIDTH_WORKGROUP, CONSTANTS, COOP_TILES, SCAN_WORKGROUP, SCORE_WORKGROUP, ScanKernel,
    ScanShape, TOPK_WORKGROUP, TOPK_WORKGROUP_BYTES, UNIFORMS, wgsl_prelude,
};

/// Parses and validates `source`, panicking with naga's message under `name`.
fn module(name: &str, source: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    module
}

/// Sizes and offsets of `module`'s types under WGSL's layout rules.
fn layouter(module: &naga::Module) -> naga::proc::Layouter {
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    layouter
}

#[test]
fn every_shader_validates_and_has_a_layout_header() {
    for kernel in Kernel::ALL {
        let name = kernel.file_name();
        module(name, &kernel.source());
        let header: String = kernel
            .file()
            .lines()
            .take_while(|l| l.starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            header.contains("Bindings"),
            "{name}: header lacks the bindings"
        );
        assert!(
            header.contains("Workgroup layout"),
            "{name}: header lacks the workgroup layout"
        );
    }
}

#[test]
fn the_prelude_declares_every_shared_constant_with_its_rust_value() {
    let module = module("prelude", &wgsl_prelude());
    for &(name, value) in CONSTANTS {
        let (_, constant) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("the prelude lacks {name}"));
        assert_eq!(
            module.global_expressions[constant.init],
            naga::Expression::Literal(naga::Literal::U32(value)),
            "{name}"
        );
    }
}

#[test]
fn wgsl_lays_out_every_uniform_struct_as_rust_does() {
    let module = module("prelude", &wgsl_prelude());
    let layouter = layouter(&module);
    for uniform in UNIFORMS {
        let (handle, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(uniform.name))
            .unwrap_or_else(|| panic!("the prelude lacks {}", uniform.name));
        let naga::TypeInner::Struct { members, .. } = &ty.inner else {
            panic!("{} is not a struct", uniform.name);
        };
        let wgsl: Vec<(&str, usize)> = members
            .iter()
            .map(|m| (m.name.as_deref().unwrap(), m.offset as usize))
            .collect();
        assert_eq!(
            wgsl, uniform.members,
            "{}: members and offsets",
            uniform.name
        );
        assert_eq!(
            layouter[handle].size as usize, uniform.size,
            "{}: size",
            uniform.name
        );
    }
}

#[test]
fn each_kernel_takes_its_params_struct_and_workgroup_width() {
    for kernel in Kernel::ALL {
        let name = kernel.file_name();
        let (params, width): (&[&str], u32) = match kernel {
            Kernel::Topk => (&["TopkParams"], TOPK_WORKGROUP),
            Kernel::ScanInt8 | Kernel::ScanInt8Direct | Kernel::ScanInt8Rows | Kernel::ScanCoop => {
                (&["ScanParams"], SCAN_WORKGROUP)
            }
            Kernel::ReadBandwidth => (&[], BANDWIDTH_WORKGROUP),
            _ => (&["ScoreParams"], SCORE_WORKGROUP),
        };
        let module = module(name, &kernel.source());
        let uniforms: Vec<&str> = module
            .global_variables
            .iter()
            .filter(|(_, v)| v.space == naga::AddressSpace::Uniform)
            .map(|(_, v)| module.types[v.ty].name.as_deref().unwrap_or("?"))
            .collect();
        assert_eq!(uniforms, params, "{name}: uniforms");
        let [main] = &module.entry_points[..] else {
            panic!("{name}: one entry point expected");
        };
        assert_eq!(main.workgroup_size, [width, 1, 1], "{name}: workgroup size");
    }
}

/// Bytes of workgroup memory `kernel` declares, by naga's layout.
fn workgroup_bytes(kernel: Kernel) -> u32 {
    source_workgroup_bytes(kernel.file_name(), &kernel.source())
}

/// Bytes of workgroup memory the WGSL `source` declares, by naga's layout.
fn source_workgroup_bytes(name: &str, source: &str) -> u32 {
    let module = module(name, source);
    let layouter = layouter(&module);
    module
        .global_variables
        .iter()
        .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
        .map(|(_, v)| layouter[v.ty].size)
        .sum()
}

#[test]
fn the_topk_and_scan_kernels_declare_the_workgroup_memory_the_engine_checks() {
    assert_eq!(workgroup_bytes(Kernel::Topk), TOPK_WORKGROUP_BYTES);
    // Each scan kernel's default source is its largest shape, the one the
    // engine checks against the adapter's limit.
    for (kernel, scan) in [
        (Kernel::ScanInt8, ScanKernel::Staged),
        (Kernel::ScanInt8Direct, ScanKernel::Direct),
        (Kernel::ScanInt8Rows, ScanKernel::Rows),
        (Kernel::ScanCoop, ScanKernel::Coop),
    ] {
        assert_eq!(
            workgroup_bytes(kernel),
            scan.max_workgroup_bytes(),
            "{scan:?}"
        );
    }
}

#[test]
fn every_scan_shape_compiles_and_declares_what_its_shape_says() {
    let coop = COOP_TILES.map(|t| (ScanKernel::Coop, t));
    for (kernel, coop_tile) in ScanKernel::ALL.map(|k| (k, 0)).into_iter().chain(coop) {
        for chunks in [1, 5, 32] {
            for thread_probes in [1, 2, 4, 8] {
                let shape = ScanShape {
                    chunks,
                    thread_probes,
                    kernel,
                    coop_tile,
                };
                let source = Kernel::scan_source(shape);
                assert_eq!(
                    source_workgroup_bytes("scan kernel", &source),
                    shape.workgroup_bytes(),
                    "{shape:?}"
                );
                assert!(
                    shape.workgroup_bytes() <= kernel.max_workgroup_bytes(),
                    "{shape:?}"
                );
            }
        }
    }
    // What the H200 offers (49,152 bytes) holds every shape of every kernel.
    for kernel in ScanKernel::ALL.into_iter().chain([ScanKernel::Coop]) {
        assert!(kernel.max_workgroup_bytes() <= 49_152, "{kernel:?}");
    }
}
