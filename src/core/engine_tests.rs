//! Engine tests: every rule of PROTOCOL.md §4-6 on literal messages, with a
//! recording output and no I/O.

use super::*;
use crate::core::offload::{self, VnetHdr};
use crate::core::wire::{encode_broadcast, encode_unicast, FRAME_HEADROOM};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Act {
    Send(LinkId, Vec<u8>),
    Flood(Option<LinkId>, Vec<u8>, bool),
    /// The links the next flood skips (pruned), when there are any.
    Skip(Vec<LinkId>),
    Deliver(Vec<u8>),
    DeliverOffloaded(VnetHdr, Vec<u8>),
    Caps(LinkId, u32),
    Event(Event),
}

#[derive(Default)]
pub(crate) struct Rec(pub Vec<Act>);

impl Output for Rec {
    fn send(&mut self, link: LinkId, msg: &[u8]) {
        self.0.push(Act::Send(link, msg.to_vec()));
    }
    fn flood(&mut self, to: &Fanout, msg: &[u8]) {
        if !to.skip.is_empty() {
            let mut skip = to.skip.clone();
            skip.sort();
            self.0.push(Act::Skip(skip));
        }
        self.0.push(Act::Flood(to.except, msg.to_vec(), to.ext_only));
    }
    fn deliver(&mut self, frame: &[u8]) {
        self.0.push(Act::Deliver(frame.to_vec()));
    }
    fn event(&mut self, ev: Event) {
        self.0.push(Act::Event(ev));
    }
    fn deliver_offloaded(&mut self, hdr: &VnetHdr, frame: &[u8]) {
        self.0.push(Act::DeliverOffloaded(*hdr, frame.to_vec()));
    }
    fn capabilities(&mut self, link: LinkId, hello: &wire::Hello) {
        self.0.push(Act::Caps(link, hello.flags));
    }
}

fn m(n: u8) -> Mac {
    Mac([2, 0x50, 0x56, 0, 0, n])
}

const NOW: Now = Now { mono: 1_000, unix_ms: 1_700_000_000_000 };

fn engine(me: u8) -> Engine {
    Engine::new(EngineConfig {
        me: m(me),
        port: 41744,
        listening: true,
        relay: true,
        max_clock_skew: 60_000,
        route_ttl: 300_000,
        announce_interval: 5_000,
        max_routes: 1000,
        routes_per_link: 1000,
        broadcast_rate: 0,
    })
}

fn link(id: u64, peer: u8, ext: bool) -> LinkCtx {
    LinkCtx {
        id: LinkId(id),
        peer: m(peer),
        addr: format!("198.18.0.{peer}:5555").parse().unwrap(),
        ext,
    }
}

/// An id `k` ms after the test's clock (ids are wall-clock milliseconds;
/// ones far in the past are refused as replays).
fn t(k: u64) -> u64 {
    NOW.unix_ms + k
}

/// A direct announce with id `t(k)`.
fn direct(mac: Mac, k: u64) -> Vec<u8> {
    let mut v = Vec::new();
    wire::encode_direct_announce(
        &mut v,
        &DirectAnnounce { version: 1, id: t(k), mac, port: 41744 },
    );
    v
}

/// An announce with id `t(k)`.
fn announce(mac: Mac, k: u64, addr: AnnouncedAddr) -> Vec<u8> {
    announce_at(mac, t(k), addr)
}

/// An announce with the id `id`.
fn announce_at(mac: Mac, id: u64, addr: AnnouncedAddr) -> Vec<u8> {
    let mut v = Vec::new();
    wire::encode_announce(&mut v, &Announce { version: 1, id, mac, port: 41744, addr });
    v
}

fn frame(dst: Mac, src: Mac, len: usize) -> Vec<u8> {
    let mut f = dst.0.to_vec();
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(len, 0xab);
    f
}

fn run(e: &Engine, l: &LinkCtx, msg: &[u8]) -> (Verdict, Vec<Act>) {
    let mut rec = Rec::default();
    let mut raw = msg.to_vec();
    let v = e.handle_message(l, &mut raw, NOW, &mut rec);
    (v, rec.0)
}

/// Brings up links to the given peers and returns their contexts.
fn linked(e: &Engine, peers: &[(u64, u8, bool)]) -> Vec<LinkCtx> {
    peers
        .iter()
        .map(|&(id, p, ext)| {
            let l = link(id, p, ext);
            e.link_up(&l, NOW);
            l
        })
        .collect()
}

#[test]
fn own_announcement_is_direct_or_addressless() {
    let e = engine(1);
    let a = e.announcement(NOW);
    let Ok(Message::DirectAnnounce(d)) = wire::parse(&a[2..]) else { panic!() };
    assert_eq!((d.mac, d.port, d.version, d.id), (m(1), 41744, 1, NOW.unix_ms));
    let b = e.announcement(NOW);
    let Ok(Message::DirectAnnounce(d2)) = wire::parse(&b[2..]) else { panic!() };
    assert_eq!(d2.id, d.id + 1, "ids strictly increase");

    let quiet = Engine::new(EngineConfig { listening: false, ..e.config().clone() });
    let a = quiet.announcement(NOW);
    let Ok(Message::Announce(x)) = wire::parse(&a[2..]) else { panic!() };
    assert_eq!(x.addr, AnnouncedAddr::None);
}

#[test]
fn direct_announce_becomes_announce_with_seen_address() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false), (11, 3, false)]);
    let (v, acts) = run(&e, &ls[0], &direct(m(2), 500));
    assert_eq!(v, Verdict::Done);
    let want = announce(m(2), 500, AnnouncedAddr::V4("198.18.0.2".parse().unwrap()));
    assert_eq!(
        acts,
        vec![
            Act::Event(Event::Learned {
                mac: m(2),
                addr: "198.18.0.2:41744".parse().unwrap(),
                via: m(2)
            }),
            Act::Flood(Some(LinkId(10)), want, false),
        ]
    );
    assert_eq!(e.routes().get(&m(2)).unwrap().stamp, t(500));
}

#[test]
fn neighbour_may_only_announce_itself() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false)]);
    let (v, acts) = run(&e, &ls[0], &direct(m(7), 500));
    assert_eq!(v, Verdict::Dropped(DropReason::Impersonation));
    assert!(acts.is_empty());
    assert!(!e.routes().contains(&m(7)));
}

#[test]
fn announcement_flood_ends_at_seen_ids() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false), (11, 3, false)]);
    let msg = announce(m(9), 77, AnnouncedAddr::V4("198.18.0.9".parse().unwrap()));
    let (_, first) = run(&e, &ls[0], &msg);
    assert_eq!(first.len(), 2, "learned + relayed: {first:?}");
    assert_eq!(first[1], Act::Flood(Some(LinkId(10)), msg.clone(), false));
    // the copy arriving over the other path is dropped silently
    let (v, again) = run(&e, &ls[1], &msg);
    assert_eq!((v, again.len()), (Verdict::Done, 0));
    assert_eq!(e.routes().next_hop(&m(9)), Some(LinkId(10)));
    // a newer announcement arriving first on the other link moves the route,
    // with no cache event since the address is the same
    let newer = announce(m(9), 78, AnnouncedAddr::V4("198.18.0.9".parse().unwrap()));
    let (_, acts) = run(&e, &ls[1], &newer);
    assert_eq!(acts, vec![Act::Flood(Some(LinkId(11)), newer, false)]);
    assert_eq!(e.routes().next_hop(&m(9)), Some(LinkId(11)));
}

#[test]
fn own_and_future_announcements_dropped() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false)]);
    let own = announce(m(1), 5, AnnouncedAddr::None);
    assert_eq!(run(&e, &ls[0], &own).0, Verdict::Dropped(DropReason::Own));
    // a replay of an announcement older than the skew and any transit
    let stale = announce_at(m(9), NOW.unix_ms - 60_000 - MAX_TRANSIT - 1, AnnouncedAddr::None);
    assert_eq!(run(&e, &ls[0], &stale).0, Verdict::Dropped(DropReason::StaleId));
    let future = announce_at(m(9), NOW.unix_ms + 61_000, AnnouncedAddr::None);
    assert_eq!(run(&e, &ls[0], &future).0, Verdict::Dropped(DropReason::FutureId));
    let near = announce_at(m(9), NOW.unix_ms + 59_000, AnnouncedAddr::None);
    assert_eq!(run(&e, &ls[0], &near).0, Verdict::Done);
}

