//! What an engine searches: the mapped base gallery together with the mask
//! of its subjects that must not be returned.
//!
//! Every engine is built from a [`ScanTarget`], so none can be built that
//! searches the base while forgetting the subjects removed since it was
//! built. The mask is shared (an `Arc`): the live gallery sets a bit and every
//! engine built from the same target skips that subject from its next
//! candidate on.

use std::sync::Arc;

use super::tombstones::Tombstones;
use crate::format::Gallery;

/// The base gallery and its mask, shared by every engine over them.
#[derive(Clone)]
pub struct ScanTarget {
    gallery: Arc<Gallery>,
    mask: Arc<Tombstones>,
}

impl std::fmt::Debug for ScanTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanTarget")
            .field("gallery", &self.gallery.path())
            .field("masked", &self.mask.count())
            .finish()
    }
}

impl ScanTarget {
    /// The whole of `gallery`, with a fresh mask in which nothing is removed
    /// yet. The live gallery sets that mask as subjects are removed or
    /// re-enrolled; offline tools and benchmarks, which serve no changes,
    /// leave it empty.
    pub fn whole(gallery: Arc<Gallery>) -> Self {
        let mask = Arc::new(Tombstones::new(gallery.subjects()));
        ScanTarget { gallery, mask }
    }

    /// The mapped base gallery.
    pub fn gallery(&self) -> &Arc<Gallery> {
        &self.gallery
    }

    /// The subjects masked from search (one bit per base subject).
    pub fn mask(&self) -> &Arc<Tombstones> {
        &self.mask
    }

    /// Subjects of the base that may still be returned.
    pub fn unmasked_subjects(&self) -> u64 {
        self.gallery.subjects() as u64 - self.mask.count()
    }
}
