//! Broadcast de-duplication that delivers every broadcast exactly once, even
//! when copies arrive out of order over different paths (PROTOCOL.md §5).
//!
//! 0.4 kept only the newest id per source and dropped anything older, which
//! loses a broadcast overtaken by a later one on a faster path. Here each
//! source has a sliding window of the ids in `(top - WINDOW, top]` already
//! seen: a short list of them while there are few (most sources broadcast
//! a few times a minute: an ARP request, a router advertisement), a bitmap
//! kept as a ring indexed by `id % WINDOW` once there are more. An id above
//! the window slides it; one inside is delivered if it was not seen; one
//! below it is too old to tell apart from a replay, and is dropped.
//!
//! A window follows its source, not the other way round: when a source's
//! ids keep falling below its window for [`RECOVER_MS`] (its clock went
//! back and it restarted, or the window was pushed ahead by an id that
//! source never sent), the window restarts at the source's ids. The engine
//! checks only copies that arrived on the path from their source (see
//! `Engine::on_path`), so a node off that path cannot move a window, and
//! one on it could drop the source's traffic anyway.

use hashbrown::HashMap;
use parking_lot::Mutex;

use super::mac::Mac;
use super::ratelimit::{Rate, TokenBucket};

/// Ids per source remembered. Ids are milliseconds, so this covers at least
/// 4 s of a source's broadcasts (less only while it sends faster than one
/// per millisecond).
pub const WINDOW: u64 = 4096;
const WORDS: usize = (WINDOW / 64) as usize;
const SHARDS: usize = 16;

/// How long a source's ids may keep falling below its window before the
/// window restarts at them (ms): the longest a forged id pushed into the
/// window, or a source's clock stepping back, can keep its broadcasts out.
pub const RECOVER_MS: u64 = 1_000;

/// What a de-duplication check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First copy: deliver and forward.
    Fresh,
    /// Seen before: drop.
    Duplicate,
    /// Older than the window: drop.
    TooOld,
    /// First copy, but the source sends more than its rate allows: drop.
    RateLimited,
}

/// The most bytes one source's window takes in a [`Dedup`] table (key
/// included): with its bitmap.
pub const ENTRY_BYTES: usize = std::mem::size_of::<(Mac, Window)>() + WORDS * 8;

/// How many ids a window lists before it takes a bitmap.
const FEW: usize = 6;

/// The ids a window has seen.
enum Ids {
    /// At most [`FEW`], as distances below the top (all `< WINDOW`).
    Few { below: [u16; FEW], n: u8 },
    /// A bit per id, a ring indexed by `id % WINDOW`.
    Map(Box<[u64; WORDS]>),
}

impl Ids {
    const NONE: Ids = Ids::Few { below: [0; FEW], n: 0 };
}

struct Window {
    top: u64,
    bits: Ids,
    last_used: u64,
    /// Since when (monotonic ms) every id checked fell below the window.
    below_since: Option<u64>,
    bucket: TokenBucket,
}

impl Window {
    fn new(id: u64, now: u64, rate: Rate) -> Window {
        let mut w = Window {
            top: id,
            bits: Ids::NONE,
            last_used: now,
            below_since: None,
            bucket: TokenBucket::full(rate, now),
        };
        w.set(id);
        w
    }

    fn pos(id: u64) -> (usize, u64) {
        let i = id % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    /// Records `id`, which is in the window.
    fn set(&mut self, id: u64) {
        let d = self.top - id;
        match &mut self.bits {
            Ids::Few { below, n } if usize::from(*n) < FEW => {
                below[usize::from(*n)] = d as u16;
                *n += 1;
            }
            Ids::Few { below, n } => {
                // a busy source: a bitmap from now on
                let mut map = Box::new([0u64; WORDS]);
                for k in below[..usize::from(*n)].iter().map(|k| self.top - u64::from(*k)) {
                    let (w, b) = Window::pos(k);
                    map[w] |= b;
                }
                self.bits = Ids::Map(map);
                self.set(id);
            }
            Ids::Map(map) => {
                let (w, b) = Window::pos(id);
                map[w] |= b;
            }
        }
    }

    fn get(&self, id: u64) -> bool {
        match &self.bits {
            Ids::Few { below, n } => {
                below[..usize::from(*n)].iter().any(|k| u64::from(*k) == self.top - id)
            }
            Ids::Map(map) => {
                let (w, b) = Window::pos(id);
                map[w] & b != 0
            }
        }
    }

    /// The bytes this window takes beyond its entry.
    fn heap_bytes(&self) -> usize {
        match self.bits {
            Ids::Few { .. } => 0,
            Ids::Map(_) => WORDS * 8,
        }
    }

    /// Slides the window so that `id` is its top, forgetting ids that fall
    /// out of it.
    fn advance(&mut self, id: u64) {
        let shift = id - self.top;
        let map = match &mut self.bits {
            Ids::Few { below, n } => {
                // keep the distances that stay in the window, shifted
                let mut kept = 0;
                for i in 0..usize::from(*n) {
                    let d = u64::from(below[i]) + shift;
                    if d < WINDOW {
                        below[kept] = d as u16;
                        kept += 1;
                    }
                }
                *n = kept as u8;
                self.top = id;
                return;
            }
            Ids::Map(map) => map,
        };
        if shift >= WINDOW {
            // the source went quiet for a whole window: a list again
            self.bits = Ids::NONE;
        } else {
            // Clear the ring positions of the ids now entering the window
            // (top+1 ..= id); they held ids WINDOW older.
            let mut next = self.top + 1;
            while next <= id {
                let (w, _) = Window::pos(next);
                let off = next % 64;
                if off == 0 && id - next >= 63 {
                    map[w] = 0;
                    next += 64;
                } else {
                    let (_, b) = Window::pos(next);
                    map[w] &= !b;
                    next += 1;
                }
            }
        }
        self.top = id;
    }

    fn check(&mut self, id: u64, now: u64) -> Seen {
        self.last_used = now;
        if id > self.top {
            self.advance(id);
            self.set(id);
            self.below_since = None;
            return Seen::Fresh;
        }
        if self.top - id >= WINDOW {
            match self.below_since {
                Some(t) if now.saturating_sub(t) >= RECOVER_MS => {
                    // the source's ids are elsewhere now: follow them
                    self.bits = Ids::NONE;
                    self.top = id;
                    self.set(id);
                    self.below_since = None;
                    return Seen::Fresh;
                }
                Some(_) => {}
                None => self.below_since = Some(now),
            }
            return Seen::TooOld;
        }
        if self.get(id) {
            return Seen::Duplicate;
        }
        self.set(id);
        self.below_since = None;
        Seen::Fresh
    }
}

/// Seen (source, id) pairs, for every source.
pub struct Dedup {
    shards: Box<[Mutex<HashMap<Mac, Window>>]>,
    rate: Rate,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup::new()
    }
}

