//! Drivers shared by the fuzz targets (`fuzz/`) and the property tests
//! (`tests/properties.rs`): each takes arbitrary bytes, runs a part of
//! invpnd on them, and panics if an invariant breaks. Arbitrary input must
//! never make them panic otherwise.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use crate::core::health;
use crate::core::offload::{self, VnetHdr};
use crate::core::stats::DropReason;
use crate::core::wire::{self, Message};
use crate::core::{
    Engine, EngineConfig, Event, Fanout, LinkCtx, LinkId, Mac, Now, Output, TapAction, Verdict,
};

/// Parses `data` as one message; whatever parses must encode back to the
/// same bytes (for the types invpnd encodes) and parse again the same.
pub fn wire_round_trip(data: &[u8]) {
    let Ok(m) = wire::parse(data) else { return };
    let mut out = Vec::new();
    let encoded = match m {
        Message::DirectAnnounce(a) => {
            wire::encode_direct_announce(&mut out, &a);
            true
        }
        Message::Announce(a) => {
            wire::encode_announce(&mut out, &a);
            true
        }
        Message::Unicast(u) => wire::encode_unicast(&mut out, u.frame),
        Message::Broadcast(b) => {
            let mut frame = vec![0xff; 6];
            frame.extend_from_slice(&b.src.0);
            frame.extend_from_slice(b.payload);
            wire::encode_broadcast(&mut out, b.id, &frame)
        }
        Message::HealthRequest(r) => {
            wire::encode_health_request(&mut out, r.version, r.id, r.origin, r.trace.bytes())
        }
        Message::HealthResponse(r) => {
            wire::encode_health_response(&mut out, r.version, &wire::HealthReport::from_wire(&r));
            true
        }
        Message::Offloaded(o) => wire::encode_offloaded(&mut out, &o.hdr, o.frame),
        Message::Twin(t) => {
            let mut plain = Vec::new();
            wire::encode_unicast(&mut plain, t.unicast.frame)
                && wire::encode_twin(&mut out, t.seq, &plain)
        }
        Message::Prune(p) => {
            let prune: Vec<Mac> = p.prune.iter().collect();
            let graft: Vec<Mac> = p.graft.iter().collect();
            let mut msgs = Vec::new();
            wire::encode_prunes(&mut msgs, &prune, &graft);
            only_one(msgs, p.version, &mut out)
        }
        Message::Routes(r) => {
            let mut msgs = Vec::new();
            wire::encode_routes(&mut msgs, r.iter());
            only_one(msgs, r.version, &mut out)
        }
        Message::RouteRequest(r) => {
            let macs: Vec<Mac> = r.nodes.iter().collect();
            let mut msgs = Vec::new();
            wire::encode_route_requests(&mut msgs, r.lost, &macs);
            only_one(msgs, r.version, &mut out)
        }
        Message::AnnounceRequest(r) => {
            let macs: Vec<Mac> = r.nodes.iter().collect();
            let mut msgs = Vec::new();
            wire::encode_announce_requests(&mut msgs, r.hops, &macs);
            only_one(msgs, r.version, &mut out)
        }
        Message::Hello(_) | Message::Unknown(_) => false,
    };
    if encoded {
        assert_eq!(&out[wire::LEN_PREFIX..], data, "re-encoding {m:?} changed it");
        assert_eq!(wire::parse(&out[wire::LEN_PREFIX..]), Ok(m));
    }
}

/// For the encoders that split long lists over several messages (and
/// write the current version): the one message they made into `out`, if
/// they made one, of a message of that version (else there is nothing to
/// compare).
fn only_one(mut msgs: Vec<Vec<u8>>, version: u8, out: &mut Vec<u8>) -> bool {
    match msgs.pop() {
        Some(one) if msgs.is_empty() && version == wire::VERSION => {
            *out = one;
            true
        }
        _ => false,
    }
}

