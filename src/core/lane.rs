//! Which connection of a link a frame takes. Between two invpnd nodes a
//! link may have lanes: more TLS connections to the same neighbour,
//! dialled by the side that dialled the link, in the order they come up.
//! The first two are *sparse lanes*, which carry only the frames of sparse
//! inner flows (pings, DNS, key strokes, the first packets of a
//! connection, the ACKs of a bulk transfer in the other direction); the
//! rest are *stripes*, which share the bulk flows with the link itself,
//! each flow keeping one connection.
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
//! 2.5 Mbit/s). The ACKs of a bulk transfer are sparse by this measure:
//! on the sparse lanes they cross without waiting behind the transfer's
//! retransmissions, and they keep the lanes busy enough that a loss there
//! is found by the packets behind it rather than by a timer (measured:
//! with ACKs on a lane of their own, pings waited longer on lossy paths).
//! A flow that was not sparse keeps the bulk connection for
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
/// The most lanes a link has (sparse lanes and stripes together); a lane
/// accepted beyond it replaces the oldest.
pub const MAX_LANES: usize = 8;
/// Sparse lanes per link: the first lanes to come up.
pub const SPARSE_LANES: usize = 2;
/// The most stripes a link may be given (`[performance] stripes`).
pub const MAX_STRIPES: usize = MAX_LANES - SPARSE_LANES;
/// Retransmissions per sample (a worker tick, 500 ms) on a link and its
/// lanes that make the path lossy: its bulk flows spread over the stripes.
pub const STRIPE_RETRANSMITS: u32 = 3;
/// How long a link stays striped after its last lossy sample (ms): flows
/// do not move back and forth with each loss.
pub const STRIPE_HOLD_MS: u64 = 10_000;
/// Sequence numbers of twins a receiver tells apart: an older one is
/// discarded (its copy came long before).
pub const TWIN_WINDOW: u32 = 2048;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Decayed bytes, as of `at`.
    bytes: u32,
    /// When `bytes` was last decayed (ms).
    at: u64,
    /// Until when the flow keeps the bulk connection (ms).
    bulk_until: u64,
}

/// Which kind of connection a message takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// A frame of a sparse flow: a sparse lane.
    Sparse,
    /// Control messages, super-frames and frames of bulk flows: the link
    /// or a stripe, by the flow's bucket (control messages: bucket 0).
    Bulk {
        /// The flow's bucket, below [`BUCKETS`].
        bucket: usize,
    },
}

/// The per-link split of frames between sparse and bulk flows.
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

    /// Which way the whole message `msg` (length prefix included) takes at
    /// `now_ms`. Only plain frames (`0x80`, `0x81`) may be sparse; control
    /// messages always take the link, offloaded super-frames (bulk by
    /// nature) the connection of their flow. Every frame counts towards
    /// its flow's rate, whatever the verdict.
    pub fn way(&mut self, msg: &[u8], now_ms: u64) -> Way {
        let Carries::Frame { ethertype_at } = wire::carries(msg) else {
            return Way::Bulk { bucket: 0 };
        };
        let bucket = flow_hash(msg, ethertype_at, self.seed) as usize % BUCKETS;
        let b = &mut self.buckets[bucket];
        let halvings = now_ms.saturating_sub(b.at) / HALF_LIFE_MS;
        if halvings > 0 {
            b.bytes = if halvings >= 32 { 0 } else { b.bytes >> halvings };
            b.at += halvings * HALF_LIFE_MS;
        }
        b.bytes = b.bytes.saturating_add(msg.len() as u32);
        if wire::is_offloaded(msg) || b.bytes > SPARSE_BYTES {
            b.bulk_until = now_ms + HOLD_MS;
            return Way::Bulk { bucket };
        }
        if now_ms < b.bulk_until {
            Way::Bulk { bucket }
        } else {
            Way::Sparse
        }
    }
}

/// Where a message goes, as [`Lanes::choose`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Send {
    /// On the link itself.
    Link,
    /// On this sparse lane.
    Lane(LinkId),
    /// On this stripe.
    Stripe(LinkId),
    /// Twice, as `0x83` twins numbered `seq`: on the first sparse lane and
    /// on the second (or, with one lane, on the link).
    Twins {
        /// The pair's sequence number.
        seq: u32,
        /// The first sparse lane.
        first: LinkId,
        /// The second sparse lane; `None`: the link.
        second: Option<LinkId>,
    },
}

