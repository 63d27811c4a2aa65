//! A link's outgoing queue: control messages first, frames through a flow
//! queue with CoDel, in the manner of fq_codel (RFC 8290, RFC 8289).
//!
//! Every inner flow a link carries shares one outer TCP connection. With a
//! plain byte-bounded queue, a bulk transfer fills it and every other packet
//! (a ping, a DNS query, an SSH keystroke) waits behind it; and the inner
//! TCPs see no loss until the queue is full, so they keep it full. Here:
//!
//! * Control messages (announcements, health, hello) have a queue of their
//!   own, served before any frame and never dropped to make room for frames.
//! * Frames are hashed on the inner flow (IPv4/IPv6 addresses, protocol and
//!   ports; other frames on their Ethernet header) into one of [`FLOWS`]
//!   queues, served by deficit round robin with a quantum of bytes. A flow
//!   that was empty is served ahead of the ones with a backlog (fq_codel's
//!   "new flows"), so sparse traffic crosses a busy link at once.
//! * Each flow queue runs CoDel on the time its head waited (its sojourn):
//!   when that stays above `target` for an `interval`, the head is dropped,
//!   or for ECN-capable inner IPv4/IPv6 packets marked CE, at a rate that
//!   grows with the square root of the drop count until the delay falls
//!   below `target` again. Inner TCPs back off before a standing queue forms.
//! * Memory stays bounded: when the frames queued pass `limit` bytes, frames
//!   are dropped from the head of the longest flow (the one causing it),
//!   never from a sparse one.
//!
//! Sans-IO: time comes in as microseconds of a monotonic clock; the queue
//! owns the messages and hands them back whole.

use std::collections::VecDeque;

use super::wire::{self, Carries};

/// Flow queues per link. Flows hash into them; two flows that collide share
/// a queue (and CoDel's verdicts), as in fq_codel.
pub const FLOWS: usize = 256;

/// The queue discipline's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FqConfig {
    /// CoDel's target: the sojourn time a flow may keep (µs).
    pub target_us: u64,
    /// CoDel's interval: how long the sojourn may stay above target before
    /// drops begin, about the longest round trip of the inner flows (µs).
    pub interval_us: u64,
    /// Bytes of frames the queue holds at most.
    pub limit: usize,
    /// Bytes of control messages the queue holds at most.
    pub control_limit: usize,
    /// Bytes a flow may send per round.
    pub quantum: u32,
    /// Mark ECN-capable packets CE instead of dropping them.
    pub ecn: bool,
}

impl Default for FqConfig {
    fn default() -> FqConfig {
        FqConfig {
            target_us: 5_000,
            interval_us: 100_000,
            limit: 256 * 1024,
            control_limit: 1024 * 1024,
            quantum: 1514 + wire::LEN_PREFIX as u32 + 1,
            ecn: true,
        }
    }
}

/// What the queue did, counted since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FqStats {
    /// Frames dropped by CoDel (their flow's sojourn stayed above target).
    pub codel_drops: u64,
    /// Frames marked CE instead of dropped.
    pub ecn_marks: u64,
    /// Frames dropped because the queue held `limit` bytes.
    pub overlimit_drops: u64,
    /// Control messages refused because the control queue was full.
    pub control_drops: u64,
}

/// One message waiting, with the time it was queued.
#[derive(Debug)]
struct Packet {
    msg: Vec<u8>,
    at: u64,
}

/// Where a flow is in the round robin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum List {
    #[default]
    None,
    New,
    Old,
}

/// One flow queue and its CoDel state (RFC 8289's variables).
#[derive(Debug, Default)]
struct Flow {
    q: VecDeque<Packet>,
    bytes: usize,
    deficit: i64,
    list: List,
    /// When the sojourn first stayed above target (plus an interval): the
    /// time drops may begin; 0 while below target.
    first_above: u64,
    /// When the next drop is due while dropping.
    drop_next: u64,
    /// Drops in this dropping state.
    count: u32,
    /// `count` when the last dropping state ended.
    last_count: u32,
    dropping: bool,
}