#[test]
fn addressless_announce_forgets_and_no_relay_stays_quiet() {
    let e = Engine::new(EngineConfig { relay: false, ..engine(1).config().clone() });
    let ls = linked(&e, &[(10, 2, false), (11, 3, false)]);
    let (_, acts) = run(&e, &ls[0], &announce(m(9), 1, AnnouncedAddr::None));
    assert_eq!(acts, vec![Act::Event(Event::Forgot { mac: m(9) })]);
    assert!(e.routes().contains(&m(9)));
}

#[test]
fn unicast_delivered_forwarded_or_dropped() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false), (11, 3, false)]);
    let to_me = frame(m(1), m(3), 60);
    let mut msg = Vec::new();
    encode_unicast(&mut msg, &to_me);
    assert_eq!(run(&e, &ls[1], &msg), (Verdict::Done, vec![Act::Deliver(to_me)]));

    // to a neighbour: forwarded unchanged on its link
    let mut fwd = Vec::new();
    encode_unicast(&mut fwd, &frame(m(2), m(3), 100));
    assert_eq!(run(&e, &ls[1], &fwd), (Verdict::Done, vec![Act::Send(LinkId(10), fwd.clone())]));
    // back where it came from: a loop
    assert_eq!(run(&e, &ls[0], &fwd).0, Verdict::Dropped(DropReason::Loop));
    // unknown destination
    let mut lost = Vec::new();
    encode_unicast(&mut lost, &frame(m(99), m(3), 100));
    assert_eq!(run(&e, &ls[1], &lost).0, Verdict::Dropped(DropReason::NoRoute));
    // claiming our own source
    let mut spoof = Vec::new();
    encode_unicast(&mut spoof, &frame(m(2), m(1), 100));
    assert_eq!(run(&e, &ls[1], &spoof).0, Verdict::Dropped(DropReason::OwnSource));
    assert_eq!(e.stats().drops(DropReason::NoRoute), 1);
}

#[test]
fn a_twin_is_handled_as_the_unicast_it_carries() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, true), (11, 3, true)]);
    let twin = |f: &[u8]| {
        let (mut plain, mut t) = (Vec::new(), Vec::new());
        encode_unicast(&mut plain, f);
        assert!(wire::encode_twin(&mut t, 41, &plain));
        (plain, t)
    };
    let to_me = frame(m(1), m(3), 60);
    let (_, t) = twin(&to_me);
    assert_eq!(run(&e, &ls[1], &t), (Verdict::Done, vec![Act::Deliver(to_me)]));
    // relayed as a plain 0x80: the sequence number is the link's
    let (plain, t) = twin(&frame(m(2), m(3), 100));
    assert_eq!(run(&e, &ls[1], &t), (Verdict::Done, vec![Act::Send(LinkId(10), plain)]));
    let (_, t) = twin(&frame(m(2), m(1), 100));
    assert_eq!(run(&e, &ls[1], &t).0, Verdict::Dropped(DropReason::OwnSource));
    assert_eq!(e.stats().get(Counter::TwinsIn), 3);
}

#[test]
fn broadcast_flooded_delivered_once_even_out_of_order() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false), (11, 3, false)]);
    let f = frame(Mac([0x33, 0x33, 0, 0, 0, 1]), m(2), 80);
    let mk = |id| {
        let mut v = Vec::new();
        encode_broadcast(&mut v, id, &f);
        v
    };
    let mut delivered = f.clone();
    delivered[..6].copy_from_slice(&[0xff; 6]);
    // newer first, then older: both delivered once
    for id in [NOW.unix_ms + 2, NOW.unix_ms + 1] {
        let (v, acts) = run(&e, &ls[0], &mk(id));
        assert_eq!(v, Verdict::Done);
        assert_eq!(
            acts,
            vec![Act::Flood(Some(LinkId(10)), mk(id), false), Act::Deliver(delivered.clone())]
        );
    }
    for id in [NOW.unix_ms + 2, NOW.unix_ms + 1] {
        assert_eq!(run(&e, &ls[0], &mk(id)).0, Verdict::Dropped(DropReason::Duplicate));
        // copies off the path from the source are dropped before that
        assert_eq!(run(&e, &ls[1], &mk(id)).0, Verdict::Dropped(DropReason::OffPath));
    }
}

#[test]
fn broadcast_from_unknown_or_own_source_dropped() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false)]);
    let mut unknown = Vec::new();
    encode_broadcast(&mut unknown, 5, &frame(Mac::BROADCAST, m(42), 60));
    assert_eq!(run(&e, &ls[0], &unknown).0, Verdict::Dropped(DropReason::UnknownSource));
    let mut own = Vec::new();
    encode_broadcast(&mut own, 5, &frame(Mac::BROADCAST, m(1), 60));
    assert_eq!(run(&e, &ls[0], &own).0, Verdict::Dropped(DropReason::Own));
    let mut future = Vec::new();
    encode_broadcast(&mut future, NOW.unix_ms + 120_000, &frame(Mac::BROADCAST, m(2), 60));
    assert_eq!(run(&e, &ls[0], &future).0, Verdict::Dropped(DropReason::FutureId));
}

#[test]
fn malformed_and_unknown_messages() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false)]);
    let (v, acts) = run(&e, &ls[0], &[0, 0]);
    assert_eq!(v, Verdict::Malformed(WireError::Empty));
    assert!(acts.is_empty());
    let (v, _) = run(&e, &ls[0], &[0, 3, 0x80, 1, 2]);
    assert!(matches!(v, Verdict::Malformed(WireError::Truncated { .. })));
    assert_eq!(run(&e, &ls[0], &[0, 2, 0x55, 9]), (Verdict::Done, vec![]));
    assert_eq!(e.stats().drops(DropReason::Malformed), 2);
    assert_eq!(e.stats().get(Counter::UnknownTypes), 1);
}

#[test]
fn link_down_removes_routes_through_it() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false), (11, 3, false)]);
    run(&e, &ls[0], &announce(m(9), 1, AnnouncedAddr::None));
    run(&e, &ls[1], &announce(m(8), 1, AnnouncedAddr::None));
    assert_eq!(e.routes().len(), 4);
    assert_eq!(e.link_down(LinkId(10), NOW, &mut Rec::default()), 2);
    assert!(!e.routes().contains(&m(9)) && !e.routes().contains(&m(2)));
    assert_eq!(e.neighbours(), vec![(LinkId(11), m(3))]);
}

#[test]
fn routes_expire_on_tick() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false)]);
    run(&e, &ls[0], &announce(m(9), 1, AnnouncedAddr::None));
    e.tick(Now { mono: NOW.mono + 300_001, ..NOW }, &mut Rec::default());
    assert!(e.routes().is_empty());
}