/// A link's lanes as its sender uses them: the split of flows, the lanes
/// in the order they came up, and the next twin sequence number.
#[derive(Debug, Clone)]
pub struct Lanes {
    split: LaneSplit,
    lanes: Vec<LinkId>,
    next_seq: u32,
    /// Until when bulk flows use the stripes (ms; see [`Lanes::sample`]).
    striped_until: u64,
}

impl Lanes {
    /// No lanes yet; flows hashed with `seed`.
    pub fn new(seed: u64) -> Lanes {
        Lanes { split: LaneSplit::new(seed), lanes: Vec::new(), next_seq: 0, striped_until: 0 }
    }

    /// The link and its lanes retransmitted `retransmits` segments since
    /// the last sample, at `now_ms`. Stripes help only where the path loses
    /// packets (on a clean link, more connections only cost the worker
    /// more, smaller writes): bulk flows use them from the first sample
    /// with at least [`STRIPE_RETRANSMITS`], until [`STRIPE_HOLD_MS`] after
    /// the last such sample.
    pub fn sample(&mut self, retransmits: u32, now_ms: u64) {
        if retransmits >= STRIPE_RETRANSMITS {
            self.striped_until = now_ms + STRIPE_HOLD_MS;
        }
    }

    /// The lanes are now `lanes` (oldest first; the split and the
    /// sequence numbers go on).
    pub fn set(&mut self, lanes: &[LinkId]) {
        self.lanes.clear();
        self.lanes.extend_from_slice(&lanes[..lanes.len().min(MAX_LANES)]);
    }

    /// The lanes, oldest first.
    pub fn lanes(&self) -> &[LinkId] {
        &self.lanes
    }

    /// Where the whole message `msg` goes at `now_ms`; `twins`: whether
    /// the neighbour takes `0x83` (only `0x80` frames are sent twice).
    pub fn choose(&mut self, msg: &[u8], now_ms: u64, twins: bool) -> Send {
        let way = self.split.way(msg, now_ms);
        let sparse = &self.lanes[..self.lanes.len().min(SPARSE_LANES)];
        match way {
            Way::Sparse if sparse.is_empty() => Send::Link,
            Way::Sparse if twins && wire::kind_of(msg) == Some(wire::kind::UNICAST) => {
                let seq = self.next_seq;
                self.next_seq = self.next_seq.wrapping_add(1);
                Send::Twins { seq, first: sparse[0], second: sparse.get(1).copied() }
            }
            Way::Sparse => Send::Lane(sparse[0]),
            Way::Bulk { .. } if now_ms >= self.striped_until => Send::Link,
            Way::Bulk { bucket } => {
                let stripes = self.lanes.get(SPARSE_LANES..).unwrap_or_default();
                match bucket % (1 + stripes.len()) {
                    0 => Send::Link,
                    i => Send::Stripe(stripes[i - 1]),
                }
            }
        }
    }
}

/// The receiving side of twins on one link: which sequence numbers of the
/// last [`TWIN_WINDOW`] arrived (as an anti-replay window does). Fixed
/// size, whatever the neighbour sends.
#[derive(Debug, Clone)]
pub struct TwinWindow {
    /// The highest sequence number seen (valid once `started`).
    top: u32,
    started: bool,
    bits: [u64; (TWIN_WINDOW / 64) as usize],
}

impl Default for TwinWindow {
    fn default() -> TwinWindow {
        TwinWindow { top: 0, started: false, bits: [0; (TWIN_WINDOW / 64) as usize] }
    }
}

impl TwinWindow {
    /// Whether the twin numbered `seq` is the first of its pair to arrive
    /// (to be kept). A number more than the window behind the highest seen
    /// is taken as a copy that came long after its twin (discarded);
    /// numbers are compared modulo 2^32.
    pub fn accept(&mut self, seq: u32) -> bool {
        if !self.started {
            self.started = true;
            self.top = seq;
            self.set(seq);
            return true;
        }
        let ahead = seq.wrapping_sub(self.top);
        if ahead != 0 && ahead < 1 << 31 {
            if ahead >= TWIN_WINDOW {
                self.bits = [0; (TWIN_WINDOW / 64) as usize];
            } else {
                for s in 1..=ahead {
                    self.clear(self.top.wrapping_add(s));
                }
            }
            self.top = seq;
            self.set(seq);
            return true;
        }
        if self.top.wrapping_sub(seq) >= TWIN_WINDOW || self.get(seq) {
            return false;
        }
        self.set(seq);
        true
    }