/// Splits `data` into chunks of sizes it chooses itself and feeds them to a
/// deframer: the messages must be exactly those of the stream.
pub fn deframer_chunks(data: &[u8]) {
    let Some((&step, stream)) = data.split_first() else { return };
    let mut want = Vec::new();
    let mut rest = stream;
    while let Some((msg, tail)) = wire::split_message(rest) {
        want.push(msg.to_vec());
        rest = tail;
    }
    let mut d = crate::core::deframer::Deframer::new();
    let mut got = Vec::new();
    for chunk in stream.chunks(usize::from(step).max(1)) {
        d.push(chunk);
        while let Some(m) = d.next_message() {
            got.push(m[wire::LEN_PREFIX..].to_vec());
        }
    }
    assert_eq!(got, want);
    assert_eq!(d.buffered(), rest.len());
}

/// Records what the engine did, checking as it goes.
struct Checked<'a> {
    me: Mac,
    up: &'a HashSet<LinkId>,
    delivered: usize,
    /// While a health request is handled: the link it came on, the only
    /// one anything may be sent on.
    only_to: Option<LinkId>,
    /// Bytes of health responses sent on each link so far.
    answer_bytes: &'a mut HashMap<LinkId, u64>,
}

impl<'a> Checked<'a> {
    /// Checks what is sent outside the handling of a message.
    fn new(
        me: Mac,
        up: &'a HashSet<LinkId>,
        answer_bytes: &'a mut HashMap<LinkId, u64>,
    ) -> Checked<'a> {
        Checked { me, up, delivered: 0, only_to: None, answer_bytes }
    }
}

impl Output for Checked<'_> {
    fn send(&mut self, link: LinkId, msg: &[u8]) {
        assert!(self.up.contains(&link), "sent on link {link} which is not up");
        assert!(
            wire::split_message(msg).is_some_and(|(_, rest)| rest.is_empty()),
            "sent a broken message"
        );
        if let Some(l) = self.only_to {
            assert_eq!(link, l, "answered a health request over another link than its own");
        }
        if wire::kind_of(msg) == Some(wire::kind::HEALTH_RESPONSE) {
            *self.answer_bytes.entry(link).or_default() += msg.len() as u64;
        }
    }
    fn flood(&mut self, to: &Fanout, msg: &[u8]) {
        if let Some(l) = to.except {
            assert!(self.up.contains(&l), "flooded from link {l} which is not up");
        }
        let Some((m, rest)) = wire::split_message(msg) else { panic!("flooded a broken message") };
        assert!(rest.is_empty() && wire::parse(m).is_ok(), "flooded a malformed message");
    }
    fn deliver(&mut self, frame: &[u8]) {
        assert!(frame.len() >= 14, "delivered a runt frame");
        assert_ne!(frame.get(6..12), Some(&self.me.0[..]), "delivered a frame from our own MAC");
        self.delivered += 1;
    }
    fn deliver_offloaded(&mut self, hdr: &VnetHdr, frame: &[u8]) {
        assert!(offload::check(hdr, frame).is_ok(), "delivered an unchecked offloaded frame");
        self.deliver(frame);
    }
    fn event(&mut self, _ev: Event) {}
}