#[test]
fn tap_frames_classified_and_built_in_place() {
    let e = engine(1);
    linked(&e, &[(10, 2, false)]);
    let mut buf = vec![0u8; 2048];
    let put = |buf: &mut Vec<u8>, f: &[u8]| {
        buf[FRAME_HEADROOM..FRAME_HEADROOM + f.len()].copy_from_slice(f)
    };

    let uni = frame(m(2), m(1), 100);
    put(&mut buf, &uni);
    let TapAction::Unicast { link, msg, .. } = e.tap_frame(&mut buf, uni.len(), NOW) else {
        panic!()
    };
    assert_eq!(link, LinkId(10));
    let mut want = Vec::new();
    encode_unicast(&mut want, &uni);
    assert_eq!(&buf[msg], &want[..]);

    // IPv6 multicast (neighbour discovery) is flooded like broadcast
    let mc = frame(Mac([0x33, 0x33, 0xff, 0, 0, 2]), m(1), 86);
    put(&mut buf, &mc);
    let TapAction::Flood { msg } = e.tap_frame(&mut buf, mc.len(), NOW) else { panic!() };
    let Ok(Message::Broadcast(b)) = wire::parse(&buf[msg.start + 2..msg.end]) else { panic!() };
    assert_eq!((b.src, b.payload), (m(1), &mc[12..]));
    assert_eq!(b.id, NOW.unix_ms);
    // a storm borrows at most LOCAL_ID_LEAD_MS of ids from the future,
    // then is dropped until the clock catches up
    let mut flooded = 1;
    for _ in 0..2 * LOCAL_ID_LEAD_MS {
        put(&mut buf, &mc);
        match e.tap_frame(&mut buf, mc.len(), NOW) {
            TapAction::Flood { .. } => flooded += 1,
            a => assert_eq!(a, TapAction::Drop(DropReason::BroadcastRate)),
        }
    }
    assert_eq!(flooded, LOCAL_ID_LEAD_MS + 1);
    let later = Now { mono: NOW.mono + 5, unix_ms: NOW.unix_ms + 5 };
    put(&mut buf, &mc);
    assert!(matches!(e.tap_frame(&mut buf, mc.len(), later), TapAction::Flood { .. }));

    let foreign = frame(m(2), m(7), 60);
    put(&mut buf, &foreign);
    assert_eq!(e.tap_frame(&mut buf, 60, NOW), TapAction::Drop(DropReason::ForeignSource));
    let nowhere = frame(m(50), m(1), 60);
    put(&mut buf, &nowhere);
    assert_eq!(e.tap_frame(&mut buf, 60, NOW), TapAction::Drop(DropReason::NoRoute));
    assert_eq!(e.tap_frame(&mut buf, 13, NOW), TapAction::Drop(DropReason::BadFrame));
}

#[test]
fn health_request_forwarded_to_invpnd_links_and_answered() {
    let e = engine(2);
    // link 10 to the origin (1), 11 to an invpnd node, 12 to a 0.4 node
    let ls = linked(&e, &[(10, 1, true), (11, 3, true), (12, 4, false)]);
    let mut req = Vec::new();
    wire::encode_health_request(&mut req, 1, NOW.unix_ms, m(1), &[]);
    let (v, acts) = run(&e, &ls[0], &req);
    assert_eq!(v, Verdict::Done);
    let mut fwd = Vec::new();
    wire::encode_health_request(&mut fwd, 1, NOW.unix_ms, m(1), &m(2).0);
    assert_eq!(acts[0], Act::Flood(Some(LinkId(10)), fwd, true));
    let Act::Send(to, resp) = &acts[1] else { panic!("{acts:?}") };
    assert_eq!(*to, LinkId(10));
    let Ok(Message::HealthResponse(r)) = wire::parse(&resp[2..]) else { panic!() };
    assert_eq!((r.dst, r.responder, r.request_id), (m(1), m(2), NOW.unix_ms));
    assert_eq!(r.links.iter().collect::<Vec<_>>(), vec![m(1), m(3), m(4)]);
    assert_eq!(r.reverse.iter().collect::<Vec<_>>(), vec![m(2)]);
    assert_eq!(r.routes.len(), 3);
    // the same request again: dropped
    assert_eq!(run(&e, &ls[0], &req).0, Verdict::Dropped(DropReason::Duplicate));
    // a copy from a link the route to the origin does not use
    assert_eq!(run(&e, &ls[1], &req), (Verdict::Dropped(DropReason::OffPath), vec![]));
    // 0.4 never sends one: refused on its links
    let mut req2 = Vec::new();
    wire::encode_health_request(&mut req2, 1, NOW.unix_ms + 1, m(1), &[]);
    assert_eq!(run(&e, &ls[2], &req2), (Verdict::Dropped(DropReason::WrongLink), vec![]));
    // an origin nobody announced gets no answer (no amplification)
    let mut ghost = Vec::new();
    wire::encode_health_request(&mut ghost, 1, NOW.unix_ms, m(77), &[]);
    assert_eq!(run(&e, &ls[1], &ghost), (Verdict::Dropped(DropReason::UnknownSource), vec![]));
}

#[test]
fn health_answers_are_limited_across_origins() {
    let e = engine(2);
    let peers: Vec<(u64, u8, bool)> = (0..60).map(|i| (100 + i, 100 + i as u8, true)).collect();
    let ls = linked(&e, &peers);
    let mut answered = 0;
    for l in &ls {
        let mut req = Vec::new();
        wire::encode_health_request(&mut req, 1, NOW.unix_ms, l.peer, &[]);
        match run(&e, l, &req) {
            (Verdict::Done, _) => answered += 1,
            (v, acts) => {
                assert_eq!(v, Verdict::Dropped(DropReason::HealthRate));
                assert!(acts.iter().all(|a| matches!(a, Act::Flood(..))), "{acts:?}");
            }
        }
    }
    assert_eq!(answered, ANSWER_RATE.burst as usize);
}

#[test]
fn health_response_forwarded_with_reverse_hop_or_reported() {
    let e = engine(2);
    let ls = linked(&e, &[(10, 1, true), (11, 3, true)]);
    let rep = HealthReport {
        dst: m(1),
        responder: m(3),
        request_id: 9,
        reverse: vec![m(3)],
        ..Default::default()
    };
    let mut resp = Vec::new();
    wire::encode_health_response(&mut resp, 1, &rep);
    let (_, acts) = run(&e, &ls[1], &resp);
    let mut want = Vec::new();
    wire::encode_health_response(
        &mut want,
        1,
        &HealthReport { reverse: vec![m(3), m(2)], ..rep.clone() },
    );
    assert_eq!(acts, vec![Act::Send(LinkId(10), want)]);

    // a response that would go back where it came from is a loop
    assert_eq!(run(&e, &ls[0], &resp), (Verdict::Dropped(DropReason::Loop), vec![]));

    // responses for us only while a trace of ours waits for them
    let later = Now { mono: NOW.mono + 1, unix_ms: NOW.unix_ms + 1 };
    let mine = HealthReport { dst: m(2), request_id: later.unix_ms, ..rep };
    let mut resp = Vec::new();
    wire::encode_health_response(&mut resp, 1, &mine);
    assert_eq!(run(&e, &ls[1], &resp), (Verdict::Dropped(DropReason::Unsolicited), vec![]));
    let (id, _req) = e.health_request(later, 2_000);
    assert_eq!(id, mine.request_id);
    assert_eq!(run(&e, &ls[1], &resp).1, vec![Act::Event(Event::Health(mine.clone()))]);
    let other = HealthReport { request_id: id + 1, ..mine };
    let mut resp2 = Vec::new();
    wire::encode_health_response(&mut resp2, 1, &other);
    assert_eq!(run(&e, &ls[1], &resp2).0, Verdict::Dropped(DropReason::Unsolicited));
    let late = Now { mono: NOW.mono + 2_002, ..NOW };
    let mut raw = resp.clone();
    let v = e.handle_message(&ls[1], &mut raw, late, &mut Rec::default());
    assert_eq!(v, Verdict::Dropped(DropReason::Unsolicited));
}

#[test]
fn losing_a_link_moves_routes_to_the_second_path_at_once() {
    let e = engine(1);
    // two invpnd neighbours both relay node 9's announcement
    let ls = linked(&e, &[(10, 2, true), (11, 3, true)]);
    let msg = announce(m(9), 5, AnnouncedAddr::None);
    run(&e, &ls[0], &msg);
    run(&e, &ls[1], &msg);
    assert_eq!(
        e.link_down(LinkId(10), NOW, &mut Rec::default()),
        1,
        "only the neighbour's own route goes"
    );
    assert_eq!(e.routes().next_hop(&m(9)), Some(LinkId(11)));
    // frames for node 9 now leave on the second link
    let mut buf = vec![0u8; 200];
    let f = frame(m(9), m(1), 60);
    buf[FRAME_HEADROOM..FRAME_HEADROOM + 60].copy_from_slice(&f);
    assert!(matches!(e.tap_frame(&mut buf, 60, NOW), TapAction::Unicast { link: LinkId(11), .. }));
}

