//! Which subjects of the mapped base gallery are removed (or replaced by a
//! newer enrolment) since it was built.
//!
//! The base file is immutable, so a removal is a bit set here, never a write
//! to the map. Engines test the bit only for rows that would enter a top-k,
//! so masking costs nothing on the scan itself, and the bits are atomics so
//! that a search sees a removal the moment it is applied, without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// One bit per base subject: set once the subject's base rows must no longer
/// be returned.
#[derive(Debug)]
pub struct Tombstones {
    bits: Vec<AtomicU64>,
    subjects: usize,
    count: AtomicU64,
}

impl Tombstones {
    /// No subject of a `subjects`-subject gallery removed.
    pub fn new(subjects: usize) -> Self {
        Tombstones {
            bits: (0..subjects.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            subjects,
            count: AtomicU64::new(0),
        }
    }

    /// Masks a base subject's rows from now on; true when it was live.
    /// Indexes at or past the base's subject count are not base subjects
    /// and are ignored.
    pub fn remove(&self, subject: u32) -> bool {
        let s = subject as usize;
        if s >= self.subjects {
            return false;
        }
        let bit = 1u64 << (s % 64);
        let before = self.bits[s / 64].fetch_or(bit, Ordering::SeqCst);
        let newly = before & bit == 0;
        if newly {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        newly
    }

    /// Whether a base subject's rows are masked.
    #[inline]
    pub fn is_removed(&self, subject: u32) -> bool {
        let s = subject as usize;
        s < self.subjects && self.bits[s / 64].load(Ordering::SeqCst) & (1u64 << (s % 64)) != 0
    }

    /// How many base subjects are masked.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    /// Whether no subject is masked (engines skip fallbacks then).
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_once_and_ignores_out_of_range() {
        let t = Tombstones::new(130);
        assert!(t.is_empty());
        assert!(t.remove(129));
        assert!(!t.remove(129));
        assert!(t.remove(0));
        assert!(!t.remove(130), "not a base subject");
        assert!(t.is_removed(129) && t.is_removed(0));
        assert!(!t.is_removed(1) && !t.is_removed(64) && !t.is_removed(500));
        assert_eq!(t.count(), 2);
    }
}