/// Drives an engine with four links (two invpnd, two 0.4) through a
/// sequence of operations decoded from `data`: messages on links, links
/// going down and up, time passing (and the wall clock stepping back),
/// traces started, frames from the TAP. Checks that routes only use links
/// that are up, that the table stays within its limit, that output goes
/// only to links that are up, that no broadcast is delivered twice (unless
/// its source's ids fell below its window meanwhile), that broadcasts are
/// taken only from the path from their source, that health requests are
/// answered only over their own link and health responses stay within
/// each link's byte budget, that a trace takes in only its own answers and
/// a bounded total, that the node's ids never repeat nor freeze, and that
/// every route is charged to its link with no link past its share of the
/// table nor relaying more than half of it.
pub fn engine_sequence(data: &[u8]) {
    let me = Mac([2, 0x50, 0x56, 0, 0, 1]);
    let e = Engine::new(EngineConfig {
        max_routes: 64,
        routes_per_link: 4,
        broadcast_rate: 50,
        ..EngineConfig::new(me)
    });
    let addr: SocketAddr = ([198, 18, 0, 2], 41744).into();
    let ctx = |i: usize, gen: u64| LinkCtx {
        id: LinkId(gen * 4 + i as u64),
        peer: Mac([2, 0x50, 0x56, 0, 0, 2 + i as u8]),
        addr,
        ext: i < 2,
    };
    let mut gens = [0u64; 4];
    let mut up: HashSet<LinkId> = HashSet::new();
    let mut now = Now { mono: 1_000, unix_ms: 1_700_000_000_000 };
    for i in 0..4 {
        e.link_up(&ctx(i, 0), now);
        up.insert(ctx(i, 0).id);
    }
    // (source, id) delivered -> the step it was delivered at
    let mut broadcasts: HashMap<(Mac, u64), usize> = HashMap::new();
    // the last step a source's broadcast was too old for its window
    let mut too_old: HashMap<Mac, usize> = HashMap::new();
    let mut answer_bytes: HashMap<LinkId, u64> = HashMap::new();
    // traces started: request id -> (until, answers, bytes)
    let mut traces: HashMap<u64, (u64, u32, u64)> = HashMap::new();
    let (start_mono, mut last_id, mut last_mesh) = (now.mono, 0u64, 0u64);
    let mut step = 0usize;
    let mut rest = data;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let Some((&arg, tail)) = rest.split_first() else { break };
        rest = tail;
        let i = usize::from(arg % 4);
        let link = ctx(i, gens[i]);
        step += 1;
        match op % 8 {
            0..=3 => {
                // a message on link i: two length bytes, then the message
                let len = match rest {
                    [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])).min(rest.len() - 2),
                    _ => break,
                };
                let body = &rest[2..2 + len];
                rest = &rest[2 + len..];
                if !up.contains(&link.id) {
                    continue;
                }
                let mut raw = (len as u16).to_be_bytes().to_vec();
                raw.extend_from_slice(body);
                let parsed = wire::parse(body);
                let bcast = match parsed {
                    Ok(Message::Broadcast(b)) => Some((b.src, b.id)),
                    _ => None,
                };
                let on_path = bcast.is_some_and(|(src, _)| {
                    src == link.peer || e.routes().next_hop(&src) == Some(link.id)
                });
                let request = matches!(parsed, Ok(Message::HealthRequest(_)));
                let answer = match parsed {
                    Ok(Message::HealthResponse(r)) if r.dst == me => Some(r.request_id),
                    _ => None,
                };
                let mut out = Checked {
                    me,
                    up: &up,
                    delivered: 0,
                    only_to: request.then_some(link.id),
                    answer_bytes: &mut answer_bytes,
                };
                let v = e.handle_message(&link, &mut raw, now, &mut out);
                match (bcast, v) {
                    (Some(key), Verdict::Done) => {
                        assert!(on_path, "broadcast {key:?} taken off the path from its source");
                        if let Some(at) = broadcasts.insert(key, step) {
                            assert!(
                                too_old.get(&key.0).is_some_and(|t| *t > at),
                                "broadcast {key:?} delivered twice"
                            );
                        }
                    }
                    (Some((src, _)), Verdict::Dropped(DropReason::TooOld)) => {
                        too_old.insert(src, step);
                    }
                    _ => {}
                }
                if let (Some(id), Verdict::Done) = (answer, v) {
                    let Some(t) = traces.get_mut(&id) else {
                        panic!("took an answer for no trace of ours")
                    };
                    assert!(now.mono <= t.0, "took an answer after its trace ended");
                    t.1 += 1;
                    t.2 += raw.len() as u64;
                    assert!(t.1 <= health::MAX_TRACE_ANSWERS && t.2 <= health::MAX_TRACE_BYTES);
                }
            }
            4 if op & 0x10 != 0 => {
                // this node starts a trace
                let wait = u64::from(arg) * 100;
                let (id, msg) = e.health_request(now, wait);
                assert!(wire::parse_whole(&msg).is_ok());
                assert!(id > last_id, "id {id} after {last_id}");
                last_id = id;
                traces.insert(id, (now.mono + wait, 0, 0));
            }
            5 if op & 0x10 != 0 => {
                // the wall clock steps back; the monotonic clock goes on
                now = Now {
                    mono: now.mono + 1,
                    unix_ms: now.unix_ms.saturating_sub(u64::from(arg) * 10_000),
                };
                e.tick(now, &mut Checked::new(me, &up, &mut answer_bytes));
            }
            4 => {
                if up.remove(&link.id) {
                    e.link_down(link.id, now, &mut Checked::new(me, &up, &mut answer_bytes));
                } else {
                    gens[i] += 1;
                    let l = ctx(i, gens[i]);
                    e.link_up(&l, now);
                    up.insert(l.id);
                }
            }
            5 => {
                let dt = u64::from(arg) * 997;
                now = Now { mono: now.mono + dt, unix_ms: now.unix_ms + dt };
                e.tick(now, &mut Checked::new(me, &up, &mut answer_bytes));
            }
            _ => {
                // a frame from the TAP, with or without an offload header
                let n = usize::from(arg).min(rest.len());
                let (frame, tail) = rest.split_at(n);
                rest = tail;
                let mut buf = vec![0u8; wire::VNET_FRAME_AT + frame.len() + 16];
                let action = if op & 8 == 0 {
                    buf[wire::FRAME_HEADROOM..wire::FRAME_HEADROOM + n].copy_from_slice(frame);
                    e.tap_frame(&mut buf, n, now)
                } else {
                    buf[wire::VNET_READ_AT..wire::VNET_READ_AT + n].copy_from_slice(frame);
                    e.tap_frame_vnet(&mut buf, n, now)
                };
                match action {
                    TapAction::Unicast { link, msg, .. } => {
                        assert!(up.contains(&link), "TAP frame routed to a link that is down");
                        let m = &buf[msg];
                        assert!(wire::split_message(m)
                            .is_some_and(|(b, r)| r.is_empty() && wire::parse(b).is_ok()));
                    }
                    TapAction::Segments { link, msgs, .. } => {
                        assert!(up.contains(&link));
                        assert!(msgs.iter().all(|m| wire::parse(&m[2..]).is_ok()));
                    }
                    TapAction::Flood { msg } => {
                        let Ok(Message::Broadcast(b)) = wire::parse(&buf[msg.start + 2..msg.end])
                        else {
                            panic!("flooded something else than a broadcast")
                        };
                        assert!(b.id > last_id, "id {} after {last_id}", b.id);
                        last_id = b.id;
                    }
                    TapAction::Drop(_) => {}
                }
            }
        }
        for (_, r) in e.routes().snapshot() {
            assert!(up.contains(&r.link), "route through link {} which is down", r.link);
            if let Some((alt, _)) = r.alt() {
                assert!(up.contains(&alt), "second path through link {alt} which is down");
            }
        }
        assert!(e.routes().len() <= 64 + 4, "route table past its limit: {}", e.routes().len());
        // every route is charged to its link, and no link holds more than
        // its share (its neighbour, which always fits, aside) nor relays
        // more than half of it
        let snapshot = e.routes().snapshot();
        let mut held: HashMap<LinkId, (usize, usize)> = HashMap::new();
        for (mac, r) in &snapshot {
            let h = held.entry(r.link).or_default();
            h.0 += 1;
            h.1 += usize::from(r.relay);
            assert!(r.relay || *mac != r.via, "a neighbour's own route not relayed");
        }
        let charges = e.routes().charges();
        assert_eq!(charges.len(), held.len(), "charges {charges:?} for routes {held:?}");
        for (l, c) in charges {
            assert_eq!(Some(&(c.held, c.relayed)), held.get(&l), "link {l}'s charge");
            assert!(c.held <= 4 + 1, "link {l} holds {} routes, past its share", c.held);
            assert!(c.relayed <= 2 + 1, "link {l} relays {} routes", c.relayed);
        }
        // the mesh clock never goes back, nor behind the wall clock
        let mesh = e.mesh_ms(now);
        assert!(mesh >= last_mesh && mesh >= now.unix_ms, "mesh clock {mesh} after {last_mesh}");
        last_mesh = mesh;
        // health responses within each link's budget
        let budget = health::ANSWER_BYTES;
        let most =
            u64::from(budget.burst) + (now.mono - start_mono) * u64::from(budget.per_sec) / 1000;
        for (l, b) in &answer_bytes {
            assert!(*b <= most, "{b} bytes of health responses on link {l}");
        }
    }
    // the node's ids never froze: one more is always to be had
    let id = e.next_id(now);
    assert!(id > last_id, "id {id} after {last_id}");
}

