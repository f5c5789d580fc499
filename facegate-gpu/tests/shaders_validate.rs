//! Every WGSL kernel (the shared prelude, then its file) parses and validates
//! with naga, and its file documents its layout.

use facegate_gpu::shaders::Kernel;

#[test]
fn every_shader_validates_and_has_a_layout_header() {
    for kernel in Kernel::ALL {
        let (name, source) = (kernel.file_name(), kernel.source());
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
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
