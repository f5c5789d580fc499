//! Per-port queues served round robin: the fairness half of the dispatcher.
//!
//! Each port of entry has its own FIFO; a batch takes one request from each
//! port with work, in ring order, and goes round again until the batch is
//! full. A port that sends a hundred requests at once therefore gets the same
//! share of each batch as a port that sends one, and the ring resumes where
//! the last batch stopped, so no port is always first. Under overload the
//! dispatcher evicts from the longest queue ([`FairQueue::longest`]), so a
//! flooding port cannot fill the shared capacity either.
//!
//! The structure does no locking and knows no clock of its own; the
//! dispatcher owns it behind a mutex.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

/// Requests waiting, grouped by port.
pub struct FairQueue<T> {
    /// Each port's waiting requests with their enqueue time, oldest first.
    ports: HashMap<String, VecDeque<(Instant, T)>>,
    /// Ports with at least one waiting request, in service order.
    ring: VecDeque<String>,
    len: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            ports: HashMap::new(),
            ring: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    /// Requests waiting, over all ports.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Ports with at least one waiting request.
    pub fn active_ports(&self) -> usize {
        self.ring.len()
    }

    /// Requests waiting from `port`.
    pub fn port_len(&self, port: &str) -> usize {
        self.ports.get(port).map_or(0, VecDeque::len)
    }

    /// Appends a request to its port's queue; a port seen for the first time
    /// (or again after its queue emptied) joins the end of the ring.
    pub fn push(&mut self, port: &str, enqueued: Instant, item: T) {
        match self.ports.get_mut(port) {
            Some(q) => q.push_back((enqueued, item)),
            None => {
                self.ports
                    .insert(port.to_owned(), VecDeque::from([(enqueued, item)]));
                self.ring.push_back(port.to_owned());
            }
        }
        self.len += 1;
    }

    /// When the oldest waiting request was enqueued: the batch wait is
    /// measured from it.
    pub fn oldest(&self) -> Option<Instant> {
        self.ports
            .values()
            .filter_map(|q| q.front())
            .map(|f| f.0)
            .min()
    }

    /// The port with the most waiting requests, and how many (ties: the one
    /// nearest the front of the ring).
    pub fn longest(&self) -> Option<(&str, usize)> {
        let mut best: Option<(&str, usize)> = None;
        for p in &self.ring {
            let n = self.port_len(p);
            if best.is_none_or(|(_, m)| n > m) {
                best = Some((p, n));
            }
        }
        best
    }

    /// Removes the newest request of `port` (the one that waited least), for
    /// eviction under overload.
    pub fn pop_newest(&mut self, port: &str) -> Option<T> {
        let q = self.ports.get_mut(port)?;
        let (_, item) = q.pop_back()?;
        if q.is_empty() {
            self.forget(port);
        }
        self.len -= 1;
        Some(item)
    }

    /// Moves up to `max` requests into `out`, one per port per round, in ring
    /// order; returns each with its enqueue time.
    pub fn pop_round_robin(&mut self, max: usize, out: &mut Vec<(Instant, T)>) {
        while out.len() < max {
            let Some(port) = self.ring.pop_front() else {
                break;
            };
            // Every port in the ring has a queue; one without is dropped
            // from the ring rather than stopping the dispatcher.
            let Some(q) = self.ports.get_mut(&port) else {
                continue;
            };
            if let Some(entry) = q.pop_front() {
                out.push(entry);
                self.len -= 1;
            }
            if q.is_empty() {
                self.ports.remove(&port);
            } else {
                self.ring.push_back(port);
            }
        }
    }