/// Drives a dialer through a sequence of operations decoded from `data`
/// (two bytes each: an operation and its argument): addresses announced
/// by four neighbours (usable, invented and unusable ones), dials started,
/// failing, linking and ending, time passing, seeds and limits changed.
/// Checks after each step that the bookkeeping is consistent, that hearsay
/// stays within its total and each neighbour's share, that nothing is
/// dialled at an address the rule refuses unless it is the node's seed, and
/// that no address is dialled twice at once.
pub fn dialer_sequence(data: &[u8]) {
    use crate::core::addrs::AddrPolicy;
    use crate::core::dialer::{Dialer, Limits};
    use std::collections::HashMap;

    let me = Mac([2, 0x50, 0x56, 0, 0, 1]);
    let own: SocketAddr = ([198, 18, 0, 1], 41744).into();
    let policy = AddrPolicy::new(&[own], false);
    let mut limits = Limits { total: 24, per_link: 8 };
    let mut d = Dialer::new(me, 6, limits, policy.clone(), 1);
    // MACs 0..64: 1 is this node, odd first bytes are group addresses
    let mac = |b: u8| Mac([2 | (b >> 6 & 1), 0x50, 0x56, 0, 0, b % 64]);
    let addr = |b: u8| -> SocketAddr {
        match b % 16 {
            0 => ([127, 0, 0, 1], 41744).into(),
            1 => ([224, 0, 0, 1], 41744).into(),
            2 => ([0, 0, 0, 0], 41744).into(),
            3 => ([169, 254, 0, 1], 41744).into(),
            4 => ([198, 18, 0, 9], 0).into(),
            5 => own,
            6 => (std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 41744).into(),
            7 => ([255, 255, 255, 255], 41744).into(),
            n => ([198, 18, 0, 2 + n], 41744).into(),
        }
    };
    let mut seeds: HashMap<Mac, SocketAddr> = HashMap::new();
    let mut dialing: Vec<(Mac, SocketAddr)> = Vec::new();
    let mut linked: Vec<Mac> = Vec::new();
    let mut now = 0u64;
    for pair in data.chunks_exact(2) {
        let (op, arg) = (pair[0], pair[1]);
        match op % 10 {
            0..=2 => {
                let via = Mac([2, 0xee, 0, 0, 0, op >> 4 & 3]);
                d.learn(mac(arg), addr(arg.rotate_left(3) ^ op), via, now);
            }
            3 => {
                for dial in d.poll(now, linked.len()) {
                    let seeded = seeds.get(&dial.mac) == Some(&dial.addr);
                    assert!(
                        seeded || policy.check(dial.addr).is_ok(),
                        "dialled {}@{}, which the address rule refuses",
                        dial.mac,
                        dial.addr
                    );
                    assert!(!dialing.iter().any(|(m, a)| *m == dial.mac || *a == dial.addr));
                    assert!(!linked.contains(&dial.mac));
                    assert_ne!(dial.mac, me, "dialled itself");
                    dialing.push((dial.mac, dial.addr));
                }
                assert!(dialing.len() + linked.len() <= 6 || dialing.is_empty());
            }
            4 | 5 if !dialing.is_empty() => {
                let (m, _) = dialing.swap_remove(usize::from(arg) % dialing.len());
                if op % 10 == 4 {
                    d.failed(m, now);
                } else {
                    d.linked(m, Some(addr(arg)).filter(|a| policy.check(*a).is_ok()));
                    linked.push(m);
                }
            }
            6 if !linked.is_empty() => {
                let m = linked.swap_remove(usize::from(arg) % linked.len());
                d.unlinked(m, now);
            }
            7 => {
                now += u64::from(arg) * 60_000;
                d.prune(now);
            }
            8 => {
                if arg & 1 == 0 {
                    d.forget(mac(arg >> 1));
                } else {
                    let m = mac(arg >> 1);
                    if let Some(i) = dialing.iter().position(|(x, _)| *x == m) {
                        dialing.swap_remove(i);
                        d.is_self(m);
                    } else if !linked.contains(&m) {
                        d.is_self(m);
                    }
                }
            }
            9 => {
                if arg & 1 == 0 {
                    let list: Vec<(Mac, SocketAddr)> =
                        (0..arg % 4).map(|i| (mac(arg.wrapping_add(i * 7)), addr(i))).collect();
                    seeds = list.iter().copied().filter(|(m, _)| m.is_node_address()).collect();
                    d.set_seeds(&list);
                } else {
                    limits =
                        Limits { total: usize::from(arg % 32), per_link: usize::from(arg % 9) };
                    d.set_limits(limits);
                }
            }
            _ => {}
        }
        if let Err(e) = d.audit() {
            panic!("dialer bookkeeping: {e}");
        }
        let s = d.stats();
        assert!(s.hearsay <= limits.total, "{s:?} beyond {limits:?}");
        assert!(s.hearsay_largest_share <= limits.per_link, "{s:?} beyond {limits:?}");
    }
}