#[test]
fn closing_a_duplicate_link_keeps_the_neighbour_reached() {
    let e = engine(1);
    // nodes 1 and 2 dialled each other: two links to node 2, and node 2
    // routes node 9 through itself
    let ls = linked(&e, &[(10, 2, true), (11, 2, true)]);
    run(&e, &ls[0], &direct(m(2), 100));
    run(&e, &ls[0], &announce(m(9), 100, AnnouncedAddr::None));
    assert_eq!(e.routes().next_hop(&m(2)), Some(LinkId(10)));
    // the first link loses the tie-break and is closed
    e.link_down(LinkId(10), NOW, &mut Rec::default());
    assert_eq!(e.routes().next_hop(&m(2)), Some(LinkId(11)), "still reached, directly");
    assert_eq!(e.neighbours(), vec![(LinkId(11), m(2))]);
    // its announcements through the other link still count as direct:
    // a relayed copy does not capture the route
    let ls3 = linked(&e, &[(12, 3, true)]);
    let relayed = announce(m(2), 200, AnnouncedAddr::None);
    assert_eq!(run(&e, &ls3[0], &relayed).0, Verdict::Dropped(DropReason::IndirectNeighbour));
    // but it is the second path, taken when the last link goes
    assert_eq!(e.routes().get(&m(2)).unwrap().alt(), Some((LinkId(12), m(3))));
    e.link_down(LinkId(11), NOW, &mut Rec::default());
    assert_eq!(e.routes().next_hop(&m(2)), Some(LinkId(12)));
    e.link_down(LinkId(12), NOW, &mut Rec::default());
    assert_eq!(e.routes().next_hop(&m(2)), None);
    let ls3 = linked(&e, &[(12, 3, true)]);
    assert_eq!(run(&e, &ls3[0], &announce(m(2), 300, AnnouncedAddr::None)).0, Verdict::Done);
    assert_eq!(e.routes().next_hop(&m(2)), Some(LinkId(12)));
}

#[test]
fn linking_to_a_node_reached_through_another_routes_it_directly() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 3, true)]);
    run(&e, &ls[0], &announce(m(2), 100, AnnouncedAddr::None));
    assert_eq!(e.routes().next_hop(&m(2)), Some(LinkId(10)));
    linked(&e, &[(11, 2, true)]);
    assert_eq!(e.routes().next_hop(&m(2)), Some(LinkId(11)));
}

#[test]
fn a_neighbour_is_reached_through_its_own_link_while_it_is_alive() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, true), (11, 3, true)]);
    run(&e, &ls[0], &direct(m(2), 100));
    // node 3 relays a newer announcement of node 2 (forged, or just faster)
    let relayed = announce(m(2), 200, AnnouncedAddr::V4("198.18.0.66".parse().unwrap()));
    let (v, acts) = run(&e, &ls[1], &relayed);
    assert_eq!(v, Verdict::Dropped(DropReason::IndirectNeighbour));
    assert!(acts.is_empty(), "not relayed either");
    assert_eq!(e.routes().next_hop(&m(2)), Some(LinkId(10)));
    // the direct copy arrives and is relayed; the relayed copy of the same
    // announcement is then only the alternative
    let (_, acts) = run(&e, &ls[0], &direct(m(2), 200));
    assert_eq!(acts.len(), 1, "{acts:?}");
    assert_eq!(run(&e, &ls[1], &relayed).0, Verdict::Done);
    assert_eq!(e.routes().get(&m(2)).unwrap().alt(), Some((LinkId(11), m(3))));
    // once the direct link has been silent for two intervals, relays win
    let later = Now { mono: NOW.mono + 10_001, unix_ms: NOW.unix_ms + 10_001 };
    let mut rec = Rec::default();
    let mut raw = announce(m(2), 300, AnnouncedAddr::None);
    assert_eq!(e.handle_message(&ls[1], &mut raw, later, &mut rec), Verdict::Done);
    assert_eq!(e.routes().next_hop(&m(2)), Some(LinkId(11)));
}

/// A TCP/IPv4 super-frame from node 1 to node 2 and its offload header.
fn tcp_super_frame(payload: usize) -> (Vec<u8>, VnetHdr) {
    let mut f = m(2).0.to_vec();
    f.extend_from_slice(&m(1).0);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (40 + payload) as u16;
    f.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&[198, 19, 0, 1, 198, 19, 0, 2]);
    let mut tcp = vec![0u8; 20];
    tcp[12] = 5 << 4;
    tcp[13] = 0x18;
    f.extend_from_slice(&tcp);
    f.extend(std::iter::repeat_n(0x5a, payload));
    let h = VnetHdr {
        flags: offload::F_NEEDS_CSUM,
        gso_type: offload::GSO_TCPV4,
        hdr_len: 54,
        gso_size: 1448,
        csum_start: 34,
        csum_offset: 16,
    };
    (f, h)
}

#[test]
fn tap_super_frames_become_offloaded_messages() {
    let e = engine(1);
    linked(&e, &[(10, 2, true)]);
    let (f, h) = tcp_super_frame(20_000);
    let mut buf = vec![0u8; wire::VNET_FRAME_AT + f.len()];
    buf[wire::VNET_READ_AT..wire::VNET_FRAME_AT].copy_from_slice(&h.to_tap());
    buf[wire::VNET_FRAME_AT..].copy_from_slice(&f);
    let n = offload::VNET_HDR_LEN + f.len();
    let TapAction::Unicast { link, msg, .. } = e.tap_frame_vnet(&mut buf, n, NOW) else { panic!() };
    assert_eq!(link, LinkId(10));
    let Ok(Message::Offloaded(o)) = wire::parse(&buf[msg.start + 2..msg.end]) else { panic!() };
    assert_eq!((o.hdr, o.frame, o.dst), (h, &f[..], m(2)));

    // a small frame with a partial checksum: completed, sent as 0x80
    let (mut small, _) = tcp_super_frame(100);
    let ph = VnetHdr {
        flags: offload::F_NEEDS_CSUM,
        csum_start: 34,
        csum_offset: 16,
        ..Default::default()
    };
    let mut buf = vec![0u8; wire::VNET_FRAME_AT + small.len()];
    buf[wire::VNET_READ_AT..wire::VNET_FRAME_AT].copy_from_slice(&ph.to_tap());
    buf[wire::VNET_FRAME_AT..].copy_from_slice(&small);
    let n = offload::VNET_HDR_LEN + small.len();
    let TapAction::Unicast { msg, .. } = e.tap_frame_vnet(&mut buf, n, NOW) else { panic!() };
    offload::complete_checksum(&ph, &mut small).unwrap();
    let mut want = Vec::new();
    encode_unicast(&mut want, &small);
    assert_eq!(&buf[msg], &want[..]);
    // a header that lies about the frame is dropped
    let bad = VnetHdr { csum_start: 9000, ..ph };
    buf[wire::VNET_READ_AT..wire::VNET_FRAME_AT].copy_from_slice(&bad.to_tap());
    assert_eq!(e.tap_frame_vnet(&mut buf, n, NOW), TapAction::Drop(DropReason::BadFrame));
}