/// A link's outgoing queue (see the module's documentation).
#[derive(Debug)]
pub struct FqCodel {
    cfg: FqConfig,
    /// Allocated on the first frame: an idle link costs nothing.
    flows: Vec<Flow>,
    new_flows: VecDeque<u16>,
    old_flows: VecDeque<u16>,
    control: VecDeque<Vec<u8>>,
    control_bytes: usize,
    frame_bytes: usize,
    frames: usize,
    /// The largest frame message seen: a flow holding no more than this is
    /// never dropped (CoDel needs a queue to act on).
    max_packet: usize,
    seed: u64,
    stats: FqStats,
}

impl FqCodel {
    /// An empty queue; `seed` perturbs the flow hash (draw it at random).
    pub fn new(cfg: FqConfig, seed: u64) -> FqCodel {
        FqCodel {
            cfg,
            flows: Vec::new(),
            new_flows: VecDeque::new(),
            old_flows: VecDeque::new(),
            control: VecDeque::new(),
            control_bytes: 0,
            frame_bytes: 0,
            frames: 0,
            max_packet: 1514,
            seed,
            stats: FqStats::default(),
        }
    }

    /// What the queue did so far.
    pub fn stats(&self) -> FqStats {
        self.stats
    }

    /// Bytes waiting, control and frames.
    pub fn bytes(&self) -> usize {
        self.control_bytes + self.frame_bytes
    }

    /// Bytes of frames waiting.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.control.len() + self.frames
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long the oldest frame at the head of a flow has waited (µs): the
    /// queue's delay now, as CoDel sees it.
    pub fn delay_us(&self, now: u64) -> u64 {
        self.new_flows
            .iter()
            .chain(self.old_flows.iter())
            .filter_map(|&i| self.flows[i as usize].q.front())
            .map(|p| now.saturating_sub(p.at))
            .max()
            .unwrap_or(0)
    }

    /// Queues a whole message (length prefix included). Returns `false` if
    /// it was refused: a control message beyond the control limit. A frame
    /// is always taken; if that passes the limit, frames are dropped from
    /// the head of the longest flow (perhaps this one's) until it fits.
    pub fn push(&mut self, msg: Vec<u8>, now: u64) -> bool {
        let Carries::Frame { ethertype_at } = wire::carries(&msg) else {
            if self.control_bytes + msg.len() > self.cfg.control_limit && !self.control.is_empty() {
                self.stats.control_drops += 1;
                return false;
            }
            self.control_bytes += msg.len();
            self.control.push_back(msg);
            return true;
        };
        if self.flows.is_empty() {
            self.flows.resize_with(FLOWS, Flow::default);
        }
        let idx = flow_hash(&msg, ethertype_at, self.seed) as usize % FLOWS;
        let len = msg.len();
        self.max_packet = self.max_packet.max(len);
        let flow = &mut self.flows[idx];
        flow.q.push_back(Packet { msg, at: now });
        flow.bytes += len;
        self.frame_bytes += len;
        self.frames += 1;
        if flow.list == List::None {
            flow.list = List::New;
            flow.deficit = self.cfg.quantum as i64;
            self.new_flows.push_back(idx as u16);
        }
        while self.frame_bytes > self.cfg.limit && self.frames > 1 {
            self.drop_from_longest();
        }
        true
    }

    /// Drops the head of the flow with the most bytes.
    fn drop_from_longest(&mut self) {
        let Some((idx, _)) =
            self.flows.iter().enumerate().filter(|(_, f)| f.bytes > 0).max_by_key(|(_, f)| f.bytes)
        else {
            return;
        };
        if let Some(p) = self.flows[idx].q.pop_front() {
            self.flows[idx].bytes -= p.msg.len();
            self.frame_bytes -= p.msg.len();
            self.frames -= 1;
            self.stats.overlimit_drops += 1;
        }
    }