/// An offload header and frame from arbitrary bytes: checking, completing
/// the checksum and segmenting must never read outside the frame, and the
/// segments must carry exactly the payload.
pub fn offload_input(data: &[u8]) {
    let Some(h) = data.get(..offload::VNET_HDR_LEN) else { return };
    let mut hb = [0u8; offload::VNET_HDR_LEN];
    hb.copy_from_slice(h);
    let hdr = VnetHdr::from_wire(&hb);
    let frame = &data[offload::VNET_HDR_LEN..];
    let ok = offload::check(&hdr, frame).is_ok();
    let mut f = frame.to_vec();
    let _ = offload::complete_checksum(&hdr, &mut f);
    let mut total = 0usize;
    let mut count = 0usize;
    let r = offload::segment(&hdr, frame, |s| {
        total += s.len();
        count += 1;
        assert!(s.len() <= frame.len(), "a segment longer than the frame");
    });
    if let Ok(n) = r {
        assert!(ok, "segmented a frame that check() refuses");
        assert_eq!(n, count);
        assert!(count <= frame.len().max(1));
    }
}

/// Text inputs: configuration files, cache files, control requests, MACs
/// and seeds: errors, never panics. The first line is also tried as the
/// value of every configuration key in an otherwise valid file, so that
/// every value parser sees arbitrary text without the fuzzer having to
/// find a valid file first.
pub fn text_inputs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = std::path::Path::new("/fuzz/invpn.conf");
    // the configuration is read as bytes (as Qt did): the raw input too
    let _ = crate::config::from_bytes(path, data);
    let _ = crate::config::from_str(path, &text);
    let value = text.lines().next().unwrap_or("");
    for k in crate::config::KEYS {
        let _ = crate::config::from_str(path, &config_around(k.section, k.name, value));
    }
    let parsed = crate::core::cache::NodeCache::parse(&text);
    let again = crate::core::cache::NodeCache::parse(&parsed.cache.to_text());
    assert!(again.skipped.is_empty(), "the cache writes what it cannot read");
    assert_eq!(again.cache.len(), parsed.cache.len());
    let _ = crate::control::parse_request(&text);
    let _ = text.parse::<Mac>();
    let _ = crate::config::parse_seed(&text, 41744);
}

/// A valid configuration whose `[section] key` is `value`.
fn config_around(section: &str, key: &str, value: &str) -> String {
    let mut conf = String::from("[ssl]\n");
    for k in ["key", "cert", "ca"] {
        if !(section == "ssl" && key == k) {
            conf.push_str(&format!("{k}=/fuzz/{k}\n"));
        }
    }
    conf.push_str(&format!("[{section}]\n{key}={value}\n"));
    conf
}

#[cfg(test)]
mod tests {
    /// The files text_inputs builds around a value are valid, so a value
    /// parser is what decides.
    #[test]
    fn the_file_around_a_fuzzed_value_is_valid() {
        let path = std::path::Path::new("/fuzz/invpn.conf");
        let ok = |section: &str, key: &str, value: &str| {
            crate::config::from_str(path, &super::config_around(section, key, value)).is_ok()
        };
        assert!(ok("ssl", "ca", "/fuzz/ca"));
        assert!(ok("network", "announce_interval", "5s"));
        assert!(!ok("network", "announce_interval", "5 parsecs"));
        assert!(ok("interface", "mtu", "1500"));
        assert!(!ok("interface", "mtu", "70000"));
    }
}
