//! Direct links on demand: when this node sends a lot of unicast traffic
//! to a node it reaches through a relay, it dials that node, so that the
//! relay does not carry the bulk; a direct link that then falls idle is
//! closed (`[network] direct`, `direct_idle`).
//!
//! Two plain types, no I/O:
//!
//! * [`RelayMeter`], on the TAP thread: counts the bytes of the frames it
//!   sends through a relay, per destination, over short windows, and names
//!   a destination once its rate crosses the threshold.
//! * [`DirectLinks`], in the link lifecycle (`core::mesh::Node`): the
//!   direct links up (either end, at most [`MAX_DIRECT`]), when they last
//!   carried traffic, and the back-off after a direct dial that failed
//!   (the underlay may not let the two nodes reach each other: traffic
//!   then stays on the relay).
//!
//! A direct link is an ordinary link in the engine (it floods along the
//! tree like any other), but it does not count against `max_links` at
//! either end: the dialling end says so with hello flag
//! [`super::wire::hello_flags::DIRECT`], and the far end takes it as such
//! while it has fewer than [`MAX_DIRECT`], so a neighbour that claims the
//! flag on every link gains at most that many.

use hashbrown::HashMap;

use super::mac::Mac;
use super::LinkId;

/// The windows over which relayed bytes are counted (ms).
pub const WINDOW_MS: u64 = 500;

/// Most destinations counted in one window (the busiest are the first to
/// cross; a frame to one more is not counted).
pub const MAX_TRACKED: usize = 64;

/// Most direct links a node keeps, those others dialled included.
pub const MAX_DIRECT: usize = 8;

/// Most nodes whose failed direct dials are remembered for back-off.
pub const MAX_TRIES: usize = 256;

/// The first back-off after a failed direct dial (ms); it doubles with
/// each failure in a row, up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: u64 = 30_000;

/// The longest back-off between direct dials of one node (ms).
pub const BACKOFF_MAX: u64 = 600_000;

/// The default of `[network] direct`: bytes a second through a relay
/// (2 Mbit/s).
pub const DEFAULT_RATE: u64 = 256 * 1024;

/// The default of `[network] direct_idle` (ms).
pub const DEFAULT_IDLE_MS: u64 = 60_000;

/// A direct link carrying less than its dial threshold divided by this is
/// idle.
pub const IDLE_DIVISOR: u64 = 8;

/// Counts, on the TAP thread, what goes to each destination through a
/// relay.
#[derive(Debug)]
pub struct RelayMeter {
    /// Bytes in a window that make a destination worth a direct link.
    threshold: u64,
    window_start: u64,
    /// Bytes this window, and whether the destination was named already.
    counts: HashMap<Mac, (u64, bool)>,
}

impl RelayMeter {
    /// A meter naming destinations that get at least `rate` bytes a
    /// second through a relay (`rate` 0: none ever).
    pub fn new(rate: u64) -> RelayMeter {
        let threshold = if rate == 0 { u64::MAX } else { (rate * WINDOW_MS / 1000).max(1) };
        RelayMeter { threshold, window_start: 0, counts: HashMap::new() }
    }

    /// A frame of `bytes` to `dst` went through a relay at `now` (ms):
    /// returns `dst` the first time in a window that its bytes reach the
    /// threshold.
    pub fn relayed(&mut self, dst: Mac, bytes: usize, now: u64) -> Option<Mac> {
        if now.saturating_sub(self.window_start) >= WINDOW_MS {
            self.window_start = now;
            self.counts.clear();
        }
        if self.counts.len() >= MAX_TRACKED && !self.counts.contains_key(&dst) {
            return None;
        }
        let (sum, named) = self.counts.entry(dst).or_insert((0, false));
        *sum += bytes as u64;
        if *sum >= self.threshold && !*named {
            *named = true;
            return Some(dst);
        }
        None
    }
}

/// How a direct link was used, sampled by [`DirectLinks::traffic`].
#[derive(Debug, Clone, Copy)]
struct Usage {
    /// The link's byte total at the last sample.
    bytes: u64,
    /// When that sample was taken (ms).
    sampled_at: u64,
    /// When the link last carried more than the idle rate (ms).
    active_at: u64,
}

/// Failed direct dials of one node in a row, and when to try again.
#[derive(Debug, Clone, Copy)]
struct Try {
    failures: u32,
    next_try: u64,
}