    /// Takes the next message to send, if any: control messages first, then
    /// frames in round robin, after CoDel's verdict at `now`.
    pub fn pop(&mut self, now: u64) -> Option<Vec<u8>> {
        if let Some(m) = self.control.pop_front() {
            self.control_bytes -= m.len();
            return Some(m);
        }
        loop {
            let (idx, from_new) = match self.new_flows.front() {
                Some(&i) => (i, true),
                None => (*self.old_flows.front()?, false),
            };
            let alone = self.new_flows.len() + self.old_flows.len() == 1;
            let flow = &mut self.flows[idx as usize];
            if flow.deficit <= 0 {
                let quantum = self.cfg.quantum as i64;
                // A flow alone would go round until its deficit is positive
                // (some 40 turns after a 64 KiB super-frame): do it at once.
                let rounds = if alone { -flow.deficit / quantum + 1 } else { 1 };
                flow.deficit += rounds * quantum;
                flow.list = List::Old;
                if from_new {
                    self.new_flows.pop_front();
                } else {
                    self.old_flows.pop_front();
                }
                self.old_flows.push_back(idx);
                continue;
            }
            match self.codel_dequeue(idx as usize, now) {
                Some(msg) => {
                    self.flows[idx as usize].deficit -= msg.len() as i64;
                    return Some(msg);
                }
                None => {
                    // Empty: a new flow goes to the old list once (so that
                    // it cannot stay "new" by emptying each round), an old
                    // one leaves the round robin.
                    if from_new {
                        self.new_flows.pop_front();
                    } else {
                        self.old_flows.pop_front();
                    }
                    let flow = &mut self.flows[idx as usize];
                    if from_new && !self.old_flows.is_empty() {
                        flow.list = List::Old;
                        self.old_flows.push_back(idx);
                    } else {
                        flow.list = List::None;
                    }
                }
            }
        }
    }

    /// Takes the head of a flow, noting whether its sojourn allows a drop.
    fn take(&mut self, idx: usize, now: u64) -> Option<(Packet, bool)> {
        let flow = &mut self.flows[idx];
        let Some(p) = flow.q.pop_front() else {
            flow.first_above = 0;
            return None;
        };
        flow.bytes -= p.msg.len();
        self.frame_bytes -= p.msg.len();
        self.frames -= 1;
        let sojourn = now.saturating_sub(p.at);
        let mut ok_to_drop = false;
        if sojourn < self.cfg.target_us || flow.bytes + p.msg.len() <= self.max_packet {
            flow.first_above = 0;
        } else if flow.first_above == 0 {
            flow.first_above = now + self.cfg.interval_us;
        } else if now >= flow.first_above {
            ok_to_drop = true;
        }
        Some((p, ok_to_drop))
    }

    /// RFC 8289's dequeue for one flow: drops (or marks) heads while its
    /// control law says so and returns the first packet that goes out.
    fn codel_dequeue(&mut self, idx: usize, now: u64) -> Option<Vec<u8>> {
        let Some((mut p, mut ok_to_drop)) = self.take(idx, now) else {
            self.flows[idx].dropping = false;
            return None;
        };
        let interval = self.cfg.interval_us;
        if self.flows[idx].dropping {
            if !ok_to_drop {
                self.flows[idx].dropping = false;
            }
            while self.flows[idx].dropping && now >= self.flows[idx].drop_next {
                let flow = &mut self.flows[idx];
                flow.count = flow.count.saturating_add(1);
                flow.drop_next = control_law(flow.drop_next, flow.count, interval);
                if self.mark(&mut p.msg) {
                    return Some(p.msg);
                }
                self.stats.codel_drops += 1;
                match self.take(idx, now) {
                    Some((next, ok)) => {
                        p = next;
                        ok_to_drop = ok;
                    }
                    None => {
                        self.flows[idx].dropping = false;
                        return None;
                    }
                }
                if !ok_to_drop {
                    self.flows[idx].dropping = false;
                }
            }
        } else if ok_to_drop {
            let marked = self.mark(&mut p.msg);
            let flow = &mut self.flows[idx];
            let delta = flow.count.saturating_sub(flow.last_count);
            flow.count = if delta > 1 && now.saturating_sub(flow.drop_next) < 16 * interval {
                delta
            } else {
                1
            };
            flow.drop_next = control_law(now, flow.count, interval);
            flow.last_count = flow.count;
            flow.dropping = true;
            if !marked {
                self.stats.codel_drops += 1;
                let (next, _) = self.take(idx, now)?;
                p = next;
            }
        }
        Some(p.msg)
    }

    /// Marks a frame CE if ECN is on and the frame is ECN-capable IP.
    fn mark(&mut self, msg: &mut [u8]) -> bool {
        if !self.cfg.ecn {
            return false;
        }
        let Carries::Frame { ethertype_at } = wire::carries(msg) else {
            return false;
        };
        let marked = mark_ce(&mut msg[ethertype_at..]);
        if marked {
            self.stats.ecn_marks += 1;
        }
        marked
    }

