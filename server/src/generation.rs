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
use crate::engines::Engines;

/// One servable gallery generation.
pub struct Generation {
    /// The engines over it.
    pub engines: Arc<Engines>,
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