    fn at(seq: u32) -> (usize, u64) {
        let i = seq % TWIN_WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn get(&self, seq: u32) -> bool {
        let (w, b) = Self::at(seq);
        self.bits[w] & b != 0
    }

    fn set(&mut self, seq: u32) {
        let (w, b) = Self::at(seq);
        self.bits[w] |= b;
    }

    fn clear(&mut self, seq: u32) {
        let (w, b) = Self::at(seq);
        self.bits[w] &= !b;
    }
}

/// Which lanes belong to which link, as the supervisor keeps it: at most
/// [`MAX_LANES`] per link, dialled one at a time; a lane lives no longer
/// than its link.
#[derive(Debug, Default)]
pub struct LanePairs {
    /// lane -> its link
    link_of: HashMap<LinkId, LinkId>,
    /// link -> its lanes, oldest first
    lanes_of: HashMap<LinkId, Vec<LinkId>>,
    /// links a lane is being dialled for
    dialling: HashSet<LinkId>,
}

/// What closing a connection means for lanes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// It was a lane of this link, which goes on without it.
    LaneOf(LinkId),
    /// It was a link with these lanes, which must close too.
    LinkWithLanes(Vec<LinkId>),
    /// Nothing to do for lanes.
    Neither,
}

impl LanePairs {
    /// An empty table.
    pub fn new() -> LanePairs {
        LanePairs::default()
    }

    /// Whether a lane should be dialled for `link` now (it has fewer than
    /// `want` and none is being dialled); if so, notes that one is.
    pub fn start_dial(&mut self, link: LinkId, want: usize) -> bool {
        if self.lanes_of(link).len() >= want.min(MAX_LANES) {
            return false;
        }
        self.dialling.insert(link)
    }

    /// The lane dialled for `link` failed before it came up.
    pub fn dial_failed(&mut self, link: LinkId) {
        self.dialling.remove(&link);
    }

    /// `lane` came up for `link`; returns the oldest lane if `link` now has
    /// more than [`MAX_LANES`] (to close).
    pub fn paired(&mut self, lane: LinkId, link: LinkId) -> Option<LinkId> {
        self.dialling.remove(&link);
        let lanes = self.lanes_of.entry(link).or_default();
        if lanes.contains(&lane) {
            return None;
        }
        lanes.push(lane);
        self.link_of.insert(lane, link);
        if lanes.len() <= MAX_LANES {
            return None;
        }
        let old = lanes.remove(0);
        self.link_of.remove(&old);
        Some(old)
    }

    /// The connection `id` closed.
    pub fn closed(&mut self, id: LinkId) -> Closed {
        if let Some(link) = self.link_of.remove(&id) {
            if let Some(lanes) = self.lanes_of.get_mut(&link) {
                lanes.retain(|&l| l != id);
                if lanes.is_empty() {
                    self.lanes_of.remove(&link);
                }
            }
            return Closed::LaneOf(link);
        }
        self.dialling.remove(&id);
        match self.lanes_of.remove(&id) {
            Some(lanes) => {
                for l in &lanes {
                    self.link_of.remove(l);
                }
                Closed::LinkWithLanes(lanes)
            }
            None => Closed::Neither,
        }
    }

    /// Links that have lanes.
    pub fn len(&self) -> usize {
        self.lanes_of.len()
    }

    /// Whether no link has a lane.
    pub fn is_empty(&self) -> bool {
        self.lanes_of.is_empty()
    }