#[test]
fn offloaded_messages_are_delivered_or_forwarded_and_hellos_heard() {
    let e = engine(2);
    let ls = linked(&e, &[(10, 1, true), (11, 3, true), (12, 4, false)]);
    let (f, h) = tcp_super_frame(5_000);
    let mut msg = Vec::new();
    wire::encode_offloaded(&mut msg, &h, &f);
    assert_eq!(run(&e, &ls[0], &msg), (Verdict::Done, vec![Act::DeliverOffloaded(h, f.clone())]));
    // a peer cannot vouch for a checksum: "valid" is stripped on delivery
    let valid = VnetHdr { flags: offload::F_NEEDS_CSUM | offload::F_DATA_VALID, ..h };
    let mut vmsg = Vec::new();
    wire::encode_offloaded(&mut vmsg, &valid, &f);
    assert_eq!(run(&e, &ls[0], &vmsg).1, vec![Act::DeliverOffloaded(h, f.clone())]);
    // to node 3: forwarded as it is (the worker segments for links that
    // do not take it)
    let mut to3 = f.clone();
    to3[..6].copy_from_slice(&m(3).0);
    let mut msg3 = Vec::new();
    wire::encode_offloaded(&mut msg3, &h, &to3);
    assert_eq!(run(&e, &ls[0], &msg3), (Verdict::Done, vec![Act::Send(LinkId(11), msg3.clone())]));
    let mut hello = Vec::new();
    wire::encode_hello(&mut hello, wire::hello_flags::OFFLOADED);
    assert_eq!(run(&e, &ls[1], &hello).1, vec![Act::Caps(LinkId(11), 1)]);
    assert_eq!(run(&e, &ls[2], &hello).1, vec![], "0.4 links send no hello; ignored");
}

#[test]
fn default_offloaded_delivery_segments_in_software() {
    struct Plain(Vec<Vec<u8>>);
    impl Output for Plain {
        fn send(&mut self, _: LinkId, _: &[u8]) {}
        fn flood(&mut self, _: &Fanout, _: &[u8]) {}
        fn deliver(&mut self, frame: &[u8]) {
            self.0.push(frame.to_vec());
        }
        fn event(&mut self, _: Event) {}
    }
    let (f, h) = tcp_super_frame(4_000);
    let mut out = Plain(Vec::new());
    out.deliver_offloaded(&h, &f);
    assert_eq!(out.0.len(), 3);
    assert!(out.0.iter().all(|s| s.len() <= 14 + 40 + 1448));
}

#[test]
fn a_replayed_broadcast_is_never_delivered_again() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false)]);
    let mut b = Vec::new();
    encode_broadcast(&mut b, t(1), &frame(Mac::BROADCAST, m(2), 60));
    assert_eq!(run(&e, &ls[0], &b).1.len(), 2, "flooded and delivered");
    // long after: the source's de-duplication state has expired, but the
    // id is now too old to be accepted at all
    for dt in [30_000u64, 70_000, 200_000] {
        let later = Now { mono: NOW.mono + dt, unix_ms: NOW.unix_ms + dt };
        e.tick(later, &mut Rec::default());
        e.link_up(&ls[0], later);
        let mut rec = Rec::default();
        let mut raw = b.clone();
        let v = e.handle_message(&ls[0], &mut raw, later, &mut rec);
        assert!(rec.0.is_empty(), "replayed after {dt} ms: {v:?}");
    }
}

fn health_req(id: u64, origin: Mac) -> Vec<u8> {
    let mut v = Vec::new();
    wire::encode_health_request(&mut v, 1, id, origin, &[]);
    v
}

/// The bytes a run sent or flooded, all links together.
fn bytes_out(acts: &[Act]) -> usize {
    acts.iter()
        .map(|a| match a {
            Act::Send(_, m) | Act::Flood(_, m, _) => m.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn health_requests_naming_an_origin_off_the_path_are_neither_answered_nor_flooded() {
    // node 2: the victim (1) on link 10, the hostile node (3) on link 11,
    // and a route to node 9 through the hostile node
    let e = engine(2);
    let ls = linked(&e, &[(10, 1, true), (11, 3, true), (12, 4, true)]);
    run(&e, &ls[1], &announce(m(9), 1, AnnouncedAddr::None));
    // requests naming the victim, from the hostile node: nothing at all
    let mut sent = 0;
    let mut caused = 0;
    for i in 0..50 {
        let req = health_req(t(10 + i), m(1));
        sent += req.len();
        let (v, acts) = run(&e, &ls[1], &req);
        assert_eq!(v, Verdict::Dropped(DropReason::OffPath));
        caused += bytes_out(&acts);
    }
    assert!(caused <= sent, "{caused} bytes sent in answer to {sent}");
    assert_eq!(caused, 0);
    assert_eq!(e.stats().drops(DropReason::OffPath), 50);
    assert_eq!(e.dedup_sources().1, 0, "no de-duplication state for forged origins");
    // naming a node behind it is plausible: the answer goes back to it only
    let (v, acts) = run(&e, &ls[1], &health_req(t(100), m(9)));
    assert_eq!(v, Verdict::Done);
    assert!(acts.iter().all(|a| match a {
        Act::Send(l, _) => *l == LinkId(11),
        Act::Flood(except, _, _) => *except == Some(LinkId(11)),
        _ => false,
    }));
    // and the victim's own requests are still answered, to it
    let (v, acts) = run(&e, &ls[0], &health_req(t(200), m(1)));
    assert_eq!(v, Verdict::Done);
    assert!(matches!(acts.last(), Some(Act::Send(LinkId(10), _))), "{acts:?}");
}

#[test]
fn health_responses_a_link_carries_are_bounded_in_bytes() {
    let e = engine(2);
    let ls = linked(&e, &[(10, 1, true), (11, 3, true)]);
    // node 3 sends large responses for node 1 through us, as fast as it can
    let rep = HealthReport {
        dst: m(1),
        responder: m(3),
        request_id: 9,
        routes: (0..4000u32)
            .map(|i| {
                let b = i.to_be_bytes();
                (Mac([2, 0, b[0], b[1], b[2], b[3]]), m(3))
            })
            .collect(),
        reverse: vec![m(3)],
        ..Default::default()
    };
    let mut resp = Vec::new();
    wire::encode_health_response(&mut resp, 1, &rep);
    let mut forwarded = 0;
    for _ in 0..100 {
        match run(&e, &ls[1], &resp) {
            (Verdict::Done, acts) => forwarded += bytes_out(&acts),
            (v, acts) => {
                assert_eq!(v, Verdict::Dropped(DropReason::HealthBytes));
                assert!(acts.is_empty());
            }
        }
    }
    assert!(
        forwarded > 0 && forwarded as u64 <= u64::from(crate::core::health::ANSWER_BYTES.burst)
    );
    // the link's budget comes back with time; gone links are forgotten
    let later = Now { mono: NOW.mono + 1_000, ..NOW };
    let mut raw = resp.clone();
    assert_eq!(e.handle_message(&ls[1], &mut raw, later, &mut Rec::default()), Verdict::Done);
    e.link_down(LinkId(10), later, &mut Rec::default());
    assert!(e.answer_bytes.lock().is_empty());
}

#[test]
fn a_trace_takes_in_a_bounded_total_of_answers() {
    let e = engine(2);
    let ls = linked(&e, &[(10, 1, true)]);
    let (id, _) = e.health_request(NOW, 10_000);
    // forged answers with large lists, each from another "responder"
    let mut took = 0u64;
    for i in 0..500u32 {
        let b = i.to_be_bytes();
        let rep = HealthReport {
            dst: m(2),
            responder: Mac([2, 1, b[0], b[1], b[2], b[3]]),
            request_id: id,
            links: vec![m(1); 5000],
            reverse: vec![m(1)],
            ..Default::default()
        };
        let mut resp = Vec::new();
        wire::encode_health_response(&mut resp, 1, &rep);
        match run(&e, &ls[0], &resp).0 {
            Verdict::Done => took += resp.len() as u64,
            v => assert_eq!(v, Verdict::Dropped(DropReason::HealthBytes)),
        }
    }
    assert!(took > 0 && took <= crate::core::health::MAX_TRACE_BYTES, "{took}");
    assert!(e.stats().drops(DropReason::HealthBytes) > 0);
}

#[test]
fn a_forged_broadcast_id_off_the_path_suppresses_nothing() {
    // node 1: the source (2) on link 10, a hostile node (3) on link 11
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false), (11, 3, true)]);
    let bcast = |id| {
        let mut v = Vec::new();
        encode_broadcast(&mut v, id, &frame(Mac::BROADCAST, m(2), 60));
        v
    };
    // the hostile node sends node 2's broadcast with an id 59 s ahead
    let (v, acts) = run(&e, &ls[1], &bcast(t(59_000)));
    assert_eq!((v, acts), (Verdict::Dropped(DropReason::OffPath), vec![]));
    // node 2's own broadcasts are delivered as before
    for k in 1..20 {
        let (v, acts) = run(&e, &ls[0], &bcast(t(k)));
        assert_eq!(v, Verdict::Done);
        assert!(acts.iter().any(|a| matches!(a, Act::Deliver(_))));
    }
}