impl Dedup {
    /// Nothing seen yet, no rate limit.
    pub fn new() -> Dedup {
        Dedup::with_rate(Rate::UNLIMITED)
    }

    /// Nothing seen yet; each source may have at most `rate` fresh ids
    /// accepted.
    pub fn with_rate(rate: Rate) -> Dedup {
        Dedup { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), rate }
    }

    /// Checks (`src`, `id`) and records it as seen.
    pub fn check(&self, src: Mac, id: u64, now: u64) -> Seen {
        let mut shard = self.shards[(src.shard_hash() >> 60) as usize % SHARDS].lock();
        match shard.get_mut(&src) {
            Some(w) => match w.check(id, now) {
                Seen::Fresh if !w.bucket.allow(self.rate, now) => Seen::RateLimited,
                seen => seen,
            },
            None => {
                let mut w = Window::new(id, now, self.rate);
                w.bucket.allow(self.rate, now);
                shard.insert(src, w);
                Seen::Fresh
            }
        }
    }

    /// Forgets sources not heard from within `idle` ms; returns how many.
    pub fn expire(&self, now: u64, idle: u64) -> usize {
        let mut removed = 0;
        for s in self.shards.iter() {
            let mut s = s.lock();
            let before = s.len();
            s.retain(|_, w| now.saturating_sub(w.last_used) <= idle);
            removed += before - s.len();
        }
        removed
    }

    /// Number of sources tracked.
    pub fn sources(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// The bytes the windows take now, without the hash tables' slack.
    pub fn state_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(Mac, Window)>();
        self.shards
            .iter()
            .map(|s| s.lock().values().map(|w| entry + w.heap_bytes()).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Mac = Mac([2, 0, 0, 0, 0, 1]);

    #[test]
    fn out_of_order_copies_delivered_once() {
        let d = Dedup::new();
        // 0.4 would drop 1000 and 1001 after seeing 1002 first.
        let t = 100_000;
        assert_eq!(d.check(S, t + 2, 0), Seen::Fresh);
        assert_eq!(d.check(S, t, 0), Seen::Fresh);
        assert_eq!(d.check(S, t + 1, 0), Seen::Fresh);
        for id in [t, t + 1, t + 2] {
            assert_eq!(d.check(S, id, 0), Seen::Duplicate);
        }
        assert_eq!(d.check(S, t + 2 - WINDOW, 0), Seen::TooOld);
        assert_eq!(d.check(S, t + 3 - WINDOW, 0), Seen::Fresh);
    }

    #[test]
    fn sources_are_independent() {
        let d = Dedup::new();
        let t = Mac([2, 0, 0, 0, 0, 2]);
        assert_eq!(d.check(S, 5, 0), Seen::Fresh);
        assert_eq!(d.check(t, 5, 0), Seen::Fresh);
        assert_eq!(d.check(t, 5, 0), Seen::Duplicate);
        assert_eq!(d.sources(), 2);
    }

    #[test]
    fn sliding_forgets_only_what_leaves_the_window() {
        let d = Dedup::new();
        for id in (10_000..10_000 + 3 * WINDOW).step_by(3) {
            assert_eq!(d.check(S, id, 0), Seen::Fresh, "id {id}");
        }
        let top = 10_000 + 3 * WINDOW - 3;
        // everything still inside the window is remembered
        for id in (10_000..=top).step_by(3).filter(|id| top - id < WINDOW) {
            assert_eq!(d.check(S, id, 0), Seen::Duplicate, "id {id}");
        }
        // ids inside the window never sent are fresh exactly once
        assert_eq!(d.check(S, top - 1, 0), Seen::Fresh);
        assert_eq!(d.check(S, top - 1, 0), Seen::Duplicate);
        // a jump past the whole window clears it
        assert_eq!(d.check(S, top + 10 * WINDOW, 0), Seen::Fresh);
        assert_eq!(d.check(S, top + 10 * WINDOW - 5, 0), Seen::Fresh);
    }

    /// Checks `id` of source `S` against a set-based model of what a
    /// window must say (`seen`: the ids taken so far).
    fn check_against_model(d: &Dedup, seen: &mut std::collections::BTreeSet<u64>, id: u64) {
        let max = *seen.iter().next_back().unwrap_or(&0);
        let want = if seen.contains(&id) && max.saturating_sub(id) < WINDOW {
            Seen::Duplicate
        } else if max > id && max - id >= WINDOW {
            Seen::TooOld
        } else {
            Seen::Fresh
        };
        assert_eq!(d.check(S, id, 0), want, "id {id} top {max}");
        if want == Seen::Fresh {
            seen.insert(id);
        }
    }

    #[test]
    fn matches_a_naive_model() {
        // Random ids near a moving top, checked against a set-based model.
        let mut rng = fastrand::Rng::with_seed(7);
        let d = Dedup::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 1_000_000u64;
        for _ in 0..200_000 {
            top += rng.u64(0..3);
            let id = top.saturating_sub(rng.u64(0..WINDOW + 200));
            check_against_model(&d, &mut seen, id);
        }
    }

    #[test]
    fn a_sparse_source_keeps_a_list_and_a_busy_one_a_bitmap_both_exact() {
        // the same model with ids far apart (a few per window), then dense,
        // then quiet again: the list, the bitmap and the way back
        let mut rng = fastrand::Rng::with_seed(11);
        let d = Dedup::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut top = 5_000_000u64;
        for phase in [900u64, 3, 2 * WINDOW, 700] {
            for _ in 0..20_000 {
                top += rng.u64(0..=phase);
                let id = top.saturating_sub(rng.u64(0..WINDOW + 100));
                check_against_model(&d, &mut seen, id);
            }
        }
        // a source heard once costs its entry only: an eighth of a bitmap's
        let quiet = Dedup::new();
        quiet.check(S, 1_000, 0);
        assert!(quiet.state_bytes() * 8 <= ENTRY_BYTES, "{} bytes", quiet.state_bytes());
    }

    #[test]
    fn a_storm_from_one_source_is_cut_to_its_rate() {
        let d = Dedup::with_rate(Rate { per_sec: 100, burst: 10 });
        let other = Mac([2, 0, 0, 0, 0, 9]);
        let mut fresh = 0;
        for i in 0..1000u64 {
            match d.check(S, 1_000_000 + i, i) {
                Seen::Fresh => fresh += 1,
                Seen::RateLimited => {}
                s => panic!("{s:?}"),
            }
        }
        // 1 s of a storm: the burst plus 100/s
        assert!((100..=112).contains(&fresh), "{fresh}");
        // a dropped id counts as seen: its copies are duplicates
        assert_eq!(d.check(S, 1_000_999, 1000), Seen::Duplicate);
        // other sources are not affected
        assert_eq!(d.check(other, 5, 1000), Seen::Fresh);
    }

    #[test]
    fn a_window_pushed_ahead_follows_its_source_back() {
        let d = Dedup::new();
        let t = 1_700_000_000_000u64;
        assert_eq!(d.check(S, t, 0), Seen::Fresh);
        // an id a minute ahead (forged, or the source's clock then ahead)
        assert_eq!(d.check(S, t + 60_000, 10), Seen::Fresh);
        // the source's own ids are below the window, for a while only
        let mut id = t + 100;
        let mut now = 20;
        while d.check(S, id, now) == Seen::TooOld {
            assert!(now < 20 + RECOVER_MS + 200, "still locked out at {now} ms");
            id += 50;
            now += 50;
        }
        assert!(now >= 20 + RECOVER_MS);
        // and from then on they are de-duplicated as before
        assert_eq!(d.check(S, id, now), Seen::Duplicate);
        assert_eq!(d.check(S, id + 1, now), Seen::Fresh);
        // one straggler below the window is just too old
        assert_eq!(d.check(S, id - WINDOW - 5, now + 1), Seen::TooOld);
        assert_eq!(d.check(S, id + 2, now + RECOVER_MS + 10), Seen::Fresh);
        assert_eq!(d.check(S, id - WINDOW, now + 2 * RECOVER_MS), Seen::TooOld);
    }

    #[test]
    fn idle_sources_expire() {
        let d = Dedup::new();
        d.check(S, 1, 0);
        d.check(Mac([2, 0, 0, 0, 0, 2]), 1, 100);
        assert_eq!(d.expire(150, 60), 1);
        assert_eq!(d.sources(), 1);
    }
}