    /// The lanes of `link`, oldest first.
    pub fn lanes_of(&self, link: LinkId) -> &[LinkId] {
        self.lanes_of.get(&link).map_or(&[], Vec::as_slice)
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

    fn sparse(s: &mut LaneSplit, msg: &[u8], now: u64) -> bool {
        s.way(msg, now) == Way::Sparse
    }

    #[test]
    fn a_ping_rate_flow_takes_the_lane_and_a_bulk_flow_does_not() {
        let mut s = LaneSplit::new(7);
        let mut bulk_on_lane = 0;
        // 100 ms of a 100 Mbit/s flow (one 1500-byte frame each 120 us)
        // beside a sparse flow of one small packet each 10 ms
        for i in 0..830u64 {
            let now = i * 120 / 1000;
            if sparse(&mut s, &udp(1000, 1500), now) {
                bulk_on_lane += 1;
            }
            if i % 83 == 0 {
                assert!(sparse(&mut s, &udp(2000, 100), now), "sparse frame at {now} ms");
            }
        }
        // only its first few frames, before its rate is known
        assert!(bulk_on_lane <= 6, "{bulk_on_lane} bulk frames took the lane");
    }

    #[test]
    fn a_flow_that_was_bulk_returns_to_the_lane_only_after_a_pause() {
        let mut s = LaneSplit::new(1);
        for i in 0..100u64 {
            sparse(&mut s, &udp(1000, 1500), i / 10);
        }
        // 10 ms after the burst its decayed count is still high
        assert!(!sparse(&mut s, &udp(1000, 100), 20));
        // decayed below the threshold, but still held on the bulk connection
        assert!(!sparse(&mut s, &udp(1000, 100), 10 + HOLD_MS / 2));
        // after the hold, a sparse packet goes back to the lane
        assert!(sparse(&mut s, &udp(1000, 100), 30 + HOLD_MS + 200));
    }

    #[test]
    fn control_messages_and_super_frames_never_take_the_lane() {
        let mut s = LaneSplit::new(1);
        let mut hello = Vec::new();
        wire::encode_hello(&mut hello, 0);
        assert_eq!(s.way(&hello, 0), Way::Bulk { bucket: 0 });
        let mut m = udp(3000, 100);
        m[wire::LEN_PREFIX] = wire::kind::OFFLOADED;
        // (not a valid 0x82 body, but classified by its type byte alone)
        assert!(!sparse(&mut s, &m, 0));
    }

    #[test]
    fn lanes_pair_with_links_and_go_with_them() {
        let link = LinkId::new(1, 0);
        let lane = |i: u64| LinkId::new(10 + i, 0);
        let mut p = LanePairs::new();
        assert!(p.start_dial(link, 3));
        assert!(!p.start_dial(link, 3), "one dial at a time");
        p.dial_failed(link);
        assert!(p.start_dial(link, 3), "dialled again after a failure");
        assert_eq!(p.paired(lane(0), link), None);
        assert!(p.start_dial(link, 3), "the next one");
        assert_eq!(p.paired(lane(1), link), None);
        assert_eq!(p.paired(lane(1), link), None, "paired twice is once");
        assert!(p.start_dial(link, 3));
        assert_eq!(p.paired(lane(2), link), None);
        assert!(!p.start_dial(link, 3), "a link with all it wants dials none");
        assert_eq!(p.lanes_of(link), &[lane(0), lane(1), lane(2)]);
        // lanes accepted beyond the bound replace the oldest, to be closed
        for i in 3..MAX_LANES as u64 {
            assert_eq!(p.paired(lane(i), link), None);
        }
        assert_eq!(p.paired(lane(99), link), Some(lane(0)));
        assert_eq!(p.lanes_of(link).len(), MAX_LANES);
        assert_eq!(p.closed(lane(0)), Closed::Neither);
        // a lane closes: the link goes on without it
        assert_eq!(p.closed(lane(1)), Closed::LaneOf(link));
        assert_eq!(p.lanes_of(link).first(), Some(&lane(2)));
        // the link closes: its lanes go too
        let Closed::LinkWithLanes(gone) = p.closed(link) else { panic!("lanes left") };
        assert_eq!(gone.len(), MAX_LANES - 1);
        assert_eq!(p.closed(lane(2)), Closed::Neither);
        assert!(p.is_empty());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn sparse_unicasts_go_twice_bulk_flows_spread_over_the_link_and_its_stripes() {
        let (l0, l1, s0, s1) =
            (LinkId::new(10, 0), LinkId::new(11, 0), LinkId::new(12, 0), LinkId::new(13, 0));
        let mut lanes = Lanes::new(5);
        // without lanes everything takes the link
        assert_eq!(lanes.choose(&udp(1, 100), 0, true), Send::Link);
        lanes.set(&[l0]);
        // one lane: twins on it and on the link; without twins, the lane
        assert_eq!(
            lanes.choose(&udp(1, 100), 0, true),
            Send::Twins { seq: 0, first: l0, second: None }
        );
        assert_eq!(lanes.choose(&udp(1, 100), 0, false), Send::Lane(l0));
        lanes.set(&[l0, l1, s0, s1]);
        assert_eq!(
            lanes.choose(&udp(1, 100), 0, true),
            Send::Twins { seq: 1, first: l0, second: Some(l1) }
        );
        // a sparse broadcast takes the first lane once (the mesh
        // de-duplicates broadcasts by their ids anyway)
        let mut bc = Vec::new();
        let mut f = vec![0xffu8; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        f.resize(60, 0);
        assert!(wire::encode_broadcast(&mut bc, 7, &f));
        assert_eq!(lanes.choose(&bc, 0, true), Send::Lane(l0));
        // a flow of small packets at a high rate (the ACKs of a transfer the
        // other way) is sparse: twins
        for i in 0..200u64 {
            let c = lanes.choose(&udp(7, 66), i / 2, true);
            assert!(matches!(c, Send::Twins { second: Some(l), .. } if l == l1), "{c:?}");
        }
        // control messages take the link
        let mut hello = Vec::new();
        wire::encode_hello(&mut hello, 0);
        assert_eq!(lanes.choose(&hello, 0, true), Send::Link);
        // a clean path: bulk flows keep the link
        for port in 0..32u16 {
            let last = (0..20).map(|_| lanes.choose(&udp(6000 + port, 1500), 0, true)).last();
            assert_eq!(last, Some(Send::Link));
        }
        lanes.sample(STRIPE_RETRANSMITS - 1, 0);
        assert_eq!(lanes.choose(&udp(6000, 1500), 0, true), Send::Link);
        // a lossy one: each keeps one connection; together they use all three
        lanes.sample(STRIPE_RETRANSMITS, 0);
        let mut used = HashMap::new();
        for t in 0..200u64 {
            for port in 0..32u16 {
                let c = lanes.choose(&udp(5000 + port, 1500), t, true);
                // (a flow's first few frames are sparse, until its rate shows)
                if t > 10 {
                    assert!(matches!(c, Send::Link | Send::Stripe(_)), "{c:?}");
                    assert_eq!(*used.entry(port).or_insert(c), c, "flow {port} moved");
                }
            }
        }
        let conns: HashSet<_> = used.values().collect();
        assert_eq!(conns.len(), 3, "32 flows over the link and two stripes: {conns:?}");
        // the path clean again for the hold time: back on the link
        let (&port, _) = used.iter().find(|(_, c)| matches!(c, Send::Stripe(_))).unwrap();
        let mut burst = |t: u64| {
            (0..20).map(|_| lanes.choose(&udp(5000 + port, 1500), t, true)).last().unwrap()
        };
        assert!(matches!(burst(STRIPE_HOLD_MS - 10), Send::Stripe(_)));
        assert_eq!(burst(STRIPE_HOLD_MS + 10), Send::Link);
    }

    #[test]
    fn twins_are_kept_once_and_the_window_is_bounded() {
        let mut w = TwinWindow::default();
        assert!(w.accept(7));
        assert!(!w.accept(7), "the second copy");
        // out of order within the window: each kept once
        for s in [10, 9, 8, 12, 11] {
            assert!(w.accept(s), "{s}");
            assert!(!w.accept(s), "{s} again");
        }
        // far ahead: the window moves; what it left behind is discarded
        assert!(w.accept(12 + TWIN_WINDOW + 5));
        assert!(!w.accept(12), "older than the window");
        assert!(w.accept(12 + TWIN_WINDOW + 1), "late but inside the window");
        // numbers wrap around
        let mut w = TwinWindow::default();
        assert!(w.accept(u32::MAX - 1));
        assert!(w.accept(u32::MAX));
        assert!(w.accept(0));
        assert!(w.accept(1));
        assert!(!w.accept(u32::MAX));
        assert!(!w.accept(0));
        // a window slid by more than its size is cleared, not shifted bit
        // by bit: nothing older than it survives
        let mut w = TwinWindow::default();
        for s in 0..TWIN_WINDOW {
            assert!(w.accept(s));
        }
        assert!(w.accept(3 * TWIN_WINDOW));
        for s in 2 * TWIN_WINDOW + 1..3 * TWIN_WINDOW {
            assert!(w.accept(s), "{s} is new");
        }
        // copies of each sequence number, interleaved as two connections
        // would deliver them with one of them late: each kept once
        let mut w = TwinWindow::default();
        let mut kept = 0;
        for s in 0..5000u32 {
            kept += u32::from(w.accept(s));
            if s >= 300 {
                kept += u32::from(w.accept(s - 300));
            }
        }
        assert_eq!(kept, 5000);
    }

    #[test]
    fn time_going_backwards_or_far_forwards_is_harmless() {
        let mut s = LaneSplit::new(1);
        assert!(sparse(&mut s, &udp(1, 100), 1_000_000));
        assert!(sparse(&mut s, &udp(1, 100), 5));
        assert!(sparse(&mut s, &udp(1, 100), u64::MAX / 2));
    }
}