    /// Drops an emptied port from the map and the ring.
    fn forget(&mut self, port: &str) {
        self.ports.remove(port);
        if let Some(i) = self.ring.iter().position(|p| p == port) {
            self.ring.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(q: &mut FairQueue<(String, u32)>, max: usize) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        q.pop_round_robin(max, &mut out);
        out.into_iter().map(|(_, x)| x).collect()
    }

    #[test]
    fn a_flooding_port_gets_one_slot_per_round() {
        let mut q = FairQueue::default();
        let t = Instant::now();
        for i in 0..100 {
            q.push("busy", t, ("busy".to_string(), i));
        }
        q.push("quiet", t, ("quiet".to_string(), 0));
        q.push("calm", t, ("calm".to_string(), 0));
        let batch = drain(&mut q, 4);
        let ports: Vec<&str> = batch.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(ports, ["busy", "quiet", "calm", "busy"]);
        assert_eq!(q.len(), 98);
        assert_eq!(q.active_ports(), 1);
        // Each port's own order is kept.
        assert_eq!(batch[0].1, 0);
        assert_eq!(batch[3].1, 1);
    }

    #[test]
    fn the_ring_resumes_where_the_last_batch_stopped() {
        let mut q = FairQueue::default();
        let t = Instant::now();
        for p in ["a", "b", "c"] {
            for i in 0..3 {
                q.push(p, t, (p.to_string(), i));
            }
        }
        let first: Vec<String> = drain(&mut q, 2).into_iter().map(|x| x.0).collect();
        let second: Vec<String> = drain(&mut q, 2).into_iter().map(|x| x.0).collect();
        assert_eq!(first, ["a", "b"]);
        assert_eq!(second, ["c", "a"]);
    }

    #[test]
    fn eviction_takes_the_newest_of_the_longest_queue() {
        let mut q = FairQueue::default();
        let t = Instant::now();
        q.push("a", t, ("a".to_string(), 0));
        q.push("b", t, ("b".to_string(), 0));
        q.push("b", t, ("b".to_string(), 1));
        assert_eq!(q.longest(), Some(("b", 2)));
        assert_eq!(q.pop_newest("b"), Some(("b".to_string(), 1)));
        assert_eq!(q.pop_newest("a"), Some(("a".to_string(), 0)));
        assert_eq!(q.active_ports(), 1);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_newest("a"), None);
    }

    #[test]
    fn oldest_is_the_earliest_front() {
        let mut q = FairQueue::default();
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_millis(5);
        q.push("late", t1, 1);
        q.push("early", t0, 2);
        assert_eq!(q.oldest(), Some(t0));
    }

    proptest! {
        /// Whatever the arrivals, a batch never takes a port's second request
        /// while another port with work has had none, every request comes out
        /// exactly once, and each port's order is kept.
        #[test]
        fn batches_are_fair_and_lossless(
            arrivals in prop::collection::vec(0u8..6, 1..200),
            max in 1usize..40,
        ) {
            let mut q = FairQueue::default();
            let t = Instant::now();
            for (i, p) in arrivals.iter().enumerate() {
                q.push(&p.to_string(), t, (p.to_string(), i as u32));
            }
            let mut seen = Vec::new();
            while !q.is_empty() {
                let waiting: std::collections::HashMap<String, usize> = (0u8..6)
                    .map(|p| (p.to_string(), q.port_len(&p.to_string())))
                    .collect();
                let batch = drain(&mut q, max);
                prop_assert!(!batch.is_empty() && batch.len() <= max);
                let mut taken: std::collections::HashMap<&str, usize> = Default::default();
                for (p, _) in &batch {
                    *taken.entry(p).or_default() += 1;
                }
                let most = taken.values().copied().max().unwrap_or(0);
                for (p, &w) in &waiting {
                    let got = taken.get(p.as_str()).copied().unwrap_or(0);
                    // A port with work gets within one of the most-served port's share.
                    if w > 0 {
                        prop_assert!(got >= w.min(most.saturating_sub(1)), "port {p}: {got} of {w}, most {most}");
                    }
                }
                seen.extend(batch);
            }
            prop_assert_eq!(seen.len(), arrivals.len());
            for p in 0u8..6 {
                let order: Vec<u32> = seen.iter().filter(|x| x.0 == p.to_string()).map(|x| x.1).collect();
                prop_assert!(order.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