#[test]
fn a_window_pushed_ahead_on_the_path_recovers_within_a_second() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false)]);
    let bcast = |id| {
        let mut v = Vec::new();
        encode_broadcast(&mut v, id, &frame(Mac::BROADCAST, m(2), 60));
        v
    };
    // an id far ahead (node 2's clock stepped back, or it restarted)
    assert_eq!(run(&e, &ls[0], &bcast(t(50_000))).0, Verdict::Done);
    let mut delivered_at = None;
    for k in 0..40u64 {
        let now = Now { mono: NOW.mono + k * 100, unix_ms: NOW.unix_ms + k * 100 };
        let mut raw = bcast(now.unix_ms);
        if e.handle_message(&ls[0], &mut raw, now, &mut Rec::default()) == Verdict::Done {
            delivered_at = Some(k * 100);
            break;
        }
    }
    let at = delivered_at.expect("locked out for good");
    assert!(at <= crate::core::dedup::RECOVER_MS + 100, "locked out for {at} ms");
}

#[test]
fn a_backward_clock_step_neither_freezes_ids_nor_refuses_peers() {
    let e = engine(1);
    let ls = linked(&e, &[(10, 2, false)]);
    let mut buf = vec![0u8; 2048];
    let mc = frame(Mac::BROADCAST, m(1), 60);
    let mut bcast_id = |e: &Engine, now: Now| {
        buf[FRAME_HEADROOM..FRAME_HEADROOM + 60].copy_from_slice(&mc);
        match e.tap_frame(&mut buf, 60, now) {
            TapAction::Flood { msg } => match wire::parse(&buf[msg.start + 2..msg.end]) {
                Ok(Message::Broadcast(b)) => Some(b.id),
                _ => None,
            },
            _ => None,
        }
    };
    let before = bcast_id(&e, NOW).unwrap();
    // the wall clock steps back ten minutes; the monotonic clock goes on
    let mut last = before;
    for k in 1..=50u64 {
        let now = Now { mono: NOW.mono + k * 100, unix_ms: NOW.unix_ms - 600_000 + k * 100 };
        let id = bcast_id(&e, now).expect("our broadcasts frozen");
        assert!(id > last);
        last = id;
        // peers' ids (by a clock that did not step) are still taken
        let mut b = Vec::new();
        encode_broadcast(&mut b, NOW.unix_ms + k * 100, &frame(Mac::BROADCAST, m(2), 60));
        assert_eq!(run_at(&e, &ls[0], &b, now), Verdict::Done, "peer refused at {k}");
    }
    // after 5 s, our ids are within the skew of our peers' clocks
    assert!(NOW.unix_ms + 5_000 - last < e.config().max_clock_skew);
}

fn run_at(e: &Engine, l: &LinkCtx, msg: &[u8], now: Now) -> Verdict {
    let mut raw = msg.to_vec();
    e.handle_message(l, &mut raw, now, &mut Rec::default())
}

/// Links to invpnd peers whose hellos say they honour prunes (or not).
fn tree_linked(e: &Engine, peers: &[(u64, u8)], tree: bool) -> Vec<LinkCtx> {
    let ls = linked(e, &peers.iter().map(|&(id, p)| (id, p, true)).collect::<Vec<_>>());
    let mut hello = Vec::new();
    wire::encode_hello(&mut hello, if tree { wire::hello_flags::TREE } else { 0 });
    for l in &ls {
        run(e, l, &hello);
    }
    ls
}

fn prune_msg(prune: &[Mac], graft: &[Mac]) -> Vec<u8> {
    let mut v = Vec::new();
    wire::encode_prunes(&mut v, prune, graft);
    assert_eq!(v.len(), 1);
    v.pop().unwrap()
}

#[test]
fn a_copy_neither_the_route_nor_its_second_path_needs_is_pruned() {
    let e = engine(1);
    let ls = tree_linked(&e, &[(10, 2), (11, 3), (12, 4)], true);
    let a = announce(m(9), 100, AnnouncedAddr::None);
    assert!(matches!(
        run(&e, &ls[0], &a).1.as_slice(),
        [Act::Event(Event::Forgot { .. }), Act::Flood(Some(LinkId(10)), _, false)]
    ));
    assert_eq!(run(&e, &ls[1], &a).1, vec![], "the second path");
    assert_eq!(run(&e, &ls[2], &a).1, vec![Act::Send(LinkId(12), prune_msg(&[m(9)], &[]))]);
    assert_eq!(e.stats().get(Counter::PrunesSent), 1);
    // a peer that does not honour prunes is never sent one
    let plain = tree_linked(&e, &[(13, 5)], false);
    assert_eq!(run(&e, &plain[0], &a).1, vec![]);
    // nor is a 0.4 neighbour, which would not know the message
    let old = linked(&e, &[(14, 6, false)]);
    assert_eq!(run(&e, &old[0], &a).1, vec![]);
}

#[test]
fn floods_skip_the_neighbours_that_pruned_their_source() {
    let e = engine(1);
    let ls = tree_linked(&e, &[(10, 2), (11, 3), (12, 4)], true);
    run(&e, &ls[0], &announce(m(9), 100, AnnouncedAddr::None));
    // node 4 prunes node 9 here, and an unknown node (kept nowhere)
    assert_eq!(run(&e, &ls[2], &prune_msg(&[m(9), m(77)], &[])), (Verdict::Done, vec![]));
    assert_eq!(e.stats().get(Counter::PrunesReceived), 2);
    assert!(e.routes().get(&m(77)).is_none());
    let (_, acts) = run(&e, &ls[0], &announce(m(9), 200, AnnouncedAddr::None));
    assert!(matches!(
        acts.as_slice(),
        [Act::Skip(s), Act::Flood(Some(LinkId(10)), _, false)] if s == &[LinkId(12)]
    ));
    // its broadcasts too
    let mut b = Vec::new();
    encode_broadcast(&mut b, t(300), &frame(Mac::BROADCAST, m(9), 60));
    let (_, acts) = run(&e, &ls[0], &b);
    assert!(
        matches!(&acts[..2], [Act::Skip(s), Act::Flood(Some(LinkId(10)), _, false)] if s == &[LinkId(12)])
    );
    // grafted: flooded to it again
    run(&e, &ls[2], &prune_msg(&[], &[m(9)]));
    let (_, acts) = run(&e, &ls[0], &announce(m(9), 400, AnnouncedAddr::None));
    assert!(matches!(acts.as_slice(), [Act::Flood(Some(LinkId(10)), _, false)]));
    // 0.4 neighbours cannot prune
    let old = linked(&e, &[(13, 5, false)]);
    assert_eq!(
        run(&e, &old[0], &prune_msg(&[m(9)], &[])).0,
        Verdict::Dropped(DropReason::WrongLink)
    );
}

