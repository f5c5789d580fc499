//! The engine an offline evaluation searches with: the server's CPU
//! engine, or its GPU engine where a GPU is present, so that accuracy is
//! measured on the engine that answers in service. Both return the same
//! candidates (the GPU's are re-scored exactly on the CPU), which the
//! tests check on lavapipe.

use std::sync::Arc;

use anyhow::Context;
use facegate_core::{Gallery, ScanTarget, SearchEngine};
use facegate_gpu::{DeviceOptions, GpuEngine, GpuOptions};

/// Which engine searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    /// The GPU when a hardware one is found, else the CPU.
    Auto,
    /// The CPU engine (exact SIMD scan).
    Cpu,
    /// The GPU engine (WGSL through Vulkan); fails when there is none.
    Gpu,
}

/// Arguments shared by the commands that search a whole gallery.
#[derive(clap::Args, Clone, Debug)]
pub struct EngineArgs {
    /// Engine that searches the probes, as the server's `--engine`.
    #[arg(long, value_enum, default_value_t = EngineChoice::Cpu)]
    pub engine: EngineChoice,
    /// Let `--engine gpu` run on a software Vulkan driver (lavapipe): for
    /// tests, far slower than the CPU engine.
    #[arg(long)]
    pub allow_software_gpu: bool,
}

/// Opens the engine `args` ask for over the whole of `gallery`.
pub fn open(args: &EngineArgs, gallery: &Arc<Gallery>) -> anyhow::Result<Box<dyn SearchEngine>> {
    let target = ScanTarget::whole(gallery.clone());
    if args.engine == EngineChoice::Cpu {
        return Ok(Box::new(facegate_core::CpuEngine::new(target)));
    }
    let opts = GpuOptions {
        device: DeviceOptions {
            allow_software: args.allow_software_gpu,
        },
        ..Default::default()
    };
    match (GpuEngine::new(target.clone(), opts), args.engine) {
        (Ok(gpu), _) => Ok(Box::new(gpu)),
        (Err(e), EngineChoice::Gpu) => Err(e).context("--engine gpu"),
        (Err(e), _) => {
            eprintln!("no usable GPU ({e}): searching with the CPU engine");
            Ok(Box::new(facegate_core::CpuEngine::new(target)))
        }
    }
}
