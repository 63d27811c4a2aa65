//! Which connection of a link a frame takes: the link's own (the "bulk"
//! connection) or its lane, a second TLS connection to the same neighbour
//! that carries only the frames of sparse inner flows (pings, DNS, key
//! strokes, the first packets of a connection, the ACKs of a slow reverse
//! direction).
//!
//! Why: on a lossy path every loss stalls a TCP connection for about a
//! round trip while the lost segment is sent again, and every frame behind
//! it in the byte stream waits (head-of-line blocking). A link that carries
//! a bulk transfer loses a segment every few tens of milliseconds at 0.5 %
//! loss, so nearly every interactive packet on it waits for some
//! retransmission. A lane carries a few packets a second: it rarely has a
//! loss in flight, and an interactive packet on it crosses the path in one
//! trip.
//!
//! A flow is sparse while its recent byte count, decayed by half every
//! [`HALF_LIFE_MS`], stays at most [`SPARSE_BYTES`] (a steady rate of about
//! 2.5 Mbit/s). A flow that was not sparse keeps the bulk connection for
//! [`HOLD_MS`] after its last such frame, so that its frames still queued
//! there are not overtaken by later ones on the lane (a flow changes
//! connection only after a pause). Flows are told apart by the same hash
//! as the link's fair queue ([`super::fq::flow_hash`]), in [`BUCKETS`]
//! buckets; flows that share a bucket share a verdict.

use hashbrown::{HashMap, HashSet};

use super::fq::flow_hash;
use super::wire::{self, Carries};
use super::LinkId;

/// Buckets of flows.
pub const BUCKETS: usize = 256;
/// A flow's byte count halves every this many milliseconds.
pub const HALF_LIFE_MS: u64 = 16;
/// The most decayed bytes of a sparse flow.
pub const SPARSE_BYTES: u32 = 8 * 1024;
/// How long a flow that was bulk stays on the bulk connection (ms).
pub const HOLD_MS: u64 = 200;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Decayed bytes, as of `at`.
    bytes: u32,
    /// When `bytes` was last decayed (ms).
    at: u64,
    /// Until when the flow keeps the bulk connection (ms).
    bulk_until: u64,
}

/// The per-link choice between the bulk connection and the lane.
#[derive(Debug, Clone)]
pub struct LaneSplit {
    seed: u64,
    buckets: Box<[Bucket]>,
}

impl LaneSplit {
    /// A splitter hashing flows with `seed` (the link's fair-queue seed, so
    /// both agree on what a flow is).
    pub fn new(seed: u64) -> LaneSplit {
        LaneSplit { seed, buckets: vec![Bucket::default(); BUCKETS].into_boxed_slice() }
    }

    /// Whether the whole message `msg` (length prefix included) should take
    /// the lane at `now_ms`. Only plain frames (`0x80`, `0x81`) may;
    /// control messages and offloaded super-frames (bulk by nature) never.
    /// Every frame counts towards its flow's rate, whatever the verdict.
    pub fn takes_lane(&mut self, msg: &[u8], now_ms: u64) -> bool {
        let Carries::Frame { ethertype_at } = wire::carries(msg) else {
            return false;
        };
        let b = &mut self.buckets[flow_hash(msg, ethertype_at, self.seed) as usize % BUCKETS];
        let halvings = now_ms.saturating_sub(b.at) / HALF_LIFE_MS;
        if halvings > 0 {
            b.bytes = if halvings >= 32 { 0 } else { b.bytes >> halvings };
            b.at += halvings * HALF_LIFE_MS;
        }
        b.bytes = b.bytes.saturating_add(msg.len() as u32);
        if wire::is_offloaded(msg) || b.bytes > SPARSE_BYTES {
            b.bulk_until = now_ms + HOLD_MS;
            return false;
        }
        now_ms >= b.bulk_until
    }
}

/// Which lane belongs to which link, as the supervisor keeps it: at most
/// one lane per link, dialled at most once at a time; a lane lives no
/// longer than its link.
#[derive(Debug, Default)]
pub struct LanePairs {
    /// lane -> its link
    link_of: HashMap<LinkId, LinkId>,
    /// link -> its lane
    lane_of: HashMap<LinkId, LinkId>,
    /// links whose lane is being dialled
    dialling: HashSet<LinkId>,
}

/// What closing a connection means for lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// It was the lane of this link, which goes on without one.
    LaneOf(LinkId),
    /// It was a link with this lane, which must close too.
    LinkWithLane(LinkId),
    /// Nothing to do for lanes.
    Neither,
}

impl LanePairs {
    /// An empty table.
    pub fn new() -> LanePairs {
        LanePairs::default()
    }

    /// Whether a lane should be dialled for `link` now (it has none and
    /// none is being dialled); if so, notes that one is.
    pub fn start_dial(&mut self, link: LinkId) -> bool {
        if self.lane_of.contains_key(&link) {
            return false;
        }
        self.dialling.insert(link)
    }

    /// The lane dialled for `link` failed before it came up.
    pub fn dial_failed(&mut self, link: LinkId) {
        self.dialling.remove(&link);
    }

