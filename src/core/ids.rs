//! The node's message id counter (PROTOCOL.md §3).

use std::sync::atomic::{AtomicU64, Ordering};

/// Ids are milliseconds since the Unix epoch, strictly increasing: when the
/// clock has not moved past the last id, the next is last + 1. One counter
/// serves announcements, broadcasts and health requests, from any thread.
#[derive(Debug, Default)]
pub struct IdSource {
    last: AtomicU64,
}

impl IdSource {
    /// A counter that has issued nothing yet.
    pub fn new() -> IdSource {
        IdSource::default()
    }

    /// The next id, given the wall clock in milliseconds since the epoch.
    pub fn next(&self, unix_ms: u64) -> u64 {
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let id = unix_ms.max(last.saturating_add(1));
            match self.last.compare_exchange_weak(last, id, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return id,
                Err(seen) => last = seen,
            }
        }
    }

    /// The last id issued (0 if none).
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_clock_and_never_repeats() {
        let ids = IdSource::new();
        assert_eq!(ids.next(1000), 1000);
        assert_eq!(ids.next(1000), 1001);
        assert_eq!(ids.next(999), 1002, "a clock step back must not reuse ids");
        assert_eq!(ids.next(5000), 5000);
    }

    #[test]
    fn unique_across_threads() {
        let ids = std::sync::Arc::new(IdSource::new());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || (0..10_000).map(|_| ids.next(7)).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40_000);
    }
}
