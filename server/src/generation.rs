//! The gallery generation being served, swapped whole by a reload.
//!
//! A generation is the live gallery (mapped base + online changes), its
//! change log, and the engines over it. Every request takes the current
//! generation once and finishes on it, so a reload never changes the
//! gallery under a request: searches in flight (and the ids their answers
//! resolve to) stay on the old generation, whose memory (GPU buffers
//! included) is released when the last of them ends.

use std::sync::{Arc, RwLock};

use facegate_core::live::LiveGallery;

use crate::changes::GalleryChanges;
use crate::engines::FailoverEngine;
use crate::metrics::Metrics;
use crate::request::Limits;
use crate::thresholds::{DefaultThresholds, ThresholdSource};

/// One servable gallery generation.
pub struct Generation {
    /// The engine that answers 1:N over it (GPU, failing over to the CPU).
    pub engines: Arc<FailoverEngine>,
    /// Its change log and live gallery.
    pub changes: Arc<GalleryChanges>,
}

impl Generation {
    /// The gallery as searches see it.
    pub fn live(&self) -> &Arc<LiveGallery> {
        self.changes.live()
    }

    /// The base gallery's generation id.
    pub fn id(&self) -> u64 {
        self.live().base().header().generation
    }
}

/// The generation served now; cheap to clone and to load.
#[derive(Clone)]
pub struct CurrentGeneration(Arc<RwLock<Arc<Generation>>>);

impl CurrentGeneration {
    /// Serves `g`.
    pub fn new(g: Generation) -> Self {
        CurrentGeneration(Arc::new(RwLock::new(Arc::new(g))))
    }

    /// The generation to use for one request (or one batch).
    pub fn load(&self) -> Arc<Generation> {
        // The slot only ever holds a whole Arc: poison cannot tear it.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves `g` from now on; returns the generation it replaces.
    pub fn swap(&self, g: Generation) -> Arc<Generation> {
        let mut slot = self.0.write().unwrap_or_else(|p| p.into_inner());
        std::mem::replace(&mut *slot, Arc::new(g))
    }
}

/// What GetGalleryInfo reports of a generation, in domain terms.
#[derive(Debug, Clone)]
pub struct GalleryFacts {
    /// Rows held (base rows, masked ones included, plus delta rows).
    pub rows: u64,
    /// Subjects that can be returned.
    pub subjects: u64,
    /// Template dimension.
    pub dimension: u32,
    /// The scan rows' element type ("int8", "f16", "f32").
    pub element_type: &'static str,
    /// The model that made the templates.
    pub model_tag: String,
    /// The base gallery's generation id.
    pub generation: u64,
    /// The engine answering 1:N now.
    pub engine: String,
    /// The threshold used when a request gives none (national search).
    pub default_threshold: f32,
    /// Where `default_threshold` came from.
    pub threshold_source: ThresholdSource,
    /// The FPIR the calibration in force targets (calibrated only).
    pub target_fpir: Option<f64>,
    /// The generation the calibration in force was measured on.
    pub calibrated_generation: Option<u64>,
    /// Whether that differs from the generation served: recalibrate.
    pub calibration_stale: bool,
    /// Calibrated manifest sizes and their thresholds, by size.
    pub manifest_thresholds: Vec<(u64, f32)>,
    /// The largest `top_k` allowed.
    pub max_top_k: u32,
    /// Whether int8 candidates are re-scored exactly.
    pub exact_rescore: bool,
    /// GPU memory held by the engine answering (0 on the CPU).
    pub gpu_memory_bytes: u64,
    /// The shard this server serves (`--shard`), if the gallery is split.
    pub shard: Option<facegate_core::shard::ShardSpec>,
}

impl Generation {
    /// Its figures, with the request limits and default thresholds in force,
    /// served as `shard` of a split gallery (if it is one).
    pub fn facts(
        &self,
        limits: &Limits,
        thresholds: &DefaultThresholds,
        shard: Option<facegate_core::shard::ShardSpec>,
    ) -> GalleryFacts {
        let h = self.live().base().header();
        let counts = self.live().counts();
        let calibration = thresholds.calibration.as_deref();
        GalleryFacts {
            rows: counts.rows,
            subjects: counts.subjects,
            dimension: h.dim,
            element_type: h.scan_type.name(),
            model_tag: h.model_tag.clone(),
            generation: h.generation,
            engine: self.engines.engine_name(),
            default_threshold: limits.default_threshold,
            threshold_source: thresholds.source,
            target_fpir: calibration.map(|c| c.target_fpir),
            calibrated_generation: calibration.and_then(|c| c.generation()),
            calibration_stale: thresholds.is_stale_for(h.generation),
            manifest_thresholds: calibration.map_or_else(Vec::new, |c| {
                c.manifests
                    .iter()
                    .map(|m| (m.people, m.threshold))
                    .collect()
            }),
            max_top_k: limits.max_top_k,
            exact_rescore: h.has_rescore,
            gpu_memory_bytes: self.engines.gpu_memory_bytes(),
            shard,
        }
    }

    /// Publishes its gallery figures (sizes, bytes, and which file is served).
    pub fn publish(&self, metrics: &Metrics) {
        let live = self.live();
        let gallery = live.base();
        let h = gallery.header();
        let counts = live.counts();
        metrics.gallery_rows.set(counts.rows as i64);
        metrics.gallery_subjects.set(counts.subjects as i64);
        metrics.gallery_bytes.set(gallery.file_bytes() as i64);
        metrics.gallery_info.reset();
        metrics
            .gallery_info
            .with_label_values(&[
                &format!("{:016x}", h.generation),
                &h.model_tag,
                h.scan_type.name(),
            ])
            .set(1);
    }
}