/// The direct links of a node and the back-off of its direct dials.
#[derive(Debug)]
pub struct DirectLinks {
    /// Bytes a second through a relay that make a direct link (0: off).
    rate: u64,
    /// How long a direct link may stay idle (ms).
    idle_ms: u64,
    links: HashMap<LinkId, Usage>,
    tries: HashMap<Mac, Try>,
}

impl DirectLinks {
    /// Direct links for a node with `[network] direct` = `rate` (bytes a
    /// second; 0: off) and `direct_idle` = `idle_ms`.
    pub fn new(rate: u64, idle_ms: u64) -> DirectLinks {
        DirectLinks { rate, idle_ms, links: HashMap::new(), tries: HashMap::new() }
    }

    /// Whether direct links are on.
    pub fn enabled(&self) -> bool {
        self.rate > 0
    }

    /// The direct links up.
    pub fn count(&self) -> usize {
        self.links.len()
    }

    /// Whether `id` is a direct link.
    pub fn is_direct(&self, id: LinkId) -> bool {
        self.links.contains_key(&id)
    }

    /// Whether `mac` may be dialled directly at `now`: direct links are
    /// on, there is room for one more, and no failed dial of it is
    /// backing off.
    pub fn may_dial(&self, mac: &Mac, now: u64) -> bool {
        self.enabled()
            && self.links.len() < MAX_DIRECT
            && self.tries.get(mac).is_none_or(|t| now >= t.next_try)
    }

    /// A direct dial of `mac` failed at `now`: back off.
    pub fn dial_failed(&mut self, mac: Mac, now: u64) {
        if self.tries.len() >= MAX_TRIES && !self.tries.contains_key(&mac) {
            // forget the one due soonest: it is the least backed off
            if let Some(m) = self.tries.iter().min_by_key(|(_, t)| t.next_try).map(|(m, _)| *m) {
                self.tries.remove(&m);
            }
        }
        let t = self.tries.entry(mac).or_insert(Try { failures: 0, next_try: 0 });
        t.failures = t.failures.saturating_add(1);
        let backoff = BACKOFF_MIN.saturating_mul(1 << (t.failures - 1).min(16)).min(BACKOFF_MAX);
        t.next_try = now + backoff;
    }

    /// Link `id` to `mac` came up as a direct link at `now` (dialled as
    /// one, or its peer's hello said so): returns whether it is taken as
    /// one (direct links are on and there is room).
    pub fn up(&mut self, id: LinkId, mac: Mac, now: u64) -> bool {
        if !self.enabled() || (self.links.len() >= MAX_DIRECT && !self.links.contains_key(&id)) {
            return false;
        }
        self.tries.remove(&mac);
        self.links.insert(id, Usage { bytes: 0, sampled_at: now, active_at: now });
        true
    }

    /// Link `id` closed; returns whether it was a direct link.
    pub fn down(&mut self, id: LinkId) -> bool {
        self.links.remove(&id).is_some()
    }