    /// Releases the memory of empty flow queues (called now and then).
    pub fn shrink(&mut self) {
        if self.frames == 0 {
            self.flows = Vec::new();
            self.new_flows = VecDeque::new();
            self.old_flows = VecDeque::new();
        }
        if self.control.is_empty() {
            self.control = VecDeque::new();
        }
    }
}

/// CoDel's control law: the next drop, `interval / sqrt(count)` after `t`.
fn control_law(t: u64, count: u32, interval: u64) -> u64 {
    t + (interval as f64 / (count.max(1) as f64).sqrt()) as u64
}

const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88a8;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;

/// Skips VLAN tags: the EtherType and the offset of what follows it in `l2`
/// (which starts at the EtherType).
fn inner_type(l2: &[u8]) -> Option<(u16, usize)> {
    let mut at = 0;
    for _ in 0..3 {
        let t = u16::from_be_bytes([*l2.get(at)?, *l2.get(at + 1)?]);
        if t != ETH_VLAN && t != ETH_QINQ {
            return Some((t, at + 2));
        }
        at += 4;
    }
    None
}

/// A 64-bit mix (splitmix64's finaliser).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Folds bytes into a hash, eight at a time.
fn fold(mut h: u64, bytes: &[u8]) -> u64 {
    for c in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    h
}

/// The flow a frame belongs to: IPv4/IPv6 source, destination and protocol,
/// plus TCP/UDP/SCTP ports (not for fragments); other frames by their source
/// MAC and EtherType. `ethertype_at` is the EtherType's offset in `msg`.
pub fn flow_hash(msg: &[u8], ethertype_at: usize, seed: u64) -> u64 {
    let l2 = &msg[ethertype_at..];
    let h = mix(seed);
    let fallback =
        |h: u64| fold(h, msg.get(ethertype_at.saturating_sub(6)..ethertype_at + 2).unwrap_or(&[]));
    let Some((t, at)) = inner_type(l2) else {
        return fallback(h);
    };
    let ip = &l2[at..];
    let (proto, ports_at, addrs) = match t {
        ETH_IPV4 if ip.len() >= 20 && ip[0] >> 4 == 4 => {
            let ihl = (ip[0] & 0x0f) as usize * 4;
            let frag = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            (ip[9], (!frag).then_some(ihl), &ip[12..20])
        }
        ETH_IPV6 if ip.len() >= 40 && ip[0] >> 4 == 6 => (ip[6], Some(40), &ip[8..40]),
        _ => return fallback(fold(h, &t.to_be_bytes())),
    };
    let mut h = fold(h ^ proto as u64, addrs);
    if let (6 | 17 | 132 | 136, Some(p)) = (proto, ports_at) {
        if let Some(ports) = ip.get(p..p + 4) {
            h = fold(h, ports);
        }
    }
    h
}

/// Sets Congestion Experienced on an ECN-capable IPv4 or IPv6 packet; `l2`
/// starts at the EtherType. Returns whether the packet now carries CE
/// (`false` for packets that are not ECN-capable, which must be dropped).
pub fn mark_ce(l2: &mut [u8]) -> bool {
    let Some((t, at)) = inner_type(l2) else {
        return false;
    };
    let Some(ip) = l2.get_mut(at..) else {
        return false;
    };
    match t {
        ETH_IPV4 if ip.len() >= 20 && ip[0] >> 4 == 4 => {
            let ecn = ip[1] & 3;
            if ecn == 0 {
                return false;
            }
            if ecn == 3 {
                return true;
            }
            // RFC 1624: HC' = ~(~HC + ~m + m'), on the 16-bit word holding
            // the TOS byte (version/IHL, TOS).
            let old = u16::from_be_bytes([ip[0], ip[1]]);
            ip[1] |= 3;
            let new = u16::from_be_bytes([ip[0], ip[1]]);
            let hc = u16::from_be_bytes([ip[10], ip[11]]);
            let mut sum = (!hc as u32) + (!old as u32) + new as u32;
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            true
        }
        ETH_IPV6 if ip.len() >= 40 && ip[0] >> 4 == 6 => {
            // traffic class: low nibble of byte 0, high nibble of byte 1;
            // ECN is its low two bits, bits 4-5 of byte 1
            let ecn = (ip[1] >> 4) & 3;
            if ecn == 0 {
                return false;
            }
            ip[1] |= 0x30;
            true
        }
        _ => false,
    }
}

#[cfg(test)]
#[path = "fq_tests.rs"]
mod tests;