    /// `lane` came up for `link`; returns a lane it replaces (to close).
    pub fn paired(&mut self, lane: LinkId, link: LinkId) -> Option<LinkId> {
        self.dialling.remove(&link);
        let old = self.lane_of.insert(link, lane);
        self.link_of.insert(lane, link);
        if let Some(old) = old {
            self.link_of.remove(&old);
        }
        old.filter(|&o| o != lane)
    }

    /// The connection `id` closed.
    pub fn closed(&mut self, id: LinkId) -> Closed {
        if let Some(link) = self.link_of.remove(&id) {
            self.lane_of.remove(&link);
            return Closed::LaneOf(link);
        }
        self.dialling.remove(&id);
        match self.lane_of.remove(&id) {
            Some(lane) => {
                self.link_of.remove(&lane);
                Closed::LinkWithLane(lane)
            }
            None => Closed::Neither,
        }
    }

    /// Links that have a lane.
    pub fn len(&self) -> usize {
        self.lane_of.len()
    }

    /// Whether no link has a lane.
    pub fn is_empty(&self) -> bool {
        self.lane_of.is_empty()
    }

    /// The lane of `link`, if it has one.
    pub fn lane_of(&self, link: LinkId) -> Option<LinkId> {
        self.lane_of.get(&link).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unicast message carrying an IPv4 UDP packet from port `sport`,
    /// `len` bytes of Ethernet frame in all.
    fn udp(sport: u16, len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len.max(14 + 28)];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
        ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
        ip[20..22].copy_from_slice(&sport.to_be_bytes());
        ip[22..24].copy_from_slice(&53u16.to_be_bytes());
        let mut m = Vec::new();
        assert!(wire::encode_unicast(&mut m, &f));
        m
    }

    #[test]
    fn a_ping_rate_flow_takes_the_lane_and_a_bulk_flow_does_not() {
        let mut s = LaneSplit::new(7);
        let mut bulk_on_lane = 0;
        // 100 ms of a 100 Mbit/s flow (one 1500-byte frame each 120 us)
        // beside a sparse flow of one small packet each 10 ms
        for i in 0..830u64 {
            let now = i * 120 / 1000;
            if s.takes_lane(&udp(1000, 1500), now) {
                bulk_on_lane += 1;
            }
            if i % 83 == 0 {
                assert!(s.takes_lane(&udp(2000, 100), now), "sparse frame at {now} ms");
            }
        }
        // only its first few frames, before its rate is known
        assert!(bulk_on_lane <= 6, "{bulk_on_lane} bulk frames took the lane");
    }

    #[test]
    fn a_flow_that_was_bulk_returns_to_the_lane_only_after_a_pause() {
        let mut s = LaneSplit::new(1);
        for i in 0..100u64 {
            s.takes_lane(&udp(1000, 1500), i / 10);
        }
        // 10 ms after the burst its decayed count is still high
        assert!(!s.takes_lane(&udp(1000, 100), 20));
        // decayed below the threshold, but still held on the bulk connection
        assert!(!s.takes_lane(&udp(1000, 100), 10 + HOLD_MS / 2));
        // after the hold, a sparse packet goes back to the lane
        assert!(s.takes_lane(&udp(1000, 100), 30 + HOLD_MS + 200));
    }

    #[test]
    fn control_messages_and_super_frames_never_take_the_lane() {
        let mut s = LaneSplit::new(1);
        let mut hello = Vec::new();
        wire::encode_hello(&mut hello, 0);
        assert!(!s.takes_lane(&hello, 0));
        let mut m = udp(3000, 100);
        m[wire::LEN_PREFIX] = wire::kind::OFFLOADED;
        // (not a valid 0x82 body, but classified by its type byte alone)
        assert!(!s.takes_lane(&m, 0));
    }

    #[test]
    fn lanes_pair_with_links_and_go_with_them() {
        let (link, lane, lane2) = (LinkId::new(1, 0), LinkId::new(2, 0), LinkId::new(3, 1));
        let mut p = LanePairs::new();
        assert!(p.start_dial(link));
        assert!(!p.start_dial(link), "one dial at a time");
        p.dial_failed(link);
        assert!(p.start_dial(link), "dialled again after a failure");
        assert_eq!(p.paired(lane, link), None);
        assert!(!p.start_dial(link), "a link with a lane dials none");
        assert_eq!(p.lane_of(link), Some(lane));
        // a newer lane replaces the old one, which is to be closed
        assert_eq!(p.paired(lane2, link), Some(lane));
        assert_eq!(p.closed(lane), Closed::Neither);
        // the lane closes: the link goes on without it
        assert_eq!(p.closed(lane2), Closed::LaneOf(link));
        assert!(p.is_empty());
        // the link closes: its lane goes too
        p.paired(lane, link);
        assert_eq!(p.closed(link), Closed::LinkWithLane(lane));
        assert_eq!(p.closed(lane), Closed::Neither);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn time_going_backwards_or_far_forwards_is_harmless() {
        let mut s = LaneSplit::new(1);
        assert!(s.takes_lane(&udp(1, 100), 1_000_000));
        assert!(s.takes_lane(&udp(1, 100), 5));
        assert!(s.takes_lane(&udp(1, 100), u64::MAX / 2));
    }
}