#[test]
fn losing_a_link_grafts_the_sources_that_lost_a_path() {
    let e = engine(1);
    let ls = tree_linked(&e, &[(10, 2), (11, 3), (12, 4)], true);
    let a = announce(m(9), 100, AnnouncedAddr::None);
    for l in &ls {
        run(&e, l, &a);
    }
    let mut rec = Rec::default();
    // node 2's own route goes; node 9's moves to its second path
    assert_eq!(e.link_down(LinkId(10), NOW, &mut rec), 1);
    assert_eq!(rec.0, vec![Act::Send(LinkId(12), prune_msg(&[], &[m(9)]))]);
    assert_eq!(e.routes().next_hop(&m(9)), Some(LinkId(11)));
    assert_eq!(e.stats().get(Counter::GraftsSent), 1);
    // the slot is free again, for a new link that starts unpruned
    let n = tree_linked(&e, &[(20, 6)], true);
    run(&e, &ls[1], &announce(m(9), 200, AnnouncedAddr::None));
    assert_eq!(run(&e, &n[0], &announce(m(9), 200, AnnouncedAddr::None)).1, vec![]);
}

/// Links to invpnd peers that take route tables and answer route
/// requests (and honour prunes).
fn routes_linked(e: &Engine, peers: &[(u64, u8)]) -> (Vec<LinkCtx>, Vec<Act>) {
    let ls = linked(e, &peers.iter().map(|&(id, p)| (id, p, true)).collect::<Vec<_>>());
    let mut hello = Vec::new();
    wire::encode_hello(&mut hello, wire::hello_flags::TREE | wire::hello_flags::ROUTES);
    let acts = ls.iter().flat_map(|l| run(e, l, &hello).1).collect();
    (ls, acts)
}

fn sent_on(acts: &[Act], link: u64) -> Vec<Message<'_>> {
    acts.iter()
        .filter_map(|a| match a {
            Act::Send(l, m) if *l == LinkId(link) => Some(wire::parse_whole(m).unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_link_brings_the_route_table_which_is_taken_but_not_relayed() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2)]);
    run(&e, &ls[0], &direct(m(2), 100));
    run(&e, &ls[0], &announce(m(9), 100, AnnouncedAddr::V4("198.18.0.9".parse().unwrap())));
    // a neighbour that takes tables links: it gets node 9 and node 2
    let (_, acts) = routes_linked(&e, &[(11, 3)]);
    let [Message::Routes(r)] = sent_on(&acts, 11)[..] else { panic!("{acts:?}") };
    let got: Vec<(Mac, u64)> = r.iter().map(|a| (a.mac, a.id)).collect();
    assert_eq!(got, vec![(m(2), t(100)), (m(9), t(100))]);
    // what the other end makes of it: routes (and addresses), no flood
    let f = engine(3);
    let (fl, _) = routes_linked(&f, &[(20, 1), (21, 4)]);
    let mut table = Vec::new();
    let Act::Send(_, msg) =
        &acts.iter().find(|a| matches!(a, Act::Send(l, _) if *l == LinkId(11))).unwrap()
    else {
        unreachable!()
    };
    table.extend_from_slice(msg);
    let (v, got) = run(&f, &fl[0], &table);
    assert_eq!(v, Verdict::Done);
    assert!(got.iter().all(|a| !matches!(a, Act::Flood(..))), "{got:?}");
    assert!(got.contains(&Act::Event(Event::Learned {
        mac: m(9),
        addr: "198.18.0.9:41744".parse().unwrap(),
        via: m(1)
    })));
    assert_eq!(f.routes().next_hop(&m(9)), Some(LinkId(20)));
    // a 0.4 link never sends one
    let old = linked(&f, &[(22, 5, false)]);
    assert_eq!(run(&f, &old[0], &table).0, Verdict::Dropped(DropReason::WrongLink));
}

#[test]
fn routes_lost_with_a_link_are_asked_for_and_the_first_answer_taken() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3), (12, 4)]);
    run(&e, &ls[0], &announce(m(9), 100, AnnouncedAddr::None));
    let mut rec = Rec::default();
    e.link_down(LinkId(10), NOW, &mut rec);
    assert!(e.routes().get(&m(9)).is_none());
    for l in [11, 12] {
        let [Message::RouteRequest(q)] = sent_on(&rec.0, l)[..] else { panic!("{:?}", rec.0) };
        // node 2 too: the link went, node 2 may still be up
        let mut asked: Vec<Mac> = q.nodes.iter().collect();
        asked.sort();
        assert_eq!((q.lost, asked), (m(2), vec![m(2), m(9)]));
    }
    // node 4 answers first
    let mut answer = Vec::new();
    let a = Announce { version: 1, id: t(100), mac: m(9), port: 0, addr: AnnouncedAddr::None };
    let mut msgs = Vec::new();
    wire::encode_routes(&mut msgs, [a]);
    answer.extend_from_slice(&msgs[0]);
    run(&e, &ls[2], &answer);
    assert_eq!(e.routes().next_hop(&m(9)), Some(LinkId(12)));
    // node 3's answer, later, changes nothing
    run(&e, &ls[1], &answer);
    assert_eq!(e.routes().next_hop(&m(9)), Some(LinkId(12)));
}

#[test]
fn a_route_request_is_answered_with_routes_that_lead_elsewhere_and_passed_on() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3), (12, 4)]);
    run(&e, &ls[0], &announce(m(9), 100, AnnouncedAddr::None));
    run(&e, &ls[1], &announce(m(8), 100, AnnouncedAddr::None));
    run(&e, &ls[2], &announce(m(7), 100, AnnouncedAddr::None));
    // node 3 lost its routes to 7, 8 and 9 with its link to node 5
    let mut req = Vec::new();
    let mut msgs = Vec::new();
    wire::encode_route_requests(&mut msgs, m(5), &[m(7), m(8), m(9)]);
    req.extend_from_slice(&msgs[0]);
    let (_, acts) = run(&e, &ls[1], &req);
    // answered with 7 and 9; 8's route leads back through node 3
    let [Message::Routes(r)] = sent_on(&acts, 11)[..] else { panic!("{acts:?}") };
    assert_eq!(r.iter().map(|a| a.mac).collect::<Vec<_>>(), vec![m(7), m(9)]);
    // and 8 is asked for in turn, of everyone else
    for l in [10, 12] {
        let [Message::RouteRequest(q)] = sent_on(&acts, l)[..] else { panic!("{acts:?}") };
        assert_eq!((q.lost, q.nodes.iter().collect::<Vec<_>>()), (m(5), vec![m(8)]));
    }
    // until it is repaired, that route is no answer to anyone
    let (_, acts) = run(&e, &ls[0], &req);
    let [Message::Routes(r)] = sent_on(&acts, 10)[..] else { panic!("{acts:?}") };
    assert_eq!(r.iter().map(|a| a.mac).collect::<Vec<_>>(), vec![m(7)]);
    // a route through the lost node itself is no answer either
    let mut msgs = Vec::new();
    wire::encode_route_requests(&mut msgs, m(4), &[m(7)]);
    let (_, acts) = run(&e, &ls[0], &msgs[0]);
    assert!(sent_on(&acts, 10).is_empty(), "{acts:?}");
}

fn announce_request(hops: u8, macs: &[Mac]) -> Vec<u8> {
    let mut msgs = Vec::new();
    wire::encode_announce_requests(&mut msgs, hops, macs);
    msgs.pop().unwrap()
}

#[test]
fn a_repaired_route_is_no_answer_but_its_node_is_asked_to_announce_along_it() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3), (12, 4)]);
    run(&e, &ls[2], &announce(m(9), 100, AnnouncedAddr::None));
    // node 4 lost its route to 9: ours, through node 4, is being repaired
    let mut msgs = Vec::new();
    wire::encode_route_requests(&mut msgs, m(5), &[m(9)]);
    let (_, acts) = run(&e, &ls[2], &msgs[0]);
    assert!(sent_on(&acts, 12).is_empty(), "{acts:?}");
    // node 3 lost its own: no answer, but node 9 is asked along our route
    let at = |k: u64, l: &LinkCtx| {
        let mut rec = Rec::default();
        let mut raw = msgs[0].clone();
        e.handle_message(l, &mut raw, Now { mono: NOW.mono + k, ..NOW }, &mut rec);
        rec.0
    };
    let acts = at(0, &ls[1]);
    assert!(sent_on(&acts, 11).is_empty(), "{acts:?}");
    let [Message::AnnounceRequest(q)] = sent_on(&acts, 12)[..] else { panic!("{acts:?}") };
    assert_eq!((q.hops, q.nodes.iter().collect::<Vec<_>>()), (16, vec![m(9)]));
    // once per ASK_AGAIN, however many ask
    assert!(sent_on(&at(100, &ls[0]), 12).is_empty());
    assert_eq!(sent_on(&at(crate::core::routes::ASK_AGAIN, &ls[0]), 12).len(), 1);
}

