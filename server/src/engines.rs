//! Which engine answers 1:N: the GPU while it works, the exact CPU engine
//! otherwise. That failover is all this module decides: both engines are
//! built from the live gallery's scan target (the base with its mask), and
//! the live gallery merges its online enrolments into whichever answered
//! (`LiveGallery::search`, in facegate-core).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use facegate_core::live::LiveGallery;
use facegate_core::{Candidate, CpuEngine, ProbeBatch, SearchEngine, SearchError};

use facegate_gpu::{DeviceOptions, GpuEngine, GpuOptions};

use crate::config::{EngineChoice, Settings};
use crate::metrics::Metrics;

/// A GPU engine, as the server sees it.
pub struct OpenedGpu {
    /// The engine.
    pub engine: Arc<dyn SearchEngine>,
    /// GPU memory it holds, for GalleryInfo and metrics.
    pub memory_bytes: u64,
}

/// Consecutive GPU failures after which the CPU takes over for good.
pub const GPU_STRIKES: u32 = 3;

/// The CPU engine, the optional GPU engine, and the GPU's health.
pub struct FailoverEngine {
    live: Arc<LiveGallery>,
    cpu: Arc<CpuEngine>,
    gpu: Option<OpenedGpu>,
    /// Set once the GPU is given up (device lost, or repeated failures);
    /// from then on the CPU answers.
    gpu_failed: AtomicBool,
    /// GPU failures since its last success.
    gpu_strikes: AtomicU32,
    metrics: Arc<Metrics>,
}

/// One engine call's answers, with the time it took.
pub struct BatchResult {
    /// Per probe, best first.
    pub candidates: Vec<Vec<Candidate>>,
    /// Time inside the engine.
    pub engine_time: Duration,
}

impl FailoverEngine {
    /// The engines over `live` (a GPU engine must mask `live`'s
    /// tombstones); publishes which one answers.
    pub fn new(live: Arc<LiveGallery>, gpu: Option<OpenedGpu>, metrics: Arc<Metrics>) -> Self {
        let cpu = CpuEngine::new(live.scan_target().clone());
        let e = FailoverEngine {
            live,
            cpu: Arc::new(cpu),
            gpu,
            gpu_failed: AtomicBool::new(false),
            gpu_strikes: AtomicU32::new(0),
            metrics,
        };
        e.publish();
        e
    }

    /// The gallery searched.
    pub fn live(&self) -> &Arc<LiveGallery> {
        &self.live
    }

    /// The GPU engine, unless there is none or it was given up.
    fn usable_gpu(&self) -> Option<&OpenedGpu> {
        self.gpu
            .as_ref()
            .filter(|_| !self.gpu_failed.load(Ordering::SeqCst))
    }

    /// The name of the engine answering 1:N now.
    pub fn engine_name(&self) -> String {
        match self.usable_gpu() {
            Some(g) => g.engine.describe(),
            None => self.cpu.describe(),
        }
    }

    /// GPU memory held by the engine answering, 0 for the CPU.
    pub fn gpu_memory_bytes(&self) -> u64 {
        self.usable_gpu().map_or(0, |g| g.memory_bytes)
    }

    /// Publishes which engine answers, and its GPU memory.
    fn publish(&self) {
        self.metrics.set_engine(&self.engine_name());
        self.metrics
            .gpu_memory_bytes
            .set(self.gpu_memory_bytes() as i64);
        self.metrics
            .engine_fallback
            .set(i64::from(self.gpu.is_some() && self.usable_gpu().is_none()));
    }

    /// Searches a batch on the engine in use, blocking the calling thread.
    ///
    /// A GPU failure fails this batch with `Unavailable` and counts a strike;
    /// the GPU is given up on device loss or after [`GPU_STRIKES`] failures
    /// in a row, and later batches run on the CPU. A panic inside an engine
    /// is caught and treated as that engine failing, so it cannot take the
    /// dispatcher down.
    pub fn search(&self, probes: &ProbeBatch, top_k: usize) -> Result<BatchResult, SearchError> {
        let gpu = self.usable_gpu();
        let (engine, kind): (&dyn SearchEngine, &str) = match gpu {
            Some(g) => (g.engine.as_ref(), "gpu"),
            None => (self.cpu.as_ref(), "cpu"),
        };
        let started = Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.live.search(engine, probes, top_k)
        }))
        .unwrap_or_else(|_| Err(SearchError::Unavailable("search engine panicked".into())));
        let engine_time = started.elapsed();
        self.metrics
            .engine_seconds
            .with_label_values(&[kind])
            .observe(engine_time.as_secs_f64());
        match result {
            Ok(candidates) => {
                if gpu.is_some() {
                    self.gpu_strikes.store(0, Ordering::SeqCst);
                }
                Ok(BatchResult {
                    candidates,
                    engine_time,
                })
            }
            Err(e @ SearchError::Unavailable(_)) if gpu.is_some() => {
                self.gpu_error(engine, &e);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Counts a GPU failure; gives the GPU up when its device is lost or it
    /// failed [`GPU_STRIKES`] times in a row. The failed requests are answered
    /// UNAVAILABLE so that ports retry them (on the CPU, if given up).
    fn gpu_error(&self, engine: &dyn SearchEngine, e: &SearchError) {
        let strikes = self.gpu_strikes.fetch_add(1, Ordering::SeqCst) + 1;
        if engine.is_lost() || strikes >= GPU_STRIKES {
            self.gpu_failed.store(true, Ordering::SeqCst);
            self.publish();
            tracing::error!(error = %e, strikes, "GPU engine given up: falling back to the CPU engine");
        } else {
            tracing::warn!(error = %e, strikes, "GPU search failed");
        }
    }
}

/// The GPU engine the settings ask for: required for `gpu`, tried for `auto`.
pub async fn open_gpu(
    live: &Arc<LiveGallery>,
    settings: &Settings,
) -> anyhow::Result<Option<OpenedGpu>> {
    if settings.engine == EngineChoice::Cpu {
        return Ok(None);
    }
    let opts = GpuOptions {
        device: DeviceOptions {
            allow_software: settings.allow_software_gpu,
        },
        memory_budget_bytes: settings.gpu_memory_budget_bytes,
        ..Default::default()
    };
    let target = live.scan_target().clone();
    let opened = tokio::task::spawn_blocking(move || GpuEngine::new(target, opts)).await?;
    match (opened, settings.engine) {
        (Ok(e), _) => Ok(Some(OpenedGpu {
            memory_bytes: e.gpu_memory_bytes(),
            engine: Arc::new(e),
        })),
        (Err(e), EngineChoice::Gpu) => Err(anyhow::Error::new(e).context("--engine gpu")),
        (Err(e), _) => {
            tracing::info!(reason = %e, "no usable GPU: serving with the CPU engine");
            Ok(None)
        }
    }
}
