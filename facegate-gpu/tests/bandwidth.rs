//! The bandwidth measures the benchmark sets the scan against run on the
//! software Vulkan driver without a validation error, and give a finite,
//! positive rate (on lavapipe the rates say nothing about a GPU).
//! FACEGATE_SKIP_GPU_TESTS=1 to skip on a machine that has no Vulkan driver.

use facegate_gpu::{DeviceOptions, GpuDevice, bandwidth};

fn skip() -> bool {
    std::env::var("FACEGATE_SKIP_GPU_TESTS").is_ok_and(|v| v == "1")
}

#[test]
fn read_and_copy_bandwidth_are_measured() {
    if skip() {
        return;
    }
    let dev = GpuDevice::open(
        DeviceOptions {
            allow_software: true,
        },
        false,
    )
    .unwrap();
    let errors = dev.device.push_error_scope(wgpu::ErrorFilter::Validation);
    // 8 MiB and 16 bytes more than a whole dispatch's stride, so the
    // kernel's tail loop runs too.
    let read = bandwidth::read_bandwidth(&dev, (8 << 20) + 16, 2, 0.0).unwrap();
    let copy = bandwidth::copy_bandwidth(&dev, 8 << 20, 2).unwrap();
    assert!(pollster::block_on(errors.pop()).is_none());
    for (what, rate) in [("read", read), ("copy", copy)] {
        assert!(rate.is_finite() && rate > 0.0, "{what}: {rate}");
    }
}