    /// Direct link `id` had carried `bytes` in all (both ways, its lanes
    /// included) at `now`: returns whether it has now been idle for
    /// `direct_idle`, and should close. Links that are not direct are
    /// never idle.
    pub fn traffic(&mut self, id: LinkId, bytes: u64, now: u64) -> bool {
        let (rate, idle_ms) = (self.rate, self.idle_ms);
        let Some(u) = self.links.get_mut(&id) else { return false };
        let elapsed = now.saturating_sub(u.sampled_at);
        if elapsed == 0 {
            return false;
        }
        let moved = bytes.saturating_sub(u.bytes);
        // busy: above the idle rate over the sample
        if moved.saturating_mul(1000) >= rate / IDLE_DIVISOR * elapsed {
            u.active_at = now;
        }
        (u.bytes, u.sampled_at) = (bytes, now);
        now.saturating_sub(u.active_at) >= idle_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Mac = Mac([2, 0, 0, 0, 0, 9]);

    #[test]
    fn the_meter_names_a_destination_once_a_window_when_its_rate_crosses() {
        // 100 kB/s: 50 kB in a window of 500 ms
        let mut m = RelayMeter::new(100_000);
        let mut named = Vec::new();
        for i in 0..200u64 {
            // 1500 bytes every 5 ms: 300 kB/s
            if let Some(d) = m.relayed(D, 1500, 1000 + i * 5) {
                named.push(1000 + i * 5);
                assert_eq!(d, D);
            }
        }
        // 34 frames make 51 kB: the 34th of each window names it, once
        assert_eq!(named, vec![1000 + 33 * 5, 1500 + 33 * 5]);
    }

    #[test]
    fn the_meter_ignores_a_trickle_and_is_off_at_rate_zero() {
        let mut m = RelayMeter::new(100_000);
        // 1500 bytes every 50 ms: 30 kB/s
        assert!((0..400u64).all(|i| m.relayed(D, 1500, i * 50).is_none()));
        let mut off = RelayMeter::new(0);
        assert!((0..10_000u64).all(|i| off.relayed(D, 65_536, i).is_none()));
    }

    #[test]
    fn the_meter_counts_a_bounded_number_of_destinations() {
        let mut m = RelayMeter::new(1000);
        for i in 0..1000u16 {
            let [a, b] = i.to_be_bytes();
            m.relayed(Mac([2, 0, 0, 0, a, b]), 1, 0);
        }
        assert_eq!(m.counts.len(), MAX_TRACKED);
        // a destination past the bound is not counted this window ...
        let e = Mac([2, 0, 0, 9, 9, 9]);
        assert_eq!(m.relayed(e, 10_000, 1), None);
        // ... but is in the next
        assert_eq!(m.relayed(e, 10_000, WINDOW_MS), Some(e));
    }

    #[test]
    fn failed_dials_back_off_exponentially_up_to_the_maximum() {
        let mut d = DirectLinks::new(DEFAULT_RATE, DEFAULT_IDLE_MS);
        assert!(d.may_dial(&D, 0));
        d.dial_failed(D, 0);
        assert!(!d.may_dial(&D, BACKOFF_MIN - 1));
        assert!(d.may_dial(&D, BACKOFF_MIN));
        d.dial_failed(D, BACKOFF_MIN);
        assert!(!d.may_dial(&D, 3 * BACKOFF_MIN - 1));
        assert!(d.may_dial(&D, 3 * BACKOFF_MIN));
        for _ in 0..40 {
            d.dial_failed(D, 0);
        }
        assert!(d.may_dial(&D, BACKOFF_MAX));
        // a link up forgets the failures
        assert!(d.up(LinkId(1), D, 0));
        assert!(d.tries.is_empty());
    }

    #[test]
    fn the_back_off_table_is_bounded() {
        let mut d = DirectLinks::new(DEFAULT_RATE, DEFAULT_IDLE_MS);
        for i in 0..(MAX_TRIES as u16 * 4) {
            let [a, b] = i.to_be_bytes();
            d.dial_failed(Mac([2, 0, 0, 1, a, b]), u64::from(i));
        }
        assert_eq!(d.tries.len(), MAX_TRIES);
    }

    #[test]
    fn at_most_max_direct_links_and_none_when_off() {
        let mut d = DirectLinks::new(DEFAULT_RATE, DEFAULT_IDLE_MS);
        for i in 0..MAX_DIRECT as u64 {
            assert!(d.up(LinkId(i), D, 0));
        }
        assert!(!d.up(LinkId(99), D, 0), "one more than MAX_DIRECT");
        assert!(!d.may_dial(&D, 0), "no room: no dial");
        assert!(d.down(LinkId(0)));
        assert!(!d.down(LinkId(0)));
        assert!(d.may_dial(&D, 0));
        let mut off = DirectLinks::new(0, DEFAULT_IDLE_MS);
        assert!(!off.up(LinkId(1), D, 0));
        assert!(!off.may_dial(&D, 0));
    }

    #[test]
    fn a_direct_link_closes_after_being_idle_for_direct_idle() {
        // 80 kB/s makes a link; under 10 kB/s it is idle
        let mut d = DirectLinks::new(80_000, 10_000);
        let l = LinkId(7);
        assert!(d.up(l, D, 0));
        let mut total = 0;
        // busy for 20 s: 1 MB a second
        for s in 1..=20u64 {
            total += 1_000_000;
            assert!(!d.traffic(l, total, s * 1000));
        }
        // then announcements only (2 kB/s): idle from 20 s on
        let mut closed_at = None;
        for s in 21..=40u64 {
            total += 2_000;
            if d.traffic(l, total, s * 1000) {
                closed_at = Some(s);
                break;
            }
        }
        assert_eq!(closed_at, Some(30));
        // an ordinary link is never idle here
        assert!(!d.traffic(LinkId(8), 0, 100_000));
    }
}