#[test]
fn an_announce_request_goes_on_along_the_route_to_its_node_which_is_told() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3)]);
    run(&e, &ls[1], &announce(m(9), 100, AnnouncedAddr::None));
    // for this node and for node 9, with hops to spare
    let (v, acts) = run(&e, &ls[0], &announce_request(4, &[m(1), m(9)]));
    assert_eq!(v, Verdict::Done);
    assert!(acts.contains(&Act::Event(Event::AnnounceAsked)), "{acts:?}");
    let [Message::AnnounceRequest(q)] = sent_on(&acts, 11)[..] else { panic!("{acts:?}") };
    assert_eq!((q.hops, q.nodes.iter().collect::<Vec<_>>()), (3, vec![m(9)]));
    assert!(sent_on(&acts, 10).is_empty(), "not back: {acts:?}");
    // a request on its last hop, or from the way the route leads, goes
    // nowhere (and one passed on lately is not passed on again)
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3)]);
    run(&e, &ls[1], &announce(m(9), 100, AnnouncedAddr::None));
    let (_, acts) = run(&e, &ls[0], &announce_request(1, &[m(9)]));
    assert!(acts.is_empty(), "{acts:?}");
    let (_, acts) = run(&e, &ls[1], &announce_request(16, &[m(9)]));
    assert!(acts.is_empty(), "{acts:?}");
    // invpn 0.4 never sends one
    let old = linked(&e, &[(12, 4, false)]);
    let (v, _) = run(&e, &old[0], &announce_request(16, &[m(9)]));
    assert_eq!(v, Verdict::Dropped(DropReason::WrongLink));
}

#[test]
fn a_neighbour_not_yet_announced_is_asked_to_announce_unless_it_is_the_one_lost() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3)]);
    // node 3 is a neighbour that has not announced itself on its link yet
    let asked_for_3 = |lost: u8| {
        let mut msgs = Vec::new();
        wire::encode_route_requests(&mut msgs, m(lost), &[m(3)]);
        let (_, acts) = run(&e, &ls[0], &msgs[0]);
        sent_on(&acts, 11)
            .iter()
            .filter_map(|q| match q {
                Message::AnnounceRequest(q) => Some((q.hops, q.nodes.iter().collect::<Vec<_>>())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    // node 2 lost node 3 itself: our link to it may be going too
    assert_eq!(asked_for_3(3), vec![]);
    // node 2 lost node 5, and with it its route to 3
    assert_eq!(asked_for_3(5), vec![(16, vec![m(3)])]);
}

#[test]
fn forged_hops_are_cut_and_few_hops_left_do_not_silence_a_real_request() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3)]);
    run(&e, &ls[1], &announce(m(9), 100, AnnouncedAddr::None));
    let onward = |k: u64, hops: u8| {
        let mut rec = Rec::default();
        let mut raw = announce_request(hops, &[m(9)]);
        e.handle_message(&ls[0], &mut raw, Now { mono: NOW.mono + k, ..NOW }, &mut rec);
        sent_on(&rec.0, 11)
            .iter()
            .map(|q| match q {
                Message::AnnounceRequest(q) => q.hops,
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>()
    };
    // a request with 2 hops left goes on with 1 (which its next hop drops)
    assert_eq!(onward(0, 2), vec![1]);
    // a full one soon after is not silenced by it; a second full one is
    assert_eq!(onward(10, 16), vec![15]);
    assert_eq!(onward(20, 16), Vec::<u8>::new());
    // a forged hop count goes no further than a request of our own
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3)]);
    run(&e, &ls[1], &announce(m(9), 100, AnnouncedAddr::None));
    let (_, acts) = run(&e, &ls[0], &announce_request(255, &[m(9)]));
    let [Message::AnnounceRequest(q)] = sent_on(&acts, 11)[..] else { panic!("{acts:?}") };
    assert_eq!(q.hops, 15);
}

#[test]
fn no_announce_request_goes_to_a_neighbour_that_takes_none() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2)]);
    // node 9 is reached through an invpnd neighbour whose hello did not
    // offer route requests, and node 8 through an invpn 0.4 one
    let quiet = linked(&e, &[(11, 3, true), (12, 4, false)]);
    run(&e, &quiet[0], &announce(m(9), 100, AnnouncedAddr::None));
    run(&e, &quiet[1], &announce(m(8), 100, AnnouncedAddr::None));
    let (v, acts) = run(&e, &ls[0], &announce_request(16, &[m(8), m(9)]));
    assert_eq!(v, Verdict::Done);
    assert!(acts.is_empty(), "{acts:?}");
}

#[test]
fn announce_requests_have_a_budget_of_their_own() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3)]);
    let macs: Vec<Mac> = (0..2048u32).map(|i| Mac([2, 9, 0, 0, (i >> 8) as u8, i as u8])).collect();
    // a burst of 2048 nodes (none known: nothing is passed on), then no more
    for chunk in macs.chunks(1024) {
        assert_eq!(run(&e, &ls[0], &announce_request(16, chunk)).0, Verdict::Done);
    }
    let (v, _) = run(&e, &ls[0], &announce_request(16, &[m(9)]));
    assert_eq!(v, Verdict::Dropped(DropReason::RouteRequests));
    // while the same neighbour may still ask for routes
    let mut msgs = Vec::new();
    wire::encode_route_requests(&mut msgs, m(5), &macs[..1024]);
    assert_eq!(run(&e, &ls[0], &msgs[0]).0, Verdict::Done);
}

#[test]
fn a_neighbour_asks_for_a_tables_worth_of_routes_then_a_thousand_a_second() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3)]);
    let ask = |n: u32| {
        let macs: Vec<Mac> =
            (0..n).map(|i| Mac([2, 9, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8])).collect();
        let mut msgs = Vec::new();
        wire::encode_route_requests(&mut msgs, m(5), &macs);
        msgs
    };
    for msg in ask(16_384) {
        assert_eq!(run(&e, &ls[0], &msg).0, Verdict::Done);
    }
    let more = ask(10).pop().unwrap();
    assert_eq!(run(&e, &ls[0], &more).0, Verdict::Dropped(DropReason::RouteRequests));
    // another link has its own budget, and the first one's comes back
    assert_eq!(run(&e, &ls[1], &more).0, Verdict::Done);
    let mut rec = Rec::default();
    let mut raw = more.clone();
    let later = Now { mono: NOW.mono + 1_000, ..NOW };
    assert_eq!(e.handle_message(&ls[0], &mut raw, later, &mut rec), Verdict::Done);
}

#[test]
fn a_graft_is_answered_with_the_route_at_once() {
    let e = engine(1);
    let (ls, _) = routes_linked(&e, &[(10, 2), (11, 3)]);
    run(&e, &ls[0], &announce(m(9), 100, AnnouncedAddr::None));
    // node 3's route to node 9 lost its second path: it grafts node 9 here
    let (_, acts) = run(&e, &ls[1], &prune_msg(&[], &[m(9)]));
    let [Message::Routes(r)] = sent_on(&acts, 11)[..] else { panic!("{acts:?}") };
    assert_eq!(r.iter().map(|a| (a.mac, a.id)).collect::<Vec<_>>(), vec![(m(9), t(100))]);
    // not with a route through the one grafting
    let (_, acts) = run(&e, &ls[0], &prune_msg(&[], &[m(9)]));
    assert!(sent_on(&acts, 10).is_empty(), "{acts:?}");
}
