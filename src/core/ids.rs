//! The node's message id counter and the clock it counts by (PROTOCOL.md §3).

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::Now;

/// Ids are milliseconds since the Unix epoch by the node's mesh clock
/// ([`MeshClock`]), strictly increasing: when the clock has not moved past
/// the last id, the next is last + 1. One counter serves announcements,
/// broadcasts and health requests, from any thread.
#[derive(Debug, Default)]
pub struct IdSource {
    last: AtomicU64,
    clock: MeshClock,
}

impl IdSource {
    /// A counter that has issued nothing yet.
    pub fn new() -> IdSource {
        IdSource::default()
    }

    /// The mesh clock at `now`: what ids are issued by and checked against.
    pub fn clock(&self, now: Now) -> u64 {
        self.clock.read(now)
    }

    /// The next id.
    pub fn next(&self, now: Now) -> u64 {
        let t = self.clock(now);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let id = t.max(last.saturating_add(1));
            match self.last.compare_exchange_weak(last, id, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return id,
                Err(seen) => last = seen,
            }
        }
    }

    /// The next id, unless it would run more than `max_ahead` ms ahead of
    /// the mesh clock: a burst faster than one id per millisecond drifts
    /// ahead, and peers refuse ids too far in the future (PROTOCOL.md §3),
    /// so a sender stops short of that instead of poisoning its own ids.
    pub fn next_within(&self, now: Now, max_ahead: u64) -> Option<u64> {
        let t = self.clock(now);
        let limit = t.saturating_add(max_ahead);
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let id = t.max(last.saturating_add(1));
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

/// The wall clock as ids need it: never stepping back, never stopping.
///
/// It reads as the wall clock while that runs normally or steps forward.
/// When the wall clock steps back (a router without a real-time clock, an
/// NTP correction), the mesh clock does not follow: it goes on from where
/// it was at half the speed of the monotonic clock until the wall clock
/// catches up with it, then reads as the wall clock again. A step back of
/// `d` is thus absorbed within `2 d`, during which ids keep increasing
/// (0.4 and earlier invpnd froze their ids for `d`, and their neighbours
/// then refused them). Half speed is the compromise between a node whose
/// wall clock was wrong before the step (its ids come back to its peers'
/// clocks) and one whose clock is wrong after it (its ids stay near its
/// peers' clocks for a while).
#[derive(Debug, Default)]
pub struct MeshClock {
    /// Monotonic ms and mesh-clock ms when the wall clock last led.
    base: Mutex<Option<(u64, u64)>>,
}

impl MeshClock {
    /// The mesh clock at `now` (milliseconds since the Unix epoch).
    pub fn read(&self, now: Now) -> u64 {
        let mut base = self.base.lock();
        let slow = match *base {
            Some((mono, ms)) => ms.saturating_add(now.mono.saturating_sub(mono) / 2),
            None => 0,
        };
        if now.unix_ms >= slow {
            *base = Some((now.mono, now.unix_ms));
            now.unix_ms
        } else {
            slow
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mono: u64, unix_ms: u64) -> Now {
        Now { mono, unix_ms }
    }

    #[test]
    fn follows_the_clock_and_never_repeats() {
        let ids = IdSource::new();
        assert_eq!(ids.next(at(0, 1000)), 1000);
        assert_eq!(ids.next(at(0, 1000)), 1001);
        assert_eq!(ids.next(at(0, 999)), 1002, "a clock step back must not reuse ids");
        assert_eq!(ids.next(at(4000, 5000)), 5000);
    }

    #[test]
    fn bursts_stop_short_of_running_ahead_of_the_clock() {
        let ids = IdSource::new();
        let got: Vec<u64> = (0..1500).filter_map(|_| ids.next_within(at(0, 1000), 999)).collect();
        assert_eq!(got.len(), 1000, "ids 1000..=1999 and no further");
        assert_eq!(got.last(), Some(&1999));
        assert_eq!(ids.next_within(at(0, 1000), 999), None);
        assert_eq!(
            ids.next_within(at(500, 1500), 999),
            Some(2000),
            "the clock moving on frees ids"
        );
        assert_eq!(ids.next(at(500, 1000)), 2001, "announcements still get an id");
    }

    #[test]
    fn a_step_back_neither_freezes_nor_repeats_ids() {
        let ids = IdSource::new();
        let t0 = 1_700_000_000_000;
        assert_eq!(ids.next(at(0, t0)), t0);
        // the wall clock steps back ten minutes
        let back = t0 - 600_000;
        // broadcasts still get ids, a second later: the clock went on at
        // half speed (0.4 froze here for ten minutes)
        let later = at(1_000, back + 1_000);
        assert_eq!(ids.clock(later), t0 + 500);
        let burst: Vec<u64> = (0..100).filter_map(|_| ids.next_within(later, 1_000)).collect();
        assert_eq!(burst.len(), 100);
        assert!(burst.windows(2).all(|w| w[0] < w[1]) && burst[0] > t0);
        // it meets the wall clock after twice the step, and follows it again
        assert_eq!(ids.clock(at(1_200_000, back + 1_200_000)), t0 + 600_000);
        assert_eq!(ids.clock(at(1_200_010, back + 1_200_010)), back + 1_200_010);
        assert_eq!(ids.clock(at(1_200_020, back + 1_200_020)), back + 1_200_020);
        // forward steps are followed at once
        assert_eq!(ids.clock(at(1_200_030, t0 + 3_600_000)), t0 + 3_600_000);
    }

    #[test]
    fn the_mesh_clock_never_goes_back() {
        let c = MeshClock::default();
        let mut rng = fastrand::Rng::with_seed(3);
        let (mut mono, mut wall, mut last) = (0u64, 1_000_000u64, 0u64);
        for _ in 0..100_000 {
            mono += rng.u64(0..50);
            wall = match rng.u8(0..100) {
                0 => wall.saturating_sub(rng.u64(0..1_000_000)),
                1 => wall + rng.u64(0..1_000_000),
                _ => wall + rng.u64(0..60),
            };
            let t = c.read(at(mono, wall));
            assert!(t >= last && t >= wall, "{t} after {last}, wall {wall}");
            last = t;
        }
    }

    #[test]
    fn unique_across_threads() {
        let ids = std::sync::Arc::new(IdSource::new());
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let ids = ids.clone();
                std::thread::spawn(move || {
                    (0..10_000).map(|_| ids.next(at(0, 7))).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<u64> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 40_000);
    }
}
