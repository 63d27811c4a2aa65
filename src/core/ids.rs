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

    /// The next id, unless it would run more than `max_ahead` ms ahead of
    /// the clock: a burst faster than one id per millisecond drifts ahead,
    /// and peers refuse ids too far in the future (PROTOCOL.md §3), so a
    /// sender stops short of that instead of poisoning its own ids.
    pub fn next_within(&self, unix_ms: u64, max_ahead: u64) -> Option<u64> {
        let limit = unix_ms.saturating_add(max_ahead);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let id = unix_ms.max(last.saturating_add(1));
            if id > limit {
                return None;
            }
            match self.last.compare_exchange_weak(last, id, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(id),
                Err(seen) => last = seen,
            }
        }
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
    fn bursts_stop_short_of_running_ahead_of_the_clock() {
        let ids = IdSource::new();
        let got: Vec<u64> = (0..1500).filter_map(|_| ids.next_within(1000, 999)).collect();
        assert_eq!(got.len(), 1000, "ids 1000..=1999 and no further");
        assert_eq!(got.last(), Some(&1999));
        assert_eq!(ids.next_within(1000, 999), None);
        assert_eq!(ids.next_within(1500, 999), Some(2000), "the clock moving on frees ids");
        assert_eq!(ids.next(1000), 2001, "announcements still get an id");
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
